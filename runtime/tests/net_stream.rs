//! The TcpStream API beyond echo: vectored writes, half-close, explicit close, options,
//! addresses, connect errors; and per-core counters read from another core.

use std::net::Shutdown;
use std::time::Duration;

use ringcore_runtime::net::{SendLane, TcpListener, TcpStream};
use ringcore_runtime::time::timeout;
use ringcore_runtime::{shard_id, stats, submit_to, Runtime};
use ringcore_testkit::rt::{one_core, run_on};

async fn read_to_end(s: &TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let chunk = timeout(Duration::from_secs(5), s.recv())
            .await
            .expect("in time")
            .expect("recv");
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}

async fn stream_api() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (server, peer) = listener.accept().await.expect("accept");

    // Addresses agree on both ends.
    assert_eq!(peer, client.local_addr().expect("client local"));
    assert_eq!(client.peer_addr().expect("client peer"), addr);
    assert_eq!(server.local_addr().expect("server local"), addr);

    // TCP_NODELAY round-trips.
    client.set_nodelay(true).expect("nodelay on");
    assert!(client.nodelay().expect("get"));
    client.set_nodelay(false).expect("nodelay off");
    assert!(!client.nodelay().expect("get"));

    // Buffer sizes round-trip (Linux reports twice what was set, for its bookkeeping).
    client.set_send_buffer_size(8192).expect("SO_SNDBUF");
    assert_eq!(client.send_buffer_size().expect("get"), 16384);
    client.set_recv_buffer_size(8192).expect("SO_RCVBUF");
    assert_eq!(client.recv_buffer_size().expect("get"), 16384);

    // writev_all sends every buffer, in order, of mixed types.
    let parts: Vec<Vec<u8>> = vec![b"alpha-".to_vec(), vec![b'x'; 100_000], b"-omega".to_vec()];
    let expected: Vec<u8> = parts.concat();
    let (res, back) = client.writev_all(parts).await;
    res.expect("writev_all");
    assert_eq!(back.len(), 3, "buffers come back");
    // write + write_all with 'static data.
    let (res, _) = client.write_all(&b"static-tail"[..]).await;
    res.expect("write_all");
    // Half-close: the server reads everything, then EOF, and can still answer.
    client.shutdown(Shutdown::Write).await.expect("shutdown write");
    let got = read_to_end(&server).await;
    assert_eq!(got.len(), expected.len() + 11);
    assert_eq!(&got[..expected.len()], &expected[..]);
    assert_eq!(&got[expected.len()..], b"static-tail");
    let (res, _) = server.write_all(b"reply after half-close".to_vec()).await;
    res.expect("server write after peer half-close");
    server.close().await.expect("close");
    assert_eq!(read_to_end(&client).await, b"reply after half-close");

    // read() appends into spare capacity and refuses a full buffer.
    let client2 = TcpStream::connect(addr).await.expect("connect");
    let server2 = listener.accept_stream().await.expect("accept");
    let (res, _) = client2.write_all(b"0123456789".to_vec()).await;
    res.expect("write");
    let mut buf = Vec::with_capacity(4);
    buf.extend_from_slice(b"ab");
    let (res, buf) = server2.read(buf).await;
    assert_eq!(res.expect("read"), 2, "only the spare capacity is filled");
    assert_eq!(buf, b"ab01");
    let (res, buf) = server2.read(buf).await;
    assert_eq!(
        res.expect_err("full buffer").kind(),
        std::io::ErrorKind::InvalidInput
    );
    assert_eq!(buf, b"ab01", "a refused read leaves the buffer untouched");
    let mut rest = Vec::with_capacity(64);
    while rest.len() < 8 {
        let (res, b) = server2.read(rest).await;
        rest = b;
        assert!(res.expect("read") > 0);
    }
    assert_eq!(rest, b"23456789", "bytes beyond a short read are kept, in order");
    drop(client2);
    let (res, _) = server2.read(Vec::with_capacity(8)).await;
    assert_eq!(res.expect("eof"), 0);

    // Connecting to a closed port is an error, not a hang.
    drop(listener);
    let err = timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("in time");
    assert_eq!(
        err.expect_err("refused").kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

#[test]
fn stream_api_multishot() {
    let out = one_core(false)
        .build()
        .expect("build")
        .run(stream_api)
        .expect("run");
    assert_eq!(out, vec![Some(())]);
}

#[test]
fn stream_api_portable() {
    let out = one_core(true)
        .build()
        .expect("build")
        .run(stream_api)
        .expect("run");
    assert_eq!(out, vec![Some(())]);
}

#[test]
fn counters_are_readable_from_every_core() {
    let out = Runtime::builder()
        .core_count(2)
        .handle_signals(false)
        .build()
        .expect("build")
        .run(|| async {
            if shard_id() != 0 {
                return None;
            }
            for _ in 0..100 {
                submit_to(1, || ()).await.expect("submit");
            }
            let mine = stats::shard(0);
            let theirs = stats::shard(1);
            let all = stats::all();
            Some((mine, theirs, all))
        })
        .expect("run");
    let (mine, theirs, all) = out[0].clone().flatten().expect("shard 0 result");
    assert_eq!(all.len(), 2);
    assert!(mine.mesh_sent >= 100, "{mine:?}");
    assert!(
        theirs.mesh_received >= 100,
        "shard 1's counters seen from shard 0: {theirs:?}"
    );
    assert!(theirs.tasks_polled >= 1 && theirs.ring_enters >= 1, "{theirs:?}");
    assert!(
        mine.tasks_spawned >= 1 && mine.tasks_polled >= 100 && mine.ring_enters >= 1,
        "{mine:?}"
    );
}

/// A stream dropped after it read EOF is closed at once, even though the core then has
/// nothing to do (regression: the fd used to stay open until the core's next wake-up).
#[test]
fn dropped_stream_closes_promptly_on_an_idle_core() {
    for portable in [false, true] {
        let (tx, rx) = std::sync::mpsc::channel();
        let rt = one_core(portable).build().expect("build");
        let server = std::thread::spawn(move || {
            rt.run(move || {
                let tx = tx.clone();
                async move {
                    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                    tx.send(listener.local_addr().expect("addr")).expect("send addr");
                    let stream = listener.accept_stream().await.expect("accept");
                    loop {
                        let chunk = stream.recv().await.expect("recv");
                        if chunk.is_empty() {
                            break;
                        }
                    }
                    drop(stream);
                    // Idle for a long time: the close must not wait for this.
                    ringcore_runtime::time::sleep(Duration::from_secs(3)).await;
                }
            })
        });
        let addr = rx.recv_timeout(Duration::from_secs(5)).expect("addr");
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        std::io::Write::write_all(&mut client, b"bye").expect("write");
        client.shutdown(Shutdown::Write).expect("half-close");
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let t0 = std::time::Instant::now();
        let mut buf = [0u8; 8];
        let n = std::io::Read::read(&mut client, &mut buf);
        assert!(matches!(n, Ok(0)), "portable={portable}: expected EOF, got {n:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "portable={portable}: close took {:?}",
            t0.elapsed()
        );
        server.join().expect("server").expect("run");
    }
}

/// `try_write` takes what the socket's send buffer takes, without waiting, and says
/// `WouldBlock` once it is full; every byte it reported taken reaches the peer, in order.
async fn try_write_until_full() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (server, _) = listener.accept().await.expect("accept");

    assert_eq!(server.try_write(b"hello").expect("room for 5 bytes"), 5);
    let chunk = timeout(Duration::from_secs(5), client.recv())
        .await
        .expect("in time")
        .expect("recv");
    assert_eq!(&chunk[..], b"hello");
    drop(chunk);

    // The client reads nothing meanwhile, so the send buffer (and the client's receive
    // buffer) fill up; bounded at 1 GiB in case the kernel never pushes back.
    let piece: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0usize;
    let full = loop {
        // The stream is `piece` repeated: each call sends on from where the last stopped.
        let off = sent % piece.len();
        match server.try_write(&piece[off..]) {
            Ok(n) => {
                assert!(n > 0 && n <= piece.len() - off);
                sent += n;
            }
            Err(e) => break e,
        }
        assert!(sent < 1 << 30, "the socket never pushed back");
    };
    assert_eq!(full.kind(), std::io::ErrorKind::WouldBlock, "{full}");
    server.shutdown(Shutdown::Write).await.expect("shutdown");
    let got = read_to_end(&client).await;
    assert_eq!(got.len(), sent, "every byte taken arrived");
    for (i, b) in got.iter().enumerate() {
        assert_eq!(*b, piece[i % piece.len()], "bytes in order at {i}");
    }
}

