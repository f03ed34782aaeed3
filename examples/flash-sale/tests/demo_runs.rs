//! `flash-sale demo` end to end: the binary starts its own service, fires a small flash crowd
//! and every invariant of the sale holds.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole demo (service start, crowd, checks, stop) must finish in this long.
const LIMIT: Duration = Duration::from_secs(60);

/// One demo at a time: each runs a service and a crowd on every core, and two at once on a
/// 2-core machine overload both, so their shedders answer 503s the checks do not expect.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_small_flash_crowd_keeps_every_invariant() {
    let out = run_demo(&[
        "--cores",
        "2",
        "--items",
        "2",
        "--stock",
        "200",
        "--users",
        "1000",
        "--rate",
        "4000",
        "--duration",
        "5",
    ]);
    for line in [
        "[ok] item-0: sold 200 == stock 200 (remaining 0;",
        "[ok] item-1: sold 200 == stock 200 (remaining 0;",
        "[ok] every sale was answered 200",
        "[ok] no user bought an item twice",
        "[ok] every 200 named the item and user it was asked for",
        "[ok] every 200 order is readable via GET /orders",
        "[ok] every already_bought named the user's own order",
        "[ok] 503/429 answers carried Retry-After",
        "[ok] no answer outside the contract",
    ] {
        assert!(out.contains(line), "missing {line:?}\n{out}");
    }
    assert!(
        out.contains("flash sale: 2 items x 200 stock, 1000 users, 4000 req/s offered, 2 cores"),
        "{out}"
    );
}

/// Demand barely above stock, all at once: the last units are stolen between cores while
/// buyers race for them; a buyer must never hear "sold out" while a unit is in transit
/// (this failed 7 runs in 8 before stolen surplus was counted as lent).
#[test]
fn a_burst_just_above_the_stock_sells_every_unit() {
    let mut served_all = false;
    // Until one run serves every buyer (a busy machine sheds some: see below), at most 6.
    for _ in 0..6 {
        if served_all {
            break;
        }
        let out = run_demo(&[
            "--cores",
            "2",
            "--items",
            "1",
            "--stock",
            "999",
            "--users",
            "1000",
            "--rate",
            "100000",
            "--conns",
            "200",
            // The race under test is the sell-out, not shedding: the whole burst is queued
            // and served (in a debug build it keeps the cores busy ~250 ms).
            "--shed-grace",
            "5000",
        ]);
        // `run_demo` already failed the run if anyone heard sold_out while a unit remained.
        // When every buyer was served, every unit must be sold; a buyer shed with 503 (a
        // busy machine: the in-core wait or the group commit over its target) leaves units,
        // and then the demo's own check is what guards the race.
        if count(&out, "503: ") == 0 {
            assert!(
                out.contains("[ok] item-0: sold 999 == stock 999 (remaining 0;"),
                "{out}"
            );
        } else {
            eprintln!("some buyers were shed; the sell-out check is the demo's: {out}");
        }
        served_all |= count(&out, "503: ") == 0;
    }
    assert!(
        served_all,
        "in 6 runs, never every buyer served: the race was not exercised"
    );
}

/// The count after `label` on the demo's `requests` line.
fn count(out: &str, label: &str) -> u64 {
    let requests = out
        .lines()
        .find(|l| l.trim_start().starts_with("requests"))
        .unwrap_or_else(|| panic!("no requests line: {out}"));
    let at = requests
        .find(label)
        .unwrap_or_else(|| panic!("no {label} in {requests:?}"));
    requests[at + label.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count after {label} in {requests:?}"))
}

/// A crowd far above what one core serves (in a debug build, on a 2-core machine shared
/// with the generator: about 3x), open loop for 3 s: every attempt is answered (200, 409 or
/// 503 with Retry-After; none lost, none unsent), the overload is shed (or, on a machine fast
/// enough to serve it all, kept up with), the buys the service admits stay fast (latency from
/// their scheduled send time), and the invariants hold.
#[test]
fn overload_is_shed_and_admitted_buys_stay_fast() {
    let out = run_demo(&[
        "--cores",
        "1",
        "--items",
        "1",
        "--stock",
        "10000000",
        "--users",
        "100000",
        "--rate",
        "8000",
        "--conns",
        "200",
        "--duration",
        "3",
    ]);
    assert_eq!(count(&out, "lost: "), 0, "{out}");
    assert_eq!(count(&out, "other: "), 0, "{out}");
    assert!(!out.contains("unsent"), "every due attempt went out: {out}");
    assert!(count(&out, "200: ") > 0, "nothing was admitted: {out}");
    if count(&out, "503: ") == 0 {
        // A machine fast enough to serve the whole crowd: then it must have kept up.
        assert!(!out.contains("fell behind"), "not shed, yet behind: {out}");
    }
    let admitted = out
        .lines()
        .find(|l| l.trim_start().starts_with("admitted"))
        .unwrap_or_else(|| panic!("no admitted line: {out}"));
    let p99_ms: f64 = admitted
        .split("p99 ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no p99 in {admitted:?}"));
    // Measured ~60-120 ms here; the bound leaves room for a noisier machine, and is far
    // below the seconds an unshed queue reaches in 3 s.
    assert!(p99_ms < 1000.0, "admitted buys' p99 {p99_ms} ms: {out}");
}

/// Runs `flash-sale demo ARGS`, asserts it succeeded without a failed check, returns stdout.
fn run_demo(args: &[&str]) -> String {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(env!("CARGO_BIN_EXE_flash-sale"))
        .arg("demo")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flash-sale demo");
    // Drain both pipes on threads so the child never blocks on a full one.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        match child.try_wait().expect("wait for the demo") {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            None => {
                // SIGKILL to the demo's own PID; its service child follows (parent-death signal).
                let _ = child.kill();
                let _ = child.wait();
                let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
                panic!("the demo did not finish in {LIMIT:?}\nstdout:\n{out}\nstderr:\n{err}");
            }
        }
    };
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    let report = format!("exit {status}\nstdout:\n{out}\nstderr:\n{err}");
    assert!(status.success(), "{report}");
    assert!(!out.contains("[FAIL]"), "{report}");
    out
}
