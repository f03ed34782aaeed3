//! The client side of HTTP/1.1, as much as the demo needs: request bytes, the workspace's one
//! response parser (`ringcore_testkit::http1`) reduced to what the demo looks at, taking one
//! complete response off the front of a buffer so pipelined responses come out in order, and
//! a small blocking keep-alive client for setting up items and checking orders.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringcore_testkit::http1::{self, RequestKind};

/// Largest response body accepted (the service's bodies are a few dozen bytes).
const MAX_BODY: usize = 1024 * 1024;

/// One complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// A `Retry-After` header was present.
    pub(crate) retry_after: bool,
    /// The server will close the connection after this response (`Connection: close`).
    pub(crate) close: bool,
    pub(crate) body: Vec<u8>,
}

/// The bytes of one request; `body` is sent as JSON.
pub(crate) fn request(method: &str, path: &str, body: Option<&str>) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    match body {
        Some(b) => {
            r.push_str("Content-Type: application/json\r\n");
            r.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            r.push_str(b);
        }
        None => r.push_str("\r\n"),
    }
    r.into_bytes()
}

/// Parses one response off the front of `buf` with the workspace's one HTTP/1 parser
/// ([`ringcore_testkit::http1`]): `Ok(Some((response, bytes used)))`, `Ok(None)` if `buf`
/// does not hold a complete response yet, or an error for a malformed one (or a body over
/// [`MAX_BODY`]).
pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, String> {
    match http1::Response::parse(buf, RequestKind::Other, false) {
        Ok(Some((r, _))) if r.body.len() > MAX_BODY => {
            Err(format!("response body of {} bytes is too large", r.body.len()))
        }
        Ok(Some((r, used))) => Ok(Some((
            Response {
                status: r.status,
                retry_after: r.header("retry-after").is_some(),
                close: r.has_close(),
                body: r.body,
            },
            used,
        ))),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// A blocking keep-alive client to one server; every wait is bounded by `timeout`.
#[derive(Debug)]
pub(crate) struct Client {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr, timeout: Duration) -> Client {
        Client {
            addr,
            timeout,
            stream: None,
            buf: Vec::new(),
        }
    }

    /// Sends one request and returns its response.
    pub(crate) fn send(&mut self, req: &[u8]) -> io::Result<Response> {
        let mut out = self.batch(&[req.to_vec()])?;
        out.pop().ok_or_else(|| io::Error::other("no response"))
    }

    /// Sends `reqs` pipelined on one connection and returns their responses in order. If the
    /// server closes the connection part way (`Connection: close`), the rest are sent again
    /// on a new one: use it for idempotent requests only.
    pub(crate) fn batch(&mut self, reqs: &[Vec<u8>]) -> io::Result<Vec<Response>> {
        let mut out = Vec::with_capacity(reqs.len());
        while out.len() < reqs.len() {
            let before = out.len();
            let res = self.batch_once(&reqs[before..], &mut out);
            if res.is_err() {
                self.stream = None;
            }
            res?;
            if out.len() == before {
                return Err(io::Error::other("connection closed before any response"));
            }
        }
        Ok(out)
    }

    fn batch_once(&mut self, reqs: &[Vec<u8>], out: &mut Vec<Response>) -> io::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let stream = match self.stream.take() {
            Some(s) => s,
            None => {
                self.buf.clear();
                let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(self.timeout))?;
                s
            }
        };
        let mut stream = stream;
        stream.write_all(&reqs.concat())?;
        let mut got = 0;
        let mut chunk = [0u8; 16 * 1024];
        while got < reqs.len() {
            // Take every complete response already buffered.
            let mut used = 0;
            while got < reqs.len() {
                match parse_response(&self.buf[used..]).map_err(io::Error::other)? {
                    Some((resp, n)) => {
                        used += n;
                        got += 1;
                        let close = resp.close;
                        out.push(resp);
                        if close {
                            self.buf.clear();
                            // Dropping the stream closes it; the caller reconnects for the rest.
                            return Ok(());
                        }
                    }
                    None => break,
                }
            }
            self.buf.drain(..used);
            if got == reqs.len() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no response in time"));
            }
            stream.set_read_timeout(Some(left))?;
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        self.stream = Some(stream);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 47\r\n\r\n\
{\"order\":\"o-1\",\"item\":\"item-0\",\"user\":\"user-1\"}";
    const SHED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
    const CHUNKED: &[u8] =
        b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
5;x=y\r\n{\"err\r\nf\r\nor\":\"sold_out\"}\r\n0\r\nX-T: 1\r\n\r\n";
    const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

    fn all() -> Vec<u8> {
        [OK, SHED, CHUNKED, NO_CONTENT].concat()
    }

    fn parse_all(mut buf: &[u8]) -> Vec<Response> {
        let mut out = Vec::new();
        while let Some((r, n)) = parse_response(buf).unwrap() {
            out.push(r);
            buf = &buf[n..];
        }
        assert!(buf.is_empty(), "left over: {:?}", String::from_utf8_lossy(buf));
        out
    }

    #[test]
    fn pipelined_responses_come_out_in_order_with_their_bodies() {
        let got = parse_all(&all());
        assert_eq!(got.len(), 4);
        assert_eq!(
            (got[0].status, got[0].retry_after, got[0].close),
            (200, false, false)
        );
        assert_eq!(got[0].body, &OK[OK.len() - 47..]);
        assert_eq!(
            (got[1].status, got[1].retry_after, got[1].body.len()),
            (503, true, 0)
        );
        assert_eq!((got[2].status, got[2].close), (409, true));
        assert_eq!(got[2].body, b"{\"error\":\"sold_out\"}");
        assert_eq!((got[3].status, got[3].body.len()), (204, 0));
    }

    #[test]
    fn requests_carry_a_length_for_their_body() {
        let r = request("POST", "/items/item-0/buy", Some("{\"user\":\"user-7\"}"));
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /items/item-0/buy HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
Content-Length: 17\r\n\r\n{\"user\":\"user-7\"}"
        );
        let r = request("GET", "/orders/o-1", None);
        assert_eq!(r, b"GET /orders/o-1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    }

    #[test]
    fn blocking_client_pipelines_and_reconnects_after_close() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A server that answers two requests per connection, the second with Connection: close
        // (it reads all that was sent first, so closing does not reset the connection).
        let server = std::thread::spawn(move || {
            for expect in [4, 2] {
                let (mut s, _) = listener.accept().unwrap();
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while seen.windows(4).filter(|w| w == b"\r\n\r\n").count() < expect {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
                    .unwrap();
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nb")
                    .unwrap();
            }
        });
        let mut c = Client::new(addr, Duration::from_secs(5));
        let reqs: Vec<Vec<u8>> = (0..4).map(|i| request("GET", &format!("/{i}"), None)).collect();
        let got = c.batch(&reqs).unwrap();
        let bodies: Vec<&[u8]> = got.iter().map(|r| &r.body[..]).collect();
        assert_eq!(bodies, [b"a", b"b", b"a", b"b"]);
        server.join().unwrap();
    }
}
