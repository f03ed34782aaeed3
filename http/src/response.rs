//! `Response`, its `Body`, and what handlers may return (`IntoResponse`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use serde::Serialize;

/// A response body.
pub enum Body {
    /// No body.
    Empty,
    /// A complete body, sent with `Content-Length`.
    Full(Bytes),
    /// A body produced over time, sent with `Transfer-Encoding: chunked` (or, to an HTTP/1.0
    /// client, delimited by closing the connection). See [`Body::channel`].
    Stream(BodyReceiver),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

impl Body {
    /// A streaming body and the sender that feeds it (from any task on the same core).
    /// The body ends when the sender is dropped. [`BodySender::feed`] waits while more than
    /// [`DEFAULT_STREAM_CAPACITY`] bytes are queued (the connection writes them as fast as the
    /// client reads); [`BodySender::send`] queues without waiting.
    pub fn channel() -> (BodySender, Body) {
        Self::channel_with_capacity(DEFAULT_STREAM_CAPACITY)
    }

    /// [`channel`](Self::channel) with `capacity` bytes queued at most before
    /// [`BodySender::feed`] waits (at least one chunk is always accepted, however large).
    pub fn channel_with_capacity(capacity: usize) -> (BodySender, Body) {
        let shared = Rc::new(RefCell::new(Chan {
            chunks: VecDeque::new(),
            queued: 0,
            capacity,
            closed: false,
            receiver_gone: false,
            waker: None,
            sender_waker: None,
        }));
        (
            BodySender {
                shared: shared.clone(),
            },
            Body::Stream(BodyReceiver { shared }),
        )
    }
}

/// Bytes a [`Body::channel`] queues before [`BodySender::feed`] waits: 64 KiB, about what
/// one write to a socket takes.
pub const DEFAULT_STREAM_CAPACITY: usize = 64 * 1024;

struct Chan {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    queued: usize,
    capacity: usize,
    /// The sender is gone: the body ends after `chunks`.
    closed: bool,
    /// The receiver is gone (the response was dropped: the client went away).
    receiver_gone: bool,
    /// The receiver waiting for a chunk.
    waker: Option<Waker>,
    /// A sender waiting in `feed` for room.
    sender_waker: Option<Waker>,
}

impl Chan {
    fn pop(&mut self) -> Option<Bytes> {
        let b = self.chunks.pop_front()?;
        self.queued -= b.len();
        Some(b)
    }
}

/// The body's reader is gone (the client closed the connection, or the response was
/// dropped): what a [`BodySender::feed`] would queue can never be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverGone;

impl fmt::Display for ReceiverGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the response body's reader is gone")
    }
}

impl std::error::Error for ReceiverGone {}

/// Feeds a [`Body::channel`] stream.
pub struct BodySender {
    shared: Rc<RefCell<Chan>>,
}

impl fmt::Debug for BodySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodySender")
    }
}

