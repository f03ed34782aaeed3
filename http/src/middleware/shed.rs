//! `LoadShed`: CoDel-style shedding on queueing delay.

use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{rejected_counter, Either, Fallback, Middleware, Next, Rejection};
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

/// Shedding on saturation: the queue a core cannot see.
///
/// A core that serves as fast as it can reads each request only when it gets to it; the
/// rest wait in the kernel's socket buffers and accept queue, or in the clients, where no
/// sojourn clock runs. What the core can see is that it never runs dry: its thread is on the
/// CPU, or ready and waiting for it, all the time (`ringcore_runtime::stats::
/// thread_demand_time`: kernel work in the ring included, time taken by the ring's io-wq
/// workers or another process on the same CPU too) instead of sleeping in the ring wait.
/// Time is cut into windows; each window's busy share (how much of it the thread wanted the
/// CPU) is smoothed over the last few windows ([`SMOOTHING`](Self::SMOOTHING)), so one window
/// in which the core briefly waited for the disk does not hide a standing overload; a *busy*
/// window is one whose smoothed share is above [`BUSY_FLOOR`](Self::BUSY_FLOOR). After
/// [`ENGAGE_AFTER`](Self::ENGAGE_AFTER) busy windows in a row the core admits only a
/// fraction of requests, multiplied by [`DECREASE`](Self::DECREASE) after every further busy
/// window (down to [`MIN_ADMIT`](Self::MIN_ADMIT)) and raised by [`INCREASE`](Self::INCREASE)
/// after every window that was not busy (AIMD), until it admits everything again. The
/// requests it does not admit are answered at once, which costs far less than serving them,
/// so the core gets idle moments back and the hidden queues drain.
#[derive(Debug, Clone)]
pub struct Saturation {
    window: Duration,
    engage_after: u32,
    window_start: Option<Instant>,
    cpu_at_start: u64,
    busy_share: f64,
    busy_windows: u32,
    admit: f64,
    credit: f64,
}

impl Saturation {
    /// Busy windows in a row before shedding starts by default (see
    /// [`engage_after`](Self::engage_after)): with 10 ms windows, a burst that keeps the core
    /// busy for less than about 30 ms (plus the smoothing's lag) is absorbed.
    pub const ENGAGE_AFTER: u32 = 3;
    /// The admitted fraction is multiplied by this after each further busy window.
    pub const DECREASE: f64 = 0.7;
    /// The admitted fraction grows by this after each window that was not busy.
    pub const INCREASE: f64 = 0.05;
    /// The admitted fraction never goes below this (some requests always get through).
    pub const MIN_ADMIT: f64 = 0.02;
    /// A window whose smoothed busy share is above this is busy.
    pub const BUSY_FLOOR: f64 = 0.95;
    /// Weight of the newest window in the smoothed busy share (an exponential moving average
    /// over about 1 / SMOOTHING windows).
    pub const SMOOTHING: f64 = 0.5;

