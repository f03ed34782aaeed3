//! The peer baselines of docs/bench-peers.md (`may_hello`, `actix_hello`, `monoio_hello`,
//! and `glommio_hello` beside them) run as processes on 127.0.0.1: each answers three
//! pipelined `GET /plaintext` requests, split across two writes, with three
//! `200 Hello, World!` responses in order on one connection, and SIGTERM stops it with exit 0.
//! `hyper_ct --cores 2` runs one server thread per core and answers on every connection.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcore_testkit::http1::{RequestKind, Response};
use support::{start, start_on, Server};

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

fn assert_hello(name: &str, answers: &[Response]) {
    for r in answers {
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"), "{name}");
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn peers_answer_pipelined_plaintext_and_stop_on_sigterm() {
    for &(name, bin) in PEERS {
        let (server, addr) = start(name, bin);
        assert_hello(name, &three_pipelined(name, &addr));
        stop(name, server);
    }
}

/// `hyper_ct` on two cores: a server thread per core (each with its `SO_REUSEPORT` listener),
/// every one of 16 connections answered, exit 0 on SIGTERM. Before, it served from the first
/// listed core only, whatever `--cores` said (docs/bench-peers-16core.md).
#[test]
fn hyper_ct_serves_from_every_listed_core() {
    let name = "hyper_ct";
    let (server, addr) = start_on(name, env!("CARGO_BIN_EXE_hyper_ct"), "2");
    let pid = server.0.id();
    // The main thread (it waits for the signal, on every CPU) and one current-thread runtime
    // per core, each pinned to its own CPU.
    let mut pinned = Vec::new();
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's /proc/PID/task") {
        let status =
            std::fs::read_to_string(task.expect("a task").path().join("status")).expect("a task's status");
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list")
            .trim()
            .to_string();
        threads += 1;
        if !cpus.contains([',', '-']) {
            pinned.push(cpus);
        }
    }
    pinned.sort();
    pinned.dedup();
    assert_eq!(threads, 3, "{name} --cores 2 runs {threads} threads");
    assert_eq!(pinned.len(), 2, "{name} --cores 2: threads pinned to {pinned:?}");
    for _ in 0..16 {
        assert_hello(name, &three_pipelined(name, &addr));
    }
    stop(name, server);
}

/// SIGTERM, then exit status 0 within 10 s.
fn stop(name: &str, mut server: Server) {
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
