//! The echo binary as a user runs it: prints its address, echoes, stops cleanly on SIGTERM
//! and SIGINT.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_and_signal(signal: i32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echo"))
        .args(["--addr", "127.0.0.1:0", "--cores", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echo");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let addr = first
        .strip_prefix("echo listening on ")
        .unwrap_or_else(|| panic!("unexpected: {first}"));

    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let msg = b"hello ringcore\n".repeat(100);
    s.write_all(&msg).expect("write");
    let mut got = vec![0; msg.len()];
    s.read_exact(&mut got).expect("echo");
    assert_eq!(got, msg);

    // SAFETY: kill with a pid we spawned and a valid signal number.
    let r = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(r, 0);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "echo did not stop on signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "echo stopped"), "{rest:?}");
}

#[test]
fn stops_cleanly_on_sigterm() {
    run_and_signal(libc::SIGTERM);
}

#[test]
fn stops_cleanly_on_sigint() {
    run_and_signal(libc::SIGINT);
}

#[test]
fn bad_arguments_get_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_echo"))
        .args(["--cores", "zero"])
        .output()
        .expect("run echo");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a core count"));
}

#[test]
fn help_and_version_exit_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_echo"))
        .arg("--help")
        .output()
        .expect("run echo");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--cores <all|N|LIST>"));
    let out = Command::new(env!("CARGO_BIN_EXE_echo"))
        .arg("--version")
        .output()
        .expect("run echo");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("echo {}\n", env!("CARGO_PKG_VERSION"))
    );
}
