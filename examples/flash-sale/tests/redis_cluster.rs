//! `RedisStore` on a private 3-master Redis Cluster: the redirections one at a time. While a
//! slot is being migrated and an item's keys are already on the target, a read is answered
//! through `ASK` (+ `ASKING`), and a buy (which creates a key on neither side yet) gets
//! `TRYAGAIN` until the move ends; once the slot is given to the target, the client's stale
//! map meets `MOVED`, follows it, and sells.
//!
//! No `redis-server` / `redis-cli` on PATH is a test failure, not a skip: CI installs them.

mod support_cluster;

use std::sync::{Arc, Mutex};

use flash_sale::redis::{Backend, BuyOutcome, PutOutcome, RedisStore};
use ringcore_runtime::Runtime;
use support_cluster::{cli, RedisCluster};

#[test]
fn reads_follow_ask_during_a_move_and_buys_follow_moved_after_it() {
    let cluster = Arc::new(RedisCluster::start());
    let url = cluster.url();
    let c = cluster.clone();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let out = log.clone();
    Runtime::builder()
        .core_count(1)
        .handle_signals(false)
        .build()
        .expect("runtime")
        .run(move || {
            let (url, c, out) = (url.clone(), c.clone(), out.clone());
            async move {
                let s = RedisStore::connect(&url, "cl").await.expect("connect");
                let Backend::Cluster(client) = s.backend().clone() else {
                    panic!("a redis-cluster:// URL gives a cluster backend")
                };
                assert_eq!(client.masters().len(), 3, "three masters in the slot map");
                assert_eq!(
                    s.put_item("lamp", 3, None, None).await.expect("put"),
                    PutOutcome::Created
                );
                let tag = s.bucket_tag("lamp", 0);
                let slot = c.slot(&tag);
                let from = c.owner(slot);
                let to = c
                    .nodes
                    .iter()
                    .map(|n| n.port)
                    .find(|p| *p != from)
                    .expect("another");
                let (from_id, to_id) = (cli(from, &["CLUSTER", "MYID"]), cli(to, &["CLUSTER", "MYID"]));
                let sl = slot.to_string();
                cli(to, &["CLUSTER", "SETSLOT", &sl, "IMPORTING", &from_id]);
                cli(from, &["CLUSTER", "SETSLOT", &sl, "MIGRATING", &to_id]);
                let key = s.item_key("lamp");
                let port = to.to_string();
                cli(from, &["MIGRATE", "127.0.0.1", &port, &key, "0", "5000"]);

                // The item's hash is on the target now: the source answers ASK.
                let before = client.redirects();
                let item = s.get_item("lamp").await.expect("get through ASK");
                assert_eq!(item.map(|i| (i.stock, i.sold)), Some((3, 0)));
                assert!(client.redirects() > before, "the read was redirected");
                // A buy would create keys on a slot in motion: TRYAGAIN, then an error (the
                // service answers 503), never a sale on the wrong node.
                let e = s.buy("lamp", "ann", "o1", 1).await.expect_err("slot in motion");
                out.lock().expect("log").push(format!("buy during the move: {e}"));

                // The move ends; this client still maps the slot to the source: MOVED.
                for n in &c.nodes {
                    cli(n.port, &["CLUSTER", "SETSLOT", &sl, "NODE", &to_id]);
                }
                let before = client.redirects();
                let o = s.buy("lamp", "ann", "o2", 2).await.expect("buy after the move");
                assert!(matches!(o, BuyOutcome::Bought { .. }), "{o:?}");
                assert!(client.redirects() > before, "the buy followed MOVED");
                let item = s.get_item("lamp").await.expect("get").expect("exists");
                assert_eq!((item.sold, item.remaining), (1, 2));
                let BuyOutcome::Bought { order } = o else {
                    unreachable!()
                };
                let found = s.get_order(&order).await.expect("get order").expect("stored");
                assert_eq!(found.user, "ann");
            }
        })
        .expect("run");
    for line in log.lock().expect("log").iter() {
        eprintln!("{line}");
    }
}
