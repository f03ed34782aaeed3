//! Finds where each response ends in a byte stream fed in arbitrary pieces, keeping nothing
//! but a partial head or chunk line: the load generator's parser.

use super::chunked::Chunked;
use super::head::{self, Framing};
use super::{Error, RequestKind};

#[derive(Debug, Clone)]
enum State {
    /// Reading a head; `carry` holds its bytes so far.
    Head,
    /// `n` body bytes left.
    Length(u64),
    Chunked(Chunked),
    /// The body runs until the server closes.
    UntilClose,
}

/// An incremental response delimiter: [`feed`](Self::feed) it received bytes, it reports the
/// status of every complete *final* response (interim 1xx responses are skipped; bodies are
/// skipped, not stored).
#[derive(Debug, Clone)]
pub struct Delimiter {
    kind: RequestKind,
    state: State,
    carry: Vec<u8>,
    status: u16,
}

impl Delimiter {
    /// A delimiter for the responses to requests of `kind` (all alike).
    pub fn new(kind: RequestKind) -> Self {
        Delimiter {
            kind,
            state: State::Head,
            carry: Vec::new(),
            status: 0,
        }
    }

    /// True between responses (nothing of the next one seen).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && self.carry.is_empty()
    }

    /// Consumes `data`, calling `done(status)` for each complete response in order.
    pub fn feed(&mut self, mut data: &[u8], mut done: impl FnMut(u16)) -> Result<(), Error> {
        while !data.is_empty() {
            match &mut self.state {
                State::Head => {
                    let parsed = if self.carry.is_empty() {
                        head::parse_lean(data, self.kind)?
                    } else {
                        let old = self.carry.len();
                        self.carry.extend_from_slice(data);
                        let parsed = head::parse_lean(&self.carry, self.kind)?;
                        match parsed {
                            Some((len, s, f)) => {
                                self.carry.clear();
                                Some((len - old, s, f))
                            }
                            None => {
                                // All of `data` is in `carry` now.
                                return Ok(());
                            }
                        }
                    };
                    let Some((used, status, framing)) = parsed else {
                        self.carry.extend_from_slice(data);
                        return Ok(());
                    };
                    data = &data[used..];
                    if (100..200).contains(&status) {
                        if status == 101 {
                            return Err(Error::new("101 Switching Protocols: not HTTP/1 any more"));
                        }
                        continue; // interim: the final response follows
                    }
                    self.status = status;
                    self.state = match framing {
                        Framing::Empty | Framing::Length(0) => {
                            done(status);
                            State::Head
                        }
                        Framing::Length(n) => State::Length(n),
                        Framing::Chunked => State::Chunked(Chunked::new()),
                        Framing::UntilClose => State::UntilClose,
                    };
                }
                State::Length(n) => {
                    let take = (*n).min(data.len() as u64);
                    data = &data[take as usize..];
                    *n -= take;
                    if *n == 0 {
                        self.state = State::Head;
                        done(self.status);
                    }
                }
                State::Chunked(c) => {
                    let used = c.feed(data, &mut |_| {}, &mut |_| {})?;
                    data = &data[used..];
                    if c.is_done() {
                        self.state = State::Head;
                        done(self.status);
                    }
                }
                State::UntilClose => return Ok(()),
            }
        }
        Ok(())
    }

    /// The server closed the connection: the status of a close-delimited response this ends,
    /// `Ok(None)` if the stream ended between responses, or an error if it cut one short.
    pub fn eof(&mut self) -> Result<Option<u16>, Error> {
        let state = std::mem::replace(&mut self.state, State::Head);
        let partial = !self.carry.is_empty();
        self.carry.clear();
        match state {
            State::UntilClose => Ok(Some(self.status)),
            State::Head if !partial => Ok(None),
            _ => Err(Error::new("connection closed in the middle of a response")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R200: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
    const R404: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    const RCHUNK: &[u8] = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nHello\r\n\
a\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
    const R204: &[u8] = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
    const R304: &[u8] = b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
    const R100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    const R503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";

    fn stream() -> (Vec<u8>, Vec<u16>) {
        let parts: [(&[u8], u16); 8] = [
            (R200, 200),
            (RCHUNK, 201),
            (R404, 404),
            (R204, 204),
            (R100, 0),
            (R200, 200),
            (R304, 304),
            (R503, 503),
        ];
        let all = parts.iter().flat_map(|(r, _)| r.iter().copied()).collect();
        let want = parts.iter().map(|p| p.1).filter(|&s| s != 0).collect();
        (all, want)
    }

    fn feed_parts(parts: &[&[u8]]) -> Result<Vec<u16>, Error> {
        let mut d = Delimiter::new(RequestKind::Other);
        let mut got = Vec::new();
        for part in parts {
            d.feed(part, |s| got.push(s))?;
        }
        assert!(d.is_idle(), "ends between responses");
        Ok(got)
    }

    #[test]
    fn pipelined_responses_at_every_split() {
        let (all, want) = stream();
        assert_eq!(feed_parts(&[&all]).unwrap(), want);
        for i in 0..=all.len() {
            assert_eq!(feed_parts(&[&all[..i], &all[i..]]).unwrap(), want, "split at {i}");
        }
        for i in (0..=all.len()).step_by(3) {
            for j in i..=all.len() {
                assert_eq!(
                    feed_parts(&[&all[..i], &all[i..j], &all[j..]]).unwrap(),
                    want,
                    "{i}, {j}"
                );
            }
        }
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(feed_parts(&bytes).unwrap(), want);
    }

    #[test]
    fn completes_at_exact_end_and_reports_nothing_early() {
        let mut d = Delimiter::new(RequestKind::Other);
        let mut got = Vec::new();
        d.feed(&R200[..R200.len() - 1], |s| got.push(s)).unwrap();
        assert!(got.is_empty());
        d.feed(&R200[R200.len() - 1..], |s| got.push(s)).unwrap();
        assert_eq!(got, [200]);
    }

    #[test]
    fn responses_to_head_have_no_body() {
        let mut d = Delimiter::new(RequestKind::Head);
        let mut got = Vec::new();
        let head = &R200[..R200.len() - 13];
        d.feed(&[head, head].concat(), |s| got.push(s)).unwrap();
        assert_eq!(got, [200, 200]);
        assert!(d.is_idle());
    }

    #[test]
    fn close_delimited_body_ends_at_eof() {
        let mut d = Delimiter::new(RequestKind::Other);
        let mut got = Vec::new();
        d.feed(b"HTTP/1.0 200 OK\r\n\r\nsome body", |s| got.push(s))
            .unwrap();
        d.feed(b" and more", |s| got.push(s)).unwrap();
        assert!(got.is_empty());
        assert_eq!(d.eof(), Ok(Some(200)));
        // Between responses, EOF is just the end; inside one it cuts it short.
        assert_eq!(Delimiter::new(RequestKind::Other).eof(), Ok(None));
        let mut d = Delimiter::new(RequestKind::Other);
        d.feed(&R200[..30], |_| {}).unwrap();
        assert!(d.eof().is_err());
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bad in [
            &b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabX",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            let mut d = Delimiter::new(RequestKind::Other);
            assert!(d.feed(bad, |_| {}).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut d = Delimiter::new(RequestKind::Other);
        assert!(d.feed(b"HTTP/1.1 200 OK\r\nX: ", |_| {}).is_ok());
        assert!(d.feed(&vec![b'a'; super::super::MAX_HEAD + 10], |_| {}).is_err());
    }
}
