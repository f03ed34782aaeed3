//! Bad input to `flash-sale serve` (started with `--admin-token`): each malformed or
//! unauthorised request gets its status, and none of them writes to the journal or changes
//! an item, neither right away nor after a restart.

mod support_service;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use support_service::{
    assert_order, journal_sizes, outcome, read_response, unique, Client, Config, ItemState, Outcome,
    Response, Service, TempDir,
};

/// `POST path` with a body of `len` bytes, sent the way a careful client sends a large body:
/// the head first, then (only if no answer came within 2 s) the body. A server that refuses
/// the size from the head answers at once; one that reads the body first gets it.
fn post_large(addr: SocketAddr, path: &str, len: usize) -> Response {
    let mut body = b"{\"user\":\"".to_vec();
    body.resize(len - 2, b'a');
    body.extend_from_slice(b"\"}");
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    (&stream).write_all(head.as_bytes()).expect("send head");
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    match read_response(&mut reader) {
        Ok(resp) => resp,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            // No early answer: send the body (the server may stop reading and close; that is
            // its right, so write errors are ignored) and read the answer.
            let _ = (&stream).write_all(&body);
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            read_response(&mut reader).unwrap_or_else(|e| panic!("POST {path} ({len} bytes): {e}"))
        }
        Err(e) => panic!("POST {path} ({len} bytes), head only: {e}"),
    }
}

fn item_state(client: &mut Client, item: &str) -> ItemState {
    let resp = client.must_get(&format!("/items/{item}"));
    assert_eq!(resp.status, 200, "GET /items/{item}: {}", resp.describe());
    ItemState::from_json(&resp.json())
}

fn expect(resp: Response, status: u16, error: Option<&str>, what: &str) {
    assert_eq!(resp.status, status, "{what}: {}", resp.describe());
    if let Some(error) = error {
        assert_eq!(
            resp.error().as_deref(),
            Some(error),
            "{what}: error field: {}",
            resp.describe()
        );
    }
}

