//! Graceful shutdown: stop accepting, close idle keep-alive connections, let in-flight
//! requests finish (answered with `Connection: close`) within the graceful timeout, and
//! report the connections that had to be cut.

mod common;

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{get_req, start, start_with, test_router, Closed};

#[test]
fn in_flight_request_finishes_and_idle_connection_is_closed() {
    let server = start(test_router);
    let addr = server.addr;

    let mut idle = server.client();
    idle.send(&get_req("/p/idle"));
    assert_eq!(idle.read_response().status, 200);

    let mut slow = server.client();
    slow.send(&get_req("/slow/300"));
    std::thread::sleep(Duration::from_millis(50)); // the handler is sleeping now

    let t0 = Instant::now();
    server.trigger_shutdown();

    // The idle keep-alive connection is closed without a byte.
    let closed = idle.read_close();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "idle connection closed only after {:?} ({closed:?})",
        t0.elapsed()
    );

    // New connections are refused once the listener is gone.
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("connecting during shutdown: expected refused, got {e}"),
        Ok(_) => panic!("a new connection was accepted during shutdown"),
    }

    // The in-flight request still gets its answer, marked close, and the connection closes.
    let r = slow.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), "slept");
    assert_eq!(slow.read_close(), Closed::Fin);

    let report = server.join();
    assert_eq!(report.cut, 0, "{report}");
    assert_eq!(report.requests, 3, "{report}");
    assert_eq!(report.connections, 3, "{report}");
    // Checked last so that the checks above still run if only this fails.
    assert!(
        r.has_close(),
        "the response finished during shutdown must carry Connection: close: {}",
        r.head_raw
    );
}

#[test]
fn request_still_running_at_the_graceful_timeout_is_cut() {
    let server = start_with(|s| s.graceful_timeout(Duration::from_millis(100)), test_router);
    let mut slow = server.client();
    slow.send(&get_req("/slow/2000"));
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    server.trigger_shutdown();
    let report = server.join();
    let took = t0.elapsed();
    assert_eq!(report.cut, 1, "{report}");
    assert!(
        took < Duration::from_millis(1800),
        "shutdown waited {took:?} for the 2 s handler"
    );
    // The cut connection got no response.
    let (rest, _) = slow.read_until_close();
    assert!(
        !rest.starts_with(b"HTTP/1.1 200"),
        "a cut request was answered: {:?}",
        common::show(&rest)
    );
}

#[test]
fn shutdown_with_only_idle_connections_is_quick_and_cuts_nothing() {
    let server = start(test_router);
    let mut clients: Vec<_> = (0..5).map(|_| server.client()).collect();
    for c in &mut clients {
        c.send(&get_req("/"));
        assert_eq!(c.read_response().status, 200);
    }
    let t0 = Instant::now();
    let report = server.stop();
    assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    assert_eq!(report.cut, 0, "{report}");
    assert_eq!(report.connections, 6, "{report}");
    for c in &mut clients {
        c.expect_closed();
    }
}

#[test]
fn in_flight_stream_finishes_during_shutdown() {
    let server = start(test_router);
    let mut c = server.client();
    c.send(&get_req("/stream"));
    std::thread::sleep(Duration::from_millis(10));
    server.trigger_shutdown();
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.text(), common::STREAM_BODY);
    c.expect_closed();
    let report = server.join();
    assert_eq!(report.cut, 0, "{report}");
}
