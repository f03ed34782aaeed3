//! The storage: entries in a slab, an intrusive doubly linked list through slab indices
//! (most recently used at the front), and a `HashMap<K, usize>` index. Pure data, no
//! borrows, clock or counters: `store.rs` adds those.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

use slab::Slab;

/// "No entry" in the intrusive list.
pub(super) const NIL: usize = usize::MAX;

pub(super) struct Entry<K, V> {
    pub(super) key: K,
    pub(super) value: V,
    pub(super) weight: usize,
    pub(super) expires: Option<Instant>,
    /// Towards the most recently used end.
    pub(super) prev: usize,
    /// Towards the least recently used end.
    pub(super) next: usize,
}

/// The storage: slab, intrusive LRU list, index. Pure data; `Cache` adds borrows, clock and
/// counters. Keys and values it lets go of wait in `dead_*` until `Cache` drops them with
/// no borrow held.
pub(super) struct Lru<K, V> {
    pub(super) slab: Slab<Entry<K, V>>,
    pub(super) index: HashMap<K, usize>,
    /// Most recently used.
    pub(super) head: usize,
    /// Least recently used.
    pub(super) tail: usize,
    pub(super) bytes: usize,
    pub(super) dead_keys: Vec<K>,
    pub(super) dead_values: Vec<V>,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub(super) fn new() -> Self {
        Self {
            slab: Slab::new(),
            index: HashMap::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            dead_keys: Vec::new(),
            dead_values: Vec::new(),
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slab[i].prev, self.slab[i].next);
        match prev {
            NIL => self.head = next,
            p => self.slab[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slab[n].prev = prev,
        }
    }

    fn push_front(&mut self, i: usize) {
        let old = self.head;
        self.slab[i].prev = NIL;
        self.slab[i].next = old;
        match old {
            NIL => self.tail = i,
            h => self.slab[h].prev = i,
        }
        self.head = i;
    }

    pub(super) fn touch(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    /// Takes slot `i` out of list, slab and index; its keys go to `dead_keys`.
    pub(super) fn remove_slot(&mut self, i: usize) -> V {
        self.unlink(i);
        let entry = self.slab.remove(i);
        self.bytes -= entry.weight;
        // Absent only if `K`'s `Hash`/`Eq` are inconsistent; then there is nothing to undo.
        if let Some((k, _)) = self.index.remove_entry(&entry.key) {
            self.dead_keys.push(k);
        }
        self.dead_keys.push(entry.key);
        entry.value
    }

    pub(super) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = *self.index.get(key)?;
        Some(self.remove_slot(i))
    }

    /// Stores an entry that fits (`weight <= max_bytes`, `max_entries >= 1`), replacing any
    /// entry of the same key and evicting from the tail until it fits. Returns the number
    /// of evictions.
    pub(super) fn insert(
        &mut self,
        key: K,
        value: V,
        weight: usize,
        expires: Option<Instant>,
        max_entries: usize,
        max_bytes: usize,
    ) -> u64 {
        debug_assert!(weight <= max_bytes && max_entries >= 1);
        if let Some(old) = self.remove(&key) {
            self.dead_values.push(old);
        }
        // `bytes <= max_bytes` always holds, so neither side can overflow.
        let mut evicted = 0;
        while self.tail != NIL && (self.slab.len() >= max_entries || self.bytes > max_bytes - weight) {
            let v = self.remove_slot(self.tail);
            self.dead_values.push(v);
            evicted += 1;
        }
        let i = self.slab.insert(Entry {
            key: key.clone(),
            value,
            weight,
            expires,
            prev: NIL,
            next: NIL,
        });
        self.index.insert(key, i);
        self.push_front(i);
        self.bytes += weight;
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the list both ways and checks it against slab, index and byte total.
    fn check<K: Hash + Eq + Clone + std::fmt::Debug, V>(lru: &Lru<K, V>) {
        let mut forward = Vec::new();
        let (mut i, mut prev) = (lru.head, NIL);
        while i != NIL {
            assert_eq!(lru.slab[i].prev, prev, "prev link of slot {i}");
            forward.push(i);
            prev = i;
            i = lru.slab[i].next;
        }
        assert_eq!(lru.tail, prev);
        assert_eq!(forward.len(), lru.slab.len());
        assert_eq!(lru.index.len(), lru.slab.len());
        for &i in &forward {
            assert_eq!(lru.index.get(&lru.slab[i].key), Some(&i));
        }
        let bytes: usize = forward.iter().map(|&i| lru.slab[i].weight).sum();
        assert_eq!(bytes, lru.bytes);
    }

    #[test]
    fn list_stays_consistent_under_random_operations() {
        let mut lru: Lru<u32, u32> = Lru::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 24) as u32;
            match (x >> 8) % 3 {
                0 => {
                    lru.insert(key, key, (x >> 16) as usize % 7, None, 10, 30);
                }
                1 => {
                    lru.remove(&key);
                }
                _ => {
                    if let Some(&i) = lru.index.get(&key) {
                        lru.touch(i);
                        assert_eq!(lru.head, i);
                    }
                }
            }
            check(&lru);
            assert!(lru.slab.len() <= 10 && lru.bytes <= 30);
            lru.dead_keys.clear();
            lru.dead_values.clear();
        }
    }

    #[test]
    fn lets_go_of_both_key_copies_and_the_value() {
        let mut lru: Lru<String, String> = Lru::new();
        lru.insert("a".into(), "1".into(), 1, None, 1, 10);
        lru.insert("b".into(), "2".into(), 1, None, 1, 10);
        assert_eq!(lru.dead_keys, ["a", "a"]);
        assert_eq!(lru.dead_values, ["1"]);
        check(&lru);
    }
}
