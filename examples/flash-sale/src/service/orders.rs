//! One core's orders, compact: the purchase records of the users it owns (`(item, user)` to
//! order) and the orders it indexes (order id to item, user, time), in one table.
//!
//! A million orders must fit in well under 150 bytes each, so nothing here allocates per
//! order: an order is a 32-byte [`Row`] whose strings (order id, then user) sit back to back
//! in one text buffer, items are numbers ([`Orders::item_id`]), and each of the two lookups is
//! an open-addressing table of row numbers (4 bytes a slot, at most half full) that hashes
//! the row's strings when it probes. Rows are never removed (an order is forever); pending
//! purchase marks are few and short-lived and stay in `embedded`'s own map.
//!
//! The hashes ([`text_hash`], [`pair_hash`]) are SipHash with keys drawn once per process:
//! clients choose user ids, and must not be able to aim them at one stretch of a table. They
//! are the same on every core, so replay hashes each order once, on its own threads, and a
//! core fills its tables from those hashes ([`Orders::for_replay`]).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// One order as stored: where its strings are in the text, and its item and time.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Start of the order id in the text; the user follows it.
    at: u64,
    ts: u64,
    order_len: u32,
    user_len: u32,
    item: u32,
}

/// An open-addressing set of row numbers (stored + 1; 0 is an empty slot), linear probing,
/// at most half full. The caller gives the hash and the equality of rows.
#[derive(Debug, Default)]
struct Index {
    slots: Vec<u32>,
    len: usize,
}

impl Index {
    fn with_capacity(n: usize) -> Index {
        let mut slots = Vec::new();
        if n > 0 {
            slots.resize((n * 2).next_power_of_two(), 0);
        }
        Index { slots, len: 0 }
    }

    /// The slot holding a row that `eq` accepts, or the empty slot where it would go.
    fn probe(&self, hash: u64, eq: impl Fn(u32) -> bool) -> (usize, Option<u32>) {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match self.slots[i] {
                0 => return (i, None),
                r if eq(r - 1) => return (i, Some(r - 1)),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn find(&self, hash: u64, eq: impl Fn(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        self.probe(hash, eq).1
    }

    /// Inserts `row` (replacing a row that `eq` accepts); `rehash` gives any row's hash.
    fn insert(&mut self, hash: u64, row: u32, eq: impl Fn(u32) -> bool, rehash: impl Fn(u32) -> u64) {
        if (self.len + 1) * 2 > self.slots.len() {
            let mut bigger = Index::with_capacity((self.len + 1).max(8));
            for &r in &self.slots {
                if r != 0 {
                    let (i, _) = bigger.probe(rehash(r - 1), |_| false);
                    bigger.slots[i] = r;
                }
            }
            bigger.len = self.len;
            *self = bigger;
        }
        let (i, found) = self.probe(hash, eq);
        if found.is_none() {
            self.len += 1;
        }
        self.slots[i] = row + 1;
    }
}

/// This process's hash of an order id or a user, for the tables here (and replay's checks).
pub(crate) fn text_hash(s: &str) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new).hash_one(s)
}

/// The hash of `(item, user)` from the user's [`text_hash`]: distinct items move a user's
/// hash to distinct places, and the keyed user hash keeps the whole unpredictable.
pub(crate) fn pair_hash(item: u32, user_hash: u64) -> u64 {
    user_hash ^ u64::from(item).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// An order as looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found<'a> {
    pub(crate) order: &'a str,
    pub(crate) item: &'a str,
    pub(crate) user: &'a str,
    pub(crate) ts: u64,
}

/// One core's purchase records and order index.
#[derive(Debug, Default)]
pub(crate) struct Orders {
    rows: Vec<Row>,
    text: String,
    /// Item ids by number, and numbers by id.
    items: Vec<Box<str>>,
    item_numbers: HashMap<Box<str>, u32>,
    /// `(item, user)` to the row of the user's order (purchase records).
    bought: Index,
    /// Order id to its row (the order index).
    by_id: Index,
}

impl Orders {
    /// Empty tables sized for a replay: `items` numbered in order, room for `rows` rows with
    /// `text` bytes of strings, `purchases` purchase records and `indexed` indexed orders.
    pub(crate) fn for_replay<'a>(
        items: impl IntoIterator<Item = &'a str>,
        rows: usize,
        text: usize,
        purchases: usize,
        indexed: usize,
    ) -> Orders {
        let mut o = Orders {
            rows: Vec::with_capacity(rows),
            text: String::with_capacity(text),
            bought: Index::with_capacity(purchases),
            by_id: Index::with_capacity(indexed),
            ..Orders::default()
        };
        for id in items {
            o.item_id(id);
        }
        o
    }

