//! HTTP/2: hyper 1's HTTP/2 server on a core, in front of the same [`Router`].
//!
//! A connection speaks HTTP/2 when TLS negotiated ALPN `h2`, or, on cleartext, when its first
//! bytes are the HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, "prior
//! knowledge"). Both are on by default; [`Server::http2`](crate::Server::http2) sets the
//! limits below and [`Server::without_http2`](crate::Server::without_http2) turns HTTP/2 off
//! (the preface then gets `505`, and ALPN offers `http/1.1` only). There is no `Upgrade: h2c`.
//!
//! hyper (and the `h2` crate under it) does the framing, HPACK, flow control, stream states
//! and every protocol error; its per-stream tasks run on the connection's core
//! (`spawn_local`, no `Send` bound), over `io::TransportIo`, an adapter from the
//! connection's owned-buffer `Transport` (plaintext or TLS) to
//! hyper's I/O traits. Each stream is served by `convert::handle`: the request is read
//! whole, written out as an HTTP/1.1 head and read by ringcore's own parser (so the same
//! limits and the same zero-copy `Parts` apply), then routed through the same middleware,
//! metrics and request span as HTTP/1; the [`Response`](crate::Response), streamed bodies
//! included, becomes hyper's.
//!
//! Chosen over driving the `h2` crate directly: hyper's server already maps streams to
//! request/response futures, applies the connection headers rules, and implements
//! graceful shutdown (GOAWAY, in-flight streams finish) and keep-alive pings; with `h2`
//! directly all of that would be ours to write and test.

pub(crate) mod client;
mod convert;
mod io;
mod rt;

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use ringcore_runtime::time::loop_now;

use crate::conn::coarse::{sleep_until, timeout_at};

use crate::conn::{ConnConfig, CoreConns, Transport};
use crate::metrics::Counter;
use crate::router::Router;

/// Default [`Http2::max_concurrent_streams`]: open streams one connection may have.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Default [`Http2::max_header_list_size`]: 16 KiB, as [`MAX_HEADER_BYTES`](crate::limits::MAX_HEADER_BYTES).
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// Default [`Http2::initial_stream_window_size`]: 1 MiB (hyper's default).
pub const DEFAULT_STREAM_WINDOW: u32 = 1024 * 1024;
/// Default [`Http2::initial_connection_window_size`]: 1 MiB (hyper's default).
pub const DEFAULT_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Default [`Http2::max_frame_size`]: 16 KiB, the protocol's initial value.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16 * 1024;
/// The connection preface a cleartext HTTP/2 client ("prior knowledge") starts with.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 settings of a [`Server`](crate::Server): the limits each connection announces in
/// its SETTINGS and enforces. The request limits of [`Limits`](crate::Limits) (body size,
/// header count and bytes, body read timeout, write timeout) apply to HTTP/2 requests too.
#[derive(Debug, Clone)]
pub struct Http2 {
    max_concurrent_streams: u32,
    max_header_list_size: u32,
    initial_stream_window_size: u32,
    initial_connection_window_size: u32,
    max_frame_size: u32,
    keep_alive: Option<(Duration, Duration)>,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            initial_stream_window_size: DEFAULT_STREAM_WINDOW,
            initial_connection_window_size: DEFAULT_CONNECTION_WINDOW,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            keep_alive: None,
        }
    }
}

impl Http2 {
    /// Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// a stream past it is refused with `RST_STREAM(REFUSED_STREAM)`, which clients retry.
    pub fn max_concurrent_streams(mut self, n: u32) -> Self {
        self.max_concurrent_streams = n;
        self
    }

    /// The most bytes of header fields (HPACK-decoded, RFC 9113's accounting) a request may
    /// carry (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub fn max_header_list_size(mut self, bytes: u32) -> Self {
        self.max_header_list_size = bytes;
        self
    }

    /// How many body bytes a client may send on one stream before the server reads them
    /// (SETTINGS_INITIAL_WINDOW_SIZE); at most 2^31 - 1.
    pub fn initial_stream_window_size(mut self, bytes: u32) -> Self {
        self.initial_stream_window_size = bytes;
        self
    }

    /// The same for the whole connection (a WINDOW_UPDATE on stream 0).
    pub fn initial_connection_window_size(mut self, bytes: u32) -> Self {
        self.initial_connection_window_size = bytes;
        self
    }

    /// The largest frame payload the server accepts (SETTINGS_MAX_FRAME_SIZE), 16 KiB to
    /// 16 MiB - 1.
    pub fn max_frame_size(mut self, bytes: u32) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sends a PING every `interval` and closes the connection when an answer takes longer
    /// than `timeout` (off by default).
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((interval, timeout));
        self
    }
}

