//! The journal's prepared space over a real ring and real files: the file is extended with
//! written, synced zeros ahead of the records, batches overwrite them in place, the space
//! grows in the background as it is used, and replay reads the zero tail as the clean end
//! (of a prepared file, and of a file written before preallocation existed).

use std::path::Path;
use std::rc::Rc;

use flash_sale::journal::{
    encode_file, file_name, Journal, JournalOptions, SyncMode, DEFAULT_PREALLOC, HEADER_LEN,
};
use ringcore_runtime::spawn_local;
use ringcore_testkit::rt::run1;
use ringcore_testkit::tmp::TempDir;

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("order {i}:").into_bytes();
    p.extend((0..(i * 31) % 200).map(|k| (k ^ i) as u8));
    p
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").len()
}

/// Opens core 0's journal in `dir` with `opts`, appends `from..to` one at a time, and returns
/// (records replayed at open, journal end, prepared end, growths, batches past prepared).
fn append_range(dir: &Path, opts: JournalOptions, from: usize, to: usize) -> (usize, u64, u64, u64, u64) {
    let d = dir.to_path_buf();
    run1(move || {
        let (d, opts) = (d.clone(), opts.clone());
        async move {
            let (j, replay) = Journal::open_with(&d, 0, &opts).await.expect("open");
            assert_eq!(replay.damage, None, "{:?}", replay.damage);
            for i in from..to {
                j.append(&payload(i)).await.expect("append");
            }
            let s = j.stats();
            let n = replay.records().len();
            (n, j.end(), j.prepared_end(), s.growths, s.batches_past_prepared)
        }
    })
}

fn replayed(dir: &Path) -> Vec<Vec<u8>> {
    let r = flash_sale::journal::replay(dir, 0).expect("replay");
    assert_eq!((r.damage.clone(), r.truncated_bytes), (None, 0), "a clean end");
    r.payloads().into_iter().map(<[u8]>::to_vec).collect()
}

#[test]
fn batches_overwrite_prepared_zeros_in_place_and_replay_ends_at_the_last_record() {
    let tmp = TempDir::new("inplace");
    let path = tmp.0.join(file_name(0));
    for sync in [SyncMode::DsyncWrite, SyncMode::WriteThenFdatasync] {
        let _ = std::fs::remove_dir_all(&tmp.0);
        let opts = JournalOptions {
            sync,
            ..Default::default()
        };
        let (_, end, prepared, growths, past) = append_range(&tmp.0, opts.clone(), 0, 300);
        // The first step was prepared at open; 300 small records fit in it.
        assert_eq!(prepared, HEADER_LEN + DEFAULT_PREALLOC, "{sync:?}");
        assert_eq!(
            (growths, past),
            (1, 0),
            "{sync:?}: one growth (at open), no batch extended the file"
        );
        assert_eq!(
            file_len(&path),
            prepared,
            "{sync:?}: the file did not change size"
        );
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            bytes[end as usize..].iter().all(|&b| b == 0),
            "zeros after the records"
        );

        // Reopen: every record, the zero tail kept (nothing cut, nothing saved), and the
        // next records go right after the last one.
        let (n, end2, prepared2, growths2, _) = append_range(&tmp.0, opts, 300, 310);
        assert_eq!(n, 300);
        assert!(end2 > end && prepared2 == prepared && growths2 == 0, "{sync:?}");
        let got = replayed(&tmp.0);
        assert_eq!(got, (0..310).map(payload).collect::<Vec<_>>(), "{sync:?}");
        let files = std::fs::read_dir(&tmp.0).expect("ls").count();
        assert_eq!(files, 1, "{sync:?}: only the journal, no side file of cut bytes");
    }
}

