//! `RateLimit`: token buckets, for a route or per key, with a global limit split over cores.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{rejected_counter, Either, Fallback, Middleware, Next, Rejection};
use crate::metrics::Counter;
use crate::request::Request;
use crate::response::Response;

/// A token bucket: holds up to `burst` tokens, refills at `rate` tokens per second, and
/// each admitted request takes one. Starts full.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.rate <= 0.0 {
            Err(Duration::from_secs(3600))
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// True if the bucket has refilled completely by `now` (it is then the same as a new
    /// bucket and may be forgotten).
    pub fn is_full(&self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * self.rate >= self.burst
    }
}

type KeyFn = Rc<dyn Fn(&Request) -> Option<String>>;

/// What a [`RateLimit`] keeps a separate bucket for.
#[derive(Clone)]
#[non_exhaustive]
pub enum KeyBy {
    /// One bucket for every request the middleware sees.
    Route,
    /// One bucket per client IP address.
    PeerIp,
    /// One bucket per value of this header (requests without it share one bucket).
    Header(&'static str),
    /// One bucket per value returned by the function (`None`: not limited).
    Func(KeyFn),
}

impl fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyBy::Route => f.write_str("Route"),
            KeyBy::PeerIp => f.write_str("PeerIp"),
            KeyBy::Header(h) => write!(f, "Header({h:?})"),
            KeyBy::Func(_) => f.write_str("Func"),
        }
    }
}

/// Admits requests at a sustained `rate` per second with bursts of up to `burst`; the rest
/// get 429 with `Retry-After` (the time until a token is back, in whole seconds rounded
/// up), or the [`fallback`](Self::fallback)'s response.
///
/// **Cores.** Each core enforces its own buckets without talking to the others. An
/// unkeyed limit (the default, [`KeyBy::Route`]) is a limit for the whole server, split
/// evenly: each of `n` cores admits `rate / n` per second with a burst of `burst / n`
/// (rounded up). Connections are spread over cores by the kernel, so the total is met
/// within the imbalance of that spread. A keyed limit ([`KeyBy::PeerIp`],
/// [`KeyBy::Header`], [`KeyBy::Func`]) is enforced per core without splitting, because one
/// client's connection lands on one core; a client spreading over `k` connections on
/// different cores gets up to `k` times the rate. [`split_across_cores`](Self::split_across_cores)
/// overrides either choice.
///
/// **Memory.** Keyed buckets are kept in a map bounded by [`max_keys`](Self::max_keys)
/// (default 100 000 per core): when it is full, buckets that have refilled completely (the
/// same as no bucket) are dropped, then the longest-idle ones.
#[derive(Clone)]
pub struct RateLimit {
    rate: f64,
    burst: u32,
    key: KeyBy,
    split: Option<bool>,
    max_keys: usize,
    name: String,
    fallback: Fallback,
    state: Rc<OnceCell<State>>,
}

struct State {
    rate: f64,
    burst: u32,
    single: RefCell<TokenBucket>,
    keyed: RefCell<HashMap<String, TokenBucket>>,
    limited: Counter,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("key", &self.key)
            .field("name", &self.name)
            .finish()
    }
}

impl RateLimit {
    /// `rate` requests per second (burst: one second's worth, at least 1).
    pub fn per_second(rate: f64) -> Self {
        Self {
            rate,
            burst: rate.ceil().max(1.0) as u32,
            key: KeyBy::Route,
            split: None,
            max_keys: 100_000,
            name: String::from("rate_limit"),
            fallback: Fallback::default(),
            state: Rc::new(OnceCell::new()),
        }
    }

    /// The bucket size: how many requests may come at once after a quiet period.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// What to keep separate buckets for (default: one bucket).
    pub fn key_by(mut self, key: KeyBy) -> Self {
        self.key = key;
        self
    }

    /// Whether `rate` and `burst` are totals split over the cores (default: yes for an
    /// unkeyed limit, no for a keyed one).
    pub fn split_across_cores(mut self, split: bool) -> Self {
        self.split = Some(split);
        self
    }

