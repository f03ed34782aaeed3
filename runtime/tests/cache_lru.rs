//! The cache's synchronous side: LRU order, entry and byte bounds, TTL on a controlled clock,
//! counters, drops outside the borrow, and a randomized comparison with a reference model.

use std::cell::{Cell, RefCell};
use std::mem::size_of;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringcore_runtime::cache::{Cache, CacheStats};

/// (hits, misses, inserts, evictions, expirations)
fn counts(s: CacheStats) -> (u64, u64, u64, u64, u64) {
    (s.hits, s.misses, s.inserts, s.evictions, s.expirations)
}

fn by_len() -> Cache<&'static str, String> {
    Cache::builder()
        .max_bytes(10)
        .weigher(|_: &&str, v: &String| v.len())
        .build()
}

#[test]
fn evicts_the_least_recently_used_entry_at_the_entry_bound() {
    let cache: Cache<u32, u32> = Cache::builder().max_entries(3).build();
    for k in 1..=3 {
        assert!(cache.insert(k, k * 10));
    }
    // 1 is used again, so 2 is now the least recently used.
    assert_eq!(cache.get(&1), Some(10));
    cache.insert(4, 40);
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get(&2), None);
    assert_eq!(
        (cache.get(&1), cache.get(&3), cache.get(&4)),
        (Some(10), Some(30), Some(40))
    );
    // Order now (most recent first): 4, 3, 1. Two more inserts push out 1 then 3.
    cache.insert(5, 50);
    cache.insert(6, 60);
    assert_eq!((cache.get(&1), cache.get(&3)), (None, None));
    assert_eq!(
        (cache.get(&4), cache.get(&5), cache.get(&6)),
        (Some(40), Some(50), Some(60))
    );
    assert_eq!(cache.stats().evictions, 3);
    assert_eq!(cache.stats().inserts, 6);
}

#[test]
fn evicts_by_bytes_until_the_new_entry_fits() {
    let cache = by_len();
    cache.insert("a", "aaaa".into());
    cache.insert("b", "bbbb".into());
    assert_eq!(cache.bytes(), 8);
    assert!(cache.get("a").is_some());
    // 8 + 4 > 10: the least recently used (b) goes, a stays.
    cache.insert("c", "cccc".into());
    assert_eq!((cache.len(), cache.bytes()), (2, 8));
    assert_eq!(cache.get("b"), None);
    assert!(cache.get("a").is_some() && cache.get("c").is_some());
    // Exactly max_bytes: everything else goes.
    assert!(cache.insert("d", "dddddddddd".into()));
    assert_eq!((cache.len(), cache.bytes()), (1, 10));
    assert_eq!(cache.stats().evictions, 3);
}

#[test]
fn an_entry_heavier_than_max_bytes_is_not_stored_and_drops_the_old_value() {
    let cache = by_len();
    assert!(cache.insert("k", "old".into()));
    assert!(cache.insert("other", "x".into()));
    assert!(!cache.insert("k", "eleven byte".into()));
    // A stale "old" must not survive a failed replacement; unrelated entries stay.
    assert_eq!(cache.get("k"), None);
    assert_eq!(cache.get("other").as_deref(), Some("x"));
    assert_eq!((cache.len(), cache.bytes()), (1, 1));
    assert_eq!(cache.stats().inserts, 2);
    assert_eq!(cache.stats().evictions, 0);
}

#[test]
fn replacing_a_value_updates_bytes_and_recency() {
    let cache: Cache<&str, String> = Cache::builder()
        .max_entries(2)
        .weigher(|_: &&str, v: &String| v.len())
        .build();
    cache.insert("a", "1".into());
    cache.insert("b", "22".into());
    cache.insert("a", "333".into());
    assert_eq!((cache.len(), cache.bytes()), (2, 5));
    assert_eq!(cache.get("a").as_deref(), Some("333"));
    // The replacement made "a" the most recent; "b" goes first.
    cache.get("b");
    cache.insert("a", "4444".into());
    cache.insert("c", "c".into());
    assert_eq!(cache.get("b"), None);
    assert_eq!(cache.get("a").as_deref(), Some("4444"));
}

#[test]
fn the_default_weigher_counts_key_and_value_sizes() {
    let cache: Cache<u64, [u8; 24]> = Cache::builder().build();
    cache.insert(1, [0; 24]);
    cache.insert(2, [0; 24]);
    assert_eq!(cache.bytes(), 2 * (size_of::<u64>() + 24));
    cache.remove(&1);
    assert_eq!(cache.bytes(), size_of::<u64>() + 24);
}

