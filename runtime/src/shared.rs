//! State shared by all shards of one runtime: the only `Sync` data in the crate.
//!
//! Everything here is written by one shard and read by others (counters, the parked flag), or
//! is the cross-core mesh itself. Nothing here is touched on the per-request path except the
//! owner's relaxed counter stores and, when a message is sent, the target's parked flag.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::mesh::Message;
use crate::park::ParkFlag;
use crate::stats::ShardStats;
use crate::sys;

/// Settings the shards read at start.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The driver every shard uses, resolved once in `Builder::build`.
    pub(crate) driver: crate::select::DriverKind,
    pub(crate) ring_entries: u32,
    pub(crate) budget: u32,
    pub(crate) shares: [u32; 2],
    pub(crate) mesh_capacity: usize,
    pub(crate) shutdown_grace: Duration,
    pub(crate) portable_ops: bool,
    pub(crate) buf_ring_entries: u16,
    pub(crate) buf_size: u32,
    pub(crate) max_polls_per_turn: u32,
    pub(crate) idle_spin: Duration,
    /// `None`: the driver's default (always on epoll; on io_uring while the core is quiet).
    pub(crate) speculative_send: Option<bool>,
}

/// Size of the unit of cache coherence we pad to: two 64-byte lines, because x86's adjacent
/// line prefetcher pulls lines in pairs (crossbeam's `CachePadded` uses 128 on x86_64 and
/// aarch64 for the same reason).
pub(crate) const CACHE_LINE: usize = 128;

/// `T` alone on its own cache line(s): nothing else shares a line with it.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The part of a shard other threads may touch.
///
/// Aligned (and so sized) to whole cache lines: shard `i`'s flags and counters never share a
/// line with shard `i + 1`'s in `Shared::shards`, so one core's per-turn counter stores do not
/// invalidate its neighbour's lines. The counters sit on lines of their own too, apart from
/// the `parked` flag that other cores read on every cross-core send.
#[repr(align(128))]
pub(crate) struct ShardRemote {
    /// Written by anyone who needs the shard to leave its ring wait; read by the shard's ring.
    eventfd: OwnedFd,
    /// True while the shard is (about to be) blocked in its ring wait (`park.rs`).
    parked: ParkFlag,
    pub(crate) stats: Padded<ShardStats>,
    /// Task wake-ups coming from threads that are not this shard (rare path).
    pub(crate) remote_wakes: Mutex<Vec<(usize, u32)>>,
    pub(crate) has_remote_wakes: AtomicBool,
    /// Set by every sender after it queued a message to this shard; the shard clears it
    /// before it reads its inboxes, so a turn with no mail reads none of them.
    pub(crate) has_mail: AtomicBool,
    /// Set when the shard has left its loop: the mesh refuses new messages to it.
    pub(crate) exited: AtomicBool,
    /// Set once its exit has handed over every reply and notice it could (after `exited`):
    /// from then on nothing more comes from it.
    pub(crate) drained: AtomicBool,
}

impl ShardRemote {
    fn new() -> io::Result<Self> {
        Ok(Self {
            eventfd: sys::eventfd()?,
            parked: ParkFlag::new(),
            stats: Padded::default(),
            remote_wakes: Mutex::new(Vec::new()),
            has_remote_wakes: AtomicBool::new(false),
            has_mail: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            drained: AtomicBool::new(false),
        })
    }

    pub(crate) fn eventfd(&self) -> i32 {
        self.eventfd.as_raw_fd()
    }

    /// A unique, stable tag for this shard (its address), used to recognise the owner thread.
    pub(crate) fn tag(&self) -> usize {
        self as *const Self as usize
    }

    /// Marks the shard as about to park. The caller must re-check its inboxes afterwards.
    pub(crate) fn set_parked(&self, parked: bool) {
        if parked {
            self.parked.park();
        } else {
            self.parked.clear();
        }
    }

    /// Tells the shard a message was queued to it (its next turn reads its inboxes) and
    /// wakes it if it is parked.
    pub(crate) fn mail(&self) {
        self.has_mail.store(true, Ordering::SeqCst);
        self.unpark();
    }

