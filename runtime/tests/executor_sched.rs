//! Scheduling classes and the cooperative budget, and the JoinHandle contract.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringcore_runtime::time::sleep;
use ringcore_runtime::{consume_budget, spawn_local, spawn_local_in, yield_now, Runtime, TaskClass};
use ringcore_testkit::rt::one_core;

/// A background task that is always ready (a loop of awaits that complete at once) yields
/// after `budget` of them, so between two polls of a latency-critical task it can run at most
/// `budget` iterations.
#[test]
fn busy_background_task_cannot_delay_latency_task_beyond_budget() {
    const BUDGET: u32 = 32;
    let out = one_core(false)
        .budget(BUDGET)
        .class_shares(1000, 1)
        .build()
        .expect("build")
        .run(|| async {
            let iterations = Rc::new(Cell::new(0u64));
            let stop = Rc::new(Cell::new(false));
            let (it, st) = (iterations.clone(), stop.clone());
            let bg = spawn_local_in(TaskClass::Background, async move {
                while !st.get() {
                    sleep(Duration::ZERO).await; // ready at once: only the budget stops it
                    it.set(it.get() + 1);
                }
            });
            let mut worst = 0;
            for _ in 0..2000 {
                let before = iterations.get();
                yield_now().await;
                worst = worst.max(iterations.get() - before);
            }
            stop.set(true);
            bg.await.expect("background task");
            (worst, iterations.get())
        })
        .expect("run");
    let (worst, total) = out[0].expect("finished");
    assert!(total > 0, "the background task must make progress");
    assert!(
        worst <= u64::from(BUDGET),
        "background ran {worst} iterations between two latency polls (budget {BUDGET})"
    );
}

/// Two CPU-bound tasks, one per class, shares 3:1: the latency class gets ~75% of the CPU.
#[test]
fn shares_divide_cpu_between_classes() {
    let out = one_core(false)
        .class_shares(3, 1)
        .build()
        .expect("build")
        .run(|| async {
            let stop = Rc::new(Cell::new(false));
            let spin = |class: TaskClass, stop: Rc<Cell<bool>>| {
                spawn_local_in(class, async move {
                    let mut busy = Duration::ZERO;
                    while !stop.get() {
                        let t0 = Instant::now();
                        while t0.elapsed() < Duration::from_micros(50) {
                            std::hint::spin_loop();
                        }
                        busy += t0.elapsed();
                        yield_now().await;
                    }
                    busy
                })
            };
            let lat = spin(TaskClass::Latency, stop.clone());
            let bg = spin(TaskClass::Background, stop.clone());
            sleep(Duration::from_millis(600)).await;
            stop.set(true);
            let l = lat.await.expect("latency");
            let b = bg.await.expect("background");
            l.as_secs_f64() / (l + b).as_secs_f64()
        })
        .expect("run");
    let share = out[0].expect("finished");
    assert!(
        (share - 0.75).abs() < 0.1,
        "latency class got {:.1}% of the CPU, expected 75% +- 10",
        share * 100.0
    );
}

