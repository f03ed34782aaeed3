//! Pipelining: every complete request in the buffer is answered, in order, and the answers
//! are coalesced into few writes (RFC 9112 section 9.3.2).

mod common;

use std::time::Duration;

use common::{get_req, start, test_router, Client};

#[test]
fn sixteen_requests_in_one_write_get_sixteen_responses_in_order() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = Vec::new();
    for i in 0..16 {
        batch.extend_from_slice(&get_req(&format!("/p/req-{i}?n={i}")));
    }
    c.send(&batch);
    c.reads = 0;
    for i in 0..16 {
        let r = c.read_response();
        assert_eq!(r.status, 200, "response {i}: {}", r.head_raw);
        assert_eq!(r.text(), format!("/p/req-{i}?n={i}"), "response {i} out of order");
        assert!(!r.has_close(), "response {i} closes: {}", r.head_raw);
    }
    assert!(
        c.buffered().is_empty(),
        "extra bytes: {:?}",
        common::show(c.buffered())
    );
    // 16 small responses coalesced: a handful of reads at most (one write from the server
    // normally arrives in one read).
    assert!(c.reads <= 4, "16 responses took {} reads", c.reads);
    // The connection is still usable.
    c.send(&get_req("/p/after"));
    assert_eq!(c.read_response().text(), "/p/after");
    let report = server.stop();
    assert_eq!(report.requests, 18, "{report}");
    assert_eq!(report.cut, 0, "{report}");
}

/// Handlers that take no argument get no request built (their heads are dropped from the
/// buffer unread): pipelined between handlers that read theirs, router answers (404, 405),
/// HEAD and a body, every request is still answered in order, and `Connection: close` on
/// the last (read from the head alone) still closes.
#[test]
fn handlers_that_read_nothing_keep_a_mixed_pipeline_in_order() {
    mixed_pipeline_in_order(start(test_router));
}

/// The same pipeline through the traced path (the access log on: every request goes through
/// `Router::handle`, which builds every request, the skipped heads included).
#[test]
fn the_traced_path_keeps_a_mixed_pipeline_in_order() {
    mixed_pipeline_in_order(start(|| test_router().access_log(true)));
}

/// Reads the answer to `HEAD /admin`: a 200 with the length its GET's body ("ADMIN") would
/// have, and no body.
fn expect_admin_head(c: &mut Client) {
    let head = c.read_head_response();
    assert_eq!(head.status, 200, "{}", head.head_raw);
    assert!(
        head.head_raw.to_ascii_lowercase().contains("content-length: 5"),
        "{}",
        head.head_raw
    );
}

fn mixed_pipeline_in_order(server: common::TestServer) {
    let mut c = server.client();
    let mut batch = Vec::new();
    batch.extend_from_slice(&get_req("/"));
    batch.extend_from_slice(&get_req("/p/one?x=1"));
    batch.extend_from_slice(&get_req("/admin"));
    batch.extend_from_slice(&get_req("/missing"));
    batch.extend_from_slice(b"HEAD /admin HTTP/1.1\r\nHost: t\r\n\r\n");
    batch.extend_from_slice(b"POST /admin HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    batch.extend_from_slice(&get_req("/nocontent"));
    batch.extend_from_slice(b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Seen: yes\r\n\r\n");
    batch.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    c.send(&batch);
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "root"), "{}", r.head_raw);
    assert_eq!(c.read_response().text(), "/p/one?x=1");
    assert_eq!(c.read_response().text(), "ADMIN");
    assert_eq!(c.read_response().status, 404);
    expect_admin_head(&mut c);
    let r = c.read_response();
    assert_eq!(r.status, 405, "{}", r.head_raw);
    assert_eq!(c.read_head_response().status, 204);
    let r = c.read_response();
    assert!(r.text().contains("x-seen: yes"), "{}", r.text());
    let last = c.read_response();
    assert_eq!(last.text(), "root");
    assert!(last.has_close(), "{}", last.head_raw);
    c.expect_closed();
    let report = server.stop();
    // The nine, and the start-up probe's.
    assert_eq!(report.requests, 10, "{report}");
}

#[test]
fn pipelined_requests_with_bodies_stay_in_order() {
    let server = start(test_router);
    let mut c = server.client();
    let batch = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirstGET /p/second HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nthi\r\n2\r\nrd\r\n0\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /p/fifth HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(batch);
    assert_eq!(c.read_response().text(), "first");
    assert_eq!(c.read_response().text(), "/p/second");
    assert_eq!(c.read_response().text(), "third");
    let head = c.read_head_response();
    assert_eq!(head.status, 200);
    let fifth = c.read_response();
    assert_eq!(fifth.status, 200, "{}", fifth.head_raw);
    assert_eq!(fifth.text(), "/p/fifth");
    server.stop();
}

