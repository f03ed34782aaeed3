//! One connection: read, parse every complete request, answer in order with one coalesced
//! write per batch, enforce the read and write deadlines and the body budget. HOT PATH.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, StatusCode, Version};
use ringcore_runtime::net::{RecvBuf, TcpStream};
use ringcore_runtime::time::{loop_now, sleep_until, timeout_at, Sleep};
use ringcore_runtime::IoBuf;
use slab::Slab;

use crate::body_stream::{BodyError, BodyStream, Demand, StreamShared};
use crate::budget::{BodyBudget, Reservation};
use crate::bufpool::BufPool;
use crate::handler::HandlerSlot;
use crate::limits::{Limits, LINGER_MAX_BYTES, MAX_UNREAD_BODY_DRAIN};
use crate::metrics::{Counter, Gauge};
use crate::proto::encode::{self, Delimit, Persist};
use crate::proto::parser::BodyChunk;
use crate::proto::{Parser, ProtoError};
use crate::request::{Request, RequestBody};
use crate::response::Body;
use crate::response::Response;
use crate::router::{Routed, Router};

/// Per-server settings shared by the connections of one core.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    /// Shared with every busy connection's parser (one count per busy stretch, not a copy
    /// of the limits in each connection's state).
    pub(crate) limits: Arc<Limits>,
    pub(crate) server_header: HeaderValue,
    /// HTTP/2 settings; `None`: HTTP/2 is not served (the preface gets 505).
    pub(crate) http2: Option<crate::http2::Http2>,
}

/// What a connection is served over: plaintext [`TcpStream`], or TLS (`crate::tls`).
/// Owned buffers both ways, as on the ring. `TcpStream`'s methods are its own, so the
/// plaintext path compiles to what it was before the trait.
pub(crate) trait Transport {
    /// A received chunk (a ring buffer for TCP, decrypted bytes for TLS).
    type Chunk: Deref<Target = [u8]>;

    /// The next received bytes; an empty chunk is EOF. Cancel-safe: a dropped call loses
    /// no bytes.
    fn recv(&self) -> impl Future<Output = io::Result<Self::Chunk>>;

    /// Writes some of `buf` and says how many bytes were taken.
    fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)>;

    /// Ends the sending side (the peer reads EOF).
    fn shutdown_write(&self) -> impl Future<Output = io::Result<()>>;

    /// Writes some of `bytes` now if that needs no waiting (`WouldBlock` otherwise, and
    /// always where the transport has no such path).
    fn try_write(&self, _bytes: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// True if the connection agreed on HTTP/2 before its first byte (TLS ALPN `h2`).
    fn negotiated_h2(&self) -> bool {
        false
    }
}

impl Transport for TcpStream {
    type Chunk = RecvBuf;

    fn recv(&self) -> impl Future<Output = io::Result<RecvBuf>> {
        TcpStream::recv(self)
    }

    fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> {
        TcpStream::write(self, buf)
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, bytes)
    }

    fn shutdown_write(&self) -> impl Future<Output = io::Result<()>> {
        self.shutdown(std::net::Shutdown::Write)
    }
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
    pub(crate) async fn wait(&self) {
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
                Some(k) if w.contains(k) => w[k].clone_from(cx.waker()),
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
    /// Bytes of streamed request bodies received and not yet taken by their handlers.
    m_body_stream: Gauge,
    /// Request bodies held across reads, all connections of this core together.
    pub(crate) body_budget: Rc<BodyBudget>,
    /// Receive and output buffers of connections waiting between requests.
    pub(crate) pool: BufPool,
    /// The start of the last plain response head written (see `encode::head_cached`).
    head_prefix: RefCell<encode::HeadPrefix>,
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
            m_body_stream: Gauge::new(
                "ringcore_http_body_stream_bytes",
                "Bytes of streamed request bodies received and not yet taken by their handlers.",
                &[],
            ),
            body_budget: Rc::new(BodyBudget::new(limits.body_buffer_budget)),
            pool: BufPool::default(),
            head_prefix: RefCell::default(),
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

enum Read<C> {
    Data(C),
    Eof,
    Failed,
    TimedOut,
    Drained,
}

/// Writes all of `buf` and hands it back; `None` if the connection failed or a send accepted
/// no byte within the write timeout (the client stopped reading). `advance` drops the bytes
/// already sent from the front of `buf`. The write deadline's timer is `timer`, kept across
/// the sends of a busy stretch and moved lazily (see [`LazyTimer`]): a send that completes
/// later (every send on io_uring) touches the core's timer map about once per write timeout,
/// not twice per send.
async fn send_all<T: Transport, B: IoBuf>(
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
async fn flush<T: Transport>(stream: &T, out: &mut Vec<u8>, cfg: &ConnConfig, core: &CoreConns) -> bool {
    flush_timed(stream, out, cfg, core, &mut None).await
}

/// [`flush_timed`], after recording the metrics of the answers in `out`.
async fn flush_answered<T: Transport, S: 'static>(
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

/// How long a body may wait for room in the budget, starting `now`.
fn budget_deadline(now: Instant, cfg: &ConnConfig) -> Instant {
    now + cfg.limits.body_budget_wait
}

/// Answers 503 + `Retry-After` to a body that found no room in the core's budget, and closes.
async fn refuse_body<T: Transport>(
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

/// Serves one connection until it closes. A connection that only lingers (draining what the
/// client still sends before the final close) no longer counts as active.
///
/// The request loop has two phases. Idle, the connection waits for the first bytes of its
/// next request holding only its socket and a few pointers (this future); busy, a boxed
/// future ([`serve_busy`]) parses, answers and writes, and ends when no byte of a next
/// request came within [`IDLE_AFTER`]. An idle keep-alive connection thus holds no parser,
/// no output buffer and no frame of the busy code, which are most of a busy connection's
/// memory; they are allocated again when its next request starts.
// (An `async move` block, not an `async fn`: the block keeps its captures in place, where an
// `async fn` would also copy its arguments into its frame, about 200 bytes more per
// connection; the unit test below measures it.)
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve<S: 'static, T: Transport + 'static>(
    stream: T,
    peer: Option<SocketAddr>,
    router: Rc<Router<S>>,
    cfg: Rc<ConnConfig>,
    core: Rc<CoreConns>,
) -> impl Future<Output = ()> {
    async move {
        core.active.set(core.active.get() + 1);
        core.m_active.add(1);
        let guard = ActiveGuard(core);
        // The protocol: HTTP/2 when TLS negotiated it, or (below) when the first bytes are
        // its preface; HTTP/1 otherwise.
        if cfg.http2.is_some() && stream.negotiated_h2() {
            return spawn_h2(stream, None, peer, router, cfg, guard);
        }
        let mut first_read = true;
        // When the connection's current wait for a request began.
        let mut waiting_since = Instant::now();
        let wants_linger = loop {
            let core = &guard.0;
            if core.drain.is_draining() {
                break false;
            }
            let deadline = waiting_since + cfg.limits.keep_alive_timeout;
            let read = {
                let recv = pin!(timeout_at(deadline, stream.recv()));
                let drained = pin!(core.drain.wait());
                select_read(recv, drained, || {}).await
            };
            // Nothing of a request was received unless data came: close without an answer.
            let Read::Data(first) = read else {
                break false;
            };
            if std::mem::take(&mut first_read) && cfg.http2.is_some() && crate::http2::is_preface(&first) {
                return spawn_h2(stream, Some(first), peer, router, cfg, guard);
            }
            match Box::pin(serve_busy(&stream, peer, &router, &cfg, core, first)).await {
                Busy::Idle(since) => waiting_since = since,
                Busy::Closed(linger) => break linger,
            }
        };
        drop(guard);
        if wants_linger {
            linger(&stream, &cfg.limits).await;
        }
    }
}

/// Serves the connection as HTTP/2 (`crate::http2`) in a task of its own, which takes over
/// the connection's place in the active count. (Awaiting it here instead would grow every
/// HTTP/1 connection's future by the HTTP/2 branch's state.)
fn spawn_h2<S: 'static, T: Transport + 'static>(
    stream: T,
    first: Option<T::Chunk>,
    peer: Option<SocketAddr>,
    router: Rc<Router<S>>,
    cfg: Rc<ConnConfig>,
    guard: ActiveGuard,
) {
    ringcore_runtime::spawn_local(async move {
        let core = guard.0.clone();
        crate::http2::serve(stream, first, peer, router, cfg, core).await;
        drop(guard);
    })
    .detach();
}

/// How long a connection waits for its next request in the busy state (its buffers already
/// given back) before it drops that state and waits in the small idle one. A client that
/// sends its next request within this time (a benchmark, a browser loading a page, an API
/// client in a loop) keeps its busy state instead of freeing and allocating it per request.
const IDLE_AFTER: Duration = Duration::from_millis(200);

/// Where a busy stretch of a connection ended.
enum Busy {
    /// Every request was answered and written, and no byte of the next one arrived within
    /// [`IDLE_AFTER`] of the instant given (when the wait began).
    Idle(Instant),
    /// The connection is done; true if the server chose to close and should linger.
    Closed(bool),
}

/// Serves requests from `first` (the bytes that ended the idle wait) on, until the
/// connection is idle again or done.
/// Runs a rarely taken sub-future out of line: boxed and type-erased, so neither its state
/// nor its poll code becomes part of the connection loop's (whose future every busy
/// connection holds, and whose code every request runs through).
fn out_of_line<'a, T>(f: impl Future<Output = T> + 'a) -> Pin<Box<dyn Future<Output = T> + 'a>> {
    Box::pin(f)
}

async fn serve_busy<S: 'static, T: Transport>(
    stream: &T,
    peer: Option<SocketAddr>,
    router: &Router<S>,
    cfg: &ConnConfig,
    core: &CoreConns,
    first: T::Chunk,
) -> Busy {
    let mut parser = Parser::with_buf(cfg.limits.clone(), core.pool.take_rx());
    let mut out: Vec<u8> = core.pool.take_out();
    let mut head_started: Option<Instant> = Some(Instant::now());
    let mut body_started: Option<Instant> = None;
    // This request's body bytes held across reads, reserved from the core's budget.
    let mut body_mem = Reservation::new(core.body_budget.clone());
    // The size of the last read: an upper bound on the body bytes a just-completed head left
    // in the parser.
    let mut last_read = first.len();
    // The body being read reserved its whole declared length up front.
    let mut body_prepaid = false;
    let cap = cfg.limits.max_pending_response_bytes;
    let mut arrived = loop_now();
    // The router was asked whether the body being received streams (it did not).
    let mut stream_checked = false;
    // Requests skip the span and access-log wrapping when nobody wants them.
    let plain = router.plain();
    let date = crate::proto::date::Handle::current();
    // Kept for the whole busy stretch rather than made per read: the shutdown signal's
    // registration, and the timer of the wait between requests (see `wait_next`).
    let mut drained = pin!(core.drain.wait());
    let mut idle_timer: Option<LazyTimer> = None;
    // The write deadline's timer, lazily moved like the idle one (see `send_all`).
    let mut write_timer: Option<LazyTimer> = None;
    // The route metrics of the plain path's answers, recorded as they are sent (one clock
    // read per flush).
    let mut answered = router.answered();
    // Where the plain path's handler futures run, one at a time: the memory is reused, so a
    // request allocates nothing for its handler once the first has grown it.
    let mut handler_slot = HandlerSlot::new();
    // The flushes off the common path (closing the connection; before a large, streamed or
    // refused body) run out of line (see `out_of_line`).
    macro_rules! flush_out_of_line {
        () => {
            out_of_line(flush_answered(
                stream,
                &mut out,
                cfg,
                core,
                &mut write_timer,
                &mut answered,
            ))
            .await
        };
    }
    parser.push(&first);
    drop(first);
    loop {
        // Answer every complete request already buffered, in order, into one write.
        loop {
            if !parser.has_partial() {
                // Nothing buffered, no body under way: no request to find (the usual end of
                // a batch, without a parse attempt).
                break;
            }
            let (raw, streamed) = match parser.next_request() {
                Ok(Some(r)) => {
                    stream_checked = false;
                    (r, None)
                }
                Ok(None) => {
                    // A head is complete and its body still arriving: a handler that reads
                    // its body as it comes gets the request now (asked once per request).
                    let streams = !stream_checked
                        && parser
                            .body_head()
                            .is_some_and(|(m, i, pq)| router.streams_body(m, i, pq));
                    stream_checked = parser.in_body();
                    match streams.then(|| parser.take_streaming()).flatten() {
                        Some(raw) => {
                            stream_checked = false;
                            (raw, Some(StreamShared::new(core.m_body_stream.clone())))
                        }
                        None => break,
                    }
                }
                Err(e) => {
                    error_response(&mut out, cfg, e);
                    return Busy::Closed(flush_out_of_line!());
                }
            };
            head_started = None;
            body_started = None;
            let is_head = *raw.method() == Method::HEAD;
            let version = raw.head.version();
            let wants_keep_alive = raw.keep_alive();
            core.requests.set(core.requests.get() + 1);
            // Whether what is left of a streamed body allows keeping the connection, and the
            // body's clock when its unread rest is to be drained after the answer.
            let mut body_keeps = true;
            let mut drain_after: Option<BodyClock> = None;
            let resp = match streamed {
                None if plain => {
                    // The handler's own future, awaited here (no span, no access log).
                    let (routed, started) = router.start(raw, peer, arrived, &mut handler_slot);
                    let resp = match routed {
                        Routed::Ready(r) => r,
                        Routed::Running(f) => f.await,
                    };
                    answered.push(started, resp.status_code());
                    resp
                }
                // The traced or logged path (spans, access log) runs out of line.
                None => out_of_line(router.handle(Request::new(raw, peer, arrived))).await,
                Some(shared) => {
                    // Earlier answers of the batch go out before the handler waits on its body.
                    if !flush_out_of_line!() {
                        return Busy::Closed(false);
                    }
                    let body = RequestBody::Stream(BodyStream::from_conn(shared.clone()));
                    let req = Request::with_body(raw, peer, arrived, body);
                    let mut clock = BodyClock::default();
                    // Out of line: the streamed path's state (about 3 KiB) would otherwise be
                    // part of every busy connection's future, and its code of this loop's.
                    let (resp, end) = out_of_line(serve_streamed(
                        stream,
                        &mut parser,
                        router.handle(req),
                        &shared,
                        &mut clock,
                        cfg,
                    ))
                    .await;
                    // A stream kept past the handler is not read any more.
                    shared.finish(Err(BodyError::Aborted));
                    match end {
                        Some(PumpEnd::Complete) => resp,
                        Some(PumpEnd::Gone) => return Busy::Closed(false),
                        Some(PumpEnd::Failed(e)) => {
                            return Busy::Closed(
                                out_of_line(answer_body_failure(
                                    stream,
                                    &mut out,
                                    cfg,
                                    core,
                                    resp,
                                    version,
                                    |o| error_response(o, cfg, e),
                                ))
                                .await,
                            );
                        }
                        Some(PumpEnd::TimedOut) => {
                            return Busy::Closed(
                                out_of_line(answer_body_failure(
                                    stream,
                                    &mut out,
                                    cfg,
                                    core,
                                    resp,
                                    version,
                                    |o| timeout_response(o, cfg),
                                ))
                                .await,
                            );
                        }
                        None | Some(PumpEnd::Dropped) => {
                            // The handler left some of its body unread: after the answer
                            // (the client may wait for it before sending the rest), read and
                            // discard a bounded rest to keep the connection, else close. A
                            // client still waiting for `100 Continue` never sends it, and a
                            // declared rest past the bound is not worth reading.
                            body_keeps = !parser.continue_pending()
                                && !matches!(parser.stream_left(), Some(n) if n > MAX_UNREAD_BODY_DRAIN as u64);
                            drain_after = body_keeps.then_some(clock);
                            resp
                        }
                    }
                }
            };
            // The request, and with it its body buffer, is gone.
            body_mem.release();
            // Decided after the handler: shutdown may have started while it ran.
            let keep_alive = wants_keep_alive && body_keeps && !core.drain.is_draining();
            let persist = Persist::new(version, keep_alive);
            let (status, ctype, headers, body) = resp.into_parts();
            let bodyless = encode::bodyless(status);
            let write_head = |out: &mut Vec<u8>, d: Delimit, persist: Persist| {
                encode::head_cached(
                    out,
                    &core.head_prefix,
                    status,
                    ctype.as_ref(),
                    &headers,
                    &cfg.server_header,
                    d,
                    persist,
                    &date,
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
                            if !flush_out_of_line!() {
                                return Busy::Closed(false);
                            }
                            let advance: fn(&mut Bytes, usize) = bytes::Buf::advance;
                            if send_all(stream, b, advance, cfg, core, &mut write_timer)
                                .await
                                .is_none()
                            {
                                return Busy::Closed(false);
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
                            if !flush_out_of_line!() {
                                return Busy::Closed(false);
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
                            return Busy::Closed(flush_out_of_line!());
                        }
                    }
                }
            }
            if headers.capacity() == 0 {
                // No fields of the handler's own (the usual answer): nothing to free, so not
                // even the call into the vector's drop glue (about 25 instructions a request
                // under scripts/callgrind-http.sh).
                std::mem::forget(headers);
            }
            if !keep_alive {
                return Busy::Closed(flush_out_of_line!());
            }
            if let Some(mut clock) = drain_after {
                if !flush_out_of_line!() {
                    return Busy::Closed(false);
                }
                if !out_of_line(drain_unread(stream, &mut parser, &mut clock, cfg)).await {
                    return Busy::Closed(true);
                }
            }
            // The pending-output cap: nothing more is read or handled until this is written,
            // so a client that never reads meets TCP flow control, not a growing queue.
            if out.len() >= cap && !flush_out_of_line!() {
                return Busy::Closed(false);
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
                return Busy::Closed(out_of_line(refuse_body(stream, &mut out, cfg, core)).await);
            }
        }
        if parser.wants_continue() {
            out.extend_from_slice(encode::CONTINUE);
            parser.continue_sent();
        }
        if !flush_answered(stream, &mut out, cfg, core, &mut write_timer, &mut answered).await {
            return Busy::Closed(false);
        }
        if core.drain.is_draining() && !parser.has_partial() {
            return Busy::Closed(false);
        }

        // Read more, under the deadline that applies to where we are in the request. Between
        // requests the connection waits here for up to `IDLE_AFTER` (holding no buffers from
        // the first moment nothing is ready: they are given back then, not on every request
        // of a busy connection, whose next bytes are usually there already), then ends the
        // busy stretch (see `serve`).
        let read = if parser.has_partial() {
            let deadline = read_deadline(&parser, head_started, body_started, cfg);
            match timeout_at(deadline, stream.recv()).await {
                Ok(Ok(c)) if c.is_empty() => Read::Eof,
                Ok(Ok(c)) => Read::Data(c),
                Ok(Err(_)) => Read::Failed,
                Err(_) => Read::TimedOut,
            }
        } else {
            let since = loop_now();
            let deadline = since + IDLE_AFTER.min(cfg.limits.keep_alive_timeout);
            let recv = pin!(stream.recv());
            let release = || {
                core.pool.put_out(std::mem::take(&mut out));
                if let Some(b) = parser.take_idle_buf() {
                    core.pool.put_rx(b);
                }
            };
            match wait_next(recv, drained.as_mut(), &mut idle_timer, deadline, release).await {
                Read::TimedOut => return Busy::Idle(since),
                read => read,
            }
        };
        match read {
            Read::Data(chunk) => {
                arrived = loop_now();
                if out.capacity() == 0 {
                    out = core.pool.take_out();
                }
                if parser.lacks_buf() {
                    parser.set_buf(core.pool.take_rx());
                }
                if head_started.is_none() {
                    head_started = Some(arrived);
                }
                if parser.in_body() && !body_prepaid {
                    // Room in the budget first, then the copy into the parser.
                    let deadline = read_deadline(&parser, head_started, body_started, cfg);
                    let deadline = budget_deadline(Instant::now(), cfg).min(deadline);
                    if !body_mem.grow(chunk.len(), deadline).await {
                        return Busy::Closed(out_of_line(refuse_body(stream, &mut out, cfg, core)).await);
                    }
                }
                last_read = chunk.len();
                parser.push(&chunk);
            }
            // Half-close: every complete request was answered above; a partial one is dropped.
            Read::Eof | Read::Failed | Read::Drained => return Busy::Closed(false),
            Read::TimedOut => {
                timeout_response(&mut out, cfg);
                return Busy::Closed(flush_out_of_line!());
            }
        }
    }
}

