//! [`BodyStream`]: a request body read from the socket as the handler consumes it.
//!
//! The connection and the stream share one small slot ([`StreamShared`]): the handler's
//! `next()` marks that it wants bytes and waits; the connection (which runs the handler's
//! future and a body pump side by side in the connection's own task) sees the demand, reads
//! one chunk from the socket, decodes it and puts it in the slot. At most one decoded chunk
//! waits there, so a client sending faster than its handler reads meets TCP flow control,
//! not a growing buffer.

use std::cell::RefCell;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use crate::extract::{Rejection, RejectionKind};
use crate::metrics::Gauge;
use crate::response::{IntoResponse, Response};

/// Why a streamed request body ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// The body passed [`Limits::max_body_bytes`](crate::Limits::max_body_bytes). The
    /// connection answers 413 (unless the handler answered an error of its own) and closes.
    TooLarge,
    /// The body's framing is broken (a bad chunk size, a bare LF): 400, and the connection
    /// closes.
    Malformed,
    /// The client sent the body too slowly: it used up
    /// [`Limits::body_read_timeout`](crate::Limits::body_read_timeout) of waiting for the
    /// client (time the handler spent not asking for more does not count). 408 and close.
    TimedOut,
    /// The client closed the connection, or it failed, before the body's end.
    Closed,
    /// The connection stopped reading this body: its handler had returned (a stream kept
    /// past the handler is not read any more).
    Aborted,
}

impl BodyError {
    /// The rejection (and so the problem response) this error answers with.
    pub fn to_rejection(self) -> Rejection {
        let (kind, detail) = match self {
            BodyError::TooLarge => (RejectionKind::BodyTooLarge, "the body is larger than the limit"),
            BodyError::Malformed => (RejectionKind::BodyReadFailed, "the body's framing is invalid"),
            BodyError::TimedOut => (RejectionKind::BodyTimedOut, "the body arrived too slowly"),
            BodyError::Closed => (RejectionKind::BodyReadFailed, "the client closed the connection"),
            BodyError::Aborted => (RejectionKind::BodyReadFailed, "the body is no longer read"),
        };
        Rejection::new(kind, detail)
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyError::TooLarge => "request body larger than the limit",
            BodyError::Malformed => "request body framing invalid",
            BodyError::TimedOut => "request body timed out",
            BodyError::Closed => "connection closed before the end of the request body",
            BodyError::Aborted => "request body no longer read (the handler returned)",
        })
    }
}

impl std::error::Error for BodyError {}

/// `?` on a [`BodyError`] in a handler answers its problem response (413, 400, 408).
impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        self.to_rejection().into_response()
    }
}

impl From<BodyError> for Rejection {
    fn from(e: BodyError) -> Self {
        e.to_rejection()
    }
}

/// The slot a connection and its handler's [`BodyStream`] share.
pub(crate) struct StreamShared {
    state: RefCell<SlotState>,
    /// Bytes of streamed bodies received and not yet taken by handlers, per core.
    gauge: Gauge,
}

#[derive(Default)]
struct SlotState {
    /// One decoded chunk waiting for the handler.
    chunk: Option<Bytes>,
    /// How the body ended, once it did (the error is handed to the handler once).
    end: Option<Result<(), BodyError>>,
    /// The handler waits for bytes.
    wants: bool,
    /// The handler's stream is gone (dropped, or the handler returned).
    dropped: bool,
    consumer: Option<Waker>,
    pump: Option<Waker>,
}

/// What the pump is asked for.
pub(crate) enum Demand {
    /// The handler waits for the next chunk.
    Wants,
    /// The handler dropped its stream.
    Dropped,
}

impl StreamShared {
    pub(crate) fn new(gauge: Gauge) -> Rc<Self> {
        Rc::new(Self {
            state: RefCell::new(SlotState::default()),
            gauge,
        })
    }

    /// The per-core gauge of streamed body bytes held in user space.
    pub(crate) fn gauge(&self) -> &Gauge {
        &self.gauge
    }

