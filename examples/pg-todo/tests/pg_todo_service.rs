//! pg-todo against a real PostgreSQL started by the test (Debian package `postgresql`):
//! CRUD over HTTP, many concurrent requests, the database killed and restarted, frozen and
//! thawed, and absent at start-up. Every wait is bounded.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{free_port, json, App, Postgres};

/// The deadlines the service is started with.
const CONNECT_MS: u64 = 500;
const QUERY_MS: u64 = 500;
/// The most a request may take while the database is down or frozen: one connect plus one
/// query deadline, and scheduling slack for a shared CI machine.
const OUTAGE_BOUND: Duration = Duration::from_millis(CONNECT_MS + QUERY_MS + 1500);
/// How long after the database is back the service must serve again.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

fn start_app(pg: &Postgres) -> App {
    App::start(&[
        "--cores",
        "2",
        "--database-url",
        &pg.url(),
        "--connect-timeout",
        &CONNECT_MS.to_string(),
        "--query-timeout",
        &QUERY_MS.to_string(),
    ])
}

fn post_todo(app: &App, title: &str) -> i64 {
    let r = app.request("POST", "/todos", Some(&format!(r#"{{"title":"{title}"}}"#)));
    assert_eq!(r.status, 201, "{}", r.text());
    json(&r)["id"].as_i64().expect("an id")
}

/// Retries `GET path` until it answers 200, within [`RECOVERY_BOUND`].
fn wait_served(app: &App, path: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        let r = app.request("GET", path, None);
        if r.status == 200 {
            return t0.elapsed();
        }
        assert_eq!(r.status, 503, "while recovering: {}", r.text());
        assert!(
            t0.elapsed() < RECOVERY_BOUND,
            "not served again within {RECOVERY_BOUND:?}: {}\nserver log:\n{}",
            r.text(),
            app.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that `GET path` answers 503 with `Retry-After` within [`OUTAGE_BOUND`].
fn assert_unavailable(app: &App, path: &str) {
    let t0 = Instant::now();
    let r = app.request("GET", path, None);
    let took = t0.elapsed();
    assert_eq!(r.status, 503, "{path} during the outage: {}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"), "{path}: {}", r.head_raw);
    assert!(
        took < OUTAGE_BOUND,
        "{path} took {took:?} (bound {OUTAGE_BOUND:?})"
    );
}

#[test]
fn crud_over_http() {
    let pg = Postgres::start();
    let app = start_app(&pg);

    let h = app.request("GET", "/healthz", None);
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(json(&h)["database"], "up");

    let r = app.request("POST", "/todos", Some(r#"{"title":"buy milk"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let created = json(&r);
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["title"], "buy milk");
    assert_eq!(created["done"], false);
    assert_eq!(r.header("location"), Some(format!("/todos/{id}").as_str()));

    let r = app.request("GET", &format!("/todos/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r), created);

    let r = app.request("PATCH", &format!("/todos/{id}"), Some(r#"{"done":true}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["done"], true);
    assert_eq!(json(&r)["title"], "buy milk", "PATCH without a title keeps it");

    let second = post_todo(&app, "walk the dog");
    let r = app.request("GET", "/todos", None);
    assert_eq!(r.status, 200);
    let list = json(&r);
    let ids: Vec<i64> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .collect();
    assert_eq!(ids, vec![id, second], "listed in id order");
    let r = app.request("GET", "/todos?limit=1", None);
    assert_eq!(json(&r).as_array().map(Vec::len), Some(1));

    let r = app.request("DELETE", &format!("/todos/{id}"), None);
    assert_eq!(r.status, 204, "{}", r.text());
    let r = app.request("GET", &format!("/todos/{id}"), None);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let r = app.request("DELETE", &format!("/todos/{id}"), None);
    assert_eq!(r.status, 404);

    // What the client gets wrong is a 4xx, not a database error.
    assert_eq!(app.request("POST", "/todos", Some(r#"{"title":""}"#)).status, 400);
    assert_eq!(app.request("POST", "/todos", Some(r#"{"nope":1}"#)).status, 400);
    assert_eq!(app.request("GET", "/todos/abc", None).status, 400);
    assert_eq!(app.request("GET", "/todos?limit=0", None).status, 400);
}

#[test]
fn concurrent_requests_over_several_connections() {
    const CONNS: usize = 8;
    const PER_CONN: usize = 40;
    let pg = Postgres::start();
    let app = start_app(&pg);
    let addr = app.addr.clone();
    let threads: Vec<_> = (0..CONNS)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut conn = support::Conn::open(&addr);
                let mut ids = Vec::new();
                for i in 0..PER_CONN {
                    let body = format!(r#"{{"title":"c{c} n{i}"}}"#);
                    let r = conn.request("POST", "/todos", Some(&body));
                    assert_eq!(r.status, 201, "{}", r.text());
                    let id = json(&r)["id"].as_i64().expect("id");
                    // Read it back on the same connection (it may be another core's
                    // connection to the database that wrote it: the row is committed).
                    let r = conn.request("GET", &format!("/todos/{id}"), None);
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(json(&r)["title"], format!("c{c} n{i}"));
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    for t in threads {
        for id in t.join().expect("client thread") {
            assert!(all.insert(id), "id {id} given twice");
        }
    }
    assert_eq!(all.len(), CONNS * PER_CONN);
    let r = app.request("GET", "/todos?limit=1000", None);
    assert_eq!(r.status, 200);
    let listed = json(&r);
    let listed: HashSet<i64> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .collect();
    assert_eq!(listed, all, "every created row is listed, nothing else");
}

#[test]
fn database_killed_then_restarted() {
    outage_then_restart(libc::SIGQUIT);
}

#[test]
fn database_fast_shutdown_then_restarted() {
    outage_then_restart(libc::SIGINT);
}

/// Stops the database with `sig` mid-run (SIGQUIT: immediate, like a crash; SIGINT: fast,
/// sessions terminated with an error first), then starts it again on the same data.
fn outage_then_restart(sig: i32) {
    let mut pg = Postgres::start();
    let app = start_app(&pg);
    let id = post_todo(&app, "survives the outage");

    pg.stop(sig);
    // Every request is answered 503 + Retry-After within the bound, on both cores' broken
    // connections and then on the failing reconnects.
    for _ in 0..6 {
        assert_unavailable(&app, &format!("/todos/{id}"));
    }
    let h = app.request("GET", "/healthz", None);
    assert_eq!(h.status, 503, "{}", h.text());
    assert_eq!(h.header("retry-after"), Some("1"));
    assert_eq!(json(&h)["database"], "down");
    assert!(
        json(&h)["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        h.text()
    );

    pg.spawn();
    wait_served(&app, &format!("/todos/{id}"));
    // Both cores reconnect: a few requests on new connections land on each.
    for _ in 0..10 {
        wait_served(&app, "/healthz");
    }
    let r = app.request("GET", &format!("/todos/{id}"), None);
    assert_eq!(json(&r)["title"], "survives the outage");
    post_todo(&app, "after the outage");
}

#[test]
fn database_frozen_answers_within_the_deadline() {
    let pg = Postgres::start();
    let app = start_app(&pg);
    let id = post_todo(&app, "frozen");

    // SIGSTOP: the connections stay open and nothing answers; only the deadlines end a call.
    pg.freeze();
    for _ in 0..4 {
        assert_unavailable(&app, &format!("/todos/{id}"));
    }
    pg.thaw();
    wait_served(&app, &format!("/todos/{id}"));
}

#[test]
fn database_absent_at_start_is_a_clear_error() {
    let port = free_port();
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pg-todo"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--cores",
            "2",
            "--connect-timeout",
            "500",
        ])
        .args([
            "--database-url",
            &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ])
        .output()
        .expect("run pg-todo");
    assert!(t0.elapsed() < Duration::from_secs(20), "took {:?}", t0.elapsed());
    assert!(!out.status.success(), "exit status {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot use the database postgres@127.0.0.1:{port}/postgres"
        )) && stderr.contains("refused"),
        "stderr: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it must not listen without its database"
    );
}
