//! Streamed request bodies (`BodyStream`) over real sockets on 127.0.0.1: Content-Length and
//! chunked bodies read as the handler consumes them, the body limit mid-stream, the
//! back-pressure bound, a partly read body followed by a second request on the same
//! connection, a slow body timing out, a client that leaves mid-body, and
//! `Expect: 100-continue`.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{start_limits, Client, Closed};
use ringcore_http::metrics::Gauge;
use ringcore_http::runtime::spawn_local;
use ringcore_http::runtime::time::sleep;
use ringcore_http::{post, BodyError, BodyStream, Limits, Router, StatusCode};

const MIB: usize = 1024 * 1024;

/// FNV-1a over the body, so a test can tell a reordered or damaged body from the right one.
fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The body every test sends: `n` bytes of a pattern that never repeats on a short period.
fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

fn answer_for(b: &[u8]) -> String {
    format!("n={} h={:016x}", b.len(), fnv(FNV_START, b))
}

/// Reads the whole body, counting and hashing it.
async fn count(mut body: BodyStream) -> Result<String, BodyError> {
    let (mut n, mut h) = (0, FNV_START);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        n += chunk.len();
        h = fnv(h, &chunk);
    }
    Ok(format!("n={n} h={h:016x}"))
}

/// Whatever the body does, answers 200 (the connection must not let that stand when the
/// body broke a limit).
async fn lenient(mut body: BodyStream) -> &'static str {
    while let Some(Ok(_)) = body.next().await {}
    "fine"
}

/// Reads one chunk and answers its size, leaving the rest unread.
async fn first(mut body: BodyStream) -> String {
    match body.next().await {
        Some(Ok(c)) => format!("first={}", c.len()),
        other => format!("first={other:?}"),
    }
}

/// The error a handler saw last, for tests that cannot see it in a response.
type Seen = Arc<Mutex<Option<String>>>;

fn router(seen: Seen) -> impl Fn() -> Router + Send + Sync + 'static {
    move || {
        let seen = seen.clone();
        Router::new()
            .route("/count", post(count))
            .route("/lenient", post(lenient))
            .route("/first", post(first))
            .route("/ignore", post(|_: BodyStream| async { "ignored" }))
            .route("/buffered", post(|b: bytes::Bytes| async move { answer_for(&b) }))
            .route(
                "/watch",
                post(move |mut body: BodyStream| {
                    let seen = seen.clone();
                    async move {
                        let mut n = 0;
                        while let Some(c) = body.next().await {
                            match c {
                                Ok(c) => n += c.len(),
                                Err(e) => {
                                    *seen.lock().expect("lock") = Some(format!("{e:?} after {n}"));
                                    return "error";
                                }
                            }
                        }
                        *seen.lock().expect("lock") = Some(format!("end after {n}"));
                        "done"
                    }
                }),
            )
    }
}

fn limits(max_body: usize) -> Limits {
    let mut l = Limits::default();
    l.max_body_bytes = max_body;
    l.body_buffer_budget = max_body.max(l.body_buffer_budget);
    l
}

fn head(path: &str, framing: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: t\r\n{framing}\r\n").into_bytes()
}

fn chunked(b: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in b.chunks(piece) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Writes `data` from another thread (the server reads as its handler consumes, so a
/// large body and the response read must not wait on each other).
fn send_in_background(c: &Client, data: Vec<u8>) -> std::thread::JoinHandle<std::io::Result<()>> {
    let mut w = c.stream.try_clone().expect("clone");
    std::thread::spawn(move || w.write_all(&data))
}

#[test]
fn content_length_and_chunked_bodies_stream_to_the_handler() {
    let server = start_limits(limits(16 * MIB), router(Seen::default()));
    let b = body(3 * MIB);
    let mut c = server.client();
    let mut req = head("/count", &format!("Content-Length: {}\r\n", b.len()));
    req.extend_from_slice(&b);
    let w = send_in_background(&c, req);
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, answer_for(&b)));
    w.join().expect("writer").expect("write");

    // Chunked, in many small chunks, on the same connection.
    let b = body(MIB + 17);
    let mut req = head("/count", "Transfer-Encoding: chunked\r\n");
    req.extend_from_slice(&chunked(&b, 1000));
    let w = send_in_background(&c, req);
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, answer_for(&b)));
    assert!(!r.has_close());
    w.join().expect("writer").expect("write");

    // A buffered handler beside them still gets the whole body.
    let b = body(100_000);
    let mut req = head("/buffered", &format!("Content-Length: {}\r\n", b.len()));
    req.extend_from_slice(&b);
    let w = send_in_background(&c, req);
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, answer_for(&b)));
    w.join().expect("writer").expect("write");
    server.stop();
}

