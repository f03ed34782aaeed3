//! `ringcore_http::client` over real sockets on 127.0.0.1: against ringcore's own server
//! (plaintext and TLS) and a Python `http.server`; pooled connections are reused (counted on
//! the server side), a stale pooled connection is replaced, and the connect and request
//! timeouts fire.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use ringcore_http::client::{Client, Error};
use ringcore_http::runtime::net::TcpListener;
use ringcore_http::runtime::time::{sleep, timeout};
use ringcore_http::{get, post, Limits, Router, StatusCode, TlsConfig};
use ringcore_testkit::rt::run1;

/// The whole client side of one test must finish within this.
const LIMIT: Duration = Duration::from_secs(20);

fn router() -> Router<()> {
    Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/slow",
            get(|| async {
                sleep(Duration::from_secs(3)).await;
                "late\n"
            }),
        )
}

/// (status and text of each answer, connections opened, reused, idle at the end).
type PoolRun = (Vec<(u16, String)>, u64, u64, usize);

#[test]
fn pooled_keep_alive_against_ringcore() {
    let server = common::start(router);
    let base = format!("http://{}", server.addr);
    let out: Result<PoolRun, String> = run1(move || {
        let base = base.clone();
        async move {
            let client = Client::builder().build().map_err(|e| e.to_string())?;
            let run = async {
                let mut got = Vec::new();
                for _ in 0..5 {
                    let r = client.get(&format!("{base}/hello")).await?;
                    got.push((r.status().as_u16(), r.text()));
                }
                let r = client.post(&format!("{base}/echo"), vec![7u8; 100_000]).await?;
                got.push((r.status().as_u16(), format!("{} bytes", r.body().len())));
                let r = client.get(&format!("{base}/nope")).await?;
                got.push((r.status().as_u16(), String::new()));
                Ok::<_, Error>(got)
            };
            let got = timeout(LIMIT, run)
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Ok((
                got,
                client.connections_opened(),
                client.connections_reused(),
                client.idle_connections(),
            ))
        }
    });
    let report = server.stop();
    let (got, opened, reused, idle) = out.expect("client run");
    assert_eq!(got[0], (200, "hello\n".to_string()));
    assert_eq!(got[5], (200, "100000 bytes".to_string()));
    assert_eq!(got[6].0, 404);
    assert_eq!((opened, reused, idle), (1, 6, 1));
    // One connection for the client's seven requests, one for the test's shutdown request.
    assert_eq!(report.connections, 2, "{report}");
    assert_eq!(report.requests, 8, "{report}");
}

#[test]
fn a_stale_pooled_connection_is_replaced() {
    let mut limits = Limits::default();
    limits.keep_alive_timeout = Duration::from_millis(200);
    let server = common::start_limits(limits, router);
    let url = format!("http://{}/hello", server.addr);
    let out: Result<(u64, Vec<u16>), String> = run1(move || {
        let url = url.clone();
        async move {
            let client = Client::builder().build().map_err(|e| e.to_string())?;
            let run = async {
                let a = client.get(&url).await?.status().as_u16();
                // The server closes the idle connection after 200 ms; the pool still holds it.
                sleep(Duration::from_millis(600)).await;
                let b = client.get(&url).await?.status().as_u16();
                Ok::<_, Error>(vec![a, b])
            };
            let got = timeout(LIMIT, run)
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Ok((client.connections_opened(), got))
        }
    });
    server.stop();
    let (opened, got) = out.expect("client run");
    assert_eq!(got, vec![200, 200]);
    assert_eq!(opened, 2, "the closed pooled connection was retried on a new one");
}

/// (the slow request's outcome, its time, the next status, the connect outcome, its time).
type TimeoutRun = (String, Duration, u16, String, Duration);

