//! The field block of a head: the checks a server applies to its fields (Host, framing,
//! connection options, `Expect`), fed one field at a time, and the whole-head path's own scan
//! of a plain field block.

use http::StatusCode;

use super::{bad, reject, split_list, Reject};
use crate::proto::line::{all_host_chars, is_tchar};
use crate::proto::swar;

/// What the fields of a head said, fed one field at a time in their order. The first refusal
/// is kept and the fields after it are not looked at, as when the checks stopped at it.
#[derive(Debug, Default)]
pub(super) struct FieldChecks {
    pub(super) host_count: u32,
    pub(super) content_length: Option<u64>,
    pub(super) te_seen: bool,
    /// The last transfer coding seen is `chunked`.
    pub(super) chunked_final: bool,
    /// A transfer coding other than a final `chunked`.
    pub(super) te_bad: bool,
    pub(super) close: bool,
    pub(super) keep_alive_token: bool,
    pub(super) expect_continue: bool,
    /// The first field refused: the head's verdict once its request line has passed.
    pub(super) refused: Option<Reject>,
}

impl FieldChecks {
    /// The checks of the fields `httparse` found.
    pub(super) fn of(fields: &[httparse::Header<'_>]) -> Self {
        let mut checks = FieldChecks::default();
        for h in fields {
            checks.field(h.name.as_bytes(), h.value);
            if checks.refused.is_some() {
                break;
            }
        }
        checks
    }

    /// Takes in one field (`value` without the blanks around it). Only these names are
    /// read, each known by its length first: `Host` (in nearly every request) here, the
    /// others out of line.
    #[inline(always)]
    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.refused.is_some() {
            return;
        }
        let checked = match name.len() {
            4 if is_field(name, b"host") => {
                self.host_count += 1;
                if all_host_chars(value) {
                    Ok(())
                } else {
                    Err(bad("invalid Host header"))
                }
            }
            6 if is_field(name, b"expect") => self.known_field(Known::Expect, value),
            10 if is_field(name, b"connection") => self.known_field(Known::Connection, value),
            14 if is_field(name, b"content-length") => self.known_field(Known::ContentLength, value),
            17 if is_field(name, b"transfer-encoding") => self.known_field(Known::TransferEncoding, value),
            _ => return,
        };
        if let Err(r) = checked {
            self.refused = Some(r);
        }
    }

    /// Takes in a `Host` field whose value is only letters, digits, `-`, `.` and `:` (which
    /// [`field`](Self::field) would accept): what `field` does with it.
    #[inline(always)]
    fn plain_host(&mut self) {
        if self.refused.is_none() {
            self.host_count += 1;
        }
    }

    /// The checks of a field other than `Host` (which [`field`](Self::field) takes itself).
    #[inline(never)]
    fn known_field(&mut self, name: Known, value: &[u8]) -> Result<(), Reject> {
        match name {
            Known::ContentLength => {
                let n = parse_content_length(value).ok_or_else(|| bad("invalid Content-Length"))?;
                match self.content_length {
                    Some(prev) if prev != n => return Err(bad("conflicting Content-Length values")),
                    _ => self.content_length = Some(n),
                }
            }
            Known::TransferEncoding => {
                self.te_seen = true;
                for coding in split_list(value) {
                    if self.chunked_final {
                        // Anything after `chunked` (including a second `chunked`) is invalid.
                        self.te_bad = true;
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        self.chunked_final = true;
                    } else {
                        // We implement no other transfer coding.
                        self.te_bad = true;
                    }
                }
            }
            Known::Connection => {
                for token in split_list(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive_token = true;
                    }
                }
            }
            Known::Expect => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                } else {
                    return Err(reject(StatusCode::EXPECTATION_FAILED, "unsupported expectation"));
                }
            }
        }
        Ok(())
    }
}

/// The fields other than `Host` that the checks read.
#[derive(Clone, Copy)]
enum Known {
    ContentLength,
    TransferEncoding,
    Connection,
    Expect,
}

/// Scans a plain field block, `buf[from..]` up to its empty line (`buf` ends at the head size
/// limit), feeding each field to `checks`, and returns the index just past the empty line.
///
/// Plain: at most `max_fields` lines, each a token, `:`, optional blanks (SP, HTAB) and a value
/// of blanks, visible ASCII and obs-text, ended by CRLF; the block ended by CRLF. `None` for
/// anything else: an incomplete block, a bare LF, obs-fold, a control byte, a malformed line,
/// too many fields. The caller leaves such a head to `httparse`, which gives the verdict; so
/// every block this accepts is one `httparse` accepts, with the same fields (a value without
/// the blanks around it, as `httparse` trims it), and the head gets the same verdict either
/// way (`the_whole_head_path_agrees_with_the_resumable_scan`).
///
/// Out of line, with only its own values live, so that the loop keeps them in registers
/// (inlined into the request line's scan, every field spilled and reloaded a dozen). A name
/// is read eight bytes at a time while it holds only letters, digits and `-` (every common
/// name), then byte by byte to its `:`.
#[inline(never)]
pub(super) fn scan_plain_fields(
    buf: &[u8],
    from: usize,
    max_fields: usize,
    checks: &mut FieldChecks,
) -> Option<usize> {
    let mut at = from;
    let mut count = 0;
    // The first field when it is `Host` with a plain value ([`plain_host_line`]), as
    // clients send it (RFC 9112 section 3.2 asks for `Host` first): read and checked in one
    // scan, where the steps below take four (the name, the value's end, its blanks, its
    // bytes against the host table). Only the first line is tried, so that the other
    // fields do not pay for the try.
    if let Some(end) = buf.get(at..).and_then(plain_host_line) {
        // The field count's limit, as the loop below checks it for every other line.
        if max_fields == 0 {
            return None;
        }
        count = 1;
        checks.plain_host();
        at += end + 2;
        // The usual head ends here: found before the loop sets up its scans.
        if buf.get(at..at + 2) == Some(b"\r\n") {
            return Some(at + 2);
        }
    }
    loop {
        let line = buf.get(at..)?;
        if line.starts_with(b"\r\n") {
            return Some(at + 2);
        }
        let colon = name_end(line)?;
        let name = &line[..colon];
        let mut v = colon + 1;
        while matches!(line.get(v)?, b' ' | b'\t') {
            v += 1;
        }
        let end = value_end(line, v)?;
        if line.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        count += 1;
        if count > max_fields {
            return None;
        }
        checks.field(name, trim_end_blanks(&line[v..end]));
        at += end + 2;
    }
}

