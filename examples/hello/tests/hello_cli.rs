//! `hello`'s command line: `--help`, `--version`, `--flag=value`, the one `--cores` grammar.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hello"))
        .args(args)
        .output()
        .expect("run hello");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn help_version_and_cores_grammar() {
    let (code, help) = run(&["--help"]);
    assert_eq!(code, Some(0), "{help}");
    assert!(
        help.contains("--addr <HOST:PORT>") && help.contains("--cores <all|N|LIST>"),
        "{help}"
    );
    assert_eq!(
        run(&["--version"]),
        (Some(0), format!("hello {}\n", env!("CARGO_PKG_VERSION")))
    );
    let (code, err) = run(&["--addr=127.0.0.1:0", "--cores=0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("core 0 alone is written `0,`"), "{err}");
    let (code, err) = run(&["--cores", "1-x"]);
    assert_eq!(code, Some(2), "{err}");
}
