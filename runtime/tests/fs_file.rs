//! Files on the ring: write and read back, large and concurrent positioned writes, syncs,
//! truncation (on the ring and through the `ftruncate(2)` fallback), open errors, and a dropped
//! in-flight open that leaks neither its op slot nor the fd the kernel opens for nobody.

use std::ffi::CString;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use ringcore_runtime::fs::{File, OpenOptions};
use ringcore_runtime::time::{sleep, timeout};
use ringcore_runtime::{driver_kind, local_state, spawn_local, DriverKind};
use ringcore_testkit::rt::{one_core, run_on};
use ringcore_testkit::tmp::TempDir;

/// Deterministic bytes, different for each `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .open(path)
        .await
        .expect("open read-write")
}

#[ringcore_runtime::test]
async fn write_then_read_back() {
    let dir = TempDir::new("rw");
    let path = dir.join("a.txt");
    let file = open_rw(&path).await;
    let (res, buf) = file.write_at(b"hello, ring".to_vec(), 0).await;
    assert_eq!(res.expect("write"), 11);
    assert_eq!(buf, b"hello, ring", "the buffer comes back unchanged");
    let (res, _) = file.write_at(b"RING" as &'static [u8], 7).await;
    assert_eq!(res.expect("overwrite"), 4);

    let (res, buf) = file.read_at(Vec::with_capacity(64), 0).await;
    let n = res.expect("read");
    assert_eq!(&buf[..n], b"hello, RING");
    // Reads append to what the buffer already holds.
    let (res, buf) = file.read_at(buf, 7).await;
    assert_eq!(res.expect("read again"), 4);
    assert_eq!(&buf[..], b"hello, RINGRING");
    // At the end of the file: Ok(0).
    let (res, _) = file.read_at(Vec::with_capacity(8), 11).await;
    assert_eq!(res.expect("read at end"), 0);
    // A full buffer is refused rather than mistaken for end of file.
    let (res, _) = file.read_at(Vec::new(), 0).await;
    assert_eq!(res.map_err(|e| e.kind()), Err(io::ErrorKind::InvalidInput));

    assert_eq!(file.metadata().expect("fstat").len(), 11);
    file.close().await.expect("close");

    // Another process-level reader sees the same bytes; File::open reads them back too.
    assert_eq!(std::fs::read(&path).expect("std read"), b"hello, RING");
    let ro = File::open(&path).await.expect("open read-only");
    let (res, buf) = ro.read_exact_at(Vec::with_capacity(4), 7).await;
    res.expect("read exact");
    assert_eq!(buf, b"RING");
    let (res, _) = ro.read_exact_at(Vec::with_capacity(8), 7).await;
    assert_eq!(res.map_err(|e| e.kind()), Err(io::ErrorKind::UnexpectedEof));
    // Read-only means read-only.
    let (res, _) = ro.write_at(b"x".to_vec(), 0).await;
    assert!(res.is_err(), "write on a read-only file must fail");
    drop(ro);

    // File::create truncates an existing file.
    let f = File::create(&path).await.expect("create");
    assert_eq!(f.metadata().expect("fstat").len(), 0);
    f.close().await.expect("close");
}

#[ringcore_runtime::test]
async fn write_all_at_large_buffer() {
    let dir = TempDir::new("large");
    let path = dir.join("big.bin");
    let data = pattern(1, 24 * 1024 * 1024 + 123);
    let file = open_rw(&path).await;
    // Start past zero: the hole before it reads as zeros.
    let (res, data) = file.write_all_at(data, 4096).await;
    res.expect("write_all_at");
    file.sync_all().await.expect("sync_all");
    assert_eq!(file.metadata().expect("fstat").len(), 4096 + data.len() as u64);

    let (res, back) = file.read_exact_at(Vec::with_capacity(data.len() + 4096), 0).await;
    res.expect("read back");
    assert!(back[..4096].iter().all(|&b| b == 0), "the hole reads as zeros");
    assert!(back[4096..] == data[..], "the large write reads back byte-exact");
    file.close().await.expect("close");
}

#[ringcore_runtime::test]
async fn sync_data_and_reopen() {
    let dir = TempDir::new("sync");
    let path = dir.join("s.log");
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .expect("create_new");
    for i in 0..10u64 {
        let rec = format!("record {i}\n");
        let pos = file.metadata().expect("fstat").len();
        let (res, _) = file.write_all_at(rec, pos).await;
        res.expect("write");
        file.sync_data().await.expect("sync_data");
    }
    file.close().await.expect("close");
    let text = std::fs::read_to_string(&path).expect("std read");
    assert_eq!(text.lines().count(), 10);
    assert_eq!(text.lines().last(), Some("record 9"));

    let again = OpenOptions::new().write(true).create_new(true).open(&path).await;
    assert_eq!(
        again.map(drop).map_err(|e| e.kind()),
        Err(io::ErrorKind::AlreadyExists)
    );

    // Append mode: writes land at the end whatever position they name.
    let app = OpenOptions::new()
        .append(true)
        .open(&path)
        .await
        .expect("open append");
    let (res, _) = app.write_all_at(b"tail\n".to_vec(), 0).await;
    res.expect("append");
    app.sync_all().await.expect("sync_all");
    drop(app);
    assert!(std::fs::read_to_string(&path)
        .expect("read")
        .ends_with("record 9\ntail\n"));
}

/// Data-sync writes (`RWF_DSYNC`): over prepared zeros in place and past the end, read back
/// through a second, independent fd; errors come back as for a plain write. (That the device
/// holds them after a power cut is not observable here; the flag's effect shows as the
/// missing `fdatasync` in `strace -c` on the epoll driver, see docs/benchmarks.md.)
#[ringcore_runtime::test]
async fn write_all_at_dsync_overwrites_in_place_and_extends() {
    let dir = TempDir::new("dsync");
    let path = dir.join("d.log");
    let file = open_rw(&path).await;
    let (res, _) = file.write_all_at(vec![0u8; 64 * 1024], 0).await;
    res.expect("prepare zeros");
    file.sync_data().await.expect("sync zeros");

    let mut expect = vec![0u8; 64 * 1024];
    let mut pos = 0usize;
    for i in 0..50u64 {
        let rec = pattern(i, 100 + (i as usize * 37) % 900);
        let (res, rec) = file.write_all_at_dsync(rec, pos as u64).await;
        res.expect("dsync write");
        expect[pos..pos + rec.len()].copy_from_slice(&rec);
        pos += rec.len();
    }
    assert_eq!(
        file.metadata().expect("fstat").len(),
        64 * 1024,
        "in place: no growth"
    );
    // Past the end: the file grows, and the write reports all of it.
    let tail = pattern(99, 3000);
    let (res, tail) = file.write_at_dsync(tail, 64 * 1024 - 1000).await;
    assert_eq!(res.expect("dsync write past the end"), 3000);
    expect.truncate(64 * 1024 - 1000);
    expect.extend_from_slice(&tail);
    assert_eq!(std::fs::read(&path).expect("std read"), expect);

    let ro = File::open(&path).await.expect("open read-only");
    let (res, _) = ro.write_all_at_dsync(b"x".to_vec(), 0).await;
    assert_eq!(
        res.expect_err("write on a read-only fd").raw_os_error(),
        Some(libc::EBADF)
    );
}

#[ringcore_runtime::test]
async fn open_missing_file_is_not_found() {
    let dir = TempDir::new("missing");
    let err = File::open(dir.join("nope"))
        .await
        .expect_err("missing file opened");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    // Creating inside a missing directory fails the same way.
    let err = File::create(dir.join("no-dir/x"))
        .await
        .expect_err("created in a missing dir");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let err = File::open("bad\0path").await.expect_err("NUL in path");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = OpenOptions::new()
        .open(dir.join("x"))
        .await
        .expect_err("no access mode");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

fn set_len_truncates(portable: bool) {
    run_on(one_core(portable), || async {
        let dir = TempDir::new("trunc");
        let path = dir.join("t.bin");
        let file = open_rw(&path).await;
        let data = pattern(2, 100);
        let (res, data) = file.write_all_at(data, 0).await;
        res.expect("write");

        file.set_len(10).await.expect("shrink");
        assert_eq!(file.metadata().expect("fstat").len(), 10);
        let (res, back) = file.read_at(Vec::with_capacity(100), 0).await;
        assert_eq!(res.expect("read"), 10, "nothing past the new end");
        assert_eq!(back, data[..10]);

        file.set_len(20).await.expect("extend");
        assert_eq!(file.metadata().expect("fstat").len(), 20);
        let (res, back) = file.read_exact_at(Vec::with_capacity(20), 0).await;
        res.expect("read extended");
        assert_eq!(back[..10], data[..10]);
        assert!(back[10..].iter().all(|&b| b == 0), "the extension reads as zeros");
        file.sync_all().await.expect("sync");
        drop(file);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 20);

        let ro = File::open(&path).await.expect("open read-only");
        assert!(ro.set_len(0).await.is_err(), "set_len needs write access");
    });
}

#[test]
fn set_len_truncates_on_the_ring() {
    set_len_truncates(false);
}

#[test]
fn set_len_truncates_portable() {
    set_len_truncates(true);
}

#[test]
fn concurrent_writes_at_different_offsets() {
    const TASKS: usize = 256;
    const BLOCK: usize = 4096 + 17; // not page-aligned, so neighbours share pages
    ringcore_runtime::block_on_with(|| async {
        let dir = TempDir::new("concurrent");
        let path = dir.join("c.bin");
        let file = Rc::new(open_rw(&path).await);
        let handles: Vec<_> = (0..TASKS)
            .rev()
            .map(|i| {
                let file = file.clone();
                spawn_local(async move {
                    let (res, _) = file
                        .write_all_at(pattern(i as u64 + 10, BLOCK), (i * BLOCK) as u64)
                        .await;
                    res.expect("write block");
                })
            })
            .collect();
        for h in handles {
            h.await.expect("writer task");
        }
        file.sync_data().await.expect("sync");
        let (res, back) = file.read_exact_at(Vec::with_capacity(TASKS * BLOCK), 0).await;
        res.expect("read back");
        for i in 0..TASKS {
            assert!(
                back[i * BLOCK..(i + 1) * BLOCK] == pattern(i as u64 + 10, BLOCK)[..],
                "block {i} is wrong"
            );
        }
        assert_eq!(file.metadata().expect("fstat").len(), (TASKS * BLOCK) as u64);
    });
}

/// Fds of this process that point at `path`.
fn fds_open_on(path: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path))
        .count()
}