#[test]
fn bad_requests_get_their_status_and_write_nothing() {
    let token = unique("s3cret");
    let dir = TempDir::new("input");
    let mut config = Config::new(2, dir.path());
    config.admin_token = Some(token.clone());
    let service = Service::start(&config);
    let addr = service.addr();

    let mut admin = Client::with_admin_token(addr, &token);
    let mut user = Client::new(addr);
    expect(user.must_get("/healthz"), 200, None, "GET /healthz");
    let metrics = user.must_get("/metrics");
    assert_eq!(metrics.status, 200, "GET /metrics: {}", metrics.describe());
    assert!(
        metrics.text().contains("# TYPE "),
        "GET /metrics is not Prometheus text: {}",
        metrics.describe()
    );
    let sold_item = unique("bag");
    let fresh_item = unique("hat");
    let put = admin.put_item(&sold_item, 20);
    assert_eq!(put.status, 201, "create {sold_item}: {}", put.describe());
    let put = admin.put_item(&fresh_item, 5);
    assert_eq!(put.status, 201, "create {fresh_item}: {}", put.describe());
    // Buying needs no admin token.
    let orders: Vec<(String, String)> = (0..3)
        .map(|i| {
            let u = format!("good-{i}");
            let resp = user.buy(&sold_item, &u).expect("buy");
            match outcome(&resp, &sold_item, &u) {
                Outcome::Ordered(order) => (u, order),
                other => panic!("valid buy by {u}: {other:?}"),
            }
        })
        .collect();

    // Let GET caches expire and any write settle, then take the baseline.
    thread::sleep(Duration::from_millis(300));
    let journals_before = journal_sizes(dir.path());
    assert!(
        journals_before.values().any(|&len| len > 16),
        "no journal record in {} after 2 items and 3 orders: {journals_before:?}",
        dir.path().display()
    );
    let sold_before = item_state(&mut user, &sold_item);
    let fresh_before = item_state(&mut user, &fresh_item);
    assert_eq!(
        (sold_before.stock, sold_before.sold, sold_before.remaining),
        (20, 3, 17)
    );
    assert_eq!(
        (fresh_before.stock, fresh_before.sold, fresh_before.remaining),
        (5, 0, 5)
    );

    let buy_path = format!("/items/{sold_item}/buy");
    let bad_buys: [(&str, &str); 5] = [
        ("{\"user\":", "truncated JSON"),
        ("not json at all", "not JSON"),
        ("{}", "no user"),
        ("{\"name\":\"good-9\"}", "no user field"),
        ("", "empty body"),
    ];
    for (body, what) in bad_buys {
        let resp = user.post(&buy_path, body).expect("bad buy");
        expect(
            resp,
            400,
            Some("bad_request"),
            &format!("buy with {what} {body:?}"),
        );
    }
    let resp = post_large(addr, &buy_path, 2 * 1024 * 1024);
    expect(resp, 413, None, "buy with a 2 MiB body");

    let resp = user.buy_once("no-such-item", "good-9").expect("buy unknown");
    expect(resp, 404, Some("unknown_item"), "buy of an unknown item");
    expect(
        user.must_get("/items/no-such-item"),
        404,
        None,
        "GET unknown item",
    );
    expect(
        user.must_get("/orders/no-such-order"),
        404,
        None,
        "GET unknown order",
    );

    let fresh_path = format!("/items/{fresh_item}");
    let new_path = format!("/items/{}", unique("never"));
    let bad_stock = [
        ("{\"stock\": -5}", "negative stock"),
        ("{\"stock\": 1.5}", "fractional stock"),
        ("{\"stock\": \"7\"}", "stock as a string"),
        ("{\"stock\": null}", "null stock"),
        ("{\"stock\": 7", "truncated JSON"),
    ];
    for path in [&fresh_path, &new_path] {
        for (body, what) in bad_stock {
            let resp = admin.put(path, body).expect("bad put");
            expect(resp, 400, None, &format!("PUT {path} with {what} {body:?}"));
        }
    }
    let no_token = user
        .put(&fresh_path, "{\"stock\": 9}")
        .expect("put without token");
    expect(no_token, 401, None, "PUT an item without X-Admin-Token");
    let no_token = user.put(&new_path, "{\"stock\": 9}").expect("put without token");
    expect(no_token, 401, None, "PUT a new item without X-Admin-Token");
    let mut wrong = Client::with_admin_token(addr, &format!("{token}x"));
    let resp = wrong.put(&fresh_path, "{\"stock\": 9}").expect("put wrong token");
    expect(resp, 401, None, "PUT an item with a wrong X-Admin-Token");
    let resp = wrong.put(&new_path, "{\"stock\": 9}").expect("put wrong token");
    expect(resp, 401, None, "PUT a new item with a wrong X-Admin-Token");

    // Nothing written, nothing changed.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        journal_sizes(dir.path()),
        journals_before,
        "bad requests changed the journal files"
    );
    let check_state = |client: &mut Client, when: &str| {
        assert_eq!(item_state(client, &sold_item), sold_before, "{sold_item} {when}");
        assert_eq!(
            item_state(client, &fresh_item),
            fresh_before,
            "{fresh_item} {when}"
        );
        expect(
            client.must_get(&new_path),
            404,
            None,
            &format!("{new_path} {when}"),
        );
        expect(
            client.must_get("/items/no-such-item"),
            404,
            None,
            &format!("unknown item {when}"),
        );
        for (u, order) in &orders {
            assert_order(&client.order(order), order, &sold_item, u);
        }
    };
    check_state(&mut user, "after the bad requests");

    drop((admin, user, wrong));
    service.stop_clean();
    let service = Service::start(&config);
    let mut client = Client::new(service.addr());
    check_state(&mut client, "after a restart");
    // The user named in the rejected buys never bought anything.
    let resp = client.buy(&sold_item, "good-9").expect("buy");
    assert!(
        matches!(outcome(&resp, &sold_item, "good-9"), Outcome::Ordered(_)),
        "good-9 (only in rejected requests) buys: {}",
        resp.describe()
    );
    drop(client);
    service.stop_clean();
}

