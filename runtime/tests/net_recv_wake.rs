//! Who a stream's receive wakes. The task that polls a receive directly has its waker woken
//! in place and kept between receives (no reference count per request); these tests pin what
//! a user relies on around that: the next bytes wake only a task that asked for them again,
//! a stream passed to another task wakes that task, and a receive polled through a
//! combinator's own waker is woken too. On both drivers (`RINGCORE_DRIVER`), with the
//! provided-buffer ring and without it (`portable`).

use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::rc::Rc;
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

struct Forward(Waker);

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
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

/// Writes each chunk after its delay, from a thread of its own.
fn write_later(
    mut client: std::net::TcpStream,
    chunks: Vec<(u64, &'static [u8])>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for (ms, bytes) in chunks {
            std::thread::sleep(Duration::from_millis(ms));
            client.write_all(bytes).expect("client write");
        }
        // Keep the connection open until the server has read everything.
        std::thread::sleep(Duration::from_millis(500));
    })
}

async fn recv_in_time(s: &TcpStream) -> Vec<u8> {
    timeout(Duration::from_secs(5), s.recv())
        .await
        .expect("received in time")
        .expect("recv")
        .to_vec()
}

fn only_who_polled_again(portable: bool) {
    let polls = run_on(one_core(portable), || async {
        let (client, server) = pair().await;
        // "a" arrives while the task waits in `recv`; "b" while it sleeps.
        let writer = write_later(client, vec![(30, b"a"), (50, b"b")]);
        assert_eq!(recv_in_time(&server).await, b"a");
        let polls = Rc::new(Cell::new(0));
        Counted {
            inner: Box::pin(sleep(Duration::from_millis(200))),
            polls: polls.clone(),
        }
        .await;
        // "b" was received meanwhile, and waits.
        assert_eq!(recv_in_time(&server).await, b"b");
        writer.join().expect("writer");
        polls.get()
    });
    // The sleep's first poll and its timer's wake: "b" woke nobody, as the task was not
    // waiting for it.
    assert_eq!(polls, 2, "the task was polled {polls} times during its sleep");
}

#[test]
fn the_next_bytes_wake_only_a_task_that_asked_for_them_again() {
    only_who_polled_again(false);
}

#[test]
fn the_next_bytes_wake_only_a_task_that_asked_for_them_again_portable() {
    only_who_polled_again(true);
}

fn handed_to_another_task(portable: bool) {
    let got = run_on(one_core(portable), || async {
        let (client, server) = pair().await;
        let server = Rc::new(server);
        let writer = write_later(client, vec![(30, b"first"), (100, b"second")]);
        // The first task waits for bytes, gets them and ends (its waker is kept, idle)...
        let s = server.clone();
        let first = ringcore_runtime::spawn_local(async move { recv_in_time(&s).await })
            .await
            .expect("first task");
        // ... and a second task, polling the same stream later, is the one woken.
        let s = server.clone();
        let second = ringcore_runtime::spawn_local(async move { recv_in_time(&s).await })
            .await
            .expect("second task");
        writer.join().expect("writer");
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
        let writer = write_later(client, vec![(30, b"1"), (30, b"2"), (30, b"3"), (30, b"4")]);
        let mut got = Vec::new();
        // Directly, through a combinator's waker, directly again, and through it again:
        // each time the task's waker (kept or not) must give way to the one now waiting.
        got.push(recv_in_time(&server).await);
        let wrapped = Forwarding {
            inner: Box::pin(recv_in_time(&server)),
        };
        got.push(wrapped.await);
        got.push(recv_in_time(&server).await);
        let wrapped = Forwarding {
            inner: Box::pin(recv_in_time(&server)),
        };
        got.push(wrapped.await);
        writer.join().expect("writer");
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
