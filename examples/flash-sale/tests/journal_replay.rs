//! The journal over a real ring and real files: group commit under concurrent appends, and
//! replay of intact, empty, torn, corrupt and foreign files.
//!
//! These tests open the journal without preallocation (`prealloc: 0`), so the file ends at
//! the last record exactly as the rules are stated; `journal_prealloc.rs` checks the same
//! rules on a file with a prepared zero tail.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flash_sale::journal::{
    file_name, Corruption, Damage, Journal, JournalOptions, Replay, HEADER_LEN, RECORD_OVERHEAD,
};
use ringcore_runtime::spawn_local;
use ringcore_testkit::rt::run1;
use ringcore_testkit::tmp::TempDir;

/// Opens core `core`'s journal in `dir` without preallocation.
async fn open_plain(dir: &Path, core: usize) -> io::Result<(Journal, Replay)> {
    Journal::open_with(
        dir,
        core,
        &JournalOptions {
            prealloc: 0,
            ..Default::default()
        },
    )
    .await
}

/// Record `i`'s payload: its number and a body whose length varies with it.
fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("order {i}:").into_bytes();
    p.extend((0..(i * 7919) % 300).map(|k| (k ^ i) as u8));
    p
}

/// Writes `n` records (one at a time) into a new journal in `dir`, returns the file's path.
fn write_records(dir: &Path, n: usize) -> PathBuf {
    let d = dir.to_path_buf();
    run1(move || {
        let d = d.clone();
        async move {
            let (j, replay) = open_plain(&d, 0).await.expect("open");
            assert_eq!(replay.records().len(), 0);
            for i in 0..n {
                j.append(&payload(i)).await.expect("append");
            }
            j.path().to_path_buf()
        }
    })
}

/// Opens core 0's journal in `dir` and returns what replay found.
fn reopen(dir: &Path) -> Replay {
    let d = dir.to_path_buf();
    run1(move || {
        let d = d.clone();
        async move {
            let (_j, replay) = open_plain(&d, 0).await.expect("reopen");
            replay
        }
    })
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").len()
}

fn record_len(i: usize) -> u64 {
    (RECORD_OVERHEAD + payload(i).len()) as u64
}

