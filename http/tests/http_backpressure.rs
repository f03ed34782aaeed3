//! Clients that push more than they take: a client that pipelines requests and never reads
//! its responses is cut after the write timeout, and the server stops reading it once its
//! pending output is over the cap (so the requests it never gets to stay in TCP's buffers);
//! request bodies held across reads stay within the per-core budget (503 + Retry-After past
//! it); a connection reset mid-request is released at once.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{get_req, roundtrip, start_limits, test_router, Client};
use ringcore_http::{get, Limits, Router};

/// Generous upper bound for anything that should happen "soon" on a shared 2-core machine.
const SOON: Duration = Duration::from_secs(10);

fn router() -> Router {
    test_router()
        .route("/metrics", get(ringcore_http::metrics::prometheus))
        .route("/8k", get(|| async { vec![b'k'; 8 * 1024] }))
}

/// The value of an unlabelled sample in `/metrics` (0 if absent).
fn metric(addr: SocketAddr, name: &str) -> f64 {
    let r = roundtrip(addr, &get_req("/metrics"));
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Polls `/metrics` until `name` satisfies `ok`, for at most [`SOON`]; returns the last value.
fn wait_metric(addr: SocketAddr, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let t0 = Instant::now();
    loop {
        let v = metric(addr, name);
        if ok(v) || t0.elapsed() > SOON {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Closes `s` with a reset (SO_LINGER with a zero timeout) instead of a FIN.
fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `s` owns a live socket fd, and `lg` is a valid `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lg as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(s);
}

const ACTIVE: &str = "ringcore_http_connections_active";
const BODY_BYTES: &str = "ringcore_http_body_buffer_bytes";

#[test]
fn a_pipelining_client_that_never_reads_is_cut_after_the_write_timeout() {
    const SENT: usize = 4000;
    let mut limits = Limits::default();
    limits.write_timeout = Duration::from_millis(300);
    let server = start_limits(limits, router);
    let addr = server.addr;
    let hog = TcpStream::connect(addr).expect("connect");
    hog.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    let mut w = hog.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        // 4000 requests for 8 KiB each: 32 MiB of responses, far more than TCP buffers hold.
        let batch: Vec<u8> = (0..SENT).flat_map(|_| get_req("/8k")).collect();
        let _ = w.write_all(&batch);
    });
    let cuts = wait_metric(addr, "ringcore_http_write_timeouts_total", |v| v >= 1.0);
    assert_eq!(cuts, 1.0, "the stalled connection was not cut");
    // Only the scraping connection is left.
    assert_eq!(wait_metric(addr, ACTIVE, |v| v == 1.0), 1.0);
    writer.join().expect("writer");
    drop(hog);
    // A reading client is served as usual, large bodies included.
    let mut c = Client::connect(addr);
    c.send(&get_req("/big/4000000"));
    let r = c.read_response();
    assert_eq!((r.status, r.body.len()), (200, 4_000_000));
    drop(c);
    let report = server.stop();
    // The server stopped reading once the output backed up: most requests were never handled.
    assert!(
        report.requests < SENT as u64 / 2,
        "{} of {SENT} pipelined requests were handled for a client that never read",
        report.requests
    );
}

fn body_head(len: usize) -> Vec<u8> {
    format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").into_bytes()
}

#[test]
fn bodies_past_the_core_budget_get_503_with_retry_after() {
    // Room for two 100 KiB bodies: a body of declared length reserves all of it up front.
    const BUDGET: usize = 256 * 1024;
    const PART: usize = 20 * 1024;
    const FULL: usize = 100 * 1024;
    let mut limits = Limits::default();
    limits.body_buffer_budget = BUDGET;
    limits.body_budget_wait = Duration::from_millis(100);
    let server = start_limits(limits, router);
    let addr = server.addr;
    let part = vec![b'b'; PART];
    let mut clients: Vec<Client> = (0..8)
        .map(|_| {
            let mut c = Client::connect(addr);
            let mut req = body_head(FULL);
            req.extend_from_slice(&part);
            c.send(&req);
            c
        })
        .collect();
    // Those that got room stay silent, waiting for the rest of their body; the others are
    // answered 503 within the budget wait.
    std::thread::sleep(Duration::from_millis(1500));
    let mut held = Vec::new();
    let mut refused = 0;
    for mut c in clients.drain(..) {
        c.set_read_timeout(Duration::from_millis(50));
        let mut peek = [0u8; 1];
        if c.stream.peek(&mut peek).is_ok() {
            c.set_read_timeout(common::READ_TIMEOUT);
            let r = c.read_response();
            assert_eq!(r.status, 503, "{}", r.head_raw);
            assert_eq!(r.header("retry-after"), Some("1"));
            assert!(r.has_close());
            refused += 1;
        } else {
            held.push(c);
        }
    }
    assert!(refused > 0, "no body was refused past a {BUDGET}-byte budget");
    assert!(
        !held.is_empty() && held.len() * FULL <= BUDGET,
        "{} bodies of {FULL} bytes held in a {BUDGET}-byte budget",
        held.len()
    );
    let in_use = metric(addr, BODY_BYTES);
    assert!(in_use > 0.0 && in_use <= BUDGET as f64, "{in_use} bytes reserved");
    // A body that started always has room to finish, and what it held is given back.
    let mut c = held.remove(0);
    c.set_read_timeout(common::READ_TIMEOUT);
    c.send(&vec![b'b'; FULL - PART]);
    let r = c.read_response();
    assert_eq!((r.status, r.body.len()), (200, FULL));
    drop(c);
    drop(held);
    assert_eq!(wait_metric(addr, BODY_BYTES, |v| v == 0.0), 0.0);
    // With the budget free again, a new body fits.
    let mut req = body_head(FULL);
    req.extend_from_slice(&vec![b'b'; FULL]);
    let r = roundtrip(addr, &req);
    assert_eq!((r.status, r.body.len()), (200, FULL));
    server.stop();
}

#[test]
fn a_connection_reset_mid_request_is_released_at_once() {
    // The read timeouts are long: only noticing the reset frees the connection in time.
    let server = start_limits(Limits::default(), router);
    let addr = server.addr;
    for (what, sent) in [
        ("mid-body", {
            let mut r = body_head(100_000);
            r.extend_from_slice(&[b'b'; 5000]);
            r
        }),
        ("mid-head", b"GET / HTTP/1.1\r\nHost: t\r\nX-Partial: ".to_vec()),
    ] {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(&sent).expect("send");
        assert_eq!(wait_metric(addr, ACTIVE, |v| v == 2.0), 2.0, "{what}: not active");
        reset(s);
        assert_eq!(
            wait_metric(addr, ACTIVE, |v| v == 1.0),
            1.0,
            "{what}: still active"
        );
        assert_eq!(metric(addr, BODY_BYTES), 0.0, "{what}: body budget still held");
    }
    let report = server.stop();
    assert_eq!(report.cut, 0, "{report}");
}

#[test]
fn chunked_bodies_reserve_each_read_within_the_budget() {
    const BUDGET: usize = 16 * 1024;
    let mut limits = Limits::default();
    limits.body_buffer_budget = BUDGET;
    limits.body_budget_wait = Duration::from_millis(100);
    let server = start_limits(limits, router);
    let addr = server.addr;
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3000\r\n".to_vec();
    req.extend_from_slice(&[b'c'; 0x3000]);
    req.extend_from_slice(b"\r\n");
    let mut first = Client::connect(addr);
    first.send(&req);
    assert!(
        wait_metric(addr, BODY_BYTES, |v| v > 0.0) > 0.0,
        "the first body reserved nothing"
    );
    // The second 12 KiB does not fit next to the first.
    let mut second = Client::connect(addr);
    second.send(&req);
    let r = second.read_response();
    assert_eq!(r.status, 503, "{}", r.head_raw);
    assert_eq!(r.header("retry-after"), Some("1"));
    let in_use = metric(addr, BODY_BYTES);
    assert!(in_use <= BUDGET as f64, "{in_use} bytes reserved");
    first.send(b"0\r\n\r\n");
    let r = first.read_response();
    assert_eq!((r.status, r.body.len()), (200, 0x3000));
    assert_eq!(wait_metric(addr, BODY_BYTES, |v| v == 0.0), 0.0);
    server.stop();
}
