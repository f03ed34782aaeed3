//! `ringcore-load`'s verdict over real sockets on 127.0.0.1: exit 1 with one line when no
//! request got an answer or too many failed, exit 0 when the answers come (close-delimited
//! HTTP/1.0 answers included), `--header` reaches the server, and the generator reports how
//! busy it was.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

fn load(url: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringcore-load"))
        .args([
            "--url",
            url,
            "--rate",
            "50",
            "--conns",
            "2",
            "--duration",
            "0.4",
            "--warmup",
            "0",
        ])
        .args(["--no-progress", "--timeout-ms", "300"])
        .args(extra)
        .output()
        .expect("run ringcore-load")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A port nobody listens on (bound, then closed).
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn no_answer_at_all_fails_in_one_line() {
    let out = load(&format!("http://127.0.0.1:{}/", dead_port()), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let failed: Vec<_> = stderr(&out)
        .lines()
        .filter(|l| l.contains("FAILED"))
        .map(String::from)
        .collect();
    assert_eq!(failed.len(), 1, "{}", stderr(&out));
    assert!(failed[0].contains("no request got an answer"), "{failed:?}");
}

/// Serves connections one request each: answers per `answer(request number)` and closes.
/// Returns the address and a channel of every request head received.
fn server(answer: fn(usize) -> Option<&'static [u8]>) -> (String, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Bounded: the test's run lasts under a second at 50 req/s.
        for (i, conn) in l.incoming().take(500).enumerate() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
            match answer(i) {
                Some(bytes) => {
                    let _ = s.write_all(bytes);
                }
                // No answer: drop the connection (the request is lost).
                None => drop(s),
            }
        }
    });
    (addr, rx)
}

fn close_delimited(_: usize) -> Option<&'static [u8]> {
    Some(b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n\r\nbusy, all of it until close")
}

#[test]
fn close_delimited_answers_count_and_503_is_not_an_error() {
    let (addr, rx) = server(close_delimited);
    let json = std::env::temp_dir().join(format!("load-exit-{}.json", std::process::id()));
    let out = load(
        &format!("http://{addr}/x"),
        &[
            "--header",
            "X-Test: yes",
            "--json",
            json.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    let _ = std::fs::remove_file(&json);
    assert!(j["status_all"]["5xx"].as_u64().unwrap_or(0) >= 5, "{j}");
    assert_eq!(j["errors"].as_u64(), Some(0), "{j}");
    // 50 requests/s keep the generator nearly idle: it says how busy it was, consistently
    // with its CPU per request, and does not warn about its own queueing.
    let busy = j["generator_busy"].as_f64().expect("generator_busy");
    let per_req = j["generator_cpu_ns_per_req"].as_f64().expect("cpu per request");
    let rate = j["achieved_rate"].as_f64().expect("achieved rate");
    let cores = j["cores"].as_f64().expect("cores");
    assert!(busy > 0.0 && busy < 0.7, "{j}");
    let want = per_req * rate / 1e9 / cores;
    assert!((busy - want).abs() <= want * 0.01, "busy {busy} vs {want}: {j}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("% busy"), "{stdout}");
    assert!(!stdout.contains("generator was"), "{stdout}");
    let head = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a request arrived");
    assert!(head.contains("\r\nX-Test: yes\r\n"), "{head:?}");
}

fn every_third_dropped(i: usize) -> Option<&'static [u8]> {
    (i % 3 != 0).then_some(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"[..])
}

#[test]
fn too_many_errors_fail_unless_allowed() {
    let (addr, _rx) = server(every_third_dropped);
    let url = format!("http://{addr}/");
    let out = load(&url, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("above --max-error-rate 1.00%"),
        "{}",
        stderr(&out)
    );
    let out = load(&url, &["--max-error-rate=60%"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
