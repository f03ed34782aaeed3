//! Runtime helpers for integration tests (feature `runtime`): one shard, signals left to the
//! test harness, and "run this future to its end and give me its output".

use std::future::Future;

use ringcore_runtime::{Builder, Runtime};

/// A runtime builder for one shard on the first allowed core, with signal handling off (the
/// test harness owns SIGINT/SIGTERM). `portable` forces the portable op path (what older
/// kernels get).
pub fn one_core(portable: bool) -> Builder {
    Runtime::builder()
        .core_count(1)
        .portable_ops(portable)
        .handle_signals(false)
}

/// Runs `f`'s future on one shard of `builder` and returns its output. Panics (this is a
/// test helper) if the runtime cannot be built or run, or the future did not finish.
pub fn run_on<F, Fut, R>(builder: Builder, f: F) -> R
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + 'static,
    R: Send + 'static,
{
    let mut out = builder
        .build()
        .unwrap_or_else(|e| panic!("build the runtime: {e}"))
        .run(f)
        .unwrap_or_else(|e| panic!("run the runtime: {e}"));
    assert_eq!(out.len(), 1, "one shard");
    out.pop().flatten().expect("the main future did not finish")
}

/// [`run_on`] [`one_core`]`(false)`.
pub fn run1<F, Fut, R>(f: F) -> R
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + 'static,
    R: Send + 'static,
{
    run_on(one_core(false), f)
}
