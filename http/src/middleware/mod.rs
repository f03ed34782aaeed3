//! Middleware: code that runs around handlers, and the governance set built on it.
//!
//! A [`Middleware`] gets the request and a [`Next`] (the rest of the chain) and returns the
//! response. Apply one to a single route with [`MethodRouter::layer`](crate::MethodRouter::layer),
//! to every route of a router with [`Router::layer`](crate::Router::layer), or to a group of
//! routes with [`Router::group`](crate::Router::group). Routers are built on each core, so a
//! middleware instance (its buckets, counters, breaker state) is per core and needs no lock;
//! one instance applied to several routes is shared by them on that core.
//!
//! ```no_run
//! use std::time::Duration;
//! use ringcore_http::middleware::{ConcurrencyLimit, LoadShed, RateLimit, Timeout};
//! use ringcore_http::{get, post, Router, Server};
//!
//! async fn buy() -> &'static str { "ok" }
//! async fn browse() -> &'static str { "items" }
//!
//! Server::bind("127.0.0.1:8080").serve(|| {
//!     Router::new()
//!         .route("/items", get(browse))
//!         .route(
//!             "/buy",
//!             post(buy)
//!                 .layer(RateLimit::per_second(1000.0).burst(100).name("buy"))
//!                 .layer(Timeout::new(Duration::from_millis(200))),
//!         )
//!         // Every route above: shed on queueing delay, bound what is in flight.
//!         .layer(LoadShed::new())
//!         .layer(ConcurrencyLimit::new(256))
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Layers apply inside out: the last `.layer(..)` added runs first. Each governance
//! middleware answers a rejection with its status and `Retry-After` (see [`Rejection`]), or
//! with a degradation handler given by its `fallback` method.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER};
use http::StatusCode;

use crate::handler::{place_in_any, BoxHandler, ErasedHandler, HandlerSlot, Rest};
use crate::request::Request;
use crate::response::{IntoResponse, Response};

mod breaker;
mod concurrency;
mod isolate;
mod rate_limit;
mod shed;
mod timeout;

pub use breaker::{BreakerConfig, BreakerError, BreakerState, CircuitBreaker, Outcome, Permit};
pub use concurrency::ConcurrencyLimit;
pub use isolate::Isolate;
pub use rate_limit::{KeyBy, RateLimit, TokenBucket};
pub use shed::{Codel, LoadShed, Saturation};
pub use timeout::Timeout;

/// A boxed response future: what a governance middleware's degradation handler (its
/// `fallback`) gives, and what a middleware may still return from [`Middleware::call`].
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response>>>;

