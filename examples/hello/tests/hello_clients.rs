//! The `hello` binary with a real client (`curl`): /plaintext, /json, /governed, HTTP/1.0, a chunked
//! upload to /echo, connection reuse, HTTP/2 with prior knowledge (no code in `hello` for
//! it); and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader, Lines};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Hello {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    addr: String,
}

fn start_hello() -> Hello {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hello"))
        .args(["--addr", "127.0.0.1:0", "--cores", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hello");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let addr = first
        .strip_prefix("hello listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_string();
    Hello { child, lines, addr }
}

impl Hello {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then checks exit status 0 and the `hello stopped:` line.
    fn stop(mut self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill with the pid of a child we spawned and have not reaped, and a valid
        // signal number.
        let r = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(r, 0, "kill failed");
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if t0.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                panic!("hello did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit status {status:?}");
        let rest: Vec<String> = self.lines.by_ref().map_while(Result::ok).collect();
        assert!(
            rest.iter().any(|l| l.starts_with("hello stopped: ")),
            "no `hello stopped:` line in {rest:?}"
        );
    }
}

impl Drop for Hello {
    fn drop(&mut self) {
        // A failed test must not leave the process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs curl with `args`; fails the test (never skips) if curl is missing.
fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["--max-time", "10"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("these tests require `curl` on PATH (could not run it: {e})"));
    assert!(
        out.status.success(),
        "curl {args:?} failed: {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Splits `curl -i` output into (status line, lower-cased header lines, body).
fn split_i(out: &[u8]) -> (String, Vec<String>, Vec<u8>) {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(out)));
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("").to_string();
    let headers = lines.map(str::to_ascii_lowercase).collect();
    (status, headers, out[end + 4..].to_vec())
}

fn has(headers: &[String], line: &str) -> bool {
    headers.iter().any(|h| h == line)
}

#[test]
fn curl_gets_plaintext_json_and_governed() {
    let hello = start_hello();
    let out = curl(&["-sS", "-i", &hello.url("/plaintext")]);
    let (status, headers, body) = split_i(&out.stdout);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, b"Hello, World!");
    assert!(
        has(&headers, "content-type: text/plain; charset=utf-8"),
        "{headers:?}"
    );
    assert!(has(&headers, "content-length: 13"), "{headers:?}");
    assert!(has(&headers, "server: ringcore"), "{headers:?}");
    assert!(headers.iter().any(|h| h.starts_with("date: ")), "{headers:?}");

    let out = curl(&["-sS", "-i", &hello.url("/json")]);
    let (status, headers, body) = split_i(&out.stdout);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, br#"{"message":"Hello, World!"}"#);
    assert!(has(&headers, "content-type: application/json"), "{headers:?}");

    // `/plaintext` behind the governance layers answers the same.
    let out = curl(&["-sS", "-i", &hello.url("/governed")]);
    let (status, headers, body) = split_i(&out.stdout);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, b"Hello, World!");
    assert!(has(&headers, "content-length: 13"), "{headers:?}");
    hello.stop();
}

#[test]
fn curl_http2_prior_knowledge() {
    let hello = start_hello();
    let out = curl(&["-sS", "-i", "--http2-prior-knowledge", &hello.url("/plaintext")]);
    let (status, headers, body) = split_i(&out.stdout);
    assert_eq!(status.trim_end(), "HTTP/2 200");
    assert_eq!(body, b"Hello, World!");
    assert!(has(&headers, "content-length: 13"), "{headers:?}");
    assert!(has(&headers, "server: ringcore"), "{headers:?}");
    let out = curl(&[
        "-sS",
        "--http2-prior-knowledge",
        "--data-binary",
        "over h2",
        &hello.url("/echo"),
    ]);
    assert_eq!(out.stdout, b"over h2");
    hello.stop();
}

#[test]
fn curl_http10() {
    let hello = start_hello();
    let out = curl(&["-sS", "-i", "--http1.0", &hello.url("/plaintext")]);
    let (status, headers, body) = split_i(&out.stdout);
    assert!(status.ends_with(" 200 OK"), "{status}");
    assert_eq!(body, b"Hello, World!");
    assert!(has(&headers, "connection: close"), "{headers:?}");
    let out = curl(&["-sS", "--http1.0", &hello.url("/json")]);
    assert_eq!(out.stdout, br#"{"message":"Hello, World!"}"#);
    hello.stop();
}

#[test]
fn curl_chunked_upload_to_echo() {
    let hello = start_hello();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join(format!("hello-upload-{}.bin", std::process::id()));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).expect("write upload file");
    let arg = format!("@{}", file.display());
    let out = curl(&[
        "-sS",
        "-i",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: application/x-test",
        "--data-binary",
        &arg,
        &hello.url("/echo"),
    ]);
    let _ = std::fs::remove_file(&file);
    let (status, headers, body) = split_i(&out.stdout);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(has(&headers, "content-type: application/x-test"), "{headers:?}");
    assert!(has(&headers, "content-length: 200000"), "{headers:?}");
    assert!(body == data, "echoed body differs ({} bytes back)", body.len());
    hello.stop();
}

#[test]
fn curl_expect_100_continue_upload() {
    let hello = start_hello();
    let out = curl(&[
        "-sS",
        "-v",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        "ping",
        &hello.url("/echo"),
    ]);
    assert_eq!(out.stdout, b"ping");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP/1.1 100 Continue"),
        "no 100 Continue seen:\n{err}"
    );
    hello.stop();
}

#[test]
fn curl_reuses_the_connection() {
    let hello = start_hello();
    let out = curl(&["-sS", "-v", &hello.url("/plaintext"), &hello.url("/json")]);
    assert_eq!(
        out.stdout,
        br#"Hello, World!{"message":"Hello, World!"}"#.to_vec()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Re-using existing connection") || err.contains("Reusing existing connection"),
        "curl did not reuse the connection:\n{err}"
    );
    hello.stop();
}

#[test]
fn curl_sees_404_and_405() {
    let hello = start_hello();
    let out = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &hello.url("/missing"),
    ]);
    assert_eq!(out.stdout, b"404");
    let out = curl(&["-sS", "-i", "-X", "POST", &hello.url("/plaintext")]);
    let (status, headers, _) = split_i(&out.stdout);
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(has(&headers, "allow: get, head"), "{headers:?}");
    hello.stop();
}

#[test]
fn stops_cleanly_on_sigterm_after_serving() {
    let hello = start_hello();
    for _ in 0..3 {
        curl(&["-sS", &hello.url("/plaintext")]);
    }
    hello.stop();
}
