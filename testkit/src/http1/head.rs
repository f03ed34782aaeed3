//! The response head: status line and fields on `httparse`, and the framing they decide.

use super::{Error, RequestKind, MAX_HEAD, MAX_HEADERS};

/// How a response's body is delimited (decided once, from the head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, 1xx, 204, 304.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs until the server closes the connection.
    UntilClose,
}

/// A parsed head. Byte ranges point into the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Bytes of the head, up to and including the empty line.
    pub(crate) len: usize,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub(crate) minor: u8,
    pub(crate) status: u16,
    pub(crate) reason: String,
    /// Field names and values (values trimmed of spaces and tabs), in order.
    pub(crate) fields: Vec<(String, Vec<u8>)>,
    pub(crate) framing: Framing,
    /// A `Connection` field lists `close`.
    pub(crate) close: bool,
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

/// Runs `httparse` over the front of `buf`; `Ok(None)` while the head is incomplete.
fn run<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<(usize, httparse::Response<'h, 'b>)>, Error> {
    let mut r = httparse::Response::new(headers);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => Ok(Some((n, r))),
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Ok(None),
        Ok(_) => Err(Error::new(format!("head longer than {MAX_HEAD} bytes"))),
        Err(e) => Err(Error::new(format!("head: {e}"))),
    }
}

/// The framing (RFC 9112 §6.3) and whether `Connection: close` was sent.
fn decide(
    kind: RequestKind,
    status: u16,
    headers: &[httparse::Header<'_>],
) -> Result<(Framing, bool), Error> {
    let (mut length, mut chunked, mut other_coding, mut close) = (None::<u64>, false, false, false);
    for h in headers {
        let value = trim(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            for part in value.split(|&b| b == b',') {
                let part = trim(part);
                let n = std::str::from_utf8(part)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        Error::new(format!("bad Content-Length {:?}", String::from_utf8_lossy(value)))
                    })?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::new("Content-Length values differ"));
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding counts; a later field continues the list.
            let last = value.split(|&b| b == b',').map(trim).rfind(|c| !c.is_empty());
            match last {
                Some(c) if c.eq_ignore_ascii_case(b"chunked") => (chunked, other_coding) = (true, false),
                Some(_) => (chunked, other_coding) = (false, true),
                None => {}
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= value
                .split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"close"));
        }
    }
    let framing =
        if kind == RequestKind::Head || (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else if other_coding {
            Framing::UntilClose
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
    Ok((framing, close))
}

/// Parses the head at the front of `buf`: `Ok(None)` while it is incomplete.
pub(crate) fn parse(buf: &[u8], kind: RequestKind) -> Result<Option<Head>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Some((len, r)) = run(buf, &mut headers)? else {
        return Ok(None);
    };
    let status = r.code.ok_or_else(|| Error::new("no status code"))?;
    let minor = r.version.ok_or_else(|| Error::new("no version"))?;
    let (framing, close) = decide(kind, status, r.headers)?;
    Ok(Some(Head {
        len,
        minor,
        status,
        reason: r.reason.unwrap_or("").to_string(),
        fields: r
            .headers
            .iter()
            .map(|h| (h.name.to_string(), trim(h.value).to_vec()))
            .collect(),
        framing,
        close,
    }))
}

/// Length, status and framing only, with no allocation (the load generator's path).
pub(crate) fn parse_lean(buf: &[u8], kind: RequestKind) -> Result<Option<(usize, u16, Framing)>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Some((len, r)) = run(buf, &mut headers)? else {
        return Ok(None);
    };
    let status = r.code.ok_or_else(|| Error::new("no status code"))?;
    let (framing, _) = decide(kind, status, r.headers)?;
    Ok(Some((len, status, framing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(head: &str, kind: RequestKind) -> Result<Framing, Error> {
        Ok(parse(head.as_bytes(), kind)?.expect("complete").framing)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        use Framing::*;
        use RequestKind::{Head as H, Other as O};
        let cases: &[(&str, RequestKind, Framing)] = &[
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", O, Length(5)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", H, Empty),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", H, Empty),
            ("HTTP/1.1 100 Continue\r\n\r\n", O, Empty),
            ("HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n", O, Empty),
            ("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", O, Empty),
            (
                "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                O,
                Empty,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                O,
                Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                O,
                Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                O,
                UntilClose,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", O, UntilClose),
            ("HTTP/1.0 200 OK\r\nServer: x\r\n\r\n", O, UntilClose),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\nContent-Length: 4\r\n\r\n",
                O,
                Length(4),
            ),
        ];
        for (head, kind, want) in cases {
            assert_eq!(framing(head, *kind), Ok(*want), "{head:?} {kind:?}");
            let lean = parse_lean(head.as_bytes(), *kind).unwrap().unwrap();
            assert_eq!((lean.0, lean.2), (head.len(), *want), "lean: {head:?} {kind:?}");
        }
    }

    #[test]
    fn bad_heads_are_errors() {
        for bad in [
            "HTTX/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 2x0 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            assert!(parse(bad.as_bytes(), RequestKind::Other).is_err(), "{bad:?}");
            assert!(
                parse_lean(bad.as_bytes(), RequestKind::Other).is_err(),
                "lean {bad:?}"
            );
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(parse(huge.as_bytes(), RequestKind::Other).is_err());
        assert!(parse_lean(huge.as_bytes(), RequestKind::Other).is_err());
    }

    #[test]
    fn fields_reason_version_and_close() {
        let input: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\nRetry-After:  1 \r\n\
Connection: keep-alive, Close\r\nContent-Length: 0\r\n\r\nrest";
        let h = parse(input, RequestKind::Other).unwrap().unwrap();
        assert_eq!(
            (h.minor, h.status, h.reason.as_str(), h.close),
            (0, 503, "Service Unavailable", true)
        );
        assert_eq!(h.fields[0], ("Retry-After".to_string(), b"1".to_vec()));
        assert_eq!(h.len, input.len() - 4);
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nX: y\r\n", RequestKind::Other),
            Ok(None)
        );
    }
}
