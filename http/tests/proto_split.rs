//! The push parser must not care how the bytes of a request stream are cut into reads.
//!
//! Every test feeds the same stream to `Parser` whole and cut up (at every byte boundary, at
//! every pair of boundaries, at random multi-way cuts, byte by byte) and asserts the outcome is
//! identical: the same requests (method, target, headers, body, keep-alive) in the same order,
//! then the same error status (and reason) or the same "waiting for more bytes" state.
//!
//! The random properties run with a fixed seed so CI is reproducible; set
//! `PROPTEST_RNG_SEED=<u64>` (and `PROPTEST_CASES=<n>`) to explore other inputs.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use ringcore_http::proto::Parser;
use ringcore_http::{Limits, StatusCode};

// ---------------------------------------------------------------------------------------------
// Driving the parser
// ---------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, Eq)]
struct Req {
    method: String,
    target: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// All input consumed without error; `partial` is `Parser::has_partial()` at the end.
    NeedMore { partial: bool },
    /// The parser failed.
    Error {
        status: StatusCode,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    reqs: Vec<Req>,
    end: End,
}

fn feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, limits: &Limits) -> Outcome {
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
                    // A failed parser stays failed.
                    p.push(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
                    assert_eq!(p.next_request().err(), Some(e), "parser recovered after an error");
                    return Outcome {
                        reqs,
                        end: End::Error {
                            status: e.status(),
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

fn whole(stream: &[u8]) -> Outcome {
    feed([stream], &Limits::default())
}

/// Feeds `stream` cut at the (sorted, deduplicated) offsets in `cuts`.
fn split_at(stream: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut prev = 0;
    for &c in cuts {
        let c = c.min(stream.len());
        if c >= prev {
            chunks.push(&stream[prev..c]);
            prev = c;
        }
    }
    chunks.push(&stream[prev..]);
    feed(chunks, limits)
}

fn byte_by_byte(stream: &[u8]) -> Outcome {
    feed(stream.chunks(1), &Limits::default())
}

#[track_caller]
fn assert_same(stream: &[u8], how: &str, expected: &Outcome, got: &Outcome) {
    if expected != got {
        panic!(
            "split changed the outcome ({how})\nstream: {:?}\nwhole:  {expected:#?}\nsplit:  {got:#?}",
            String::from_utf8_lossy(stream)
        );
    }
}

/// Checks every single cut point, byte-by-byte feeding, and the given multi-way cuts.
fn check_splits(stream: &[u8], multi: &[Vec<usize>]) -> Outcome {
    let limits = Limits::default();
    let expected = whole(stream);
    for i in 0..=stream.len() {
        let got = split_at(stream, &[i], &limits);
        assert_same(stream, &format!("one cut at {i}"), &expected, &got);
    }
    assert_same(stream, "byte by byte", &expected, &byte_by_byte(stream));
    for cuts in multi {
        let mut cuts = cuts.clone();
        cuts.sort_unstable();
        cuts.dedup();
        let got = split_at(stream, &cuts, &limits);
        assert_same(stream, &format!("cuts at {cuts:?}"), &expected, &got);
    }
    expected
}

fn config(cases: u32, seed: u64) -> Config {
    let mut c = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(seed);
    }
    if let Some(n) = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()) {
        c.cases = n;
    }
    c
}

// ---------------------------------------------------------------------------------------------
// A model of valid requests, rendered to bytes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Body {
    None,
    Length(Vec<u8>),
    /// Chunks (data, extension text after the size), trailer fields, upper-case hex sizes,
    /// a leading zero on the sizes.
    Chunked {
        chunks: Vec<(Vec<u8>, Option<String>)>,
        trailers: Vec<(String, String)>,
        upper: bool,
        zero_pad: bool,
    },
}

#[derive(Debug, Clone)]
struct Spec {
    leading: Vec<&'static str>,
    method: &'static str,
    target: String,
    http10: bool,
    host: Option<String>,
    /// Extra fields: (name, value, whitespace before the value, whitespace after it).
    fields: Vec<(String, String, &'static str, &'static str)>,
    connection: Option<&'static str>,
    expect_continue: bool,
    body: Body,
    /// Line ends, cycled through line by line: `true` = bare LF.
    bare_lf: Vec<bool>,
}

struct Lines<'a> {
    ends: &'a [bool],
    i: usize,
}

