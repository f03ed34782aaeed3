//! An HTTP/1.1 and HTTP/2 client on the runtime: keep-alive connections pooled per core,
//! connect and request timeouts, `https` through rustls with the webpki roots (and any CA you
//! add).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ringcore_http::client::Error> {
//! use ringcore_http::client::Client;
//! let client = Client::builder().build()?; // one per core: it is `!Send`
//! let resp = client.get("http://127.0.0.1:8080/plaintext").await?;
//! assert_eq!(resp.status(), 200);
//! # Ok(()) }
//! ```
//!
//! A [`Client`] and its clones share one pool; it lives on the core that built it (`!Send`),
//! so each core has its own pool and no lock is ever taken. Responses are read with the
//! workspace's one HTTP/1 response parser (`ringcore_testkit::http1`): Content-Length,
//! chunked, close-delimited, HEAD and 1xx. A connection goes back to the pool when its
//! response was complete, the server did not ask to close, and nothing followed the
//! response. A request that fails on a *reused* connection before any byte of the answer
//! came (the server closed it while idle) is retried once on a new connection, for
//! idempotent methods only.
//!
//! HTTP/2 is opt-in: with [`ClientBuilder::http2`] an `https` connection offers ALPN `h2`
//! before `http/1.1` and, when the server picks it, becomes one multiplexed HTTP/2
//! connection per host and core (hyper's HTTP/2 client over ringcore's I/O adapter, its
//! connection task on the core); every later request to that host is a new stream on it,
//! until the server closes it. [`ClientBuilder::http2_prior_knowledge`] does the same on
//! cleartext `http` (for servers known to speak HTTP/2 there). A server that picks
//! `http/1.1` gets the HTTP/1.1 path and pool as before.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use ringcore_runtime::net::TcpStream;
use ringcore_runtime::time::timeout;
use ringcore_testkit::http1::{self, RequestKind};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::conn::Transport;
use crate::http2::client::{self as h2client, H2Sender};
use crate::tls::TlsStream;

/// Default bound on opening a connection (TCP connect and, for https, the TLS handshake).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on one request, from the first byte written to the last byte of the answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time an unused pooled connection is kept.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of idle connections kept per host.
pub const DEFAULT_MAX_IDLE_PER_HOST: usize = 32;

