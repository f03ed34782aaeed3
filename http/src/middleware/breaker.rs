//! `CircuitBreaker`: stop calling a failing downstream, probe it, resume when it recovers.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Either, Fallback, Middleware, Next, Rejection};
use crate::metrics::{Counter, Gauge};
use crate::request::Request;
use crate::response::Response;

/// The breaker's thresholds (resilience4j's model, count-based window).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Open when at least this fraction of the window's calls failed (default 0.5).
    pub failure_rate: f64,
    /// Open when at least this fraction of the window's calls were slow (default 1.0:
    /// only when all were).
    pub slow_call_rate: f64,
    /// A call taking at least this long is slow (default 1 s).
    pub slow_call_duration: Duration,
    /// How many of the latest calls the rates are computed over (default 100).
    pub window: usize,
    /// No decision before the window holds this many calls (default 10).
    pub minimum_calls: usize,
    /// How long the breaker stays open before letting probes through (default 5 s).
    pub open_duration: Duration,
    /// How many probe calls half-open lets through; when all have finished, the rates over
    /// them decide between closing and opening again (default 5).
    pub half_open_calls: usize,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            slow_call_rate: 1.0,
            slow_call_duration: Duration::from_secs(1),
            window: 100,
            minimum_calls: 10,
            open_duration: Duration::from_secs(5),
            half_open_calls: 5,
        }
    }
}

impl BreakerConfig {
    /// Sets [`failure_rate`](Self::failure_rate).
    pub fn failure_rate(mut self, r: f64) -> Self {
        self.failure_rate = r;
        self
    }
    /// Sets [`slow_call_rate`](Self::slow_call_rate).
    pub fn slow_call_rate(mut self, r: f64) -> Self {
        self.slow_call_rate = r;
        self
    }
    /// Sets [`slow_call_duration`](Self::slow_call_duration).
    pub fn slow_call_duration(mut self, d: Duration) -> Self {
        self.slow_call_duration = d;
        self
    }
    /// Sets [`window`](Self::window).
    pub fn window(mut self, n: usize) -> Self {
        self.window = n.max(1);
        self
    }
    /// Sets [`minimum_calls`](Self::minimum_calls).
    pub fn minimum_calls(mut self, n: usize) -> Self {
        self.minimum_calls = n.max(1);
        self
    }
    /// Sets [`open_duration`](Self::open_duration).
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.open_duration = d;
        self
    }
    /// Sets [`half_open_calls`](Self::half_open_calls).
    pub fn half_open_calls(mut self, n: usize) -> Self {
        self.half_open_calls = n.max(1);
        self
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; results fill the window.
    Closed,
    /// Calls are refused until the open duration has passed.
    Open,
    /// A limited number of probe calls go through; their results decide.
    HalfOpen,
}

impl BreakerState {
    fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// How a call ended (its duration decides whether it was slow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call did its job.
    Success,
    /// The call failed.
    Failure,
}

#[derive(Default)]
struct Window {
    calls: VecDeque<(bool, bool)>,
    failures: usize,
    slow: usize,
}

impl Window {
    fn push(&mut self, failed: bool, slow: bool, cap: usize) {
        if self.calls.len() == cap {
            if let Some((f, s)) = self.calls.pop_front() {
                self.failures -= usize::from(f);
                self.slow -= usize::from(s);
            }
        }
        self.calls.push_back((failed, slow));
        self.failures += usize::from(failed);
        self.slow += usize::from(slow);
    }

    fn trips(&self, cfg: &BreakerConfig) -> bool {
        let n = self.calls.len() as f64;
        self.failures as f64 / n >= cfg.failure_rate || self.slow as f64 / n >= cfg.slow_call_rate
    }

    fn clear(&mut self) {
        *self = Window::default();
    }
}

struct Inner {
    name: String,
    cfg: BreakerConfig,
    state: BreakerState,
    /// Bumped on every transition; results of permits from an earlier epoch are ignored.
    epoch: u64,
    window: Window,
    open_until: Instant,
    probes_issued: usize,
    probes: Window,
    state_gauges: [Gauge; 3],
    transitions: [Counter; 3],
    calls: [Counter; 4],
}

