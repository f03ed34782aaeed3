//! The provided receive buffers on io_uring: the ring keeps a small window of buffers
//! published, the last given back first, and widens it when a burst finds it empty. A burst
//! over more connections than the window loses no byte, widens the window once, and every
//! buffer comes back. On the epoll driver (no buffer ring) the same burst is read whole.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use ringcore_runtime::net::{TcpListener, TcpStream};
use ringcore_runtime::time::{sleep, timeout};
use ringcore_runtime::{local_state, shard_id, spawn_local, stats, yield_now};
use ringcore_testkit::rt::{one_core, run_on};

/// More connections than the first window (32 buffers).
const CONNS: usize = 100;
const BYTES: usize = 2_000;
/// Small buffers (the least the runtime allows), so that one connection's bytes alone take
/// more receive buffers than the first window holds.
const BUF: u32 = 64;

fn pattern(conn: usize) -> Vec<u8> {
    (0..BYTES).map(|i| (conn * 7 + i) as u8).collect()
}

/// Reads `BYTES` bytes: the connection's number first (one byte), then its pattern.
async fn read_one(s: TcpStream) -> (usize, Vec<u8>) {
    let mut got = Vec::new();
    while got.len() < BYTES + 1 {
        let chunk = timeout(Duration::from_secs(10), s.recv())
            .await
            .expect("bytes in time")
            .expect("recv");
        assert!(!chunk.is_empty(), "EOF after {} bytes", got.len());
        got.extend_from_slice(&chunk);
    }
    (usize::from(got[0]), got.split_off(1))
}

/// Connects `CONNS` clients, waits for `go`, then writes every client's bytes at once and
/// says so on `written`.
/// Receives into `got` until it holds `n` bytes (each receive bounded by 10 s; EOF fails).
async fn recv_until(s: &TcpStream, got: &mut Vec<u8>, n: usize) {
    while got.len() < n {
        let chunk = timeout(Duration::from_secs(10), s.recv())
            .await
            .expect("in time")
            .expect("recv");
        assert!(!chunk.is_empty(), "EOF after {} of {n} bytes", got.len());
        got.extend_from_slice(&chunk);
    }
}

fn clients(addr: SocketAddr, go: mpsc::Receiver<()>, written: mpsc::Sender<()>, done: mpsc::Receiver<()>) {
    let mut socks: Vec<std::net::TcpStream> = (0..CONNS)
        .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
        .collect();
    go.recv_timeout(Duration::from_secs(20))
        .expect("the server armed its receives");
    for (i, s) in socks.iter_mut().enumerate() {
        let mut msg = vec![i as u8];
        msg.extend_from_slice(&pattern(i));
        s.write_all(&msg).expect("write");
    }
    let _ = written.send(());
    // Held open until the server has read everything.
    let _ = done.recv_timeout(Duration::from_secs(30));
}

