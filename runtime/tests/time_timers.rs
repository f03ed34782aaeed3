//! Timers: deadline order, timeout cancels, intervals stay on their grid.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ringcore_runtime::time::{interval, sleep, sleep_until, timeout, timeout_at, Elapsed};
use ringcore_runtime::{local_state, spawn_local};
use ringcore_testkit::rt::{one_core, run_on};

#[ringcore_runtime::test]
async fn timers_fire_in_deadline_order() {
    let order = Rc::new(RefCell::new(Vec::new()));
    let base = Instant::now() + Duration::from_millis(20);
    // Spawned in scrambled order; deadlines 0..8 ms apart.
    let handles: Vec<_> = [5u64, 1, 7, 3, 0, 6, 2, 4]
        .into_iter()
        .map(|i| {
            let order = order.clone();
            spawn_local(async move {
                sleep_until(base + Duration::from_millis(i)).await;
                assert!(Instant::now() >= base + Duration::from_millis(i), "fired early");
                order.borrow_mut().push(i);
            })
        })
        .collect();
    for h in handles {
        h.await.expect("timer task");
    }
    assert_eq!(*order.borrow(), vec![0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(local_state().timers, 0);
}

#[ringcore_runtime::test]
async fn sleep_never_returns_early() {
    for ms in [1u64, 5, 20] {
        let t0 = Instant::now();
        sleep(Duration::from_millis(ms)).await;
        assert!(t0.elapsed() >= Duration::from_millis(ms));
    }
}

#[ringcore_runtime::test]
async fn timeout_cancels_the_inner_future() {
    struct Flag(Rc<RefCell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            *self.0.borrow_mut() = true;
        }
    }
    let dropped = Rc::new(RefCell::new(false));
    let guard = Flag(dropped.clone());
    let t0 = Instant::now();
    let r: Result<(), Elapsed> = timeout(Duration::from_millis(10), async move {
        let _g = guard;
        sleep(Duration::from_secs(30)).await;
    })
    .await;
    assert!(r.is_err(), "the inner future must not finish");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(10), "timed out early: {waited:?}");
    assert!(
        waited < Duration::from_secs(5),
        "timeout did not cancel: {waited:?}"
    );
    assert!(*dropped.borrow(), "inner future must be dropped on timeout");
    assert_eq!(local_state().timers, 0, "the inner sleep must be unregistered");

    // A future that finishes in time wins.
    let r = timeout(Duration::from_secs(5), async { 42 }).await;
    assert_eq!(r.ok(), Some(42));
    assert_eq!(local_state().timers, 0);
}

/// Ticks are exactly on the grid `start + n * period`, and a tick that is handled late does
/// not push the later ones back: 40 ticks of 5 ms, each handled with 2 ms of extra work,
/// take about 200 ms, not 280 ms (a drifting interval, next = now + period, would leave
/// the grid at once). A thread descheduled for longer than a period (a loaded machine)
/// skips grid points, never leaves the grid.
#[ringcore_runtime::test]
async fn interval_does_not_drift() {
    const PERIOD: Duration = Duration::from_millis(5);
    const TICKS: u32 = 40;
    let mut iv = interval(PERIOD);
    let first = iv.tick().await;
    let start = Instant::now();
    let mut last = 0u128;
    for n in 1..=TICKS {
        let due = iv.tick().await;
        let offset = due.duration_since(first).as_nanos();
        assert_eq!(offset % PERIOD.as_nanos(), 0, "tick {n} is off the grid");
        let point = offset / PERIOD.as_nanos();
        assert!(point > last, "tick {n} is not after the previous one");
        last = point;
        assert!(Instant::now() >= due, "tick {n} fired early");
        std::thread::sleep(Duration::from_millis(2)); // work done per tick
    }
    let total = start.elapsed();
    // The last tick was due at grid point `last` (TICKS unless points were skipped): the
    // run ends shortly after it, not ~80 ms later as accumulated lateness would have it.
    let ideal = PERIOD * u32::try_from(last).expect("small");
    assert!(total >= ideal - PERIOD, "finished too early: {total:?}");
    assert!(
        total < ideal + Duration::from_millis(50),
        "{TICKS} ticks took {total:?}: lateness accumulated (last due at {ideal:?})"
    );
}

