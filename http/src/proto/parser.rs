//! The request push parser: bytes in, complete requests out, in order.

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use super::chunked::ChunkedDecoder;
use super::head::{parse_whole_into, Framing, Head, HeadScan, Reject};
use crate::limits::Limits;

/// A protocol error: the status to answer with before closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtoError {
    status: StatusCode,
    reason: &'static str,
}

impl ProtoError {
    /// The HTTP status a server answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A short, fixed description (safe to send to the peer).
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

impl std::error::Error for ProtoError {}

impl From<Reject> for ProtoError {
    fn from(r: Reject) -> Self {
        ProtoError {
            status: r.status,
            reason: r.reason,
        }
    }
}

/// A request's head: its bytes (split off the connection's buffer, not copied) and where its
/// parts are in them. What a [`Request`](crate::Request)'s parts read.
#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    pub(crate) bytes: Bytes,
    pub(crate) parsed: Head,
}

impl RequestHead {
    pub(crate) fn method(&self) -> &'static http::Method {
        self.parsed.method()
    }

    pub(crate) fn version(&self) -> http::Version {
        self.parsed.version
    }

    pub(crate) fn target(&self) -> &[u8] {
        &self.bytes[self.parsed.target.range()]
    }

    /// The path and query the router sees: the whole target, or for absolute-form what
    /// follows the authority (possibly empty, or starting with `?`).
    pub(crate) fn path_and_query(&self) -> &[u8] {
        &self.bytes[self.parsed.path_and_query.range()]
    }

    /// The path routed on: the path and query up to the first `?`, or `/` when that is
    /// empty.
    pub(crate) fn route_path(&self) -> &[u8] {
        self.parsed.route_path(&self.bytes)
    }

    pub(crate) fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        super::head::fields(&self.bytes[self.parsed.fields.range()])
    }

    pub(crate) fn keep_alive(&self) -> bool {
        self.parsed.keep_alive
    }
}

/// A complete request as parsed: its head (bytes shared, not copied, and the validated
/// head) and its body.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub(crate) head: RequestHead,
    pub(crate) body: Bytes,
}

impl RawRequest {
    /// The method.
    pub fn method(&self) -> &'static http::Method {
        self.head.method()
    }

    /// The request target exactly as sent.
    pub fn target(&self) -> &[u8] {
        self.head.target()
    }

    /// The path routed on: the path and query up to the first `?`, or `/` when that is
    /// empty (as [`route_path_bytes`](crate::request::route_path_bytes) of
    /// [`RequestHead::path_and_query`], with the `?` found by the scanner).
    pub(crate) fn route_path(&self) -> &[u8] {
        self.head.route_path()
    }

    /// Header fields in order, as (name, value) bytes.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.headers()
    }

    /// The decoded body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether the connection may be kept open after this request.
    pub fn keep_alive(&self) -> bool {
        self.head.keep_alive()
    }
}

/// What [`Parser::next_plain`] found. Fieldless (one byte, returned in a register): the
/// head and the request are written where the caller keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// No complete request yet (read more, or a head whose body is still arriving).
    Incomplete,
    /// A request without a body, its head parsed into the caller's [`Head`] and its bytes
    /// still at the front of the buffer ([`Parser::front`]): [`Parser::take_head`] or
    /// [`Parser::skip_head`] next, before the parser is used again.
    Head,
    /// Any other complete request, in the caller's `Option<RawRequest>`.
    Request,
    /// A request without a body whose head [`Parser::read_fresh`] parsed into the caller's
    /// [`Head`] in place, in the chunk it came in ([`Fresh::Head`]): the connection's
    /// `FreshHead` takes or skips it (not [`Next::into_raw`]).
    Fresh,
}

impl Next {
    /// The parsed head (`head` and `taken`: what was given to [`Parser::next_plain`]).
    pub(crate) fn head<'a>(self, head: &'a Head, taken: &'a Option<RawRequest>) -> &'a Head {
        debug_assert!(
            self != Next::Request || taken.is_some(),
            "Next::Request without its request"
        );
        match (self, taken) {
            (Next::Request, Some(r)) => &r.head.parsed,
            _ => head,
        }
    }

    /// The request (`head` and `taken`: what was given to [`Parser::next_plain`]), its head
    /// split off `parser` if still there. (`Next::Request` always comes with `taken`
    /// filled: checked in debug builds.)
    pub(crate) fn into_raw(
        self,
        parser: &mut Parser,
        head: &Head,
        taken: &mut Option<RawRequest>,
    ) -> RawRequest {
        debug_assert!(
            self != Next::Request || taken.is_some(),
            "Next::Request without its request"
        );
        debug_assert!(self != Next::Fresh, "a head read in place is not in the parser");
        match (self, taken.take()) {
            (Next::Request, Some(r)) => r,
            _ => parser.take_head(head),
        }
    }
}

/// What [`Parser::read_fresh`] made of a chunk received while the parser held nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fresh {
    /// The chunk's first `n` bytes are the whole head of a request without a body: its
    /// handler takes or skips it through the connection's `FreshHead`, and the bytes after
    /// it (if any) are pushed.
    Head(usize),
    /// The chunk starts with the whole head of a request with a body: push the chunk, then
    /// [`Parser::start_body`].
    Body,
    /// Anything else: push the chunk.
    Push,
}

/// Where the head of a [`Next::Head`] lies, for its handler to read or pass over: the
/// parser's buffer, or the chunk it came in ([`Next::Fresh`], the connection's `FreshHead`).
pub(crate) trait HeadBytes {
    /// The head's bytes first.
    fn front(&self) -> &[u8];
    /// The request of the head, its bytes its own.
    fn take_head(&mut self, head: &Head) -> RawRequest;
    /// Passes over the head, unread.
    fn skip_head(&mut self, head: &Head);
}