/// Waits (bounded) until the driver has collected every cancelled op's completion.
async fn settle(baseline_ops: usize) {
    for _ in 0..200 {
        if local_state().ops_in_flight == baseline_ops {
            return;
        }
        sleep(Duration::from_millis(5)).await;
    }
}

#[ringcore_runtime::test]
async fn dropped_open_leaks_neither_slot_nor_fd() {
    let dir = TempDir::new("drop-open");
    let path = dir.join("f");
    std::fs::write(&path, b"x").expect("create");
    let ops0 = local_state().ops_in_flight;
    for _ in 0..50 {
        // One poll queues the OPENAT; dropping the future right away means the kernel sees
        // the SQE only after the future (and the caller's path) are gone: the op must own
        // the path, and the fd the kernel opens for nobody must be closed by the driver.
        let mut fut = Box::pin(File::open(&path));
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        assert!(
            first.is_pending(),
            "the open cannot complete before the ring is entered"
        );
        drop(fut);
    }
    settle(ops0).await;
    assert_eq!(
        local_state().ops_in_flight,
        ops0,
        "every dropped open's slot was freed"
    );
    assert_eq!(
        fds_open_on(&path),
        0,
        "no fd opened for a dropped open is left open"
    );
}

#[ringcore_runtime::test]
async fn dropped_read_in_flight_loses_nothing() {
    let dir = TempDir::new("drop-read");
    let fifo = dir.join("p");
    let c = CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    // Read-write on a FIFO never blocks the open, and a read then waits for data.
    let pipe = open_rw(&fifo).await;
    if driver_kind() == DriverKind::Epoll {
        // The epoll driver runs file calls on its blocking pool as `pread`/`pwrite`, which
        // a FIFO refuses (a positioned call needs a seekable file), and a call on the pool
        // cannot be cancelled: what this test checks exists only on io_uring.
        let (res, _) = pipe.read_at(Vec::with_capacity(64), 0).await;
        let e = res.expect_err("pread on a FIFO");
        assert_eq!(e.raw_os_error(), Some(libc::ESPIPE), "{e}");
        return;
    }
    let ops0 = local_state().ops_in_flight;
    for _ in 0..3 {
        let r = timeout(Duration::from_millis(5), pipe.read_at(Vec::with_capacity(64), 0)).await;
        assert!(r.is_err(), "no data yet: the read must still be in flight");
    }
    settle(ops0).await;
    assert_eq!(
        local_state().ops_in_flight,
        ops0,
        "the cancelled reads' slots were freed"
    );
    let (res, _) = pipe.write_all_at(b"after-cancel".to_vec(), 0).await;
    res.expect("write into the FIFO");
    let (res, buf) = timeout(Duration::from_secs(5), pipe.read_at(Vec::with_capacity(64), 0))
        .await
        .expect("read in time");
    assert_eq!(res.expect("read"), 12);
    assert_eq!(buf, b"after-cancel", "a cancelled read consumed nothing");
    pipe.close().await.expect("close");
}
