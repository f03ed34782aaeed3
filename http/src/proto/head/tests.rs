//! Tests of the head parse: verdicts, the whole-head path against the resumable scan,
//! limits at their edges, and resumption across reads.

use super::*;

/// What the parser does with a head (`Parser::next_request`): a fresh scan first tries the
/// whole head in one `httparse` pass, and goes on with the resumable scan when that turns
/// it down or the scan is under way. `buf` holds everything the last call saw plus what
/// arrived since.
fn advance(scan: &mut HeadScan, buf: &[u8], limits: &Limits) -> Result<Option<Head>, Reject> {
    if scan.line.is_none() && scan.done_line.is_none() {
        if let Some(done) = parse_whole(buf, limits) {
            return done.map(Some);
        }
    }
    scan.resume(buf, limits)
}

/// Parses and validates a request head at the start of `buf` (one [`advance`] call).
fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Reject> {
    advance(&mut HeadScan::default(), buf, limits)
}

fn p(s: &str) -> Result<Option<Head>, Reject> {
    parse(s.as_bytes(), &Limits::default())
}

fn status(s: &str) -> StatusCode {
    match p(s) {
        Err(r) => r.status,
        Ok(_) => StatusCode::OK,
    }
}

#[test]
fn every_method_parses_to_its_entry_of_the_table() {
    for i in 0..METHOD_COUNT {
        let method = method_at(i);
        let target = if *method == Method::CONNECT {
            "a.example:443"
        } else {
            "/"
        };
        let head = p(&format!("{method} {target} HTTP/1.1\r\nHost: a\r\n\r\n"))
            .expect("accepted")
            .expect("complete");
        assert!(std::ptr::eq(head.method(), method), "{method}");
        assert_eq!(usize::from(head.method_index()), i, "{method}");
        assert_eq!(method_index(method), Some(i as u8), "{method}");
    }
    assert_eq!(
        method_index(&Method::from_bytes(b"PURGE").expect("a token")),
        None
    );
    // What ARCHITECTURE.md says a head costs to move.
    assert!(
        std::mem::size_of::<Head>() <= 56,
        "{}",
        std::mem::size_of::<Head>()
    );
}

#[test]
fn field_names_match_in_any_case_and_no_other_token_matches() {
    let names: [&[u8]; 5] = [
        b"host",
        b"expect",
        b"connection",
        b"content-length",
        b"transfer-encoding",
    ];
    let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
    for lower in names {
        let text = std::str::from_utf8(lower).unwrap();
        assert!(is_field(text.as_bytes(), lower));
        assert!(is_field(text.to_ascii_uppercase().as_bytes(), lower));
        // Every case pattern of the first 8 letters.
        for mask in 0..256u32 {
            let mixed: String = text
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i < 8 && mask & (1 << i) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            assert!(is_field(mixed.as_bytes(), lower), "{mixed}");
        }
        // Any other token byte at any position: no match.
        for at in 0..lower.len() {
            for &t in &tchars {
                if t.eq_ignore_ascii_case(&lower[at]) {
                    continue;
                }
                let mut other = lower.to_vec();
                other[at] = t;
                let other = String::from_utf8(other).unwrap();
                assert!(!is_field(other.as_bytes(), lower), "{other} is not {text}");
            }
        }
        // Longer or shorter: no match.
        assert!(!is_field(&text.as_bytes()[1..], lower));
        assert!(!is_field(format!("{text}s").as_bytes(), lower));
    }
}

#[test]
fn content_length_rules() {
    assert_eq!(parse_content_length(b"42"), Some(42));
    assert_eq!(parse_content_length(b"7, 7"), Some(7));
    assert_eq!(parse_content_length(b"7, 8"), None);
    assert_eq!(parse_content_length(b"+7"), None);
    assert_eq!(parse_content_length(b"0x10"), None);
    assert_eq!(parse_content_length(b"99999999999999999999999"), None);
    assert_eq!(parse_content_length(b""), None);
}

