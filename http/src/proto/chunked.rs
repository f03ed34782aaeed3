//! The chunked transfer-coding decoder (RFC 9112 section 7.1), as a byte-driven state machine.
//!
//! It never trusts a length: chunk sizes are parsed with overflow checks and at most 16 hex
//! digits, the running total is bounded by the body limit, a chunk-size line (extensions
//! included) by `max_chunk_line`, and the trailer section by the header limits. Extensions are
//! checked for control characters and skipped; trailer fields are checked for `name:` shape
//! and skipped (never merged into the request's headers). Every line end is CRLF: after the
//! chunk-size line, after chunk data, after the last chunk and after each trailer line (RFC
//! 9112 section 7.1). A bare LF there is 400, unlike in the head: lenient chunk-line ends are a
//! request-smuggling vector behind a front end that reads them differently.

use http::StatusCode;

use super::head::Reject;
use super::line::is_tchar;
use crate::limits::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading chunk-size hex digits.
    Size {
        value: u64,
        digits: u8,
    },
    /// After the size, whitespace before a `;` (BWS).
    ExtWs,
    /// In a chunk extension, until the line end.
    Ext,
    /// Saw CR at the end of a size line; LF must follow.
    SizeLf {
        value: u64,
    },
    /// Copying chunk data.
    Data {
        left: u64,
    },
    /// After chunk data: CR or LF.
    DataEnd,
    /// Saw CR after chunk data; LF must follow.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer {
        name_len: usize,
        colon: bool,
    },
    /// Saw CR at the end of a trailer line (`last` if the line was empty).
    TrailerLf {
        last: bool,
    },
    Done,
}

#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    total: u64,
    line_len: usize,
    trailer_bytes: usize,
    trailer_fields: usize,
    /// The chunk size read before an extension started.
    pending_value: u64,
}

fn bad(reason: &'static str) -> Reject {
    Reject {
        status: StatusCode::BAD_REQUEST,
        reason,
    }
}

