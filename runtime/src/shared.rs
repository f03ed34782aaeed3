//! State shared by all shards of one runtime: the only `Sync` data in the crate.
//!
//! Everything here is written by one shard and read by others (counters, the parked flag), or
//! is the cross-core mesh itself. Nothing here is touched on the per-request path except the
//! owner's relaxed counter stores and, when a message is sent, the target's parked flag.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::mesh::Message;
use crate::stats::ShardStats;

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
}

/// The part of a shard other threads may touch.
pub(crate) struct ShardRemote {
    /// Written by anyone who needs the shard to leave its ring wait; read by the shard's ring.
    eventfd: OwnedFd,
    /// True while the shard is (about to be) blocked in its ring wait.
    parked: AtomicBool,
    pub(crate) stats: ShardStats,
    /// Task wake-ups coming from threads that are not this shard (rare path).
    pub(crate) remote_wakes: Mutex<Vec<(usize, u32)>>,
    pub(crate) has_remote_wakes: AtomicBool,
    /// Set when the shard has left its loop: the mesh refuses new messages to it.
    pub(crate) exited: AtomicBool,
    /// Set once its exit has handed over every reply and notice it could (after `exited`):
    /// from then on nothing more comes from it.
    pub(crate) drained: AtomicBool,
}

impl ShardRemote {
    fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            parked: AtomicBool::new(false),
            stats: ShardStats::default(),
            remote_wakes: Mutex::new(Vec::new()),
            has_remote_wakes: AtomicBool::new(false),
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
        self.parked.store(parked, Ordering::SeqCst);
        if parked {
            // Pairs with the fence in `unpark`: either the sender sees `parked`, or we see its
            // message when we re-check the inboxes.
            fence(Ordering::SeqCst);
        }
    }

    /// Wakes the shard out of its ring wait, but only if it is parked (no syscall otherwise).
    pub(crate) fn unpark(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            self.force_unpark();
        }
    }

    /// Writes the eventfd unconditionally.
    pub(crate) fn force_unpark(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own. A failed write
        // (EAGAIN when the counter is saturated) still leaves the shard woken.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
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