impl Inner {
    fn transition(&mut self, to: BreakerState, now: Instant) {
        let from = self.state;
        self.state = to;
        self.epoch += 1;
        self.window.clear();
        self.probes.clear();
        self.probes_issued = 0;
        if to == BreakerState::Open {
            self.open_until = now + self.cfg.open_duration;
        }
        for (i, g) in self.state_gauges.iter().enumerate() {
            g.set(i64::from(i == to as usize));
        }
        self.transitions[to as usize].inc();
        tracing::info!(breaker = %self.name, from = from.label(), to = to.label(), "circuit breaker state change");
    }

    /// Moves Open to HalfOpen once the open duration has passed.
    fn poll_state(&mut self, now: Instant) -> BreakerState {
        if self.state == BreakerState::Open && now >= self.open_until {
            self.transition(BreakerState::HalfOpen, now);
        }
        self.state
    }
}

/// A circuit breaker (per core; clone it to share one breaker between call sites and
/// routes on that core).
///
/// Closed, it lets calls through and keeps the outcome of the last
/// [`window`](BreakerConfig::window) calls; once at least
/// [`minimum_calls`](BreakerConfig::minimum_calls) are in the window and the failure rate
/// or the slow-call rate reaches its threshold, it opens. Open, it refuses calls (as
/// [`Rejection::CircuitOpen`]) for [`open_duration`](BreakerConfig::open_duration), then
/// half-opens. Half-open, it lets [`half_open_calls`](BreakerConfig::half_open_calls)
/// probes through and refuses the rest; when every probe has finished, it closes if their
/// rates are under the thresholds and opens again otherwise. A probe dropped before it
/// reports (cancelled) gives its slot back.
///
/// Use it around a downstream call with [`call`](Self::call) (or
/// [`try_acquire`](Self::try_acquire) and [`Permit::record`]), or as a middleware, where a
/// 5xx response counts as a failure. Metrics: `ringcore_circuit_breaker_state{name,state}`
/// (number of cores in each state), `ringcore_circuit_breaker_transitions_total{name,to}`,
/// `ringcore_circuit_breaker_calls_total{name,outcome}` with outcome `success`, `failure`,
/// `slow` or `rejected`; each transition is also logged with `tracing`.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Rc<RefCell<Inner>>,
    fallback: Fallback,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("CircuitBreaker")
            .field("name", &inner.name)
            .field("state", &inner.state)
            .finish()
    }
}

/// The right to make one call through a breaker; report how it went with
/// [`record`](Self::record).
pub struct Permit {
    inner: Rc<RefCell<Inner>>,
    epoch: u64,
    started: Instant,
    probe: bool,
    done: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("probe", &self.probe).finish()
    }
}

