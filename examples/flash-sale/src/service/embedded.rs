//! The embedded store: the sale's state split over cores, decided without locks.
//!
//! Each core holds, in a thread-local [`Core`]:
//!
//! - the item catalog (every core has a copy) and, per item, this core's **stock segment**:
//!   the units this core may sell without asking anyone;
//! - the **purchase records** of the users it owns (`hash(user) % n`), so the one-per-user
//!   rule is decided on exactly one core;
//! - the **orders** it owns (the core that journaled them) and its **journal**.
//!
//! A buy arriving on core `c` for a user owned by core `u`:
//!
//! 1. `reserve` on `u` (one mesh message): refuses a user who bought (or is buying) already,
//!    otherwise marks the user pending and takes a unit from `u`'s segment;
//! 2. if `u`'s segment is empty, `c` **steals**: it asks every core in turn (`u` first,
//!    which a concurrent steal may have refilled); a `take` hands over half of that core's
//!    segment, one unit serves this buy and the rest refill `u`'s segment (counted as *lent*
//!    by the giving core until the deposit is confirmed). Only when every core is empty and
//!    none has units in transit is the item sold out (and the pending mark cleared);
//! 3. `c` appends the order to **its own journal** and waits for the group commit;
//! 4. `commit` on `u` turns the pending mark into the order; `c` indexes the order; then,
//!    and only then, the client gets 200.
//!
//! A unit is in exactly one place at any moment (a segment, or a buy in progress), so the
//! stock can never be oversold; a pending mark blocks a second buy by the same user while the
//! first is in flight. A stock change (`PUT`) freezes the item on every core, checks that all
//! units are still in their segments (nothing sold or in flight), journals the new stock with
//! a version from core 0, and hands out new segments.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use super::orders::Orders;
use super::replay::Snapshot;
use crate::journal::Journal;

/// An item on one core.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) stock: u64,
    pub(crate) price: Option<i64>,
    pub(crate) name: Option<String>,
    /// Units this core may sell.
    pub(crate) segment: u64,
    /// Acknowledged orders of users owned by this core.
    pub(crate) sold: u64,
    /// A stock change is in progress: nothing moves.
    pub(crate) frozen: bool,
    /// Units this core handed to a stealer beyond the one its buy used, not yet confirmed
    /// as deposited on the stealer's target core: while any are in transit, no buy may
    /// conclude "sold out".
    pub(crate) lent: u64,
    /// How many times units were put back into this segment (deposits, releases): a
    /// sold-out verdict needs two scans that saw no change here.
    pub(crate) deposits: u64,
}

/// An order, as `GET /orders` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order: String,
    pub item: String,
    pub user: String,
    pub ts: u64,
}

/// A user's buy of an item that is neither bought nor free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// In flight.
    Pending,
    /// The order's journal batch failed and could not be cut off the file: it may be
    /// durable. The unit stays reserved and the user blocked until the journal resolves the
    /// doubt (then [`release`]), or a restart replays the journal and finds the order or not.
    InDoubt,
}

/// One core's part of the sale.
#[derive(Debug, Default)]
pub(crate) struct Core {
    pub(crate) items: RefCell<HashMap<String, Item>>,
    /// `(item, user)` of the buys in flight of users owned by this core, and of those in
    /// doubt.
    pending: RefCell<HashMap<(String, String), Mark>>,
    /// Purchase records of the users owned by this core, and the orders it indexes.
    orders: RefCell<Orders>,
    pub(crate) journal: RefCell<Option<Rc<Journal>>>,
    /// Core 0 only: items being changed, and the last version of each item.
    locks: RefCell<HashMap<String, ()>>,
    versions: RefCell<HashMap<String, u64>>,
}

ringcore_http::runtime::core_local! {
    /// This core's part of the sale, set by [`install`]; dropped with the shard.
    static CORE: RefCell<Option<Rc<Core>>> = RefCell::new(None);
}

/// This core's state. Panics if [`install`] has not run on this core (a start-up bug).
pub(crate) fn core() -> Rc<Core> {
    CORE.with(|c| c.borrow().clone())
        .expect("flash-sale core state installed at start-up")
}

