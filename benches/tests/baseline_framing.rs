//! The fixed-response baselines (`naive_uring`, `tokio_ct`, `ringcore_fixed`) as processes on
//! 127.0.0.1, in both framings: counting `"\r\n\r\n"` answers a head that `httparse` refuses,
//! and with `BENCH_HTTPARSE=1` (the issue 12 floor, `bare_hp` / `tokio_ct_hp` in the scripts)
//! the same head closes the connection unanswered, while good pipelined requests, split
//! across writes, are answered in both.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::start_with;

const BASELINES: &[(&str, &str)] = &[
    ("naive_uring", env!("CARGO_BIN_EXE_naive_uring")),
    ("tokio_ct", env!("CARGO_BIN_EXE_tokio_ct")),
    ("ringcore_fixed", env!("CARGO_BIN_EXE_ringcore_fixed")),
];

const GOOD: &str = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
/// A space inside a field name: not a token, so `httparse` refuses the head.
const BAD: &str = "GET /plaintext HTTP/1.1\r\nHo st: x\r\n\r\n";
const ANSWER: &str = "HTTP/1.1 200 OK\r\n";

fn connect(name: &str, addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{name}: connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    s
}

/// Writes `parts` (a pause between them), then reads until `answers` answers came in or the
/// peer closed; returns (answers, whether it closed) after at most 5 s.
fn exchange(name: &str, addr: &str, parts: &[&[u8]], answers: usize) -> (usize, bool) {
    let mut s = connect(name, addr);
    for p in parts {
        s.write_all(p).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let seen = got
            .windows(ANSWER.len())
            .filter(|w| *w == ANSWER.as_bytes())
            .count();
        if seen >= answers && answers > 0 {
            return (seen, false);
        }
        if Instant::now() > deadline {
            return (seen, false);
        }
        match s.read(&mut chunk) {
            Ok(0) => return (seen, true),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (seen, true),
        }
    }
}

#[test]
fn with_bench_httparse_a_baseline_refuses_what_httparse_refuses() {
    let good3 = GOOD.repeat(3);
    let cut = 2 * GOOD.len() + 10;
    let split: [&[u8]; 2] = [&good3.as_bytes()[..cut], &good3.as_bytes()[cut..]];
    for &(name, bin) in BASELINES {
        // Counting: the good requests and the bad head are all answered.
        let (server, addr) = start_with(name, bin, "1", &[]);
        assert_eq!(exchange(name, &addr, &split, 3), (3, false), "{name}, counting");
        assert_eq!(
            exchange(name, &addr, &[BAD.as_bytes()], 1),
            (1, false),
            "{name}, counting"
        );
        drop(server);

        // Parsing: the good ones answered alike; the bad head closes the connection
        // unanswered, also behind a good request in the same write.
        let (server, addr) = start_with(name, bin, "1", &[("BENCH_HTTPARSE", "1")]);
        assert_eq!(exchange(name, &addr, &split, 3), (3, false), "{name}, httparse");
        assert_eq!(
            exchange(name, &addr, &[BAD.as_bytes()], 0),
            (0, true),
            "{name}, httparse"
        );
        // One write, nearly always one receive (no answer); two receives would answer the
        // good one before the close.
        let both = format!("{GOOD}{BAD}");
        let (answered, closed) = exchange(name, &addr, &[both.as_bytes()], 0);
        assert!(
            closed && answered <= 1,
            "{name}, httparse: {answered} answers, closed {closed}"
        );
        drop(server);
    }
}