impl HeadBytes for Parser {
    #[inline]
    fn front(&self) -> &[u8] {
        Parser::front(self)
    }

    #[inline]
    fn take_head(&mut self, head: &Head) -> RawRequest {
        Parser::take_head(self, head)
    }

    #[inline]
    fn skip_head(&mut self, head: &Head) {
        Parser::skip_head(self, head)
    }
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        head_bytes: Bytes,
        head: Head,
        body: BodyState,
    },
    /// The head was handed to a handler whose body is read as it consumes it
    /// ([`Parser::take_streaming`]); [`Parser::next_body_chunk`] decodes it piece by piece.
    Stream(BodyState),
    Failed(ProtoError),
}

/// What [`Parser::next_body_chunk`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyChunk {
    /// Decoded body bytes.
    Data(Bytes),
    /// The buffer holds no more body bytes: read from the socket.
    NeedMore,
    /// The body is complete; the parser reads the next head.
    End,
}

#[derive(Debug)]
enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder, Vec<u8>),
}

/// An HTTP/1.1 request parser fed with bytes as they arrive.
///
/// ```
/// use ringcore_http::proto::Parser;
/// let mut p = Parser::new(Default::default());
/// p.push(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo");
/// assert_eq!(p.next_request().unwrap().unwrap().target(), b"/a");
/// assert!(p.next_request().unwrap().is_none()); // the second is incomplete
/// p.push(b"st: x\r\n\r\n");
/// assert_eq!(p.next_request().unwrap().unwrap().target(), b"/b");
/// ```
#[derive(Debug)]
pub struct Parser {
    buf: BytesMut,
    /// The bytes at the front of `buf` that [`skip_head`](Self::skip_head) dropped: passed
    /// over in place, not cut off, so that the heads of a pipelined batch cost no
    /// `BytesMut::advance` each (about 35 instructions). Always less than `buf.len()` (a
    /// skip that reaches the end empties the buffer); every use of `buf` but the plain path's
    /// (`next_plain`, `front`, `skip_head`) cuts them off first ([`settle`](Self::settle)).
    skipped: usize,
    state: State,
    /// A head received in pieces: its scan, resumed where the last call left off (boxed:
    /// most heads arrive whole and never need one).
    head_scan: Option<Box<HeadScan>>,
    limits: Arc<Limits>,
    continue_sent: bool,
    /// The last head asked for `100 Continue` (kept once its body is streamed).
    expect_continue: bool,
}