    /// A decision over windows of `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            engage_after: Self::ENGAGE_AFTER,
            window_start: None,
            cpu_at_start: 0,
            busy_share: 0.0,
            busy_windows: 0,
            admit: 1.0,
            credit: 0.0,
        }
    }

    /// Busy windows in a row before shedding starts (at least 1): how long a burst that
    /// saturates the core is absorbed before the core sheds.
    pub fn engage_after(mut self, windows: u32) -> Self {
        self.engage_after = windows.max(1);
        self
    }

    /// Whether to shed a request seen at `now`. `cpu` returns how long the core's thread has
    /// wanted the CPU so far, in nanoseconds (a counter that only grows); it is called once
    /// per window.
    pub fn should_shed(&mut self, now: Instant, cpu: impl FnOnce() -> u64) -> bool {
        match self.window_start {
            None => {
                self.window_start = Some(now);
                self.cpu_at_start = cpu();
            }
            Some(start) if now.saturating_duration_since(start) >= self.window => {
                let cpu_now = cpu();
                let span = now.saturating_duration_since(start);
                let share = cpu_now.saturating_sub(self.cpu_at_start) as f64 / span.as_nanos() as f64;
                // A span of several windows (no request for a while) counts as that many
                // windows at its average share: a quiet spell after an overload restores the
                // admitted fraction as it would have with steady traffic.
                let windows = (span.as_nanos() / self.window.as_nanos().max(1)).clamp(1, 1000) as u32;
                for _ in 0..windows {
                    self.busy_share += Self::SMOOTHING * (share.min(1.0) - self.busy_share);
                }
                let busy = self.busy_share > Self::BUSY_FLOOR;
                self.window_start = Some(now);
                self.cpu_at_start = cpu_now;
                if busy {
                    self.busy_windows = self.busy_windows.saturating_add(1);
                    if self.busy_windows >= self.engage_after {
                        self.admit = (self.admit * Self::DECREASE).max(Self::MIN_ADMIT);
                    }
                } else {
                    self.busy_windows = 0;
                    if self.admit < 1.0 {
                        self.admit = (self.admit + Self::INCREASE * f64::from(windows)).min(1.0);
                    }
                }
            }
            Some(_) => {}
        }
        if self.admit >= 1.0 {
            self.credit = 0.0;
            return false;
        }
        // Spread the admitted fraction evenly: admit each time the credit reaches one.
        self.credit += self.admit;
        if self.credit >= 1.0 {
            self.credit -= 1.0;
            false
        } else {
            true
        }
    }

    /// True while only a fraction of requests is admitted.
    pub fn is_engaged(&self) -> bool {
        self.admit < 1.0
    }

    /// The fraction of requests admitted now (1.0: all).
    pub fn admitted_fraction(&self) -> f64 {
        self.admit
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
///
/// That clock cannot see requests still waiting in the kernel or in the clients while the
/// core is saturated (one request per connection at a time, open loop): add
/// [`on_saturation`](Self::on_saturation) to also shed, by [`Saturation`], while the core
/// never runs dry (counted as `reason="saturated"`).
#[derive(Clone)]
pub struct LoadShed {
    target: Duration,
    interval: Duration,
    name: String,
    fallback: Fallback,
    saturation: Option<(Duration, u32)>,
    state: Rc<OnceCell<State>>,
}

struct State {
    codel: RefCell<Codel>,
    saturation: Option<RefCell<Saturation>>,
    shed: Counter,
    shed_saturated: Counter,
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
            saturation: None,
            state: Rc::new(OnceCell::new()),
        }
    }

    /// Also shed while the core is saturated (its thread on the CPU almost all of each
    /// `window`), by [`Saturation`]'s rule, once it has been saturated for `grace` (a burst
    /// shorter than that is absorbed); 10 ms windows and a 30 ms grace are good defaults.
    /// Off by default.
    pub fn on_saturation(mut self, window: Duration, grace: Duration) -> Self {
        let windows = (grace.as_nanos() / window.as_nanos().max(1)).max(1);
        self.saturation = Some((window, u32::try_from(windows).unwrap_or(u32::MAX)));
        self
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
            saturation: self
                .saturation
                .map(|(w, n)| RefCell::new(Saturation::new(w).engage_after(n))),
            shed: rejected_counter("load_shed", &self.name, "overloaded"),
            shed_saturated: rejected_counter("load_shed", &self.name, "saturated"),
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
    fn call(&self, req: Request, next: Next) -> impl Future<Output = Response> + 'static {
        let st = self.state();
        let now = Instant::now();
        let turn = req.received_at().unwrap_or(now);
        let sojourn = now.saturating_duration_since(turn);
        let (shed, saturated) = {
            let mut codel = st.codel.borrow_mut();
            let mut shed = codel.should_shed(sojourn, turn, now);
            let mut engaged = codel.is_overloaded();
            let mut saturated = false;
            if let Some(sat) = &st.saturation {
                let mut sat = sat.borrow_mut();
                if !shed {
                    saturated = sat.should_shed(now, cpu_ns);
                    shed = saturated;
                }
                engaged |= sat.is_engaged();
            }
            st.overloaded.set(i64::from(engaged));
            (shed, saturated)
        };
        if shed {
            if saturated {
                st.shed_saturated.inc();
            } else {
                st.shed.inc();
            }
            let why = Rejection::Overloaded {
                retry_after: Duration::from_secs(1),
            };
            return Either::Refused(self.fallback.respond(req, why));
        }
        Either::Rest(next.run(req))
    }
}

