//! One core's life: pin, build the ring, run the loop, tear down in a safe order.
//!
//! A loop turn: poll ready tasks (up to `max_polls_per_turn`), handle cross-core messages,
//! fire expired timers, then one `io_uring_enter` that submits every queued SQE and either
//! collects completions without blocking (work is pending) or parks until a completion, the
//! next timer deadline, or an eventfd wake-up from another core.
//!
//! HOT PATH: everything in `event_loop` runs per turn. No locks, no allocation in the steady
//! state, no syscall but the one `io_uring_enter`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::context::{self, Context};
use crate::driver::{Driver, Wait};
use crate::executor::{Executor, JoinHandle, TaskClass};
use crate::mesh::{self, MeshLocal};
use crate::shared::Shared;
use crate::stats;
use crate::time::Timers;

/// Messages handled per inbox pass, so a flood from other cores cannot starve local tasks.
const MAX_MESSAGES_PER_TURN: usize = 1024;
/// How long a core with a blocked cross-core send waits before retrying.
const MESH_RETRY: Duration = Duration::from_micros(50);
/// On a ring that parks on absolute deadlines, a precise timer due within `idle_spin` plus
/// this of the last wait's clock reading makes the spin decision read the clock again.
const SPIN_NEAR: Duration = Duration::from_millis(1);

pub(crate) fn run_shard<F, Fut, R>(id: usize, core: usize, shared: Arc<Shared>, f: F) -> io::Result<Option<R>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = R> + 'static,
    R: 'static,
{
    // Until this shard has counted itself in at the start latch, leaving (an error, a panic)
    // counts it as failed, so no other shard waits for it.
    let mut arrival = Arrival {
        shared: &shared,
        done: false,
    };
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        return Err(io::Error::other(format!(
            "could not pin the shard thread to core {core}"
        )));
    }
    // Timer precision: the ring wait's timeout is an hrtimer; the default 50 us slack would
    // make every short sleep late by that much.
    crate::sys::set_timer_slack(1);
    let cfg = shared.config.clone();
    let remote = &shared.shards[id];
    let driver = Driver::new(remote, &cfg)?;
    let cx = Rc::new(Context {
        shard_id: id,
        shared: shared.clone(),
        executor: Executor::new(cfg.budget, cfg.shares),
        driver: RefCell::new(driver),
        timers: RefCell::new(Timers::new()),
        mesh: MeshLocal::new(),
        shutdown_seen: Cell::new(false),
        shutdown_waiters: RefCell::new(slab::Slab::new()),
        sharded: RefCell::new(HashMap::new()),
        locals: RefCell::default(),
        deferred: RefCell::default(),
    });
    context::enter(cx.clone());
    // Every shard has its ring and context before any main future runs; if one could not
    // build them, none runs (the runtime reports that shard's error).
    let started = arrival.arrive();
    // A panic that escapes the loop (a task's `Drop` panicking, a bug) must still run the
    // teardown below: freeing the tasks' buffers with the ring live would hand the kernel
    // freed memory.
    let ran = catch_unwind(AssertUnwindSafe(|| {
        if !started {
            return (Ok(()), Ok(None));
        }
        let fut = f();
        let main = cx.executor.spawn(remote, TaskClass::Latency, fut);
        let looped = event_loop(&cx, &main);
        (looped, take_output(main))
    }));

    // Tear down, in an order that keeps every resource valid while the kernel may use it.
    let torn = catch_unwind(AssertUnwindSafe(|| {
        remote.exited.store(true, Ordering::Release);
        cx.executor.drop_all();
        // What the dropped tasks left for the end of a turn (none comes after this).
        crate::time::run_turn_end();
        mesh::drain_on_exit(&cx);
        let sharded = std::mem::take(&mut *cx.sharded.borrow_mut());
        drop(sharded);
        crate::local::drop_all(&cx);
        let timers = cx.timers.borrow_mut().clear();
        drop(timers);
        release_deferred(&cx);
        let leaked = cx.driver.borrow_mut().shutdown(remote);
        // Resources the kernel did not release in time must not be freed: leak them.
        std::mem::forget(leaked);
        release_deferred(&cx);
    }));
    let current = context::exit();
    if torn.is_err() {
        // The teardown itself panicked: the ring may still own memory reachable from the
        // context, so none of it may be freed. Leak it all (this thread is ending anyway).
        std::mem::forget(current);
        std::mem::forget(cx);
        return Err(io::Error::other(
            "a panic during shard teardown; its resources were leaked",
        ));
    }
    drop(current);
    drop(cx);

    match ran {
        Ok((looped, output)) => {
            looped?;
            output
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(io::Error::other(format!(
                "the shard's event loop panicked: {msg}"
            )))
        }
    }
}