/// Code that runs around a handler.
///
/// `call` returns the middleware's own future, of its own type: the server runs it where it
/// runs a handler's future (in the connection's reusable slot), so a request through a layer
/// costs no allocation. An `async move` block is the usual body; a middleware that decides
/// something before the request goes on (a rate limit, a permit) decides it in `call` and
/// hands the outcome to the block.
///
/// ```no_run
/// use std::future::Future;
/// use ringcore_http::middleware::{Middleware, Next};
/// use ringcore_http::{get, header, HeaderValue, Request, Response, Router};
///
/// /// Tags every answer with the instance that served it.
/// struct Tag(&'static str);
///
/// impl Middleware for Tag {
///     fn call(&self, req: Request, next: Next) -> impl Future<Output = Response> + 'static {
///         let tag = HeaderValue::from_static(self.0);
///         // The rest of the chain's future is placed now, and awaited in the block.
///         let rest = next.run(req);
///         async move { rest.await.header(header::HeaderName::from_static("x-served-by"), tag) }
///     }
/// }
/// # async fn h() -> &'static str { "" }
/// let r = Router::new().route("/", get(h)).layer(Tag("eu-1"));
/// ```
///
/// **Middleware written for the earlier, boxed form** (`call` returned a
/// [`ResponseFuture`], and so did `Next::run`):
/// - A body `Box::pin(async move { .. })` still compiles: a `Pin<Box<dyn Future>>` is such a
///   future. It pays for its box per request; the rest of its chain does not. Keeping
///   `-> ResponseFuture` in the signature warns (`refining_impl_trait`): allow the lint, or
///   write `-> impl Future<Output = Response> + 'static`.
/// - [`Next::run`] returns a [`NextFuture`]. Where a `ResponseFuture` is wanted (one branch
///   returns the rest of the chain, another a boxed answer), `Box::pin(next.run(req))`; or
///   decide first and return one `async move` block that awaits either.
/// - `dyn Middleware` is no longer a type (`call` returns a type of its own per
///   middleware): keep a middleware generic (`M: Middleware`), as
///   [`Router::layer`](crate::Router::layer) does.
///
/// ```no_run
/// use ringcore_http::middleware::{Middleware, Next, ResponseFuture};
/// use ringcore_http::Request;
///
/// struct Boxed;
///
/// impl Middleware for Boxed {
///     #[allow(refining_impl_trait)]
///     fn call(&self, req: Request, next: Next) -> ResponseFuture {
///         Box::pin(async move { next.run(req).await })
///     }
/// }
/// ```
pub trait Middleware: 'static {
    /// Handles `req`, usually by calling `next.run(req)` somewhere inside.
    fn call(&self, req: Request, next: Next) -> impl Future<Output = Response> + 'static;
}

/// The rest of the chain after a middleware (the next middleware, or the handler).
///
/// Making one costs no allocation: it holds the rest of the chain (made once, when the
/// layer was applied) and the router's state, both shared.
pub struct Next {
    link: Rc<Link>,
    state: Rc<dyn Any>,
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Next")
    }
}

impl Next {
    /// Runs the rest of the chain: its future is placed (in memory this layer reuses from
    /// request to request, see [`NextFuture`]) and returned, to be awaited. Nothing of the
    /// rest runs before it is polled but its middleware's `call`s.
    pub fn run(self, req: Request) -> NextFuture {
        let mut slot = self.link.pool.take();
        self.link.rest.place_in_any(req, self.state, &mut slot.slot);
        NextFuture {
            slot: Some(slot),
            link: self.link,
        }
    }
}

/// The rest of a chain, running: what [`Next::run`] returns.
///
/// Its future lies in a [`FutureSlot`](ringcore_runtime::FutureSlot) taken from the layer's
/// pool of them and given back when this is dropped, its future dropped first (ended or
/// abandoned, as by a timeout): after the first requests through a layer on a core,
/// running the rest of its chain allocates nothing. The pool keeps up to
/// [`POOLED_SLOTS`] slots per layer and route on each core (as many as requests were in
/// flight through it at once, at most); past that a slot is freed when its request ends.
#[must_use = "futures do nothing unless polled"]
pub struct NextFuture {
    /// `None` only once dropped.
    slot: Option<Box<PooledSlot>>,
    link: Rc<Link>,
}

impl fmt::Debug for NextFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NextFuture")
    }
}

