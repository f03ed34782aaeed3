//! Shared helpers for the HTTP integration tests: a server on its own thread (one core,
//! signals left alone, stopped through a shutdown route), a raw-bytes client over
//! `std::net::TcpStream` reading responses with the workspace's one client-side parser
//! (`ringcore_testkit::http1`: fields, Content-Length, chunked, close-delimited, HEAD, 1xx),
//! which shares no code with the server's request parser.
//!
//! Every wait is bounded: reads time out after [`READ_TIMEOUT`], server start and stop after
//! a few seconds.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringcore_testkit::http1::RequestKind;
pub(crate) use ringcore_testkit::http1::Response;

use ringcore_http::runtime::time::sleep;
use ringcore_http::runtime::{spawn_local, Cores};
use ringcore_http::{any, get, Body, Limits, Path, Request, Router, Server, ShutdownReport, StatusCode};

/// The route every test server gets: its handler asks the runtime to shut down.
pub(crate) const SHUTDOWN_PATH: &str = "/__shutdown";
/// How long a client read waits before the test fails.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);

async fn shutdown_handler() -> &'static str {
    ringcore_http::runtime::request_shutdown();
    "shutting down\n"
}

/// A server running on its own thread; stop it with [`TestServer::stop`].
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    thread: Option<JoinHandle<io::Result<ShutdownReport>>>,
}

/// Starts a server with default limits.
pub(crate) fn start<S: 'static>(factory: impl Fn() -> Router<S> + Send + Sync + 'static) -> TestServer {
    start_with(|s| s, factory)
}

/// Starts a server with `limits`.
pub(crate) fn start_limits<S: 'static>(
    limits: Limits,
    factory: impl Fn() -> Router<S> + Send + Sync + 'static,
) -> TestServer {
    start_with(move |s| s.limits(limits), factory)
}

/// Starts a server on 127.0.0.1 (one core, no signal handling), adjusted by `configure`, with
/// the router from `factory` plus the shutdown route.
pub(crate) fn start_with<S: 'static>(
    configure: impl FnOnce(Server) -> Server + Send + 'static,
    factory: impl Fn() -> Router<S> + Send + Sync + 'static,
) -> TestServer {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let server = Server::bind("127.0.0.1:0")
            .cores(Cores::Count(1))
            .runtime(|b| b.handle_signals(false))
            .on_listening(move |a| {
                let _ = tx.send(a);
            });
        configure(server).serve(move || factory().route(SHUTDOWN_PATH, get(shutdown_handler)))
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(addr) => TestServer {
            addr,
            thread: Some(thread),
        },
        Err(_) => {
            let why = if thread.is_finished() {
                format!("{:?}", thread.join())
            } else {
                "still starting after 10 s".to_string()
            };
            panic!("test server did not start: {why}");
        }
    }
}

