//! RESP2, the Redis wire protocol, without I/O: a command encoder and an incremental reply
//! decoder.
//!
//! Hand-written rather than taken from the `redis-protocol` crate: the client needs one
//! encoder (arrays of bulk strings) and one decoder (the six RESP2 reply types), about 200
//! lines, and this keeps the reply type a plain enum the store can match on.

use std::fmt;

/// Longest bulk string accepted from the server (Redis's own `proto-max-bulk-len` default).
pub const MAX_BULK_LEN: usize = 512 * 1024 * 1024;

/// Most elements accepted in one array reply.
pub const MAX_ARRAY_LEN: usize = 64 * 1024 * 1024;

/// Deepest nesting of arrays accepted (bounds the decoder's recursion).
pub const MAX_DEPTH: usize = 32;

/// Longest simple string, error or integer line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// One RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// The null bulk string (`$-1`) or null array (`*-1`): a missing key, a `false` from Lua.
    Nil,
    /// `:n`
    Int(i64),
    /// `+OK` and friends.
    Simple(String),
    /// `$n` followed by `n` bytes.
    Bulk(Vec<u8>),
    /// `*n` followed by `n` replies.
    Array(Vec<Value>),
    /// `-ERR message`: the whole line after the `-`, code included.
    Error(String),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// A bulk or simple string as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// An integer reply, or a string reply holding a decimal integer (Redis hash fields).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            other => other.as_str().and_then(|s| s.parse().ok()),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("Nil"),
            Value::Int(n) => write!(f, "Int({n})"),
            Value::Simple(s) => write!(f, "Simple({s:?})"),
            Value::Bulk(b) if b.len() > 64 => write!(f, "Bulk(<{} bytes>)", b.len()),
            Value::Bulk(b) => write!(f, "Bulk({:?})", String::from_utf8_lossy(b)),
            Value::Array(a) => f.debug_tuple("Array").field(a).finish(),
            Value::Error(e) => write!(f, "Error({e:?})"),
        }
    }
}

/// Appends one command, an array of bulk strings, to `out`.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.push(b'$');
        push_decimal(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The server sent bytes that are not RESP2 (or exceed a limit above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid RESP reply: {}", self.0)
    }
}

impl std::error::Error for ProtoError {}

impl From<ProtoError> for std::io::Error {
    fn from(e: ProtoError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// Incremental reply decoder: [`push`](Decoder::push) bytes as they arrive, take whole replies
/// with [`decode`](Decoder::decode).
///
/// A reply that is not complete yet is parsed again from its start after the next push; a
/// bulk string is never scanned (its length header says how many bytes to wait for), so
/// only long arrays of small elements split across many reads pay for the re-parse.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as replies.
    pos: usize,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a reply.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream is out of step; drop the connection.
    pub fn decode(&mut self) -> Result<Option<Value>, ProtoError> {
        match parse(&self.buf, self.pos, 0)? {
            Some((v, end)) => {
                self.pos = end;
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }
}

/// Parses one reply starting at `at`; returns it and the index just past it.
fn parse(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, ProtoError> {
    let Some((line, next)) = line(buf, at)? else {
        return Ok(None);
    };
    let (&kind, rest) = line
        .split_first()
        .ok_or_else(|| ProtoError("empty line".into()))?;
    match kind {
        b'+' => Ok(Some((Value::Simple(text(rest)), next))),
        b'-' => Ok(Some((Value::Error(text(rest)), next))),
        b':' => Ok(Some((Value::Int(int(rest)?), next))),
        b'$' => {
            let n = int(rest)?;
            if n == -1 {
                return Ok(Some((Value::Nil, next)));
            }
            let n = length(n, MAX_BULK_LEN, "bulk string")?;
            let end = next + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtoError("bulk string not followed by CRLF".into()));
            }
            Ok(Some((Value::Bulk(buf[next..end].to_vec()), end + 2)))
        }
        b'*' => {
            let n = int(rest)?;
            if n == -1 {
                return Ok(Some((Value::Nil, next)));
            }
            let n = length(n, MAX_ARRAY_LEN, "array")?;
            if depth >= MAX_DEPTH {
                return Err(ProtoError(format!("arrays nested deeper than {MAX_DEPTH}")));
            }
            // The length comes from the peer: do not trust it for the allocation.
            let mut items = Vec::with_capacity(n.min(1024));
            let mut pos = next;
            for _ in 0..n {
                let Some((v, end)) = parse(buf, pos, depth + 1)? else {
                    return Ok(None);
                };
                items.push(v);
                pos = end;
            }
            Ok(Some((Value::Array(items), pos)))
        }
        other => Err(ProtoError(format!("unknown type byte 0x{other:02x}"))),
    }
}

/// The line starting at `at` without its CRLF, and the index after the CRLF.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let rest = &buf[at..];
    // Look no further than a line may be long: a peer cannot make every push rescan megabytes.
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i > MAX_LINE => Err(ProtoError(format!("line longer than {MAX_LINE} bytes"))),
        Some(i) => Ok(Some((&rest[..i], at + i + 2))),
        None if window.len() > MAX_LINE + 1 => Err(ProtoError(format!("line longer than {MAX_LINE} bytes"))),
        None => Ok(None),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn int(b: &[u8]) -> Result<i64, ProtoError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtoError(format!("not an integer: {:?}", String::from_utf8_lossy(b))))
}