#[test]
fn request_and_connect_timeouts_fire() {
    let server = common::start(router);
    let base = format!("http://{}", server.addr);
    let out: Result<TimeoutRun, String> = run1(move || {
        let base = base.clone();
        async move {
            let client = Client::builder()
                .request_timeout(Duration::from_millis(300))
                .connect_timeout(Duration::from_millis(300))
                .build()
                .map_err(|e| e.to_string())?;
            let run = async {
                let t0 = Instant::now();
                let slow = client.get(&format!("{base}/slow")).await;
                let slow_took = t0.elapsed();
                let slow = match slow {
                    Err(e) => format!("{e:?}"),
                    Ok(r) => format!("answered {}", r.status()),
                };
                // The client is still usable (the timed-out connection was not pooled).
                let after = client
                    .get(&format!("{base}/hello"))
                    .await
                    .map_err(|e| e.to_string())?;

                // A listener that never accepts, with a backlog of 0: once its queue is
                // full, the kernel drops further SYNs and a connect hangs.
                let full = TcpListener::bind_with_backlog("127.0.0.1:0", 0).map_err(|e| e.to_string())?;
                let url = format!("http://{}/", full.local_addr().map_err(|e| e.to_string())?);
                let mut connect_err = String::new();
                let mut connect_took = Duration::ZERO;
                for _ in 0..10 {
                    let t0 = Instant::now();
                    match client.get(&url).await {
                        Err(Error::ConnectTimeout) => {
                            connect_took = t0.elapsed();
                            connect_err = "ConnectTimeout".into();
                            break;
                        }
                        Err(e) => connect_err = format!("{e:?}"),
                        Ok(r) => connect_err = format!("answered {}", r.status()),
                    }
                }
                Ok::<_, String>((
                    slow,
                    slow_took,
                    after.status().as_u16(),
                    connect_err,
                    connect_took,
                ))
            };
            timeout(LIMIT, run).await.map_err(|_| "timed out".to_string())?
        }
    });
    server.stop();
    let (slow, slow_took, after, connect_err, connect_took) = out.expect("client run");
    assert_eq!(slow, "Timeout");
    assert!(
        slow_took >= Duration::from_millis(250) && slow_took < Duration::from_secs(2),
        "{slow_took:?}"
    );
    assert_eq!(after, 200);
    assert_eq!(connect_err, "ConnectTimeout");
    assert!(
        connect_took >= Duration::from_millis(250) && connect_took < Duration::from_secs(2),
        "{connect_took:?}"
    );
}

#[test]
fn https_with_a_custom_ca_against_ringcore() {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "client test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("leaf");
    let dir = std::env::temp_dir().join(format!("ringcore-client-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    let tls = TlsConfig::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).expect("load");
    let server = common::start_with(move |s| s.tls(tls), router);
    let port = server.addr.port();
    let ca_pem = dir.join("ca.pem");
    let out: Result<(Vec<u16>, u64, String), String> = run1(move || {
        let ca_pem = ca_pem.clone();
        async move {
            let run = async {
                let client = Client::builder()
                    .add_root_pem_file(&ca_pem)
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut got = Vec::new();
                for _ in 0..3 {
                    let r = client
                        .get(&format!("https://localhost:{port}/hello"))
                        .await
                        .map_err(|e| e.to_string())?;
                    got.push(r.status().as_u16());
                }
                // The shutdown route, over TLS too (the test helper's is plaintext).
                let r = client
                    .get(&format!("https://localhost:{port}{}", common::SHUTDOWN_PATH))
                    .await
                    .map_err(|e| e.to_string())?;
                got.push(r.status().as_u16());
                // Without the test CA (webpki roots only) the certificate does not verify.
                let strict = Client::builder().build().map_err(|e| e.to_string())?;
                let refused = match strict.get(&format!("https://localhost:{port}/hello")).await {
                    Err(e) => format!("{e}"),
                    Ok(r) => format!("answered {}", r.status()),
                };
                Ok::<_, String>((got, client.connections_opened(), refused))
            };
            timeout(LIMIT, run).await.map_err(|_| "timed out".to_string())?
        }
    });
    let report = server.join();
    let _ = std::fs::remove_dir_all(&dir);
    let (got, opened, refused) = out.expect("client run");
    assert_eq!(got, vec![200, 200, 200, 200]);
    assert_eq!(opened, 1);
    assert!(
        refused.contains("connect") || refused.contains("closed"),
        "{refused}"
    );
    // The client's one connection (the strict client's handshake failed before any request;
    // it may or may not have been accepted before shutdown).
    assert!(report.connections >= 1 && report.requests == 4, "{report}");
}

/// A Python HTTP/1.1 server answering every GET with the client's port: the same port on
/// every answer means one reused connection.
const PY_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = str(self.client_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

struct Py(Child);

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pooled_keep_alive_against_python() {
    let mut child = Command::new("python3")
        .args(["-c", PY_SERVER])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("this test requires python3 on PATH: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let py = Py(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("port line");
    let port: u16 = line.trim().parse().expect("a port");
    let out: Result<(Vec<(StatusCode, String)>, u64), String> = run1(move || async move {
        let run = async {
            let client = Client::builder().build()?;
            let mut got = Vec::new();
            for _ in 0..4 {
                let r = client.get(&format!("http://127.0.0.1:{port}/any")).await?;
                got.push((r.status(), r.text()));
            }
            Ok::<_, Error>((got, client.connections_opened()))
        };
        timeout(LIMIT, run)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())
    });
    drop(py);
    let (got, opened) = out.expect("client run");
    assert_eq!(opened, 1);
    assert!(got.iter().all(|(s, _)| *s == StatusCode::OK), "{got:?}");
    assert!(
        got.iter().all(|(_, p)| *p == got[0].1),
        "one connection, one port: {got:?}"
    );
}
