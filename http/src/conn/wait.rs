//! Waiting for a connection's next bytes: the read deadlines, the lazily moved timer of a busy
//! stretch, and the waits that also watch for draining. HOT PATH.

use std::future::{poll_fn, Future};
use std::ops::Deref;
use std::task::{Context, Poll};
use std::time::Instant;

use ringcore_runtime::time::{loop_now, Sleep};

use super::coarse::sleep_until;

use super::ConnConfig;
use crate::proto::Parser;

pub(super) enum Read<C> {
    Data(C),
    Eof,
    Failed,
    TimedOut,
    Drained,
}

/// The deadline of the next read of a connection with a partial request: the head's or the
/// body's, from when it started.
pub(super) fn read_deadline(
    parser: &Parser,
    head_started: Option<Instant>,
    body_started: Option<Instant>,
    cfg: &ConnConfig,
) -> Instant {
    let now = Instant::now();
    if parser.in_body() {
        body_started.unwrap_or(now) + cfg.limits.body_read_timeout
    } else {
        head_started.unwrap_or(now) + cfg.limits.header_read_timeout
    }
}

/// A deadline timer kept across the waits of a busy stretch and moved lazily: the deadline
/// of each wait (for the next request, or for a send to be accepted) moves forward with every
/// request, and re-registering the timer for each one would cost an insert and a removal in
/// the core's timer map per request. Instead the timer stays where it is while it is earlier
/// than the wait's deadline, and when it fires early it is moved to the deadline then: about
/// one timer operation per timeout period per connection. A timer that fires while the task
/// waits on something else only wakes it once for nothing.
///
/// On a coarse timer, as every deadline of a connection ([`super::coarse`]).
pub(crate) struct LazyTimer {
    sleep: Sleep,
    /// Registered with the connection task's waker and not fired yet. (A busy stretch is
    /// polled by one task, whose waker does not change.)
    armed: bool,
}

impl LazyTimer {
    /// Whether `deadline` has passed, for a wait that found nothing ready; if not, the timer
    /// is registered (once) to wake the task no later than `deadline`. The usual wait (the
    /// timer armed for a deadline no later than this one, and not due) is answered inline;
    /// the rest out of line ([`poll_due_slow`](Self::poll_due_slow)): as one function its
    /// call and saved registers cost every wait (`scripts/callgrind-http.sh` 1x1 3,188 to
    /// 3,166 instructions a request).
    #[inline(always)]
    pub(super) fn poll_due(timer: &mut Option<LazyTimer>, cx: &mut Context<'_>, deadline: Instant) -> bool {
        if let Some(t) = timer {
            if t.armed && t.sleep.deadline() <= deadline && loop_now() < t.sleep.deadline() {
                return false;
            }
        }
        Self::poll_due_slow(timer, cx, deadline)
    }

    /// [`poll_due`](Self::poll_due) past its usual case.
    #[inline(never)]
    fn poll_due_slow(timer: &mut Option<LazyTimer>, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let t = timer.get_or_insert_with(|| LazyTimer {
            sleep: sleep_until(deadline),
            armed: false,
        });
        if t.sleep.deadline() > deadline {
            t.sleep.reset(deadline);
            t.armed = false;
        }
        // Armed (registered with this task's waker) and not due: the timer map is not
        // touched. Otherwise poll it: to register it, or to see it fire.
        while !t.armed || loop_now() >= t.sleep.deadline() {
            if std::pin::Pin::new(&mut t.sleep).poll(cx).is_pending() {
                t.armed = true;
                break;
            }
            t.armed = false;
            if t.sleep.deadline() >= deadline {
                return true;
            }
            // It fired for an earlier deadline: on to this one.
            t.sleep.reset(deadline);
        }
        false
    }
}

/// Waits for the first bytes of the next request (or EOF, error, timeout), or for draining:
/// like [`select_read`] with a deadline, but the timer is `timer`, a [`LazyTimer`] kept across
/// the waits of a busy stretch, and the drain signal's wait `drained` is kept across them
/// too: once it has registered the task's waker (`drain_armed`), later waits only read the
/// core's flag (`draining`), as the timer is left alone while armed. `on_wait` runs once,
/// the first time nothing is ready.
///
/// A plain function returning its `poll_fn`, not an `async fn`: the future is then only the
/// closure and what it captures, made in place, where an `async fn` around the same
/// `poll_fn` kept its arguments twice (before and after its first poll) and copied them
/// between the two on every wait (1x1 under `scripts/callgrind-http.sh`: 38 instructions a
/// request).
pub(super) fn wait_next<'a, C: Deref<Target = [u8]>, R, D>(
    mut recv: std::pin::Pin<&'a mut R>,
    mut drained: std::pin::Pin<&'a mut D>,
    drain_armed: &'a mut bool,
    draining: impl Fn() -> bool + 'a,
    timer: &'a mut Option<LazyTimer>,
    deadline: Instant,
    on_wait: impl FnOnce() + 'a,
) -> impl Future<Output = Read<C>> + 'a
where
    R: Future<Output = std::io::Result<C>>,
    D: Future<Output = ()>,
{
    let mut on_wait = Some(on_wait);
    poll_fn(move |cx| {
        if let Poll::Ready(r) = recv.as_mut().poll(cx) {
            return Poll::Ready(match r {
                Ok(c) if c.is_empty() => Read::Eof,
                Ok(c) => Read::Data(c),
                Err(_) => Read::Failed,
            });
        }
        // Registered with this task's waker: the signal wakes it, and the flag says why.
        if *drain_armed {
            if draining() {
                return Poll::Ready(Read::Drained);
            }
        } else if drained.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Read::Drained);
        } else {
            *drain_armed = true;
        }
        if LazyTimer::poll_due(timer, cx, deadline) {
            return Poll::Ready(Read::TimedOut);
        }
        if let Some(f) = on_wait.take() {
            f();
        }
        Poll::Pending
    })
}

/// Waits for `recv` (a read under its own deadline) or for draining; `on_wait` runs once, the
/// first time neither is ready. A plain function returning its `poll_fn`, as [`wait_next`].
pub(super) fn select_read<'a, C: Deref<Target = [u8]>, R, D>(
    mut recv: std::pin::Pin<&'a mut R>,
    mut drained: std::pin::Pin<&'a mut D>,
    on_wait: impl FnOnce() + 'a,
) -> impl Future<Output = Read<C>> + 'a
where
    R: Future<Output = Result<std::io::Result<C>, ringcore_runtime::time::Elapsed>>,
    D: Future<Output = ()>,
{
    let mut on_wait = Some(on_wait);
    poll_fn(move |cx| {
        if let Poll::Ready(r) = recv.as_mut().poll(cx) {
            return Poll::Ready(match r {
                Ok(Ok(c)) if c.is_empty() => Read::Eof,
                Ok(Ok(c)) => Read::Data(c),
                Ok(Err(_)) => Read::Failed,
                Err(_) => Read::TimedOut,
            });
        }
        if drained.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Read::Drained);
        }
        if let Some(f) = on_wait.take() {
            f();
        }
        Poll::Pending
    })
}