/// How long this core's thread has wanted the CPU so far (ns), less the idle spells it spent
/// spinning (`Builder::idle_spin`): on the CPU, but with nothing to do.
fn cpu_ns() -> u64 {
    let demand = ringcore_runtime::stats::thread_demand_time().as_nanos() as u64;
    let spun = ringcore_runtime::stats::shard(ringcore_runtime::shard_id()).spin_ns;
    demand.saturating_sub(spun)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// One request per turn: the turn stamp is when it arrived.
    fn shed(c: &mut Codel, sojourn: Duration, now: Instant) -> bool {
        c.should_shed(sojourn, now - sojourn, now)
    }

    /// A simulated core: a clock, and the CPU time its thread has used.
    struct Sim {
        t: Instant,
        cpu: u64,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                t: Instant::now(),
                cpu: 0,
            }
        }

        /// Feeds `n` requests spread over one 10 ms window in which the thread was on the CPU
        /// for `busy_ms`; returns how many were shed.
        fn window(&mut self, s: &mut Saturation, busy_ms: u64, n: u32) -> u32 {
            let mut shed = 0;
            for k in 0..n {
                let now = self.t + k * (10 * MS) / n;
                let cpu = self.cpu;
                shed += u32::from(s.should_shed(now, || cpu));
            }
            self.t += 10 * MS;
            self.cpu += busy_ms * 1_000_000;
            shed
        }
    }

    /// Busy windows until shedding engages (panics past `limit`).
    fn until_engaged(sim: &mut Sim, s: &mut Saturation, limit: u32) -> u32 {
        let mut windows = 0;
        loop {
            let shed = sim.window(s, 10, 100);
            windows += 1;
            if s.is_engaged() {
                return windows;
            }
            assert_eq!(shed, 0, "nothing is shed before engaging");
            assert!(windows <= limit, "not engaged after {limit} busy windows");
        }
    }

    #[test]
    fn saturation_engages_after_busy_windows_and_backs_off_when_idle_returns() {
        let mut sim = Sim::new();
        let mut s = Saturation::new(10 * MS);
        // Half idle: nothing shed.
        for _ in 0..20 {
            assert_eq!(sim.window(&mut s, 5, 100), 0);
        }
        // A short burst of busy windows is absorbed...
        for _ in 0..Saturation::ENGAGE_AFTER {
            assert_eq!(sim.window(&mut s, 10, 100), 0);
        }
        assert!(!s.is_engaged());
        // ...one idle window in a standing overload does not reset it...
        assert_eq!(sim.window(&mut s, 8, 100), 0);
        // ...and a standing one engages shedding, which deepens while the core stays busy.
        let took = until_engaged(&mut sim, &mut s, 20);
        assert!(took >= 1);
        let mut last = sim.window(&mut s, 10, 100);
        assert!(last > 0);
        for _ in 0..5 {
            let shed = sim.window(&mut s, 10, 100);
            assert!(shed >= last, "shedding deepens while busy: {shed} < {last}");
            last = shed;
        }
        assert!(last < 100, "some requests always get through");
        // Idle time comes back: the admitted fraction climbs back to all.
        let mut windows = 0;
        while s.is_engaged() {
            sim.window(&mut s, 5, 100);
            windows += 1;
            assert!(windows < 100, "never disengaged");
        }
        assert_eq!(sim.window(&mut s, 5, 100), 0);
    }

    #[test]
    fn a_quiet_spell_after_an_overload_restores_admission_at_once() {
        let mut sim = Sim::new();
        let mut s = Saturation::new(10 * MS);
        until_engaged(&mut sim, &mut s, 30);
        for _ in 0..20 {
            sim.window(&mut s, 10, 100);
        }
        assert!(s.admitted_fraction() < 0.1, "{}", s.admitted_fraction());
        // No request for a second, the core idle: the next request is admitted.
        sim.t += Duration::from_secs(1);
        sim.cpu += 1_000_000;
        let cpu = sim.cpu;
        assert!(!s.should_shed(sim.t, || cpu), "shed after a quiet second");
        assert!(!s.is_engaged());
    }

    #[test]
    fn saturation_admits_its_fraction_evenly() {
        let mut sim = Sim::new();
        let mut s = Saturation::new(10 * MS);
        until_engaged(&mut sim, &mut s, 30);
        let f = s.admitted_fraction();
        assert!((f - Saturation::DECREASE).abs() < 1e-9, "{f}");
        // Within one window, the admitted share matches the fraction.
        let before = s.admitted_fraction();
        let shed = sim.window(&mut s, 10, 1000);
        let admitted = 1000 - shed;
        // The window's first request closes the previous window (one more decrease).
        let after = s.admitted_fraction();
        assert!(after < before);
        let expected = (1000.0 * after) as u32;
        assert!(
            admitted.abs_diff(expected) <= 2,
            "{admitted} admitted, {expected} expected"
        );
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