/// How a streamed body's pump ended (while its handler still ran).
enum PumpEnd {
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
struct BodyClock {
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
async fn serve_streamed<T: Transport>(
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
async fn drain_unread<T: Transport>(
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
async fn answer_body_failure<T: Transport>(
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

/// The deadline of the next read of a connection with a partial request: the head's or the
/// body's, from when it started.
fn read_deadline(
    parser: &Parser,
    head_started: Option<Instant>,
    body_started: Option<Instant>,
    cfg: &ConnConfig,
) -> Instant {
    let now = Instant::now();
    if parser.in_body() {
        body_started.unwrap_or(now) + cfg.limits.body_read_timeout
    } else {
        head_started.unwrap_or(now) + cfg.limits.header_read_timeout
    }
}

/// A deadline timer kept across the waits of a busy stretch and moved lazily: the deadline
/// of each wait (for the next request, or for a send to be accepted) moves forward with every
/// request, and re-registering the timer for each one would cost an insert and a removal in
/// the core's timer map per request. Instead the timer stays where it is while it is earlier
/// than the wait's deadline, and when it fires early it is moved to the deadline then: about
/// one timer operation per timeout period per connection. A timer that fires while the task
/// waits on something else only wakes it once for nothing.
pub(crate) struct LazyTimer {
    sleep: Sleep,
    /// Registered with the connection task's waker and not fired yet. (A busy stretch is
    /// polled by one task, whose waker does not change.)
    armed: bool,
}

impl LazyTimer {
    /// Whether `deadline` has passed, for a wait that found nothing ready; if not, the timer
    /// is registered (once) to wake the task no later than `deadline`.
    fn poll_due(timer: &mut Option<LazyTimer>, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let t = timer.get_or_insert_with(|| LazyTimer {
            sleep: sleep_until(deadline),
            armed: false,
        });
        if t.sleep.deadline() > deadline {
            t.sleep.reset(deadline);
            t.armed = false;
        }
        // Armed (registered with this task's waker) and not due: the timer map is not
        // touched. Otherwise poll it: to register it, or to see it fire.
        while !t.armed || loop_now() >= t.sleep.deadline() {
            if std::pin::Pin::new(&mut t.sleep).poll(cx).is_pending() {
                t.armed = true;
                break;
            }
            t.armed = false;
            if t.sleep.deadline() >= deadline {
                return true;
            }
            // It fired for an earlier deadline: on to this one.
            t.sleep.reset(deadline);
        }
        false
    }
}

/// Waits for the first bytes of the next request (or EOF, error, timeout), or for draining:
/// like [`select_read`] with a deadline, but the timer is `timer`, a [`LazyTimer`] kept across
/// the waits of a busy stretch. `on_wait` runs once, the first time nothing is ready.
async fn wait_next<C: Deref<Target = [u8]>, R, D>(
    mut recv: std::pin::Pin<&mut R>,
    mut drained: std::pin::Pin<&mut D>,
    timer: &mut Option<LazyTimer>,
    deadline: Instant,
    on_wait: impl FnOnce(),
) -> Read<C>
where
    R: Future<Output = std::io::Result<C>>,
    D: Future<Output = ()>,
{
    let mut on_wait = Some(on_wait);
    poll_fn(|cx| {
        if let Poll::Ready(r) = recv.as_mut().poll(cx) {
            return Poll::Ready(match r {
                Ok(c) if c.is_empty() => Read::Eof,
                Ok(c) => Read::Data(c),
                Err(_) => Read::Failed,
            });
        }
        if drained.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Read::Drained);
        }
        if LazyTimer::poll_due(timer, cx, deadline) {
            return Poll::Ready(Read::TimedOut);
        }
        if let Some(f) = on_wait.take() {
            f();
        }
        Poll::Pending
    })
    .await
}

async fn select_read<C: Deref<Target = [u8]>, R, D>(
    mut recv: std::pin::Pin<&mut R>,
    mut drained: std::pin::Pin<&mut D>,
    on_wait: impl FnOnce(),
) -> Read<C>
where
    R: Future<Output = Result<std::io::Result<C>, ringcore_runtime::time::Elapsed>>,
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
        if drained.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Read::Drained);
        }
        if let Some(f) = on_wait.take() {
            f();
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle keep-alive connection is its task's future and little else (the busy state is
    /// boxed and freed between requests): keep that future small. 440 bytes with rustc 1.95.0
    /// (the bound leaves room for the compiler's layout to move); `scripts/bench-idle-http.sh`
    /// measures the whole per-connection figure.
    #[test]
    fn an_idle_connection_future_stays_small() {
        let size = ringcore_testkit::rt::run1(|| async {
            let listener = ringcore_runtime::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let stream = TcpStream::connect(addr).await.expect("connect");
            let limits = Limits::default();
            let cfg = ConnConfig {
                limits: Arc::new(limits.clone()),
                server_header: HeaderValue::from_static("t"),
                http2: Some(crate::http2::Http2::default()),
            };
            let fut = serve(
                stream,
                None,
                Rc::new(Router::<()>::new()),
                Rc::new(cfg),
                Rc::new(CoreConns::new(&limits)),
            );
            std::mem::size_of_val(&fut)
        });
        assert!(size <= 512, "the connection future grew to {size} bytes");
    }

    /// A busy connection's state (boxed for its busy stretch) is what each of its polls
    /// reads and writes. A snapshot, rustc 1.95.0, test build: 1,880 bytes, of which the
    /// parser is 224 (it shares the connection config's limits and boxes the scan of a head
    /// in pieces, instead of holding 160 and 168 bytes of them).
    #[test]
    fn a_busy_connection_future_stays_under_2_kib() {
        let (size, parser) = ringcore_testkit::rt::run1(|| async {
            let listener = ringcore_runtime::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let client = TcpStream::connect(addr).await.expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            client.write_all(b"G".to_vec()).await.0.expect("write");
            let first = server.recv().await.expect("recv");
            let limits = Limits::default();
            let cfg = ConnConfig {
                limits: Arc::new(limits.clone()),
                server_header: HeaderValue::from_static("t"),
                http2: None,
            };
            let router = Router::<()>::new();
            let core = CoreConns::new(&limits);
            let fut = serve_busy(&server, None, &router, &cfg, &core, first);
            (std::mem::size_of_val(&fut), std::mem::size_of::<Parser>())
        });
        assert!(parser <= 256, "the parser grew to {parser} bytes");
        assert!(size <= 2048, "the busy connection future grew to {size} bytes");
    }
}
