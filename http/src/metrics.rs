//! Metrics: per-route latency histograms and status counts, with the runtime's per-core
//! counters and gauges, merged across cores on demand and served in the Prometheus text
//! exposition format.
//!
//! [`Counter`], [`Gauge`] and their per-core registry live in
//! [`ringcore_runtime::metrics`] (re-exported here), so a service on the runtime alone can
//! export metrics too. This module adds what HTTP records: every core keeps one
//! `hdrhistogram` per route in a [`core_local!`](ringcore_runtime::core_local) (plain
//! `RefCell`s, no locks or atomics on the request path). A scrape of [`prometheus`] (mount
//! it with `.route("/metrics", get(metrics::prometheus))`) asks every core for a copy of its
//! registry and routes over the cross-core mesh, merges the copies (counters summed,
//! histograms added) and renders them.
//!
//! What is recorded without any setup:
//!
//! - `ringcore_http_requests_total{route,method,code}` and
//!   `ringcore_http_request_duration_seconds{route}`, a Prometheus **histogram**
//!   (`_bucket{le}` cumulative, `_sum`, `_count`; bounds [`DEFAULT_LATENCY_BUCKETS`] or
//!   [`Server::latency_buckets`](crate::Server::latency_buckets)), so latency can be
//!   aggregated across instances and windows (`histogram_quantile(0.99, sum by (le)
//!   (rate(..._bucket[5m])))`): from the moment the request's bytes reached the core to the
//!   moment its response was handed to the socket (for the answers a core hands over after
//!   its first in a loop turn: to the end of that turn, read once for all of them; with an
//!   access log or request spans on,
//!   and for [`Router::oneshot`](crate::Router::oneshot): to the moment it was ready; the
//!   difference is the time an answer waits behind the rest of its pipelined batch), per
//!   route pattern (not per path, so label cardinality
//!   is bounded; `/items/{id}` is labelled `/items/:id`, `{*rest}` as `*rest`); requests that
//!   match no route count as `route="unmatched"`. Bucket counts are exact (one counter per
//!   bucket per route per core). Next to them each route keeps its per-core `hdrhistogram`
//!   (3 significant digits), which [`Snapshot::route_latency`] reads for exact quantiles.
//! - `ringcore_http_connections_total`, `ringcore_http_connections_active`,
//!   `ringcore_http_connections_refused_total`.
//! - The runtime's per-core counters (`ringcore_runtime_*{core}`).
//! - Whatever the governance middleware, caches and the application register with
//!   [`Counter::new`] and [`Gauge::new`] (shed, limited, breaker state, cache hits, ...).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http::{Method, StatusCode};
use ringcore_runtime::metrics::escape_label_value as escape;

use crate::response::Response;

pub use ringcore_runtime::metrics::{Counter, Gauge};

