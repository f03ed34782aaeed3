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
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER};
use http::StatusCode;

use crate::handler::{BoxHandler, ErasedHandler, HandlerSlot};
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

/// A boxed response future, as middleware return.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response>>>;

/// Code that runs around a handler.
pub trait Middleware: 'static {
    /// Handles `req`, usually by calling `next.run(req)` somewhere inside.
    fn call(&self, req: Request, next: Next) -> ResponseFuture;
}

/// The rest of the chain after a middleware (the next middleware, or the handler).
///
/// Making one costs no allocation: it holds the rest of the chain (made once, when the
/// layer was applied) and the router's state, both shared.
pub struct Next {
    rest: Rc<dyn Rest>,
    state: Rc<dyn Any>,
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Next")
    }
}

impl Next {
    /// Runs the rest of the chain.
    pub fn run(self, req: Request) -> ResponseFuture {
        self.rest.call(req, self.state)
    }
}

/// The rest of a chain with the router's state type erased, so that [`Next`] is one type
/// whatever the state.
trait Rest {
    fn call(&self, req: Request, state: Rc<dyn Any>) -> ResponseFuture;
}

/// The handler (or inner layers) behind a middleware, for [`Next`].
struct RestOf<S>(BoxHandler<S>);

impl<S: 'static> Rest for RestOf<S> {
    fn call(&self, req: Request, state: Rc<dyn Any>) -> ResponseFuture {
        match state.downcast::<S>() {
            Ok(state) => self.0.call(req, state),
            // Not reached: `Wrapped<S>` makes every `Next` of a `RestOf<S>` with an `Rc<S>`.
            Err(_) => Box::pin(std::future::ready(Response::error(
                StatusCode::INTERNAL_SERVER_ERROR,
            ))),
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
    fn call(&self, req: Request, next: Next) -> ResponseFuture {
        Box::pin((self.0)(req, next))
    }
}

/// Wraps a handler in a middleware.
pub(crate) fn wrap<S: 'static>(handler: BoxHandler<S>, mw: Rc<dyn Middleware>) -> BoxHandler<S> {
    Rc::new(Wrapped {
        rest: Rc::new(RestOf(handler)),
        mw,
    })
}

/// A handler behind a middleware.
struct Wrapped<S> {
    rest: Rc<RestOf<S>>,
    mw: Rc<dyn Middleware>,
}

impl<S: 'static> ErasedHandler<S> for Wrapped<S> {
    fn call(&self, req: Request, state: Rc<S>) -> ResponseFuture {
        let next = Next {
            rest: self.rest.clone(),
            state,
        };
        self.mw.call(req, next)
    }

    fn place_in(&self, req: Request, state: Rc<S>, slot: &mut HandlerSlot) {
        // A middleware's future is boxed (`ResponseFuture`); the box goes in the slot.
        slot.place(self.call(req, state));
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
    use super::*;

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
