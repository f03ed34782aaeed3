//! The epoll driver receives only while a socket may have bytes (a per-fd readiness flag
//! cleared by a short or `EAGAIN` receive, set by the next edge) and sends at once without an
//! op. These tests look for the lost wake-ups such a scheme could have: each runs on the epoll
//! driver and on the default one, and every wait is bounded, so a lost edge fails the test
//! instead of hanging it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as StdStream};
use std::time::{Duration, Instant};

use ringcore_runtime::net::{TcpListener, TcpStream};
use ringcore_runtime::time::{sleep, timeout};
use ringcore_runtime::{spawn_local, Driver};
use ringcore_testkit::rt::{one_core, run_on};

const LIMIT: Duration = Duration::from_secs(10);

fn drivers() -> [Driver; 2] {
    [Driver::Epoll, Driver::Auto]
}

/// The longest a peer waits for an answer here: well under `LIMIT`, so a task that only the
/// expiry of its own `LIMIT` timer woke up (its socket's wake-up lost) fails the test.
const ANSWER_WITHIN: Duration = Duration::from_secs(4);

/// Reads until EOF; panics if any receive took longer than [`ANSWER_WITHIN`].
async fn read_to_end(stream: &TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let t0 = Instant::now();
        let chunk = timeout(LIMIT, stream.recv())
            .await
            .expect("a receive waited past the limit: lost wake-up")
            .expect("recv");
        assert!(
            t0.elapsed() < ANSWER_WITHIN,
            "a receive took {:?}: lost wake-up",
            t0.elapsed()
        );
        if chunk.is_empty() {
            return all;
        }
        all.extend_from_slice(&chunk);
    }
}

/// Bytes and the peer's FIN arriving together while the receive waits: the short receive
/// that takes the bytes must not hide the EOF behind it (no further edge comes for it). And
/// the same when both landed before the first receive.
#[test]
fn bytes_and_fin_in_one_burst_end_in_eof() {
    for driver in drivers() {
        for (round, early) in [(0, false), (1, false), (2, false), (3, true)] {
            let got = run_on(one_core(false).driver(driver), move || async move {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let client = std::thread::spawn(move || {
                    let mut c = StdStream::connect(addr).expect("connect");
                    if !early {
                        // The server's receive is waiting by then.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    c.write_all(b"hello").expect("write");
                    c.shutdown(Shutdown::Write).expect("half-close");
                    c
                });
                let stream = listener.accept_stream().await.expect("accept");
                if early {
                    sleep(Duration::from_millis(50)).await;
                }
                let all = read_to_end(&stream).await;
                drop(client.join());
                all
            });
            assert_eq!(got, b"hello", "{driver:?} round {round}");
        }
    }
}

/// A transfer much larger than the receive buffer, written in uneven pieces with pauses, so
/// receives both fill the buffer (readiness kept) and come up short (readiness cleared).
#[test]
fn a_large_uneven_transfer_arrives_whole() {
    const TOTAL: usize = 3 * 1024 * 1024 + 17;
    let data: Vec<u8> = (0..TOTAL).map(|i| (i * 31 % 251) as u8).collect();
    for driver in drivers() {
        let expect = data.clone();
        let got = run_on(one_core(false).driver(driver), move || {
            let data = expect.clone();
            async move {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let client = std::thread::spawn(move || {
                    let mut c = StdStream::connect(addr).expect("connect");
                    let mut at = 0;
                    let mut step = 1usize;
                    while at < data.len() {
                        let n = (step * 7919 % 70_000 + 1).min(data.len() - at);
                        c.write_all(&data[at..at + n]).expect("write");
                        at += n;
                        step += 1;
                        if step % 16 == 0 {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }
                });
                let stream = listener.accept_stream().await.expect("accept");
                let all = read_to_end(&stream).await;
                client.join().expect("client");
                all
            }
        });
        assert_eq!(got.len(), TOTAL, "{driver:?}");
        assert!(got == data, "{driver:?}: the bytes differ");
    }
}

/// A receive given up while waiting (its waker left in the driver), then bytes: the next
/// receive, from another task, gets them.
#[test]
fn a_receive_dropped_while_waiting_loses_nothing() {
    for driver in drivers() {
        let got = run_on(one_core(false).driver(driver), || async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let client = std::thread::spawn(move || {
                let mut c = StdStream::connect(addr).expect("connect");
                std::thread::sleep(Duration::from_millis(150));
                c.write_all(b"late").expect("write");
                c.shutdown(Shutdown::Write).expect("half-close");
                c
            });
            let stream = std::rc::Rc::new(listener.accept_stream().await.expect("accept"));
            let r = timeout(Duration::from_millis(20), stream.recv()).await;
            assert!(r.is_err(), "nothing was sent yet");
            let s = stream.clone();
            let all = spawn_local(async move { read_to_end(&s).await })
                .await
                .expect("task");
            drop(client.join());
            all
        });
        assert_eq!(got, b"late", "{driver:?}");
    }
}

/// Many connections doing small request/answer rounds at once, the pattern of an HTTP
/// server under load: every round is answered, none waits past the limit.
#[test]
fn many_connections_ping_pong_without_a_lost_wakeup() {
    const CONNS: usize = 64;
    const ROUNDS: usize = 200;
    for driver in drivers() {
        let rounds = run_on(one_core(false).driver(driver), || async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let clients = std::thread::spawn(move || {
                let threads: Vec<_> = (0..CONNS)
                    .map(|c| {
                        std::thread::spawn(move || {
                            let mut s = StdStream::connect(addr).expect("connect");
                            s.set_read_timeout(Some(ANSWER_WITHIN)).expect("timeout");
                            let mut buf = [0u8; 64];
                            for r in 0..ROUNDS {
                                let msg = format!("{c}:{r};");
                                s.write_all(msg.as_bytes()).expect("write");
                                let mut got = 0;
                                while got < msg.len() {
                                    let n = s.read(&mut buf[got..]).expect("answer within the limit");
                                    assert!(n > 0, "server closed early");
                                    got += n;
                                }
                                assert_eq!(&buf[..got], msg.as_bytes());
                            }
                            ROUNDS
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().expect("client"))
                    .sum::<usize>()
            });
            for _ in 0..CONNS {
                let stream = listener.accept_stream().await.expect("accept");
                spawn_local(async move {
                    loop {
                        let chunk = match timeout(LIMIT, stream.recv()).await {
                            Ok(Ok(c)) if !c.is_empty() => c,
                            _ => break,
                        };
                        let (res, _) = stream.write_all(chunk).await;
                        if res.is_err() {
                            break;
                        }
                    }
                })
                .detach();
            }
            // The clients run on plain threads; wait for them without blocking the core.
            loop {
                if clients.is_finished() {
                    break clients.join().expect("clients");
                }
                sleep(Duration::from_millis(5)).await;
            }
        });
        assert_eq!(rounds, CONNS * ROUNDS, "{driver:?}");
    }
}
