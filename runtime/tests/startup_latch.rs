//! When one core cannot start, no core runs user code: the shards meet at a start latch
//! once their rings exist, and a failed shard releases the others with the news.
//!
//! One shard is made to fail for real: the open-files limit leaves room for exactly one more
//! ring fd than `run` needs for itself, so the second `io_uring_setup` gets `EMFILE`. This
//! file holds one test on purpose: it changes the process's `RLIMIT_NOFILE`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ringcore_runtime::Runtime;

fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD takes no pointer; it only asks whether `fd` is open.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile(lim: &libc::rlimit) {
    // SAFETY: `lim` is a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) }, 0);
}

#[test]
fn a_shard_that_cannot_start_keeps_every_main_future_from_running() {
    let rt = Runtime::builder()
        .core_count(2)
        .handle_signals(false)
        .build()
        .expect("build");
    assert_eq!(rt.cores().len(), 2, "this test needs two cores");
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();

    // Room for `run`'s own eventfd and one ring; the second ring fails.
    let saved = nofile();
    let mut free = 0;
    let mut limit = 0;
    while free < 2 {
        if !is_open(limit) {
            free += 1;
        }
        limit += 1;
    }
    set_nofile(&libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: saved.rlim_max,
    });
    let out = rt.run(move || {
        let ran = ran2.clone();
        async move {
            ran.fetch_add(1, Ordering::SeqCst);
        }
    });
    set_nofile(&saved);

    let err = match out {
        Ok(v) => panic!("both shards started although one ring could not be created: {v:?}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("ringcore cannot start"), "{err}");
    assert!(err.contains("os error 24"), "EMFILE expected: {err}");
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "no main future may run when a shard failed"
    );
}
