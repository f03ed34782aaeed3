//! HTTPS: the same router served over TLS (rustls) from a PEM certificate chain and key.
//!
//! `cargo run -p ringcore-http --example tls -- --addr 127.0.0.1:8443 --tls-cert cert.pem
//! --tls-key key.pem`, then `curl --cacert ca.pem https://localhost:8443/` (or `curl -k`).
//! A self-signed pair for a try:
//! `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out cert.pem`.
//!
//! [`TlsConfig::reload`] swaps the certificate without a restart; here `POST /reload` calls
//! it (keep such a route behind authentication in a real service).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_http::{get, post, Request, Router, Server, StatusCode, TlsConfig};

#[derive(Debug, Parser)]
#[command(name = "tls", version)]
struct Args {
    /// Address every core listens on.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` or a list such as `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// The certificate chain, PEM (leaf first).
    #[arg(long, value_name = "FILE")]
    tls_cert: PathBuf,
    /// The private key, PEM.
    #[arg(long, value_name = "FILE")]
    tls_key: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let tls = match TlsConfig::from_pem_files(&args.tls_cert, &args.tls_key) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tls: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A clone shares the same configuration: reloading it changes what every core serves.
    let reloader = tls.clone();
    let result = Server::bind(args.addr)
        .cores(args.cores.to_runtime())
        .tls(tls)
        .on_listening(|a| println!("tls listening on {a}"))
        .serve(move || {
            let reloader = reloader.clone();
            Router::new()
                .route(
                    "/",
                    get(|req: Request| async move {
                        format!("hello over TLS, {:?}\n", req.peer_addr().map(|a| a.ip()))
                    }),
                )
                .route(
                    "/reload",
                    post(move || {
                        let reloader = reloader.clone();
                        async move {
                            match reloader.reload() {
                                Ok(()) => (StatusCode::OK, format!("generation {}\n", reloader.generation())),
                                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                            }
                        }
                    }),
                )
        });
    match result {
        Ok(r) => {
            println!("tls stopped: {r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tls: {e}");
            ExitCode::FAILURE
        }
    }
}
