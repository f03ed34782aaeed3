//! `flash-sale serve` (embedded store, two cores) under a concurrent crowd, from the outside:
//! never oversold, every sale acknowledged exactly once per user with a readable order, a
//! repeated buy answers with the user's existing order, and a single hot item sells exactly
//! its stock across cores (per-core stock segments with stealing).

mod support_service;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};
use std::thread;

use support_service::{assert_order, outcome, unique, Client, Config, Outcome, Service, TempDir};

const THREADS: usize = 16;

/// One buy attempt as a client saw it.
#[derive(Debug, Clone)]
struct Attempt {
    user: String,
    outcome: Outcome,
}

/// Runs `work[t]` (a list of users) on thread `t`, each thread with its own keep-alive
/// connection, all starting together; returns every attempt.
fn crowd(addr: std::net::SocketAddr, item: &str, work: Vec<Vec<String>>) -> Vec<Attempt> {
    let start = Arc::new(Barrier::new(work.len()));
    let handles: Vec<_> = work
        .into_iter()
        .map(|users| {
            let start = start.clone();
            let item = item.to_owned();
            thread::spawn(move || {
                let mut client = Client::new(addr);
                start.wait();
                users
                    .into_iter()
                    .map(|user| {
                        let resp = client
                            .buy(&item, &user)
                            .unwrap_or_else(|e| panic!("buy {item} for {user}: {e}"));
                        Attempt {
                            outcome: outcome(&resp, &item, &user),
                            user,
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("buyer thread"))
        .collect()
}

/// Checks the attempts: no unexpected answers, exactly `stock` 200s, one per user, distinct
/// order ids, every already_bought naming that user's acknowledged order. Returns user -> order.
fn check_attempts(attempts: &[Attempt], stock: usize) -> HashMap<String, String> {
    let mut orders: HashMap<String, String> = HashMap::new();
    let mut ids = HashSet::new();
    for a in attempts {
        match &a.outcome {
            Outcome::Ordered(id) => {
                if let Some(first) = orders.insert(a.user.clone(), id.clone()) {
                    panic!("user {} was sold the item twice: orders {first} and {id}", a.user);
                }
                assert!(ids.insert(id.clone()), "order id {id} acknowledged twice");
            }
            Outcome::SoldOut | Outcome::AlreadyBought(_) => {}
            Outcome::Throttled(s) => panic!(
                "buy for {} still {s} after bounded retries (distinct users, modest load)",
                a.user
            ),
            Outcome::Other(what) => panic!("buy for {}: unexpected answer {what}", a.user),
        }
    }
    assert_eq!(
        orders.len(),
        stock,
        "number of 200 buys must equal the stock (demand exceeded it)"
    );
    for a in attempts {
        if let Outcome::AlreadyBought(id) = &a.outcome {
            assert_eq!(
                orders.get(&a.user),
                Some(id),
                "already_bought for {} names order {id}, but the 200 they got was {:?}",
                a.user,
                orders.get(&a.user)
            );
        }
    }
    orders
}

/// Reads every acknowledged order back, spreading the reads over a few connections.
fn check_orders_readable(addr: std::net::SocketAddr, item: &str, orders: &HashMap<String, String>) {
    let pairs: Vec<(String, String)> = orders.iter().map(|(u, o)| (u.clone(), o.clone())).collect();
    let chunks: Vec<Vec<(String, String)>> = pairs
        .chunks(pairs.len().div_ceil(4).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let item = item.to_owned();
            thread::spawn(move || {
                let mut client = Client::new(addr);
                for (user, order) in chunk {
                    assert_order(&client.order(&order), &order, &item, &user);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("order reader thread");
    }
}

#[test]
fn crowd_with_duplicates_sells_exactly_the_stock_once_per_user() {
    const STOCK: u64 = 100;
    const BUYERS: usize = 400;
    const DUPS_PER_THREAD: usize = 4;

    let dir = TempDir::new("invariants");
    let service = Service::start(&Config::new(2, dir.path()));
    let addr = service.addr();
    let item = unique("sneaker");
    let mut admin = Client::new(addr);
    let put = admin.put_item(&item, STOCK);
    assert_eq!(put.status, 201, "create item: {}", put.describe());

    // User i belongs to thread i % THREADS. The first few users of each thread are also tried
    // by the next thread at the same point in its list: the same user from two connections
    // at once.
    let own: Vec<Vec<String>> = (0..THREADS)
        .map(|t| {
            (t..BUYERS)
                .step_by(THREADS)
                .map(|i| format!("buyer-{i}"))
                .collect()
        })
        .collect();
    let work: Vec<Vec<String>> = (0..THREADS)
        .map(|t| {
            let prev = &own[(t + THREADS - 1) % THREADS];
            let mut list = Vec::new();
            for (k, user) in own[t].iter().enumerate() {
                if k < DUPS_PER_THREAD {
                    // Even threads try the neighbour's user first, odd threads their own, so the
                    // two attempts of a duplicated user overlap.
                    if t % 2 == 0 {
                        list.push(prev[k].clone());
                        list.push(user.clone());
                    } else {
                        list.push(user.clone());
                        list.push(prev[k].clone());
                    }
                } else {
                    list.push(user.clone());
                }
            }
            list
        })
        .collect();
    let duplicated: HashSet<String> = own
        .iter()
        .flat_map(|users| users.iter().take(DUPS_PER_THREAD).cloned())
        .collect();

    let attempts = crowd(addr, &item, work);
    assert_eq!(attempts.len(), BUYERS + THREADS * DUPS_PER_THREAD);
    let orders = check_attempts(&attempts, STOCK as usize);

    // A duplicated user who bought: one attempt got the 200, the other (sent at the same
    // time from another connection) is told already_bought with that same order.
    let mut dup_buyers = 0;
    for user in &duplicated {
        let Some(order) = orders.get(user) else {
            continue;
        };
        dup_buyers += 1;
        let answers: Vec<&Outcome> = attempts
            .iter()
            .filter(|a| &a.user == user)
            .map(|a| &a.outcome)
            .collect();
        assert_eq!(answers.len(), 2, "{user} was tried twice");
        assert!(
            answers.contains(&&Outcome::AlreadyBought(order.clone())),
            "{user} bought (order {order}) from one connection; the simultaneous attempt from \
             another connection got {answers:?}, expected already_bought with that order"
        );
    }
    assert!(
        dup_buyers > 0,
        "none of the {} duplicated users bought: the duplicate check did not run",
        duplicated.len()
    );

    check_orders_readable(addr, &item, &orders);

    let state = admin.item_until(&item, |s| s.sold == STOCK);
    assert_eq!(state.stock, STOCK, "GET item after the crowd: {state:?}");
    assert_eq!(state.sold, STOCK, "GET item after the crowd: {state:?}");
    assert_eq!(state.remaining, 0, "GET item after the crowd: {state:?}");

    // Newcomers: sold out.
    for i in 0..5 {
        let user = format!("late-{i}");
        let resp = admin.buy(&item, &user).expect("late buy");
        assert_eq!(
            outcome(&resp, &item, &user),
            Outcome::SoldOut,
            "buy by a new user after the sell-out: {}",
            resp.describe()
        );
    }
    // Every buyer again: already_bought with the order they were acknowledged.
    for (user, order) in &orders {
        let resp = admin.buy(&item, user).expect("repeat buy");
        assert_eq!(
            outcome(&resp, &item, user),
            Outcome::AlreadyBought(order.clone()),
            "repeat buy by {user}, who got order {order}: {}",
            resp.describe()
        );
    }

    let state = admin.item_until(&item, |_| false);
    assert_eq!(
        (state.sold, state.remaining),
        (STOCK, 0),
        "repeat and late buys changed the item: {state:?}"
    );
    drop(admin);
    service.stop_clean();
}

#[test]
fn hot_item_sells_exactly_its_stock_across_cores() {
    const STOCK: u64 = 1000;
    const BUYERS: usize = 1500;

    let dir = TempDir::new("hot");
    let service = Service::start(&Config::new(2, dir.path()));
    let addr = service.addr();
    let item = unique("console");
    let mut admin = Client::new(addr);
    let put = admin.put_item(&item, STOCK);
    assert_eq!(put.status, 201, "create item: {}", put.describe());

    let work: Vec<Vec<String>> = (0..THREADS)
        .map(|t| (t..BUYERS).step_by(THREADS).map(|i| format!("fan-{i}")).collect())
        .collect();
    let attempts = crowd(addr, &item, work);
    assert_eq!(attempts.len(), BUYERS);
    let orders = check_attempts(&attempts, STOCK as usize);
    let sold_out = attempts.iter().filter(|a| a.outcome == Outcome::SoldOut).count();
    assert_eq!(
        sold_out,
        BUYERS - STOCK as usize,
        "every buyer without a 200 must have been told sold_out"
    );

    check_orders_readable(addr, &item, &orders);

    let state = admin.item_until(&item, |s| s.sold == STOCK);
    assert_eq!(
        (state.stock, state.sold, state.remaining),
        (STOCK, STOCK, 0),
        "GET item after the crowd: {state:?}"
    );
    drop(admin);
    service.stop_clean();
}
