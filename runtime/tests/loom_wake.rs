//! Loom model of the parked-flag / foreign-wake protocol.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p ringcore-runtime --test loom_wake`
//! (a separate `CARGO_TARGET_DIR` keeps the normal build's cache).
//!
//! What is real and what is modelled: the flag itself is the runtime's own code —
//! `src/park.rs` is compiled into this test, where its atomics are loom's. What it pairs with
//! is modelled, because it cannot be compiled under loom (crossbeam channels, a mutex queue,
//! an eventfd): a sender's queued message is an atomic store with `Release` (the real sender
//! sets the target's `has_mail` flag, and a foreign wake its `has_remote_wakes` flag, with
//! stores at least that strong, after queueing), the shard's re-check of those flags is an
//! `Acquire` load, and the eventfd write is a counter.
//! The property: a shard that finds nothing in its re-check and parks has been, or will be,
//! woken by every sender whose message it did not see — no wake-up is lost.
#![cfg(loom)]

#[path = "../src/park.rs"]
#[allow(dead_code, unreachable_pub)]
mod park;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use park::ParkFlag;

/// One sender: queue the message, then wake the shard if its flag says parked.
fn send(flag: &ParkFlag, queued: &AtomicBool, eventfd: &AtomicUsize) {
    queued.store(true, Ordering::Release);
    if flag.must_wake() {
        eventfd.fetch_add(1, Ordering::Relaxed);
    }
}

/// The shard's side of one loop turn with nothing local to do: announce the park, re-check
/// what senders queue, park only if nothing was found. Returns whether it parked.
fn park_turn(flag: &ParkFlag, queues: &[&AtomicBool]) -> bool {
    flag.park();
    let found = queues.iter().any(|q| q.load(Ordering::Acquire));
    !found
}

/// A mesh message and a foreign-thread task wake arrive while the shard parks.
#[test]
fn a_shard_that_parks_is_woken_by_every_sender_it_did_not_see() {
    loom::model(|| {
        let flag = Arc::new(ParkFlag::new());
        let mesh = Arc::new(AtomicBool::new(false));
        let foreign = Arc::new(AtomicBool::new(false));
        let eventfd = Arc::new(AtomicUsize::new(0));

        let senders: Vec<_> = [mesh.clone(), foreign.clone()]
            .into_iter()
            .map(|queue| {
                let (flag, eventfd) = (flag.clone(), eventfd.clone());
                thread::spawn(move || send(&flag, &queue, &eventfd))
            })
            .collect();

        let parked = park_turn(&flag, &[&mesh, &foreign]);
        for s in senders {
            s.join().expect("sender");
        }
        if parked {
            // Both senders' messages were missed by the re-check, so each must have seen the
            // flag and written the eventfd: the ring wait ends and the next turn finds them.
            assert_eq!(eventfd.load(Ordering::Relaxed), 2, "a wake-up was lost");
        }
    });
}

/// The flag goes back down after the ring wait and up again at the next park: a message
/// sent between two parks is seen by the second re-check or wakes the second wait.
#[test]
fn a_message_between_two_parks_is_never_lost() {
    loom::model(|| {
        let flag = Arc::new(ParkFlag::new());
        let first = Arc::new(AtomicBool::new(false));
        let second = Arc::new(AtomicBool::new(false));
        let eventfd = Arc::new(AtomicUsize::new(0));

        let sender = {
            let (flag, first, second, eventfd) =
                (flag.clone(), first.clone(), second.clone(), eventfd.clone());
            thread::spawn(move || {
                send(&flag, &first, &eventfd);
                let after_first = eventfd.load(Ordering::Relaxed);
                send(&flag, &second, &eventfd);
                after_first
            })
        };

        // Turn 1. If it parks, the wait ends only on an eventfd write (modelled by waiting
        // for the counter), then the flag is cleared and the queues are drained.
        let parked = park_turn(&flag, &[&first, &second]);
        if parked {
            while eventfd.load(Ordering::Relaxed) == 0 {
                thread::yield_now();
            }
        }
        flag.clear();
        let seen_second = second.load(Ordering::Acquire);
        // Turn 2.
        let parked_again = !seen_second && park_turn(&flag, &[&second]);
        let after_first = sender.join().expect("sender");
        let woken = eventfd.load(Ordering::Relaxed);
        if parked_again {
            assert!(
                woken > after_first,
                "the second message was neither seen nor woke the second park"
            );
        }
    });
}

/// The model can fail: the same handshake without the fences (what `park.rs` must not
/// become) loses a wake-up in some execution, and loom finds it.
#[test]
fn without_the_fences_the_model_finds_a_lost_wakeup() {
    let lost = std::panic::catch_unwind(|| {
        loom::model(|| {
            let parked = Arc::new(AtomicBool::new(false));
            let queued = Arc::new(AtomicBool::new(false));
            let eventfd = Arc::new(AtomicUsize::new(0));
            let sender = {
                let (parked, queued, eventfd) = (parked.clone(), queued.clone(), eventfd.clone());
                thread::spawn(move || {
                    queued.store(true, Ordering::Release);
                    if parked.load(Ordering::Acquire) {
                        eventfd.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            parked.store(true, Ordering::Release);
            let slept = !queued.load(Ordering::Acquire);
            sender.join().expect("sender");
            if slept {
                assert_eq!(eventfd.load(Ordering::Relaxed), 1, "a wake-up was lost");
            }
        });
    });
    assert!(
        lost.is_err(),
        "loom must find the lost wake-up of the unfenced protocol"
    );
}
