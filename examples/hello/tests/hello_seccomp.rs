//! The `hello` binary where a seccomp filter makes `io_uring_setup` fail with `EPERM` (what
//! Docker's and Kubernetes' default profiles do): with the default driver choice it serves
//! HTTP on the epoll driver and says why on stderr; with `RINGCORE_DRIVER=io_uring` it
//! refuses to start with the cause and the remedy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// `io_uring_setup`: the same number on x86_64 and aarch64.
const NR_IO_URING_SETUP: u32 = 425;
/// `offsetof(struct seccomp_data, arch)`.
const ARCH_OFFSET: u32 = 4;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// A filter that fails `io_uring_setup` with `EPERM` on this architecture and allows
/// everything else.
fn deny_io_uring_setup() -> Vec<libc::sock_filter> {
    vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, ARCH_OFFSET),
        // Another architecture's syscall numbers mean something else: allow.
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, AUDIT_ARCH, 0, 3),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            NR_IO_URING_SETUP,
            0,
            1,
        ),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA),
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Starts `hello` on one core with the filter installed between fork and exec.
fn spawn_filtered(driver_env: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hello"));
    cmd.args(["--addr", "127.0.0.1:0", "--cores", "1"])
        .env_remove("RINGCORE_DRIVER")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = driver_env {
        cmd.env("RINGCORE_DRIVER", d);
    }
    let filter = deny_io_uring_setup();
    // SAFETY: between fork and exec the closure makes two prctl(2) calls (async-signal-safe)
    // with a pointer to the filter program in the child's own copy of this process's memory,
    // which outlives the calls (the kernel copies the program); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("start hello under the seccomp filter")
}

/// Reads all of a pipe on a thread; the handle gives the text once the pipe closes.
fn collect(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Waits (bounded) for the child to exit, killing it past `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("hello did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn auto_falls_back_to_epoll_serves_http_and_says_why() {
    let mut child = spawn_filtered(None);
    let stderr = collect(child.stderr.take().expect("stderr"));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = match lines.next() {
        Some(Ok(l)) => l,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no listening line ({other:?}); stderr: {}",
                stderr.join().unwrap_or_default()
            );
        }
    };
    assert!(
        first.ends_with("(driver: epoll)"),
        "the start-up line names the driver: {first:?}"
    );
    let addr = first
        .strip_prefix("hello listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_string();

    // Two requests on one keep-alive connection, answered on epoll.
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let req = format!("GET /plaintext HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for _ in 0..2 {
        s.write_all(req.as_bytes()).expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"Hello, World!") {
            let n = s.read(&mut buf).expect("response in time");
            assert!(n > 0, "server closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            assert!(got.len() < 4096, "{:?}", String::from_utf8_lossy(&got));
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    }
    drop(s);

    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill with the pid of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "hello exited with {status}");
    let err = stderr.join().expect("stderr reader");
    assert!(
        err.contains("io_uring is unavailable, using the epoll driver"),
        "the fallback is logged: {err}"
    );
    assert!(
        err.contains("EPERM") && err.contains("seccomp"),
        "the log says why: {err}"
    );
    assert_eq!(
        err.matches("using the epoll driver").count(),
        1,
        "one line, not one per core: {err}"
    );
}

#[test]
fn forced_io_uring_refuses_to_start_with_the_cause() {
    let mut child = spawn_filtered(Some("io_uring"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    let stdout = collect(child.stdout.take().expect("stdout"));
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let (out, err) = (
        stdout.join().expect("stdout reader"),
        stderr.join().expect("stderr reader"),
    );
    assert!(
        !status.success(),
        "started although io_uring was forced and denied: {out}"
    );
    assert!(!out.contains("listening on"), "{out}");
    assert!(err.contains("ringcore cannot start"), "{err}");
    assert!(err.contains("EPERM") && err.contains("seccomp"), "{err}");
    assert!(err.contains("Remedy"), "{err}");
    assert!(
        !err.contains("using the epoll driver"),
        "no fallback when forced: {err}"
    );
}
