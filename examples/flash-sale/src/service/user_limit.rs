//! The per-user buy limit, exact across cores: a user's token bucket lives on the core that
//! owns the user (`hash(user) % n`, where the embedded store keeps the user's purchases), and
//! every buy asks that core. A user spreading buys over k connections that the kernel put on
//! k cores therefore gets the configured rate, not k times it (which a per-core limit gives).
//!
//! Each core keeps the buckets of its own users; a bucket that has refilled completely is the
//! same as no bucket, so buckets are forgotten once full (swept every [`SWEEP_EVERY`] takes),
//! which bounds memory by the users active in the last `burst / rate` seconds.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringcore_http::middleware::TokenBucket;

/// Takes between sweeps of full buckets.
const SWEEP_EVERY: u64 = 4096;

struct Limits {
    rate: f64,
    burst: u32,
    buckets: HashMap<String, TokenBucket>,
}

thread_local! {
    static LIMITS: RefCell<Option<Limits>> = const { RefCell::new(None) };
    static TAKES: Cell<u64> = const { Cell::new(0) };
}

/// Sets this core's limit: `rate` buys per second per user, bursts of `burst`. A rate of 0
/// turns the limit off.
pub(crate) fn configure(rate: f64, burst: u32) {
    LIMITS.with(|l| {
        *l.borrow_mut() = (rate > 0.0).then(|| Limits {
            rate,
            burst: burst.max(1),
            buckets: HashMap::new(),
        });
    });
}

/// On the user's owner core: takes one token of `user`'s bucket, or says how long until one
/// is available.
pub(crate) fn take(user: &str) -> Result<(), Duration> {
    let now = Instant::now();
    LIMITS.with(|l| {
        let mut l = l.borrow_mut();
        let Some(limits) = l.as_mut() else {
            return Ok(());
        };
        let n = TAKES.with(|t| {
            t.set(t.get() + 1);
            t.get()
        });
        if n % SWEEP_EVERY == 0 {
            limits.buckets.retain(|_, b| !b.is_full(now));
        }
        let (rate, burst) = (limits.rate, limits.burst);
        match limits.buckets.get_mut(user) {
            Some(b) => b.try_take(now),
            None => {
                let mut b = TokenBucket::new(rate, burst, now);
                let r = b.try_take(now);
                limits.buckets.insert(user.to_string(), b);
                r
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_the_burst_then_waits_and_others_are_apart() {
        configure(10.0, 3);
        for _ in 0..3 {
            assert!(take("alice").is_ok());
        }
        let wait = take("alice").expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(take("bob").is_ok(), "another user has a bucket of their own");
        configure(0.0, 1);
        for _ in 0..100 {
            assert!(take("alice").is_ok(), "a rate of 0 turns the limit off");
        }
    }
}
