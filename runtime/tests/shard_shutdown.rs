//! `shutdown_requested`: a waiter holds one slot however often it is polled, gives it back
//! when dropped (an accept loop creates one per accept), and every waiter still alive is
//! woken at shutdown.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use ringcore_runtime::{
    request_shutdown, shard_id, shutdown_requested, spawn_local, stats, yield_now, Runtime,
};

fn waiters() -> u64 {
    stats::shard(shard_id()).shutdown_waiters
}

/// Polls `fut` once, as a select loop does before its other branch wins.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx).is_ready())).await
}

#[test]
fn waiters_do_not_pile_up_and_are_woken_at_shutdown() {
    let out = Runtime::builder()
        .core_count(1)
        .handle_signals(false)
        // The main future finishes after asking for shutdown: give it the time.
        .shutdown_grace(std::time::Duration::from_secs(5))
        .build()
        .expect("build")
        .run(|| async {
            // One future polled 100,000 times: one slot.
            let mut one = pin!(shutdown_requested());
            for _ in 0..100_000 {
                assert!(!poll_once(&mut one).await);
            }
            let after_polls = waiters();
            // 100,000 futures, each polled once and dropped (the accept loop's pattern).
            for _ in 0..100_000 {
                let mut f = pin!(shutdown_requested());
                assert!(!poll_once(&mut f).await);
            }
            let after_drops = waiters();
            // Waiters alive at shutdown are woken.
            let waiting: Vec<_> = (0..3).map(|_| spawn_local(shutdown_requested())).collect();
            yield_now().await;
            let with_tasks = waiters();
            request_shutdown();
            for w in waiting {
                w.await.expect("woken at shutdown");
            }
            assert!(poll_once(&mut one).await, "ready once shutdown was requested");
            (after_polls, after_drops, with_tasks)
        })
        .expect("run");
    let (after_polls, after_drops, with_tasks) = out[0].expect("main future finished");
    assert_eq!(after_polls, 1, "one future polled 100,000 times holds one slot");
    assert_eq!(after_drops, 1, "dropped futures give their slot back");
    assert_eq!(with_tasks, 4);
}