    /// The most keyed buckets kept per core.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n.max(1);
        self
    }

    /// The instance name in metrics (`ringcore_governance_rejected_total{name=..}`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Answers limited requests with `f(request, Rejection::RateLimited{..})` (degradation).
    pub fn fallback<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request, Rejection) -> Fut + 'static,
        Fut: Future<Output = Response> + 'static,
    {
        self.fallback = Fallback::new(f);
        self
    }

    fn state(&self) -> &State {
        self.state.get_or_init(|| {
            let split = self.split.unwrap_or(matches!(self.key, KeyBy::Route));
            let n = if split {
                ringcore_runtime::try_n_shards().unwrap_or(1).max(1)
            } else {
                1
            };
            let rate = self.rate / n as f64;
            let burst = self.burst.div_ceil(n as u32).max(1);
            State {
                rate,
                burst,
                single: RefCell::new(TokenBucket::new(rate, burst, Instant::now())),
                keyed: RefCell::new(HashMap::new()),
                limited: rejected_counter("rate_limit", &self.name, "rate_limited"),
            }
        })
    }

    /// Takes a token for `req`, or says how long until one is available.
    pub fn check(&self, req: &Request, now: Instant) -> Result<(), Duration> {
        let st = self.state();
        let key = match &self.key {
            KeyBy::Route => return st.single.borrow_mut().try_take(now),
            KeyBy::PeerIp => req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
            KeyBy::Header(h) => req.header_str(h).unwrap_or("").to_string(),
            KeyBy::Func(f) => match f(req) {
                Some(k) => k,
                None => return Ok(()),
            },
        };
        let mut keyed = st.keyed.borrow_mut();
        if let Some(b) = keyed.get_mut(&key) {
            return b.try_take(now);
        }
        if keyed.len() >= self.max_keys {
            keyed.retain(|_, b| !b.is_full(now));
            if keyed.len() >= self.max_keys {
                let oldest = keyed.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    keyed.remove(&k);
                }
            }
        }
        let mut b = TokenBucket::new(st.rate, st.burst, now);
        let r = b.try_take(now);
        keyed.insert(key, b);
        r
    }
}

impl Middleware for RateLimit {
    fn call(&self, req: Request, next: Next) -> impl Future<Output = Response> + 'static {
        match self.check(&req, Instant::now()) {
            Ok(()) => Either::Rest(next.run(req)),
            Err(retry_after) => {
                self.state().limited.inc();
                Either::Refused(self.fallback.respond(req, Rejection::RateLimited { retry_after }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0).is_ok());
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // 1 s later: 10 more tokens, but the bucket holds at most 5.
        let t1 = t0 + Duration::from_secs(1);
        let admitted = (0..20).filter(|_| b.try_take(t1).is_ok()).count();
        assert_eq!(admitted, 5);
        // 250 ms later: 2.5 tokens, so 2 requests.
        let t2 = t1 + Duration::from_millis(250);
        let admitted = (0..20).filter(|_| b.try_take(t2).is_ok()).count();
        assert_eq!(admitted, 2);
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 10, t0);
        // A request every millisecond for 10 s: 10 burst + 100/s * 10 s.
        let admitted = (0..10_000)
            .filter(|i| b.try_take(t0 + Duration::from_millis(*i)).is_ok())
            .count();
        assert!((1005..=1011).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_zero_rate_never_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 1, t0);
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0 + Duration::from_secs(100)).is_err());
    }

    #[test]
    fn keyed_buckets_are_separate_and_bounded() {
        let rl = RateLimit::per_second(1.0)
            .burst(1)
            .key_by(KeyBy::Func(Rc::new(|r: &Request| {
                r.header_str("x-user").map(str::to_string)
            })))
            .max_keys(2);
        // Requests built without a connection have no headers: the key function says
        // "not limited".
        let req = Request::default();
        let now = Instant::now();
        for _ in 0..10 {
            assert!(rl.check(&req, now).is_ok());
        }
        let rl = RateLimit::per_second(1.0)
            .burst(1)
            .key_by(KeyBy::PeerIp)
            .max_keys(2);
        assert!(rl.check(&req, now).is_ok());
        assert!(rl.check(&req, now).is_err(), "same key, bucket empty");
        assert_eq!(rl.state().keyed.borrow().len(), 1);
    }
}
