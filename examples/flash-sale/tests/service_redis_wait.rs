//! `--redis-wait-replicas`: a write that Redis ran but too few replicas acknowledged is
//! neither a success nor a refusal. Against one Redis without a replica and
//! `--redis-wait-replicas 1`, an item's `PUT` answers 503 `in_doubt` + `Retry-After` within
//! the deadline, with one bucket or several (201 once a replica is attached), and a buy
//! answers 503 `in_doubt` + `Retry-After` with its order id within the deadline; the order
//! reads back, the retry answers `already_bought` with it, the counter
//! `flash_sale_buys_total{outcome="in_doubt"}` counts it, and start-up warns. Once a replica
//! is attached, buys answer 200 again.
//!
//! No `redis-server` / `redis-cli` on PATH is a test failure, not a skip: CI installs them.

mod support_redis;
mod support_service;

use std::process::Command;
use std::time::{Duration, Instant};

use support_redis::{RedisServer, DURABLE};
use support_service::{assert_order, unique, Client, Config, Service, TempDir};

/// `flash_sale_buys_total{outcome="..."}` summed over cores.
fn buys_counted(client: &mut Client, outcome: &str) -> u64 {
    let label = format!("outcome=\"{outcome}\"");
    client
        .must_get("/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with("flash_sale_buys_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn a_buy_no_replica_acknowledged_is_in_doubt_and_reads_back() {
    let redis = RedisServer::start();
    let dir = TempDir::new("redis-wait");
    let mut config = Config::new(1, dir.path());
    config.store = Some(redis.url());
    config.prefix = Some(unique("fs-wait"));
    config.extra_args = ["--redis-wait-replicas", "1", "--redis-timeout", "1000"]
        .map(String::from)
        .to_vec();
    let service = Service::start(&config);
    let warned = service.stderr_until(|e| e.contains("--redis-wait-replicas is 1"));
    assert!(warned.contains("has 0 replicas"), "start-up warning: {warned}");
    let mut client = Client::new(service.addr());
    let item = unique("vase");
    // The item's write reaches the master but no replica: not reported as done (a failover
    // would lose it), so the admin is told to retry.
    let put = client.put_item(&item, 3);
    assert_eq!(put.status, 503, "{}", put.describe());
    assert_eq!(put.error().as_deref(), Some("in_doubt"), "{}", put.describe());
    assert!(put.header("retry-after").is_some(), "{}", put.describe());
    // The same for an item of several buckets: one answer within the deadline (not a
    // timeout of the whole call, which would also mark Redis failing), and Redis healthy.
    let asked = Instant::now();
    let put = client
        .put(
            &format!("/items/{}", unique("rug")),
            r#"{"stock": 8, "buckets": 4}"#,
        )
        .expect("PUT");
    let took = asked.elapsed();
    assert_eq!(
        (put.status, put.error().as_deref()),
        (503, Some("in_doubt")),
        "{}",
        put.describe()
    );
    assert!(took < Duration::from_millis(2000), "in doubt after {took:?}");
    let health = client.must_get("/healthz");
    assert_eq!(health.status, 200, "Redis answered: {}", health.describe());

    let asked = Instant::now();
    let resp = client.buy_once(&item, "ann").expect("buy");
    let took = asked.elapsed();
    assert_eq!(resp.status, 503, "{}", resp.describe());
    assert_eq!(resp.error().as_deref(), Some("in_doubt"), "{}", resp.describe());
    assert!(resp.header("retry-after").is_some(), "{}", resp.describe());
    // `in_doubt` itself says WAIT answered inside the deadline (past it the answer would
    // be `unavailable`); the bound here only adds this machine's scheduling slack.
    assert!(took < Duration::from_millis(2000), "in doubt after {took:?}");
    let order = resp
        .str_field("order")
        .unwrap_or_else(|| panic!("in_doubt without an order id: {}", resp.describe()));
    let detail = resp.str_field("detail").unwrap_or_default();
    assert!(detail.contains("unknown") && detail.contains(&order), "{detail}");

    // The master has it (no failover happened): readable, and the retry tells the truth.
    assert_order(&client.order(&order), &order, &item, "ann");
    let again = client.buy_once(&item, "ann").expect("retry");
    assert_eq!(
        (again.status, again.error().as_deref(), again.str_field("order")),
        (409, Some("already_bought"), Some(order.clone())),
        "{}",
        again.describe()
    );
    assert_eq!(buys_counted(&mut client, "in_doubt"), 1);
    assert_eq!(buys_counted(&mut client, "sold"), 0);

    // A replica attached: WAIT 1 is answered, buys are 200 again.
    let port = redis.port().to_string();
    let mut settings = DURABLE.to_vec();
    settings.extend(["--replicaof", "127.0.0.1", &port]);
    let replica = RedisServer::start_with(&settings);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // WAIT counts the replica once it is `online` and has acknowledged every write
        // (its acknowledged offset, in the master's INFO, has reached the master's).
        let info = Command::new("redis-cli")
            .args(["-p", &port, "INFO", "replication"])
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        let info = String::from_utf8_lossy(&info.stdout).into_owned();
        let master_offset = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("master_repl_offset:")?.parse::<u64>().ok());
        let acked = info
            .lines()
            .filter(|l| l.contains(&format!("port={},state=online", replica.port())))
            .find_map(|l| {
                l.trim()
                    .split(',')
                    .find_map(|f| f.strip_prefix("offset=")?.parse::<u64>().ok())
            });
        if matches!((acked, master_offset), (Some(a), Some(m)) if a >= m) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica is not online in 20 s: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // With a replica, an item's PUT is acknowledged.
    let put = client.put_item(&unique("lamp"), 3);
    assert_eq!(put.status, 201, "with a replica: {}", put.describe());
    let resp = client.buy_once(&item, "bob").expect("buy");
    assert_eq!(resp.status, 200, "with a replica: {}", resp.describe());
    assert_eq!(buys_counted(&mut client, "sold"), 1);
    drop(client);
    service.stop_clean();
}
