//! `Request`: a parsed request over its own head bytes (no per-header allocation), split into
//! [`Parts`] (what parts extractors read) and the body.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Version};

use crate::body_stream::BodyStream;
use crate::proto::parser::RequestHead;
use crate::proto::RawRequest;

/// A request's body: bytes received whole before the handler ran (every request but those
/// routed to a handler that takes a [`BodyStream`]), or a stream read from the connection as
/// the handler consumes it.
///
/// Code that makes requests (tests, other protocols) gives `Full` bytes; `From<Bytes>` and
/// the other byte types make one.
pub enum RequestBody {
    /// The whole body (decoded if it was chunked).
    Full(Bytes),
    /// The body, read as it is consumed.
    Stream(BodyStream),
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestBody::Full(b) => f.debug_tuple("Full").field(&b.len()).finish(),
            RequestBody::Stream(s) => f.debug_tuple("Stream").field(s).finish(),
        }
    }
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::Full(Bytes::new())
    }
}

impl From<Bytes> for RequestBody {
    fn from(b: Bytes) -> Self {
        RequestBody::Full(b)
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(b: Vec<u8>) -> Self {
        RequestBody::Full(b.into())
    }
}

impl From<&'static [u8]> for RequestBody {
    fn from(b: &'static [u8]) -> Self {
        RequestBody::Full(Bytes::from_static(b))
    }
}

impl From<BodyStream> for RequestBody {
    fn from(s: BodyStream) -> Self {
        RequestBody::Stream(s)
    }
}

impl RequestBody {
    /// The body as a stream (one chunk if it is `Full`).
    pub fn into_stream(self) -> BodyStream {
        match self {
            RequestBody::Full(b) => BodyStream::from(b),
            RequestBody::Stream(s) => s,
        }
    }

    /// The whole body: `Full` at once, a stream read to its end.
    pub async fn collect(self) -> Result<Bytes, crate::BodyError> {
        match self {
            RequestBody::Full(b) => Ok(b),
            RequestBody::Stream(s) => s.collect().await,
        }
    }
}

/// The path a router matches, from a request's path-and-query: up to the `?`, `/` if
/// empty.
pub(crate) fn route_path(pq: &[u8]) -> &str {
    // The scanner admitted only visible ASCII in the target.
    std::str::from_utf8(route_path_bytes(pq)).unwrap_or("")
}

/// [`route_path`] as bytes: the path before any `?`, or `/` when that is empty.
pub(crate) fn route_path_bytes(pq: &[u8]) -> &[u8] {
    or_root(match pq.iter().position(|&b| b == b'?') {
        Some(q) => &pq[..q],
        None => pq,
    })
}

/// The path routed on: `path`, or `/` when it is empty (absolute-form without a path).
pub(crate) fn or_root(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        b"/"
    } else {
        path
    }
}

/// What [`Request::body`] returns for a streamed body.
static NO_BYTES: Bytes = Bytes::new();

/// Values of any type, one per type, attached to a request (by middleware, for handlers to
/// read with [`Extension`](crate::extract::Extension)). Per core: no `Send` bound. Costs
/// nothing until the first insert.
#[derive(Clone, Default)]
pub struct Extensions {
    // Boxed: an empty `Extensions` is one word in every request (which is moved through each
    // handler), not a 48-byte `HashMap` with its hasher keys.
    #[allow(clippy::box_collection)]
    map: Option<Box<HashMap<TypeId, Rc<dyn Any>>>>,
}

/// Dropping the (usual) empty map is a test of one word, inline; a map is freed out of line
/// (the drop glue's call cost about 17 instructions a request under
/// `scripts/callgrind-http.sh`).
impl Drop for Extensions {
    #[inline]
    fn drop(&mut self) {
        if let Some(map) = self.map.take() {
            free_map(map);
        }
    }
}

#[inline(never)]
#[allow(clippy::box_collection)] // the field's type (see there)
fn free_map(map: Box<HashMap<TypeId, Rc<dyn Any>>>) {
    drop(map);
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.map.as_ref().map_or(0, |m| m.len()))
            .finish()
    }
}

impl Extensions {
    /// Attaches `value`, returning the one of the same type it replaces.
    pub fn insert<T: 'static>(&mut self, value: T) -> Option<Rc<T>> {
        self.map
            .get_or_insert_with(Box::default)
            .insert(TypeId::of::<T>(), Rc::new(value))
            .and_then(|old| old.downcast::<T>().ok())
    }

    /// The value of type `T`, if one was attached.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.map
            .as_ref()?
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
    }

    /// Detaches the value of type `T`.
    pub fn remove<T: 'static>(&mut self) -> Option<Rc<T>> {
        self.map
            .as_mut()?
            .remove(&TypeId::of::<T>())
            .and_then(|v| v.downcast::<T>().ok())
    }
}

