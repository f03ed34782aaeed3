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
mod support_service;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use support_cluster::RedisCluster;
use support_service::{assert_order, outcome, unique, Client, Config, Outcome, Service, TempDir};

const THREADS: usize = 12;

/// Every (item, user) pair is tried twice (a duplicate user), spread over `THREADS` threads
/// and both instances; returns (item, user, outcome) of each attempt.
fn crowd(addrs: [SocketAddr; 2], items: &[String], users: usize) -> Vec<(String, String, Outcome)> {
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (start, items) = (start.clone(), items.to_vec());
            let addr = addrs[t % 2];
            thread::spawn(move || {
                let mut client = Client::new(addr);
                start.wait();
                let mut out = Vec::new();
                // Attempt k is user k % users: each user twice, from different threads.
                for k in (t..2 * users).step_by(THREADS) {
                    let user = format!("cfan-{}", k % users);
                    let item = &items[k % items.len()];
                    let resp = client
                        .buy(item, &user)
                        .unwrap_or_else(|e| panic!("buy {item} for {user} via {addr}: {e}"));
                    let o = outcome(&resp, item, &user);
                    out.push((item.clone(), user, o));
                }
                out
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("buyer thread"))
        .collect()
}

/// The invariants over one crowd: per item exactly `min(stock, buyers)` sold, one order per
/// (item, user), distinct ids, duplicates told their own order, and through both
/// instances every order readable and the counts right.
fn check(addrs: [SocketAddr; 2], stock: &HashMap<String, u64>, attempts: &[(String, String, Outcome)]) {
    let mut orders: HashMap<(String, String), String> = HashMap::new();
    let mut ids = HashSet::new();
    for (item, user, o) in attempts {
        if let Outcome::Ordered(id) = o {
            assert!(
                orders.insert((item.clone(), user.clone()), id.clone()).is_none(),
                "{user} bought {item} twice"
            );
            assert!(ids.insert(id.clone()), "order id {id} acknowledged twice");
        }
    }
    for (item, user, o) in attempts {
        match o {
            Outcome::Ordered(_) | Outcome::SoldOut => {}
            Outcome::AlreadyBought(id) => assert_eq!(
                orders.get(&(item.clone(), user.clone())),
                Some(id),
                "{user} told about an order of {item} that is not theirs"
            ),
            other => panic!("buy {item} for {user}: {other:?}"),
        }
    }
    for (item, &stock) in stock {
        let buyers: HashSet<&String> = attempts.iter().filter(|a| &a.0 == item).map(|a| &a.1).collect();
        let sold = orders.keys().filter(|(i, _)| i == item).count() as u64;
        assert_eq!(
            sold,
            stock.min(buyers.len() as u64),
            "{item}: 200s must be min(stock {stock}, {} buyers)",
            buyers.len()
        );
        for addr in addrs {
            let state = Client::new(addr).item_until(item, |s| s.sold == sold);
            assert_eq!(
                (state.stock, state.sold, state.remaining),
                (stock, sold, stock - sold),
                "GET /items/{item} via {addr}"
            );
        }
    }
    for addr in addrs {
        let mut client = Client::new(addr);
        for ((item, user), order) in &orders {
            assert_order(&client.order(order), order, item, user);
        }
    }
}

/// `PUT /items/{item}` with `buckets`; must answer 201.
fn put_buckets(addr: SocketAddr, item: &str, stock: u64, buckets: u32) {
    let body = format!("{{\"stock\": {stock}, \"buckets\": {buckets}}}");
    let put = Client::new(addr)
        .put(&format!("/items/{item}"), &body)
        .unwrap_or_else(|e| panic!("PUT {item}: {e}"));
    assert_eq!(put.status, 201, "PUT {item}: {}", put.describe());
}

fn services(cluster: &RedisCluster, dirs: &[TempDir; 2], prefix: &str) -> Vec<Service> {
    dirs.iter()
        .map(|dir| {
            let mut config = Config::new(2, dir.path());
            config.store = Some(cluster.url());
            config.prefix = Some(prefix.to_owned());
            Service::start(&config)
        })
        .collect()
}

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
    let buyers = thread::spawn(move || {
        let attempts = crowd(addrs, &hot_items, 120);
        (attempts, Instant::now())
    });
    thread::sleep(Duration::from_millis(50));
    let move_started = Instant::now();
    let moved = cluster.move_slot(slot, to, 1, Duration::from_millis(30));
    let (attempts, crowd_done) = buyers.join().expect("crowd");
    eprintln!("moved {moved} keys of slot {slot} from {from} to {to}");
    // Buys that meet the move are answered 503 (TRYAGAIN: the new order's key is on neither
    // side yet) and retried, so the crowd cannot have finished before the move began.
    assert!(
        crowd_done > move_started,
        "the crowd ended before the slot began to move: the test did not test the move"
    );
    assert_eq!(cluster.owner(slot), to, "the slot moved");
    assert!(moved >= 3, "the item's keys moved ({moved})");
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
