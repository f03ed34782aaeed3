//! The Redis client and store when the server stalls (SIGSTOP) or could lose writes: every
//! waiter gets an error within the deadline, the client finds the server again once it is
//! back, a buy left in doubt by a timeout is answered truthfully by its retry, and
//! `durability()` reads the server's settings.

mod support_redis;

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flash_sale::redis::{BuyOutcome, Client, Durability, RedisStore, Value};
use ringcore_runtime::time::sleep;
use ringcore_runtime::{spawn_local, Runtime};
use support_redis::RedisServer;

const DEADLINE: Duration = Duration::from_millis(200);
/// What a noisy 2-core machine may add to a deadline (scheduling, timer granularity).
const SLACK: Duration = Duration::from_millis(150);

fn run_one_core<F, Fut>(f: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    Runtime::builder()
        .core_count(1)
        .handle_signals(false)
        .build()
        .expect("build runtime")
        .run(f)
        .expect("run");
}

/// Retries `op` (bounded: 5 s) while it fails; returns its first success and how long that
/// took.
async fn until_ok<T, Fut: std::future::Future<Output = io::Result<T>>>(
    what: &str,
    op: impl Fn() -> Fut,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        match op().await {
            Ok(v) => return (v, started.elapsed()),
            Err(e) if started.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{what}: still failing after 5 s: {e}"),
        }
    }
}

#[test]
fn a_stalled_server_fails_every_waiter_within_the_deadline_then_is_found_again() {
    const TASKS: usize = 50;
    let server = Arc::new(RedisServer::start());
    let url = server.url();
    run_one_core(move || {
        let (server, url) = (server.clone(), url.clone());
        async move {
            let c = Rc::new(Client::connect_with(&url, DEADLINE).await.expect("connect"));
            assert_eq!(c.deadline(), DEADLINE);
            c.cmd(&["SET", "k", "before"]).await.expect("SET");

            server.stop();
            // Many callers pipelined on the stalled connection, then more behind them while the
            // client drops it and reconnects: each one gets an error within its deadline.
            let mut waits = Vec::new();
            for round in 0..3 {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|i| {
                        let c = c.clone();
                        spawn_local(async move {
                            let started = Instant::now();
                            let r = c.cmd(&["INCR", &format!("n{i}")]).await;
                            (r, started.elapsed())
                        })
                    })
                    .collect();
                for t in tasks {
                    let (r, took) = t.await.expect("task");
                    let e = r.expect_err("the server is stopped");
                    assert!(
                        matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::NotConnected),
                        "round {round}: {e:?}"
                    );
                    waits.push(took);
                }
            }
            let longest = waits.iter().max().copied().unwrap_or_default();
            eprintln!("longest wait on the stalled server: {longest:?} (deadline {DEADLINE:?})");
            assert!(
                longest <= DEADLINE + SLACK,
                "a caller waited {longest:?} on a stalled server (deadline {DEADLINE:?})"
            );

            server.resume();
            let (v, took) = until_ok("GET after SIGCONT", || c.cmd(&["GET", "k"])).await;
            assert_eq!(v, Value::Bulk(b"before".to_vec()));
            eprintln!("found again {took:?} after SIGCONT");
            assert!(
                took <= flash_sale::redis::client::BACKOFF_MAX + DEADLINE + SLACK,
                "the client took {took:?} to find the server again"
            );
            // Replies are in step again: each caller gets its own.
            for i in 0..20 {
                let v = format!("v{i}");
                c.cmd(&["SET", "k", &v]).await.expect("SET");
                assert_eq!(
                    c.cmd(&["GET", "k"]).await.expect("GET"),
                    Value::Bulk(v.into_bytes())
                );
            }
        }
    });
}

#[test]
fn a_buy_in_doubt_is_answered_truthfully_by_its_retry() {
    let server = Arc::new(RedisServer::start());
    let url = server.url();
    run_one_core(move || {
        let (server, url) = (server.clone(), url.clone());
        async move {
            let s = RedisStore::connect_with(&url, "doubt", DEADLINE)
                .await
                .expect("connect");
            s.put_item("lamp", 3, None, None).await.expect("put");

            // Written to a stalled server: the caller times out, the script runs later.
            server.stop();
            let e = s
                .buy("lamp", "alice", "first", 1)
                .await
                .expect_err("the server is stopped");
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
            server.resume();
            sleep(Duration::from_millis(300)).await;

            // The retry (a new order id, as the service makes) learns the first attempt went
            // through, and no second unit is sold.
            let (o, _) = until_ok("retry", || s.buy("lamp", "alice", "retry", 2)).await;
            assert_eq!(
                o,
                BuyOutcome::AlreadyBought {
                    order: "first".into()
                }
            );
            let (o, _) = until_ok("retry again", || s.buy("lamp", "alice", "again", 3)).await;
            assert_eq!(
                o,
                BuyOutcome::AlreadyBought {
                    order: "first".into()
                }
            );
            let item = s.get_item("lamp").await.expect("get").expect("exists");
            assert_eq!((item.sold, item.remaining), (1, 2), "one unit for alice");
            assert_eq!(s.orders_stream_len("lamp").await.expect("XLEN"), 1);
            let order = s.get_order("first").await.expect("get").expect("stored");
            assert_eq!(order.user, "alice");
            assert_eq!(s.get_order("retry").await.expect("get"), None);

            // A first attempt that never ran: the retry buys.
            let (o, _) = until_ok("bob", || s.buy("lamp", "bob", "bob-1", 4)).await;
            assert_eq!(
                o,
                BuyOutcome::Bought {
                    order: "bob-1".into()
                }
            );
        }
    });
}

#[test]
fn durability_reads_the_servers_settings() {
    let cases: Vec<(Vec<&str>, Durability)> = vec![
        (support_redis::DURABLE.to_vec(), Durability::Durable),
        (
            vec!["--appendonly", "no"],
            Durability::Lossy {
                appendonly: "no".into(),
                appendfsync: "everysec".into(),
            },
        ),
        (
            vec!["--appendonly", "yes", "--appendfsync", "everysec"],
            Durability::Lossy {
                appendonly: "yes".into(),
                appendfsync: "everysec".into(),
            },
        ),
    ];
    for (settings, expected) in cases {
        let server = RedisServer::start_with(&settings);
        let url = server.url();
        let expected2 = expected.clone();
        run_one_core(move || {
            let (url, expected) = (url.clone(), expected2.clone());
            async move {
                let s = RedisStore::connect(&url, "dur").await.expect("connect");
                assert_eq!(s.durability().await.expect("durability"), expected);
            }
        });
    }
    // CONFIG renamed away: the store says it cannot tell.
    let server = RedisServer::start_with(&["--rename-command", "CONFIG", "CONFIG-HIDDEN-FOR-TEST"]);
    let url = server.url();
    run_one_core(move || {
        let url = url.clone();
        async move {
            let s = RedisStore::connect(&url, "dur").await.expect("connect");
            match s.durability().await.expect("durability") {
                Durability::Unknown { why } => {
                    assert!(why.contains("CONFIG GET appendonly was refused"), "{why}")
                }
                other => panic!("CONFIG is renamed, yet: {other:?}"),
            }
        }
    });
}
