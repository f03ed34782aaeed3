//! `Timeout`: a deadline for producing the response.

use std::cell::OnceCell;
use std::future::Future;
use std::time::Duration;

use ringcore_runtime::time::timeout;

use super::{rejected_counter, Fallback, Middleware, Next, Rejection};
use crate::metrics::Counter;
use crate::request::Request;
use crate::response::Response;

/// Gives the rest of the chain `duration` to produce a response; past it, the handler's
/// future is dropped (cancelling whatever it awaited) and the client gets 503
/// `{"error":"timed_out"}`, or the [`fallback`](Self::fallback)'s response.
///
/// The deadline covers producing the response (status, headers and a full body, or the
/// start of a streaming body), not sending it. The request body was read completely
/// before the handler ran, so abandoning the handler leaves no half-read request on the
/// connection: the connection stays usable and the next pipelined request is answered
/// normally. A handler that never yields (pure CPU work) cannot be interrupted: the
/// deadline is checked when it awaits.
#[derive(Debug, Clone)]
pub struct Timeout {
    duration: Duration,
    fallback: Fallback,
    name: String,
    rejected: OnceCell<Counter>,
}

impl Timeout {
    /// A deadline of `duration` per request.
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            fallback: Fallback::default(),
            name: String::from("timeout"),
            rejected: OnceCell::new(),
        }
    }

    /// The instance name in metrics (`ringcore_governance_rejected_total{name=..}`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Answers timed-out requests with `f(request, Rejection::TimedOut)` (degradation).
    pub fn fallback<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request, Rejection) -> Fut + 'static,
        Fut: Future<Output = Response> + 'static,
    {
        self.fallback = Fallback::new(f);
        self
    }
}

impl Middleware for Timeout {
    fn call(&self, req: Request, next: Next) -> impl Future<Output = Response> + 'static {
        let fallback = self.fallback.clone();
        // Only a fallback needs the request after the handler took it (boxed: the future
        // without one stays small).
        let copy = fallback.is_set().then(|| Box::new(req.clone()));
        let counter = self
            .rejected
            .get_or_init(|| rejected_counter("timeout", &self.name, "timed_out"))
            .clone();
        let duration = self.duration;
        let rest = next.run(req);
        async move {
            // The deadline starts when this future is first polled, as a handler's own
            // `timeout` would: behind `Isolate`, when the isolated task first runs, not
            // while it waits for its class's turn.
            match timeout(duration, rest).await {
                Ok(resp) => resp,
                Err(_) => {
                    counter.inc();
                    let req = copy.map(|r| *r).unwrap_or_default();
                    fallback.respond(req, Rejection::TimedOut).await
                }
            }
        }
    }
}
