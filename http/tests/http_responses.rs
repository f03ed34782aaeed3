//! Response framing and fields: Content-Length, chunked streaming from `Body::channel`, a
//! close-delimited stream for HTTP/1.0, HEAD (RFC 9110 section 9.3.2), 204 without
//! Content-Length (RFC 9110 section 8.6), Date (RFC 9110 section 6.6.1) and Server.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{expect_rejected, get_req, roundtrip, start, start_with, test_router, Closed, STREAM_BODY};
use ringcore_http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use ringcore_http::{get, HeaderValue, Router, StatusCode};

#[test]
fn full_body_has_content_length() {
    let server = start(test_router);
    let r = roundtrip(server.addr, &get_req("/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, "OK");
    assert_eq!(r.header("content-length"), Some("4"), "{}", r.head_raw);
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head_raw);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), "root");
    let big = roundtrip(server.addr, &get_req("/big/1048576"));
    assert_eq!(big.header("content-length"), Some("1048576"));
    assert_eq!(big.body.len(), 1_048_576);
    server.stop();
}

#[test]
fn handler_framing_fields_are_replaced_by_the_server() {
    let server = start(|| {
        Router::new().route(
            "/lie",
            get(|| async {
                (
                    StatusCode::OK,
                    [
                        (CONTENT_LENGTH, HeaderValue::from_static("999")),
                        (TRANSFER_ENCODING, HeaderValue::from_static("chunked")),
                        (CONNECTION, HeaderValue::from_static("close")),
                    ],
                    "abc",
                )
            }),
        )
    });
    let mut c = server.client();
    c.send(&get_req("/lie"));
    let r = c.read_response();
    assert_eq!(r.header_all("content-length"), vec!["3"], "{}", r.head_raw);
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head_raw);
    assert_eq!(r.text(), "abc");
    server.stop();
}

#[test]
fn streamed_body_is_chunked_for_http11() {
    let server = start(test_router);
    let mut c = server.client();
    let t0 = Instant::now();
    c.send(&get_req("/stream"));
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.chunked(), "expected chunked: {}", r.head_raw);
    assert!(r.header("content-length").is_none(), "{}", r.head_raw);
    assert_eq!(r.text(), STREAM_BODY);
    assert!(!r.has_close(), "{}", r.head_raw);
    // Five parts 20 ms apart: the stream really took its time.
    assert!(t0.elapsed() >= Duration::from_millis(80), "{:?}", t0.elapsed());
    // The connection is reusable after the last chunk.
    c.send(&get_req("/p/after-stream"));
    assert_eq!(c.read_response().text(), "/p/after-stream");
    server.stop();
}

#[test]
fn streamed_chunks_arrive_before_the_stream_ends() {
    let server = start(|| {
        Router::new().route(
            "/slowstream",
            get(|| async {
                let (tx, body) = ringcore_http::Body::channel();
                ringcore_http::runtime::spawn_local(async move {
                    tx.send("first;");
                    ringcore_http::runtime::time::sleep(Duration::from_millis(1000)).await;
                    tx.send("second;");
                })
                .detach();
                body
            }),
        )
    });
    let mut c = server.client();
    let t0 = Instant::now();
    c.send(&get_req("/slowstream"));
    // The head and the first chunk must come without waiting for the second.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while common::find(&got, b"first;").is_none() {
        use std::io::Read;
        let n = c.stream.read(&mut buf).expect("read");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(700),
        "the first chunk waited for the rest: {:?}",
        t0.elapsed()
    );
    server.stop();
}

#[test]
fn streamed_body_to_http10_is_delimited_by_close() {
    let server = start(test_router);
    for req in [
        &b"GET /stream HTTP/1.0\r\n\r\n"[..],
        b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let mut c = server.client();
        c.send(req);
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.head_raw);
        assert!(!r.chunked(), "no chunked coding for HTTP/1.0: {}", r.head_raw);
        assert!(r.header("transfer-encoding").is_none(), "{}", r.head_raw);
        assert!(r.header("content-length").is_none(), "{}", r.head_raw);
        assert!(r.has_close(), "{}", r.head_raw);
        assert!(r.close_delimited());
        assert_eq!(r.text(), STREAM_BODY);
    }
    server.stop();
}

