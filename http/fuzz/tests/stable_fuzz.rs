//! The fuzz targets on a stable toolchain, for CI: each target's check
//! ([`ringcore_http_fuzz::parse_stream`], [`ringcore_http_fuzz::chunked_body`]) runs over its
//! whole corpus, then over a fixed number of generated inputs: mutations of the corpus (byte
//! flips, insertions of bytes the HTTP grammar cares about, deletions, splices of two inputs,
//! truncations) and fresh random bytes, from a fixed seed.
//!
//! libFuzzer (`cargo fuzz run`, see README.md) explores far more with coverage feedback; this
//! test is what runs on every CI build, deterministic, in a bounded time. `FUZZ_INPUTS`
//! (default 50000 per target) and `FUZZ_SEED` change the run; a failing input is written to
//! `target/stable-fuzz-<target>-failure` and its seed printed, for `replay`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// xorshift64*: a small, fixed PRNG (no dependency), so a seed names a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that decide HTTP/1 framing: most mutations insert one of these.
const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b":",
    b" ",
    b"\t",
    b";",
    b",",
    b"0",
    b"1",
    b"f",
    b"F",
    b"9",
    b"\r\n\r\n",
    b"0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Host: a\r\n",
    b"GET / HTTP/1.1\r\n",
    b"HTTP/1.0",
    b"\x00",
    b"\xff",
    b"Expect: 100-continue\r\n",
];

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}

/// A mutation of a corpus input (or fresh bytes). The first `keep` bytes (`parse_stream`'s
/// control byte: limits and chunk sizes) are left alone, except for one input in eight whose
/// control byte is drawn anew.
fn mutate(rng: &mut Rng, pool: &[Vec<u8>], keep: usize) -> Vec<u8> {
    let mut data = if pool.is_empty() || rng.below(10) == 0 {
        (0..rng.below(64)).map(|_| rng.next() as u8).collect()
    } else {
        pool[rng.below(pool.len())].clone()
    };
    let keep = keep.min(data.len());
    if keep > 0 && rng.below(8) == 0 {
        data[0] = rng.next() as u8;
    }
    for _ in 0..1 + rng.below(4) {
        let at = keep + rng.below(data.len() - keep + 1);
        match rng.below(6) {
            0 if data.len() > keep => {
                let i = keep + rng.below(data.len() - keep);
                data[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            3 if at < data.len() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at..end);
            }
            4 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ => data.truncate(at),
        }
    }
    data.truncate(4096);
    data
}

fn run(target: &str, check: fn(&[u8]), keep: usize) {
    let inputs: usize = std::env::var("FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f022);
    let pool = corpus(target);
    assert!(!pool.is_empty(), "no corpus for {target}");
    let mut rng = Rng(seed | 1);
    let generated = (0..inputs).map(|_| mutate(&mut rng, &pool, keep));
    for (i, data) in pool.clone().into_iter().chain(generated).enumerate() {
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            let out = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join(format!("stable-fuzz-{target}-failure"));
            let _ = std::fs::create_dir_all(out.parent().expect("parent"));
            let _ = std::fs::write(&out, &data);
            panic!(
                "{target}: input {i} (FUZZ_SEED={seed}) failed the checks; written to {} \
                 (replay: cargo run --bin replay -- {target} {0})",
                out.display()
            );
        }
    }
}

#[test]
fn parse_stream_over_corpus_and_mutations() {
    run("parse_stream", ringcore_http_fuzz::parse_stream, 1);
}

#[test]
fn chunked_body_over_corpus_and_mutations() {
    run("chunked_body", ringcore_http_fuzz::chunked_body, 0);
}

/// The generator reaches the framing paths the checks guard, not only noise: some inputs
/// parse into requests and some are rejected (a test that cannot fail would not show this).
#[test]
fn mutations_reach_both_accepted_and_rejected_requests() {
    use ringcore_http_fuzz::{feed, End};
    let pool = corpus("parse_stream");
    let mut rng = Rng(7);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..2000 {
        let data = mutate(&mut rng, &pool, 1);
        // As `parse_stream` reads it: a control byte, chunk sizes, then the stream.
        let Some((&ctl, rest)) = data.split_first() else {
            continue;
        };
        let limits = if ctl & 0x80 != 0 {
            ringcore_http_fuzz::tiny_limits()
        } else {
            ringcore_http::Limits::default()
        };
        let stream = &rest[usize::from(ctl & 0x07).min(rest.len())..];
        let out = feed([stream], &limits);
        accepted += usize::from(!out.reqs.is_empty());
        rejected += usize::from(matches!(out.end, End::Error { .. }));
    }
    assert!(
        accepted > 100 && rejected > 100,
        "accepted {accepted}, rejected {rejected}"
    );
}
