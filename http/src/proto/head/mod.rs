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

use super::line::{is_tchar, target_class, Line, LineScan, TargetByte};
use super::swar;
use super::target::validate_target;
use crate::limits::Limits;

mod fields;

#[cfg(test)]
use fields::{is_field, parse_content_length};
use fields::{scan_plain_fields, FieldChecks};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Framing {
    /// No body.
    #[default]
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
#[cfg(test)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
/// with every request, from the parser to the handler. (The default, a `GET` with empty
/// spans, is only a placeholder for [`parse_whole_into`] to write over.)
#[derive(Debug, Clone, Copy, Default)]
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

    /// The method's index: its position in [`METHODS`].
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

    /// The path routed on (as [`RequestHead::route_path`](crate::proto::parser::RequestHead::route_path))
    /// in `bytes`, the head's own bytes.
    #[inline]
    pub(crate) fn route_path<'b>(&self, bytes: &'b [u8]) -> &'b [u8] {
        crate::request::or_root(&bytes[self.path()])
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

    /// Goes on scanning the head at the start of `buf` (the same bytes as at the last call
    /// plus what arrived since), without the whole-head try: for a scan already under way,
    /// or a fresh one whose head [`parse_whole_into`] turned down (the parser tries that first).
    ///
    /// `Ok(None)`: incomplete, read more. `Err`: answer with the status and close.
    pub(crate) fn resume(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<Head>, Reject> {
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
                    whole.then(|| finish(buf, &line, line.end + len, &FieldChecks::of(fields), limits))
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
            finish(buf, line, line.end + len, &FieldChecks::of(fields), limits)
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
/// a plain field block (CRLF line ends, no control bytes: [`scan_plain_fields`]). It is read
/// in one pass: a tight scan of the request line and one of the fields, checked as they are
/// found, without [`HeadScan`]'s bookkeeping for a head that arrives in pieces and without
/// `httparse`'s header slots. `None` leaves the head to that resumable scan, which gives every
/// other verdict (a partial head, leading empty lines, another version, a bad byte, a limit
/// reached), so a head gets the same [`Head`] or the same refusal whichever path reads it
/// (`the_whole_head_path_agrees_with_the_resumable_scan` compares them).
///
/// The head is written to `out` (on `Some(Ok(()))` only), where the parser's caller keeps
/// it and reads it in place: a head returned by value, written a field at a time and then
/// copied whole by the caller, stalled the copy's loads on the stores they read from.
pub(crate) fn parse_whole_into(buf: &[u8], limits: &Limits, out: &mut Head) -> Option<Result<(), Reject>> {
    let cap = buf.len().min(limits.max_header_bytes);
    let line = &buf[..cap.min(limits.max_request_line)];
    // `GET ` (nearly every request) is the method; its index goes to the checks as known.
    let (method_end, method) = if line.starts_with(b"GET ") {
        (3, Some(0))
    } else {
        (line.iter().position(|&b| !is_tchar(b))?, None)
    };
    if method_end == 0 || line[method_end] != b' ' {
        return None;
    }
    let target_start = method_end + 1;
    let mut fragment = false;
    let mut query = None;
    let mut i = target_start;
    loop {
        // Eight bytes at a time up to the first that is not plain (`?`, `#`, or one that
        // ends the target or may not be in it: a control byte, SP, DEL, above 0x7f).
        while let Some(word) = line.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            let w = u64::from_le_bytes(w);
            let stop = swar::below(w, 0x21)
                | swar::equal(w, 0x7f)
                | swar::high(w)
                | swar::equal(w, b'?')
                | swar::equal(w, b'#');
            if stop != 0 {
                i += swar::first(stop);
                break;
            }
            i += 8;
        }
        // That byte, or one of the last seven of the line.
        match line.get(i).map(|&b| target_class(b)) {
            Some(TargetByte::Plain) => {}
            Some(TargetByte::Query) => {
                query.get_or_insert(i);
            }
            Some(TargetByte::Fragment) => fragment = true,
            Some(TargetByte::Invalid) | None => break,
        }
        i += 1;
    }
    let n = i - target_start;
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
    // The fields, up to the head size limit; anything but a plain block goes to `httparse`.
    let mut checks = FieldChecks::default();
    let len = scan_plain_fields(&buf[..cap], end, limits.max_headers, &mut checks)?;
    let line = Line {
        method: 0..method_end,
        target: target_start..i,
        major: 1,
        minor,
        fragment,
        query,
        end,
    };
    Some(finish_inline(buf, &line, method, len, &checks, limits).map(|head| *out = head))
}

/// [`parse_whole_into`] returning the head (for the tests).
#[cfg(test)]
pub(crate) fn parse_whole(buf: &[u8], limits: &Limits) -> Option<Result<Head, Reject>> {
    let mut head = Head::default();
    parse_whole_into(buf, limits, &mut head).map(|done| done.map(|()| head))
}

/// The index in [`METHODS`] of the method token `m`; 501 for one the server does not know.
#[inline]
fn method_token_index(m: &[u8]) -> Result<u8, Reject> {
    Ok(match m {
        b"GET" => 0,
        b"POST" => 1,
        b"HEAD" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"PATCH" => 5,
        b"OPTIONS" => 6,
        b"CONNECT" => CONNECT,
        b"TRACE" => 8,
        _ => return Err(reject(StatusCode::NOT_IMPLEMENTED, "unknown method")),
    })
}

/// [`method_token_index`] of `CONNECT`, whose target has a form of its own.
const CONNECT: u8 = 7;

/// The checks on a complete head: version, method, target form, then the fields (Host,
/// framing, connection options). `len` is the head's length, empty line included.
/// [`HeadScan`]'s; [`parse_whole_into`] has its own copy inlined (see [`finish_inline`]).
#[inline(never)]
fn finish(
    buf: &[u8],
    line: &Line,
    len: usize,
    fields: &FieldChecks,
    limits: &Limits,
) -> Result<Head, Reject> {
    finish_inline(buf, line, None, len, fields, limits)
}

/// [`finish`], inlined into [`parse_whole_into`]: there the request line's facts are known
/// values (HTTP/1, a method token already matched against `GET `), which the compiler folds
/// into the checks instead of passing a [`Line`] and the field checks through memory.
#[inline(always)]
fn finish_inline(
    buf: &[u8],
    line: &Line,
    known_method: Option<u8>,
    len: usize,
    fields: &FieldChecks,
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
    let method: u8 = match known_method {
        Some(m) => m,
        None => method_token_index(&buf[line.method.clone()])?,
    };
    // Every offset below is at most `len`, which must fit the spans' `u32`.
    let len32 = u32::try_from(len).map_err(|_| too_large())?;
    // An origin-form target (`/` first) of a method other than CONNECT, without a fragment,
    // is valid as it is (as `validate_target` would find, without the call).
    let origin_at = if !line.fragment && method != CONNECT && buf[line.target.clone()].first() == Some(&b'/')
    {
        0
    } else {
        validate_target(
            &METHODS[usize::from(method)],
            &buf[line.target.clone()],
            line.fragment,
        )?
    };
    let target = line.target.clone();
    let path_and_query = target.start + origin_at..target.end;
    // The authority of an absolute-form target ends at its first `/` or `?`, so the target's
    // first `?` is never before the path.
    let path_end = line.query.map_or(target.end, |q| q.max(path_and_query.start));

    if let Some(r) = fields.refused {
        return Err(r);
    }
    let FieldChecks {
        host_count,
        content_length,
        te_seen,
        chunked_final,
        te_bad,
        close,
        keep_alive_token,
        expect_continue,
        refused: _,
    } = *fields;
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
        fields: Span::new(line.end..len),
        len: len32,
        framing,
        keep_alive,
        expect_continue: expect_continue && version == Version::HTTP_11 && framing != Framing::None,
    })
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
mod tests;