#[test]
fn head_has_the_get_fields_and_no_body() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    batch.extend_from_slice(&get_req("/"));
    batch.extend_from_slice(b"HEAD /big/100000 HTTP/1.1\r\nHost: t\r\n\r\n");
    batch.extend_from_slice(&get_req("/p/last"));
    c.send(&batch);
    // The next response must start right after the HEAD response's head.
    let head = c.read_head_response();
    assert!(
        c.buffered().is_empty() || c.buffered().starts_with(b"HTTP/1.1 "),
        "bytes after a HEAD response's head: {:?}",
        common::show(c.buffered())
    );
    let get = c.read_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(head.header("content-type"), get.header("content-type"));
    assert_eq!(head.header("server"), get.header("server"));
    assert_eq!(get.text(), "root");
    let big = c.read_head_response();
    assert_eq!(big.header("content-length"), Some("100000"), "{}", big.head_raw);
    assert!(
        c.buffered().is_empty() || c.buffered().starts_with(b"HTTP/1.1 "),
        "bytes after a HEAD response's head: {:?}",
        common::show(c.buffered())
    );
    assert_eq!(c.read_response().text(), "/p/last");
    server.stop();
}

#[test]
fn head_of_a_streamed_body_sends_no_body() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    batch.extend_from_slice(&get_req("/p/after"));
    c.send(&batch);
    let head = c.read_head_response();
    assert_eq!(head.status, 200);
    let next = c.read_response();
    assert_eq!(next.status, 200, "{}", next.head_raw);
    assert_eq!(next.text(), "/p/after");
    server.stop();
}

/// An HTTP/1.0 client's HEAD of a streamed body gets no `Transfer-Encoding` (RFC 9112
/// section 6.1: not sent to an HTTP/1.0 client), and no body; HTTP/1.1's says chunked, as
/// its GET would.
#[test]
fn head_of_a_streamed_body_to_http_1_0_has_no_transfer_encoding() {
    let server = start(test_router);
    let mut c = server.client();
    c.send(b"HEAD /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let head = c.read_head_response();
    assert_eq!(head.status, 200);
    assert!(head.header("transfer-encoding").is_none(), "{}", head.head_raw);
    assert!(head.header("content-length").is_none(), "{}", head.head_raw);
    c.send(&get_req("/p/after"));
    let next = c.read_response();
    assert_eq!(next.text(), "/p/after", "{}", next.head_raw);
    let mut c11 = server.client();
    c11.send(b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c11.read_head_response();
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        head.head_raw
    );
    server.stop();
}

#[test]
fn no_content_has_no_length_and_no_body() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = get_req("/nocontent");
    batch.extend_from_slice(&get_req("/p/after"));
    c.send(&batch);
    let r = c.read_response();
    assert_eq!(r.status, 204);
    assert!(
        r.header("content-length").is_none(),
        "RFC 9110 8.6: {}",
        r.head_raw
    );
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head_raw);
    assert_eq!(c.read_response().text(), "/p/after");
    server.stop();
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds, checking the
/// exact format (RFC 9110 section 5.6.7).
fn imf_fixdate(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 29 || &s[3..5] != ", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' {
        return None;
    }
    if b[19] != b':' || b[22] != b':' || &s[25..] != " GMT" {
        return None;
    }
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let wday = days.iter().position(|d| *d == &s[..3])?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == &s[8..11])? as i64 + 1;
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = &s[r];
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (day, year) = (num(5..7)?, num(12..16)?);
    let (h, mi, sec) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days_since_epoch = era * 146_097 + doe - 719_468;
    // 1970-01-01 was a Thursday (index 3 with Monday = 0).
    if (days_since_epoch + 3).rem_euclid(7) as usize != wday {
        return None;
    }
    u64::try_from(days_since_epoch * 86_400 + h * 3600 + mi * 60 + sec).ok()
}

