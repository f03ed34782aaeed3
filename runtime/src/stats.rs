//! Per-core counters, readable from every core without stopping anyone.
//!
//! Each counter is written only by the shard that owns it, with a relaxed load and store (a
//! plain `mov` on x86, no locked instruction), and read by anyone with a relaxed load. Readers
//! see a value that is at most a loop turn old.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::context;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        #[derive(Default)]
        pub(crate) struct ShardStats {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// A copy of one shard's counters at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct ShardCounters {
            /// The shard these counters belong to.
            pub shard_id: usize,
            $($(#[$doc])* pub $name: u64,)*
        }

        impl ShardCounters {
            /// Every counter as `(name, value)`, in declaration order (for exporters).
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }

        impl ShardStats {
            pub(crate) fn snapshot(&self, shard_id: usize) -> ShardCounters {
                ShardCounters {
                    shard_id,
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// Task polls run by the executor.
    tasks_polled,
    /// Tasks spawned on this shard.
    tasks_spawned,
    /// Tasks alive now (gauge).
    tasks_alive,
    /// `io_uring_enter` calls (one per loop turn, plus one when the submission queue fills).
    ring_enters,
    /// Submission queue entries handed to the kernel.
    sqes_submitted,
    /// Completion queue entries reaped.
    completions,
    /// Operations in flight in the driver's slab now (gauge).
    ops_in_flight,
    /// Timers pending now (gauge).
    timers_pending,
    /// Cross-core messages sent by this shard.
    mesh_sent,
    /// Cross-core messages received and handled by this shard.
    mesh_received,
    /// `try_submit_to` calls refused because the channel was full.
    mesh_full,
    /// Ready latency-critical tasks waiting to run (gauge).
    ready_latency,
    /// Ready background tasks waiting to run (gauge).
    ready_background,
    /// Loop turns that parked in the ring wait.
    parks,
    /// Idle spells spent polling instead of parking (see `Builder::idle_spin`).
    spins,
    /// Nanoseconds spent in those idle spells: on the CPU, but with nothing to do (a load
    /// measure such as `thread_demand_time` should not count them as work).
    spin_ns,
    /// Tasks waiting for shutdown (`shutdown_requested` futures alive and polled) now (gauge).
    shutdown_waiters,
    /// Multishot receives re-armed after the kernel ended them.
    recv_rearms,
    /// Receives that fell back to a private buffer because the provided buffer ring was empty.
    recv_buf_ring_empty,
}

/// CPU time the calling thread has used so far, user and kernel (`CLOCK_THREAD_CPUTIME_ID`).
///
/// On a shard its growth over a window, against the window's length, is how busy the core
/// was: work done inside `io_uring_enter` (with `DEFER_TASKRUN` the kernel runs the network
/// stack's completions there) counts, time asleep in the ring wait does not. One system call;
/// meant for once per window, not per request. Zero if the clock cannot be read.
pub fn thread_cpu_time() -> std::time::Duration {
    crate::sys::thread_cpu_time().unwrap_or(std::time::Duration::ZERO)
}

/// How long the calling thread has wanted a CPU so far: time on a CPU plus time ready to run
/// but waiting for one (`/proc/thread-self/schedstat`), or [`thread_cpu_time`] where the
/// kernel does not keep scheduler statistics.
///
/// A shard's demand over a window, against the window's length, says whether the core keeps
/// up: a shard that always has work reaches 100% even when other threads (the ring's own
/// io-wq workers, another process) take part of its CPU, where CPU time alone would not.
/// Reads a small file; meant for once per window, not per request.
pub fn thread_demand_time() -> std::time::Duration {
    let from_schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            let mut f = s.split_whitespace().map(|v| v.parse::<u64>().ok());
            Some(f.next()?? + f.next()??)
        });
    match from_schedstat {
        // All zeros: the kernel keeps no scheduler statistics (e.g. `nodelayacct` on a
        // kernel without schedstats), so the file says nothing.
        Some(ns) if ns > 0 => std::time::Duration::from_nanos(ns),
        _ => thread_cpu_time(),
    }
}

/// Adds `n` to a counter owned by the calling shard (single writer: load + store).
#[inline]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Sets a gauge owned by the calling shard.
#[inline]
pub(crate) fn set(c: &AtomicU64, v: u64) {
    c.store(v, Ordering::Relaxed);
}

/// The counters of `shard` (any shard of the running runtime), read from the calling core.
///
/// # Panics
///
/// Outside a ringcore shard, or if `shard >= n_shards()`.
pub fn shard(shard: usize) -> ShardCounters {
    context::with(|cx| cx.shared.shards[shard].stats.snapshot(shard))
}

/// The counters of every shard, in shard order.
///
/// # Panics
///
/// Outside a ringcore shard.
pub fn all() -> Vec<ShardCounters> {
    context::with(|cx| {
        cx.shared
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| s.stats.snapshot(i))
            .collect()
    })
}
