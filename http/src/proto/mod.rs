//! HTTP/1.1 wire protocol: the seam between bytes and typed requests/responses.
//!
//! - [`parser`]: a push parser: bytes in ([`Parser::push`]), complete requests out
//!   ([`Parser::next_request`]), pipelining included. Pure: no I/O, no clock.
//! - [`head`]: the head parse, resumed across reads: fields through `httparse`, then method,
//!   version, Host and framing rules (RFC 9112 / 9110).
//! - [`line`]: the request-line scanner (resumable, positional verdicts).
//! - [`target`]: request-target forms; absolute-form parsed down to its path.
//! - [`chunked`]: the chunked transfer-coding decoder (state machine, trailers skipped).
//! - [`encode`]: response heads and bodies into the connection's output buffer.
//! - [`date`]: the per-core cached `Date` header value.

pub(crate) mod chunked;
pub(crate) mod date;
pub(crate) mod encode;
pub(crate) mod head;
pub(crate) mod line;
pub(crate) mod parser;
mod swar;
pub(crate) mod target;

pub use parser::{Parser, ProtoError, RawRequest};
