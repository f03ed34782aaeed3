//! Architecture Invariant: `unsafe` code lives only in `driver/`, `sys/`, `buf.rs` and
//! `future_slot.rs` (a future placed and pinned in reusable memory).
//!
//! Everything else in the runtime is safe Rust over those modules' safe functions. This test
//! reads the crate's sources and fails naming each file and line that breaks the rule.

use std::fs;
use std::path::{Path, PathBuf};

const ALLOWED: &[&str] = &["driver", "sys", "buf.rs", "future_slot.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).expect("read the source directory");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn unsafe_only_in_driver_sys_buf_and_future_slot() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 20,
        "expected the runtime's sources under {}",
        src.display()
    );
    let mut offenders = Vec::new();
    let mut allowed_hits = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("");
        let text = fs::read_to_string(file).expect("read source");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|w| w == "unsafe")
            {
                if ALLOWED.contains(&top) {
                    allowed_hits += 1;
                } else {
                    offenders.push(format!("{}:{}: {}", rel.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(allowed_hits > 0, "the scan must see the driver's unsafe code");
    assert!(
        offenders.is_empty(),
        "unsafe outside driver/, sys/, buf.rs, future_slot.rs:\n{}",
        offenders.join("\n")
    );
}
