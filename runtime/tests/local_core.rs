//! `core_local!`: one value per core, created on first use on that core, dropped on that
//! core when its shard exits, and a clear panic off a shard.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ringcore_runtime::fs::File;
use ringcore_runtime::{core_local, n_shards, shard_id, submit_to, Runtime};

fn two_cores() -> ringcore_runtime::Builder {
    Runtime::builder().core_count(2).handle_signals(false)
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

static SEPARATE_INITS: AtomicUsize = AtomicUsize::new(0);

core_local! {
    static SEEN: Cell<u64> = {
        SEPARATE_INITS.fetch_add(1, Ordering::SeqCst);
        Cell::new(0)
    };
}

#[test]
fn each_core_has_its_own_value_created_on_first_use() {
    let out = two_cores()
        .build()
        .expect("build")
        .run(|| async {
            let me = shard_id() as u64;
            for _ in 0..=me * 10 {
                SEEN.with(|s| s.set(s.get() + 1));
            }
            // Core 0 asks core 1 for its value: each core counted only its own calls.
            let other = submit_to(1 - shard_id(), || SEEN.with(Cell::get))
                .await
                .expect("submit");
            (SEEN.with(Cell::get), other)
        })
        .expect("run");
    assert_eq!(out, vec![Some((1, 11)), Some((11, 1))]);
    assert_eq!(
        SEPARATE_INITS.load(Ordering::SeqCst),
        2,
        "one initializer run per core"
    );

    // A new runtime starts from fresh values: nothing survives its shard.
    let again = two_cores()
        .build()
        .expect("build")
        .run(|| async { SEEN.with(Cell::get) })
        .expect("run");
    assert_eq!(again, vec![Some(0), Some(0)]);
}

static UNUSED_INITS: AtomicUsize = AtomicUsize::new(0);

core_local! {
    static NEVER_USED_ON_ONE: u8 = {
        UNUSED_INITS.fetch_add(1, Ordering::SeqCst);
        7
    };
}

#[test]
fn a_core_that_never_uses_it_never_builds_it() {
    let out = two_cores()
        .build()
        .expect("build")
        .run(|| async { (shard_id() == 0).then(|| NEVER_USED_ON_ONE.with(|v| *v)) })
        .expect("run");
    assert_eq!(out, vec![Some(Some(7)), Some(None)]);
    assert_eq!(UNUSED_INITS.load(Ordering::SeqCst), 1);
}

/// Records, at drop, which shard it was dropped on (`None`: off a shard) and whether the
/// ring still worked there.
struct DropProbe {
    created_on: usize,
    file: RefCell<Option<File>>,
}

static DROPS: Mutex<Vec<(usize, Option<usize>, bool)>> = Mutex::new(Vec::new());

core_local! {
    static PROBE: DropProbe = DropProbe { created_on: shard_id(), file: RefCell::new(None) };
    static AFTER: Cell<u32> = Cell::new(0);
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        let on = ringcore_runtime::try_n_shards().map(|_| shard_id());
        // Another core-local is still usable from a core-local's drop.
        let other = AFTER.try_with(|a| a.get()).is_some();
        // The value still owns a runtime resource here (an open file), dropped with it.
        let _ = self.file.borrow_mut().take();
        DROPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((self.created_on, on, other));
    }
}

#[test]
fn values_are_dropped_on_their_own_core_when_the_shard_exits() {
    let dir = std::env::temp_dir().join(format!("ringcore-core-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("probe");
    let out = two_cores()
        .build()
        .expect("build")
        .run(move || {
            let path = path.clone();
            async move {
                let f = File::create(path.with_extension(shard_id().to_string()))
                    .await
                    .expect("create");
                PROBE.with(|p| *p.file.borrow_mut() = Some(f));
                // Alive while the shard runs.
                DROPS.lock().map(|d| d.len()).unwrap_or(usize::MAX)
            }
        })
        .expect("run");
    assert_eq!(
        out,
        vec![Some(0), Some(0)],
        "nothing dropped while the shards ran"
    );
    let mut drops = DROPS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    drops.sort();
    assert_eq!(
        drops,
        vec![(0, Some(0), true), (1, Some(1), true)],
        "each core's value is dropped once, on its own shard, at exit"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

core_local! {
    static OUTER: RefCell<Vec<u32>> = RefCell::new(vec![INNER.with(|i| *i)]);
    static INNER: u32 = 5;
}

#[test]
fn initializers_and_closures_may_use_core_locals() {
    let out = two_cores()
        .build()
        .expect("build")
        .run(|| async {
            // The initializer of OUTER uses INNER; the closure uses OUTER again.
            OUTER.with(|o| {
                let len = OUTER.with(|again| again.borrow().len() as u32);
                o.borrow_mut().push(len);
                o.borrow().clone()
            })
        })
        .expect("run");
    assert_eq!(out, vec![Some(vec![5, 1]), Some(vec![5, 1])]);
}

core_local! {
    static OFF_SHARD: Cell<u8> = Cell::new(1);
}

#[test]
fn off_a_shard_try_with_is_none_and_with_names_the_mistake() {
    assert_eq!(OFF_SHARD.try_with(Cell::get), None);
    let err = catch_unwind(AssertUnwindSafe(|| OFF_SHARD.with(Cell::get))).expect_err("must panic");
    let text = panic_text(err);
    assert!(
        text.contains("core-local `core::cell::Cell<u8>` used outside a ringcore shard"),
        "{text}"
    );
    // A thread the runtime did not start is off a shard too, even while a runtime runs.
    let out = two_cores()
        .build()
        .expect("build")
        .run(|| async {
            let n = n_shards();
            let from_thread = std::thread::spawn(|| OFF_SHARD.try_with(Cell::get))
                .join()
                .expect("join");
            (n, from_thread, OFF_SHARD.with(Cell::get))
        })
        .expect("run");
    assert_eq!(out, vec![Some((2, None, 1)), Some((2, None, 1))]);
}
