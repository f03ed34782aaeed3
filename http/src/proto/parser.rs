//! The request push parser: bytes in, complete requests out, in order.

use std::fmt;

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use super::chunked::ChunkedDecoder;
use super::head::{Framing, Head, HeadScan, Reject};
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

/// A complete request as parsed: its head bytes (shared, not copied), the validated head,
/// and its body.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub(crate) head_bytes: Bytes,
    pub(crate) head: Head,
    pub(crate) body: Bytes,
}

impl RawRequest {
    /// The method.
    pub fn method(&self) -> &http::Method {
        &self.head.method
    }

    /// The request target exactly as sent.
    pub fn target(&self) -> &[u8] {
        &self.head_bytes[self.head.target.clone()]
    }

    /// The path and query the router sees: the whole target, or for absolute-form what follows
    /// the authority (possibly empty, or starting with `?`).
    pub(crate) fn path_and_query(&self) -> &[u8] {
        &self.head_bytes[self.head.path_and_query.clone()]
    }

    /// Header fields in order, as (name, value) bytes.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        super::head::fields(&self.head_bytes[self.head.fields.clone()])
    }

    /// The decoded body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether the connection may be kept open after this request.
    pub fn keep_alive(&self) -> bool {
        self.head.keep_alive
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
    Failed(ProtoError),
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
    state: State,
    /// The head being received: resumes where the last call left off.
    head_scan: HeadScan,
    limits: Limits,
    continue_sent: bool,
}

impl Parser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: BytesMut::with_capacity(4096),
            state: State::Head,
            head_scan: HeadScan::default(),
            limits,
            continue_sent: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Gives the receive buffer's memory back while nothing is buffered (an idle keep-alive
    /// connection); the next [`push`](Self::push) allocates again. No-op otherwise.
    pub fn release_idle(&mut self) {
        if self.buf.is_empty() && matches!(self.state, State::Head) && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// True if bytes of an unfinished request are buffered (or a body is being read).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || matches!(self.state, State::Body { .. })
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

    /// Records that `100 Continue` was sent.
    pub fn continue_sent(&mut self) {
        self.continue_sent = true;
    }

    /// The next complete request, `Ok(None)` if more bytes are needed, or the error to answer
    /// with (after which the parser stays failed: close the connection).
    pub fn next_request(&mut self) -> Result<Option<RawRequest>, ProtoError> {
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(*e),
                State::Head => {
                    let head = match self.head_scan.advance(&self.buf, &self.limits) {
                        Ok(Some(h)) => h,
                        Ok(None) => return Ok(None),
                        Err(r) => return Err(self.fail(r.into())),
                    };
                    self.head_scan = HeadScan::default();
                    let head_bytes = self.buf.split_to(head.len).freeze();
                    self.continue_sent = false;
                    let body = match head.framing {
                        Framing::None => {
                            return Ok(Some(RawRequest {
                                head_bytes,
                                head,
                                body: Bytes::new(),
                            }))
                        }
                        Framing::Length(n) => BodyState::Length(n),
                        Framing::Chunked => BodyState::Chunked(ChunkedDecoder::new(), Vec::new()),
                    };
                    self.state = State::Body {
                        head_bytes,
                        head,
                        body,
                    };
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
                            head_bytes,
                            head,
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
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
