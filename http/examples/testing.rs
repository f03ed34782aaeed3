//! Testing a router two ways: in process with [`Router::oneshot`] (no socket: routing,
//! extractors, middleware and the handler run as for a real request), and over a real
//! socket with [`TestServer`] (the router on `127.0.0.1:0`, a blocking client).
//!
//! The tests are in this file (`#[cfg(test)]`); `cargo test -p ringcore-http --example
//! testing` runs them (this example is declared with `test = true`, so the workspace's
//! `cargo test` runs them too). `cargo run -p ringcore-http --example testing -- --addr
//! 127.0.0.1:8080` serves the same router.

use std::process::ExitCode;

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_http::{get, post, Json, Path, Router, Server, StatusCode};
use serde::Deserialize;

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

/// The application under test.
fn app() -> Router {
    Router::new()
        .route(
            "/square/{n}",
            get(|Path(n): Path<i64>| async move { (n * n).to_string() }),
        )
        .route(
            "/add",
            post(|Json(add): Json<Add>| async move { Json(serde_json::json!({ "sum": add.a + add.b })) }),
        )
        .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
}

#[derive(Debug, Parser)]
#[command(name = "testing", version)]
struct Args {
    /// Address every core listens on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` or a list such as `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = Server::bind(args.addr)
        .cores(args.cores.to_runtime())
        .on_listening(|a| println!("testing listening on {a}"))
        .serve(app);
    match result {
        Ok(r) => {
            println!("testing stopped: {r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("testing: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::app;
    use ringcore_http::test::{body_text, TestServer};
    use ringcore_http::{Request, StatusCode};

    /// In process: a request made with `Request::builder`, answered on a ringcore core (the
    /// attribute runs the test's body in a one-core runtime).
    #[ringcore_http::runtime::test(crate = ringcore_http::runtime)]
    async fn oneshot_routes_and_extracts() {
        let app = app();
        let req = Request::builder()
            .uri("/square/12")
            .body("")
            .expect("a valid request");
        let resp = app.oneshot(req).await;
        assert_eq!(resp.status_code(), StatusCode::OK);
        assert_eq!(body_text(&resp).await, "144");

        // An extractor's rejection is a problem response, as over a socket.
        let req = Request::builder()
            .uri("/square/twelve")
            .body("")
            .expect("a valid request");
        let resp = app.oneshot(req).await;
        assert_eq!(resp.status_code(), StatusCode::BAD_REQUEST);

        let req = Request::builder()
            .method("POST")
            .uri("/add")
            .header("content-type", "application/json")
            .body(r#"{"a": 2, "b": 40}"#)
            .expect("a valid request");
        let resp = app.oneshot(req).await;
        assert_eq!(body_text(&resp).await, r#"{"sum":42}"#);
    }

    /// Over a socket: the server's framing, limits and headers are in play too.
    #[test]
    fn test_server_answers_over_a_socket() {
        let server = TestServer::start(app);
        let r = server.get("/square/7");
        assert_eq!((r.status, r.text().as_str()), (200, "49"));
        assert_eq!(server.get("/teapot").status, 418);
        assert_eq!(server.get("/nowhere").status, 404);
        // A keep-alive client: both requests on one connection.
        let mut c = server.client();
        assert_eq!(c.get("/square/3").text(), "9");
        assert_eq!(c.post("/add", "not json").status, 415);
    } // dropping the server stops it
}
