//! Runs corpus files through the fuzz checks without libFuzzer: a plain binary that needs no
//! nightly features. `replay <parse_stream|chunked_body> <file-or-dir>...`; panics on failure.

use std::path::{Path, PathBuf};

fn files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for e in entries {
            files(&e, out);
        }
    } else {
        out.push(p.to_path_buf());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let check: fn(&[u8]) = match target.as_str() {
        "parse_stream" => ringcore_http_fuzz::parse_stream,
        "chunked_body" => ringcore_http_fuzz::chunked_body,
        _ => {
            eprintln!("usage: replay <parse_stream|chunked_body> <file-or-dir>...");
            std::process::exit(2);
        }
    };
    let mut list = Vec::new();
    for a in args {
        files(Path::new(&a), &mut list);
    }
    for f in &list {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        eprintln!("{}", f.display());
        check(&data);
    }
    println!("replay {target}: {} inputs ok", list.len());
}
