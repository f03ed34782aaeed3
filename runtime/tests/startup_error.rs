//! With io_uring made unavailable by a seccomp filter, start-up with the io_uring driver
//! forced fails with an error that names the cause and the remedy. (`Driver::Auto` falls back
//! to epoll there: `examples/hello/tests/hello_seccomp.rs`.)

use std::thread;

use ringcore_runtime::{Driver, Runtime};

const SYS_IO_URING_SETUP: u32 = 425; // same number on x86_64 and aarch64

/// Installs, on the calling thread only, a filter that fails io_uring_setup with `errno`.
fn deny_io_uring_setup(errno: u32) {
    let filter = [
        // Load the syscall number (offset 0 of struct seccomp_data).
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: SYS_IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | (errno & libc::SECCOMP_RET_DATA),
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error());
    // SAFETY: `prog` points to a valid filter program that outlives the call (the kernel
    // copies it).
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const _,
            0,
            0,
        )
    };
    assert_eq!(r, 0, "PR_SET_SECCOMP: {}", std::io::Error::last_os_error());
}

/// Runs a runtime in a fresh thread that carries the filter (its shard threads inherit it).
fn start_under_filter(errno: u32) -> String {
    thread::spawn(move || {
        deny_io_uring_setup(errno);
        let rt = Runtime::builder()
            .core_count(1)
            .driver(Driver::IoUring)
            .handle_signals(false)
            .build()
            .expect("build");
        match rt.run(|| async {}) {
            Ok(_) => String::from("started although io_uring_setup was denied"),
            Err(e) => e.to_string(),
        }
    })
    .join()
    .expect("filtered thread")
}

#[test]
fn seccomp_enosys_names_cause_and_remedy() {
    let msg = start_under_filter(libc::ENOSYS as u32);
    assert!(msg.contains("ringcore cannot start"), "{msg}");
    assert!(msg.contains("ENOSYS") && msg.contains("seccomp"), "{msg}");
    assert!(msg.contains("Remedy"), "{msg}");
}

#[test]
fn seccomp_eperm_names_cause_and_remedy() {
    let msg = start_under_filter(libc::EPERM as u32);
    assert!(msg.contains("ringcore cannot start"), "{msg}");
    assert!(msg.contains("io_uring"), "{msg}");
    // On this machine kernel.io_uring_disabled is 0, so the cause is the filter.
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
    if disabled.trim() == "0" {
        assert!(msg.contains("seccomp"), "{msg}");
    }
    assert!(msg.contains("Remedy"), "{msg}");
}