/// Whether speculative sends end up on for a builder given `asked`: the
/// `RINGCORE_SPECULATIVE_SEND` variable overrides the builder (the test script runs the
/// runtime suite once with it set to 1), so each test checks the behaviour of the setting
/// actually in force.
fn speculative(asked: bool) -> bool {
    match std::env::var("RINGCORE_SPECULATIVE_SEND").as_deref() {
        Ok("1" | "true" | "on") => true,
        Ok("0" | "false" | "off") => false,
        _ => asked,
    }
}

/// With speculative sends off, `try_write` sends nothing; with them on, it sends at once.
async fn try_write_as_configured(on: bool) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    let early = server.try_write(b"early");
    if on {
        assert_eq!(early.expect("room for 5 bytes"), 5);
    } else {
        let e = early.expect_err("no send without the driver");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }
    let (res, _) = server.write_all(b"late".to_vec()).await;
    res.expect("write");
    server.shutdown(Shutdown::Write).await.expect("shutdown");
    let want: &[u8] = if on { b"earlylate" } else { b"late" };
    assert_eq!(read_to_end(&client).await, want, "speculative sends on: {on}");
}

#[test]
fn try_write_sends_now_and_says_would_block_when_the_socket_is_full() {
    let on = speculative(true);
    run_on(one_core(false).speculative_send(true), move || async move {
        if on {
            try_write_until_full().await;
        } else {
            try_write_as_configured(false).await;
        }
    });
}

