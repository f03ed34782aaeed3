//! The cross-core mesh: exact counts, back-pressure without loss, clean shutdown, Sharded.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringcore_runtime::time::sleep;
use ringcore_runtime::{
    n_shards, request_shutdown, shard_id, spawn_local, submit_to, try_submit_to, Runtime, Sharded,
    SubmitError,
};

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

fn two_cores() -> ringcore_runtime::Builder {
    Runtime::builder().core_count(2).handle_signals(false)
}

#[test]
fn ping_pong_counts_are_exact() {
    const N: u64 = 20_000;
    let out = two_cores()
        .build()
        .expect("build")
        .run(|| async {
            let me = shard_id();
            let other = 1 - me;
            // Both cores call each other at the same time; every call runs exactly once, in
            // order, on the other core.
            for i in 1..=N {
                let seen = submit_to(other, || {
                    COUNTER.with(|c| {
                        c.set(c.get() + 1);
                        c.get()
                    })
                })
                .await
                .expect("submit");
                assert!(seen >= i, "call {i} ran out of order ({seen})");
            }
            // Same-core fast path.
            let here = submit_to(me, shard_id).await.expect("local");
            assert_eq!(here, me);
            N
        })
        .expect("run");
    assert_eq!(out, vec![Some(N), Some(N)]);
}

#[test]
fn counts_per_core_after_ping_pong() {
    const N: u64 = 5_000;
    let out = two_cores()
        .build()
        .expect("build")
        .run(|| async {
            if shard_id() != 0 {
                return None;
            }
            for _ in 0..N {
                submit_to(1, || COUNTER.with(|c| c.set(c.get() + 1)))
                    .await
                    .expect("submit");
            }
            Some(submit_to(1, || COUNTER.with(Cell::get)).await.expect("read"))
        })
        .expect("run");
    assert_eq!(out[0], Some(Some(N)));
}

#[test]
fn full_channel_reports_full_and_loses_nothing() {
    const CAP: usize = 4;
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();
    let out = two_cores()
        .mesh_capacity(CAP)
        .build()
        .expect("build")
        .run(move || {
            let ran = ran2.clone();
            async move {
                if shard_id() == 1 {
                    // Keep this core busy so its inbox is not drained for a while.
                    std::thread::sleep(Duration::from_millis(300));
                    return 0;
                }
                let mut accepted = Vec::new();
                let mut refused = None;
                for i in 0..(CAP + 3) {
                    let ran = ran.clone();
                    let f = move || {
                        ran.fetch_add(1, Ordering::SeqCst);
                        i
                    };
                    match try_submit_to(1, f) {
                        Ok(fut) => accepted.push((i, fut)),
                        Err(e) => {
                            assert!(e.is_full(), "expected Full, got {e}");
                            refused = Some((i, e.into_inner()));
                            break;
                        }
                    }
                }
                assert_eq!(accepted.len(), CAP, "exactly the channel's capacity is accepted");
                // The refused closure comes back unrun and still works.
                let (i, f) = refused.expect("a call must be refused once the channel is full");
                assert_eq!(ran.load(Ordering::SeqCst), 0);
                // `submit_to` waits for room instead of failing.
                let waited = submit_to(1, f);
                for (i, fut) in accepted {
                    assert_eq!(fut.await, Ok(i));
                }
                assert_eq!(waited.await, Ok(i));
                ran.load(Ordering::SeqCst)
            }
        })
        .expect("run");
    assert_eq!(out[0], Some(CAP + 1));
    assert_eq!(
        ran.load(Ordering::SeqCst),
        CAP + 1,
        "every accepted closure ran exactly once"
    );
}

#[test]
fn errors_are_typed() {
    two_cores()
        .build()
        .expect("build")
        .run(|| async {
            if shard_id() != 0 {
                return;
            }
            assert_eq!(submit_to(7, || ()).await, Err(SubmitError::NoSuchShard));
            let r: Result<(), _> = submit_to(1, || panic!("boom on the other core")).await;
            assert_eq!(r, Err(SubmitError::Panicked));
            // The target survived the panic.
            assert_eq!(submit_to(1, || 5).await, Ok(5));
        })
        .expect("run");
}