    /// Adds a replayed order of item number `item`: as its user's purchase if `purchase`
    /// gives the user's [`text_hash`], to the order index if `index` gives the order id's.
    /// Neither table may hold the order or the purchase already (replay checked that each
    /// is there once), so no string is hashed or compared, unless a table must grow.
    pub(crate) fn add_replayed(
        &mut self,
        order: &str,
        item: u32,
        user: &str,
        ts: u64,
        purchase: Option<u64>,
        index: Option<u64>,
    ) {
        let r = self.push(order, item, user, ts);
        if let Some(user_hash) = purchase {
            let mut bought = std::mem::take(&mut self.bought);
            let this = &*self;
            bought.insert(pair_hash(item, user_hash), r, |_| false, |x| rehash_on(this, x));
            self.bought = bought;
        }
        if let Some(id_hash) = index {
            let mut by_id = std::mem::take(&mut self.by_id);
            let this = &*self;
            by_id.insert(id_hash, r, |_| false, |x| text_hash(this.order_of(x)));
            self.by_id = by_id;
        }
    }

    /// The number of item `id`, numbering it if new.
    pub(crate) fn item_id(&mut self, id: &str) -> u32 {
        if let Some(&n) = self.item_numbers.get(id) {
            return n;
        }
        let n = self.items.len() as u32;
        self.items.push(id.into());
        self.item_numbers.insert(id.into(), n);
        n
    }

    fn order_of(&self, r: u32) -> &str {
        let row = &self.rows[r as usize];
        &self.text[row.at as usize..row.at as usize + row.order_len as usize]
    }

    fn user_of(&self, r: u32) -> &str {
        let row = &self.rows[r as usize];
        let start = row.at as usize + row.order_len as usize;
        &self.text[start..start + row.user_len as usize]
    }

    fn push(&mut self, order: &str, item: u32, user: &str, ts: u64) -> u32 {
        let at = self.text.len() as u64;
        self.text.push_str(order);
        self.text.push_str(user);
        self.rows.push(Row {
            at,
            ts,
            // The service writes ids and users of at most 256 bytes; replay checks nothing
            // longer than u32 can say exists (it refuses a field over 4 GiB).
            order_len: order.len() as u32,
            user_len: user.len() as u32,
            item,
        });
        (self.rows.len() - 1) as u32
    }

    /// Adds an order: as `user`'s purchase of `item` if `purchase`, to the order index if
    /// `index` (both: one row serves both lookups).
    pub(crate) fn add(&mut self, order: &str, item: &str, user: &str, ts: u64, purchase: bool, index: bool) {
        if !purchase && !index {
            return;
        }
        let item = self.item_id(item);
        let r = self.push(order, item, user, ts);
        // The tables are taken out while they probe, so the probes can read the rows.
        if purchase {
            let mut bought = std::mem::take(&mut self.bought);
            let this = &*self;
            bought.insert(
                pair_hash(item, text_hash(user)),
                r,
                |x| eq_on(this, x, item, user),
                |x| rehash_on(this, x),
            );
            self.bought = bought;
        }
        if index {
            let hash = text_hash(order);
            let mut by_id = std::mem::take(&mut self.by_id);
            let this = &*self;
            by_id.insert(
                hash,
                r,
                |x| this.order_of(x) == order,
                |x| text_hash(this.order_of(x)),
            );
            self.by_id = by_id;
        }
    }

