//! A streamed response body with back-pressure: `BodySender::feed` waits while the
//! channel's capacity is queued, so a handler producing faster than the client reads holds a
//! bounded amount in memory, and it learns when the client has gone.

mod common;

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get_req, start};
use ringcore_http::{get, Body, Router};

const CHUNK: usize = 16 * 1024;
const CAPACITY: usize = 64 * 1024;
const TOTAL: usize = 8 * 1024 * 1024;

/// Streams `TOTAL` bytes in `CHUNK`s through `feed`, recording the most bytes ever queued
/// right after a `feed` returned, and whether a `feed` failed (the reader gone).
fn streaming_router(
    max_queued: Arc<AtomicUsize>,
    gone: Arc<AtomicBool>,
) -> impl Fn() -> Router + Send + Sync + 'static {
    move || {
        let (max_queued, gone) = (max_queued.clone(), gone.clone());
        Router::new().route(
            "/big",
            get(move || {
                let (max_queued, gone) = (max_queued.clone(), gone.clone());
                async move {
                    let (tx, body) = Body::channel_with_capacity(CAPACITY);
                    ringcore_http::runtime::spawn_local(async move {
                        let chunk = vec![b'x'; CHUNK];
                        let sent = Rc::new(Cell::new(0));
                        while sent.get() < TOTAL {
                            if tx.feed(chunk.clone()).await.is_err() {
                                gone.store(true, Ordering::SeqCst);
                                return;
                            }
                            sent.set(sent.get() + CHUNK);
                            max_queued.fetch_max(tx.queued(), Ordering::SeqCst);
                        }
                    })
                    .detach();
                    body
                }
            }),
        )
    }
}

#[test]
fn a_slow_reader_holds_the_producer_back() {
    let max_queued = Arc::new(AtomicUsize::new(0));
    let gone = Arc::new(AtomicBool::new(false));
    let server = start(streaming_router(max_queued.clone(), gone.clone()));
    let mut c = server.client();
    c.send(&get_req("/big"));
    // Read slowly for a while: 64 KiB every 20 ms.
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(600) {
        let n = c.stream.read(&mut buf).expect("read");
        assert!(n > 0, "closed early");
        got += n;
        std::thread::sleep(Duration::from_millis(20));
    }
    // The producer could have queued all 8 MiB at once; it never held more than the
    // capacity plus one chunk (the socket buffers hold the rest of what was sent).
    let most = max_queued.load(Ordering::SeqCst);
    assert!(most <= CAPACITY + CHUNK, "queued up to {most} bytes");
    assert!(got < TOTAL, "the reader was meant to be slow, got {got} bytes");
    // Then read everything: the stream completes.
    c.set_read_timeout(Duration::from_secs(10));
    // The last bytes seen, across reads (the final chunk may be split between two).
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = c.stream.read(&mut buf).expect("read");
        got += n;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 16 {
            tail.drain(..tail.len() - 16);
        }
        if n == 0 || tail.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    assert!(
        got > TOTAL,
        "the whole body (and its framing) arrived: {got} bytes"
    );
    assert!(!gone.load(Ordering::SeqCst));
    server.stop();
}

#[test]
fn the_producer_learns_that_the_client_left() {
    let max_queued = Arc::new(AtomicUsize::new(0));
    let gone = Arc::new(AtomicBool::new(false));
    let server = start(streaming_router(max_queued, gone.clone()));
    let mut c = server.client();
    c.send(&get_req("/big"));
    let mut buf = vec![0u8; 16 * 1024];
    let n = c.stream.read(&mut buf).expect("read");
    assert!(n > 0);
    drop(c);
    let t0 = Instant::now();
    while !gone.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        gone.load(Ordering::SeqCst),
        "feed kept accepting after the client left"
    );
    server.stop();
}