/// Latencies are recorded in microseconds, from 1 us to one hour, with 3 significant digits.
const HIST_MAX_US: u64 = 3_600_000_000;
const HIST_SIGFIG: u8 = 3;

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The latency histogram's bucket bounds unless set otherwise: 100 us to 10 s, about three
/// per decade (the requests of a service on ringcore usually take well under a millisecond).
pub const DEFAULT_LATENCY_BUCKETS: &[Duration] = &[
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_micros(2_500_000),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

ringcore_runtime::core_local! {
    /// This core's route metrics, shared by every router on the core.
    static ROUTES: RefCell<Vec<Rc<RouteMetrics>>> = RefCell::new(Vec::new());
    /// This core's latency bucket bounds in microseconds, ascending, distinct.
    static BOUNDS: RefCell<Rc<[u64]>> = RefCell::new(to_micros(DEFAULT_LATENCY_BUCKETS));
}

fn to_micros(bounds: &[Duration]) -> Rc<[u64]> {
    let mut us: Vec<u64> = bounds
        .iter()
        .map(|d| d.as_micros().clamp(1, u128::from(HIST_MAX_US)) as u64)
        .collect();
    us.sort_unstable();
    us.dedup();
    us.into()
}

/// Sets this core's latency histogram bounds (sorted, duplicates dropped, microsecond
/// resolution; `+Inf` is always added). Routes registered on this core from then on use
/// them, and those already registered start their bucket counts afresh with them. The
/// server calls it on each core before building the router, with the bounds of
/// [`Server::latency_buckets`](crate::Server::latency_buckets).
pub fn set_latency_buckets(bounds: &[Duration]) {
    // The answers of this turn so far count under the bounds they were answered with.
    record_turn_end(Instant::now());
    let us = to_micros(bounds);
    BOUNDS.try_with(|b| *b.borrow_mut() = us.clone());
    ROUTES.try_with(|routes| {
        for m in routes.borrow().iter() {
            let r = &mut *m.recorded.borrow_mut();
            // The answers not yet in the histogram go there; the buckets start afresh.
            r.settle();
            r.buckets = Buckets::new(us.clone());
        }
    });
}

/// One route's histogram on one core: a count per bucket (the last is `+Inf`) and the sum.
struct Buckets {
    bounds: Rc<[u64]>,
    counts: Vec<u64>,
    sum_us: u64,
}

impl Buckets {
    fn new(bounds: Rc<[u64]>) -> Self {
        Buckets {
            counts: vec![0; bounds.len() + 1],
            bounds,
            sum_us: 0,
        }
    }

    #[inline]
    fn record_n(&mut self, us: u64, n: u64) {
        // The first bound >= us (`le` is inclusive); past the last, `+Inf`. Searched from
        // the smallest: most answers fall in the first bucket or two.
        let i = self
            .bounds
            .iter()
            .position(|&b| b >= us)
            .unwrap_or(self.bounds.len());
        self.counts[i] += n;
        self.sum_us = self.sum_us.saturating_add(us.saturating_mul(n));
    }
}

/// The label for a route pattern: parameters written `:name` and `*name` instead of
/// `{name}` and `{*name}`, so that the label has no braces (valid in the format, but
/// several exposition parsers split label sets at the first `}`).
fn route_label(pattern: &str) -> String {
    pattern.replace("{*", "*").replace('{', ":").replace('}', "")
}

/// Answers faster than this many microseconds are counted in [`Recorded::fast`] first.
const FAST_US: usize = 256;

/// One route's latency histogram and status counts on one core.
pub(crate) struct RouteMetrics {
    route: String,
    recorded: RefCell<Recorded>,
}

/// What [`RouteMetrics`] has recorded (one `RefCell` for all of it: one borrow per answer).
struct Recorded {
    hist: Histogram<u64>,
    buckets: Buckets,
    /// (method, status, count): a handful of entries per route, searched linearly.
    by_status: Vec<(Method, u16, u64)>,
    /// Answers of each latency under [`FAST_US`] microseconds (`fast[us]`) not yet added to
    /// `hist` and `buckets`: counting one is an increment, where `hdrhistogram`'s record and
    /// the bucket search cost about 150 instructions an answer
    /// (`scripts/callgrind-http.sh`). [`settle`](Self::settle) adds them before anything
    /// reads `hist` or `buckets`, so what is read is exactly what was recorded.
    fast: Box<[u64; FAST_US]>,
    /// Some entry of `fast` is not zero.
    fast_pending: bool,
}

impl Recorded {
    /// Adds the answers counted in `fast` to `hist` and `buckets`.
    fn settle(&mut self) {
        if !self.fast_pending {
            return;
        }
        self.fast_pending = false;
        for (us, n) in self.fast.iter_mut().enumerate() {
            if *n != 0 {
                // Saturating record: `us` is within the histogram's range.
                let _ = self.hist.record_n(us as u64, *n);
                self.buckets.record_n(us as u64, *n);
                *n = 0;
            }
        }
    }
}

impl RouteMetrics {
    /// The metrics of `route` on this core (shared by every router on the core). Off a
    /// shard (a router built in a unit test), detached: recorded, never exported.
    pub(crate) fn for_route(route: &str) -> Rc<RouteMetrics> {
        let label = route_label(route);
        let fresh = |label: String| {
            let hist = Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG)
                .expect("constant histogram bounds are valid");
            let bounds = BOUNDS
                .try_with(|b| b.borrow().clone())
                .unwrap_or_else(|| to_micros(DEFAULT_LATENCY_BUCKETS));
            Rc::new(RouteMetrics {
                route: label,
                recorded: RefCell::new(Recorded {
                    hist,
                    buckets: Buckets::new(bounds),
                    by_status: Vec::new(),
                    fast: Box::new([0; FAST_US]),
                    fast_pending: false,
                }),
            })
        };
        let registered = ROUTES.try_with(|routes| {
            let mut routes = routes.borrow_mut();
            if let Some(m) = routes.iter().find(|m| m.route == label) {
                return m.clone();
            }
            let m = fresh(label.clone());
            routes.push(m.clone());
            m
        });
        registered.unwrap_or_else(|| fresh(label))
    }

    pub(crate) fn route(&self) -> &str {
        &self.route
    }

    /// Records one answered request that arrived at `since`.
    #[inline]
    pub(crate) fn record(&self, method: &Method, status: StatusCode, since: Instant) {
        self.record_n(method, status.as_u16(), since, Instant::now(), 1);
    }

    /// Records `n` answered requests that arrived at `since` and were answered at `now`.
    pub(crate) fn record_n(&self, method: &Method, code: u16, since: Instant, now: Instant, n: u64) {
        let d = now.saturating_duration_since(since);
        // Whole microseconds without the u128 of `as_micros`.
        let us = d
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()))
            .clamp(1, HIST_MAX_US);
        let r = &mut *self.recorded.borrow_mut();
        if us < FAST_US as u64 {
            r.fast[us as usize] += n;
            r.fast_pending = true;
        } else {
            // Saturating record: values are clamped into the histogram's range above.
            let _ = r.hist.record_n(us, n);
            r.buckets.record_n(us, n);
        }
        match r.by_status.iter_mut().find(|(m, c, _)| *c == code && m == method) {
            Some(e) => e.2 += n,
            None => r.by_status.push((method.clone(), code, n)),
        }
    }
}

