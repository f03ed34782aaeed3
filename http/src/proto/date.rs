//! The `Date` header value, formatted once per second per core.
//!
//! A server refreshes it from a per-core task at each second boundary ([`refresh`]), so
//! encoding a response reads a thread-local and never calls the clock. Code that encodes
//! without that task (tests, a custom runtime main) falls back to checking the clock.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Cache {
    secs: u64,
    value: [u8; 29],
    /// True while a refresher task keeps the value current.
    driven: bool,
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache {
            secs: u64::MAX,
            value: [0; 29],
            driven: false,
        })
    };
}

fn update(c: &mut Cache, now: SystemTime) {
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if c.secs != secs {
        let s = httpdate::fmt_http_date(now);
        if s.len() == 29 {
            c.value.copy_from_slice(s.as_bytes());
            c.secs = secs;
        }
    }
}

/// Runs `f` with the current IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if !c.driven {
            update(&mut c, SystemTime::now());
        }
        f(&c.value)
    })
}

/// Refreshes the cached value; returns how long until the next second boundary.
pub(crate) fn refresh() -> Duration {
    let now = SystemTime::now();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        update(&mut c, now);
        c.driven = true;
    });
    let into_second = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_nanos(1_000_000_000 - u64::from(into_second))
}

/// Stops trusting the refresher (it is gone): fall back to checking the clock.
pub(crate) fn undrive() {
    CACHE.with(|c| c.borrow_mut().driven = false);
}
