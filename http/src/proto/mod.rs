//! HTTP/1.1 wire protocol: the seam between bytes and typed requests/responses.
//!
//! - [`parser`]: a push parser: bytes in ([`Parser::push`]), complete requests out
//!   ([`Parser::next_request`]), pipelining included. Pure: no I/O, no clock.
//! - [`head`]: request-line and field validation on top of `httparse` (RFC 9112 / 9110).
//! - [`chunked`]: the chunked transfer-coding decoder (state machine, trailers skipped).
//! - [`encode`]: response heads and bodies into the connection's output buffer.
//! - [`date`]: the per-core cached `Date` header value.

pub(crate) mod chunked;
pub(crate) mod date;
pub(crate) mod encode;
pub(crate) mod head;
pub(crate) mod parser;

pub use parser::{Parser, ProtoError, RawRequest};