    /// Whether a message may be waiting (set by [`mail`](Self::mail); pairs with the
    /// fences of the park flag: a parking shard either sees it or is woken).
    pub(crate) fn may_have_mail(&self) -> bool {
        self.has_mail.load(Ordering::SeqCst)
    }

    /// Wakes the shard out of its ring wait, but only if it is parked (no syscall otherwise).
    pub(crate) fn unpark(&self) {
        if self.parked.must_wake() {
            self.force_unpark();
        }
    }

    /// Writes the eventfd unconditionally.
    pub(crate) fn force_unpark(&self) {
        sys::eventfd_write(&self.eventfd);
    }
}

const _: () = assert!(std::mem::align_of::<ShardRemote>() == CACHE_LINE);
const _: () = assert!(std::mem::size_of::<ShardRemote>() % CACHE_LINE == 0);
const _: () = assert!(std::mem::align_of::<Padded<ShardStats>>() == CACHE_LINE);

/// The start-up latch: every shard counts down once its ring and context exist (or once it
/// has failed to build them); main futures start only when every shard has, and not at all
/// if one failed. A countdown rather than `std::sync::Barrier` because a shard that fails
/// must release the others without waiting itself.
pub(crate) struct StartLatch {
    /// `(shards yet to arrive, whether one failed)`.
    state: Mutex<(usize, bool)>,
    all_arrived: Condvar,
}

impl StartLatch {
    fn new(n: usize) -> Self {
        StartLatch {
            state: Mutex::new((n, false)),
            all_arrived: Condvar::new(),
        }
    }

    /// Counts this shard in (`ok`: it is ready to run) and, if it is ready, waits for every
    /// other shard. Returns true when every shard started; false when one failed (the caller
    /// then runs no user code).
    pub(crate) fn arrive(&self, ok: bool) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 = st.0.saturating_sub(1);
        st.1 |= !ok;
        if st.0 == 0 || st.1 {
            self.all_arrived.notify_all();
        }
        while ok && st.0 > 0 && !st.1 {
            st = self.all_arrived.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        !st.1
    }

    /// A shard that will never arrive (its thread could not be spawned): release the others.
    pub(crate) fn fail(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1 = true;
        self.all_arrived.notify_all();
    }
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) shards: Vec<ShardRemote>,
    /// `senders[from][to]`: the bounded channel from shard `from` to shard `to`.
    pub(crate) senders: Vec<Vec<Sender<Message>>>,
    /// `receivers[to][from]`.
    pub(crate) receivers: Vec<Vec<Receiver<Message>>>,
    pub(crate) shutdown: AtomicBool,
    /// How many shards' main futures have finished.
    pub(crate) finished: AtomicUsize,
    pub(crate) start: StartLatch,
}

impl Shared {
    pub(crate) fn new(config: Config, cores: &[usize]) -> io::Result<Arc<Self>> {
        let n = cores.len();
        let shards = cores
            .iter()
            .map(|_| ShardRemote::new())
            .collect::<io::Result<Vec<_>>>()?;
        let mut senders: Vec<Vec<Sender<Message>>> = (0..n).map(|_| Vec::with_capacity(n)).collect();
        let mut receivers: Vec<Vec<Receiver<Message>>> = (0..n).map(|_| Vec::with_capacity(n)).collect();
        for from_row in senders.iter_mut() {
            for to_row in receivers.iter_mut() {
                let (tx, rx) = crossbeam_channel::bounded(config.mesh_capacity);
                from_row.push(tx);
                to_row.push(rx);
            }
        }
        // `receivers[to]` was filled in `from` order above.
        Ok(Arc::new(Self {
            config,
            shards,
            senders,
            receivers,
            shutdown: AtomicBool::new(false),
            finished: AtomicUsize::new(0),
            start: StartLatch::new(n),
        }))
    }

    pub(crate) fn n_shards(&self) -> usize {
        self.shards.len()
    }

    /// Asks every shard to stop and wakes them all.
    pub(crate) fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for s in &self.shards {
            s.force_unpark();
        }
    }

    pub(crate) fn all_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst) == self.shards.len()
    }
}
