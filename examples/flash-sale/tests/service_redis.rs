//! Two `flash-sale serve` instances sharing one private `redis-server` (`--store redis://...`,
//! a unique `--prefix`): a crowd split over both sells exactly the stock, once per user, and
//! each instance sees every order and the same counts.
//!
//! No `redis-server` on PATH is a test failure, not a skip: CI installs it.

mod support_redis;
mod support_service;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};
use std::thread;

use support_redis::RedisServer;
use support_service::{assert_order, outcome, unique, Client, Config, Outcome, Service, TempDir};

#[test]
fn two_instances_on_one_redis_sell_exactly_the_stock() {
    const STOCK: u64 = 50;
    const BUYERS: usize = 200;
    const THREADS: usize = 16;

    let redis = RedisServer::start();
    let prefix = unique("fs-svc");
    let dirs = [TempDir::new("redis-a"), TempDir::new("redis-b")];
    let services: Vec<Service> = dirs
        .iter()
        .map(|dir| {
            let mut config = Config::new(2, dir.path());
            config.store = Some(redis.url());
            config.prefix = Some(prefix.clone());
            Service::start(&config)
        })
        .collect();
    let addrs = [services[0].addr(), services[1].addr()];
    assert_ne!(addrs[0], addrs[1]);

    let item = unique("ticket");
    let put = Client::new(addrs[0]).put_item(&item, STOCK);
    assert_eq!(
        put.status,
        201,
        "create item through instance A: {}",
        put.describe()
    );
    // The other instance sees it (through Redis), allowing for its GET cache.
    let seen = Client::new(addrs[1]).item_until(&item, |s| s.stock == STOCK);
    assert_eq!(
        (seen.stock, seen.sold, seen.remaining),
        (STOCK, 0, STOCK),
        "instance B's view of the new item"
    );

    // Thread t talks to instance t % 2; user i belongs to thread i % THREADS.
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (start, item) = (start.clone(), item.clone());
            let addr = addrs[t % 2];
            thread::spawn(move || {
                let mut client = Client::new(addr);
                start.wait();
                (t..BUYERS)
                    .step_by(THREADS)
                    .map(|i| {
                        let user = format!("rfan-{i}");
                        let resp = client
                            .buy(&item, &user)
                            .unwrap_or_else(|e| panic!("buy for {user} via {addr}: {e}"));
                        let o = outcome(&resp, &item, &user);
                        (user, t % 2, o)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let attempts: Vec<(String, usize, Outcome)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("buyer thread"))
        .collect();
    assert_eq!(attempts.len(), BUYERS);

    let mut orders: HashMap<String, String> = HashMap::new();
    let mut ids = HashSet::new();
    let mut per_instance = [0usize; 2];
    for (user, instance, o) in &attempts {
        match o {
            Outcome::Ordered(id) => {
                assert!(
                    orders.insert(user.clone(), id.clone()).is_none(),
                    "{user} sold twice"
                );
                assert!(ids.insert(id.clone()), "order id {id} acknowledged twice");
                per_instance[*instance] += 1;
            }
            Outcome::SoldOut => {}
            other => panic!("buy for {user} via instance {instance}: {other:?}"),
        }
    }
    eprintln!("200s per instance: {per_instance:?}");
    assert_eq!(
        orders.len(),
        STOCK as usize,
        "200s over both instances must equal the stock (200 distinct buyers for {STOCK})"
    );

    // Every order through either instance; sold == stock through both.
    for addr in addrs {
        let mut client = Client::new(addr);
        for (user, order) in &orders {
            assert_order(&client.order(order), order, &item, user);
        }
        let state = client.item_until(&item, |s| s.sold == STOCK);
        assert_eq!(
            (state.stock, state.sold, state.remaining),
            (STOCK, STOCK, 0),
            "GET item via {addr} after the crowd"
        );
        let resp = client.buy(&item, "latecomer").expect("late buy");
        assert_eq!(
            outcome(&resp, &item, "latecomer"),
            Outcome::SoldOut,
            "late buy via {addr}: {}",
            resp.describe()
        );
    }
    // A buyer asking the other instance again is told about their order.
    let mut clients = addrs.map(Client::new);
    for (user, order) in &orders {
        let (_, instance, _) = attempts.iter().find(|(u, _, _)| u == user).unwrap();
        let resp = clients[1 - instance].buy(&item, user).expect("repeat buy");
        assert_eq!(
            outcome(&resp, &item, user),
            Outcome::AlreadyBought(order.clone()),
            "repeat buy by {user} through the other instance: {}",
            resp.describe()
        );
    }

    drop(clients);
    for service in services {
        service.stop_clean();
    }
}
