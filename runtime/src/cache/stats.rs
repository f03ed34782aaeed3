//! The cache's counters: plain `Cell`s, one writer (the owning core), read by copy.

use std::cell::Cell;
use std::rc::Rc;

/// A copy of a cache's counters at one moment. All counts start at zero when the cache is
/// built and are never reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that found a live entry (`get`, and the first lookup of each `get_or_load`).
    pub hits: u64,
    /// Lookups that found nothing, or an expired entry.
    pub misses: u64,
    /// Entries stored (new or replacing). An entry heavier than `max_bytes` is not counted.
    pub inserts: u64,
    /// Entries dropped to make room under `max_entries` / `max_bytes`.
    pub evictions: u64,
    /// Entries found expired (by a lookup or `purge_expired`) and removed.
    pub expirations: u64,
    /// Loader calls started by `get_or_load`.
    pub loads: u64,
    /// `get_or_load` calls answered by another call's load (value or error).
    pub coalesced: u64,
    /// Loads that returned an error.
    pub load_errors: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: Cell<u64>,
    pub(super) misses: Cell<u64>,
    pub(super) inserts: Cell<u64>,
    pub(super) evictions: Cell<u64>,
    pub(super) expirations: Cell<u64>,
    pub(super) loads: Cell<u64>,
    pub(super) coalesced: Cell<u64>,
    pub(super) load_errors: Cell<u64>,
}

pub(super) fn add(counter: &Cell<u64>, n: u64) {
    counter.set(counter.get() + n);
}

impl Counters {
    pub(super) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            inserts: self.inserts.get(),
            evictions: self.evictions.get(),
            expirations: self.expirations.get(),
            loads: self.loads.get(),
            coalesced: self.coalesced.get(),
            load_errors: self.load_errors.get(),
        }
    }
}

/// A shared reference to a cache's counters, for a metrics exporter on the same core: keep
/// it and read it whenever. It is `!Send` like the cache, and stays readable after the cache
/// is dropped (the counters then stop moving).
#[derive(Debug, Clone)]
pub struct StatsHandle(pub(super) Rc<Counters>);

impl StatsHandle {
    /// The counters now.
    pub fn get(&self) -> CacheStats {
        self.0.snapshot()
    }
}
