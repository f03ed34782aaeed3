//! `Runtime::builder()`: choose cores and sizes, then `run` one future per core.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::cpus;
use crate::select::{self, Driver, DriverKind};
use crate::shard;
use crate::shared::{Config, Shared};
use crate::sys::{self, signal};

/// Default submission queue size of each core's ring.
pub const DEFAULT_RING_ENTRIES: u32 = 1024;
/// Default cooperative budget: ready leaf operations per task poll.
pub const DEFAULT_BUDGET: u32 = 128;
/// Default CPU shares of the (latency-critical, background) classes.
pub const DEFAULT_SHARES: (u32, u32) = (4, 1);
/// Default capacity of each (from, to) cross-core channel.
pub const DEFAULT_MESH_CAPACITY: usize = 1024;
/// Default number of provided receive buffers per core.
pub const DEFAULT_BUF_RING_ENTRIES: u16 = 1024;
/// Default size of each provided receive buffer.
pub const DEFAULT_BUF_SIZE: u32 = 4096;
/// Default number of task polls per loop turn before the core checks I/O again.
pub const DEFAULT_MAX_POLLS_PER_TURN: u32 = 256;
/// Default time a core in a cross-core conversation polls before it parks (see
/// [`Builder::idle_spin`]).
pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(50);

/// Which cores get a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cores {
    /// Every core this process may run on (its CPU affinity mask), but no more than its
    /// cgroup CPU quota allows: `ceil(quota / period)` cores, at least one (cgroup v2
    /// `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`). A container limited to 2 CPUs
    /// on a 64-core host gets 2 shards.
    All,
    /// The first `n` of those cores.
    Count(usize),
    /// Exactly these core ids.
    List(Vec<usize>),
}

impl std::str::FromStr for Cores {
    type Err = String;

    /// `all`, a count (`4`), or a comma-separated list of core ids (`0,2,5`; a single id
    /// as a list is written `3,`).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(Cores::All);
        }
        if s.contains(',') {
            let ids = s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| p.parse::<usize>().map_err(|e| format!("bad core id {p:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if ids.is_empty() {
                return Err("empty core list".into());
            }
            return Ok(Cores::List(ids));
        }
        match s.parse::<usize>() {
            Ok(0) => Err("core count must be at least 1 (a list like `0,` names core 0)".into()),
            Ok(n) => Ok(Cores::Count(n)),
            Err(e) => Err(format!("bad core count {s:?}: {e}")),
        }
    }
}

/// Configures a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    cores: Cores,
    driver: Driver,
    config: Config,
    handle_signals: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            cores: Cores::All,
            driver: Driver::Auto,
            config: Config {
                driver: DriverKind::IoUring,
                ring_entries: DEFAULT_RING_ENTRIES,
                budget: DEFAULT_BUDGET,
                shares: [DEFAULT_SHARES.0, DEFAULT_SHARES.1],
                mesh_capacity: DEFAULT_MESH_CAPACITY,
                shutdown_grace: Duration::ZERO,
                portable_ops: false,
                buf_ring_entries: DEFAULT_BUF_RING_ENTRIES,
                buf_size: DEFAULT_BUF_SIZE,
                max_polls_per_turn: DEFAULT_MAX_POLLS_PER_TURN,
                idle_spin: DEFAULT_IDLE_SPIN,
                speculative_send: None,
            },
            handle_signals: true,
        }
    }
}

impl Builder {
    /// Selects the cores (default: [`Cores::All`]).
    pub fn cores(mut self, cores: Cores) -> Self {
        self.cores = cores;
        self
    }

    /// One shard on each of the first `n` allowed cores.
    pub fn core_count(self, n: usize) -> Self {
        self.cores(Cores::Count(n))
    }

    /// One shard on each listed core id.
    pub fn core_list(self, ids: &[usize]) -> Self {
        self.cores(Cores::List(ids.to_vec()))
    }

    /// The I/O driver (default [`Driver::Auto`]: io_uring where it works, else epoll with one
    /// `info` log line saying why). The environment variable `RINGCORE_DRIVER`
    /// (`auto` / `io_uring` / `epoll`) replaces `Auto` only; see [`Driver`].
    pub fn driver(mut self, driver: Driver) -> Self {
        self.driver = driver;
        self
    }

    /// Submission queue entries per core (rounded up to a power of two; default
    /// [`DEFAULT_RING_ENTRIES`]). The completion queue is four times larger.
    pub fn ring_entries(mut self, n: u32) -> Self {
        self.config.ring_entries = n;
        self
    }

    /// Ready leaf operations a task may consume per poll before it must yield (default
    /// [`DEFAULT_BUDGET`]).
    pub fn budget(mut self, n: u32) -> Self {
        self.config.budget = n.max(1);
        self
    }

    /// CPU shares of the latency-critical and background classes when both have work
    /// (default 4:1).
    pub fn class_shares(mut self, latency: u32, background: u32) -> Self {
        self.config.shares = [latency.max(1), background.max(1)];
        self
    }

