//! Request head parsing and validation.
//!
//! `httparse` does the tokenising (it rejects bad tokens, control characters in values,
//! whitespace before a colon, obs-fold); this module applies the rest of RFC 9112 / 9110 that
//! a server must enforce: method, target form, version, Host, and message framing.
//!
//! [`HeadScan`] resumes where the last read left off (the request line through
//! [`LineScan`](super::line::LineScan), the fields a complete line at a time), so a head costs
//! time linear in its size however the network split it.

use std::ops::Range;

use http::{Method, StatusCode, Version};

use super::line::{all_host_chars, is_tchar, target_class, Line, LineScan, TargetByte};
use super::target::validate_target;
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

/// The methods a request line may carry, each once: the parser answers any other with 501, so
/// a head names its method by its index here and hands out a `&'static` one (no `Method` to
/// move or drop per request).
static METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::HEAD,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

/// The index of `method` among the methods a request line may carry (`None` for another).
pub(crate) fn method_index(method: &Method) -> Option<u8> {
    METHODS.iter().position(|m| m == method).map(|i| i as u8)
}

/// The method with index `i` (below [`METHOD_COUNT`]).
pub(crate) fn method_at(i: usize) -> &'static Method {
    &METHODS[i]
}

/// The number of methods a request line may carry.
pub(crate) const METHOD_COUNT: usize = METHODS.len();

/// A byte range of a head, as two `u32` (a head is at most `u32::MAX` bytes: [`finish`]
/// refuses a longer one), so that a [`Head`] is small to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// `r`, whose end is at most a head's length.
    fn new(r: Range<usize>) -> Self {
        Span {
            start: r.start as u32,
            end: r.end as u32,
        }
    }

    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    pub(crate) fn start(self) -> usize {
        self.start as usize
    }
}

/// A validated request head; spans point into the head bytes. About 56 bytes: it is moved
/// with every request, from the parser to the handler.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// The index of the method in [`METHODS`].
    method: u8,
    pub(crate) version: Version,
    pub(crate) target: Span,
    /// The part of the target routed on: path and query. The whole target for origin-form
    /// (and asterisk- and authority-form); after the authority for absolute-form, where it may
    /// be empty or start with `?` (the path is then `/`).
    pub(crate) path_and_query: Span,
    /// Where the path ends in `path_and_query`: at the first `?`, else at the end.
    path_end: u32,
    /// The field lines (validated), from the first field to the end of the head: read lazily
    /// by [`fields`], so a request whose handler reads no field costs no allocation.
    pub(crate) fields: Span,
    len: u32,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
}

impl Head {
    pub(crate) fn method(&self) -> &'static Method {
        &METHODS[usize::from(self.method)]
    }

    /// The method's index (see [`method_index`]).
    pub(crate) fn method_index(&self) -> u8 {
        self.method
    }

    /// The path routed on, before any `?`, as a range of the head bytes.
    pub(crate) fn path(&self) -> Range<usize> {
        self.path_and_query.start()..self.path_end as usize
    }

    /// The head's length, empty line included.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
}

/// Why a head was refused: the status to answer with. Every refusal closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
}

pub(super) fn reject(status: StatusCode, reason: &'static str) -> Reject {
    Reject { status, reason }
}

pub(super) fn bad(reason: &'static str) -> Reject {
    reject(StatusCode::BAD_REQUEST, reason)
}

pub(super) fn too_large() -> Reject {
    reject(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "header section too large",
    )
}

/// What `httparse` made of (part of) a field block.
enum Block<T> {
    /// The empty line that ends the head was found; `T` from the fields.
    Complete(T),
    /// No end yet, no error.
    Partial,
    Failed(Reject),
}