fn length(n: i64, max: usize, what: &str) -> Result<usize, ProtoError> {
    match usize::try_from(n) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ProtoError(format!("{what} length {n} out of range (0..={max})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Value> {
        let mut d = Decoder::new();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(v) = d.decode().expect("valid") {
            out.push(v);
        }
        assert_eq!(d.buffered(), 0, "every byte consumed");
        out
    }

    const SAMPLE: &[u8] = b"+OK\r\n-ERR unknown command 'FOO'\r\n:-42\r\n$5\r\nhe\r\nl\r\n$0\r\n\r\n$-1\r\n\
*-1\r\n*0\r\n*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n";

    fn sample_values() -> Vec<Value> {
        vec![
            Value::Simple("OK".into()),
            Value::Error("ERR unknown command 'FOO'".into()),
            Value::Int(-42),
            Value::Bulk(b"he\r\nl".to_vec()),
            Value::Bulk(Vec::new()),
            Value::Nil,
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![Value::Bulk(b"a".to_vec()), Value::Nil]),
                Value::Simple("x".into()),
            ]),
        ]
    }

    #[test]
    fn every_type_decodes() {
        assert_eq!(decode_all(SAMPLE), sample_values());
    }

    #[test]
    fn any_split_gives_the_same_replies() {
        // Every cut point, and byte-at-a-time: a reply is only returned once complete.
        for cut in 0..=SAMPLE.len() {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            for part in [&SAMPLE[..cut], &SAMPLE[cut..]] {
                d.push(part);
                while let Some(v) = d.decode().expect("valid") {
                    out.push(v);
                }
            }
            assert_eq!(out, sample_values(), "cut at {cut}");
        }
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for b in SAMPLE {
            d.push(std::slice::from_ref(b));
            while let Some(v) = d.decode().expect("valid") {
                out.push(v);
            }
        }
        assert_eq!(out, sample_values());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn incomplete_replies_wait() {
        for partial in [
            &b"+OK"[..],
            b"+OK\r",
            b"$5\r\nhel",
            b"$5\r\nhello\r",
            b"*2\r\n:1\r\n",
            b"*",
        ] {
            let mut d = Decoder::new();
            d.push(partial);
            assert_eq!(d.decode(), Ok(None), "{:?}", String::from_utf8_lossy(partial));
            assert_eq!(d.buffered(), partial.len());
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$3\r\nabcX\r\n",
            b"*-5\r\n",
            b"$99999999999\r\n",
            b"\r\n",
        ] {
            let mut d = Decoder::new();
            d.push(bad);
            assert!(d.decode().is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        deep.extend_from_slice(b":1\r\n");
        let mut d = Decoder::new();
        d.push(&deep);
        assert!(d.decode().is_err(), "nesting is bounded");
        let mut d = Decoder::new();
        d.push(&vec![b'+'; MAX_LINE + 10]);
        assert!(d.decode().is_err(), "a line without CRLF is bounded");
    }

    #[test]
    fn commands_encode_as_bulk_arrays() {
        let mut out = Vec::new();
        encode_command(&mut out, &["SET", "k", ""]);
        encode_command(&mut out, &[b"GET".to_vec(), vec![0u8, 255]]);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*2\r\n$3\r\nGET\r\n$2\r\n\x00\xff\r\n".to_vec()
        );
        let mut big = Vec::new();
        encode_command(&mut big, &[vec![b'x'; 1234567]]);
        assert!(big.starts_with(b"*1\r\n$1234567\r\nxxx"));
    }

    #[test]
    fn accessors() {
        assert_eq!(Value::Bulk(b"17".to_vec()).as_int(), Some(17));
        assert_eq!(Value::Int(3).as_int(), Some(3));
        assert_eq!(Value::Simple("OK".into()).as_str(), Some("OK"));
        assert_eq!(Value::Nil.as_bytes(), None);
        assert_eq!(Value::Bulk(vec![0xff]).as_str(), None);
    }
}
