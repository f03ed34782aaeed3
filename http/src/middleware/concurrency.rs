//! `ConcurrencyLimit`: at most N requests in flight per core, a short bounded queue, then 503.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use ringcore_runtime::time::timeout;

use super::{rejected_counter, Fallback, Middleware, Next, NextFuture, Rejection, ResponseFuture};
use crate::metrics::{Counter, Gauge};
use crate::request::Request;
use crate::response::Response;

/// Lets at most `max` requests per core run the rest of the chain at once. Up to
/// [`queue`](Self::queue) more wait in arrival order, each for at most
/// [`max_wait`](Self::max_wait); a request that finds the queue full, or waits longer,
/// gets 503 `{"error":"overloaded"}` with `Retry-After: 1` (or the
/// [`fallback`](Self::fallback)'s response). Nothing queues without bound.
///
/// The defaults (`queue` 0) shed at once when `max` are in flight: the usual choice in
/// front of a downstream that gets slower when pushed harder. A permit is handed straight
/// from a finishing request to the first waiter, so waiters are served in order.
///
/// This limits requests that *wait* (on a database, another core, a timer). For requests
/// that queue for the CPU, see [`LoadShed`](super::LoadShed).
#[derive(Clone)]
pub struct ConcurrencyLimit {
    max: usize,
    queue: usize,
    max_wait: Duration,
    name: String,
    fallback: Fallback,
    state: Rc<OnceCell<Rc<Sem>>>,
}

impl fmt::Debug for ConcurrencyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("max", &self.max)
            .field("queue", &self.queue)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

struct Waiter {
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// A per-core FIFO semaphore.
struct Sem {
    max: usize,
    in_flight: Cell<usize>,
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
    rejected: Counter,
    gauge: Gauge,
}

impl Sem {
    fn try_acquire(&self) -> bool {
        if self.in_flight.get() < self.max && self.waiters.borrow().is_empty() {
            self.in_flight.set(self.in_flight.get() + 1);
            self.gauge.add(1);
            true
        } else {
            false
        }
    }

    /// Gives the permit to the first waiter, or returns it.
    fn release(&self) {
        let next = self.waiters.borrow_mut().pop_front();
        match next {
            Some(w) => {
                w.granted.set(true);
                let waker = w.waker.borrow_mut().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            None => {
                self.in_flight.set(self.in_flight.get() - 1);
                self.gauge.add(-1);
            }
        }
    }
}

/// Holds one permit; gives it back on drop (also when the request is cancelled).
struct PermitGuard(Rc<Sem>);

impl Drop for PermitGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Removes a waiter from the queue if its future is dropped before the grant, and gives a
/// grant that arrived but was never used back.
struct WaitGuard {
    sem: Rc<Sem>,
    waiter: Rc<Waiter>,
    done: bool,
}

impl WaitGuard {
    /// The grant is used: the permit is the request's now (the caller's `PermitGuard`).
    fn disarm(&mut self) {
        self.done = true;
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.waiter.granted.get() {
            self.sem.release();
        } else {
            self.sem
                .waiters
                .borrow_mut()
                .retain(|w| !Rc::ptr_eq(w, &self.waiter));
        }
    }
}

impl ConcurrencyLimit {
    /// At most `max` (at least 1) requests in flight per core.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            queue: 0,
            max_wait: Duration::from_millis(100),
            name: String::from("concurrency_limit"),
            fallback: Fallback::default(),
            state: Rc::new(OnceCell::new()),
        }
    }

    /// How many requests may wait for a permit (default 0).
    pub fn queue(mut self, len: usize) -> Self {
        self.queue = len;
        self
    }

    /// How long a queued request may wait (default 100 ms).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The instance name in metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Answers shed requests with `f(request, Rejection::Overloaded{..})` (degradation).
    pub fn fallback<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request, Rejection) -> Fut + 'static,
        Fut: Future<Output = Response> + 'static,
    {
        self.fallback = Fallback::new(f);
        self
    }

    fn sem(&self) -> Rc<Sem> {
        self.state
            .get_or_init(|| {
                Rc::new(Sem {
                    max: self.max,
                    in_flight: Cell::new(0),
                    waiters: RefCell::new(VecDeque::new()),
                    rejected: rejected_counter("concurrency_limit", &self.name, "overloaded"),
                    gauge: Gauge::new(
                        "ringcore_governance_in_flight",
                        "Requests holding a concurrency-limit permit, by instance name.",
                        &[("name", &self.name)],
                    ),
                })
            })
            .clone()
    }

    /// Requests in flight on this core now.
    pub fn in_flight(&self) -> usize {
        self.state.get().map_or(0, |s| s.in_flight.get())
    }
}

const SHED: Rejection = Rejection::Overloaded {
    retry_after: Duration::from_secs(1),
};

impl Middleware for ConcurrencyLimit {
    fn call(&self, req: Request, next: Next) -> impl Future<Output = Response> + 'static {
        let sem = self.sem();
        let admitted = if sem.try_acquire() {
            // Held until the rest of the chain ends or is dropped.
            Admitted::Now(next.run(req), PermitGuard(sem))
        } else if sem.waiters.borrow().len() >= self.queue {
            sem.rejected.inc();
            Admitted::Later(self.fallback.respond(req, SHED))
        } else {
            // Boxed: only a request that queues pays for its wait's (larger) future.
            Admitted::Later(Box::pin(self.queued(sem, req, next)))
        };
        async move {
            match admitted {
                Admitted::Now(rest, _permit) => rest.await,
                Admitted::Later(later) => later.await,
            }
        }
    }
}

/// A request through a [`ConcurrencyLimit`]: admitted with its permit, or answered later
/// (queued for a permit, or refused).
enum Admitted {
    /// The rest first: dropped unpolled, it goes before its permit is given back (to a
    /// waiter, maybe), as it does when it ends.
    Now(NextFuture, PermitGuard),
    Later(ResponseFuture),
}

impl ConcurrencyLimit {
    /// Queues `req` for a permit (up to `max_wait`), then runs the rest of the chain, or
    /// answers with the fallback.
    fn queued(&self, sem: Rc<Sem>, req: Request, next: Next) -> impl Future<Output = Response> + 'static {
        let waiter = Rc::new(Waiter {
            granted: Cell::new(false),
            waker: RefCell::new(None),
        });
        sem.waiters.borrow_mut().push_back(waiter.clone());
        // Made now, so that a future dropped before its first poll leaves the queue too.
        let mut guard = WaitGuard {
            sem: sem.clone(),
            waiter: waiter.clone(),
            done: false,
        };
        let max_wait = self.max_wait;
        let fallback = self.fallback.clone();
        async move {
            let granted = poll_fn(|cx| {
                if waiter.granted.get() {
                    Poll::Ready(())
                } else {
                    *waiter.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            });
            let got = timeout(max_wait, granted).await.is_ok() || waiter.granted.get();
            if !got {
                // Dropping the guard takes the waiter out of the queue.
                drop(guard);
                sem.rejected.inc();
                return fallback.respond(req, SHED).await;
            }
            guard.disarm();
            let _permit = PermitGuard(sem);
            next.run(req).await
        }
    }
}
