//! Checks shared by the fuzz targets (and the `replay` binary).
//!
//! - [`parse_stream`]: the first byte picks the limits (bit 7: tiny limits) and how many of the
//!   following bytes (bits 0-2) give the chunk sizes; the rest is the request stream. It is fed
//!   whole, in those chunks, and (when short) byte by byte: the outcomes must be identical.
//!   Every parsed request is checked for framing invariants.
//! - [`chunked_body`]: the input becomes the body of a chunked POST; split/whole must agree, and
//!   whenever a strict reference decoder of RFC 9112 section 7.1 accepts (or finds a valid but
//!   incomplete prefix), the parser must agree on the decoded body and where it ends.
//!
//! No difference between a whole and a split parse is tolerated.

use std::fmt;

use ringcore_http::proto::Parser;
use ringcore_http::Limits;

/// A parsed request, owned.
#[derive(Clone, PartialEq, Eq)]
pub struct Req {
    pub method: String,
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl fmt::Debug for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("Req")
            .field("method", &self.method)
            .field("target", &s(&self.target))
            .field(
                "headers",
                &self.headers.iter().map(|(n, v)| (s(n), s(v))).collect::<Vec<_>>(),
            )
            .field("body", &s(&self.body))
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// How feeding ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// All input consumed without error; `partial` is `Parser::has_partial()` at the end.
    NeedMore { partial: bool },
    /// The parser failed with this status and reason.
    Error { status: u16, reason: &'static str },
}

/// The requests produced, in order, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reqs: Vec<Req>,
    pub end: End,
}

/// Tiny limits, so the fuzzer reaches every limit check with short inputs.
pub fn tiny_limits() -> Limits {
    let mut l = Limits::default();
    l.max_request_line = 48;
    l.max_header_bytes = 160;
    l.max_headers = 4;
    l.max_body_bytes = 40;
    l.max_chunk_line = 12;
    l
}

/// Pushes each chunk and drains `next_request` until it needs more bytes or fails.
pub fn feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, limits: &Limits) -> Outcome {
    let mut p = Parser::new(limits.clone());
    let mut reqs = Vec::new();
    for chunk in chunks {
        p.push(chunk);
        loop {
            match p.next_request() {
                Ok(Some(r)) => reqs.push(Req {
                    method: r.method().as_str().to_owned(),
                    target: r.target().to_vec(),
                    headers: r.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
                    body: r.body().to_vec(),
                    keep_alive: r.keep_alive(),
                }),
                Ok(None) => break,
                Err(e) => {
                    assert!(
                        !p.has_partial() && !p.in_body(),
                        "failed parser still holds bytes"
                    );
                    p.push(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
                    assert_eq!(p.next_request().err(), Some(e), "parser recovered after an error");
                    return Outcome {
                        reqs,
                        end: End::Error {
                            status: e.status().as_u16(),
                            reason: e.reason(),
                        },
                    };
                }
            }
        }
    }
    Outcome {
        reqs,
        end: End::NeedMore {
            partial: p.has_partial(),
        },
    }
}

#[track_caller]
fn assert_same(stream: &[u8], how: &str, whole: &Outcome, got: &Outcome) {
    if whole != got {
        panic!(
            "outcome depends on how the input is split ({how})\nstream: {:?}\nwhole: {whole:#?}\nsplit: {got:#?}",
            String::from_utf8_lossy(stream)
        );
    }
}

fn header<'a>(r: &'a Req, name: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
    let name = name.as_bytes().to_vec();
    r.headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
        .map(|(_, v)| v.as_slice())
}

/// Framing invariants every accepted request must satisfy.
fn check_request(r: &Req, limits: &Limits) {
    assert!(!r.target.is_empty(), "empty target: {r:?}");
    assert!(header(r, "host").count() <= 1, "two Host fields accepted: {r:?}");
    let te = header(r, "transfer-encoding").count() > 0;
    let cl: Vec<&[u8]> = header(r, "content-length").collect();
    assert!(
        !te || cl.is_empty(),
        "both Transfer-Encoding and Content-Length: {r:?}"
    );
    assert!(
        r.body.len() <= limits.max_body_bytes,
        "body over the limit: {r:?}"
    );
    if !te {
        let n: Option<usize> = cl.first().map(|v| {
            let first = v
                .split(|&b| b == b',')
                .map(|p| {
                    p.iter()
                        .copied()
                        .filter(|b| !b" \t".contains(b))
                        .collect::<Vec<u8>>()
                })
                .find(|p| !p.is_empty())
                .unwrap_or_default();
            std::str::from_utf8(&first)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unparsable Content-Length accepted: {r:?}"))
        });
        assert_eq!(
            r.body.len(),
            n.unwrap_or(0),
            "body length disagrees with Content-Length: {r:?}"
        );
    }
}

