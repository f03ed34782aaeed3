//! Request head parsing and validation.
//!
//! `httparse` does the tokenising (it rejects bad tokens, control characters in values,
//! whitespace before a colon, obs-fold); this module applies the rest of RFC 9112 / 9110 that
//! a server must enforce: method, target form, version, Host, and message framing.

use std::ops::Range;

use http::{Method, StatusCode, Version};

use crate::limits::Limits;

/// Header slots tried first, on the stack; more fields re-parse with `max_headers` slots.
const SMALL_HEADERS: usize = 16;

type Fields<'b, 'h> = (usize, &'h [httparse::Header<'b>]);

fn parse_block<'b, 'h>(
    block: &'b [u8],
    slots: &'h mut [httparse::Header<'b>],
) -> Result<Option<Fields<'b, 'h>>, httparse::Error> {
    match httparse::parse_headers(block, slots)? {
        httparse::Status::Complete(done) => Ok(Some(done)),
        httparse::Status::Partial => Ok(None),
    }
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A validated request head; ranges point into the head bytes.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) version: Version,
    pub(crate) target: Range<usize>,
    /// The part of the target routed on: path and query. The whole target for origin-form
    /// (and asterisk- and authority-form); after the authority for absolute-form, where it may
    /// be empty or start with `?` (the path is then `/`).
    pub(crate) path_and_query: Range<usize>,
    /// The field lines (validated), from the first field to the end of the head: read lazily
    /// by [`fields`], so a request whose handler reads no field costs no allocation.
    pub(crate) fields: Range<usize>,
    pub(crate) len: usize,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
}

/// Why a head was refused: the status to answer with. Every refusal closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
}

fn reject(status: StatusCode, reason: &'static str) -> Reject {
    Reject { status, reason }
}

fn bad(reason: &'static str) -> Reject {
    reject(StatusCode::BAD_REQUEST, reason)
}

/// Where the request line ends and what it holds (ranges into the buffer).
struct Line {
    method: Range<usize>,
    target: Range<usize>,
    major: u8,
    minor: u8,
    /// Index just past the line's LF.
    end: usize,
}

/// Byte classes for the scanners (one table lookup per byte on the hot path).
const TCHAR: u8 = 1;
const TARGET: u8 = 2;
const HOST: u8 = 4;

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let alnum = c.is_ascii_alphanumeric();
        let mut v = 0;
        if alnum
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            v |= TCHAR;
        }
        if c >= 0x21 && c <= 0x7e {
            v |= TARGET;
        }
        if alnum
            || matches!(
                c,
                b'.' | b'-'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
        {
            v |= HOST;
        }
        t[b] = v;
        b += 1;
    }
    t
}

static CLASS: [u8; 256] = classes();

pub(crate) fn is_tchar(b: u8) -> bool {
    CLASS[usize::from(b)] & TCHAR != 0
}

/// Why a scan stopped at position `at` without a verdict from the grammar: the buffer ended
/// there (incomplete), or a size limit is crossed there.
fn stop_at(at: usize, buf_len: usize, line_cap: usize, head_cap: usize) -> Result<Option<Line>, Reject> {
    if at >= head_cap {
        Err(reject(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header section too large",
        ))
    } else if at >= line_cap {
        Err(reject(StatusCode::URI_TOO_LONG, "request line too long"))
    } else {
        debug_assert!(at >= buf_len);
        Ok(None)
    }
}

