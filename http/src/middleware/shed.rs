//! `LoadShed`: CoDel-style shedding on queueing delay.

use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{rejected_counter, Fallback, Middleware, Next, Rejection, ResponseFuture};
use crate::metrics::{Counter, Gauge};
use crate::request::Request;
use crate::response::Response;

/// The shedding decision on queueing delay (CoDel's idea, adapted to a run-to-completion
/// core, without CoDel's drop schedule).
///
/// The *sojourn* of a request is how long it waited on its core between the loop turn that
/// collected its bytes and the moment it reached this check. Requests collected by one turn
/// are served one after the other, so the first ones of a turn always look fresh, even on
/// a saturated core whose real queue is in the kernel's socket buffers; the signal is
/// therefore the *turn*: a turn is late when any of its requests waited more than `target`.
/// A core is *overloaded* once its turns have been late without a break for a whole
/// `interval` (a standing queue, not a burst). While overloaded, a request whose sojourn is
/// above `target` is shed and the others are admitted, which keeps every turn about
/// `target` long. The core is back to normal after `interval` without a sojourn above
/// `target`.
#[derive(Debug, Clone)]
pub struct Codel {
    target: Duration,
    interval: Duration,
    first_above: Option<Instant>,
    overloaded: bool,
    last_above: Instant,
    turn: Option<Instant>,
    turn_late: bool,
}

impl Codel {
    /// A decision for this `target` sojourn and `interval`.
    pub fn new(target: Duration, interval: Duration) -> Self {
        Self {
            target,
            interval,
            first_above: None,
            overloaded: false,
            last_above: Instant::now(),
            turn: None,
            turn_late: false,
        }
    }

    /// Whether to shed a request collected by the turn stamped `turn` that has waited
    /// `sojourn`, seen at `now`.
    pub fn should_shed(&mut self, sojourn: Duration, turn: Instant, now: Instant) -> bool {
        if self.turn != Some(turn) {
            // A turn in which nothing waited too long ends the episode.
            if self.turn.is_some() && !self.turn_late {
                self.first_above = None;
            }
            self.turn = Some(turn);
            self.turn_late = false;
        }
        let above = sojourn > self.target;
        self.turn_late |= above;
        if self.overloaded {
            if above {
                self.last_above = now;
                return true;
            }
            if now.saturating_duration_since(self.last_above) >= self.interval {
                self.overloaded = false;
                self.first_above = None;
            }
            return false;
        }
        if !above {
            return false;
        }
        let since = *self.first_above.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.interval {
            self.overloaded = true;
            self.last_above = now;
            return true;
        }
        false
    }

    /// True while the core sheds.
    pub fn is_overloaded(&self) -> bool {
        self.overloaded
    }
}

/// Sheds requests that queued too long on an overloaded core, with 503
/// `{"error":"overloaded"}` and `Retry-After: 1` (or the [`fallback`](Self::fallback)'s
/// response), so the requests it admits keep a bounded latency instead of everyone waiting
/// behind a queue that only grows. See [`Codel`] for the rule; defaults: target 5 ms,
/// interval 100 ms.
///
/// The clock starts when the core collects the request's bytes from the ring (the loop
/// turn's timestamp, see `ringcore_runtime::time::loop_now`), so the measured wait is the
/// time spent behind other work on the core: handlers, parsing, writes. A shed request
/// costs a parse and a short response, far less than serving it, so an overloaded core
/// catches up. Each core decides alone.
#[derive(Clone)]
pub struct LoadShed {
    target: Duration,
    interval: Duration,
    name: String,
    fallback: Fallback,
    state: Rc<OnceCell<State>>,
}

struct State {
    codel: RefCell<Codel>,
    shed: Counter,
    overloaded: Gauge,
}

impl fmt::Debug for LoadShed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShed")
            .field("target", &self.target)
            .field("interval", &self.interval)
            .field("name", &self.name)
            .finish()
    }
}

impl Default for LoadShed {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadShed {
    /// Target 5 ms, interval 100 ms.
    pub fn new() -> Self {
        Self {
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
            name: String::from("load_shed"),
            fallback: Fallback::default(),
            state: Rc::new(OnceCell::new()),
        }
    }

    /// The queueing delay above which requests are shed while overloaded.
    pub fn target(mut self, target: Duration) -> Self {
        self.target = target;
        self
    }

    /// How long the delay must stay above target before shedding starts (and below it
    /// before shedding stops).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The instance name in metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Answers shed requests with `f(request, Rejection::Overloaded{..})` (degradation).
    pub fn fallback<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request, Rejection) -> Fut + 'static,
        Fut: Future<Output = Response> + 'static,
    {
        self.fallback = Fallback::new(f);
        self
    }

