//! One connection: read, parse every complete request, answer in order with one coalesced
//! write per batch, enforce the read deadlines. HOT PATH.

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
use slab::Slab;

use crate::limits::{Limits, LINGER_MAX_BYTES, MAX_PIPELINE_FLUSH_BYTES};
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
    m_active: Gauge,
}

impl Default for CoreConns {
    fn default() -> Self {
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
            m_active: Gauge::new("ringcore_http_connections_active", "Connections open now.", &[]),
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

async fn flush(stream: &TcpStream, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return true;
    }
    let buf = std::mem::take(out);
    let (res, mut buf) = stream.write_all(buf).await;
    buf.clear();
    *out = buf;
    res.is_ok()
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

/// The 503 sent to a connection over the per-core limit.
pub(crate) fn refuse_response(cfg: &ConnConfig) -> Vec<u8> {
    let mut out = Vec::new();
    let body = b"server at connection limit\n";
    let headers = [(http::header::RETRY_AFTER, HeaderValue::from_static("1"))];
    encode::head(
        &mut out,
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        &headers,
        &cfg.server_header,
        Delimit::Length(body.len() as u64),
        Persist::Close,
    );
    out.extend_from_slice(body);
    out
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
    let mut arrived = loop_now();
    loop {
        // Answer every complete request already buffered, in order, into one write.
        loop {
            let raw = match parser.next_request() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    error_response(&mut out, cfg, e);
                    return flush(stream, &mut out).await;
                }
            };
            head_started = None;
            body_started = None;
            let is_head = *raw.method() == Method::HEAD;
            let version = raw.head.version;
            let wants_keep_alive = raw.keep_alive();
            core.requests.set(core.requests.get() + 1);
            let resp = router.handle(Request::new(raw, peer, arrived)).await;
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
                        if out.len() + b.len() > MAX_PIPELINE_FLUSH_BYTES && b.len() > 16 * 1024 {
                            // A large body goes out in its own write, without a copy.
                            if !flush(stream, &mut out).await {
                                return false;
                            }
                            let (res, _) = stream.write_all(b).await;
                            if res.is_err() {
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
                            if !flush(stream, &mut out).await {
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
                            return flush(stream, &mut out).await;
                        }
                    }
                }
            }
            if !keep_alive {
                return flush(stream, &mut out).await;
            }
            if out.len() >= MAX_PIPELINE_FLUSH_BYTES && !flush(stream, &mut out).await {
                return false;
            }
        }
        if parser.has_partial() && head_started.is_none() {
            // The rest of a pipelined batch is a partial head: its clock starts now, and
            // dripping more bytes does not restart it.
            head_started = Some(Instant::now());
        }
        if parser.wants_continue() {
            out.extend_from_slice(encode::CONTINUE);
            parser.continue_sent();
        }
        if !flush(stream, &mut out).await {
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
            select_read(recv, drained, idle).await
        };
        match read {
            Read::Data(chunk) => {
                arrived = loop_now();
                if head_started.is_none() {
                    head_started = Some(Instant::now());
                }
                parser.push(&chunk);
                if parser.in_body() && body_started.is_none() {
                    body_started = Some(Instant::now());
                }
            }
            // Half-close: every complete request was answered above; a partial one is dropped.
            Read::Eof | Read::Failed | Read::Drained => return false,
            Read::TimedOut => {
                if answer_408 {
                    timeout_response(&mut out, cfg);
                    return flush(stream, &mut out).await;
                }
                return false;
            }
        }
    }
}

/// Waits for data (or EOF, error, timeout), or, when the connection is idle, for draining.
async fn select_read<R, D>(
    mut recv: std::pin::Pin<&mut R>,
    mut drained: std::pin::Pin<&mut D>,
    idle: bool,
) -> Read
where
    R: Future<
        Output = Result<std::io::Result<ringcore_runtime::net::RecvBuf>, ringcore_runtime::time::Elapsed>,
    >,
    D: Future<Output = ()>,
{
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
        Poll::Pending
    })
    .await
}
