//! Dropping in-flight read, write, accept and timer futures: no crash, no leak. The process's
//! fd table and the core's op slab return to their starting size, on both I/O paths of the
//! io_uring driver and on the epoll driver.
//!
//! This file holds one test on purpose: it counts the whole process's open fds, so nothing
//! else may run beside it.

use std::time::Duration;

use ringcore_runtime::net::{TcpListener, TcpStream};
use ringcore_runtime::time::{sleep, timeout};
use ringcore_runtime::{driver_kind, local_state, Driver, DriverKind, Runtime};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Waits (bounded) until the driver has collected every cancelled op's completion.
async fn settle(baseline_ops: usize) {
    for _ in 0..200 {
        if local_state().ops_in_flight == baseline_ops {
            return;
        }
        sleep(Duration::from_millis(5)).await;
    }
}

async fn scenario() {
    let fds0 = open_fds();
    let ops0 = local_state().ops_in_flight;
    let timers0 = local_state().timers;

    // 1. Timer: a dropped sleep leaves no timer behind.
    {
        let r = timeout(Duration::from_millis(5), sleep(Duration::from_secs(60))).await;
        assert!(r.is_err(), "the long sleep must time out");
        assert_eq!(local_state().timers, timers0, "dropped sleeps must unregister");
    }

    // 2. Accept: a pending accept dropped, then a connection arrives before the listener is
    //    dropped. The connection the kernel accepted for nobody must be closed.
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let r = timeout(Duration::from_millis(5), listener.accept_stream()).await;
        assert!(r.is_err(), "nobody connected yet");
        let client = TcpStream::connect(addr).await.expect("connect");
        sleep(Duration::from_millis(20)).await; // let the kernel accept it
        drop(listener);
        settle(ops0).await;
        // The server side was closed: the client sees EOF (or a reset), not a hang.
        let got = timeout(Duration::from_secs(5), client.read(Vec::with_capacity(16))).await;
        match got {
            Ok((Ok(0), _)) | Ok((Err(_), _)) => {}
            Ok((Ok(n), _)) => panic!("client read {n} bytes from a connection nobody served"),
            Err(_) => panic!("the orphaned accepted connection was not closed"),
        }
    }

    // 3. Read: a read dropped mid-flight; bytes sent afterwards are not lost.
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let server = listener.accept_stream().await.expect("accept");
        for _ in 0..3 {
            let r = timeout(Duration::from_millis(5), server.read(Vec::with_capacity(64))).await;
            assert!(r.is_err(), "no data yet");
        }
        let (res, _) = client.write_all(b"after-cancel".to_vec()).await;
        res.expect("write");
        let mut got = Vec::with_capacity(64);
        while got.len() < 12 {
            let (res, buf) = timeout(Duration::from_secs(5), server.read(got))
                .await
                .expect("read in time");
            got = buf;
            assert!(res.expect("read") > 0, "unexpected EOF");
        }
        assert_eq!(&got[..], b"after-cancel");
        drop(server);
        drop(client);
        drop(listener);
    }

    // 4. Data received into ring buffers that nobody reads, then the stream is dropped: the
    //    queued buffers must go back to the ring.
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let server = listener.accept_stream().await.expect("accept");
        let (res, _) = client.write_all(vec![7u8; 100]).await;
        res.expect("write");
        let first = server.recv().await.expect("recv");
        assert!(!first.is_empty());
        // More data arrives while the first chunk is still held.
        for _ in 0..4 {
            let (res, _) = client.write_all(vec![8u8; 3000]).await;
            res.expect("write");
            sleep(Duration::from_millis(2)).await;
        }
        if server.uses_buf_ring() {
            assert!(
                local_state().recv_buffers_out >= 1,
                "the held chunk is a ring buffer"
            );
        }
        drop(first);
        drop(server);
        drop(client);
        drop(listener);
    }

    // 4b. Write: a write that cannot finish (the peer reads nothing, the socket buffers fill)
    //     is dropped mid-flight; the buffer stays with the driver until the kernel lets go,
    //     and the stream still closes.
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let server = listener.accept_stream().await.expect("accept");
        let big = vec![9u8; 32 << 20];
        let r = timeout(Duration::from_millis(50), server.write_all(big)).await;
        assert!(
            r.is_err(),
            "32 MiB cannot fit in the socket buffers of an unread connection"
        );
        drop(server);
        // The client sees the bytes that got through, then EOF or a reset: the server side
        // was closed although a write was cancelled on it.
        let mut got = 0usize;
        let mut buf = Vec::with_capacity(1 << 20);
        loop {
            buf.clear();
            let (res, b) = timeout(Duration::from_secs(5), client.read(buf))
                .await
                .expect("the cancelled writer's socket was closed");
            buf = b;
            match res {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert!(got < 32 << 20, "the write was cut, not completed");
        drop(client);
        drop(listener);
    }

    // 5. A read future dropped while its stream is dropped too (cancel races the close).
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let server = listener.accept_stream().await.expect("accept");
        let r = timeout(Duration::from_millis(2), server.recv()).await;
        assert!(r.is_err());
        drop(server);
        drop(client);
        drop(listener);
    }

    settle(ops0).await;
    let st = local_state();
    assert_eq!(st.ops_in_flight, ops0, "op slab must return to its starting size");
    assert_eq!(st.timers, timers0, "timer set must return to its starting size");
    assert_eq!(
        st.recv_buffers_out, 0,
        "every provided receive buffer must be back in the ring"
    );
    // Socket fds are closed synchronously when their last user goes.
    let mut fds = open_fds();
    for _ in 0..100 {
        if fds == fds0 {
            break;
        }
        sleep(Duration::from_millis(5)).await;
        fds = open_fds();
    }
    assert_eq!(fds, fds0, "fd table must return to its starting size");
}

#[test]
fn dropped_ops_leak_nothing_on_every_driver_and_path() {
    // `Auto` is io_uring here unless RINGCORE_DRIVER says otherwise; `Epoll` always is epoll.
    for driver in [Driver::Auto, Driver::Epoll] {
        for portable in [false, true] {
            let rt = Runtime::builder()
                .core_count(1)
                .driver(driver)
                .portable_ops(portable)
                .handle_signals(false)
                .build()
                .expect("build");
            let out = rt
                .run(move || async move {
                    if driver == Driver::Epoll {
                        assert_eq!(driver_kind(), DriverKind::Epoll);
                    }
                    scenario().await;
                })
                .expect("run");
            assert_eq!(out.len(), 1);
            assert!(
                out[0].is_some(),
                "{driver:?} portable={portable}: scenario did not finish"
            );
        }
    }
}
