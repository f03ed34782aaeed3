//! An incremental chunked-body decoder: fed any split of the bytes, it ends at the same place.

use super::{Error, MAX_LINE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// `n` bytes of chunk data left.
    Data(u64),
    /// The CRLF after chunk data: how many of its bytes are still expected.
    Crlf(u8),
    /// Trailer lines after the last chunk, until an empty one.
    Trailer,
    /// The body is complete.
    Done,
}

/// Decodes one chunked body.
#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
    /// A chunk-size or trailer line not complete yet.
    line: Vec<u8>,
}

impl Chunked {
    pub(crate) fn new() -> Self {
        Chunked {
            state: State::Size,
            line: Vec::new(),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes bytes of `data` until the body ends or `data` does; returns how many.
    /// `on_data` gets the body's bytes, `on_trailer` each trailer line (without its line end).
    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        on_data: &mut dyn FnMut(&[u8]),
        on_trailer: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, Error> {
        let mut at = 0;
        while at < data.len() && self.state != State::Done {
            let rest = &data[at..];
            match self.state {
                State::Size | State::Trailer => {
                    let Some(line) = self.take_line(rest, &mut at)? else {
                        break;
                    };
                    if self.state == State::Size {
                        let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                        let hex = hex.trim_ascii();
                        let size = std::str::from_utf8(hex)
                            .ok()
                            .filter(|h| !h.is_empty())
                            .and_then(|h| u64::from_str_radix(h, 16).ok())
                            .ok_or_else(|| {
                                Error::new(format!(
                                    "bad chunk size line {:?}",
                                    String::from_utf8_lossy(&line)
                                ))
                            })?;
                        self.state = if size == 0 {
                            State::Trailer
                        } else {
                            State::Data(size)
                        };
                    } else if line.is_empty() {
                        self.state = State::Done;
                    } else {
                        on_trailer(&line);
                    }
                }
                State::Data(n) => {
                    let take = n.min(rest.len() as u64) as usize;
                    on_data(&rest[..take]);
                    at += take;
                    self.state = if take as u64 == n {
                        State::Crlf(2)
                    } else {
                        State::Data(n - take as u64)
                    };
                }
                State::Crlf(left) => {
                    let want: &[u8] = if left == 2 { b"\r\n" } else { b"\n" };
                    let take = want.len().min(rest.len());
                    if rest[..take] != want[..take] {
                        return Err(Error::new("chunk data not followed by CRLF"));
                    }
                    at += take;
                    let left = left - take as u8;
                    self.state = if left == 0 { State::Size } else { State::Crlf(left) };
                }
                State::Done => {}
            }
        }
        Ok(at)
    }

    /// The next complete line (CRLF or bare LF ended, without it), advancing `at`; `None`
    /// after keeping a partial line.
    fn take_line(&mut self, rest: &[u8], at: &mut usize) -> Result<Option<Vec<u8>>, Error> {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            self.line.extend_from_slice(rest);
            *at += rest.len();
            if self.line.len() > MAX_LINE {
                return Err(Error::new("chunk-size or trailer line too long"));
            }
            return Ok(None);
        };
        let mut line = std::mem::take(&mut self.line);
        line.extend_from_slice(&rest[..nl]);
        *at += nl + 1;
        if line.len() > MAX_LINE {
            return Err(Error::new("chunk-size or trailer line too long"));
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5;x=y\r\nHello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";

    /// (body, trailer lines, bytes used, done).
    type Decoded = (Vec<u8>, Vec<Vec<u8>>, usize, bool);

    fn decode(parts: &[&[u8]]) -> Result<Decoded, Error> {
        let mut c = Chunked::new();
        let (mut body, mut trailers, mut used) = (Vec::new(), Vec::new(), 0);
        for p in parts {
            used += c.feed(p, &mut |d| body.extend_from_slice(d), &mut |t| {
                trailers.push(t.to_vec())
            })?;
        }
        Ok((body, trailers, used, c.is_done()))
    }

    #[test]
    fn every_split_decodes_the_same() {
        let want = (
            b"Hello0123456789".to_vec(),
            vec![b"X-Trailer: 1".to_vec()],
            BODY.len() - 4,
            true,
        );
        for i in 0..=BODY.len() {
            assert_eq!(
                decode(&[&BODY[..i], &BODY[i..]]),
                Ok(want.clone()),
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(decode(&bytes), Ok(want));
    }

    #[test]
    fn incomplete_is_not_done() {
        let (_, _, used, done) = decode(&[&BODY[..20]]).unwrap();
        assert_eq!((used, done), (20, false));
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"1\r\nabX",
            b"fffffffffffffffff\r\n",
            b"-1\r\n",
        ] {
            assert!(decode(&[bad]).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(decode(&[&vec![b'1'; MAX_LINE + 1]]).is_err());
    }
}
