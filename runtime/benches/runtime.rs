//! Micro-benchmarks of the runtime's hot paths (criterion, `harness = false`).
//!
//! Work must run inside a shard, so every bench uses `Bencher::iter_custom`: each sample
//! builds a fresh runtime, runs the requested number of iterations inside shard 0's main
//! future, times them there with `Instant`, and hands the duration back. Runtime start-up
//! and tear-down are outside the timed region. The `cache` group is the exception: a
//! `Cache` needs no shard, so it runs on the bench thread with plain `iter`.
//!
//! ```text
//! cargo bench -p ringcore-runtime --bench runtime
//! RINGCORE_RTT_PERCENTILES=1 cargo bench -p ringcore-runtime --bench runtime
//! ```
//!
//! With `RINGCORE_RTT_PERCENTILES=1` the criterion suite is skipped; instead 100k individual
//! `submit_to(1, ..)` round trips from shard 0 are timed and their p50/p90/p99 printed, with
//! the parks per round trip and the `io_uring_enter` calls per nop (single vs batched) read
//! from the runtime's counters.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use ringcore_runtime::cache::Cache;
use ringcore_runtime::time::{sleep, timeout};
use ringcore_runtime::{nop, shard_id, spawn_local, stats, submit_to, yield_now, Runtime};

/// Ops per batch in `nop_op/batch32`.
const BATCH: usize = 32;
/// Round trips timed one by one in the percentile mode.
const RTT_SAMPLES: usize = 100_000;
/// Untimed round trips before those.
const RTT_WARMUP: usize = 10_000;
/// Entries (and `max_entries`) of the `cache` benches' cache.
const CACHE_ENTRIES: u64 = 10_000;

/// Builds a runtime on the first `cores` cores, runs `body()` on shard 0 (the other shards
/// return at once and keep serving cross-core calls until shard 0 is done), and returns
/// shard 0's output.
fn on_shard0<F, Fut, T>(cores: usize, body: F) -> T
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let rt = Runtime::builder()
        .core_count(cores)
        .handle_signals(false)
        // The benches receive nothing: a small provided-buffer ring keeps the per-sample
        // start-up cheap without touching any measured path.
        .buf_ring(8, 4096)
        .build()
        .expect("build runtime");
    let mut out = rt
        .run(move || {
            let fut = body();
            async move {
                if shard_id() == 0 {
                    Some(fut.await)
                } else {
                    None
                }
            }
        })
        .expect("run runtime");
    out.swap_remove(0).flatten().expect("shard 0 produced no output")
}

/// Times `iters` runs of `op` on shard 0 of a `cores`-core runtime.
fn time_iters<F, Fut>(cores: usize, iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    on_shard0(cores, move || {
        let op = op.clone();
        async move {
            let start = Instant::now();
            for _ in 0..iters {
                op().await;
            }
            start.elapsed()
        }
    })
}

/// Polls `fut` once. True if it finished (its output is dropped).
async fn poll_once<F: Future>(fut: Pin<&mut F>) -> bool {
    let mut fut = Some(fut);
    std::future::poll_fn(move |cx| match fut.take() {
        Some(f) => Poll::Ready(f.poll(cx).is_ready()),
        None => Poll::Ready(true),
    })
    .await
}

/// Starts one `nop()` per identifier (each first poll pushes its SQE), then awaits them all,
/// so the whole batch goes to the kernel in one `io_uring_enter`. No allocation.
macro_rules! nop_batch {
    ($($f:ident)*) => {{
        $(
            let mut $f = std::pin::pin!(nop());
            let $f = if poll_once($f.as_mut()).await { None } else { Some($f) };
        )*
        $(
            if let Some(f) = $f {
                f.await.expect("nop");
            }
        )*
    }};
}