/// Scans the request line left to right from `start`.
///
/// Every verdict is positional: the first byte that breaks the grammar (400) or crosses a
/// size limit (414 for the line, 431 for the head) decides, so the outcome for a byte stream
/// does not depend on how it was split into reads. `Ok(None)`: incomplete, no verdict yet.
fn scan_line(buf: &[u8], start: usize, limits: &Limits) -> Result<Option<Line>, Reject> {
    let line_cap = start.saturating_add(limits.max_request_line);
    let head_cap = limits.max_header_bytes;
    // Content bytes (method, target, version) must lie before both caps; the line terminator
    // only before the head cap.
    let content_end = buf.len().min(line_cap).min(head_cap);
    let stop = |at: usize| stop_at(at, buf.len(), line_cap, head_cap);

    // method = token, then one SP
    let mut i = start;
    while i < content_end && CLASS[usize::from(buf[i])] & TCHAR != 0 {
        i += 1;
    }
    if i == content_end {
        return stop(i);
    }
    if buf[i] != b' ' || i == start {
        return Err(bad("malformed request line"));
    }
    let method = start..i;
    // request-target = visible ASCII, then one SP
    let target_start = i + 1;
    i = target_start;
    while i < content_end && CLASS[usize::from(buf[i])] & TARGET != 0 {
        i += 1;
    }
    if i == content_end {
        return stop(i);
    }
    if buf[i] != b' ' || i == target_start {
        return Err(bad("malformed request target"));
    }
    let target = target_start..i;
    // HTTP-version = "HTTP/" DIGIT "." DIGIT
    let vs = i + 1;
    for k in 0..8 {
        let at = vs + k;
        if at >= content_end {
            return stop(at);
        }
        let b = buf[at];
        let ok = match k {
            0..=4 => b == b"HTTP/"[k],
            5 | 7 => b.is_ascii_digit(),
            _ => b == b'.',
        };
        if !ok {
            return Err(bad("malformed HTTP version"));
        }
    }
    let (major, minor) = (buf[vs + 5] - b'0', buf[vs + 7] - b'0');
    // CRLF or a bare LF.
    let mut at = vs + 8;
    if at >= head_cap || at >= buf.len() {
        return stop_at(at, buf.len(), usize::MAX, head_cap);
    }
    if buf[at] == b'\r' {
        at += 1;
        if at >= head_cap || at >= buf.len() {
            return stop_at(at, buf.len(), usize::MAX, head_cap);
        }
        if buf[at] != b'\n' {
            return Err(bad("CR without LF in request line"));
        }
    } else if buf[at] != b'\n' {
        return Err(bad("malformed HTTP version"));
    }
    Ok(Some(Line {
        method,
        target,
        major,
        minor,
        end: at + 1,
    }))
}