/// This shard's place at the start latch.
struct Arrival<'a> {
    shared: &'a Shared,
    done: bool,
}

impl Arrival<'_> {
    /// Counts this shard in as ready and waits for the others; false if one failed.
    fn arrive(&mut self) -> bool {
        self.done = true;
        self.shared.start.arrive(true)
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.start.arrive(false);
        }
    }
}

fn take_output<R>(mut main: JoinHandle<R>) -> io::Result<Option<R>> {
    if !main.is_finished() {
        return Ok(None);
    }
    let waker = Waker::from(Arc::new(NoopWake));
    let mut tcx = TaskCx::from_waker(&waker);
    crate::executor::coop::reset(u32::MAX);
    match std::pin::Pin::new(&mut main).poll(&mut tcx) {
        Poll::Ready(Ok(v)) => Ok(Some(v)),
        Poll::Ready(Err(e)) if e.is_cancelled() => Ok(None),
        Poll::Ready(Err(e)) => Err(io::Error::other(format!("main future {e}"))),
        Poll::Pending => Ok(None),
    }
}

struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// Releases what the driver deferred (see [`release_all_deferred`]); the check, which the
/// loop makes several times a turn, inline.
#[inline]
fn release_deferred(cx: &Context) {
    if cx.driver.borrow().has_deferred() {
        release_all_deferred(cx);
    }
}

#[inline(never)]
fn release_all_deferred(cx: &Context) {
    // The lists are reused: released in place, with no driver borrow held (a dropped
    // resource may use the driver). Nothing a release runs (a waker's `wake`, a drop, a
    // recycle function) comes back here; if something ever did, it would get lists of its
    // own rather than a borrow panic.
    let mut own = None;
    let mut kept = cx.deferred.try_borrow_mut();
    let deferred = match kept.as_deref_mut() {
        Ok(d) => d,
        Err(_) => own.insert(crate::driver::Deferred::default()),
    };
    cx.driver.borrow_mut().take_deferred(deferred);
    deferred.release();
}

/// Fires the timers due at `now` (the caller's clock read) and makes it the loop's instant.
#[inline]
fn fire_timers(cx: &Context, buf: &mut Vec<Waker>, now: Instant) {
    crate::time::set_loop_now(now);
    // Most turns fire nothing: the check inline, the firing out of line.
    if cx.timers.borrow().any_due(now) {
        fire_due(cx, buf, now);
    }
}

#[inline(never)]
fn fire_due(cx: &Context, buf: &mut Vec<Waker>, now: Instant) {
    cx.timers.borrow_mut().expire(now, buf);
    if !buf.is_empty() {
        for w in buf.drain(..) {
            w.wake();
        }
    }
}

fn inbox_empty(cx: &Context) -> bool {
    !cx.shared.shards[cx.shard_id].may_have_mail()
}

#[inline]
fn take_remote_wakes(cx: &Context) {
    let remote = &cx.shared.shards[cx.shard_id];
    // A plain load first (inline: nearly every turn stops here), the swap's locked write
    // only when a wake came.
    if remote.has_remote_wakes.load(Ordering::Relaxed) {
        schedule_remote_wakes(cx, remote);
    }
}

