//! A per-core cache: least-recently-used eviction, optional time to live, bounded by entry
//! count and by bytes, with hit/miss counters and coalesced loads.
//!
//! A [`Cache`] lives on one core. It is `!Send` and holds no lock and no atomic: make one per
//! core (in the per-core router factory, or a `core_local!`) and share it between that
//! core's tasks with an `Rc`. Two cores that cache the same key each hold their own copy.
//!
//! - **Storage.** Entries live in a [`slab::Slab`], threaded on an intrusive doubly linked
//!   list (most recently used at the front) by slab index, and found through a
//!   `HashMap<K, usize>`. `get`, `insert`, `remove` and each eviction are O(1).
//! - **Bounds.** `insert` evicts from the least recently used end until the new entry fits
//!   under both [`max_entries`](CacheBuilder::max_entries) and
//!   [`max_bytes`](CacheBuilder::max_bytes). An entry's size is what the
//!   [weigher](CacheBuilder::weigher) says (by default `size_of::<K>() + size_of::<V>()`,
//!   which ignores heap data: give a weigher when values own buffers). An entry heavier than
//!   `max_bytes` is not stored.
//! - **Time to live.** An entry inserted with a TTL expires at `insert time + ttl`; a `get`
//!   at or after that instant is a miss and removes it. Expired entries are not swept in the
//!   background: they leave when looked up, evicted, or by
//!   [`purge_expired`](Cache::purge_expired). The `*_at` methods take the current instant
//!   from the caller (tests, or a per-turn clock); the others read `Instant::now()`, and
//!   only when the entry has a deadline: a cache without TTLs never reads the clock.
//! - **Loads.** [`get_or_load`](Cache::get_or_load) returns a hit at once; on a miss it runs
//!   the loader, unless a load of that key is already in flight on this core, in which case
//!   it waits for that load's result instead (one load, many waiters).
//! - **Counters.** [`stats`](Cache::stats) is a copy of plain `Cell` counters;
//!   [`stats_handle`](Cache::stats_handle) gives an exporter its own reference to them.
//!
//! ```rust
//! use std::time::Duration;
//! use ringcore_runtime::cache::Cache;
//!
//! let cache: Cache<String, Vec<u8>> = Cache::builder()
//!     .max_entries(10_000)
//!     .max_bytes(64 << 20)
//!     .ttl(Duration::from_secs(30))
//!     .weigher(|k: &String, v: &Vec<u8>| k.len() + v.len())
//!     .build();
//! cache.insert("a".to_string(), b"alpha".to_vec());
//! assert_eq!(cache.get("a").as_deref(), Some(&b"alpha"[..]));
//! assert_eq!(cache.get("b"), None);
//! assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
//! ```
//!
//! Re-entrancy: values and keys the cache lets go of (evicted, expired, replaced, cleared)
//! are dropped after its internal borrow is released, and the weigher and loaders run
//! outside it, so they may use the cache. `Hash`, `Eq` and `Clone` of `K`, and `Clone` of
//! `V`, run inside it and must not call back into the same cache (that would panic).

// Files: `store.rs` (the `Cache`, its builder, the synchronous API), `lru.rs` (the slab and
// intrusive list, pure data), `load.rs` (`get_or_load`: flights of loads and their waiters),
// `stats.rs` (counters).

mod load;
mod lru;
mod stats;
mod store;

pub use stats::{CacheStats, StatsHandle};
pub use store::{Cache, CacheBuilder, DEFAULT_MAX_ENTRIES};