/// A JSON array is not the object the contract asks for (`{"user": ...}`, `{"stock": N}`),
/// so it has no user (no stock): 400, and nothing is bought or created.
#[test]
fn json_array_bodies_are_bad_requests() {
    let token = unique("s3cret");
    let dir = TempDir::new("input-array");
    let mut config = Config::new(1, dir.path());
    config.admin_token = Some(token.clone());
    let service = Service::start(&config);
    let addr = service.addr();
    let mut admin = Client::with_admin_token(addr, &token);
    let mut user = Client::new(addr);
    let item = unique("scarf");
    let put = admin.put_item(&item, 5);
    assert_eq!(put.status, 201, "create {item}: {}", put.describe());

    let resp = user
        .post(&format!("/items/{item}/buy"), "[\"arr-user\"]")
        .expect("buy with an array body");
    let answer = resp.describe();
    // Whatever the answer, arr-user must not hold an order afterwards unless it was a 200.
    let follow_up = user.buy(&item, "arr-user").expect("buy");
    assert_eq!(
        resp.status,
        400,
        "buy with the body [\"arr-user\"] (an array, no \"user\" field): {answer}; \
         a proper buy by arr-user afterwards: {}",
        follow_up.describe()
    );
    assert_eq!(resp.error().as_deref(), Some("bad_request"), "{answer}");
    assert_eq!(
        follow_up.status,
        200,
        "arr-user buys properly: {}",
        follow_up.describe()
    );

    let never = unique("never");
    let resp = admin
        .put(&format!("/items/{never}"), "[7]")
        .expect("put with an array body");
    let answer = resp.describe();
    let after = user.must_get(&format!("/items/{never}"));
    assert_eq!(
        resp.status,
        400,
        "PUT /items/{never} with the body [7] (an array, no \"stock\" field): {answer}; \
         GET afterwards: {}",
        after.describe()
    );
    assert_eq!(
        after.status,
        404,
        "item from a rejected PUT: {}",
        after.describe()
    );

    drop((admin, user));
    service.stop_clean();
}

/// `PUT` on an existing item changes its stock (200) until the first sale, then answers
/// 409 sale_started and leaves it alone; the state survives a restart.
#[test]
fn put_changes_stock_until_the_sale_starts() {
    let dir = TempDir::new("input-put");
    let config = Config::new(2, dir.path());
    let service = Service::start(&config);
    let mut client = Client::new(service.addr());
    let item = unique("lamp");

    expect(client.put_item(&item, 10), 201, None, "create");
    expect(
        client.put_item(&item, 3),
        200,
        None,
        "change the stock before any sale",
    );
    let state = client.item_until(&item, |s| s.stock == 3);
    assert_eq!(
        (state.stock, state.sold, state.remaining),
        (3, 0, 3),
        "after the change"
    );

    let resp = client.buy(&item, "first").expect("buy");
    assert!(
        matches!(outcome(&resp, &item, "first"), Outcome::Ordered(_)),
        "first buy: {}",
        resp.describe()
    );
    expect(
        client.put_item(&item, 50),
        409,
        Some("sale_started"),
        "change the stock after a sale",
    );
    let state = client.item_until(&item, |s| s.sold == 1);
    assert_eq!(
        (state.stock, state.sold, state.remaining),
        (3, 1, 2),
        "after the refused change"
    );

    drop(client);
    service.stop_clean();
    let service = Service::start(&config);
    let mut client = Client::new(service.addr());
    let state = client.item_until(&item, |_| true);
    assert_eq!(
        (state.stock, state.sold, state.remaining),
        (3, 1, 2),
        "after a restart"
    );
    expect(
        client.put_item(&item, 50),
        409,
        Some("sale_started"),
        "change the stock after a sale, after a restart",
    );
    drop(client);
    // SIGINT (Ctrl-C) stops it as cleanly as SIGTERM.
    service.stop_clean_with(libc::SIGINT);
}

