//! `Isolate`: run a route's handlers in a scheduling class of the runtime.

use std::future::Future;

use http::StatusCode;
use ringcore_runtime::{spawn_local_in, TaskClass};

use super::{Middleware, Next};
use crate::request::Request;
use crate::response::Response;

/// Runs the rest of the chain as a task of `class` (resource isolation).
///
/// Connection tasks run in the latency-critical class. A route wrapped in
/// `Isolate::new(TaskClass::Background)` has its handlers run as background tasks, which
/// get their share of the core (`Builder::class_shares`, 1 in 5 by default) only while
/// latency-critical work is waiting: a flood of requests to a heavy, non-critical route
/// then cannot take the core away from the critical routes. The cost is one task spawn
/// per request on the isolated route.
///
/// If the request is abandoned (the connection closes, a timeout fires), the handler's
/// task is aborted. A handler that panics answers 500.
#[derive(Debug, Clone, Copy)]
pub struct Isolate {
    class: TaskClass,
}

impl Isolate {
    /// Handlers run in `class`.
    pub fn new(class: TaskClass) -> Self {
        Self { class }
    }
}

impl Middleware for Isolate {
    fn call(&self, req: Request, next: Next) -> impl Future<Output = Response> + 'static {
        // Spawned now; it runs when its class gets its turn.
        let mut task = AbortOnDrop(spawn_local_in(self.class, next.run(req)));
        async move {
            let out = (&mut task.0).await;
            out.unwrap_or_else(|_| Response::error(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// Aborts the task if the request is dropped before it finished (a no-op after).
struct AbortOnDrop<T>(ringcore_runtime::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