/// A call refused by the breaker, or the call's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerError<E> {
    /// The breaker is open (or half-open with every probe slot taken).
    Open {
        /// Time until it lets probes through.
        retry_after: Duration,
    },
    /// The call ran and failed.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Open { retry_after } => write!(f, "circuit open, retry in {retry_after:?}"),
            BreakerError::Failed(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for BreakerError<E> {}

impl CircuitBreaker {
    /// A breaker named `name` (the metrics label) with the default thresholds.
    pub fn new(name: &str) -> Self {
        Self::with_config(name, BreakerConfig::default())
    }

    /// A breaker with `cfg`.
    pub fn with_config(name: &str, cfg: BreakerConfig) -> Self {
        let help_state = "Cores where the breaker is in this state, by breaker name.";
        let help_tr = "Circuit breaker state changes, by breaker name and new state.";
        let help_calls = "Calls seen by a circuit breaker, by breaker name and outcome.";
        let states = [BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen];
        let state_gauges = states.map(|s| {
            Gauge::new(
                "ringcore_circuit_breaker_state",
                help_state,
                &[("name", name), ("state", s.label())],
            )
        });
        state_gauges[0].set(1);
        let transitions = states.map(|s| {
            Counter::new(
                "ringcore_circuit_breaker_transitions_total",
                help_tr,
                &[("name", name), ("to", s.label())],
            )
        });
        let calls = ["success", "failure", "slow", "rejected"].map(|o| {
            Counter::new(
                "ringcore_circuit_breaker_calls_total",
                help_calls,
                &[("name", name), ("outcome", o)],
            )
        });
        Self {
            inner: Rc::new(RefCell::new(Inner {
                name: name.to_string(),
                cfg,
                state: BreakerState::Closed,
                epoch: 0,
                window: Window::default(),
                open_until: Instant::now(),
                probes_issued: 0,
                probes: Window::default(),
                state_gauges,
                transitions,
                calls,
            })),
            fallback: Fallback::default(),
        }
    }

    /// Answers requests refused by the breaker (as a middleware) with
    /// `f(request, Rejection::CircuitOpen{..})` (degradation).
    pub fn fallback<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request, Rejection) -> Fut + 'static,
        Fut: Future<Output = Response> + 'static,
    {
        self.fallback = Fallback::new(f);
        self
    }

    /// The current state (an open breaker whose wait is over reads as half-open).
    pub fn state(&self) -> BreakerState {
        self.inner.borrow_mut().poll_state(Instant::now())
    }

    /// [`state`](Self::state) at `now`.
    pub fn state_at(&self, now: Instant) -> BreakerState {
        self.inner.borrow_mut().poll_state(now)
    }

    /// A permit for one call, or the time until the breaker lets calls through.
    pub fn try_acquire(&self) -> Result<Permit, Duration> {
        self.try_acquire_at(Instant::now())
    }

    /// [`try_acquire`](Self::try_acquire) at `now`.
    pub fn try_acquire_at(&self, now: Instant) -> Result<Permit, Duration> {
        let mut inner = self.inner.borrow_mut();
        let probe = match inner.poll_state(now) {
            BreakerState::Closed => false,
            BreakerState::Open => {
                inner.calls[3].inc();
                return Err(inner.open_until.saturating_duration_since(now));
            }
            BreakerState::HalfOpen => {
                if inner.probes_issued >= inner.cfg.half_open_calls {
                    inner.calls[3].inc();
                    // Probes are out; their results come within about a call's time.
                    return Err(inner.cfg.slow_call_duration.min(Duration::from_secs(1)));
                }
                inner.probes_issued += 1;
                true
            }
        };
        Ok(Permit {
            inner: self.inner.clone(),
            epoch: inner.epoch,
            started: now,
            probe,
            done: false,
        })
    }

    /// Runs `call` if the breaker allows it, and records its outcome (`Err` is a failure).
    pub async fn call<T, E, Fut>(&self, call: Fut) -> Result<T, BreakerError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self
            .try_acquire()
            .map_err(|retry_after| BreakerError::Open { retry_after })?;
        let out = call.await;
        permit.record(if out.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        });
        out.map_err(BreakerError::Failed)
    }
}

impl Permit {
    /// Reports the call's outcome, timed from the permit to now.
    pub fn record(self, outcome: Outcome) {
        self.record_at(outcome, Instant::now());
    }

    /// Reports the call's outcome as of `now`.
    pub fn record_at(mut self, outcome: Outcome, now: Instant) {
        self.done = true;
        let mut inner = self.inner.borrow_mut();
        let failed = outcome == Outcome::Failure;
        let slow = now.saturating_duration_since(self.started) >= inner.cfg.slow_call_duration;
        inner.calls[usize::from(failed)].inc();
        if slow {
            inner.calls[2].inc();
        }
        if self.epoch != inner.epoch {
            return; // the breaker changed state while this call ran
        }
        let cfg = inner.cfg.clone();
        match inner.state {
            BreakerState::Closed => {
                inner.window.push(failed, slow, cfg.window);
                if inner.window.calls.len() >= cfg.minimum_calls && inner.window.trips(&cfg) {
                    inner.transition(BreakerState::Open, now);
                }
            }
            BreakerState::HalfOpen if self.probe => {
                inner.probes.push(failed, slow, cfg.half_open_calls);
                if inner.probes.calls.len() >= cfg.half_open_calls {
                    let to = if inner.probes.trips(&cfg) {
                        BreakerState::Open
                    } else {
                        BreakerState::Closed
                    };
                    inner.transition(to, now);
                }
            }
            _ => {}
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.done || !self.probe {
            return;
        }
        // A probe that never reported: give its slot back.
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            if inner.epoch == self.epoch && inner.probes_issued > 0 {
                inner.probes_issued -= 1;
            }
        }
    }
}

