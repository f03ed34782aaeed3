//! The timers of a connection's deadlines: keep-alive, header and body reads, writes, the
//! body budget's wait, the TLS handshake, HTTP/2's idle, write and ping timers, and the
//! per-core `Date` refresh. Every one is a coarse runtime timer (`Sleep::coarse`,
//! `Timeout::coarse`), made here so that a deadline added later is one too.
//!
//! A core with nothing to do polls for a precise timer due within the runtime's idle spin
//! (50 µs) instead of parking. These deadlines count milliseconds to seconds, and with many
//! connections they fall due often (64 busy connections' waits alone, about 320 times a
//! second): as precise timers they cost 300 ns of polling per answer at 27,000 requests/s
//! over 64 connections (`ringcore_runtime_spin_ns_total`), for a precision they do not need.
//! A coarse timer bounds the park and may end tens of microseconds late. The timeouts a user
//! sets (route middleware, the client) are the runtime's own, precise.

use std::future::Future;
use std::time::{Duration, Instant};

use ringcore_runtime::time::{Sleep, Timeout};

/// `fut` until `deadline` (`ringcore_runtime::time::timeout_at`), on a coarse timer.
pub(crate) fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Timeout<F> {
    ringcore_runtime::time::timeout_at(deadline, fut).coarse()
}

/// A sleep until `deadline`, on a coarse timer.
pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
    ringcore_runtime::time::sleep_until(deadline).coarse()
}

/// A sleep of `dur`, on a coarse timer.
pub(crate) fn sleep(dur: Duration) -> Sleep {
    ringcore_runtime::time::sleep(dur).coarse()
}
