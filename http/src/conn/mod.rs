//! One connection: read, parse every complete request, answer in order with one coalesced
//! write per batch, enforce the read and write deadlines and the body budget. HOT PATH.
//!
//! By job: [`busy`] is the per-request loop (parse, answer, read more),
//! [`write`](mod@write) writes answers under the write deadline, [`body`] streams a request
//! body to its handler, and [`wait`] waits for bytes under the read deadlines. This file holds
//! what they share (the settings, the per-core state, the [`Transport`] seam) and the idle
//! loop, [`serve`].

mod body;
mod busy;
pub(crate) mod coarse;
#[cfg(test)]
mod tests;
mod wait;
mod write;

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use coarse::timeout_at;
use http::header::HeaderValue;
use ringcore_runtime::net::{RecvBuf, SendLane, TcpStream};
use ringcore_runtime::IoBuf;
use slab::Slab;

use crate::budget::BodyBudget;
use crate::bufpool::BufPool;
use crate::limits::Limits;
use crate::metrics::{Counter, Gauge};
use crate::proto::encode;
use crate::router::Router;

use busy::{serve_busy, Busy};
pub(crate) use wait::LazyTimer;
use wait::{select_read, Read};
pub(crate) use write::{linger, refuse_response};

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

    /// Whether [`try_write`](Self::try_write) made now would try the write (false: it would
    /// say `WouldBlock` without trying, as on a busy io_uring core or over TLS).
    fn writes_now(&self) -> bool {
        false
    }

    /// Hands `buf` to a send the connection does not wait for, reporting to `lane`
    /// (`TcpStream::post_send`); `Err(buf)` where the transport has no such path (then
    /// write it).
    fn post_send(&self, _lane: &SendLane, buf: Vec<u8>) -> Result<(), Vec<u8>> {
        Err(buf)
    }

    /// True if the connection agreed on HTTP/2 before its first byte (TLS ALPN `h2`).
    fn negotiated_h2(&self) -> bool {
        false
    }

    /// The next received bytes if they are already here (`None` if not, and always where
    /// the transport has no such path): no waiting, no wake-up registered.
    fn try_recv(&self) -> Option<Self::Chunk> {
        None
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

    #[inline]
    fn writes_now(&self) -> bool {
        self.sends_now()
    }

    fn shutdown_write(&self) -> impl Future<Output = io::Result<()>> {
        self.shutdown(std::net::Shutdown::Write)
    }

    fn try_recv(&self) -> Option<RecvBuf> {
        TcpStream::try_recv(self)
    }

    fn post_send(&self, lane: &SendLane, buf: Vec<u8>) -> Result<(), Vec<u8>> {
        TcpStream::post_send(self, lane, buf).map_err(|(e, buf)| {
            // The connection settles the lane before it posts: only the driver says no.
            debug_assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
            buf
        })
    }
}

/// Runs a rarely taken sub-future out of line: boxed and type-erased, so neither its state
/// nor its poll code becomes part of the connection loop's (whose future every busy
/// connection holds, and whose code every request runs through).
pub(super) fn out_of_line<'a, T>(f: impl Future<Output = T> + 'a) -> Pin<Box<dyn Future<Output = T> + 'a>> {
    Box::pin(f)
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

/// Serves one connection until it closes. A connection that only lingers (draining what the
/// client still sends before the final close) no longer counts as active.
///
/// The request loop has two phases. Idle, the connection waits for the first bytes of its
/// next request holding only its socket and a few pointers (this future); busy, a boxed
/// future ([`serve_busy`]) parses, answers and writes, and ends when no byte of a next
/// request came within [`IDLE_AFTER`]. An idle keep-alive connection thus holds no parser,
/// no output buffer and no frame of the busy code, which are most of a busy connection's
/// memory; they are allocated again when its next request starts.
///
/// [`IDLE_AFTER`]: busy::IDLE_AFTER
// (An `async move` block, not an `async fn`: the block keeps its captures in place, where an
// `async fn` would also copy its arguments into its frame, about 200 bytes more per
// connection; the unit test in `tests.rs` measures it.)
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