/// The `parse_stream` fuzz target.
pub fn parse_stream(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let tiny = ctl & 0x80 != 0;
    let limits = if tiny { tiny_limits() } else { Limits::default() };
    let k = usize::from(ctl & 0x07).min(rest.len());
    let (sizes, stream) = rest.split_at(k);

    let whole = feed([stream], &limits);
    for r in &whole.reqs {
        check_request(r, &limits);
    }

    // Chunk sizes cycle through `sizes` (0 = an empty push); no sizes means halves.
    let mut chunks: Vec<&[u8]> = Vec::new();
    if sizes.iter().all(|&s| s == 0) {
        let (a, b) = stream.split_at(stream.len() / 2);
        chunks.extend([a, &[][..], b]);
    } else {
        let mut at = 0;
        for &s in sizes.iter().cycle() {
            if at >= stream.len() {
                break;
            }
            let end = (at + usize::from(s)).min(stream.len());
            chunks.push(&stream[at..end]);
            at = end;
        }
    }
    let split = feed(chunks.iter().copied(), &limits);
    assert_same(stream, &format!("chunk sizes {sizes:?}"), &whole, &split);

    if stream.len() <= 512 {
        let bytes = feed(stream.chunks(1), &limits);
        assert_same(stream, "byte by byte", &whole, &bytes);
    }
}

/// The head that `chunked_body` puts before the input.
pub const CHUNKED_HEAD: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

fn with_head(body: &[u8]) -> Vec<u8> {
    let mut s = CHUNKED_HEAD.to_vec();
    s.extend_from_slice(body);
    s
}

/// The `chunked_body` fuzz target.
pub fn chunked_body(data: &[u8]) {
    let limits = Limits::default();
    let stream = with_head(data);
    let whole = feed([&stream[..]], &limits);
    for r in &whole.reqs {
        check_request(r, &limits);
    }
    let mid = CHUNKED_HEAD.len() + data.len() / 2;
    let split = feed([&stream[..mid], &stream[mid..]], &limits);
    assert_same(&stream, &format!("cut at {mid}"), &whole, &split);
    if data.len() <= 1024 {
        let bytes = feed(stream.chunks(1), &limits);
        assert_same(&stream, "byte by byte", &whole, &bytes);
    }

    match reference_chunked(data, &limits) {
        Ref::Complete { body, consumed } => {
            let first = whole.reqs.first().unwrap_or_else(|| {
                panic!(
                    "valid chunked body rejected or not finished: {:?}\n{:?}",
                    String::from_utf8_lossy(data),
                    whole.end
                )
            });
            assert_eq!(
                first.body,
                body,
                "wrong decoded body for {:?}",
                String::from_utf8_lossy(data)
            );
            // The body ends exactly where the reference says: not earlier, not later.
            let exact = feed([&with_head(&data[..consumed])[..]], &limits);
            assert_eq!(
                exact.reqs.len(),
                1,
                "{:?}: {exact:?}",
                String::from_utf8_lossy(data)
            );
            assert_eq!(
                exact.end,
                End::NeedMore { partial: false },
                "{:?}",
                String::from_utf8_lossy(data)
            );
            let short = feed([&with_head(&data[..consumed - 1])[..]], &limits);
            assert!(
                short.reqs.is_empty() && short.end == End::NeedMore { partial: true },
                "body finished early: {:?}: {short:?}",
                String::from_utf8_lossy(&data[..consumed - 1])
            );
        }
        Ref::Incomplete => {
            assert!(
                whole.reqs.is_empty() && whole.end == End::NeedMore { partial: true },
                "valid incomplete chunked body not waited for: {:?}: {whole:?}",
                String::from_utf8_lossy(data)
            );
        }
        Ref::Invalid | Ref::Skip => {}
    }
}

