//! Testing without ceremony: a server on a port of its own with a blocking client
//! ([`TestServer`]), and helpers to read a [`Response`] that
//! [`Router::oneshot`](crate::Router::oneshot) returned.
//!
//! Two ways to test a router:
//!
//! - **In process, no socket**: build a [`Request`](crate::Request) with
//!   [`Request::builder`](crate::Request::builder) and call
//!   [`router.oneshot(req).await`](crate::Router::oneshot) on a ringcore core (inside
//!   `#[ringcore_http::runtime::test(crate = ringcore_http::runtime)]` or
//!   [`block_on`](ringcore_runtime::block_on_with)): routing, middleware and handler run as
//!   for a request off the wire; the connection layer (framing, keep-alive, limits) does not.
//! - **Over a real socket**: [`TestServer::start`] serves the router on `127.0.0.1:0` on its
//!   own one-core runtime thread; [`TestServer::get`], [`TestServer::post`] and
//!   [`TestServer::send`] are blocking calls that read the response with the workspace's
//!   HTTP/1 client parser (`ringcore_testkit::http1`, independent of the server's own).
//!   Dropping the server stops it.
//!
//! ```
//! use ringcore_http::test::TestServer;
//! use ringcore_http::{get, Router};
//!
//! let server = TestServer::start(|| Router::new().route("/", get(|| async { "hi" })));
//! let r = server.get("/");
//! assert_eq!((r.status, r.text().as_str()), (200, "hi"));
//! ```
//!
//! Everything here panics (with what was received) on a failure: it is for tests. Every
//! wait is bounded: a read waits at most [`READ_TIMEOUT`], start and stop a few seconds.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcore_runtime::{Cores, ShutdownHandle};
use ringcore_testkit::http1::RequestKind;

pub use ringcore_testkit::http1::Response as TestResponse;

use crate::response::{Body, Response};
use crate::router::Router;
use crate::server::{Server, ShutdownReport};

/// How long a [`TestClient`] read waits before it fails the test.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`TestServer::start`] waits for the server to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping waits for the server thread.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The body of a response as bytes: a full body at once, a streaming one read to its end
/// (call it on the core that made the response).
pub async fn body_bytes(resp: &Response) -> Bytes {
    match resp.body() {
        Body::Empty => Bytes::new(),
        Body::Full(b) => b.clone(),
        Body::Stream(rx) => {
            let mut all = BytesMut::new();
            while let Some(chunk) = rx.next().await {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    }
}

/// The body of a response as text (lossy UTF-8); see [`body_bytes`].
pub async fn body_text(resp: &Response) -> String {
    String::from_utf8_lossy(&body_bytes(resp).await).into_owned()
}

/// The first value of header `name` in `resp` as text (`content-type` included).
pub fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    if name.eq_ignore_ascii_case("content-type") {
        return resp.content_type().and_then(|v| v.to_str().ok());
    }
    resp.headers()
        .iter()
        .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.to_str().ok())
}

/// A server on `127.0.0.1:0` (one core, signals left to the test harness) on its own thread,
/// with a blocking client. Stops, gracefully, on drop (or [`stop`](Self::stop)).
pub struct TestServer {
    addr: SocketAddr,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<ShutdownReport>>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").field("addr", &self.addr).finish()
    }
}

