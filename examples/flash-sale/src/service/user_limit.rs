//! The per-user buy limit, exact across cores: a user's token bucket lives on the core that
//! owns the user (`hash(user) % n`, where the embedded store keeps the user's purchases), and
//! every buy asks that core. A user spreading buys over k connections that the kernel put on
//! k cores therefore gets the configured rate, not k times it (which a per-core limit gives).
//!
//! Each core keeps the buckets of its own users; a bucket that has refilled completely is the
//! same as no bucket, so buckets are forgotten once full (swept every [`SWEEP_EVERY`] takes),
//! which bounds memory by the users active in the last `burst / rate` seconds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringcore_http::middleware::TokenBucket;

/// Takes between sweeps of full buckets.
const SWEEP_EVERY: u64 = 4096;

/// One core's buckets (the state machine; [`take`] runs it on this core's copy).
struct Limits {
    rate: f64,
    burst: u32,
    buckets: HashMap<String, TokenBucket>,
    takes: u64,
}

ringcore_http::runtime::core_local! {
    /// This core's limit; `None` while off.
    static LIMITS: RefCell<Option<Limits>> = RefCell::new(None);
}

impl Limits {
    /// `rate` buys per second per user, bursts of `burst`; `None` (no limit) for a rate of 0.
    fn new(rate: f64, burst: u32) -> Option<Limits> {
        (rate > 0.0).then(|| Limits {
            rate,
            burst: burst.max(1),
            buckets: HashMap::new(),
            takes: 0,
        })
    }

    fn take(&mut self, user: &str, now: Instant) -> Result<(), Duration> {
        self.takes += 1;
        if self.takes % SWEEP_EVERY == 0 {
            self.buckets.retain(|_, b| !b.is_full(now));
        }
        let (rate, burst) = (self.rate, self.burst);
        match self.buckets.get_mut(user) {
            Some(b) => b.try_take(now),
            None => {
                let mut b = TokenBucket::new(rate, burst, now);
                let r = b.try_take(now);
                self.buckets.insert(user.to_string(), b);
                r
            }
        }
    }
}

/// Sets this core's limit: `rate` buys per second per user, bursts of `burst`. A rate of 0
/// turns the limit off.
pub(crate) fn configure(rate: f64, burst: u32) {
    LIMITS.with(|l| *l.borrow_mut() = Limits::new(rate, burst));
}

/// On the user's owner core: takes one token of `user`'s bucket, or says how long until one
/// is available.
pub(crate) fn take(user: &str) -> Result<(), Duration> {
    let now = Instant::now();
    LIMITS.with(|l| match l.borrow_mut().as_mut() {
        Some(limits) => limits.take(user, now),
        None => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_the_burst_then_waits_and_others_are_apart() {
        let t = Instant::now();
        let mut l = Limits::new(10.0, 3).expect("a limit");
        for _ in 0..3 {
            assert!(l.take("alice", t).is_ok());
        }
        let wait = l.take("alice", t).expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(l.take("bob", t).is_ok(), "another user has a bucket of their own");
        assert!(
            l.take("alice", t + Duration::from_millis(100)).is_ok(),
            "a token back after 1/rate"
        );
        assert!(Limits::new(0.0, 1).is_none(), "a rate of 0 turns the limit off");
    }
}