    /// Capacity of each cross-core channel (default [`DEFAULT_MESH_CAPACITY`]).
    pub fn mesh_capacity(mut self, n: usize) -> Self {
        self.config.mesh_capacity = n.max(1);
        self
    }

    /// How long the main futures may keep running after shutdown is requested (Ctrl-C,
    /// SIGTERM, [`request_shutdown`](crate::request_shutdown)) before they are dropped.
    /// Default zero: stop at once. Servers that drain connections set a deadline here and
    /// watch [`shutdown_requested`](crate::shutdown_requested).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Whether `run` turns SIGINT and SIGTERM into a shutdown request (default true).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Forces the portable I/O paths: no `SINGLE_ISSUER`/`DEFER_TASKRUN`/`COOP_TASKRUN`, no
    /// multishot accept or receive, no provided buffer ring. This is what older kernels get;
    /// it exists so both paths can be tested on one machine.
    pub fn portable_ops(mut self, on: bool) -> Self {
        self.config.portable_ops = on;
        self
    }

    /// Provided receive buffers per core and their size (defaults
    /// [`DEFAULT_BUF_RING_ENTRIES`] x [`DEFAULT_BUF_SIZE`]).
    pub fn buf_ring(mut self, entries: u16, size: u32) -> Self {
        self.config.buf_ring_entries = entries.max(1);
        self.config.buf_size = size.max(64);
        self
    }

    /// Task polls per loop turn before the core looks at I/O again.
    pub fn max_polls_per_turn(mut self, n: u32) -> Self {
        self.config.max_polls_per_turn = n.max(1);
        self
    }

    /// How long a core that has nothing to run keeps polling before it parks in its ring
    /// wait, when it is in a cross-core conversation (it awaits a reply, or handled or sent a
    /// message within this window) or its next timer is due within this window. Default
    /// [`DEFAULT_IDLE_SPIN`]; zero disables it.
    ///
    /// Parking costs a wake-up through the eventfd and, on a virtual machine, the time an
    /// idle vCPU takes to run again (tens of microseconds here), so a `submit_to` round trip
    /// between two parked cores is slow. While polling, the core checks its inboxes
    /// continuously and its ring every 2 microseconds. Pure network work never spins.
    pub fn idle_spin(mut self, spin: Duration) -> Self {
        self.config.idle_spin = spin;
        self
    }

    /// Whether a [`TcpStream`](crate::net::TcpStream) write first tries one non-blocking
    /// `send` on the core itself, before submitting an operation (Seastar calls this
    /// speculation). `true`: always; `false`: never. Default: always with the epoll driver,
    /// and with io_uring while the core is quiet.
    ///
    /// A socket's send buffer nearly always has room, so the bytes leave at once and the task
    /// goes on without waiting for a completion; only a send that would block becomes an
    /// operation. On epoll that saves the op (the call is made at once either way). On
    /// io_uring it trades the send SQE for a syscall per write. On a busy core the SQE wins:
    /// it rides in the `io_uring_enter` the turn makes anyway, with the other tasks' SQEs
    /// (measured on one core, `scripts/bench-speculative-send.sh`: 7% more CPU per answer
    /// with speculation, 64 busy connections). On a quiet core the enter carries that SQE
    /// alone, and its completion wakes the task a second time and ends the next park at once;
    /// the syscall is cheaper (2% less CPU per answer at 20% load). So by default io_uring
    /// speculates while at most eight receives brought data in the core's last ring turn. The
    /// environment variable `RINGCORE_SPECULATIVE_SEND=0|1` overrides this (for A/B runs).
    pub fn speculative_send(mut self, on: bool) -> Self {
        self.config.speculative_send = Some(on);
        self
    }

    /// Resolves the cores and the driver, and creates the cross-core mesh. Rings (or epoll
    /// instances) are created by `run`, on each core's own thread (a ring is only ever touched
    /// by the thread that made it).
    ///
    /// Fails on a bad `RINGCORE_DRIVER` value or a core selection this process cannot use.
    pub fn build(mut self) -> io::Result<Runtime> {
        // For A/B measurements without a rebuild (see `speculative_send`).
        if let Ok(v) = std::env::var("RINGCORE_SPECULATIVE_SEND") {
            match v.as_str() {
                "0" | "false" | "off" => self.config.speculative_send = Some(false),
                "1" | "true" | "on" => self.config.speculative_send = Some(true),
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("RINGCORE_SPECULATIVE_SEND must be 0 or 1, not {other:?}"),
                    ))
                }
            }
        }
        self.config.driver = select::resolve(self.driver, self.config.portable_ops)?;
        let allowed: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        if allowed.is_empty() {
            return Err(io::Error::other(
                "ringcore: could not read this process's CPU affinity mask",
            ));
        }
        let cores = match &self.cores {
            Cores::All => cpus::all_cores(&allowed, cpus::cgroup_cpu_quota()),
            Cores::Count(n) => {
                if *n == 0 || *n > allowed.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "ringcore: asked for {n} cores but this process may use {} ({allowed:?})",
                            allowed.len()
                        ),
                    ));
                }
                allowed[..*n].to_vec()
            }
            Cores::List(ids) => {
                if ids.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "ringcore: empty core list",
                    ));
                }
                for id in ids {
                    if !allowed.contains(id) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("ringcore: core {id} is not in this process's CPU set {allowed:?}"),
                        ));
                    }
                }
                let mut seen = ids.clone();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() != ids.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "ringcore: a core is listed twice",
                    ));
                }
                ids.clone()
            }
        };
        let shared = Shared::new(self.config, &cores)?;
        Ok(Runtime {
            shared,
            cores,
            handle_signals: self.handle_signals,
        })
    }
}