impl Future for NextFuture {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let Some(pooled) = self.slot.as_mut() else {
            unreachable!("a NextFuture's slot is taken only when it is dropped")
        };
        match pooled.slot.poll_placed(cx) {
            Poll::Ready(Some(resp)) => Poll::Ready(resp),
            Poll::Ready(None) => panic!("`NextFuture` polled after it completed"),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for NextFuture {
    fn drop(&mut self) {
        if let Some(mut pooled) = self.slot.take() {
            // The rest's future first (if it did not finish): what it holds is let go now,
            // and its drop may give inner layers' slots back to their pools.
            pooled.slot.clear();
            self.link.pool.give(pooled);
        }
    }
}

/// What a middleware that decides in `call` runs: the rest of the chain, or its refusal.
pub(crate) enum Either {
    Rest(NextFuture),
    Refused(ResponseFuture),
}

impl Future for Either {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match self.get_mut() {
            Either::Rest(rest) => Pin::new(rest).poll(cx),
            Either::Refused(refused) => refused.as_mut().poll(cx),
        }
    }
}

/// How many idle slots a layer keeps for the rest of its chain, per route and core (see
/// [`NextFuture`]).
pub const POOLED_SLOTS: usize = 256;

/// The rest of a chain behind a middleware, and the idle slots its futures run in.
struct Link {
    pool: SlotPool,
    rest: Rc<dyn Rest>,
}

/// A slot of a [`SlotPool`], boxed so that taking and giving it moves a pointer.
struct PooledSlot {
    slot: HandlerSlot,
    next: Option<Box<PooledSlot>>,
}

/// The idle slots of one layer: a last-in first-out list, so that the slot taken next is
/// the one whose memory was used last.
#[derive(Default)]
struct SlotPool {
    head: Cell<Option<Box<PooledSlot>>>,
    idle: Cell<usize>,
}

impl SlotPool {
    /// An idle slot, or a new (empty) one.
    #[inline]
    fn take(&self) -> Box<PooledSlot> {
        match self.head.take() {
            Some(mut pooled) => {
                self.head.set(pooled.next.take());
                self.idle.set(self.idle.get() - 1);
                pooled
            }
            None => Box::new(PooledSlot {
                slot: HandlerSlot::new(),
                next: None,
            }),
        }
    }

    /// Keeps `pooled` (its future already dropped), unless [`POOLED_SLOTS`] are idle.
    #[inline]
    fn give(&self, mut pooled: Box<PooledSlot>) {
        let idle = self.idle.get();
        if idle < POOLED_SLOTS {
            pooled.next = self.head.take();
            self.head.set(Some(pooled));
            self.idle.set(idle + 1);
        }
    }
}

impl Drop for SlotPool {
    fn drop(&mut self) {
        // One at a time, not by recursion down the list.
        let mut next = self.head.take();
        while let Some(mut pooled) = next {
            next = pooled.next.take();
        }
    }
}

/// A middleware from an async function `fn(Request, Next) -> Response`.
///
/// ```no_run
/// use ringcore_http::middleware::{from_fn, Next};
/// use ringcore_http::{get, header, HeaderValue, Request, Response, Router};
///
/// async fn tag(req: Request, next: Next) -> Response {
///     let resp = next.run(req).await;
///     resp.header(header::HeaderName::from_static("x-served-by"), HeaderValue::from_static("ringcore"))
/// }
/// # async fn h() -> &'static str { "" }
/// let r = Router::new().route("/", get(h)).layer(from_fn(tag));
/// ```
pub fn from_fn<F, Fut>(f: F) -> FromFn<F>
where
    F: Fn(Request, Next) -> Fut + 'static,
    Fut: Future<Output = Response> + 'static,
{
    FromFn(f)
}

/// See [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F>(F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

impl<F, Fut> Middleware for FromFn<F>
where
    F: Fn(Request, Next) -> Fut + 'static,
    Fut: Future<Output = Response> + 'static,
{
    fn call(&self, req: Request, next: Next) -> impl Future<Output = Response> + 'static {
        (self.0)(req, next)
    }
}

/// Wraps a handler in a middleware.
pub(crate) fn wrap<S: 'static, M: Middleware>(handler: BoxHandler<S>, mw: Rc<M>) -> BoxHandler<S> {
    Rc::new(Wrapped {
        link: Rc::new(Link {
            pool: SlotPool::default(),
            rest: handler.into_rest(),
        }),
        mw,
        _state: PhantomData,
    })
}

/// A handler behind a middleware.
struct Wrapped<S, M> {
    link: Rc<Link>,
    mw: Rc<M>,
    _state: PhantomData<fn() -> S>,
}

impl<S: 'static, M: Middleware> Wrapped<S, M> {
    fn next(&self, state: Rc<S>) -> Next {
        Next {
            link: self.link.clone(),
            state,
        }
    }
}

