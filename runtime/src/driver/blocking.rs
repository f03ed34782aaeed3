//! The blocking pool: a few threads per process that run file calls for the epoll driver.
//!
//! Regular files are always "ready" to epoll, so a `pread`, `pwrite`, `fdatasync`, `openat`,
//! `ftruncate` or `close` on a file would stall the whole core. On the epoll driver each such
//! call becomes a [`Job`] on this pool's bounded queue ([`QUEUE_CAPACITY`]); a pool thread
//! makes the call and hands the completion back to the submitting core's [`Returns`], which
//! wakes that core through its eventfd (registered in the core's epoll). The core files the
//! completion in its op table as it would an io_uring CQE: the op's future, or the slot that
//! kept its resources after a drop, sees it on the next loop turn. A call on the pool cannot
//! be cancelled; a dropped future's resources wait in its slot until the call returns.
//!
//! The threads ([`THREADS`]) are started on first use and live for the process. They
//! inherit the signal mask of the shard that started them (SIGINT and SIGTERM blocked).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::epoll::sysop::BlockingOp;
use super::Completion;

/// Threads of the pool.
pub(crate) const THREADS: usize = 4;
/// Jobs that may wait for a pool thread; a core whose job finds the queue full keeps it and
/// retries each loop turn.
pub(crate) const QUEUE_CAPACITY: usize = 1024;

/// One file call on its way to a pool thread.
pub(crate) struct Job {
    pub(crate) key: usize,
    pub(crate) op: BlockingOp,
    pub(crate) returns: Arc<Returns>,
}

/// Where a core's finished calls come back: filled by pool threads, drained by the core.
pub(crate) struct Returns {
    done: Mutex<Vec<(usize, Completion)>>,
    /// Set by the first completion since the core last drained, so the eventfd is written
    /// once per batch.
    notified: AtomicBool,
    /// The core's wake-up (registered in its epoll). Owned here, so a call that finishes
    /// after its core has gone writes to this eventfd and never to a recycled fd number.
    eventfd: OwnedFd,
}

impl Returns {
    pub(crate) fn new(eventfd: OwnedFd) -> Arc<Self> {
        Arc::new(Returns {
            done: Mutex::new(Vec::new()),
            notified: AtomicBool::new(false),
            eventfd,
        })
    }

    pub(crate) fn eventfd(&self) -> i32 {
        self.eventfd.as_raw_fd()
    }

    fn push(&self, key: usize, c: Completion) {
        match self.done.lock() {
            Ok(mut d) => d.push((key, c)),
            Err(p) => p.into_inner().push((key, c)),
        }
        if !self.notified.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live local to the eventfd this struct owns.
            unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Moves the finished calls into `out` (the core calls this after its eventfd fired).
    pub(crate) fn drain(&self, out: &mut Vec<(usize, Completion)>) {
        let mut buf = [0u8; 8];
        // SAFETY: reads 8 bytes into a live local from the non-blocking eventfd we own.
        unsafe { libc::read(self.eventfd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        // Cleared before taking the list: a completion pushed after this point writes the
        // eventfd again, so none is left behind unnoticed.
        self.notified.store(false, Ordering::Release);
        match self.done.lock() {
            Ok(mut d) => out.append(&mut d),
            Err(p) => out.append(&mut p.into_inner()),
        }
    }
}

struct Pool {
    tx: Sender<Job>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE_CAPACITY);
        for i in 0..THREADS {
            let rx: Receiver<Job> = rx.clone();
            // A pool that cannot start a thread still works with the threads it has; with
            // none, jobs wait in the queue and their cores report nothing until shutdown.
            let _ = thread::Builder::new()
                .name(format!("ringcore-blocking-{i}"))
                .spawn(move || {
                    for job in rx {
                        let c = job.op.run();
                        job.returns.push(job.key, c);
                    }
                });
        }
        Pool { tx }
    })
}

/// Queues `job`; gives it back when the queue is full.
pub(crate) fn try_submit(job: Job) -> Result<(), Job> {
    match pool().tx.try_send(job) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(j)) | Err(TrySendError::Disconnected(j)) => Err(j),
    }
}