#[test]
fn a_burst_over_more_connections_than_the_window_widens_it_and_loses_nothing() {
    let report = run_on(one_core(false).buf_ring(1024, BUF), || async {
        assert_eq!(shard_id(), 0);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (go_tx, go_rx) = mpsc::channel();
        let (written_tx, written_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let client = std::thread::spawn(move || clients(addr, go_rx, written_tx, done_rx));
        let mut readers = Vec::new();
        for _ in 0..CONNS {
            let s = timeout(Duration::from_secs(10), listener.accept_stream())
                .await
                .expect("accept in time")
                .expect("accept");
            readers.push(spawn_local(read_one(s)));
        }
        // Every reader has asked for bytes (its receive is armed), and nothing was sent yet.
        for _ in 0..4 {
            yield_now().await;
        }
        let window_before = local_state().recv_buffer_window;
        let empty_before = stats::shard(0).recv_buf_ring_empty;
        go_tx.send(()).expect("go");
        // The core blocks (reaps nothing) until every client has sent: the receives complete
        // together, the burst meeting the window all at once.
        written_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the clients wrote");
        let mut seen = [false; CONNS];
        for r in readers {
            let (conn, bytes) = r.await.expect("reader");
            assert!(conn < CONNS && !seen[conn], "connection {conn} twice or unknown");
            seen[conn] = true;
            assert!(bytes == pattern(conn), "connection {conn}: the bytes differ");
        }
        let _ = done_tx.send(());
        client.join().expect("client thread");
        // Buffers come back when the chunks are dropped (all are by now).
        sleep(Duration::from_millis(10)).await;
        let st = local_state();
        (
            st.multishot_recv,
            window_before,
            st.recv_buffer_window,
            stats::shard(0).recv_buf_ring_empty - empty_before,
            st.recv_buffers_out,
        )
    });
    let (multishot, before, after, empty, out) = report;
    assert_eq!(out, 0, "every receive buffer came back");
    if multishot {
        assert_eq!(before, 32, "the first window");
        // (2,001 bytes per connection in 64-byte buffers: 32 buffers are not one
        // connection's bytes.)
        assert!(
            after > before && after <= 1024,
            "a burst of {CONNS} connections found {before} buffers: the window should have \
             widened, it is {after} ({empty} receives found the ring empty)"
        );
        assert!(empty >= 1, "some receives found the window empty");
    } else {
        assert_eq!(after, 0, "no provided buffer ring, no window");
    }
}

/// `TcpStream::try_recv` gives the chunks a multishot receive has already brought, in order,
/// without waiting, and `None` once they are taken (or, on the epoll driver, always); a
/// `recv` after it still waits for, and gets, the bytes that come later.
#[test]
fn try_recv_takes_the_chunks_already_here_and_recv_still_waits_for_more() {
    for portable in [false, true] {
        let builder = one_core(portable).buf_ring(16, 1024);
        let (got, later, ring, uring) = run_on(builder, || async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let client = TcpStream::connect(listener.local_addr().expect("addr"))
                .await
                .expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            assert!(server.try_recv().is_none(), "a chunk before any byte was sent");
            let bytes: Vec<u8> = (0..3_000u32).map(|i| i as u8).collect();
            client.write_all(bytes).await.0.expect("write");
            let first = server.recv().await.expect("recv");
            let mut got = first.to_vec();
            let ring = server.uses_buf_ring();
            let uring = ringcore_runtime::driver_kind() == ringcore_runtime::DriverKind::IoUring;
            while let Some(chunk) = server.try_recv() {
                assert!(!chunk.is_empty() && chunk.len() <= 1024, "{} bytes", chunk.len());
                got.extend_from_slice(&chunk);
            }
            // Whatever did not come with the first completions comes to `recv`.
            recv_until(&server, &mut got, 3_000).await;
            assert!(server.try_recv().is_none(), "a chunk after all 3,000 bytes");
            client.write_all(b"later".to_vec()).await.0.expect("write");
            let later = timeout(Duration::from_secs(10), server.recv())
                .await
                .expect("woken")
                .expect("recv");
            (got, later.to_vec(), ring, uring)
        });
        let want: Vec<u8> = (0..3_000u32).map(|i| i as u8).collect();
        assert_eq!(got, want, "portable {portable}: bytes lost or out of order");
        assert_eq!(later, b"later");
        assert_eq!(
            ring,
            uring && !portable,
            "the ring is in use on io_uring's native path only"
        );
    }
}

/// `try_recv` spends the task's cooperative budget as a poll does: with it spent it gives
/// nothing though chunks are here (a task reading chunk after chunk without waiting still
/// lets the others run), and the chunks are not lost: `recv` gets them after the yield.
#[test]
fn try_recv_stops_when_the_task_budget_is_spent_and_loses_nothing() {
    let builder = one_core(false).buf_ring(16, 1024).budget(2);
    let (got, stopped, ring) = run_on(builder, || async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let bytes: Vec<u8> = (0..5_000u32).map(|i| i as u8).collect();
        client.write_all(bytes).await.0.expect("write");
        // Let every chunk arrive before the first receive.
        sleep(Duration::from_millis(50)).await;
        yield_now().await;
        let mut got = server.recv().await.expect("recv").to_vec();
        // Within one poll: a budget of 2 leaves at most one more chunk to `try_recv`.
        let mut taken = 0;
        while let Some(chunk) = server.try_recv() {
            got.extend_from_slice(&chunk);
            taken += 1;
        }
        let stopped = taken <= 1 && got.len() < 5_000;
        recv_until(&server, &mut got, 5_000).await;
        (got, stopped, server.uses_buf_ring())
    });
    let want: Vec<u8> = (0..5_000u32).map(|i| i as u8).collect();
    assert_eq!(got, want, "bytes lost or out of order");
    if ring {
        assert!(stopped, "try_recv went on past the task's budget");
    }
}
