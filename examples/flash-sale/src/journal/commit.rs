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
use ringcore_runtime::time::sleep;
use ringcore_runtime::{spawn_local_in, TaskClass};

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
    /// Batches made durable (one write and one `fdatasync` each).
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
}

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
    /// Wraps an opened, replayed file whose valid end is `end`, and starts its flusher.
    pub(super) fn start(file: File, path: PathBuf, end: u64) -> Journal {
        let inner = Rc::new(Inner {
            file,
            path,
            state: RefCell::new(State {
                pending: Vec::new(),
                pending_batch: Rc::default(),
                pending_records: 0,
                spare: Vec::new(),
                end,
                flusher: None,
                failed: None,
                doubts: Vec::new(),
                flushing_since: None,
                closed: false,
            }),
            stats: Cell::new(JournalStats::default()),
            observer: RefCell::new(None),
        });
        // Background class: the flusher does little CPU work per batch and mostly waits on the
        // device; request handling keeps the CPU.
        spawn_local_in(TaskClass::Background, flusher(inner.clone())).detach();
        Journal { inner }
    }

    /// Queues a record and returns a future that resolves once it is durable: written and
    /// `fdatasync`ed, together with the other records appended while the previous batch was
    /// on its way to the disk.
    ///
    /// Records are written in the order of the `append` calls. Errors (see [`AppendError`]):
    /// `InvalidInput` for an empty payload or one over [`MAX_RECORD_LEN`]; after a failed
    /// write or sync, that error (with the journal's path) for the batch's appends, the ones
    /// queued behind it, and every append until a probe write succeeds again.
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
            if let Some(f) = &st.failed {
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

    /// Whether the journal is stopped by a failed write or sync (appends are refused until a
    /// probe write succeeds).
    pub fn is_failed(&self) -> bool {
        self.inner.state.borrow().failed.is_some()
    }

    /// Why the journal is stopped, if it is.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .state
            .borrow()
            .failed
            .as_ref()
            .map(|f| f.message.clone())
    }

    /// Records queued for the next batch (not yet on their way to the disk).
    pub fn queued_records(&self) -> u64 {
        self.inner.state.borrow().pending_records
    }

    /// How long the batch now being written and synced has been on its way (zero when idle):
    /// what a record appended now would wait at least, before its own batch starts.
    pub fn flush_age(&self) -> Duration {
        self.inner
            .state
            .borrow()
            .flushing_since
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Calls `f` on every change of health (stopped by a failure, healthy again after a
    /// probe). Replaces an earlier observer.
    pub fn on_health(&self, f: impl Fn(&Health) + 'static) {
        *self.inner.observer.borrow_mut() = Some(Rc::new(f));
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The flusher writes what is queued, then exits and closes the file.
        let flusher = {
            let mut st = self.inner.state.borrow_mut();
            st.closed = true;
            st.flusher.take()
        };
        if let Some(w) = flusher {
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
    loop {
        let next = poll_fn(|cx| {
            let mut st = inner.state.borrow_mut();
            if !st.pending.is_empty() {
                let spare = std::mem::take(&mut st.spare);
                let buf = std::mem::replace(&mut st.pending, spare);
                let batch = std::mem::take(&mut st.pending_batch);
                let records = std::mem::take(&mut st.pending_records);
                st.flushing_since = Some(Instant::now());
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
        let (res, mut buf) = inner.file.write_all_at(buf, pos).await;
        let res = match res {
            Ok(()) => inner.file.sync_data().await.map_err(|e| ("fdatasync", e)),
            Err(e) => Err(("write", e)),
        };
        inner.state.borrow_mut().flushing_since = None;
        match res {
            Ok(()) => {
                {
                    let mut st = inner.state.borrow_mut();
                    st.end = pos + len;
                    buf.clear();
                    st.spare = buf;
                }
                let mut s = inner.stats.get();
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
                fail(&inner, batch, what, e, pos, len).await;
                if !recover(&inner).await {
                    return;
                }
            }
        }
    }
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

/// `ftruncate` to `end` and `fdatasync` (which makes the new length durable).
async fn cut(inner: &Inner, end: u64) -> io::Result<()> {
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
                inner.state.borrow_mut().failed = None;
                let mut s = inner.stats.get();
                s.recoveries += 1;
                inner.stats.set(s);
                notify(inner, &Health::Healthy);
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