    /// The order `user` holds for `item`, if any.
    pub(crate) fn bought(&self, item: &str, user: &str) -> Option<&str> {
        let &item = self.item_numbers.get(item)?;
        let r = self
            .bought
            .find(pair_hash(item, text_hash(user)), |x| eq_on(self, x, item, user))?;
        Some(self.order_of(r))
    }

    /// The order with id `order`, if this core indexes it.
    pub(crate) fn lookup(&self, order: &str) -> Option<Found<'_>> {
        let r = self.by_id.find(text_hash(order), |x| self.order_of(x) == order)?;
        let row = &self.rows[r as usize];
        Some(Found {
            order: self.order_of(r),
            item: &self.items[row.item as usize],
            user: self.user_of(r),
            ts: row.ts,
        })
    }
}

fn eq_on(o: &Orders, x: u32, item: u32, user: &str) -> bool {
    o.rows[x as usize].item == item && o.user_of(x) == user
}

fn rehash_on(o: &Orders, x: u32) -> u64 {
    pair_hash(o.rows[x as usize].item, text_hash(o.user_of(x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchases_and_orders_are_found_after_many_growths() {
        let mut o = Orders::default();
        for k in 0..5000u64 {
            let (purchase, index) = (k % 3 != 1, k % 3 != 2);
            o.add(
                &format!("0-t-{k}"),
                &format!("item-{}", k % 7),
                &format!("u{k}"),
                k,
                purchase,
                index,
            );
        }
        for k in 0..5000u64 {
            let (item, user, id) = (format!("item-{}", k % 7), format!("u{k}"), format!("0-t-{k}"));
            let want = (k % 3 != 1).then_some(id.as_str());
            assert_eq!(o.bought(&item, &user), want, "purchase {k}");
            assert_eq!(o.bought(&format!("item-{}", (k + 1) % 7), &user), None);
            let found = o.lookup(&id);
            if k % 3 != 2 {
                assert_eq!(
                    found,
                    Some(Found {
                        order: &id,
                        item: &item,
                        user: &user,
                        ts: k
                    })
                );
            } else {
                assert_eq!(found, None, "order {k} is not indexed here");
            }
        }
        assert_eq!(o.bought("no such item", "u1"), None);
        assert_eq!(o.lookup("0-t-5000"), None);
    }

    #[test]
    fn an_empty_table_finds_nothing() {
        let o = Orders::default();
        assert_eq!(o.bought("x", "u"), None);
        assert_eq!(o.lookup("o"), None);
    }

    #[test]
    fn replayed_tables_find_what_add_finds_and_keep_growing() {
        // Sized for 3 rows; 2 purchases and 2 indexed orders among them.
        let mut o = Orders::for_replay(["a", "b"], 3, 0, 2, 2);
        let rows = [
            ("0-1", 0, "u1", true, true),
            ("0-2", 1, "u1", true, false),
            ("1-3", 0, "u2", false, true),
        ];
        for (id, item, user, purchase, index) in rows {
            o.add_replayed(
                id,
                item,
                user,
                9,
                purchase.then(|| text_hash(user)),
                index.then(|| text_hash(id)),
            );
        }
        assert_eq!(o.bought("a", "u1"), Some("0-1"));
        assert_eq!(o.bought("b", "u1"), Some("0-2"));
        assert_eq!(o.bought("a", "u2"), None, "indexed only");
        assert_eq!(o.lookup("0-2"), None, "a purchase only");
        assert_eq!(
            o.lookup("1-3"),
            Some(Found {
                order: "1-3",
                item: "a",
                user: "u2",
                ts: 9
            })
        );
        // The service's own adds go on past the replayed size.
        for k in 0..100u64 {
            o.add(&format!("0-x-{k}"), "c", &format!("v{k}"), k, true, true);
        }
        assert_eq!(o.bought("c", "v99"), Some("0-x-99"));
        assert_eq!(o.bought("a", "u1"), Some("0-1"));
        assert_eq!(o.lookup("0-1").map(|f| f.user), Some("u1"));
    }
}
