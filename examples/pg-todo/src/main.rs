//! A todo service on ringcore-http backed by PostgreSQL through `tokio-postgres`, which runs
//! on each core over the runtime's I/O adapter (`ringcore_runtime::compat::Compat`): one
//! connection per core, made in the async per-core factory.
//!
//! `POST /todos` (`{"title": .., "done": false}`), `GET /todos?limit=N`, `GET /todos/{id}`,
//! `PATCH /todos/{id}` (`{"title"?, "done"?}`), `DELETE /todos/{id}`, `GET /healthz` (503 +
//! `Retry-After` while the database is down), `GET /metrics`.
//!
//! Run with: `cargo run -p pg-todo -- --database-url postgres://postgres@127.0.0.1:5432/postgres --cores 2`

mod db;
mod routes;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_http::{Server, TlsConfig};
use tracing_subscriber::EnvFilter;

use crate::db::{Db, DbSettings};

/// A todo service on ringcore-http and PostgreSQL (tokio-postgres over the I/O adapter).
#[derive(Debug, Parser)]
#[command(name = "pg-todo", version)]
struct Args {
    /// Address every core listens on (SO_REUSEPORT); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` (the first N of this process's CPU set) or a list of
    /// ids such as `0,2-3`.
    #[arg(long, default_value = "all", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// The database, as a URL (`postgres://user[:password]@host[:port]/dbname`) or libpq
    /// key=value pairs (`host=127.0.0.1 port=5432 user=postgres dbname=todo`). TCP only;
    /// no TLS to the database.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        value_name = "URL",
        value_parser = parse_config
    )]
    database_url: tokio_postgres::Config,
    /// Deadline of a connection to the database (TCP connect, start-up, preparing).
    #[arg(long, default_value = "2000", value_name = "MS", value_parser = ringcore_cli::millis)]
    connect_timeout: Duration,
    /// Deadline of every query; past it the request is answered 503 + Retry-After and the
    /// connection is dropped (the next request reconnects).
    #[arg(long, default_value = "1000", value_name = "MS", value_parser = ringcore_cli::millis)]
    query_timeout: Duration,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs `--tls-key`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn parse_config(s: &str) -> Result<tokio_postgres::Config, String> {
    s.parse::<tokio_postgres::Config>().map_err(|e| e.to_string())
}

/// Warnings (a database going down), the runtime's start-up facts, and reconnects.
const DEFAULT_LOG: &str = "warn,ringcore_runtime=info,pg_todo=info";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let settings = DbSettings {
        config: args.database_url,
        connect_timeout: args.connect_timeout,
        query_timeout: args.query_timeout,
    };
    if let Err(e) = settings.address() {
        eprintln!("pg-todo: --database-url: {e}");
        return ExitCode::from(2);
    }
    let mut server = Server::bind(args.addr).cores(args.cores.to_runtime());
    let scheme = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match TlsConfig::from_pem_files(cert, key) {
            Ok(tls) => {
                server = server.tls(tls);
                " with TLS"
            }
            Err(e) => {
                eprintln!("pg-todo: TLS: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => "",
    };
    let database = settings.describe();
    let result = server
        .on_listening(move |a| {
            println!(
                "pg-todo listening on {a}{scheme} (driver: {}, database: {database})",
                ringcore_http::runtime::driver_kind()
            )
        })
        .serve_async(move |_core| {
            let settings = settings.clone();
            async move { Db::connect(settings).await.map(routes::router) }
        });
    match result {
        Ok(report) => {
            println!("pg-todo stopped: {report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pg-todo: {e}");
            ExitCode::FAILURE
        }
    }
}
