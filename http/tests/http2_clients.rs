//! HTTP/2 on cleartext (prior knowledge) with real clients: curl (`--http2-prior-knowledge`)
//! for the router, extractors, middleware, streamed bodies, HEAD, limits and metrics, and
//! h2load (Debian `nghttp2-client`, installed by `scripts/test`) for many concurrent streams
//! over a few connections. A server without HTTP/2 answers the preface with 505.
//!
//! Every client runs under `timeout`-style bounds (curl's `--max-time`, h2load's `-n`).

mod common;

use std::io::Read as _;
use std::process::{Command, Output};
use std::time::Duration;

use ringcore_http::middleware::{from_fn, Next, RateLimit, Timeout};
use ringcore_http::{get, post, Http2, Limits, Path, Request, Response, Router};

fn router() -> Router<()> {
    common::test_router()
        .route(
            "/version",
            get(|req: Request| async move { format!("{:?}", req.version()) }),
        )
        .route("/metrics", get(ringcore_http::metrics::prometheus))
        .route(
            "/upload",
            post(|body: bytes::Bytes| async move { format!("{} bytes", body.len()) }),
        )
        .layer(from_fn(|req: Request, next: Next| async move {
            let resp: Response = next.run(req).await;
            resp.header(
                ringcore_http::HeaderName::from_static("x-middleware"),
                ringcore_http::HeaderValue::from_static("ran"),
            )
        }))
}

/// Runs curl with HTTP/2 prior knowledge and a 10 s bound; the output ends with
/// `\n<http_version> <status>`.
fn curl_h2(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "10"])
        .args(args)
        .args(["-w", "\n%{http_version} %{http_code}"])
        .output()
        .expect("curl runs (scripts/test installs it)")
}

/// (body, http version, status) of a curl run.
fn split(out: &Output) -> (String, String, u16) {
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').expect("curl's -w line");
    let (version, status) = tail.split_once(' ').expect("version and status");
    (
        body.to_string(),
        version.to_string(),
        status.parse().expect("status"),
    )
}

#[test]
fn curl_prior_knowledge_reaches_the_same_router_middleware_and_extractors() {
    let server = common::start(router);
    let base = format!("http://{}", server.addr);

    let (body, version, status) = split(&curl_h2(&[&format!("{base}/")]));
    assert_eq!((body.as_str(), version.as_str(), status), ("root", "2", 200));

    // The handler sees HTTP/2, with the path, query and headers as sent.
    let (body, _, _) = split(&curl_h2(&[&format!("{base}/version")]));
    assert_eq!(body, "HTTP/2.0");
    let (body, _, _) = split(&curl_h2(&[&format!("{base}/p/a/b?x=1")]));
    assert_eq!(body, "/p/a/b?x=1");
    let (body, _, _) = split(&curl_h2(&["-H", "x-custom: yes", &format!("{base}/headers")]));
    assert!(body.contains("x-custom: yes\n"), "{body}");
    assert!(
        body.contains(&format!("host: {}\n", server.addr)),
        "Host from :authority: {body}"
    );

    // A request body (the body extractor), and the middleware's header on every answer.
    let (body, _, status) = split(&curl_h2(&["--data-binary", "hello h2", &format!("{base}/echo")]));
    assert_eq!((body.as_str(), status), ("hello h2", 200));
    let out = curl_h2(&["-i", &format!("{base}/")]);
    let (head, _, _) = split(&out);
    assert!(head.contains("x-middleware: ran"), "{head}");
    assert!(head.contains("server: ringcore"), "{head}");
    assert!(head.contains("date: "), "{head}");
    assert!(head.contains("content-length: 4"), "{head}");

    // A streamed body arrives whole; a large one too (many DATA frames, flow control).
    let (body, _, _) = split(&curl_h2(&[&format!("{base}/stream")]));
    assert_eq!(body, common::STREAM_BODY);
    let (body, _, _) = split(&curl_h2(&[&format!("{base}/big/3000000")]));
    assert_eq!(body.len(), 3_000_000);
    assert!(body.bytes().all(|b| b == b'x'));

    // HEAD: the GET's length, no body; 404 and 204 as on HTTP/1.
    let (head, _, status) = split(&curl_h2(&["-I", &format!("{base}/big/1234")]));
    assert_eq!(status, 200);
    assert!(head.contains("content-length: 1234"), "{head}");
    let (_, _, status) = split(&curl_h2(&[&format!("{base}/nowhere")]));
    assert_eq!(status, 404);
    let (body, _, status) = split(&curl_h2(&[&format!("{base}/nocontent")]));
    assert_eq!((body.as_str(), status), ("", 204));

    // Many streams on one connection are h2load's test below (curl 7.88 cannot reuse a
    // prior-knowledge connection: curl/curl#10634).

    // Requests counted by protocol.
    let (metrics, _, _) = split(&curl_h2(&[&format!("{base}/metrics")]));
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    // Eleven curl runs before this one, and this one.
    assert_eq!(count("ringcore_http2_connections_total"), 12);
    assert_eq!(count("ringcore_http2_requests_total"), 12);
    server.stop();
}

