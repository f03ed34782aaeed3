//! `Server`: one `SO_REUSEPORT` listener and router per core, graceful shutdown.

use std::cell::Cell;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use ringcore_runtime::net::TcpListener;
use ringcore_runtime::time::sleep;
use ringcore_runtime::{
    n_shards, shard_id, shutdown_requested, spawn_local, spawn_local_in, submit_to, Cores, Runtime,
    ShutdownHandle, TaskClass,
};

use crate::conn::{self, ConnConfig, CoreConns};
use crate::http2::Http2;
use crate::limits::Limits;
use crate::metrics::Gauge;
use crate::router::Router;
use crate::tls::{CoreTls, TlsConfig};

/// Default time in-flight requests get to finish after shutdown is requested.
pub const DEFAULT_GRACEFUL_TIMEOUT: Duration = Duration::from_secs(10);

type Listening = Arc<dyn Fn(SocketAddr) + Send + Sync>;

/// An HTTP/1.1 and HTTP/2 server: `Server::bind(addr).serve(|| router)`.
///
/// `serve` starts a [`Runtime`] on the selected cores; each core builds its own router with
/// the factory, binds its own listener on the same address (`SO_REUSEPORT`), and serves the
/// connections it accepts. On SIGINT/SIGTERM it stops accepting, closes idle keep-alive
/// connections, lets in-flight requests finish within the graceful timeout, and reports how
/// many connections it had to cut.
pub struct Server {
    addr: String,
    cores: Cores,
    limits: Limits,
    server_header: HeaderValue,
    graceful: Duration,
    on_listening: Option<Listening>,
    runtime: Option<Box<dyn FnOnce(ringcore_runtime::Builder) -> ringcore_runtime::Builder + Send>>,
    on_runtime: Option<Box<dyn FnOnce(ShutdownHandle) + Send>>,
    latency_buckets: Option<Arc<[Duration]>>,
    tls: Option<TlsConfig>,
    http2: Option<Http2>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("cores", &self.cores)
            .field("limits", &self.limits)
            .field("http2", &self.http2)
            .finish()
    }
}

/// What a server did, reported when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections accepted.
    pub connections: u64,
    /// Requests answered.
    pub requests: u64,
    /// Connections refused with 503 because a core was at its connection limit.
    pub refused: u64,
    /// Connections still open when the graceful timeout ran out (cut).
    pub cut: u64,
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections, {} requests, {} refused at the limit, {} cut at shutdown",
            self.connections, self.requests, self.refused, self.cut
        )
    }
}

ringcore_runtime::core_local! {
    /// The address core 0 bound, told to the other cores (port 0 resolved once).
    static BOUND: Cell<Option<SocketAddr>> = Cell::new(None);
}