/// Parses and validates a request head at the start of `buf`.
///
/// `Ok(None)`: incomplete, read more. `Err`: answer with the status and close.
pub(crate) fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Reject> {
    // Leading empty lines are skipped (RFC 9112 section 2.2); they count toward the head size.
    let Some(start) = buf.iter().position(|&b| b != b'\r' && b != b'\n') else {
        if buf.len() >= limits.max_header_bytes {
            return Err(reject(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header section too large",
            ));
        }
        return Ok(None);
    };
    let Some(line) = scan_line(buf, start, limits)? else {
        return Ok(None);
    };
    // The header block, parsed only up to the head size limit (positional, as above).
    let cap = buf.len().min(limits.max_header_bytes);
    let block = buf.get(line.end..cap).unwrap_or(&[]);
    // Most requests have few fields: try a small slot array first (cheap to initialise) and
    // re-parse with the full limit only if it overflows. The verdict is the same either way.
    let mut small = [httparse::EMPTY_HEADER; SMALL_HEADERS];
    let mut big = Vec::new();
    let first = parse_block(block, &mut small[..limits.max_headers.min(SMALL_HEADERS)]);
    let parsed = match first {
        Err(httparse::Error::TooManyHeaders) if limits.max_headers > SMALL_HEADERS => {
            big.resize(limits.max_headers, httparse::EMPTY_HEADER);
            parse_block(block, &mut big)
        }
        other => other,
    };
    let (block_len, fields) = match parsed {
        Ok(Some(done)) => done,
        Ok(None) => {
            if buf.len() >= limits.max_header_bytes {
                return Err(reject(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "header section too large",
                ));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(reject(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields",
            ));
        }
        Err(httparse::Error::HeaderName) => return Err(bad("malformed header field name")),
        Err(httparse::Error::HeaderValue) => return Err(bad("malformed header field value")),
        Err(_) => return Err(bad("malformed header section")),
    };
    let len = line.end + block_len;

    let method = match &buf[line.method.clone()] {
        b"GET" => Method::GET,
        b"POST" => Method::POST,
        b"HEAD" => Method::HEAD,
        b"PUT" => Method::PUT,
        b"DELETE" => Method::DELETE,
        b"PATCH" => Method::PATCH,
        b"OPTIONS" => Method::OPTIONS,
        b"CONNECT" => Method::CONNECT,
        b"TRACE" => Method::TRACE,
        _ => return Err(reject(StatusCode::NOT_IMPLEMENTED, "unknown method")),
    };
    // HTTP/1.x with x > 1 is processed as HTTP/1.1 (RFC 9110 section 2.5); another major
    // version gets 505.
    let version = match (line.major, line.minor) {
        (1, 0) => Version::HTTP_10,
        (1, _) => Version::HTTP_11,
        _ => {
            return Err(reject(
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "HTTP version not supported",
            ));
        }
    };
    // The scanner admitted only visible ASCII here.
    let path = std::str::from_utf8(&buf[line.target.clone()]).map_err(|_| bad("malformed request target"))?;
    let origin_at = validate_target(&method, path)?;
    let target = line.target;
    let path_and_query = target.start + origin_at..target.end;

    let field_block = line.end..len;
    let mut host_count = 0;
    let mut content_length: Option<u64> = None;
    let mut te_seen = false;
    let mut chunked_final = false;
    let mut te_bad = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for h in fields.iter() {
        let name = h.name;
        let value = h.value;
        let known = matches!(name.len(), 4 | 6 | 10 | 14 | 17);
        if !known {
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            host_count += 1;
            if !valid_host(value) {
                return Err(bad("invalid Host header"));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value).ok_or_else(|| bad("invalid Content-Length"))?;
            match content_length {
                Some(prev) if prev != n => return Err(bad("conflicting Content-Length values")),
                _ => content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te_seen = true;
            for coding in split_list(value) {
                if chunked_final {
                    // Anything after `chunked` (including a second `chunked`) is invalid.
                    te_bad = true;
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked_final = true;
                } else {
                    // We implement no other transfer coding.
                    te_bad = true;
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in split_list(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(reject(StatusCode::EXPECTATION_FAILED, "unsupported expectation"));
            }
        }
    }
    if version == Version::HTTP_11 && host_count == 0 {
        return Err(bad("missing Host header"));
    }
    if host_count > 1 {
        return Err(bad("more than one Host header"));
    }
    let framing = if te_seen {
        if content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if version == Version::HTTP_10 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if te_bad || !chunked_final {
            return Err(bad("unsupported transfer coding"));
        }
        Framing::Chunked
    } else {
        match content_length {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        }
    };
    if let Framing::Length(n) = framing {
        if n > limits.max_body_bytes as u64 {
            return Err(reject(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"));
        }
    }
    let keep_alive = match version {
        Version::HTTP_11 => !close,
        _ => keep_alive_token && !close,
    };
    Ok(Some(Head {
        method,
        version,
        target,
        path_and_query,
        fields: field_block,
        len,
        framing,
        keep_alive,
        expect_continue: expect_continue && version == Version::HTTP_11 && framing != Framing::None,
    }))
}

/// Checks the request-target's form (RFC 9112 section 3.2); returns where its path and query
/// start: 0 except for absolute-form, where they follow the authority.
fn validate_target(method: &Method, path: &str) -> Result<usize, Reject> {
    if path.is_empty() {
        return Err(bad("empty request target"));
    }
    if path.contains('#') {
        return Err(bad("fragment in request target"));
    }
    if *method == Method::CONNECT {
        // authority-form only (RFC 9112 section 3.2.3): host:port.
        return if !path.starts_with('/') && path.contains(':') && !path.contains('/') {
            Ok(0)
        } else {
            Err(bad("CONNECT needs authority-form"))
        };
    }
    if path.starts_with('/') {
        return Ok(0); // origin-form
    }
    if path == "*" {
        return if *method == Method::OPTIONS {
            Ok(0) // asterisk-form
        } else {
            Err(bad("asterisk-form is only for OPTIONS"))
        };
    }
    absolute_form(path.as_bytes()).ok_or_else(|| bad("invalid request target"))
}

/// Parses an absolute-form target, `http[s]://authority[path-abempty][?query]` with the scheme
/// in any case (RFC 9112 section 3.2.2, RFC 3986 section 3); returns where the authority ends
/// (the path and query follow: a `/`, a `?`, or nothing). The authority ends at the first `/`
/// or `?`, so in `http://a?/x` the path is `/` and the query `/x`. `None`: another scheme, or
/// an authority that is not `[userinfo "@"] host [":" port]` with a non-empty host (RFC 9110
/// section 4.2.1 forbids an empty one). The userinfo is checked and ignored, like the Host
/// header: the router sees only the path.
fn absolute_form(t: &[u8]) -> Option<usize> {
    let scheme = t.iter().position(|&b| b == b':')?;
    if !t[..scheme].eq_ignore_ascii_case(b"http") && !t[..scheme].eq_ignore_ascii_case(b"https") {
        return None;
    }
    let start = scheme + 3;
    if t.get(scheme..start)? != b"://" {
        return None;
    }
    let end = t[start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(t.len(), |i| start + i);
    let authority = &t[start..end];
    // userinfo = *( unreserved / pct-encoded / sub-delims / ":" ): no `@`, so the last `@`
    // ends it (a second one fails the check).
    let host_port = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => {
            if !uri_chars(&authority[..at], b":") {
                return None;
            }
            &authority[at + 1..]
        }
        None => authority,
    };
    let port_at = if host_port.first() == Some(&b'[') {
        // IP-literal = "[" ( IPv6address / IPvFuture ) "]"
        let close = host_port.iter().position(|&b| b == b']')?;
        let inner = &host_port[1..close];
        if inner.is_empty() || !uri_chars(inner, b":") {
            return None;
        }
        close + 1
    } else {
        // IPv4address / reg-name, possibly empty (refused below)
        let colon = host_port
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(host_port.len());
        if colon == 0 || !uri_chars(&host_port[..colon], b"") {
            return None;
        }
        colon
    };
    match &host_port[port_at..] {
        [] => Some(end),
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => Some(end),
        _ => None,
    }
}

/// True if `s` is `*( unreserved / pct-encoded / sub-delims / extra )` (RFC 3986 section 2).
fn uri_chars(s: &[u8], extra: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            if !(s.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) || extra.contains(&b);
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// Host = uri-host [ ":" port ]; empty is allowed (RFC 9112 3.2).
fn valid_host(v: &[u8]) -> bool {
    v.iter().all(|&b| CLASS[usize::from(b)] & HOST != 0)
}

/// `Content-Length = 1*DIGIT`; a list of identical values ("5, 5") is accepted as one.
fn parse_content_length(v: &[u8]) -> Option<u64> {
    let mut out: Option<u64> = None;
    for part in split_list(v) {
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut n: u64 = 0;
        for &d in part {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        match out {
            Some(prev) if prev != n => return None,
            _ => out = Some(n),
        }
    }
    out
}

/// The (name, value) pairs of a validated field block, in order (values without surrounding
/// whitespace). Only for blocks `parse` accepted: it relies on their shape.
pub(crate) fn fields(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], trim_ows(&line[colon + 1..])))
    })
}

/// Splits a comma-separated field value into trimmed, non-empty elements.
pub(crate) fn split_list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim_ows).filter(|p| !p.is_empty())
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<Head>, Reject> {
        parse(s.as_bytes(), &Limits::default())
    }

    fn status(s: &str) -> StatusCode {
        match p(s) {
            Err(r) => r.status,
            Ok(_) => StatusCode::OK,
        }
    }

    #[test]
    fn content_length_rules() {
        assert_eq!(parse_content_length(b"42"), Some(42));
        assert_eq!(parse_content_length(b"7, 7"), Some(7));
        assert_eq!(parse_content_length(b"7, 8"), None);
        assert_eq!(parse_content_length(b"+7"), None);
        assert_eq!(parse_content_length(b"0x10"), None);
        assert_eq!(parse_content_length(b"99999999999999999999999"), None);
        assert_eq!(parse_content_length(b""), None);
    }

    #[test]
    fn framing_and_smuggling() {
        let ok = p("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(ok.ok().flatten().map(|h| h.framing), Some(Framing::Length(5)));
        let te = p("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(te.ok().flatten().map(|h| h.framing), Some(Framing::Chunked));
        for bad in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        ] {
            assert_eq!(status(bad), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        assert_eq!(
            status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            StatusCode::HTTP_VERSION_NOT_SUPPORTED
        );
        assert_eq!(
            status("BREW / HTTP/1.1\r\nHost: a\r\n\r\n"),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nExpect: tea\r\nContent-Length: 1\r\n\r\n"),
            StatusCode::EXPECTATION_FAILED
        );
    }

    #[test]
    fn versions_and_connection() {
        let h10 = p("GET / HTTP/1.0\r\n\r\n")
            .ok()
            .flatten()
            .map(|h| (h.version, h.keep_alive));
        assert_eq!(h10, Some((Version::HTTP_10, false)));
        let h10ka = p("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .ok()
            .flatten()
            .map(|h| h.keep_alive);
        assert_eq!(h10ka, Some(true));
        let h11c = p("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .ok()
            .flatten()
            .map(|h| h.keep_alive);
        assert_eq!(h11c, Some(false));
        // Leading empty lines are skipped (RFC 9112 2.2).
        assert!(matches!(
            p("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Some(_))
        ));
        // Asterisk-form for OPTIONS, absolute-form, authority-form for CONNECT.
        assert!(matches!(p("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Some(_))));
        assert!(matches!(
            p("GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Some(_))
        ));
        assert!(matches!(
            p("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            Ok(Some(_))
        ));
    }

    /// The path-and-query slice of an accepted GET to `target`, or the status it got.
    fn routed(target: &str) -> Result<String, StatusCode> {
        let req = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        match parse(req.as_bytes(), &Limits::default()) {
            Ok(Some(h)) => Ok(req[h.path_and_query].to_string()),
            Ok(None) => Err(StatusCode::CONTINUE),
            Err(r) => Err(r.status),
        }
    }

    #[test]
    fn absolute_form_authority_ends_at_the_first_slash_or_question_mark() {
        for (target, pq) in [
            ("/plain?x=1", "/plain?x=1"),
            ("http://a/x?q", "/x?q"),
            ("http://a", ""),
            ("http://a?/plaintext", "?/plaintext"),
            ("http://a:8080/p", "/p"),
            ("http://a:/p", "/p"),
            ("HTTP://A/p", "/p"),
            ("HtTpS://a/p", "/p"),
            ("https://a?q", "?q"),
            ("http://user@a/p", "/p"),
            ("http://user:pw%41@a:1/p", "/p"),
            ("http://user@a?/admin", "?/admin"),
            ("http://[::1]:8080/p", "/p"),
            ("http://[v7.fe80::1]/p", "/p"),
            ("http://127.0.0.1/p@q", "/p@q"),
            ("http://a%2Eb/", "/"),
            ("http://a/", "/"),
        ] {
            assert_eq!(routed(target).as_deref(), Ok(pq), "{target}");
        }
        for target in [
            "http://",
            "http:///p",
            "http://?q",
            "http://:80/p",
            "http://user@/p",
            "http://a@b@c/p",
            "http://a:b/p",
            "http://a:80:80/p",
            "http://[::1/p",
            "http://[]/p",
            "http://[::1]x/p",
            "http://a%2/p",
            "http://a\"b/p",
            "http://a<b/p",
            "http:/a/p",
            "http:a/p",
            "ftp://a/p",
            "httpx://a/p",
            "://a/p",
            "a/p",
        ] {
            assert_eq!(routed(target), Err(StatusCode::BAD_REQUEST), "{target}");
        }
    }

    #[test]
    fn size_limits() {
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(MAX));
        assert_eq!(status(&long_uri), StatusCode::URI_TOO_LONG);
        let partial_long = format!("GET /{}", "a".repeat(MAX));
        assert_eq!(status(&partial_long), StatusCode::URI_TOO_LONG);
        let big_header = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "b".repeat(20_000));
        assert_eq!(status(&big_header), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(status(&many), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let huge = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999\r\n\r\n";
        assert_eq!(status(huge), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            matches!(p("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None)),
            "incomplete head"
        );
    }

    const MAX: usize = crate::limits::MAX_REQUEST_LINE + 10;
}
#[cfg(test)]
mod limit_edge {
    use super::*;

    #[test]
    fn request_line_exactly_at_limit() {
        let limits = Limits::default();
        let target = "a".repeat(limits.max_request_line - "GET /".len() - " HTTP/1.1".len());
        let req = format!("GET /{target} HTTP/1.1\r\nHost: t\r\n\r\n");
        for cut in [4096, 8192, 8193, req.len()] {
            let r = parse(&req.as_bytes()[..cut], &limits);
            assert!(r.is_ok(), "cut {cut}: {r:?}");
        }
        let over = format!("GET /a{target} HTTP/1.1\r\nHost: t\r\n\r\n");
        for cut in [8193, 8194, over.len()] {
            let r = parse(&over.as_bytes()[..cut], &limits).map(|_| ());
            assert_eq!(
                r.map_err(|e| e.status),
                Err(StatusCode::URI_TOO_LONG),
                "cut {cut}"
            );
        }
    }
}
