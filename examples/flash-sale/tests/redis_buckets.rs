//! `RedisStore` with an item split over buckets, against a real `redis-server`: exactly the
//! stock sold, once per user, every order found from its id; and a transfer between buckets
//! cut after its first step (a crash) neither loses nor doubles a unit.
//!
//! No `redis-server` on PATH is a test failure, not a skip: CI installs it.

mod support_redis;

use std::collections::HashMap;
use std::sync::Arc;

use flash_sale::redis::{bucket_of, BuyOutcome, PutOutcome, RedisStore};
use ringcore_runtime::Runtime;
use support_redis::RedisServer;

/// Runs `f(store)` on one core with a store under `prefix`.
fn with_store<F, Fut, R>(url: &str, prefix: &'static str, f: F) -> R
where
    F: Fn(RedisStore) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + 'static,
    R: Send + 'static,
{
    let url = url.to_owned();
    let f = Arc::new(f);
    Runtime::builder()
        .core_count(1)
        .handle_signals(false)
        .build()
        .expect("build runtime")
        .run(move || {
            let (url, f) = (url.clone(), f.clone());
            async move { f(RedisStore::connect(&url, prefix).await.expect("connect store")).await }
        })
        .expect("run")
        .pop()
        .flatten()
        .expect("the core's result")
}

/// Every user of `users` tries to buy `item` twice; returns user → order of the 200s,
/// checking that a repeat is told the first order.
async fn buy_twice_each(s: &RedisStore, item: &str, users: usize) -> HashMap<String, String> {
    let mut sold: HashMap<String, String> = HashMap::new();
    for round in 0..2 {
        for i in 0..users {
            let user = format!("user-{i}");
            match s
                .buy(item, &user, &format!("o{round}-{i}"), 1)
                .await
                .expect("buy")
            {
                BuyOutcome::Bought { order } => {
                    assert!(sold.insert(user.clone(), order).is_none(), "{user} bought twice")
                }
                BuyOutcome::AlreadyBought { order } => {
                    assert_eq!(sold.get(&user), Some(&order), "{user} told another order")
                }
                BuyOutcome::SoldOut => {}
                BuyOutcome::UnknownItem => panic!("{item} exists"),
                BuyOutcome::InDoubt { order, why } => panic!("{order} in doubt without WAIT: {why}"),
            }
        }
    }
    sold
}

#[test]
fn a_bucketed_item_sells_exactly_its_stock_once_per_user() {
    let server = RedisServer::start();
    with_store(&server.url(), "bk", |s| async move {
        assert_eq!(
            s.put_item_buckets("hot", 10, 4, Some(5), None)
                .await
                .expect("put"),
            PutOutcome::Created
        );
        let fresh = s.get_item("hot").await.expect("get").expect("exists");
        assert_eq!(
            (fresh.stock, fresh.sold, fresh.remaining, fresh.price),
            (10, 0, 10, Some(5))
        );

        let sold = buy_twice_each(&s, "hot", 40).await;
        assert_eq!(
            sold.len(),
            10,
            "exactly the stock, although buckets ran dry in turn"
        );
        let item = s.get_item("hot").await.expect("get").expect("exists");
        assert_eq!((item.stock, item.sold, item.remaining), (10, 10, 0));
        assert_eq!(s.orders_stream_len("hot").await.expect("XLEN"), 10);
        let mut slots = std::collections::HashSet::new();
        for (user, order) in &sold {
            let o = s.get_order(order).await.expect("get").expect("stored");
            assert_eq!((o.item.as_str(), o.user.as_str()), ("hot", user.as_str()));
            slots.insert(order.split_once('~').expect("a slot in the id").0.to_owned());
        }
        assert!(slots.len() > 1, "orders live in their users' buckets: {slots:?}");
        // Sold: no more PUT, even of a bucket that sold nothing itself.
        assert_eq!(
            s.put_item_buckets("hot", 99, 2, None, None).await.expect("put"),
            PutOutcome::SaleStarted
        );
        assert!(
            s.put_item_buckets("x", 1, 0, None, None).await.is_err(),
            "0 buckets"
        );
        assert!(
            s.put_item_buckets("x", 1, 65, None, None).await.is_err(),
            "65 buckets"
        );
    });
}

#[test]
fn a_transfer_cut_after_its_first_step_loses_and_doubles_nothing() {
    let server = RedisServer::start();
    with_store(&server.url(), "xfer", |s| async move {
        // 2 units in each of two buckets.
        s.put_item_buckets("pair", 4, 2, None, None).await.expect("put");
        // Bucket 1 starts lending to bucket 0, and the lender "crashes" after step 1.
        let n = s.take("pair", 1, 0, "t1").await.expect("take");
        assert_eq!(n, 1, "half of bucket 1's 2 units, rounded up");
        assert_eq!(
            s.take("pair", 1, 0, "t1").await.expect("take again"),
            n,
            "the same transfer id takes once"
        );
        let key = s.bucket_key("pair", 1, "item");
        let left = s.cmd(&key, &["HGET", &key, "remaining"]).await.expect("HGET");
        assert_eq!(left.as_int(), Some(1), "bucket 1 gave one unit, not two");
        let item = s.get_item("pair").await.expect("get").expect("exists");
        assert_eq!(
            (item.sold, item.remaining),
            (0, 4),
            "a unit in transit is still for sale"
        );
        // Buyers from both buckets: the unit in transit is delivered by the first buyer that
        // needs to borrow, once.
        let users: Vec<usize> = (0..40).collect();
        assert!(users.iter().any(|i| bucket_of(&format!("user-{i}"), 2) == 0));
        assert!(users.iter().any(|i| bucket_of(&format!("user-{i}"), 2) == 1));
        let sold = buy_twice_each(&s, "pair", 40).await;
        assert_eq!(sold.len(), 4, "every unit sold once, the one in transit too");
        let item = s.get_item("pair").await.expect("get").expect("exists");
        assert_eq!((item.stock, item.sold, item.remaining), (4, 4, 0));
        s.settle("pair", 1)
            .await
            .expect("settle again: nothing left to do");
        let item = s.get_item("pair").await.expect("get").expect("exists");
        assert_eq!(
            (item.sold, item.remaining),
            (4, 0),
            "a second settle gives nothing"
        );
    });
}
