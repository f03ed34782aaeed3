//! # ringcore-http
//!
//! An HTTP/1.1 server and router on [`ringcore_runtime`]: one listener, router and set of
//! connections per core, nothing shared between cores on the request path.
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
//! ## HTTPS and the client
//!
//! `Server::bind(..).tls(TlsConfig::from_pem_files("cert.pem", "key.pem")?)` serves HTTPS
//! with rustls ([`tls`]: ALPN `http/1.1`, session resumption, a handshake timeout, and
//! [`TlsConfig::reload`] to swap certificates without a restart). [`client::Client`] calls
//! other services over HTTP/1.1 or HTTPS with a per-core keep-alive pool.
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
//! - **Unknown methods** get 501; a well-formed HTTP version other than 1.x gets 505.
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

mod budget;
pub mod client;
mod conn;
mod handler;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod proto;
mod request;
mod response;
mod router;
mod server;
pub mod tls;

pub use handler::{FromRequest, Handler, Params, Path, State};
pub use http::{header, HeaderName, HeaderValue, Method, StatusCode, Version};
pub use limits::Limits;
pub use request::Request;
pub use response::{Body, BodyReceiver, BodySender, IntoResponse, Json, Response};
pub use ringcore_runtime as runtime;
pub use router::{any, delete, get, options, patch, post, put, MethodRouter, Router};
pub use server::{Server, ShutdownReport, DEFAULT_GRACEFUL_TIMEOUT};
pub use tls::TlsConfig;
