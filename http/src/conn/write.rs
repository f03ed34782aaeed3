//! Writing answers: the coalesced output of a batch flushed under the write deadline, the
//! ready-made error and 503 answers, and the lingering close. HOT PATH.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use http::header::HeaderValue;
use http::StatusCode;
use ringcore_runtime::net::SendLane;
use ringcore_runtime::time::loop_now;

use super::coarse::timeout_at;
use ringcore_runtime::IoBuf;

use super::{out_of_line, ConnConfig, CoreConns, LazyTimer, Transport};
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
    flush_timed(stream, out, cfg, core, &mut None, None, Post::No).await
}

/// The most bytes a flush posts ([`flush_timed`]): a batch of answers, not a large body.
pub(super) const POST_MAX: usize = 64 * 1024;

/// Whether a flush may leave its bytes to a send the connection does not wait for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Post {
    /// Yes: the connection reads next, and settles the send before it writes again (or
    /// ends its busy stretch).
    Yes,
    /// No: the bytes are sent when the flush returns (before a body goes out in its own
    /// write, before the connection closes).
    No,
}

/// The end-of-batch flush ([`flush_timed`] with [`Post::Yes`]) where it needs no wait, as a
/// plain call: the answers' metrics recorded, then `out` written at once or posted
/// ([`write_now`]). `Some` with the flush's outcome when it is done; `None` when it must
/// wait (the lane's last send not settled, or bytes the socket did not take that cannot be
/// posted: more than [`POST_MAX`], or a transport without posted sends), with `out` as it was
/// (less what the socket took), for [`flush_answered`]. At the end of nearly every batch it
/// is done here, and the connection neither builds nor polls the flush's future.
pub(super) fn flush_at_once<T: Transport, S: 'static>(
    stream: &T,
    out: &mut Vec<u8>,
    answered: &mut crate::router::Answered<'_, S>,
    lane: &SendLane,
) -> Option<bool> {
    answered.record();
    if !out.is_empty() && !lane.is_settled() {
        return None;
    }
    write_now(stream, out, Some(lane), Post::Yes)
}

/// What a flush does without waiting, once the lane (if any) is settled: `out` written
/// whole by `try_write`, or (with [`Post::Yes`] and a lane) what it left posted if that is at
/// most [`POST_MAX`]. `Some` with the outcome when that finished the flush; `None` with the
/// bytes still to send left in `out`.
fn write_now<T: Transport>(
    stream: &T,
    out: &mut Vec<u8>,
    lane: Option<&SendLane>,
    post: Post,
) -> Option<bool> {
    if out.is_empty() {
        return Some(true);
    }
    // The usual case first: the socket takes it all at once, with no future and no timer.
    // (Where the write would not be tried, as on a busy io_uring core, not even the call and
    // its `WouldBlock`: about 20 instructions an answer under `scripts/callgrind-http.sh`.)
    if stream.writes_now() {
        match stream.try_write(out) {
            Ok(n) if n == out.len() => {
                out.clear();
                return Some(true);
            }
            Ok(n) => drop(out.drain(..n)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(_) => return Some(false),
        }
    }
    if let (Post::Yes, Some(lane)) = (post, lane) {
        if out.len() <= POST_MAX {
            // The lane was settled, so only a transport without posted sends (TLS, the
            // epoll driver) says no: it is written by the caller then.
            match stream.post_send(lane, std::mem::take(out)) {
                Ok(()) => return Some(true),
                Err(buf) => *out = buf,
            }
        }
    }
    None
}

/// [`flush_timed`], after recording the metrics of the answers in `out` (at once, when
/// called). A plain function returning the flush's future, not an `async fn`: that would be a
/// second future around the flush's, holding the same arguments again, and the busy
/// connection's future holds whichever flush it awaits.
#[allow(clippy::too_many_arguments)]
pub(super) fn flush_answered<'a, T: Transport, S: 'static>(
    stream: &'a T,
    out: &'a mut Vec<u8>,
    cfg: &'a ConnConfig,
    core: &'a CoreConns,
    timer: &'a mut Option<LazyTimer>,
    answered: &mut crate::router::Answered<'_, S>,
    lane: &'a SendLane,
    post: Post,
) -> impl Future<Output = bool> + 'a {
    answered.record();
    flush_timed(stream, out, cfg, core, timer, Some(lane), post)
}