#[test]
fn the_space_grows_in_the_background_ahead_of_the_writer() {
    let tmp = TempDir::new("grow");
    let path = tmp.0.join(file_name(0));
    let step = 16 * 1024;
    let d = tmp.0.clone();
    let (end, prepared, growths, past, len) = run1(move || {
        let d = d.clone();
        async move {
            let opts = JournalOptions {
                prealloc: step,
                ..Default::default()
            };
            let (j, _) = Journal::open_with(&d, 0, &opts).await.expect("open");
            let j = Rc::new(j);
            // Eight appenders, 2,000 records (~250 KiB): about fifteen steps.
            let tasks: Vec<_> = (0..8)
                .map(|t| {
                    let j = j.clone();
                    spawn_local(async move {
                        for i in (t..2000).step_by(8) {
                            j.append(&payload(i)).await.expect("append");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("appender");
            }
            let s = j.stats();
            (
                j.end(),
                j.prepared_end(),
                s.growths,
                s.batches_past_prepared,
                file_len(j.path()),
            )
        }
    });
    assert!(growths >= 10, "{growths} growths");
    assert_eq!(past, 0, "no batch outran the prepared space");
    assert!(
        prepared >= end + step / 2,
        "half a step or more ahead: end {end}, prepared {prepared}"
    );
    assert_eq!(len, prepared, "the file is exactly the prepared space");
    assert_eq!(file_len(&path), len);
    let got = replayed(&tmp.0);
    assert_eq!(got.len(), 2000);
}

#[test]
fn a_file_written_before_preallocation_opens_grows_and_keeps_its_records() {
    // What the journal wrote before this change: header, records, and the file ends there
    // (the format is the same, version 1).
    let tmp = TempDir::new("v1");
    std::fs::create_dir_all(&tmp.0).expect("mkdir");
    let path = tmp.0.join(file_name(0));
    let old: Vec<Vec<u8>> = (0..50).map(payload).collect();
    let bytes = encode_file(&old).expect("encode");
    assert_eq!(&bytes[8..12], &1u32.to_le_bytes(), "a version 1 header");
    std::fs::write(&path, &bytes).expect("write v1 file");
    let old_len = bytes.len() as u64;

    let (n, end, prepared, growths, _) = append_range(&tmp.0, JournalOptions::default(), 50, 60);
    assert_eq!(n, 50, "every old record replayed");
    assert!(end > old_len);
    assert_eq!(
        (prepared, growths),
        (old_len + DEFAULT_PREALLOC, 1),
        "prepared at open"
    );
    let now = std::fs::read(&path).expect("read");
    assert_eq!(
        now[..old_len as usize],
        bytes[..],
        "the old records are untouched"
    );
    assert_eq!(replayed(&tmp.0), (0..60).map(payload).collect::<Vec<_>>());
}

#[test]
fn a_torn_append_inside_the_prepared_space_is_cut_and_the_space_prepared_again() {
    let tmp = TempDir::new("torn");
    let path = tmp.0.join(file_name(0));
    let (_, end, prepared, _, _) = append_range(&tmp.0, JournalOptions::default(), 0, 20);
    // A crash during an unacknowledged append: part of its record reached the disk.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[end as usize..end as usize + 11].copy_from_slice(b"\x40\x00\x00\x00\x12\x34\x56\x78abc");
    std::fs::write(&path, &bytes).expect("write");

    let r = flash_sale::journal::replay(&tmp.0, 0).expect("a torn tail is not corruption");
    assert_eq!((r.records().len(), r.valid_len), (20, end));
    assert!(r.damage.is_some());
    let side = r.cut_saved_to.clone().expect("the torn bytes are saved");
    assert_eq!(
        std::fs::read(&side).expect("side file"),
        b"\x40\x00\x00\x00\x12\x34\x56\x78abc",
        "the side file holds the torn bytes, not megabytes of zeros"
    );
    assert_eq!(file_len(&path), end, "cut at the last record");
    // Opening for appends prepares the space again.
    let (n, _, prepared2, growths, _) = append_range(&tmp.0, JournalOptions::default(), 20, 25);
    assert_eq!((n, growths), (20, 1));
    assert_eq!(prepared2, end + DEFAULT_PREALLOC);
    assert!(prepared2 <= prepared + DEFAULT_PREALLOC);
    let r = flash_sale::journal::replay(&tmp.0, 0).expect("replay");
    assert_eq!((r.records().len(), r.damage.clone()), (25, None));
}
