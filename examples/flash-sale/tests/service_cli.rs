//! `flash-sale`'s command line: `--help` (every subcommand) exits 0, `--version`, the
//! `--flag=value` form, the one `--cores` grammar, and a bad value refused with exit 2 before
//! anything starts.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flash-sale"))
        .args(args)
        .output()
        .expect("run flash-sale");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn help_for_every_subcommand_and_version() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["repair", "--help"],
        &["demo", "--help"],
    ] {
        let (code, help) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {help}");
        assert!(help.contains("Usage: flash-sale"), "{args:?}: {help}");
    }
    let (_, serve) = run(&["serve", "--help"]);
    for flag in [
        "--addr",
        "--cores",
        "--data-dir",
        "--store",
        "--prefix",
        "--admin-token",
        "--user-rate",
        "--global-rate",
        "--accept-data-loss",
        "--share-addr",
        "--shed-grace",
        "--redis-timeout",
        "--allow-redis-data-loss",
        "--journal-commit-window",
    ] {
        assert!(serve.contains(flag), "serve --help lacks {flag}: {serve}");
    }
    assert_eq!(
        run(&["--version"]),
        (Some(0), format!("flash-sale {}\n", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn bad_values_exit_2_before_starting() {
    let dir = std::env::temp_dir();
    let dir = dir.to_str().expect("utf-8 temp dir");
    for (args, says) in [
        (
            &["serve", "--addr=127.0.0.1:0", "--cores=0", "--data-dir", dir][..],
            "`0,`",
        ),
        (&["serve", "--cores", "2-1", "--data-dir", dir], "backwards"),
        (&["serve", "--shed-grace=5", "--data-dir", dir], "--shed-grace"),
        (&["serve", "--store", "http://x", "--data-dir", dir], "--store"),
        (
            &["serve", "--journal-commit-window=10001", "--data-dir", dir],
            "--journal-commit-window",
        ),
        (&["serve", "--addr", "127.0.0.1:0"], "--data-dir is required"),
        (&["demo", "--cores", "0"], "`0,`"),
        (&["demo", "--rate=0"], "--rate"),
        (&["repair"], "--data-dir"),
        (&["bogus"], "bogus"),
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
    }
}
