//! `hyper_tls`: `GET /plaintext` over TLS on hyper 1's HTTP/1 server, tokio-rustls and
//! tokio's current-thread runtime, one thread pinned to each listed core: the baseline of
//! `scripts/bench-tls.sh` for ringcore-http's `hello --tls-cert/--tls-key`.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin hyper_tls -- --addr
//! 127.0.0.1:8443 --cores 1 --tls-cert cert.pem --tls-key key.pem`
//!
//! The TLS settings are ringcore-http's (`http/src/tls.rs`): rustls 0.23 with the `ring`
//! provider, safe default protocol versions (TLS 1.2 and 1.3), no client auth, ALPN
//! `http/1.1`, rustls' default session resumption (in-memory cache of 256 sessions, stateful
//! TLS 1.3 tickets). `GET /plaintext` answers `Hello, World!` (`text/plain; charset=utf-8`,
//! hyper adds `Date`); any other path answers 404. `TCP_NODELAY` on every accepted connection;
//! a handshake that fails or takes over 10 s drops the connection. Prints `listening on
//! ADDR`; SIGINT/SIGTERM stop it with exit status 0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ringcore_benches::{resolve, serve_tokio_local};
use ringcore_cli::CoreSpec;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// ringcore-http's `TlsConfig::handshake_timeout` default.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A baseline server: `GET /plaintext` over TLS on hyper + tokio-rustls, one core.
#[derive(Debug, Parser)]
#[command(name = "hyper_tls", version)]
struct Args {
    /// Address to listen on; port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "HOST:PORT", value_parser = resolve)]
    addr: SocketAddr,
    /// The core to pin the one thread to (the first of the set): `all`, `N` or a list such
    /// as `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// PEM certificate chain, leaf first.
    #[arg(long, value_name = "PEM")]
    tls_cert: PathBuf,
    /// PEM private key of `--tls-cert`.
    #[arg(long, value_name = "PEM")]
    tls_key: PathBuf,
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = if req.uri().path() == "/plaintext" {
        Response::new(Full::new(Bytes::from_static(b"Hello, World!")))
    } else {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

/// The same `ServerConfig` as ringcore-http's `TlsConfig::from_pem_files`.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cores = match args.cores.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hyper_tls: --cores: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match tls_config(&args.tls_cert, &args.tls_key) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hyper_tls: TLS: {e}");
            return ExitCode::FAILURE;
        }
    };
    let acceptor = TlsAcceptor::from(config);
    serve_tokio_local("hyper_tls", args.addr, &cores, move |stream| {
        let acceptor = acceptor.clone();
        async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                _ => return,
            };
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service_fn(answer))
                .await;
        }
    })
}
