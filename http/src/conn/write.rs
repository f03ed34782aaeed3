//! Writing answers: the coalesced output of a batch flushed under the write deadline, the
//! ready-made error and 503 answers, and the lingering close. HOT PATH.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use http::header::HeaderValue;
use http::StatusCode;
use ringcore_runtime::time::{loop_now, timeout_at};
use ringcore_runtime::IoBuf;

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
async fn flush_timed<T: Transport>(
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
