//! The end of a batch's answers handed off to the ring (`conn/write.rs`,
//! `flush_handing_off`): with every send going through the ring (speculative sends off, as on
//! a busy io_uring core), a keep-alive connection's task is polled once per request or
//! pipelined batch, not twice (the send's completion wakes nobody), and every answer arrives
//! whole and in order: small or large, one at a time or pipelined, and while earlier
//! handed-off sends are stuck behind a client that does not read. Where the ring cannot hand
//! a send off (epoll, no multishot receive) the same answers go out the old way.

mod common;

use std::time::Duration;

use common::{get_req, start_with};
use ringcore_http::runtime::{driver_kind, local_state, DriverKind};
use ringcore_http::{get, metrics, Path, Router};

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

/// Sets `SO_RCVBUF` on a client socket.
fn set_recv_buffer(s: &std::net::TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: `s` is an open socket for the whole call, and the option value points to a
    // `c_int` that lives across it, with its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt SO_RCVBUF: {}", std::io::Error::last_os_error());
}

/// Answer `i`'s body: 14 KiB that say which answer it is (under the hand-off's 16 KiB).
fn numbered(i: u32) -> String {
    format!("{i:05}-").repeat(2048)
}

fn server() -> common::TestServer {
    let big: &'static str = Box::leak("0123456789abcdef".repeat(64 * 1024).into_boxed_str()); // 1 MiB
    start_with(
        |s| s.runtime(|b| b.handle_signals(false).speculative_send(false)),
        move || {
            Router::new()
                .route("/plaintext", get(|| async { "Hello, World!" }))
                .route("/big", get(move || async move { big }))
                .route("/n/{i}", get(|Path(i): Path<u32>| async move { numbered(i) }))
                .route(
                    "/hands-off",
                    get(|| async {
                        let on = driver_kind() == DriverKind::IoUring && local_state().multishot_recv;
                        if on {
                            "yes"
                        } else {
                            "no"
                        }
                    }),
                )
                .route("/metrics", get(metrics::prometheus))
        },
    )
}

#[test]
fn answers_sent_through_the_ring_cost_one_task_poll_and_arrive_whole() {
    let server = server();
    let hands_off = common::roundtrip(server.addr, &get_req("/hands-off")).text() == "yes";
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
    if hands_off {
        // Two per request or batch without the hand-off (the send's completion woke the task).
        assert!(
            per_turn < 1.3,
            "{polled} task polls for {ONE_BY_ONE} requests and {BATCHES} batches"
        );
    }

    // Large answers (1 MiB, more than the socket buffers hold: not handed off), between small
    // ones and pipelined with them: whole and in order while the client reads at its pace.
    let mixed = [get_req("/big"), get_req("/plaintext"), get_req("/big")].concat();
    let big = "0123456789abcdef".repeat(64 * 1024);
    for _ in 0..3 {
        c.send(&mixed);
        std::thread::sleep(Duration::from_millis(20));
        for want in [big.as_str(), "Hello, World!", big.as_str()] {
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

/// 1,000 requests one after another, each answered with 14 KiB (handed off whole), while the
/// client reads nothing: once the answers outgrow the socket buffers (loopback grows the
/// server's send buffer to about 4 MiB; here from about the 360th answer on), a handed-off
/// send stays on its way while the next requests arrive, and each later answer waits for it
/// to be settled (a server that failed the connection there instead fails this test). Then
/// the client reads: all 1,000 answers, whole, in order.
#[test]
fn answers_stuck_behind_a_client_that_does_not_read_arrive_whole_and_in_order() {
    let server = server();
    let mut c = server.client();
    c.set_read_timeout(Duration::from_secs(10));
    // A bounded receive buffer, so the server's sends wait for this client's reads.
    set_recv_buffer(&c.stream, 256 * 1024);
    const N: u32 = 1000;
    for i in 0..N {
        c.send(&get_req(&format!("/n/{i}")));
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..N {
        let r = c.read_response();
        assert_eq!(r.status, 200, "answer {i}");
        assert!(r.text() == numbered(i), "answer {i} is not its own 14 KiB");
    }
    server.stop();
}
