//! The bytes of every request: a fixed request, or one numbered per `{n}` in the body.

use super::cli::Args;

/// The bytes of every request of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RequestTemplate {
    /// The same bytes every time (no body, or a body without `{n}`).
    Fixed(Vec<u8>),
    /// A body with `{n}` in it: the head up to `Content-Length: `, then the body's pieces
    /// around each `{n}`.
    Numbered { head: Vec<u8>, parts: Vec<Vec<u8>> },
}

/// `v` in decimal, written at the end of `buf` (no allocation per request).
pub(crate) fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// The placeholder for the sequence number in `--body`.
pub(crate) const SEQ: &str = "{n}";

impl RequestTemplate {
    pub(crate) fn new(a: &Args) -> Self {
        let mut head = format!("{} {} HTTP/1.1\r\n", a.method, a.path);
        if !a.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {}\r\n", a.host));
        }
        for (name, value) in &a.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(ct) = &a.content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        let body = a.body.as_deref().unwrap_or("");
        let framed = a.body.is_some() || !matches!(a.method.as_str(), "GET" | "HEAD");
        if !framed {
            head.push_str("\r\n");
            return Self::Fixed(head.into_bytes());
        }
        head.push_str("Content-Length: ");
        if !body.contains(SEQ) {
            head.push_str(&format!("{}\r\n\r\n{body}", body.len()));
            return Self::Fixed(head.into_bytes());
        }
        let parts = body.split(SEQ).map(|p| p.as_bytes().to_vec()).collect();
        Self::Numbered {
            head: head.into_bytes(),
            parts,
        }
    }

    /// Appends request number `n` to `out`.
    pub(crate) fn render(&self, n: u64, out: &mut Vec<u8>) {
        match self {
            Self::Fixed(bytes) => out.extend_from_slice(bytes),
            Self::Numbered { head, parts } => {
                let mut buf = [0u8; 20];
                let digits = decimal(n, &mut buf);
                let len = parts.iter().map(Vec::len).sum::<usize>() + (parts.len() - 1) * digits.len();
                out.extend_from_slice(head);
                out.extend_from_slice(decimal(len as u64, &mut [0u8; 20]));
                out.extend_from_slice(b"\r\n\r\n");
                for (j, p) in parts.iter().enumerate() {
                    if j > 0 {
                        out.extend_from_slice(digits);
                    }
                    out.extend_from_slice(p);
                }
            }
        }
    }

    /// About how long one request is.
    pub(crate) fn len_hint(&self) -> usize {
        match self {
            Self::Fixed(b) => b.len(),
            Self::Numbered { head, parts } => {
                head.len() + 32 + parts.iter().map(|p| p.len() + 20).sum::<usize>()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_args;

    fn template(argv: &str, extra: &[&str]) -> RequestTemplate {
        let mut v: Vec<String> = argv.split_whitespace().map(String::from).collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        RequestTemplate::new(&parse_args(v).unwrap())
    }
    fn rendered(t: &RequestTemplate, n: u64) -> String {
        let mut out = Vec::new();
        t.render(n, &mut out);
        String::from_utf8(out).unwrap()
    }
    #[test]
    fn plain_get_is_the_old_request() {
        let t = template("--url http://127.0.0.1:8080/plaintext", &[]);
        assert_eq!(
            t,
            RequestTemplate::Fixed(b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_vec())
        );
        assert_eq!(rendered(&t, 7), rendered(&t, 8));
    }
    #[test]
    fn numbered_bodies() {
        let t = template(
            "--url http://h:1/items/hot/buy --method POST",
            &["--body", r#"{"user":"u{n}","again":"{n}"}"#],
        );
        let want = |n: &str| {
            let body = format!(r#"{{"user":"u{n}","again":"{n}"}}"#);
            format!(
                "POST /items/hot/buy HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        for n in [0, 9, 10, 12345, u64::MAX] {
            assert_eq!(rendered(&t, n), want(&n.to_string()));
        }
        // Requests back to back parse as separate requests with the right lengths.
        let mut two = Vec::new();
        t.render(5, &mut two);
        t.render(123, &mut two);
        assert_eq!(String::from_utf8(two).unwrap(), want("5") + &want("123"));
        // A body without {n} is rendered once; a POST without a body says Content-Length: 0.
        let t = template(
            "--url http://h:1/p --method PUT --content-type text/plain",
            &["--body", "stock"],
        );
        assert_eq!(
            t,
            RequestTemplate::Fixed(
                b"PUT /p HTTP/1.1\r\nHost: h:1\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nstock"
                    .to_vec()
            )
        );
        let t = template("--url http://h:1/p --method POST", &[]);
        assert_eq!(
            rendered(&t, 1),
            "POST /p HTTP/1.1\r\nHost: h:1\r\nContent-Length: 0\r\n\r\n"
        );
    }
    #[test]
    fn sequence_numbers_are_unique_over_connections() {
        // n = base + conn + k * conns: every (conn, k) its own number, no gaps.
        let (conns, base) = (7u64, 1000u64);
        let mut all: Vec<u64> = (0..conns)
            .flat_map(|c| (0..50).map(move |k| base + c + k * conns))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (base..base + conns * 50).collect::<Vec<_>>());
    }

    #[test]
    fn extra_headers_follow_the_request_line() {
        let t = template(
            "--url http://h:1/p",
            &["--header", "X-Api-Key: k1", "--header", "Accept:  */*"],
        );
        assert_eq!(
            rendered(&t, 0),
            "GET /p HTTP/1.1\r\nHost: h:1\r\nX-Api-Key: k1\r\nAccept: */*\r\n\r\n"
        );
        let t = template("--url http://h:1/p", &["--header", "host: other"]);
        assert_eq!(rendered(&t, 0), "GET /p HTTP/1.1\r\nhost: other\r\n\r\n");
    }
}