#[test]
fn with_speculative_sends_off_try_write_sends_nothing() {
    let on = speculative(false);
    run_on(one_core(false).speculative_send(false), move || {
        try_write_as_configured(on)
    });
}

/// What `try_write` does by default, on a quiet core (its last ring turn ended on a timer,
/// with no completion), on a busy one (that turn collected 16 receives, twice the driver's
/// threshold of eight), and on the turn after (it collected the sends the busy turn
/// put in the ring, and no receive): on io_uring a send goes out at once only while the core
/// is quiet, and through the ring while it is busy (where the turn's `io_uring_enter`
/// carries it with the others); a turn of send completions alone is quiet, or the ring's
/// sends would keep the core "busy" by themselves. On epoll always at once.
/// `RINGCORE_SPECULATIVE_SEND` forces either way. Both with the provided buffer ring
/// (multishot receives) and without it (`portable_ops`: single-shot receives).
#[test]
fn by_default_io_uring_sends_at_once_on_a_quiet_core_and_through_the_ring_on_a_busy_one() {
    default_send_mode_follows_the_core(false);
    default_send_mode_follows_the_core(true);
}

fn default_send_mode_follows_the_core(portable: bool) {
    use std::io::{Read, Write};
    // Receives in one turn: twice the driver's quiet threshold (8), and fewer than the 20
    // deferred completions recent kernels post per `io_uring_enter` (with 32, the last 12
    // came with the first 20's send completions, and that turn was busy).
    const CONNS: usize = 16;
    let forced = match std::env::var("RINGCORE_SPECULATIVE_SEND").as_deref() {
        Ok("1" | "true" | "on") => Some(true),
        Ok("0" | "false" | "off") => Some(false),
        _ => None,
    };
    let (uring, quiet, busy, after) = run_on(one_core(portable), || async {
        let uring = ringcore_runtime::driver_kind() == ringcore_runtime::DriverKind::IoUring;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut pairs = Vec::new();
        for _ in 0..CONNS {
            // The clients are plain blocking sockets: their writes below are 16 system calls
            // in one poll (a runtime stream's writes would spend the task's budget and yield
            // midway, spreading the receives over two turns).
            let client = std::net::TcpStream::connect(addr).expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            pairs.push((client, std::rc::Rc::new(server)));
        }
        // Every server side waits for a byte, then tries a send where it woke.
        let mut waiting = Vec::new();
        for (_, server) in &pairs {
            let server = server.clone();
            waiting.push(ringcore_runtime::spawn_local(async move {
                let got = server.recv().await.expect("recv");
                assert_eq!(&got[..], b"x");
                let busy = server.try_write(b"b").is_ok();
                // The turn that collects this send (a ring op on a busy io_uring core) and
                // its siblings brings no data.
                let (sent, _) = server.write(b"w".to_vec()).await;
                assert_eq!(sent.expect("send"), 1);
                (busy, server.try_write(b"a").is_ok())
            }));
        }
        ringcore_runtime::time::sleep(Duration::from_millis(20)).await;
        // Quiet: this task woke from a timer; the turn collected no completion.
        let quiet = pairs[0].1.try_write(b"q").is_ok();
        for (client, _) in &pairs {
            (&*client).write_all(b"x").expect("write");
        }
        let mut busy = Vec::new();
        let mut after = Vec::new();
        for w in waiting {
            let (b, a) = w.await.expect("the receiving task ran");
            busy.push(b);
            after.push(a);
        }
        // What each client received is what its server's sends said they sent: a
        // `try_write` that said no sent nothing. (Every send above has completed, so the
        // bytes are in the clients' sockets: the blocking reads return at once.)
        for (i, (client, _)) in pairs.iter().enumerate() {
            let mut want = Vec::new();
            for (bytes, sent) in [
                (b"q", i == 0 && quiet),
                (b"b", busy[i]),
                (b"w", true),
                (b"a", after[i]),
            ] {
                if sent {
                    want.extend_from_slice(bytes);
                }
            }
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("read timeout");
            let mut got = vec![0u8; want.len()];
            (&*client).read_exact(&mut got).expect("the sent bytes arrive");
            assert_eq!(got, want, "client {i}");
        }
        (uring, quiet, busy, after)
    });
    let (want_quiet, want_busy) = match forced {
        Some(on) => (on, on),
        None => (true, !uring),
    };
    assert_eq!(
        quiet, want_quiet,
        "quiet core (io_uring: {uring}, forced: {forced:?}, portable: {portable})"
    );
    assert_eq!(
        busy,
        vec![want_busy; CONNS],
        "busy core (io_uring: {uring}, forced: {forced:?}, portable: {portable})"
    );
    assert_eq!(
        after,
        vec![want_quiet; CONNS],
        "the turn of send completions alone (io_uring: {uring}, forced: {forced:?}, portable: {portable})"
    );
}

