//! A shard that exits while another still waits on it: every call it ran gets its reply and
//! every call it will never run gets `Closed` at once, not when the caller's own shard tears
//! down (here 10 s later: the old mesh left such callers waiting that long).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcore_runtime::{request_shutdown, shard_id, shutdown_requested, submit_to, Runtime, SubmitError};

const CAPACITY: usize = 4;
const CALLS: usize = 64;

#[test]
fn callers_of_an_exiting_shard_get_their_answer_at_once() {
    let sent = Arc::new(AtomicBool::new(false));
    let s2 = sent.clone();
    let out = Runtime::builder()
        .core_count(2)
        .handle_signals(false)
        .mesh_capacity(CAPACITY)
        .shutdown_grace(Duration::from_secs(10))
        .build()
        .expect("build")
        .run(move || {
            let sent = s2.clone();
            async move {
                if shard_id() == 1 {
                    // Serves calls until shutdown, then exits (its main future is done).
                    shutdown_requested().await;
                    return None;
                }
                // More calls to shard 1 than its channel holds: the first are queued at once,
                // the rest wait for room, which shard 1's exit means they never get.
                let calls: Vec<_> = (0..CALLS).map(|i| submit_to(1, move || i)).collect();
                sent.store(true, Ordering::SeqCst);
                // Let shard 1 answer what it got, then stop it while this thread is blocked (not
                // reading its replies).
                std::thread::sleep(Duration::from_millis(100));
                request_shutdown();
                std::thread::sleep(Duration::from_millis(200));
                let started = Instant::now();
                let mut answered = 0;
                let mut closed = 0;
                for c in calls {
                    match c.await {
                        Ok(_) => answered += 1,
                        Err(SubmitError::Closed) => closed += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                Some((answered, closed, started.elapsed()))
            }
        })
        .expect("run");
    assert!(sent.load(Ordering::SeqCst));
    let (answered, closed, waited) = out[0]
        .flatten()
        .expect("shard 0's main future finished within the grace period");
    assert_eq!(answered + closed, CALLS);
    assert!(
        answered >= CAPACITY,
        "the calls queued before the exit ran and were answered: {answered}"
    );
    assert!(waited < Duration::from_secs(2), "the answers took {waited:?}");
}
