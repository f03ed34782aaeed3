//! The per-request `tracing` span and request id.
//!
//! Every request gets a span `request` (target `ringcore_http::request`, level INFO) with the
//! fields `method`, `route`, `status`, `latency_us` and `request_id`, entered while the
//! middleware and handler run, so their events carry it. The id is the request's
//! `X-Request-Id` when it has a usable one (1 to [`MAX_REQUEST_ID`] visible ASCII bytes),
//! otherwise a new one, and the response carries it back as `X-Request-Id` (unless the
//! handler set one).
//!
//! When no subscriber is interested in that span, nothing of this runs: `span.is_disabled()`
//! is checked first, and no id is read, made or sent (one cached interest check per
//! request).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::header::{HeaderName, HeaderValue};

use crate::request::Request;

/// The longest `X-Request-Id` taken from a request; a longer one is replaced.
pub const MAX_REQUEST_ID: usize = 128;

/// `x-request-id`.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

ringcore_runtime::core_local! {
    /// Request ids made on this core so far.
    static SEQ: Cell<u64> = Cell::new(0);
}

/// The span of one request (disabled unless a subscriber wants it).
#[inline]
pub(crate) fn request_span(req: &Request) -> tracing::Span {
    tracing::info_span!(
        target: "ringcore_http::request",
        "request",
        method = %req.method(),
        route = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_us = tracing::field::Empty,
        request_id = tracing::field::Empty,
    )
}

/// True if a subscriber wants the request span (the one [`request_span`] makes: same target,
/// name, level and fields), checked without a request.
pub(crate) fn spans_wanted() -> bool {
    !tracing::info_span!(
        target: "ringcore_http::request",
        "request",
        method = tracing::field::Empty,
        route = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_us = tracing::field::Empty,
        request_id = tracing::field::Empty,
    )
    .is_disabled()
}

/// The request's own usable `X-Request-Id`, or a new id: `<process>-<core>-<n>`, unique
/// within the process and, with a random-enough process part, across restarts.
pub(crate) fn request_id(req: &Request) -> HeaderValue {
    if let Some(v) = req.header("x-request-id") {
        if !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.iter().all(|b| b.is_ascii_graphic()) {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                return v;
            }
        }
    }
    let (core, n) = match SEQ.try_with(|s| {
        let n = s.get() + 1;
        s.set(n);
        n
    }) {
        Some(n) => (ringcore_runtime::shard_id().to_string(), n),
        // Off a shard (a router called from a plain thread): one process-wide sequence.
        None => {
            static OFF_SHARD: AtomicU64 = AtomicU64::new(0);
            ("x".to_string(), OFF_SHARD.fetch_add(1, Ordering::Relaxed) + 1)
        }
    };
    let id = format!("{:08x}-{core}-{n}", process_part());
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("unknown"))
}

/// A per-process value: start time and pid mixed, so two runs do not repeat ids.
fn process_part() -> u32 {
    static PART: OnceLock<u32> = OnceLock::new();
    *PART.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let x = nanos ^ (u64::from(std::process::id()) << 32);
        // splitmix64's finaliser: spread the bits.
        let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (x ^ (x >> 31)) as u32
    })
}