/// Everything of a request but its body: method, target, headers, path parameters, peer,
/// extensions. Parts extractors ([`FromRequestParts`](crate::extract::FromRequestParts)) read
/// it; any number of them may run before the one body extractor.
#[derive(Clone, Default)]
pub struct Parts {
    /// The request line and fields (none for a `Parts::default()`).
    head: Option<RequestHead>,
    params: Vec<(String, String)>,
    peer: Option<SocketAddr>,
    arrived: Option<Instant>,
    extensions: Extensions,
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts")
            .field("method", &self.method())
            .field("uri", &self.uri())
            .field("version", &self.version())
            .finish()
    }
}

/// An HTTP request as a handler sees it: [`Parts`] and the body ([`RequestBody`]: bytes
/// received whole, or a [`BodyStream`] for handlers that take one).
///
/// Header names and values are views into the request's head bytes, which were split off the
/// connection buffer without copying. The accessors of [`Parts`] are repeated here.
#[derive(Default)]
pub struct Request {
    parts: Parts,
    body: RequestBody,
}

/// A copy of the request; a streamed body has one reader, so the copy of a request whose
/// body is streamed has an empty body.
impl Clone for Request {
    fn clone(&self) -> Self {
        Self {
            parts: self.parts.clone(),
            body: match &self.body {
                RequestBody::Full(b) => RequestBody::Full(b.clone()),
                RequestBody::Stream(_) => RequestBody::default(),
            },
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("uri", &self.uri())
            .field("version", &self.version())
            .field("body", &self.body)
            .finish()
    }
}

impl Request {
    /// A [`RequestBuilder`](crate::RequestBuilder) for a request made in code, for
    /// [`Router::oneshot`](crate::Router::oneshot) and tests.
    pub fn builder() -> crate::RequestBuilder {
        crate::RequestBuilder::default()
    }

    pub(crate) fn new(raw: RawRequest, peer: Option<SocketAddr>, arrived: Instant) -> Self {
        Self::routed(raw, peer, arrived, Vec::new())
    }

    /// A request read off a connection whose route and path parameters are known.
    #[inline(always)]
    pub(crate) fn routed(
        raw: RawRequest,
        peer: Option<SocketAddr>,
        arrived: Instant,
        params: Vec<(String, String)>,
    ) -> Self {
        Self::read(raw.head, peer, arrived, params, RequestBody::Full(raw.body))
    }

    /// A request read off a connection whose body arrives through `body`.
    pub(crate) fn with_body(
        raw: RawRequest,
        peer: Option<SocketAddr>,
        arrived: Instant,
        body: RequestBody,
    ) -> Self {
        Self::read(raw.head, peer, arrived, Vec::new(), body)
    }

    /// A request read off a connection, from all its pieces.
    #[inline(always)]
    fn read(
        head: RequestHead,
        peer: Option<SocketAddr>,
        arrived: Instant,
        params: Vec<(String, String)>,
        body: RequestBody,
    ) -> Self {
        Self {
            parts: Parts {
                head: Some(head),
                params,
                peer,
                arrived: Some(arrived),
                extensions: Extensions::default(),
            },
            body,
        }
    }

    /// Splits the request into its parts and body.
    pub fn into_parts(self) -> (Parts, RequestBody) {
        (self.parts, self.body)
    }

    /// Puts a request back together (`body`: a [`RequestBody`], or [`Bytes`] for a whole
    /// one).
    pub fn from_parts(parts: Parts, body: impl Into<RequestBody>) -> Self {
        Self {
            parts,
            body: body.into(),
        }
    }

    /// Everything but the body.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// Everything but the body, mutable (for middleware: extensions).
    pub fn parts_mut(&mut self) -> &mut Parts {
        &mut self.parts
    }

    pub(crate) fn set_params(&mut self, params: Vec<(String, String)>) {
        if params.is_empty() && self.parts.params.is_empty() {
            return; // a static route, for a request off a connection
        }
        self.parts.params = params;
    }

    /// The request body (decoded if it was chunked); empty for a streamed body (see
    /// [`body_stream`](Self::body_stream)).
    pub fn body(&self) -> &Bytes {
        match &self.body {
            RequestBody::Full(b) => b,
            RequestBody::Stream(_) => &NO_BYTES,
        }
    }

