//! `Request`: a parsed request over its own head bytes (no per-header allocation).

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Version};

use crate::proto::RawRequest;

/// An HTTP request as a handler sees it.
///
/// Header names and values are views into the request's head bytes, which were split off the
/// connection buffer without copying.
#[derive(Clone, Default)]
pub struct Request {
    raw: Option<RawRequest>,
    params: Vec<(String, String)>,
    peer: Option<SocketAddr>,
    arrived: Option<Instant>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("uri", &self.uri())
            .field("version", &self.version())
            .field("body_len", &self.body().len())
            .finish()
    }
}

static EMPTY: Bytes = Bytes::new();

impl Request {
    /// A [`RequestBuilder`](crate::RequestBuilder) for a request made in code, for
    /// [`Router::oneshot`](crate::Router::oneshot) and tests.
    pub fn builder() -> crate::RequestBuilder {
        crate::RequestBuilder::default()
    }

    pub(crate) fn new(raw: RawRequest, peer: Option<SocketAddr>, arrived: Instant) -> Self {
        Self {
            raw: Some(raw),
            params: Vec::new(),
            peer,
            arrived: Some(arrived),
        }
    }

    /// When the bytes that completed this request reached its core (the loop turn that
    /// collected them, see `ringcore_runtime::time::loop_now`). Time since then is time
    /// spent waiting on the core plus handling; metrics and load shedding use it.
    pub fn received_at(&self) -> Option<Instant> {
        self.arrived
    }

    pub(crate) fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.raw.as_ref().map_or(&Method::GET, |r| &r.head.method)
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn version(&self) -> Version {
        self.raw.as_ref().map_or(Version::HTTP_11, |r| r.head.version)
    }

    /// The request target as sent (origin-form `/path?query`, or absolute-form).
    pub fn uri(&self) -> &str {
        self.raw
            .as_ref()
            .map_or("", |r| std::str::from_utf8(r.target()).unwrap_or(""))
    }

    /// The path (without the query), for origin-form and absolute-form targets: for
    /// `http://host?q` (no path) it is `/`.
    pub fn path(&self) -> &str {
        let Some(raw) = &self.raw else { return "" };
        // The scanner admitted only visible ASCII in the target.
        let pq = std::str::from_utf8(raw.path_and_query()).unwrap_or("");
        let path = match pq.as_bytes().iter().position(|&b| b == b'?') {
            Some(q) => &pq[..q],
            None => pq,
        };
        if path.is_empty() {
            "/"
        } else {
            path
        }
    }

    /// The query string after `?`, if any (for absolute-form, the first `?` after the
    /// authority).
    pub fn query(&self) -> Option<&str> {
        let raw = self.raw.as_ref()?;
        std::str::from_utf8(raw.path_and_query())
            .ok()?
            .split_once('?')
            .map(|(_, q)| q)
    }

    /// The first value of header `name` (case-insensitive), as bytes.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The first value of header `name` as text, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// All header fields in order (names as sent; compare case-insensitively).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.raw
            .iter()
            .flat_map(|r| r.headers())
            .map(|(n, v)| (std::str::from_utf8(n).unwrap_or(""), v))
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.header_str("content-type")
    }

    /// The request body (decoded if it was chunked).
    pub fn body(&self) -> &Bytes {
        self.raw.as_ref().map_or(&EMPTY, |r| &r.body)
    }

    /// Takes the body out of the request.
    pub fn into_body(self) -> Bytes {
        self.raw.map(|r| r.body).unwrap_or_default()
    }

    /// The value of path parameter `name` (from a route such as `/items/{id}`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All path parameters in route order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The client's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Whether the connection stays open after this request (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    pub fn keep_alive(&self) -> bool {
        self.raw.as_ref().is_some_and(|r| r.head.keep_alive)
    }
}
