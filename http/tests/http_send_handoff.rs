//! The end of a batch's answers handed off to the ring (`conn/write.rs`,
//! `flush_handing_off`): with every send going through the ring (speculative sends off, as on
//! a busy io_uring core), a keep-alive connection's task is polled once per request or
//! pipelined batch, not twice (the send's completion wakes nobody), and every answer arrives
//! whole and in order, small or large, one at a time or pipelined. On epoll, or where the
//! ring cannot hand a send off, the same answers go out the old way.

mod common;

use std::time::Duration;

use common::{get_req, start_with};
use ringcore_http::{get, metrics, Router};

/// The core's `ringcore_runtime_tasks_polled_total`, from one scrape.
fn polls(addr: std::net::SocketAddr) -> f64 {
    let r = common::roundtrip(addr, &get_req("/metrics"));
    assert_eq!(r.status, 200);
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix("ringcore_runtime_tasks_polled_total{core=\"0\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no task poll count in {text}"))
}

#[test]
fn answers_sent_through_the_ring_cost_one_task_poll_and_arrive_whole() {
    let big: &'static str = Box::leak("0123456789abcdef".repeat(64 * 1024).into_boxed_str()); // 1 MiB
    let server = start_with(
        |s| s.runtime(|b| b.handle_signals(false).speculative_send(false)),
        move || {
            Router::new()
                .route("/plaintext", get(|| async { "Hello, World!" }))
                .route("/big", get(move || async move { big }))
                .route("/metrics", get(metrics::prometheus))
        },
    );
    let uring = std::env::var("RINGCORE_DRIVER").map_or(true, |d| d != "epoll");
    let mut c = server.client();
    c.set_read_timeout(Duration::from_secs(10));

    // One request at a time.
    let before = polls(server.addr);
    const ONE_BY_ONE: usize = 400;
    for _ in 0..ONE_BY_ONE {
        c.send(&get_req("/plaintext"));
        let r = c.read_response();
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"));
    }
    // Pipelined batches of 16.
    const BATCHES: usize = 100;
    let batch = get_req("/plaintext").repeat(16);
    for _ in 0..BATCHES {
        c.send(&batch);
        for _ in 0..16 {
            let r = c.read_response();
            assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"));
        }
    }
    // The scrapes' own connections are polled a few times each.
    let polled = polls(server.addr) - before;
    let per_turn = polled / (ONE_BY_ONE + BATCHES) as f64;
    if uring {
        // Two per request or batch before the hand-off (the send's completion woke the task).
        assert!(
            per_turn < 1.3,
            "{polled} task polls for {ONE_BY_ONE} requests and {BATCHES} batches"
        );
    }

    // Large answers (1 MiB, more than the socket buffers hold), between small ones and
    // pipelined with them: whole and in order while the client reads at its own pace.
    let mixed = [get_req("/big"), get_req("/plaintext"), get_req("/big")].concat();
    for _ in 0..3 {
        c.send(&mixed);
        std::thread::sleep(Duration::from_millis(20));
        for want in [big, "Hello, World!", big] {
            let r = c.read_response();
            assert_eq!(r.status, 200);
            assert!(
                r.text() == want,
                "a {} byte body instead of {}",
                r.text().len(),
                want.len()
            );
        }
    }
    server.stop();
}