/// What went wrong with a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not `http://` or `https://` with a host.
    InvalidUrl(String),
    /// The connection (or its TLS handshake) could not be made.
    Connect(io::Error),
    /// Opening the connection took longer than the connect timeout.
    ConnectTimeout,
    /// The request took longer than the request timeout.
    Timeout,
    /// Reading or writing failed (a reset, a TLS error after the handshake).
    Io(io::Error),
    /// The server closed the connection before a whole response.
    Closed,
    /// The answer is not a valid HTTP/1 response.
    Malformed(String),
    /// The client's settings are unusable (a CA file that does not load).
    Config(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl(u) => write!(f, "invalid URL: {u}"),
            Error::Connect(e) => write!(f, "connect: {e}"),
            Error::ConnectTimeout => write!(f, "connect timed out"),
            Error::Timeout => write!(f, "request timed out"),
            Error::Io(e) => write!(f, "connection: {e}"),
            Error::Closed => write!(f, "connection closed before a whole response"),
            Error::Malformed(m) => write!(f, "{m}"),
            Error::Config(e) => write!(f, "client settings: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A response: status, fields, the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    version: Version,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Response {
    /// The protocol it came over: `HTTP/1.1` (or `HTTP/1.0`) or `HTTP/2.0`.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The first value of field `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every field, as received (names as sent, values trimmed).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body (de-chunked).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Settings of a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    connect_timeout: Duration,
    request_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    webpki_roots: bool,
    extra_roots: Vec<CertificateDer<'static>>,
    extra_root_files: Vec<std::path::PathBuf>,
    http2: bool,
    http2_prior_knowledge: bool,
}

impl ClientBuilder {
    /// Bound on opening a connection, TLS handshake included (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Bound on one request once connected (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// How long an unused pooled connection is kept (default [`DEFAULT_IDLE_TIMEOUT`]).
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    /// Idle connections kept per host (default [`DEFAULT_MAX_IDLE_PER_HOST`]; 0: no pooling).
    pub fn max_idle_per_host(mut self, n: usize) -> Self {
        self.max_idle_per_host = n;
        self
    }

    /// Trust the Mozilla roots of `webpki-roots` for https (default true).
    pub fn webpki_roots(mut self, on: bool) -> Self {
        self.webpki_roots = on;
        self
    }

    /// Offer HTTP/2 over TLS (ALPN `h2` before `http/1.1`; default false): a server that picks
    /// it gets one multiplexed connection per host and core (see the [module docs](self)).
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// Speak HTTP/2 on cleartext `http` connections from their first byte, without asking
    /// (default false): only for servers known to serve it (ringcore's do).
    pub fn http2_prior_knowledge(mut self, on: bool) -> Self {
        self.http2_prior_knowledge = on;
        self
    }

    /// Also trust this CA certificate (DER), e.g. a test CA.
    pub fn add_root_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(CertificateDer::from(der.into()));
        self
    }

    /// Also trust the CA certificates in this PEM file (read at [`build`](Self::build)).
    pub fn add_root_pem_file(mut self, path: impl AsRef<Path>) -> Self {
        self.extra_root_files.push(path.as_ref().to_path_buf());
        self
    }

    /// The client. Fails if a CA file does not load or a CA is not a usable certificate.
    pub fn build(self) -> Result<Client, Error> {
        let mut roots = RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        let mut extra = self.extra_roots;
        for path in &self.extra_root_files {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    Error::Config(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    ))
                })?;
            extra.extend(certs);
        }
        for cert in extra {
            roots
                .add(cert)
                .map_err(|e| Error::Config(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(io::Error::other(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = if self.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Client {
            inner: Rc::new(Inner {
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                idle_timeout: self.idle_timeout,
                max_idle_per_host: self.max_idle_per_host,
                tls: Arc::new(tls),
                pool: RefCell::new(HashMap::new()),
                h2: RefCell::new(HashMap::new()),
                http2: self.http2,
                http2_prior_knowledge: self.http2_prior_knowledge,
                opened: Cell::new(0),
                reused: Cell::new(0),
            }),
        })
    }
}

/// An HTTP/1.1 (and, opt-in, HTTP/2) client with a per-core connection pool (see the
/// [module docs](self)).
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("opened", &self.inner.opened.get())
            .field("reused", &self.inner.reused.get())
            .finish()
    }
}

struct Inner {
    connect_timeout: Duration,
    request_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    tls: Arc<ClientConfig>,
    pool: RefCell<HashMap<Key, Vec<Idle>>>,
    /// One HTTP/2 connection per host, shared by every request to it.
    h2: RefCell<HashMap<Key, H2Sender>>,
    http2: bool,
    http2_prior_knowledge: bool,
    opened: Cell<u64>,
    reused: Cell<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    https: bool,
    host: String,
    port: u16,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Conn {
    async fn write_all(&self, data: Vec<u8>) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(data).await.0,
            Conn::Tls(s) => {
                let mut data = Bytes::from(data);
                while !data.is_empty() {
                    let (res, rest) = s.write(data).await;
                    data = rest;
                    match res? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => bytes::Buf::advance(&mut data, n),
                    }
                }
                Ok(())
            }
        }
    }

    /// Appends received bytes to `buf`; 0 at EOF.
    async fn recv_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => {
                let c = s.recv().await?;
                buf.extend_from_slice(&c);
                Ok(c.len())
            }
            Conn::Tls(s) => {
                let c = Transport::recv(&**s).await?;
                buf.extend_from_slice(&c);
                Ok(c.len())
            }
        }
    }
}

/// What one attempt on one connection came to.
// Lives for one match right after the attempt; boxing the common case would cost more.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Done(Response, Option<Conn>),
    /// Failed before any byte of the answer arrived (a retry on a new connection is safe
    /// for an idempotent request).
    Untouched(Error),
    Failed(Error),
}