/// Answers of one route, method, status and arrival handed to the socket in this loop turn
/// and not recorded yet.
struct Handed {
    metrics: Rc<RouteMetrics>,
    method: &'static Method,
    code: u16,
    since: Instant,
    n: u64,
}

/// At most this many runs of alike answers wait for the end of a turn; one more records them
/// all at once (a turn that answers that many is long enough for a clock read more).
const HANDED_MAX: usize = 256;

thread_local! {
    /// The loop turn (its `loop_now`) whose first answer this core recorded as it was handed
    /// over.
    static HANDED_TURN: Cell<Option<Instant>> = const { Cell::new(None) };
    /// This core's answers handed to the socket in the current loop turn after its first, in
    /// runs of alike ones, recorded when it ends ([`record_turn_end`]).
    static HANDED: RefCell<Vec<Handed>> = const { RefCell::new(Vec::new()) };
}

impl RouteMetrics {
    /// Records `n` answers that arrived at `since` and were just handed to the socket. The
    /// first answers a core hands over in a loop turn are recorded at once, with a clock read;
    /// the turn's later ones are recorded together when its tasks have run
    /// (`ringcore_runtime::time::at_turn_end`), with one clock read for them all: their
    /// latency is from the arrival to the end of the turn that wrote them (after their
    /// hand-over, and before a send through the ring goes to the kernel at the turn's
    /// `io_uring_enter`), and consecutive alike ones (same route, method, status and
    /// arrival: the connections a turn served, usually) are one histogram update. So a core
    /// answering one request per turn (low load) reads the clock once per answer, as before,
    /// and a busy one twice per turn. Off a shard thread, recorded at once.
    #[inline]
    pub(crate) fn record_handed(self: &Rc<Self>, method: &'static Method, code: u16, since: Instant, n: u64) {
        let turn = Some(ringcore_runtime::time::loop_now());
        if HANDED_TURN.get() != turn {
            // The turn's first (or off a shard, where every call is).
            HANDED_TURN.set(turn);
            self.record_n(method, code, since, Instant::now(), n);
        } else {
            self.hand_to_turn_end(method, code, since, n);
        }
    }

