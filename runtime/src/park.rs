//! The parked flag: how a sender on another thread knows whether a shard needs an eventfd
//! write to leave its ring wait.
//!
//! The protocol (a Dekker-style handshake, two SeqCst fences):
//!
//! - the shard, before it parks: `park()` (store `true`, fence), then re-checks everything a
//!   sender could have queued (mesh inboxes, foreign-thread wake queue); it parks only if all
//!   are empty, and calls `clear()` after its ring wait;
//! - a sender, after it queued its message: `must_wake()` (fence, load) and writes the
//!   shard's eventfd only if it returns true.
//!
//! The fences order each side's store before its load, so at least one side sees the other:
//! either the shard finds the message in its re-check, or the sender sees the flag and wakes
//! it. A wake-up is never lost, and a shard that is busy costs its senders no syscall.
//!
//! The file has no dependency but the atomics, so `tests/loom_wake.rs` compiles this very
//! file under loom (`--cfg loom`), where the atomics below are loom's, and checks that claim
//! over every interleaving and memory-model outcome loom explores.

#[cfg(all(loom, test))]
use loom::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(not(all(loom, test)))]
use std::sync::atomic::{fence, AtomicBool, Ordering};

/// True while the owning shard is (about to be) blocked in its ring wait.
#[derive(Debug)]
pub(crate) struct ParkFlag(AtomicBool);

impl ParkFlag {
    pub(crate) fn new() -> Self {
        ParkFlag(AtomicBool::new(false))
    }

    /// The owner is about to park. It must re-check its inboxes after this call and park only
    /// if they are empty.
    pub(crate) fn park(&self) {
        self.0.store(true, Ordering::SeqCst);
        // Pairs with the fence in `must_wake`: either the sender sees `true`, or the owner's
        // re-check sees the sender's message.
        fence(Ordering::SeqCst);
    }

    /// The owner is running again (back from its ring wait, or it did not park).
    pub(crate) fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Called by a sender after its message is queued: true if the owner may be parked and
    /// must be woken (an eventfd write).
    pub(crate) fn must_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        self.0.load(Ordering::SeqCst)
    }
}
