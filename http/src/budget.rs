//! The per-core memory budget for request bodies held across reads
//! ([`Limits::body_buffer_budget`](crate::Limits::body_buffer_budget)).
//!
//! A connection reserves each read's bytes before its parser keeps them while a body is
//! pending, and gives the whole reservation back when the request has been answered (or the
//! connection ends, whichever way). A reservation that does not fit waits, bounded, for
//! others to give bytes back; the caller answers 503 if it still does not fit.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use crate::conn::coarse::timeout_at;
use slab::Slab;

use crate::metrics::{Counter, Gauge};

/// One core's body budget: bytes reserved now, the limit, and who waits for room.
pub(crate) struct BodyBudget {
    limit: usize,
    used: Cell<usize>,
    waiters: RefCell<Slab<Waker>>,
    m_used: Gauge,
    pub(crate) m_refused: Counter,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: Cell::new(0),
            waiters: RefCell::new(Slab::new()),
            m_used: Gauge::new(
                "ringcore_http_body_buffer_bytes",
                "Bytes of request bodies held across reads (reserved from the per-core budget).",
                &[],
            ),
            m_refused: Counter::new(
                "ringcore_http_body_budget_refused_total",
                "Requests answered 503 because the per-core body budget stayed full.",
                &[],
            ),
        }
    }

    /// Bytes reserved now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.get()
    }

    fn try_take(&self, n: usize) -> bool {
        let used = self.used.get();
        if used.checked_add(n).is_some_and(|t| t <= self.limit) {
            self.used.set(used + n);
            self.m_used.add(n as i64);
            true
        } else {
            false
        }
    }

    fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.set(self.used.get().saturating_sub(n));
        self.m_used.add(-(n as i64));
        let waiters: Vec<Waker> = self.waiters.borrow_mut().drain().collect();
        for w in waiters {
            w.wake();
        }
    }
}

/// One connection's share of the budget; given back on [`Reservation::release`] or drop.
pub(crate) struct Reservation {
    budget: Rc<BodyBudget>,
    held: usize,
}

impl Reservation {
    pub(crate) fn new(budget: Rc<BodyBudget>) -> Self {
        Self { budget, held: 0 }
    }

    /// Reserves `n` more bytes, waiting until `deadline` for room. False if there was none.
    pub(crate) async fn grow(&mut self, n: usize, deadline: Instant) -> bool {
        if self.budget.try_take(n) {
            self.held += n;
            return true;
        }
        // Removes this waiter's slot however the wait ends (room, deadline, or drop).
        struct Slot<'a>(&'a BodyBudget, Option<usize>);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                if let Some(k) = self.1 {
                    self.0.waiters.borrow_mut().try_remove(k);
                }
            }
        }
        let budget = &*self.budget;
        let mut slot = Slot(budget, None);
        let got = timeout_at(
            deadline,
            poll_fn(|cx| {
                if budget.try_take(n) {
                    return Poll::Ready(());
                }
                let mut w = budget.waiters.borrow_mut();
                match slot.1 {
                    Some(k) if w.contains(k) => w[k].clone_from(cx.waker()),
                    _ => slot.1 = Some(w.insert(cx.waker().clone())),
                }
                Poll::Pending
            }),
        )
        .await
        .is_ok();
        drop(slot);
        if got {
            self.held += n;
        }
        got
    }

    /// Gives every held byte back (the request's buffer was released).
    #[inline]
    pub(crate) fn release(&mut self) {
        // Most requests hold nothing (no body, or one that came with its head).
        if self.held != 0 {
            self.budget.give_back(std::mem::take(&mut self.held));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_come_back_on_drop() {
        let b = Rc::new(BodyBudget::new(100));
        assert!(b.try_take(60));
        assert!(!b.try_take(41));
        assert!(b.try_take(40));
        b.give_back(100);
        assert_eq!(b.used(), 0);
        assert!(!b.try_take(usize::MAX));
        let mut r = Reservation::new(b.clone());
        r.held = 30;
        assert!(b.try_take(30));
        drop(r);
        assert_eq!(b.used(), 0);
    }
}
