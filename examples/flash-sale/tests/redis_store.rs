//! `RedisStore` against a real `redis-server`: item and buy semantics, the script cache being
//! flushed, and the sale's invariants under concurrent buyers, from two cores of one runtime
//! and from two runtimes (two service instances) at once.

mod support_redis;

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Barrier};

use flash_sale::redis::{
    new_order_id, run_tag, BuyOutcome, ItemView, OrderView, PutOutcome, RedisError, RedisStore, Value,
};
use ringcore_runtime::{shard_id, spawn_local, Runtime};
use support_redis::RedisServer;

fn runtime(cores: usize) -> Runtime {
    Runtime::builder()
        .core_count(cores)
        .handle_signals(false)
        .build()
        .expect("build runtime")
}

/// Runs `f(store)` on one core with a store under `prefix`.
fn with_store<F, Fut, R>(url: &str, prefix: &'static str, f: F) -> R
where
    F: Fn(RedisStore) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + 'static,
    R: Send + 'static,
{
    let url = url.to_owned();
    let f = Arc::new(f);
    runtime(1)
        .run(move || {
            let (url, f) = (url.clone(), f.clone());
            async move { f(RedisStore::connect(&url, prefix).await.expect("connect store")).await }
        })
        .expect("run")
        .pop()
        .flatten()
        .expect("the core's result")
}

fn bought(order: &str) -> BuyOutcome {
    BuyOutcome::Bought { order: order.into() }
}

fn already(order: &str) -> BuyOutcome {
    BuyOutcome::AlreadyBought { order: order.into() }
}

#[test]
fn put_item_creates_updates_and_refuses_once_the_sale_started() {
    let server = RedisServer::start();
    with_store(&server.url(), "put", |s| async move {
        assert_eq!(s.get_item("tv").await.expect("get"), None);
        let put = s
            .put_item("tv", 10, Some(49_900), Some("Television"))
            .await
            .expect("put");
        assert_eq!(put, PutOutcome::Created);
        let view = ItemView {
            stock: 10,
            sold: 0,
            remaining: 10,
            price: Some(49_900),
            name: Some("Television".into()),
        };
        assert_eq!(s.get_item("tv").await.expect("get"), Some(view.clone()));

        // Before any sale the stock can be changed; `None` keeps price and name.
        assert_eq!(
            s.put_item("tv", 3, None, None).await.expect("put"),
            PutOutcome::Updated
        );
        let view = ItemView {
            stock: 3,
            remaining: 3,
            ..view
        };
        assert_eq!(s.get_item("tv").await.expect("get"), Some(view.clone()));
        let put = s.put_item("tv", 4, Some(-1), Some("")).await.expect("put");
        assert_eq!(put, PutOutcome::Updated);
        let view = ItemView {
            stock: 4,
            remaining: 4,
            price: Some(-1),
            name: Some(String::new()),
            ..view
        };
        assert_eq!(s.get_item("tv").await.expect("get"), Some(view.clone()));

        // One sale, and the stock is frozen.
        assert_eq!(s.buy("tv", "u1", "o1", 1).await.expect("buy"), bought("o1"));
        assert_eq!(
            s.put_item("tv", 100, None, None).await.expect("put"),
            PutOutcome::SaleStarted
        );
        let after = ItemView {
            sold: 1,
            remaining: 3,
            ..view
        };
        assert_eq!(s.get_item("tv").await.expect("get"), Some(after));

        let e = s.put_item("", 1, None, None).await.expect_err("empty item id");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn buy_sells_once_per_user_until_sold_out() {
    let server = RedisServer::start();
    with_store(&server.url(), "buy", |s| async move {
        assert_eq!(
            s.buy("nope", "u", "o0", 1).await.expect("buy"),
            BuyOutcome::UnknownItem
        );
        assert_eq!(
            s.get_order("o0").await.expect("get"),
            None,
            "an unknown item stores no order"
        );

        s.put_item("mug", 2, None, None).await.expect("put");
        assert_eq!(
            s.buy("mug", "alice", "o1", 1_000).await.expect("buy"),
            bought("o1")
        );
        // A second attempt by the same user returns the first order and stores nothing.
        assert_eq!(
            s.buy("mug", "alice", "o2", 1_001).await.expect("buy"),
            already("o1")
        );
        assert_eq!(s.get_order("o2").await.expect("get"), None);
        assert_eq!(s.buy("mug", "bob", "o3", 1_002).await.expect("buy"), bought("o3"));
        assert_eq!(
            s.buy("mug", "carol", "o4", 1_003).await.expect("buy"),
            BuyOutcome::SoldOut
        );
        // A buyer retrying after the sell-out still learns their order.
        assert_eq!(
            s.buy("mug", "alice", "o5", 1_004).await.expect("buy"),
            already("o1")
        );

        let item = s.get_item("mug").await.expect("get").expect("exists");
        assert_eq!((item.stock, item.sold, item.remaining), (2, 2, 0));
        let o1 = OrderView {
            order: "o1".into(),
            item: "mug".into(),
            user: "alice".into(),
            ts: 1_000,
        };
        assert_eq!(s.get_order("o1").await.expect("get"), Some(o1));
        assert_eq!(
            s.get_order("o4").await.expect("get"),
            None,
            "a sold-out attempt stores no order"
        );
        assert_eq!(s.orders_stream_len("mug").await.expect("XLEN"), 2);

        // An order id already used fails the buy and changes nothing.
        s.put_item("pen", 5, None, None).await.expect("put");
        let e = s
            .buy("pen", "dave", "o1", 2_000)
            .await
            .expect_err("reused order id");
        assert!(
            RedisError::of(&e).is_some_and(|r| r.message().contains("already used")),
            "{e}"
        );
        let pen = s.get_item("pen").await.expect("get").expect("exists");
        assert_eq!((pen.sold, pen.remaining), (0, 5));
        assert_eq!(s.orders_stream_len("pen").await.expect("XLEN"), 0);

        // The server lost its script cache (restart, SCRIPT FLUSH): EVAL takes over.
        s.cmd("", &["SCRIPT", "FLUSH"]).await.expect("SCRIPT FLUSH");
        assert_eq!(
            s.buy("pen", "dave", "o6", 2_001).await.expect("buy"),
            bought("o6")
        );
        assert_eq!(
            s.put_item("cap", 1, None, None).await.expect("put"),
            PutOutcome::Created
        );
    });
}

#[test]
fn prefixes_keep_sales_apart() {
    let server = RedisServer::start();
    let url = server.url();
    with_store(&url, "shop-a", |s| async move {
        s.put_item("x", 1, None, None).await.expect("put");
        assert_eq!(s.buy("x", "u", "a-1", 1).await.expect("buy"), bought("a-1"));
    });
    with_store(&url, "shop-b", |s| async move {
        assert_eq!(s.get_item("x").await.expect("get"), None);
        assert_eq!(s.get_order("a-1").await.expect("get"), None);
        assert_eq!(
            s.put_item("x", 1, None, None).await.expect("put"),
            PutOutcome::Created
        );
        assert_eq!(s.orders_stream_len("x").await.expect("XLEN"), 0);
    });
}

const STOCK: u64 = 50;
const USERS: usize = 200;

fn user(i: usize) -> String {
    format!("user-{i}")
}

/// Buys `hot` for each of `users` at once, each as its own task, on this core's own client.
async fn buy_all(store: RedisStore, node: String, users: Vec<usize>) -> Vec<(String, BuyOutcome)> {
    let store = std::rc::Rc::new(store);
    let core = shard_id();
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(seq, u)| {
            let store = store.clone();
            let order = new_order_id(&node, core, seq as u64);
            spawn_local(async move {
                let out = store.buy("hot", &user(u), &order, seq as u64).await.expect("buy");
                (user(u), out)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("buyer task"));
    }
    out
}

/// The sale's invariants, from the buyers' answers and from what Redis holds.
fn check_sale(url: &str, prefix: &'static str, outcomes: &[(String, BuyOutcome)]) {
    let mut sold_to: HashMap<String, String> = HashMap::new();
    for (u, o) in outcomes {
        if let BuyOutcome::Bought { order } = o {
            assert!(
                sold_to.insert(u.clone(), order.clone()).is_none(),
                "{u} bought twice"
            );
        }
    }
    assert_eq!(sold_to.len() as u64, STOCK, "exactly the stock is sold");
    let orders: HashSet<String> = sold_to.values().cloned().collect();
    assert_eq!(orders.len() as u64, STOCK, "order ids are distinct");
    for (u, o) in outcomes {
        match o {
            BuyOutcome::Bought { .. } | BuyOutcome::SoldOut => {}
            BuyOutcome::AlreadyBought { order } => {
                assert_eq!(sold_to.get(u), Some(order), "{u} is told their own order")
            }
            BuyOutcome::UnknownItem => panic!("{u}: the item exists"),
            BuyOutcome::InDoubt { order, why } => panic!("{u}: {order} in doubt without WAIT: {why}"),
        }
    }

    let sold_to = Arc::new(sold_to);
    with_store(url, prefix, move |s| {
        let sold_to = sold_to.clone();
        async move {
            let item = s.get_item("hot").await.expect("get").expect("exists");
            assert_eq!((item.stock, item.sold, item.remaining), (STOCK, STOCK, 0));
            assert_eq!(s.orders_stream_len("hot").await.expect("XLEN"), STOCK);
            // The stream holds exactly the acknowledged orders, each once.
            let key = s.orders_stream_key("hot");
            let entries = s.cmd(&key, &["XRANGE", &key, "-", "+"]).await.expect("XRANGE");
            let Value::Array(entries) = entries else {
                panic!("XRANGE reply {entries:?}")
            };
            let mut streamed = HashMap::new();
            for e in &entries {
                let Value::Array(parts) = e else {
                    panic!("entry {e:?}")
                };
                let Some(Value::Array(fields)) = parts.get(1) else {
                    panic!("entry {e:?}")
                };
                let fields: HashMap<&str, &str> = fields
                    .chunks(2)
                    .map(|kv| (kv[0].as_str().expect("name"), kv[1].as_str().expect("value")))
                    .collect();
                assert_eq!(fields["item"], "hot");
                streamed.insert(fields["user"].to_owned(), fields["order"].to_owned());
            }
            assert_eq!(streamed, *sold_to, "stream entries match the Bought answers");
            for (u, order) in sold_to.iter() {
                let o = s
                    .get_order(order)
                    .await
                    .expect("get")
                    .expect("the order is stored");
                assert_eq!((o.item.as_str(), o.user.as_str()), ("hot", u.as_str()));
            }
        }
    });
}

fn set_up_hot_item(url: &str, prefix: &'static str) {
    with_store(url, prefix, |s| async move {
        let put = s
            .put_item("hot", STOCK, Some(999), Some("Hot item"))
            .await
            .expect("put");
        assert_eq!(put, PutOutcome::Created);
    });
}

#[test]
fn two_cores_never_oversell_nor_sell_twice() {
    let server = RedisServer::start();
    let url = server.url();
    let prefix = "two-cores";
    set_up_hot_item(&url, prefix);

    // Core s buys for the users i with i % 2 == s, and again, concurrently, for the first 60
    // users of the other core: same user, two connections, at the same moment.
    let start = Arc::new(Barrier::new(2));
    let node = run_tag();
    let u = url.clone();
    let per_core = runtime(2)
        .run(move || {
            let (url, start, node) = (u.clone(), start.clone(), node.clone());
            async move {
                let store = RedisStore::connect(&url, prefix).await.expect("connect");
                let me = shard_id();
                let mut mine: Vec<usize> = (0..USERS).filter(|i| i % 2 == me).collect();
                mine.extend((0..60).filter(|i| i % 2 != me));
                start.wait();
                buy_all(store, node, mine).await
            }
        })
        .expect("run");
    let outcomes: Vec<_> = per_core
        .into_iter()
        .flat_map(|o| o.expect("each core's answers"))
        .collect();
    assert_eq!(outcomes.len(), USERS + 60);
    check_sale(&url, prefix, &outcomes);
}

#[test]
fn two_instances_never_oversell_nor_sell_twice() {
    let server = RedisServer::start();
    let url = server.url();
    let prefix = "two-instances";
    set_up_hot_item(&url, prefix);

    // Two runtimes of two cores each, as two service instances; every user tries on both.
    let start = Arc::new(Barrier::new(4));
    let instances: Vec<_> = ["node-a", "node-b"]
        .into_iter()
        .map(|node| {
            let (url, start) = (url.clone(), start.clone());
            std::thread::spawn(move || {
                runtime(2).run(move || {
                    let (url, start) = (url.clone(), start.clone());
                    async move {
                        let store = RedisStore::connect(&url, prefix).await.expect("connect");
                        let me = shard_id();
                        let mine: Vec<usize> = (0..USERS).filter(|i| i % 2 == me).collect();
                        // Blocks this shard's thread until all four shards are connected.
                        start.wait();
                        buy_all(store, node.to_owned(), mine).await
                    }
                })
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for i in instances {
        let per_core = i.join().expect("instance thread").expect("instance run");
        outcomes.extend(per_core.into_iter().flat_map(|o| o.expect("each core's answers")));
    }
    assert_eq!(outcomes.len(), 2 * USERS);
    check_sale(&url, prefix, &outcomes);
}
