//! The HTTP/1.x response parser every client in the workspace uses.
//!
//! One head parser ([`head`](self) on `httparse::Response`) decides the framing once
//! ([`Framing`]), following RFC 9112 §6.3:
//!
//! 1. a response to HEAD, any 1xx, 204 and 304 have no body whatever their fields say;
//! 2. `Transfer-Encoding` whose last coding is `chunked`: a chunked body (it overrides
//!    `Content-Length`); any other transfer coding: the body runs until the server closes;
//! 3. `Content-Length` (every value the same valid number, repeated or comma-listed);
//! 4. otherwise the body runs until the server closes the connection.
//!
//! A 1xx is an interim response: [`Response::parse`] returns it like any other (a test may
//! want to see `100 Continue`); [`Delimiter`] skips it (the final answer follows).

mod chunked;
mod delimiter;
mod head;
mod response;

pub use delimiter::Delimiter;
pub use head::Framing;
pub use response::Response;

/// The longest response head (status line and fields) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a response may have.
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size or trailer line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// What the response answers: a HEAD request's response has no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A response to HEAD.
    Head,
    /// A response to any other method.
    Other,
}

/// A malformed response (the message says what is wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Error(what.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed response: {}", self.0)
    }
}

impl std::error::Error for Error {}
