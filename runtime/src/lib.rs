//! # ringcore-runtime
//!
//! A thread-per-core, shared-nothing async runtime on io_uring.
//!
//! Each selected core gets one pinned OS thread with its own io_uring, task queues, timers and
//! slab allocators. Tasks are `!Send`: per-core state is plain `Rc`/`RefCell`. Cores share
//! nothing by default; they talk only through a mesh of bounded channels
//! ([`submit_to`], [`Sharded`]).
//!
//! ```no_run
//! use ringcore_runtime::net::TcpListener;
//! use ringcore_runtime::{spawn_local, Runtime};
//!
//! // A TCP echo server on every core: each core binds the same port (SO_REUSEPORT) and
//! // serves the connections it accepts.
//! Runtime::builder().build()?.run(|| async {
//!     let listener = TcpListener::bind("127.0.0.1:7000").expect("bind");
//!     loop {
//!         let Ok(stream) = listener.accept_stream().await else { continue };
//!         spawn_local(async move {
//!             loop {
//!                 let chunk = match stream.recv().await {
//!                     Ok(c) if !c.is_empty() => c,
//!                     _ => break, // EOF or error
//!                 };
//!                 // The received ring buffer is written back as is: no copy.
//!                 let (res, _) = stream.write_all(chunk).await;
//!                 if res.is_err() { break; }
//!             }
//!         })
//!         .detach();
//!     }
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## What you get
//!
//! - [`Runtime`]: cores (all, a count, a list), ring size, budget, class shares; `run` returns
//!   when every core's main future ends or on SIGINT/SIGTERM.
//! - Tasks: [`spawn_local`] / [`spawn_local_in`] with a [`JoinHandle`] (await, detach, abort),
//!   two [`TaskClass`]es with CPU shares, a cooperative budget ([`yield_now`],
//!   [`consume_budget`]).
//! - I/O: [`net::TcpListener`] (per-core `SO_REUSEPORT`, multishot accept) and
//!   [`net::TcpStream`] (owned buffers in and out, multishot receive from a provided buffer
//!   ring so idle connections hold no receive buffer).
//! - Files: [`fs::File`] and [`fs::OpenOptions`]: open, positioned reads and writes with owned
//!   buffers, `fsync` / `fdatasync`, truncation and close, all on the ring.
//! - Time: [`time::sleep`], [`time::timeout`], [`time::interval`].
//! - Cross-core: [`submit_to`], [`try_submit_to`], [`Sharded`].
//! - One future on one core: [`block_on`] / [`block_on_with`], and the test attribute
//!   [`#[ringcore_runtime::test]`](test) for async tests.
//! - Counters: [`stats`], the runtime's own, readable from every core; [`metrics`], the
//!   application's counters and gauges, merged over cores and rendered for Prometheus.
//! - Per-core state: [`core_local!`] / [`CoreLocal`] (a module's state, one value per core,
//!   created on first use and dropped at shard exit), [`Sharded`] (a service instance per
//!   core, reachable from other cores), [`cache::Cache`] (an LRU with TTL and coalesced
//!   loads).
//!
//! ## Two drivers, one API
//!
//! Every core runs io_uring where the kernel and the process allow it, and an epoll
//! (readiness) driver where they do not (seccomp profiles of Docker and Kubernetes, RHEL 9's
//! `kernel.io_uring_disabled`, gVisor, kernels before 5.11): [`Driver::Auto`], the default,
//! probes io_uring once at [`Builder::build`] and falls back to epoll with one `info` log line
//! (target `ringcore_runtime`) naming why. Everything in this crate, and everything built on
//! it, works the same on both; on epoll, file I/O runs on a small blocking pool, and there is
//! no multishot accept or receive. [`Builder::driver`] or the `RINGCORE_DRIVER` environment
//! variable (`auto`, `io_uring`, `epoll`; it replaces `Auto` only) choose one;
//! [`driver_kind`] says which a core runs.
//!
//! ## Starting fails loudly
//!
//! If the chosen driver cannot start (io_uring forced where it is disabled by sysctl, blocked
//! by seccomp, too old, or short of locked memory; a bad `RINGCORE_DRIVER` value), `build` or
//! `run` returns an error that names the cause and the remedy.
#![warn(missing_docs)]

mod block_on;
mod buf;
mod builder;
pub mod cache;
#[cfg(any(feature = "tokio-io", feature = "hyper-io"))]
pub mod compat;
mod context;
mod cpus;
mod driver;
mod executor;
mod fd;
pub mod fs;
pub mod future_slot;
mod mesh;
pub mod metrics;
pub mod net;
mod park;
mod select;
mod shard;
mod shared;
pub mod stats;
mod sys;
pub mod time;

pub use block_on::{block_on, block_on_with};
pub use buf::{AlignedBuf, IoBuf, IoBufMut};
pub use builder::{
    Builder, Cores, Runtime, ShutdownHandle, DEFAULT_BUDGET, DEFAULT_BUF_RING_ENTRIES, DEFAULT_BUF_SIZE,
    DEFAULT_IDLE_SPIN, DEFAULT_MAX_POLLS_PER_TURN, DEFAULT_MESH_CAPACITY, DEFAULT_RING_ENTRIES,
    DEFAULT_SHARES,
};
pub use context::{driver_kind, n_shards, shard_id, try_n_shards};
pub use executor::{
    consume_budget, spawn_local, spawn_local_in, yield_now, JoinError, JoinHandle, TaskClass,
};
pub use future_slot::{FutureSlot, SlotFuture};
pub use mesh::{submit_to, try_submit_to, Sharded, Submit, SubmitError, TrySubmitError};
/// Runs an `async fn` test on one ringcore core: `#[ringcore_runtime::test]`.
///
/// ```
/// #[ringcore_runtime::test]
/// async fn sleeps_on_a_core() {
///     ringcore_runtime::time::sleep(std::time::Duration::from_millis(1)).await;
///     assert_eq!(ringcore_runtime::shard_id(), 0);
/// }
/// ```
///
/// The test becomes a plain `#[test] fn` running [`block_on_with`]`(|| async move { body })`:
/// a one-core runtime, signals left to the harness, the future built on the core (so it may
/// hold `Rc`s). A crate that reaches this runtime through another path names it:
/// `#[ringcore_http::runtime::test(crate = ringcore_http::runtime)]`.
pub use ringcore_macros::test;
pub use select::{Driver, DriverKind, DRIVER_ENV};
mod limits;
mod local;
pub use limits::raise_nofile_limit;
pub use local::CoreLocal;
pub use shard::{
    is_shutting_down, local_state, nop, request_shutdown, shutdown_requested, LocalState, ShutdownRequested,
};
