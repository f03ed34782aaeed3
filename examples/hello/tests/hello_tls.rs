//! `hello --tls-cert --tls-key` with `curl --cacert`: a test CA and a certificate for
//! 127.0.0.1 made by `rcgen` at test time; HTTPS requests over HTTP/1.1 and over HTTP/2 (ALPN
//! picks h2 when curl offers it), verification against the CA, and a start-up error for a bad
//! key file.

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Hello {
    child: Child,
    addr: String,
    /// Kept open: hello prints its report at exit (a closed pipe would fail that print).
    lines: Lines<BufReader<ChildStdout>>,
}

impl Drop for Hello {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Hello {
    /// SIGTERM, then exit status 0 within 15 s.
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
            assert!(t0.elapsed() < Duration::from_secs(15), "hello did not stop");
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

/// Writes ca.pem, cert.pem (for 127.0.0.1 and localhost) and key.pem into a fresh directory.
fn make_pki(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringcore-hello-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "hello test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("leaf");
    leaf.distinguished_name.push(DnType::CommonName, "hello");
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("leaf cert");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    dir
}

fn start_hello(cert: &Path, key: &Path) -> Hello {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hello"))
        .args(["--addr", "127.0.0.1:0", "--cores", "1", "--tls-cert"])
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    assert!(first.contains(" with TLS "), "{first:?}");
    Hello { child, addr, lines }
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--max-time", "10"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("these tests require `curl` on PATH (could not run it: {e})"))
}

#[test]
fn curl_with_the_test_ca_gets_https_answers() {
    let dir = make_pki("curl");
    let hello = start_hello(&dir.join("cert.pem"), &dir.join("key.pem"));
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    let url = format!("https://{}/plaintext", hello.addr);
    let json = format!("https://{}/json", hello.addr);

    // Two requests in one curl run: one TLS connection, kept alive and reused (HTTP/1.1 asked
    // for: the server offers it after h2).
    let out = curl(&["-sS", "-v", "--http1.1", "--cacert", ca, &url, &json]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"Hello, World!{"message":"Hello, World!"}"#
    );
    assert!(stderr.contains("ALPN") && stderr.contains("http/1.1"), "{stderr}");
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");

    // curl asking for HTTP/2 gets it: ALPN h2, both requests as streams of one connection.
    let out = curl(&[
        "-sS",
        "-v",
        "--http2",
        "--cacert",
        ca,
        "-w",
        "%{http_version}",
        &url,
        &json,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"Hello, World!2{"message":"Hello, World!"}2"#
    );
    assert!(stderr.contains("ALPN: server accepted h2"), "{stderr}");
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");

    // Without the CA the certificate does not verify (curl exit code 60).
    let out = curl(&["-sS", &url]);
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    hello.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_key_file_stops_start_up_with_its_name() {
    let dir = make_pki("bad");
    std::fs::write(dir.join("key.pem"), "no key here").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_hello"))
        .args(["--addr", "127.0.0.1:0", "--cores", "1", "--tls-cert"])
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .output()
        .expect("run hello");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("key.pem"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
