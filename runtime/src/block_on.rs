//! `block_on`: a one-core runtime for one future (tests, tools, `main`s that need one core).

use std::future::Future;
use std::sync::Mutex;

use crate::builder::Runtime;

/// Runs `fut` to its end on a fresh one-core runtime and returns its output.
///
/// The runtime has one shard on the first allowed core, leaves SIGINT/SIGTERM alone, and the
/// driver [`Driver::Auto`](crate::Driver::Auto) picks (or `RINGCORE_DRIVER`). Everything a
/// shard offers works inside: `spawn_local`, timers, sockets, [`core_local!`](crate::core_local).
/// The future crosses to the shard's thread, so it must be `Send`; to build a `!Send` future
/// (one holding an `Rc` across an await) on the core itself, use [`block_on_with`].
///
/// ```
/// let n = ringcore_runtime::block_on(async {
///     ringcore_runtime::time::sleep(std::time::Duration::from_millis(1)).await;
///     ringcore_runtime::shard_id()
/// });
/// assert_eq!(n, 0);
/// ```
///
/// # Panics
///
/// If the runtime cannot start (the message names the cause and the remedy), or the future
/// panicked (its message was printed by the panic hook on the shard's thread).
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let slot = Mutex::new(Some(fut));
    block_on_with(move || {
        // `run` calls this once: one shard.
        let fut = slot.lock().ok().and_then(|mut s| s.take());
        async move {
            match fut {
                Some(f) => f.await,
                None => unreachable!("a one-core runtime builds its main future once"),
            }
        }
    })
}

/// Runs the future `f` builds on a fresh one-core runtime and returns its output: [`block_on`]
/// for a future that is built on the core and may be `!Send`. What
/// [`#[ringcore_runtime::test]`](crate::test) expands to.
///
/// ```
/// use std::rc::Rc;
/// let sum = ringcore_runtime::block_on_with(|| async {
///     let shared = Rc::new(20); // !Send, held across the await
///     ringcore_runtime::yield_now().await;
///     *shared + 22
/// });
/// assert_eq!(sum, 42);
/// ```
///
/// # Panics
///
/// As [`block_on`].
pub fn block_on_with<F, Fut>(f: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let slot = Mutex::new(Some(f));
    let rt = Runtime::builder()
        .core_count(1)
        .handle_signals(false)
        .build()
        .unwrap_or_else(|e| panic!("block_on: the runtime cannot start: {e}"));
    let out = rt
        .run(move || {
            let f = slot.lock().ok().and_then(|mut s| s.take());
            async move {
                match f {
                    Some(f) => f().await,
                    None => unreachable!("a one-core runtime builds its main future once"),
                }
            }
        })
        .unwrap_or_else(|e| panic!("block_on: {e}"));
    match out.into_iter().next().flatten() {
        Some(v) => v,
        // Only a shutdown request (`request_shutdown` inside the future) stops the main
        // future before its end.
        None => panic!("block_on: shutdown was requested before the future finished"),
    }
}
