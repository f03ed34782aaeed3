//! `ringcore-load`: an HTTP/1.1 load generator on ringcore's own runtime, open loop by default.
//!
//! ```text
//! ringcore-load --url http://127.0.0.1:PORT/plaintext  [--rate R | --rates R1,R2,...]  [--conns N=64]
//!               [--depth D=1] [--duration S=10] [--warmup S=1] [--cores all|N|LIST (default 1)]
//!               [--json FILE] [--no-progress] [--timeout-ms 2000]
//!               [--method GET] [--body TEMPLATE] [--content-type application/json]
//!               [--header 'Name: value' ...] [--max-error-rate 1%]
//!               [--timeline FILE [--timeline-every N=1]]
//! ```
//!
//! - `--rate R` (> 0): open loop. Request `k` of connection `i` (of `N`) is due at
//!   `start + (i + k * N) / R`, so the `N` connections together send one request every `1/R`
//!   seconds. Latency is measured from that *intended* time to the completion of the response,
//!   so a stalled server shows in the tail instead of slowing the generator down (no
//!   coordinated omission). A connection behind schedule sends its overdue requests at once,
//!   up to `--depth` outstanding.
//! - `--rate 0`: closed loop (max throughput); every connection keeps `--depth` requests
//!   outstanding and latency is measured from the actual send.
//! - `--rates R1,R2,...`: a sweep, one run (with its own warm-up) per rate; JSON is an array.
//!
//! - `--method M --body TEMPLATE`: requests with a body (`Content-Length` set). Every `{n}` in
//!   the template becomes the request's sequence number, unique across the run (all
//!   connections and cores, warm-up included) and across the runs of a `--rates` sweep: request
//!   `k` of connection `i` is number `base + i + k * N`, the slot of its scheduled send, so
//!   numbering costs no coordination between cores. `--body '{"user":"u{n}"}'` makes every
//!   request a different user. `--content-type` (default `application/json` when a body is
//!   given). A template without `{n}` is rendered once, like a plain GET.
//!
//! Responses are counted by status class (`1xx` .. `5xx`, `other`) twice in the JSON: `status`
//! for the requests due in the measurement window (the ones in the latency histogram) and
//! `status_all` for every response of the run, warm-up and drain included (what the server
//! did in total, e.g. how many buys succeeded).
//!
//! - `--header 'Name: value'` (repeatable): extra request headers (a `Host` replaces the URL's).
//! - `--timeline FILE [--timeline-every N]`: after the run, a CSV `offset_us,latency_us,status`
//!   with one line per answered request of the measurement window (or one in `N`, sampled by
//!   schedule slot), ordered by its scheduled send time; requests lost to errors or timeouts
//!   have no line (they are counted in `errors`). One run only (not with `--rates`). Rows are
//!   kept in memory (16 bytes each) and written after the run.
//!
//! Responses are delimited by the workspace's one HTTP/1 parser
//! ([`ringcore_testkit::http1::Delimiter`]: HEAD, 1xx, 204/304, `Content-Length`, chunked,
//! close-delimited). Errors (connect failures, resets, EOF with requests outstanding,
//! timeouts, malformed responses) are counted per lost request and the connection
//! reconnects. Latencies go into one `hdrhistogram` per core, merged at the end.
//!
//! Exit status: 0; 2 for a bad command line; 1 when a run could not start, or, after the
//! summary and the JSON, when no request got an answer or more than `--max-error-rate`
//! (default 1%) of the requests failed (503 and 429 are answers, not failures), said in one
//! line on stderr.
//!
//! Code map: `cli.rs` (options), `request.rs` (request bytes), `generator.rs` (the shards and
//! connections on the runtime), `report.rs` (percentiles, the result, the summary, the
//! verdict), `timeline.rs` (`--timeline`'s rows and CSV).

mod cli;
mod generator;
mod report;
mod request;
mod timeline;

use std::io::Write;
use std::process::ExitCode;

use cli::Args;
use report::print_summary;

fn main() -> ExitCode {
    let args = match Args::from_cli(clap::Parser::parse()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ringcore-load: {e}");
            return ExitCode::from(2);
        }
    };
    let mut results = Vec::new();
    let mut seq = 0;
    for &rate in &args.rates {
        match generator::run_once(&args, rate, seq) {
            Ok((r, next, rows)) => {
                seq = next;
                print_summary(&r);
                let _ = std::io::stdout().flush();
                results.push(r);
                if let Some((path, _)) = &args.timeline {
                    let written = std::fs::File::create(path)
                        .and_then(|f| timeline::write_csv(rows, f))
                        .map_err(|e| format!("{path}: {e}"));
                    match written {
                        Ok(n) => println!("timeline: {n} requests in {path}"),
                        Err(e) => {
                            eprintln!("ringcore-load: writing the timeline: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("ringcore-load: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(path) = &args.json {
        let text = if args.sweep {
            serde_json::to_string_pretty(&results)
        } else {
            serde_json::to_string_pretty(&results[0])
        };
        let written = text
            .map_err(|e| e.to_string())
            .and_then(|t| std::fs::write(path, t + "\n").map_err(|e| format!("{path}: {e}")));
        if let Err(e) = written {
            eprintln!("ringcore-load: writing JSON: {e}");
            return ExitCode::FAILURE;
        }
    }
    // One line per failed run (one run: one line), after the JSON is written.
    let mut failed = false;
    for r in &results {
        if let Err(e) = report::verdict(r, args.max_error_rate) {
            failed = true;
            if args.sweep {
                eprintln!("ringcore-load: FAILED at {:.0} req/s: {e}", r.target_rate);
            } else {
                eprintln!("ringcore-load: FAILED: {e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
