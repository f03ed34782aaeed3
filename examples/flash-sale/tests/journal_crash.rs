//! The journal's promise under failure, in child processes: a process killed (SIGKILL) while
//! appending, or while growing its prepared space, loses no acknowledged record; a failed
//! write or a failed growth stops the journal (fail-stop) without acknowledging anything that
//! is not in the file; a disk full at open starts the journal stopped, and it takes appends
//! once space returns.
//!
//! Each test re-runs this test binary as a child, selecting itself with `--exact` and a
//! `JOURNAL_CHILD` variable that puts it in child mode.
//!
//! What SIGKILL can and cannot show: the page cache survives a killed process, so this checks
//! that nothing is acknowledged before its batch has been written and its sync has returned
//! (and that replay finds every such record, intact), not that the device honours `fdatasync`
//! across a power cut.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flash_sale::journal::{Journal, JournalOptions, Replay, SyncMode};
use ringcore_runtime::spawn_local;
use ringcore_testkit::rt::run1;
use ringcore_testkit::tmp::TempDir;

const CHILD_ENV: &str = "JOURNAL_CHILD";
/// File size limit (`RLIMIT_FSIZE`) in the fail-stop child: writes past it fail with `EFBIG`.
const FSIZE_LIMIT: u64 = 64 * 1024;
const APPENDERS: usize = 16;

fn payload(seq: u64) -> Vec<u8> {
    let mut p = format!("seq {seq}|").into_bytes();
    p.extend((0..200 + seq % 100).map(|k| (k as u8) ^ (seq as u8)));
    p
}

fn seq_of(record: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(record);
    let seq = text
        .strip_prefix("seq ")
        .and_then(|s| s.split('|').next())
        .and_then(|s| s.parse().ok())
        .expect("record carries a sequence number");
    assert_eq!(record, payload(seq), "record {seq} intact");
    seq
}