impl TestServer {
    /// Serves the router `factory` builds.
    ///
    /// # Panics
    ///
    /// If the server does not listen within a few seconds (its error is in the message).
    pub fn start<S: 'static>(factory: impl Fn() -> Router<S> + Send + Sync + 'static) -> Self {
        Self::start_with(|s| s, factory)
    }

    /// Serves the router `factory` builds on a server adjusted by `configure` (limits,
    /// graceful timeout, ...; it must keep the address and one core).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with<S: 'static>(
        configure: impl FnOnce(Server) -> Server + Send + 'static,
        factory: impl Fn() -> Router<S> + Send + Sync + 'static,
    ) -> Self {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (handle_tx, handle_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let server = Server::bind("127.0.0.1:0")
                .cores(Cores::Count(1))
                .runtime(|b| b.handle_signals(false))
                .on_listening(move |a| {
                    let _ = addr_tx.send(a);
                })
                .with_shutdown_handle(move |h| {
                    let _ = handle_tx.send(h);
                });
            configure(server).serve(factory)
        });
        let addr = addr_rx.recv_timeout(START_TIMEOUT);
        let handle = handle_rx.recv_timeout(Duration::from_millis(100));
        match (addr, handle) {
            (Ok(addr), Ok(handle)) => TestServer {
                addr,
                handle,
                thread: Some(thread),
            },
            _ => {
                let why = if thread.is_finished() {
                    match thread.join() {
                        Ok(Ok(r)) => format!("it stopped at once ({r})"),
                        Ok(Err(e)) => format!("{e}"),
                        Err(_) => "its thread panicked".to_string(),
                    }
                } else {
                    format!("not listening after {START_TIMEOUT:?}")
                };
                panic!("TestServer did not start: {why}");
            }
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new connection (keep-alive: send several requests on it).
    pub fn client(&self) -> TestClient {
        TestClient::connect(self.addr)
    }

    /// `GET path` on a new connection.
    pub fn get(&self, path: &str) -> TestResponse {
        self.client().get(path)
    }

    /// `POST path` with `body` (`Content-Type: application/json` if it starts with `{` or
    /// `[`, else none) on a new connection.
    pub fn post(&self, path: &str, body: impl AsRef<[u8]>) -> TestResponse {
        self.client().post(path, body)
    }

    /// Sends raw request bytes on a new connection and reads one response.
    pub fn send(&self, raw: impl AsRef<[u8]>) -> TestResponse {
        self.client().send(raw)
    }

    /// Stops the server (graceful) and returns its report.
    ///
    /// # Panics
    ///
    /// If it does not stop within 15 s or its `serve` returned an error.
    pub fn stop(mut self) -> ShutdownReport {
        match self.shut_down() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(e))) => panic!("the test server failed: {e}"),
            Some(Err(())) => panic!("the test server's thread panicked"),
            None => panic!("the test server did not stop within {STOP_TIMEOUT:?}"),
        }
    }

    /// Asks the server to stop and waits (bounded) for its thread.
    fn shut_down(&mut self) -> Option<Result<io::Result<ShutdownReport>, ()>> {
        let t = self.thread.take()?;
        self.handle.shutdown();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !t.is_finished() {
            if Instant::now() >= deadline {
                return None; // left running: the process ends it
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Some(t.join().map_err(|_| ()))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// A blocking HTTP/1.1 client over one connection to a [`TestServer`].
#[derive(Debug)]
pub struct TestClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl TestClient {
    /// Connects to `addr` (`TCP_NODELAY`, reads time out after [`READ_TIMEOUT`]).
    ///
    /// # Panics
    ///
    /// If it cannot connect within 5 s.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> TestResponse {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
    }

    /// `POST path` with `body` (see [`TestServer::post`]).
    pub fn post(&mut self, path: &str, body: impl AsRef<[u8]>) -> TestResponse {
        let body = body.as_ref();
        let json = matches!(body.first(), Some(b'{' | b'['));
        let ct = if json {
            "Content-Type: application/json\r\n"
        } else {
            ""
        };
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\n{ct}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.send(req)
    }

    /// Writes raw request bytes and reads one response (not to a HEAD request).
    ///
    /// # Panics
    ///
    /// On a write or read error, a timeout, a malformed response, or a close before it.
    pub fn send(&mut self, raw: impl AsRef<[u8]>) -> TestResponse {
        if let Err(e) = self.stream.write_all(raw.as_ref()) {
            panic!("write the request: {e}");
        }
        self.read_response()
    }

    /// Reads the next response (not to a HEAD request).
    ///
    /// # Panics
    ///
    /// As [`send`](Self::send).
    pub fn read_response(&mut self) -> TestResponse {
        let mut eof = false;
        loop {
            match TestResponse::parse(&self.buf, RequestKind::Other, eof) {
                Ok(Some((r, used))) => {
                    self.buf.drain(..used);
                    return r;
                }
                Ok(None) if eof => panic!(
                    "the server closed before a whole response; received: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(None) => {}
                Err(e) => panic!("{e}; received: {:?}", String::from_utf8_lossy(&self.buf)),
            }
            let mut tmp = [0u8; 16 * 1024];
            match self.stream.read(&mut tmp) {
                Ok(0) => eof = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => panic!(
                    "reading a response: {e}; received: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }
}