/// A waker kept past its task's end (a user may store one anywhere) wakes nothing: not the
/// task that now has the ended task's slot, whatever the class of either.
#[test]
fn a_waker_of_an_ended_task_does_not_poll_the_task_in_its_slot() {
    let out = one_core(false)
        .build()
        .expect("build")
        .run(|| async {
            let kept: Rc<std::cell::RefCell<Option<std::task::Waker>>> = Rc::default();
            let k = kept.clone();
            spawn_local_in(TaskClass::Background, async move {
                std::future::poll_fn(|cx| {
                    *k.borrow_mut() = Some(cx.waker().clone());
                    std::task::Poll::Ready(())
                })
                .await
            })
            .await
            .expect("the first task ran");
            // The next task takes the freed slot (the slab reuses the last key freed).
            let polls = Rc::new(Cell::new(0u32));
            let release = Rc::new(Cell::new(false));
            let mine: Rc<std::cell::RefCell<Option<std::task::Waker>>> = Rc::default();
            let (p, r, m) = (polls.clone(), release.clone(), mine.clone());
            let second = spawn_local(std::future::poll_fn(move |cx| {
                p.set(p.get() + 1);
                *m.borrow_mut() = Some(cx.waker().clone());
                if r.get() {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            }));
            yield_now().await;
            let before = polls.get();
            for _ in 0..3 {
                kept.borrow().as_ref().expect("kept").wake_by_ref();
                yield_now().await;
            }
            let after_stale = polls.get();
            release.set(true);
            mine.borrow().as_ref().expect("registered").wake_by_ref();
            second.await.expect("the second task ran");
            (before, after_stale, polls.get())
        })
        .expect("run");
    let (before, after_stale, end) = out[0].expect("finished");
    assert_eq!(before, 1, "the second task ran once, then waited");
    assert_eq!(after_stale, 1, "the first task's waker polled the second task");
    assert_eq!(end, 2, "its own waker polled it");
}

#[test]
fn consume_budget_lets_others_run() {
    let out = one_core(false)
        .budget(16)
        .build()
        .expect("build")
        .run(|| async {
            let flag = Rc::new(Cell::new(false));
            let f2 = flag.clone();
            spawn_local(async move { f2.set(true) }).detach();
            // A loop that awaits nothing else must still let the spawned task run.
            let mut n = 0u64;
            while !flag.get() {
                consume_budget().await;
                n += 1;
                assert!(n < 1_000_000, "the spawned task never ran");
            }
            n
        })
        .expect("run");
    // 16 units spent, the 17th await yields; the loop sees the flag right after resuming.
    let n = out[0].expect("finished");
    assert!(n <= 17, "the spawned task waited for {n} iterations (budget 16)");
}

#[test]
fn join_handle_result_abort_detach_and_panic() {
    let out = one_core(false)
        .build()
        .expect("build")
        .run(|| async {
            // Await a result.
            assert_eq!(spawn_local(async { 7 }).await.expect("join"), 7);

            // Abort: the future is dropped and the handle reports cancellation.
            struct OnDrop(Rc<Cell<bool>>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    self.0.set(true);
                }
            }
            let dropped = Rc::new(Cell::new(false));
            let guard = OnDrop(dropped.clone());
            let h = spawn_local(async move {
                let _g = guard;
                sleep(Duration::from_secs(60)).await;
            });
            sleep(Duration::from_millis(1)).await;
            h.abort();
            assert!(dropped.get(), "abort drops the task's future at once");
            let err = h.await.expect_err("aborted task has no output");
            assert!(err.is_cancelled());

            // Detach: the task runs to completion on its own.
            let done = Rc::new(Cell::new(false));
            let d2 = done.clone();
            spawn_local(async move {
                sleep(Duration::from_millis(2)).await;
                d2.set(true);
            })
            .detach();
            sleep(Duration::from_millis(20)).await;
            assert!(done.get(), "detached task must still run");

            // Panic: caught, reported, and the core keeps running.
            let h = spawn_local(async {
                if Instant::now().elapsed() < Duration::from_secs(3600) {
                    panic!("task exploded");
                }
            });
            let err = h.await.expect_err("panicked task has no output");
            assert!(err.is_panic());
            assert_eq!(err.panic_message(), Some("task exploded"));

            // A task aborting itself through its own handle stops after the current poll.
            let slot: Rc<Cell<Option<ringcore_runtime::JoinHandle<()>>>> = Rc::new(Cell::new(None));
            let s2 = slot.clone();
            let h = spawn_local(async move {
                yield_now().await;
                if let Some(me) = s2.take() {
                    me.abort();
                    drop(me);
                }
                yield_now().await;
                unreachable!("an aborted task must not be polled again");
            });
            assert!(!h.is_finished());
            slot.set(Some(h));
            sleep(Duration::from_millis(5)).await;
            true
        })
        .expect("run");
    assert_eq!(out, vec![Some(true)]);
}

#[test]
fn main_future_panic_is_an_error_naming_the_shard() {
    let err = one_core(false)
        .build()
        .expect("build")
        .run(|| async {
            panic!("main went wrong");
        })
        .expect_err("a panicking main future fails run");
    let msg = err.to_string();
    assert!(
        msg.contains("shard 0") && msg.contains("main went wrong"),
        "{msg}"
    );
}

#[test]
fn core_selection_errors_are_clear() {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let err = Runtime::builder()
        .core_count(n + 64)
        .build()
        .expect_err("too many cores");
    assert!(err.to_string().contains("cores"), "{err}");
    let err = Runtime::builder()
        .core_list(&[100_000])
        .build()
        .expect_err("no such core");
    assert!(err.to_string().contains("100000"), "{err}");
    let err = Runtime::builder()
        .core_list(&[0, 0])
        .build()
        .expect_err("duplicate");
    assert!(err.to_string().contains("twice"), "{err}");
}

/// A panic that escapes the event loop (here: a finished task's future whose `Drop` panics,
/// which happens outside the task's panic capture) fails `run` with an error, after the
/// shard's safe teardown, while another task has a receive in flight. No hang, no crash.
#[test]
fn a_panic_escaping_the_loop_fails_run_after_a_safe_teardown() {
    use ringcore_runtime::net::{TcpListener, TcpStream};
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    struct ReadyThenBoom;
    impl Future for ReadyThenBoom {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Ready(())
        }
    }
    impl Drop for ReadyThenBoom {
        fn drop(&mut self) {
            panic!("boom in drop");
        }
    }

    let err = one_core(false)
        .build()
        .expect("build")
        .run(|| async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let _client = TcpStream::connect(addr).await.expect("connect");
            let server = listener.accept_stream().await.expect("accept");
            spawn_local(async move {
                let _ = server.recv().await; // in flight when the panic hits
            })
            .detach();
            sleep(Duration::from_millis(5)).await;
            spawn_local(ReadyThenBoom).detach();
            sleep(Duration::from_secs(30)).await;
        })
        .expect_err("the escaped panic fails run");
    assert!(err.to_string().contains("panicked"), "{err}");
}