#[inline(never)]
fn schedule_remote_wakes(cx: &Context, remote: &crate::shared::ShardRemote) {
    if !remote.has_remote_wakes.swap(false, Ordering::AcqRel) {
        return;
    }
    let wakes = match remote.remote_wakes.lock() {
        Ok(mut q) => std::mem::take(&mut *q),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for (key, generation) in wakes {
        cx.executor.schedule(key, generation);
    }
}

fn event_loop<R>(cx: &Rc<Context>, main: &JoinHandle<R>) -> io::Result<()> {
    let shared = &cx.shared;
    let remote = &shared.shards[cx.shard_id];
    let max_polls = shared.config.max_polls_per_turn;
    let mut main_done = false;
    let mut grace_deadline: Option<Instant> = None;
    let mut wakers = Vec::new();
    let spin = shared.config.idle_spin;
    let multi_shard = shared.n_shards() > 1;
    let mut last_mesh = Instant::now();
    // Where the ring takes absolute deadlines the park needs no clock read, and each turn
    // reads the clock once, after its wait: `last_read`.
    let absolute = cx.driver.borrow().parks_on_absolute_deadline();
    let mut last_read = last_mesh;
    loop {
        cx.executor.run_ready(remote, max_polls);
        crate::time::run_turn_end();

        if !main_done && main.is_finished() {
            main_done = true;
            shared.finished.fetch_add(1, Ordering::SeqCst);
            if shared.all_finished() {
                for s in &shared.shards {
                    s.force_unpark();
                }
            }
        }
        if shared.all_finished() {
            return Ok(());
        }
        if shared.shutdown.load(Ordering::Acquire) {
            if !cx.shutdown_seen.get() {
                cx.shutdown_seen.set(true);
                grace_deadline = Some(Instant::now() + shared.config.shutdown_grace);
                let waiters: Vec<Waker> = cx.shutdown_waiters.borrow_mut().drain().collect();
                waiters.into_iter().for_each(Waker::wake);
            }
            if main_done || grace_deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
        }

        let mut handled = mesh::poll_inbox(cx, MAX_MESSAGES_PER_TURN);
        take_remote_wakes(cx);
        // Resources of ops dropped by the tasks just polled (e.g. the fd of a stream whose
        // multishot receive had ended): release them now, not after the next park, or a
        // closed connection would stay open until something else woke this core.
        release_deferred(cx);
        // The timers, the spin decision and the park's deadline use `now`. On a ring that
        // takes absolute deadlines it is the reading after the last wait: a timer that fell
        // due while the tasks ran makes the park return at once, and fires after it. A park
        // with a relative timeout (epoll, or a kernel before 6.12) needs a fresh reading.
        let mut now = if absolute { last_read } else { Instant::now() };
        fire_timers(cx, &mut wakers, now);

        if handled > 0 || cx.mesh.pending_replies() > 0 {
            last_mesh = now;
        }
        if !spin.is_zero() && !cx.executor.has_ready() && handled == 0 {
            let next_timer = cx.timers.borrow().next_precise_deadline();
            let soon = |now: Instant, within: Duration| next_timer.is_some_and(|d| d <= now + within);
            let talking = |now: Instant| multi_shard && now.duration_since(last_mesh) < spin;
            // The spin decision is about the time now. The last wait's reading can tell it
            // wrong when a precise timer is due near it or a conversation is under way: then
            // read the clock. (A timer due later is soon only after tasks that ran longer
            // than `SPIN_NEAR`, next to which a read costs nothing.)
            if absolute && (soon(now, spin + SPIN_NEAR) || talking(now)) {
                now = Instant::now();
            }
            if talking(now) || soon(now, spin) {
                // Polling ends at the next timer of either kind (a coarse one is not polled
                // for, but is not made late by polling for something else either).
                let next_any = cx.timers.borrow().next_deadline();
                let until = next_any.map_or(now + spin, |d| d.min(now + spin));
                stats::bump(&remote.stats.spins, 1);
                let spun_at = Instant::now();
                let woke = idle_poll(cx, until);
                stats::bump(&remote.stats.spin_ns, spun_at.elapsed().as_nanos() as u64);
                if woke? {
                    handled = mesh::poll_inbox(cx, MAX_MESSAGES_PER_TURN);
                    take_remote_wakes(cx);
                    if handled > 0 {
                        last_mesh = Instant::now();
                    }
                }
                now = Instant::now();
                fire_timers(cx, &mut wakers, now);
            }
        }

        let wait = if cx.executor.has_ready() || handled > 0 {
            Wait::No
        } else {
            remote.set_parked(true);
            let must_run = !inbox_empty(cx)
                || mesh::has_orphans(cx)
                || remote.has_remote_wakes.load(Ordering::Acquire)
                || (shared.shutdown.load(Ordering::Acquire) && !cx.shutdown_seen.get())
                || shared.all_finished()
                || cx.executor.has_ready();
            if must_run {
                Wait::No
            } else {
                let mut deadline = cx.timers.borrow().next_deadline();
                if let Some(g) = grace_deadline {
                    deadline = Some(deadline.map_or(g, |d| d.min(g)));
                }
                if cx.mesh.has_backlog() {
                    let from = if absolute { Instant::now() } else { now };
                    let retry = from + MESH_RETRY;
                    deadline = Some(deadline.map_or(retry, |d| d.min(retry)));
                }
                stats::bump(&remote.stats.parks, 1);
                Wait::Until { deadline, now }
            }
        };
        let turned = cx.driver.borrow_mut().turn(remote, wait);
        remote.set_parked(false);
        turned?;
        release_deferred(cx);
        last_read = Instant::now();
        fire_timers(cx, &mut wakers, last_read);
        stats::set(&remote.stats.timers_pending, cx.timers.borrow().len() as u64);
    }
}

/// Polls inboxes (continuously) and the ring (every 2 us) until something is ready or
/// `until` passes. Returns true if a message or foreign wake arrived.
fn idle_poll(cx: &Context, until: Instant) -> io::Result<bool> {
    let shared = &cx.shared;
    let remote = &shared.shards[cx.shard_id];
    loop {
        let slice_end = Instant::now() + Duration::from_micros(2);
        loop {
            if !inbox_empty(cx)
                || remote.has_remote_wakes.load(Ordering::Acquire)
                || shared.shutdown.load(Ordering::Relaxed)
                || shared.all_finished()
            {
                return Ok(true);
            }
            std::hint::spin_loop();
            let now = Instant::now();
            if now >= slice_end || now >= until {
                break;
            }
        }
        cx.driver.borrow_mut().turn(remote, Wait::No)?;
        release_deferred(cx);
        if cx.executor.has_ready() || Instant::now() >= until {
            return Ok(false);
        }
    }
}

/// Resolves once shutdown of the runtime has been requested (Ctrl-C, SIGTERM,
/// [`request_shutdown`], or a [`ShutdownHandle`](crate::ShutdownHandle)).
///
/// Servers select on this to stop accepting and drain; see `Builder::shutdown_grace`.
///
/// # Panics
///
/// Outside a ringcore shard.
pub fn shutdown_requested() -> ShutdownRequested {
    ShutdownRequested {
        slot: None,
        _not_send: std::marker::PhantomData,
    }
}

/// The future of [`shutdown_requested`]. However often it is polled, it holds one waker
/// slot on its core (updated in place), and gives it back when dropped.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ShutdownRequested {
    slot: Option<usize>,
    /// The slot indexes this core's waiter slab: the future must stay on this core.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Future for ShutdownRequested {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, tcx: &mut TaskCx<'_>) -> Poll<()> {
        context::with(|cx| {
            if cx.shutdown_seen.get() || cx.shared.shutdown.load(Ordering::Acquire) {
                // At shutdown the slab was drained: the slot is gone already.
                self.slot = None;
                return Poll::Ready(());
            }
            let replaced = {
                let mut waiters = cx.shutdown_waiters.borrow_mut();
                let replaced = match self.slot.and_then(|k| waiters.get_mut(k)) {
                    Some(w) if w.will_wake(tcx.waker()) => None,
                    Some(w) => Some(std::mem::replace(w, tcx.waker().clone())),
                    None => {
                        self.slot = Some(waiters.insert(tcx.waker().clone()));
                        None
                    }
                };
                stats::set(
                    &cx.shared.shards[cx.shard_id].stats.shutdown_waiters,
                    waiters.len() as u64,
                );
                replaced
            };
            // The old waker is dropped after the borrow (a waker's drop may run any code).
            drop(replaced);
            Poll::Pending
        })
    }
}