#[ringcore_runtime::test]
async fn interval_skips_missed_ticks_but_stays_on_grid() {
    const PERIOD: Duration = Duration::from_millis(4);
    let mut iv = interval(PERIOD);
    let first = iv.tick().await;
    std::thread::sleep(PERIOD * 3 + Duration::from_millis(1)); // miss three ticks
    let late = iv.tick().await; // the overdue tick fires once, at its grid point
    assert_eq!(late, first + PERIOD);
    let next = iv.tick().await;
    let offset = next.duration_since(first);
    assert_eq!(offset.as_nanos() % PERIOD.as_nanos(), 0, "off grid: {offset:?}");
    assert!(next > late + PERIOD, "missed ticks must be skipped, not burst");
}

/// An inner future that spends the whole cooperative budget on every poll (an endless run of
/// elapsed zero sleeps) still times out: the deadline is not subject to the budget.
#[test]
fn timeout_fires_even_when_the_inner_future_uses_up_the_budget() {
    // The runtime runs on its own thread so that a regression (a timeout that never fires)
    // fails this test after 10 s instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        ringcore_runtime::block_on_with(|| async {
            let started = Instant::now();
            let r: Result<(), Elapsed> = timeout(Duration::from_millis(20), async {
                loop {
                    sleep(Duration::ZERO).await;
                }
            })
            .await;
            let took = started.elapsed();
            assert!(r.is_err(), "the inner future cannot finish");
            assert!(took < Duration::from_secs(2), "fired after {took:?}");
        });
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the timeout never fired (or the runtime failed): its deadline waited for budget");
}

#[ringcore_runtime::test]
async fn a_coarse_sleep_parks_where_a_short_precise_one_polls() {
    let spins = || ringcore_runtime::stats::shard(ringcore_runtime::shard_id()).spins;
    let short = Duration::from_micros(20);
    // A precise sleep due within the idle spin (50 µs by default): the core polls for it.
    let before = spins();
    for _ in 0..20 {
        sleep(short).await;
    }
    let precise = spins() - before;
    // The same as coarse timers: the core parks until each one, and none ends early.
    let before = spins();
    for _ in 0..20 {
        let t0 = Instant::now();
        sleep(short).coarse().await;
        assert!(t0.elapsed() >= short, "a coarse sleep ended early");
    }
    let coarse = spins() - before;
    assert!(precise > 0, "the core polled for no precise sleep");
    assert_eq!(coarse, 0, "the core polled for a coarse sleep");
}

#[ringcore_runtime::test]
async fn a_sleep_made_coarse_after_its_first_poll_or_reset_still_ends_on_its_deadline() {
    let spins = || ringcore_runtime::stats::shard(ringcore_runtime::shard_id()).spins;
    // Registered as a precise timer by a first poll, then made coarse: it moves queues.
    let t0 = Instant::now();
    let mut s = sleep(Duration::from_millis(30));
    let first = std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut s).poll(cx))).await;
    assert!(first.is_pending());
    assert_eq!(local_state().timers, 1);
    let s = s.coarse();
    assert_eq!(
        local_state().timers,
        0,
        "made coarse: unregistered until polled again"
    );
    s.await;
    assert!(t0.elapsed() >= Duration::from_millis(30), "ended early");
    assert_eq!(local_state().timers, 0);

    // A coarse sleep moved to a nearer deadline stays coarse and ends then, not at the first.
    let before = spins();
    let t0 = Instant::now();
    let mut s = sleep(Duration::from_secs(5)).coarse();
    s.reset(t0 + Duration::from_micros(30));
    s.await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_micros(30) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(
        spins() - before,
        0,
        "the core polled for a coarse sleep after reset"
    );
}