impl BodySender {
    /// Queues a chunk without waiting, however much is queued already (prefer
    /// [`feed`](Self::feed) for a body of unknown size); empty chunks are skipped (an empty
    /// chunk would end a chunked body).
    pub fn send(&self, chunk: impl Into<Bytes>) {
        let chunk = chunk.into();
        if chunk.is_empty() {
            return;
        }
        let w = {
            let mut c = self.shared.borrow_mut();
            c.queued += chunk.len();
            c.chunks.push_back(chunk);
            c.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Queues a chunk once the queue holds at most the channel's capacity, so a producer
    /// faster than the client's reading waits instead of growing the queue: back-pressure
    /// from the socket to the handler. Fails once the reader is gone (the client left); then
    /// stop producing. Empty chunks are skipped.
    pub async fn feed(&self, chunk: impl Into<Bytes>) -> Result<(), ReceiverGone> {
        let chunk = chunk.into();
        poll_fn(|cx| {
            let mut c = self.shared.borrow_mut();
            if c.receiver_gone {
                return Poll::Ready(Err(ReceiverGone));
            }
            if c.queued > 0 && c.queued + chunk.len() > c.capacity {
                c.sender_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        })
        .await?;
        self.send(chunk);
        Ok(())
    }

    /// Bytes queued and not yet taken by the connection.
    pub fn queued(&self) -> usize {
        self.shared.borrow().queued
    }

    /// True once the reader is gone (see [`ReceiverGone`]).
    pub fn is_closed(&self) -> bool {
        self.shared.borrow().receiver_gone
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        let w = {
            let mut c = self.shared.borrow_mut();
            c.closed = true;
            c.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// The reading half of a [`Body::channel`].
pub struct BodyReceiver {
    shared: Rc<RefCell<Chan>>,
}

impl fmt::Debug for BodyReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyReceiver")
    }
}

impl BodyReceiver {
    /// The next chunk, or `None` when the sender is gone and everything was read.
    pub async fn next(&self) -> Option<Bytes> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`next`](Self::next) as a poll (for the HTTP/2 body, which hyper polls).
    pub(crate) fn poll_next(&self, cx: &mut std::task::Context<'_>) -> Poll<Option<Bytes>> {
        let (chunk, sender) = {
            let mut c = self.shared.borrow_mut();
            if let Some(b) = c.pop() {
                (Some(b), c.sender_waker.take())
            } else if c.closed {
                (None, None)
            } else {
                c.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        };
        if let Some(w) = sender {
            w.wake();
        }
        Poll::Ready(chunk)
    }

    /// Everything queued right now, without waiting.
    pub(crate) fn drain_ready(&self, out: &mut Vec<Bytes>) -> bool {
        let (closed, sender) = {
            let mut c = self.shared.borrow_mut();
            out.extend(c.chunks.drain(..));
            c.queued = 0;
            (c.closed, c.sender_waker.take())
        };
        if let Some(w) = sender {
            w.wake();
        }
        closed
    }
}

impl Drop for BodyReceiver {
    fn drop(&mut self) {
        let w = {
            let mut c = self.shared.borrow_mut();
            c.receiver_gone = true;
            c.chunks.clear();
            c.queued = 0;
            c.sender_waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// An HTTP response.
///
/// `Content-Type` is kept in its own field (no allocation for the common response); other
/// fields are in [`headers`](Self::headers).
#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Body,
}

impl Response {
    /// A response with `status` and no body.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// A 200 response with `body` and no `Content-Type`.
    pub fn with_body(body: Body) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: None,
            headers: Vec::new(),
            body,
        }
    }

    /// Sets the status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a header field (kept in order; `Content-Type` replaces the current one;
    /// `Content-Length`, `Transfer-Encoding` and `Connection` are managed by the server and
    /// ignored here).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        if name == CONTENT_TYPE {
            self.content_type = Some(value);
        } else {
            self.headers.push((name, value));
        }
        self
    }

    /// Adds every field of `headers` (see [`header`](Self::header)); a name already present
    /// is replaced, all of its values in `headers` kept.
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        let mut last: Option<HeaderName> = None;
        for (name, value) in headers {
            // `HeaderMap`'s iterator gives the name once, then `None` for its further values.
            let name = match name {
                Some(n) => {
                    self.headers.retain(|(k, _)| *k != n);
                    last = Some(n.clone());
                    n
                }
                None => match &last {
                    Some(n) => n.clone(),
                    None => continue,
                },
            };
            self = self.header(name, value);
        }
        self
    }

    /// The `Content-Type`, if set.
    pub fn content_type(&self) -> Option<&HeaderValue> {
        self.content_type.as_ref()
    }

    /// The status.
    pub fn status_code(&self) -> StatusCode {
        self.status
    }

    /// The header fields other than `Content-Type`.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Mutable header fields other than `Content-Type` (a `Content-Type` pushed here is
    /// sent as well, after the one set with [`header`](Self::header)).
    pub fn headers_mut(&mut self) -> &mut Vec<(HeaderName, HeaderValue)> {
        &mut self.headers
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    pub(crate) fn into_parts(
        self,
    ) -> (
        StatusCode,
        Option<HeaderValue>,
        Vec<(HeaderName, HeaderValue)>,
        Body,
    ) {
        (self.status, self.content_type, self.headers, self.body)
    }

    /// A plain-text error response: `status` with its reason phrase as the body.
    pub fn error(status: StatusCode) -> Self {
        let text = status.canonical_reason().unwrap_or("error");
        (status, text).into_response()
    }
}

/// Anything a handler may return.
pub trait IntoResponse {
    /// Converts into a response.
    fn into_response(self) -> Response;
}

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

fn with_type(body: Bytes, ctype: HeaderValue) -> Response {
    Response {
        status: StatusCode::OK,
        content_type: Some(ctype),
        headers: Vec::new(),
        body: Body::Full(body),
    }
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        with_type(Bytes::from_static(self.as_bytes()), TEXT)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        with_type(Bytes::from(self), TEXT)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        with_type(Bytes::from(self), OCTETS)
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        with_type(self, OCTETS)
    }
}

impl IntoResponse for &'static [u8] {
    fn into_response(self) -> Response {
        with_type(Bytes::from_static(self), OCTETS)
    }
}

