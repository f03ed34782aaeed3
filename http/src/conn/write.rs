//! Writing answers: the coalesced output of a batch flushed under the write deadline, the
//! ready-made error and 503 answers, and the lingering close. HOT PATH.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::HeaderValue;
use http::StatusCode;
use ringcore_runtime::time::{loop_now, timeout_at};
use ringcore_runtime::IoBuf;

use super::busy::out_of_line;
use super::{ConnConfig, CoreConns, LazyTimer, Transport};
use crate::limits::{Limits, LINGER_MAX_BYTES};
use crate::proto::encode::{self, Delimit, Persist};
use crate::proto::ProtoError;

/// Writes all of `buf` and hands it back; `None` if the connection failed or a send accepted
/// no byte within the write timeout (the client stopped reading). `advance` drops the bytes
/// already sent from the front of `buf`. The write deadline's timer is `timer`, kept across
/// the sends of a busy stretch and moved lazily (see [`LazyTimer`]): a send that completes
/// later (every send on io_uring) touches the core's timer map about once per write timeout,
/// not twice per send.
pub(super) async fn send_all<T: Transport, B: IoBuf>(
    stream: &T,
    mut buf: B,
    advance: fn(&mut B, usize),
    cfg: &ConnConfig,
    core: &CoreConns,
    timer: &mut Option<LazyTimer>,
) -> Option<B> {
    loop {
        let deadline = loop_now() + cfg.limits.write_timeout;
        let mut write = pin!(stream.write(buf));
        let sent = poll_fn(|cx| match write.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Ok(r)),
            Poll::Pending if LazyTimer::poll_due(timer, cx, deadline) => Poll::Ready(Err(())),
            Poll::Pending => Poll::Pending,
        })
        .await;
        match sent {
            Ok((Ok(n), b)) if n > 0 => {
                buf = b;
                if n == buf.bytes_init() {
                    return Some(buf);
                }
                advance(&mut buf, n);
            }
            Ok((Err(e), b)) if e.kind() == std::io::ErrorKind::Interrupted => buf = b,
            Ok(_) => return None,
            Err(_) => {
                // The send is cancelled with its future; its buffer stays with the driver
                // until the kernel lets go of it.
                core.m_write_timeouts.inc();
                return None;
            }
        }
    }
}

/// Writes and clears `out` (keeping its allocation); false if the connection is done for.
pub(super) async fn flush<T: Transport>(
    stream: &T,
    out: &mut Vec<u8>,
    cfg: &ConnConfig,
    core: &CoreConns,
) -> bool {
    flush_timed(stream, out, cfg, core, &mut None).await
}

/// [`flush_timed`], after recording the metrics of the answers in `out`.
pub(super) async fn flush_answered<T: Transport, S: 'static>(
    stream: &T,
    out: &mut Vec<u8>,
    cfg: &ConnConfig,
    core: &CoreConns,
    timer: &mut Option<LazyTimer>,
    answered: &mut crate::router::Answered<'_, S>,
) -> bool {
    answered.record();
    flush_timed(stream, out, cfg, core, timer).await
}

/// [`flush`] with the write timer of a busy stretch (see [`send_all`]).
pub(super) async fn flush_timed<T: Transport>(
    stream: &T,
    out: &mut Vec<u8>,
    cfg: &ConnConfig,
    core: &CoreConns,
    timer: &mut Option<LazyTimer>,
) -> bool {
    if out.is_empty() {
        return true;
    }
    // The usual case first: the socket takes it all at once, with no future and no timer.
    match stream.try_write(out) {
        Ok(n) if n == out.len() => {
            out.clear();
            return true;
        }
        Ok(n) => drop(out.drain(..n)),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
        Err(_) => return false,
    }
    let buf = std::mem::take(out);
    match send_all(stream, buf, |b, n| drop(b.drain(..n)), cfg, core, timer).await {
        Some(mut buf) => {
            buf.clear();
            *out = buf;
            true
        }
        None => false,
    }
}

/// A batch's answers handed off to the transport (`Transport::hand_off`): on their way with
/// nobody waiting, due by `deadline` (the write timeout from the hand-off).
pub(super) struct HandedOff<S> {
    state: Handed<S>,
    deadline: Instant,
}

