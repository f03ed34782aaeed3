//! Protocol limits: each a named constant with its default, overridable with [`Limits`].

use std::time::Duration;

/// Longest request line (method, target, version) accepted; longer gets 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest header section (request line + fields) accepted; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields accepted in one request (or in a chunked body's trailers); more gets 431.
pub const MAX_HEADERS: usize = 64;
/// Largest request body accepted (Content-Length or chunked total); larger gets 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest chunk-size line (size plus extensions) in a chunked body; longer gets 400.
pub const MAX_CHUNK_LINE: usize = 1024;
/// Time allowed to receive a complete request head once its first byte arrived (slowloris
/// defence); exceeded gets 408 and the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to receive a request body once its head arrived; exceeded gets 408 + close.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a streamed request body left unread by its handler that the connection
/// reads and discards after the handler returned, to keep the connection open (as hyper
/// does); a longer rest (a Content-Length body with more left, or a chunked one that does
/// not end within it) closes the connection after the response.
pub const MAX_UNREAD_BODY_DRAIN: usize = 64 * 1024;
/// How long an idle keep-alive connection is kept open; then it is closed silently.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// After the server decides to close a connection, how long it keeps reading (and
/// discarding) what the client still sends, after half-closing its side, so that unread input
/// does not turn the close into a reset that destroys the last response (RFC 9112 section 9.6).
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes discarded while lingering before the connection is closed anyway.
pub const LINGER_MAX_BYTES: usize = 1024 * 1024;
/// Most open connections per core; a connection beyond it gets 503 and is closed.
pub const MAX_CONNECTIONS_PER_CORE: usize = 16 * 1024;
/// Most responses queued in one coalesced write before it is flushed (the default of
/// [`Limits::max_pending_response_bytes`]).
pub const MAX_PIPELINE_FLUSH_BYTES: usize = 64 * 1024;
/// Most response bytes a connection queues in user space before it stops reading and handling
/// requests until that output is written. A client that pipelines requests and never reads
/// its responses then meets TCP flow control: its requests stay in the kernel's buffers and
/// then on its side of the connection.
pub const MAX_PENDING_RESPONSE_BYTES: usize = MAX_PIPELINE_FLUSH_BYTES;
/// How long a write may make no progress (not one byte accepted by the kernel) before the
/// connection is closed: a client that stops reading its responses (like nginx's
/// `send_timeout`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of request bodies one core holds in memory across reads, for all its
/// connections together. A body that arrives with its head in one read is handled at once and
/// not counted. Otherwise, when the head is complete, a body of declared length
/// (Content-Length) reserves all of it, so a body that started can always finish; a chunked
/// body reserves each read's bytes before they are kept. Everything is given back when the
/// request has been answered or the connection ends. A body that finds no room waits up to
/// [`BODY_BUDGET_WAIT`], then gets 503 + `Retry-After`. Keep it at least [`MAX_BODY_BYTES`],
/// or the largest bodies can never be accepted.
pub const BODY_BUFFER_BUDGET: usize = 64 * 1024 * 1024;
/// How long a body waits for room in the core's [`BODY_BUFFER_BUDGET`] before it is answered
/// `503 Service Unavailable` with `Retry-After` (and the connection is closed).
pub const BODY_BUDGET_WAIT: Duration = Duration::from_secs(1);

/// The limits a server enforces. `Limits::default()` uses the constants above.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// See [`MAX_REQUEST_LINE`].
    pub max_request_line: usize,
    /// See [`MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// See [`MAX_HEADERS`].
    pub max_headers: usize,
    /// See [`MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// See [`MAX_CHUNK_LINE`].
    pub max_chunk_line: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// See [`KEEP_ALIVE_TIMEOUT`].
    pub keep_alive_timeout: Duration,
    /// See [`MAX_CONNECTIONS_PER_CORE`].
    pub max_connections_per_core: usize,
    /// See [`LINGER_TIMEOUT`].
    pub linger_timeout: Duration,
    /// See [`WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// See [`MAX_PENDING_RESPONSE_BYTES`].
    pub max_pending_response_bytes: usize,
    /// See [`BODY_BUFFER_BUDGET`].
    pub body_buffer_budget: usize,
    /// See [`BODY_BUDGET_WAIT`].
    pub body_budget_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line: MAX_REQUEST_LINE,
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
            max_body_bytes: MAX_BODY_BYTES,
            max_chunk_line: MAX_CHUNK_LINE,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            keep_alive_timeout: KEEP_ALIVE_TIMEOUT,
            max_connections_per_core: MAX_CONNECTIONS_PER_CORE,
            linger_timeout: LINGER_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_pending_response_bytes: MAX_PENDING_RESPONSE_BYTES,
            body_buffer_budget: BODY_BUFFER_BUDGET,
            body_budget_wait: BODY_BUDGET_WAIT,
        }
    }
}