impl IntoResponse for Body {
    fn into_response(self) -> Response {
        Response::with_body(self)
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(StatusCode::OK)
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        self.1.into_response().status(self.0)
    }
}

impl<T: IntoResponse, const N: usize> IntoResponse for (StatusCode, [(HeaderName, HeaderValue); N], T) {
    fn into_response(self) -> Response {
        let mut r = self.2.into_response().status(self.0);
        for (n, v) in self.1 {
            r.headers.retain(|(k, _)| *k != n);
            r = r.header(n, v);
        }
        r
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, HeaderMap, T) {
    fn into_response(self) -> Response {
        self.2.into_response().status(self.0).with_headers(self.1)
    }
}

impl<T: IntoResponse> IntoResponse for (HeaderMap, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_headers(self.0)
    }
}

impl<T: IntoResponse, const N: usize> IntoResponse for ([(HeaderName, HeaderValue); N], T) {
    fn into_response(self) -> Response {
        let mut r = self.1.into_response();
        for (n, v) in self.0 {
            r.headers.retain(|(k, _)| *k != n);
            r = r.header(n, v);
        }
        r
    }
}

impl IntoResponse for HeaderMap {
    fn into_response(self) -> Response {
        Response::new(StatusCode::OK).with_headers(self)
    }
}

/// Never happens: the rejection of extractors that cannot fail.
impl IntoResponse for std::convert::Infallible {
    fn into_response(self) -> Response {
        match self {}
    }
}

/// `Ok` answers with `T`, `Err` with `E`: a handler returning `Result<T, MyError>` uses `?`
/// on anything convertible into `MyError`, and `MyError: IntoResponse` decides the status and
/// body in one place.
impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(t) => t.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// A JSON body: as a response, serialises `T` with `Content-Type: application/json`; as an
/// extractor, parses the request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(v) => with_type(Bytes::from(v), JSON),
            Err(_) => Response::error(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

const PROBLEM: HeaderValue = HeaderValue::from_static("application/problem+json");

/// An RFC 9457 problem details response: `status`, with a JSON body
/// `{"type", "title", "status", "detail"}` and `Content-Type: application/problem+json`.
///
/// Extraction rejections answer with one; a user's error type can too:
///
/// ```
/// use ringcore_http::{IntoResponse, Problem, Response, StatusCode};
///
/// enum AppError { NotFound(String) }
///
/// impl IntoResponse for AppError {
///     fn into_response(self) -> Response {
///         match self {
///             AppError::NotFound(what) => Problem::new(StatusCode::NOT_FOUND, "urn:app:not-found", "Not found")
///                 .detail(format!("no {what}"))
///                 .into_response(),
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    kind: String,
    title: String,
    status: StatusCode,
    detail: Option<String>,
}

impl Problem {
    /// A problem of type `kind` (a URI, e.g. `urn:app:out-of-stock`; `about:blank` when the
    /// status says everything) with a short, fixed `title`.
    pub fn new(status: StatusCode, kind: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            title: title.into(),
            status,
            detail: None,
        }
    }

    /// Adds the explanation specific to this occurrence.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The type URI.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The detail, if any.
    pub fn detail_text(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "type": self.kind,
            "title": self.title,
            "status": self.status.as_u16(),
        });
        if let (Some(d), Some(map)) = (self.detail, body.as_object_mut()) {
            map.insert("detail".to_string(), serde_json::Value::String(d));
        }
        match serde_json::to_vec(&body) {
            Ok(v) => Response {
                status: self.status,
                content_type: Some(PROBLEM),
                headers: Vec::new(),
                body: Body::Full(Bytes::from(v)),
            },
            Err(_) => Response::error(self.status),
        }
    }
}
