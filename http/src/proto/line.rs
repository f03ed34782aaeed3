//! The request-line scanner: a table-driven, resumable scan of `method SP target SP version`
//! and its line end, with positional verdicts (400 / 414 / 431).

use std::ops::Range;

use http::StatusCode;

use super::head::{bad, reject, too_large, Reject};
use crate::limits::Limits;

/// Where the request line ends and what it holds (ranges into the buffer).
#[derive(Debug, Clone)]
pub(super) struct Line {
    pub(super) method: Range<usize>,
    pub(super) target: Range<usize>,
    pub(super) major: u8,
    pub(super) minor: u8,
    /// The target holds a `#` (a fragment, which a request may not send).
    pub(super) fragment: bool,
    /// Where the target's first `?` is, if it has one.
    pub(super) query: Option<usize>,
    /// Index just past the line's LF.
    pub(super) end: usize,
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
        // `#` and `?` are visible ASCII too, but the target scan stops at them to note a
        // fragment and where the query starts.
        if c >= 0x21 && c <= 0x7e && c != b'#' && c != b'?' {
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

/// What a byte of a request target is to [`LineScan`].
pub(super) enum TargetByte {
    Plain,
    /// `?`: the query starts at the first.
    Query,
    /// `#`: a fragment, refused later.
    Fragment,
    /// Ends the target (a space) or is not allowed in it.
    Invalid,
}

pub(super) fn target_class(b: u8) -> TargetByte {
    if CLASS[usize::from(b)] & TARGET != 0 {
        TargetByte::Plain
    } else if b == b'?' {
        TargetByte::Query
    } else if b == b'#' {
        TargetByte::Fragment
    } else {
        TargetByte::Invalid
    }
}

/// True if every byte of `v` is allowed in a Host value (`uri-host [":" port]`, RFC 9112
/// section 3.2): one table lookup and one AND per byte, with no branch until the end (a
/// value is checked whole; nearly all pass). Eight bytes a step, then four, then one: the
/// steps are branch-free straight lines (a byte-a-time loop spends more on its counter than
/// on the lookup).
#[inline(always)]
pub(super) fn all_host_chars(v: &[u8]) -> bool {
    let class = |b: u8| CLASS[usize::from(b)];
    let mut all = HOST;
    let mut eights = v.chunks_exact(8);
    for c in &mut eights {
        all &= class(c[0]) & class(c[1]) & class(c[2]) & class(c[3]);
        all &= class(c[4]) & class(c[5]) & class(c[6]) & class(c[7]);
    }
    let rest = eights.remainder();
    let mut fours = rest.chunks_exact(4);
    for c in &mut fours {
        all &= class(c[0]) & class(c[1]) & class(c[2]) & class(c[3]);
    }
    for &b in fours.remainder() {
        all &= class(b);
    }
    all != 0
}

/// Why a scan stopped at position `at` without a verdict from the grammar: the buffer ended
/// there (incomplete), or a size limit is crossed there.
fn stop_at(at: usize, buf_len: usize, line_cap: usize, head_cap: usize) -> Result<Option<Line>, Reject> {
    if at >= head_cap {
        Err(too_large())
    } else if at >= line_cap {
        Err(reject(StatusCode::URI_TOO_LONG, "request line too long"))
    } else {
        debug_assert!(at >= buf_len);
        Ok(None)
    }
}

/// Where [`LineScan`] is in the request line.
#[derive(Debug, Clone, Copy)]
enum LinePhase {
    Method,
    Target,
    Version,
    /// After the version: CR or LF.
    Cr,
    /// After that CR: LF.
    Lf,
}

/// A request-line scan that resumes where the last call stopped (each byte is looked at once
/// however the line arrives).
///
/// Every verdict is positional: the first byte that breaks the grammar (400) or crosses a
/// size limit (414 for the line, 431 for the head) decides, so the outcome for a byte stream
/// does not depend on how it was split into reads.
#[derive(Debug, Clone)]
pub(super) struct LineScan {
    phase: LinePhase,
    /// Where the line starts (after leading empty lines).
    start: usize,
    /// The next byte to look at.
    pub(super) i: usize,
    method_end: usize,
    target_start: usize,
    target_end: usize,
    /// A `#` was seen in the target.
    fragment: bool,
    /// The target's first `?`.
    query: Option<usize>,
}

impl LineScan {
    pub(super) fn new(start: usize) -> Self {
        Self {
            phase: LinePhase::Method,
            start,
            i: start,
            method_end: start,
            target_start: start,
            target_end: start,
            fragment: false,
            query: None,
        }
    }

    /// Scans on from where the last call stopped. `Ok(None)`: incomplete, no verdict yet.
    pub(super) fn advance(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<Line>, Reject> {
        let line_cap = self.start.saturating_add(limits.max_request_line);
        let head_cap = limits.max_header_bytes;
        // Content bytes (method, target, version) must lie before both caps; the line
        // terminator only before the head cap.
        let content_end = buf.len().min(line_cap).min(head_cap);
        let stop = |at: usize| stop_at(at, buf.len(), line_cap, head_cap);
        loop {
            match self.phase {
                // method = token, then one SP
                LinePhase::Method => {
                    let mut i = self.i;
                    while i < content_end && CLASS[usize::from(buf[i])] & TCHAR != 0 {
                        i += 1;
                    }
                    self.i = i;
                    if i >= content_end {
                        return stop(i);
                    }
                    if buf[i] != b' ' || i == self.start {
                        return Err(bad("malformed request line"));
                    }
                    self.method_end = i;
                    self.target_start = i + 1;
                    self.i = i + 1;
                    self.phase = LinePhase::Target;
                }
                // request-target = visible ASCII, then one SP
                LinePhase::Target => {
                    let mut i = self.i;
                    loop {
                        while i < content_end && CLASS[usize::from(buf[i])] & TARGET != 0 {
                            i += 1;
                        }
                        match buf.get(i) {
                            Some(b'#') if i < content_end => {
                                // Refused once the line is complete (`validate_target`).
                                self.fragment = true;
                            }
                            Some(b'?') if i < content_end => {
                                self.query.get_or_insert(i);
                            }
                            _ => break,
                        }
                        i += 1;
                    }
                    self.i = i;
                    if i >= content_end {
                        return stop(i);
                    }
                    if buf[i] != b' ' || i == self.target_start {
                        return Err(bad("malformed request target"));
                    }
                    self.target_end = i;
                    self.i = i + 1;
                    self.phase = LinePhase::Version;
                }
                // HTTP-version = "HTTP/" DIGIT "." DIGIT
                LinePhase::Version => {
                    let vs = self.target_end + 1;
                    // The whole version at once when it is there (the same verdict as the
                    // byte-by-byte scan below, which finds the first bad byte otherwise).
                    if self.i == vs && vs + 8 <= content_end {
                        let v = &buf[vs..vs + 8];
                        if v[..5] == *b"HTTP/"
                            && v[5].is_ascii_digit()
                            && v[6] == b'.'
                            && v[7].is_ascii_digit()
                        {
                            self.i = vs + 8;
                        }
                    }
                    while self.i < vs + 8 {
                        let at = self.i;
                        if at >= content_end {
                            return stop(at);
                        }
                        let k = at - vs;
                        let b = buf[at];
                        let ok = match k {
                            0..=4 => b == b"HTTP/"[k],
                            5 | 7 => b.is_ascii_digit(),
                            _ => b == b'.',
                        };
                        if !ok {
                            return Err(bad("malformed HTTP version"));
                        }
                        self.i += 1;
                    }
                    self.phase = LinePhase::Cr;
                }
                // CRLF or a bare LF.
                LinePhase::Cr | LinePhase::Lf => {
                    let at = self.i;
                    if at >= head_cap || at >= buf.len() {
                        return stop_at(at, buf.len(), usize::MAX, head_cap);
                    }
                    match (self.phase, buf[at]) {
                        (LinePhase::Cr, b'\r') => {
                            self.i += 1;
                            self.phase = LinePhase::Lf;
                            continue;
                        }
                        (_, b'\n') => {}
                        (LinePhase::Lf, _) => return Err(bad("CR without LF in request line")),
                        _ => return Err(bad("malformed HTTP version")),
                    }
                    let vs = self.target_end + 1;
                    return Ok(Some(Line {
                        method: self.start..self.method_end,
                        target: self.target_start..self.target_end,
                        major: buf[vs + 5] - b'0',
                        minor: buf[vs + 7] - b'0',
                        fragment: self.fragment,
                        query: self.query,
                        end: at + 1,
                    }));
                }
            }
        }
    }
}