/// Counts closures created, run and dropped unrun.
struct Tracked {
    ran: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    done: bool,
}

impl Tracked {
    fn run(mut self) {
        self.done = true;
        self.ran.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.done {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn shutdown_with_messages_in_flight_is_clean() {
    let created = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (c2, r2, d2) = (created.clone(), ran.clone(), dropped.clone());
    let out = two_cores()
        .mesh_capacity(64)
        .build()
        .expect("build")
        .run(move || {
            let (created, ran, dropped) = (c2.clone(), r2.clone(), d2.clone());
            async move {
                let other = 1 - shard_id();
                for _ in 0..8 {
                    let (created, ran, dropped) = (created.clone(), ran.clone(), dropped.clone());
                    spawn_local(async move {
                        loop {
                            created.fetch_add(1, Ordering::SeqCst);
                            let t = Tracked {
                                ran: ran.clone(),
                                dropped: dropped.clone(),
                                done: false,
                            };
                            if submit_to(other, move || t.run()).await.is_err() {
                                break;
                            }
                        }
                    })
                    .detach();
                }
                if shard_id() == 0 {
                    sleep(Duration::from_millis(100)).await;
                    request_shutdown();
                }
                std::future::pending::<()>().await;
            }
        })
        .expect("a shutdown with messages in flight must not fail");
    assert_eq!(out.len(), 2);
    let (c, r, d) = (
        created.load(Ordering::SeqCst),
        ran.load(Ordering::SeqCst),
        dropped.load(Ordering::SeqCst),
    );
    assert!(r > 100, "the mesh carried traffic before shutdown ({r})");
    assert_eq!(
        c,
        r + d,
        "every closure either ran or was dropped: created {c}, ran {r}, dropped {d}"
    );
}

#[test]
fn sharded_one_instance_per_core() {
    let out = two_cores()
        .build()
        .expect("build")
        .run(|| async {
            if shard_id() != 0 {
                return None;
            }
            let s = Sharded::new(|shard| Cell::new(shard as u64 * 100))
                .await
                .expect("new");
            assert_eq!(s.local().get(), 0);
            assert_eq!(s.invoke_on(1, |c| c.get()).await, Ok(100));
            s.invoke_on_all(|c| c.set(c.get() + 1)).await.expect("all");
            let all = s.invoke_on_all(|c| c.get()).await.expect("all");
            assert_eq!(all, vec![1, 101]);
            let sum = s
                .map_reduce(|c| c.get(), 0u64, |a, b| a + b)
                .await
                .expect("reduce");
            assert_eq!(sum, 102);
            assert_eq!(n_shards(), 2);
            s.destroy().await;
            assert!(s.try_local().is_none());
            Some(s.invoke_on(1, |c| c.get()).await)
        })
        .expect("run");
    assert_eq!(out[0], Some(Some(Err(SubmitError::Closed))));
}

#[test]
fn more_calls_than_one_turn_reads_all_run_without_further_mail() {
    // A core reads at most 1024 messages per loop turn; the 2,976 left after its first turn
    // must still be read although no new message (no new wake) arrives for it.
    const N: usize = 4_000;
    let out = two_cores()
        .mesh_capacity(N)
        .build()
        .expect("build")
        .run(|| async {
            if shard_id() == 1 {
                // Busy while the calls queue up.
                std::thread::sleep(Duration::from_millis(200));
                return 0;
            }
            let calls: Vec<_> = (0..N)
                .map(|i| try_submit_to(1, move || i).unwrap_or_else(|_| panic!("call {i} refused")))
                .collect();
            let all = async {
                let mut sum = 0;
                for c in calls {
                    sum += c.await.expect("answered");
                }
                sum
            };
            ringcore_runtime::time::timeout(Duration::from_secs(10), all)
                .await
                .expect("every call answered in time")
        })
        .expect("run");
    assert_eq!(out[0], Some((0..N).sum::<usize>()));
}
