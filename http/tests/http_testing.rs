//! Testing tools: `Request::builder`, `Router::oneshot` (routing and middleware without a
//! socket, on a ringcore core through `#[ringcore_runtime::test]`), and `test::TestServer`
//! (a real server on 127.0.0.1:0 with a blocking client, stopped on drop).

use std::net::TcpStream;
use std::time::Duration;

use ringcore_http::middleware::{from_fn, Next, RateLimit, Timeout};
use ringcore_http::runtime::time::sleep;
use ringcore_http::test::{body_text, header, TestServer};
use ringcore_http::{get, post, HeaderName, HeaderValue, Method, Request, Response, Router, StatusCode};

async fn tag(req: Request, next: Next) -> Response {
    let seen = req.header_str("x-in").unwrap_or("none").to_string();
    let resp = next.run(req).await;
    resp.header(
        HeaderName::from_static("x-tagged"),
        HeaderValue::from_str(&seen).unwrap_or(HeaderValue::from_static("bad")),
    )
}

fn app() -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(|req: Request| async move {
                format!(
                    "item {} q={}",
                    req.param("id").unwrap_or("?"),
                    req.query().unwrap_or("")
                )
            }),
        )
        .route("/echo", post(|body: bytes::Bytes| async move { body }))
        .route(
            "/slow",
            get(|| async {
                sleep(Duration::from_secs(5)).await;
                "late"
            })
            .layer(Timeout::new(Duration::from_millis(20))),
        )
        .route(
            "/limited",
            get(|| async { "ok" }).layer(RateLimit::per_second(0.001).burst(1)),
        )
        .layer(from_fn(tag))
}

fn req(method: Method, uri: &str) -> ringcore_http::RequestBuilder {
    Request::builder().method(method).uri(uri)
}

#[ringcore_runtime::test]
async fn oneshot_runs_routing_middleware_and_handler_without_a_socket() {
    let app = app();
    let r = app
        .oneshot(
            req(Method::GET, "/items/42?full=1")
                .header("x-in", "hello")
                .body("")
                .expect("request"),
        )
        .await;
    assert_eq!(r.status_code(), StatusCode::OK);
    assert_eq!(body_text(&r).await, "item 42 q=full=1");
    // The router-wide middleware saw the request's header and tagged the response.
    assert_eq!(header(&r, "x-tagged"), Some("hello"));

    // A body reaches a body extractor.
    let r = app
        .oneshot(req(Method::POST, "/echo").body("ping").expect("request"))
        .await;
    assert_eq!(body_text(&r).await, "ping");

    // 404, and 405 with Allow, come from routing; the middleware wraps routes only.
    let r = app
        .oneshot(req(Method::GET, "/nope").body("").expect("request"))
        .await;
    assert_eq!(r.status_code(), StatusCode::NOT_FOUND);
    let r = app
        .oneshot(req(Method::DELETE, "/echo").body("").expect("request"))
        .await;
    assert_eq!(r.status_code(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&r, "allow"), Some("POST"));
}

#[ringcore_runtime::test]
async fn oneshot_runs_governance_middleware_with_real_timers() {
    let app = app();
    // The route's Timeout answers 503 timed_out long before the handler's 5 s sleep ends.
    let started = std::time::Instant::now();
    let r = app
        .oneshot(req(Method::GET, "/slow").body("").expect("request"))
        .await;
    assert_eq!(r.status_code(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(body_text(&r).await.contains("timed_out"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The rate limit (burst 1, refills once in ~17 minutes): the second call is refused.
    let first = app
        .oneshot(req(Method::GET, "/limited").body("").expect("request"))
        .await;
    let second = app
        .oneshot(req(Method::GET, "/limited").body("").expect("request"))
        .await;
    assert_eq!(first.status_code(), StatusCode::OK);
    assert_eq!(second.status_code(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&second, "retry-after").is_some());
}

#[test]
fn request_builder_makes_what_a_client_would_send() {
    let r = Request::builder()
        .method("PUT")
        .uri("http://example.test:8080/a%20b/c?x=1&y")
        .header("x-one", "1")
        .header("X-One", "2")
        .peer_addr("127.0.0.1:4000".parse().expect("addr"))
        .body(vec![1u8, 2, 3])
        .expect("request");
    assert_eq!(r.method(), &Method::PUT);
    assert_eq!((r.path(), r.query()), ("/a%20b/c", Some("x=1&y")));
    assert_eq!(r.header_str("host"), Some("example.test:8080"));
    assert_eq!(r.header_str("content-length"), Some("3"));
    let ones: Vec<&[u8]> = r
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-one"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ones, [b"1", b"2"]);
    assert_eq!(&r.body()[..], &[1, 2, 3]);
    assert_eq!(r.peer_addr().map(|a| a.port()), Some(4000));

    // Defaults: GET /, Host localhost, no body; a given Host wins; framing headers replaced.
    let r = Request::builder()
        .header("host", "mine")
        .header("transfer-encoding", "chunked")
        .body("")
        .expect("request");
    assert_eq!((r.method(), r.uri()), (&Method::GET, "/"));
    assert_eq!(r.header_str("host"), Some("mine"));
    assert_eq!(r.header_str("transfer-encoding"), None);

    // What the server would refuse is an error, not a request.
    let bad = Request::builder().header("x-bad", "a\nb").body("");
    assert!(bad
        .expect_err("a newline in a value")
        .to_string()
        .contains("header"));
    let bad = Request::builder().method("GE T").body("");
    assert!(bad.is_err());
}

#[test]
fn test_server_round_trips_over_a_real_socket_and_stops_on_drop() {
    let server = TestServer::start(app);
    let addr = server.addr();
    assert!(addr.ip().is_loopback());
    let r = server.get("/items/7");
    assert_eq!((r.status, r.text().as_str()), (200, "item 7 q="));
    assert_eq!(r.header("x-tagged"), Some("none"));
    // No tracing subscriber in this test binary: no request span, so no request id either.
    assert_eq!(r.header("x-request-id"), None);
    let r = server.post("/echo", r#"{"a":1}"#);
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"a":1}"#));
    // Keep-alive: two requests on one connection.
    let mut c = server.client();
    assert_eq!(c.get("/items/1").text(), "item 1 q=");
    assert_eq!(c.get("/items/2").text(), "item 2 q=");
    drop(c);
    let report = server.stop();
    assert_eq!(report.requests, 4);
    // Stopped: nothing listens there any more.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());

    // Dropping a server stops it too.
    let addr = {
        let s = TestServer::start(app);
        assert_eq!(s.get("/items/3").status, 200);
        s.addr()
    };
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