    /// [`record_handed`](Self::record_handed) for an answer after the turn's first.
    #[inline(never)]
    fn hand_to_turn_end(self: &Rc<Self>, method: &'static Method, code: u16, since: Instant, n: u64) {
        let (now, full) = HANDED.with(|h| {
            let h = &mut *h.borrow_mut();
            match h.last_mut() {
                Some(last)
                    if Rc::ptr_eq(&last.metrics, self)
                        && std::ptr::eq(last.method, method)
                        && last.code == code
                        && last.since == since =>
                {
                    last.n += n;
                    return (false, false);
                }
                Some(_) => {}
                None if ringcore_runtime::time::at_turn_end(record_turn_end) => {}
                None => return (true, false),
            }
            h.push(Handed {
                metrics: self.clone(),
                method,
                code,
                since,
                n,
            });
            (false, h.len() >= HANDED_MAX)
        });
        if now {
            self.record_n(method, code, since, Instant::now(), n);
        } else if full {
            record_turn_end(Instant::now());
        }
    }
}

/// Records the answers waiting for the end of the turn as answered at `now` (nothing once
/// the thread's locals are being destroyed).
fn record_turn_end(now: Instant) {
    let _ = HANDED.try_with(|h| {
        // Recording borrows only each route's own cell, never this list.
        for r in h.borrow_mut().drain(..) {
            r.metrics.record_n(r.method, r.code, r.since, now, r.n);
        }
    });
}

/// A copy of every core's metrics at one moment, merged: the runtime registry's counters and
/// gauges and the per-route latency. `Send`, so it can cross cores.
#[derive(Debug, Default)]
pub struct Snapshot {
    registry: ringcore_runtime::metrics::Snapshot,
    routes: BTreeMap<String, RouteSnapshot>,
}

#[derive(Debug)]
struct RouteSnapshot {
    hist: Histogram<u64>,
    by_status: BTreeMap<(String, u16), u64>,
    /// Upper bound in microseconds (`u64::MAX` for `+Inf`) -> requests in that bucket alone.
    buckets: BTreeMap<u64, u64>,
    sum_us: u64,
}

impl Snapshot {
    /// This core's metrics alone.
    pub fn local() -> Snapshot {
        // The answers of this turn so far are in it.
        record_turn_end(Instant::now());
        let mut s = Snapshot {
            registry: ringcore_runtime::metrics::Snapshot::local(),
            routes: BTreeMap::new(),
        };
        ROUTES.try_with(|routes| {
            for m in routes.borrow().iter() {
                let r = &mut *m.recorded.borrow_mut();
                r.settle();
                let by_status = r
                    .by_status
                    .iter()
                    .map(|(meth, code, n)| ((meth.as_str().to_string(), *code), *n))
                    .collect();
                let b = &r.buckets;
                let mut buckets: BTreeMap<u64, u64> =
                    b.bounds.iter().copied().zip(b.counts.iter().copied()).collect();
                buckets.insert(u64::MAX, b.counts.last().copied().unwrap_or(0));
                s.routes.insert(
                    m.route.clone(),
                    RouteSnapshot {
                        hist: r.hist.clone(),
                        by_status,
                        buckets,
                        sum_us: b.sum_us,
                    },
                );
            }
        });
        s
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: Snapshot) {
        self.registry.merge(other.registry);
        for (route, o) in other.routes {
            match self.routes.get_mut(&route) {
                Some(mine) => {
                    let _ = mine.hist.add(&o.hist);
                    for (k, n) in o.by_status {
                        *mine.by_status.entry(k).or_default() += n;
                    }
                    // Cores share their bounds (one server sets them all); were they to
                    // differ, the union of bounds is kept, each count under its own bound.
                    for (le, n) in o.buckets {
                        *mine.buckets.entry(le).or_default() += n;
                    }
                    mine.sum_us = mine.sum_us.saturating_add(o.sum_us);
                }
                None => {
                    self.routes.insert(route, o);
                }
            }
        }
    }

    /// The counters, gauges and runtime counters (what a service without HTTP exports).
    pub fn registry(&self) -> &ringcore_runtime::metrics::Snapshot {
        &self.registry
    }

