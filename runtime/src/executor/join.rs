//! `JoinHandle`: await a task's output, detach it, or abort it.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::context;
use crate::executor::coop;

/// Why a task produced no output.
pub enum JoinError {
    /// The task was aborted with [`JoinHandle::abort`] (or its shard shut down).
    Cancelled,
    /// The task panicked; the payload is the panic's.
    Panicked(Box<dyn Any + Send + 'static>),
}

impl JoinError {
    /// True if the task was aborted.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// True if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// The panic message, where the payload is a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panicked(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            JoinError::Cancelled => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("JoinError::Cancelled"),
            JoinError::Panicked(_) => write!(f, "JoinError::Panicked({:?})", self.panic_message()),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled"),
            JoinError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "task panicked: {m}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl std::error::Error for JoinError {}

enum State<T> {
    Running,
    Done(Result<T, JoinError>),
    Taken,
}

pub(crate) struct JoinInner<T> {
    key: usize,
    generation: u32,
    state: RefCell<State<T>>,
    waker: RefCell<Option<Waker>>,
}

impl<T> JoinInner<T> {
    pub(crate) fn new(key: usize, generation: u32) -> Rc<Self> {
        Rc::new(Self {
            key,
            generation,
            state: RefCell::new(State::Running),
            waker: RefCell::new(None),
        })
    }

    fn finish(&self, out: Result<T, JoinError>) {
        {
            let mut st = self.state.borrow_mut();
            if !matches!(*st, State::Running) {
                return;
            }
            *st = State::Done(out);
        }
        let w = self.waker.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// The future the executor stores: runs the user's future, catches its panic, and reports
/// the outcome to the join handle. Dropping it before completion reports `Cancelled`.
pub(crate) struct Harness<F: Future> {
    fut: Option<Pin<Box<F>>>,
    inner: Rc<JoinInner<F::Output>>,
}

impl<F: Future> Harness<F> {
    pub(crate) fn new(fut: F, inner: Rc<JoinInner<F::Output>>) -> Self {
        Self {
            fut: Some(Box::pin(fut)),
            inner,
        }
    }
}

impl<F: Future> Future for Harness<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Ready(());
        };
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => {
                self.fut = None;
                self.inner.finish(Ok(out));
                Poll::Ready(())
            }
            Err(payload) => {
                // Drop the half-run future before reporting, so its resources go first.
                self.fut = None;
                self.inner.finish(Err(JoinError::Panicked(payload)));
                Poll::Ready(())
            }
        }
    }
}

impl<F: Future> Drop for Harness<F> {
    fn drop(&mut self) {
        if self.fut.take().is_some() {
            self.inner.finish(Err(JoinError::Cancelled));
        }
    }
}

/// An owned permission to await a task's output.
///
/// - `.await` gives `Ok(output)`, or `Err(JoinError)` if the task was aborted or panicked.
/// - Dropping the handle (or calling [`detach`](Self::detach)) lets the task run on.
/// - [`abort`](Self::abort) drops the task's future on this core at once (or right after its
///   current poll, if it aborts itself).
pub struct JoinHandle<T> {
    inner: Rc<JoinInner<T>>,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("task", &self.inner.key)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(inner: Rc<JoinInner<T>>) -> Self {
        Self { inner }
    }

    /// Cancels the task: its future is dropped, and awaiting this handle gives
    /// `Err(JoinError::Cancelled)` unless the task had already finished.
    pub fn abort(&self) {
        let (key, generation) = (self.inner.key, self.inner.generation);
        if matches!(*self.inner.state.borrow(), State::Running) {
            context::try_with(|cx| cx.executor.abort(key, generation));
        }
    }

    /// Lets the task run to completion on its own; its output is dropped.
    pub fn detach(self) {}

    /// True once the task has finished (completed, panicked or been aborted).
    pub fn is_finished(&self) -> bool {
        !matches!(*self.inner.state.borrow(), State::Running)
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.inner.state.borrow_mut();
        match std::mem::replace(&mut *st, State::Taken) {
            State::Done(out) => {
                if coop::poll_proceed(cx).is_pending() {
                    *st = State::Done(out);
                    return Poll::Pending;
                }
                Poll::Ready(out)
            }
            State::Running => {
                *st = State::Running;
                drop(st);
                *self.inner.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
            State::Taken => panic!("JoinHandle polled after it returned Ready"),
        }
    }
}