impl Drop for ShutdownRequested {
    fn drop(&mut self) {
        let Some(k) = self.slot.take() else { return };
        // Dropped outside a shard (a runtime torn down): nothing to give back.
        let removed = context::try_with(|cx| {
            let mut waiters = cx.shutdown_waiters.borrow_mut();
            // Before shutdown only this future uses slot `k` (slots are freed only here); at
            // shutdown the slab is drained and nothing is inserted after, so a missing slot
            // is simply gone.
            let removed = (!cx.shutdown_seen.get() && waiters.contains(k)).then(|| waiters.remove(k));
            stats::set(
                &cx.shared.shards[cx.shard_id].stats.shutdown_waiters,
                waiters.len() as u64,
            );
            removed
        });
        // Dropped after the borrow (a waker's drop may run any code).
        drop(removed);
    }
}

/// True once shutdown has been requested.
///
/// # Panics
///
/// Outside a ringcore shard.
pub fn is_shutting_down() -> bool {
    context::with(|cx| cx.shared.shutdown.load(Ordering::Acquire))
}

/// Asks every shard of the running runtime to stop, as Ctrl-C does.
///
/// # Panics
///
/// Outside a ringcore shard.
pub fn request_shutdown() {
    context::with(|cx| cx.shared.request_shutdown());
}