impl Middleware for CircuitBreaker {
    fn call(&self, req: Request, next: Next) -> impl Future<Output = Response> + 'static {
        let (permit, rest) = match self.try_acquire() {
            Ok(p) => (Some(p), Either::Rest(next.run(req))),
            Err(retry_after) => {
                let why = Rejection::CircuitOpen { retry_after };
                (None, Either::Refused(self.fallback.respond(req, why)))
            }
        };
        async move {
            let resp = rest.await;
            let Some(permit) = permit else {
                return resp;
            };
            let outcome = if resp.status_code().is_server_error() {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            permit.record(outcome);
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::with_config(
            "t",
            BreakerConfig::default()
                .window(10)
                .minimum_calls(4)
                .failure_rate(0.5)
                .slow_call_rate(0.8)
                .slow_call_duration(100 * MS)
                .open_duration(1000 * MS)
                .half_open_calls(2),
        )
    }

    fn run(b: &CircuitBreaker, outcome: Outcome, at: Instant, took: Duration) -> bool {
        match b.try_acquire_at(at - took) {
            Ok(p) => {
                p.record_at(outcome, at);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn opens_at_the_failure_threshold_after_the_minimum_calls() {
        let b = breaker();
        let t = Instant::now();
        // 3 failures: under the minimum of 4 calls, no decision.
        for _ in 0..3 {
            assert!(run(&b, Outcome::Failure, t, MS));
        }
        assert_eq!(b.state_at(t), BreakerState::Closed);
        assert!(run(&b, Outcome::Failure, t, MS));
        assert_eq!(b.state_at(t), BreakerState::Open);
        let wait = b.try_acquire_at(t + 400 * MS).unwrap_err();
        assert_eq!(wait, 600 * MS);
    }

    #[test]
    fn stays_closed_under_the_failure_threshold() {
        let b = breaker();
        let t = Instant::now();
        // S S S F F S S S F F: never 50% failed at any point from the 4th call on.
        for i in 0..10 {
            let o = if i % 5 >= 3 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            assert!(run(&b, o, t, MS));
        }
        assert_eq!(b.state_at(t), BreakerState::Closed);
        // The window slides: a new failure pushes out the oldest success, 5 of 10 = 50%.
        assert!(run(&b, Outcome::Failure, t, MS));
        assert_eq!(b.state_at(t), BreakerState::Open);
    }

    #[test]
    fn opens_on_slow_calls() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..4 {
            assert!(run(&b, Outcome::Success, t, 150 * MS));
        }
        assert_eq!(b.state_at(t), BreakerState::Open);
    }

    #[test]
    fn half_opens_after_the_wait_and_closes_after_good_probes() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..4 {
            run(&b, Outcome::Failure, t, MS);
        }
        let t1 = t + 1000 * MS;
        assert_eq!(b.state_at(t1), BreakerState::HalfOpen);
        let p1 = b.try_acquire_at(t1).expect("probe 1");
        let p2 = b.try_acquire_at(t1).expect("probe 2");
        assert!(b.try_acquire_at(t1).is_err(), "only two probes");
        p1.record_at(Outcome::Success, t1 + MS);
        assert_eq!(b.state_at(t1), BreakerState::HalfOpen);
        p2.record_at(Outcome::Success, t1 + MS);
        assert_eq!(b.state_at(t1), BreakerState::Closed);
        // Closed with a fresh window: one failure does not reopen it.
        assert!(run(&b, Outcome::Failure, t1, MS));
        assert_eq!(b.state_at(t1), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..4 {
            run(&b, Outcome::Failure, t, MS);
        }
        let t1 = t + 1000 * MS;
        let p1 = b.try_acquire_at(t1).expect("probe");
        let p2 = b.try_acquire_at(t1).expect("probe");
        p1.record_at(Outcome::Failure, t1);
        p2.record_at(Outcome::Success, t1);
        assert_eq!(b.state_at(t1), BreakerState::Open);
        assert!(b.try_acquire_at(t1 + 999 * MS).is_err());
        assert_eq!(b.state_at(t1 + 1000 * MS), BreakerState::HalfOpen);
    }

    #[test]
    fn a_dropped_probe_gives_its_slot_back_and_stale_results_are_ignored() {
        let b = breaker();
        let t = Instant::now();
        let old = b.try_acquire_at(t).expect("closed");
        for _ in 0..4 {
            run(&b, Outcome::Failure, t, MS);
        }
        let t1 = t + 1000 * MS;
        let p1 = b.try_acquire_at(t1).expect("probe");
        let _p2 = b.try_acquire_at(t1).expect("probe");
        assert!(b.try_acquire_at(t1).is_err());
        drop(p1);
        let p3 = b.try_acquire_at(t1).expect("the dropped probe's slot");
        // A call admitted while closed reports late: it does not count as a probe.
        old.record_at(Outcome::Success, t1);
        assert_eq!(b.state_at(t1), BreakerState::HalfOpen);
        p3.record_at(Outcome::Success, t1);
        assert_eq!(b.state_at(t1), BreakerState::HalfOpen);
    }
}
