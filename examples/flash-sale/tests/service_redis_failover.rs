//! Two `flash-sale serve` instances on a private Redis Cluster of 3 masters, each with a
//! replica: while a crowd buys a hot item (4 buckets), the master holding its bucket 0 is
//! replaced by its replica (`CLUSTER FAILOVER`, the manual failover that waits until the
//! replica has every write). The instances follow `MOVED` to the new master; exactly the
//! stock is sold, once per user, every 200 readable, every answer 200, 409 or 503.
//!
//! No `redis-server` / `redis-cli` on PATH is a test failure, not a skip: CI installs them.

mod support_cluster;
mod support_sale;
mod support_service;

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread;

use support_cluster::RedisCluster;
use support_sale::{check, crowd, put_buckets, services};
use support_service::{unique, TempDir};

#[test]
fn a_master_replaced_by_its_replica_during_the_sale_loses_and_doubles_nothing() {
    let cluster = RedisCluster::start_with(1);
    let prefix = unique("fs-fo");
    let dirs = [TempDir::new("failover-a"), TempDir::new("failover-b")];
    let svcs = services(&cluster, &dirs, &prefix);
    let addrs = [svcs[0].addr(), svcs[1].addr()];

    let hot = unique("hot");
    let stock = 40;
    put_buckets(addrs[0], &hot, stock, 4);
    let slot = cluster.slot(&format!("{{{prefix}:{hot}}}:item"));
    let master = cluster.owner(slot);
    let replica = cluster.replica_of(master);
    let items = vec![hot.clone()];
    let mut attempts = crowd(addrs, &items, 30);
    let (go, wait) = mpsc::channel::<()>();
    let buyers = thread::spawn(move || {
        wait.recv().expect("the failover began");
        crowd(addrs, &items, 120)
    });
    go.send(()).expect("the crowd waits");
    cluster.failover(replica, slot);
    attempts.extend(buyers.join().expect("crowd"));
    assert_eq!(cluster.owner(slot), replica, "the replica serves the slot now");
    check(addrs, &HashMap::from([(hot, stock)]), &attempts);
    drop(svcs);
}
