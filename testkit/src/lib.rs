//! What ringcore's tools and tests share, so that each exists once.
//!
//! - [`http1`]: the one HTTP/1.x *response* parser (on `httparse`), for every client in the
//!   workspace: `ringcore-load`, `flash-sale demo` and the integration tests. It frames
//!   bodies the way RFC 9112 §6.3 says (HEAD, 1xx, 204 and 304 carry none; chunked;
//!   `Content-Length`; close-delimited) in two forms: [`http1::Response::parse`] takes one
//!   whole response off the front of a buffer (head, body and trailers owned), and
//!   [`http1::Delimiter`] only finds where each response ends in a stream fed in pieces
//!   (the load generator's form: nothing kept but a partial head or chunk line).
//! - [`schedule`]: the open-loop schedule both load generators use: request `slot` is due at
//!   `start + slot / rate`, and connection `c` of `n` sends slots `c, c + n, c + 2n, ...`.
//!
//! - [`tmp`]: [`tmp::TempDir`], the fresh temporary directory every file-system test needs.
//!
//! - [`rt`] (feature `runtime`, integration tests only): `one_core`, `run1`, `run_on`, the
//!   helpers every test file used to copy.
//!
//! Without the `runtime` feature the crate does not depend on the runtime: it does no I/O.

pub mod http1;
#[cfg(feature = "runtime")]
pub mod rt;
pub mod schedule;
pub mod tmp;
