//! TLS (rustls) on ringcore's server over real sockets on 127.0.0.1, with a test CA and
//! certificates made by `rcgen` at test time and a rustls client: requests on a kept-alive
//! connection, ALPN, session resumption, a plaintext client refused, the handshake timeout,
//! a certificate reload seen by a new client, and a request body streamed to a `BodyStream`
//! handler.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use ringcore_http::{get, post, BodyError, BodyStream, Router, TlsConfig};
use ringcore_testkit::http1::{RequestKind, Response};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const READ_TIMEOUT: Duration = Duration::from_secs(5);

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn make_ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "ringcore test CA");
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA cert");
    Ca { cert, key }
}

/// A leaf for localhost and 127.0.0.1 signed by `ca`: (cert PEM, key PEM, cert DER).
fn make_leaf(ca: &Ca, name: &str) -> (String, String, Vec<u8>) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("leaf cert");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// A fresh directory under the system temp dir for one test's PEM files.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringcore-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write_pair(dir: &std::path::Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert).expect("write cert");
    std::fs::write(&k, key).expect("write key");
    (c, k)
}

fn client_config(ca: &Ca, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert.der().to_vec()))
        .expect("add CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(cfg.clone(), name).expect("client conn");
    let mut tls = StreamOwned::new(conn, tcp);
    // Completes the handshake (a failure here fails the test with rustls' reason).
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

/// Sends one GET and reads its response with the workspace's response parser.
fn get_over(tls: &mut Tls, path: &str, close: bool) -> Response {
    let conn = if close { "close" } else { "keep-alive" };
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: {conn}\r\n\r\n").as_bytes())
        .expect("send");
    tls.flush().expect("flush");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        if let Some((r, _)) = Response::parse(&buf, RequestKind::Other, false).expect("well-formed") {
            return r;
        }
        let n = tls.read(&mut chunk).expect("read a response");
        assert!(n > 0, "server closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
    panic!("no complete response")
}

/// Counts a streamed body's bytes and sums them (mod 2^32).
async fn count(mut body: BodyStream) -> Result<String, BodyError> {
    let (mut n, mut sum) = (0usize, 0u32);
    while let Some(c) = body.next().await {
        let c = c?;
        n += c.len();
        sum = c.iter().fold(sum, |s, &b| s.wrapping_add(u32::from(b)));
    }
    Ok(format!("n={n} sum={sum}"))
}

/// Reads one chunk of a streamed body and answers its size.
async fn first(mut body: BodyStream) -> String {
    match body.next().await {
        Some(Ok(c)) => format!("first={}", c.len()),
        other => format!("first={other:?}"),
    }
}

fn router() -> Router<()> {
    Router::new()
        .route("/hello", get(|| async { "hello over TLS\n" }))
        .route("/count", post(count))
        .route("/first", post(first))
        .route("/metrics", get(ringcore_http::metrics::prometheus))
}

fn start(tls: TlsConfig) -> common::TestServer {
    common::start_with(move |s| s.tls(tls), router)
}

/// Stops a TLS test server through its shutdown route, over TLS.
fn stop(server: common::TestServer, cfg: &Arc<ClientConfig>) {
    let mut tls = connect(server.addr, cfg);
    let r = get_over(&mut tls, common::SHUTDOWN_PATH, true);
    assert_eq!(r.status, 200);
    server.join();
}

#[test]
fn requests_over_tls_keep_alive_alpn_and_resumption() {
    let ca = make_ca();
    let (cert, key, _) = make_leaf(&ca, "leaf one");
    let dir = temp_dir("basic");
    let (c, k) = write_pair(&dir, &cert, &key);
    let server = start(TlsConfig::from_pem_files(&c, &k).expect("load PEM"));
    // A client offering only http/1.1 gets it (ALPN h2 is in http2_tls.rs).
    let cfg = client_config(&ca, &[b"http/1.1"]);
    let mut tls = connect(server.addr, &cfg);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    for _ in 0..3 {
        let r = get_over(&mut tls, "/hello", false);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello over TLS\n");
    }
    assert_eq!(tls.conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
    drop(tls);
    // The same client config again: the session is resumed.
    let mut again = connect(server.addr, &cfg);
    assert_eq!(again.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    assert_eq!(get_over(&mut again, "/hello", false).status, 200);
    drop(again);
    stop(server, &cfg);
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads until EOF, an error or `READ_TIMEOUT`; (bytes, closed before the timeout).
fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let started = Instant::now();
    while started.elapsed() < READ_TIMEOUT {
        match s.read(&mut chunk) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (got, false)
            }
            Err(_) => return (got, true), // reset: closed too
        }
    }
    (got, false)
}

#[test]
fn plaintext_to_the_tls_port_is_closed_and_a_silent_client_times_out() {
    let ca = make_ca();
    let (cert, key, _) = make_leaf(&ca, "leaf one");
    let dir = temp_dir("refuse");
    let (c, k) = write_pair(&dir, &cert, &key);
    let tls = TlsConfig::from_pem_files(&c, &k)
        .expect("load PEM")
        .handshake_timeout(Duration::from_millis(300));
    let server = start(tls);
    let cfg = client_config(&ca, &[b"http/1.1"]);

    // Plain HTTP: no HTTP response, the connection is closed (after a TLS alert).
    let mut plain = TcpStream::connect(server.addr).expect("connect");
    plain.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    plain
        .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let (got, closed) = read_until_closed(&mut plain);
    assert!(closed, "the server did not close a plaintext connection");
    assert!(!got.starts_with(b"HTTP/"), "answered plaintext: {got:?}");

    // Connects and says nothing: closed once the handshake timeout passes.
    let mut silent = TcpStream::connect(server.addr).expect("connect");
    silent.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut silent);
    let took = started.elapsed();
    assert!(closed && got.is_empty(), "silent client not closed: {got:?}");
    assert!(took >= Duration::from_millis(250), "closed too early: {took:?}");

    // The server still serves TLS clients, and counted both failed handshakes.
    let mut ok = connect(server.addr, &cfg);
    assert_eq!(get_over(&mut ok, "/hello", false).status, 200);
    let metrics = get_over(&mut ok, "/metrics", true).text();
    for reason in ["error", "timeout"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with("ringcore_http_tls_handshake_failures_total") && l.contains(reason))
            .unwrap_or_else(|| panic!("no {reason} line in {metrics}"));
        assert!(line.ends_with(" 1"), "{line}");
    }
    stop(server, &cfg);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn certificate_reload_is_seen_by_new_connections() {
    let ca = make_ca();
    let (cert1, key1, der1) = make_leaf(&ca, "leaf one");
    let (cert2, key2, der2) = make_leaf(&ca, "leaf two");
    let dir = temp_dir("reload");
    let (c, k) = write_pair(&dir, &cert1, &key1);
    let tls = TlsConfig::from_pem_files(&c, &k).expect("load PEM");
    let server = start(tls.clone());
    let cfg = client_config(&ca, &[b"http/1.1"]);
    let peer_leaf = |t: &Tls| t.conn.peer_certificates().expect("server certs")[0].to_vec();

    let mut before = connect(server.addr, &cfg);
    assert_eq!(peer_leaf(&before), der1);

    // New files, then the reload call: new connections get the new certificate; the open
    // one keeps working.
    write_pair(&dir, &cert2, &key2);
    tls.reload().expect("reload");
    assert_eq!(tls.generation(), 1);
    let mut after = connect(server.addr, &cfg);
    assert_eq!(peer_leaf(&after), der2);
    assert_eq!(get_over(&mut after, "/hello", false).status, 200);
    assert_eq!(get_over(&mut before, "/hello", false).status, 200);

    // A broken file is refused with a reason and the current certificate stays.
    std::fs::write(&c, "not a certificate").expect("write");
    let err = tls.reload().expect_err("a broken certificate file must not load");
    assert!(err.to_string().contains("cert.pem"), "{err}");
    assert_eq!(tls.generation(), 1);
    let still = connect(server.addr, &cfg);
    assert_eq!(peer_leaf(&still), der2);
    drop((before, after, still));
    stop(server, &cfg);
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads one response off a TLS stream.
fn read_over(tls: &mut Tls) -> Response {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        if let Some((r, _)) = Response::parse(&buf, RequestKind::Other, false).expect("well-formed") {
            return r;
        }
        let n = tls.read(&mut chunk).expect("read a response");
        assert!(n > 0, "server closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
    panic!("no complete response")
}

#[test]
fn a_request_body_streams_over_tls() {
    let ca = make_ca();
    let (cert, key, _) = make_leaf(&ca, "leaf stream");
    let dir = temp_dir("stream");
    let (c, k) = write_pair(&dir, &cert, &key);
    let server = start(TlsConfig::from_pem_files(&c, &k).expect("load PEM"));
    let cfg = client_config(&ca, &[b"http/1.1"]);
    let mut tls = connect(server.addr, &cfg);
    // 1 MiB minus a little (under the default body limit), chunked in 10,000-byte chunks.
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let sum = body.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
    let mut req = b"POST /count HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for c in body.chunks(10_000) {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    tls.write_all(&req).expect("send");
    tls.flush().expect("flush");
    let r = read_over(&mut tls);
    assert_eq!((r.status, r.text()), (200, format!("n={} sum={sum}", body.len())));

    // The handler answers after the first chunk of a body not sent whole yet; the rest is
    // drained and the connection serves the next request.
    tls.write_all(b"POST /first HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
        .expect("send");
    tls.flush().expect("flush");
    let r = read_over(&mut tls);
    assert_eq!((r.status, r.text()), (200, "first=10".to_string()));
    tls.write_all(&[b'x'; 90]).expect("send");
    assert_eq!(get_over(&mut tls, "/hello", false).status, 200);
    drop(tls);
    stop(server, &cfg);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn alpn_offers_h2_first_and_only_http1_without_http2() {
    let ca = make_ca();
    let (cert, key, _) = make_leaf(&ca, "leaf alpn");
    let dir = temp_dir("alpn");
    let (c, k) = write_pair(&dir, &cert, &key);
    let both = client_config(&ca, &[b"h2", b"http/1.1"]);
    let h1 = client_config(&ca, &[b"http/1.1"]);
    // HTTP/2 served (the default): a client offering both gets h2.
    let server = start(TlsConfig::from_pem_files(&c, &k).expect("load PEM"));
    let tls = connect(server.addr, &both);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    drop(tls);
    stop(server, &h1);
    // HTTP/2 off: the same client gets http/1.1, and HTTP/1.1 answers over it.
    let config = TlsConfig::from_pem_files(&c, &k).expect("load PEM");
    let server = common::start_with(move |s| s.tls(config).without_http2(), router);
    let mut tls = connect(server.addr, &both);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(get_over(&mut tls, "/hello", false).status, 200);
    drop(tls);
    stop(server, &h1);
    let _ = std::fs::remove_dir_all(dir);
}
