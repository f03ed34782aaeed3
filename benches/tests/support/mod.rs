//! What the benches' process tests share: starting a server binary on a port the kernel picks.
//! Each test crate uses some of these helpers, so the rest would be dead code to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the server if the test fails half-way; keeps its stdout open (it prints on exit).
pub(crate) struct Server(pub(crate) Child, Option<BufReader<std::process::ChildStdout>>);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin` on a port the kernel picks and returns it with its `listening on` address.
pub(crate) fn start(name: &str, bin: &str) -> (Server, String) {
    start_on(name, bin, "1")
}

/// [`start`] with `--cores CORES` (`N`: the first N CPUs of the test's affinity mask).
pub(crate) fn start_on(name: &str, bin: &str, cores: &str) -> (Server, String) {
    start_with(name, bin, cores, &[])
}

/// [`start_on`] with these variables added to the server's environment.
pub(crate) fn start_with(name: &str, bin: &str, cores: &str, env: &[(&str, &str)]) -> (Server, String) {
    let mut child = Command::new(bin)
        .args(["--addr", "127.0.0.1:0", "--cores", cores])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut server = Server(child, Some(BufReader::new(stdout)));
    let mut line = String::new();
    server
        .1
        .as_mut()
        .expect("stdout reader")
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{name}'s stdout: {e}"));
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{name} printed {line:?}"))
        .to_string();
    (server, addr)
}
