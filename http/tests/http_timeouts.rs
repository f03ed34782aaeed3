//! Read deadlines and the connection limit: the header-read timeout (slowloris) and the
//! body-read timeout answer 408 and close; an idle keep-alive connection is closed silently;
//! a connection over the per-core limit gets 503 with Retry-After and the current Date.

mod common;

use std::time::{Duration, Instant};

use common::{get_req, show, start_limits, start_with, test_router, Client};
use ringcore_http::{get, Limits};

const TIMEOUT: Duration = Duration::from_millis(300);
/// Generous upper bound for "within roughly the timeout" on a shared 2-core machine.
const LATE: Duration = Duration::from_secs(3);

fn limits(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    f(&mut l);
    l
}

/// Reads a 408 + close and checks it came between `TIMEOUT` and `LATE` after `t0`.
fn expect_408_in_time(c: &mut Client, t0: Instant, what: &str) {
    let r = c.read_response();
    let at = t0.elapsed();
    assert_eq!(r.status, 408, "{what}: {}", r.head_raw);
    assert!(r.has_close(), "{what}: {}", r.head_raw);
    assert!(at >= TIMEOUT, "{what}: 408 after only {at:?}");
    assert!(at < LATE, "{what}: 408 only after {at:?}");
    c.expect_closed();
}

/// Sends `prefix`, then one byte of `drip` every 50 ms (ignoring write errors once the
/// server closed) until a response starts arriving or 3 s pass. Returns the time of the
/// first response byte, measured from the first write.
fn drip_until_answered(c: &mut Client, prefix: &[u8], drip: u8) -> (Instant, Option<Duration>) {
    let t0 = Instant::now();
    let _ = c.try_send(prefix);
    c.set_read_timeout(Duration::from_millis(50));
    let mut peek = [0u8; 1];
    while t0.elapsed() < LATE {
        match c.stream.peek(&mut peek) {
            Ok(_) => return (t0, Some(t0.elapsed())),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("while dripping: {e}"),
        }
        let _ = c.try_send(&[drip]);
    }
    (t0, None)
}

/// A connection's read deadline is a coarse timer: an idle core parks until it instead of
/// polling for it, as the runtime does for a precise timer due within its idle spin. With
/// the spin at 20 ms, a header-read timeout of 2 ms puts each partial head's deadline well
/// inside it at the end of the turn that read the head; as precise timers, they made the
/// core poll (`spins`). (The busy wait's deadline is checked the same way in `conn::tests`.)
#[test]
fn a_partial_heads_deadline_never_makes_an_idle_core_poll() {
    const CONNS: u64 = 10;
    let server = start_with(
        |s| {
            s.limits(limits(|l| l.header_read_timeout = Duration::from_millis(2)))
                .runtime(|b| b.handle_signals(false).idle_spin(Duration::from_millis(20)))
        },
        || {
            test_router().route(
                "/spins",
                get(|| async {
                    let core = ringcore_http::runtime::shard_id();
                    ringcore_http::runtime::stats::shard(core).spins.to_string()
                }),
            )
        },
    );
    let spins = || -> u64 {
        let r = common::roundtrip(server.addr, &get_req("/spins"));
        assert_eq!(r.status, 200, "{}", r.head_raw);
        String::from_utf8_lossy(&r.body).parse().expect("a count")
    };
    let before = spins();
    for _ in 0..CONNS {
        let mut c = server.client();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 408, "{}", r.head_raw);
        c.expect_closed();
    }
    let polled = spins() - before;
    assert_eq!(
        polled, 0,
        "the core polled {polled} times for the deadlines of {CONNS} partial heads"
    );
    server.stop();
}

#[test]
fn partial_head_gets_408_after_the_header_timeout() {
    let server = start_limits(limits(|l| l.header_read_timeout = TIMEOUT), test_router);
    let mut c = server.client();
    let t0 = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    expect_408_in_time(&mut c, t0, "partial head");
    let report = server.stop();
    assert_eq!(report.cut, 0, "{report}");
}