    /// Takes the body bytes out of the request; empty for a streamed body.
    pub fn into_body(self) -> Bytes {
        match self.body {
            RequestBody::Full(b) => b,
            RequestBody::Stream(_) => Bytes::new(),
        }
    }

    /// True if the body is read from the connection as it is consumed (the route's handler
    /// takes a [`BodyStream`]).
    pub fn is_body_streamed(&self) -> bool {
        matches!(self.body, RequestBody::Stream(_))
    }

    /// The body, whole or streamed.
    pub fn body_ref(&self) -> &RequestBody {
        &self.body
    }

    /// Takes the body out as a stream (a whole body gives one chunk).
    pub fn body_stream(self) -> BodyStream {
        self.body.into_stream()
    }

    /// When the bytes that completed this request reached its core; see
    /// [`Parts::received_at`].
    pub fn received_at(&self) -> Option<Instant> {
        self.parts.received_at()
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.parts.method()
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn version(&self) -> Version {
        self.parts.version()
    }

    /// The request target as sent; see [`Parts::uri`].
    pub fn uri(&self) -> &str {
        self.parts.uri()
    }

    /// The path (without the query), as sent (percent-encoded); see [`Parts::path`].
    pub fn path(&self) -> &str {
        self.parts.path()
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.parts.query()
    }

    /// The first value of header `name` (case-insensitive), as bytes.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.parts.header(name)
    }

    /// The first value of header `name` as text, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.parts.header_str(name)
    }

    /// All header fields in order (names as sent; compare case-insensitively).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.parts.headers()
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.parts.content_type()
    }

    /// The value of path parameter `name` as sent (percent-encoded); see [`Parts::param`].
    pub fn param(&self, name: &str) -> Option<&str> {
        self.parts.param(name)
    }

    /// All path parameters in route order, as sent (percent-encoded).
    pub fn params(&self) -> &[(String, String)] {
        self.parts.params()
    }

    /// The client's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.parts.peer_addr()
    }

    /// Whether the connection stays open after this request.
    pub fn keep_alive(&self) -> bool {
        self.parts.keep_alive()
    }

    /// Values attached by middleware.
    pub fn extensions(&self) -> &Extensions {
        &self.parts.extensions
    }

    /// Values attached by middleware, mutable.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.parts.extensions
    }
}

impl Parts {
    /// When the bytes that completed this request reached its core (the loop turn that
    /// collected them, see `ringcore_runtime::time::loop_now`). Time since then is time
    /// spent waiting on the core plus handling; metrics and load shedding use it.
    pub fn received_at(&self) -> Option<Instant> {
        self.arrived
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.head.as_ref().map_or(&Method::GET, |h| h.method())
    }

    /// The method's index among the parser's methods (`None` without a request line).
    pub(crate) fn method_index(&self) -> Option<u8> {
        self.head.as_ref().map(|h| h.parsed.method_index())
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn version(&self) -> Version {
        self.head.as_ref().map_or(Version::HTTP_11, |h| h.version())
    }

    /// The request target as sent (origin-form `/path?query`, or absolute-form).
    pub fn uri(&self) -> &str {
        self.head
            .as_ref()
            .map_or("", |h| std::str::from_utf8(h.target()).unwrap_or(""))
    }

    /// The path (without the query), for origin-form and absolute-form targets: for
    /// `http://host?q` (no path) it is `/`.
    pub fn path(&self) -> &str {
        let Some(head) = &self.head else { return "" };
        route_path(head.path_and_query())
    }

    /// The path and query as sent (what the router reads); `None` without a request line.
    pub(crate) fn path_and_query_bytes(&self) -> Option<&[u8]> {
        self.head.as_ref().map(|h| h.path_and_query())
    }

    /// The query string after `?`, if any (for absolute-form, the first `?` after the
    /// authority).
    pub fn query(&self) -> Option<&str> {
        let head = self.head.as_ref()?;
        std::str::from_utf8(head.path_and_query())
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
        self.head
            .iter()
            .flat_map(|h| h.headers())
            .map(|(n, v)| (std::str::from_utf8(n).unwrap_or(""), v))
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.header_str("content-type")
    }

    /// The value of path parameter `name` (from a route such as `/items/{id}`) as sent,
    /// percent-encoded; the [`Path`](crate::extract::Path) extractor decodes.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All path parameters in route order, as sent (percent-encoded).
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
        self.head.as_ref().is_some_and(|h| h.keep_alive())
    }

    /// Values attached by middleware.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Values attached by middleware, mutable.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }
}
