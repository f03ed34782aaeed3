//! One connection: read, parse every complete request, answer in order with one coalesced
//! write per batch, enforce the read and write deadlines and the body budget. HOT PATH.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, StatusCode, Version};
use ringcore_runtime::net::TcpStream;
use ringcore_runtime::time::{loop_now, timeout_at};
use ringcore_runtime::IoBuf;
use slab::Slab;

use crate::budget::{BodyBudget, Reservation};
use crate::limits::{Limits, LINGER_MAX_BYTES};
use crate::metrics::{Counter, Gauge};
use crate::proto::encode::{self, Delimit, Persist};
use crate::proto::{Parser, ProtoError};
use crate::request::Request;
use crate::response::Body;
use crate::router::Router;

/// Per-server settings shared by the connections of one core.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub(crate) limits: Limits,
    pub(crate) server_header: HeaderValue,
}

/// A per-core shutdown signal that idle connections wait on.
#[derive(Default)]
pub(crate) struct Drain {
    draining: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl Drain {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.get()
    }

    pub(crate) fn start(&self) {
        self.draining.set(true);
        let waiters: Vec<Waker> = self.waiters.borrow_mut().drain().collect();
        for w in waiters {
            w.wake();
        }
    }

    /// Resolves once draining starts.
    async fn wait(&self) {
        struct Guard<'a>(&'a Drain, Option<usize>);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                if let Some(k) = self.1 {
                    self.0.waiters.borrow_mut().try_remove(k);
                }
            }
        }
        let mut guard = Guard(self, None);
        poll_fn(|cx| {
            if self.draining.get() {
                return Poll::Ready(());
            }
            let mut w = self.waiters.borrow_mut();
            match guard.1 {
                Some(k) if w.contains(k) => w[k] = cx.waker().clone(),
                _ => guard.1 = Some(w.insert(cx.waker().clone())),
            }
            Poll::Pending
        })
        .await;
    }
}

/// Per-core connection bookkeeping (and the matching exported metrics).
pub(crate) struct CoreConns {
    pub(crate) active: Cell<usize>,
    pub(crate) accepted: Cell<u64>,
    pub(crate) requests: Cell<u64>,
    pub(crate) refused: Cell<u64>,
    pub(crate) drain: Drain,
    pub(crate) m_accepted: Counter,
    pub(crate) m_refused: Counter,
    /// Accepts that failed for lack of descriptors or memory (the loop then backs off).
    pub(crate) m_accept_exhausted: Counter,
    /// Connections closed because a write made no progress within the write timeout.
    m_write_timeouts: Counter,
    m_active: Gauge,
    /// Request bodies held across reads, all connections of this core together.
    pub(crate) body_budget: Rc<BodyBudget>,
}

impl CoreConns {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            active: Cell::new(0),
            accepted: Cell::new(0),
            requests: Cell::new(0),
            refused: Cell::new(0),
            drain: Drain::default(),
            m_accepted: Counter::new("ringcore_http_connections_total", "Connections accepted.", &[]),
            m_refused: Counter::new(
                "ringcore_http_connections_refused_total",
                "Connections refused with 503 at the per-core connection limit.",
                &[],
            ),
            m_accept_exhausted: Counter::new(
                "ringcore_http_accept_exhausted_total",
                "Accepts that failed with EMFILE, ENFILE, ENOBUFS or ENOMEM (accepting then backs off).",
                &[],
            ),
            m_write_timeouts: Counter::new(
                "ringcore_http_write_timeouts_total",
                "Connections closed because a write made no progress within the write timeout.",
                &[],
            ),
            m_active: Gauge::new("ringcore_http_connections_active", "Connections open now.", &[]),
            body_budget: Rc::new(BodyBudget::new(limits.body_buffer_budget)),
        }
    }
}

struct ActiveGuard(Rc<CoreConns>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
        self.0.m_active.add(-1);
    }
}

enum Read {
    Data(ringcore_runtime::net::RecvBuf),
    Eof,
    Failed,
    TimedOut,
    Drained,
}