impl TestServer {
    /// A new connection to this server.
    pub(crate) fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends the shutdown request and checks it was answered.
    pub(crate) fn trigger_shutdown(&self) {
        let mut c = self.client();
        c.send(format!("GET {SHUTDOWN_PATH} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 200, "shutdown route: {}", r.head_raw);
    }

    /// Waits (at most 15 s) for the server thread to finish and returns its report.
    pub(crate) fn join(mut self) -> ShutdownReport {
        let Some(t) = self.thread.take() else {
            panic!("server already joined");
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !t.is_finished() {
            assert!(
                Instant::now() < deadline,
                "server did not stop within 15 s of shutdown"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        match t.join() {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => panic!("serve returned an error: {e}"),
            Err(_) => panic!("server thread panicked"),
        }
    }

    /// Shuts down and returns the report.
    pub(crate) fn stop(self) -> ShutdownReport {
        self.trigger_shutdown();
        self.join()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that failed before `stop`: ask the server to stop, without panicking again.
        if self.thread.is_some() {
            if let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) {
                let req = format!("GET {SHUTDOWN_PATH} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                let _ = s.write_all(req.as_bytes());
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut sink = [0u8; 512];
                let _ = s.read(&mut sink);
            }
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Orderly close: read returned 0.
    Fin,
    /// The peer reset the connection (closed with unread data).
    Reset,
}

/// A raw-bytes HTTP client over one connection, keeping the bytes of responses not yet parsed.
pub(crate) struct Client {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
    /// How many successful `read` calls returned data.
    pub(crate) reads: usize,
}

impl Client {
    /// Connects with [`READ_TIMEOUT`] and `TCP_NODELAY`.
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buf: Vec::new(),
            reads: 0,
        }
    }

    /// A client over an already connected stream (e.g. one whose clone another thread
    /// writes to).
    pub(crate) fn from_stream(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
        Self {
            stream,
            buf: Vec::new(),
            reads: 0,
        }
    }

    /// Writes all of `data`; panics on error.
    pub(crate) fn send(&mut self, data: &[u8]) {
        self.stream
            .write_all(data)
            .unwrap_or_else(|e| panic!("write {:?}: {e}", show(data)));
    }

    /// Writes all of `data`.
    pub(crate) fn try_send(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)
    }

    /// Writes `data` in pieces of `piece` bytes with `pause` between them.
    pub(crate) fn send_slowly(&mut self, data: &[u8], piece: usize, pause: Duration) {
        for (i, p) in data.chunks(piece.max(1)).enumerate() {
            if i > 0 {
                std::thread::sleep(pause);
            }
            self.send(p);
        }
    }

    /// Sets the read timeout.
    pub(crate) fn set_read_timeout(&mut self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).expect("read timeout");
    }

    /// Bytes received but not parsed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// One read into the buffer: Ok(0) is EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 65536];
        // A signal another test of this binary raised (the servers' SIGINT/SIGTERM handling)
        // may interrupt the read: retry it, as `read_exact` does.
        let n = loop {
            match self.stream.read(&mut tmp) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n > 0 {
            self.reads += 1;
            self.buf.extend_from_slice(&tmp[..n]);
        }
        Ok(n)
    }

    /// Reads the next response to a request other than HEAD.
    pub(crate) fn read_response(&mut self) -> Response {
        self.read_response_with(false)
    }

    /// Reads the next response to a HEAD request (no body whatever the fields say).
    pub(crate) fn read_head_response(&mut self) -> Response {
        self.read_response_with(true)
    }

    /// Reads the next response (a 1xx too: it is returned like any other); `no_body` for a
    /// response to HEAD. Parsed by the workspace's one client-side parser,
    /// `ringcore_testkit::http1` (independent of the server's request parser); panics on a
    /// malformed response, a timeout, or a close before the response's end.
    pub(crate) fn read_response_with(&mut self, no_body: bool) -> Response {
        let kind = if no_body {
            RequestKind::Head
        } else {
            RequestKind::Other
        };
        let mut eof = false;
        loop {
            match Response::parse(&self.buf, kind, eof) {
                Ok(Some((r, used))) => {
                    self.buf.drain(..used);
                    return r;
                }
                Ok(None) if eof => panic!(
                    "connection closed while reading a response; received so far: {:?}",
                    show(&self.buf)
                ),
                Ok(None) => {}
                Err(e) => panic!("{e}; received: {:?}", show(&self.buf)),
            }
            match self.fill() {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => panic!(
                    "error while reading a response ({e}, kind {:?}); received so far: {:?}",
                    e.kind(),
                    show(&self.buf)
                ),
            }
        }
    }

    /// Waits for the connection to end and says how; panics if any byte arrives instead (or
    /// was left unparsed) or nothing happens within the read timeout.
    pub(crate) fn read_close(&mut self) -> Closed {
        assert!(
            self.buf.is_empty(),
            "expected the connection to close, but more bytes came: {:?}",
            show(&self.buf)
        );
        match self.fill() {
            Ok(0) => Closed::Fin,
            Ok(_) => panic!(
                "expected the connection to close, but more bytes came: {:?}",
                show(&self.buf)
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Closed::Reset,
            Err(e) => panic!("expected the connection to close, got {e} (kind {:?})", e.kind()),
        }
    }

    /// Asserts the connection is closed (orderly or reset) with no further bytes.
    pub(crate) fn expect_closed(&mut self) {
        self.read_close();
    }

    /// Asserts that nothing arrives (and the connection stays open) for `wait`.
    pub(crate) fn expect_silence(&mut self, wait: Duration) {
        self.set_read_timeout(wait);
        match self.fill() {
            Ok(0) => panic!("connection closed, expected it to stay open"),
            Ok(_) => panic!("unexpected bytes: {:?}", show(&self.buf)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("expected silence, got {e}"),
        }
        self.set_read_timeout(READ_TIMEOUT);
    }

    /// Reads everything until the peer closes (bounded by the read timeout per read).
    pub(crate) fn read_until_close(&mut self) -> (Vec<u8>, Closed) {
        loop {
            match self.fill() {
                Ok(0) => return (std::mem::take(&mut self.buf), Closed::Fin),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return (std::mem::take(&mut self.buf), Closed::Reset)
                }
                Err(e) => panic!("reading until close: {e}; got {:?}", show(&self.buf)),
            }
        }
    }
}

/// Position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes as an escaped string for messages (long runs shortened).
pub(crate) fn show(b: &[u8]) -> String {
    let mut s = String::new();
    let shown = if b.len() > 600 { &b[..600] } else { b };
    for &c in shown {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    if b.len() > 600 {
        let _ = write!(s, "... ({} bytes)", b.len());
    }
    s
}

/// Sends `request` on a new connection and checks the answer is exactly one `status`
/// response carrying `Connection: close`, after which the connection closes with nothing
/// more. Returns the response.
pub(crate) fn expect_rejected(addr: SocketAddr, request: &[u8], status: u16) -> Response {
    let mut c = Client::connect(addr);
    // The server may close (even reset) before it read everything: ignore write errors.
    let _ = c.try_send(request);
    let r = c.read_response();
    assert_eq!(
        r.status,
        status,
        "request {:?}: expected {status}, got {:?} with body {:?}",
        show(request),
        r.head_raw,
        r.text()
    );
    assert!(
        r.has_close(),
        "request {:?}: the {status} must carry Connection: close; got {:?}",
        show(request),
        r.head_raw
    );
    let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.read_close()));
    if let Err(p) = closed {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("request {:?}: after the {status}: {msg}", show(request));
    }
    r
}

/// Sends `request` on a new connection and returns the (first) response.
pub(crate) fn roundtrip(addr: SocketAddr, request: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.send(request);
    c.read_response()
}

/// The router most tests use:
///
/// - `GET /` → `root`
/// - `GET /p/{*rest}` → the request target
/// - any `/echo` → the request body
/// - any `/headers` → one `name: value` line per request field, then `body: N`
/// - `GET /stream` → `part0;`..`part4;` from a `Body::channel` with 20 ms sleeps
/// - `GET /slow/{ms}` → `slept` after sleeping `ms`
/// - `GET /admin` → `ADMIN` (to detect smuggled requests)
/// - `GET /nocontent` → 204
/// - `GET /big/{n}` → `n` bytes of `x`
pub(crate) fn test_router() -> Router {
    Router::new()
        .route("/", get(|| async { "root" }))
        .route(
            "/p/{*rest}",
            get(|req: Request| async move { req.uri().to_string() }),
        )
        .route("/echo", any(|body: bytes::Bytes| async move { body }))
        .route("/headers", any(headers_handler))
        .route("/stream", get(stream_handler))
        .route("/slow/{ms}", get(slow_handler))
        .route("/admin", get(|| async { "ADMIN" }))
        .route("/nocontent", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/big/{n}",
            get(|Path(n): Path<usize>| async move { vec![b'x'; n] }),
        )
}

async fn headers_handler(req: Request) -> String {
    let mut out = String::new();
    for (n, v) in req.headers() {
        let _ = writeln!(out, "{}: {}", n.to_ascii_lowercase(), String::from_utf8_lossy(v));
    }
    let _ = writeln!(out, "body: {}", req.body().len());
    out
}

/// Streams `part0;`..`part4;` with short sleeps between them.
pub(crate) async fn stream_handler() -> Body {
    let (tx, body) = Body::channel();
    spawn_local(async move {
        for i in 0..5 {
            tx.send(format!("part{i};"));
            sleep(Duration::from_millis(20)).await;
        }
        // Dropping `tx` ends the body.
    })
    .detach();
    body
}

/// The body `stream_handler` produces.
pub(crate) const STREAM_BODY: &str = "part0;part1;part2;part3;part4;";

async fn slow_handler(Path(ms): Path<u64>) -> &'static str {
    sleep(Duration::from_millis(ms)).await;
    "slept"
}

/// A GET request for `path` with `Host`.
pub(crate) fn get_req(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}