/// Prints one line to the parent and flushes it (the parent may kill us right after).
fn tell(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Child: `APPENDERS` tasks append numbered records until they fail (or for 20 s at most),
/// printing `ack <seq>` after each acknowledged one and `err <seq>` after each refused one.
fn child_append_loop(dir: PathBuf, opts: JournalOptions) {
    run1(move || {
        let (dir, opts) = (dir.clone(), opts.clone());
        async move {
            let (j, _) = Journal::open_with(&dir, 0, &opts).await.expect("child open");
            tell(&format!("direct {}", j.is_direct()));
            let j = Rc::new(j);
            let next = Rc::new(Cell::new(0u64));
            let deadline = Instant::now() + Duration::from_secs(20);
            let tasks: Vec<_> = (0..APPENDERS)
                .map(|_| {
                    let (j, next) = (j.clone(), next.clone());
                    spawn_local(async move {
                        while Instant::now() < deadline {
                            let seq = next.get();
                            next.set(seq + 1);
                            let growths = j.stats().growths;
                            match j.append(&payload(seq)).await {
                                Ok(()) => {
                                    tell(&format!("ack {seq}"));
                                    if j.stats().growths != growths {
                                        tell(&format!("grew {}", j.stats().growths));
                                    }
                                }
                                Err(e) => {
                                    tell(&format!("err {seq}"));
                                    tell(&format!("why {e}"));
                                    return;
                                }
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            // After a failure, the journal refuses at once.
            if j.is_failed() {
                let refused = j.append(b"after the failure").await.is_err();
                tell(&format!("after-failure refused={refused}"));
            }
        }
    });
}

/// Starts this binary as a child running test `name` in child mode `mode`, with its stdout
/// lines sent to the returned channel.
fn spawn_child(name: &str, mode: &str, dir: &Path) -> (std::process::Child, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Runs the child to its end and returns what it printed; it must exit with success.
fn run_child_to_end(name: &str, mode: &str, dir: &Path) -> Vec<String> {
    let (mut child, rx) = spawn_child(name, mode, dir);
    let status = child.wait().expect("wait child");
    let lines: Vec<String> = rx.iter().collect();
    assert!(status.success(), "child failed: {status}; output: {lines:?}");
    lines
}

/// What a child has shown so far: acknowledgements and the growth count it last printed.
#[derive(Default)]
struct Progress {
    acks: usize,
    growths: u64,
}

impl Progress {
    fn see(&mut self, line: &str) {
        if line.starts_with("ack ") {
            self.acks += 1;
        } else if let Some(n) = line.strip_prefix("grew ").and_then(|n| n.parse().ok()) {
            self.growths = self.growths.max(n);
        }
    }
}

/// Reads the child's lines until `enough` holds for what it has shown (20 s at most, so a
/// slow disk delays the kill instead of making it land before anything happened), lets it run
/// `after` more, kills it with SIGKILL and returns everything it printed before dying.
fn kill_after_progress(
    mut child: std::process::Child,
    rx: mpsc::Receiver<String>,
    enough: impl Fn(&Progress) -> bool,
    after: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    let mut seen = Progress::default();
    while !enough(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.see(&line);
                lines.push(line);
            }
            Err(e) => panic!(
                "the child did too little to test anything ({e:?}): {} acks, {} growths: \
                 {lines:?}",
                seen.acks, seen.growths
            ),
        }
    }
    std::thread::sleep(after);
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: plain kill(2) of our own child, which has not been waited for yet (its pid
    // cannot have been reused).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill child");
    let status = child.wait().expect("wait child");
    assert!(!status.success(), "the child was killed, not finished");
    lines.extend(rx.iter()); // everything else it printed before dying
    lines
}

/// Child mode, if this process is a child for test `mode`: runs the child and returns true.
fn child_mode(mode: &str) -> bool {
    let Ok(v) = std::env::var(CHILD_ENV) else {
        return false;
    };
    let Some(dir) = v.strip_prefix(&format!("{mode}:")) else {
        return false;
    };
    if mode == "start-fsize" {
        child_full_at_start(PathBuf::from(dir));
        return true;
    }
    if mode == "direct-recover" {
        child_direct_fail_then_recover(PathBuf::from(dir));
        return true;
    }
    if mode == "fsize" || mode == "grow-fsize" || mode == "fsize-direct" {
        // SAFETY: setting a signal disposition to SIG_IGN; no handler code runs.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let lim = libc::rlimit {
            rlim_cur: FSIZE_LIMIT,
            rlim_max: FSIZE_LIMIT,
        };
        // SAFETY: `lim` is a valid rlimit that outlives the call.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) };
        assert_eq!(rc, 0, "setrlimit");
    }
    let opts = match mode {
        // The failed *write* of a batch that extends the file: no preallocation.
        "fsize" => JournalOptions {
            prealloc: 0,
            ..Default::default()
        },
        // Growth all the time: one page of zeros written and synced every ~20 records.
        "grow" => JournalOptions {
            prealloc: 4096,
            ..Default::default()
        },
        // Growth that meets the limit.
        "grow-fsize" => JournalOptions {
            prealloc: 8192,
            ..Default::default()
        },
        // The same two with batches written with O_DIRECT (buffered where the temp dir's file
        // system refuses it).
        "crash-direct" => JournalOptions {
            sync: SyncMode::Direct,
            ..Default::default()
        },
        "fsize-direct" => JournalOptions {
            prealloc: 0,
            sync: SyncMode::Direct,
            ..Default::default()
        },
        _ => JournalOptions::default(),
    };
    child_append_loop(PathBuf::from(dir), opts);
    true
}

/// Sets the soft `RLIMIT_FSIZE` to `cur` (the hard one unlimited, so it can be raised again),
/// with `SIGXFSZ` ignored: a write past the limit then fails with `EFBIG`.
fn set_soft_fsize(cur: u64) {
    // SAFETY: setting a signal disposition to SIG_IGN; no handler code runs.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let lim = libc::rlimit {
        rlim_cur: cur,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) };
    assert_eq!(rc, 0, "setrlimit");
}

/// Child: a journal writing with O_DIRECT, no prepared space, under a soft `RLIMIT_FSIZE`:
/// appends until a batch fails past the limit (the journal cuts it off and stops), then
/// raises the limit, waits for a probe to restart the journal, and appends 50 more records
/// one at a time (each a direct write of the kept last block after the cut).
fn child_direct_fail_then_recover(dir: PathBuf) {
    set_soft_fsize(FSIZE_LIMIT);
    run1(move || {
        let dir = dir.clone();
        async move {
            let opts = JournalOptions {
                prealloc: 0,
                sync: SyncMode::Direct,
                ..Default::default()
            };
            let (j, _) = Journal::open_with(&dir, 0, &opts).await.expect("child open");
            tell(&format!("direct {}", j.is_direct()));
            let j = Rc::new(j);
            let next = Rc::new(Cell::new(0u64));
            let tasks: Vec<_> = (0..APPENDERS)
                .map(|_| {
                    let (j, next) = (j.clone(), next.clone());
                    spawn_local(async move {
                        loop {
                            let seq = next.get();
                            next.set(seq + 1);
                            match j.append(&payload(seq)).await {
                                Ok(()) => tell(&format!("ack {seq}")),
                                Err(_) => {
                                    tell(&format!("err {seq}"));
                                    return;
                                }
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            set_soft_fsize(libc::RLIM_INFINITY);
            let deadline = Instant::now() + Duration::from_secs(10);
            while j.is_failed() && Instant::now() < deadline {
                ringcore_runtime::time::sleep(Duration::from_millis(10)).await;
            }
            tell(&format!("recovered {}", !j.is_failed()));
            for _ in 0..50 {
                let seq = next.get();
                next.set(seq + 1);
                match j.append(&payload(seq)).await {
                    Ok(()) => tell(&format!("ack {seq}")),
                    Err(e) => tell(&format!("err-after {seq} {e}")),
                }
            }
        }
    });
}

/// Child: opens a journal whose first step of prepared space cannot be written (the soft
/// `RLIMIT_FSIZE` is below it), reports what the journal says, then raises the limit and
/// waits for the journal to take appends again.
fn child_full_at_start(dir: PathBuf) {
    set_soft_fsize(FSIZE_LIMIT);
    run1(move || {
        let dir = dir.clone();
        async move {
            let opts = JournalOptions {
                prealloc: 1024 * 1024,
                ..Default::default()
            };
            let (j, _) = Journal::open_with(&dir, 0, &opts)
                .await
                .expect("a full disk does not fail the open");
            let heard = Rc::new(std::cell::RefCell::new(Vec::new()));
            let h = heard.clone();
            j.on_health(move |health| h.borrow_mut().push(format!("{health:?}")));
            tell(&format!("stopped-at-open {}", j.is_failed()));
            tell(&format!("heard-at-install {}", heard.borrow().join(" | ")));
            match j.append(b"while full").await {
                Ok(()) => tell("append-while-full acked"),
                Err(e) => tell(&format!("append-while-full refused {e}")),
            }
            set_soft_fsize(libc::RLIM_INFINITY);
            // The grower retries with back-off (up to 1 s between tries).
            let deadline = Instant::now() + Duration::from_secs(10);
            while j.is_failed() && Instant::now() < deadline {
                ringcore_runtime::time::sleep(Duration::from_millis(20)).await;
            }
            tell(&format!("recovered {}", !j.is_failed()));
            match j.append(b"after the space returned").await {
                Ok(()) => tell("append-after acked"),
                Err(e) => tell(&format!("append-after refused {e}")),
            }
            tell(&format!("prepared {} end {}", j.prepared_end(), j.end()));
            tell(&format!("heard {}", heard.borrow().join(" | ")));
        }
    });
}

fn replay(dir: &Path) -> Replay {
    let d = dir.to_path_buf();
    run1(move || {
        let d = d.clone();
        async move { Journal::open(&d, 0).await.expect("replay").1 }
    })
}

fn parse(lines: &[String], tag: &str) -> Vec<u64> {
    lines
        .iter()
        // With --nocapture the child's first line follows libtest's `test NAME ... ` on the
        // same line.
        .map(|l| l.split_once(" ... ").map_or(l.as_str(), |(_, rest)| rest))
        .filter_map(|l| l.strip_prefix(tag))
        .map(|s| s.parse().expect("sequence number"))
        .collect()
}

#[test]
fn sigkill_while_appending_loses_no_acknowledged_record() {
    if child_mode("crash") {
        return;
    }
    sigkill_while_appending("sigkill_while_appending_loses_no_acknowledged_record", "crash");
}

#[test]
fn sigkill_while_appending_with_o_direct_loses_no_acknowledged_record() {
    if child_mode("crash-direct") {
        return;
    }
    sigkill_while_appending(
        "sigkill_while_appending_with_o_direct_loses_no_acknowledged_record",
        "crash-direct",
    );
}

/// Whether the file system of `dir` takes `O_DIRECT` (a probe file, opened and removed).
fn takes_o_direct(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::create_dir_all(dir);
    let probe = dir.join("o_direct_probe");
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// For the direct modes: the child's journal wrote with O_DIRECT exactly where `dir`'s file
/// system takes it (so a run on a file system without it says it tested the fallback).
fn check_direct(mode: &str, lines: &[String], dir: &Path) {
    if !mode.contains("direct") {
        return;
    }
    let want = takes_o_direct(dir);
    // (The first line of the child's output follows libtest's own "test NAME ... ".)
    assert!(
        lines.iter().any(|l| l.ends_with(&format!("direct {want}"))),
        "{mode}: the journal should write with O_DIRECT: {want}; it said {:?}",
        lines.iter().find(|l| l.contains("direct "))
    );
    if !want {
        eprintln!(
            "{mode}: {} refuses O_DIRECT: the buffered fallback was tested",
            dir.display()
        );
    }
}

/// Kills child test `name` (child mode `mode`) 100 ms after its 20th acknowledgement and
/// checks that replay finds every acknowledged record, once.
fn sigkill_while_appending(name: &str, mode: &str) {
    let tmp = TempDir::new(mode);
    let (child, rx) = spawn_child(name, mode, &tmp.0);
    // Kill it mid-stream: 100 ms after its 20th acknowledgement.
    let lines = kill_after_progress(child, rx, |p| p.acks >= 20, Duration::from_millis(100));
    check_direct(mode, &lines, &tmp.0);
    let acked = parse(&lines, "ack ");

    let r = replay(&tmp.0);
    let replayed: Vec<u64> = r.records().map(|rec| seq_of(rec.payload)).collect();
    let set: HashSet<u64> = replayed.iter().copied().collect();
    assert_eq!(set.len(), replayed.len(), "no record replayed twice");
    let lost: Vec<u64> = acked.iter().copied().filter(|s| !set.contains(s)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged records missing after the crash: {lost:?}"
    );
    eprintln!(
        "{mode}: {} acknowledged, {} replayed, damage: {:?}",
        acked.len(),
        replayed.len(),
        r.damage
    );
}

#[test]
fn failed_write_stops_the_journal_and_acknowledges_only_what_is_on_disk() {
    if child_mode("fsize") {
        return;
    }
    failed_write(
        "failed_write_stops_the_journal_and_acknowledges_only_what_is_on_disk",
        "fsize",
    );
}

#[test]
fn a_failed_o_direct_write_stops_the_journal_and_acknowledges_only_what_is_on_disk() {
    if child_mode("fsize-direct") {
        return;
    }
    failed_write(
        "a_failed_o_direct_write_stops_the_journal_and_acknowledges_only_what_is_on_disk",
        "fsize-direct",
    );
}

#[test]
fn after_a_failed_o_direct_write_the_journal_recovers_and_appends_after_the_cut() {
    if child_mode("direct-recover") {
        return;
    }
    let tmp = TempDir::new("direct-recover");
    let lines = run_child_to_end(
        "after_a_failed_o_direct_write_the_journal_recovers_and_appends_after_the_cut",
        "direct-recover",
        &tmp.0,
    );
    check_direct("direct-recover", &lines, &tmp.0);
    assert!(
        lines.iter().any(|l| l == "recovered true"),
        "the journal took appends again once the limit was raised: {lines:?}"
    );
    let late: Vec<&String> = lines.iter().filter(|l| l.starts_with("err-after")).collect();
    assert!(late.is_empty(), "appends failed after the recovery: {late:?}");
    let acked = parse(&lines, "ack ");
    let errs = parse(&lines, "err ");
    assert_eq!(errs.len(), APPENDERS, "every appender saw the failure");
    let r = replay(&tmp.0);
    assert_eq!(r.damage, None, "a clean end: {:?}", r.damage);
    let replayed: Vec<u64> = r.records().map(|rec| seq_of(rec.payload)).collect();
    let set: HashSet<u64> = replayed.iter().copied().collect();
    assert_eq!(set.len(), replayed.len(), "no record replayed twice");
    let acked_set: HashSet<u64> = acked.iter().copied().collect();
    assert_eq!(
        set, acked_set,
        "exactly the acknowledged records, the 50 after the recovery included"
    );
    let after = acked
        .iter()
        .filter(|&&s| s > *errs.iter().max().unwrap_or(&0))
        .count();
    assert_eq!(after, 50, "50 records appended after the recovery");
}

/// Runs child test `name` (child mode `mode`: appends until a write fails past the file size
/// limit) and checks the fail-stop: every appender told, nothing acknowledged past the
/// limit or missing, nothing refused in the file.
fn failed_write(name: &str, mode: &str) {
    let tmp = TempDir::new(mode);
    let lines = run_child_to_end(name, mode, &tmp.0);
    check_direct(mode, &lines, &tmp.0);
    let acked = parse(&lines, "ack ");
    let errs = parse(&lines, "err ");
    assert!(!acked.is_empty(), "nothing fit under the limit: {lines:?}");
    assert_eq!(errs.len(), APPENDERS, "every appender saw the failure: {lines:?}");
    assert!(
        lines.iter().any(|l| l == "after-failure refused=true"),
        "appends after the failure must be refused: {lines:?}"
    );
    // Acknowledged records all fit under the limit: none was acknowledged past the failure.
    let acked_bytes: u64 = acked.iter().map(|&s| 8 + payload(s).len() as u64).sum();
    assert!(16 + acked_bytes <= FSIZE_LIMIT);

    let r = replay(&tmp.0);
    let set: HashSet<u64> = r.records().map(|rec| seq_of(rec.payload)).collect();
    let lost: Vec<u64> = acked.iter().copied().filter(|s| !set.contains(s)).collect();
    assert!(lost.is_empty(), "acknowledged records missing: {lost:?}");
    // The failed batch was cut off the file: none of its whole records (which a short write
    // leaves behind) can be replayed as if it had been acknowledged.
    let acked_set: HashSet<u64> = acked.iter().copied().collect();
    let ghosts: Vec<u64> = set.iter().copied().filter(|s| !acked_set.contains(s)).collect();
    assert!(
        ghosts.is_empty(),
        "records answered with an error are in the journal: {ghosts:?}"
    );
    assert_eq!(r.damage, None, "the cut left a clean end: {:?}", r.damage);
}

#[test]
fn sigkill_while_growing_the_prepared_space_loses_no_acknowledged_record() {
    if child_mode("grow") {
        return;
    }
    // One page of zeros is prepared (written, synced) every ~20 records, as long as a batch
    // takes: a kill lands inside a growth or next to one. Three kills at different points,
    // each once the child has acknowledged 10 records and grown the file 4 times.
    for (round, ms) in [0u64, 15, 60].into_iter().enumerate() {
        let tmp = TempDir::new("grow");
        let (child, rx) = spawn_child(
            "sigkill_while_growing_the_prepared_space_loses_no_acknowledged_record",
            "grow",
            &tmp.0,
        );
        let lines = kill_after_progress(
            child,
            rx,
            |p| p.acks > 10 && p.growths > 3,
            Duration::from_millis(ms),
        );
        let acked = parse(&lines, "ack ");
        let growths = parse(&lines, "grew ").into_iter().max().unwrap_or(0);
        let len = std::fs::metadata(tmp.0.join("journal-0.log"))
            .expect("stat")
            .len();

        let r = replay(&tmp.0);
        let replayed: Vec<u64> = r.records().map(|rec| seq_of(rec.payload)).collect();
        let set: HashSet<u64> = replayed.iter().copied().collect();
        assert_eq!(set.len(), replayed.len(), "no record replayed twice");
        let lost: Vec<u64> = acked.iter().copied().filter(|s| !set.contains(s)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged records missing after the crash: {lost:?}"
        );
        eprintln!(
            "grow crash {round}: {} acknowledged, {} replayed, {growths}+ growths, file {len} \
             bytes, records end at {}, damage: {:?}",
            acked.len(),
            replayed.len(),
            r.valid_len,
            r.damage
        );
    }
}

#[test]
fn failed_growth_stops_the_journal_and_acknowledges_only_what_is_on_disk() {
    if child_mode("grow-fsize") {
        return;
    }
    let tmp = TempDir::new("grow-fsize");
    let lines = run_child_to_end(
        "failed_growth_stops_the_journal_and_acknowledges_only_what_is_on_disk",
        "grow-fsize",
        &tmp.0,
    );
    let acked = parse(&lines, "ack ");
    assert!(!acked.is_empty(), "nothing fit under the limit: {lines:?}");
    assert_eq!(
        parse(&lines, "err ").len(),
        APPENDERS,
        "every appender saw the failure"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("why") && l.contains("preparing space")),
        "the refusal names the failed growth: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "after-failure refused=true"),
        "{lines:?}"
    );
    let len = std::fs::metadata(tmp.0.join("journal-0.log"))
        .expect("stat")
        .len();
    assert!(len <= FSIZE_LIMIT, "file {len} bytes");

    let r = replay(&tmp.0);
    let set: HashSet<u64> = r.records().map(|rec| seq_of(rec.payload)).collect();
    let lost: Vec<u64> = acked.iter().copied().filter(|s| !set.contains(s)).collect();
    assert!(lost.is_empty(), "acknowledged records missing: {lost:?}");
    let acked_set: HashSet<u64> = acked.iter().copied().collect();
    let ghosts: Vec<u64> = set.iter().copied().filter(|s| !acked_set.contains(s)).collect();
    assert!(
        ghosts.is_empty(),
        "records answered with an error are in the journal: {ghosts:?}"
    );
    // The partly written zeros of the failed growth read as the clean end.
    assert_eq!(r.damage, None, "{:?}", r.damage);
    assert!(r.file_len >= r.valid_len);
}

#[test]
fn a_full_disk_at_open_starts_the_journal_stopped_and_it_recovers_when_space_returns() {
    if child_mode("start-fsize") {
        return;
    }
    let tmp = TempDir::new("start-fsize");
    let lines = run_child_to_end(
        "a_full_disk_at_open_starts_the_journal_stopped_and_it_recovers_when_space_returns",
        "start-fsize",
        &tmp.0,
    );
    let has = |prefix: &str, needle: &str| lines.iter().any(|l| l.contains(prefix) && l.contains(needle));
    assert!(has("stopped-at-open", "true"), "{lines:?}");
    assert!(
        has("heard-at-install", "Stopped") && has("heard-at-install", "preparing space"),
        "{lines:?}"
    );
    assert!(has("append-while-full refused", "preparing space"), "{lines:?}");
    assert!(has("recovered", "true"), "{lines:?}");
    assert!(has("append-after", "acked"), "{lines:?}");
    assert!(
        has("heard ", "Healthy"),
        "the observer heard the recovery: {lines:?}"
    );
    let r = replay(&tmp.0);
    let payloads: Vec<&[u8]> = r.records().map(|e| e.payload).collect();
    assert_eq!(
        payloads,
        vec![&b"after the space returned"[..]],
        "only the acknowledged append"
    );
    assert_eq!(r.damage, None);
}
