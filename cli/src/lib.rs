//! The command-line conventions every ringcore binary shares.
//!
//! Every binary of the workspace (`flash-sale`, `hello`, `echo`, `ringcore-load` and the
//! benchmark servers) parses its arguments with clap's derive API, so all of them answer
//! `--help` (exit 0), `--version`, and take `--flag value` and `--flag=value` alike; a bad
//! command line exits 2 with a message. The one thing they all take, the cores to run on, has
//! one grammar, [`CoreSpec`]:
//!
//! | `--cores` | meaning |
//! |---|---|
//! | `all` | every core this process may run on (its CPU affinity mask) |
//! | `N` (`N >= 1`) | the first `N` cores of that mask; `0` is an error, not core 0 |
//! | `0,2-3` | exactly these core ids: a comma-separated list of ids and inclusive ranges; one id alone is written `3,` (or `3-3`) |
//!
//! ```
//! use clap::Parser;
//! use ringcore_cli::CoreSpec;
//!
//! #[derive(Parser)]
//! #[command(version)]
//! struct Args {
//!     /// Cores to run on: all, N (the first N allowed), or a list such as 0,2-3.
//!     #[arg(long, default_value = "all")]
//!     cores: CoreSpec,
//! }
//!
//! let a = Args::try_parse_from(["server", "--cores=0,2-3"]).unwrap();
//! assert_eq!(a.cores, CoreSpec::List(vec![0, 2, 3]));
//! let a = Args::try_parse_from(["server", "--cores", "2"]).unwrap();
//! assert_eq!(a.cores, CoreSpec::First(2));
//! assert!(Args::try_parse_from(["server", "--cores", "0"]).is_err());
//! ```

mod cores;
mod values;

pub use clap;
pub use cores::CoreSpec;
pub use values::{millis, non_negative, secs};

/// Prints `name: message` to stderr and returns exit status 1: for a failure after the
/// command line was accepted (clap itself exits 2 for a bad command line).
pub fn fail(name: &str, message: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("{name}: {message}");
    std::process::ExitCode::FAILURE
}
