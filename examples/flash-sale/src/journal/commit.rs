//! Group commit: `Journal::append`, the flusher task, and the per-batch outcome its waiters
//! share.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ringcore_runtime::fs::File;
use ringcore_runtime::time::{sleep, sleep_until};
use ringcore_runtime::{spawn_local_in, AlignedBuf, TaskClass};

use super::format::{encode_into, MAX_RECORD_LEN};

/// One core's append-only journal. See the [module docs](super) for the format and the rules.
///
/// Not `Send`: it lives on the core that opened it; share it between that core's tasks with an
/// `Rc`.
pub struct Journal {
    inner: Rc<Inner>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counters of one journal since it was opened (for the service's metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Batches made durable (one data-sync write, or one write and one `fdatasync`, each).
    pub batches: u64,
    /// Records made durable.
    pub records: u64,
    /// Bytes made durable (record prefixes included).
    pub bytes: u64,
    /// Most records in one batch.
    pub max_batch_records: u64,
    /// Writes or syncs that failed (each stopped the journal until a probe succeeded).
    pub failures: u64,
    /// Times the journal accepted appends again after a failure.
    pub recoveries: u64,
    /// Times the prepared space was extended (zeros written and `fdatasync`ed).
    pub growths: u64,
    /// Batches that did not fit in the prepared space and extended the file themselves
    /// (their sync then commits the new size too).
    pub batches_past_prepared: u64,
}

/// How a journal prepares its file (see the [module docs](super)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// Bytes of zeros written (and synced once) past the journal's end each time the
    /// prepared space runs low, rounded up to whole 4 KiB pages; growth starts when less than
    /// half a step is left. `0` turns preallocation off: every batch extends the file, as
    /// before, and its sync then commits the new size as well.
    pub prealloc: u64,
    /// How a batch is made durable.
    pub sync: SyncMode,
    /// Group commit's batch window (`Duration::ZERO`: none). While the journal is busy (the
    /// previous batch held more than one record, or records were appended while it was on its
    /// way to the disk), the next batch starts no earlier than this after the previous one
    /// started, so the records of a whole window share one write and one sync: fewer syncs
    /// per record, and fewer wake-ups of the core and of the kernel's workers, for at most
    /// this much more latency. An idle journal, or one client appending one record at a time,
    /// writes at once. Like PostgreSQL's `commit_delay` with `commit_siblings` and MySQL's
    /// `binlog_group_commit_sync_delay`.
    pub commit_window: Duration,
}

/// How the flusher makes a batch durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// One data-sync write (`RWF_DSYNC`: [`File::write_all_at_dsync`]): one ring op per batch
    /// (one `pwritev2` on the epoll driver).
    #[default]
    DsyncWrite,
    /// A write, then `fdatasync` (`IORING_OP_FSYNC` with `DATASYNC`): two ops per batch.
    WriteThenFdatasync,
    /// A write through a second descriptor opened with `O_DIRECT`, of whole 4 KiB blocks
    /// (the batch's records after the bytes already in its first block, zeros to the end of
    /// its last), then `fdatasync`. Over prepared space io_uring issues the write to the
    /// device at once, where a buffered write is copied into the page cache and written back
    /// by a kernel worker thread (io-wq). Where the file system refuses `O_DIRECT`, the
    /// journal writes as [`SyncMode::DsyncWrite`] does ([`Journal::is_direct`] says which).
    Direct,
}

/// The default [`JournalOptions::prealloc`]: 16 MiB (about 100,000 of the service's order
/// records; writing and syncing it takes a few tens of ms here).
pub const DEFAULT_PREALLOC: u64 = 16 * 1024 * 1024;

/// The default [`JournalOptions::commit_window`]: 500 µs. On this project's test VM (a
/// virtio disk whose sync takes about 350 µs), at 5,000 buys/s, it cut the service's CPU per
/// durable buy by 18% (a quarter with the kernel threads' share) and left the p99 where it
/// was; at 10,000 buys/s it saved 10% and raised the p99 from 1.5 to 2.8 ms, still under the
/// axum baseline's. 1 ms saved more and added about 0.5 ms to the p50 and p99
/// (docs/benchmarks.md, goal 5).
pub const DEFAULT_COMMIT_WINDOW: Duration = Duration::from_micros(500);

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            prealloc: DEFAULT_PREALLOC,
            sync: SyncMode::default(),
            commit_window: DEFAULT_COMMIT_WINDOW,
        }
    }
}

impl JournalOptions {
    /// The growth step in bytes (whole pages; 0: no preallocation).
    pub(super) fn step(&self) -> u64 {
        self.prealloc.div_ceil(PAGE) * PAGE
    }
}

