//! A whole response, owned: what tests and the demo's client look at.

use super::chunked::Chunked;
use super::head::{self, Framing};
use super::{Error, RequestKind};

/// One complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `"HTTP/1.1"` or `"HTTP/1.0"`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Field names as received, values trimmed of spaces and tabs (lossy UTF-8), in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// How the body was delimited.
    pub framing: Framing,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// The status line and fields as received (for messages).
    pub head_raw: String,
}

impl Response {
    /// Parses one response off the front of `buf`: `Ok(Some((response, bytes used)))`,
    /// `Ok(None)` while `buf` does not hold all of it, or the error of a malformed one.
    ///
    /// `kind` says whether it answers a HEAD request. `eof` says the server has closed the
    /// connection after `buf`: only then is a close-delimited body complete (it is all of the
    /// rest of `buf`).
    pub fn parse(buf: &[u8], kind: RequestKind, eof: bool) -> Result<Option<(Response, usize)>, Error> {
        let Some(h) = head::parse(buf, kind)? else {
            return if eof && !buf.is_empty() {
                Err(Error::new("connection closed in the middle of a head"))
            } else {
                Ok(None)
            };
        };
        let rest = &buf[h.len..];
        let (body, trailers, used) = match h.framing {
            Framing::Empty => (Vec::new(), Vec::new(), 0),
            Framing::Length(n) => {
                let Some(n) = usize::try_from(n).ok().filter(|&n| n <= rest.len()) else {
                    return if eof {
                        Err(Error::new("connection closed before the body's end"))
                    } else {
                        Ok(None)
                    };
                };
                (rest[..n].to_vec(), Vec::new(), n)
            }
            Framing::Chunked => {
                let mut c = Chunked::new();
                let (mut body, mut trailers) = (Vec::new(), Vec::new());
                let used = c.feed(rest, &mut |d| body.extend_from_slice(d), &mut |t| {
                    let t = String::from_utf8_lossy(t);
                    let (n, v) = t.split_once(':').unwrap_or((&t, ""));
                    trailers.push((n.to_string(), v.trim_matches([' ', '\t']).to_string()));
                })?;
                if !c.is_done() {
                    return if eof {
                        Err(Error::new("connection closed before the last chunk"))
                    } else {
                        Ok(None)
                    };
                }
                (body, trailers, used)
            }
            Framing::UntilClose if eof => (rest.to_vec(), Vec::new(), rest.len()),
            Framing::UntilClose => return Ok(None),
        };
        let head_raw = String::from_utf8_lossy(&buf[..h.len - 4.min(h.len)]).into_owned();
        let response = Response {
            version: format!("HTTP/1.{}", h.minor),
            status: h.status,
            reason: h.reason,
            headers: h
                .fields
                .into_iter()
                .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
                .collect(),
            body,
            framing: h.framing,
            trailers,
            head_raw,
        };
        Ok(Some((response, h.len + used)))
    }

    /// The first value of field `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of field `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a `Connection` field lists `close` (the server closes after this response).
    pub fn has_close(&self) -> bool {
        self.header_all("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A chunked body.
    pub fn chunked(&self) -> bool {
        self.framing == Framing::Chunked
    }

    /// A body delimited by the server closing the connection.
    pub fn close_delimited(&self) -> bool {
        self.framing == Framing::UntilClose
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RequestKind::{Head, Other};

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 13\r\n\r\nHello, World!";
    const SHED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
    const CHUNKED: &[u8] = b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n\
5;x=y\r\n{\"err\r\nf\r\nor\":\"sold_out\"}\r\n0\r\nX-T: 1\r\n\r\n";
    const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n";
    const NOT_MODIFIED: &[u8] = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n";
    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

    fn all(buf: &[u8], kind: RequestKind) -> Vec<Response> {
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((r, n)) = Response::parse(&buf[at..], kind, false).unwrap() {
            out.push(r);
            at += n;
        }
        assert_eq!(
            at,
            buf.len(),
            "left over: {:?}",
            String::from_utf8_lossy(&buf[at..])
        );
        out
    }

    #[test]
    fn pipelined_responses_come_out_in_order_with_their_bodies() {
        let buf = [CONTINUE, OK, SHED, CHUNKED, NO_CONTENT, NOT_MODIFIED].concat();
        let got = all(&buf, Other);
        let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [100, 200, 503, 409, 204, 304]);
        assert_eq!(got[1].text(), "Hello, World!");
        assert_eq!(got[1].header("Content-Length"), Some("13"));
        assert_eq!((got[2].header("retry-after"), got[2].body.len()), (Some("1"), 0));
        assert_eq!(got[3].text(), "{\"error\":\"sold_out\"}");
        assert!(got[3].chunked());
        assert_eq!(got[3].trailers, [("X-T".to_string(), "1".to_string())]);
        // 204 and 304 carry no body whatever Content-Length says.
        assert!(got[4].body.is_empty() && got[5].body.is_empty());
        assert_eq!(
            got[3].head_raw,
            "HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked"
        );
    }

    #[test]
    fn a_response_to_head_has_no_body() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n";
        let (r, used) = Response::parse(&[&head[..], OK].concat(), Head, false)
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.body.len(), used), (200, 0, head.len()));
        let chunked_head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            Response::parse(chunked_head, Head, false).unwrap().unwrap().1,
            chunked_head.len()
        );
    }

    #[test]
    fn a_close_delimited_body_ends_at_eof() {
        let buf = b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nall of this";
        assert_eq!(Response::parse(buf, Other, false), Ok(None));
        let (r, used) = Response::parse(buf, Other, true).unwrap().unwrap();
        assert_eq!(
            (r.version.as_str(), r.text().as_str(), used),
            ("HTTP/1.0", "all of this", buf.len())
        );
        assert!(r.close_delimited());
    }

    #[test]
    fn every_prefix_is_incomplete_and_eof_inside_is_an_error() {
        for r in [OK, SHED, CHUNKED] {
            for i in 0..r.len() {
                assert_eq!(Response::parse(&r[..i], Other, false), Ok(None), "prefix {i}");
                if i > 0 {
                    assert!(Response::parse(&r[..i], Other, true).is_err(), "eof at {i}");
                }
            }
            assert_eq!(Response::parse(r, Other, false).unwrap().unwrap().1, r.len());
        }
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bad in [
            &b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabX",
        ] {
            assert!(
                Response::parse(bad, Other, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