impl Server {
    /// A server for `addr` (`host:port`; port 0 picks a free port shared by all cores).
    pub fn bind(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            cores: Cores::All,
            limits: Limits::default(),
            server_header: HeaderValue::from_static("ringcore"),
            graceful: DEFAULT_GRACEFUL_TIMEOUT,
            on_listening: None,
            runtime: None,
            on_runtime: None,
            latency_buckets: None,
            tls: None,
            http2: Some(Http2::default()),
        }
    }

    /// Serves HTTPS: every connection is TLS with `config` (see [`TlsConfig`]); a client that
    /// does not speak TLS gets an alert and the connection is closed.
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// HTTP/2 limits (default: [`Http2::default`]). HTTP/2 is served by default, over TLS
    /// when the client picks ALPN `h2` and on cleartext to a client that starts with the
    /// HTTP/2 preface (prior knowledge); see [`crate::http2`].
    pub fn http2(mut self, settings: Http2) -> Self {
        self.http2 = Some(settings);
        self
    }

    /// Serves HTTP/1 only: ALPN offers `http/1.1` alone, and the cleartext HTTP/2 preface
    /// gets `505 HTTP Version Not Supported`.
    pub fn without_http2(mut self) -> Self {
        self.http2 = None;
        self
    }

    /// Which cores serve (default: all).
    pub fn cores(mut self, cores: Cores) -> Self {
        self.cores = cores;
        self
    }

    /// Protocol limits (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The `Server` header value (default `ringcore`; empty to send none).
    pub fn server_header(mut self, value: HeaderValue) -> Self {
        self.server_header = value;
        self
    }

    /// How long in-flight requests may take to finish after shutdown is requested.
    pub fn graceful_timeout(mut self, timeout: Duration) -> Self {
        self.graceful = timeout;
        self
    }

    /// Called once, on core 0, with the bound address, when every core listens.
    pub fn on_listening(mut self, f: impl Fn(SocketAddr) + Send + Sync + 'static) -> Self {
        self.on_listening = Some(Arc::new(f));
        self
    }

    /// Adjusts the runtime (budget, ring size, signal handling, ...) before it starts.
    pub fn runtime(
        mut self,
        f: impl FnOnce(ringcore_runtime::Builder) -> ringcore_runtime::Builder + Send + 'static,
    ) -> Self {
        self.runtime = Some(Box::new(f));
        self
    }

    /// The bucket bounds of the request latency histogram
    /// (`ringcore_http_request_duration_seconds`; default
    /// [`DEFAULT_LATENCY_BUCKETS`](crate::metrics::DEFAULT_LATENCY_BUCKETS)); sorted, with
    /// microsecond resolution, `+Inf` added. Every core uses the same bounds.
    pub fn latency_buckets(mut self, bounds: impl Into<Vec<Duration>>) -> Self {
        self.latency_buckets = Some(bounds.into().into());
        self
    }

    /// Called once, from the thread calling `serve`, with a handle that stops this server
    /// from any thread (as SIGTERM does: graceful), as soon as its runtime is built.
    pub fn with_shutdown_handle(mut self, f: impl FnOnce(ShutdownHandle) + Send + 'static) -> Self {
        self.on_runtime = Some(Box::new(f));
        self
    }

    /// Serves until shutdown (SIGINT, SIGTERM, or a shutdown request from a handler).
    ///
    /// `factory` runs once on each core to build that core's router. For set-up that awaits
    /// (connect to a database, load a cache) or can fail, use [`serve_async`](Self::serve_async).
    pub fn serve<S, F>(self, factory: F) -> io::Result<ShutdownReport>
    where
        S: 'static,
        F: Fn() -> Router<S> + Send + Sync + 'static,
    {
        self.serve_boxed(Arc::new(move |_core| {
            let router = factory();
            Box::pin(async move { Ok(router) }) as BuildFuture<S>
        }))
    }

    /// Serves until shutdown, building each core's router with an async factory: `factory`
    /// is called on each core with the core's index (`0..n`) and its future runs there, so
    /// it may hold `Rc`s, await I/O and timers, and put what it made into the router's state.
    ///
    /// The future returns a [`Router`], or a `Result<Router, E>` where `E: Display`. An error
    /// on any core stops start-up: no core listens (every core's factory and pre-warm hooks
    /// finish before core 0 binds), and `serve_async` returns an error whose message is
    /// `the router factory failed on core N: <E>`.
    ///
    /// ```no_run
    /// use std::rc::Rc;
    /// use ringcore_http::{get, Router, Server, State};
    ///
    /// struct Db { name: String } // a per-core connection, say
    ///
    /// async fn connect(core: usize) -> std::io::Result<Db> {
    ///     Ok(Db { name: format!("db for core {core}") })
    /// }
    ///
    /// Server::bind("127.0.0.1:8080").serve_async(|core| async move {
    ///     let db = connect(core).await?; // a failure stops start-up with its message
    ///     Ok::<_, std::io::Error>(
    ///         Router::with_state(db).route("/", get(|State(db): State<Db>| async move { db.name.clone() })),
    ///     )
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn serve_async<S, F, Fut>(self, factory: F) -> io::Result<ShutdownReport>
    where
        S: 'static,
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: IntoRouter<S>,
    {
        self.serve_boxed(Arc::new(move |core| {
            let fut = factory(core);
            Box::pin(async move { fut.await.into_router() }) as BuildFuture<S>
        }))
    }

    fn serve_boxed<S: 'static>(self, factory: Arc<Factory<S>>) -> io::Result<ShutdownReport> {
        // The soft open-files limit (often 1024) is met long before the connection limit.
        let n_cores = match &self.cores {
            Cores::Count(n) => *n,
            Cores::List(ids) => ids.len(),
            _ => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let want = self.limits.max_connections_per_core.saturating_mul(n_cores);
        match ringcore_runtime::raise_nofile_limit() {
            Ok(n) if (n as usize) < want => tracing::warn!(
                open_files = n,
                connection_limit = want,
                "RLIMIT_NOFILE allows fewer open files than the connection limit: about {n} \
                 connections at most (raise the hard limit, e.g. `ulimit -Hn` or LimitNOFILE=)"
            ),
            Ok(n) => tracing::debug!(open_files = n, "RLIMIT_NOFILE"),
            Err(e) => tracing::warn!("could not raise RLIMIT_NOFILE: {e}"),
        }
        let mut builder = Runtime::builder()
            .cores(self.cores.clone())
            .shutdown_grace(self.graceful + Duration::from_secs(1));
        if let Some(f) = self.runtime {
            builder = f(builder);
        }
        let rt = builder.build()?;
        if let Some(f) = self.on_runtime {
            f(rt.shutdown_handle());
        }
        let addr = self.addr.clone();
        let cfg = ConnConfig {
            limits: Arc::new(self.limits.clone()),
            server_header: self.server_header.clone(),
            http2: self.http2.clone(),
        };
        let graceful = self.graceful;
        let tls = self.tls.clone();
        let on_listening = self.on_listening.clone();
        let buckets = self.latency_buckets.clone();
        let outs = rt.run(move || {
            let (addr, cfg, factory, on_listening, buckets, tls) = (
                addr.clone(),
                cfg.clone(),
                factory.clone(),
                on_listening.clone(),
                buckets.clone(),
                tls.clone(),
            );
            async move {
                // Before the router exists: its routes' histograms take these bounds.
                if let Some(b) = &buckets {
                    crate::metrics::set_latency_buckets(b);
                }
                serve_core(addr, cfg, factory, on_listening, graceful, tls).await
            }
        })?;
        let mut report = ShutdownReport::default();
        let mut aborted = None;
        for out in outs.into_iter().flatten() {
            let r = match out {
                Ok(r) => r,
                // A core that stopped because another failed: report the cause instead.
                Err(e) if is_aborted(&e) => {
                    aborted.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            report.connections += r.connections;
            report.requests += r.requests;
            report.refused += r.refused;
            report.cut += r.cut;
        }
        match aborted {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// What a router factory's future returns: a [`Router`], or `Result<Router, E>` whose error
/// stops start-up (see [`Server::serve_async`]).
pub trait IntoRouter<S> {
    /// The router, or the error's message.
    fn into_router(self) -> Result<Router<S>, String>;
}

impl<S> IntoRouter<S> for Router<S> {
    fn into_router(self) -> Result<Router<S>, String> {
        Ok(self)
    }
}

impl<S, E: fmt::Display> IntoRouter<S> for Result<Router<S>, E> {
    fn into_router(self) -> Result<Router<S>, String> {
        self.map_err(|e| e.to_string())
    }
}

type BuildFuture<S> = Pin<Box<dyn Future<Output = Result<Router<S>, String>>>>;
type Factory<S> = dyn Fn(usize) -> BuildFuture<S> + Send + Sync;

/// The error of a core that stopped starting because another core failed (or shutdown was
/// requested first): `serve` reports the other core's error instead.
#[derive(Debug)]
struct StartAborted(&'static str);

impl fmt::Display for StartAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for StartAborted {}

fn aborted(why: &'static str) -> io::Error {
    io::Error::other(StartAborted(why))
}

fn is_aborted(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<StartAborted>())
}

async fn bind_all(addr: &str) -> io::Result<TcpListener> {
    if shard_id() == 0 {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        for s in 1..n_shards() {
            submit_to(s, move || BOUND.with(|b| b.set(Some(bound))))
                .await
                .map_err(|e| io::Error::other(format!("telling core {s} the address: {e}")))?;
        }
        Ok(listener)
    } else {
        let bound = loop {
            if let Some(a) = BOUND.with(Cell::get) {
                break a;
            }
            if ringcore_runtime::is_shutting_down() {
                return Err(aborted("shut down before listening"));
            }
            sleep(Duration::from_millis(1)).await;
        };
        TcpListener::bind(bound)
    }
}

async fn serve_core<S: 'static>(
    addr: String,
    cfg: ConnConfig,
    factory: Arc<Factory<S>>,
    on_listening: Option<Listening>,
    graceful: Duration,
    tls: Option<TlsConfig>,
) -> io::Result<ShutdownReport> {
    let mut router = match factory(shard_id()).await {
        Ok(r) => r,
        Err(e) => {
            ringcore_runtime::request_shutdown();
            return Err(io::Error::other(format!(
                "the router factory failed on core {}: {e}",
                shard_id()
            )));
        }
    };
    // Pre-warm hooks run before this core listens, so no request meets a cold core.
    for (name, hook) in router.take_prewarm() {
        let started = Instant::now();
        if let Err(e) = hook().await {
            ringcore_runtime::request_shutdown();
            return Err(io::Error::new(
                e.kind(),
                format!("pre-warm hook {name:?} failed on core {}: {e}", shard_id()),
            ));
        }
        let took = started.elapsed();
        let core_label = shard_id().to_string();
        Gauge::new(
            "ringcore_prewarm_duration_microseconds",
            "How long each pre-warm hook took on each core before it listened.",
            &[("hook", &name), ("core", &core_label)],
        )
        .set(took.as_micros() as i64);
        tracing::info!(hook = %name, core = shard_id(), micros = took.as_micros() as u64, "pre-warm hook done");
    }
    // No core listens before every core has built its router and run its hooks: core 0
    // binds (and tells the others the address) only once each one says it is ready.
    BUILT.with(|b| b.set(true));
    if shard_id() == 0 {
        for s in 1..n_shards() {
            loop {
                if ringcore_runtime::is_shutting_down() {
                    return Err(aborted("shut down before listening"));
                }
                if submit_to(s, || BUILT.with(Cell::get)).await.unwrap_or(false) {
                    break;
                }
                sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let router = Rc::new(router);
    let http2 = cfg.http2.is_some();
    let tls = match tls.map(|t| CoreTls::new(t, http2)).transpose() {
        Ok(t) => t.map(Rc::new),
        Err(e) => {
            ringcore_runtime::request_shutdown();
            return Err(e);
        }
    };
    let cfg = Rc::new(cfg);
    let core = Rc::new(CoreConns::new(&cfg.limits));
    let listener = match bind_all(&addr).await {
        Ok(l) => l,
        Err(e) => {
            ringcore_runtime::request_shutdown();
            return Err(io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")));
        }
    };
    if shard_id() == 0 {
        // Every other core bound before core 0 returned from `bind_all`'s calls? No: they
        // bind when they see the address; wait until each has a listener before announcing.
        for s in 1..n_shards() {
            loop {
                let ready = submit_to(s, || LISTENING.with(Cell::get)).await.unwrap_or(true);
                if ready {
                    break;
                }
                sleep(Duration::from_millis(1)).await;
            }
        }
        if let (Some(f), Ok(a)) = (&on_listening, listener.local_addr()) {
            f(a);
        }
    }
    LISTENING.with(|l| l.set(true));
    // Keeps this core's cached Date value current, so responses never read the clock. On a
    // coarse timer (`conn::coarse`): the value may turn tens of microseconds late, which a
    // one-second `Date` does not show.
    let date_task = spawn_local_in(TaskClass::Background, async {
        loop {
            let next = crate::proto::date::refresh();
            crate::conn::coarse::sleep(next).await;
        }
    });
    {
        let mut stop = pin!(shutdown_requested());
        let mut backoff = AcceptBackoff::default();
        loop {
            let accepted = {
                let accept = pin!(listener.accept_stream());
                select_accept(accept, stop.as_mut()).await
            };
            let Some(accepted) = accepted else { break };
            let stream = match accepted {
                Ok(s) => {
                    backoff.reset();
                    s
                }
                Err(e) if is_exhaustion(&e) => {
                    // Out of descriptors or memory: accepting again at once would fail again
                    // and spin (each failure re-arms the accept). Back off on this core;
                    // existing connections, and the other cores, keep serving.
                    core.m_accept_exhausted.inc();
                    let wait = backoff.next(&e);
                    let pause = pin!(sleep(wait));
                    if select_accept(pause, stop.as_mut()).await.is_none() {
                        break;
                    }
                    continue;
                }
                Err(_) => continue, // ECONNABORTED and the like: that client is gone
            };
            core.accepted.set(core.accepted.get() + 1);
            core.m_accepted.inc();
            if core.active.get() >= cfg.limits.max_connections_per_core {
                core.refused.set(core.refused.get() + 1);
                core.m_refused.inc();
                if tls.is_some() {
                    // A plaintext 503 means nothing to a TLS client: just close.
                    drop(stream);
                    continue;
                }
                // Built per refusal, so its Date is current (a few hundred bytes: small next
                // to the accept, write and close it comes with).
                let refuse = conn::refuse_response(&cfg);
                let limits = cfg.limits.clone();
                spawn_local(async move {
                    let (res, _) = stream.write_all(refuse).await;
                    if res.is_ok() {
                        conn::linger(&stream, &limits).await;
                    }
                })
                .detach();
                continue;
            }
            let _ = stream.set_nodelay(true);
            let peer = stream.peer_addr().ok();
            if let Some(tls) = &tls {
                // The handshake (bounded by its timeout) runs in the connection's task.
                let (tls, router, cfg, core) = (tls.clone(), router.clone(), cfg.clone(), core.clone());
                spawn_local(async move {
                    if let Some(stream) = tls.accept(stream).await {
                        conn::serve(stream, peer, router, cfg, core).await;
                    }
                })
                .detach();
                continue;
            }
            spawn_local(conn::serve(
                stream,
                peer,
                router.clone(),
                cfg.clone(),
                core.clone(),
            ))
            .detach();
        }
    }
    // Graceful shutdown: stop accepting, close idle connections, let the rest finish.
    drop(listener);
    core.drain.start();
    let deadline = Instant::now() + graceful;
    while core.active.get() > 0 && Instant::now() < deadline {
        sleep(Duration::from_millis(2)).await;
    }
    date_task.abort();
    crate::proto::date::undrive();
    Ok(ShutdownReport {
        connections: core.accepted.get(),
        requests: core.requests.get(),
        refused: core.refused.get(),
        cut: core.active.get() as u64,
    })
}

/// Whether an accept failed for lack of a resource that frees up by itself (descriptors,
/// kernel memory), as opposed to one client's problem.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The accept loop's pause after running out of descriptors: 1 ms, doubling to 100 ms (as
/// Go's and tokio's accept loops do), reset by the next successful accept. One warning per
/// second at most.
#[derive(Default)]
struct AcceptBackoff {
    wait: Duration,
    warned: Option<Instant>,
    failed_since_warning: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(1);
    const MAX: Duration = Duration::from_millis(100);
    const WARN_EVERY: Duration = Duration::from_secs(1);

    fn next(&mut self, e: &io::Error) -> Duration {
        self.wait = if self.wait.is_zero() {
            Self::FIRST
        } else {
            (self.wait * 2).min(Self::MAX)
        };
        self.failed_since_warning += 1;
        if !self.warned.is_some_and(|t| t.elapsed() < Self::WARN_EVERY) {
            tracing::warn!(
                core = shard_id(),
                failures = self.failed_since_warning,
                "accept failed: {e}; pausing accepts on this core (up to {:?})",
                Self::MAX
            );
            self.warned = Some(Instant::now());
            self.failed_since_warning = 0;
        }
        self.wait
    }

    fn reset(&mut self) {
        self.wait = Duration::ZERO;
    }
}

ringcore_runtime::core_local! {
    /// This core listens (core 0 announces the server once every core does).
    static LISTENING: Cell<bool> = Cell::new(false);
    /// This core built its router and ran its pre-warm hooks (core 0 binds once all have).
    static BUILT: Cell<bool> = Cell::new(false);
}

async fn select_accept<A, T>(
    mut accept: std::pin::Pin<&mut A>,
    mut stop: std::pin::Pin<&mut T>,
) -> Option<A::Output>
where
    A: Future,
    T: Future<Output = ()>,
{
    poll_fn(|cx| {
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        accept.as_mut().poll(cx).map(Some)
    })
    .await
}
