//! `ringcore_http::client` over HTTP/2 against ringcore's own server on 127.0.0.1: ALPN `h2`
//! over TLS (a test CA made by `rcgen`), requests multiplexed as streams of one connection,
//! a body both ways, the server's graceful shutdown reached over that connection; and
//! cleartext prior knowledge. A client that does not ask for HTTP/2 keeps HTTP/1.1.

mod common;

use std::time::Duration;

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use ringcore_http::client::Client;
use ringcore_http::runtime::spawn_local;
use ringcore_http::runtime::time::timeout;
use ringcore_http::{get, post, Router, TlsConfig, Version};
use ringcore_testkit::rt::run1;

/// The whole client side of one test must finish within this.
const LIMIT: Duration = Duration::from_secs(20);

fn router() -> Router<()> {
    Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .route("/echo", post(|body: Bytes| async move { body }))
}

/// Status, version and text of one answer.
type Answer = (u16, Version, String);

/// (status, version, body length) of each answer, connections opened, reused.
type Run = (Vec<(u16, Version, usize)>, u64, u64);

#[test]
fn https_client_negotiates_h2_and_multiplexes_requests_on_one_connection() {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "h2 client test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("leaf");
    let dir = std::env::temp_dir().join(format!("ringcore-h2-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    let tls = TlsConfig::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).expect("load");
    let server = common::start_with(move |s| s.tls(tls), router);
    let port = server.addr.port();
    let ca_pem = dir.join("ca.pem");
    let out: Result<Run, String> = run1(move || {
        let ca_pem = ca_pem.clone();
        async move {
            let run = async {
                let client = Client::builder()
                    .add_root_pem_file(&ca_pem)
                    .http2(true)
                    .build()
                    .map_err(|e| e.to_string())?;
                let url = format!("https://localhost:{port}/hello");
                let mut got = Vec::new();
                // The first request opens the connection; then 20 at once share it.
                let r = client.get(&url).await.map_err(|e| e.to_string())?;
                got.push((r.status().as_u16(), r.version(), r.body().len()));
                let tasks: Vec<_> = (0..20)
                    .map(|_| {
                        let (client, url) = (client.clone(), url.clone());
                        spawn_local(async move { client.get(&url).await })
                    })
                    .collect();
                for t in tasks {
                    let r = t.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
                    got.push((r.status().as_u16(), r.version(), r.body().len()));
                }
                let r = client
                    .post(&format!("https://localhost:{port}/echo"), vec![9u8; 300_000])
                    .await
                    .map_err(|e| e.to_string())?;
                got.push((r.status().as_u16(), r.version(), r.body().len()));
                // The shutdown route over the same HTTP/2 connection.
                let r = client
                    .get(&format!("https://localhost:{port}{}", common::SHUTDOWN_PATH))
                    .await
                    .map_err(|e| e.to_string())?;
                got.push((r.status().as_u16(), r.version(), r.body().len()));
                Ok::<_, String>((got, client.connections_opened(), client.connections_reused()))
            };
            timeout(LIMIT, run).await.map_err(|_| "timed out".to_string())?
        }
    });
    let report = server.join();
    let _ = std::fs::remove_dir_all(&dir);
    let (got, opened, reused) = out.expect("client run");
    assert_eq!(got.len(), 23);
    for (i, (status, version, len)) in got.iter().enumerate() {
        assert_eq!((*status, *version), (200, Version::HTTP_2), "answer {i}");
        let want = match i {
            21 => 300_000,
            22 => "shutting down\n".len(),
            _ => "hello\n".len(),
        };
        assert_eq!(*len, want, "answer {i}");
    }
    assert_eq!((opened, reused), (1, 22));
    // One connection served everything; nothing was cut at shutdown.
    assert_eq!(
        (report.connections, report.requests, report.cut),
        (1, 23, 0),
        "{report}"
    );
}

#[test]
fn cleartext_prior_knowledge_and_http1_by_default() {
    let server = common::start(router);
    let base = format!("http://{}", server.addr);
    let out: Result<(Vec<Answer>, u64), String> = run1(move || {
        let base = base.clone();
        async move {
            let run = async {
                let h2 = Client::builder()
                    .http2_prior_knowledge(true)
                    .build()
                    .map_err(|e| e.to_string())?;
                let h1 = Client::builder().build().map_err(|e| e.to_string())?;
                let mut got = Vec::new();
                for client in [&h2, &h2, &h1] {
                    let r = client
                        .post(&format!("{base}/echo"), "over the wire")
                        .await
                        .map_err(|e| e.to_string())?;
                    got.push((r.status().as_u16(), r.version(), r.text()));
                }
                Ok::<_, String>((got, h2.connections_opened()))
            };
            timeout(LIMIT, run).await.map_err(|_| "timed out".to_string())?
        }
    });
    let report = server.stop();
    let (got, opened) = out.expect("client run");
    let text = "over the wire".to_string();
    assert_eq!(
        got,
        vec![
            (200, Version::HTTP_2, text.clone()),
            (200, Version::HTTP_2, text.clone()),
            (200, Version::HTTP_11, text),
        ]
    );
    assert_eq!(opened, 1);
    // The HTTP/2 client's connection, the HTTP/1 client's, the test's shutdown request.
    assert_eq!(report.connections, 3, "{report}");
}