impl Parser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self::with_buf(Arc::new(limits), BytesMut::with_capacity(4096))
    }

    /// A parser enforcing limits shared with others (a connection's, an HTTP/2 stream's).
    pub(crate) fn with_limits(limits: Arc<Limits>) -> Self {
        Self::with_buf(limits, BytesMut::with_capacity(4096))
    }

    /// A parser enforcing `limits` that receives into `buf` (emptied first; a pooled buffer).
    pub(crate) fn with_buf(limits: Arc<Limits>, mut buf: BytesMut) -> Self {
        buf.clear();
        Self {
            buf,
            skipped: 0,
            state: State::Head,
            head_scan: None,
            limits,
            continue_sent: false,
            expect_continue: false,
        }
    }

    /// True if the parser gave its buffer back ([`take_idle_buf`](Self::take_idle_buf)) and
    /// has none.
    pub(crate) fn lacks_buf(&self) -> bool {
        self.buf.capacity() == 0 && self.buf.is_empty()
    }

    /// Gives the parser `buf` (emptied first) to receive into, if it [lacks
    /// one](Self::lacks_buf); otherwise `buf` is dropped.
    pub(crate) fn set_buf(&mut self, mut buf: BytesMut) {
        if self.lacks_buf() {
            buf.clear();
            self.buf = buf;
        }
    }

    /// Like [`release_idle`](Self::release_idle), but hands the buffer over (to a pool)
    /// instead of freeing it.
    pub(crate) fn take_idle_buf(&mut self) -> Option<BytesMut> {
        if self.buf.is_empty() && matches!(self.state, State::Head) && self.buf.capacity() > 0 {
            Some(std::mem::take(&mut self.buf))
        } else {
            None
        }
    }

    /// Appends received bytes.
    ///
    /// Into an empty buffer they go at the start of its memory, not after the requests
    /// already read from it: `BytesMut` leaves a consumed front in place, so without this the
    /// bytes of one request after another would land a request further on each time, in
    /// lines last touched a whole buffer of requests earlier (out of the cache by then, so
    /// the copy and the parse waited for memory; see docs/bench-http.md, "the receive buffer
    /// that walked"). The pooled buffer a connection takes is the one given back last, so
    /// its first lines stay in the cache.
    pub fn push(&mut self, data: &[u8]) {
        self.settle();
        if self.buf.is_empty() {
            // Back to the start of the allocation when nothing else holds the front (a
            // request still holding its head keeps it: then the bytes go after it, as before).
            let _ = self.buf.try_reclaim(self.buf.capacity() + 1);
        }
        self.buf.extend_from_slice(data);
    }

    /// Gives the receive buffer's memory back while nothing is buffered (an idle keep-alive
    /// connection); the next [`push`](Self::push) allocates again. No-op otherwise.
    pub fn release_idle(&mut self) {
        drop(self.take_idle_buf());
    }

    /// True if bytes of an unfinished request are buffered (or a body is being read).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || matches!(self.state, State::Body { .. } | State::Stream(_))
    }

    /// Bytes received and not yet parsed or handed out.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() - self.skipped
    }

    /// Cuts the [skipped](Self::skipped) heads off the front of the buffer.
    #[inline]
    fn settle(&mut self) {
        if self.skipped != 0 {
            bytes::Buf::advance(&mut self.buf, self.skipped);
            self.skipped = 0;
        }
    }

    /// The method (and its index) and the path-and-query of a request whose head is complete
    /// and whose body is still arriving (the connection asks its router whether the handler
    /// streams it).
    pub(crate) fn body_head(&self) -> Option<(&'static http::Method, u8, &[u8])> {
        match &self.state {
            State::Body { head_bytes, head, .. } => Some((
                head.method(),
                head.method_index(),
                &head_bytes[head.path_and_query.range()],
            )),
            _ => None,
        }
    }

    /// Hands out the request whose head is complete and whose body is still arriving, with an
    /// empty body: from now on [`next_body_chunk`](Self::next_body_chunk) decodes the body
    /// as it is received, and [`next_request`](Self::next_request) is not called until it
    /// returned [`BodyChunk::End`]. `None` unless [`body_head`](Self::body_head) is `Some`.
    pub(crate) fn take_streaming(&mut self) -> Option<RawRequest> {
        if !self.in_body() {
            return None;
        }
        match std::mem::replace(&mut self.state, State::Head) {
            State::Body {
                head_bytes,
                head,
                body,
            } => {
                self.state = State::Stream(body);
                Some(RawRequest {
                    head: RequestHead {
                        bytes: head_bytes,
                        parsed: head,
                    },
                    body: Bytes::new(),
                })
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The body bytes of a streamed body (after [`take_streaming`](Self::take_streaming))
    /// that the buffer holds: a Content-Length body's bytes are split off without a copy, a
    /// chunked body's data is decoded (its limits and framing checked as when buffered).
    pub(crate) fn next_body_chunk(&mut self) -> Result<BodyChunk, ProtoError> {
        self.settle();
        let State::Stream(body) = &mut self.state else {
            return match &self.state {
                State::Failed(e) => Err(*e),
                _ => Ok(BodyChunk::End),
            };
        };
        match body {
            BodyState::Length(0) => {
                self.state = State::Head;
                Ok(BodyChunk::End)
            }
            BodyState::Length(left) => {
                if self.buf.is_empty() {
                    return Ok(BodyChunk::NeedMore);
                }
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(self.buf.len());
                *left -= n as u64;
                Ok(BodyChunk::Data(self.buf.split_to(n).freeze()))
            }
            BodyState::Chunked(dec, out) => {
                if dec.is_done() {
                    self.state = State::Head;
                    return Ok(BodyChunk::End);
                }
                let used = match dec.decode(&self.buf, out, &self.limits) {
                    Ok(n) => n,
                    Err(r) => return Err(self.fail(r.into())),
                };
                let _ = self.buf.split_to(used);
                if !out.is_empty() {
                    Ok(BodyChunk::Data(Bytes::from(std::mem::take(out))))
                } else if dec.is_done() {
                    self.state = State::Head;
                    Ok(BodyChunk::End)
                } else {
                    Ok(BodyChunk::NeedMore)
                }
            }
        }
    }

    /// The body bytes a streamed Content-Length body still has to receive; `None` for a
    /// chunked one (or when no body is streamed).
    pub(crate) fn stream_left(&self) -> Option<u64> {
        match &self.state {
            State::Stream(BodyState::Length(n)) => Some(*n),
            _ => None,
        }
    }

    /// True while reading a body.
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// The declared length (Content-Length) of the body being read; `None` when no body is
    /// being read or it is chunked.
    pub fn body_len(&self) -> Option<u64> {
        match &self.state {
            State::Body {
                body: BodyState::Length(n),
                ..
            } => Some(*n),
            _ => None,
        }
    }

    /// True if the head asked for `100 Continue`, the body has not fully arrived, and no
    /// interim response was sent yet.
    pub fn wants_continue(&self) -> bool {
        matches!(&self.state, State::Body { head, .. } if head.expect_continue) && !self.continue_sent
    }

    /// True if the request asked for `100 Continue` and none was sent: its client may be
    /// holding the body back.
    pub(crate) fn continue_pending(&self) -> bool {
        self.expect_continue && !self.continue_sent
    }

    /// Records that `100 Continue` was sent.
    pub fn continue_sent(&mut self) {
        self.continue_sent = true;
    }

    /// The next complete request, `Ok(None)` if more bytes are needed, or the error to answer
    /// with (after which the parser stays failed: close the connection).
    #[inline]
    pub fn next_request(&mut self) -> Result<Option<RawRequest>, ProtoError> {
        self.settle();
        // The usual head, whole in the buffer, read in one pass (`parse_whole_into`); everything
        // else (a head in pieces, a body) out of line.
        if matches!(self.state, State::Head) && self.head_scan.is_none() {
            let mut head = Head::default();
            match parse_whole_into(&self.buf, &self.limits, &mut head) {
                Some(Ok(())) => {
                    if let Some(req) = self.took_head(head) {
                        return Ok(Some(req));
                    }
                }
                Some(Err(r)) => return Err(self.fail(r.into())),
                None => {}
            }
        }
        self.next_request_slow()
    }

    /// [`next_request`](Self::next_request) as a connection calls it: the usual request (a
    /// head that arrived whole, with no body) is parsed into `head` and left at the front of
    /// the buffer ([`Next::Head`]), for its handler to [take](Self::take_head) as a request
    /// or, when it reads nothing of it, [skip](Self::skip_head) without a copy or a
    /// reference count (the traced and streamed paths take it with [`Next::into_raw`]).
    /// Every other request goes to `taken` ([`Next::Request`]), as `next_request` would
    /// give it. (Nothing large is returned: a head or a request returned
    /// by value was written a field at a time and then copied whole by the caller, and the
    /// copy's loads stalled on those stores.)
    ///
    /// Inlined, with everything past the usual head out of line ([`next_plain_rest`]): as
    /// one function, its frame (about 400 bytes, six registers saved) was set up and torn
    /// down for every request (`scripts/callgrind-http.sh` 4x16 1,155 to 1,126 instructions
    /// a request).
    ///
    /// [`next_plain_rest`]: Self::next_plain_rest
    #[inline(always)]
    pub(crate) fn next_plain(
        &mut self,
        head: &mut Head,
        taken: &mut Option<RawRequest>,
    ) -> Result<Next, ProtoError> {
        let whole = if matches!(self.state, State::Head) && self.head_scan.is_none() {
            // From the first byte not skipped: the head's spans count from there.
            let whole = parse_whole_into(&self.buf[self.skipped..], &self.limits, head);
            if matches!(whole, Some(Ok(()))) && head.framing == Framing::None {
                return Ok(Next::Head);
            }
            Some(whole)
        } else {
            None
        };
        self.next_plain_rest(whole, head, taken)
    }

    /// [`next_plain`](Self::next_plain) past the usual head: `whole` is what the whole-head
    /// path made of the buffer (`None`: not tried, a head in pieces or a body under way).
    #[inline(never)]
    fn next_plain_rest(
        &mut self,
        whole: Option<Option<Result<(), Reject>>>,
        head: &Head,
        taken: &mut Option<RawRequest>,
    ) -> Result<Next, ProtoError> {
        match whole {
            Some(Some(Ok(()))) => {
                self.settle();
                if let Some(req) = self.took_head(*head) {
                    *taken = Some(req);
                    return Ok(Next::Request);
                }
            }
            Some(Some(Err(r))) => return Err(self.fail(r.into())),
            Some(None) | None => {}
        }
        Ok(match self.next_request_slow()? {
            Some(req) => {
                *taken = Some(req);
                Next::Request
            }
            None => Next::Incomplete,
        })
    }

    /// The bytes at the front of the buffer, where [`Next::Head`]'s head is (until it is
    /// taken or skipped).
    #[inline]
    pub(crate) fn front(&self) -> &[u8] {
        &self.buf[self.skipped..]
    }

    /// The request of the head [`next_plain`](Self::next_plain) left in the buffer, its
    /// bytes split off.
    pub(crate) fn take_head(&mut self, head: &Head) -> RawRequest {
        debug_assert_eq!(head.framing, Framing::None);
        self.settle();
        self.continue_sent = false;
        self.expect_continue = false;
        RawRequest {
            head: RequestHead {
                bytes: self.buf.split_to(head.len()).freeze(),
                parsed: *head,
            },
            body: Bytes::new(),
        }
    }

    /// Drops the head [`next_plain`](Self::next_plain) left in the buffer, unread.
    #[inline]
    pub(crate) fn skip_head(&mut self, head: &Head) {
        debug_assert_eq!(head.framing, Framing::None);
        self.continue_sent = false;
        self.expect_continue = false;
        let end = self.skipped + head.len();
        debug_assert!(end <= self.buf.len(), "a head skipped twice");
        if end == self.buf.len() {
            // The head was all there was (a request read on its own, the last of a batch):
            // emptied in place, where an advance moves the buffer's start (about 30
            // instructions) only to have the next read's bytes appended after it.
            self.buf.clear();
            self.skipped = 0;
        } else {
            // Passed over, cut off when something other than the next plain head needs the
            // buffer (`settle`).
            self.skipped = end;
        }
    }

    /// Reads `chunk`, just received, in place while the parser holds nothing (between
    /// requests, where a connection answering one request at a time always is): when it
    /// starts with the whole head of a request without a body, that head is parsed into
    /// `head` and read from the chunk ([`Fresh::Head`]), so the parser's buffer is not used
    /// for it: no buffer taken from the core's pool and given back, and no copy. Otherwise
    /// `chunk` is to be [pushed](Self::push), and [`Fresh::Body`] says its head was parsed
    /// into `head` already, for [`start_body`](Self::start_body).
    #[inline]
    pub(crate) fn read_fresh(&self, chunk: &[u8], head: &mut Head) -> Fresh {
        if self.has_partial() || self.head_scan.is_some() || !matches!(self.state, State::Head) {
            return Fresh::Push;
        }
        match parse_whole_into(chunk, &self.limits, head) {
            Some(Ok(())) if head.framing == Framing::None => Fresh::Head(head.len()),
            Some(Ok(())) => Fresh::Body,
            // A head in pieces, one for `httparse`, or a refusal: the parser's own path (a
            // refusal is found again there).
            _ => Fresh::Push,
        }
    }

    /// Takes `head`, parsed by [`read_fresh`](Self::read_fresh) ([`Fresh::Body`]) from the
    /// chunk just pushed, off the front of the buffer: its body is read next, as if
    /// [`next_plain`](Self::next_plain) had parsed it.
    pub(crate) fn start_body(&mut self, head: &Head) {
        debug_assert!(head.framing != Framing::None && self.buf.len() >= head.len());
        self.settle();
        let none = self.took_head(*head);
        debug_assert!(none.is_none(), "a head with a body");
    }

    /// Records that a head without a body read elsewhere ([`Fresh::Head`]) was passed over:
    /// what [`skip_head`](Self::skip_head) resets.
    #[inline]
    pub(crate) fn skipped_fresh_head(&mut self) {
        self.continue_sent = false;
        self.expect_continue = false;
    }

    /// A complete head was read off the front of the buffer: its request when it has no
    /// body, else `None` with the body's reading under way.
    #[inline]
    fn took_head(&mut self, head: Head) -> Option<RawRequest> {
        let head_bytes = self.buf.split_to(head.len()).freeze();
        self.continue_sent = false;
        self.expect_continue = head.expect_continue;
        let body = match head.framing {
            Framing::None => {
                return Some(RawRequest {
                    head: RequestHead {
                        bytes: head_bytes,
                        parsed: head,
                    },
                    body: Bytes::new(),
                })
            }
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::new(), Vec::new()),
        };
        self.state = State::Body {
            head_bytes,
            head,
            body,
        };
        None
    }

    /// [`next_request`](Self::next_request) past its fast path.
    #[inline(never)]
    fn next_request_slow(&mut self) -> Result<Option<RawRequest>, ProtoError> {
        self.settle();
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(*e),
                // The connection reads a streamed body through `next_body_chunk` first.
                State::Stream(_) => return Ok(None),
                State::Head => {
                    // The fast path tried the whole head already (`parse_whole_into` turned it
                    // down or found it incomplete) unless a scan is under way: resume that,
                    // or scan afresh on the stack and keep the scan only if the head is
                    // still incomplete.
                    let mut fresh = HeadScan::default();
                    let scan = match &mut self.head_scan {
                        Some(scan) => &mut **scan,
                        None => &mut fresh,
                    };
                    let head = match scan.resume(&self.buf, &self.limits) {
                        Ok(Some(h)) => h,
                        Ok(None) => {
                            if self.head_scan.is_none() && !self.buf.is_empty() {
                                self.head_scan = Some(Box::new(fresh));
                            }
                            return Ok(None);
                        }
                        Err(r) => return Err(self.fail(r.into())),
                    };
                    self.head_scan = None;
                    if let Some(req) = self.took_head(head) {
                        return Ok(Some(req));
                    }
                }
                State::Body { body, .. } => {
                    let done = match body {
                        BodyState::Length(n) => {
                            let n = usize::try_from(*n).unwrap_or(usize::MAX);
                            if self.buf.len() < n {
                                return Ok(None);
                            }
                            Some(self.buf.split_to(n).freeze())
                        }
                        BodyState::Chunked(dec, out) => {
                            let used = match dec.decode(&self.buf, out, &self.limits) {
                                Ok(n) => n,
                                Err(r) => return Err(self.fail(r.into())),
                            };
                            let _ = self.buf.split_to(used);
                            if dec.is_done() {
                                Some(Bytes::from(std::mem::take(out)))
                            } else {
                                return Ok(None);
                            }
                        }
                    };
                    if let Some(body) = done {
                        let State::Body { head_bytes, head, .. } =
                            std::mem::replace(&mut self.state, State::Head)
                        else {
                            continue;
                        };
                        return Ok(Some(RawRequest {
                            head: RequestHead {
                                bytes: head_bytes,
                                parsed: head,
                            },
                            body,
                        }));
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: ProtoError) -> ProtoError {
        self.state = State::Failed(e);
        self.buf.clear();
        self.skipped = 0;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` a piece at a time to a parser streaming the body of `head`, and
    /// collects the body chunks until the end; returns the body and what stayed buffered.
    fn stream_body(head: &[u8], input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ProtoError> {
        let mut p = Parser::new(Limits::default());
        p.push(head);
        assert!(p.next_request()?.is_none(), "the body is still to come");
        assert!(p.body_head().is_some());
        p.take_streaming().expect("a head to hand over");
        assert!(p.has_partial() && !p.in_body());
        let mut body = Vec::new();
        let mut pieces = input.chunks(piece);
        loop {
            match p.next_body_chunk()? {
                BodyChunk::Data(b) => body.extend_from_slice(&b),
                BodyChunk::End => return Ok((body, p.buffered())),
                BodyChunk::NeedMore => match pieces.next() {
                    Some(c) => p.push(c),
                    None => panic!("the body did not end"),
                },
            }
        }
    }

    /// `read_fresh` reads a chunk in place only when the parser holds nothing and the chunk
    /// starts with the whole head of a request without a body; a head with a body is parsed
    /// once (`start_body` takes it after the push), and anything else is left to the parser.
    #[test]
    fn a_fresh_chunk_is_read_in_place_only_from_a_whole_head_without_a_body() {
        let mut p = Parser::new(Limits::default());
        let mut head = Head::default();
        let one: &[u8] = b"GET /a?q HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(p.read_fresh(one, &mut head), Fresh::Head(one.len()));
        assert_eq!(head.route_path(one), b"/a");
        let two = [one, b"GET /b HTTP/1.1\r\n"].concat();
        assert_eq!(
            p.read_fresh(&two, &mut head),
            Fresh::Head(one.len()),
            "the first of two"
        );
        let post: &[u8] = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /n";
        assert_eq!(p.read_fresh(post, &mut head), Fresh::Body);
        p.push(post);
        p.start_body(&head);
        let req = p.next_request().expect("valid").expect("complete");
        assert_eq!((req.target(), req.body()), (&b"/p"[..], &b"abc"[..]));
        assert_eq!(p.buffered(), b"GET /n".len(), "what follows the body stays");
        assert_eq!(
            p.read_fresh(one, &mut head),
            Fresh::Push,
            "the parser holds bytes"
        );
        let mut p = Parser::new(Limits::default());
        for other in [
            &b"GET /a HTTP/1.1\r\nHo"[..],
            b"GET /a HTTP/1.1\r\nNo colon\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert_eq!(p.read_fresh(other, &mut head), Fresh::Push, "{other:?}");
        }
        // A refusal is found again by the parser's own path.
        p.push(b"GET /a HTTP/1.1\r\nNo colon\r\n\r\n");
        assert_eq!(
            p.next_request().err().map(|e| e.status()),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn the_route_path_ends_at_the_first_question_mark_however_the_line_arrives() {
        for (line, path) in [
            ("GET /plaintext HTTP/1.1", "/plaintext"),
            ("GET /a?b=1?c HTTP/1.1", "/a"),
            ("GET /? HTTP/1.1", "/"),
            ("GET /a/b/?x HTTP/1.1", "/a/b/"),
            ("GET http://h HTTP/1.1", "/"),
            ("GET http://h?/x HTTP/1.1", "/"),
            ("GET http://h/p?q HTTP/1.1", "/p"),
            ("GET https://u@h:1/p/q HTTP/1.1", "/p/q"),
            ("OPTIONS * HTTP/1.1", "*"),
        ] {
            let req = format!("{line}\r\nHost: h\r\n\r\n");
            for piece in [1, 2, 5, req.len()] {
                let mut p = Parser::new(Limits::default());
                let mut got = None;
                for c in req.as_bytes().chunks(piece) {
                    p.push(c);
                    if let Some(r) = p.next_request().expect("valid") {
                        got = Some(r);
                    }
                }
                let r = got.expect("complete");
                assert_eq!(r.route_path(), path.as_bytes(), "{line} in pieces of {piece}");
                let pq = r.head.path_and_query();
                assert_eq!(r.route_path(), crate::request::route_path_bytes(pq), "{line}");
            }
        }
    }

    /// `next_plain` leaves a bodiless head that arrived whole in the buffer: skipped, the
    /// next request follows it exactly; taken, it is the request `next_request` gives. A head
    /// with a body, or one in pieces, comes out as a request, as from `next_request`.
    #[test]
    fn a_plain_head_left_in_the_buffer_is_skipped_or_taken_whole() {
        let mut p = Parser::new(Limits::default());
        p.push(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b?q HTTP/1.0\r\nHost: x\r\n\r\n");
        p.push(b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /d HTTP/1.1\r\nHo");
        let mut head = Head::default();
        let mut taken = None;
        assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Head);
        assert!(taken.is_none());
        assert_eq!(head.route_path(p.front()), b"/a");
        assert!(p.front().starts_with(b"GET /a "), "nothing consumed yet");
        p.skip_head(&head);
        assert!(
            p.front().starts_with(b"GET /b?q "),
            "{:?}",
            String::from_utf8_lossy(p.front())
        );
        assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Head);
        assert_eq!(head.route_path(p.front()), b"/b");
        let raw = Next::Head.into_raw(&mut p, &head, &mut taken);
        assert_eq!(raw.target(), b"/b?q");
        assert_eq!(raw.head.version(), http::Version::HTTP_10);
        assert!(raw.body().is_empty());
        assert_eq!(raw.headers().collect::<Vec<_>>(), vec![(&b"Host"[..], &b"x"[..])]);
        // A head with a body: a whole request, as next_request gives it.
        let next = p.next_plain(&mut head, &mut taken).unwrap();
        assert_eq!(next, Next::Request);
        assert_eq!(next.head(&head, &taken).method(), http::Method::POST);
        let c = next.into_raw(&mut p, &head, &mut taken);
        assert_eq!((c.target(), c.body()), (&b"/c"[..], &b"hi"[..]));
        assert!(taken.is_none());
        // A head in pieces: nothing until it is complete, then a request.
        assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Incomplete);
        p.push(b"st: x\r\n\r\n");
        assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Request);
        assert_eq!(taken.take().map(|d| d.target().to_vec()), Some(b"/d".to_vec()));
        assert!(!p.has_partial());
    }

    /// Heads skipped in place, then a head whose body is streamed: the body is cut from the
    /// first byte after that head (the skipped heads are cut off first), and what stays
    /// buffered counts only the bytes not yet read.
    #[test]
    fn a_body_streamed_after_skipped_heads_starts_after_its_own_head() {
        let mut p = Parser::new(Limits::default());
        p.push(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        p.push(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello");
        let total = p.buffered();
        let (mut head, mut taken) = (Head::default(), None);
        for (path, len) in [(&b"/a"[..], 28), (&b"/b"[..], 28)] {
            assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Head);
            assert_eq!(head.route_path(p.front()), path);
            assert_eq!(head.len(), len);
            p.skip_head(&head);
        }
        assert_eq!(
            p.buffered(),
            total - 56,
            "the skipped heads are no longer buffered"
        );
        // The body is still arriving: no request yet, the head is taken for streaming.
        assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Incomplete);
        assert_eq!(p.body_head().map(|(_, _, pq)| pq.to_vec()), Some(b"/up".to_vec()));
        let raw = p.take_streaming().expect("a head whose body streams");
        assert_eq!(raw.target(), b"/up");
        assert_eq!(p.buffered(), 5);
        assert_eq!(
            p.next_body_chunk().unwrap(),
            BodyChunk::Data(Bytes::from_static(b"hello"))
        );
        assert_eq!(p.next_body_chunk().unwrap(), BodyChunk::NeedMore);
        p.push(b"worldGET /c HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            p.next_body_chunk().unwrap(),
            BodyChunk::Data(Bytes::from_static(b"world"))
        );
        assert_eq!(p.next_body_chunk().unwrap(), BodyChunk::End);
        assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Head);
        assert_eq!(head.route_path(p.front()), b"/c");
        p.skip_head(&head);
        assert!(!p.has_partial());
        assert_eq!(p.buffered(), 0);
    }

    /// A connection answering one request at a time receives each into the same bytes of its
    /// buffer (the ones in the cache), not a request further on each time; and a request a
    /// handler still holds keeps its bytes (the next go after them).
    #[test]
    fn each_read_into_an_emptied_buffer_starts_at_its_first_byte() {
        const REQ: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut p = Parser::new(Limits::default());
        let mut head = Head::default();
        let mut taken = None;
        p.push(REQ);
        let start = p.front().as_ptr();
        for _ in 0..300 {
            assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Head);
            p.skip_head(&head);
            assert!(!p.has_partial());
            p.push(REQ);
            assert_eq!(
                p.front().as_ptr(),
                start,
                "the read went after the consumed front"
            );
        }
        // Taken whole: while the request lives, its bytes stay where they are.
        assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Head);
        let kept = Next::Head.into_raw(&mut p, &head, &mut taken);
        p.push(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(kept.target(), b"/a");
        assert_eq!(p.next_plain(&mut head, &mut taken).unwrap(), Next::Head);
        assert_eq!(head.route_path(p.front()), b"/b");
        assert_eq!(kept.target(), b"/a", "the held request's bytes were overwritten");
    }

    /// What a parser gave for one call, in terms both ways of reading it can be compared
    /// in: a request's method, target, version, keep-alive and body, "need more", or the
    /// refusal's status.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Request(&'static http::Method, Vec<u8>, http::Version, bool, Vec<u8>),
        More,
        Refused(u16),
    }

    fn seen(raw: &RawRequest) -> Seen {
        Seen::Request(
            raw.method(),
            raw.target().to_vec(),
            raw.head.version(),
            raw.keep_alive(),
            raw.body().to_vec(),
        )
    }

    /// `next_plain`, with the head left in the buffer then taken or skipped (chosen at random),
    /// reads every pipeline as `next_request` does: the same requests, refusals and "need
    /// more", in the same order, with the same bytes left and the same `100 Continue` state
    /// after each call, however the pipeline is cut into pushes.
    #[test]
    fn next_plain_reads_any_pipeline_as_next_request_does() {
        const PIECES: &[&[u8]] = &[
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HEAD /h?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /old HTTP/1.0\r\n\r\n",
            b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            b"POST /z HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            b"PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
            b"GET /ex HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            b"GET /lf HTTP/1.1\nHost: x\n\n",
            b"\r\nGET /lead HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://h/abs?x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /many HTTP/1.1\r\nHost: x\r\nA: 1\r\nB:  2 \r\nC-D: three\r\n\r\n",
            b"POST /both HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /nohost HTTP/1.1\r\n\r\n",
            b"GET /two HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /fold HTTP/1.1\r\nHost: x\r\nA: 1\r\n 2\r\n\r\n",
        ];
        // xorshift64: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..3000 {
            let mut input = Vec::new();
            for _ in 0..1 + rand(6) {
                input.extend_from_slice(PIECES[rand(PIECES.len())]);
            }
            let mut cuts: Vec<usize> = (0..rand(4)).map(|_| rand(input.len() + 1)).collect();
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut a = Parser::new(Limits::default());
            let mut b = Parser::new(Limits::default());
            let (mut head, mut taken) = (Head::default(), None);
            let mut from = 0;
            'pushes: for cut in cuts {
                a.push(&input[from..cut]);
                b.push(&input[from..cut]);
                from = cut;
                loop {
                    let want = match a.next_request() {
                        Ok(Some(raw)) => seen(&raw),
                        Ok(None) => Seen::More,
                        Err(e) => Seen::Refused(e.status().as_u16()),
                    };
                    let got = match b.next_plain(&mut head, &mut taken) {
                        Ok(Next::Head) => {
                            let seen_head = Seen::Request(
                                head.method(),
                                b.front()[head.target.range()].to_vec(),
                                head.version,
                                head.keep_alive,
                                Vec::new(),
                            );
                            if rand(2) == 0 {
                                b.skip_head(&head);
                                seen_head
                            } else {
                                let raw = Next::Head.into_raw(&mut b, &head, &mut taken);
                                assert_eq!(seen(&raw), seen_head, "the head in the buffer is the one taken");
                                seen(&raw)
                            }
                        }
                        Ok(n @ Next::Request) => seen(&n.into_raw(&mut b, &head, &mut taken)),
                        Ok(Next::Incomplete) => Seen::More,
                        Ok(Next::Fresh) => panic!("next_plain reads no head in place"),
                        Err(e) => Seen::Refused(e.status().as_u16()),
                    };
                    let pipeline = String::from_utf8_lossy(&input);
                    assert_eq!(got, want, "{pipeline:?}");
                    assert_eq!(b.buffered(), a.buffered(), "{pipeline:?}");
                    // The skipped heads are a strict part of what is buffered, or none.
                    assert!(
                        b.skipped < b.buf.len() || (b.skipped == 0 && b.buf.is_empty()),
                        "{pipeline:?}"
                    );
                    assert_eq!(
                        (b.has_partial(), b.continue_pending(), b.wants_continue()),
                        (a.has_partial(), a.continue_pending(), a.wants_continue()),
                        "{pipeline:?}"
                    );
                    match want {
                        Seen::Request(..) => {}
                        Seen::More => break,
                        Seen::Refused(_) => break 'pushes,
                    }
                }
            }
        }
    }

    #[test]
    fn a_streamed_body_decodes_piece_by_piece_and_leaves_the_next_request() {
        let next = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
        let cl = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n";
        let ch = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let chunked = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n";
        for piece in [1, 3, 7, 100] {
            let mut input = b"hello world".to_vec();
            input.extend_from_slice(next);
            let (body, left) = stream_body(cl, &input, piece).expect("valid");
            assert_eq!(body, b"hello world", "piece {piece}");
            assert!(left <= next.len());
            let mut input = chunked.to_vec();
            input.extend_from_slice(next);
            let (body, _) = stream_body(ch, &input, piece).expect("valid");
            assert_eq!(body, b"hello world", "piece {piece}");
        }
        // After the end, the next request parses from what is left.
        let mut p = Parser::new(Limits::default());
        p.push(cl);
        assert!(p.next_request().expect("valid").is_none());
        p.take_streaming().expect("head");
        p.push(b"hello world");
        p.push(next);
        assert!(matches!(p.next_body_chunk(), Ok(BodyChunk::Data(_))));
        assert_eq!(p.next_body_chunk(), Ok(BodyChunk::End));
        assert_eq!(
            p.next_request().expect("valid").expect("complete").target(),
            b"/next"
        );
    }

    #[test]
    fn a_streamed_chunked_body_keeps_its_limits() {
        let ch = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let limits = Limits {
            max_body_bytes: 8,
            ..Limits::default()
        };
        let mut p = Parser::new(limits);
        p.push(ch);
        assert!(p.next_request().expect("valid").is_none());
        p.take_streaming().expect("head");
        p.push(b"5\r\nhello\r\n");
        assert!(matches!(p.next_body_chunk(), Ok(BodyChunk::Data(_))));
        p.push(b"5\r\nworld\r\n");
        let e = p.next_body_chunk().expect_err("past the limit");
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let e = stream_body(ch, b"5\nhello\r\n0\r\n\r\n", 4).expect_err("bare LF");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    /// Heads the whole-head path turns down (leading empty lines, more fields than its slots,
    /// obs-fold refused, an unknown version) reach the same verdict through the out-of-line
    /// path whether they arrive whole or a byte per read, and the parser goes on to the next
    /// request; a head in pieces keeps its scan only until it completes.
    #[test]
    fn heads_the_fast_path_turns_down_get_one_verdict_whole_or_in_pieces() {
        let fields: String = (0..20).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let many = format!("GET /many HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        let next = "POST /next HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok";
        let accepted = [
            "\r\n\r\nGET /blank HTTP/1.1\r\nHost: a\r\n\r\n".to_string(),
            many,
            "GET /two HTTP/1.1\nHost: a\n\n".to_string(),
        ];
        for head in &accepted {
            for piece in [1, 3, head.len() + next.len()] {
                let input = format!("{head}{next}");
                let mut p = Parser::new(Limits::default());
                let mut got = Vec::new();
                for chunk in input.as_bytes().chunks(piece) {
                    p.push(chunk);
                    while let Some(r) = p.next_request().expect("accepted") {
                        got.push((r.target().to_vec(), r.body().to_vec()));
                    }
                    if !p.has_partial() {
                        assert!(p.head_scan.is_none(), "a scan kept with nothing buffered");
                    }
                }
                assert_eq!(got.len(), 2, "{head:?} in pieces of {piece}");
                assert_eq!(got[1], (b"/next".to_vec(), b"ok".to_vec()));
                assert!(p.head_scan.is_none(), "no scan kept once the heads are complete");
            }
        }
        for (head, status) in [
            ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ] {
            for piece in [1, 4, head.len()] {
                let mut p = Parser::new(Limits::default());
                let mut verdict = None;
                for chunk in head.as_bytes().chunks(piece) {
                    p.push(chunk);
                    match p.next_request() {
                        Ok(None) => {}
                        Ok(Some(_)) => panic!("{head:?} accepted"),
                        Err(e) => {
                            verdict = Some(e.status().as_u16());
                            break;
                        }
                    }
                }
                assert_eq!(verdict, Some(status), "{head:?} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn an_idle_parser_gives_its_buffer_back_and_works_after() {
        let mut p = Parser::new(Limits::default());
        p.push(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(p.next_request().expect("valid").is_some());
        assert!(p.next_request().expect("valid").is_none());
        p.release_idle();
        assert_eq!(p.buf.capacity(), 0, "an idle parser holds no buffer");
        // A partial head is kept: releasing then would lose bytes.
        p.push(b"GET /b HT");
        p.release_idle();
        assert!(p.buf.capacity() > 0);
        p.push(b"TP/1.1\r\nHost: x\r\n\r\n");
        let r = p.next_request().expect("valid").expect("complete");
        assert_eq!(r.target(), b"/b");
    }

    #[test]
    fn an_idle_parser_hands_its_buffer_over_and_takes_another() {
        let mut p = Parser::new(Limits::default());
        p.push(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT");
        assert!(p.next_request().expect("valid").is_some());
        assert!(p.take_idle_buf().is_none(), "a partial head keeps its buffer");
        p.push(b"TP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            p.next_request().expect("valid").expect("complete").target(),
            b"/b"
        );
        let buf = p.take_idle_buf().expect("idle: the buffer is handed over");
        assert!(p.lacks_buf());
        let mut other = BytesMut::with_capacity(64);
        other.extend_from_slice(b"stale");
        p.set_buf(other);
        assert!(!p.lacks_buf());
        p.set_buf(buf);
        p.push(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            p.next_request().expect("valid").expect("complete").target(),
            b"/c"
        );
    }
}
