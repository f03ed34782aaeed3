//! Limits and malformed input (RFC 9112 / RFC 9110 server requirements, the crate's documented
//! choices): each rejection gets its exact status with `Connection: close`, then the
//! connection closes with nothing more. Smuggling attempts get one 400 and no second answer.

mod common;

use common::{expect_rejected, get_req, roundtrip, show, start, start_limits, test_router, Client, Closed};
use ringcore_http::Limits;

/// Starts a server, checks `request` gets `status` then close, stops the server.
fn rejects(request: &[u8], status: u16) {
    let server = start(test_router);
    expect_rejected(server.addr, request, status);
    let report = server.stop();
    assert_eq!(report.cut, 0, "{report}");
}

/// Like `rejects`, for several requests, reporting every one that fails.
fn rejects_all(requests: &[&[u8]], status: u16) {
    let server = start(test_router);
    let mut failures = Vec::new();
    for req in requests {
        let r = std::panic::catch_unwind(|| {
            expect_rejected(server.addr, req, status);
        });
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{:?}: {msg}", show(req)));
        }
    }
    server.stop();
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Starts a server, checks `request` is answered 200 with `body`.
fn accepts(request: &[u8], body: &str) {
    let server = start(test_router);
    let r = roundtrip(server.addr, request);
    assert_eq!(r.status, 200, "request {:?}: {}", show(request), r.head_raw);
    assert_eq!(r.text(), body, "request {:?}", show(request));
    server.stop();
}

fn small_body_limit() -> Limits {
    let mut l = Limits::default();
    l.max_body_bytes = 1000;
    l
}

// ---- sizes -------------------------------------------------------------------------------

#[test]
fn request_line_too_long_is_414() {
    let req = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    rejects(req.as_bytes(), 414);
}

#[test]
fn request_line_too_long_is_414_before_its_end_arrives() {
    // The server must not wait for the end of an over-long line.
    let req = format!("GET /{}", "a".repeat(9000));
    rejects(req.as_bytes(), 414);
}

#[test]
fn request_line_at_the_limit_is_accepted() {
    let path = format!("/p/{}", "a".repeat(8 * 1024 - "GET  HTTP/1.1".len() - 3));
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(req.find("\r\n"), Some(8 * 1024));
    accepts(req.as_bytes(), &path);
}

#[test]
fn header_section_too_large_is_431() {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    rejects(req.as_bytes(), 431);
}

#[test]
fn header_section_too_large_from_many_fields_is_431() {
    let fields: String = (0..40)
        .map(|i| format!("X-F{i}: {}\r\n", "v".repeat(500)))
        .collect();
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
    rejects(req.as_bytes(), 431);
}

#[test]
fn header_section_too_large_is_431_before_its_end_arrives() {
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}", "b".repeat(20_000));
    rejects(req.as_bytes(), 431);
}

#[test]
fn too_many_header_fields_is_431() {
    let fields: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
    rejects(req.as_bytes(), 431);
}

#[test]
fn header_fields_at_the_limit_are_accepted() {
    let fields: String = (0..63).map(|i| format!("X-{i}: 1\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
    accepts(req.as_bytes(), "root");
}

#[test]
fn content_length_over_the_body_limit_is_413() {
    let server = start_limits(small_body_limit(), test_router);
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'z'; 1001]);
    expect_rejected(server.addr, &req, 413);
    // Exactly at the limit is fine.
    let mut ok = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n".to_vec();
    ok.extend_from_slice(&[b'z'; 1000]);
    assert_eq!(roundtrip(server.addr, &ok).body.len(), 1000);
    server.stop();
}

#[test]
fn content_length_over_the_default_limit_is_413_without_reading_the_body() {
    rejects(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n",
        413,
    );
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let server = start_limits(small_body_limit(), test_router);
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"190\r\n"); // 400 bytes each: 1200 in all
        req.extend_from_slice(&[b'c'; 400]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    expect_rejected(server.addr, &req, 413);
    // One huge chunk announced is refused from its size line alone.
    expect_rejected(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n",
        413,
    );
    server.stop();
}

#[test]
fn rejection_with_an_unread_body_still_delivers_the_status() {
    // RFC 9112 section 9.6: closing with unread input makes the kernel send a reset that can
    // destroy the response before the client reads it; a server closes in stages (half-close,
    // then drain) so the client sees the 413 and an orderly close.
    let server = start_limits(small_body_limit(), test_router);
    let mut c = Client::connect(server.addr);
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 300000\r\n\r\n".to_vec();
    req.extend_from_slice(&vec![b'u'; 300_000]);
    let _ = c.try_send(&req);
    let r = c.read_response();
    assert_eq!(r.status, 413, "{}", r.head_raw);
    assert_eq!(
        c.read_close(),
        Closed::Fin,
        "the 413 connection was reset instead of closed in stages"
    );
    server.stop();
}

// ---- request line, version, method -------------------------------------------------------