enum Handed<S> {
    Sending(S),
    /// Ended, and not all of it sent: for [`settle`] to finish.
    Ended(io::Result<usize>, Vec<u8>),
}

impl<S> HandedOff<S> {
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Settles a handed-off send that has ended whole (the usual case, long before the next
/// batch), without waiting: true if nothing is left on its way. Otherwise the send is still
/// going (the task's waker now registered with it) or ended short, and [`settle`] waits for
/// it or finishes it.
fn settled_now<S: Future<Output = (io::Result<usize>, Vec<u8>)> + Unpin>(
    handed: &mut Option<HandedOff<S>>,
    core: &CoreConns,
    cx: &mut Context<'_>,
) -> bool {
    let Some(h) = handed else {
        return true;
    };
    if let Handed::Sending(s) = &mut h.state {
        match std::pin::Pin::new(s).poll(cx) {
            Poll::Ready((r, buf)) => h.state = Handed::Ended(r, buf),
            Poll::Pending => return false,
        }
    }
    if matches!(&h.state, Handed::Ended(Ok(n), buf) if *n == buf.len()) {
        if let Some(HandedOff {
            state: Handed::Ended(_, buf),
            ..
        }) = handed.take()
        {
            core.pool.put_out(buf);
        }
        return true;
    }
    false
}

/// Waits for a handed-off send to end (or takes its end) and finishes it: true if all of it
/// went out, its buffer back in the pool; false if the connection failed or the send was not
/// done by its deadline (counted as a write timeout). A short send (the kernel gave up early
/// without an error) goes on through [`send_all`].
pub(super) async fn settle<T: Transport>(
    stream: &T,
    handed: &mut Option<HandedOff<T::Sending>>,
    cfg: &ConnConfig,
    core: &CoreConns,
    timer: &mut Option<LazyTimer>,
) -> bool {
    let Some(HandedOff { state, deadline }) = handed.take() else {
        return true;
    };
    let (r, buf) = match state {
        Handed::Ended(r, buf) => (r, buf),
        Handed::Sending(mut sending) => {
            let ended = poll_fn(|cx| match std::pin::Pin::new(&mut sending).poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending if LazyTimer::poll_due(timer, cx, deadline) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await;
            match ended {
                Some(ended) => ended,
                None => {
                    // The send is cancelled with `sending`; its buffer stays with the driver
                    // until the kernel lets go of it.
                    core.m_write_timeouts.inc();
                    return false;
                }
            }
        }
    };
    let rest = match (r, buf) {
        (Ok(n), buf) if n == buf.len() => {
            core.pool.put_out(buf);
            return true;
        }
        (Ok(n), mut buf) if n > 0 && n < buf.len() => {
            buf.drain(..n);
            buf
        }
        (Err(e), buf) if e.kind() == io::ErrorKind::Interrupted => buf,
        _ => return false,
    };
    match send_all(stream, rest, |b, n| drop(b.drain(..n)), cfg, core, timer).await {
        Some(buf) => {
            core.pool.put_out(buf);
            true
        }
        None => false,
    }
}

/// [`flush_answered`] at the end of a batch: what the socket does not take at once is handed
/// off (`Transport::hand_off`) rather than awaited, so the connection goes on to wait for its
/// next request while it is sent, and `out` gets a fresh buffer. On a busy io_uring core,
/// where every answer goes through the ring, that spares the task the wake-up its send's
/// completion would cost. A send handed off before is settled first, so sends stay in
/// order. `None` where the transport cannot hand off: the rest is still in `out`, for
/// [`flush_timed`] (a separate await in the caller, so that this future stays small).
pub(super) async fn flush_handing_off<T: Transport, S: 'static>(
    stream: &T,
    out: &mut Vec<u8>,
    cfg: &ConnConfig,
    core: &CoreConns,
    timer: &mut Option<LazyTimer>,
    answered: &mut crate::router::Answered<'_, S>,
    handed: &mut Option<HandedOff<T::Sending>>,
) -> Option<bool> {
    answered.record();
    if out.is_empty() {
        return Some(true);
    }
    if handed.is_some()
        && !poll_fn(|cx| Poll::Ready(settled_now(handed, core, cx))).await
        && !out_of_line(settle(stream, handed, cfg, core, timer)).await
    {
        return Some(false);
    }
    match stream.try_write(out) {
        Ok(n) if n == out.len() => {
            out.clear();
            return Some(true);
        }
        Ok(n) => drop(out.drain(..n)),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
        Err(_) => return Some(false),
    }
    match stream.hand_off(std::mem::take(out)) {
        Ok(sending) => {
            *handed = Some(HandedOff {
                state: Handed::Sending(sending),
                deadline: loop_now() + cfg.limits.write_timeout,
            });
            *out = core.pool.take_out();
            Some(true)
        }
        Err(buf) => {
            *out = buf;
            None
        }
    }
}

/// [`settle`], then [`flush_answered`]: the flushes off the batch's end (closing, a large or
/// streamed body) go out after any handed-off send.
pub(super) async fn settle_and_flush<T: Transport, S: 'static>(
    stream: &T,
    out: &mut Vec<u8>,
    cfg: &ConnConfig,
    core: &CoreConns,
    timer: &mut Option<LazyTimer>,
    answered: &mut crate::router::Answered<'_, S>,
    handed: &mut Option<HandedOff<T::Sending>>,
) -> bool {
    settle(stream, handed, cfg, core, timer).await
        && flush_answered(stream, out, cfg, core, timer, answered).await
}

pub(super) fn error_response(out: &mut Vec<u8>, cfg: &ConnConfig, err: ProtoError) {
    let body = err.reason().as_bytes();
    let ctype = HeaderValue::from_static("text/plain; charset=utf-8");
    encode::head(
        out,
        err.status(),
        Some(&ctype),
        &[],
        &cfg.server_header,
        Delimit::Length(body.len() as u64 + 1),
        Persist::Close,
    );
    out.extend_from_slice(body);
    out.push(b'\n');
}

pub(super) fn timeout_response(out: &mut Vec<u8>, cfg: &ConnConfig) {
    let body = b"request timeout\n";
    encode::head(
        out,
        StatusCode::REQUEST_TIMEOUT,
        None,
        &[],
        &cfg.server_header,
        Delimit::Length(body.len() as u64),
        Persist::Close,
    );
    out.extend_from_slice(body);
}

/// Closes in stages (RFC 9112 section 9.6): half-close our side, then read and discard what
/// the client still sends until it closes, the linger timeout passes, or enough was read. A
/// plain close with unread input would make the kernel send a reset, which can destroy the
/// response the client has not read yet.
pub(crate) async fn linger<T: Transport>(stream: &T, limits: &Limits) {
    if stream.shutdown_write().await.is_err() {
        return;
    }
    let deadline = Instant::now() + limits.linger_timeout;
    let mut discarded = 0;
    while discarded < LINGER_MAX_BYTES {
        match timeout_at(deadline, stream.recv()).await {
            Ok(Ok(chunk)) if !chunk.is_empty() => discarded += chunk.len(),
            _ => return,
        }
    }
}

/// Answers 503 + `Retry-After` to a body that found no room in the core's budget, and closes.
pub(super) async fn refuse_body<T: Transport>(
    stream: &T,
    out: &mut Vec<u8>,
    cfg: &ConnConfig,
    core: &CoreConns,
) -> bool {
    core.body_budget.m_refused.inc();
    unavailable_and_close(out, cfg, b"request body budget exhausted\n");
    flush(stream, out, cfg, core).await
}

/// The 503 sent to a connection over the per-core limit.
pub(crate) fn refuse_response(cfg: &ConnConfig) -> Vec<u8> {
    let mut out = Vec::new();
    unavailable_and_close(&mut out, cfg, b"server at connection limit\n");
    out
}

/// Appends a 503 with `Retry-After: 1`, `Connection: close` and the text `body`.
fn unavailable_and_close(out: &mut Vec<u8>, cfg: &ConnConfig, body: &[u8]) {
    let headers = [(http::header::RETRY_AFTER, HeaderValue::from_static("1"))];
    encode::head(
        out,
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        &headers,
        &cfg.server_header,
        Delimit::Length(body.len() as u64),
        Persist::Close,
    );
    out.extend_from_slice(body);
}