#[test]
fn request_limits_apply_to_http2_requests() {
    let mut limits = Limits::default();
    limits.max_body_bytes = 1000;
    limits.max_headers = 8;
    let server = common::start_limits(limits, router);
    let base = format!("http://{}", server.addr);
    let big = "y".repeat(5000);
    // Declared too large: 413 before the body is read (then RST_STREAM(NO_ERROR), which curl
    // 7.88 reports as an error, so nghttp reads this one).
    let file = std::env::temp_dir().join(format!("ringcore-h2-body-{}", std::process::id()));
    std::fs::write(&file, &big).expect("write body file");
    let out = Command::new("nghttp")
        .args(["-v", "-t", "10", "-d"])
        .arg(&file)
        .arg(format!("{base}/upload"))
        .output()
        .expect("nghttp runs (scripts/test installs nghttp2-client)");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(":status: 413"), "{text}");
    let (body, _, status) = split(&curl_h2(&[
        "--data-binary",
        &big[..1000],
        &format!("{base}/upload"),
    ]));
    assert_eq!((body.as_str(), status), ("1000 bytes", 200));
    // More header fields than `max_headers`: 431, as on HTTP/1.
    let mut args = Vec::new();
    for i in 0..10 {
        args.push("-H".to_string());
        args.push(format!("x-h{i}: v"));
    }
    args.push(format!("{base}/"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, _, status) = split(&curl_h2(&args));
    assert_eq!(status, 431);
    server.stop();
}

/// Runs h2load against `url` with `args`; its output.
fn h2load(args: &[&str], url: &str) -> String {
    let out = Command::new("h2load")
        .args(args)
        .args(["-T", "10", "-N", "10"])
        .arg(url)
        .output()
        .expect("h2load runs (scripts/test installs nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "h2load: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A number from h2load's summary: the one before `word` on the line starting with
/// `prefix` (`requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0
/// errored, 0 timeout`; `status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx`).
fn h2load_count(out: &str, prefix: &str, word: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .unwrap_or_else(|| panic!("{word:?} in {line:?}"));
    words[at - 1]
        .parse()
        .unwrap_or_else(|_| panic!("a number before {word:?} in {line:?}"))
}

/// (requests done, failed + errored + timed out) of an h2load run.
fn h2load_done_and_failed(out: &str) -> (u64, u64) {
    let failed = ["failed", "errored", "timeout"]
        .iter()
        .map(|w| h2load_count(out, "requests:", w))
        .sum();
    (h2load_count(out, "requests:", "done"), failed)
}

#[test]
fn h2load_100_concurrent_streams_on_4_connections_all_succeed() {
    let server = common::start(router);
    let out = h2load(
        &["-n", "2000", "-c", "4", "-m", "100"],
        &format!("http://{}/", server.addr),
    );
    assert_eq!(h2load_done_and_failed(&out), (2000, 0), "{out}");
    assert_eq!(h2load_count(&out, "status codes:", "2xx"), 2000, "{out}");
    server.stop();
}

#[test]
fn governance_middleware_applies_to_http2_streams() {
    let server = common::start(|| {
        Router::new()
            .route(
                "/limited",
                get(|| async { "ok" }).layer(RateLimit::per_second(0.01).burst(10)),
            )
            .route(
                "/slow/{ms}",
                get(|Path(ms): Path<u64>| async move {
                    ringcore_http::runtime::time::sleep(Duration::from_millis(ms)).await;
                    "slept"
                })
                .layer(Timeout::new(Duration::from_millis(50))),
            )
    });
    // 50 streams at once on one connection: the burst of 10 passes, the rest get 429.
    let out = h2load(
        &["-n", "50", "-c", "1", "-m", "50"],
        &format!("http://{}/limited", server.addr),
    );
    assert_eq!(h2load_done_and_failed(&out).0, 50, "{out}");
    assert_eq!(h2load_count(&out, "status codes:", "2xx"), 10, "{out}");
    assert_eq!(h2load_count(&out, "status codes:", "4xx"), 40, "{out}");
    // A handler past its timeout: 503 at the deadline, as on HTTP/1.
    let started = std::time::Instant::now();
    let (body, _, status) = split(&curl_h2(&[&format!("http://{}/slow/2000", server.addr)]));
    assert_eq!((body.as_str(), status), (r#"{"error":"timed_out"}"#, 503));
    assert!(started.elapsed() < Duration::from_millis(1500));
    server.stop();
}

#[test]
fn without_http2_the_preface_gets_505() {
    let server = common::start_with(|s| s.without_http2(), router);
    let mut c = server.client();
    c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 505, "{}", r.head_raw);
    // curl with prior knowledge gets no HTTP/2 either.
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "5"])
        .arg(format!("http://{}/", server.addr))
        .output()
        .expect("curl runs");
    assert!(
        !out.status.success(),
        "curl must fail against an HTTP/1-only server"
    );
    server.stop();
}

#[test]
fn http2_settings_are_configurable() {
    // Smoke: a server with every HTTP/2 setting changed still serves (the frame-level tests
    // in http2_frames.rs check what the settings do).
    let settings = Http2::default()
        .max_concurrent_streams(10)
        .max_header_list_size(8 * 1024)
        .initial_stream_window_size(128 * 1024)
        .initial_connection_window_size(256 * 1024)
        .max_frame_size(32 * 1024)
        .keep_alive(Duration::from_secs(5), Duration::from_secs(5));
    let server = common::start_with(move |s| s.http2(settings), router);
    let (body, _, _) = split(&curl_h2(&[&format!("http://{}/big/500000", server.addr)]));
    assert_eq!(body.len(), 500_000);
    // HTTP/1 still works on the same port.
    let mut c = server.client();
    c.send(&common::get_req("/"));
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, "root".to_string()));
    let mut rest = Vec::new();
    c.stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let _ = c.stream.read_to_end(&mut rest);
    server.stop();
}
