//! TCP echo server on every core.
//!
//! Run with: `cargo run --release -p echo -- --addr 127.0.0.1:7000 --cores 0-1`
//!
//! Every core binds the same address with `SO_REUSEPORT` and echoes what it receives on the
//! connections it accepts. Stops cleanly on Ctrl-C / SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_runtime::net::TcpListener;
use ringcore_runtime::{shard_id, spawn_local, Runtime};

/// TCP echo server on every core.
#[derive(Debug, Parser)]
#[command(name = "echo", version)]
struct Args {
    /// Address every core listens on (SO_REUSEPORT); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:7000", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` (the first N of this process's CPU set) or a list of
    /// ids such as `0,2-3`.
    #[arg(long, default_value = "all", value_name = "all|N|LIST")]
    cores: CoreSpec,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match Runtime::builder().cores(args.cores.to_runtime()).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = args.addr;
    let result = rt.run(move || {
        let addr = addr.clone();
        async move {
            let listener = match TcpListener::bind(&addr) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("echo: shard {}: cannot bind {addr}: {e}", shard_id());
                    ringcore_runtime::request_shutdown();
                    return;
                }
            };
            if shard_id() == 0 {
                match listener.local_addr() {
                    Ok(a) => println!("echo listening on {a}"),
                    Err(_) => println!("echo listening on {addr}"),
                }
            }
            loop {
                let stream = match listener.accept_stream().await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("echo: accept: {e}");
                        continue;
                    }
                };
                spawn_local(async move {
                    let _ = stream.set_nodelay(true);
                    loop {
                        let chunk = match stream.recv().await {
                            Ok(c) if !c.is_empty() => c,
                            _ => break,
                        };
                        let (res, _) = stream.write_all(chunk).await;
                        if res.is_err() {
                            break;
                        }
                    }
                })
                .detach();
            }
        }
    });
    match result {
        Ok(_) => {
            println!("echo stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}
