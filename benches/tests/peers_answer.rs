//! The peer baselines of docs/bench-peers.md (`may_hello`, `actix_hello`, `monoio_hello`,
//! and `glommio_hello` beside them) run as processes on 127.0.0.1: each answers three
//! pipelined `GET /plaintext` requests, split across two writes, with three
//! `200 Hello, World!` responses in order on one connection, and SIGTERM stops it with exit 0.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcore_testkit::http1::{RequestKind, Response};
use support::start;

const PEERS: &[(&str, &str)] = &[
    ("may_hello", env!("CARGO_BIN_EXE_may_hello")),
    ("actix_hello", env!("CARGO_BIN_EXE_actix_hello")),
    ("monoio_hello", env!("CARGO_BIN_EXE_monoio_hello")),
    ("glommio_hello", env!("CARGO_BIN_EXE_glommio_hello")),
];

/// Three pipelined requests in two writes; the three responses, parsed.
fn three_pipelined(name: &str, addr: &str) -> Vec<Response> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{name}: connect {addr}: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    let all = req.repeat(3);
    let cut = 2 * req.len() + 10;
    s.write_all(&all.as_bytes()[..cut]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&all.as_bytes()[cut..]).unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.len() < 3 {
        assert!(Instant::now() < deadline, "{name}: {} answers in 10 s", got.len());
        let n = s
            .read(&mut chunk)
            .unwrap_or_else(|e| panic!("{name}: read after {} answers: {e}", got.len()));
        assert!(n > 0, "{name} closed after {} answers", got.len());
        buf.extend_from_slice(&chunk[..n]);
        while let Some((r, used)) = Response::parse(&buf, RequestKind::Other, false).unwrap() {
            buf.drain(..used);
            got.push(r);
        }
    }
    got
}

#[test]
fn peers_answer_pipelined_plaintext_and_stop_on_sigterm() {
    for &(name, bin) in PEERS {
        let (mut server, addr) = start(name, bin);
        let answers = three_pipelined(name, &addr);
        for r in &answers {
            assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"), "{name}");
            assert!(
                r.header("content-type")
                    .is_some_and(|t| t.starts_with("text/plain")),
                "{name}: {r:?}"
            );
        }
        let pid = server.0.id() as libc::pid_t;
        // SAFETY: sends SIGTERM to the child this test started and has not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "{name}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(st) = server.0.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "{name} still runs 10 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "{name}");
    }
}