/// Writes all of `buf` and hands it back; `None` if the connection failed or a send accepted
/// no byte within the write timeout (the client stopped reading). `advance` drops the bytes
/// already sent from the front of `buf`.
async fn send_all<B: IoBuf>(
    stream: &TcpStream,
    mut buf: B,
    advance: fn(&mut B, usize),
    cfg: &ConnConfig,
    core: &CoreConns,
) -> Option<B> {
    loop {
        let deadline = loop_now() + cfg.limits.write_timeout;
        match timeout_at(deadline, stream.write(buf)).await {
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
async fn flush(stream: &TcpStream, out: &mut Vec<u8>, cfg: &ConnConfig, core: &CoreConns) -> bool {
    if out.is_empty() {
        return true;
    }
    let buf = std::mem::take(out);
    match send_all(stream, buf, |b, n| drop(b.drain(..n)), cfg, core).await {
        Some(mut buf) => {
            buf.clear();
            *out = buf;
            true
        }
        None => false,
    }
}

fn error_response(out: &mut Vec<u8>, cfg: &ConnConfig, err: ProtoError) {
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

fn timeout_response(out: &mut Vec<u8>, cfg: &ConnConfig) {
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
pub(crate) async fn linger(stream: &TcpStream, limits: &Limits) {
    if stream.shutdown(std::net::Shutdown::Write).await.is_err() {
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

/// How long a body may wait for room in the budget, starting `now`.
fn budget_deadline(now: Instant, cfg: &ConnConfig) -> Instant {
    now + cfg.limits.body_budget_wait
}

/// Answers 503 + `Retry-After` to a body that found no room in the core's budget, and closes.
async fn refuse_body(stream: &TcpStream, out: &mut Vec<u8>, cfg: &ConnConfig, core: &CoreConns) -> bool {
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

/// Serves one connection until it closes. A connection that only lingers (draining what the
/// client still sends before the final close) no longer counts as active.
pub(crate) async fn serve<S: 'static>(
    stream: TcpStream,
    peer: Option<SocketAddr>,
    router: Rc<Router<S>>,
    cfg: Rc<ConnConfig>,
    core: Rc<CoreConns>,
) {
    core.active.set(core.active.get() + 1);
    core.m_active.add(1);
    let guard = ActiveGuard(core.clone());
    let wants_linger = serve_requests(&stream, peer, &router, &cfg, &core).await;
    drop(guard);
    if wants_linger {
        linger(&stream, &cfg.limits).await;
    }
}

/// The request loop. Returns true if the server chose to close and should linger.
async fn serve_requests<S: 'static>(
    stream: &TcpStream,
    peer: Option<SocketAddr>,
    router: &Router<S>,
    cfg: &ConnConfig,
    core: &CoreConns,
) -> bool {
    let mut parser = Parser::new(cfg.limits.clone());
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut head_started: Option<Instant> = None;
    let mut body_started: Option<Instant> = None;
    // This request's body bytes held across reads, reserved from the core's budget.
    let mut body_mem = Reservation::new(core.body_budget.clone());
    // The size of the last read: an upper bound on the body bytes a just-completed head left
    // in the parser.
    let mut last_read = 0;
    // The body being read reserved its whole declared length up front.
    let mut body_prepaid = false;
    let cap = cfg.limits.max_pending_response_bytes;
    let mut arrived = loop_now();
    loop {
        // Answer every complete request already buffered, in order, into one write.
        loop {
            let raw = match parser.next_request() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    error_response(&mut out, cfg, e);
                    return flush(stream, &mut out, cfg, core).await;
                }
            };
            head_started = None;
            body_started = None;
            let is_head = *raw.method() == Method::HEAD;
            let version = raw.head.version;
            let wants_keep_alive = raw.keep_alive();
            core.requests.set(core.requests.get() + 1);
            let resp = router.handle(Request::new(raw, peer, arrived)).await;
            // The request, and with it its body buffer, is gone.
            body_mem.release();
            // Decided after the handler: shutdown may have started while it ran.
            let keep_alive = wants_keep_alive && !core.drain.is_draining();
            let persist = Persist::new(version, keep_alive);
            let (status, ctype, headers, body) = resp.into_parts();
            let bodyless = encode::bodyless(status);
            let write_head = |out: &mut Vec<u8>, d: Delimit, persist: Persist| {
                encode::head(
                    out,
                    status,
                    ctype.as_ref(),
                    &headers,
                    &cfg.server_header,
                    d,
                    persist,
                );
            };
            match body {
                Body::Empty => {
                    let d = if bodyless {
                        Delimit::NoBody
                    } else {
                        Delimit::Length(0)
                    };
                    write_head(&mut out, d, persist);
                }
                Body::Full(b) => {
                    let d = if bodyless {
                        Delimit::NoBody
                    } else {
                        Delimit::Length(b.len() as u64)
                    };
                    write_head(&mut out, d, persist);
                    if !is_head && !bodyless {
                        if out.len() + b.len() > cap && b.len() > 16 * 1024 {
                            // A large body goes out in its own write, without a copy.
                            if !flush(stream, &mut out, cfg, core).await {
                                return false;
                            }
                            let advance: fn(&mut Bytes, usize) = bytes::Buf::advance;
                            if send_all(stream, b, advance, cfg, core).await.is_none() {
                                return false;
                            }
                        } else {
                            out.extend_from_slice(&b);
                        }
                    }
                }
                Body::Stream(rx) => {
                    if is_head || bodyless {
                        let d = if bodyless {
                            Delimit::NoBody
                        } else {
                            Delimit::Chunked
                        };
                        write_head(&mut out, d, persist);
                    } else {
                        let chunked = version == Version::HTTP_11;
                        let d = if chunked { Delimit::Chunked } else { Delimit::Close };
                        let persist = if chunked { persist } else { Persist::Close };
                        write_head(&mut out, d, persist);
                        let mut ready: Vec<Bytes> = Vec::new();
                        loop {
                            let closed = rx.drain_ready(&mut ready);
                            for c in ready.drain(..) {
                                if chunked {
                                    encode::chunk(&mut out, &c);
                                } else {
                                    out.extend_from_slice(&c);
                                }
                            }
                            if closed {
                                break;
                            }
                            if !flush(stream, &mut out, cfg, core).await {
                                return false;
                            }
                            match rx.next().await {
                                Some(c) if chunked => encode::chunk(&mut out, &c),
                                Some(c) => out.extend_from_slice(&c),
                                None => break,
                            }
                        }
                        if chunked {
                            out.extend_from_slice(encode::LAST_CHUNK);
                        } else {
                            return flush(stream, &mut out, cfg, core).await;
                        }
                    }
                }
            }
            if !keep_alive {
                return flush(stream, &mut out, cfg, core).await;
            }
            // The pending-output cap: nothing more is read or handled until this is written,
            // so a client that never reads meets TCP flow control, not a growing queue.
            if out.len() >= cap && !flush(stream, &mut out, cfg, core).await {
                return false;
            }
        }
        if parser.has_partial() && head_started.is_none() {
            // The rest of a pipelined batch is a partial head: its clock starts now, and
            // dripping more bytes does not restart it.
            head_started = Some(Instant::now());
        }
        if parser.in_body() && body_started.is_none() {
            // The head is complete: the body's clock starts now, and its bytes count against
            // the core's budget from here (before any `100 Continue` invites the rest). A
            // body of declared length reserves all of it at once, so a body that started
            // always has room to finish; a chunked one reserves each read as it comes.
            let now = Instant::now();
            body_started = Some(now);
            body_prepaid = parser.body_len().is_some();
            let want = parser
                .body_len()
                .map_or(last_read, |n| usize::try_from(n).unwrap_or(usize::MAX));
            if !body_mem.grow(want, budget_deadline(now, cfg)).await {
                return refuse_body(stream, &mut out, cfg, core).await;
            }
        }
        if parser.wants_continue() {
            out.extend_from_slice(encode::CONTINUE);
            parser.continue_sent();
        }
        if !flush(stream, &mut out, cfg, core).await {
            return false;
        }
        if core.drain.is_draining() && !parser.has_partial() {
            return false;
        }

        // Read more, under the deadline that applies to where we are in the request.
        let now = Instant::now();
        let (deadline, answer_408) = if parser.in_body() {
            (body_started.unwrap_or(now) + cfg.limits.body_read_timeout, true)
        } else if parser.has_partial() {
            (head_started.unwrap_or(now) + cfg.limits.header_read_timeout, true)
        } else {
            (now + cfg.limits.keep_alive_timeout, false)
        };
        let idle = !parser.has_partial();
        let read = {
            let recv = pin!(timeout_at(deadline, stream.recv()));
            let drained = pin!(core.drain.wait());
            // An idle keep-alive connection that has to wait holds no buffers: they are
            // given back the first time the read finds nothing ready (not on every request
            // of a busy connection, whose next bytes are usually there already).
            let release = || {
                if idle && out.is_empty() {
                    out = Vec::new();
                    parser.release_idle();
                }
            };
            select_read(recv, drained, idle, release).await
        };
        match read {
            Read::Data(chunk) => {
                arrived = loop_now();
                if head_started.is_none() {
                    head_started = Some(Instant::now());
                }
                if parser.in_body() && !body_prepaid {
                    // Room in the budget first, then the copy into the parser.
                    let deadline = budget_deadline(Instant::now(), cfg).min(deadline);
                    if !body_mem.grow(chunk.len(), deadline).await {
                        return refuse_body(stream, &mut out, cfg, core).await;
                    }
                }
                last_read = chunk.len();
                parser.push(&chunk);
            }
            // Half-close: every complete request was answered above; a partial one is dropped.
            Read::Eof | Read::Failed | Read::Drained => return false,
            Read::TimedOut => {
                if answer_408 {
                    timeout_response(&mut out, cfg);
                    return flush(stream, &mut out, cfg, core).await;
                }
                return false;
            }
        }
    }
}

/// Waits for data (or EOF, error, timeout), or, when the connection is idle, for draining.
/// `on_wait` runs once, the first time nothing is ready.
async fn select_read<R, D>(
    mut recv: std::pin::Pin<&mut R>,
    mut drained: std::pin::Pin<&mut D>,
    idle: bool,
    on_wait: impl FnOnce(),
) -> Read
where
    R: Future<
        Output = Result<std::io::Result<ringcore_runtime::net::RecvBuf>, ringcore_runtime::time::Elapsed>,
    >,
    D: Future<Output = ()>,
{
    let mut on_wait = Some(on_wait);
    poll_fn(|cx| {
        if let Poll::Ready(r) = recv.as_mut().poll(cx) {
            return Poll::Ready(match r {
                Ok(Ok(c)) if c.is_empty() => Read::Eof,
                Ok(Ok(c)) => Read::Data(c),
                Ok(Err(_)) => Read::Failed,
                Err(_) => Read::TimedOut,
            });
        }
        if idle && drained.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Read::Drained);
        }
        if let Some(f) = on_wait.take() {
            f();
        }
        Poll::Pending
    })
    .await
}
