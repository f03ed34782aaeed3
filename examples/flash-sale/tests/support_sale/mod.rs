//! A flash sale through HTTP, for the tests that run one on a Redis Cluster (directly or
//! behind nginx): the crowd (duplicate users, several items, both instances) and the
//! invariant checks.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;

use crate::support_cluster::RedisCluster;
use crate::support_service::{assert_order, outcome, Client, Config, Outcome, Service, TempDir};

/// Buyer threads of one crowd.
pub(crate) const THREADS: usize = 12;

/// Every (item, user) pair is tried twice (a duplicate user), spread over `THREADS` threads
/// and both instances; returns (item, user, outcome) of each attempt.
pub(crate) fn crowd(
    addrs: [SocketAddr; 2],
    items: &[String],
    users: usize,
) -> Vec<(String, String, Outcome)> {
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
pub(crate) fn check(
    addrs: [SocketAddr; 2],
    stock: &HashMap<String, u64>,
    attempts: &[(String, String, Outcome)],
) {
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
pub(crate) fn put_buckets(addr: SocketAddr, item: &str, stock: u64, buckets: u32) {
    let body = format!("{{\"stock\": {stock}, \"buckets\": {buckets}}}");
    let put = Client::new(addr)
        .put(&format!("/items/{item}"), &body)
        .unwrap_or_else(|e| panic!("PUT {item}: {e}"));
    assert_eq!(put.status, 201, "PUT {item}: {}", put.describe());
}

pub(crate) fn services(cluster: &RedisCluster, dirs: &[TempDir; 2], prefix: &str) -> Vec<Service> {
    dirs.iter()
        .map(|dir| {
            let mut config = Config::new(2, dir.path());
            config.store = Some(cluster.url());
            config.prefix = Some(prefix.to_owned());
            Service::start(&config)
        })
        .collect()
}