#[test]
fn imf_fixdate_checker_works() {
    assert_eq!(imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    assert_eq!(imf_fixdate("Mon, 06 Nov 1994 08:49:37 GMT"), None);
    assert_eq!(imf_fixdate("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    assert_eq!(imf_fixdate("Sun Nov  6 08:49:37 1994"), None);
}

#[test]
fn date_is_present_once_and_an_imf_fixdate_near_now() {
    let server = start(test_router);
    let r = roundtrip(server.addr, &get_req("/"));
    let dates = r.header_all("date");
    assert_eq!(dates.len(), 1, "{}", r.head_raw);
    let secs = imf_fixdate(dates[0]).unwrap_or_else(|| panic!("not an IMF-fixdate: {:?}", dates[0]));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    assert!(
        secs.abs_diff(now) <= 2,
        "Date {:?} is {secs}, now is {now}",
        dates[0]
    );
    // Error responses the server generates carry a Date too (RFC 9110 6.6.1: 4xx included).
    let bad = expect_rejected(server.addr, b"GET / HTTP/1.1\r\n\r\n", 400);
    let d = bad
        .header("date")
        .unwrap_or_else(|| panic!("no Date on a 400: {}", bad.head_raw));
    assert!(imf_fixdate(d).is_some(), "{d:?}");
    let nf = roundtrip(server.addr, &get_req("/nowhere"));
    assert_eq!(nf.status, 404);
    assert!(
        nf.header("date").and_then(imf_fixdate).is_some(),
        "{}",
        nf.head_raw
    );
    server.stop();
}

#[test]
fn date_advances_with_the_clock() {
    let server = start(test_router);
    let mut c = server.client();
    c.send(&get_req("/"));
    let first = c.read_response();
    std::thread::sleep(Duration::from_millis(1100));
    c.send(&get_req("/"));
    let second = c.read_response();
    let a = first.header("date").and_then(imf_fixdate).expect("date");
    let b = second.header("date").and_then(imf_fixdate).expect("date");
    assert!(b > a, "Date did not advance: {a} then {b}");
    server.stop();
}

/// The server keeps a route's last response head and copies it whole when the next answer
/// is alike; an answer that differs in its length, its `Connection` field or its status
/// must get its own head, whatever came before it on the connection.
#[test]
fn answers_alike_but_for_length_or_connection_get_their_own_heads() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = Vec::new();
    for path in ["/p/a", "/p/a", "/p/abc", "/p/a", "/", "/nocontent", "/p/a"] {
        batch.extend_from_slice(&get_req(path));
    }
    batch.extend_from_slice(b"GET /p/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    batch.extend_from_slice(b"GET /p/a HTTP/1.1\r\nHost: t\r\n\r\n");
    // The same length and fields as the answers to /p/a, another content type: not their head.
    let echo = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd";
    batch.extend_from_slice(echo);
    batch.extend_from_slice(echo);
    batch.extend_from_slice(b"GET /p/ab HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    c.send(&batch);
    let text = Some("text/plain; charset=utf-8");
    let bytes = Some("application/octet-stream");
    // (status, body, Content-Type, Connection)
    let want: [(u16, &str, Option<&str>, Option<&str>); 12] = [
        (200, "/p/a", text, None),
        (200, "/p/a", text, None),
        (200, "/p/abc", text, None),
        (200, "/p/a", text, None),
        (200, "root", text, None),
        (204, "", None, None),
        (200, "/p/a", text, None),
        (200, "/p/a", text, Some("keep-alive")),
        (200, "/p/a", text, None),
        (200, "abcd", bytes, None),
        (200, "abcd", bytes, None),
        (200, "/p/ab", text, Some("close")),
    ];
    for (i, (status, body, ctype, connection)) in want.into_iter().enumerate() {
        let r = c.read_response();
        assert_eq!(r.status, status, "answer {i}: {}", r.head_raw);
        assert_eq!(r.text(), body, "answer {i}: {}", r.head_raw);
        assert_eq!(r.header("content-type"), ctype, "answer {i}: {}", r.head_raw);
        let length = (status != 204).then(|| body.len().to_string());
        assert_eq!(
            r.header("content-length"),
            length.as_deref(),
            "answer {i}: {}",
            r.head_raw
        );
        assert_eq!(r.header("connection"), connection, "answer {i}: {}", r.head_raw);
        assert_eq!(r.header_all("date").len(), 1, "answer {i}: {}", r.head_raw);
    }
    assert_eq!(c.read_close(), Closed::Fin);
    server.stop();
}

#[test]
fn server_header_defaults_to_ringcore() {
    let server = start(test_router);
    let r = roundtrip(server.addr, &get_req("/"));
    assert_eq!(r.header_all("server"), vec!["ringcore"], "{}", r.head_raw);
    let bad = expect_rejected(server.addr, b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n", 501);
    assert_eq!(bad.header("server"), Some("ringcore"), "{}", bad.head_raw);
    server.stop();
}

#[test]
fn server_header_is_configurable() {
    let server = start_with(
        |s| s.server_header(HeaderValue::from_static("test-server/1.0")),
        test_router,
    );
    let r = roundtrip(server.addr, &get_req("/"));
    assert_eq!(r.header_all("server"), vec!["test-server/1.0"], "{}", r.head_raw);
    server.stop();

    let server = start_with(|s| s.server_header(HeaderValue::from_static("")), test_router);
    let r = roundtrip(server.addr, &get_req("/"));
    assert!(r.header("server").is_none(), "empty means none: {}", r.head_raw);
    server.stop();
}

#[test]
fn http10_response_is_closed_after_full_body() {
    let server = start(test_router);
    let mut c = server.client();
    c.send(b"GET /big/5000 HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("content-length"), Some("5000"));
    assert_eq!(r.body.len(), 5000);
    assert_eq!(c.read_close(), Closed::Fin);
    server.stop();
}