#[test]
fn entries_expire_at_their_ttl() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let cache: Cache<u32, &str> = Cache::builder().ttl(Duration::from_secs(10)).build();
    cache.insert_at(1, "one", t0);
    assert_eq!(cache.get_at(&1, ms(9_999)), Some("one"));
    // A hit does not extend the TTL: it runs from the insert.
    assert_eq!(cache.get_at(&1, ms(10_000)), None);
    assert_eq!(cache.len(), 0);
    assert_eq!(counts(cache.stats()), (1, 1, 1, 0, 1));
    // A second lookup is a plain miss: the entry is gone.
    assert_eq!(cache.get_at(&1, ms(10_001)), None);
    assert_eq!(cache.stats().expirations, 1);
    // Re-inserting restarts the clock.
    cache.insert_at(1, "again", ms(20_000));
    assert_eq!(cache.get_at(&1, ms(29_000)), Some("again"));
}

#[test]
fn a_per_entry_ttl_overrides_the_cache_ttl() {
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let cache: Cache<u32, u32> = Cache::builder().ttl(Duration::from_secs(10)).build();
    cache.insert_at(1, 1, t0);
    cache.insert_with_ttl_at(2, 2, Duration::from_secs(1), t0);
    cache.insert_with_ttl_at(3, 3, Duration::from_secs(60), t0);
    assert_eq!(cache.get_at(&2, s(1)), None);
    assert_eq!(cache.get_at(&1, s(5)), Some(1));
    assert_eq!(cache.get_at(&1, s(10)), None);
    assert_eq!(cache.get_at(&3, s(59)), Some(3));
    assert_eq!(cache.stats().expirations, 2);

    let forever: Cache<u32, u32> = Cache::builder().build();
    forever.insert_at(1, 1, t0);
    assert_eq!(forever.get_at(&1, s(100 * 365 * 86_400)), Some(1));
    // A TTL too far out for `Instant` means "never", not a panic.
    forever.insert_with_ttl_at(2, 2, Duration::MAX, t0);
    assert_eq!(forever.get_at(&2, s(100 * 365 * 86_400)), Some(2));
}

#[test]
fn purge_expired_removes_only_expired_entries() {
    let t0 = Instant::now();
    let cache: Cache<u32, u32> = Cache::builder().ttl(Duration::from_secs(5)).build();
    for k in 0..10 {
        cache.insert_at(k, k, t0 + Duration::from_secs(u64::from(k)));
    }
    // Deadlines are 5..=14 s; at 10 s the first six (5..=10) are due.
    assert_eq!(cache.purge_expired_at(t0 + Duration::from_secs(10)), 6);
    assert_eq!(cache.len(), 4);
    assert_eq!(cache.stats().expirations, 6);
    assert_eq!(cache.get_at(&6, t0 + Duration::from_secs(10)), Some(6));
}

#[test]
fn remove_clear_and_zero_entries() {
    let cache: Cache<u32, u32> = Cache::builder().max_entries(4).build();
    cache.insert(1, 1);
    cache.insert(2, 2);
    assert_eq!(cache.remove(&1), Some(1));
    assert_eq!(cache.remove(&1), None);
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!((cache.bytes(), cache.get(&2)), (0, None));
    cache.insert(3, 3);
    assert_eq!(cache.get(&3), Some(3), "usable after clear");

    let none: Cache<u32, u32> = Cache::builder().max_entries(0).build();
    assert!(!none.insert(1, 1));
    assert_eq!((none.len(), none.get(&1)), (0, None));
}

#[test]
fn a_stats_handle_follows_the_cache_and_outlives_it() {
    let cache: Cache<u32, u32> = Cache::builder().build();
    let handle = cache.stats_handle();
    cache.insert(1, 1);
    cache.get(&1);
    cache.get(&2);
    assert_eq!(counts(handle.get()), (1, 1, 1, 0, 0));
    assert_eq!(handle.get(), cache.stats());
    drop(cache);
    assert_eq!(handle.get().hits, 1);
}

thread_local! {
    static CACHE: RefCell<Option<Rc<Cache<u32, Noisy>>>> = const { RefCell::new(None) };
}

/// A value whose drop uses the cache that is letting go of it.
#[derive(Clone)]
struct Noisy(Rc<Cell<u32>>);

impl Drop for Noisy {
    fn drop(&mut self) {
        CACHE.with(|c| {
            if let Some(cache) = c.borrow().as_ref() {
                // Panics if the cache still holds its borrow.
                let _ = cache.len();
                cache.get(&999);
            }
        });
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn values_are_dropped_outside_the_borrow() {
    let drops = Rc::new(Cell::new(0));
    let t0 = Instant::now();
    let cache = Rc::new(
        Cache::builder()
            .max_entries(2)
            .ttl(Duration::from_secs(1))
            .build(),
    );
    CACHE.with(|c| *c.borrow_mut() = Some(cache.clone()));
    let v = || Noisy(drops.clone());
    cache.insert_at(1, v(), t0);
    cache.insert_at(2, v(), t0);
    cache.insert_at(3, v(), t0); // evicts 1
    cache.insert_at(2, v(), t0); // replaces 2
    drop(cache.get_at(&3, t0 + Duration::from_secs(2))); // expires 3
    cache.insert_at(4, v(), t0);
    cache.clear();
    CACHE.with(|c| *c.borrow_mut() = None);
    assert_eq!(drops.get(), 5);
}

/// A Vec-based LRU with the same rules as `Cache`, most recently used first.
struct Model {
    entries: Vec<(u32, u32, usize, Option<Instant>)>,
    max_entries: usize,
    max_bytes: usize,
    stats: (u64, u64, u64, u64, u64),
}

impl Model {
    fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.2).sum()
    }

