//! `ringcore_runtime::compat::Compat` under real protocol code over real sockets: hyper's
//! HTTP/1 client (through `hyper::rt::Read`/`Write`) and tokio's `AsyncRead`/`AsyncWrite`
//! talking to ringcore's own HTTP server on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use ringcore_http::runtime::compat::Compat;
use ringcore_http::runtime::net::TcpStream;
use ringcore_http::runtime::spawn_local;
use ringcore_http::runtime::time::timeout;
use ringcore_http::{get, post, Router};
use ringcore_testkit::http1::{RequestKind, Response};
use ringcore_testkit::rt::run1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);

fn router() -> Router<()> {
    Router::new()
        .route("/hello", get(|| async { "hello over the adapter\n" }))
        .route("/echo", post(|body: Bytes| async move { body }))
}

/// hyper's client sends three requests on one kept-alive connection through the adapter,
/// one with a body far larger than a write's slice and a receive buffer.
#[test]
fn hyper_http1_client_over_the_adapter() {
    let server = common::start(router);
    let addr = server.addr;
    let out: Result<Vec<(u16, Vec<u8>)>, String> = run1(move || async move {
        timeout(LIMIT, hyper_requests(addr))
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    });
    server.stop();
    let out = out.expect("hyper exchange");
    assert_eq!(out[0], (200, b"hello over the adapter\n".to_vec()));
    assert_eq!(out[1].0, 200);
    assert_eq!(out[1].1, big_body(), "the 300 KB body came back intact");
    assert_eq!(out[2], (200, b"hello over the adapter\n".to_vec()));
}

fn big_body() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

async fn hyper_requests(addr: SocketAddr) -> Result<Vec<(u16, Vec<u8>)>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(Compat::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn_task = spawn_local(conn);
    let mut out = Vec::new();
    for (method, path, body) in [
        ("GET", "/hello", Vec::new()),
        ("POST", "/echo", big_body()),
        ("GET", "/hello", Vec::new()),
    ] {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        out.push((status, body.to_vec()));
    }
    drop(sender);
    // With the sender gone, hyper closes the connection and the connection task ends.
    conn_task
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// tokio's `AsyncWriteExt::write_all` / `shutdown` and `AsyncReadExt::read_to_end` through the
/// adapter: a request written in small pieces, the response read to EOF.
#[test]
fn tokio_io_traits_over_the_adapter() {
    let server = common::start(router);
    let addr = server.addr;
    let raw: Result<Vec<u8>, String> = run1(move || async move {
        let exchange = async {
            let stream = TcpStream::connect(addr).await?;
            let mut io = Compat::new(stream);
            let req = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            for piece in req.chunks(7) {
                io.write_all(piece).await?;
                io.flush().await?;
            }
            let mut got = Vec::new();
            io.read_to_end(&mut got).await?;
            // Reading after EOF stays at EOF.
            let mut more = [0u8; 16];
            assert_eq!(io.read(&mut more).await?, 0);
            io.shutdown().await?;
            Ok::<_, std::io::Error>(got)
        };
        match timeout(LIMIT, exchange).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    });
    server.stop();
    let raw = raw.expect("tokio exchange");
    let (resp, used) = Response::parse(&raw, RequestKind::Other, true)
        .expect("well-formed")
        .expect("complete");
    assert_eq!(used, raw.len());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello over the adapter\n");
    assert!(resp.has_close());
}