/// Where the value ends (its CR) if `line` starts with a `Host` field (the name in any case,
/// `:`, optional blanks) whose value is only letters, digits, `-`, `.` and `:` and is ended
/// by CRLF; `None` for any other line, which the general steps of [`scan_plain_fields`] read
/// (a value with another host byte, such as `[` or `_`, or with blanks at its end, among them).
/// Such a line is one they accept with that value and the `Host` checks pass; the value
/// is read eight bytes at a time up to its first other byte, which must be the CR.
#[inline(always)]
fn plain_host_line(line: &[u8]) -> Option<usize> {
    let name = line.get(..5)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(&name[..4]);
    // Setting bit 5 of each byte maps only `H`/`h`, `O`/`o`, `S`/`s` and `T`/`t` onto `host`.
    if u32::from_le_bytes(w) | 0x2020_2020 != u32::from_le_bytes(*b"host") || name[4] != b':' {
        return None;
    }
    let mut at = 5;
    while matches!(line.get(at)?, b' ' | b'\t') {
        at += 1;
    }
    let end = loop {
        let Some(word) = line.get(at..at + 8) else {
            // The last few bytes of a line too short for a word.
            while line.get(at)?.is_ascii_alphanumeric() || matches!(line[at], b'-' | b'.' | b':') {
                at += 1;
            }
            break at;
        };
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let other = swar::not_plain_host(u64::from_le_bytes(w));
        if other != 0 {
            break at + swar::first(other);
        }
        at += 8;
    };
    (line.get(end..end + 2)? == b"\r\n").then_some(end)
}

/// The index of the `:` that ends the field name at the start of `line`, if the name is a
/// non-empty token.
#[inline(always)]
fn name_end(line: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(word) = line.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let other = swar::not_name_letter(u64::from_le_bytes(w));
        if other != 0 {
            i += swar::first(other);
            break;
        }
        i += 8;
    }
    // The other token bytes (and the last few of a line too short for a word), one at a time.
    while is_tchar(*line.get(i)?) {
        i += 1;
    }
    (i > 0 && line[i] == b':').then_some(i)
}

/// `v` without the blanks (SP, HTAB) at its end.
#[inline(always)]
fn trim_end_blanks(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The index of the first byte from `at` on that cannot be in a field value (a control byte
/// other than HTAB, or DEL), `None` if `buf` ends first. Eight bytes at a time: a word's
/// lowest flagged byte is the first such byte, or an HTAB to step over.
#[inline(always)]
fn value_end(buf: &[u8], mut at: usize) -> Option<usize> {
    while let Some(word) = buf.get(at..at + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        let flagged = swar::below(w, 0x20) | swar::equal(w, 0x7f);
        if flagged == 0 {
            at += 8;
            continue;
        }
        at += swar::first(flagged);
        if buf[at] != b'\t' {
            return Some(at);
        }
        at += 1;
    }
    while let Some(&b) = buf.get(at) {
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// True if the field name `name` is `lower` (lower case letters and `-`) in any case. Only
/// for names `httparse` accepted (tokens): setting bit 5 maps `A`-`Z` to `a`-`z`, and the
/// only other byte it maps to a letter or `-` is that letter or `-` itself, or CR (to `-`),
/// which a token never holds. The bytes are compared a word at a time (the last word
/// overlapping the one before), with no branch until the end.
#[inline]
pub(super) fn is_field(name: &[u8], lower: &[u8]) -> bool {
    let n = lower.len();
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
pub(super) fn parse_content_length(v: &[u8]) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The usual `Host` line is the one-scan path's (and the whole-head tests compare its
    /// verdicts with the resumable scan's); any other line is left to the general steps.
    #[test]
    fn a_plain_host_line_is_read_in_one_scan_and_any_other_is_not() {
        let taken: [(&[u8], usize); 6] = [
            (b"Host: a-1.example.com:8080\r\n\r\n", 26),
            (b"host:127.0.0.1\r\nX: 1\r\n\r\n", 14),
            (b"HOST: \t ab\r\n\r\n", 10),
            (b"Host: ab\r\n", 8),
            (b"Host:\r\n\r\n", 5),
            (b"Host: abcdefghijk\r\n\r\n", 17),
        ];
        for (line, end) in taken {
            assert_eq!(
                plain_host_line(line),
                Some(end),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        let left: [&[u8]; 11] = [
            b"Host: [::1]:80\r\n\r\n",
            b"Host: a_b\r\n\r\n",
            b"Host: a \r\n\r\n",
            b"Host: abcdefgh \r\n\r\n",
            b"Host: a\n\r\n",
            b"Host: abcdefghij\rX\r\n",
            b"Host : a\r\n\r\n",
            b"Hosts: a\r\n\r\n",
            b"Gost: a\r\n\r\n",
            b"Host: ab",
            b"Host: ab\r",
        ];
        for line in left {
            assert_eq!(plain_host_line(line), None, "{:?}", String::from_utf8_lossy(line));
        }
    }
}
