//! The per-thread shard context: everything a task on this core can reach without a lock.
//!
//! One [`Context`] lives in a thread-local on each shard thread for the whole life of the
//! shard. Every component stores its state in `RefCell`s here; borrows are never held across a
//! call into user code (a poll, a drop of a future, a waker), which is what keeps re-entrancy
//! safe.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::driver::Driver;
use crate::executor::Executor;
use crate::mesh::MeshLocal;
use crate::shared::Shared;
use crate::time::Timers;

pub(crate) struct Context {
    pub(crate) shard_id: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) executor: Executor,
    pub(crate) driver: RefCell<Driver>,
    pub(crate) timers: RefCell<Timers>,
    pub(crate) mesh: MeshLocal,
    /// Set once this shard has seen the runtime's shutdown request.
    pub(crate) shutdown_seen: Cell<bool>,
    /// Tasks waiting in [`shutdown_requested`](crate::shutdown_requested): one slot per
    /// waiting future, freed when it is dropped, drained (and woken) at shutdown.
    pub(crate) shutdown_waiters: RefCell<slab::Slab<std::task::Waker>>,
    pub(crate) sharded: RefCell<std::collections::HashMap<u64, Rc<dyn std::any::Any>>>,
    /// This shard's [`CoreLocal`](crate::CoreLocal) values, by slot number.
    pub(crate) locals: RefCell<crate::local::Locals>,
    /// Reused by the loop to take the driver's deferred wakers, resources and posted-send
    /// buffers, so a turn allocates nothing.
    pub(crate) deferred: RefCell<crate::driver::Deferred>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Context>>> = const { RefCell::new(None) };
    /// Address of the current shard's remote handle, used by wakers to tell "my own thread"
    /// from "a foreign thread" without touching `CURRENT`.
    static CURRENT_TAG: Cell<usize> = const { Cell::new(0) };
}

pub(crate) fn enter(cx: Rc<Context>) {
    let tag = cx.shared.shards[cx.shard_id].tag();
    CURRENT_TAG.with(|t| t.set(tag));
    CURRENT.with(|c| *c.borrow_mut() = Some(cx));
}

pub(crate) fn exit() -> Option<Rc<Context>> {
    CURRENT_TAG.with(|t| t.set(0));
    CURRENT.with(|c| c.borrow_mut().take())
}

/// Whether this thread is running a shard (its loop or its teardown).
pub(crate) fn on_shard() -> bool {
    current_tag() != 0
}

pub(crate) fn current_tag() -> usize {
    CURRENT_TAG.with(|t| t.get())
}

/// Runs `f` with the current shard's context, or returns `None` off a shard thread.
pub(crate) fn try_with<R>(f: impl FnOnce(&Rc<Context>) -> R) -> Option<R> {
    // `f` runs under a shared borrow of the thread-local: `f` may call this again (shared
    // borrows nest), and only `enter` and `exit`, which the shard thread calls at its start
    // and end and never from inside `f`, borrow it mutably. No `Rc` clone per call: this is
    // on every operation's path (a receive's poll, a wake, a timer), several times a request.
    CURRENT.try_with(|c| c.borrow().as_ref().map(f)).ok().flatten()
}

/// Runs `f` with the current shard's context.
///
/// # Panics
///
/// Off a shard thread: calling runtime functions outside `Runtime::run` is a programming error,
/// as it is for `tokio::spawn`.
pub(crate) fn with<R>(f: impl FnOnce(&Rc<Context>) -> R) -> R {
    match try_with(f) {
        Some(r) => r,
        None => panic!(
            "ringcore: this function must be called from a task running on a ringcore shard \
             (inside Runtime::run)"
        ),
    }
}

/// The id of the shard (core slot) the caller runs on, `0..n_shards()`.
///
/// # Panics
///
/// Outside a ringcore shard thread.
pub fn shard_id() -> usize {
    with(|cx| cx.shard_id)
}

/// How many shards the running runtime has.
///
/// # Panics
///
/// Outside a ringcore shard thread.
pub fn n_shards() -> usize {
    with(|cx| cx.shared.n_shards())
}

/// `Some(n_shards())` on a shard thread, `None` elsewhere.
pub fn try_n_shards() -> Option<usize> {
    try_with(|cx| cx.shared.n_shards())
}

/// The I/O driver this shard runs on ([`DriverKind::IoUring`](crate::DriverKind::IoUring) or
/// [`DriverKind::Epoll`](crate::DriverKind::Epoll)); the same on every shard of a runtime.
///
/// # Panics
///
/// Outside a ringcore shard thread.
pub fn driver_kind() -> crate::DriverKind {
    with(|cx| cx.shared.config.driver)
}