impl<S: 'static, M: Middleware> ErasedHandler<S> for Wrapped<S, M> {
    fn call(&self, req: Request, state: Rc<S>) -> ResponseFuture {
        Box::pin(self.mw.call(req, self.next(state)))
    }

    #[inline]
    fn place_in(&self, req: Request, state: Rc<S>, slot: &mut HandlerSlot) {
        // The middleware's own future, in the caller's slot: no allocation.
        slot.place(self.mw.call(req, self.next(state)));
    }

    fn into_rest(self: Rc<Self>) -> Rc<dyn Rest> {
        self
    }
}

impl<S: 'static, M: Middleware> Rest for Wrapped<S, M> {
    fn place_in_any(&self, req: Request, state: Rc<dyn Any>, slot: &mut HandlerSlot) {
        place_in_any(self, req, state, slot);
    }
}

/// Why a governance middleware refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Over a rate limit: 429, retry after the bucket has a token again.
    RateLimited {
        /// When a token will be available.
        retry_after: Duration,
    },
    /// Shed by load shedding or a full concurrency limit: 503.
    Overloaded {
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The circuit breaker is open: 503 until it half-opens.
    CircuitOpen {
        /// Time until the breaker lets probes through.
        retry_after: Duration,
    },
    /// The handler ran past its deadline: 503.
    TimedOut,
}

impl Rejection {
    /// The status this rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `Retry-After` wait, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match *self {
            Rejection::RateLimited { retry_after }
            | Rejection::Overloaded { retry_after }
            | Rejection::CircuitOpen { retry_after } => Some(retry_after),
            Rejection::TimedOut => None,
        }
    }

    /// A short machine-readable reason (`rate_limited`, `overloaded`, `circuit_open`,
    /// `timed_out`), used in bodies and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::Overloaded { .. } => "overloaded",
            Rejection::CircuitOpen { .. } => "circuit_open",
            Rejection::TimedOut => "timed_out",
        }
    }
}

/// The default answer: the status, `Retry-After` in whole seconds (rounded up, at least 1),
/// and a JSON body `{"error":"<reason>"}`.
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = format!("{{\"error\":\"{}\"}}", self.reason());
        let mut resp = (self.status(), body).into_response().header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.retry_after() {
            resp = resp.header(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
        }
        resp
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    s.max(1)
}

type FallbackFn = Rc<dyn Fn(Request, Rejection) -> ResponseFuture>;

/// The degradation handler of a governance middleware: what rejected requests get instead
/// of the default [`Rejection`] response.
#[derive(Clone, Default)]
pub(crate) struct Fallback(Option<FallbackFn>);

impl Fallback {
    pub(crate) fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Request, Rejection) -> Fut + 'static,
        Fut: Future<Output = Response> + 'static,
    {
        Fallback(Some(Rc::new(move |req, why| Box::pin(f(req, why)))))
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The response for a rejected request.
    pub(crate) fn respond(&self, req: Request, why: Rejection) -> ResponseFuture {
        match &self.0 {
            Some(f) => f(req, why),
            None => Box::pin(std::future::ready(why.into_response())),
        }
    }
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Fallback(set)"
        } else {
            "Fallback(default)"
        })
    }
}