    fn take(&mut self, k: u32) -> Option<(u32, u32, usize, Option<Instant>)> {
        let i = self.entries.iter().position(|e| e.0 == k)?;
        Some(self.entries.remove(i))
    }

    fn get(&mut self, k: u32, now: Instant) -> Option<u32> {
        match self.take(k) {
            None => {
                self.stats.1 += 1;
                None
            }
            Some(e) if e.3.is_some_and(|t| now >= t) => {
                self.stats.1 += 1;
                self.stats.4 += 1;
                None
            }
            Some(e) => {
                self.stats.0 += 1;
                self.entries.insert(0, e);
                Some(e.1)
            }
        }
    }

    fn insert(&mut self, k: u32, v: u32, w: usize, expires: Option<Instant>) -> bool {
        self.take(k);
        if w > self.max_bytes || self.max_entries == 0 {
            return false;
        }
        while self.entries.len() >= self.max_entries || self.bytes() + w > self.max_bytes {
            self.entries.pop();
            self.stats.3 += 1;
        }
        self.entries.insert(0, (k, v, w, expires));
        self.stats.2 += 1;
        true
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn compare_with_model(seed: u64, max_entries: usize, max_bytes: usize) {
    let weight = |v: u32| (v % 13) as usize;
    let ttl = Duration::from_millis(40);
    let cache: Cache<u32, u32> = Cache::builder()
        .max_entries(max_entries)
        .max_bytes(max_bytes)
        .ttl(ttl)
        .weigher(move |_: &u32, v: &u32| weight(*v))
        .build();
    let mut model = Model {
        entries: Vec::new(),
        max_entries,
        max_bytes,
        stats: (0, 0, 0, 0, 0),
    };
    let mut x = seed;
    let mut now = Instant::now();
    for step in 0..5_000 {
        let r = xorshift(&mut x);
        let k = (r % 20) as u32;
        let v = (r >> 8) as u32 % 1000;
        now += Duration::from_millis((r >> 20) % 3);
        let ctx = || format!("seed {seed:#x}, limits ({max_entries}, {max_bytes}), step {step}");
        match (r >> 32) % 8 {
            0..=2 => assert_eq!(cache.get_at(&k, now), model.get(k, now), "get: {}", ctx()),
            3..=4 => {
                let stored = cache.insert_at(k, v, now);
                assert_eq!(
                    stored,
                    model.insert(k, v, weight(v), now.checked_add(ttl)),
                    "{}",
                    ctx()
                );
            }
            5 => {
                let own = Duration::from_millis(1 + (r >> 40) % 80);
                let stored = cache.insert_with_ttl_at(k, v, own, now);
                assert_eq!(
                    stored,
                    model.insert(k, v, weight(v), now.checked_add(own)),
                    "{}",
                    ctx()
                );
            }
            6 => assert_eq!(cache.remove(&k), model.take(k).map(|e| e.1), "remove: {}", ctx()),
            _ => {
                let due = |e: &(u32, u32, usize, Option<Instant>)| e.3.is_some_and(|t| now >= t);
                let n = model.entries.iter().filter(|e| due(e)).count();
                model.entries.retain(|e| !due(e));
                model.stats.4 += n as u64;
                assert_eq!(cache.purge_expired_at(now), n, "purge: {}", ctx());
            }
        }
        assert_eq!(cache.len(), model.entries.len(), "len: {}", ctx());
        assert_eq!(cache.bytes(), model.bytes(), "bytes: {}", ctx());
        assert_eq!(counts(cache.stats()), model.stats, "stats: {}", ctx());
        assert!(
            cache.len() <= max_entries && cache.bytes() <= max_bytes,
            "bounds: {}",
            ctx()
        );
    }
}

#[test]
fn randomized_operations_match_a_reference_lru() {
    let limits = [
        (8, 40),
        (1, 12),
        (3, usize::MAX),
        (16, 30),
        (5, 0),
        (0, 100),
        (64, 64),
    ];
    for (i, &(max_entries, max_bytes)) in limits.iter().enumerate() {
        for seed in [0x2545_f491_4f6c_dd1d_u64, 0x9e37_79b9_7f4a_7c15] {
            compare_with_model(seed ^ i as u64, max_entries, max_bytes);
        }
    }
}
