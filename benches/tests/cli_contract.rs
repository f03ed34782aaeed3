//! Every benchmark binary's command line: `--help` exits 0, `--version` names the binary and
//! its version, `--flag=value` is read like `--flag value`, and `--cores` speaks the
//! workspace's one grammar (`0` is an error that says how to name core 0).

use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run the binary")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// (name, path, takes `--cores`).
const BINARIES: &[(&str, &str, bool)] = &[
    ("ringcore-load", env!("CARGO_BIN_EXE_ringcore-load"), true),
    ("naive_uring", env!("CARGO_BIN_EXE_naive_uring"), true),
    ("tokio_ct", env!("CARGO_BIN_EXE_tokio_ct"), true),
    ("hyper_tls", env!("CARGO_BIN_EXE_hyper_tls"), true),
    ("hyper_h2", env!("CARGO_BIN_EXE_hyper_h2"), true),
    ("ringcore_fixed", env!("CARGO_BIN_EXE_ringcore_fixed"), true),
    ("axum_hello", env!("CARGO_BIN_EXE_axum_hello"), true),
    ("glommio_hello", env!("CARGO_BIN_EXE_glommio_hello"), true),
    ("monoio_hello", env!("CARGO_BIN_EXE_monoio_hello"), true),
    ("may_hello", env!("CARGO_BIN_EXE_may_hello"), true),
    ("actix_hello", env!("CARGO_BIN_EXE_actix_hello"), true),
    ("rc_load", env!("CARGO_BIN_EXE_rc_load"), true),
    ("idle_conns", env!("CARGO_BIN_EXE_idle_conns"), false),
    ("bench_report", env!("CARGO_BIN_EXE_bench_report"), false),
    ("axum_flash_sale", env!("CARGO_BIN_EXE_axum_flash_sale"), false),
];

#[test]
fn help_and_version() {
    for &(name, bin, cores) in BINARIES {
        let out = run(bin, &["--help"]);
        assert_eq!(out.status.code(), Some(0), "{name} --help: {}", text(&out));
        let help = text(&out);
        assert!(help.contains("Usage:"), "{name}: {help}");
        assert_eq!(help.contains("--cores <all|N|LIST>"), cores, "{name}: {help}");
        let out = run(bin, &["--version"]);
        assert_eq!(out.status.code(), Some(0), "{name} --version");
        assert_eq!(text(&out).trim(), format!("{name} {}", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn one_cores_grammar_with_inline_values() {
    for &(name, bin, cores) in BINARIES {
        if !cores {
            continue;
        }
        // `--cores=0` reaches the grammar (the `=` form) and is refused with a pointer to `0,`.
        let out = run(bin, &["--url=http://127.0.0.1:1/", "--cores=0"]);
        let out = if name == "ringcore-load" {
            out
        } else {
            run(bin, &["--cores=0"])
        };
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(
            text(&out).contains("core 0 alone is written `0,`"),
            "{name}: {}",
            text(&out)
        );
        // A list naming a core outside the CPU set is refused before anything starts.
        let mut args = vec!["--cores", "4000,"];
        if name == "ringcore-load" {
            args.extend(["--url", "http://127.0.0.1:1/"]);
        }
        if name == "hyper_tls" {
            // Required; the cores are checked before the files are read.
            args.extend(["--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"]);
        }
        let out = run(bin, &args);
        assert_ne!(out.status.code(), Some(0), "{name}: {}", text(&out));
        assert!(text(&out).contains("core 4000"), "{name}: {}", text(&out));
    }
}

#[test]
fn unknown_flags_exit_2() {
    for &(name, bin, _) in BINARIES {
        let out = run(bin, &["--no-such-flag"]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
    }
}