    /// Waits until the handler wants a chunk (and none is queued) or dropped its stream.
    pub(crate) async fn demand(&self) -> Demand {
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if s.dropped {
                return Poll::Ready(Demand::Dropped);
            }
            if s.wants && s.chunk.is_none() && s.end.is_none() {
                return Poll::Ready(Demand::Wants);
            }
            s.pump = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Queues a decoded chunk for the handler (counted in the gauge until taken).
    pub(crate) fn put(&self, chunk: Bytes) {
        self.gauge.add(chunk.len() as i64);
        let waker = {
            let mut s = self.state.borrow_mut();
            s.wants = false;
            s.chunk = Some(chunk);
            s.consumer.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Records how the body ended (the first end wins) and wakes the handler.
    pub(crate) fn finish(&self, end: Result<(), BodyError>) {
        let waker = {
            let mut s = self.state.borrow_mut();
            if s.end.is_none() {
                s.end = Some(end);
            }
            s.consumer.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        let (out, pump) = {
            let mut s = self.state.borrow_mut();
            if let Some(c) = s.chunk.take() {
                self.gauge.add(-(c.len() as i64));
                (Poll::Ready(Some(Ok(c))), None)
            } else {
                match s.end {
                    Some(Ok(())) => (Poll::Ready(None), None),
                    Some(Err(e)) => {
                        // Handed over once; the stream then ends.
                        s.end = Some(Ok(()));
                        (Poll::Ready(Some(Err(e))), None)
                    }
                    None => {
                        s.wants = true;
                        s.consumer = Some(cx.waker().clone());
                        (Poll::Pending, s.pump.take())
                    }
                }
            }
        };
        if let Some(w) = pump {
            w.wake();
        }
        out
    }

    fn drop_consumer(&self) {
        let pump = {
            let mut s = self.state.borrow_mut();
            s.dropped = true;
            s.wants = false;
            if let Some(c) = s.chunk.take() {
                self.gauge.add(-(c.len() as i64));
            }
            s.pump.take()
        };
        if let Some(w) = pump {
            w.wake();
        }
    }
}

/// A request body read as the handler consumes it: the last argument of a handler (it
/// implements [`FromRequest`](crate::extract::FromRequest) with
/// [`STREAMS_BODY`](crate::extract::FromRequest::STREAMS_BODY) set).
///
/// For a route whose handler takes a `BodyStream`, the connection calls the handler as soon
/// as the request's head is complete, and reads the body from the socket only when
/// [`next`](Self::next) asks: one receive at a time, at most one decoded chunk queued, so a
/// fast client is held back by TCP flow control. Content-Length and chunked bodies both
/// stream (chunked framing is removed). The limits still hold: past
/// [`Limits::max_body_bytes`](crate::Limits::max_body_bytes) the stream ends with
/// [`BodyError::TooLarge`]; a client that sends slower than
/// [`Limits::body_read_timeout`](crate::Limits::body_read_timeout) allows (counting only the
/// time the server waited for it) ends it with [`BodyError::TimedOut`]; a client that leaves
/// ends it with [`BodyError::Closed`]. After such an error the connection closes after the
/// response, and a 413 / 400 / 408 replaces a handler's non-error answer.
///
/// `Expect: 100-continue` is answered when the handler first asks for bytes (not before: a
/// handler that answers without reading tells the client not to send the body).
///
/// The body must be read before the handler returns: then the connection reads and discards
/// up to [`MAX_UNREAD_BODY_DRAIN`](crate::limits::MAX_UNREAD_BODY_DRAIN) of what is left to
/// keep the connection, or closes it after the response; a stream kept past that (moved into
/// a spawned task) yields [`BodyError::Aborted`].
///
/// A body that was already whole in the connection's buffer when its head completed (it
/// came in the same receive), and a request built in process
/// ([`Request::builder`](crate::Request::builder)), give their bytes as one chunk
/// ([`is_streaming`](Self::is_streaming) is false then).
///
/// ```
/// use ringcore_http::{post, BodyStream, BodyError, Router};
///
/// async fn count(mut body: BodyStream) -> Result<String, BodyError> {
///     let mut n = 0;
///     while let Some(chunk) = body.next().await {
///         n += chunk?.len();
///     }
///     Ok(format!("{n} bytes\n"))
/// }
/// let _ = Router::new().route("/upload", post(count));
/// ```
pub struct BodyStream {
    inner: Inner,
}

enum Inner {
    Full(Option<Bytes>),
    Conn(Rc<StreamShared>),
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field(
                "source",
                &match self.inner {
                    Inner::Full(_) => "buffered",
                    Inner::Conn(_) => "connection",
                },
            )
            .finish()
    }
}

impl BodyStream {
    pub(crate) fn from_conn(shared: Rc<StreamShared>) -> Self {
        Self {
            inner: Inner::Conn(shared),
        }
    }

    /// True if the body comes from a connection as it is read (not from bytes already
    /// buffered).
    pub fn is_streaming(&self) -> bool {
        matches!(self.inner, Inner::Conn(_))
    }

    /// The next chunk of the body; `None` at its end. After an error, `None`.
    pub async fn next(&mut self) -> Option<Result<Bytes, BodyError>> {
        poll_fn(|cx| self.poll_next_chunk(cx)).await
    }

    /// [`next`](Self::next) as a poll function.
    pub fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        match &mut self.inner {
            Inner::Full(b) => Poll::Ready(b.take().filter(|b| !b.is_empty()).map(Ok)),
            Inner::Conn(shared) => shared.poll_next(cx),
        }
    }

    /// Reads the rest of the body into one buffer; fails if it ends with an error.
    pub async fn collect(mut self) -> Result<Bytes, BodyError> {
        if let Inner::Full(b) = &mut self.inner {
            return Ok(b.take().unwrap_or_default());
        }
        let mut all = BytesMut::new();
        while let Some(chunk) = self.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all.freeze())
    }
}

impl From<Bytes> for BodyStream {
    fn from(b: Bytes) -> Self {
        Self {
            inner: Inner::Full(Some(b)),
        }
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        if let Inner::Conn(shared) = &self.inner {
            shared.drop_consumer();
        }
    }
}

/// `BodyStream` is a [`futures_core::Stream`] too, for stream combinators.
impl futures_core::Stream for BodyStream {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_chunk(cx)
    }
}
