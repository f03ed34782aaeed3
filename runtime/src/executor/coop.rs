//! Cooperative budget: how many ready leaf operations a task may consume in one poll.
//!
//! Every future of this crate that could return `Ready` without waiting (an op whose
//! completion already arrived, an elapsed sleep, a finished join handle, a cross-core reply)
//! calls [`poll_proceed`] first. When the budget of the current poll is spent it re-wakes the
//! task and returns `Pending`, so the task goes to the back of its class's queue.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static BUDGET: Cell<u32> = const { Cell::new(u32::MAX) };
}

pub(crate) fn reset(budget: u32) {
    BUDGET.with(|b| b.set(budget));
}

/// Spends one unit of budget, or asks the task to yield if none is left.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    BUDGET.with(|b| {
        let left = b.get();
        if left == 0 {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            b.set(left - 1);
            Poll::Ready(())
        }
    })
}

/// Spends one unit of budget if any is left (true), for a leaf operation that gives what is
/// ready now or nothing and has no waker to re-wake (`TcpStream::try_recv`): with none left
/// it gives nothing, and the caller's next waiting poll yields.
#[inline]
pub(crate) fn try_proceed() -> bool {
    BUDGET.with(|b| {
        let left = b.get();
        if left == 0 {
            false
        } else {
            b.set(left - 1);
            true
        }
    })
}

/// Yields to the other ready tasks of this core once.
///
/// The task is queued again at the back of its class's queue.
pub async fn yield_now() {
    YieldNow { yielded: false }.await
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Spends one unit of the task's cooperative budget, yielding if it is spent.
///
/// Call it in a long loop that awaits nothing of this runtime (pure computation, a
/// user-written ready future), so the loop still gives way to other tasks.
pub async fn consume_budget() {
    ConsumeBudget.await
}

struct ConsumeBudget;

impl Future for ConsumeBudget {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        poll_proceed(cx)
    }
}
