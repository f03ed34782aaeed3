//! Who a stream's receive wakes. The task that polls a receive directly has its waker woken
//! in place and kept between receives (no reference count per request); these tests pin what
//! a user relies on around that: bytes the task has not asked for again wake it at most once
//! (a multishot receive re-arms the waker with the last bytes it hands over, so that the
//! connection's next receive, made at once as a rule, needs no look at the driver),
//! a stream passed to another task wakes that task, and a receive polled through a
//! combinator's own waker is woken too, never from inside the driver (its wake may call the
//! runtime). On both drivers (`RINGCORE_DRIVER`); the `_portable` variants run the same on
//! io_uring's single-shot receives (`portable_ops`), the path of older kernels.

use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use ringcore_runtime::net::{TcpListener, TcpStream};
use ringcore_runtime::time::{sleep, timeout};
use ringcore_testkit::rt::{one_core, run_on};

/// Counts the polls of the future it wraps.
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Rc<Cell<u32>>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

/// Polls the future it wraps with a waker of its own that forwards to the task's, as a
/// `select` or a `FuturesUnordered` does.
struct Forwarding<F> {
    inner: Pin<Box<F>>,
}

/// A combinator's waker. Its wake reads the core's runtime state, which borrows the driver,
/// as a waker may: woken from inside the driver (under its borrow) it would panic.
struct Forward(Waker);

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let _ = ringcore_runtime::local_state();
        self.0.wake_by_ref();
    }
}

impl<F: Future> Future for Forwarding<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(Forward(cx.waker().clone())));
        self.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// A connected pair: a plain blocking client (its writes come from a thread, so none of them
/// is a poll of the runtime) and the runtime's server side.
async fn pair() -> (std::net::TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = std::net::TcpStream::connect(addr).expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (client, server)
}

/// The client's writes, each made when the test asks for it, from a thread of its own,
/// after a short pause (so that the server usually waits in `recv` by then; a write that
/// lands earlier changes nothing the tests check). `written` counts the writes made.
struct Writer {
    tx: mpsc::Sender<&'static [u8]>,
    written: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn new(mut client: std::net::TcpStream) -> Self {
        let (tx, rx) = mpsc::channel::<&'static [u8]>();
        let written = Arc::new(AtomicUsize::new(0));
        let w = written.clone();
        let thread = std::thread::spawn(move || {
            for bytes in rx {
                std::thread::sleep(Duration::from_millis(10));
                client.write_all(bytes).expect("client write");
                w.fetch_add(1, Ordering::SeqCst);
            }
        });
        Writer { tx, written, thread }
    }

    fn write(&self, bytes: &'static [u8]) {
        self.tx.send(bytes).expect("the writer thread runs");
    }

    fn finish(self) {
        drop(self.tx);
        self.thread.join().expect("writer");
    }
}

async fn recv_in_time(s: &TcpStream) -> Vec<u8> {
    timeout(Duration::from_secs(5), s.recv())
        .await
        .expect("received in time")
        .expect("recv")
        .to_vec()
}