/// A line end in chunked framing without its CR.
fn bare_lf() -> Reject {
    bad("bare LF in chunked framing")
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Size { value: 0, digits: 0 },
            total: 0,
            line_len: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
            pending_value: 0,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending body bytes to `out`. Returns how many input bytes were
    /// consumed; stops at the end of the body (then [`is_done`](Self::is_done) is true).
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<usize, Reject> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return Ok(i),
                State::Data { left } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len() - i);
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::Size { value, digits } => {
                    self.line_len += 1;
                    if let Some(d) = hex(b) {
                        if digits >= 16 {
                            return Err(bad("chunk size too long"));
                        }
                        let value = value.checked_mul(16).and_then(|v| v.checked_add(d));
                        let Some(value) = value else {
                            return Err(bad("chunk size overflows"));
                        };
                        self.state = State::Size {
                            value,
                            digits: digits + 1,
                        };
                    } else if digits == 0 {
                        return Err(bad("chunk size missing"));
                    } else {
                        match b {
                            b';' => {
                                self.state = State::Ext;
                                self.ext_value(value);
                            }
                            b' ' | b'\t' => {
                                self.state = State::ExtWs;
                                self.ext_value(value);
                            }
                            b'\r' => self.state = State::SizeLf { value },
                            b'\n' => return Err(bare_lf()),
                            _ => return Err(bad("invalid chunk size")),
                        }
                    }
                }
                State::ExtWs => {
                    self.line_len += 1;
                    let value = self.pending_value;
                    match b {
                        b' ' | b'\t' => {}
                        b';' => self.state = State::Ext,
                        b'\r' => self.state = State::SizeLf { value },
                        b'\n' => return Err(bare_lf()),
                        _ => return Err(bad("invalid chunk size")),
                    }
                }
                State::Ext => {
                    self.line_len += 1;
                    match b {
                        b'\r' => {
                            let value = self.pending_value;
                            self.state = State::SizeLf { value };
                        }
                        b'\n' => return Err(bare_lf()),
                        b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                        _ => return Err(bad("control character in chunk extension")),
                    }
                }
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(bad("CR without LF in chunk size line"));
                    }
                    self.end_size_line(value, limits)?;
                }
                State::DataEnd => match b {
                    b'\r' => self.state = State::DataLf,
                    b'\n' => return Err(bare_lf()),
                    _ => return Err(bad("chunk data longer than its size")),
                },
                State::DataLf => {
                    if b != b'\n' {
                        return Err(bad("CR without LF after chunk data"));
                    }
                    self.start_size();
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::TrailerLf { last: true },
                    b'\n' => return Err(bare_lf()),
                    _ => {
                        self.trailer_fields += 1;
                        if self.trailer_fields > limits.max_headers {
                            return Err(Reject {
                                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                                reason: "too many trailer fields",
                            });
                        }
                        if !is_tchar(b) {
                            return Err(bad("malformed trailer field"));
                        }
                        self.count_trailer(limits)?;
                        self.state = State::Trailer {
                            name_len: 1,
                            colon: false,
                        };
                    }
                },
                State::Trailer { name_len, colon } => {
                    self.count_trailer(limits)?;
                    match b {
                        b'\r' | b'\n' if !colon => return Err(bad("trailer field without a colon")),
                        b'\r' => self.state = State::TrailerLf { last: false },
                        b'\n' => return Err(bare_lf()),
                        b':' if !colon => {
                            if name_len == 0 {
                                return Err(bad("empty trailer field name"));
                            }
                            self.state = State::Trailer {
                                name_len,
                                colon: true,
                            };
                        }
                        _ if !colon => {
                            if !is_tchar(b) {
                                return Err(bad("malformed trailer field name"));
                            }
                            self.state = State::Trailer {
                                name_len: name_len + 1,
                                colon,
                            };
                        }
                        b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                        _ => return Err(bad("control character in trailer field")),
                    }
                }
                State::TrailerLf { last } => {
                    if b != b'\n' {
                        return Err(bad("CR without LF in trailer section"));
                    }
                    self.state = if last { State::Done } else { State::TrailerStart };
                }
            }
            if self.line_len > limits.max_chunk_line {
                return Err(bad("chunk size line too long"));
            }
            i += 1;
        }
        Ok(i)
    }

    fn ext_value(&mut self, value: u64) {
        self.pending_value = value;
    }

    fn start_size(&mut self) {
        self.line_len = 0;
        self.state = State::Size { value: 0, digits: 0 };
    }

    fn end_size_line(&mut self, value: u64, limits: &Limits) -> Result<(), Reject> {
        self.line_len = 0;
        if value == 0 {
            self.state = State::TrailerStart;
            return Ok(());
        }
        self.total = self.total.saturating_add(value);
        if self.total > limits.max_body_bytes as u64 {
            return Err(Reject {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                reason: "request body too large",
            });
        }
        self.state = State::Data { left: value };
        Ok(())
    }

    fn count_trailer(&mut self, limits: &Limits) -> Result<(), Reject> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > limits.max_header_bytes {
            return Err(Reject {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: "trailer section too large",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), Reject> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let n = d.decode(input, &mut out, &Limits::default())?;
        assert!(d.is_done(), "not done after {input:?}");
        Ok((out, n))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let (out, n) = decode_all(b"5\r\nhello\r\n6;name=val\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT")
            .unwrap_or_default();
        assert_eq!(out, b"hello world");
        assert_eq!(n, 49, "stops right after the body");
        let (out, _) = decode_all(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap_or_default();
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn bare_lf_anywhere_in_the_framing_is_rejected() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],  // after the chunk size
            b"5;ext=1\nhello\r\n0\r\n\r\n", // after an extension
            b"5 \nhello\r\n0\r\n\r\n",      // after whitespace before an extension
            b"5\r\nhello\n0\r\n\r\n",       // after chunk data
            b"0\n\r\n",                     // after the last chunk
            b"0\r\n\n",                     // as the final empty line
            b"0\r\nT: v\n\r\n",             // after a trailer field
            b"3\nabc\n0\n\n",               // everywhere
        ] {
            let mut d = ChunkedDecoder::new();
            let r = d.decode(bad, &mut Vec::new(), &Limits::default());
            assert_eq!(
                r.map_err(|e| (e.status, e.reason)),
                Err((StatusCode::BAD_REQUEST, "bare LF in chunked framing")),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            // Byte by byte, the same verdict at the same byte.
            let mut d = ChunkedDecoder::new();
            let at = bad.iter().position(|b| {
                d.decode(std::slice::from_ref(b), &mut Vec::new(), &Limits::default())
                    .is_err()
            });
            assert_eq!(
                at,
                bad.windows(2)
                    .position(|w| w[1] == b'\n' && w[0] != b'\r')
                    .map(|i| i + 1)
            );
        }
    }

    #[test]
    fn rejects_bad_chunks() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\r\nhelloX\r\n",
            b"5\rX",
            b"ffffffffffffffffff\r\n",
            b"5;\x01\r\n",
            b"1 garbage\r\n",
            b"0\r\nno colon here\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
        ] {
            let mut d = ChunkedDecoder::new();
            let r = d.decode(bad, &mut Vec::new(), &Limits::default());
            assert!(r.is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn enforces_limits() {
        let limits = Limits {
            max_body_bytes: 10,
            ..Limits::default()
        };
        let mut d = ChunkedDecoder::new();
        let r = d.decode(b"8\r\n12345678\r\n8\r\n", &mut Vec::new(), &limits);
        assert_eq!(r.map_err(|e| e.status), Err(StatusCode::PAYLOAD_TOO_LARGE));
        let long_ext = format!("1;{}\r\n", "e".repeat(2000));
        let mut d = ChunkedDecoder::new();
        assert!(d
            .decode(long_ext.as_bytes(), &mut Vec::new(), &Limits::default())
            .is_err());
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let input = b"4\r\nWiki\r\n5;x=y\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: 1\r\n\r\n";
        let (whole, _) = decode_all(input).unwrap_or_default();
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for b in input.iter() {
            let n = d
                .decode(std::slice::from_ref(b), &mut out, &Limits::default())
                .unwrap_or(usize::MAX);
            assert_eq!(n, 1);
        }
        assert!(d.is_done());
        assert_eq!(out, whole);
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
    }
}