/// Page size the growth step is rounded to.
const PAGE: u64 = 4096;
/// The block a direct write covers whole.
pub(super) const BLOCK: u64 = AlignedBuf::ALIGN as u64;

/// `x` rounded down to a whole block.
pub(super) fn block_start(x: u64) -> u64 {
    x - x % BLOCK
}

/// `x` rounded up to a whole block.
fn block_end(x: u64) -> u64 {
    x.div_ceil(BLOCK) * BLOCK
}
/// Bytes of zeros one growth write carries (the step is written in chunks of this size).
const ZERO_CHUNK: usize = 1024 * 1024;

/// What a journal says about itself to its observer ([`Journal::on_health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Appends are accepted.
    Healthy,
    /// A write or sync failed: appends are refused until a probe write succeeds. The text
    /// names the file, the operation and the error of the last attempt.
    Stopped(String),
}

/// What [`Journal::on_health`] installs.
type Observer = Rc<dyn Fn(&Health)>;

pub(super) struct Inner {
    pub(super) file: File,
    pub(super) path: PathBuf,
    state: RefCell<State>,
    stats: Cell<JournalStats>,
    observer: RefCell<Option<Observer>>,
    /// Growth step ([`JournalOptions::step`]; 0: no preallocation).
    step: u64,
    sync: SyncMode,
    /// [`JournalOptions::commit_window`].
    window: Duration,
    /// The file opened again with `O_DIRECT`, for the batches ([`SyncMode::Direct`]).
    direct: Option<File>,
}

impl Inner {
    /// Where a batch of `len` bytes at `pos` stops writing: at its end, or with `O_DIRECT` at
    /// the end of its last block (padded with zeros).
    fn span_end(&self, pos: u64, len: u64) -> u64 {
        match self.direct {
            Some(_) => block_end(pos + len),
            None => pos + len,
        }
    }
}

struct State {
    /// Encoded records of the batch being gathered (written by the next flush).
    pending: Vec<u8>,
    /// The outcome that the appenders of `pending` wait for.
    pending_batch: Rc<Batch>,
    pending_records: u64,
    /// The previous batch's buffer, emptied, for reuse.
    spare: Vec<u8>,
    /// File offset where the next batch goes.
    end: u64,
    /// The flusher's waker while it waits for records.
    flusher: Option<Waker>,
    /// The flusher while it waits out the batch window (woken when the journal closes).
    window_waiter: Option<Waker>,
    /// Set by a failed write or sync, cleared by a successful probe: no append is accepted
    /// meanwhile.
    failed: Option<Failure>,
    /// Batches that failed and could not be cut off the file: resolved (as not written) by
    /// the first successful cut back to `end`.
    doubts: Vec<Rc<DoubtCell>>,
    /// When the batch now on its way to the disk was taken (None when idle).
    flushing_since: Option<Instant>,
    /// Set when the `Journal` is closed or dropped: the flusher drains and exits.
    closed: bool,
    /// End of the prepared space: every byte from `end` up to here is allocated and holds
    /// zeros that were written and synced, so a batch that ends below it overwrites blocks in
    /// place and its sync has no size or extent change to commit.
    space_end: u64,
    /// End of the batch in flight (`end` when idle): growth never starts below it.
    writing_end: u64,
    /// A growth (zeros being written past `space_end`, then synced) is in flight; neither a
    /// batch past `space_end` nor a cut starts meanwhile.
    growing: bool,
    /// Set by a failed growth, cleared by the next successful one: appends are refused
    /// meanwhile (the space may be about to run out).
    grow_failed: Option<Failure>,
    /// The grower's waker while it waits for work.
    grower: Option<Waker>,
    /// The flusher's waker while it waits for a growth to end.
    growth_waiter: Option<Waker>,
    /// With `O_DIRECT`: the bytes from the start of `end`'s block up to `end` (already in
    /// the file), written again in front of the next batch, since a direct write covers whole
    /// blocks.
    tail: Vec<u8>,
    /// With `O_DIRECT`: the aligned buffer a batch is written from, reused.
    block_buf: AlignedBuf,
}

/// Why the journal stopped, kept so that every waiter and later appender can get an error.
#[derive(Debug, Clone)]
struct Failure {
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn to_error(&self) -> io::Error {
        io::Error::new(self.kind, self.message.clone())
    }
}

/// How a failed batch ended.
#[derive(Clone)]
struct Failed {
    failure: Failure,
    /// `Some` when the batch could not be cut off the file: it may be durable.
    doubt: Option<Rc<DoubtCell>>,
}

