//! The journal with `SyncMode::Direct` over a real ring and real files: batches written with
//! `O_DIRECT` as whole 4 KiB blocks (the last partial block's bytes kept in memory and
//! written again in front of the next batch, zeros after the records), records of every size
//! up to several blocks, many batches, a reopen in the middle of a block; every record replays
//! intact, and past the last record the file holds only zeros. `O_DIRECT` is used exactly
//! where the file system takes it.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use flash_sale::journal::{file_name, Journal, JournalOptions, SyncMode};
use ringcore_runtime::spawn_local;
use ringcore_testkit::rt::run1;
use ringcore_testkit::tmp::TempDir;

/// Whether the file system of `dir` takes `O_DIRECT` (a probe file, opened and removed).
fn takes_o_direct(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
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

/// Record `i`: its number, then 0 to about 9,000 bytes (up to three blocks), sizes chosen to
/// end batches at every offset within a block.
fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("order {i}:").into_bytes();
    let extra = match i % 7 {
        0 => 4096,
        1 => 9000 - (i % 13),
        _ => (i * 131) % 1500,
    };
    p.extend((0..extra).map(|k| (k ^ (i * 7)) as u8));
    p
}

/// Opens core 0's journal in `dir` with `opts` and appends `from..to` from eight tasks
/// (batches of several records, in any order); returns (records replayed at open, the
/// journal's end, whether it wrote with `O_DIRECT`, batches past the prepared space).
fn append(dir: &Path, opts: JournalOptions, from: usize, to: usize) -> (usize, u64, bool, u64) {
    let d = dir.to_path_buf();
    run1(move || {
        let (d, opts) = (d.clone(), opts.clone());
        async move {
            let (j, replay) = Journal::open_with(&d, 0, &opts).await.expect("open");
            assert_eq!(replay.damage, None, "{:?}", replay.damage);
            let j = Rc::new(j);
            let tasks: Vec<_> = (0..8)
                .map(|t| {
                    let j = j.clone();
                    spawn_local(async move {
                        for i in (from + t..to).step_by(8) {
                            j.append(&payload(i)).await.expect("append");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("appender");
            }
            let replayed = replay.records().len();
            (replayed, j.end(), j.is_direct(), j.stats().batches_past_prepared)
        }
    })
}

/// The records replayed from `dir`, sorted by number, and the bytes after the last one.
fn replayed(dir: &Path) -> (Vec<Vec<u8>>, Vec<u8>) {
    let r = flash_sale::journal::replay(dir, 0).expect("replay");
    assert_eq!((r.damage.clone(), r.truncated_bytes), (None, 0), "a clean end");
    let mut got: Vec<Vec<u8>> = r.payloads().into_iter().map(<[u8]>::to_vec).collect();
    got.sort_by_key(|p| {
        let s = std::str::from_utf8(&p[6..p.iter().position(|&b| b == b':').expect("colon")]).expect("utf-8");
        s.parse::<usize>().expect("number")
    });
    let bytes = std::fs::read(dir.join(file_name(0))).expect("read");
    (got, bytes[r.valid_len as usize..].to_vec())
}

fn check_direct_journal(root: &Path, prealloc: u64) {
    let tmp = TempDir::new_in(root, "blocks");
    let want_direct = takes_o_direct(&tmp.0);
    let opts = JournalOptions {
        prealloc,
        sync: SyncMode::Direct,
        ..Default::default()
    };
    let (n, end, direct, past) = append(&tmp.0, opts.clone(), 0, 400);
    assert_eq!(n, 0);
    assert_eq!(
        direct, want_direct,
        "O_DIRECT used exactly where the file system takes it"
    );
    if prealloc == flash_sale::journal::DEFAULT_PREALLOC {
        // (A small step is outrun by batches of these large records: they extend the file.)
        assert_eq!(past, 0, "every batch fit in the prepared space");
    }
    // The end is inside a block (the records' sizes are not multiples of 4096), so the
    // reopen reads that block's start back and writes it again in front of the next batch.
    assert_ne!(end % 4096, 0, "the test needs an end inside a block");
    let (n, _, _, _) = append(&tmp.0, opts, 400, 700);
    assert_eq!(n, 400, "every record of the first run replayed at the reopen");
    let (got, rest) = replayed(&tmp.0);
    assert_eq!(
        got,
        (0..700).map(payload).collect::<Vec<_>>(),
        "prealloc {prealloc}"
    );
    assert!(
        rest.iter().all(|&b| b == 0),
        "prealloc {prealloc}: only zeros after the last record ({} bytes)",
        rest.len()
    );
}

#[test]
fn direct_batches_of_whole_blocks_replay_every_record_with_and_without_prepared_space() {
    // Under the build's target dir: the disk the project is on (the system temp dir may be
    // a tmpfs, which refuses O_DIRECT).
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // The default prepared space; a small one that grows all the time; none (every batch
    // extends the file).
    for prealloc in [flash_sale::journal::DEFAULT_PREALLOC, 16 * 1024, 0] {
        check_direct_journal(&root, prealloc);
    }
    if !takes_o_direct(&root) {
        eprintln!(
            "{}: the file system refuses O_DIRECT; the buffered fallback was tested",
            root.display()
        );
    }
}