thread_local! {
    /// The capacities of the buffers the driver gave back from posted sends, in order.
    static RECYCLED: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn recycle(buf: Vec<u8>) {
    RECYCLED.with(|r| r.borrow_mut().push(buf.capacity()));
}

fn recycled() -> Vec<usize> {
    RECYCLED.with(|r| r.borrow().clone())
}

/// A connected pair: (client, server side).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (client, server)
}

/// Posted sends go out whole and in order, one at a time per lane, even one far larger than
/// the socket takes at once (the kernel retries it itself); each buffer comes back through
/// the lane's recycle function once the kernel is done with it; `settled` says when. On
/// epoll the buffer comes back at once with `Unsupported`.
async fn posted_sends(portable: bool) {
    let (client, server) = pair().await;
    let lane = SendLane::new(recycle);
    if ringcore_runtime::driver_kind() == ringcore_runtime::DriverKind::Epoll {
        let (e, back) = server.post_send(&lane, b"x".to_vec()).expect_err("epoll");
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
        assert_eq!(back, b"x");
        assert!(recycled().is_empty());
        return;
    }
    let _ = portable;
    let mut small = Vec::with_capacity(4096);
    small.extend_from_slice(b"first;");
    server.post_send(&lane, small).expect("post");
    lane.settled().await.expect("the small send went out");
    assert_eq!(recycled(), vec![4096], "its buffer came back");

    // Far more than the socket buffers take while the client does not read.
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let big_cap = big.capacity();
    server.post_send(&lane, big).expect("post");
    assert!(lane.is_busy(), "8 MiB cannot have gone out yet");
    let (e, back) = server
        .post_send(&lane, b"jump the queue".to_vec())
        .expect_err("one send at a time");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(back, b"jump the queue");
    // Nothing comes back until the client reads.
    ringcore_runtime::time::sleep(Duration::from_millis(50)).await;
    assert!(lane.is_busy());
    assert_eq!(recycled().len(), 1);

    let reader = ringcore_runtime::spawn_local(async move { read_to_end(&client).await });
    lane.settled().await.expect("the big send went out whole");
    assert_eq!(recycled(), vec![4096, big_cap]);
    server.post_send(&lane, b";last".to_vec()).expect("post");
    lane.settled().await.expect("sent");
    server.shutdown(Shutdown::Write).await.expect("shutdown");
    let got = reader.await.expect("reader");
    assert_eq!(got.len(), 6 + (8 << 20) + 5);
    assert_eq!(&got[..6], b"first;");
    for (i, b) in got[6..6 + (8 << 20)].iter().enumerate() {
        assert_eq!(*b, (i % 251) as u8, "byte {i} of the big send");
    }
    assert_eq!(&got[6 + (8 << 20)..], b";last");
}