/// A thread-per-core runtime: one pinned OS thread, I/O driver, executor and timer set per core.
pub struct Runtime {
    shared: Arc<Shared>,
    cores: Vec<usize>,
    handle_signals: bool,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("cores", &self.cores)
            .field("driver", &self.shared.config.driver)
            .finish()
    }
}

/// Stops a running runtime from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShutdownHandle")
    }
}

impl ShutdownHandle {
    /// Requests shutdown: as Ctrl-C does.
    pub fn shutdown(&self) {
        self.shared.request_shutdown();
    }
}

impl Runtime {
    /// A builder with the defaults: all allowed cores, [`DEFAULT_RING_ENTRIES`], signals
    /// handled.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The I/O driver every core of this runtime will use (decided by
    /// [`Builder::build`]).
    pub fn driver_kind(&self) -> DriverKind {
        self.shared.config.driver
    }

    /// The core ids the shards will run on, in shard order.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// A handle that can stop the runtime from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }

    /// Starts one pinned thread per core, runs `f()` on each as that core's main future, and
    /// returns once every main future has finished, or shutdown was requested (SIGINT,
    /// SIGTERM, [`request_shutdown`](crate::request_shutdown)) and the grace period is over.
    ///
    /// The result holds each shard's output in shard order (`None` where shutdown stopped
    /// the main future first). An error names the shard and the cause: a ring that could not
    /// be created (with the remedy), a failed pin, or a main future that panicked.
    pub fn run<F, Fut, R>(self, f: F) -> io::Result<Vec<Option<R>>>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let n = self.cores.len();
        let f = Arc::new(f);
        let mask = if self.handle_signals {
            Some(signal::block_termination_signals())
        } else {
            None
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let done = Arc::new(sys::eventfd()?);
        let signals = match mask {
            Some(_) => Some(signal::termination_fd()?),
            None => None,
        };
        let mut threads = Vec::with_capacity(n);
        let mut spawn_error = None;
        for (i, &core) in self.cores.iter().enumerate() {
            let shared = self.shared.clone();
            let f = f.clone();
            let tx = tx.clone();
            let done = done.clone();
            let spawned = thread::Builder::new()
                .name(format!("ringcore-{i}"))
                .spawn(move || {
                    // Whatever happens in the shard, `run` must hear about it (or it would wait
                    // forever for this thread's result).
                    let shared2 = shared.clone();
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                        shard::run_shard(i, core, shared2, move || f())
                    }))
                    .unwrap_or_else(|_| Err(io::Error::other("the shard thread panicked")));
                    if out.is_err() {
                        shared.request_shutdown();
                    }
                    let _ = tx.send((i, out));
                    sys::eventfd_write(&done);
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    spawn_error = Some(e);
                    // The shards not spawned will never reach the start latch.
                    self.shared.start.fail();
                    self.shared.request_shutdown();
                    break;
                }
            }
        }
        drop(tx);
        let mut results: Vec<Option<io::Result<Option<R>>>> = (0..n).map(|_| None).collect();
        let mut received = 0;
        while received < threads.len() {
            while let Ok((i, out)) = rx.try_recv() {
                results[i] = Some(out);
                received += 1;
            }
            if received == threads.len() {
                break;
            }
            // Sleeps until a shard finishes or a signal arrives: no periodic wake-ups.
            if signal::wait(&done, signals.as_ref()) {
                self.shared.request_shutdown();
            }
        }
        for t in threads {
            if t.join().is_err() {
                spawn_error.get_or_insert_with(|| io::Error::other("ringcore: a shard thread panicked"));
            }
        }
        if let Some(old) = mask {
            signal::restore(&old);
        }
        if let Some(e) = spawn_error {
            return Err(e);
        }
        let mut out = Vec::with_capacity(n);
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Some(Ok(v)) => out.push(v),
                Some(Err(e)) => return Err(io::Error::new(e.kind(), format!("shard {i}: {e}"))),
                None => return Err(io::Error::other(format!("shard {i} ended without a result"))),
            }
        }
        Ok(out)
    }
}