impl Failed {
    fn to_error(&self) -> AppendError {
        match &self.doubt {
            None => AppendError::NotWritten(self.failure.to_error()),
            Some(d) => AppendError::InDoubt(self.failure.to_error(), Doubt(d.clone())),
        }
    }
}

/// The outcome of one batch, shared by all the appends in it.
#[derive(Default)]
struct Batch {
    outcome: RefCell<Option<Result<(), Failed>>>,
    /// One slot per append in the batch (its index is fixed at enqueue time).
    wakers: RefCell<Vec<Option<Waker>>>,
}

impl Batch {
    /// Records the outcome and returns the wakers to call (after every borrow is released).
    fn finish(&self, outcome: Result<(), Failed>) -> Vec<Waker> {
        *self.outcome.borrow_mut() = Some(outcome);
        self.wakers.borrow_mut().drain(..).flatten().collect()
    }
}

/// Why an append was not acknowledged.
///
/// The difference matters to a caller that reserved something for the record (a unit of
/// stock, a user's mark): after [`NotWritten`](AppendError::NotWritten) it may give it back
/// at once; after [`InDoubt`](AppendError::InDoubt) it must hold it until the [`Doubt`]
/// resolves, because the record may be on disk and would be replayed after a restart.
#[derive(Debug)]
pub enum AppendError {
    /// The record is not in the file and never will be: refused before it was queued (bad
    /// size, journal stopped), or its batch failed and was cut off the file durably.
    NotWritten(io::Error),
    /// Its batch failed and could not be cut off the file: the record may be durable. The
    /// [`Doubt`] resolves once a later cut succeeds (the record is then certainly gone).
    InDoubt(io::Error, Doubt),
}

impl AppendError {
    /// The underlying error.
    pub fn io(&self) -> &io::Error {
        match self {
            AppendError::NotWritten(e) | AppendError::InDoubt(e, _) => e,
        }
    }

    /// The underlying error's kind.
    pub fn kind(&self) -> io::ErrorKind {
        self.io().kind()
    }

    /// Whether the record may be durable (see [`AppendError::InDoubt`]).
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, AppendError::InDoubt(..))
    }
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::NotWritten(e) => write!(f, "{e}"),
            AppendError::InDoubt(e, _) => write!(f, "{e} (the record may be on disk: in doubt)"),
        }
    }
}

impl std::error::Error for AppendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.io())
    }
}

impl From<AppendError> for io::Error {
    fn from(e: AppendError) -> io::Error {
        let kind = e.kind();
        io::Error::new(kind, e.to_string())
    }
}

#[derive(Default)]
struct DoubtCell {
    resolved: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl DoubtCell {
    fn resolve(&self) {
        self.resolved.set(true);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }
}

/// A failed batch that may be on disk. As a future, it resolves once the journal has cut
/// the file back to before the batch and synced that: from then on the batch's records are
/// certainly not in the file. If the process dies first, replay finds them (or not) and the
/// caller's held state must match what it finds: hold, never give back, until then.
#[derive(Clone)]
pub struct Doubt(Rc<DoubtCell>);

impl fmt::Debug for Doubt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doubt")
            .field("resolved", &self.0.resolved.get())
            .finish()
    }
}

impl Future for Doubt {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.resolved.get() {
            return Poll::Ready(());
        }
        self.0.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

/// The future of one [`Journal::append`]: resolves once the record is durable, or with the
/// error that stopped the journal.
///
/// The record was queued when `append` was called: dropping this future does not withdraw
/// it (it is written with its batch); it only stops waiting for the outcome.
#[must_use = "the record is queued either way, but it is durable only once this resolves"]
pub struct Commit {
    state: CommitState,
}

enum CommitState {
    Waiting { batch: Rc<Batch>, slot: usize },
    Refused(Option<AppendError>),
}

impl fmt::Debug for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match &self.state {
            CommitState::Waiting { .. } => "waiting",
            CommitState::Refused(_) => "refused",
        };
        f.debug_struct("Commit").field("state", &s).finish()
    }
}

