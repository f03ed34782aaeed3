//! Group commit's batch window (`JournalOptions::commit_window`) over a real ring and real
//! files: while appends keep coming in (an open-loop stream), batches start at most once per
//! window, so a window's records share one write and one sync; one client appending a
//! record at a time is never held back by it; and every record is still durable and
//! replayed.

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use flash_sale::journal::{Journal, JournalOptions};
use ringcore_runtime::spawn_local;
use ringcore_runtime::time::sleep;
use ringcore_testkit::rt::run1;
use ringcore_testkit::tmp::TempDir;

fn payload(i: usize) -> Vec<u8> {
    format!("order {i}").into_bytes()
}

/// Core 0's journal in `dir`, with batch window `window`.
async fn open(dir: &Path, window: Duration) -> Journal {
    let opts = JournalOptions {
        commit_window: window,
        ..Default::default()
    };
    Journal::open_with(dir, 0, &opts).await.expect("open").0
}

/// Appends started together in the open-loop stream of [`stream`].
const BURST: usize = 4;

/// What an open-loop stream of appends did: [`BURST`] new appends every `gap` for `dur`
/// (each its own task, so records keep coming while a batch is on its way to the disk), or,
/// with `gap` zero, one client appending (and awaiting) one record after another. Returns
/// (records, batches, how long it took).
fn stream(dir: &Path, window: Duration, gap: Duration, dur: Duration) -> (u64, u64, Duration) {
    let d = dir.to_path_buf();
    run1(move || {
        let d = d.clone();
        async move {
            let j = open(&d, window).await;
            let j = Rc::new(j);
            let t0 = Instant::now();
            let mut i = 0;
            let mut tasks = Vec::new();
            while t0.elapsed() < dur {
                if gap.is_zero() {
                    j.append(&payload(i)).await.expect("append");
                } else {
                    for _ in 0..BURST {
                        let j = j.clone();
                        tasks.push(spawn_local(async move {
                            j.append(&payload(i)).await.expect("append");
                        }));
                        i += 1;
                    }
                    sleep(gap).await;
                    continue;
                }
                i += 1;
            }
            for t in tasks {
                t.await.expect("appender");
            }
            let took = t0.elapsed();
            let s = j.stats();
            (s.records, s.batches, took)
        }
    })
}

fn replayed(dir: &Path) -> Vec<Vec<u8>> {
    let r = flash_sale::journal::replay(dir, 0).expect("replay");
    assert_eq!(r.damage, None, "a clean end");
    r.payloads().into_iter().map(<[u8]>::to_vec).collect()
}

#[test]
fn under_load_batches_start_at_most_once_per_window_and_every_record_replays() {
    let window = Duration::from_millis(80);
    let tmp = TempDir::new("load");
    let gap = Duration::from_millis(1);
    let (records, batches, took) = stream(&tmp.0, window, gap, Duration::from_millis(500));
    // Batch k (from the second on) starts at least k windows after the first one did; the
    // first starts at once.
    let most = took.as_millis() / window.as_millis() + 1;
    eprintln!("window {window:?}: {records} records in {batches} batches, {took:?}");
    assert!(
        u128::from(batches) <= most,
        "{batches} batches in {took:?}: more than one per {window:?} window (at most {most})"
    );
    assert!(
        records >= 4 * batches,
        "the window's records share a batch: {records} records in {batches} batches"
    );
    let mut got: Vec<usize> = replayed(&tmp.0)
        .iter()
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| s.strip_prefix("order "))
                .and_then(|n| n.parse().ok())
                .expect("an order record")
        })
        .collect();
    assert_eq!(got.len() as u64, records, "every acknowledged record replays");
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len() as u64, records, "each one once");

    // The same load with no window: a batch as soon as the previous one is durable, so many
    // more of them (more than twice as many needs syncs under about 30 ms, far longer than a
    // sync takes even on a slow disk).
    let tmp0 = TempDir::new("load0");
    let (records0, batches0, took0) = stream(&tmp0.0, Duration::ZERO, gap, Duration::from_millis(500));
    eprintln!("no window: {records0} records in {batches0} batches, {took0:?}");
    assert!(
        batches0 > 2 * batches,
        "without the window batches follow each other: {batches0} against {batches}"
    );
}

#[test]
fn one_client_appending_a_record_at_a_time_is_not_held_back_by_the_window() {
    // A window far longer than a sync: one appender's records each find the journal idle
    // (nothing came in while its previous record was on its way), so each is written at once.
    let window = Duration::from_secs(2);
    let tmp = TempDir::new("lone");
    let (records, batches, took) = stream(&tmp.0, window, Duration::ZERO, Duration::from_millis(300));
    eprintln!("one appender, window {window:?}: {records} records in {batches} batches, {took:?}");
    assert!(
        took < window,
        "a lone appender waited for the window: {records} records took {took:?}"
    );
    assert!(records >= 2, "more than one record in {took:?}: {records}");
    assert_eq!(records, batches, "one record per batch");
    assert_eq!(replayed(&tmp.0).len() as u64, records);
}

#[test]
fn a_journal_dropped_while_a_batch_waits_for_the_window_writes_it_at_once() {
    let window = Duration::from_secs(3);
    let tmp = TempDir::new("drop");
    let d = tmp.0.clone();
    let waited = run1(move || {
        let d = d.clone();
        async move {
            let j = open(&d, window).await;
            // Two records in one batch: the journal is busy, so the next batch waits for the
            // window (3 s after this one started).
            let (a, b) = (j.append(&payload(0)), j.append(&payload(1)));
            a.await.expect("record 0");
            b.await.expect("record 1");
            let c = j.append(&payload(2));
            let t0 = Instant::now();
            drop(j);
            c.await.expect("record 2, queued when the journal was dropped");
            t0.elapsed()
        }
    });
    assert!(
        waited < Duration::from_secs(2),
        "the queued record waited {waited:?} for a window of {window:?} after the drop"
    );
    assert_eq!(replayed(&tmp.0), (0..3).map(payload).collect::<Vec<_>>());
}
