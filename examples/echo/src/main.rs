//! TCP echo server on every core.
//!
//! Run with: `cargo run --release -p echo -- --addr 127.0.0.1:7000 --cores 0,1`
//!
//! Every core binds the same address with `SO_REUSEPORT` and echoes what it receives on the
//! connections it accepts. Stops cleanly on Ctrl-C / SIGTERM.

use std::process::ExitCode;

use ringcore_runtime::net::TcpListener;
use ringcore_runtime::{shard_id, spawn_local, Cores, Runtime};

struct Args {
    addr: String,
    cores: Cores,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:7000".to_string(),
        cores: Cores::All,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => args.addr = it.next().ok_or("--addr needs HOST:PORT")?,
            "--cores" => {
                let v = it.next().ok_or("--cores needs N or a list like 0,2,5")?;
                args.cores = v.parse()?;
            }
            "-h" | "--help" => {
                return Err("usage: echo [--addr HOST:PORT] [--cores N | --cores 0,2,5]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match Runtime::builder().cores(args.cores).build() {
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
