//! The `Date` header value, formatted once per second per core.
//!
//! A server refreshes it from a per-core task at each second boundary ([`refresh`]), so
//! encoding a response reads this core's copy (a
//! [`core_local!`](ringcore_runtime::core_local)) and never calls the clock. Code that
//! encodes without that task (a custom runtime main) falls back to checking the clock, and
//! code off a runtime core (unit tests, fuzzing) formats the clock's time on every call.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Date: ` + the 29-byte IMF-fixdate + CRLF.
const LINE_LEN: usize = 37;
const VALUE: std::ops::Range<usize> = 6..35;

struct Cache {
    secs: u64,
    /// The whole header line, ready to copy into a response head.
    line: [u8; LINE_LEN],
    /// True while a refresher task keeps the value current.
    driven: bool,
}

impl Cache {
    const fn new() -> Cache {
        let mut line = [0; LINE_LEN];
        let mut i = 0;
        while i < 6 {
            line[i] = b"Date: "[i];
            i += 1;
        }
        line[LINE_LEN - 2] = b'\r';
        line[LINE_LEN - 1] = b'\n';
        Cache {
            secs: u64::MAX,
            line,
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
        if s.len() == VALUE.len() {
            c.line[VALUE].copy_from_slice(s.as_bytes());
            c.secs = secs;
        }
    }
}

/// This core's cache, brought up to date first where no refresher task keeps it.
#[inline(always)]
fn current(c: &RefCell<Cache>) -> std::cell::Ref<'_, Cache> {
    if !c.borrow().driven {
        update(&mut c.borrow_mut(), SystemTime::now());
    }
    c.borrow()
}

/// This core's cache, looked up once (a connection keeps it for a busy stretch instead of
/// looking it up per answer); off a runtime core, none.
pub(crate) struct Handle(Option<Rc<RefCell<Cache>>>);

impl Handle {
    pub(crate) fn current() -> Handle {
        Handle(CACHE.try_get())
    }

    /// The second the `Date` line shows now (brought up to date first where no refresher
    /// task keeps it); `None` off a runtime core.
    #[inline]
    pub(crate) fn second(&self) -> Option<u64> {
        let secs = current(self.0.as_ref()?).secs;
        Some(secs)
    }

    /// Runs `f` with the whole `Date: ...\r\n` line and the second it shows (`None` off a
    /// runtime core, where the line is formatted for this call alone): the same second, the
    /// same line, so a caller may keep bytes made from it under that second.
    #[inline]
    pub(crate) fn with_stamped_line<R>(&self, f: impl FnOnce(&[u8], Option<u64>) -> R) -> R {
        match &self.0 {
            Some(c) => {
                let c = current(c);
                f(&c.line, Some(c.secs))
            }
            None => {
                let mut c = Cache::new();
                update(&mut c, SystemTime::now());
                f(&c.line, None)
            }
        }
    }

    /// Runs `f` with the whole `Date: ...\r\n` line.
    #[inline]
    pub(crate) fn with_line<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        self.with_stamped_line(|line, _| f(line))
    }
}

/// Runs `f` with the current `Date` value (the 29-byte IMF-fixdate).
pub(crate) fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    Handle::current().with_line(|line| f(&line[VALUE]))
}

/// Formats the value of this second into this core's cache and marks the cache as driven (a
/// refresher task calls this at every second boundary). Returns the time to the next
/// boundary.
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