    fn state(&self) -> &State {
        self.state.get_or_init(|| State {
            codel: RefCell::new(Codel::new(self.target, self.interval)),
            shed: rejected_counter("load_shed", &self.name, "overloaded"),
            overloaded: Gauge::new(
                "ringcore_governance_overloaded",
                "Cores where load shedding is engaged, by instance name.",
                &[("name", &self.name)],
            ),
        })
    }

    /// True while this core sheds.
    pub fn is_overloaded(&self) -> bool {
        self.state.get().is_some_and(|s| s.codel.borrow().is_overloaded())
    }
}

impl Middleware for LoadShed {
    fn call(&self, req: Request, next: Next) -> ResponseFuture {
        let st = self.state();
        let now = Instant::now();
        let turn = req.received_at().unwrap_or(now);
        let sojourn = now.saturating_duration_since(turn);
        let shed = {
            let mut codel = st.codel.borrow_mut();
            let shed = codel.should_shed(sojourn, turn, now);
            st.overloaded.set(i64::from(codel.is_overloaded()));
            shed
        };
        if shed {
            st.shed.inc();
            return self.fallback.respond(
                req,
                Rejection::Overloaded {
                    retry_after: Duration::from_secs(1),
                },
            );
        }
        next.run(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// One request per turn: the turn stamp is when it arrived.
    fn shed(c: &mut Codel, sojourn: Duration, now: Instant) -> bool {
        c.should_shed(sojourn, now - sojourn, now)
    }

    #[test]
    fn a_late_turn_keeps_the_episode_even_if_its_first_requests_were_fresh() {
        let t0 = Instant::now();
        let mut c = Codel::new(5 * MS, 100 * MS);
        // Turns 10 ms apart; in each, the first request waited 0 and the last 9 ms.
        let mut shed_any = false;
        for turn in 0..20u32 {
            let stamp = t0 + turn * 10 * MS;
            for k in 0..10u32 {
                shed_any |= c.should_shed(k * MS, stamp, stamp + k * MS);
            }
        }
        assert!(c.is_overloaded());
        assert!(shed_any);
        // While overloaded, the fresh first requests of a turn are admitted.
        let stamp = t0 + 200 * MS;
        assert!(!c.should_shed(Duration::ZERO, stamp, stamp));
        assert!(c.should_shed(6 * MS, stamp, stamp + 6 * MS));
    }

    #[test]
    fn a_burst_shorter_than_the_interval_is_not_shed() {
        let t0 = Instant::now();
        let mut c = Codel::new(5 * MS, 100 * MS);
        for i in 0..50 {
            assert!(!shed(&mut c, 20 * MS, t0 + i * MS));
        }
        // One fast request ends the episode.
        assert!(!shed(&mut c, MS, t0 + 50 * MS));
        assert!(!shed(&mut c, 20 * MS, t0 + 120 * MS));
        assert!(!c.is_overloaded());
    }

    #[test]
    fn a_standing_queue_engages_shedding_of_slow_requests_only() {
        let t0 = Instant::now();
        let mut c = Codel::new(5 * MS, 100 * MS);
        for i in 0..100 {
            assert!(!shed(&mut c, 20 * MS, t0 + i * MS));
        }
        assert!(shed(&mut c, 20 * MS, t0 + 100 * MS));
        assert!(c.is_overloaded());
        // While overloaded, a request that did not wait long is still admitted...
        assert!(!shed(&mut c, MS, t0 + 101 * MS));
        // ...and slow ones keep being shed.
        assert!(shed(&mut c, 6 * MS, t0 + 150 * MS));
        assert!(c.is_overloaded());
    }

    #[test]
    fn shedding_stops_after_an_interval_below_target() {
        let t0 = Instant::now();
        let mut c = Codel::new(5 * MS, 100 * MS);
        for i in 0..=100 {
            shed(&mut c, 20 * MS, t0 + i * MS);
        }
        assert!(c.is_overloaded());
        for i in 101..200 {
            assert!(!shed(&mut c, MS, t0 + i * MS));
        }
        assert!(c.is_overloaded(), "not yet a whole interval below target");
        assert!(!shed(&mut c, MS, t0 + 201 * MS));
        assert!(!c.is_overloaded());
        // Back to normal: a new standing queue needs a whole interval again.
        assert!(!shed(&mut c, 20 * MS, t0 + 210 * MS));
    }
}