/// This core's state, if installed (`None` off a shard too).
fn try_core() -> Option<Rc<Core>> {
    CORE.try_with(|c| c.borrow().clone()).flatten()
}

/// The hash that places users and orders on cores.
pub(crate) fn stable_hash(s: &str) -> u64 {
    // `DefaultHasher::new()` has fixed keys: the same user maps to the same core in every
    // process of this build, which replay relies on.
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// The core, of `n`, that a [`stable_hash`] places on.
pub(crate) fn owner_of(hash: u64, n: usize) -> usize {
    (hash % n as u64) as usize
}

/// The core that owns `user`'s purchase records.
pub(crate) fn user_owner(user: &str, n: usize) -> usize {
    owner_of(stable_hash(user), n)
}

/// The core number an order id starts with (`<core>-...`), if it does.
pub(crate) fn id_core(id: &str) -> Option<usize> {
    id.split('-').next().and_then(|c| c.parse::<usize>().ok())
}

/// The core that indexes order `id`: the core named in the id (`<core>-...`) if it exists
/// in this run, else a hash.
pub(crate) fn order_owner(id: &str, n: usize) -> usize {
    match id_core(id) {
        Some(c) if c < n => c,
        _ => owner_of(stable_hash(id), n),
    }
}

/// Core `k`'s share of `units` split over `n` cores.
pub(crate) fn split(units: u64, k: usize, n: usize) -> u64 {
    let n64 = n as u64;
    units / n64 + u64::from((k as u64) < units % n64)
}

/// Builds this core's state from the replayed snapshot and installs it. The snapshot is
/// only read: the caller drops it once every core has installed.
///
/// Replay has checked that every order id and every `(item, user)` is there once, and
/// hashed what the tables need ([`Snapshot::replayed`]): this core counts its orders, sizes
/// its tables once, and fills them without hashing or comparing a string.
pub(crate) fn install(snap: &Snapshot, me: usize, n: usize) -> Rc<Core> {
    let core = Core::default();
    // Per snapshot item: orders of users owned by this core.
    let mut sold = vec![0u64; snap.items.len()];
    let (mut rows, mut text, mut indexed) = (0usize, 0usize, 0usize);
    for o in snap.replayed() {
        let purchase = o.user_owner(n) == me;
        let index = o.order_owner(n) == me;
        if purchase {
            sold[o.view.item as usize] += 1;
        }
        if index {
            indexed += 1;
        }
        if purchase || index {
            rows += 1;
            text += o.view.order.len() + o.view.user.len();
        }
    }
    let purchases = sold.iter().sum::<u64>() as usize;
    let mut orders = Orders::for_replay(
        snap.items.iter().map(|s| s.id.as_str()),
        rows,
        text,
        purchases,
        indexed,
    );
    for o in snap.replayed() {
        let purchase = o.user_owner(n) == me;
        let index = o.order_owner(n) == me;
        if purchase || index {
            orders.add_replayed(
                o.view.order,
                o.view.item,
                o.view.user,
                o.view.ts,
                purchase.then_some(o.user_hash),
                index.then_some(o.id_hash),
            );
        }
    }
    *core.orders.borrow_mut() = orders;
    {
        let mut items = core.items.borrow_mut();
        for (s, sold) in snap.items.iter().zip(sold) {
            let remaining = s.stock.saturating_sub(s.sold);
            items.insert(
                s.id.clone(),
                Item {
                    stock: s.stock,
                    price: s.price,
                    name: s.name.clone(),
                    segment: split(remaining, me, n),
                    sold,
                    frozen: false,
                    lent: 0,
                    deposits: 0,
                },
            );
            if me == 0 {
                core.versions.borrow_mut().insert(s.id.clone(), s.version);
            }
        }
    }
    let core = Rc::new(core);
    CORE.with(|c| *c.borrow_mut() = Some(core.clone()));
    core
}

/// What `reserve` found on the user's core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// A unit is reserved for this user.
    Got,
    /// The user is marked pending, but this core's segment is empty: steal.
    Empty,
    /// The user bought already.
    Already(String),
    /// Another buy by this user is in flight.
    InFlight,
    /// An earlier buy by this user is in doubt (its journal write failed and may be on disk).
    InDoubt,
    /// The item is being changed; try again shortly.
    Frozen,
    Unknown,
    NotReady,
    /// The user is over the per-user buy rate; a token is there after this long.
    RateLimited(std::time::Duration),
}

