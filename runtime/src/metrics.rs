//! Application metrics: per-core counters and gauges, merged across cores on demand and
//! rendered in the Prometheus text exposition format.
//!
//! Every core records into its own registry (a [`core_local!`](crate::core_local): plain
//! `Cell`s, no lock or atomic when counting). [`gather`] asks every core for a copy of its
//! registry over the mesh, merges the copies (sums per name and label set) and adds the
//! runtime's own per-core counters ([`stats`](crate::stats)); [`Snapshot::render`] writes the
//! text format. A service on the runtime alone serves that text however it likes;
//! `ringcore-http` adds its per-route latency and serves it at `/metrics`.
//!
//! ```no_run
//! use ringcore_runtime::metrics::{self, Counter};
//! use ringcore_runtime::Runtime;
//!
//! Runtime::builder().build()?.run(|| async {
//!     // Cheap to create again: the same name and labels give this core's same counter.
//!     let jobs = Counter::new("jobs_done_total", "Jobs finished.", &[("kind", "resize")]);
//!     jobs.inc();
//!     if ringcore_runtime::shard_id() == 0 {
//!         print!("{}", metrics::gather().await.render());
//!     }
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Off a shard (a unit test of a state machine that counts), [`Counter::new`] and
//! [`Gauge::new`] give a *detached* metric: it counts, and no registry (so no scrape) sees it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use crate::stats::ShardCounters;

/// A metric's labels: `(name, value)` pairs in the order they were given.
type Labels = Vec<(&'static str, String)>;

#[derive(Clone, PartialEq, Eq)]
struct Key {
    name: &'static str,
    labels: Labels,
}

impl Key {
    fn new(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        Key {
            name,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        }
    }
}

#[derive(Default)]
struct Registry {
    help: RefCell<BTreeMap<&'static str, &'static str>>,
    counters: RefCell<Vec<(Key, Rc<Cell<u64>>)>>,
    gauges: RefCell<Vec<(Key, Rc<Cell<i64>>)>>,
}

crate::core_local! {
    static REGISTRY: Registry = Registry::default();
}

/// This core's cell for `name{labels}` in `list`, created at zero if new; a detached cell
/// off a shard.
fn cell<V: Default + Copy + 'static>(
    name: &'static str,
    help: &'static str,
    labels: &[(&'static str, &str)],
    list: impl FnOnce(&Registry) -> &RefCell<Vec<(Key, Rc<Cell<V>>)>>,
) -> Rc<Cell<V>> {
    let key = Key::new(name, labels);
    REGISTRY
        .try_with(|r| {
            r.help.borrow_mut().insert(name, help);
            let mut cells = list(r).borrow_mut();
            if let Some((_, c)) = cells.iter().find(|(k, _)| *k == key) {
                return c.clone();
            }
            let c = Rc::new(Cell::new(V::default()));
            cells.push((key, c.clone()));
            c
        })
        .unwrap_or_else(|| Rc::new(Cell::new(V::default())))
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
        Counter(cell(name, help, labels, |r| &r.counters))
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
        Gauge(cell(name, help, labels, |r| &r.gauges))
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

/// A copy of counters and gauges (one core's, or several merged) and, after [`gather`],
/// the runtime's per-core counters. `Send`, so it can cross cores.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    help: BTreeMap<&'static str, &'static str>,
    counters: BTreeMap<(&'static str, Labels), u64>,
    gauges: BTreeMap<(&'static str, Labels), i64>,
    runtime: Vec<ShardCounters>,
}

impl Snapshot {
    /// This core's registry alone (empty off a shard).
    pub fn local() -> Snapshot {
        let mut s = Snapshot::default();
        REGISTRY.try_with(|r| {
            s.help = r.help.borrow().clone();
            for (k, c) in r.counters.borrow().iter() {
                *s.counters.entry((k.name, k.labels.clone())).or_default() += c.get();
            }
            for (k, g) in r.gauges.borrow().iter() {
                *s.gauges.entry((k.name, k.labels.clone())).or_default() += g.get();
            }
        });
        s
    }

    /// Adds `other` into `self`: counters and gauges summed per name and labels, runtime
    /// counters appended.
    pub fn merge(&mut self, other: Snapshot) {
        self.help.extend(other.help);
        for (k, v) in other.counters {
            *self.counters.entry(k).or_default() += v;
        }
        for (k, v) in other.gauges {
            *self.gauges.entry(k).or_default() += v;
        }
        self.runtime.extend(other.runtime);
    }

    /// Replaces the runtime counters with every core's, read now.
    ///
    /// # Panics
    ///
    /// Outside a ringcore shard.
    pub fn read_runtime_counters(&mut self) {
        self.runtime = crate::stats::all();
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

    /// The runtime's per-core counters this snapshot holds (empty unless read by [`gather`]
    /// or [`read_runtime_counters`](Self::read_runtime_counters)).
    pub fn runtime_counters(&self) -> &[ShardCounters] {
        &self.runtime
    }

    /// Renders the Prometheus text exposition format (version 0.0.4): counters, gauges,
    /// then the runtime counters as `ringcore_runtime_<name>[_total]{core}`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.render_into(&mut out);
        out
    }

    /// [`render`](Self::render), appended to `out`.
    pub fn render_into(&self, out: &mut String) {
        let help = |name: &str| self.help.get(name).copied().unwrap_or("");
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
    }
}

/// Runtime counters that are levels, not totals.
const RUNTIME_GAUGES: &[&str] = &[
    "tasks_alive",
    "ops_in_flight",
    "timers_pending",
    "ready_latency",
    "ready_background",
    "shutdown_waiters",
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
        let _ = write!(s, "{k}=\"{}\"", escape_label_value(v));
    }
    s.push('}');
    s
}

/// A label value escaped for the text format: backslash, double quote and newline.
pub fn escape_label_value(v: &str) -> String {
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

/// Every core's counters and gauges, merged, with the runtime's per-core counters.
///
/// A core that does not answer (it has exited) is left out.
///
/// # Panics
///
/// Outside a ringcore shard (it asks each core over the mesh).
pub async fn gather() -> Snapshot {
    let mut all = Snapshot::local();
    all.read_runtime_counters();
    let me = crate::shard_id();
    for core in 0..crate::n_shards() {
        if core == me {
            continue;
        }
        if let Ok(s) = crate::submit_to(core, Snapshot::local).await {
            all.merge(s);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn off_a_shard_a_counter_counts_but_is_in_no_registry() {
        let c = Counter::new("t_detached_total", "help", &[]);
        c.add(3);
        assert_eq!(c.get(), 3);
        assert_eq!(Snapshot::local().counter("t_detached_total", &[]), 0);
    }
}
