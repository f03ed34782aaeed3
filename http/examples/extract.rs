//! Typed extraction, responses and errors, as an axum user writes them: a small per-core
//! shop. `GET /shops/{shop}/items/{item}?verbose=true` (path tuple + query),
//! `POST /shops/{shop}/items` with a JSON body (the JSON rejection answered our own way with
//! `WithRejection`), `GET /whoami` (headers and peer address), a sub-state through
//! `FromRef`, and one error enum answering RFC 9457 problems.
//!
//! `cargo run -p ringcore-http --example extract -- --addr 127.0.0.1:8080`, then
//! `curl -s localhost:8080/shops/main/items/pen%20blue` or
//! `curl -s -XPOST -H 'content-type: application/json' -d '{"name":"ink","stock":3}' localhost:8080/shops/main/items`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_http::extract::{Rejection, WithRejection};
use ringcore_http::{
    get, post, ConnectInfo, FromRef, HeaderMap, IntoResponse, Json, Path, Problem, Query, Response, Router,
    Server, State, StatusCode,
};
use serde::Deserialize;

/// This core's catalog (per core: no lock).
#[derive(Default)]
struct Catalog(RefCell<BTreeMap<(String, String), u64>>);

struct App {
    catalog: Rc<Catalog>,
    greeting: String,
}

impl FromRef<App> for Catalog {
    fn from_ref(app: &Rc<App>) -> Rc<Catalog> {
        app.catalog.clone()
    }
}

/// Every way a shop request fails, answered in one place.
enum ShopError {
    NoSuchItem { shop: String, item: String },
    BadItem(String),
}

impl IntoResponse for ShopError {
    fn into_response(self) -> Response {
        match self {
            ShopError::NoSuchItem { shop, item } => {
                Problem::new(StatusCode::NOT_FOUND, "urn:shop:no-such-item", "No such item")
                    .detail(format!("{shop} has no {item:?}"))
                    .into_response()
            }
            ShopError::BadItem(why) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "urn:shop:bad-item", "Bad item")
                    .detail(why)
                    .into_response()
            }
        }
    }
}

/// A bad JSON body becomes a `ShopError` like any other failure.
impl From<Rejection> for ShopError {
    fn from(r: Rejection) -> Self {
        ShopError::BadItem(r.to_string())
    }
}

#[derive(Deserialize)]
struct Verbose {
    #[serde(default)]
    verbose: bool,
}

async fn item(
    Path((shop, item)): Path<(String, String)>,
    Query(q): Query<Verbose>,
    State(catalog): State<Catalog>,
) -> Result<String, ShopError> {
    let stock = catalog.0.borrow().get(&(shop.clone(), item.clone())).copied();
    match stock {
        Some(n) if q.verbose => Ok(format!("{shop}/{item}: {n} in stock on this core\n")),
        Some(n) => Ok(format!("{n}\n")),
        None => Err(ShopError::NoSuchItem { shop, item }),
    }
}

#[derive(Deserialize)]
struct NewItem {
    name: String,
    stock: u64,
}

async fn add(
    Path(shop): Path<String>,
    State(catalog): State<Catalog>,
    WithRejection(Json(new), _): WithRejection<Json<NewItem>, ShopError>,
) -> Result<(StatusCode, String), ShopError> {
    if new.name.is_empty() {
        return Err(ShopError::BadItem("an empty name".into()));
    }
    catalog.0.borrow_mut().insert((shop, new.name), new.stock);
    Ok((StatusCode::CREATED, "added\n".into()))
}

async fn whoami(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> String {
    let agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no user agent");
    format!("{}, {peer} ({agent})\n", app.greeting)
}

/// Typed extraction, responses and errors on a per-core shop.
#[derive(Debug, Parser)]
#[command(name = "extract", version)]
struct Args {
    /// Address every core listens on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` (the first N of this process's CPU set) or a list such
    /// as `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
}

fn main() -> ExitCode {
    let Args { addr, cores } = Args::parse();
    let result = Server::bind(addr)
        .cores(cores.to_runtime())
        .on_listening(|a| println!("extract listening on {a}"))
        .serve(|| {
            let app = App {
                catalog: Rc::new(Catalog::default()),
                greeting: "hello".into(),
            };
            Router::with_state(app)
                .route("/shops/{shop}/items/{item}", get(item))
                .route("/shops/{shop}/items", post(add))
                .route("/whoami", get(whoami))
        });
    match result {
        Ok(r) => {
            println!("extract stopped: {r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("extract: {e}");
            ExitCode::FAILURE
        }
    }
}