/// Counts rejections of one middleware instance: `ringcore_governance_rejected_total{
/// middleware, name, reason}`.
pub(crate) fn rejected_counter(
    middleware: &'static str,
    name: &str,
    reason: &'static str,
) -> crate::metrics::Counter {
    crate::metrics::Counter::new(
        "ringcore_governance_rejected_total",
        "Requests refused by governance middleware, by middleware, instance name and reason.",
        &[("middleware", middleware), ("name", name), ("reason", reason)],
    )
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use super::*;

    /// Polls nothing again: the test polls by hand.
    struct NoWake;

    impl Wake for NoWake {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn a_layer_keeps_at_most_pooled_slots_idle_and_reuses_them() {
        // A handler that waits until the gate opens, behind a pass-through layer.
        let gate = Rc::new(Cell::new(false));
        let g = gate.clone();
        let handler = crate::handler::erase::<_, _, ()>(move || {
            let g = g.clone();
            async move {
                poll_fn(|_| if g.get() { Poll::Ready(()) } else { Poll::Pending }).await;
                "done"
            }
        });
        let link = Rc::new(Link {
            pool: SlotPool::default(),
            rest: handler.handler.into_rest(),
        });
        let layer: Wrapped<(), _> = Wrapped {
            link: link.clone(),
            mw: Rc::new(from_fn(|req, next: Next| next.run(req))),
            _state: PhantomData,
        };
        let waker = Waker::from(Arc::new(NoWake));
        let mut cx = Context::from_waker(&waker);
        let state = Rc::new(());
        // A burst: more requests in flight through the layer than the pool keeps.
        let n = POOLED_SLOTS + 44;
        for wave in 0..2 {
            let mut slots: Vec<HandlerSlot> = (0..n).map(|_| HandlerSlot::new()).collect();
            for slot in &mut slots {
                layer.place_in(Request::default(), state.clone(), slot);
                assert!(slot.poll_placed(&mut cx).is_pending());
            }
            // Every request holds a slot of the layer's: none is idle.
            assert_eq!(link.pool.idle.get(), 0, "wave {wave}");
            gate.set(true);
            for slot in &mut slots {
                let Poll::Ready(Some(resp)) = slot.poll_placed(&mut cx) else {
                    panic!("wave {wave}: not answered");
                };
                assert_eq!(resp.status_code(), StatusCode::OK);
            }
            // The burst's slots beyond the bound were freed; the rest wait for the next.
            assert_eq!(link.pool.idle.get(), POOLED_SLOTS, "wave {wave}");
            gate.set(false);
        }
        // An idle slot keeps the memory its last future used.
        let pooled = link.pool.take();
        assert!(pooled.slot.capacity() > 0);
    }

    #[test]
    fn an_abandoned_next_drops_the_rest_of_the_chain_at_once() {
        // The rest holds a probe; dropping the `NextFuture` (as a timeout does) must drop
        // it now, not when the slot is next used, and give the slot back.
        let dropped = Rc::new(Cell::new(0u32));
        struct Probe(Rc<Cell<u32>>);
        impl Drop for Probe {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let d = dropped.clone();
        let handler = crate::handler::erase::<_, _, ()>(move || {
            let probe = Probe(d.clone());
            async move {
                poll_fn(|_| Poll::<()>::Pending).await;
                drop(probe);
                "never"
            }
        });
        let link = Rc::new(Link {
            pool: SlotPool::default(),
            rest: handler.handler.into_rest(),
        });
        let waker = Waker::from(Arc::new(NoWake));
        let mut cx = Context::from_waker(&waker);
        for i in 1..=3 {
            let next = Next {
                link: link.clone(),
                state: Rc::new(()),
            };
            let mut rest = next.run(Request::default());
            assert!(Pin::new(&mut rest).poll(&mut cx).is_pending());
            assert_eq!(dropped.get(), i - 1);
            drop(rest);
            assert_eq!(dropped.get(), i);
            assert_eq!(link.pool.idle.get(), 1);
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }

    #[test]
    fn rejections_answer_with_their_status_and_retry_after() {
        let r = Rejection::RateLimited {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(r.status_code(), StatusCode::TOO_MANY_REQUESTS);
        let ra = r
            .headers()
            .iter()
            .find(|(n, _)| *n == RETRY_AFTER)
            .map(|(_, v)| v.clone());
        assert_eq!(ra, Some(HeaderValue::from(2u64)));
        let r = Rejection::TimedOut.into_response();
        assert_eq!(r.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().iter().all(|(n, _)| *n != RETRY_AFTER));
    }
}
