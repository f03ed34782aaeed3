//! `pg-todo`'s command line: `--help`, `--version`, the one `--cores` grammar, a bad
//! `--database-url` refused before anything starts.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pg-todo"))
        .args(args)
        .output()
        .expect("run pg-todo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn help_version_cores_and_database_url() {
    let (code, help) = run(&["--help"]);
    assert_eq!(code, Some(0), "{help}");
    for flag in [
        "--addr <HOST:PORT>",
        "--cores <all|N|LIST>",
        "--database-url <URL>",
        "--query-timeout <MS>",
        "--tls-cert <PEM>",
    ] {
        assert!(help.contains(flag), "no {flag} in {help}");
    }
    assert_eq!(
        run(&["--version"]),
        (Some(0), format!("pg-todo {}\n", env!("CARGO_PKG_VERSION")))
    );
    let (code, err) = run(&["--addr=127.0.0.1:0", "--cores=0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("core 0 alone is written `0,`"), "{err}");
    let (code, err) = run(&["--database-url", "postgres://[bad"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["--database-url", "host=/var/run/postgresql user=postgres"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unix socket"), "{err}");
}
