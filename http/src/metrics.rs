//! Metrics: per-core counters, gauges and latency histograms, merged across cores on demand
//! and served in the Prometheus text exposition format.
//!
//! Every core records into its own registry (a thread-local: plain `Cell`s and one
//! `hdrhistogram` per route, no locks or atomics on the request path). A scrape of
//! [`prometheus`] (mount it with `.route("/metrics", get(metrics::prometheus))`) asks every
//! core for a copy of its registry over the cross-core mesh, merges the copies (counters
//! summed, histograms added) and renders them.
//!
//! What is recorded without any setup:
//!
//! - `ringcore_http_requests_total{route,method,code}` and
//!   `ringcore_http_request_duration_seconds{route}` (a summary with quantiles 0.5, 0.9,
//!   0.99, 0.999 and `_sum` / `_count`): from the moment the request's bytes reached the
//!   core to the moment its response was ready, per route pattern (not per path, so label
//!   cardinality is bounded; `/items/{id}` is labelled `/items/:id`, `{*rest}` as `*rest`);
//!   requests that match no route count as `route="unmatched"`.
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

use crate::response::Response;

/// Latencies are recorded in microseconds, from 1 us to one hour, with 3 significant digits.
const HIST_MAX_US: u64 = 3_600_000_000;
const HIST_SIGFIG: u8 = 3;

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

type Labels = Vec<(&'static str, String)>;

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    name: &'static str,
    labels: Labels,
}

#[derive(Default)]
struct Registry {
    help: RefCell<BTreeMap<&'static str, &'static str>>,
    counters: RefCell<Vec<(Key, Rc<Cell<u64>>)>>,
    gauges: RefCell<Vec<(Key, Rc<Cell<i64>>)>>,
    routes: RefCell<Vec<Rc<RouteMetrics>>>,
}

thread_local! {
    static REGISTRY: Registry = Registry::default();
}

