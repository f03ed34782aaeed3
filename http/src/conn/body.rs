//! A request body streamed to its handler as it asks: the pump beside the handler, `100
//! Continue`, the drain of an unread rest, the answer to a body that failed.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::coarse::timeout_at;
use bytes::Bytes;
use http::{StatusCode, Version};

use super::wait::Read;
use super::write::flush;
use super::{ConnConfig, CoreConns, Transport};
use crate::body_stream::{BodyError, Demand, StreamShared};
use crate::limits::MAX_UNREAD_BODY_DRAIN;
use crate::metrics::Gauge;
use crate::proto::encode::{self, Delimit, Persist};
use crate::proto::parser::BodyChunk;
use crate::proto::{Parser, ProtoError};
use crate::response::{Body, Response};

/// How a streamed body's pump ended (while its handler still ran).
pub(super) enum PumpEnd {
    /// The body was read to its end.
    Complete,
    /// The handler dropped its stream before the end.
    Dropped,
    /// The body broke a limit or its framing: answer this and close.
    Failed(ProtoError),
    /// The client used up the body's read time.
    TimedOut,
    /// The client closed the connection (or it failed) before the body's end.
    Gone,
}

/// The time a streamed body has spent waiting for its client; the body read timeout
/// bounds it (time the handler spent not asking for more does not count).
#[derive(Default)]
pub(super) struct BodyClock {
    waited: Duration,
}

impl BodyClock {
    /// Receives the next chunk within what is left of the body's read time.
    async fn recv<T: Transport>(&mut self, stream: &T, cfg: &ConnConfig) -> Read<T::Chunk> {
        let left = cfg.limits.body_read_timeout.saturating_sub(self.waited);
        let t0 = Instant::now();
        let read = match timeout_at(t0 + left, stream.recv()).await {
            Ok(Ok(c)) if c.is_empty() => Read::Eof,
            Ok(Ok(c)) => Read::Data(c),
            Ok(Err(_)) => Read::Failed,
            Err(_) => Read::TimedOut,
        };
        self.waited += t0.elapsed();
        read
    }
}

/// Streamed body bytes in the parser's buffer, counted in the per-core gauge while this
/// lives.
struct Held<'a> {
    gauge: &'a Gauge,
    n: usize,
}

