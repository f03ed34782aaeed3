//! # ringcore-http
//!
//! An HTTP/1.1 and HTTP/2 server and router on [`ringcore_runtime`]: one listener, router and
//! set of connections per core, nothing shared between cores on the request path.
//!
//! ```no_run
//! use ringcore_http::{get, post, Json, Path, Router, Server, State};
//! use std::cell::Cell;
//!
//! #[derive(Default)]
//! struct Counter(Cell<u64>); // per-core state: no locks
//!
//! async fn hello() -> &'static str {
//!     "Hello, World!"
//! }
//!
//! async fn item(Path(id): Path<u64>, State(c): State<Counter>) -> String {
//!     c.0.set(c.0.get() + 1);
//!     format!("item {id}, request {} on this core", c.0.get())
//! }
//!
//! async fn echo_json(Json(v): Json<serde_json::Value>) -> Json<serde_json::Value> {
//!     Json(v)
//! }
//!
//! let report = Server::bind("127.0.0.1:8080").serve(|| {
//!     Router::with_state(Counter::default())
//!         .route("/", get(hello))
//!         .route("/items/{id}", get(item))
//!         .route("/json", post(echo_json))
//! })?;
//! println!("stopped: {report}");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Extractors, responses and errors (as in axum)
//!
//! Handlers are `async fn`s of up to 16 [extractors](extract). As in axum-core, every argument
//! but the last implements [`FromRequestParts`] (method, [`Uri`], [`HeaderMap`], [`Path`],
//! [`Query`], [`State`], [`Extension`], [`ConnectInfo`]) and only the last may take the body
//! ([`FromRequest`]: [`Json`], [`Form`], `String`, [`Bytes`], [`Request`], [`BodyStream`]): two body
//! extractors do not compile. `Option<T>` and `Result<T, T::Rejection>` wrap any extractor.
//! A rejection answers an RFC 9457 problem (`application/problem+json`: `type`, `title`,
//! `status`, `detail`); wrap an extractor in
//! [`WithRejection<E, R>`](extract::WithRejection) to answer with your own `R`.
//!
//! A handler returns anything [`IntoResponse`]: strings, bytes, [`Json`], [`StatusCode`],
//! tuples with a status and a [`HeaderMap`] or header array, and `Result<T, E>` where both
//! sides do, so a handler can use `?` and keep its error answers in one `impl IntoResponse for
//! MyError` ([`Problem`] builds an RFC 9457 body).
//!
//! ```
//! use ringcore_http::{get, IntoResponse, Path, Problem, Query, Response, Router, StatusCode};
//! use serde::Deserialize;
//!
//! enum ShopError {
//!     NoSuchItem(String),
//! }
//!
//! impl IntoResponse for ShopError {
//!     fn into_response(self) -> Response {
//!         match self {
//!             ShopError::NoSuchItem(i) => {
//!                 Problem::new(StatusCode::NOT_FOUND, "urn:shop:no-item", "No such item")
//!                     .detail(format!("no item {i:?}"))
//!                     .into_response()
//!             }
//!         }
//!     }
//! }
//!
//! #[derive(Deserialize)]
//! struct Page {
//!     page: Option<u32>,
//! }
//!
//! // GET /shops/{shop}/items/{item}?page=2 (parameters are percent-decoded).
//! async fn item(
//!     Path((shop, item)): Path<(String, String)>,
//!     Query(p): Query<Page>,
//! ) -> Result<String, ShopError> {
//!     if item == "gone" {
//!         return Err(ShopError::NoSuchItem(item));
//!     }
//!     Ok(format!("{shop}/{item}, page {}", p.page.unwrap_or(1)))
//! }
//!
//! let _ = Router::new().route("/shops/{shop}/items/{item}", get(item));
//! ```
//!
//! What differs from axum, because handlers run per core and are `!Send`: extractors and
//! handlers have no `Send` bounds; the state is built on each core and held in an `Rc`, so
//! [`State<T>`] holds an `Rc<T>` (`T` need not be `Clone`) and sub-states come from
//! [`FromRef`] returning an `Rc`; extraction traits take the state as `&Rc<S>`; bodies are
//! buffered whole (up to the body limit) before the handler runs, unless it takes a
//! [`BodyStream`].
//!
//! ## Streaming bodies both ways
//!
//! A handler whose last argument is a [`BodyStream`] is called as soon as the request's head
//! is complete; `body.next().await` reads the body from the socket as it goes (one chunk
//! at a time, so a fast client is held back by TCP flow control; the body limit and read
//! timeout still apply, see [`BodyError`]). A response body can stream too:
//! [`Body::channel`] gives a sender whose [`feed`](BodySender::feed) waits while the client
//! is slow to read.
//!
//! ```
//! use ringcore_http::{post, BodyError, BodyStream, Router};
//!
//! // Counts the lines of an upload of any size, holding one chunk at a time.
//! async fn lines(mut body: BodyStream) -> Result<String, BodyError> {
//!     let mut n = 0;
//!     while let Some(chunk) = body.next().await {
//!         n += chunk?.iter().filter(|&&b| b == b'\n').count();
//!     }
//!     Ok(format!("{n} lines\n"))
//! }
//! let _ = Router::new().route("/lines", post(lines));
//! ```
//!
//! ## Per-core set-up that awaits
//!
//! [`Server::serve`] takes a plain factory; [`Server::serve_async`] takes an async one,
//! `|core| async move { .. }`, run on each core before any core listens (connect to a
//! database, warm a cache, keep the result in the router's state). It returns a [`Router`]
//! or `Result<Router, E>`: an error on any core stops start-up with its message.
//!
//! ## Observability
//!
//! - [`metrics::prometheus`] serves every core's metrics merged; request latency is the
//!   histogram `ringcore_http_request_duration_seconds{route}` (bounds:
//!   [`metrics::DEFAULT_LATENCY_BUCKETS`] or [`Server::latency_buckets`]).
//! - Every request has a `tracing` span `request` (target `ringcore_http::request`, INFO:
//!   `method`, `route`, `status`, `latency_us`, `request_id`) around its middleware and
//!   handler, so any subscriber (fmt, OpenTelemetry, ...) sees requests. The request id is
//!   the client's `X-Request-Id` or a new one, and is returned as `X-Request-Id`. With no
//!   subscriber interested in that span, none of this runs (and no `X-Request-Id` is sent).
//!
//! ## Testing
//!
//! A router answers a request in process with [`Router::oneshot`] (a [`Request`] from
//! [`Request::builder`], on a core: `#[ringcore_runtime::test]`), or over a real socket with
//! [`test::TestServer`], which serves it on `127.0.0.1:0` and gives a blocking client:
//!
//! ```ignore
//! use ringcore_http::{get, Request, Router};
//!
//! fn app() -> Router {
//!     Router::new().route("/", get(|| async { "hi" }))
//! }
//!
//! #[ringcore_runtime::test]
//! async fn in_process() {
//!     let resp = app().oneshot(Request::builder().uri("/").body("").unwrap()).await;
//!     assert_eq!(ringcore_http::test::body_text(&resp).await, "hi");
//! }
//!
//! #[test]
//! fn over_a_socket() {
//!     let server = ringcore_http::test::TestServer::start(app);
//!     assert_eq!(server.get("/").text(), "hi");
//! } // dropping the server stops it
//! ```
//! ## HTTPS and the client
//!
//! `Server::bind(..).tls(TlsConfig::from_pem_files("cert.pem", "key.pem")?)` serves HTTPS
//! with rustls ([`tls`]: ALPN `h2` and `http/1.1`, session resumption, a handshake timeout,
//! and [`TlsConfig::reload`] to swap certificates without a restart). [`client::Client`]
//! calls other services over HTTP/1.1 or HTTPS with a per-core keep-alive pool, and over
//! HTTP/2 when asked (`ClientBuilder::http2`: ALPN `h2`; or prior knowledge on cleartext).
//!
//! ## HTTP/2
//!
//! Every server also speaks HTTP/2 ([`http2`]: hyper's HTTP/2 server on the connection's
//! core), with no change to the router: over TLS when the client picks ALPN `h2`, and on
//! cleartext to a client that starts with the HTTP/2 preface ("prior knowledge", `curl
//! --http2-prior-knowledge`). The same router, extractors, middleware, metrics and request
//! span serve both protocols, and the request limits of [`Limits`] apply to both.
//! `Server::http2(Http2::default().max_concurrent_streams(100))` sets the HTTP/2 limits
//! ([`Http2`]); `Server::without_http2()` serves HTTP/1 only.
//!
//! ## Examples
//!
//! One runnable example per feature in `http/examples/` (`cargo run -p ringcore-http
//! --example NAME -- --help`); each prints `NAME listening on ADDR` once it serves:
//!
//! | example | shows |
//! |---|---|
//! | `extract` | path tuples, query, sub-state, `WithRejection`, an error enum answering problems |
//! | `streaming` | a [`BodyStream`] upload read as it arrives; a [`Body::channel`] response fed with `feed` |
//! | `state` | [`Server::serve_async`] (an async per-core factory), [`State`] with [`FromRef`] sub-states |
//! | `testing` | [`Router::oneshot`] and [`test::TestServer`] in a `#[cfg(test)]` module (`cargo test` runs it) |
//! | `tls` | HTTPS from `--tls-cert` / `--tls-key` with [`TlsConfig`], reload without restart |
//! | `client` | [`client::Client`] fetching the URLs given on the command line |
//! | `observability` | request spans printed by `tracing_subscriber`, `/metrics` with an app counter |
//! | `governed` | load shedding under overload (the governance benchmark's server) |
//!
//! ## Protocol choices
//!
//! The server follows RFC 9112 and RFC 9110 for what a server must do, and makes these
//! choices where the RFCs allow one:
//!
//! - **Bare LF** is accepted as a line terminator in the head (RFC 9112 section 2.2 allows
//!   it); a bare CR is rejected (400). Chunked framing takes CRLF only (section 7.1): a bare LF
//!   after a chunk size, chunk data, the last chunk or a trailer line is 400 and close.
//! - **obs-fold** (a header line starting with whitespace) is rejected with 400, never unfolded.
//! - **Leading empty lines** before a request line are skipped (section 2.2).
//! - **Content-Length** with a list of identical values (`5, 5`, or repeated fields with the
//!   same value) is taken as that value; differing values are 400 and close.
//! - **Transfer-Encoding** other than exactly `chunked` (any other coding, `chunked` not last,
//!   `chunked` twice), Transfer-Encoding with Content-Length, or Transfer-Encoding in an
//!   HTTP/1.0 request: 400 and close (request smuggling defence, section 6.3).
//! - **Trailers** of a chunked request are checked for shape, bounded by the header limits,
//!   and discarded; they never become request headers.
//! - **Unknown methods** get 501; a well-formed HTTP version other than 1.x gets 505 (the
//!   version is checked first, so the HTTP/2 preface gets 505 on a server without HTTP/2).
//! - **Host**: an HTTP/1.1 request without exactly one valid Host gets 400.
//! - **Absolute-form** targets (`http://host/path?q`, any scheme case, `https` too) are routed
//!   on their path: the authority ends at the first `/` or `?` (`http://a?/x` is path `/`,
//!   query `/x`), an empty path is `/`. The authority must be `[userinfo@]host[:port]` with a
//!   non-empty host, else 400; userinfo is checked, then ignored. Host is still required.
//! - **Half-close**: when a client shuts down its sending side, every complete request
//!   received before that is answered, then the connection is closed; an incomplete one is
//!   dropped without a response.
//! - **Errors close**: every 4xx/5xx the server generates from a protocol error carries
//!   `Connection: close` and the connection is closed after it.
//! - **HTTP/1.0**: answered with an `HTTP/1.1` status line (section 2.5), no chunked bodies
//!   (a streaming body is delimited by closing the connection), keep-alive only on request.
//!
//! Every limit is a named constant in [`limits`] with an override in [`Limits`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body_stream;
mod budget;
mod bufpool;
pub mod client;
mod conn;
pub mod extract;
mod handler;
pub mod http2;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod proto;
mod request;
mod request_builder;
mod response;
mod router;
mod server;
mod span;
pub mod test;
pub mod tls;

pub use body_stream::{BodyError, BodyStream};
pub use bytes::Bytes;
pub use extract::{
    ConnectInfo, Extension, Form, FromRef, FromRequest, FromRequestParts, Params, Path, Query, State,
};
pub use handler::Handler;
pub use http::{header, HeaderName, HeaderValue, Method, StatusCode, Version};
pub use http::{HeaderMap, Uri};
pub use http2::Http2;
pub use limits::Limits;
pub use request::{Parts, Request, RequestBody};
pub use request_builder::{BuildError, RequestBuilder};
pub use response::{
    Body, BodyReceiver, BodySender, IntoResponse, Json, Problem, ReceiverGone, Response,
    DEFAULT_STREAM_CAPACITY,
};
pub use ringcore_runtime as runtime;
pub use router::{any, delete, get, options, patch, post, put, MethodRouter, Router};
pub use server::{IntoRouter, Server, ShutdownReport, DEFAULT_GRACEFUL_TIMEOUT};
pub use span::MAX_REQUEST_ID;
pub use tls::TlsConfig;