/// On the user's core: with `take_token`, first charges the user's buy rate
/// ([`user_limit`](super::user_limit), which lives on this same core), then reserves.
pub(crate) fn reserve(item: &str, user: &str, take_token: bool) -> Reserve {
    let Some(core) = try_core() else {
        return Reserve::NotReady;
    };
    if take_token {
        if let Err(wait) = super::user_limit::take(user) {
            return Reserve::RateLimited(wait);
        }
    }
    let mut items = core.items.borrow_mut();
    let Some(it) = items.get_mut(item) else {
        return Reserve::Unknown;
    };
    if let Some(o) = core.orders.borrow().bought(item, user) {
        return Reserve::Already(o.to_string());
    }
    let mut pending = core.pending.borrow_mut();
    let key = (item.to_string(), user.to_string());
    match pending.get(&key) {
        Some(Mark::Pending) => return Reserve::InFlight,
        Some(Mark::InDoubt) => return Reserve::InDoubt,
        None => {}
    }
    if it.frozen {
        return Reserve::Frozen;
    }
    pending.insert(key, Mark::Pending);
    if it.segment > 0 {
        it.segment -= 1;
        Reserve::Got
    } else {
        Reserve::Empty
    }
}

/// What `take` handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// This many units (at least 1): one for the buy, the rest to deposit.
    Units(u64),
    /// None here; `lent` units are still in transit from this core; `deposits` counts the
    /// refills of this segment so far.
    Empty {
        lent: u64,
        deposits: u64,
    },
    Frozen,
}

/// Hands over half of this core's segment of `item` (rounded up); the units beyond the
/// first count as lent until [`settle`].
pub(crate) fn take(item: &str) -> Take {
    let Some(core) = try_core() else {
        return Take::Empty { lent: 0, deposits: 0 };
    };
    let mut items = core.items.borrow_mut();
    let Some(it) = items.get_mut(item) else {
        return Take::Empty { lent: 0, deposits: 0 };
    };
    if it.frozen {
        return Take::Frozen;
    }
    if it.segment == 0 {
        return Take::Empty {
            lent: it.lent,
            deposits: it.deposits,
        };
    }
    let n = it.segment.div_ceil(2);
    it.segment -= n;
    it.lent += n - 1;
    Take::Units(n)
}

/// Confirms that `units` lent by this core arrived in another core's segment.
pub(crate) fn settle(item: &str, units: u64) {
    if let Some(core) = try_core() {
        let mut items = core.items.borrow_mut();
        if let Some(it) = items.get_mut(item) {
            it.lent = it.lent.saturating_sub(units);
        }
    }
}

/// Puts `units` back into this core's segment of `item`.
pub(crate) fn deposit(item: &str, units: u64) {
    if let Some(core) = try_core() {
        let mut items = core.items.borrow_mut();
        if let Some(it) = items.get_mut(item) {
            it.segment += units;
            it.deposits += 1;
        }
    }
}

/// Clears a pending (or in-doubt) mark; with `unit`, the reserved unit goes back to this
/// core's segment.
pub(crate) fn release(item: &str, user: &str, unit: bool) {
    let Some(core) = try_core() else { return };
    core.pending
        .borrow_mut()
        .remove(&(item.to_string(), user.to_string()));
    if unit {
        let mut items = core.items.borrow_mut();
        if let Some(it) = items.get_mut(item) {
            it.segment += 1;
            it.deposits += 1;
        }
    }
}

/// Turns a pending mark into an in-doubt one: the buy's record may be durable, so its unit
/// and the user's mark are held until the journal resolves the doubt.
pub(crate) fn mark_in_doubt(item: &str, user: &str) {
    let Some(core) = try_core() else { return };
    core.pending
        .borrow_mut()
        .insert((item.to_string(), user.to_string()), Mark::InDoubt);
}

