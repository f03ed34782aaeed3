//! Runs the server examples of `http/examples/` as processes on `127.0.0.1:0` (each prints
//! `NAME listening on ADDR` first), sends each one request with `curl` and checks the
//! answer; the `client` example fetches from a running one.
//!
//! Finding the binaries: cargo gives integration tests `CARGO_BIN_EXE_*` for binaries
//! only, not for examples. `cargo test` builds every example of the package before it runs
//! any test, into `examples/` beside the `deps/` directory that holds this test's own
//! executable, so the path is derived from `std::env::current_exe()` (which also follows a
//! `CARGO_TARGET_DIR` or `--target-dir`). When an example is missing there (this test run
//! alone with `--test examples_run`, which builds no examples), the test builds them with
//! the same cargo (`CARGO`), offline and with the same profile directory. `cargo run
//! --example` per case would build and resolve again for every example: much slower.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `target/<profile>/examples/NAME`, built if missing.
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/examples_run-HASH -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--offline", "-p", "ringcore-http", "--examples"]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target);
        }
        let status = cmd.status().expect("run cargo build --examples");
        assert!(status.success(), "building the examples failed");
    }
    assert!(path.exists(), "no example binary at {}", path.display());
    path
}

/// A running example, killed on drop.
struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts example `name` with `args` plus `--addr 127.0.0.1:0` and waits (at most 20 s)
/// for its `listening on` line.
fn start(name: &str, args: &[&str]) -> Running {
    let mut child = Command::new(example_path(name))
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start example {name}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut running = Running {
        child,
        addr: String::new(),
    };
    let prefix = format!("{name} listening on ");
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix(&prefix) {
                    running.addr = addr.trim().to_string();
                    return running;
                }
            }
            Err(e) => panic!("example {name} did not say it was listening: {e}"),
        }
    }
}

/// Runs `curl` with `args` (bounded by `--max-time`); returns (status code, body).
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code.to_string(), body.to_string())
}

#[test]
fn streaming_example_streams_both_ways() {
    let s = start("streaming", &[]);
    let upload = "line\n".repeat(100_000);
    let sum = upload.bytes().fold(0u32, |s, b| s.wrapping_add(u32::from(b)));
    let file = std::env::temp_dir().join(format!("ringcore-example-upload-{}", std::process::id()));
    std::fs::write(&file, &upload).expect("write the upload");
    let (code, body) = curl(&[
        "--data-binary",
        &format!("@{}", file.display()),
        "-H",
        "Content-Type: text/plain",
        &format!("http://{}/upload", s.addr),
    ]);
    assert_eq!(code, "200");
    let _ = std::fs::remove_file(&file);
    assert_eq!(body, format!("bytes=500000 lines=100000 sum={sum}\n"));
    let (code, body) = curl(&[&format!("http://{}/numbers/20000", s.addr)]);
    assert_eq!(code, "200");
    assert_eq!(body.lines().count(), 20_000);
    assert_eq!(body.lines().last(), Some("20000"));
}

#[test]
fn state_example_serves_state_from_its_async_factory() {
    let s = start("state", &["--greeting", "Ahoy"]);
    assert_eq!(
        curl(&[&format!("http://{}/hello/ada", s.addr)]),
        ("200".to_string(), "Ahoy, ada!\n".to_string())
    );
    assert_eq!(
        curl(&[&format!("http://{}/hits", s.addr)]),
        ("200".to_string(), "core 0: 1 greetings\n".to_string())
    );
    // A factory that fails stops start-up with its message.
    let out = Command::new(example_path("state"))
        .args(["--addr", "127.0.0.1:0", "--greeting", ""])
        .output()
        .expect("run state");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the greeting is empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn testing_example_serves_its_router() {
    let s = start("testing", &[]);
    assert_eq!(
        curl(&[&format!("http://{}/square/11", s.addr)]),
        ("200".to_string(), "121".to_string())
    );
}

#[test]
fn observability_example_serves_metrics_and_the_client_example_fetches() {
    let s = start("observability", &[]);
    let (code, body) = curl(&["-H", "X-Request-Id: abc", &format!("http://{}/work/2", s.addr)]);
    assert_eq!((code.as_str(), body.as_str()), ("200", "worked 2 ms\n"));
    let (code, metrics) = curl(&[&format!("http://{}/metrics", s.addr)]);
    assert_eq!(code, "200");
    assert!(metrics.contains("example_work_ms_total 2"), "{metrics}");
    assert!(
        metrics.contains("ringcore_http_request_duration_seconds_count{route=\"/work/:ms\"} 1"),
        "{metrics}"
    );

    // The client example against it: two requests, one connection.
    let out = Command::new(example_path("client"))
        .arg(format!("http://{}/work/1", s.addr))
        .output()
        .expect("run the client example");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("/work/1 #2: 200"), "{text}");
    assert!(text.contains("connections opened: 1, reused: 1"), "{text}");
}

#[test]
fn tls_example_serves_https() {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let dir = std::env::temp_dir().join(format!("ringcore-example-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    let s = start(
        "tls",
        &[
            "--tls-cert",
            c.to_str().expect("utf-8 path"),
            "--tls-key",
            k.to_str().expect("utf-8 path"),
        ],
    );
    let port = s.addr.rsplit_once(':').map(|(_, p)| p).expect("a port");
    let (code, body) = curl(&[
        "--cacert",
        c.to_str().expect("utf-8 path"),
        "--resolve",
        &format!("localhost:{port}:127.0.0.1"),
        &format!("https://localhost:{port}/"),
    ]);
    assert_eq!(code, "200");
    assert!(body.starts_with("hello over TLS"), "{body}");
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}