/// One round trip through this core's ring with no work (`IORING_OP_NOP`): a diagnostic and
/// the unit of the driver's micro-benchmark.
///
/// # Panics
///
/// Outside a ringcore shard.
pub async fn nop() -> io::Result<()> {
    crate::driver::op::nop()?.await
}

/// Live numbers of this core's driver and executor, exact at the moment of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalState {
    /// Operations with a slot in the driver's slab (submitted, not yet fully completed).
    pub ops_in_flight: usize,
    /// Tasks alive on this core.
    pub tasks: usize,
    /// Timers registered on this core.
    pub timers: usize,
    /// Provided receive buffers held by streams or the application.
    pub recv_buffers_out: u32,
    /// Provided receive buffers the ring keeps published to the kernel: 32 at first,
    /// doubled each time a receive finds none (0 without a provided buffer ring).
    pub recv_buffer_window: u16,
    /// Whether this core's ring uses multishot accept.
    pub multishot_accept: bool,
    /// Whether this core's ring uses multishot receive from a provided buffer ring.
    pub multishot_recv: bool,
    /// Whether the ring was created with `IORING_SETUP_SINGLE_ISSUER`.
    pub single_issuer: bool,
    /// Whether the ring was created with `IORING_SETUP_DEFER_TASKRUN`.
    pub defer_taskrun: bool,
    /// Whether the ring was created with `IORING_SETUP_COOP_TASKRUN`.
    pub coop_taskrun: bool,
    /// Whether this core parks on absolute deadlines (`IORING_ENTER_ABS_TIMER`, Linux
    /// 6.12+; never on epoll or with portable ops), so a loop turn reads the clock once.
    pub absolute_park_deadline: bool,
}

/// This core's [`LocalState`].
///
/// # Panics
///
/// Outside a ringcore shard.
pub fn local_state() -> LocalState {
    context::with(|cx| {
        let d = cx.driver.borrow();
        let f = d.features();
        LocalState {
            ops_in_flight: d.ops_in_flight(),
            tasks: cx.executor.len(),
            timers: cx.timers.borrow().len(),
            recv_buffers_out: d.buf_ring().map_or(0, |r| r.out()),
            recv_buffer_window: d.buf_ring().map_or(0, |r| r.window()),
            multishot_accept: f.multishot_accept,
            multishot_recv: f.multishot_recv,
            single_issuer: f.single_issuer,
            defer_taskrun: f.defer_taskrun,
            coop_taskrun: f.coop_taskrun,
            absolute_park_deadline: d.parks_on_absolute_deadline(),
        }
    })
}