#[test]
fn posted_sends_go_out_whole_in_order_and_give_their_buffers_back() {
    run_on(one_core(false), || posted_sends(false));
    run_on(one_core(true), || posted_sends(true));
}

/// A posted send to a peer that is gone fails through the lane, once; the buffer still
/// comes back.
#[test]
fn a_posted_send_to_a_closed_peer_fails_through_the_lane() {
    run_on(one_core(false), || async {
        if ringcore_runtime::driver_kind() == ringcore_runtime::DriverKind::Epoll {
            return;
        }
        let (client, server) = pair().await;
        drop(client);
        let lane = SendLane::new(recycle);
        let mut failed = None;
        // The first send to a closed peer is taken (the peer answers it with a reset); a
        // later one fails.
        for i in 0..20 {
            server.post_send(&lane, vec![b'x'; 1000]).expect("post");
            if let Err(e) = lane.settled().await {
                failed = Some((i, e));
                break;
            }
            ringcore_runtime::time::sleep(Duration::from_millis(10)).await;
        }
        let (i, e) = failed.expect("a send to a closed peer failed");
        assert!(
            matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)),
            "{e}"
        );
        assert_eq!(recycled().len(), i + 1, "every buffer came back");
        lane.settled().await.expect("the failure is reported once");
    });
}

/// Dropping a lane cancels its send still under way; the buffer comes back once the kernel
/// lets go of it, and the peer gets a prefix of the bytes, never more.
#[test]
fn dropping_a_lane_cancels_its_send_and_the_buffer_comes_back() {
    run_on(one_core(false), || async {
        if ringcore_runtime::driver_kind() == ringcore_runtime::DriverKind::Epoll {
            return;
        }
        let (client, server) = pair().await;
        let lane = SendLane::new(recycle);
        server.post_send(&lane, vec![7u8; 8 << 20]).expect("post");
        assert!(lane.is_busy());
        drop(lane);
        for _ in 0..500 {
            if !recycled().is_empty() {
                break;
            }
            ringcore_runtime::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(recycled().len(), 1, "the cancelled send's buffer came back");
        server.shutdown(Shutdown::Write).await.expect("shutdown");
        let got = read_to_end(&client).await;
        assert!(got.len() < 8 << 20, "the send was cut short: {}", got.len());
        assert!(got.iter().all(|&b| b == 7));
    });
}