/// Parses `block` with `slots` header slots. Most requests have few fields: a small slot
/// array is tried first (cheap to initialise) and the full count only if it overflows. The
/// verdict is the same either way.
fn parse_fields<T>(
    block: &[u8],
    slots: usize,
    on_complete: impl FnOnce(usize, &[httparse::Header<'_>]) -> T,
) -> Block<T> {
    let mut small = [httparse::EMPTY_HEADER; SMALL_HEADERS];
    let mut big = Vec::new();
    let first = parse_block(block, &mut small[..slots.min(SMALL_HEADERS)]);
    let parsed = match first {
        Err(httparse::Error::TooManyHeaders) if slots > SMALL_HEADERS => {
            big.resize(slots, httparse::EMPTY_HEADER);
            parse_block(block, &mut big)
        }
        other => other,
    };
    match parsed {
        Ok(Some((len, fields))) => Block::Complete(on_complete(len, fields)),
        Ok(None) => Block::Partial,
        Err(httparse::Error::TooManyHeaders) => Block::Failed(reject(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields",
        )),
        Err(httparse::Error::HeaderName) => Block::Failed(bad("malformed header field name")),
        Err(httparse::Error::HeaderValue) => Block::Failed(bad("malformed header field value")),
        Err(_) => Block::Failed(bad("malformed header section")),
    }
}

/// A request-head parse that resumes where the last read left off, so a head costs time
/// linear in its size however it is split into reads (a 16 KB head sent one byte per read
/// used to be re-parsed from its start on every read).
///
/// It skips leading empty lines, scans the request line with [`LineScan`], then hands the
/// field block to `httparse` a complete line at a time: only lines up to the last LF received
/// (never the unfinished line after it), each line once. Verdicts stay positional: a line
/// is judged once its LF arrives, or when the head reaches its size limit (then the bytes
/// before the limit decide, unfinished line included, as a parse of the whole head would).
/// So the outcome depends only on the bytes received, never on how they were split.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadScan {
    /// Leading CR / LF bytes skipped so far.
    skip: usize,
    line: Option<LineScan>,
    done_line: Option<Line>,
    /// Bytes of the field block up to here were searched for a LF.
    searched: usize,
    /// Field lines up to here were validated by `httparse`.
    validated: usize,
    /// How many field lines those are (they count toward `max_headers`).
    fields_seen: usize,
    /// Bytes examined so far, rescans included (tests check that it grows linearly).
    work: usize,
}

impl HeadScan {
    /// Bytes examined so far by this scan.
    #[cfg(test)]
    fn work(&self) -> usize {
        self.work
    }

    /// True before any byte of the head was scanned: [`parse_whole`] may read it whole.
    pub(crate) fn is_fresh(&self) -> bool {
        self.line.is_none() && self.done_line.is_none()
    }

    /// Parses the head at the start of `buf`, which holds everything the last call saw plus
    /// what arrived since (a fresh scan for each head).
    ///
    /// `Ok(None)`: incomplete, read more. `Err`: answer with the status and close.
    pub(crate) fn advance(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<Head>, Reject> {
        // A fresh scan of a head that came whole: one `httparse` pass when it accepts.
        if self.is_fresh() {
            if let Some(done) = parse_whole(buf, limits) {
                return done.map(Some);
            }
        }
        let head_cap = limits.max_header_bytes;
        let line = match &self.done_line {
            Some(line) => line.clone(),
            None => {
                let scan = match &mut self.line {
                    Some(scan) => scan,
                    None => {
                        // Leading empty lines are skipped (RFC 9112 section 2.2); they count
                        // toward the head size.
                        let end = buf.len().min(head_cap);
                        let from = self.skip;
                        while self.skip < end && matches!(buf[self.skip], b'\r' | b'\n') {
                            self.skip += 1;
                        }
                        self.work += self.skip - from;
                        if self.skip >= head_cap {
                            return Err(too_large());
                        }
                        if self.skip == buf.len() {
                            return Ok(None);
                        }
                        self.line.insert(LineScan::new(self.skip))
                    }
                };
                let from = scan.i;
                let scanned = scan.advance(buf, limits);
                self.work += scan.i - from;
                let Some(line) = scanned? else {
                    return Ok(None);
                };
                self.searched = line.end;
                self.validated = line.end;
                self.done_line.insert(line).clone()
            }
        };
        // The field block, parsed only up to the head size limit (positional, as above).
        let cap = buf.len().min(head_cap);
        if cap > self.searched {
            let from = self.searched;
            self.searched = cap;
            self.work += cap - from;
            if let Some(lf) = buf[from..cap].iter().rposition(|&b| b == b'\n') {
                let upto = from + lf + 1;
                let block = &buf[self.validated..upto];
                self.work += block.len();
                // From the first field on (the usual case: the head came in one read), the
                // fields are all here; after a resumption, parse the whole block once more.
                let whole = self.validated == line.end;
                let slots = limits.max_headers.saturating_sub(self.fields_seen);
                let done = parse_fields(block, slots, |len, fields| {
                    whole.then(|| finish(buf, &line, line.end + len, fields, limits))
                });
                match done {
                    Block::Complete(Some(head)) => return head.map(Some),
                    Block::Complete(None) => return self.reparse(buf, &line, cap, limits),
                    Block::Failed(r) => return Err(r),
                    Block::Partial => {
                        // No obs-fold and no end yet: every LF ended one field line.
                        self.fields_seen += block.iter().filter(|&&b| b == b'\n').count();
                        self.validated = upto;
                    }
                }
            }
        }
        if buf.len() >= head_cap {
            // At the limit without an end: the unfinished line before the limit is judged
            // too (a malformed byte there is 400, as for a whole parse), else 431.
            let block = &buf[self.validated..cap];
            self.work += block.len();
            let slots = limits.max_headers.saturating_sub(self.fields_seen);
            return match parse_fields(block, slots, |_, _| ()) {
                Block::Failed(r) => Err(r),
                Block::Complete(()) | Block::Partial => Err(too_large()),
            };
        }
        Ok(None)
    }

    /// The head ended after a resumption: parse its whole field block once for the fields.
    fn reparse(
        &mut self,
        buf: &[u8],
        line: &Line,
        cap: usize,
        limits: &Limits,
    ) -> Result<Option<Head>, Reject> {
        let block = &buf[line.end..cap];
        self.work += block.len();
        match parse_fields(block, limits.max_headers, |len, fields| {
            finish(buf, line, line.end + len, fields, limits)
        }) {
            Block::Complete(head) => head.map(Some),
            Block::Failed(r) => Err(r),
            // The lines were validated one by one, and the end of the head was found.
            Block::Partial => Err(bad("malformed header section")),
        }
    }
}

/// The usual head: complete in `buf` and starting at its first byte, with a plain request
/// line (`GET ` or another token, a target of allowed bytes, `HTTP/1.1` or `HTTP/1.0`) and
/// at most [`SMALL_HEADERS`] fields. It is read in one pass: a tight scan of the request line
/// and one `httparse` call over the fields, without [`HeadScan`]'s bookkeeping for a head
/// that arrives in pieces. `None` leaves the head to that resumable scan, which gives every
/// other verdict (a partial head, leading empty lines, another version, a bad byte, a limit
/// reached), so a head gets the same [`Head`] or the same refusal whichever path reads it
/// (`the_whole_head_path_agrees_with_the_resumable_scan` compares them).
pub(crate) fn parse_whole(buf: &[u8], limits: &Limits) -> Option<Result<Head, Reject>> {
    let cap = buf.len().min(limits.max_header_bytes);
    let line = &buf[..cap.min(limits.max_request_line)];
    let method_end = if line.starts_with(b"GET ") {
        3
    } else {
        line.iter().position(|&b| !is_tchar(b))?
    };
    if method_end == 0 || line[method_end] != b' ' {
        return None;
    }
    let target_start = method_end + 1;
    let mut fragment = false;
    let mut query = None;
    // Offsets from the target's start (an iterator, so no bounds check per byte).
    let mut n = 0;
    for &b in &line[target_start..] {
        match target_class(b) {
            TargetByte::Plain => {}
            TargetByte::Query => {
                query.get_or_insert(target_start + n);
            }
            TargetByte::Fragment => fragment = true,
            TargetByte::Invalid => break,
        }
        n += 1;
    }
    let i = target_start + n;
    if n == 0 || line.get(i) != Some(&b' ') {
        return None;
    }
    let version_at = i + 1;
    // The version as one 8-byte word: two compares instead of two byte-string matches.
    let version: [u8; 8] = line.get(version_at..version_at + 8)?.try_into().ok()?;
    let minor = match u64::from_le_bytes(version) {
        v if v == u64::from_le_bytes(*b"HTTP/1.1") => 1,
        v if v == u64::from_le_bytes(*b"HTTP/1.0") => 0,
        _ => return None,
    };
    let end = match buf.get(version_at + 8..version_at + 10)? {
        [b'\r', b'\n'] => version_at + 10,
        [b'\n', _] => version_at + 9,
        _ => return None,
    };
    let mut slots = [httparse::EMPTY_HEADER; SMALL_HEADERS];
    let slots = &mut slots[..limits.max_headers.min(SMALL_HEADERS)];
    let (fields_len, fields) = match httparse::parse_headers(buf.get(end..cap)?, slots) {
        Ok(httparse::Status::Complete(done)) => done,
        _ => return None,
    };
    let line = Line {
        method: 0..method_end,
        target: target_start..i,
        major: 1,
        minor,
        fragment,
        query,
        end,
    };
    Some(finish(buf, &line, end + fields_len, fields, limits))
}

/// Parses and validates a request head at the start of `buf` (one [`HeadScan`] call).
///
/// `Ok(None)`: incomplete, read more. `Err`: answer with the status and close.
#[cfg(test)]
fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Reject> {
    HeadScan::default().advance(buf, limits)
}

/// The checks on a complete head: version, method, target form, then the fields (Host,
/// framing, connection options). `len` is the head's length, empty line included.
fn finish(
    buf: &[u8],
    line: &Line,
    len: usize,
    fields: &[httparse::Header<'_>],
    limits: &Limits,
) -> Result<Head, Reject> {
    // HTTP/1.x with x > 1 is processed as HTTP/1.1 (RFC 9110 section 2.5); another major
    // version gets 505, checked before the method so that the HTTP/2 preface
    // (`PRI * HTTP/2.0`, on a server without HTTP/2) gets 505 rather than 501.
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
    let method: u8 = match &buf[line.method.clone()] {
        b"GET" => 0,
        b"POST" => 1,
        b"HEAD" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"PATCH" => 5,
        b"OPTIONS" => 6,
        b"CONNECT" => 7,
        b"TRACE" => 8,
        _ => return Err(reject(StatusCode::NOT_IMPLEMENTED, "unknown method")),
    };
    // Every offset below is at most `len`, which must fit the spans' `u32`.
    let len32 = u32::try_from(len).map_err(|_| too_large())?;
    let origin_at = validate_target(
        &METHODS[usize::from(method)],
        &buf[line.target.clone()],
        line.fragment,
    )?;
    let target = line.target.clone();
    let path_and_query = target.start + origin_at..target.end;
    // The authority of an absolute-form target ends at its first `/` or `?`, so the target's
    // first `?` is never before the path.
    let path_end = line.query.map_or(target.end, |q| q.max(path_and_query.start));

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
        if is_field(name, b"host") {
            host_count += 1;
            if !valid_host(value) {
                return Err(bad("invalid Host header"));
            }
        } else if is_field(name, b"content-length") {
            let n = parse_content_length(value).ok_or_else(|| bad("invalid Content-Length"))?;
            match content_length {
                Some(prev) if prev != n => return Err(bad("conflicting Content-Length values")),
                _ => content_length = Some(n),
            }
        } else if is_field(name, b"transfer-encoding") {
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
        } else if is_field(name, b"connection") {
            for token in split_list(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                }
            }
        } else if is_field(name, b"expect") {
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
    Ok(Head {
        method,
        version,
        target: Span::new(target),
        path_and_query: Span::new(path_and_query),
        path_end: path_end as u32,
        fields: Span::new(field_block),
        len: len32,
        framing,
        keep_alive,
        expect_continue: expect_continue && version == Version::HTTP_11 && framing != Framing::None,
    })
}

/// Host = uri-host [ ":" port ]; empty is allowed (RFC 9112 3.2).
fn valid_host(v: &[u8]) -> bool {
    all_host_chars(v)
}

/// True if the field name `name` is `lower` (lower case letters and `-`) in any case. Only
/// for names `httparse` accepted (tokens): setting bit 5 maps `A`-`Z` to `a`-`z`, and the
/// only other byte it maps to a letter or `-` is that letter or `-` itself, or CR (to `-`),
/// which a token never holds. The bytes are compared a word at a time (the last word
/// overlapping the one before), with no branch until the end.
fn is_field(name: &str, lower: &[u8]) -> bool {
    let (name, n) = (name.as_bytes(), lower.len());
    if name.len() != n {
        return false;
    }
    let w32 = |s: &[u8], at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_le_bytes(w)
    };
    let w64 = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    match n {
        0..=3 => {
            name.iter()
                .zip(lower)
                .fold(0, |diff, (b, &l)| diff | ((b | 0x20) ^ l))
                == 0
        }
        4..=7 => {
            const CASE: u32 = 0x2020_2020;
            let head = (w32(name, 0) | CASE) ^ w32(lower, 0);
            let tail = (w32(name, n - 4) | CASE) ^ w32(lower, n - 4);
            head | tail == 0
        }
        _ => {
            const CASE: u64 = 0x2020_2020_2020_2020;
            let mut diff = 0;
            let mut at = 0;
            while at + 8 < n {
                diff |= (w64(name, at) | CASE) ^ w64(lower, at);
                at += 8;
            }
            diff | ((w64(name, n - 8) | CASE) ^ w64(lower, n - 8)) == 0
        }
    }
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
    fn field_names_match_in_any_case_and_no_other_token_matches() {
        let names: [&[u8]; 5] = [
            b"host",
            b"expect",
            b"connection",
            b"content-length",
            b"transfer-encoding",
        ];
        let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        for lower in names {
            let text = std::str::from_utf8(lower).unwrap();
            assert!(is_field(text, lower));
            assert!(is_field(&text.to_ascii_uppercase(), lower));
            // Every case pattern of the first 8 letters.
            for mask in 0..256u32 {
                let mixed: String = text
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i < 8 && mask & (1 << i) != 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                assert!(is_field(&mixed, lower), "{mixed}");
            }
            // Any other token byte at any position: no match.
            for at in 0..lower.len() {
                for &t in &tchars {
                    if t.eq_ignore_ascii_case(&lower[at]) {
                        continue;
                    }
                    let mut other = lower.to_vec();
                    other[at] = t;
                    let other = String::from_utf8(other).unwrap();
                    assert!(!is_field(&other, lower), "{other} is not {text}");
                }
            }
            // Longer or shorter: no match.
            assert!(!is_field(&text[1..], lower));
            assert!(!is_field(&format!("{text}s"), lower));
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

#[cfg(test)]
mod resume {
    use super::*;

    /// Feeds `stream` one more byte per call, as a client sending a byte per segment would;
    /// returns each call's verdict (status, or 0 for a head, 1 for incomplete) once one is
    /// reached, and the bytes examined in all.
    fn byte_per_read(stream: &[u8], limits: &Limits) -> (Vec<u16>, usize) {
        let mut scan = HeadScan::default();
        let mut verdicts = Vec::new();
        for n in 1..=stream.len() {
            let v = match scan.advance(&stream[..n], limits) {
                Ok(Some(_)) => 0,
                Ok(None) => 1,
                Err(r) => r.status.as_u16(),
            };
            verdicts.push(v);
            if v != 1 {
                break;
            }
        }
        (verdicts, scan.work())
    }

    fn verdict(stream: &[u8], limits: &Limits) -> u16 {
        match parse(stream, limits) {
            Ok(Some(_)) => 0,
            Ok(None) => 1,
            Err(r) => r.status.as_u16(),
        }
    }

    /// A head of about `size` bytes: a long request line, then many fields with long values.
    fn big_head(size: usize) -> Vec<u8> {
        let mut h = format!("GET /{} HTTP/1.1\r\nHost: a\r\n", "p".repeat(4000)).into_bytes();
        let mut i = 0;
        while h.len() + 300 < size {
            h.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(250)).as_bytes());
            i += 1;
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    #[test]
    fn a_head_sent_one_byte_per_read_costs_linear_work() {
        let limits = Limits::default();
        for size in [2_000, 8_000, 16_000] {
            let head = big_head(size);
            let n = head.len();
            assert!(n <= limits.max_header_bytes, "{n}");
            let (verdicts, work) = byte_per_read(&head, &limits);
            assert_eq!(verdicts.last(), Some(&0), "size {size}: parsed");
            assert_eq!(verdicts.len(), n, "complete exactly at the last byte");
            // Each byte is looked at a bounded number of times (the line scan once, the LF
            // search once, httparse once per line and once more for the whole block at the
            // end); a re-parse from the start per read would be about n * n / 2.
            assert!(
                work <= 4 * n,
                "size {size}: {work} bytes examined for a {n}-byte head"
            );
        }
    }

    #[test]
    fn one_long_unfinished_field_line_costs_linear_work() {
        // No LF for 16 KB: the line is judged once, at the size limit.
        let limits = Limits::default();
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        head.resize(limits.max_header_bytes + 1, b'v');
        let (verdicts, work) = byte_per_read(&head, &limits);
        assert_eq!(verdicts.last(), Some(&431));
        assert!(work <= 4 * head.len(), "{work}");
    }

    /// The resumable scan alone: the first byte, then the rest (the whole-head path is only
    /// tried on a fresh scan).
    fn scanned(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Reject> {
        let mut scan = HeadScan::default();
        match scan.advance(&buf[..1], limits) {
            Ok(None) => scan.advance(buf, limits),
            done => done,
        }
    }

    #[test]
    fn the_whole_head_path_agrees_with_the_resumable_scan() {
        let tight = Limits {
            max_request_line: 24,
            max_headers: 3,
            ..Limits::default()
        };
        let many_fields: String = (0..20).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many_fields}\r\n");
        let heads: Vec<Vec<u8>> = [
            "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            "GET /a?b=1?c#d HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a?b=1&c=%20 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a.example:80/x?y HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a.example?y HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\nConnection: close\n\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, close\r\n\r\n",
            "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
            "POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "PUT /b HTTP/1.1\r\nHost: a\r\nExpect: tea\r\nContent-Length: 1\r\n\r\nx",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
            "get / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\rHost: a\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a/b/c/d/e/f/g/h/i/j/k HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a/b/c/d/e HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            many.as_str(),
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        for limits in [Limits::default(), tight] {
            for head in &heads {
                let show = String::from_utf8_lossy(head);
                let scan = scanned(head, &limits);
                let whole = HeadScan::default().advance(head, &limits);
                assert_eq!(format!("{whole:?}"), format!("{scan:?}"), "{show:?}");
                // What the whole-head path itself answered, when it did.
                if let Some(fast) = parse_whole(head, &limits) {
                    assert_eq!(format!("{:?}", fast.map(Some)), format!("{scan:?}"), "{show:?}");
                }
            }
        }
        // The path is taken for the usual request (else this test compares the scan with itself).
        let usual = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
        assert!(matches!(parse_whole(usual, &Limits::default()), Some(Ok(_))));
    }

    #[test]
    fn verdicts_match_a_whole_parse_at_every_prefix() {
        let limits = Limits {
            max_header_bytes: 200,
            max_request_line: 60,
            max_headers: 3,
            ..Limits::default()
        };
        let long_value = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(200));
        let bad_at_cap = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\x01{}",
            "v".repeat(160),
            "v".repeat(60)
        );
        let leading = format!("{}GET / HTTP/1.1\r\nHost: a\r\n\r\n", "\r\n".repeat(120));
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(80));
        let streams: Vec<&[u8]> = vec![
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\n\nGET http://a?/x HTTP/1.1\nHost: a\nX: 1\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rX\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1",
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\rX",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            long_value.as_bytes(),
            bad_at_cap.as_bytes(),
            leading.as_bytes(),
            long_line.as_bytes(),
        ];
        for stream in streams {
            // Whole parses of each prefix against one resumed scan over the same prefixes.
            let mut scan = HeadScan::default();
            for n in 0..=stream.len() {
                let whole = verdict(&stream[..n], &limits);
                let resumed = match scan.advance(&stream[..n], &limits) {
                    Ok(Some(_)) => 0,
                    Ok(None) => 1,
                    Err(r) => r.status.as_u16(),
                };
                let show = String::from_utf8_lossy(&stream[..n]);
                assert_eq!(resumed, whole, "prefix {n} of {show:?}");
                if whole != 1 {
                    break;
                }
            }
        }
    }
}