/// A timer that falls due while a task holds the core fires as soon as the core is free, on
/// every driver and ring: the core parks on the timer's deadline, whether the kernel takes it
/// as an absolute time (io_uring on 6.12+, where the park reads no clock and its `now` is from
/// before the task ran) or as a timeout from a fresh clock read (older rings, epoll).
#[test]
fn a_timer_due_while_a_task_held_the_core_fires_when_the_core_is_free() {
    use ringcore_runtime::Driver;
    const DUE: Duration = Duration::from_millis(200);
    const HELD: Duration = Duration::from_millis(400);
    for driver in [Driver::Auto, Driver::Epoll] {
        for portable in [false, true] {
            let builder = one_core(portable).driver(driver);
            let (freed, fired, absolute, on_uring) = run_on(builder, move || async move {
                let absolute = local_state().absolute_park_deadline;
                let on_uring = ringcore_runtime::driver_kind() == ringcore_runtime::DriverKind::IoUring;
                let started = Instant::now();
                let sleeper = spawn_local(async move {
                    sleep(DUE).await;
                    started.elapsed()
                });
                // Let the sleeper start its timer, then hold the core past its deadline
                // without yielding (a long computation, or a blocking call).
                sleep(Duration::from_millis(1)).await;
                std::thread::sleep(HELD);
                let freed = started.elapsed();
                let fired = sleeper.await.expect("sleeper");
                (freed, fired, absolute, on_uring)
            });
            if driver == Driver::Epoll || portable {
                assert!(
                    !absolute,
                    "{driver:?} portable={portable}: no absolute park deadline"
                );
            } else if on_uring && kernel_at_least(6, 12) && !monotonic_shifted() {
                assert!(absolute, "io_uring on Linux 6.12+ takes IORING_ENTER_ABS_TIMER");
            }
            // Had the park's timeout run from the clock read before the task held the core,
            // it would end about DUE after `freed`.
            assert!(
                fired >= freed && fired < freed + DUE / 2,
                "{driver:?} portable={portable}: the core was free at {freed:?}, the timer \
                 (due at {DUE:?}) fired at {fired:?}"
            );
        }
    }
}

/// Whether the running kernel's release is at least `major.minor` (`uname -r`).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// In a time namespace that moves `CLOCK_MONOTONIC` the core does not park on absolute
/// deadlines (kernels up to 7.0 read them on the host's clock: a deadline would pass at once,
/// and the core would spin, or pass far too late), and a sleep takes its time without the
/// core spinning through it. The test runs itself again under `unshare --time` with the clock
/// moved 10 s back and then 10 s ahead. Creating a time namespace needs `CAP_SYS_ADMIN` and a
/// kernel with time namespaces; where `unshare` cannot make one, the test says so and ends.
#[test]
fn in_a_time_namespace_a_sleep_neither_spins_nor_runs_late() {
    const SLEEP: Duration = Duration::from_millis(300);
    if std::env::var_os("RINGCORE_TEST_IN_TIME_NAMESPACE").is_some() {
        let (absolute, took, cpu_ns) = run_on(one_core(false), || async {
            let absolute = local_state().absolute_park_deadline;
            let cpu = thread_cpu_ns();
            let t0 = Instant::now();
            sleep(SLEEP).await;
            (absolute, t0.elapsed(), thread_cpu_ns() - cpu)
        });
        assert!(
            !absolute,
            "no absolute park deadlines in a shifted time namespace"
        );
        assert!(took >= SLEEP && took < SLEEP * 2, "the sleep took {took:?}");
        assert!(
            cpu_ns < 50_000_000,
            "the core spun: {cpu_ns} ns of CPU in a {SLEEP:?} sleep"
        );
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    for offset in ["-10", "10"] {
        let run = std::process::Command::new("unshare")
            .args(["--time", &format!("--monotonic={offset}"), "--"])
            .arg(&exe)
            .args([
                "in_a_time_namespace_a_sleep_neither_spins_nor_runs_late",
                "--exact",
                "--test-threads=1",
            ])
            .env("RINGCORE_TEST_IN_TIME_NAMESPACE", "1")
            .output()
            .expect("run unshare (util-linux)");
        let stderr = String::from_utf8_lossy(&run.stderr);
        if !run.status.success() && stderr.contains("unshare failed") {
            // Not root, no CAP_SYS_ADMIN (a container), or a kernel without time
            // namespaces: only `monotonic_offset_is_zero`'s unit test checks the guard then.
            eprintln!("no time namespace can be made here: {stderr}");
            return;
        }
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success() && stdout.contains("1 passed"),
            "monotonic offset {offset} s: {}\n{stdout}\n{stderr}",
            run.status
        );
    }
}

