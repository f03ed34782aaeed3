//! Ring set-up: probe the kernel, pick the best flags it takes, and explain failures.

use std::fs;
use std::io;

use io_uring::{opcode, IoUring, Probe};

/// What the kernel under us can do, decided once at start.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Features {
    pub(crate) single_issuer: bool,
    pub(crate) defer_taskrun: bool,
    pub(crate) coop_taskrun: bool,
    pub(crate) multishot_accept: bool,
    pub(crate) multishot_recv: bool,
    /// `IORING_OP_FTRUNCATE` (6.9+); without it `File::set_len` calls `ftruncate(2)`.
    pub(crate) ftruncate: bool,
}

/// Kernel version as (major, minor), from uname.
fn kernel_version() -> (u32, u32) {
    // SAFETY: utsname is plain old data; uname fills it or fails, and we check.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (0, 0);
    }
    let release: String = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Builds the ring with the strongest flag set the kernel accepts.
pub(crate) fn build(entries: u32, portable: bool) -> io::Result<(IoUring, Features)> {
    let entries = entries.clamp(8, 32768).next_power_of_two();
    let attempts: &[(bool, bool, bool)] = if portable {
        &[(false, false, false)]
    } else {
        // (single_issuer, defer_taskrun, coop_taskrun), best first.
        &[
            (true, true, false),
            (true, false, true),
            (false, false, true),
            (false, false, false),
        ]
    };
    let mut last_err = None;
    for &(single, defer, coop) in attempts {
        let mut b = IoUring::builder();
        b.setup_cqsize(entries.saturating_mul(4)).setup_submit_all();
        if single {
            b.setup_single_issuer();
        }
        if defer {
            b.setup_defer_taskrun();
        }
        if coop {
            b.setup_coop_taskrun();
        }
        match b.build(entries) {
            Ok(ring) => {
                if !ring.params().is_feature_ext_arg() {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "io_uring is too old on this kernel: IORING_FEAT_EXT_ARG (Linux 5.11) \
                         is missing. Remedy: run on Linux 5.19 or newer (6.1+ recommended).",
                    ));
                }
                let features = probe(&ring, single, defer, coop, portable);
                return Ok((ring, features));
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
            Err(e) => return Err(explain(e)),
        }
    }
    Err(explain(
        last_err.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)),
    ))
}

fn probe(ring: &IoUring, single: bool, defer: bool, coop: bool, portable: bool) -> Features {
    let mut probe = Probe::new();
    let probed = ring.submitter().register_probe(&mut probe).is_ok();
    let (major, minor) = kernel_version();
    let at_least = |maj: u32, min: u32| (major, minor) >= (maj, min);
    let accept = probed && probe.is_supported(opcode::Accept::CODE);
    let recv = probed && probe.is_supported(opcode::Recv::CODE);
    Features {
        single_issuer: single,
        defer_taskrun: defer,
        coop_taskrun: coop,
        multishot_accept: !portable && accept && at_least(5, 19),
        multishot_recv: !portable && recv && at_least(6, 0),
        ftruncate: !portable && probed && probe.is_supported(opcode::Ftruncate::CODE),
    }
}

/// Turns a failed `io_uring_setup` into an error naming the cause and the remedy.
pub(crate) fn explain(e: io::Error) -> io::Error {
    let disabled = fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let msg = match e.raw_os_error() {
        Some(libc::ENOSYS) => "io_uring is not available: io_uring_setup returned ENOSYS. Cause: \
             the kernel was built without CONFIG_IO_URING, is older than 5.1, or a seccomp filter \
             (e.g. a container runtime's default profile) blocks the io_uring syscalls. Remedy: \
             run on Linux 5.19+ and allow io_uring_setup/io_uring_enter/io_uring_register in the \
             seccomp profile (Docker: --security-opt seccomp=<profile allowing io_uring>)."
            .to_string(),
        Some(libc::EPERM) | Some(libc::EACCES) => match disabled {
            Some(2) => "io_uring is disabled system-wide: kernel.io_uring_disabled = 2. Remedy: \
                 `sysctl -w kernel.io_uring_disabled=0` (or 1 and add this user to \
                 kernel.io_uring_group)."
                .to_string(),
            Some(1) => "io_uring is restricted: kernel.io_uring_disabled = 1 and this process is \
                 not in kernel.io_uring_group. Remedy: add the user to that group, or \
                 `sysctl -w kernel.io_uring_disabled=0`."
                .to_string(),
            _ => "io_uring_setup was denied (EPERM) although kernel.io_uring_disabled allows it. \
                 Cause: a seccomp filter or a security module (SELinux/AppArmor, a container \
                 runtime's profile) blocks io_uring. Remedy: allow io_uring_setup, \
                 io_uring_enter and io_uring_register for this process."
                .to_string(),
        },
        Some(libc::ENOMEM) => {
            // SAFETY: rlimit is plain old data filled by getrlimit, which we check.
            let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
            // SAFETY: `rl` is a valid, writable rlimit.
            let got = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } == 0;
            format!(
                "io_uring_setup failed with ENOMEM: the ring could not be allocated or locked. \
                 Cause: RLIMIT_MEMLOCK is too low ({}; kernels before 5.12 charge rings to it) \
                 or memory is exhausted. Remedy: raise the limit (`ulimit -l unlimited`, \
                 LimitMEMLOCK= in systemd, --ulimit memlock=-1 in Docker) or use a smaller ring \
                 (Builder::ring_entries).",
                if got {
                    format!("{} bytes", rl.rlim_cur)
                } else {
                    "unknown".into()
                }
            )
        }
        _ => format!("io_uring_setup failed: {e}"),
    };
    io::Error::new(e.kind(), format!("ringcore cannot start: {msg} (os error: {e})"))
}