#[test]
fn framing_and_smuggling() {
    let ok = p("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(ok.ok().flatten().map(|h| h.framing), Some(Framing::Length(5)));
    let te = p("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(te.ok().flatten().map(|h| h.framing), Some(Framing::Chunked));
    for bad in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    ] {
        assert_eq!(status(bad), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    assert_eq!(
        status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
        StatusCode::HTTP_VERSION_NOT_SUPPORTED
    );
    assert_eq!(
        status("BREW / HTTP/1.1\r\nHost: a\r\n\r\n"),
        StatusCode::NOT_IMPLEMENTED
    );
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\nExpect: tea\r\nContent-Length: 1\r\n\r\n"),
        StatusCode::EXPECTATION_FAILED
    );
}

/// The head's own check of an origin-form target (made without calling `validate_target`
/// for `/...` targets of methods other than CONNECT) gives `validate_target`'s verdict and
/// path, for every method the parser knows, on the whole-head path and the resumable scan.
#[test]
fn the_target_checks_agree_with_validate_target_for_every_method() {
    let limits = Limits::default();
    for (i, m) in METHODS.iter().enumerate() {
        assert_eq!(
            method_token_index(m.as_str().as_bytes()).ok(),
            Some(i as u8),
            "{m}"
        );
        assert_eq!(method_index(m), Some(i as u8), "{m}");
        for target in [
            "/",
            "/a",
            "/a?b",
            "/a#f",
            "/#",
            "*",
            "a:443",
            "/a:443",
            "http://a/b",
            "http://a",
            "//a",
            "a",
        ] {
            let want = validate_target(m, target.as_bytes(), target.contains('#'));
            let head = format!("{m} {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let whole = parse_whole(head.as_bytes(), &limits).expect("a plain head");
            let scanned = HeadScan::default().resume(head.as_bytes(), &limits);
            for (how, got) in [("whole", whole.map(Some)), ("scan", scanned)] {
                match (&want, got) {
                    (Ok(at), Ok(Some(h))) => {
                        let start = m.as_str().len() + 1;
                        assert_eq!(h.path_and_query.start(), start + at, "{how}: {head:?}");
                    }
                    (Err(w), Err(g)) => {
                        assert_eq!((w.status, w.reason), (g.status, g.reason), "{how}: {head:?}")
                    }
                    (w, g) => panic!("{how}: {head:?}: validate_target {w:?}, the head {g:?}"),
                }
            }
        }
    }
}

#[test]
fn versions_and_connection() {
    let h10 = p("GET / HTTP/1.0\r\n\r\n")
        .ok()
        .flatten()
        .map(|h| (h.version, h.keep_alive));
    assert_eq!(h10, Some((Version::HTTP_10, false)));
    let h10ka = p("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .ok()
        .flatten()
        .map(|h| h.keep_alive);
    assert_eq!(h10ka, Some(true));
    let h11c = p("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .ok()
        .flatten()
        .map(|h| h.keep_alive);
    assert_eq!(h11c, Some(false));
    // Leading empty lines are skipped (RFC 9112 2.2).
    assert!(matches!(
        p("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Ok(Some(_))
    ));
    // Asterisk-form for OPTIONS, absolute-form, authority-form for CONNECT.
    assert!(matches!(p("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Some(_))));
    assert!(matches!(
        p("GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n"),
        Ok(Some(_))
    ));
    assert!(matches!(
        p("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
        Ok(Some(_))
    ));
}

#[test]
fn size_limits() {
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(MAX));
    assert_eq!(status(&long_uri), StatusCode::URI_TOO_LONG);
    let partial_long = format!("GET /{}", "a".repeat(MAX));
    assert_eq!(status(&partial_long), StatusCode::URI_TOO_LONG);
    let big_header = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "b".repeat(20_000));
    assert_eq!(status(&big_header), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert_eq!(status(&many), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let huge = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999\r\n\r\n";
    assert_eq!(status(huge), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        matches!(p("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None)),
        "incomplete head"
    );
}

const MAX: usize = crate::limits::MAX_REQUEST_LINE + 10;

mod limit_edge {
    use super::*;

    #[test]
    fn request_line_exactly_at_limit() {
        let limits = Limits::default();
        let target = "a".repeat(limits.max_request_line - "GET /".len() - " HTTP/1.1".len());
        let req = format!("GET /{target} HTTP/1.1\r\nHost: t\r\n\r\n");
        for cut in [4096, 8192, 8193, req.len()] {
            let r = parse(&req.as_bytes()[..cut], &limits);
            assert!(r.is_ok(), "cut {cut}: {r:?}");
        }
        let over = format!("GET /a{target} HTTP/1.1\r\nHost: t\r\n\r\n");
        for cut in [8193, 8194, over.len()] {
            let r = parse(&over.as_bytes()[..cut], &limits).map(|_| ());
            assert_eq!(
                r.map_err(|e| e.status),
                Err(StatusCode::URI_TOO_LONG),
                "cut {cut}"
            );
        }
    }
}

mod resume {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `stream` one more byte per call, as a client sending a byte per segment would;
    /// returns each call's verdict (status, or 0 for a head, 1 for incomplete) once one is
    /// reached, and the bytes examined in all.
    fn byte_per_read(stream: &[u8], limits: &Limits) -> (Vec<u16>, usize) {
        let mut scan = HeadScan::default();
        let mut verdicts = Vec::new();
        for n in 1..=stream.len() {
            let v = match advance(&mut scan, &stream[..n], limits) {
                Ok(Some(_)) => 0,
                Ok(None) => 1,
                Err(r) => r.status.as_u16(),
            };
            verdicts.push(v);
            if v != 1 {
                break;
            }
        }
        (verdicts, scan.work())
    }

    fn verdict(stream: &[u8], limits: &Limits) -> u16 {
        match parse(stream, limits) {
            Ok(Some(_)) => 0,
            Ok(None) => 1,
            Err(r) => r.status.as_u16(),
        }
    }

    /// A head of about `size` bytes: a long request line, then many fields with long values.
    fn big_head(size: usize) -> Vec<u8> {
        let mut h = format!("GET /{} HTTP/1.1\r\nHost: a\r\n", "p".repeat(4000)).into_bytes();
        let mut i = 0;
        while h.len() + 300 < size {
            h.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(250)).as_bytes());
            i += 1;
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    #[test]
    fn a_head_sent_one_byte_per_read_costs_linear_work() {
        let limits = Limits::default();
        for size in [2_000, 8_000, 16_000] {
            let head = big_head(size);
            let n = head.len();
            assert!(n <= limits.max_header_bytes, "{n}");
            let (verdicts, work) = byte_per_read(&head, &limits);
            assert_eq!(verdicts.last(), Some(&0), "size {size}: parsed");
            assert_eq!(verdicts.len(), n, "complete exactly at the last byte");
            // Each byte is looked at a bounded number of times (the line scan once, the LF
            // search once, httparse once per line and once more for the whole block at the
            // end); a re-parse from the start per read would be about n * n / 2.
            assert!(
                work <= 4 * n,
                "size {size}: {work} bytes examined for a {n}-byte head"
            );
        }
    }

    #[test]
    fn one_long_unfinished_field_line_costs_linear_work() {
        // No LF for 16 KB: the line is judged once, at the size limit.
        let limits = Limits::default();
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        head.resize(limits.max_header_bytes + 1, b'v');
        let (verdicts, work) = byte_per_read(&head, &limits);
        assert_eq!(verdicts.last(), Some(&431));
        assert!(work <= 4 * head.len(), "{work}");
    }

    /// The resumable scan alone: the first byte, then the rest (the whole-head path is only
    /// tried on a fresh scan).
    fn scanned(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Reject> {
        let mut scan = HeadScan::default();
        match advance(&mut scan, &buf[..1], limits) {
            Ok(None) => advance(&mut scan, buf, limits),
            done => done,
        }
    }

    #[test]
    fn the_whole_head_path_agrees_with_the_resumable_scan() {
        let tight = Limits {
            max_request_line: 24,
            max_headers: 3,
            ..Limits::default()
        };
        let many_fields: String = (0..20).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many_fields}\r\n");
        // More fields than `httparse`'s first 16 slots, the last one refused.
        let many_refused = format!("GET / HTTP/1.1\r\n{many_fields}Host: a b\r\n\r\n");
        let heads: Vec<Vec<u8>> = [
            "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            "GET /a?b=1?c#d HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a?b=1&c=%20 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a.example:80/x?y HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a.example?y HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\nConnection: close\n\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, close\r\n\r\n",
            "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
            "POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "PUT /b HTTP/1.1\r\nHost: a\r\nExpect: tea\r\nContent-Length: 1\r\n\r\nx",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            // `Host` lines with plain values and ones just outside them, at every length
            // around the eight-byte word their value is read in.
            "GET / HTTP/1.1\r\nHOST:a\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: \t A-1.Example.COM:65535\r\n\r\n",
            "GET / HTTP/1.1\r\nHost:\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a \r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\t\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a_b.example\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: abcdefg\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: abcdefgh\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: abcdefghi\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: abcdefgh\nX: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: abcdefgh\rX: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: ab",
            "GET / HTTP/1.1\r\nHost: ab\r",
            "GET / HTTP/1.1\r\nHosts: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",
            "GET / HTTP/1.1\r\nX: 1\r\nHost: 10.0.0.1:80\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
            "get / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\rHost: a\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a/b/c/d/e/f/g/h/i/j/k HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a/b/c/d/e HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            many.as_str(),
            many_refused.as_str(),
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        // No field allowed: a `Host` line read in one scan is refused as any other field is.
        let no_fields = Limits {
            max_headers: 0,
            ..Limits::default()
        };
        for limits in [Limits::default(), tight, no_fields] {
            for head in &heads {
                let show = String::from_utf8_lossy(head);
                let scan = scanned(head, &limits);
                let whole = advance(&mut HeadScan::default(), head, &limits);
                assert_eq!(format!("{whole:?}"), format!("{scan:?}"), "{show:?}");
                // What the whole-head path itself answered, when it did.
                if let Some(fast) = parse_whole(head, &limits) {
                    assert_eq!(format!("{:?}", fast.map(Some)), format!("{scan:?}"), "{show:?}");
                }
            }
        }
        // The path is taken for the usual request (else this test compares the scan with itself).
        let usual = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
        assert!(matches!(parse_whole(usual, &Limits::default()), Some(Ok(_))));
    }

    /// A `Host` value of plain bytes (letters, digits, `-`, `.`, `:`, which the whole-head
    /// path reads eight at a time and checks in the same scan) with one byte of every
    /// value at every place, in values shorter and longer than a word and followed by
    /// the end of the head or another field: the whole-head path answers as the resumable
    /// scan does, or leaves the head to it.
    #[test]
    fn any_byte_in_a_host_value_gets_the_scans_verdict() {
        let limits = Limits::default();
        // Values read whole in words (7 to 9, 15 to 17, 23, with the CRLF and what follows in
        // the last word) and ones whose last bytes the byte-at-a-time tail reads (the head
        // ending there, under 8 bytes left: 1 to 3, and 9 to 11 after a word).
        for len in [1usize, 2, 3, 7, 8, 9, 10, 11, 15, 16, 17, 23] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut value: Vec<u8> = b"a1-Z.9:b".iter().copied().cycle().take(len).collect();
                    value[at] = b;
                    for rest in [&b""[..], &b"X-Y: 1\r\n"[..]] {
                        let head =
                            [&b"GET / HTTP/1.1\r\nHost: "[..], &value, b"\r\n", rest, b"\r\n"].concat();
                        if let Some(fast) = parse_whole(&head, &limits) {
                            let show = String::from_utf8_lossy(&head);
                            assert_eq!(
                                format!("{:?}", fast.map(Some)),
                                format!("{:?}", scanned(&head, &limits)),
                                "{show:?}"
                            );
                        }
                    }
                }
            }
        }
        // The usual value is read on the whole-head path.
        let usual = b"GET / HTTP/1.1\r\nHost: a-1.example.com:8080\r\n\r\n";
        assert!(matches!(parse_whole(usual, &limits), Some(Ok(h)) if h.keep_alive));
    }

    /// A field line from pieces that are each plain most of the time and now and then one
    /// of the things the whole-head path's own field scan must leave to `httparse` (or
    /// judge as it would): a bad name byte, a blank before the colon, a control byte, DEL
    /// or obs-text in the value, blanks around it, a bare LF or a lone CR.
    fn field_line() -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            Just(b"Host".to_vec()),
            Just(b"hOST".to_vec()),
            Just(b"Content-Length".to_vec()),
            Just(b"transfer-encoding".to_vec()),
            Just(b"Connection".to_vec()),
            Just(b"Expect".to_vec()),
            Just(b"X-Forwarded-For".to_vec()),
            Just(Vec::new()),
            // Up to 20 bytes: names longer than the 8-byte words the scan reads them in,
            // with the bytes at the edges of its letter, digit and `-` ranges.
            proptest::collection::vec(
                prop_oneof![
                    4 => Just(b'a'),
                    2 => Just(b'Z'),
                    2 => Just(b'-'),
                    2 => Just(b'0'),
                    1 => Just(b'9'),
                    1 => Just(b'_'),
                    1 => Just(b'.'),
                    1 => Just(b'!'),
                    1 => Just(b'@'),
                    1 => Just(b'['),
                    1 => Just(b'`'),
                    1 => Just(b'{'),
                    1 => Just(b'/'),
                    1 => Just(b','),
                    1 => Just(b' '),
                    3 => any::<u8>()
                ],
                1..20
            ),
        ];
        let colon = prop_oneof![8 => Just(&b":"[..]), 1 => Just(&b" :"[..]), 1 => Just(&b""[..])];
        let value_byte = prop_oneof![
            6 => Just(b'a'),
            2 => Just(b'1'),
            2 => Just(b' '),
            1 => Just(b'\t'),
            1 => Just(b','),
            1 => Just(b':'),
            // The bytes at the edges of a plain host value's (letters, digits, `-`, `.`, `:`)
            // and the host bytes outside it.
            1 => Just(b'.'),
            1 => Just(b'-'),
            1 => Just(b'Z'),
            1 => Just(b'/'),
            1 => Just(b';'),
            1 => Just(b'['),
            1 => Just(b'_'),
            1 => Just(b'@'),
            1 => Just(0x7f),
            1 => Just(0x80),
            1 => Just(0xff),
            1 => Just(0x01),
            1 => Just(b'\r'),
            1 => Just(b'\n'),
        ];
        let value = prop_oneof![
            Just(b"127.0.0.1:8080".to_vec()),
            Just(b"A-1.Example.com:443".to_vec()),
            Just(b"[::1]:8080".to_vec()),
            Just(b"a_b.example".to_vec()),
            Just(b"5".to_vec()),
            Just(b"5, 5".to_vec()),
            Just(b"chunked".to_vec()),
            Just(b"keep-alive, close".to_vec()),
            Just(b"100-continue".to_vec()),
            proptest::collection::vec(value_byte, 0..24),
        ];
        let blanks = prop_oneof![4 => Just(&b""[..]), 2 => Just(&b" "[..]), 1 => Just(&b" \t "[..])];
        let end = prop_oneof![8 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b"\r"[..])];
        (name, colon, blanks.clone(), value, blanks, end)
            .prop_map(|(n, c, b1, v, b2, e)| [&n[..], c, b1, &v[..], b2, e].concat())
    }

    /// A request line with a target of plain bytes and now and then a `?`, a `#`, a blank
    /// or a byte a target may not hold, eight-byte words of it and fewer.
    fn request_line() -> impl Strategy<Value = Vec<u8>> {
        let target_byte = prop_oneof![
            12 => Just(b'a'),
            3 => Just(b'/'),
            1 => Just(b'?'),
            1 => Just(b'#'),
            1 => Just(b'%'),
            1 => Just(b' '),
            1 => Just(b'\t'),
            1 => Just(0x7f),
            1 => Just(0x80),
            1 => Just(0x00),
        ];
        let target = prop_oneof![
            2 => Just(b"/plaintext".to_vec()),
            1 => Just(b"*".to_vec()),
            1 => Just(b"http://a.example:80/x?y".to_vec()),
            6 => proptest::collection::vec(target_byte, 0..30),
        ];
        let method = prop_oneof![Just(&b"GET"[..]), Just(&b"POST"[..]), Just(&b"get"[..])];
        let version = prop_oneof![
            4 => Just(&b" HTTP/1.1\r\n"[..]),
            1 => Just(&b" HTTP/1.0\r\n"[..]),
            1 => Just(&b" HTTP/1.1\n"[..]),
        ];
        (method, target, version).prop_map(|(m, t, v)| [m, b" ", &t[..], v].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Field blocks the whole-head path's scan takes, and ones it must not: wherever it
        /// answers, its answer is the resumable scan's (`httparse`'s) for the same bytes.
        #[test]
        fn the_whole_head_path_agrees_with_the_resumable_scan_on_any_field_block(
            line in request_line(),
            fields in proptest::collection::vec(field_line(), 0..12),
            last in prop_oneof![8 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b""[..]), 1 => Just(&b"\r\nbody"[..])],
            cut in 0usize..4,
        ) {
            let mut head = [&line[..], &fields.concat()[..], last].concat();
            // Now and then a head cut short (incomplete).
            head.truncate(head.len().saturating_sub(cut * (cut % 2)));
            let tight = Limits {
                max_headers: 3,
                max_header_bytes: 96,
                ..Limits::default()
            };
            for limits in [Limits::default(), tight] {
                if let Some(fast) = parse_whole(&head, &limits) {
                    let show = String::from_utf8_lossy(&head);
                    let scan = scanned(&head, &limits);
                    prop_assert_eq!(format!("{:?}", fast.map(Some)), format!("{scan:?}"), "{:?}", show);
                }
            }
        }
    }

    /// Every byte value at every place of a field name (longer than the 8-byte words the
    /// whole-head path reads names in, so at the edges of those words too): the whole-head
    /// path gives the resumable scan's verdict, or leaves the head to it.
    #[test]
    fn any_byte_in_a_field_name_gets_the_scans_verdict() {
        let limits = Limits::default();
        for at in 0..19 {
            for b in 0..=255u8 {
                let mut name = b"X-Forwarded-Proto-A".to_vec();
                name[at] = b;
                let head = [&b"GET / HTTP/1.1\r\nHost: a\r\n"[..], &name, b": v\r\n\r\n"].concat();
                if let Some(fast) = parse_whole(&head, &limits) {
                    let scan = scanned(&head, &limits);
                    assert_eq!(
                        format!("{:?}", fast.map(Some)),
                        format!("{scan:?}"),
                        "{:?}",
                        String::from_utf8_lossy(&head)
                    );
                }
            }
        }
    }

    #[test]
    fn the_whole_head_path_takes_a_browser_head() {
        // Else the test above would compare the scan with itself.
        let head = b"GET /tickets?page=2 HTTP/1.1\r\nHost: shop.example:8443\r\n\
            User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
            Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n\
            Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n\
            Connection: keep-alive\r\nCookie: session=abc123; theme=dark\r\n\
            Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n\
            If-None-Match: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n\r\n";
        let head = parse_whole(head, &Limits::default());
        assert!(
            matches!(&head, Some(Ok(h)) if h.keep_alive && h.len() > 400),
            "{head:?}"
        );
        // A field with a tab inside its value, trailing blanks and an empty value.
        let odd = b"GET / HTTP/1.1\r\nHost: a \t\r\nX-A: 1\t2\r\nX-B:\r\n\r\n";
        assert!(matches!(parse_whole(odd, &Limits::default()), Some(Ok(_))));
        let bad_host = b"GET / HTTP/1.1\r\nHost: a b\r\nX: 1\r\n\r\n";
        let verdict = parse_whole(bad_host, &Limits::default());
        assert!(
            matches!(verdict, Some(Err(r)) if r.status == StatusCode::BAD_REQUEST),
            "{verdict:?}"
        );
    }

    #[test]
    fn verdicts_match_a_whole_parse_at_every_prefix() {
        let limits = Limits {
            max_header_bytes: 200,
            max_request_line: 60,
            max_headers: 3,
            ..Limits::default()
        };
        let long_value = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(200));
        let bad_at_cap = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\x01{}",
            "v".repeat(160),
            "v".repeat(60)
        );
        let leading = format!("{}GET / HTTP/1.1\r\nHost: a\r\n\r\n", "\r\n".repeat(120));
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(80));
        let streams: Vec<&[u8]> = vec![
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\n\nGET http://a?/x HTTP/1.1\nHost: a\nX: 1\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rX\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1",
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\rX",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            long_value.as_bytes(),
            bad_at_cap.as_bytes(),
            leading.as_bytes(),
            long_line.as_bytes(),
        ];
        for stream in streams {
            // Whole parses of each prefix against one resumed scan over the same prefixes.
            let mut scan = HeadScan::default();
            for n in 0..=stream.len() {
                let whole = verdict(&stream[..n], &limits);
                let resumed = match advance(&mut scan, &stream[..n], &limits) {
                    Ok(Some(_)) => 0,
                    Ok(None) => 1,
                    Err(r) => r.status.as_u16(),
                };
                let show = String::from_utf8_lossy(&stream[..n]);
                assert_eq!(resumed, whole, "prefix {n} of {show:?}");
                if whole != 1 {
                    break;
                }
            }
        }
    }
}
