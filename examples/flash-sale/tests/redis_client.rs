//! The RESP client against a real `redis-server`: every reply type, error replies, a 1 MiB
//! value, pipelines, many tasks sharing one connection, dropped callers, a killed connection.

mod support_redis;

use std::io;
use std::rc::Rc;
use std::time::Duration;

use flash_sale::redis::{Client, RedisError, Value};
use ringcore_runtime::spawn_local;
use ringcore_runtime::time::timeout;
use ringcore_testkit::rt::one_core;
use support_redis::RedisServer;

fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

async fn round_trips(url: String) {
    let c = Client::connect(&url).await.expect("connect");
    // Run twice on one server (multishot and portable receive): start empty.
    c.cmd(&["FLUSHALL"]).await.expect("FLUSHALL");
    assert_eq!(
        c.cmd(&["SET", "k", "v"]).await.expect("SET"),
        Value::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["GET", "k"]).await.expect("GET"), bulk("v"));
    assert_eq!(c.cmd(&["GET", "missing"]).await.expect("GET"), Value::Nil);
    assert_eq!(
        c.cmd(&["INCRBY", "n", "-5"]).await.expect("INCRBY"),
        Value::Int(-5)
    );
    assert_eq!(
        c.cmd(&["SET", "empty", ""]).await.expect("SET"),
        Value::Simple("OK".into())
    );
    assert_eq!(
        c.cmd(&["GET", "empty"]).await.expect("GET"),
        Value::Bulk(Vec::new())
    );
    c.cmd(&["RPUSH", "l", "a", "b"]).await.expect("RPUSH");
    assert_eq!(
        c.cmd(&["LRANGE", "l", "0", "-1"]).await.expect("LRANGE"),
        Value::Array(vec![bulk("a"), bulk("b")])
    );

    // Error replies are errors that carry the server's message, and the connection goes on.
    let e = c.cmd(&["INCR", "k"]).await.expect_err("INCR on a string");
    let r = RedisError::of(&e).expect("a server error");
    assert_eq!(r.code(), "ERR");
    assert!(r.message().contains("not an integer"), "{r}");
    let e = c.cmd(&["LPUSH", "k", "x"]).await.expect_err("LPUSH on a string");
    assert_eq!(RedisError::of(&e).map(RedisError::code), Some("WRONGTYPE"));
    let e = c.cmd(&["NO-SUCH-COMMAND"]).await.expect_err("unknown command");
    assert!(e.to_string().contains("unknown command"), "{e}");
    assert_eq!(c.cmd(&["GET", "k"]).await.expect("GET after errors"), bulk("v"));

    // 1 MiB of every byte value comes back intact (many reads on the way in).
    let big: Vec<u8> = (0..1024 * 1024)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    c.cmd(&[&b"SET"[..], b"big", &big]).await.expect("SET big");
    assert_eq!(
        c.cmd(&["GET", "big"]).await.expect("GET big"),
        Value::Bulk(big.clone())
    );
    assert_eq!(
        c.cmd(&["STRLEN", "big"]).await.expect("STRLEN"),
        Value::Int(1 << 20)
    );

    // A pipeline: one write, replies in order, an error reply in the middle stays in place.
    let replies = c
        .pipeline(&[
            vec!["SET", "p", "1"],
            vec!["INCR", "p"],
            vec!["HSET", "p", "f", "v"],
            vec!["GET", "p"],
            vec!["MGET", "p", "missing", "k"],
        ])
        .await
        .expect("pipeline");
    assert_eq!(replies.len(), 5);
    assert_eq!(replies[0], Value::Simple("OK".into()));
    assert_eq!(replies[1], Value::Int(2));
    assert!(
        matches!(&replies[2], Value::Error(m) if m.starts_with("WRONGTYPE")),
        "{:?}",
        replies[2]
    );
    assert_eq!(replies[3], bulk("2"));
    assert_eq!(replies[4], Value::Array(vec![bulk("2"), Value::Nil, bulk("v")]));
    let none: [[&str; 1]; 0] = [];
    assert_eq!(
        c.pipeline(&none).await.expect("empty pipeline"),
        Vec::<Value>::new()
    );
}

#[test]
fn commands_and_replies_round_trip() {
    let server = RedisServer::start();
    for portable in [false, true] {
        let url = server.url();
        one_core(portable)
            .build()
            .expect("build")
            .run(move || round_trips(url.clone()))
            .expect("run");
    }
}

