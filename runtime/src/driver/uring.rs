//! Ring set-up: probe the kernel, pick the best flags it takes, and explain failures.

use std::fs;
use std::io;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring, Probe};

use crate::sys;

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
    /// `IORING_ENTER_ABS_TIMER` (6.12+): a park's timeout is an absolute `CLOCK_MONOTONIC`
    /// time, so parking needs no clock read (`Driver::parks_on_absolute_deadline`).
    pub(crate) abs_timer: bool,
}

/// Opcodes every io_uring path of the driver submits, with a name for the error message.
/// `SHUTDOWN` (5.11) is the newest of them.
const REQUIRED_OPCODES: &[(u8, &str)] = &[
    (opcode::Nop::CODE, "IORING_OP_NOP"),
    (opcode::Read::CODE, "IORING_OP_READ"),
    (opcode::Write::CODE, "IORING_OP_WRITE"),
    (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
    (opcode::OpenAt::CODE, "IORING_OP_OPENAT"),
    (opcode::Close::CODE, "IORING_OP_CLOSE"),
    (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
    (opcode::Connect::CODE, "IORING_OP_CONNECT"),
    (opcode::Recv::CODE, "IORING_OP_RECV"),
    (opcode::Send::CODE, "IORING_OP_SEND"),
    (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
    (opcode::Shutdown::CODE, "IORING_OP_SHUTDOWN"),
    (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
];

/// Builds the ring with the strongest flag set the kernel accepts.
///
/// Fails (with the cause and the remedy) when `io_uring_setup` is refused, or when the ring
/// lacks a feature or an opcode the driver needs (asked through the kernel's probe interface,
/// never inferred from the kernel version: gVisor and backports make versions meaningless).
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
                let features = probe(&ring, single, defer, coop, portable).map_err(|missing| {
                    io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "ringcore cannot start: {missing}. Remedy: run on Linux 5.11 or \
                             newer with the full io_uring (6.1+ recommended), or use the epoll \
                             driver (Driver::Auto or Driver::Epoll, RINGCORE_DRIVER=epoll)."
                        ),
                    )
                })?;
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

/// Whether the io_uring driver can run here: sets up a small ring and probes it exactly as
/// [`build`] does. `Err` carries the reason, for the fallback's log line.
pub(crate) fn check(portable: bool) -> Result<(), String> {
    match build(8, portable) {
        Ok(_) => Ok(()),
        Err(e) => {
            let msg = e.to_string();
            Err(msg
                .strip_prefix("ringcore cannot start: ")
                .map(str::to_string)
                .unwrap_or(msg))
        }
    }
}

/// What the ring can do, from its parameters and the kernel's opcode probe; `Err` names the
/// first thing the driver needs and the ring lacks.
fn probe(ring: &IoUring, single: bool, defer: bool, coop: bool, portable: bool) -> Result<Features, String> {
    let params = ring.params();
    if !params.is_feature_ext_arg() {
        return Err(
            "io_uring lacks IORING_FEAT_EXT_ARG (a ring wait with a timeout, Linux 5.11), which \
             the driver's park needs"
                .into(),
        );
    }
    let mut probe = Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Err(format!(
            "io_uring refuses IORING_REGISTER_PROBE ({e}), so the opcodes the driver needs \
             cannot be checked"
        ));
    }
    if let Some((_, name)) = REQUIRED_OPCODES
        .iter()
        .find(|(code, _)| !probe.is_supported(*code))
    {
        return Err(format!(
            "io_uring lacks the opcode {name}, which the driver needs"
        ));
    }
    // The probe lists opcodes, not per-opcode flags. Multishot accept arrived in 5.19 with
    // IORING_OP_SOCKET, multishot receive (and provided buffer rings) in 6.0 with
    // IORING_OP_SEND_ZC: those opcodes stand for the flags. A ring without them gets the
    // single-shot paths; a buffer ring that cannot be registered turns multishot receive off.
    let socket_op = probe.is_supported(opcode::Socket::CODE);
    let send_zc = probe.is_supported(opcode::SendZc::CODE);
    Ok(Features {
        single_issuer: single,
        defer_taskrun: defer,
        coop_taskrun: coop,
        multishot_accept: !portable && socket_op,
        multishot_recv: !portable && send_zc,
        ftruncate: !portable && probe.is_supported(opcode::Ftruncate::CODE),
        abs_timer: !portable && accepts_abs_timer(ring),
    })
}

/// `CLOCK_MONOTONIC` (the ring's clock) against `Instant`, read once, so that an `Instant`
/// deadline becomes an absolute ring timeout without reading the clock again. (`Instant` is
/// `CLOCK_MONOTONIC` on Linux, but its value is not exposed: the two are read back to back,
/// so a deadline converted through them is late by at most the time between the reads.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingClock {
    at: Instant,
    monotonic: Duration,
    /// The last deadline converted, and its value on the ring's clock: a core parks on the
    /// same earliest timer turn after turn (a connection's idle timer stays put for its whole
    /// period), so most conversions are this one again.
    last: Option<(Instant, Duration)>,
}