#[test]
fn malformed_request_lines_are_400() {
    rejects_all(
        &[
            b"GET\r\nHost: t\r\n\r\n",
            b"GET /\r\nHost: t\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET / HTTP/1.1 x\r\nHost: t\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: t\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET / HTTP/1\r\nHost: t\r\n\r\n",
            b"GET / HTTP/1.1.1\r\nHost: t\r\n\r\n",
            b"GET / http/1.1\r\nHost: t\r\n\r\n",
            b"GET / HTTX/1.1\r\nHost: t\r\n\r\n",
            b"GET foo HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: t\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn unknown_method_is_501() {
    rejects_all(
        &[
            b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"get / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"PROPFIND / HTTP/1.1\r\nHost: t\r\n\r\n",
        ],
        501,
    );
}

#[test]
fn http2_version_is_505() {
    rejects_all(
        &[
            b"GET / HTTP/2.0\r\nHost: t\r\n\r\n",
            b"GET / HTTP/3.0\r\nHost: t\r\n\r\n",
            b"GET / HTTP/0.9\r\nHost: t\r\n\r\n",
        ],
        505,
    );
}

#[test]
fn http_1_minor_version_above_1_is_processed_as_1_1() {
    // RFC 9110 section 2.5: a message with major version 1 and a higher minor version
    // "SHOULD" be processed as the highest 1.x the recipient implements.
    accepts(b"GET /p/v HTTP/1.2\r\nHost: t\r\n\r\n", "/p/v");
}

#[test]
fn leading_empty_lines_are_skipped() {
    accepts(b"\r\n\r\nGET /p/lead HTTP/1.1\r\nHost: t\r\n\r\n", "/p/lead");
    accepts(b"\n\nGET /p/lead HTTP/1.1\r\nHost: t\r\n\r\n", "/p/lead");
}

#[test]
fn bare_lf_line_ends_are_accepted() {
    // Documented choice (RFC 9112 section 2.2 allows it).
    accepts(b"GET /p/lf HTTP/1.1\nHost: t\n\n", "/p/lf");
    accepts(b"POST /echo HTTP/1.1\nHost: t\nContent-Length: 3\n\nabc", "abc");
}

#[test]
fn bare_cr_is_400() {
    // RFC 9112 section 2.2: a bare CR must be rejected or replaced by SP; documented: 400.
    rejects_all(
        &[
            b"GET / HTTP/1.1\rHost: t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn absolute_form_target_is_accepted() {
    accepts(
        b"GET http://t/p/abs?q=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "http://t/p/abs?q=1",
    );
}

// ---- fields ------------------------------------------------------------------------------

#[test]
fn missing_host_in_http11_is_400() {
    rejects(b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400);
}

#[test]
fn http10_without_host_is_accepted() {
    accepts(b"GET /p/h10 HTTP/1.0\r\n\r\n", "/p/h10");
}

#[test]
fn two_host_fields_are_400() {
    rejects_all(
        &[
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn invalid_host_is_400() {
    rejects_all(
        &[
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn whitespace_before_colon_is_400() {
    // RFC 9112 section 5.1: MUST reject with 400.
    rejects_all(
        &[
            b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length\t: 0\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn obs_fold_is_400() {
    rejects_all(
        &[
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tfolded\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn invalid_field_names_and_values_are_400() {
    rejects_all(
        &[
            b"GET / HTTP/1.1\r\nHost: t\r\nX(Y: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\n: empty\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x1bb\r\n\r\n",
        ],
        400,
    );
}

// ---- framing -----------------------------------------------------------------------------

#[test]
fn content_length_with_transfer_encoding_is_400() {
    rejects_all(
        &[
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn differing_content_lengths_are_400() {
    rejects_all(
        &[
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nabcdef",
        ],
        400,
    );
}

#[test]
fn invalid_content_length_is_400() {
    rejects_all(
        &[
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nabcde",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\nabcde",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5a\r\n\r\nabcde",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nabcde",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1 2\r\n\r\nabcde",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n\r\nabcde",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn unsupported_transfer_coding_is_400() {
    rejects_all(
        &[
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn chunked_not_last_is_400() {
    // RFC 9112 section 6.3: MUST respond 400 and close.
    rejects_all(
        &[
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn transfer_encoding_in_http10_is_400() {
    rejects(
        b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn bad_chunk_sizes_are_400() {
    rejects_all(
        &[
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\r\nabc\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n",
        ],
        400,
    );
}

#[test]
fn bad_chunk_framing_is_400() {
    let long_ext = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;{}\r\nabc\r\n0\r\n\r\n",
        "e".repeat(2000)
    );
    rejects_all(
        &[
            // Data longer than its size.
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
            // CR without LF after data.
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX0\r\n\r\n",
            // Control character in an extension.
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\x01\r\nabc\r\n0\r\n\r\n",
            // Malformed trailer.
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nno colon here\r\n\r\n",
            long_ext.as_bytes(),
        ],
        400,
    );
}

// ---- smuggling ---------------------------------------------------------------------------

/// Sends `request` (whose tail smuggles `GET /admin`) and checks one 400 and nothing else.
fn no_smuggling(request: &[u8]) {
    let server = start(test_router);
    let r = expect_rejected(server.addr, request, 400);
    assert!(!r.text().contains("ADMIN"));
    let report = server.stop();
    // The rejected request never reached the router: only the shutdown request did.
    assert_eq!(
        report.requests, 1,
        "a smuggled request reached the router: {report}"
    );
}

#[test]
fn smuggling_cl_te_gets_one_400_and_no_second_response() {
    no_smuggling(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n");
}

#[test]
fn smuggling_te_cl_gets_one_400_and_no_second_response() {
    no_smuggling(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n");
}

#[test]
fn smuggling_with_obfuscated_transfer_encoding_is_400() {
    for req in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        no_smuggling(req);
    }
}

#[test]
fn error_after_a_good_pipelined_request_answers_both_in_order() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = get_req("/p/good");
    batch.extend_from_slice(b"GET / HTTP/1.1\r\nHost : bad\r\n\r\n");
    batch.extend_from_slice(&get_req("/admin"));
    c.send(&batch);
    assert_eq!(c.read_response().text(), "/p/good");
    let bad = c.read_response();
    assert_eq!(bad.status, 400, "{}", bad.head_raw);
    assert!(bad.has_close());
    c.expect_closed();
    server.stop();
}