/// What a strict RFC 9112 section 7.1 decoder makes of a chunked body.
#[derive(Debug, PartialEq, Eq)]
pub enum Ref {
    /// A complete body: the decoded data and how many input bytes it spans.
    Complete { body: Vec<u8>, consumed: usize },
    /// A valid prefix of a chunked body.
    Incomplete,
    /// Not a valid chunked body (the parser may still be more lenient).
    Invalid,
    /// Near a limit or otherwise not judged.
    Skip,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_bws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A complete line starting at `i`: its content without the CRLF, and the index after it.
/// `Err(true)`: no LF yet; `Err(false)`: a bare LF, or a CR that is not right before the LF.
fn line(d: &[u8], i: usize) -> Result<(&[u8], usize), bool> {
    let lf = d[i..].iter().position(|&b| b == b'\n').ok_or(true)? + i;
    let content = d[i..lf].strip_suffix(b"\r").ok_or(false)?;
    if content.contains(&b'\r') {
        return Err(false);
    }
    Ok((content, lf + 1))
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`.
fn valid_ext(mut e: &[u8]) -> bool {
    let skip_bws = |e: &mut &[u8]| {
        while let [b, rest @ ..] = *e {
            if !is_bws(*b) {
                break;
            }
            *e = rest;
        }
    };
    let token = |e: &mut &[u8]| {
        let n = e.iter().take_while(|&&b| is_tchar(b)).count();
        *e = &e[n..];
        n > 0
    };
    loop {
        skip_bws(&mut e);
        if e.is_empty() {
            return true;
        }
        let [b';', rest @ ..] = e else { return false };
        e = rest;
        skip_bws(&mut e);
        if !token(&mut e) {
            return false;
        }
        let mut look = e;
        skip_bws(&mut look);
        if let [b'=', rest @ ..] = look {
            e = rest;
            skip_bws(&mut e);
            if let [b'"', rest @ ..] = e {
                e = rest;
                loop {
                    match e {
                        [b'"', rest @ ..] => {
                            e = rest;
                            break;
                        }
                        [b'\\', q, rest @ ..] if *q == b'\t' || *q >= b' ' && *q != 0x7f => e = rest,
                        [b, rest @ ..] if *b == b'\t' || (*b >= b' ' && *b != b'\\' && *b != 0x7f) => {
                            e = rest
                        }
                        _ => return false,
                    }
                }
            } else if !token(&mut e) {
                return false;
            }
        }
    }
}

/// `field-line = field-name ":" OWS field-value OWS` (value: VCHAR / obs-text / SP / HTAB).
fn valid_field_line(l: &[u8]) -> bool {
    let Some(colon) = l.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && l[..colon].iter().all(|&b| is_tchar(b))
        && l[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// A strict decoder of a chunked body at the start of `d` (CRLF line ends only, as the
/// parser documents). Anything near one of `limits` is [`Ref::Skip`].
pub fn reference_chunked(d: &[u8], limits: &Limits) -> Ref {
    let mut i = 0;
    let mut body = Vec::new();
    let mut total: u64 = 0;
    // Chunks, then the last chunk.
    loop {
        let (l, next) = match line(d, i) {
            Ok(x) => x,
            Err(true) => {
                let part = &d[i..];
                return if part.len() < 16 && part.iter().all(u8::is_ascii_hexdigit) {
                    Ref::Incomplete
                } else {
                    Ref::Skip
                };
            }
            Err(false) => return Ref::Invalid,
        };
        let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Ref::Invalid;
        }
        if digits > 16 || l.len() + 2 > limits.max_chunk_line {
            return Ref::Skip;
        }
        if !valid_ext(&l[digits..]) {
            return Ref::Invalid;
        }
        let Ok(size) = u64::from_str_radix(std::str::from_utf8(&l[..digits]).unwrap_or("x"), 16) else {
            return Ref::Skip;
        };
        i = next;
        if size == 0 {
            break;
        }
        total = total.saturating_add(size);
        if total > limits.max_body_bytes as u64 {
            return Ref::Skip;
        }
        let size = size as usize;
        if d.len() - i < size {
            return Ref::Incomplete;
        }
        body.extend_from_slice(&d[i..i + size]);
        i += size;
        match d.get(i..) {
            Some([]) | Some([b'\r']) => return Ref::Incomplete,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return Ref::Invalid,
        }
    }
    // Trailer section, then the empty line.
    let mut fields = 0;
    let start = i;
    loop {
        let (l, next) = match line(d, i) {
            Ok(x) => x,
            Err(true) => {
                return if i == d.len() || d[i..] == *b"\r" {
                    Ref::Incomplete
                } else {
                    Ref::Skip
                }
            }
            Err(false) => return Ref::Invalid,
        };
        if next - start + 2 > limits.max_header_bytes {
            return Ref::Skip;
        }
        i = next;
        if l.is_empty() {
            return Ref::Complete { body, consumed: i };
        }
        fields += 1;
        if fields > limits.max_headers {
            return Ref::Skip;
        }
        if !valid_field_line(l) {
            return Ref::Invalid;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_decoder() {
        let l = Limits::default();
        assert_eq!(
            reference_chunked(b"3;a=\"x\\\"y\"\r\nabc\r\n0\r\nT: v\r\n\r\nrest", &l),
            Ref::Complete {
                body: b"abc".to_vec(),
                consumed: 28
            }
        );
        assert_eq!(reference_chunked(b"3\r\nab", &l), Ref::Incomplete);
        assert_eq!(
            reference_chunked(b"3 garbage\r\nabc\r\n0\r\n\r\n", &l),
            Ref::Invalid
        );
        assert_eq!(reference_chunked(b"0\r\n: x\r\n\r\n", &l), Ref::Invalid);
        assert_eq!(reference_chunked(b"3\nabc\r\n0\r\n\r\n", &l), Ref::Invalid);
        assert_eq!(reference_chunked(b"3\r\nabc\n0\r\n\r\n", &l), Ref::Invalid);
        assert_eq!(reference_chunked(b"0\n\r\n", &l), Ref::Invalid);
    }

    #[test]
    fn seeds_pass() {
        for dir in ["corpus/parse_stream", "corpus/chunked_body"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for e in std::fs::read_dir(path).expect("corpus dir") {
                let data = std::fs::read(e.expect("entry").path()).expect("read");
                if dir.ends_with("parse_stream") {
                    parse_stream(&data);
                } else {
                    chunked_body(&data);
                }
            }
        }
    }
}