impl Lines<'_> {
    fn eol(&mut self) -> &'static [u8] {
        let lf = !self.ends.is_empty() && self.ends[self.i % self.ends.len()];
        self.i += 1;
        if lf {
            b"\n"
        } else {
            b"\r\n"
        }
    }
}

impl Spec {
    /// The bytes on the wire and the request the parser must produce.
    fn render(&self) -> (Vec<u8>, Req) {
        let mut out = Vec::new();
        let mut lines = Lines {
            ends: &self.bare_lf,
            i: 0,
        };
        for l in &self.leading {
            out.extend_from_slice(l.as_bytes());
        }
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        out.extend_from_slice(format!("{} {} {version}", self.method, self.target).as_bytes());
        out.extend_from_slice(lines.eol());
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut field =
            |out: &mut Vec<u8>, lines: &mut Lines<'_>, n: &str, pre: &str, v: &str, post: &str| {
                out.extend_from_slice(format!("{n}:{pre}{v}{post}").as_bytes());
                out.extend_from_slice(lines.eol());
                headers.push((n.as_bytes().to_vec(), v.as_bytes().to_vec()));
            };
        if let Some(h) = &self.host {
            field(&mut out, &mut lines, "Host", " ", h, "");
        }
        for (n, v, pre, post) in &self.fields {
            field(&mut out, &mut lines, n, pre, v, post);
        }
        if let Some(c) = self.connection {
            field(&mut out, &mut lines, "Connection", " ", c, "");
        }
        let has_body = !matches!(self.body, Body::None);
        if self.expect_continue && has_body {
            field(&mut out, &mut lines, "Expect", " ", "100-continue", "");
        }
        let mut body = Vec::new();
        match &self.body {
            Body::None => {}
            Body::Length(b) => {
                field(
                    &mut out,
                    &mut lines,
                    "Content-Length",
                    " ",
                    &b.len().to_string(),
                    "",
                );
            }
            Body::Chunked { .. } => {
                field(&mut out, &mut lines, "Transfer-Encoding", " ", "chunked", "");
            }
        }
        out.extend_from_slice(lines.eol());
        match &self.body {
            Body::None => {}
            Body::Length(b) => {
                out.extend_from_slice(b);
                body.extend_from_slice(b);
            }
            Body::Chunked {
                chunks,
                trailers,
                upper,
                zero_pad,
            } => {
                let size = |n: usize| {
                    let s = if *upper {
                        format!("{n:X}")
                    } else {
                        format!("{n:x}")
                    };
                    if *zero_pad {
                        format!("0{s}")
                    } else {
                        s
                    }
                };
                // Chunked framing takes CRLF only (bare LF there is 400): `bare_lf` is for the head.
                for (data, ext) in chunks.iter().filter(|(d, _)| !d.is_empty()) {
                    out.extend_from_slice(size(data.len()).as_bytes());
                    if let Some(e) = ext {
                        out.extend_from_slice(e.as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                    body.extend_from_slice(data);
                }
                out.extend_from_slice(size(0).as_bytes());
                if let Some((_, Some(e))) = chunks.first() {
                    out.extend_from_slice(e.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                for (n, v) in trailers {
                    out.extend_from_slice(format!("{n}: {v}").as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        let close = self.connection == Some("close");
        let keep_alive = if self.http10 {
            self.connection == Some("keep-alive")
        } else {
            !close
        };
        let req = Req {
            method: self.method.to_owned(),
            target: self.target.as_bytes().to_vec(),
            headers,
            body,
            keep_alive,
        };
        (out, req)
    }
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn field_value() -> impl Strategy<Value = String> {
    // Visible ASCII with inner spaces/tabs; never leading or trailing whitespace.
    prop_oneof![
        "[!-~]{1,20}",
        "[!-~]{1,8}[ \t][!-~ \t]{0,10}[!-~]",
        Just(String::new()),
    ]
}

fn target_for(method: &'static str) -> BoxedStrategy<String> {
    let origin = "/[A-Za-z0-9._~%!$&'()*+,;=:@/-]{0,24}(\\?[A-Za-z0-9._~%=&/?-]{0,16})?";
    match method {
        "OPTIONS" => prop_oneof![Just("*".to_owned()), origin].boxed(),
        "CONNECT" => "[a-z]{1,10}\\.example:[0-9]{1,5}".boxed(),
        _ => prop_oneof![
            4 => origin,
            1 => "(http|https|HTTP)://[a-z]{1,8}(:[0-9]{1,4})?/[a-z0-9/]{0,10}",
        ]
        .boxed(),
    }
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..40),
        // Bodies that look like protocol text: CRLFs, chunk-size-ish lines, request lines.
        prop::collection::vec(
            prop::sample::select(vec![
                &b"\r\n"[..],
                b"\n",
                b"0\r\n\r\n",
                b"GET / HTTP/1.1\r\n",
                b"5;x\r\n",
                b"a",
                b":",
            ]),
            1..6
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn chunk_ext() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => "(;[a-z]{1,6}(=[a-z0-9]{1,6})?){1,3}".prop_map(Some),
        1 => Just(Some(";name=\"quoted value\"".to_owned())),
        1 => Just(Some(" ; ws=1".to_owned())),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        3 => Just(Body::None),
        3 => body_bytes().prop_map(Body::Length),
        3 => (
            prop::collection::vec((body_bytes(), chunk_ext()), 0..4),
            prop::collection::vec((token(), field_value()), 0..3),
            any::<bool>(),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(chunks, trailers, upper, zero_pad)| Body::Chunked {
                chunks,
                trailers,
                upper,
                zero_pad,
            }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let method = prop::sample::select(vec![
        "GET", "GET", "HEAD", "POST", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ]);
    (method, prop::bool::weighted(0.15)).prop_flat_map(|(method, http10)| {
        let host = if http10 {
            prop::option::of("[a-z0-9.-]{1,12}(:[0-9]{1,5})?").boxed()
        } else {
            "[a-z0-9.-]{0,12}(:[0-9]{1,5})?".prop_map(Some).boxed()
        };
        let body = if http10 {
            // No Transfer-Encoding in HTTP/1.0 (that is a 400).
            prop_oneof![Just(Body::None), body_bytes().prop_map(Body::Length)].boxed()
        } else {
            body().boxed()
        };
        (
            prop::collection::vec(prop::sample::select(vec!["\r\n", "\n"]), 0..3),
            target_for(method),
            host,
            prop::collection::vec(
                (
                    // Avoid names with framing/semantic meaning; those are generated on purpose.
                    "X-[A-Za-z0-9-]{1,10}",
                    field_value(),
                    prop::sample::select(vec!["", " ", "\t", "  "]),
                    prop::sample::select(vec!["", "", " ", "\t "]),
                ),
                0..4,
            ),
            prop::option::weighted(
                0.3,
                prop::sample::select(vec!["close", "keep-alive", "Upgrade", "foo, bar"]),
            ),
            prop::bool::weighted(0.15),
            body,
            prop_oneof![
                3 => Just(Vec::new()),
                1 => Just(vec![true]),
                1 => prop::collection::vec(any::<bool>(), 1..6),
            ],
        )
            .prop_map(
                move |(leading, target, host, fields, connection, expect_continue, body, bare_lf)| Spec {
                    leading,
                    method,
                    target,
                    http10,
                    host,
                    fields,
                    connection,
                    expect_continue,
                    body,
                    bare_lf,
                },
            )
    })
}

#[derive(Debug, Clone)]
enum Corrupt {
    None,
    Append(Vec<u8>),
    Insert(prop::sample::Index, u8),
    Replace(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
}

fn corrupt() -> impl Strategy<Value = Corrupt> {
    let interesting = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"\r\n \t:;0123456789aAfF\x00\x7f\x80\xff#*/".to_vec()),
    ];
    prop_oneof![
        4 => Just(Corrupt::None),
        1 => prop::collection::vec(any::<u8>(), 1..4).prop_map(Corrupt::Append),
        2 => (any::<prop::sample::Index>(), interesting.clone()).prop_map(|(i, b)| Corrupt::Insert(i, b)),
        2 => (any::<prop::sample::Index>(), interesting).prop_map(|(i, b)| Corrupt::Replace(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Corrupt::Truncate),
    ]
}

fn apply(stream: &mut Vec<u8>, c: &Corrupt) {
    match c {
        Corrupt::None => {}
        Corrupt::Append(b) => stream.extend_from_slice(b),
        Corrupt::Insert(i, b) => {
            let at = i.index(stream.len() + 1);
            stream.insert(at, *b);
        }
        Corrupt::Replace(i, b) if !stream.is_empty() => {
            let at = i.index(stream.len());
            stream[at] = *b;
        }
        Corrupt::Replace(..) => {}
        Corrupt::Truncate(i) => {
            let at = i.index(stream.len() + 1);
            stream.truncate(at);
        }
    }
}

fn render_all(specs: &[Spec]) -> (Vec<u8>, Vec<Req>) {
    let mut stream = Vec::new();
    let mut reqs = Vec::new();
    for s in specs {
        let (bytes, req) = s.render();
        stream.extend_from_slice(&bytes);
        reqs.push(req);
    }
    (stream, reqs)
}

fn multi_cuts() -> impl Strategy<Value = Vec<Vec<usize>>> {
    // Offsets beyond the stream length are clamped by `split_at`; bias toward small offsets.
    prop::collection::vec(prop::collection::vec(0usize..600, 1..8), 1..6)
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(160, 0x5eed_0001))]

    /// Valid pipelined streams: split or whole, the parser yields exactly the modelled requests.
    #[test]
    fn valid_streams_parse_the_same_however_split(
        specs in prop::collection::vec(spec(), 1..=5),
        multi in multi_cuts(),
    ) {
        let (stream, expected) = render_all(&specs);
        let out = check_splits(&stream, &multi);
        prop_assert_eq!(
            &out,
            &Outcome { reqs: expected, end: End::NeedMore { partial: false } },
            "stream: {:?}",
            String::from_utf8_lossy(&stream)
        );
    }
}

proptest! {
    #![proptest_config(config(200, 0x5eed_0002))]

    /// Corrupted streams (a byte inserted, replaced or appended, or the stream cut short):
    /// whatever the outcome, split and whole agree, including the error status.
    #[test]
    fn corrupted_streams_fail_the_same_however_split(
        specs in prop::collection::vec(spec(), 1..=5),
        c in corrupt(),
        multi in multi_cuts(),
    ) {
        let (mut stream, _) = render_all(&specs);
        apply(&mut stream, &c);
        check_splits(&stream, &multi);
    }
}

proptest! {
    #![proptest_config(config(400, 0x5eed_0003))]

    /// Arbitrary bytes, byte by byte: never a panic, and the same outcome as whole.
    #[test]
    fn random_bytes_byte_by_byte_never_panic(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            // Mostly protocol-shaped noise, to get past the request line now and then.
            prop::collection::vec(
                prop::sample::select(vec![
                    &b"GET "[..], b"POST ", b"/", b" HTTP/1.1", b" HTTP/1.0", b"\r\n", b"\n",
                    b"\r", b"Host: a", b"Content-Length: 3", b"Transfer-Encoding: chunked",
                    b":", b" ", b"0", b"5", b"ff", b";", b"x", b"\x00", b"\xff",
                ]),
                0..40,
            )
            .prop_map(|parts| parts.concat()),
        ],
    ) {
        let expected = whole(&bytes);
        let got = byte_by_byte(&bytes);
        assert_same(&bytes, "byte by byte", &expected, &got);
    }
}

// ---------------------------------------------------------------------------------------------
// Exhaustive splits of a fixed stream
// ---------------------------------------------------------------------------------------------

/// Pipelined GET + chunked POST (extensions, trailers) + Content-Length POST (a bare-LF line).
const FIXED: &[u8] = b"\r\nGET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
3;e=1\r\nabc\r\nA\r\n0123456789\r\n0;z\r\nT: v\r\n\r\n\
POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 5\nConnection: close\r\n\r\nhello";

fn fixed_expected() -> Outcome {
    let host = (b"Host".to_vec(), b"x".to_vec());
    Outcome {
        reqs: vec![
            Req {
                method: "GET".into(),
                target: b"/a?b=1".to_vec(),
                headers: vec![host.clone()],
                body: vec![],
                keep_alive: true,
            },
            Req {
                method: "POST".into(),
                target: b"/c".to_vec(),
                headers: vec![host.clone(), (b"Transfer-Encoding".to_vec(), b"chunked".to_vec())],
                body: b"abc0123456789".to_vec(),
                keep_alive: true,
            },
            Req {
                method: "POST".into(),
                target: b"/d".to_vec(),
                headers: vec![
                    host,
                    (b"Content-Length".to_vec(), b"5".to_vec()),
                    (b"Connection".to_vec(), b"close".to_vec()),
                ],
                body: b"hello".to_vec(),
                keep_alive: false,
            },
        ],
        end: End::NeedMore { partial: false },
    }
}

#[test]
fn fixed_stream_every_single_split() {
    let expected = fixed_expected();
    assert_eq!(whole(FIXED), expected);
    assert_eq!(check_splits(FIXED, &[]), expected);
}

#[test]
fn fixed_stream_every_pair_of_splits() {
    let expected = fixed_expected();
    let limits = Limits::default();
    let n = FIXED.len();
    for i in 0..=n {
        for j in i..=n {
            let got = split_at(FIXED, &[i, j], &limits);
            assert_same(FIXED, &format!("cuts at {i}, {j}"), &expected, &got);
        }
    }
}

#[test]
fn fixed_stream_truncated_waits_for_more() {
    // Every proper prefix yields a prefix of the requests and then asks for more bytes.
    let all = fixed_expected().reqs;
    for k in 0..FIXED.len() {
        let out = whole(&FIXED[..k]);
        assert!(out.reqs.len() < all.len() || k == FIXED.len(), "prefix {k}");
        assert_eq!(out.reqs[..], all[..out.reqs.len()], "prefix {k}");
        assert!(
            matches!(out.end, End::NeedMore { .. }),
            "prefix {k}: {:?}",
            out.end
        );
        assert_same(&FIXED[..k], "byte by byte", &out, &byte_by_byte(&FIXED[..k]));
    }
}

#[test]
fn fixed_stream_every_single_byte_corruption_splits_alike() {
    // Replace each byte in turn by a few troublesome values; split anywhere, same outcome.
    let limits = Limits::default();
    for at in 0..FIXED.len() {
        for b in [b'\n', b'\r', b' ', b'\x00', b'Z', b'0', b'9', b':', b';'] {
            if FIXED[at] == b {
                continue;
            }
            let mut s = FIXED.to_vec();
            s[at] = b;
            let expected = whole(&s);
            assert_same(&s, "byte by byte", &expected, &byte_by_byte(&s));
            for cut in [at, at + 1, at.saturating_sub(1)] {
                let got = split_at(&s, &[cut], &limits);
                assert_same(&s, &format!("one cut at {cut}"), &expected, &got);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regression tests for parser bugs found by these properties and the fuzz targets: each states
// the intended behaviour.
// ---------------------------------------------------------------------------------------------

fn strict_same_every_cut(stream: &[u8], limits: &Limits) {
    let expected = feed([stream], limits);
    for i in 0..=stream.len() {
        let got = split_at(stream, &[i], limits);
        assert!(
            expected == got,
            "cut at {i} of {} bytes: whole {:?}, split {:?}",
            stream.len(),
            expected.end,
            got.end
        );
    }
}

/// Regression: the 505/400 verdict on an unsupported version used to depend on whether all 8
/// version bytes had arrived (httparse rejects `HTTP/2` early); and HTTP/1.x (x > 1) is 1.1.
#[test]
fn version_error_status_does_not_depend_on_split() {
    let s = b"GET / HTTP/2.0\r\nHost: a\r\n\r\n";
    assert_eq!(
        whole(s).end,
        End::Error {
            status: StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            reason: "HTTP version not supported"
        }
    );
    strict_same_every_cut(s, &Limits::default());
    let s = b"GET / HTTP/1.2\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(whole(s).reqs.len(), 2);
    strict_same_every_cut(s, &Limits::default());
}

#[test]
fn bad_version_then_spaces_is_rejected_and_bounded() {
    // `version_may_complete` takes the word after the last space as a version prefix; after a
    // trailing space that word is empty, so `parse` returns Ok(None) (before the 414/431
    // checks) for `GET /  ` (two spaces) or `GET / x `: whole, the parser waits, byte by byte it
    // answers 400, and a peer sending spaces is buffered without limit.
    for s in [&b"GET /  "[..], b"GET / x ", b"GET a b "] {
        assert!(
            matches!(whole(s).end, End::Error { .. }),
            "{:?}: {:?}",
            String::from_utf8_lossy(s),
            whole(s)
        );
        assert_eq!(whole(s), byte_by_byte(s), "{:?}", String::from_utf8_lossy(s));
    }
    let mut p = Parser::new(Limits::default());
    p.push(b"GET / ");
    let mut res = p.next_request().map(|r| r.is_some());
    for _ in 0..64 {
        p.push(&[b' '; 1024]);
        res = p.next_request().map(|r| r.is_some());
        if res.is_err() {
            break;
        }
    }
    assert!(
        res.is_err(),
        "64 KiB of spaces after `GET / ` buffered without an error"
    );
}

#[test]
fn version_505_after_leading_empty_line() {
    // `looks_like_other_version` inspects the first line of the buffer, which is the empty line
    // that RFC 9112 2.2 says to skip, so it never sees the version.
    let s = b"\r\nGET / HTTP/2.0\r\nHost: a\r\n\r\n";
    assert_eq!(
        whole(s).end,
        End::Error {
            status: StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            reason: "HTTP version not supported"
        }
    );
}

#[test]
fn leading_empty_lines_do_not_depend_on_split() {
    // 5,000 CRLFs then a valid GET: whole, the request is accepted (the lines are skipped and
    // the head is under 16 KiB); cut after 8,194 bytes, the partial branch of head::parse sees
    // `first_line_len == None` (only CR/LF so far) and `buf.len() > max_request_line`: 414.
    let mut s = b"\r\n".repeat(5000);
    s.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(whole(&s).reqs.len(), 1);
    let got = split_at(&s, &[8194], &Limits::default());
    assert_eq!(got, whole(&s));
}

#[test]
fn limit_vs_syntax_error_does_not_depend_on_split() {
    let d = Limits::default();
    // Over-long target with a bad byte and no LF yet: whole 400, cut before the bad byte 414.
    let mut a = b"GET /".to_vec();
    a.extend_from_slice(&[b'a'; 9000]);
    a.push(0x01);
    // Over-long request line with version HTTP/2.0: whole 505 (the Version error path never
    // checks the line length), cut inside the target 414.
    let mut b = b"GET /".to_vec();
    b.extend_from_slice(&[b'a'; 9000]);
    b.extend_from_slice(b" HTTP/2.0\r\nHost: a\r\n\r\n");
    // Over-long header section with a control byte in a value: whole 400, cut before it 431.
    let mut c = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    c.extend_from_slice(&[b'a'; 17000]);
    c.extend_from_slice(b"\x01\r\n\r\n");
    let mut failures = Vec::new();
    for (s, cut) in [(&a, 9000), (&b, 9000), (&c, 17010)] {
        let (w, sp) = (feed([&s[..]], &d), split_at(s, &[cut], &d));
        if w != sp {
            failures.push(format!(
                "{:?}: whole {:?}, split {:?}",
                String::from_utf8_lossy(&s[..20]),
                w.end,
                sp.end
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn higher_minor_version_far_into_the_buffer_does_not_panic() {
    // head::parse copies at most max_header_bytes + 1 bytes to patch the minor digit to `1`,
    // then indexes the copy with the digit's offset in the whole buffer: index out of bounds.
    // The Version error path runs before the 414/431 checks, so nothing stops it first.
    let mut long_line = b"GET /".to_vec();
    long_line.extend_from_slice(&[b'a'; 16400]);
    long_line.extend_from_slice(b" HTTP/1.2\r\nHost: a\r\n\r\n");
    let mut leading = b"\r\n".repeat(8200);
    leading.extend_from_slice(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n");
    for s in [&long_line, &leading] {
        let r = std::panic::catch_unwind(|| whole(s));
        assert!(
            matches!(
                r,
                Ok(Outcome {
                    end: End::Error { .. },
                    ..
                })
            ),
            "{} bytes: {r:?}",
            s.len()
        );
    }
    // Reachable with 4 KiB reads when max_header_bytes < max_request_line.
    let mut small = Limits::default();
    small.max_header_bytes = 4096;
    let mut s = b"GET /".to_vec();
    s.extend_from_slice(&[b'a'; 7000]);
    s.extend_from_slice(b" HTTP/1.2\r\nHost: a\r\n\r\n");
    let r = std::panic::catch_unwind(|| feed(s.chunks(4096), &small));
    assert!(
        matches!(
            r,
            Ok(Outcome {
                end: End::Error { .. },
                ..
            })
        ),
        "4 KiB reads: {r:?}"
    );
}

#[test]
fn version_verdict_does_not_depend_on_later_words() {
    // `GET / x HTTP/2.0`: httparse fails on the version `x`; whole, looks_like_other_version
    // reads the last word `HTTP/2.0` and answers 505; cut after `x`, the last word is `x`: 400.
    let s = b"GET / x HTTP/2.0\r\nHost: a\r\n\r\n";
    assert_eq!(whole(s), byte_by_byte(s));
    strict_same_every_cut(s, &Limits::default());
}