#[test]
fn dripping_a_head_does_not_extend_the_header_timeout() {
    let server = start_limits(limits(|l| l.header_read_timeout = TIMEOUT), test_router);
    let mut c = server.client();
    let (t0, answered) = drip_until_answered(&mut c, b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ", b'a');
    let at = answered.unwrap_or_else(|| panic!("no answer while dripping for {LATE:?}"));
    assert!(at < Duration::from_millis(1500), "answered only after {at:?}");
    c.set_read_timeout(common::READ_TIMEOUT);
    expect_408_in_time(&mut c, t0, "dripped head");
    server.stop();
}

#[test]
fn dripping_a_pipelined_head_does_not_extend_the_header_timeout() {
    // The partial head follows a complete request in the same write: its deadline starts
    // when its first byte arrived, not at each later byte.
    let server = start_limits(limits(|l| l.header_read_timeout = TIMEOUT), test_router);
    let mut c = server.client();
    let mut prefix = get_req("/p/first");
    prefix.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
    let t0 = Instant::now();
    let _ = c.try_send(&prefix);
    let first = c.read_response();
    assert_eq!(first.text(), "/p/first");
    c.set_read_timeout(Duration::from_millis(50));
    let mut peek = [0u8; 1];
    let mut answered = None;
    while t0.elapsed() < LATE {
        match c.stream.peek(&mut peek) {
            Ok(_) => {
                answered = Some(t0.elapsed());
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("while dripping: {e}"),
        }
        let _ = c.try_send(b"a");
    }
    let at = answered.unwrap_or_else(|| {
        panic!(
            "no 408 after dripping a pipelined partial head for {LATE:?} (header_read_timeout {TIMEOUT:?}): \
             each byte restarted the deadline"
        )
    });
    assert!(at < Duration::from_millis(1500), "answered only after {at:?}");
    c.set_read_timeout(common::READ_TIMEOUT);
    expect_408_in_time(&mut c, t0, "dripped pipelined head");
    server.stop();
}

#[test]
fn idle_keep_alive_connection_is_closed_silently() {
    let server = start_limits(limits(|l| l.keep_alive_timeout = TIMEOUT), test_router);
    let mut c = server.client();
    c.send(&get_req("/"));
    assert_eq!(c.read_response().status, 200);
    let t0 = Instant::now();
    c.expect_closed(); // no bytes at all, just the close
    let at = t0.elapsed();
    assert!(
        at >= TIMEOUT - Duration::from_millis(20),
        "closed after only {at:?}"
    );
    assert!(at < LATE, "closed only after {at:?}");
    server.stop();
}

#[test]
fn connection_that_never_sends_is_closed_silently() {
    let server = start_limits(
        limits(|l| {
            l.keep_alive_timeout = TIMEOUT;
            l.header_read_timeout = TIMEOUT;
        }),
        test_router,
    );
    let t0 = Instant::now();
    let mut c = server.client();
    c.expect_closed();
    let at = t0.elapsed();
    assert!(
        at >= TIMEOUT - Duration::from_millis(20),
        "closed after only {at:?}"
    );
    assert!(at < LATE, "closed only after {at:?}");
    server.stop();
}

/// Sends `request` (a head and part of its body, or none) and expects a 408 once the body
/// read timeout has passed.
fn body_stalls_get_408(request: &[u8], what: &str) {
    let server = start_limits(limits(|l| l.body_read_timeout = TIMEOUT), test_router);
    let mut c = server.client();
    let t0 = Instant::now();
    c.send(request);
    expect_408_in_time(&mut c, t0, what);
    server.stop();
}

#[test]
fn partial_content_length_body_gets_408_after_the_body_timeout() {
    body_stalls_get_408(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
        "partial body",
    );
}

#[test]
fn body_without_any_byte_gets_408_after_the_body_timeout() {
    body_stalls_get_408(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n",
        "head then nothing",
    );
}

#[test]
fn partial_chunked_body_gets_408_after_the_body_timeout() {
    body_stalls_get_408(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        "partial chunked body",
    );
}

#[test]
fn dripping_a_body_does_not_extend_the_body_timeout() {
    let server = start_limits(limits(|l| l.body_read_timeout = TIMEOUT), test_router);
    let mut c = server.client();
    let (t0, answered) = drip_until_answered(
        &mut c,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n",
        b'b',
    );
    let at = answered.unwrap_or_else(|| panic!("no answer while dripping a body for {LATE:?}"));
    assert!(at < Duration::from_millis(1500), "answered only after {at:?}");
    c.set_read_timeout(common::READ_TIMEOUT);
    expect_408_in_time(&mut c, t0, "dripped body");
    server.stop();
}

#[test]
fn the_body_timeout_counts_from_the_end_of_the_head() {
    // Each gap is shorter than the timeout, but the body completes well after it: counted
    // from the head (not from the first body byte) that is a 408, not a 200.
    let server = start_limits(limits(|l| l.body_read_timeout = TIMEOUT), test_router);
    let mut c = server.client();
    let t0 = Instant::now();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n");
    std::thread::sleep(TIMEOUT * 2 / 3);
    let _ = c.try_send(b"a");
    std::thread::sleep(TIMEOUT * 2 / 3);
    let _ = c.try_send(b"b");
    expect_408_in_time(&mut c, t0, "body completed after the timeout");
    server.stop();
}

#[test]
fn timeouts_do_not_cut_a_request_that_arrives_in_time() {
    let server = start_limits(
        limits(|l| {
            l.header_read_timeout = TIMEOUT;
            l.body_read_timeout = TIMEOUT;
            l.keep_alive_timeout = TIMEOUT;
        }),
        test_router,
    );
    let mut c = server.client();
    // Each request completes within the timeout; the connection lives longer than it.
    for i in 0..4 {
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n");
        std::thread::sleep(Duration::from_millis(100));
        c.send(b"ok");
        let r = c.read_response();
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "ok"),
            "request {i}: {}",
            r.head_raw
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    server.stop();
}

#[test]
fn connection_over_the_per_core_limit_gets_503_and_the_others_still_work() {
    let server = start_limits(limits(|l| l.max_connections_per_core = 2), test_router);
    let mut c1 = server.client();
    let mut c2 = server.client();
    for (i, c) in [&mut c1, &mut c2].into_iter().enumerate() {
        c.send(&get_req(&format!("/p/held-{i}")));
        assert_eq!(c.read_response().status, 200);
    }
    let mut c3 = server.client();
    let _ = c3.try_send(&get_req("/p/third"));
    let r = c3.read_response();
    assert_eq!(r.status, 503, "{}", r.head_raw);
    assert!(
        r.header("retry-after").is_some(),
        "503 without Retry-After: {}",
        r.head_raw
    );
    assert!(r.has_close(), "{}", r.head_raw);
    c3.expect_closed();
    // The held connections are unaffected.
    for (i, c) in [&mut c1, &mut c2].into_iter().enumerate() {
        c.send(&get_req(&format!("/p/again-{i}")));
        let r = c.read_response();
        assert_eq!(r.text(), format!("/p/again-{i}"), "{}", r.head_raw);
    }
    // Free both slots (answered, then closed by the server) before the shutdown request.
    for c in [&mut c1, &mut c2] {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(c.read_response().status, 200);
        c.expect_closed();
    }
    // A new connection is served again once a slot is free.
    let mut c4 = server.client();
    c4.send(b"GET /p/fourth HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c4.read_response();
    assert_eq!(
        r.status,
        200,
        "after freeing slots: {} {:?}",
        r.head_raw,
        show(&r.body)
    );
    c4.expect_closed();
    let report = server.stop();
    assert_eq!(report.refused, 1, "{report}");
}

/// The refusal's `Date` and how far it is from this machine's clock.
fn refusal_date(server: &common::TestServer) -> (String, Duration) {
    let mut c = server.client();
    let _ = c.try_send(&get_req("/p/over"));
    let r = c.read_response();
    assert_eq!(r.status, 503, "{}", r.head_raw);
    c.expect_closed();
    let date = r
        .header("date")
        .unwrap_or_else(|| panic!("503 without Date: {}", r.head_raw));
    let at = httpdate::parse_http_date(date).unwrap_or_else(|e| panic!("bad Date {date:?}: {e}"));
    let now = std::time::SystemTime::now();
    let off = now
        .duration_since(at)
        .or_else(|_| at.duration_since(now))
        .unwrap_or_default();
    (date.to_string(), off)
}

#[test]
fn the_503_at_the_connection_limit_carries_the_current_date() {
    let server = start_limits(limits(|l| l.max_connections_per_core = 1), test_router);
    let mut held = server.client();
    held.send(&get_req("/p/held"));
    assert_eq!(held.read_response().status, 200);
    let t0 = Instant::now();
    let (first, off) = refusal_date(&server);
    assert!(
        off <= Duration::from_secs(2),
        "503 Date {first} is {off:?} off the clock"
    );
    // Refusals more than a second apart carry different Dates (one built at start would not).
    let mut refused = 1;
    let later = loop {
        std::thread::sleep(Duration::from_millis(300));
        let (date, off) = refusal_date(&server);
        refused += 1;
        assert!(
            off <= Duration::from_secs(2),
            "503 Date {date} is {off:?} off the clock"
        );
        if date != first || t0.elapsed() > Duration::from_secs(5) {
            break date;
        }
    };
    assert_ne!(
        later,
        first,
        "the 503's Date stayed {first} for {:?}",
        t0.elapsed()
    );
    held.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(held.read_response().status, 200);
    held.expect_closed();
    let report = server.stop();
    assert_eq!(report.refused, refused, "{report}");
}