/// One user firing buys back to back is held to the per-user rate (default 10/s, burst 10):
/// 429 with Retry-After, while another user goes through meanwhile.
#[test]
fn one_user_hammering_is_rate_limited() {
    let dir = TempDir::new("input-rate");
    let service = Service::start(&Config::new(1, dir.path()));
    let mut client = Client::new(service.addr());
    let item = unique("pen");
    expect(client.put_item(&item, 100), 201, None, "create");

    let mut statuses = Vec::new();
    for _ in 0..40 {
        let resp = client.buy_once(&item, "hammer").expect("buy");
        if resp.status == 429 {
            assert!(
                resp.header("retry-after").is_some(),
                "429 without Retry-After: {:?}",
                resp.headers
            );
        }
        statuses.push(resp.status);
    }
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(ok, 1, "one order for the hammering user: {statuses:?}");
    assert!(
        statuses.contains(&429),
        "40 back-to-back buys by one user, none rate limited: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 409, 429].contains(s)),
        "unexpected statuses: {statuses:?}"
    );
    let resp = client.buy_once(&item, "bystander").expect("buy");
    assert_eq!(resp.status, 200, "another user meanwhile: {}", resp.describe());
    drop(client);
    service.stop_clean();
}

/// The per-user limit holds across cores: one user's buys spread over 16 connections (which
/// the kernel spreads over both cores) for 2 s get no more than the configured rate (5/s,
/// burst 5), where a per-core limit would let about twice as many through.
#[test]
fn the_per_user_limit_is_exact_across_cores() {
    const RATE: f64 = 5.0;
    const BURST: f64 = 5.0;
    const SPAN: Duration = Duration::from_secs(2);
    let dir = TempDir::new("input-rate-cores");
    let mut config = Config::new(2, dir.path());
    config.extra_args = vec!["--user-rate".into(), "5".into()];
    let service = Service::start(&config);
    let mut client = Client::new(service.addr());
    let item = unique("pen");
    expect(client.put_item(&item, 100), 201, None, "create");
    let addr = service.addr();
    let start = std::time::Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let item = item.clone();
            thread::spawn(move || {
                let mut client = Client::new(addr);
                let mut through = 0u32;
                let mut limited = 0u32;
                while start.elapsed() < SPAN {
                    let resp = client.buy_once(&item, "spreader").expect("buy");
                    match resp.status {
                        200 | 409 => through += 1,
                        429 => {
                            assert!(resp.header("retry-after").is_some(), "429 without Retry-After");
                            limited += 1;
                        }
                        // The journal's guard against a slow disk (a group commit waiting
                        // over 50 ms, as a loaded CI disk can make it): not through, and not
                        // this test's subject.
                        503 if resp.error().as_deref() == Some("overloaded") => {}
                        other => panic!("unexpected {other}: {}", resp.describe()),
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                (through, limited)
            })
        })
        .collect();
    let (mut through, mut limited) = (0, 0);
    for t in threads {
        let (a, b) = t.join().expect("buyer thread");
        through += a;
        limited += b;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = BURST + RATE * elapsed;
    assert!(limited > 0, "the user was never limited ({through} through)");
    assert!(
        f64::from(through) <= allowed + 1.0,
        "{through} buys got through in {elapsed:.2} s; the limit allows {allowed:.1}"
    );
    assert!(
        f64::from(through) >= 0.5 * allowed,
        "only {through} of the {allowed:.1} allowed buys got through"
    );
    drop(client);
    service.stop_clean();
}
