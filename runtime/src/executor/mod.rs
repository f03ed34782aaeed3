//! The per-core executor: `!Send` tasks in a slab, two scheduling classes, a cooperative budget.
//!
//! - Tasks live in a per-core [`slab::Slab`]; a task's key is stable for its life.
//! - Ready tasks wait in one FIFO queue per [`TaskClass`]. When both classes have work, the
//!   class with the smaller *virtual runtime* (CPU time spent divided by its share) runs next,
//!   as Seastar's scheduling groups and Linux CFS do; a class that was idle does not bank credit.
//! - Each poll of a task gets a budget of `budget` ready leaf operations (see [`coop`]). When it
//!   is spent, the runtime's own futures return `Pending` once and re-wake the task, so a task
//!   that keeps being ready yields the core instead of starving its neighbours.

pub(crate) mod coop;
mod join;
mod sched;
mod task;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::Instant;

use slab::Slab;

pub use join::{JoinError, JoinHandle};
pub use sched::TaskClass;
pub(crate) use task::TaskWaker;

use crate::context;
use crate::shared::ShardRemote;
use crate::stats;
use join::JoinInner;
use sched::Scheduler;

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The waker lent to the poll under way, for [`Executor::is_polling`]: set for the poll's
/// length and cleared when it ends, also when a panic unwinds out of it.
struct Lent<'a>(&'a Cell<*const std::task::Waker>);

impl<'a> Lent<'a> {
    fn new(polling: &'a Cell<*const std::task::Waker>, waker: &std::task::Waker) -> Self {
        polling.set(waker);
        Lent(polling)
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.0.set(std::ptr::null());
    }
}

struct TaskEntry {
    /// The future and the waker it is polled with; `None` while the task is being polled
    /// (both are taken out so no borrow is held, and the poll lends the waker without a
    /// reference count: no atomic add and sub per poll).
    future: Option<(BoxFuture, std::task::Waker)>,
    /// The same waker's state: its `notified` flag is cleared before each poll.
    waker: Arc<TaskWaker>,
    class: TaskClass,
    generation: u32,
    /// Abort requested while the task was being polled.
    aborted: bool,
}

/// How long background tasks may run in one `run_ready` call before the loop goes back to
/// the ring for completions (which may wake latency-critical tasks).
pub(crate) const BACKGROUND_SLICE: std::time::Duration = std::time::Duration::from_micros(100);

pub(crate) struct Executor {
    tasks: RefCell<Slab<TaskEntry>>,
    sched: RefCell<Scheduler>,
    next_generation: Cell<u32>,
    /// Class of the task being polled now (spawned tasks inherit it).
    current_class: Cell<TaskClass>,
    /// The waker the task being polled now was given (null between polls): compared by
    /// address only, never read through (see [`is_polling`](Self::is_polling)).
    polling: Cell<*const std::task::Waker>,
    budget: u32,
}

impl Executor {
    pub(crate) fn new(budget: u32, shares: [u32; 2]) -> Self {
        Self {
            tasks: RefCell::new(Slab::with_capacity(256)),
            sched: RefCell::new(Scheduler::new(shares)),
            next_generation: Cell::new(1),
            current_class: Cell::new(TaskClass::Latency),
            polling: Cell::new(std::ptr::null()),
            budget,
        }
    }

    pub(crate) fn spawn<F>(&self, remote: &ShardRemote, class: TaskClass, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let generation = self.next_generation.get();
        self.next_generation.set(generation.wrapping_add(1));
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let key = entry.key();
        let inner = JoinInner::new(key, generation);
        let task_future = join::Harness::new(fut, inner.clone());
        let waker = Arc::new(TaskWaker::new(remote, key, generation, class));
        entry.insert(TaskEntry {
            future: Some((Box::pin(task_future), std::task::Waker::from(waker.clone()))),
            waker: waker.clone(),
            class,
            generation,
            aborted: false,
        });
        let alive = tasks.len() as u64;
        drop(tasks);
        stats::bump(&remote.stats.tasks_spawned, 1);
        stats::set(&remote.stats.tasks_alive, alive);
        // A new task is ready at once.
        waker.mark_notified();
        self.sched.borrow_mut().push(class, key, generation);
        JoinHandle::new(inner)
    }

    pub(crate) fn current_class(&self) -> TaskClass {
        self.current_class.get()
    }

    /// Whether `waker` is the very waker the task being polled now was given (the task's
    /// own, passed down its futures unchanged): then it is a task waker of this core, whose
    /// wake only queues the task here, and the driver may wake it in place and keep it
    /// registered (`driver::lifecycle::WaitState`). A waker a combinator made (a `select`'s,
    /// a `FuturesUnordered`'s) is not, nor is any waker outside a poll.
    #[inline]
    pub(crate) fn is_polling(&self, waker: &std::task::Waker) -> bool {
        std::ptr::eq(self.polling.get(), waker)
    }

    /// Queues a task of class `class` woken on its own shard by its waker, which knows the
    /// class: no lookup. A task that has ended meanwhile (its key free, or reused by a task
    /// of another generation) is skipped when its turn comes (`run_ready` checks both).
    #[inline]
    pub(crate) fn schedule_as(&self, class: TaskClass, key: usize, generation: u32) {
        self.sched.borrow_mut().push(class, key, generation);
    }