/// [`flush`] with the write timer of a busy stretch (see [`send_all`]) and the connection's
/// posted sends: the lane's send under way is settled first, so that bytes go out in order.
///
/// With [`Post::Yes`], bytes the socket does not take at once (on io_uring while the core is
/// busy, all of them: `try_write` makes no call then) go to a posted send
/// ([`Transport::post_send`]), and `out` is left empty without capacity (the next read
/// takes a pooled buffer). An awaited ring send would cost the connection a second wake-up
/// and poll per flush, when its completion arrives only to hand the buffer back; the posted
/// send's completion wakes nobody and puts the buffer back in the core's pool, and the next
/// flush (or the end of the busy stretch) finds the outcome in the lane.
///
/// Only up to [`POST_MAX`] bytes are posted; more go through [`send_all`], whose write
/// timeout counts from the last byte the socket took. A posted send is waited for as a whole
/// (`settle`), so the bound keeps "no progress for `write_timeout`" the rule in practice, and
/// it bounds what a connection holds beyond the pending-output cap: while a posted send is
/// under way the connection reads and answers on into a new buffer, until its next flush
/// settles the send.
async fn flush_timed<T: Transport>(
    stream: &T,
    out: &mut Vec<u8>,
    cfg: &ConnConfig,
    core: &CoreConns,
    timer: &mut Option<LazyTimer>,
    lane: Option<&SendLane>,
    post: Post,
) -> bool {
    if let Some(lane) = lane {
        // An empty flush that may post has nothing to put in order.
        if (post == Post::No || !out.is_empty())
            && !lane.is_settled()
            && !settle(lane, cfg, core, timer).await
        {
            return false;
        }
    }
    if let Some(done) = write_now(stream, out, lane, post) {
        return done;
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

/// Waits until the lane has no posted send under way, under the write timeout; false if the
/// last one failed or did not finish in time (the connection is done for; dropping the lane
/// cancels the send). Usually it completed long ago and this one poll ends it; a send still
/// under way (a client slow to read) is waited for out of line, so that its state is not part
/// of every busy connection's future.
pub(super) async fn settle(
    lane: &SendLane,
    cfg: &ConnConfig,
    core: &CoreConns,
    timer: &mut Option<LazyTimer>,
) -> bool {
    match poll_fn(|cx| Poll::Ready(lane.poll_settled(cx))).await {
        Poll::Ready(settled) => settled.is_ok(),
        Poll::Pending => out_of_line(settle_slowly(lane, cfg, core, timer)).await,
    }
}

async fn settle_slowly(
    lane: &SendLane,
    cfg: &ConnConfig,
    core: &CoreConns,
    timer: &mut Option<LazyTimer>,
) -> bool {
    let deadline = loop_now() + cfg.limits.write_timeout;
    let settled = poll_fn(|cx| match lane.poll_settled(cx) {
        Poll::Ready(r) => Poll::Ready(Some(r)),
        Poll::Pending if LazyTimer::poll_due(timer, cx, deadline) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    })
    .await;
    match settled {
        Some(r) => r.is_ok(),
        None => {
            core.m_write_timeouts.inc();
            false
        }
    }
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
    lane: &SendLane,
) -> bool {
    core.body_budget.m_refused.inc();
    unavailable_and_close(out, cfg, b"request body budget exhausted\n");
    flush_timed(stream, out, cfg, core, &mut None, Some(lane), Post::No).await
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