impl Client {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_idle_per_host: DEFAULT_MAX_IDLE_PER_HOST,
            webpki_roots: true,
            extra_roots: Vec::new(),
            extra_root_files: Vec::new(),
            http2: false,
            http2_prior_knowledge: false,
        }
    }

    /// Connections this client opened.
    pub fn connections_opened(&self) -> u64 {
        self.inner.opened.get()
    }

    /// Requests that went over a pooled (reused) connection.
    pub fn connections_reused(&self) -> u64 {
        self.inner.reused.get()
    }

    /// Idle connections in the pool now.
    pub fn idle_connections(&self) -> usize {
        self.inner.pool.borrow().values().map(Vec::len).sum()
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<Response, Error> {
        self.request(Method::GET, url, &[], Bytes::new()).await
    }

    /// `POST url` with `body`.
    pub async fn post(&self, url: &str, body: impl Into<Bytes>) -> Result<Response, Error> {
        self.request(Method::POST, url, &[], body.into()).await
    }

    /// Sends `method url` with `headers` (Host, Content-Length and Connection are the
    /// client's) and `body`; the whole response.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, Error> {
        let (key, path) = parse_url(url)?;
        let wants_h2 = if key.https {
            self.inner.http2
        } else {
            self.inner.http2_prior_knowledge
        };
        if wants_h2 {
            if let Some(sender) = self.h2_sender(&key) {
                self.inner.reused.set(self.inner.reused.get() + 1);
                return self.send_h2(sender, method, url, headers, body).await;
            }
        }
        let head = encode_request(&method, &key, &path, headers, &body);
        let kind = if method == Method::HEAD {
            RequestKind::Head
        } else {
            RequestKind::Other
        };
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
        );
        if let Some(conn) = self.take_idle(&key) {
            self.inner.reused.set(self.inner.reused.get() + 1);
            match self.attempt(conn, &head, &body, kind).await {
                Attempt::Done(resp, conn) => return Ok(self.finish(&key, resp, conn)),
                Attempt::Untouched(_) if idempotent => {}
                Attempt::Untouched(e) | Attempt::Failed(e) => return Err(e),
            }
        }
        let conn = self.connect(&key).await?;
        let conn = if wants_h2 {
            match self.start_h2(&key, conn).await? {
                Ok(sender) => return self.send_h2(sender, method, url, headers, body).await,
                Err(conn) => conn,
            }
        } else {
            conn
        };
        match self.attempt(conn, &head, &body, kind).await {
            Attempt::Done(resp, conn) => Ok(self.finish(&key, resp, conn)),
            Attempt::Untouched(e) | Attempt::Failed(e) => Err(e),
        }
    }

    /// The host's HTTP/2 connection, if one is open.
    fn h2_sender(&self, key: &Key) -> Option<H2Sender> {
        let mut h2 = self.inner.h2.borrow_mut();
        match h2.get(key) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                h2.remove(key);
                None
            }
            None => None,
        }
    }

    /// HTTP/2 on a new connection when it speaks it (TLS that negotiated `h2`, or cleartext
    /// with prior knowledge), kept for the host; the connection back otherwise.
    async fn start_h2(&self, key: &Key, conn: Conn) -> Result<Result<H2Sender, Conn>, Error> {
        let write_timeout = self.inner.request_timeout;
        let handshake = match conn {
            Conn::Tls(tls) if tls.negotiated_h2() => {
                timeout(
                    self.inner.connect_timeout,
                    h2client::handshake(*tls, write_timeout),
                )
                .await
            }
            Conn::Plain(tcp) if !key.https => {
                timeout(
                    self.inner.connect_timeout,
                    h2client::handshake(tcp, write_timeout),
                )
                .await
            }
            other => return Ok(Err(other)),
        };
        let sender = handshake
            .map_err(|_| Error::ConnectTimeout)?
            .map_err(Error::Connect)?;
        self.inner.h2.borrow_mut().insert(key.clone(), sender.clone());
        Ok(Ok(sender))
    }

    async fn send_h2(
        &self,
        mut sender: H2Sender,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::InvalidUrl(format!("{url}: {e}")))?;
        let exchange = h2client::send(&mut sender, method, uri, headers, body);
        let answer = timeout(self.inner.request_timeout, exchange)
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(Error::Io)?;
        Ok(Response {
            status: answer.status,
            version: answer.version,
            headers: answer.headers,
            body: answer.body,
        })
    }

    fn finish(&self, key: &Key, resp: Response, conn: Option<Conn>) -> Response {
        if let Some(conn) = conn {
            let mut pool = self.inner.pool.borrow_mut();
            let idle = pool.entry(key.clone()).or_default();
            if idle.len() < self.inner.max_idle_per_host {
                idle.push(Idle {
                    conn,
                    since: Instant::now(),
                });
            }
        }
        resp
    }

    fn take_idle(&self, key: &Key) -> Option<Conn> {
        let mut pool = self.inner.pool.borrow_mut();
        let idle = pool.get_mut(key)?;
        // Most recently used first; drop the ones idle too long.
        while let Some(i) = idle.pop() {
            if i.since.elapsed() < self.inner.idle_timeout {
                return Some(i.conn);
            }
        }
        None
    }

    async fn connect(&self, key: &Key) -> Result<Conn, Error> {
        let open = async {
            let tcp = TcpStream::connect((key.host.as_str(), key.port))
                .await
                .map_err(Error::Connect)?;
            let _ = tcp.set_nodelay(true);
            if !key.https {
                return Ok(Conn::Plain(tcp));
            }
            let name = ServerName::try_from(key.host.clone())
                .map_err(|e| Error::InvalidUrl(format!("{}: {e}", key.host)))?;
            let conn = ClientConnection::new(self.inner.tls.clone(), name)
                .map_err(|e| Error::Connect(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            let tls = TlsStream::new(tcp, conn.into());
            tls.handshake().await.map_err(Error::Connect)?;
            Ok(Conn::Tls(Box::new(tls)))
        };
        let conn = timeout(self.inner.connect_timeout, open)
            .await
            .map_err(|_| Error::ConnectTimeout)??;
        self.inner.opened.set(self.inner.opened.get() + 1);
        Ok(conn)
    }

    async fn attempt(&self, conn: Conn, head: &[u8], body: &Bytes, kind: RequestKind) -> Attempt {
        let mut got_any = false;
        let exchange = async {
            let mut out = Vec::with_capacity(head.len() + body.len());
            out.extend_from_slice(head);
            out.extend_from_slice(body);
            conn.write_all(out).await.map_err(Error::Io)?;
            let mut buf = Vec::with_capacity(4096);
            // Bounded by the request timeout around this loop and by the peer's bytes.
            loop {
                let n = conn.recv_into(&mut buf).await.map_err(Error::Io)?;
                let eof = n == 0;
                if !eof {
                    got_any = true;
                }
                loop {
                    match http1::Response::parse(&buf, kind, eof) {
                        Ok(Some((r, used))) if (100..200).contains(&r.status) && r.status != 101 => {
                            buf.drain(..used); // an interim answer; the final one follows
                        }
                        Ok(Some((r, used))) => return Ok((r, used == buf.len(), eof)),
                        Ok(None) if eof => return Err(Error::Closed),
                        Ok(None) => break,
                        Err(e) => return Err(Error::Malformed(e.to_string())),
                    }
                }
            }
        };
        let result = timeout(self.inner.request_timeout, exchange).await;
        let (r, nothing_after, eof) = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) if !got_any && matches!(e, Error::Io(_) | Error::Closed) => {
                return Attempt::Untouched(e)
            }
            Ok(Err(e)) => return Attempt::Failed(e),
            Err(_) => return Attempt::Failed(Error::Timeout),
        };
        let reusable = nothing_after
            && !eof
            && !r.has_close()
            && !r.close_delimited()
            && r.version == "HTTP/1.1"
            && r.status != 101;
        let status = match StatusCode::from_u16(r.status) {
            Ok(s) => s,
            Err(_) => return Attempt::Failed(Error::Malformed(format!("status {}", r.status))),
        };
        let version = if r.version == "HTTP/1.0" {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let resp = Response {
            status,
            version,
            headers: r.headers,
            body: Bytes::from(r.body),
        };
        Attempt::Done(resp, reusable.then_some(conn))
    }
}

fn parse_url(url: &str) -> Result<(Key, String), Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::InvalidUrl(format!("{url}: {e}")))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(Error::InvalidUrl(format!("{url}: not http:// or https://"))),
    };
    let host = uri
        .host()
        .ok_or_else(|| Error::InvalidUrl(format!("{url}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let path = if path.is_empty() { "/".to_string() } else { path };
    Ok((Key { https, host, port }, path))
}

fn encode_request(
    method: &Method,
    key: &Key,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: &Bytes,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    let bracket = key.host.contains(':');
    if bracket {
        out.push(b'[');
    }
    out.extend_from_slice(key.host.as_bytes());
    if bracket {
        out.push(b']');
    }
    let default_port = if key.https { 443 } else { 80 };
    if key.port != default_port {
        out.extend_from_slice(format!(":{}", key.port).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        let reserved = [
            http::header::HOST,
            http::header::CONTENT_LENGTH,
            http::header::CONNECTION,
        ];
        if reserved.contains(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let needs_length = !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if needs_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}
