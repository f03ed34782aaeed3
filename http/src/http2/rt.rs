//! hyper's runtime hooks on a ringcore core: [`LocalExec`] (hyper's per-stream tasks are
//! spawned on the connection's core, `!Send` allowed) and [`LocalTimer`] (keep-alive pings).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::conn::coarse::sleep_until;
use ringcore_runtime::spawn_local;

/// Spawns hyper's tasks (one per HTTP/2 stream) with `spawn_local` on the current core.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        spawn_local(fut).detach();
    }
}

/// hyper's timer on the core's timers. hyper asks for `Send + Sync` sleeps while ours are
/// per core, so a [`LocalSleep`] is a shared flag that a small local task, sleeping on the
/// core's timer, sets at the deadline. Used only for the keep-alive ping
/// ([`Http2::keep_alive`](super::Http2::keep_alive)): a few sleeps per connection and
/// interval, never per request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalTimer;

impl hyper::rt::Timer for LocalTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let deadline = Instant::now().checked_add(duration).unwrap_or_else(far_future);
        self.sleep_until(deadline)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(LocalSleep::new(deadline))
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

#[derive(Default)]
struct SleepState {
    fired: bool,
    /// The `LocalSleep` was dropped: the task stops.
    dropped: bool,
    /// Whoever polls the `LocalSleep`.
    waiter: Option<Waker>,
    /// The local task, to stop it early.
    task: Option<Waker>,
}

fn lock(state: &Mutex<SleepState>) -> MutexGuard<'_, SleepState> {
    // No code panics while holding it; a poisoned lock still holds consistent flags.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// See [`LocalTimer`].
struct LocalSleep {
    state: Arc<Mutex<SleepState>>,
}

impl LocalSleep {
    fn new(deadline: Instant) -> Self {
        let state = Arc::new(Mutex::new(SleepState::default()));
        let shared = state.clone();
        spawn_local(async move {
            let mut sleep = pin!(sleep_until(deadline));
            let fired = poll_fn(|cx| {
                if lock(&shared).dropped {
                    return Poll::Ready(false);
                }
                lock(&shared).task = Some(cx.waker().clone());
                sleep.as_mut().poll(cx).map(|()| true)
            })
            .await;
            if fired {
                let waiter = {
                    let mut s = lock(&shared);
                    s.fired = true;
                    s.waiter.take()
                };
                if let Some(w) = waiter {
                    w.wake();
                }
            }
        })
        .detach();
        LocalSleep { state }
    }
}

impl Future for LocalSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = lock(&self.state);
        if s.fired {
            return Poll::Ready(());
        }
        s.waiter = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl hyper::rt::Sleep for LocalSleep {}

impl Drop for LocalSleep {
    fn drop(&mut self) {
        let task = {
            let mut s = lock(&self.state);
            s.dropped = true;
            s.task.take()
        };
        if let Some(t) = task {
            t.wake();
        }
    }
}