fn only_who_polled_again(portable: bool) {
    let (polls, timer_wakes, multishot) = run_on(one_core(portable), || async {
        let (client, server) = pair().await;
        let multishot = server.uses_buf_ring();
        let writer = Writer::new(client);
        // "a" arrives while the task waits in `recv`.
        writer.write(b"a");
        assert_eq!(recv_in_time(&server).await, b"a");
        // "b", then "c" a step later, arrive while the task sleeps, in steps of 100 ms, until
        // "c" has been written and two steps (two ring turns at least) have passed since: the
        // task is polled once at the start and once per timer, and the bytes it has not
        // asked for again may add one poll at most ("b" where the receive was re-armed with
        // "a", the multishot one; nothing on the others), never one per arrival. (The steps
        // are long so that the bytes, written 10 ms in, do not land in a timer's turn, where
        // a wrong wake would go unseen.)
        let polls = Rc::new(Cell::new(0));
        let written = writer.written.clone();
        let tx = writer.tx.clone();
        let timer_wakes = Counted {
            inner: Box::pin(async move {
                let (mut wakes, mut after, mut c_sent) = (0u32, 0u32, false);
                while after < 2 {
                    sleep(Duration::from_millis(100)).await;
                    wakes += 1;
                    assert!(wakes < 100, "\"b\" and \"c\" were never written");
                    match written.load(Ordering::SeqCst) {
                        // "b" is in: "c" next, a step later.
                        2 if !c_sent => {
                            tx.send(b"c").expect("the writer thread runs");
                            c_sent = true;
                        }
                        3 => after += 1,
                        _ => {}
                    }
                }
                wakes
            }),
            polls: polls.clone(),
        };
        writer.write(b"b");
        let timer_wakes = timer_wakes.await;
        // "b" and "c" were received meanwhile, and wait.
        let mut got = recv_in_time(&server).await;
        if got.len() < 2 {
            got.extend(recv_in_time(&server).await);
        }
        assert_eq!(got, b"bc");
        writer.finish();
        (polls.get(), timer_wakes, multishot)
    });
    if multishot {
        // Re-armed with "a": "b" may wake the task once ("b" landing in a timer's turn
        // merges the two), "c" never.
        assert!(
            polls == timer_wakes + 1 || polls == timer_wakes + 2,
            "multishot receive: polled {polls} times while sleeping through {timer_wakes} timers"
        );
    } else {
        // Single-shot receives and epoll: nothing is armed while the task sleeps.
        assert_eq!(
            polls,
            timer_wakes + 1,
            "polled {polls} times while sleeping through {timer_wakes} timers"
        );
    }
}

#[test]
fn bytes_a_task_has_not_asked_for_wake_it_at_most_once() {
    only_who_polled_again(false);
}

#[test]
fn bytes_a_task_has_not_asked_for_wake_it_at_most_once_portable() {
    only_who_polled_again(true);
}

fn handed_to_another_task(portable: bool) {
    let got = run_on(one_core(portable), || async {
        let (client, server) = pair().await;
        let server = Rc::new(server);
        let writer = Writer::new(client);
        // The first task waits for bytes, gets them and ends (its waker is kept, idle)...
        writer.write(b"first");
        let s = server.clone();
        let first = ringcore_runtime::spawn_local(async move { recv_in_time(&s).await })
            .await
            .expect("first task");
        // ... and a second task, polling the same stream later, is the one woken.
        writer.write(b"second");
        let s = server.clone();
        let second = ringcore_runtime::spawn_local(async move { recv_in_time(&s).await })
            .await
            .expect("second task");
        writer.finish();
        (first, second)
    });
    assert_eq!(got, (b"first".to_vec(), b"second".to_vec()));
}

#[test]
fn a_stream_read_by_one_task_then_another_wakes_the_second() {
    handed_to_another_task(false);
}

#[test]
fn a_stream_read_by_one_task_then_another_wakes_the_second_portable() {
    handed_to_another_task(true);
}

fn through_a_wrapping_waker(portable: bool) {
    let got = run_on(one_core(portable), || async {
        let (client, server) = pair().await;
        let writer = Writer::new(client);
        let mut got = Vec::new();
        // Directly, through a combinator's waker, directly again, and through it again:
        // each time the task's waker (kept or not) must give way to the one now waiting,
        // and the combinator's is woken outside the driver (its wake reads the runtime's
        // state, which borrows the driver).
        for (i, bytes) in [&b"1"[..], b"2", b"3", b"4"].into_iter().enumerate() {
            writer.write(bytes);
            if i % 2 == 0 {
                got.push(recv_in_time(&server).await);
            } else {
                got.push(
                    Forwarding {
                        inner: Box::pin(recv_in_time(&server)),
                    }
                    .await,
                );
            }
        }
        writer.finish();
        got
    });
    assert_eq!(
        got,
        vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec(), b"4".to_vec()]
    );
}

#[test]
fn a_receive_polled_through_a_combinators_waker_is_woken() {
    through_a_wrapping_waker(false);
}

#[test]
fn a_receive_polled_through_a_combinators_waker_is_woken_portable() {
    through_a_wrapping_waker(true);
}