#[test]
fn pipelined_large_and_small_bodies_keep_their_order() {
    // A body over the coalescing threshold goes out in its own write; order must hold.
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = get_req("/p/one");
    batch.extend_from_slice(&get_req("/big/200000"));
    batch.extend_from_slice(&get_req("/p/three"));
    batch.extend_from_slice(&get_req("/big/70000"));
    batch.extend_from_slice(&get_req("/p/five"));
    c.send(&batch);
    assert_eq!(c.read_response().text(), "/p/one");
    let big = c.read_response();
    assert_eq!(big.body.len(), 200_000);
    assert!(big.body.iter().all(|&b| b == b'x'));
    assert_eq!(c.read_response().text(), "/p/three");
    assert_eq!(c.read_response().body.len(), 70_000);
    assert_eq!(c.read_response().text(), "/p/five");
    server.stop();
}

#[test]
fn pipelined_stream_between_full_responses() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = get_req("/p/before");
    batch.extend_from_slice(&get_req("/stream"));
    batch.extend_from_slice(&get_req("/p/after"));
    c.send(&batch);
    assert_eq!(c.read_response().text(), "/p/before");
    let s = c.read_response();
    assert!(s.chunked(), "{}", s.head_raw);
    assert_eq!(s.text(), common::STREAM_BODY);
    assert_eq!(c.read_response().text(), "/p/after");
    server.stop();
}

#[test]
fn pipeline_split_at_every_byte_still_answers_in_order() {
    // The same three requests written one byte at a time.
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = get_req("/p/a");
    batch.extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nbcd");
    batch.extend_from_slice(&get_req("/p/e"));
    c.send_slowly(&batch, 1, Duration::from_micros(200));
    assert_eq!(c.read_response().text(), "/p/a");
    assert_eq!(c.read_response().text(), "bcd");
    assert_eq!(c.read_response().text(), "/p/e");
    server.stop();
}

#[test]
fn sixteen_pipelined_requests_on_many_connections() {
    let server = start(test_router);
    let mut clients: Vec<Client> = (0..8).map(|_| server.client()).collect();
    for (k, c) in clients.iter_mut().enumerate() {
        let mut batch = Vec::new();
        for i in 0..16 {
            batch.extend_from_slice(&get_req(&format!("/p/{k}/{i}")));
        }
        c.send(&batch);
    }
    for (k, c) in clients.iter_mut().enumerate() {
        for i in 0..16 {
            assert_eq!(c.read_response().text(), format!("/p/{k}/{i}"));
        }
    }
    let report = server.stop();
    assert_eq!(report.requests, 8 * 16 + 1, "{report}");
}

#[test]
fn pipelined_batch_beyond_the_flush_threshold_stays_in_order() {
    // ~150 KiB of responses to one write: the server flushes part-way through the batch.
    let server = start(test_router);
    let mut c = server.client();
    let pad = "x".repeat(1000);
    let mut batch = Vec::new();
    for i in 0..150 {
        batch.extend_from_slice(&get_req(&format!("/p/{i}/{pad}")));
    }
    c.send(&batch);
    for i in 0..150 {
        let r = c.read_response();
        assert_eq!(r.status, 200, "response {i}: {}", r.head_raw);
        assert_eq!(r.text(), format!("/p/{i}/{pad}"), "response {i}");
    }
    server.stop();
}

/// Handlers that wait (a sleep) in the middle of a pipelined batch: the requests after each
/// are answered once it is ready, in order, each once, and the connection goes on. (The
/// connection loop answers a batch's requests after its first in one synchronous run; a
/// handler that is not ready makes the run wait with it and go on from there.)
#[test]
fn handlers_that_wait_inside_a_pipelined_batch_keep_it_in_order() {
    let server = start(test_router);
    let mut c = server.client();
    let mut batch = Vec::new();
    for path in ["/p/a", "/slow/60", "/p/b", "/slow/30", "/p/c"] {
        batch.extend_from_slice(&get_req(path));
    }
    batch.extend_from_slice(b"HEAD /admin HTTP/1.1\r\nHost: t\r\n\r\n");
    let t0 = std::time::Instant::now();
    c.send(&batch);
    for want in ["/p/a", "slept", "/p/b", "slept", "/p/c"] {
        let r = c.read_response();
        assert_eq!((r.status, r.text().as_str()), (200, want), "{}", r.head_raw);
        assert!(!r.has_close(), "{}", r.head_raw);
    }
    expect_admin_head(&mut c);
    // Both sleeps ran, one after the other.
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(90), "took {took:?}");
    assert!(
        c.buffered().is_empty(),
        "extra bytes: {:?}",
        common::show(c.buffered())
    );
    c.send(&get_req("/p/after"));
    assert_eq!(c.read_response().text(), "/p/after");
    let report = server.stop();
    // The six, the one after, and the start-up probe's.
    assert_eq!(report.requests, 8, "{report}");
}