    /// Queues a task woken on its own shard (its class looked up; nothing if it has ended).
    pub(crate) fn schedule(&self, key: usize, generation: u32) {
        let class = match self.tasks.try_borrow() {
            Ok(tasks) => match tasks.get(key) {
                Some(t) if t.generation == generation => t.class,
                _ => return,
            },
            // Only the executor itself holds this borrow, briefly, and never wakes meanwhile.
            Err(_) => TaskClass::Latency,
        };
        self.sched.borrow_mut().push(class, key, generation);
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.sched.borrow().is_empty()
    }

    /// Polls up to `max` ready tasks. Returns how many were polled.
    ///
    /// Returns early once background work has run for [`BACKGROUND_SLICE`] in this call, so
    /// the loop collects completions (and with them the latency-critical tasks they wake)
    /// between background tasks instead of after all of them.
    pub(crate) fn run_ready(&self, remote: &ShardRemote, max: u32) -> u32 {
        let mut polled = 0;
        let mut slice_start: Option<Instant> = None;
        while polled < max {
            let pick = self.sched.borrow_mut().pick();
            let Some((class, key, generation, contended)) = pick else {
                break;
            };
            let taken = {
                let mut tasks = self.tasks.borrow_mut();
                match tasks.get_mut(key) {
                    Some(t) if t.generation == generation && t.future.is_some() => {
                        t.waker.clear_notified();
                        t.future.take()
                    }
                    _ => None,
                }
            };
            let Some((mut future, waker)) = taken else {
                continue;
            };
            polled += 1;
            let mut cx = TaskCx::from_waker(&waker);
            self.current_class.set(class);
            coop::reset(self.budget);
            let background = class == TaskClass::Background;
            let started = (contended || background).then(Instant::now);
            let done = {
                let _lent = Lent::new(&self.polling, &waker);
                matches!(future.as_mut().poll(&mut cx), Poll::Ready(()))
            };
            let mut yield_to_io = false;
            if let Some(t0) = started {
                if contended {
                    self.sched.borrow_mut().account(class, t0.elapsed());
                }
                if background {
                    let since = *slice_start.get_or_insert(t0);
                    yield_to_io = since.elapsed() >= BACKGROUND_SLICE;
                }
            }
            coop::reset(u32::MAX);
            // Put the future back, or drop it (finished or aborted) with no borrow held.
            let to_drop = {
                let mut tasks = self.tasks.borrow_mut();
                match tasks.get_mut(key) {
                    Some(t) if !done && !t.aborted => {
                        t.future = Some((future, waker));
                        None
                    }
                    _ => {
                        tasks.try_remove(key);
                        Some((future, waker))
                    }
                }
            };
            if to_drop.is_some() {
                drop(to_drop);
                stats::set(&remote.stats.tasks_alive, self.tasks.borrow().len() as u64);
            }
            if yield_to_io {
                break;
            }
        }
        stats::bump(&remote.stats.tasks_polled, polled as u64);
        let (l, b) = self.sched.borrow().depths();
        stats::set(&remote.stats.ready_latency, l as u64);
        stats::set(&remote.stats.ready_background, b as u64);
        polled
    }

    /// Drops a task's future (abort). Returns false if the task is gone already.
    pub(crate) fn abort(&self, key: usize, generation: u32) -> bool {
        let future = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(key) {
                Some(t) if t.generation == generation => match t.future.take() {
                    Some(f) => {
                        tasks.remove(key);
                        Some(f)
                    }
                    None => {
                        // Being polled right now (it aborted itself): drop after the poll.
                        t.aborted = true;
                        None
                    }
                },
                _ => return false,
            }
        };
        drop(future);
        context::try_with(|cx| {
            stats::set(
                &cx.shared.shards[cx.shard_id].stats.tasks_alive,
                self.tasks.borrow().len() as u64,
            )
        });
        true
    }

    /// Drops every task, on this thread, with no borrow held while a future drops.
    pub(crate) fn drop_all(&self) {
        loop {
            let next = {
                let mut tasks = self.tasks.borrow_mut();
                let key = tasks.iter().next().map(|(k, _)| k);
                key.map(|k| tasks.remove(k))
            };
            match next {
                Some(entry) => drop(entry),
                None => break,
            }
        }
        self.sched.borrow_mut().clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.tasks.borrow().len()
    }
}

/// Spawns a `!Send` task on the current core, in the calling task's scheduling class.
///
/// The task starts running on this core's next loop turn and never moves to another core.
/// Dropping the returned [`JoinHandle`] detaches the task; [`JoinHandle::abort`] cancels it.
///
/// # Panics
///
/// Outside a ringcore shard.
pub fn spawn_local<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    context::with(|cx| {
        let class = cx.executor.current_class();
        cx.executor.spawn(&cx.shared.shards[cx.shard_id], class, fut)
    })
}

/// Spawns a `!Send` task on the current core in the given scheduling class.
///
/// # Panics
///
/// Outside a ringcore shard.
pub fn spawn_local_in<F>(class: TaskClass, fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    context::with(|cx| cx.executor.spawn(&cx.shared.shards[cx.shard_id], class, fut))
}

pub use coop::{consume_budget, yield_now};