#[test]
fn many_tasks_share_one_connection_without_mixing_replies() {
    const TASKS: usize = 300;
    let server = RedisServer::start();
    let url = server.url();
    one_core(false)
        .build()
        .expect("build")
        .run(move || {
            let url = url.clone();
            async move {
                let c = Rc::new(Client::connect(&url).await.expect("connect"));
                let tasks: Vec<_> = (0..TASKS)
                    .map(|i| {
                        let c = c.clone();
                        spawn_local(async move {
                            // Each task's own key and value: a reply handed to the wrong task
                            // would show up as a foreign value.
                            let (k, v) = (format!("t{i}"), format!("value-{i}"));
                            c.cmd(&["SET", &k, &v]).await.expect("SET");
                            let n = c.cmd(&["INCR", "shared"]).await.expect("INCR");
                            let got = c.cmd(&["GET", &k]).await.expect("GET");
                            assert_eq!(got, bulk(&v), "task {i}");
                            n.as_int().expect("an integer")
                        })
                    })
                    .collect();
                let mut counts = Vec::new();
                for t in tasks {
                    counts.push(t.await.expect("task"));
                }
                counts.sort_unstable();
                let expected: Vec<i64> = (1..=TASKS as i64).collect();
                assert_eq!(counts, expected, "every INCR ran once and got its own reply");
            }
        })
        .expect("run");
}

#[test]
fn a_dropped_caller_does_not_shift_replies() {
    let server = RedisServer::start();
    let url = server.url();
    one_core(false)
        .build()
        .expect("build")
        .run(move || {
            let url = url.clone();
            async move {
                let c = Client::connect(&url).await.expect("connect");
                c.cmd(&["SET", "x", "start"]).await.expect("SET");
                for i in 0..10 {
                    // Queued, then abandoned before it was written: it is never sent.
                    let v = i.to_string();
                    let abandoned = timeout(Duration::ZERO, c.cmd(&["SET", "x", &v])).await;
                    assert!(abandoned.is_err(), "the zero timeout fires first");
                    assert_eq!(
                        c.cmd(&["GET", "x"]).await.expect("GET"),
                        bulk("start"),
                        "round {i}: an abandoned command that was never written must not run"
                    );
                    // Written, then abandoned while the server works on it (BLPOP answers nil
                    // after 100 ms): its late reply is read and thrown away, not handed to the
                    // next caller.
                    let abandoned = timeout(
                        Duration::from_millis(20),
                        c.cmd(&["BLPOP", "no-such-list", "0.1"]),
                    )
                    .await;
                    assert!(abandoned.is_err(), "BLPOP answers after 100 ms");
                    assert_eq!(
                        c.cmd(&["GET", "x"]).await.expect("GET"),
                        bulk("start"),
                        "round {i}"
                    );
                }
            }
        })
        .expect("run");
}

#[test]
fn a_killed_connection_fails_one_command_then_reconnects() {
    let server = RedisServer::start();
    let url = server.url();
    one_core(false)
        .build()
        .expect("build")
        .run(move || {
            let url = url.clone();
            async move {
                let victim = Client::connect(&url).await.expect("connect");
                let admin = Client::connect(&url).await.expect("connect");
                victim
                    .cmd(&["CLIENT", "SETNAME", "victim"])
                    .await
                    .expect("SETNAME");
                victim.cmd(&["SET", "k", "before"]).await.expect("SET");
                let list = admin.cmd(&["CLIENT", "LIST"]).await.expect("CLIENT LIST");
                let list = list.as_str().expect("text").to_owned();
                let id = list
                    .lines()
                    .find(|l| l.contains("name=victim"))
                    .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
                    .expect("the victim is listed")
                    .to_owned();
                assert_eq!(
                    admin.cmd(&["CLIENT", "KILL", "ID", &id]).await.expect("KILL"),
                    Value::Int(1),
                    "one connection killed"
                );
                let e = victim
                    .cmd(&["GET", "k"])
                    .await
                    .expect_err("the connection is gone");
                assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ),
                    "{e:?}"
                );
                assert_eq!(
                    victim.cmd(&["GET", "k"]).await.expect("reconnected"),
                    bulk("before")
                );
            }
        })
        .expect("run");
}

#[test]
fn connect_errors_name_the_problem() {
    let server = RedisServer::start();
    let url = server.url();
    drop(server); // nothing listens on its port any more
    one_core(false)
        .build()
        .expect("build")
        .run(move || {
            let url = url.clone();
            async move {
                let e = Client::connect(&url).await.expect_err("nothing listens");
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
                assert!(e.to_string().contains("cannot connect to 127.0.0.1:"), "{e}");
                let e = Client::connect("redis://127.0.0.1:6379/3")
                    .await
                    .expect_err("database");
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            }
        })
        .expect("run");
}
