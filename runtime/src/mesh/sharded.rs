//! `Sharded<T>`: one `T` per core, built on its core, reached from elsewhere only by message.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{submit_to, SubmitError};
use crate::context;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A handle to one `T` per shard, like Seastar's `sharded<S>`.
///
/// Each instance is built on its own core by the factory and lives in that core's local
/// registry, so `T` need not be `Send` or `Sync` (plain `Rc`/`RefCell` state is fine). The
/// handle itself is `Copy + Send`, so it can be captured by closures sent to other cores.
///
/// ```no_run
/// use ringcore_runtime::{Runtime, Sharded};
/// use std::cell::Cell;
///
/// Runtime::builder().core_count(2).build()?.run(|| async {
///     if ringcore_runtime::shard_id() != 0 { return; }
///     let hits = Sharded::new(|_shard| Cell::new(0u64)).await.unwrap();
///     hits.invoke_on_all(|c| c.set(c.get() + 1)).await.unwrap();
///     let total = hits.map_reduce(|c| c.get(), 0, |a, b| a + b).await.unwrap();
///     assert_eq!(total, 2);
///     hits.destroy().await;
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Sharded<T> {
    id: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Sharded<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Sharded<T> {}

impl<T> fmt::Debug for Sharded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sharded").field("id", &self.id).finish()
    }
}

fn lookup<T: 'static>(id: u64) -> Option<Rc<T>> {
    context::with(|cx| {
        let reg = cx.sharded.borrow();
        reg.get(&id).cloned()
    })
    .and_then(|rc: Rc<dyn Any>| rc.downcast::<T>().ok())
}

impl<T: 'static> Sharded<T> {
    /// Builds one `T` on every shard with `factory(shard_id)` and returns once all exist.
    pub async fn new<F>(factory: F) -> Result<Sharded<T>, SubmitError>
    where
        F: Fn(usize) -> T + Send + Sync + 'static,
    {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let factory = Arc::new(factory);
        let n = context::with(|cx| cx.shared.n_shards());
        let calls: Vec<_> = (0..n)
            .map(|shard| {
                let factory = factory.clone();
                submit_to(shard, move || {
                    let value: Rc<dyn Any> = Rc::new(factory(shard));
                    context::with(|cx| cx.sharded.borrow_mut().insert(id, value));
                })
            })
            .collect();
        for c in calls {
            c.await?;
        }
        Ok(Sharded { id, _t: PhantomData })
    }

    /// This core's instance.
    ///
    /// # Panics
    ///
    /// If the instances were destroyed. Use [`try_local`](Self::try_local) to check.
    pub fn local(&self) -> Rc<T> {
        match self.try_local() {
            Some(t) => t,
            None => panic!(
                "ringcore: Sharded instance {} is not present on this core",
                self.id
            ),
        }
    }

    /// This core's instance, if it still exists.
    pub fn try_local(&self) -> Option<Rc<T>> {
        lookup::<T>(self.id)
    }

    /// Runs `f` on `shard`'s instance and returns its result.
    pub async fn invoke_on<F, R>(&self, shard: usize, f: F) -> Result<R, SubmitError>
    where
        F: FnOnce(&T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let id = self.id;
        submit_to(shard, move || lookup::<T>(id).map(|t| f(&t)))
            .await?
            .ok_or(SubmitError::Closed)
    }

    /// Runs `f` on every shard's instance concurrently; results are in shard order.
    pub async fn invoke_on_all<F, R>(&self, f: F) -> Result<Vec<R>, SubmitError>
    where
        F: Fn(&T) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        let id = self.id;
        let f = Arc::new(f);
        let n = context::with(|cx| cx.shared.n_shards());
        let calls: Vec<_> = (0..n)
            .map(|shard| {
                let f = f.clone();
                submit_to(shard, move || lookup::<T>(id).map(|t| f(&t)))
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for c in calls {
            out.push(c.await?.ok_or(SubmitError::Closed)?);
        }
        Ok(out)
    }

    /// Maps every shard's instance with `map` (concurrently) and folds the results with
    /// `reduce`, in shard order.
    pub async fn map_reduce<M, R, A, Red>(&self, map: M, init: A, reduce: Red) -> Result<A, SubmitError>
    where
        M: Fn(&T) -> R + Send + Sync + 'static,
        R: Send + 'static,
        Red: FnMut(A, R) -> A,
    {
        let parts = self.invoke_on_all(map).await?;
        Ok(parts.into_iter().fold(init, reduce))
    }

    /// Removes every shard's instance; each is dropped on its own core.
    pub async fn destroy(self) {
        let id = self.id;
        let n = context::with(|cx| cx.shared.n_shards());
        let calls: Vec<_> = (0..n)
            .map(|shard| {
                submit_to(shard, move || {
                    let gone = context::with(|cx| cx.sharded.borrow_mut().remove(&id));
                    drop(gone);
                })
            })
            .collect();
        for c in calls {
            let _ = c.await;
        }
    }
}
