//! Persistence (RFC 9112 section 9.3): HTTP/1.1 keeps the connection open unless `close` is
//! sent; HTTP/1.0 closes unless it asks for `keep-alive`; a client's half-close.

mod common;

use std::net::Shutdown;
use std::time::Duration;

use common::{get_req, start, test_router, Closed};

#[test]
fn http11_keeps_the_connection_open_by_default() {
    let server = start(test_router);
    let mut c = server.client();
    for i in 0..3 {
        c.send(&get_req(&format!("/p/{i}")));
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("/p/{i}"));
        assert_eq!(r.version, "HTTP/1.1");
        assert!(!r.has_close(), "{}", r.head_raw);
    }
    c.expect_silence(Duration::from_millis(200));
    c.send(&get_req("/p/still-open"));
    assert_eq!(c.read_response().text(), "/p/still-open");
    let report = server.stop();
    assert_eq!(report.connections, 2, "{report}");
    assert_eq!(report.requests, 5, "{report}");
}

/// A connection left idle longer than the server keeps its per-request state (200 ms) goes
/// back to its small idle form; what the client sends next, one request or a pipelined batch
/// split mid-head, is answered exactly as on a fresh connection.
#[test]
fn a_connection_idle_past_its_busy_state_serves_the_next_requests() {
    let server = start(test_router);
    let mut c = server.client();
    for round in 0..3 {
        c.send(&get_req(&format!("/p/a{round}")));
        assert_eq!(c.read_response().text(), format!("/p/a{round}"));
        c.expect_silence(Duration::from_millis(450));
    }
    let batch = [get_req("/p/b1"), get_req("/p/b2")].concat();
    let (first, rest) = batch.split_at(get_req("/p/b1").len() + 7);
    c.send(first);
    assert_eq!(c.read_response().text(), "/p/b1");
    c.expect_silence(Duration::from_millis(300));
    c.send(rest);
    assert_eq!(c.read_response().text(), "/p/b2");
    let report = server.stop();
    // The five above and the harness's readiness probe, on two connections.
    assert_eq!((report.connections, report.requests), (2, 6), "{report}");
}

#[test]
fn http11_connection_close_is_answered_then_closed() {
    let server = start(test_router);
    let mut c = server.client();
    c.send(b"GET /p/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "/p/x");
    assert!(r.has_close(), "the response must say close: {}", r.head_raw);
    assert_eq!(c.read_close(), Closed::Fin);
    server.stop();
}

#[test]
fn connection_options_are_case_insensitive_tokens() {
    let server = start(test_router);
    for value in ["Close", "keep-alive, close", "CLOSE , TE"] {
        let mut c = server.client();
        c.send(format!("GET / HTTP/1.1\r\nHost: t\r\nConnection: {value}\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 200, "Connection: {value}");
        assert!(r.has_close(), "Connection: {value}: {}", r.head_raw);
        c.expect_closed();
    }
    server.stop();
}

#[test]
fn requests_pipelined_after_connection_close_are_not_answered() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = get_req("/p/a");
    batch.extend_from_slice(b"GET /p/b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    batch.extend_from_slice(&get_req("/admin"));
    c.send(&batch);
    assert_eq!(c.read_response().text(), "/p/a");
    let b = c.read_response();
    assert_eq!(b.text(), "/p/b");
    assert!(b.has_close());
    c.expect_closed();
    server.stop();
}

#[test]
fn http10_closes_by_default() {
    let server = start(test_router);
    let mut c = server.client();
    c.send(b"GET /p/old HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    // RFC 9112 section 2.5: the server sends its own highest version (documented choice).
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.text(), "/p/old");
    assert!(r.header("content-length").is_some(), "{}", r.head_raw);
    assert!(r.has_close(), "{}", r.head_raw);
    assert_eq!(c.read_close(), Closed::Fin);
    server.stop();
}

#[test]
fn http10_stays_open_with_keep_alive() {
    let server = start(test_router);
    let mut c = server.client();
    for i in 0..3 {
        c.send(format!("GET /p/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("/p/{i}"));
        assert!(!r.has_close(), "{}", r.head_raw);
    }
    c.expect_silence(Duration::from_millis(150));
    // Without keep-alive on the next one, it closes after it.
    c.send(b"GET /p/last HTTP/1.0\r\n\r\n");
    assert_eq!(c.read_response().text(), "/p/last");
    c.expect_closed();
    server.stop();
}

#[test]
fn half_close_answers_every_complete_request_then_closes() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = get_req("/p/1");
    batch.extend_from_slice(&get_req("/p/2"));
    c.send(&batch);
    c.stream.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(c.read_response().text(), "/p/1");
    assert_eq!(c.read_response().text(), "/p/2");
    assert_eq!(c.read_close(), Closed::Fin);
    server.stop();
}

#[test]
fn half_close_drops_an_incomplete_request_without_answer() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = get_req("/p/1");
    batch.extend_from_slice(b"GET /p/2 HTTP/1.1\r\nHo");
    c.send(&batch);
    c.stream.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(c.read_response().text(), "/p/1");
    assert_eq!(c.read_close(), Closed::Fin);
    server.stop();
}