async fn nop_batch32() {
    nop_batch!(
        a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 a13 a14 a15
        a16 a17 a18 a19 a20 a21 a22 a23 a24 a25 a26 a27 a28 a29 a30 a31
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

fn spawn_complete(c: &mut Criterion) {
    c.bench_function("spawn_complete", |b| {
        b.iter_custom(|iters| {
            time_iters(1, iters, || async {
                let v = spawn_local(async { black_box(1u64) }).await.expect("join");
                black_box(v);
            })
        })
    });
}

fn submit_to_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("submit_to_round_trip");
    g.bench_function("remote_shard1", |b| {
        b.iter_custom(|iters| {
            time_iters(2, iters, || async {
                let v = submit_to(1, || black_box(1u64)).await.expect("submit_to");
                black_box(v);
            })
        })
    });
    g.bench_function("local_shard0", |b| {
        b.iter_custom(|iters| {
            time_iters(1, iters, || async {
                let v = submit_to(0, || black_box(1u64)).await.expect("submit_to");
                black_box(v);
            })
        })
    });
    g.finish();
}

fn timer_insert_fire(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_insert_fire");
    // Registers a timer, parks in the ring wait with a 1 us timeout, fires.
    g.bench_function("sleep_1us", |b| {
        b.iter_custom(|iters| time_iters(1, iters, || sleep(Duration::from_micros(1))))
    });
    // The inner future is polled first and is ready, so no timer is ever registered: this
    // is the cost of the wrapper (box + `Instant::now`).
    g.bench_function("timeout_ready", |b| {
        b.iter_custom(|iters| {
            time_iters(1, iters, || async {
                let v = timeout(Duration::from_secs(1), std::future::ready(1u64))
                    .await
                    .expect("timeout");
                black_box(v);
            })
        })
    });
    // The inner future is pending once, so the deadline is inserted, then removed when the
    // finished `Timeout` is dropped: insert + cancel, plus one yield (see `yield_now`).
    g.bench_function("timeout_insert_cancel", |b| {
        b.iter_custom(|iters| {
            time_iters(1, iters, || async {
                timeout(Duration::from_secs(1), yield_now())
                    .await
                    .expect("timeout");
            })
        })
    });
    // Baseline for the line above.
    g.bench_function("yield_now", |b| {
        b.iter_custom(|iters| time_iters(1, iters, yield_now))
    });
    g.finish();
}

fn nop_op(c: &mut Criterion) {
    let mut g = c.benchmark_group("nop_op");
    g.bench_function("single", |b| {
        b.iter_custom(|iters| {
            time_iters(1, iters, || async {
                nop().await.expect("nop");
            })
        })
    });
    // One iteration is a whole batch; criterion's throughput line gives ops/s.
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("batch32", |b| {
        b.iter_custom(|iters| time_iters(1, iters, nop_batch32))
    });
    g.finish();
}

/// A full `Cache<u64, u64>` of `CACHE_ENTRIES` entries, keys `0..CACHE_ENTRIES`.
fn full_cache() -> Cache<u64, u64> {
    let cache = Cache::builder().max_entries(CACHE_ENTRIES as usize).build();
    for k in 0..CACHE_ENTRIES {
        cache.insert(k, k);
    }
    cache
}

fn cache_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache");
    // Keys stride through the cache so each hit moves a different entry to the front.
    g.bench_function("get_hit", |b| {
        let cache = full_cache();
        let mut k = 0;
        b.iter(|| {
            k = (k + 7919) % CACHE_ENTRIES;
            black_box(cache.get(&k))
        })
    });
    // The same without the `Instant::now()` inside `get`.
    g.bench_function("get_hit_at", |b| {
        let cache = full_cache();
        let now = Instant::now();
        let mut k = 0;
        b.iter(|| {
            k = (k + 7919) % CACHE_ENTRIES;
            black_box(cache.get_at(&k, now))
        })
    });
    // Every insert is a new key into a full cache: one eviction each.
    g.bench_function("insert_evict", |b| {
        let cache = full_cache();
        let mut k = CACHE_ENTRIES;
        b.iter(|| {
            k += 1;
            black_box(cache.insert(k, k))
        })
    });
    g.finish();
}

/// Times `RTT_SAMPLES` single `submit_to(1, ..)` round trips and prints their percentiles,
/// plus what the runtime's own counters say each measured op cost in syscalls and parks.
fn rtt_percentiles() {
    let (mut rtts, parks) = on_shard0(2, || async {
        for _ in 0..RTT_WARMUP {
            black_box(submit_to(1, || 1u64).await.expect("submit_to"));
        }
        let before = stats::all();
        let mut rtts = Vec::with_capacity(RTT_SAMPLES);
        for _ in 0..RTT_SAMPLES {
            let start = Instant::now();
            let v = submit_to(1, || black_box(1u64)).await.expect("submit_to");
            rtts.push(start.elapsed());
            black_box(v);
        }
        let after = stats::all();
        let parks: Vec<u64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.parks - b.parks)
            .collect();
        (rtts, parks)
    });
    rtts.sort_unstable();
    let pct = |p: f64| {
        let i = ((rtts.len() as f64 * p / 100.0).ceil() as usize).clamp(1, rtts.len()) - 1;
        rtts[i].as_nanos()
    };
    let mean = rtts.iter().map(Duration::as_nanos).sum::<u128>() / rtts.len() as u128;
    println!(
        "submit_to(1) round trip, shard 0 -> shard 1, {} samples: \
         p50 {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns, max {} ns, mean {} ns",
        rtts.len(),
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        rtts[rtts.len() - 1].as_nanos(),
        mean,
    );
    let n = RTT_SAMPLES as f64;
    println!(
        "  parks per round trip: shard 0 {:.2}, shard 1 {:.2}",
        parks[0] as f64 / n,
        parks[1] as f64 / n
    );
    let (single, batched) = on_shard0(1, || async {
        const OPS: u64 = 32 * 1024;
        let enters = || stats::shard(0).ring_enters;
        let e0 = enters();
        for _ in 0..OPS {
            nop().await.expect("nop");
        }
        let e1 = enters();
        for _ in 0..OPS / BATCH as u64 {
            nop_batch32().await;
        }
        let e2 = enters();
        ((e1 - e0) as f64 / OPS as f64, (e2 - e1) as f64 / OPS as f64)
    });
    println!("  io_uring_enter calls per nop: single {single:.3}, batch32 {batched:.3}");
}

ringcore_runtime::core_local! {
    static CORE_COUNT: std::cell::Cell<u64> = std::cell::Cell::new(0);
}

thread_local! {
    static THREAD_COUNT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A `core_local!` access (what the `Date` cache and every per-core registry pay) against
/// the `thread_local!` it replaced, both on shard 0.
fn core_local_access(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_local");
    g.bench_function("core_local_with", |b| {
        b.iter_custom(|iters| {
            on_shard0(1, move || async move {
                let start = Instant::now();
                for _ in 0..iters {
                    CORE_COUNT.with(|n| n.set(black_box(n.get() + 1)));
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("thread_local_with", |b| {
        b.iter_custom(|iters| {
            on_shard0(1, move || async move {
                let start = Instant::now();
                for _ in 0..iters {
                    THREAD_COUNT.with(|n| n.set(black_box(n.get() + 1)));
                }
                start.elapsed()
            })
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = spawn_complete, submit_to_round_trip, timer_insert_fire, nop_op, cache_ops, core_local_access
}

fn main() {
    if std::env::var_os("RINGCORE_RTT_PERCENTILES").is_some_and(|v| v == "1") {
        rtt_percentiles();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