impl RingClock {
    pub(crate) fn new() -> Option<Self> {
        let at = Instant::now();
        let monotonic = sys::clock(libc::CLOCK_MONOTONIC)?;
        Some(RingClock {
            at,
            monotonic,
            last: None,
        })
    }

    /// `deadline` on the ring's clock (a deadline before this clock's reading: that reading,
    /// which has passed).
    pub(crate) fn timespec(&mut self, deadline: Instant) -> types::Timespec {
        let t = self.ring_time(deadline);
        types::Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos())
    }

    /// `deadline` on the ring's clock, as a time since its epoch.
    fn ring_time(&mut self, deadline: Instant) -> Duration {
        match self.last {
            Some((d, t)) if d == deadline => t,
            _ => {
                let t = self.monotonic + deadline.saturating_duration_since(self.at);
                self.last = Some((deadline, t));
                t
            }
        }
    }
}

/// Whether the kernel takes `IORING_ENTER_ABS_TIMER`: an enter that submits nothing and
/// waits for nothing, with that flag. A kernel without it (before 6.12) refuses the flag with
/// `EINVAL` before doing anything. (The ring is never `SQPOLL`, where such an enter would
/// not reach the kernel.)
///
/// Not in a time namespace that moves `CLOCK_MONOTONIC`: kernels up to 7.0 read an absolute
/// ring timeout on the host's clock, not the caller's (fixed by "io_uring/wait: honour
/// caller's time namespace for IORING_ENTER_ABS_TIMER"), so a deadline taken from the
/// namespace's clock would pass at once or far too late.
fn accepts_abs_timer(ring: &IoUring) -> bool {
    if !monotonic_unshifted() {
        return false;
    }
    let ts = types::Timespec::new();
    let args = types::SubmitArgs::new().timespec(&ts);
    ring.submitter()
        .submit_with_args_and_flags(0, &args, io_uring::EnterFlags::ABS_TIMER)
        .is_ok()
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
    io::Error::new(
        e.kind(),
        format!(
            "ringcore cannot start: {msg} (os error: {e}) Or run on the epoll driver \
             (Driver::Auto falls back to it; Driver::Epoll or RINGCORE_DRIVER=epoll forces it)."
        ),
    )
}

/// Whether this process's `CLOCK_MONOTONIC` is the host's: no time namespace offset
/// (`/proc/self/timens_offsets`; a kernel without time namespaces has no such file).
fn monotonic_unshifted() -> bool {
    match fs::read_to_string("/proc/self/timens_offsets") {
        Ok(text) => monotonic_offset_is_zero(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::metadata("/proc/self/stat").is_ok(),
        Err(_) => false,
    }
}

/// Reads `timens_offsets` (lines `monotonic SECS NANOS` and `boottime SECS NANOS`): true
/// only for a `monotonic` line with a zero offset.
fn monotonic_offset_is_zero(text: &str) -> bool {
    text.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("monotonic")
            && words.next() == Some("0")
            && words.next() == Some("0")
            && words.next().is_none()
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{monotonic_offset_is_zero, RingClock};

    #[test]
    fn the_ring_clock_converts_a_deadline_alike_whether_kept_or_not() {
        let Some(mut clock) = RingClock::new() else {
            panic!("CLOCK_MONOTONIC is readable on Linux");
        };
        let now = Instant::now();
        let (a, b) = (
            now + Duration::from_millis(200),
            now + Duration::from_micros(1_500),
        );
        let first = clock.ring_time(a);
        // The same deadline again (kept), another, then the first again: each as converted
        // afresh, and 200 ms and 1.5 ms apart on the ring's clock as they are as instants.
        assert_eq!(clock.ring_time(a), first);
        let other = clock.ring_time(b);
        assert_eq!(first - other, a - b);
        assert_eq!(clock.ring_time(a), first);
        assert_eq!(RingClock { last: None, ..clock }.ring_time(b), other);
        // A deadline before the clock's reading is that reading.
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        assert_eq!(clock.ring_time(past), clock.monotonic);
        // What the ring is given is that time.
        let ts = clock.timespec(a);
        let direct = io_uring::types::Timespec::new()
            .sec(first.as_secs())
            .nsec(first.subsec_nanos());
        assert_eq!(format!("{ts:?}"), format!("{direct:?}"));
    }

    #[test]
    fn only_a_zero_monotonic_offset_counts_as_unshifted() {
        assert!(monotonic_offset_is_zero(
            "monotonic           0         0\nboottime            0         0\n"
        ));
        assert!(monotonic_offset_is_zero("boottime 5 0\nmonotonic 0 0\n"));
        assert!(!monotonic_offset_is_zero(
            "monotonic         -10         0\nboottime 0 0\n"
        ));
        assert!(!monotonic_offset_is_zero("monotonic 0 500\n"));
        assert!(!monotonic_offset_is_zero("boottime 0 0\n"));
        assert!(!monotonic_offset_is_zero(""));
    }
}
