//! `Cache`, its builder, and the synchronous API: lookups, inserts with eviction, TTL.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::mem;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::load::Flight;
use super::lru::Lru;
use super::stats::{add, CacheStats, Counters, StatsHandle};

/// The entry bound a [`CacheBuilder`] starts with.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

type Weigher<K, V> = Box<dyn Fn(&K, &V) -> usize>;

/// Configures a [`Cache`]; from [`Cache::builder`].
pub struct CacheBuilder<K, V> {
    max_entries: usize,
    max_bytes: usize,
    ttl: Option<Duration>,
    weigher: Option<Weigher<K, V>>,
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("ttl", &self.ttl)
            .field("custom_weigher", &self.weigher.is_some())
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> CacheBuilder<K, V> {
    /// At most this many entries (default [`DEFAULT_MAX_ENTRIES`]). Zero stores nothing.
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// At most this many bytes, as the weigher counts them (default: unbounded).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Entries expire this long after they are inserted (default: never).
    /// [`Cache::insert_with_ttl`] overrides it per entry.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How many bytes an entry counts for against `max_bytes`. Called once per insert, with
    /// no borrow of the cache held. Default: `size_of::<K>() + size_of::<V>()`.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> usize + 'static) -> Self {
        self.weigher = Some(Box::new(weigher));
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Cache<K, V> {
        Cache {
            lru: RefCell::new(Lru::new()),
            loads: RefCell::new(HashMap::new()),
            stats: Rc::new(Counters::default()),
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            ttl: self.ttl,
            weigher: self
                .weigher
                .unwrap_or_else(|| Box::new(|_, _| mem::size_of::<K>() + mem::size_of::<V>())),
        }
    }
}

/// A per-core LRU cache with TTL, entry and byte bounds, counters, and coalesced loads. See
/// the [module docs](crate::cache).
pub struct Cache<K, V> {
    pub(super) lru: RefCell<Lru<K, V>>,
    /// Loads in flight, by key.
    pub(super) loads: RefCell<HashMap<K, Rc<Flight<V>>>>,
    pub(super) stats: Rc<Counters>,
    max_entries: usize,
    max_bytes: usize,
    ttl: Option<Duration>,
    weigher: Weigher<K, V>,
}

impl<K, V> fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cache");
        if let Ok(lru) = self.lru.try_borrow() {
            d.field("len", &lru.slab.len()).field("bytes", &lru.bytes);
        }
        d.field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("ttl", &self.ttl)
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A builder with [`DEFAULT_MAX_ENTRIES`], no byte bound, no TTL, the default weigher.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: usize::MAX,
            ttl: None,
            weigher: None,
        }
    }

    /// The value for `key`, if present and not expired; a hit becomes the most recently used
    /// entry. An expired entry is removed and counts as a miss and an expiration.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup(key, Instant::now, true)
    }

    /// [`get`](Self::get) with `now` as the current instant.
    pub fn get_at<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup(key, || now, true)
    }

    /// `count`: whether this lookup moves the hit/miss counters. `now` is called only for an
    /// entry with a deadline, so a cache without TTLs never reads the clock.
    pub(super) fn lookup<Q>(&self, key: &Q, now: impl FnOnce() -> Instant, count: bool) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut lru = self.lru.borrow_mut();
        let found = lru.index.get(key).copied();
        let (value, expired) = match found {
            None => (None, false),
            Some(i) if lru.slab[i].expires.is_some_and(|t| now() >= t) => {
                let v = lru.remove_slot(i);
                lru.dead_values.push(v);
                (None, true)
            }
            Some(i) => {
                lru.touch(i);
                (Some(lru.slab[i].value.clone()), false)
            }
        };
        drop(lru);
        if count {
            let counter = if value.is_some() {
                &self.stats.hits
            } else {
                &self.stats.misses
            };
            add(counter, 1);
        }
        if expired {
            add(&self.stats.expirations, 1);
            self.drop_dead();
        }
        value
    }

    /// Stores `value` under `key` with the cache's TTL, as the most recently used entry,
    /// replacing any value for that key and evicting least recently used entries until both
    /// bounds hold. Returns false, and stores nothing (removing any old value for the key),
    /// when the entry alone is heavier than `max_bytes` or `max_entries` is zero.
    pub fn insert(&self, key: K, value: V) -> bool {
        self.insert_inner(key, value, self.ttl, Instant::now)
    }

    /// [`insert`](Self::insert) with `now` as the current instant.
    pub fn insert_at(&self, key: K, value: V, now: Instant) -> bool {
        self.insert_inner(key, value, self.ttl, || now)
    }

    /// [`insert`](Self::insert) with this entry's own TTL instead of the cache's.
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) -> bool {
        self.insert_inner(key, value, Some(ttl), Instant::now)
    }

    /// [`insert_with_ttl`](Self::insert_with_ttl) with `now` as the current instant.
    pub fn insert_with_ttl_at(&self, key: K, value: V, ttl: Duration, now: Instant) -> bool {
        self.insert_inner(key, value, Some(ttl), || now)
    }

    /// `now` is called only when the entry gets a TTL.
    fn insert_inner(&self, key: K, value: V, ttl: Option<Duration>, now: impl FnOnce() -> Instant) -> bool {
        let weight = (self.weigher)(&key, &value);
        // A deadline past what `Instant` can hold is no deadline.
        let expires = ttl.and_then(|ttl| now().checked_add(ttl));
        let stored = weight <= self.max_bytes && self.max_entries > 0;
        let mut lru = self.lru.borrow_mut();
        if stored {
            let evicted = lru.insert(key, value, weight, expires, self.max_entries, self.max_bytes);
            drop(lru);
            add(&self.stats.inserts, 1);
            add(&self.stats.evictions, evicted);
        } else {
            let old = lru.remove(&key);
            drop(lru);
            drop((old, key, value));
        }
        self.drop_dead();
        stored
    }

    /// Removes `key`'s entry (live or expired) and returns its value. Counts nothing. A load
    /// of `key` in flight is not stopped: its result is stored when it finishes.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let v = self.lru.borrow_mut().remove(key);
        self.drop_dead();
        v
    }

    /// Removes every entry whose deadline is at or before now, counting each as an
    /// expiration. O(entries). Returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        self.purge_expired_at(Instant::now())
    }

    /// [`purge_expired`](Self::purge_expired) with `now` as the current instant.
    pub fn purge_expired_at(&self, now: Instant) -> usize {
        let mut lru = self.lru.borrow_mut();
        let expired: Vec<usize> = lru
            .slab
            .iter()
            .filter(|(_, e)| e.expires.is_some_and(|t| now >= t))
            .map(|(i, _)| i)
            .collect();
        for &i in &expired {
            let v = lru.remove_slot(i);
            lru.dead_values.push(v);
        }
        drop(lru);
        add(&self.stats.expirations, expired.len() as u64);
        self.drop_dead();
        expired.len()
    }

    /// Removes every entry (loads in flight go on and store their results). Counts nothing.
    pub fn clear(&self) {
        let old = {
            let mut lru = self.lru.borrow_mut();
            mem::replace(&mut *lru, Lru::new())
        };
        drop(old);
    }

    /// Entries stored, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.lru.borrow().slab.len()
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weigher's total over the stored entries.
    pub fn bytes(&self) -> usize {
        self.lru.borrow().bytes
    }

    /// The entry bound.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The byte bound (`usize::MAX`: unbounded).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The counters now (eight `Cell` reads).
    pub fn stats(&self) -> CacheStats {
        self.stats.snapshot()
    }

    /// A handle on this cache's counters for a metrics exporter on this core.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Rc::clone(&self.stats))
    }

    /// Drops what the storage let go of, with no borrow held (a `Drop` may use the cache).
    fn drop_dead(&self) {
        let (mut keys, mut values) = {
            let mut lru = self.lru.borrow_mut();
            if lru.dead_keys.is_empty() && lru.dead_values.is_empty() {
                return;
            }
            (mem::take(&mut lru.dead_keys), mem::take(&mut lru.dead_values))
        };
        keys.clear();
        values.clear();
        // Keep the allocations for next time, unless a `Drop` above started new lists.
        let mut lru = self.lru.borrow_mut();
        if lru.dead_keys.capacity() == 0 {
            lru.dead_keys = keys;
        }
        if lru.dead_values.capacity() == 0 {
            lru.dead_values = values;
        }
    }
}
