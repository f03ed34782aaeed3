//! `Request::builder()`: a request made in code (tests, `Router::oneshot`), checked by the
//! same parser that reads requests off sockets.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Method, Uri, Version};

use crate::limits::Limits;
use crate::proto::Parser;
use crate::request::Request;

/// Builds a [`Request`], like `http::Request::builder()`: method (default `GET`), URI
/// (default `/`), version (default HTTP/1.1), headers, then [`body`](Self::body).
///
/// ```
/// use ringcore_http::{Method, Request};
/// let req = Request::builder()
///     .method(Method::POST)
///     .uri("/items/7?full=1")
///     .header("content-type", "application/json")
///     .body(r#"{"n":1}"#)
///     .unwrap();
/// assert_eq!((req.method(), req.path(), req.query()), (&Method::POST, "/items/7", Some("full=1")));
/// assert_eq!(req.header_str("content-length"), Some("7"));
/// ```
///
/// The request is written out as HTTP/1.1 bytes and read back by the server's own parser, so
/// it is exactly what a handler would see from a client that sent those bytes: `Host` is
/// the URI's authority (or `localhost`) unless a `host` header is given, and the framing is
/// always a `Content-Length` for the body (a given `content-length` or `transfer-encoding`
/// header is replaced). Anything the server would refuse (a bad header value, a target
/// with a space) is a [`BuildError`].
#[derive(Debug)]
pub struct RequestBuilder {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
    peer: Option<SocketAddr>,
    error: Option<String>,
}

/// Why [`RequestBuilder::body`] made no request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid request: {}", self.0)
    }
}

impl std::error::Error for BuildError {}

impl Default for RequestBuilder {
    fn default() -> Self {
        Self {
            method: Method::GET,
            uri: Uri::from_static("/"),
            version: Version::HTTP_11,
            headers: Vec::new(),
            peer: None,
            error: None,
        }
    }
}

impl RequestBuilder {
    fn fail(mut self, what: String) -> Self {
        self.error.get_or_insert(what);
        self
    }

    /// The method (`Method::POST`, or text such as `"POST"`).
    pub fn method<T>(self, method: T) -> Self
    where
        Method: TryFrom<T>,
        <Method as TryFrom<T>>::Error: Into<http::Error>,
    {
        match Method::try_from(method) {
            Ok(m) => Self { method: m, ..self },
            Err(e) => self.fail(format!("method: {}", e.into())),
        }
    }

    /// The URI: origin-form (`/path?query`) or absolute (`http://host/path`, whose
    /// authority becomes `Host`).
    pub fn uri<T>(self, uri: T) -> Self
    where
        Uri: TryFrom<T>,
        <Uri as TryFrom<T>>::Error: Into<http::Error>,
    {
        match Uri::try_from(uri) {
            Ok(u) => Self { uri: u, ..self },
            Err(e) => self.fail(format!("uri: {}", e.into())),
        }
    }

    /// `HTTP/1.1` (default) or `HTTP/1.0`.
    pub fn version(self, version: Version) -> Self {
        Self { version, ..self }
    }

    /// Adds a header field (repeated names are kept, in order).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        let name = match HeaderName::try_from(name) {
            Ok(n) => n,
            Err(e) => return self.fail(format!("header name: {}", e.into())),
        };
        match HeaderValue::try_from(value) {
            Ok(v) => {
                self.headers.push((name, v));
                self
            }
            Err(e) => self.fail(format!("header {name}: {}", e.into())),
        }
    }

    /// The client address the request reports (`Request::peer_addr`); none by default.
    pub fn peer_addr(self, addr: SocketAddr) -> Self {
        Self {
            peer: Some(addr),
            ..self
        }
    }

    /// Finishes the request with `body` (text, bytes; `""` for none).
    pub fn body(self, body: impl Into<Bytes>) -> Result<Request, BuildError> {
        if let Some(e) = self.error {
            return Err(BuildError(e));
        }
        let body: Bytes = body.into();
        let target = self.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let target = if target.is_empty() { "/" } else { target };
        let version = if self.version == Version::HTTP_10 {
            "HTTP/1.0"
        } else if self.version == Version::HTTP_11 {
            "HTTP/1.1"
        } else {
            return Err(BuildError(format!(
                "version {:?}: HTTP/1.0 or HTTP/1.1 only",
                self.version
            )));
        };
        let mut head = BytesMut::with_capacity(128 + body.len());
        head.extend_from_slice(self.method.as_str().as_bytes());
        head.extend_from_slice(b" ");
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" ");
        head.extend_from_slice(version.as_bytes());
        head.extend_from_slice(b"\r\n");
        if !self.headers.iter().any(|(n, _)| *n == HOST) {
            let host = self.uri.authority().map_or("localhost", |a| a.as_str());
            push_field(&mut head, HOST.as_str(), host.as_bytes());
        }
        for (n, v) in &self.headers {
            if *n == CONTENT_LENGTH || *n == TRANSFER_ENCODING {
                continue;
            }
            push_field(&mut head, n.as_str(), v.as_bytes());
        }
        let mut len = itoa::Buffer::new();
        push_field(
            &mut head,
            CONTENT_LENGTH.as_str(),
            len.format(body.len()).as_bytes(),
        );
        head.extend_from_slice(b"\r\n");
        let limits = Limits {
            max_body_bytes: body.len().max(Limits::default().max_body_bytes),
            ..Limits::default()
        };
        let mut parser = Parser::new(limits);
        parser.push(&head);
        parser.push(&body);
        match parser.next_request() {
            Ok(Some(raw)) => Ok(Request::new(raw, self.peer, Instant::now())),
            Ok(None) => Err(BuildError("incomplete after writing it out".into())),
            Err(e) => Err(BuildError(e.to_string())),
        }
    }
}

fn push_field(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