    /// The merged value of counter `name` with exactly these labels (0 if absent).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.registry.counter(name, labels)
    }

    /// The merged value of gauge `name` with exactly these labels (0 if absent).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> i64 {
        self.registry.gauge(name, labels)
    }

    /// Requests answered on `route` (all methods and statuses).
    pub fn route_requests(&self, route: &str) -> u64 {
        self.routes.get(route).map_or(0, |r| r.hist.len())
    }

    /// The latency of `route` at quantile `q` (0.0..=1.0), if it saw requests.
    pub fn route_latency(&self, route: &str, q: f64) -> Option<Duration> {
        let r = self.routes.get(route)?;
        (!r.hist.is_empty()).then(|| Duration::from_micros(r.hist.value_at_quantile(q)))
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);

        out.push_str("# HELP ringcore_http_requests_total Requests answered, by route pattern, method and status code.\n");
        out.push_str("# TYPE ringcore_http_requests_total counter\n");
        for (route, r) in &self.routes {
            for ((method, code), n) in &r.by_status {
                let _ = writeln!(
                    out,
                    "ringcore_http_requests_total{{route=\"{}\",method=\"{}\",code=\"{code}\"}} {n}",
                    escape(route),
                    escape(method)
                );
            }
        }
        out.push_str("# HELP ringcore_http_request_duration_seconds Time from the request's arrival on its core to its response being ready.\n");
        out.push_str("# TYPE ringcore_http_request_duration_seconds histogram\n");
        for (route, r) in &self.routes {
            let route = escape(route);
            let mut cumulative = 0u64;
            for (&le, &n) in &r.buckets {
                cumulative += n;
                if le == u64::MAX {
                    let _ = writeln!(
                        out,
                        "ringcore_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}"
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "ringcore_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{}\"}} {cumulative}",
                        seconds(le)
                    );
                }
            }
            let _ = writeln!(
                out,
                "ringcore_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                seconds(r.sum_us)
            );
            let _ = writeln!(
                out,
                "ringcore_http_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}"
            );
        }

        self.registry.render_into(&mut out);
        out
    }
}

