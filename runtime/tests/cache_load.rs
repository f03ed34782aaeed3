//! `Cache::get_or_load` on a real shard: concurrent misses share one load, errors reach every
//! waiter and are not cached, and a cancelled or panicking loader does not strand waiters.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use ringcore_runtime::cache::Cache;
use ringcore_runtime::spawn_local;
use ringcore_runtime::time::{sleep, timeout};

type Users = Rc<Cache<u32, String>>;

fn users() -> Users {
    Rc::new(Cache::builder().max_entries(100).build())
}

/// A loader that counts its calls, sleeps, then returns `result`.
fn slow_loader(
    calls: &Rc<Cell<u32>>,
    ms: u64,
    result: Result<&'static str, &'static str>,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>>>> {
    let calls = calls.clone();
    move || {
        calls.set(calls.get() + 1);
        Box::pin(async move {
            sleep(Duration::from_millis(ms)).await;
            result.map(str::to_string).map_err(str::to_string)
        })
    }
}

#[ringcore_runtime::test]
async fn a_hundred_concurrent_misses_share_one_load() {
    let cache = users();
    let calls = Rc::new(Cell::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, load) = (cache.clone(), slow_loader(&calls, 20, Ok("ada")));
            spawn_local(async move { cache.get_or_load(7, load).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").as_deref(), Ok("ada"));
    }
    assert_eq!(calls.get(), 1, "the loader ran more than once");
    let s = cache.stats();
    assert_eq!((s.loads, s.coalesced, s.misses, s.hits), (1, 99, 100, 0));
    assert_eq!((s.inserts, s.load_errors), (1, 0));

    // Now it is cached: no load at all.
    let v = cache.get_or_load(7, slow_loader(&calls, 20, Ok("other"))).await;
    assert_eq!(v.as_deref(), Ok("ada"));
    assert_eq!((calls.get(), cache.stats().hits), (1, 1));
}

#[ringcore_runtime::test]
async fn different_keys_load_independently() {
    let cache = users();
    let calls = Rc::new(Cell::new(0));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let load = slow_loader(&calls, 10, if i % 2 == 0 { Ok("even") } else { Ok("odd") });
            let cache = cache.clone();
            spawn_local(async move { cache.get_or_load(i % 2, load).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let want = if i % 2 == 0 { "even" } else { "odd" };
        assert_eq!(t.await.expect("task").as_deref(), Ok(want));
    }
    assert_eq!(calls.get(), 2);
    assert_eq!((cache.stats().loads, cache.stats().coalesced), (2, 8));
}

#[ringcore_runtime::test]
async fn a_load_error_reaches_every_waiter_and_is_not_cached() {
    let cache = users();
    let calls = Rc::new(Cell::new(0));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (cache, load) = (cache.clone(), slow_loader(&calls, 10, Err("db down")));
            spawn_local(async move { cache.get_or_load(1, load).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), Err("db down".to_string()));
    }
    assert_eq!(calls.get(), 1);
    let s = cache.stats();
    assert_eq!((s.loads, s.load_errors, s.coalesced, s.inserts), (1, 1, 9, 0));
    assert!(cache.is_empty());

    // The next call loads again, and this time succeeds.
    let v = cache.get_or_load(1, slow_loader(&calls, 1, Ok("back"))).await;
    assert_eq!(v.as_deref(), Ok("back"));
    assert_eq!((calls.get(), cache.get(&1).as_deref()), (2, Some("back")));
}

#[ringcore_runtime::test]
async fn aborting_the_loading_task_lets_a_waiter_take_over() {
    let cache = users();
    let first_calls = Rc::new(Cell::new(0));
    let loader = {
        let cache = cache.clone();
        let load = slow_loader(&first_calls, 10_000, Ok("never"));
        spawn_local(async move { cache.get_or_load(5, load).await })
    };
    let calls = Rc::new(Cell::new(0));
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (cache, load) = (cache.clone(), slow_loader(&calls, 10, Ok("second")));
            spawn_local(async move { cache.get_or_load(5, load).await })
        })
        .collect();
    sleep(Duration::from_millis(5)).await;
    assert_eq!(
        (first_calls.get(), calls.get()),
        (1, 0),
        "the waiters should be waiting"
    );
    loader.abort();
    assert!(loader.await.expect_err("aborted").is_cancelled());
    for w in waiters {
        let got = timeout(Duration::from_secs(5), w).await.expect("a waiter hung");
        assert_eq!(got.expect("waiter").as_deref(), Ok("second"));
    }
    // One waiter started its own load; the other four waited for it.
    assert_eq!(calls.get(), 1);
    let s = cache.stats();
    assert_eq!((s.loads, s.coalesced, s.misses), (2, 4, 6));
    assert_eq!(cache.get(&5).as_deref(), Some("second"));
}

#[ringcore_runtime::test]
async fn a_panicking_loader_does_not_strand_its_waiters() {
    let cache = users();
    let loader = {
        let cache = cache.clone();
        spawn_local(async move {
            cache
                .get_or_load(3, || async {
                    sleep(Duration::from_millis(5)).await;
                    panic!("loader bug");
                    #[allow(unreachable_code)]
                    Ok::<String, String>(String::new())
                })
                .await
        })
    };
    let calls = Rc::new(Cell::new(0));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (cache, load) = (cache.clone(), slow_loader(&calls, 1, Ok("fine")));
            spawn_local(async move { cache.get_or_load(3, load).await })
        })
        .collect();
    assert!(loader.await.expect_err("panicked").is_panic());
    for w in waiters {
        let got = timeout(Duration::from_secs(5), w).await.expect("a waiter hung");
        assert_eq!(got.expect("waiter").as_deref(), Ok("fine"));
    }
    assert_eq!(calls.get(), 1);
}

#[ringcore_runtime::test]
async fn waiters_get_a_value_too_big_to_cache() {
    let cache: Rc<Cache<u32, String>> = Rc::new(
        Cache::builder()
            .max_bytes(4)
            .weigher(|_: &u32, v: &String| v.len())
            .build(),
    );
    let calls = Rc::new(Cell::new(0));
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (cache, load) = (cache.clone(), slow_loader(&calls, 5, Ok("too long")));
            spawn_local(async move { cache.get_or_load(1, load).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").as_deref(), Ok("too long"));
    }
    assert_eq!(calls.get(), 1);
    assert!(cache.is_empty());
    assert_eq!(cache.stats().inserts, 0);
}

#[ringcore_runtime::test]
async fn an_aborted_waiter_leaves_the_load_and_the_other_waiters_alone() {
    let cache = users();
    let calls = Rc::new(Cell::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (cache, load) = (cache.clone(), slow_loader(&calls, 20, Ok("ok")));
            spawn_local(async move { cache.get_or_load(9, load).await })
        })
        .collect();
    sleep(Duration::from_millis(5)).await;
    tasks[2].abort();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await {
            Err(e) => assert!(i == 2 && e.is_cancelled(), "task {i}: {e:?}"),
            Ok(v) => assert_eq!(v.as_deref(), Ok("ok"), "task {i}"),
        }
    }
    assert_eq!(calls.get(), 1);
    assert_eq!((cache.stats().loads, cache.stats().coalesced), (1, 2));
}