impl Held<'_> {
    fn set(&mut self, n: usize) {
        self.gauge.add(n as i64 - self.n as i64);
        self.n = n;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Runs a handler whose body is streamed, and beside it the pump that reads the body as the
/// handler asks. Returns the response and how the pump ended, if it did before the handler.
pub(super) async fn serve_streamed<T: Transport>(
    stream: &T,
    parser: &mut Parser,
    handler: impl Future<Output = Response>,
    shared: &StreamShared,
    clock: &mut BodyClock,
    cfg: &ConnConfig,
) -> (Response, Option<PumpEnd>) {
    let mut handler = pin!(handler);
    let mut pump = pin!(pump_body(stream, parser, shared, clock, cfg));
    let mut ended = None;
    let resp = poll_fn(|cx| {
        if let Poll::Ready(r) = handler.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if ended.is_none() {
            if let Poll::Ready(e) = pump.as_mut().poll(cx) {
                ended = Some(e);
            }
        }
        Poll::Pending
    })
    .await;
    (resp, ended)
}

/// Reads a streamed body for its handler: each time the handler wants bytes (and none are
/// queued), decode what the buffer holds or receive one chunk. Sends `100 Continue` before
/// the first receive if the client asked for it. Cancel-safe (a receive loses no bytes).
async fn pump_body<T: Transport>(
    stream: &T,
    parser: &mut Parser,
    shared: &StreamShared,
    clock: &mut BodyClock,
    cfg: &ConnConfig,
) -> PumpEnd {
    let mut held = Held {
        gauge: shared.gauge(),
        n: 0,
    };
    held.set(parser.buffered());
    loop {
        if let Demand::Dropped = shared.demand().await {
            return PumpEnd::Dropped;
        }
        loop {
            match parser.next_body_chunk() {
                Ok(BodyChunk::Data(b)) => {
                    held.set(parser.buffered());
                    shared.put(b);
                    break;
                }
                Ok(BodyChunk::End) => {
                    shared.finish(Ok(()));
                    return PumpEnd::Complete;
                }
                Ok(BodyChunk::NeedMore) => {}
                Err(e) => {
                    let err = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        BodyError::TooLarge
                    } else {
                        BodyError::Malformed
                    };
                    shared.finish(Err(err));
                    return PumpEnd::Failed(e);
                }
            }
            if parser.continue_pending() {
                parser.continue_sent();
                let advance: fn(&mut &'static [u8], usize) = |b, n| *b = &b[n..];
                let sent = timeout_at(
                    Instant::now() + cfg.limits.write_timeout,
                    send_continue(stream, advance),
                )
                .await;
                if !matches!(sent, Ok(true)) {
                    shared.finish(Err(BodyError::Closed));
                    return PumpEnd::Gone;
                }
            }
            match clock.recv(stream, cfg).await {
                Read::Data(c) => {
                    parser.push(&c);
                    held.set(parser.buffered());
                }
                Read::TimedOut => {
                    shared.finish(Err(BodyError::TimedOut));
                    return PumpEnd::TimedOut;
                }
                _ => {
                    shared.finish(Err(BodyError::Closed));
                    return PumpEnd::Gone;
                }
            }
        }
    }
}

/// Writes `100 Continue`; false if the connection failed.
async fn send_continue<T: Transport>(stream: &T, advance: fn(&mut &'static [u8], usize)) -> bool {
    let mut buf: &'static [u8] = encode::CONTINUE;
    loop {
        match stream.write(buf).await {
            (Ok(n), b) if n > 0 => {
                buf = b;
                if n == buf.len() {
                    return true;
                }
                advance(&mut buf, n);
            }
            _ => return false,
        }
    }
}

/// After its handler returned, reads and discards what is left of a streamed body, up to
/// [`MAX_UNREAD_BODY_DRAIN`] received bytes within the body's read time. True if the body
/// ended (the connection can serve its next request).
pub(super) async fn drain_unread<T: Transport>(
    stream: &T,
    parser: &mut Parser,
    clock: &mut BodyClock,
    cfg: &ConnConfig,
) -> bool {
    let mut received = 0usize;
    loop {
        match parser.next_body_chunk() {
            Ok(BodyChunk::Data(_)) => {}
            Ok(BodyChunk::End) => return true,
            Ok(BodyChunk::NeedMore) if received < MAX_UNREAD_BODY_DRAIN => {
                match clock.recv(stream, cfg).await {
                    Read::Data(c) => {
                        received += c.len();
                        parser.push(&c);
                    }
                    _ => return false,
                }
            }
            Ok(BodyChunk::NeedMore) | Err(_) => return false,
        }
    }
}

/// Answers a request whose streamed body failed (a limit, framing, the read time): the
/// handler's own error answer (4xx / 5xx), or `failure` in place of an answer that would
/// claim success on a body never received whole; then the connection closes. True if it
/// should linger.
pub(super) async fn answer_body_failure<T: Transport>(
    stream: &T,
    out: &mut Vec<u8>,
    cfg: &ConnConfig,
    core: &CoreConns,
    resp: Response,
    version: Version,
    failure: impl FnOnce(&mut Vec<u8>),
) -> bool {
    let status = resp.status_code();
    if status.is_client_error() || status.is_server_error() {
        let (status, ctype, headers, body) = resp.into_parts();
        let body = match body {
            Body::Full(b) => b,
            // A streamed error answer is not waited for: the request is already lost.
            _ => Bytes::new(),
        };
        encode::head(
            out,
            status,
            ctype.as_ref(),
            &headers,
            &cfg.server_header,
            Delimit::Length(body.len() as u64),
            Persist::new(version, false),
        );
        out.extend_from_slice(&body);
    } else {
        failure(out);
    }
    flush(stream, out, cfg, core).await
}