#[test]
fn the_handler_runs_before_the_body_has_arrived() {
    let server = start_limits(limits(MIB), router(Seen::default()));
    let mut c = server.client();
    // The head and 10 of 100 bytes: a buffering server would wait for the other 90.
    let mut req = head("/first", "Content-Length: 100\r\n");
    req.extend_from_slice(&[b'a'; 10]);
    c.send(&req);
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, "first=10".to_string()));
    // The rest is drained (it is within the bound), and the connection serves the next
    // request.
    assert!(!r.has_close(), "{}", r.head_raw);
    c.send(&[b'b'; 90]);
    let b = body(5000);
    let mut req = head("/count", &format!("Content-Length: {}\r\n", b.len()));
    req.extend_from_slice(&b);
    c.send(&req);
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, answer_for(&b)));

    // A chunked body left unread within the bound: drained, connection kept.
    let b = body(20_000);
    let mut req = head("/ignore", "Transfer-Encoding: chunked\r\n");
    req.extend_from_slice(&chunked(&b, 4096));
    c.send(&req);
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, "ignored".to_string()));
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz");
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, answer_for(b"xyz")));

    // Past the bound (1 MiB declared, nothing read): the answer closes the connection.
    let mut c = server.client();
    let mut req = head("/ignore", &format!("Content-Length: {MIB}\r\n"));
    req.extend_from_slice(&[b'c'; 1000]);
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.has_close(), "{}", r.head_raw);
    c.expect_closed();
    server.stop();
}

#[test]
fn a_body_past_the_limit_ends_the_stream_with_413() {
    let server = start_limits(limits(64 * 1024), router(Seen::default()));
    let b = body(200 * 1024);
    // A handler that passes the error on with `?` answers the 413 problem.
    let mut c = server.client();
    let mut req = head("/count", "Transfer-Encoding: chunked\r\n");
    req.extend_from_slice(&chunked(&b, 8192));
    let _ = c.try_send(&req);
    let r = c.read_response();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains("urn:ringcore:rejection:body-too-large"),
        "{}",
        r.text()
    );
    assert!(r.has_close());
    c.read_until_close();

    // A handler that ignores the error cannot answer 200 for a body it never got whole.
    let mut c = server.client();
    let mut req = head("/lenient", "Transfer-Encoding: chunked\r\n");
    req.extend_from_slice(&chunked(&b, 8192));
    let _ = c.try_send(&req);
    let r = c.read_response();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.has_close());
    c.read_until_close();
    server.stop();
}

/// 8 MiB sent as fast as the client can to a handler that reads 64 KiB every 20 ms: the
/// server holds about one received chunk of it, never the body (a sampler task records the
/// most streamed body bytes the core held). The body's read time (1 s) is shorter than the
/// handler takes (about 2.6 s): only time spent waiting for the client counts.
#[test]
fn a_slow_handler_holds_a_fast_client_back() {
    const TOTAL: usize = 8 * MIB;
    let most = Arc::new(AtomicI64::new(0));
    let factory = {
        let most = most.clone();
        move || {
            let most = most.clone();
            Router::new().route(
                "/slow",
                post(move |mut body: BodyStream| {
                    let most = most.clone();
                    async move {
                        let done = std::rc::Rc::new(std::cell::Cell::new(false));
                        let gauge = Gauge::new(
                            "ringcore_http_body_stream_bytes",
                            "Bytes of streamed request bodies received and not yet taken by their handlers.",
                            &[],
                        );
                        let sampler = {
                            let (done, most) = (done.clone(), most.clone());
                            spawn_local(async move {
                                // Bounded: the test's body takes about 3 s.
                                for _ in 0..60_000 {
                                    if done.get() {
                                        break;
                                    }
                                    most.fetch_max(gauge.get(), Ordering::SeqCst);
                                    sleep(Duration::from_millis(1)).await;
                                }
                            })
                        };
                        let (mut n, mut h, mut since_pause) = (0usize, FNV_START, 0usize);
                        let mut result = Ok(());
                        while let Some(c) = body.next().await {
                            match c {
                                Ok(c) => {
                                    n += c.len();
                                    h = fnv(h, &c);
                                    since_pause += c.len();
                                    if since_pause >= 64 * 1024 {
                                        since_pause = 0;
                                        sleep(Duration::from_millis(20)).await;
                                    }
                                }
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            }
                        }
                        done.set(true);
                        let _ = sampler.await;
                        result.map(|()| format!("n={n} h={h:016x}"))
                    }
                }),
            )
        }
    };
    let mut l = limits(16 * MIB);
    l.body_read_timeout = Duration::from_secs(1);
    let server = start_limits(l, factory);
    let b = body(TOTAL);
    let expected = answer_for(&b);
    let mut c = server.client();
    c.set_read_timeout(Duration::from_secs(30));
    let mut req = head("/slow", &format!("Content-Length: {TOTAL}\r\n"));
    req.extend_from_slice(&b);
    let t0 = Instant::now();
    let w = send_in_background(&c, req);
    let r = c.read_response();
    let took = t0.elapsed();
    assert_eq!((r.status, r.text()), (200, expected));
    w.join().expect("writer").expect("write");
    assert!(
        took > Duration::from_secs(2),
        "the handler was meant to be slow ({took:?})"
    );
    let most = most.load(Ordering::SeqCst);
    // One receive (a 4 KiB ring buffer, or a 16 KiB fallback / epoll read) decoded and
    // queued, plus what the parser holds: well under 128 KiB; the body is 8 MiB.
    assert!(most > 0, "the sampler saw no streamed bytes");
    assert!(
        most <= 128 * 1024,
        "the server held up to {most} bytes of the body"
    );
    server.stop();
}

