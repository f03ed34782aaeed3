//! `idle_conns` (memory per idle connection in scripts/bench.sh) against real servers on
//! 127.0.0.1: it holds connections to a server that adds `Date` and `Server` headers (hyper_ct)
//! as well as to the bare loop's fixed answer, and refuses a server whose answer is not
//! `200 Hello, World!` on a kept-alive connection.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::start;

const IDLE_CONNS: &str = env!("CARGO_BIN_EXE_idle_conns");

fn idle_conns(addr: &str, conns: &str) -> Output {
    Command::new(IDLE_CONNS)
        .args(["--addr", addr, "--conns", conns, "--hold", "0", "--timeout", "10"])
        .output()
        .expect("run idle_conns")
}

#[test]
fn holds_connections_to_servers_with_and_without_date() {
    for (name, bin) in [
        ("hyper_ct", env!("CARGO_BIN_EXE_hyper_ct")),
        ("naive_uring", env!("CARGO_BIN_EXE_naive_uring")),
    ] {
        let (_server, addr) = start(name, bin);
        let out = idle_conns(&addr, "50");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ready 50", "{name}");
    }
}

#[test]
fn refuses_an_answer_that_is_not_hello_world() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local address").to_string();
    // One connection, answered 404 with an empty body (keep-alive).
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        // Hold the connection until idle_conns gives up on it.
        let _ = s.read(&mut buf);
    });
    let out = idle_conns(&addr, "1");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "failed 0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unexpected response: HTTP/1.1 404 Not Found"),
        "{err}"
    );
    server.join().expect("server thread");
}