/// CPU time this thread has had, in ns (`/proc/thread-self/schedstat`, first field).
fn thread_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat's first field")
}

/// Whether this process runs in a time namespace that moves `CLOCK_MONOTONIC`.
fn monotonic_shifted() -> bool {
    std::fs::read_to_string("/proc/self/timens_offsets").is_ok_and(|text| {
        text.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&"monotonic") && w[1..] != ["0", "0"]
        })
    })
}

thread_local! {
    /// The readings `at_turn_end` hooks were given, in the order they ran.
    static TURN_ENDS: RefCell<Vec<Instant>> = const { RefCell::new(Vec::new()) };
}

fn note_turn_end(now: Instant) {
    TURN_ENDS.with(|e| e.borrow_mut().push(now));
}

/// A hook registered with `at_turn_end` runs when the turn's tasks have run (the rest of the
/// registering task's work and another task's, ready in the same turn), once per
/// registration, all with one clock reading, and before the core waits: long before the
/// 200 ms sleep that follows ends.
#[ringcore_runtime::test]
async fn turn_end_hooks_run_after_the_turns_tasks_and_before_the_core_waits() {
    assert!(ringcore_runtime::time::at_turn_end(note_turn_end));
    assert!(ringcore_runtime::time::at_turn_end(note_turn_end));
    let other = spawn_local(async {
        std::thread::sleep(Duration::from_millis(3));
        Instant::now()
    });
    std::thread::sleep(Duration::from_millis(2));
    let worked = Instant::now();
    assert!(
        TURN_ENDS.with(|e| e.borrow().is_empty()),
        "ran before the turn ended"
    );
    sleep(Duration::from_millis(200)).await;
    let other_done = other.await.expect("the other task");
    let ends = TURN_ENDS.with(|e| e.take());
    assert_eq!(ends.len(), 2, "once per registration");
    assert_eq!(ends[0], ends[1], "one reading for the turn");
    assert!(
        ends[0] >= worked && ends[0] >= other_done,
        "before the turn's tasks were done"
    );
    assert!(
        ends[0] < worked + Duration::from_millis(100),
        "not before the core waited: {:?} after the turn's work",
        ends[0] - worked
    );
}

#[test]
fn off_a_shard_no_turn_end_hook_is_taken() {
    assert!(!ringcore_runtime::time::at_turn_end(note_turn_end));
    assert!(TURN_ENDS.with(|e| e.borrow().is_empty()));
}

#[ringcore_runtime::test]
async fn a_coarse_timeout_parks_where_a_short_precise_one_polls() {
    let spins = || ringcore_runtime::stats::shard(ringcore_runtime::shard_id()).spins;
    let short = Duration::from_micros(20);
    let never = std::future::pending::<()>;
    // A precise deadline due within the idle spin: the core polls for it.
    let before = spins();
    for _ in 0..20 {
        assert!(timeout(short, never()).await.is_err());
    }
    let precise = spins() - before;
    // The same deadlines made coarse: the core parks until each, and none ends early.
    let before = spins();
    for _ in 0..20 {
        let t0 = Instant::now();
        assert!(timeout(short, never()).coarse().await.is_err());
        assert!(t0.elapsed() >= short, "a coarse timeout ended early");
        let t0 = Instant::now();
        assert!(timeout_at(t0 + short, never()).coarse().await.is_err());
        assert!(t0.elapsed() >= short, "a coarse timeout_at ended early");
    }
    let coarse = spins() - before;
    assert!(precise > 0, "the core polled for no precise timeout");
    assert_eq!(coarse, 0, "the core polled for a coarse timeout");
    // A coarse timeout whose future finishes first gives its output.
    assert_eq!(timeout(Duration::from_secs(5), async { 7 }).coarse().await, Ok(7));
}