#[test]
fn a_slow_body_times_out_and_the_handler_sees_it() {
    let mut l = limits(MIB);
    l.body_read_timeout = Duration::from_millis(300);
    let server = start_limits(l, router(Seen::default()));
    let mut c = server.client();
    let mut req = head("/count", "Content-Length: 1000\r\n");
    req.extend_from_slice(&[b'a'; 100]);
    c.send(&req);
    let t0 = Instant::now();
    // A byte every 100 ms would keep a per-read timeout happy forever.
    let mut r = None;
    for _ in 0..50 {
        if c.try_send(b"a").is_err() {
            // The server answered and closed while we dripped.
            c.set_read_timeout(Duration::from_secs(5));
            r = Some(c.read_response());
            break;
        }
        c.set_read_timeout(Duration::from_millis(100));
        let mut probe = [0u8; 1];
        match c.stream.peek(&mut probe) {
            Ok(n) if n > 0 => {
                c.set_read_timeout(Duration::from_secs(5));
                r = Some(c.read_response());
                break;
            }
            _ => {}
        }
    }
    let r = r.expect("an answer within 5 s of dripping");
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.text().contains("body-timed-out"), "{}", r.text());
    assert!(r.has_close());
    assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}", t0.elapsed());
    server.stop();
}

#[test]
fn a_client_that_leaves_mid_body_gives_the_handler_an_error() {
    let seen = Seen::default();
    let server = start_limits(limits(MIB), router(seen.clone()));
    let mut c = server.client();
    let mut req = head("/watch", "Content-Length: 100000\r\n");
    req.extend_from_slice(&[b'a'; 5000]);
    c.send(&req);
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    let t0 = Instant::now();
    while seen.lock().expect("lock").is_none() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = seen.lock().expect("lock").clone();
    assert_eq!(got, Some("Closed after 5000".to_string()));

    // Chunked, cut in the middle of a chunk.
    *seen.lock().expect("lock") = None;
    let mut c = server.client();
    let mut req = head("/watch", "Transfer-Encoding: chunked\r\n");
    req.extend_from_slice(b"10\r\n0123456789abcdef\r\n10\r\n01234");
    c.send(&req);
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    let t0 = Instant::now();
    while seen.lock().expect("lock").is_none() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = seen.lock().expect("lock").clone();
    assert_eq!(got, Some("Closed after 21".to_string()));
    server.stop();
}

#[test]
fn expect_continue_is_answered_when_the_handler_first_reads() {
    let server = start_limits(limits(MIB), router(Seen::default()));
    let mut c = server.client();
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 100);
    c.send(b"hello");
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, answer_for(b"hello")));

    // A handler that never reads: no 100, and the connection closes after the answer (the
    // client may or may not send the body now).
    let mut c = server.client();
    c.send(b"POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, "ignored".to_string()));
    assert!(r.has_close());
    assert_eq!(c.read_close(), Closed::Fin);
    server.stop();
}

#[test]
fn a_status_from_the_handler_before_reading_is_sent() {
    // Not a streaming case as such: the handler's own refusal goes out at once, the body
    // unread, and the connection is closed for a body past the drain bound.
    let answered = Arc::new(AtomicBool::new(false));
    let factory = {
        let answered = answered.clone();
        move || {
            let answered = answered.clone();
            Router::new().route(
                "/refuse",
                post(move |_: BodyStream| {
                    answered.store(true, Ordering::SeqCst);
                    async { StatusCode::FORBIDDEN }
                }),
            )
        }
    };
    let server = start_limits(limits(16 * MIB), factory);
    let mut c = server.client();
    c.send(&head("/refuse", &format!("Content-Length: {}\r\n", 8 * MIB)));
    let r = c.read_response();
    assert_eq!(r.status, 403);
    assert!(r.has_close());
    assert!(answered.load(Ordering::SeqCst));
    server.stop();
}

/// The governance request timeout covers a handler waiting on its body: the handler is
/// dropped (its stream with it), the client gets the timeout's 503 at once, and the
/// connection then reads the rest of the body or closes.
#[test]
fn the_request_timeout_cuts_a_handler_waiting_on_its_body() {
    use ringcore_http::middleware::Timeout;
    let factory = || {
        Router::new()
            .route("/count", post(count))
            .layer(Timeout::new(Duration::from_millis(200)))
    };
    let server = start_limits(limits(MIB), factory);
    let mut c = server.client();
    let mut req = head("/count", "Content-Length: 100000\r\n");
    req.extend_from_slice(&[b'a'; 1000]);
    c.send(&req);
    let t0 = Instant::now();
    let r = c.read_response();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}", t0.elapsed());
    // 99,000 bytes left is past the drain bound: the connection closes after the answer.
    assert!(r.has_close(), "{}", r.head_raw);
    c.read_until_close();
    server.stop();
}