fn seconds(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

/// Every core's metrics, merged. Call it on a shard (it asks each core over the mesh).
pub async fn gather() -> Snapshot {
    let mut all = Snapshot::local();
    all.registry.read_runtime_counters();
    let me = ringcore_runtime::shard_id();
    for core in 0..ringcore_runtime::n_shards() {
        if core == me {
            continue;
        }
        if let Ok(s) = ringcore_runtime::submit_to(core, Snapshot::local).await {
            all.merge(s);
        }
    }
    all
}

/// The `GET /metrics` handler: every core's metrics in the Prometheus text format.
pub async fn prometheus() -> Response {
    let body = gather().await.render();
    Response::with_body(crate::Body::Full(body.into())).header(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on one shard (the registries are per core: they exist only there).
    fn on_a_shard<R: Send + 'static>(f: fn() -> R) -> R {
        let out = ringcore_runtime::Runtime::builder()
            .core_count(1)
            .handle_signals(false)
            .build()
            .expect("build")
            .run(move || async move { f() })
            .expect("run");
        out.into_iter().flatten().next().expect("the shard's result")
    }

    #[test]
    fn counters_with_the_same_key_are_one_counter() {
        let (v, w) = on_a_shard(|| {
            let a = Counter::new("t_same_total", "help", &[("k", "v")]);
            let b = Counter::new("t_same_total", "help", &[("k", "v")]);
            let other = Counter::new("t_same_total", "help", &[("k", "w")]);
            a.inc();
            b.add(2);
            other.inc();
            let s = Snapshot::local();
            (
                s.counter("t_same_total", &[("k", "v")]),
                s.counter("t_same_total", &[("k", "w")]),
            )
        });
        assert_eq!((v, w), (3, 1));
    }

    #[test]
    fn merge_sums_counters_and_histograms() {
        let (requests, text) = on_a_shard(|| {
            let m = RouteMetrics::for_route("/t/merge");
            m.record(&Method::GET, StatusCode::OK, Instant::now());
            m.record(&Method::GET, StatusCode::NOT_FOUND, Instant::now());
            let mut a = Snapshot::local();
            let b = Snapshot::local();
            a.merge(b);
            (a.route_requests("/t/merge"), a.render())
        });
        assert_eq!(requests, 4);
        assert!(
            text.contains("ringcore_http_requests_total{route=\"/t/merge\",method=\"GET\",code=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ringcore_http_request_duration_seconds_count{route=\"/t/merge\"} 4"),
            "{text}"
        );
    }

    /// Latencies under `FAST_US` are counted apart first: what a scrape reads (count, sum,
    /// buckets, quantiles) is exactly what was recorded, fast and slow alike, before and after
    /// the bounds change.
    #[test]
    fn fast_answers_are_exported_exactly_as_recorded() {
        let (before, after) = on_a_shard(|| {
            set_latency_buckets(&[Duration::from_micros(100), Duration::from_micros(300)]);
            let m = RouteMetrics::for_route("/t/fast");
            let t0 = Instant::now();
            // 0 (counted as 1 us, the floor), 1, 99 (three answers in one record), 100 (on a
            // bound), 255 (the last fast one), 256 (the first through hdrhistogram) and
            // 1.5 ms (exact there, as every value under 2,048 us).
            for (us, n) in [(0, 1), (1, 1), (99, 3), (100, 1), (255, 2), (256, 1), (1_500, 1)] {
                let at = t0 + Duration::from_micros(us);
                m.record_n(&Method::GET, 200, t0, at, n);
            }
            let read = || {
                let s = Snapshot::local();
                let r = &s.routes["/t/fast"];
                let q = |q: f64| s.route_latency("/t/fast", q).map(|d| d.as_micros());
                (
                    s.route_requests("/t/fast"),
                    r.sum_us,
                    r.buckets.clone(),
                    (q(0.0), q(0.5), q(1.0)),
                )
            };
            let before = read();
            // New bounds start the buckets afresh; the histogram keeps every answer.
            set_latency_buckets(&[Duration::from_micros(10)]);
            m.record_n(&Method::GET, 200, t0, t0 + Duration::from_micros(7), 1);
            (before, read())
        });
        let (count, sum, buckets, quantiles) = before;
        assert_eq!(count, 10);
        assert_eq!(sum, 1 + 1 + 3 * 99 + 100 + 2 * 255 + 256 + 1_500);
        // Each bucket alone here (the exposition makes them cumulative).
        assert_eq!(buckets, BTreeMap::from([(100, 6), (300, 3), (u64::MAX, 1)]));
        assert_eq!(quantiles, (Some(1), Some(99), Some(1_500)));
        let (count, sum, buckets, quantiles) = after;
        assert_eq!(count, 11);
        assert_eq!(sum, 7);
        assert_eq!(buckets, BTreeMap::from([(10, 1), (u64::MAX, 0)]));
        assert_eq!(quantiles.0, Some(1));
    }

    /// The first answers a core hands to the socket in a loop turn are recorded at once; the
    /// turn's later ones when the turn's tasks have run, with one clock reading: the rest of
    /// the turn's work is inside their latency, the core's wait after the turn is not. Alike
    /// answers are merged and still counted one by one; the next turn's first is recorded at
    /// once again; a read of the metrics within a turn has its answers so far; at
    /// `HANDED_MAX` waiting runs they are recorded at once. Off a shard, at once.
    #[test]
    fn handed_answers_are_recorded_when_their_turn_ends() {
        static GET: Method = Method::GET;
        static POST: Method = Method::POST;
        fn recorded(m: &RouteMetrics) -> u64 {
            let r = m.recorded.borrow();
            r.fast.iter().sum::<u64>() + r.hist.len()
        }
        let out = ringcore_runtime::Runtime::builder()
            .core_count(1)
            .handle_signals(false)
            .build()
            .expect("build")
            .run(|| async {
                // A turn after the first (which has no instant of its own yet).
                ringcore_runtime::time::sleep(Duration::from_millis(1)).await;
                let m = RouteMetrics::for_route("/t/handed");
                let t0 = Instant::now();
                m.record_handed(&GET, 200, t0, 2);
                let first = recorded(&m);
                m.record_handed(&GET, 200, t0, 1);
                m.record_handed(&POST, 201, t0, 1);
                m.record_handed(&GET, 200, t0, 1);
                let later = recorded(&m);
                // The rest of the turn's work; then the turn ends and the core waits 50 ms.
                std::thread::sleep(Duration::from_millis(3));
                ringcore_runtime::time::sleep(Duration::from_millis(50)).await;
                let after = recorded(&m);

                let next = RouteMetrics::for_route("/t/handed-next");
                next.record_handed(&GET, 200, Instant::now(), 1);
                let next_first = recorded(&next);
                let read = RouteMetrics::for_route("/t/handed-read");
                read.record_handed(&GET, 200, Instant::now(), 3);
                let read_within = Snapshot::local().route_requests("/t/handed-read");
                let many = RouteMetrics::for_route("/t/handed-many");
                let t1 = Instant::now();
                for i in 0..HANDED_MAX as u64 {
                    // Distinct arrivals: runs that cannot merge.
                    many.record_handed(&GET, 200, t1 + Duration::from_micros(i), 1);
                }
                let many_within = recorded(&many);

                let s = Snapshot::local();
                let q = |q| s.route_latency("/t/handed", q);
                let by_status = s.routes["/t/handed"].by_status.clone();
                (
                    (first, later, after, next_first, read_within, many_within),
                    (s.route_requests("/t/handed"), q(0.0), q(1.0), by_status),
                )
            })
            .expect("run");
        let (counts, (count, fastest, slowest, by_status)) =
            out.into_iter().flatten().next().expect("result");
        // first, later (still waiting), after the turn, the next turn's first, a read within
        // a turn, and HANDED_MAX waiting runs (recorded when the list reached the bound).
        assert_eq!(counts, (2, 2, 5, 1, 3, HANDED_MAX as u64));
        assert_eq!(count, 5);
        assert!(
            fastest.is_some_and(|d| d < Duration::from_millis(3)),
            "the turn's first answers waited: {fastest:?}"
        );
        assert!(
            slowest.is_some_and(|d| d >= Duration::from_millis(3) && d < Duration::from_millis(40)),
            "the later answers were not recorded at the end of their turn: {slowest:?}"
        );
        assert_eq!(
            by_status,
            BTreeMap::from([(("GET".to_string(), 200), 4), (("POST".to_string(), 201), 1)])
        );
        // Off a shard: recorded at once (nothing waits for a turn that never ends).
        let m = RouteMetrics::for_route("/t/handed-off");
        m.record_handed(&GET, 200, Instant::now(), 1);
        m.record_handed(&GET, 200, Instant::now(), 1);
        assert_eq!(recorded(&m), 2);
    }

    #[test]
    fn a_bucket_counts_values_up_to_and_including_its_bound() {
        let mut b = Buckets::new(to_micros(&[
            Duration::from_micros(10),
            Duration::from_micros(100),
        ]));
        for us in [1, 10, 11, 100, 101, 5_000] {
            b.record_n(us, 1);
        }
        assert_eq!(b.counts, [2, 2, 2]);
        assert_eq!(b.sum_us, 1 + 10 + 11 + 100 + 101 + 5_000);
    }

    #[test]
    fn bounds_are_sorted_and_deduplicated_and_rendered_cumulative() {
        let text = on_a_shard(|| {
            set_latency_buckets(&[
                Duration::from_millis(2),
                Duration::from_millis(1),
                Duration::from_millis(2),
            ]);
            let m = RouteMetrics::for_route("/t/buckets");
            m.record(&Method::GET, StatusCode::OK, Instant::now());
            Snapshot::local().render()
        });
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("ringcore_http_request_duration_seconds_bucket{route=\"/t/buckets\""))
            .collect();
        assert_eq!(
            lines,
            [
                "ringcore_http_request_duration_seconds_bucket{route=\"/t/buckets\",le=\"0.001\"} 1",
                "ringcore_http_request_duration_seconds_bucket{route=\"/t/buckets\",le=\"0.002\"} 1",
                "ringcore_http_request_duration_seconds_bucket{route=\"/t/buckets\",le=\"+Inf\"} 1",
            ]
        );
    }

    #[test]
    fn off_a_shard_route_metrics_record_but_are_not_exported() {
        let m = RouteMetrics::for_route("/t/detached");
        m.record(&Method::GET, StatusCode::OK, Instant::now());
        let r = &mut *m.recorded.borrow_mut();
        r.settle();
        assert_eq!(r.hist.len(), 1);
        assert_eq!(Snapshot::local().route_requests("/t/detached"), 0);
    }
}