/// Whether `first` (a connection's first received bytes) starts the HTTP/2 preface. Three
/// bytes decide (`PRI` is no HTTP/1 method ringcore serves); fewer go the HTTP/1 way.
pub(crate) fn is_preface(first: &[u8]) -> bool {
    let n = first.len().min(PREFACE.len());
    n >= 3 && first[..n] == PREFACE[..n]
}

/// Per-core HTTP/2 counters (`ringcore_http2_*`).
pub(crate) struct H2Metrics {
    connections: Counter,
    requests: Counter,
}

ringcore_runtime::core_local! {
    static H2_METRICS: H2Metrics = H2Metrics {
        connections: Counter::new(
            "ringcore_http2_connections_total",
            "Connections served over HTTP/2 (ALPN h2 or the cleartext preface).",
            &[],
        ),
        requests: Counter::new(
            "ringcore_http2_requests_total",
            "Requests (streams) served over HTTP/2.",
            &[],
        ),
    };
}

impl H2Metrics {
    fn with(f: impl FnOnce(&H2Metrics)) {
        H2_METRICS.with(|m| f(m));
    }
}

/// Serves one HTTP/2 connection over `stream` (with `first`, bytes already received from it)
/// until it closes. When the core starts draining, or no stream was handled for
/// `Limits::keep_alive_timeout`, the connection sends GOAWAY and lets the streams in flight
/// finish (the server cuts what is left at its graceful deadline).
pub(crate) async fn serve<S: 'static, T: Transport + 'static>(
    stream: T,
    first: Option<T::Chunk>,
    peer: Option<SocketAddr>,
    router: Rc<Router<S>>,
    cfg: Rc<ConnConfig>,
    core: Rc<CoreConns>,
) {
    let Some(settings) = cfg.http2.clone() else {
        return;
    };
    H2Metrics::with(|m| m.connections.inc());
    let io = io::TransportIo::new(stream, first, cfg.limits.write_timeout);
    let mut builder = hyper::server::conn::http2::Builder::new(rt::LocalExec);
    builder
        .timer(rt::LocalTimer)
        .auto_date_header(false)
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(settings.max_header_list_size)
        .initial_stream_window_size(settings.initial_stream_window_size)
        .initial_connection_window_size(settings.initial_connection_window_size)
        .max_frame_size(settings.max_frame_size);
    if let Some((interval, timeout)) = settings.keep_alive {
        builder.keep_alive_interval(interval).keep_alive_timeout(timeout);
    }
    let ctx = Rc::new(convert::StreamCtx {
        router,
        cfg: cfg.clone(),
        core: core.clone(),
        peer,
        activity: convert::Activity::new(),
    });
    let idle_after = cfg.limits.keep_alive_timeout;
    let service = {
        let ctx = ctx.clone();
        service_fn(move |req| convert::handle(req, ctx.clone()))
    };
    let mut conn = pin!(builder.serve_connection(io, service));
    // Until the connection ends, the core drains, or no stream was handled for
    // `Limits::keep_alive_timeout` (the HTTP/1 idle timeout; hyper's HTTP/2 server has none).
    let mut idle = sleep_until(loop_now() + idle_after);
    let ended = {
        let mut drain = pin!(core.drain.wait());
        poll_fn(|cx| {
            if conn.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended::Closed);
            }
            if drain.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended::Draining);
            }
            while Pin::new(&mut idle).poll(cx).is_ready() {
                let due = ctx.activity.last_active.get() + idle_after;
                if ctx.activity.handling.get() == 0 && due <= Instant::now() {
                    return Poll::Ready(Ended::Idle);
                }
                // Busy, or active since: wait again (a full period while streams run).
                idle.reset(if ctx.activity.handling.get() > 0 {
                    Instant::now() + idle_after
                } else {
                    due
                });
            }
            Poll::Pending
        })
        .await
    };
    match ended {
        Ended::Closed => {}
        Ended::Draining => {
            // GOAWAY; the streams in flight (a response still streaming) finish, within the
            // server's drain timeout (its drain loop cuts what is still open then).
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        Ended::Idle => {
            // GOAWAY, and another `keep_alive_timeout` to close: hyper closes once the peer
            // answers the PING sent with the GOAWAY, and a peer that never does (or that
            // holds a response with a zero window) must not keep the connection slot.
            conn.as_mut().graceful_shutdown();
            let _ = timeout_at(loop_now() + idle_after, conn).await;
        }
    }
}

/// Why a connection's main wait ended.
enum Ended {
    /// hyper finished the connection (the peer closed it, or an error).
    Closed,
    /// The core drains (shutdown).
    Draining,
    /// No stream for `keep_alive_timeout`.
    Idle,
}
