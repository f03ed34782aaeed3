//! Request message bodies (RFC 9112 section 6 and 7): Content-Length, chunked with extensions
//! and trailers (trailers never become request fields), bodies split across writes, and
//! `Expect: 100-continue` (RFC 9110 section 10.1.1).

mod common;

use std::time::Duration;

use common::{expect_rejected, roundtrip, start, start_limits, test_router};
use ringcore_http::Limits;

#[test]
fn content_length_body_is_delivered() {
    let server = start(test_router);
    let r = roundtrip(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
    // Every byte value survives.
    let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let mut req = format!(
        "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = roundtrip(server.addr, &req);
    assert_eq!(r.body, body);
    server.stop();
}

#[test]
fn content_length_zero_and_absent_mean_no_body() {
    let server = start(test_router);
    let mut c = server.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\n\r\nGET /p/next HTTP/1.1\r\nHost: t\r\n\r\n");
    let a = c.read_response();
    assert_eq!((a.status, a.body.len()), (200, 0), "{}", a.head_raw);
    let b = c.read_response();
    assert_eq!((b.status, b.body.len()), (200, 0), "{}", b.head_raw);
    assert_eq!(c.read_response().text(), "/p/next");
    server.stop();
}

#[test]
fn identical_repeated_content_length_is_accepted() {
    // Documented choice (RFC 9112 section 6.3 item 5 allows it).
    let server = start(test_router);
    for req in [
        &b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nabcde"[..],
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nabcde",
    ] {
        let r = roundtrip(server.addr, req);
        assert_eq!(r.status, 200, "{}", common::show(req));
        assert_eq!(r.text(), "abcde");
    }
    server.stop();
}

#[test]
fn content_length_body_split_across_writes() {
    let server = start(test_router);
    let mut c = server.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 26\r\n\r\n");
    std::thread::sleep(Duration::from_millis(30));
    c.send_slowly(b"abcdefghijklmnopqrstuvwxyz", 3, Duration::from_millis(5));
    assert_eq!(c.read_response().text(), "abcdefghijklmnopqrstuvwxyz");
    server.stop();
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let server = start(test_router);
    let req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6;a=\"b c\";flag\r\n world\r\n0;last=yes\r\nX-Trailer: t1\r\nX-Other: t2\r\n\r\n";
    let r = roundtrip(server.addr, req);
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), "hello world");
    server.stop();
}

#[test]
fn trailers_never_become_request_fields() {
    let server = start(test_router);
    let req = b"POST /headers HTTP/1.1\r\nHost: t\r\nX-Real: yes\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\nX-Trailer: secret\r\nX-Real: no\r\nContent-Length: 99\r\n\r\n";
    let r = roundtrip(server.addr, req);
    assert_eq!(r.status, 200, "{}", r.head_raw);
    let seen = r.text();
    assert!(
        !seen.contains("x-trailer"),
        "a trailer reached the handler:\n{seen}"
    );
    assert!(
        !seen.contains("x-real: no"),
        "a trailer reached the handler:\n{seen}"
    );
    assert!(
        !seen.contains("content-length"),
        "a trailer reached the handler:\n{seen}"
    );
    assert!(seen.contains("x-real: yes"), "{seen}");
    assert!(seen.contains("body: 4"), "{seen}");
    server.stop();
}

#[test]
fn chunk_sizes_are_hex_any_case_with_leading_zeros() {
    let server = start(test_router);
    let req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n000A\r\n0123456789\r\na\r\nabcdefghij\r\n1F\r\n0123456789012345678901234567890\r\n0000\r\n\r\n";
    let r = roundtrip(server.addr, req);
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), "0123456789abcdefghij0123456789012345678901234567890");
    server.stop();
}

#[test]
fn chunked_request_split_across_many_writes() {
    let server = start(test_router);
    let mut c = server.client();
    let req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n1\r\nZ\r\n0\r\nT: v\r\n\r\n";
    c.send_slowly(req, 1, Duration::from_millis(1));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), "abc0123456789abcdefZ");
    // And the connection goes on.
    c.send(&common::get_req("/p/next"));
    assert_eq!(c.read_response().text(), "/p/next");
    server.stop();
}

#[test]
fn chunked_with_bare_lf_line_ends_is_400() {
    // RFC 9112 section 7.1 frames chunks with CRLF; a bare LF after the chunk size, the chunk
    // data, the last chunk or a trailer is refused (a smuggling vector behind a front end that
    // reads it differently). Each gets one 400, then the connection closes.
    let server = start(test_router);
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "5\nhello\r\n0\r\n\r\n",
        "5;e=1\nhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "0\n\r\n",
        "0\r\n\n",
        "0\r\nT: v\n\r\n",
        "3\nabc\n2\nde\n0\n\n",
    ] {
        // A pipelined request after it must not be answered.
        let req = format!("{head}{body}GET /admin HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = expect_rejected(server.addr, req.as_bytes(), 400);
        assert!(!r.text().contains("ADMIN"), "{body:?}: {}", r.text());
    }
    // Bare LF in the head stays accepted, with a CRLF-framed chunked body.
    let r = roundtrip(
        server.addr,
        b"POST /echo HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\n\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), "abc");
    server.stop();
}

#[test]
fn large_chunked_body_under_the_limit() {
    let server = start(test_router);
    let mut c = server.client();
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut expect = Vec::new();
    for i in 0..100u32 {
        let chunk: Vec<u8> = (0..8000u32).map(|j| b'a' + ((i + j) % 26) as u8).collect();
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
        expect.extend_from_slice(&chunk);
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body.len(), expect.len());
    assert!(r.body == expect, "body differs");
    server.stop();
}

#[test]
fn expect_100_continue_gets_interim_response_before_the_body() {
    let server = start(test_router);
    let mut c = server.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
    let interim = c.read_response();
    assert_eq!(interim.status, 100, "{}", interim.head_raw);
    assert_eq!(interim.version, "HTTP/1.1");
    c.send(b"after 100");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), "after 100");
    // A second 100-continue request on the same connection gets its own 100.
    c.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    let interim = c.read_response();
    assert_eq!(interim.status, 100, "{}", interim.head_raw);
    c.send(b"4\r\nmore\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), "more");
    server.stop();
}

#[test]
fn expect_100_continue_with_the_body_already_sent() {
    // RFC 9110 10.1.1: the server MAY omit the 100 when the content already arrived.
    let server = start(test_router);
    let mut c = server.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc");
    let mut r = c.read_response();
    if r.status == 100 {
        r = c.read_response();
    }
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), "abc");
    server.stop();
}

#[test]
fn expect_100_continue_over_the_body_limit_gets_413_without_100() {
    let mut limits = Limits::default();
    limits.max_body_bytes = 1000;
    let server = start_limits(limits, test_router);
    let r = expect_rejected(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
        413,
    );
    assert_eq!(r.status, 413);
    server.stop();
}

#[test]
fn expect_100_continue_in_http10_is_ignored() {
    // RFC 9110 10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
    // request MUST ignore that expectation."
    let server = start(test_router);
    let mut c = server.client();
    c.send(b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    c.expect_silence(Duration::from_millis(200));
    c.send(b"data");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), "data");
    server.stop();
}
