//! What `/healthz` and `/metrics` say about the service's own parts: each part that is
//! failing (a core's journal, a core's Redis connection), why, and since when.
//!
//! Every core keeps the state of the parts it owns (no locks: parts change state on their own
//! core, rarely). [`gather`] asks every core over the mesh, as `/metrics` does. A failing part
//! is also exported as the gauge `flash_sale_part_failing{part="..."} 1` (0 once healthy
//! again), so an alert can fire on it without polling `/healthz`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use ringcore_http::metrics::Gauge;
use ringcore_http::runtime::{n_shards, shard_id, submit_to};
use serde::Serialize;

/// One failing part, as `/healthz` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failing {
    /// Which part: `journal-<core>`, `redis-<core>`.
    pub part: String,
    /// What is wrong, in words (the error of the last attempt).
    pub error: String,
    /// When it started failing (Unix time, milliseconds).
    pub since_unix_ms: u64,
}

struct Part {
    /// `Some` while failing.
    failing: Option<(String, u64)>,
    gauge: Gauge,
}

ringcore_http::runtime::core_local! {
    /// The parts this core owns, by name.
    static PARTS: RefCell<BTreeMap<String, Part>> = RefCell::new(BTreeMap::new());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn with_part<R>(part: &str, f: impl FnOnce(&mut Part) -> R) -> R {
    PARTS.with(|p| {
        let mut parts = p.borrow_mut();
        if !parts.contains_key(part) {
            let gauge = Gauge::new(
                "flash_sale_part_failing",
                "1 while a part of the service (a core's journal, a core's Redis connection) is failing.",
                &[("part", part)],
            );
            parts.insert(part.to_string(), Part { failing: None, gauge });
        }
        let entry = parts.get_mut(part).expect("inserted above");
        f(entry)
    })
}

/// Marks `part` (owned by this core) as failing with `error`; the first call of a failure
/// sets its start time, later calls only update the error.
pub fn set_failing(part: &str, error: impl Into<String>) {
    let error = error.into();
    with_part(part, |p| {
        let since = p.failing.as_ref().map_or_else(now_ms, |(_, s)| *s);
        p.failing = Some((error, since));
        p.gauge.set(1);
    });
}

/// Marks `part` (owned by this core) as healthy. Returns whether it was failing.
pub fn set_healthy(part: &str) -> bool {
    with_part(part, |p| {
        p.gauge.set(0);
        p.failing.take().is_some()
    })
}

/// The failing parts of this core.
pub fn local() -> Vec<Failing> {
    PARTS.with(|p| {
        p.borrow()
            .iter()
            .filter_map(|(part, st)| {
                st.failing.as_ref().map(|(error, since)| Failing {
                    part: part.clone(),
                    error: error.clone(),
                    since_unix_ms: *since,
                })
            })
            .collect()
    })
}

/// The failing parts of every core (asks each over the mesh); a core that cannot answer is
/// itself reported as failing.
pub async fn gather() -> Vec<Failing> {
    let me = shard_id();
    let mut all = local();
    for core in 0..n_shards() {
        if core == me {
            continue;
        }
        match submit_to(core, local).await {
            Ok(parts) => all.extend(parts),
            Err(e) => all.push(Failing {
                part: format!("core-{core}"),
                error: format!("does not answer: {e}"),
                since_unix_ms: now_ms(),
            }),
        }
    }
    all.sort_by(|a, b| a.part.cmp(&b.part));
    all
}