#[test]
fn concurrent_appends_are_group_committed_and_replayed() {
    const TASKS: usize = 100;
    const PER_TASK: usize = 20;
    let tmp = TempDir::new("group");
    let d = tmp.0.clone();
    let stats = run1(move || {
        let d = d.clone();
        async move {
            let (j, replay) = open_plain(&d, 3).await.expect("open");
            assert!(replay.records().len() == 0 && replay.damage.is_none());
            let j = Rc::new(j);
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let j = j.clone();
                    spawn_local(async move {
                        for k in 0..PER_TASK {
                            j.append(&payload(t * PER_TASK + k)).await.expect("append");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("appender");
            }
            assert_eq!(j.end(), file_len(j.path()), "every batch is in the file");
            j.stats()
        }
    });
    const N: usize = TASKS * PER_TASK;
    assert_eq!(stats.records, N as u64);
    assert!(
        stats.batches < N as u64,
        "no group commit: {} batches for {N} records",
        stats.batches
    );
    assert!(stats.max_batch_records > 1);
    let expected_bytes: u64 = (0..N).map(record_len).sum();
    assert_eq!(stats.bytes, expected_bytes);

    let d = tmp.0.clone();
    let replay = run1(move || {
        let d = d.clone();
        async move { open_plain(&d, 3).await.expect("reopen").1 }
    });
    assert_eq!(replay.damage, None);
    assert_eq!(replay.truncated_bytes, 0);
    assert_eq!(replay.records().len(), N);
    assert_eq!(replay.valid_len, HEADER_LEN + expected_bytes);
    // Every payload intact, each exactly once; each task's records in its own order.
    let mut seen = vec![false; N];
    let mut last_of_task = vec![None; TASKS];
    for r in replay.payloads() {
        let text = String::from_utf8_lossy(r);
        let i: usize = text
            .strip_prefix("order ")
            .and_then(|s| s.split(':').next())
            .and_then(|s| s.parse().ok())
            .expect("record number");
        assert_eq!(r, payload(i), "payload {i} intact");
        assert!(!seen[i], "record {i} twice");
        seen[i] = true;
        let (t, k) = (i / PER_TASK, i % PER_TASK);
        assert!(last_of_task[t].map_or(true, |l| l < k), "task {t} out of order");
        last_of_task[t] = Some(k);
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn new_journal_replays_nothing() {
    let tmp = TempDir::new("new");
    let d = tmp.0.join("nested/dir");
    let dd = d.clone();
    let replay = run1(move || {
        let d = dd.clone();
        async move { open_plain(&d, 7).await.expect("open").1 }
    });
    assert_eq!(replay.records().len(), 0);
    assert_eq!((replay.damage, replay.truncated_bytes), (None, 0));
    assert_eq!(
        file_len(&d.join(file_name(7))),
        HEADER_LEN,
        "a new journal is just its header"
    );
    // And again, now that the file exists.
    let replay = run1(move || {
        let d = d.clone();
        async move { open_plain(&d, 7).await.expect("reopen").1 }
    });
    assert!(replay.records().len() == 0 && replay.damage.is_none());
}

#[test]
fn torn_tail_is_cut_and_appending_continues() {
    let tmp = TempDir::new("torn");
    let path = write_records(&tmp.0, 10);
    let full = file_len(&path);
    let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(full - 3).expect("cut 3 bytes");
    drop(f);

    let valid = full - record_len(9);
    let d = tmp.0.clone();
    let replay = run1(move || {
        let d = d.clone();
        async move {
            let (j, replay) = open_plain(&d, 0).await.expect("reopen");
            assert_eq!(
                file_len(j.path()),
                replay.valid_len,
                "the file is cut to the valid prefix"
            );
            j.append(b"after the tear").await.expect("append after replay");
            replay
        }
    });
    assert_eq!(replay.payloads(), (0..9).map(payload).collect::<Vec<_>>());
    assert_eq!(replay.valid_len, valid);
    assert_eq!(replay.truncated_bytes, record_len(9) - 3);
    assert_eq!(
        replay.damage,
        Some(Damage::Torn {
            offset: valid,
            present: record_len(9) - 3
        })
    );
    let saved = replay.cut_saved_to.expect("cut bytes saved");
    assert_eq!(file_len(&saved), record_len(9) - 3);

    let replay = reopen(&tmp.0);
    assert_eq!(
        replay.damage, None,
        "the appended record follows the valid prefix cleanly"
    );
    assert_eq!(replay.records().len(), 10);
    assert_eq!(replay.payloads()[9], b"after the tear");
}

/// Flips one byte at `offset` in the file.
fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x20;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn flipped_byte_in_last_record_is_checksum_damage() {
    let tmp = TempDir::new("flip-last");
    let path = write_records(&tmp.0, 10);
    let full = file_len(&path);
    let last = full - record_len(9);
    flip(&path, last + RECORD_OVERHEAD as u64 + 2);

    let replay = reopen(&tmp.0);
    assert_eq!(replay.payloads(), (0..9).map(payload).collect::<Vec<_>>());
    assert_eq!(
        replay.damage,
        Some(Damage::Checksum {
            offset: last,
            len: payload(9).len() as u32
        })
    );
    assert_eq!(replay.truncated_bytes, record_len(9));
    assert_eq!(file_len(&path), last);
}

#[test]
fn corruption_mid_file_is_refused_and_only_repair_cuts_it() {
    let tmp = TempDir::new("flip-mid");
    let path = write_records(&tmp.0, 10);
    let original = std::fs::read(&path).expect("read");
    let at5 = HEADER_LEN + (0..5).map(record_len).sum::<u64>();
    flip(&path, at5 + RECORD_OVERHEAD as u64);
    let damaged = std::fs::read(&path).expect("read");

    // Replay (and so `Journal::open`) refuses: valid records follow the damage.
    let err = flash_sale::journal::replay(&tmp.0, 0).expect_err("corruption is refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let c = Corruption::of(&err).expect("a corruption report");
    assert_eq!(
        (c.path.clone(), c.damage.offset(), c.valid_after),
        (path.clone(), at5, 4)
    );
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains(&format!("offset {at5}")),
        "the error names the file and the offset: {text}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        damaged,
        "a refused journal is left untouched"
    );
    let d = tmp.0.clone();
    let opened = run1(move || {
        let d = d.clone();
        async move { open_plain(&d, 0).await.map(drop).map_err(|e| e.kind()) }
    });
    assert_eq!(opened, Err(io::ErrorKind::InvalidData));

    // Repair cuts at the damage, lists the whole records it drops, and keeps the cut bytes.
    let repaired = flash_sale::journal::repair(&tmp.0, 0).expect("repair");
    assert_eq!(repaired.payloads(), (0..5).map(payload).collect::<Vec<_>>());
    assert_eq!(
        repaired.dropped().map(|e| e.payload.to_vec()).collect::<Vec<_>>(),
        (6..10).map(payload).collect::<Vec<_>>(),
        "the valid records after the damage are listed as dropped"
    );
    assert_eq!(
        repaired.dropped().next().map(|e| e.offset),
        Some(at5 + record_len(5))
    );
    assert_eq!(file_len(&path), at5);
    let saved = std::fs::read(repaired.cut_saved_to.expect("saved")).expect("read side file");
    assert_eq!(saved.len(), original.len() - at5 as usize);
    assert_eq!(
        saved[RECORD_OVERHEAD + 1..],
        original[at5 as usize + RECORD_OVERHEAD + 1..]
    );
    // Now a plain replay starts, with the valid prefix.
    let replay = reopen(&tmp.0);
    assert_eq!((replay.records().len(), replay.damage.clone()), (5, None));
}

#[test]
fn zero_filled_tail_is_not_read_as_records() {
    let tmp = TempDir::new("zeros");
    let path = write_records(&tmp.0, 3);
    let full = file_len(&path);
    let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(full + 4096).expect("extend with zeros");
    drop(f);
    // Zeros to the end of the file are the clean end (what preallocation leaves), not damage:
    // nothing is cut or saved, and the next record goes where the zeros start.
    let replay = reopen(&tmp.0);
    assert_eq!(replay.records().len(), 3);
    assert_eq!((replay.damage.clone(), replay.truncated_bytes), (None, 0));
    assert_eq!((replay.valid_len, replay.file_len), (full, full + 4096));
    assert_eq!(file_len(&path), full + 4096);
    assert!(replay.cut_saved_to.is_none());
}

#[test]
fn foreign_file_is_refused_and_left_alone() {
    let tmp = TempDir::new("foreign");
    std::fs::create_dir_all(&tmp.0).expect("mkdir");
    let path = tmp.0.join(file_name(0));
    std::fs::write(&path, b"this is somebody else's file").expect("write");
    let d = tmp.0.clone();
    let err = run1(move || {
        let d = d.clone();
        async move { open_plain(&d, 0).await.map(drop).map_err(|e| e.kind()) }
    });
    assert_eq!(err, Err(io::ErrorKind::InvalidData));
    assert_eq!(
        std::fs::read(&path).expect("read"),
        b"this is somebody else's file"
    );
}

#[test]
fn torn_header_starts_a_fresh_journal() {
    let tmp = TempDir::new("torn-header");
    std::fs::create_dir_all(&tmp.0).expect("mkdir");
    let path = tmp.0.join(file_name(0));
    std::fs::write(&path, b"RCJOU").expect("write");
    let replay = reopen(&tmp.0);
    assert_eq!(replay.damage, Some(Damage::TornHeader { len: 5 }));
    assert_eq!(replay.records().len(), 0);
    assert_eq!(file_len(&path), HEADER_LEN);
}

#[test]
fn invalid_payloads_are_refused() {
    let tmp = TempDir::new("invalid");
    let d = tmp.0.clone();
    let kinds = run1(move || {
        let d = d.clone();
        async move {
            let (j, _) = open_plain(&d, 0).await.expect("open");
            let empty = j.append(b"").await.map_err(|e| e.kind());
            let huge = vec![1u8; flash_sale::journal::MAX_RECORD_LEN + 1];
            let huge = j.append(&huge).await.map_err(|e| e.kind());
            j.append(b"fine").await.expect("a valid record still goes in");
            (empty, huge, j.stats().records, j.is_failed())
        }
    });
    assert_eq!(
        kinds,
        (
            Err(io::ErrorKind::InvalidInput),
            Err(io::ErrorKind::InvalidInput),
            1,
            false
        )
    );
}
