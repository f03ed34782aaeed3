//! `block_on`, `block_on_with` and `#[ringcore_runtime::test]`: a future runs on a real
//! ringcore core (shard 0 of one), with the shard's services (tasks, timers, core-local
//! state) available, and its output comes back to the caller.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringcore_runtime::time::sleep;
use ringcore_runtime::{driver_kind, n_shards, shard_id, spawn_local, try_n_shards};

ringcore_runtime::core_local! {
    static SEEN: Cell<u32> = Cell::new(0);
}

#[ringcore_runtime::test]
async fn the_attribute_runs_the_test_on_a_ringcore_core() {
    // Off a core these panic or answer None; on one they describe a one-core runtime.
    assert_eq!((shard_id(), n_shards(), try_n_shards()), (0, 1, Some(1)));
    let _ = driver_kind();
    // A !Send value held across awaits, a spawned task and a timer: the shard's services.
    let hits = Rc::new(Cell::new(0));
    let h = {
        let hits = hits.clone();
        spawn_local(async move {
            sleep(Duration::from_millis(2)).await;
            hits.set(hits.get() + 1);
            SEEN.with(|s| s.set(s.get() + 1));
        })
    };
    let t0 = Instant::now();
    h.await.expect("the spawned task");
    assert!(t0.elapsed() >= Duration::from_millis(2));
    assert_eq!(hits.get(), 1);
    assert_eq!(SEEN.with(Cell::get), 1);
}

#[ringcore_runtime::test]
async fn an_attributed_test_may_return_a_result() -> Result<(), String> {
    sleep(Duration::from_millis(1)).await;
    let n: u32 = "42".parse().map_err(|e| format!("{e}"))?;
    assert_eq!(n, 42);
    Ok(())
}

#[test]
fn block_on_returns_the_future_output_and_each_call_gets_a_fresh_core() {
    // Off a core: no shard.
    assert_eq!(try_n_shards(), None);
    let first = ringcore_runtime::block_on(async {
        SEEN.with(|s| s.set(s.get() + 5));
        (shard_id(), SEEN.with(Cell::get))
    });
    assert_eq!(first, (0, 5));
    // Core-local state was dropped with the first runtime.
    let second = ringcore_runtime::block_on_with(|| async {
        let local = Rc::new(SEEN.with(Cell::get));
        ringcore_runtime::yield_now().await;
        *local
    });
    assert_eq!(second, 0);
}

#[test]
fn a_failing_assertion_inside_block_on_fails_the_caller() {
    let r = std::panic::catch_unwind(|| {
        ringcore_runtime::block_on(async {
            assert_eq!(1 + 1, 3, "inside the core");
        })
    });
    let msg = match r {
        Ok(()) => panic!("the failed assertion was lost"),
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(msg.contains("block_on"), "{msg}");
}
