//! `flash-sale demo`: start the service, create items, fire a bounded flash crowd, report.

use std::process::ExitCode;

/// Runs the demo with the arguments after `demo`.
pub fn main(_args: &[String]) -> ExitCode {
    eprintln!("flash-sale demo: not built yet");
    ExitCode::from(2)
}
