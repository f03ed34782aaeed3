//! The `Date` header value, formatted once per second per core.
//!
//! A server refreshes it from a per-core task at each second boundary ([`refresh`]), so
//! encoding a response reads this core's copy (a
//! [`core_local!`](ringcore_runtime::core_local)) and never calls the clock. Code that
//! encodes without that task (a custom runtime main) falls back to checking the clock, and
//! code off a runtime core (unit tests, fuzzing) formats the clock's time on every call.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Cache {
    secs: u64,
    value: [u8; 29],
    /// True while a refresher task keeps the value current.
    driven: bool,
}

impl Cache {
    const fn new() -> Cache {
        Cache {
            secs: u64::MAX,
            value: [0; 29],
            driven: false,
        }
    }
}

ringcore_runtime::core_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::new());
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
    let cached = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        if !c.driven {
            update(&mut c, SystemTime::now());
        }
        c.value
    });
    match cached {
        Some(value) => f(&value),
        None => {
            let mut c = Cache::new();
            update(&mut c, SystemTime::now());
            f(&c.value)
        }
    }
}

/// Refreshes this core's cached value; returns how long until the next second boundary.
///
/// # Panics
///
/// Off a runtime core (the refresher is a task of the server's).
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
    CACHE.try_with(|c| c.borrow_mut().driven = false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_shard_the_date_is_the_clocks() {
        let before = SystemTime::now();
        let text = with_date(|d| String::from_utf8_lossy(d).into_owned());
        let parsed = httpdate::parse_http_date(&text).expect("an IMF-fixdate");
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        assert!(secs(parsed) >= secs(before) && secs(parsed) <= secs(SystemTime::now()));
    }
}
