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
    for _ in 0..3 {
        let out = run_demo(&[
            "--cores", "2", "--items", "1", "--stock", "999", "--users", "1000", "--rate", "100000",
            "--conns", "200",
        ]);
        assert!(
            out.contains("[ok] item-0: sold 999 == stock 999 (remaining 0;"),
            "{out}"
        );
    }
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