impl Future for Commit {
    type Output = Result<(), AppendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), AppendError>> {
        match &mut self.state {
            CommitState::Refused(e) => Poll::Ready(Err(e.take().unwrap_or_else(|| {
                AppendError::NotWritten(io::Error::other("journal append polled after completion"))
            }))),
            CommitState::Waiting { batch, slot } => {
                if let Some(outcome) = batch.outcome.borrow().as_ref() {
                    return Poll::Ready(outcome.clone().map_err(|f| f.to_error()));
                }
                if let Some(w) = batch.wakers.borrow_mut().get_mut(*slot) {
                    *w = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Journal {
    /// Wraps an opened, replayed file whose valid end is `end` and whose bytes from there to
    /// `space_end` are zeros, and starts its flusher and (with preallocation) its grower.
    ///
    /// `direct`: with [`SyncMode::Direct`], the file opened with `O_DIRECT` and the bytes of
    /// `end`'s block before `end`.
    pub(super) fn start(
        file: File,
        path: PathBuf,
        end: u64,
        space_end: u64,
        opts: &JournalOptions,
        direct: Option<(File, Vec<u8>)>,
    ) -> Journal {
        let step = opts.step();
        let (direct, tail) = match direct {
            Some((f, tail)) => (Some(f), tail),
            None => (None, Vec::new()),
        };
        let inner = Rc::new(Inner {
            file,
            path,
            step,
            sync: opts.sync,
            window: opts.commit_window,
            direct,
            state: RefCell::new(State {
                pending: Vec::new(),
                pending_batch: Rc::default(),
                pending_records: 0,
                spare: Vec::new(),
                end,
                flusher: None,
                window_waiter: None,
                failed: None,
                doubts: Vec::new(),
                flushing_since: None,
                closed: false,
                space_end: space_end.max(end),
                writing_end: end,
                growing: false,
                grow_failed: None,
                grower: None,
                growth_waiter: None,
                tail,
                block_buf: AlignedBuf::default(),
            }),
            stats: Cell::new(JournalStats::default()),
            observer: RefCell::new(None),
        });
        // Background class: the flusher does little CPU work per batch and mostly waits on the
        // device; request handling keeps the CPU.
        spawn_local_in(TaskClass::Background, flusher(inner.clone())).detach();
        if step > 0 {
            spawn_local_in(TaskClass::Background, grower(inner.clone())).detach();
        }
        Journal { inner }
    }

    /// Prepares the first step of space before the journal takes appends (at open), so the
    /// first buys do not wait for it. A failure here does not fail the open: the journal
    /// starts stopped (appends refused, [`Health::Stopped`]) and its grower retries.
    pub(super) async fn prepare_initial(&self) {
        let (from, to) = {
            let st = self.inner.state.borrow();
            if !needs_growth(&self.inner, &st) {
                return;
            }
            let from = growth_from(&self.inner, &st);
            (from, from + self.inner.step)
        };
        self.inner.state.borrow_mut().growing = true;
        let res = write_zeros(&self.inner, from, to).await;
        grown(&self.inner, from, to, res);
    }

    /// Queues a record and returns a future that resolves once it is durable: written with
    /// `RWF_DSYNC` (or written and `fdatasync`ed, per [`SyncMode`]), together with the other
    /// records appended while the previous batch was on its way to the disk or, while the
    /// journal is busy, during the batch window ([`JournalOptions::commit_window`]).
    ///
    /// Records are written in the order of the `append` calls. Errors (see [`AppendError`]):
    /// `InvalidInput` for an empty payload or one over [`MAX_RECORD_LEN`]; after a failed
    /// write or sync, that error (with the journal's path) for the batch's appends, the ones
    /// queued behind it, and every append until a probe write succeeds again; after a failed
    /// growth of the prepared space, that error for every append until a growth succeeds.
    pub fn append(&self, payload: &[u8]) -> Commit {
        if payload.is_empty() || payload.len() > MAX_RECORD_LEN {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "journal record of {} bytes: payloads must have 1 to {MAX_RECORD_LEN} bytes",
                    payload.len()
                ),
            );
            return Commit {
                state: CommitState::Refused(Some(AppendError::NotWritten(e))),
            };
        }
        let (batch, slot, flusher) = {
            let mut st = self.inner.state.borrow_mut();
            if let Some(f) = st.failed.as_ref().or(st.grow_failed.as_ref()) {
                return Commit {
                    state: CommitState::Refused(Some(AppendError::NotWritten(f.to_error()))),
                };
            }
            encode_into(&mut st.pending, payload);
            st.pending_records += 1;
            let batch = st.pending_batch.clone();
            let slot = {
                let mut wakers = batch.wakers.borrow_mut();
                wakers.push(None);
                wakers.len() - 1
            };
            (batch, slot, st.flusher.take())
        };
        if let Some(w) = flusher {
            w.wake();
        }
        Commit {
            state: CommitState::Waiting { batch, slot },
        }
    }

    /// Whether batches are written with `O_DIRECT` ([`SyncMode::Direct`] on a file system
    /// that takes it).
    pub fn is_direct(&self) -> bool {
        self.inner.direct.is_some()
    }

    /// The counters since the journal was opened.
    pub fn stats(&self) -> JournalStats {
        self.inner.stats.get()
    }

    /// File offset where the next batch will be written (the durable length once every
    /// append has resolved).
    pub fn end(&self) -> u64 {
        self.inner.state.borrow().end
    }

    /// Where the journal lives.
    pub fn path(&self) -> &std::path::Path {
        &self.inner.path
    }

    /// Whether the journal is stopped by a failed write, sync or growth of its prepared space
    /// (appends are refused until a probe write or a growth succeeds).
    pub fn is_failed(&self) -> bool {
        let st = self.inner.state.borrow();
        st.failed.is_some() || st.grow_failed.is_some()
    }

    /// Why the journal is stopped, if it is.
    pub fn failure(&self) -> Option<String> {
        let st = self.inner.state.borrow();
        st.failed
            .as_ref()
            .or(st.grow_failed.as_ref())
            .map(|f| f.message.clone())
    }

    /// End of the prepared space: bytes from [`end`](Self::end) up to here are written zeros,
    /// synced, that the next batches overwrite in place (equal to `end` without
    /// preallocation).
    pub fn prepared_end(&self) -> u64 {
        self.inner.state.borrow().space_end
    }

    /// Records queued for the next batch (not yet on their way to the disk).
    pub fn queued_records(&self) -> u64 {
        self.inner.state.borrow().pending_records
    }

    /// How long the batch now being written and synced has been on its way (zero when none
    /// is: idle, or waiting out the batch window, when a record appended now waits at most the
    /// rest of the window): what a record appended now would wait at least, before its own
    /// batch starts.
    pub fn flush_age(&self) -> Duration {
        self.inner
            .state
            .borrow()
            .flushing_since
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Calls `f` on every change of health (stopped by a failure, healthy again after a
    /// probe or a growth). Replaces an earlier observer. If the journal is stopped already
    /// (its space could not be prepared at open), `f` hears so at once.
    pub fn on_health(&self, f: impl Fn(&Health) + 'static) {
        if let Some(why) = self.failure() {
            f(&Health::Stopped(why));
        }
        *self.inner.observer.borrow_mut() = Some(Rc::new(f));
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The flusher writes what is queued, then exits and closes the file.
        let (flusher, window, grower) = {
            let mut st = self.inner.state.borrow_mut();
            st.closed = true;
            (st.flusher.take(), st.window_waiter.take(), st.grower.take())
        };
        for w in [flusher, window, grower].into_iter().flatten() {
            w.wake();
        }
    }
}

/// How long a stopped journal waits before its first probe; doubled after each failed one.
const PROBE_FIRST_DELAY: Duration = Duration::from_millis(10);
/// The longest wait between probes.
const PROBE_MAX_DELAY: Duration = Duration::from_secs(1);
/// Bytes a probe writes (and syncs, then cuts off again) past the journal's end: one page,
/// the least a file system must find room for to take the next batch.
const PROBE_LEN: usize = 4096;

fn notify(inner: &Inner, health: &Health) {
    let observer = inner.observer.borrow().clone();
    if let Some(f) = observer {
        f(health);
    }
}

/// Writes batches until the journal is closed (and drained). A failed write or sync stops
/// the journal until [`recover`] finds the disk taking writes again.
async fn flusher(inner: Rc<Inner>) {
    let mut last_start: Option<Instant> = None;
    // Whether the journal is busy: the last batch held more than one record, or records came
    // in while it was on its way to the disk. Then the next batch waits for the window;
    // otherwise (an idle journal, or one client appending a record at a time) it starts at
    // once.
    let mut busy = false;
    loop {
        let due = last_start
            .filter(|_| busy && !inner.window.is_zero())
            .and_then(|t| t.checked_add(inner.window))
            .filter(|&due| Instant::now() < due);
        if let Some(due) = due {
            // Coarse: a wake-up late costs nothing here, a core polling for it would. A
            // journal closed meanwhile writes what is queued at once.
            let mut nap = std::pin::pin!(sleep_until(due).coarse());
            poll_fn(|cx| {
                let mut st = inner.state.borrow_mut();
                if st.closed {
                    return Poll::Ready(());
                }
                st.window_waiter = Some(cx.waker().clone());
                drop(st);
                nap.as_mut().poll(cx)
            })
            .await;
            inner.state.borrow_mut().window_waiter = None;
        }
        let next = poll_fn(|cx| {
            let mut st = inner.state.borrow_mut();
            if !st.pending.is_empty() {
                let spare = std::mem::take(&mut st.spare);
                let buf = std::mem::replace(&mut st.pending, spare);
                let batch = std::mem::take(&mut st.pending_batch);
                let records = std::mem::take(&mut st.pending_records);
                let now = Instant::now();
                st.flushing_since = Some(now);
                last_start = Some(now);
                Poll::Ready(Some((buf, batch, records, st.end)))
            } else if st.closed {
                Poll::Ready(None)
            } else {
                st.flusher = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let Some((buf, batch, records, pos)) = next else {
            return;
        };
        let len = buf.len() as u64;
        let span_end = inner.span_end(pos, len);
        // A batch that would end past the prepared space waits for a growth in flight (it
        // must not race the zeros being written there); with none in flight it extends the
        // file itself. Either way the grower is told when space runs low.
        poll_fn(|cx| {
            let mut st = inner.state.borrow_mut();
            st.writing_end = span_end;
            if span_end <= st.space_end || !st.growing {
                Poll::Ready(())
            } else {
                st.growth_waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let (past_prepared, grower) = {
            let mut st = inner.state.borrow_mut();
            let grower = if needs_growth(&inner, &st) {
                st.grower.take()
            } else {
                None
            };
            (span_end > st.space_end, grower)
        };
        if let Some(w) = grower {
            w.wake();
        }
        let (res, mut buf) = match (&inner.direct, inner.sync) {
            (Some(direct), _) => {
                let res = write_direct(&inner, direct, &buf, pos).await;
                (res, buf)
            }
            (None, SyncMode::DsyncWrite | SyncMode::Direct) => {
                let (res, buf) = inner.file.write_all_at_dsync(buf, pos).await;
                (res.map_err(|e| ("data-sync write", e)), buf)
            }
            (None, SyncMode::WriteThenFdatasync) => {
                let (res, buf) = inner.file.write_all_at(buf, pos).await;
                let res = match res {
                    Ok(()) => inner.file.sync_data().await.map_err(|e| ("fdatasync", e)),
                    Err(e) => Err(("write", e)),
                };
                (res, buf)
            }
        };
        inner.state.borrow_mut().flushing_since = None;
        match res {
            Ok(()) => {
                {
                    let mut st = inner.state.borrow_mut();
                    busy = records > 1 || !st.pending.is_empty();
                    st.end = pos + len;
                    st.writing_end = st.end;
                    st.space_end = st.space_end.max(st.end);
                    buf.clear();
                    st.spare = buf;
                }
                let mut s = inner.stats.get();
                s.batches_past_prepared += u64::from(past_prepared);
                s.batches += 1;
                s.records += records;
                s.bytes += len;
                s.max_batch_records = s.max_batch_records.max(records);
                inner.stats.set(s);
                for w in batch.finish(Ok(())) {
                    w.wake();
                }
            }
            Err((what, e)) => {
                busy = false;
                fail(&inner, batch, what, e, pos, len).await;
                if !recover(&inner).await {
                    return;
                }
                // The cuts took the prepared space away: prepare it again.
                let grower = inner.state.borrow_mut().grower.take();
                if let Some(w) = grower {
                    w.wake();
                }
            }
        }
    }
}

/// Writes the batch `records` at `pos` through the `O_DIRECT` file, from the start of `pos`'s
/// block (the kept tail first) to the end of its last block (zeros after the records, which
/// read as prepared space), then `fdatasync`s it. On success the tail becomes the bytes of
/// the new end's block before it.
///
/// A separate `fdatasync`, not `RWF_DSYNC` on the write: an asynchronous direct write
/// (io_uring's) with `RWF_DSYNC` on a FUSE file system reaches it as a write flagged
/// `O_DSYNC` with no `fsync` after it, and a file system that ignores the flag leaves it
/// unsynced. Power cuts under LazyFS lost acknowledged records that way, every one of them,
/// where a synchronous `pwritev2` with `RWF_DSYNC` (the epoll driver's) kept them all.
/// Which file systems honour the flag is not the journal's to guess.
async fn write_direct(
    inner: &Inner,
    direct: &File,
    records: &[u8],
    pos: u64,
) -> Result<(), (&'static str, io::Error)> {
    let mut block = {
        let mut st = inner.state.borrow_mut();
        let mut block = std::mem::take(&mut st.block_buf);
        block.clear();
        block.extend_from_slice(&st.tail);
        block
    };
    let from = block_start(pos);
    block.extend_from_slice(records);
    block.resize(block_end(block.len() as u64) as usize, 0);
    let (res, block) = direct.write_all_at(block, from).await;
    let res = match res {
        Ok(()) => direct.sync_data().await.map_err(|e| ("fdatasync", e)),
        Err(e) => Err(("write (O_DIRECT)", e)),
    };
    let mut st = inner.state.borrow_mut();
    if res.is_ok() {
        let end = pos + records.len() as u64;
        st.tail.clear();
        st.tail
            .extend_from_slice(&block[(block_start(end) - from) as usize..(end - from) as usize]);
    }
    st.block_buf = block;
    res
}

/// A batch of `len` bytes at `pos` failed: stop the journal, refuse what is queued, and cut
/// the file back to `pos` so that none of the batch's records can be replayed. Where the cut
/// fails too, the batch is *in doubt*: its appenders learn so and must hold their state.
async fn fail(inner: &Rc<Inner>, batch: Rc<Batch>, what: &str, e: io::Error, pos: u64, len: u64) {
    let failure = Failure {
        kind: e.kind(),
        message: format!(
            "journal {}: {what} of {len} bytes at offset {pos} failed: {e}",
            inner.path.display()
        ),
    };
    let mut s = inner.stats.get();
    s.failures += 1;
    inner.stats.set(s);
    // Stop first: nothing is accepted while the file is being cut back.
    let queued = {
        let mut st = inner.state.borrow_mut();
        st.failed = Some(failure.clone());
        st.pending.clear();
        st.pending_records = 0;
        std::mem::take(&mut st.pending_batch)
    };
    notify(inner, &Health::Stopped(failure.message.clone()));
    // The records queued behind the batch never reached the file.
    let mut wake = queued.finish(Err(Failed {
        failure: failure.clone(),
        doubt: None,
    }));
    // A failed write can leave whole records of the batch in the file, and after a failed
    // fdatasync they may be durable or not: only a durable cut makes them certainly absent.
    // (The cut also removes the prepared space past `pos`; the grower makes it again once
    // the journal recovers.)
    let doubt = match cut(inner, pos).await {
        Ok(()) => None,
        Err(_) => {
            let d = Rc::new(DoubtCell::default());
            inner.state.borrow_mut().doubts.push(d.clone());
            Some(d)
        }
    };
    wake.extend(batch.finish(Err(Failed { failure, doubt })));
    for w in wake {
        w.wake();
    }
}

/// `ftruncate` to `end` and `fdatasync` (which makes the new length durable), after any
/// growth in flight has ended (its zeros must not land past the cut). From here on nothing
/// past `end` counts as prepared, whether the cut succeeded or not.
async fn cut(inner: &Inner, end: u64) -> io::Result<()> {
    poll_fn(|cx| {
        let mut st = inner.state.borrow_mut();
        if st.growing {
            st.growth_waiter = Some(cx.waker().clone());
            Poll::Pending
        } else {
            st.space_end = end;
            st.writing_end = end;
            Poll::Ready(())
        }
    })
    .await;
    inner.file.set_len(end).await?;
    inner.file.sync_data().await
}

/// Probes a stopped journal with back-off until the disk takes a write again: each probe
/// first cuts the file back to the journal's end (resolving any batch in doubt), then writes
/// and syncs [`PROBE_LEN`] zero bytes past the end and cuts them off again. Returns `false`
/// when the journal was closed meanwhile.
async fn recover(inner: &Rc<Inner>) -> bool {
    let mut delay = PROBE_FIRST_DELAY;
    loop {
        sleep(delay).await;
        delay = (delay * 2).min(PROBE_MAX_DELAY);
        let (end, closed) = {
            let st = inner.state.borrow();
            (st.end, st.closed)
        };
        if closed {
            return false;
        }
        let attempt = async {
            cut(inner, end).await.map_err(|e| ("cut back", e))?;
            let doubts = std::mem::take(&mut inner.state.borrow_mut().doubts);
            for d in doubts {
                d.resolve();
            }
            let (res, _) = inner.file.write_all_at(vec![0u8; PROBE_LEN], end).await;
            res.map_err(|e| ("probe write", e))?;
            inner.file.sync_data().await.map_err(|e| ("probe fdatasync", e))?;
            cut(inner, end).await.map_err(|e| ("cut the probe", e))
        };
        match attempt.await {
            Ok(()) => {
                if inner.direct.is_some() {
                    // The probe went through the page cache; direct writes go faster
                    // without it (a hint: its failure costs only speed).
                    let _ = inner.file.drop_cache(0, 0);
                }
                let healthy = {
                    let mut st = inner.state.borrow_mut();
                    st.failed = None;
                    st.grow_failed.is_none()
                };
                let mut s = inner.stats.get();
                s.recoveries += 1;
                inner.stats.set(s);
                if healthy {
                    notify(inner, &Health::Healthy);
                }
                return true;
            }
            Err((what, e)) => {
                let message = format!(
                    "journal {}: stopped; {what} at offset {end} failed: {e}",
                    inner.path.display()
                );
                inner.state.borrow_mut().failed = Some(Failure {
                    kind: e.kind(),
                    message: message.clone(),
                });
                notify(inner, &Health::Stopped(message));
            }
        }
    }
}

/// Whether the prepared space should grow now: preallocation is on, nothing is stopped or
/// growing, and less than half a step is left past the batch in flight and the records
/// queued behind it.
fn needs_growth(inner: &Inner, st: &State) -> bool {
    inner.step > 0
        && !st.growing
        && !st.closed
        && st.failed.is_none()
        && st.space_end < st.writing_end.max(st.end) + st.pending.len() as u64 + inner.step / 2
}

/// Where the next growth starts: past the prepared space and past any batch in flight that
/// extends the file itself; with `O_DIRECT`, at a block boundary (the rest of `end`'s block
/// is the next batch's to write).
fn growth_from(inner: &Inner, st: &State) -> u64 {
    let from = st.space_end.max(st.writing_end).max(st.end);
    match inner.direct {
        Some(_) => block_end(from),
        None => from,
    }
}

/// Writes zeros over `from..to` (in [`ZERO_CHUNK`] pieces) and `fdatasync`s them: one
/// journal commit for the new size and extents, paid here instead of by the batches.
async fn write_zeros(inner: &Inner, from: u64, to: u64) -> Result<(), (&'static str, io::Error)> {
    let mut zeros = vec![0u8; ZERO_CHUNK.min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = ZERO_CHUNK.min((to - at) as usize);
        zeros.truncate(n);
        let (res, z) = inner.file.write_all_at(zeros, at).await;
        zeros = z;
        res.map_err(|e| ("write zeros", e))?;
        at += n as u64;
    }
    inner.file.sync_data().await.map_err(|e| ("fdatasync zeros", e))?;
    if inner.direct.is_some() {
        // The zeros went through the page cache; the direct writes over them go to the
        // device at once only without it (a hint: its failure costs only speed).
        let _ = inner.file.drop_cache(from, to - from);
    }
    Ok(())
}

/// Records the end of a growth of `from..to`: the space on success, the stop on failure
/// (or the recovery from an earlier failed growth). Wakes a batch waiting for it.
fn grown(inner: &Inner, from: u64, to: u64, res: Result<(), (&'static str, io::Error)>) {
    let (waiter, grower, health) = {
        let mut st = inner.state.borrow_mut();
        st.growing = false;
        let health = match res {
            Ok(()) => {
                st.space_end = st.space_end.max(to);
                let recovered = st.grow_failed.take().is_some();
                (recovered && st.failed.is_none()).then_some(Health::Healthy)
            }
            Err((what, e)) => {
                let message = format!(
                    "journal {}: stopped; preparing space: {what} of {} bytes at offset {from} failed: {e}",
                    inner.path.display(),
                    to - from
                );
                st.grow_failed = Some(Failure {
                    kind: e.kind(),
                    message: message.clone(),
                });
                Some(Health::Stopped(message))
            }
        };
        // A failed growth at open leaves the grower waiting: it retries now.
        let grower = if health.is_some() { st.grower.take() } else { None };
        (st.growth_waiter.take(), grower, health)
    };
    let mut s = inner.stats.get();
    match &health {
        Some(Health::Stopped(_)) => s.failures += 1,
        Some(Health::Healthy) => s.recoveries += 1,
        None => {}
    }
    if matches!(health, None | Some(Health::Healthy)) {
        s.growths += 1;
    }
    inner.stats.set(s);
    for w in [waiter, grower].into_iter().flatten() {
        w.wake();
    }
    if let Some(h) = health {
        notify(inner, &h);
    }
}

/// Keeps the prepared space ahead of the writer: waits until [`needs_growth`], writes and
/// syncs one step of zeros past the end, and after a failure retries with the probes'
/// back-off (the journal refuses appends meanwhile). Exits when the journal is closed.
async fn grower(inner: Rc<Inner>) {
    let mut delay = PROBE_FIRST_DELAY;
    loop {
        let next = poll_fn(|cx| {
            let mut st = inner.state.borrow_mut();
            if st.closed {
                Poll::Ready(None)
            } else if needs_growth(&inner, &st)
                || (st.grow_failed.is_some() && !st.growing && st.failed.is_none())
            {
                st.growing = true;
                let from = growth_from(&inner, &st);
                Poll::Ready(Some((from, from + inner.step)))
            } else {
                st.grower = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let Some((from, to)) = next else {
            return;
        };
        let res = write_zeros(&inner, from, to).await;
        let failed = res.is_err();
        grown(&inner, from, to, res);
        if failed {
            sleep(delay).await;
            delay = (delay * 2).min(PROBE_MAX_DELAY);
        } else {
            delay = PROBE_FIRST_DELAY;
        }
    }
}
