//! Two `flash-sale serve` instances on a private 3-master Redis Cluster
//! (`--store redis-cluster://...`): a crowd with duplicate users over several items, one of
//! them hot and split over 8 buckets, sells exactly each stock, one order per user and item,
//! every 200 readable through both instances; then the slot of bucket 0 of a 4-bucket item
//! is migrated to another master in the middle of its sale
//! (`ASK` / `TRYAGAIN` while it moves, `MOVED` after) and the same invariants hold, every buy
//! answered 200, 409 or 503 (with `Retry-After`), never anything else.
//!
//! No `redis-server` / `redis-cli` on PATH is a test failure, not a skip: CI installs them.

mod support_cluster;
mod support_sale;
mod support_service;

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support_cluster::RedisCluster;
use support_sale::{check, crowd, put_buckets, services};
use support_service::{outcome, unique, Client, Outcome, TempDir};

#[test]
fn two_instances_on_a_redis_cluster_sell_exactly_the_stock_also_while_a_slot_moves() {
    let cluster = RedisCluster::start();
    let prefix = unique("fs-cl");
    let dirs = [TempDir::new("cluster-a"), TempDir::new("cluster-b")];
    let svcs = services(&cluster, &dirs, &prefix);
    let addrs = [svcs[0].addr(), svcs[1].addr()];

    // Several items, on different masters: the sale spreads over the cluster.
    let items: Vec<String> = (0..4).map(|i| unique(&format!("item{i}"))).collect();
    let owners: HashSet<u16> = items
        .iter()
        .map(|i| cluster.owner(cluster.slot(&format!("{{{prefix}:{i}}}:item"))))
        .collect();
    eprintln!("items on {} masters", owners.len());
    let mut stock = HashMap::new();
    for (n, item) in items.iter().enumerate() {
        let s = 10 + 5 * n as u64;
        let put = Client::new(addrs[n % 2]).put_item(item, s);
        assert_eq!(put.status, 201, "PUT {item}: {}", put.describe());
        stock.insert(item.clone(), s);
    }
    for bad in [0, 65] {
        let body = format!("{{\"stock\": 5, \"buckets\": {bad}}}");
        let resp = Client::new(addrs[0])
            .put(&format!("/items/{}", unique("bad")), &body)
            .expect("PUT answered");
        assert_eq!(resp.status, 400, "{bad} buckets: {}", resp.describe());
    }
    // And a hot item split over 8 buckets (slots).
    let hot8 = unique("hot8");
    put_buckets(addrs[1], &hot8, 30, 8);
    stock.insert(hot8.clone(), 30);
    let mut all = items.clone();
    all.push(hot8.clone());
    let attempts = crowd(addrs, &all, 200);
    check(addrs, &stock, &attempts);
    let hot_slots: HashSet<&str> = attempts
        .iter()
        .filter(|a| a.0 == hot8)
        .filter_map(|a| match &a.2 {
            Outcome::Ordered(id) => id.split_once('~').map(|(slot, _)| slot),
            _ => None,
        })
        .collect();
    assert!(
        hot_slots.len() >= 4,
        "the 8-bucket item's orders sit on its buckets' slots: {hot_slots:?}"
    );

    // A slot moves during the sale: the hot item's keys go to another master, a few at a
    // time, while a crowd buys it through both instances.
    let hot = unique("hot");
    let hot_stock = 40;
    put_buckets(addrs[0], &hot, hot_stock, 4);
    let slot = cluster.slot(&format!("{{{prefix}:{hot}}}:item"));
    let from = cluster.owner(slot);
    let to = cluster
        .nodes
        .iter()
        .map(|n| n.port)
        .find(|p| *p != from)
        .expect("another master");
    let hot_items = vec![hot.clone()];
    // Part of the stock sells before the move, so the slot holds buyers, orders and a stream.
    let mut attempts = crowd(addrs, &hot_items, 30);
    // The rest of the crowd starts once the slot is migrating, and buys while its keys move
    // one by one.
    let (migrating, started) = mpsc::channel::<()>();
    let buyers = thread::spawn(move || {
        started.recv().expect("the move began");
        (Instant::now(), crowd(addrs, &hot_items, 120))
    });
    let moved = cluster.move_slot(slot, to, 1, Duration::from_millis(30), || {
        migrating.send(()).expect("the crowd waits");
    });
    let move_done = Instant::now();
    let (crowd_began, more) = buyers.join().expect("crowd");
    attempts.extend(more);
    eprintln!("moved {moved} keys of slot {slot} from {from} to {to}");
    assert!(crowd_began < move_done, "the crowd bought while the slot moved");
    assert_eq!(cluster.owner(slot), to, "the slot moved");
    assert!(moved >= 4, "the item's bucket 0 keys moved ({moved})");
    check(addrs, &HashMap::from([(hot.clone(), hot_stock)]), &attempts);
    // After the move both instances still sell nothing more and find every order.
    for addr in addrs {
        let resp = Client::new(addr).buy(&hot, "latecomer").expect("late buy");
        assert_eq!(
            outcome(&resp, &hot, "latecomer"),
            Outcome::SoldOut,
            "late buy via {addr}: {}",
            resp.describe()
        );
    }

    // A master stalls: a buy of an item it serves is answered 503 + Retry-After within the
    // Redis deadline (1 s by default), through either instance, never a hang.
    let victim = &items[0];
    let port = cluster.owner(cluster.slot(&format!("{{{prefix}:{victim}}}:item")));
    cluster.stall(port);
    for addr in addrs {
        let t0 = Instant::now();
        let resp = Client::new(addr)
            .buy_once(victim, "late-fan")
            .expect("buy answered");
        let took = t0.elapsed();
        assert_eq!(
            resp.status,
            503,
            "buy on a stalled master via {addr}: {}",
            resp.describe()
        );
        assert!(
            resp.header("retry-after").is_some(),
            "503 without Retry-After: {}",
            resp.describe()
        );
        assert!(
            took < Duration::from_secs(3),
            "503 after {took:?}: not within the deadline"
        );
    }
    drop(svcs);
}
