//! The HTTP client: fetches each URL given on the command line, twice, on one core, and
//! prints the status, a few headers, the body's size and how many connections it opened
//! (the second request reuses the first one's connection from the per-core pool).
//!
//! `cargo run -p ringcore-http --example client -- http://127.0.0.1:8080/`
//! (`https://` works too, with Mozilla's roots, or `--ca-file ca.pem` for a private CA).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringcore_http::client::Client;

#[derive(Debug, Parser)]
#[command(name = "client", version)]
struct Args {
    /// URLs to fetch (`http://` or `https://`).
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
    /// A PEM file of extra root certificates (a private or test CA).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Print the bodies too.
    #[arg(long)]
    print_body: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A client is `!Send` and pools per core: build and use it on a ringcore core.
    // `block_on_with` runs one future on a fresh one-core runtime.
    ringcore_http::runtime::block_on_with(move || async move {
        let mut builder = Client::builder().request_timeout(Duration::from_secs(10));
        if let Some(ca) = &args.ca_file {
            builder = builder.add_root_pem_file(ca);
        }
        let client = match builder.build() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("client: {e}");
                return ExitCode::FAILURE;
            }
        };
        for url in &args.urls {
            for attempt in 1..=2 {
                match client.get(url).await {
                    Ok(resp) => {
                        println!(
                            "{url} #{attempt}: {} content-type={:?} bytes={}",
                            resp.status().as_u16(),
                            resp.header("content-type").unwrap_or(""),
                            resp.body().len()
                        );
                        if args.print_body {
                            println!("{}", resp.text());
                        }
                    }
                    Err(e) => {
                        eprintln!("{url}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        println!(
            "connections opened: {}, reused: {}",
            client.connections_opened(),
            client.connections_reused()
        );
        ExitCode::SUCCESS
    })
}