/// Records the durable order on the user's core.
pub(crate) fn commit(item: &str, user: &str, order: &str) {
    let Some(core) = try_core() else { return };
    core.pending
        .borrow_mut()
        .remove(&(item.to_string(), user.to_string()));
    core.orders.borrow_mut().add(order, item, user, 0, true, false);
    let mut items = core.items.borrow_mut();
    if let Some(it) = items.get_mut(item) {
        it.sold += 1;
    }
}

/// Indexes an order on this core.
pub(crate) fn index_order(o: Order) {
    if let Some(core) = try_core() {
        core.orders
            .borrow_mut()
            .add(&o.order, &o.item, &o.user, o.ts, false, true);
    }
}

pub(crate) fn lookup_order(id: &str) -> Option<Order> {
    let core = try_core()?;
    let orders = core.orders.borrow();
    let o = orders.lookup(id)?;
    Some(Order {
        order: o.order.to_string(),
        item: o.item.to_string(),
        user: o.user.to_string(),
        ts: o.ts,
    })
}

/// This core's view of an item: (stock, sold here, segment here), if it exists.
pub(crate) fn item_local(item: &str) -> Option<(u64, u64, u64)> {
    let core = try_core()?;
    let items = core.items.borrow();
    items.get(item).map(|i| (i.stock, i.sold, i.segment))
}

/// Core 0: takes the change lock of `item`; returns the next version, or `None` if another
/// change holds it.
pub(crate) fn lock_item(item: &str) -> Option<u64> {
    let core = try_core()?;
    let mut locks = core.locks.borrow_mut();
    if locks.contains_key(item) {
        return None;
    }
    locks.insert(item.to_string(), ());
    let mut versions = core.versions.borrow_mut();
    let v = versions.get(item).copied().unwrap_or(0) + 1;
    versions.insert(item.to_string(), v);
    Some(v)
}

/// Core 0: releases the change lock of `item`.
pub(crate) fn unlock_item(item: &str) {
    if let Some(core) = try_core() {
        core.locks.borrow_mut().remove(item);
    }
}

/// Freezes `item` on this core; returns (exists, stock, segment, sold here).
pub(crate) fn freeze(item: &str) -> (bool, u64, u64, u64) {
    let Some(core) = try_core() else {
        return (false, 0, 0, 0);
    };
    let mut items = core.items.borrow_mut();
    match items.get_mut(item) {
        Some(it) => {
            it.frozen = true;
            (true, it.stock, it.segment, it.sold)
        }
        None => (false, 0, 0, 0),
    }
}

pub(crate) fn unfreeze(item: &str) {
    if let Some(core) = try_core() {
        let mut items = core.items.borrow_mut();
        if let Some(it) = items.get_mut(item) {
            it.frozen = false;
        }
    }
}

/// Sets (or creates) `item` on this core with its new segment, unfrozen.
pub(crate) fn set_item(item: &str, stock: u64, price: Option<i64>, name: Option<String>, segment: u64) {
    if let Some(core) = try_core() {
        let mut items = core.items.borrow_mut();
        let e = items.entry(item.to_string()).or_insert(Item {
            stock,
            price,
            name: name.clone(),
            segment,
            sold: 0,
            frozen: false,
            lent: 0,
            deposits: 0,
        });
        e.stock = stock;
        e.price = price;
        e.name = name;
        e.segment = segment;
        e.frozen = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_every_unit() {
        for units in [0u64, 1, 2, 7, 1000, 1001] {
            for n in 1..=5 {
                let total: u64 = (0..n).map(|k| split(units, k, n)).sum();
                assert_eq!(total, units, "{units} over {n}");
            }
        }
    }

    #[test]
    fn orders_are_indexed_on_the_core_named_in_their_id() {
        assert_eq!(order_owner("1-abc-5", 2), 1);
        assert_eq!(order_owner("0-abc-5", 4), 0);
        // A core that does not exist in this run (the sale restarted on fewer cores):
        // hashed, the same way at replay and at lookup.
        let h = order_owner("7-abc-5", 2);
        assert!(h < 2);
        assert_eq!(order_owner("7-abc-5", 2), h);
    }
}
