//! Task wakers: cheap on the owning core, correct from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Wake;

use super::TaskClass;
use crate::context;
use crate::shared::ShardRemote;

/// The waker of one task. Created once per spawn; cloning it is one uncontended atomic add.
pub(crate) struct TaskWaker {
    /// Address of the owning shard's [`ShardRemote`] (see [`ShardRemote::tag`]).
    tag: usize,
    /// Keeps the owning shard's remote half alive for wakes from foreign threads.
    remote: RemotePtr,
    key: usize,
    generation: u32,
    /// The task's class (fixed at its spawn): a wake on the owning core queues it without
    /// looking the task up.
    class: TaskClass,
    /// Set while the task sits in a ready queue, so a burst of wakes queues it once.
    notified: AtomicBool,
}

/// A pointer to the owning shard's remote half.
///
/// The remote half lives inside the runtime's `Arc<Shared>`; a task waker may outlive the
/// runtime (a user can stash a waker anywhere), so a foreign-thread wake must not dereference
/// it blindly. We keep a weak count on the `Shared` through this `Arc` clone instead.
struct RemotePtr(Arc<crate::shared::Shared>, usize);

impl TaskWaker {
    pub(crate) fn new(remote: &ShardRemote, key: usize, generation: u32, class: TaskClass) -> Self {
        let (shared, shard) = context::with(|cx| (cx.shared.clone(), cx.shard_id));
        debug_assert_eq!(shared.shards[shard].tag(), remote.tag());
        Self {
            tag: remote.tag(),
            remote: RemotePtr(shared, shard),
            key,
            generation,
            class,
            notified: AtomicBool::new(false),
        }
    }

    pub(crate) fn mark_notified(&self) {
        self.notified.store(true, Ordering::Relaxed);
    }

    pub(crate) fn clear_notified(&self) {
        self.notified.store(false, Ordering::Relaxed);
    }

    fn wake_inner(&self) {
        if context::current_tag() == self.tag {
            // On the owning core, a load and a store rather than a read-modify-write (an
            // atomic swap is a locked instruction, on every wake). A foreign thread's wake
            // racing this one can see the flag still clear as well and queue the task a
            // second time, remotely: that costs one spurious poll, never a lost wake.
            if self.notified.load(Ordering::Acquire) {
                return;
            }
            self.notified.store(true, Ordering::Release);
            let queued =
                context::try_with(|cx| cx.executor.schedule_as(self.class, self.key, self.generation));
            if queued.is_some() {
                return;
            }
        } else if self.notified.swap(true, Ordering::AcqRel) {
            return;
        }
        // A foreign thread (or a shard thread tearing down): hand the wake to the owner.
        let remote = &self.remote.0.shards[self.remote.1];
        if remote.exited.load(Ordering::Acquire) {
            return;
        }
        match remote.remote_wakes.lock() {
            Ok(mut q) => q.push((self.key, self.generation)),
            Err(poisoned) => poisoned.into_inner().push((self.key, self.generation)),
        }
        remote.has_remote_wakes.store(true, Ordering::Release);
        remote.unpark();
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_inner();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_inner();
    }
}
