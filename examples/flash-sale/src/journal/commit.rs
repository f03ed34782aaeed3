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

use ringcore_runtime::fs::File;
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
}

pub(super) struct Inner {
    pub(super) file: File,
    pub(super) path: PathBuf,
    state: RefCell<State>,
    stats: Cell<JournalStats>,
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
    /// Set by the first failed write or sync: no append is accepted after it.
    failed: Option<Failure>,
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

/// The outcome of one batch, shared by all the appends in it.
#[derive(Default)]
struct Batch {
    outcome: RefCell<Option<Result<(), Failure>>>,
    /// One slot per append in the batch (its index is fixed at enqueue time).
    wakers: RefCell<Vec<Option<Waker>>>,
}

impl Batch {
    /// Records the outcome and returns the wakers to call (after every borrow is released).
    fn finish(&self, outcome: Result<(), Failure>) -> Vec<Waker> {
        *self.outcome.borrow_mut() = Some(outcome);
        self.wakers.borrow_mut().drain(..).flatten().collect()
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
    Refused(Option<io::Error>),
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
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.state {
            CommitState::Refused(e) => Poll::Ready(Err(e
                .take()
                .unwrap_or_else(|| io::Error::other("journal append polled after completion")))),
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
                closed: false,
            }),
            stats: Cell::new(JournalStats::default()),
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
    /// Records are written in the order of the `append` calls. Errors: `InvalidInput` for an
    /// empty payload or one over [`MAX_RECORD_LEN`]; after a failed write or sync, that
    /// error (with the journal's path) for the batch's appends and every later one.
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
                state: CommitState::Refused(Some(e)),
            };
        }
        let (batch, slot, flusher) = {
            let mut st = self.inner.state.borrow_mut();
            if let Some(f) = &st.failed {
                return Commit {
                    state: CommitState::Refused(Some(f.to_error())),
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

    /// Whether a write or sync has failed (every append is refused from then on).
    pub fn is_failed(&self) -> bool {
        self.inner.state.borrow().failed.is_some()
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

/// Writes batches until the journal is closed (and drained) or fails.
async fn flusher(inner: Rc<Inner>) {
    loop {
        let next = poll_fn(|cx| {
            let mut st = inner.state.borrow_mut();
            if !st.pending.is_empty() {
                let spare = std::mem::take(&mut st.spare);
                let buf = std::mem::replace(&mut st.pending, spare);
                let batch = std::mem::take(&mut st.pending_batch);
                let records = std::mem::take(&mut st.pending_records);
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
                let failure = Failure {
                    kind: e.kind(),
                    message: format!(
                        "journal {}: {what} of {len} bytes at offset {pos} failed, journal stopped: {e}",
                        inner.path.display()
                    ),
                };
                // Fail-stop: this batch and everything queued behind it get the error; nothing
                // that may not be on disk is ever acknowledged.
                let queued = {
                    let mut st = inner.state.borrow_mut();
                    st.failed = Some(failure.clone());
                    st.pending.clear();
                    st.pending_records = 0;
                    std::mem::take(&mut st.pending_batch)
                };
                let mut wake = batch.finish(Err(failure.clone()));
                wake.extend(queued.finish(Err(failure)));
                for w in wake {
                    w.wake();
                }
                return;
            }
        }
    }
}
