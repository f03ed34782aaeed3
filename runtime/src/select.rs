//! Choosing the I/O driver once, at start-up: io_uring where the kernel allows it, epoll
//! where it does not.
//!
//! [`Driver::Auto`] (the default) probes io_uring once per runtime, in
//! [`Builder::build`](crate::Builder::build): a small ring is set up and the kernel's probe
//! interface (`IORING_REGISTER_PROBE`) is asked for every opcode the driver uses, and the ring
//! parameters for every feature it needs. Anything missing makes the runtime fall back to the
//! epoll driver, with one `info` line (target `ringcore_runtime`) that names the reason:
//! `EPERM` from a seccomp filter, `kernel.io_uring_disabled`, or the missing feature or opcode.
//! [`Driver::IoUring`] keeps the strict behaviour: `run` fails with an error naming the cause
//! and the remedy. [`Driver::Epoll`] skips io_uring altogether.
//!
//! The environment variable `RINGCORE_DRIVER` (`auto`, `io_uring`, `epoll`) replaces
//! [`Driver::Auto`] only: a driver chosen in code wins over the environment, so a program
//! (or test) that needs one driver keeps it. Any other value of the variable is a start-up
//! error, whatever the code chose, so a typo never goes unnoticed.

use std::fmt;
use std::io;

use crate::driver::uring;

/// The environment variable that picks the driver when the code leaves it at [`Driver::Auto`].
pub const DRIVER_ENV: &str = "RINGCORE_DRIVER";

/// Which I/O driver a runtime should use (see [`Builder::driver`](crate::Builder::driver)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// io_uring if this kernel and process allow it (probed at start), else epoll, with one
    /// `info` log line naming why. `RINGCORE_DRIVER` may replace this choice.
    #[default]
    Auto,
    /// io_uring only: starting fails with the cause and remedy where it is unavailable.
    IoUring,
    /// The epoll (readiness) driver, even where io_uring is available.
    Epoll,
}

/// The driver a runtime actually runs on (see [`driver_kind`](crate::driver_kind)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// One io_uring per core.
    IoUring,
    /// One epoll instance per core, plus a small blocking pool for file I/O.
    Epoll,
}

impl DriverKind {
    /// `"io_uring"` or `"epoll"` (the spelling `RINGCORE_DRIVER` accepts).
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Driver {
    type Err = String;

    /// `auto`, `io_uring` (or `io-uring`, `uring`), `epoll`; case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Driver::Auto),
            "io_uring" | "io-uring" | "iouring" | "uring" => Ok(Driver::IoUring),
            "epoll" => Ok(Driver::Epoll),
            other => Err(format!(
                "unknown driver {other:?}: expected `auto`, `io_uring` or `epoll`"
            )),
        }
    }
}

/// The choice after the environment is applied (`None` when the variable is unset or empty).
pub(crate) fn apply_env(requested: Driver, env: Option<&str>) -> io::Result<Driver> {
    let from_env = match env.map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(v.parse::<Driver>().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ringcore cannot start: {DRIVER_ENV}={v:?}: {e}"),
            )
        })?),
    };
    Ok(match (requested, from_env) {
        (Driver::Auto, Some(d)) => d,
        (d, _) => d,
    })
}

/// Resolves the driver for a new runtime: reads `RINGCORE_DRIVER`, and for `Auto` probes
/// io_uring (logging the reason when it falls back).
pub(crate) fn resolve(requested: Driver, portable: bool) -> io::Result<DriverKind> {
    let env = std::env::var(DRIVER_ENV).ok();
    match apply_env(requested, env.as_deref())? {
        Driver::IoUring => Ok(DriverKind::IoUring),
        Driver::Epoll => Ok(DriverKind::Epoll),
        Driver::Auto => match uring::check(portable) {
            Ok(()) => Ok(DriverKind::IoUring),
            Err(why) => {
                tracing::info!(
                    target: "ringcore_runtime",
                    "io_uring is unavailable, using the epoll driver: {why}"
                );
                Ok(DriverKind::Epoll)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_replaces_auto_only() {
        assert_eq!(apply_env(Driver::Auto, None).ok(), Some(Driver::Auto));
        assert_eq!(apply_env(Driver::Auto, Some("")).ok(), Some(Driver::Auto));
        assert_eq!(apply_env(Driver::Auto, Some("epoll")).ok(), Some(Driver::Epoll));
        assert_eq!(
            apply_env(Driver::Auto, Some(" IO_URING ")).ok(),
            Some(Driver::IoUring)
        );
        assert_eq!(
            apply_env(Driver::IoUring, Some("epoll")).ok(),
            Some(Driver::IoUring)
        );
        assert_eq!(
            apply_env(Driver::Epoll, Some("io_uring")).ok(),
            Some(Driver::Epoll)
        );
    }

    #[test]
    fn a_bad_env_value_is_an_error_whatever_the_code_chose() {
        for requested in [Driver::Auto, Driver::IoUring, Driver::Epoll] {
            let e = apply_env(requested, Some("kqueue")).expect_err("bad value");
            let msg = e.to_string();
            assert!(msg.contains("RINGCORE_DRIVER") && msg.contains("kqueue"), "{msg}");
            assert!(msg.contains("epoll") && msg.contains("io_uring"), "{msg}");
        }
    }
}
