//! `get_or_load`: one load per key in flight, its waiters, and what happens when the
//! loading call is dropped.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::hash::Hash;
use std::mem;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use slab::Slab;

use super::stats::add;
use super::store::Cache;

/// How a load in flight ended, as its waiters see it.
enum Outcome<V> {
    Loading,
    Ok(V),
    /// The loader's error, boxed because its type is chosen per call.
    Err(Box<dyn Any>),
    /// Cancelled, or finished with nobody waiting: waiters look again.
    Retry,
}

struct FlightState<V> {
    outcome: Outcome<V>,
    waiters: Slab<Waker>,
}

/// One load in flight: the loader's result slot and the wakers of those waiting for it.
pub(super) struct Flight<V> {
    state: RefCell<FlightState<V>>,
}

impl<V: Clone> Flight<V> {
    fn new() -> Self {
        Self {
            state: RefCell::new(FlightState {
                outcome: Outcome::Loading,
                waiters: Slab::new(),
            }),
        }
    }

    fn has_waiters(&self) -> bool {
        !self.state.borrow().waiters.is_empty()
    }

    /// Publishes the outcome and wakes every waiter (after releasing the borrow).
    fn finish(&self, outcome: Outcome<V>) {
        let wakers: Vec<Waker> = {
            let mut st = self.state.borrow_mut();
            st.outcome = outcome;
            st.waiters.drain().collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    /// The result for a waiter whose error type is `E`; `None` means "look again".
    fn result<E: Clone + 'static>(&self) -> Option<Result<V, E>> {
        match &self.state.borrow().outcome {
            Outcome::Ok(v) => Some(Ok(v.clone())),
            Outcome::Err(e) => e.downcast_ref::<E>().map(|e| Err(e.clone())),
            Outcome::Loading | Outcome::Retry => None,
        }
    }
}

/// Waits until a flight has an outcome.
struct WaitFlight<'a, V> {
    flight: &'a Flight<V>,
    slot: Option<usize>,
}

impl<V> Future for WaitFlight<'_, V> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut st = this.flight.state.borrow_mut();
        if !matches!(st.outcome, Outcome::Loading) {
            // `finish` drained the waiter list.
            this.slot = None;
            return Poll::Ready(());
        }
        match this.slot.and_then(|i| st.waiters.get_mut(i)) {
            Some(w) => w.clone_from(cx.waker()),
            None => this.slot = Some(st.waiters.insert(cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl<V> Drop for WaitFlight<'_, V> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut st = self.flight.state.borrow_mut();
            let waker = match st.outcome {
                Outcome::Loading => st.waiters.try_remove(i),
                _ => None,
            };
            drop(st);
            drop(waker);
        }
    }
}

/// Ends a flight however the loading future ends: with the outcome set on completion, or
/// `Retry` if the future is dropped (cancelled, or unwinding from a panic in the loader).
struct LoadGuard<'a, K: Hash + Eq + Clone, V: Clone> {
    cache: &'a Cache<K, V>,
    key: &'a K,
    flight: &'a Rc<Flight<V>>,
    outcome: Outcome<V>,
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for LoadGuard<'_, K, V> {
    fn drop(&mut self) {
        let removed = {
            let mut loads = self.cache.loads.borrow_mut();
            match loads.get(self.key) {
                Some(f) if Rc::ptr_eq(f, self.flight) => loads.remove_entry(self.key),
                _ => None,
            }
        };
        drop(removed);
        self.flight
            .finish(mem::replace(&mut self.outcome, Outcome::Retry));
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// The value for `key`: from the cache if present, else from `load()`, stored on `Ok`.
    ///
    /// Only one load per key runs at a time on this core: a call that misses while a load
    /// of the same key is in flight waits for that load and gets a clone of its result,
    /// `Ok` or `Err` (counted as `coalesced`). Errors are handed to every waiter of that load
    /// and are not cached: the next call loads again. The value goes to the waiters even if
    /// the cache cannot store it (heavier than `max_bytes`).
    ///
    /// If the loading call is dropped before its load finishes (its task aborted, a
    /// `timeout` around it, a panic in the loader), its waiters wake and look again: the
    /// first to run starts its own loader, and the others wait for that one. A waiter whose
    /// error type differs from the loader's, and that load fails, also looks again.
    ///
    /// No borrow of the cache is held while `load` or its future runs. A loader that calls
    /// `get_or_load` for its own key waits for itself forever.
    ///
    /// ```no_run
    /// use std::rc::Rc;
    /// use ringcore_runtime::cache::Cache;
    /// use ringcore_runtime::Runtime;
    ///
    /// // The error goes to every waiter, so it must be `Clone`: `io::Error` is not, an
    /// // `Rc<io::Error>` is.
    /// async fn fetch_user(id: u64) -> Result<String, Rc<std::io::Error>> {
    ///     Ok(format!("user {id}")) // a database or upstream call
    /// }
    ///
    /// Runtime::builder().build()?.run(|| async {
    ///     // One cache per core.
    ///     let users: Rc<Cache<u64, String>> = Rc::new(Cache::builder().max_entries(1000).build());
    ///     let name = users.get_or_load(7, || fetch_user(7)).await.expect("load");
    ///     assert_eq!(name, "user 7");
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn get_or_load<F, Fut, E>(&self, key: K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Clone + 'static,
    {
        let mut first = true;
        loop {
            if let Some(v) = self.lookup(&key, Instant::now, first) {
                return Ok(v);
            }
            first = false;
            let in_flight = self.loads.borrow().get(&key).cloned();
            let Some(flight) = in_flight else {
                return self.load(key, load).await;
            };
            WaitFlight {
                flight: &flight,
                slot: None,
            }
            .await;
            if let Some(res) = flight.result::<E>() {
                add(&self.stats.coalesced, 1);
                return res;
            }
        }
    }

    /// Runs `load` as the flight for `key`, stores an `Ok`, and hands the result to the
    /// flight's waiters.
    async fn load<F, Fut, E>(&self, key: K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Clone + 'static,
    {
        let flight = Rc::new(Flight::new());
        let prev = self.loads.borrow_mut().insert(key.clone(), Rc::clone(&flight));
        drop(prev);
        add(&self.stats.loads, 1);
        let mut guard = LoadGuard {
            cache: self,
            key: &key,
            flight: &flight,
            outcome: Outcome::Retry,
        };
        let res = load().await;
        match &res {
            Ok(v) => {
                self.insert(key.clone(), v.clone());
                if flight.has_waiters() {
                    guard.outcome = Outcome::Ok(v.clone());
                }
            }
            Err(e) => {
                add(&self.stats.load_errors, 1);
                if flight.has_waiters() {
                    guard.outcome = Outcome::Err(Box::new(e.clone()));
                }
            }
        }
        drop(guard);
        res
    }
}