fn key(name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Key {
    REGISTRY.with(|r| r.help.borrow_mut().insert(name, help));
    Key {
        name,
        labels: labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
    }
}

/// A monotonically increasing count on this core, exported summed over all cores.
///
/// Creating a counter with the same name and labels twice on one core gives the same
/// counter. Clone it into the code that counts; `inc` is a plain add.
#[derive(Clone, Debug)]
pub struct Counter(Rc<Cell<u64>>);

impl Counter {
    /// The counter `name{labels}` of this core (created at zero if new).
    pub fn new(name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Self {
        let key = key(name, help, labels);
        REGISTRY.with(|r| {
            let mut counters = r.counters.borrow_mut();
            if let Some((_, c)) = counters.iter().find(|(k, _)| *k == key) {
                return Counter(c.clone());
            }
            let c = Rc::new(Cell::new(0));
            counters.push((key, c.clone()));
            Counter(c)
        })
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get() + n);
    }

    /// This core's count.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down on this core, exported summed over all cores (so a gauge
/// set to 1 on each core in some state reads as the number of cores in that state).
#[derive(Clone, Debug)]
pub struct Gauge(Rc<Cell<i64>>);

impl Gauge {
    /// The gauge `name{labels}` of this core (created at zero if new).
    pub fn new(name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Self {
        let key = key(name, help, labels);
        REGISTRY.with(|r| {
            let mut gauges = r.gauges.borrow_mut();
            if let Some((_, g)) = gauges.iter().find(|(k, _)| *k == key) {
                return Gauge(g.clone());
            }
            let g = Rc::new(Cell::new(0));
            gauges.push((key, g.clone()));
            Gauge(g)
        })
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.set(v);
    }

    /// Adds `d` (may be negative).
    #[inline]
    pub fn add(&self, d: i64) {
        self.0.set(self.0.get() + d);
    }

    /// This core's value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// The label for a route pattern: parameters written `:name` and `*name` instead of
/// `{name}` and `{*name}`, so that the label has no braces (valid in the format, but
/// several exposition parsers split label sets at the first `}`).
fn route_label(pattern: &str) -> String {
    pattern.replace("{*", "*").replace('{', ":").replace('}', "")
}

/// One route's latency histogram and status counts on one core.
pub(crate) struct RouteMetrics {
    route: String,
    hist: RefCell<Histogram<u64>>,
    /// (method, status, count): a handful of entries per route, searched linearly.
    by_status: RefCell<Vec<(Method, u16, u64)>>,
}

impl RouteMetrics {
    /// The metrics of `route` on this core (shared by every router on the core).
    pub(crate) fn for_route(route: &str) -> Rc<RouteMetrics> {
        REGISTRY.with(|r| {
            let mut routes = r.routes.borrow_mut();
            let label = route_label(route);
            if let Some(m) = routes.iter().find(|m| m.route == label) {
                return m.clone();
            }
            let hist = Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG)
                .expect("constant histogram bounds are valid");
            let m = Rc::new(RouteMetrics {
                route: route_label(route),
                hist: RefCell::new(hist),
                by_status: RefCell::new(Vec::new()),
            });
            routes.push(m.clone());
            m
        })
    }

    pub(crate) fn route(&self) -> &str {
        &self.route
    }

    /// Records one answered request that arrived at `since`.
    #[inline]
    pub(crate) fn record(&self, method: &Method, status: StatusCode, since: Instant) {
        let us = since.elapsed().as_micros().clamp(1, u128::from(HIST_MAX_US)) as u64;
        // Saturating record: values are clamped into the histogram's range above.
        let _ = self.hist.borrow_mut().record(us);
        let code = status.as_u16();
        let mut by = self.by_status.borrow_mut();
        match by.iter_mut().find(|(m, c, _)| *c == code && m == method) {
            Some(e) => e.2 += 1,
            None => by.push((method.clone(), code, 1)),
        }
    }
}

/// A copy of every core's metrics at one moment, merged. `Send`, so it can cross cores.
#[derive(Debug, Default)]
pub struct Snapshot {
    help: BTreeMap<&'static str, &'static str>,
    counters: BTreeMap<(&'static str, Labels), u64>,
    gauges: BTreeMap<(&'static str, Labels), i64>,
    routes: BTreeMap<String, RouteSnapshot>,
    runtime: Vec<ringcore_runtime::stats::ShardCounters>,
}

#[derive(Debug)]
struct RouteSnapshot {
    hist: Histogram<u64>,
    by_status: BTreeMap<(String, u16), u64>,
}

impl Snapshot {
    /// This core's registry alone.
    pub fn local() -> Snapshot {
        let mut s = Snapshot::default();
        REGISTRY.with(|r| {
            s.help = r.help.borrow().clone();
            for (k, c) in r.counters.borrow().iter() {
                *s.counters.entry((k.name, k.labels.clone())).or_default() += c.get();
            }
            for (k, g) in r.gauges.borrow().iter() {
                *s.gauges.entry((k.name, k.labels.clone())).or_default() += g.get();
            }
            for m in r.routes.borrow().iter() {
                let by_status = m
                    .by_status
                    .borrow()
                    .iter()
                    .map(|(meth, code, n)| ((meth.as_str().to_string(), *code), *n))
                    .collect();
                s.routes.insert(
                    m.route.clone(),
                    RouteSnapshot {
                        hist: m.hist.borrow().clone(),
                        by_status,
                    },
                );
            }
        });
        s
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: Snapshot) {
        self.help.extend(other.help);
        for (k, v) in other.counters {
            *self.counters.entry(k).or_default() += v;
        }
        for (k, v) in other.gauges {
            *self.gauges.entry(k).or_default() += v;
        }
        for (route, o) in other.routes {
            match self.routes.get_mut(&route) {
                Some(mine) => {
                    let _ = mine.hist.add(&o.hist);
                    for (k, n) in o.by_status {
                        *mine.by_status.entry(k).or_default() += n;
                    }
                }
                None => {
                    self.routes.insert(route, o);
                }
            }
        }
        self.runtime.extend(other.runtime);
    }

    /// The merged value of counter `name` with exactly these labels (0 if absent).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters
            .iter()
            .filter(|((n, l), _)| *n == name && labels_eq(l, labels))
            .map(|(_, v)| *v)
            .sum()
    }

    /// The merged value of gauge `name` with exactly these labels (0 if absent).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> i64 {
        self.gauges
            .iter()
            .filter(|((n, l), _)| *n == name && labels_eq(l, labels))
            .map(|(_, v)| *v)
            .sum()
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
        let help = |name: &str| self.help.get(name).copied().unwrap_or("");

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
        out.push_str("# TYPE ringcore_http_request_duration_seconds summary\n");
        for (route, r) in &self.routes {
            let route = escape(route);
            for q in [0.5, 0.9, 0.99, 0.999] {
                let v = if r.hist.is_empty() {
                    0
                } else {
                    r.hist.value_at_quantile(q)
                };
                let _ = writeln!(
                    out,
                    "ringcore_http_request_duration_seconds{{route=\"{route}\",quantile=\"{q}\"}} {}",
                    seconds(v)
                );
            }
            let sum_us: f64 = r.hist.mean() * r.hist.len() as f64;
            let _ = writeln!(
                out,
                "ringcore_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                sum_us / 1e6
            );
            let _ = writeln!(
                out,
                "ringcore_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                r.hist.len()
            );
        }

        let mut last = "";
        for ((name, labels), v) in &self.counters {
            if *name != last {
                let _ = writeln!(out, "# HELP {name} {}", help(name));
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", render_labels(labels));
        }
        for ((name, labels), v) in &self.gauges {
            if *name != last {
                let _ = writeln!(out, "# HELP {name} {}", help(name));
                let _ = writeln!(out, "# TYPE {name} gauge");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", render_labels(labels));
        }

        if let Some(first) = self.runtime.first() {
            for (i, (field, _)) in first.fields().into_iter().enumerate() {
                let gauge = RUNTIME_GAUGES.contains(&field);
                let name = if gauge {
                    format!("ringcore_runtime_{field}")
                } else {
                    format!("ringcore_runtime_{field}_total")
                };
                let _ = writeln!(out, "# HELP {name} Runtime counter `{field}` per core.");
                let _ = writeln!(out, "# TYPE {name} {}", if gauge { "gauge" } else { "counter" });
                for c in &self.runtime {
                    let v = c.fields()[i].1;
                    let _ = writeln!(out, "{name}{{core=\"{}\"}} {v}", c.shard_id);
                }
            }
        }
        out
    }
}

const RUNTIME_GAUGES: &[&str] = &[
    "tasks_alive",
    "ops_in_flight",
    "timers_pending",
    "ready_latency",
    "ready_background",
];

fn labels_eq(have: &Labels, want: &[(&str, &str)]) -> bool {
    have.len() == want.len() && have.iter().zip(want).all(|((k, v), (wk, wv))| k == wk && v == wv)
}

fn render_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape(v));
    }
    s.push('}');
    s
}

fn seconds(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Every core's metrics, merged. Call it on a shard (it asks each core over the mesh).
pub async fn gather() -> Snapshot {
    let mut all = Snapshot::local();
    all.runtime = ringcore_runtime::stats::all();
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

    #[test]
    fn counters_with_the_same_key_are_one_counter() {
        let a = Counter::new("t_same_total", "help", &[("k", "v")]);
        let b = Counter::new("t_same_total", "help", &[("k", "v")]);
        let other = Counter::new("t_same_total", "help", &[("k", "w")]);
        a.inc();
        b.add(2);
        other.inc();
        let s = Snapshot::local();
        assert_eq!(s.counter("t_same_total", &[("k", "v")]), 3);
        assert_eq!(s.counter("t_same_total", &[("k", "w")]), 1);
    }

    #[test]
    fn merge_sums_counters_and_histograms() {
        let m = RouteMetrics::for_route("/t/merge");
        m.record(&Method::GET, StatusCode::OK, Instant::now());
        m.record(&Method::GET, StatusCode::NOT_FOUND, Instant::now());
        let mut a = Snapshot::local();
        let b = Snapshot::local();
        a.merge(b);
        assert_eq!(a.route_requests("/t/merge"), 4);
        let text = a.render();
        assert!(
            text.contains("ringcore_http_requests_total{route=\"/t/merge\",method=\"GET\",code=\"200\"} 2")
        );
        assert!(text.contains("ringcore_http_request_duration_seconds_count{route=\"/t/merge\"} 4"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
