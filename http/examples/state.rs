//! Per-core state built by an async factory, and handlers that take parts of it.
//!
//! [`Server::serve_async`] runs `|core| async move { .. }` on every core before any core
//! listens: it may await (here it "loads" a greeting, as a real service would connect to a
//! database or warm a cache) and may fail, which stops start-up with the error. The router's
//! state is one `App` per core, so a handler may mutate it through a `Cell` without a lock.
//! [`State<T>`] takes the whole state or, through [`FromRef`], one part of it.
//!
//! `cargo run -p ringcore-http --example state -- --addr 127.0.0.1:8080 --cores 2`, then
//! `curl http://127.0.0.1:8080/hello/ada` and `curl http://127.0.0.1:8080/hits`.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_http::extract::FromRef;
use ringcore_http::runtime::time::sleep;
use ringcore_http::{get, Path, Router, Server, State};

/// What the factory loads before the core serves.
struct Greeting(String);

/// This core's request count: per core, so a plain `Cell`.
#[derive(Default)]
struct Hits(Cell<u64>);

/// The state of one core's router: parts are `Rc`s, so `State<Greeting>` and `State<Hits>`
/// can hand them out.
struct App {
    core: usize,
    greeting: Rc<Greeting>,
    hits: Rc<Hits>,
}

impl FromRef<App> for Greeting {
    fn from_ref(app: &Rc<App>) -> Rc<Greeting> {
        app.greeting.clone()
    }
}

impl FromRef<App> for Hits {
    fn from_ref(app: &Rc<App>) -> Rc<Hits> {
        app.hits.clone()
    }
}

/// Stands in for an async set-up step (a database connection, a config service).
async fn load_greeting(word: &str) -> Result<Greeting, String> {
    sleep(Duration::from_millis(5)).await;
    if word.is_empty() {
        return Err("the greeting is empty".into());
    }
    Ok(Greeting(word.to_string()))
}

/// A part of the state only.
async fn hello(State(g): State<Greeting>, State(hits): State<Hits>, Path(name): Path<String>) -> String {
    hits.0.set(hits.0.get() + 1);
    format!("{}, {name}!\n", g.0)
}

/// The whole state.
async fn count(State(app): State<App>) -> String {
    format!("core {}: {} greetings\n", app.core, app.hits.0.get())
}

#[derive(Debug, Parser)]
#[command(name = "state", version)]
struct Args {
    /// Address every core listens on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` or a list such as `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// The greeting (an empty one makes start-up fail, to show how that looks).
    #[arg(long, default_value = "Hello")]
    greeting: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let word = args.greeting;
    let result = Server::bind(args.addr)
        .cores(args.cores.to_runtime())
        .on_listening(|a| println!("state listening on {a}"))
        .serve_async(move |core| {
            let word = word.clone();
            async move {
                let greeting = load_greeting(&word).await?;
                let app = App {
                    core,
                    greeting: Rc::new(greeting),
                    hits: Rc::new(Hits::default()),
                };
                Ok::<_, String>(
                    Router::with_state(app)
                        .route("/hello/{name}", get(hello))
                        .route("/hits", get(count)),
                )
            }
        });
    match result {
        Ok(r) => {
            println!("state stopped: {r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("state: {e}");
            ExitCode::FAILURE
        }
    }
}
