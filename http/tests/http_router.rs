//! The router over real sockets: path parameters and their extraction errors, 404, 405 with
//! `Allow`, HEAD through the GET handler, static segments over parameters, per-core state,
//! the JSON extractor, `any()`, catch-all and fallback routes.

mod common;

use std::cell::Cell;
use std::collections::BTreeSet;

use common::{get_req, start, Client};
use ringcore_http::{
    any, delete, get, post, put, Json, Method, Params, Path, Request, Router, State, StatusCode,
};
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Counter(Cell<u64>);

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Item {
    name: String,
    qty: u32,
}

async fn item(Path(id): Path<u64>) -> String {
    format!("item {id}")
}

async fn count(State(c): State<Counter>) -> String {
    c.0.set(c.0.get() + 1);
    format!("count {}", c.0.get())
}

async fn create(Json(item): Json<Item>) -> (StatusCode, Json<Item>) {
    (
        StatusCode::CREATED,
        Json(Item {
            name: item.name.to_uppercase(),
            qty: item.qty * 2,
        }),
    )
}

async fn method_name(req: Request) -> String {
    format!("{} {}", req.method(), req.path())
}

async fn two(p: Params) -> String {
    format!("{}/{}", p.get("a").unwrap_or("?"), p.get("b").unwrap_or("?"))
}

fn router() -> Router<Counter> {
    Router::with_state(Counter::default())
        .route(
            "/items/{id}",
            get(item).delete(|| async { StatusCode::NO_CONTENT }),
        )
        .route("/items/special", get(|| async { "special" }))
        .route("/items", post(create).put(|| async { "put" }))
        .route("/count", get(count))
        .route("/any", any(method_name))
        .route(
            "/files/{*rest}",
            get(|req: Request| async move { req.param("rest").unwrap_or("").to_string() }),
        )
        .route("/two/{a}/{b}", get(two))
        .route("/merged", get(|| async { "get" }))
        .route("/merged", post(|| async { "post" }))
        .route("/only-post", post(|| async { "p" }))
        .route("/del", delete(|| async { "d" }).put(|| async { "u" }))
}

fn send(c: &mut Client, req: &str) -> common::Response {
    c.send(req.as_bytes());
    c.read_response()
}

fn allow_set(v: &str) -> BTreeSet<String> {
    v.split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn path_parameter_is_parsed() {
    let server = start(router);
    let mut c = server.client();
    let r = send(&mut c, "GET /items/42 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "item 42"));
    let r = send(&mut c, "GET /items/7?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "item 7"),
        "query is not part of the path"
    );
    server.stop();
}

#[test]
fn bad_path_parameter_is_400_and_keeps_the_connection() {
    let server = start(router);
    let mut c = server.client();
    for bad in ["abc", "-1", "99999999999999999999999", "1.5"] {
        let r = send(&mut c, &format!("GET /items/{bad} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 400, "/items/{bad}: {}", r.head_raw);
        assert!(
            !r.has_close(),
            "a handler's 400 is not a protocol error: {}",
            r.head_raw
        );
    }
    let r = send(&mut c, "GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.text(), "item 1");
    server.stop();
}

#[test]
fn unknown_path_is_404_and_keeps_the_connection() {
    let server = start(router);
    let mut c = server.client();
    for path in ["/nope", "/items/", "/items/1/extra", "/ITEMS/1"] {
        let r = send(&mut c, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 404, "{path}: {}", r.head_raw);
        assert!(!r.has_close(), "{}", r.head_raw);
    }
    server.stop();
}

#[test]
fn wrong_method_is_405_with_allow() {
    let server = start(router);
    let mut c = server.client();
    let cases: [(&str, &str, &[&str]); 5] = [
        ("POST", "/items/1", &["GET", "HEAD", "DELETE"]),
        ("POST", "/count", &["GET", "HEAD"]),
        ("GET", "/only-post", &["POST"]),
        ("DELETE", "/merged", &["GET", "HEAD", "POST"]),
        ("GET", "/del", &["DELETE", "PUT"]),
    ];
    for (method, path, allowed) in cases {
        let r = send(
            &mut c,
            &format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"),
        );
        assert_eq!(r.status, 405, "{method} {path}: {}", r.head_raw);
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow: {}", r.head_raw));
        let want: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        assert_eq!(allow_set(allow), want, "{method} {path}: Allow: {allow}");
        assert!(!r.has_close(), "{}", r.head_raw);
    }
    server.stop();
}

#[test]
fn head_is_served_by_the_get_handler_without_body() {
    let server = start(router);
    let mut c = server.client();
    let mut batch = b"HEAD /items/123 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    batch.extend_from_slice(&get_req("/items/123"));
    c.send(&batch);
    let head = c.read_head_response();
    let get = c.read_response();
    assert_eq!(head.status, 200, "{}", head.head_raw);
    assert_eq!(get.text(), "item 123");
    assert_eq!(head.header("content-length"), Some("8"), "{}", head.head_raw);
    assert_eq!(head.header("content-type"), get.header("content-type"));
    server.stop();
}

#[test]
fn static_segment_wins_over_a_parameter() {
    let server = start(router);
    let mut c = server.client();
    let r = send(&mut c, "GET /items/special HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "special"));
    let r = send(&mut c, "GET /items/5 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.text(), "item 5");
    // The parameter route's other methods still apply to other ids.
    let r = send(&mut c, "DELETE /items/5 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 204);
    server.stop();
}

/// Many routes without parameters, of equal and different lengths (the router finds them by
/// their bytes), next to parameter routes over the same prefixes.
fn many_static_routes() -> Router {
    let mut app = Router::new();
    for path in [
        "/",
        "/a",
        "/b",
        "/ab",
        "/ba",
        "/abc",
        "/cab",
        "/x/new",
        "/x/newer",
        "/plaintext",
    ] {
        app = app.route(path, get(move || async move { format!("static {path}") }));
    }
    app.route(
        "/x/{id}",
        get(|Path(id): Path<String>| async move { format!("x {id}") }),
    )
    .route(
        "/{one}",
        post(|Path(one): Path<String>| async move { format!("one {one}") }),
    )
}

#[test]
fn static_routes_are_found_by_their_bytes() {
    let server = start(many_static_routes);
    let mut c = server.client();
    let cases: &[(&str, u16, &str)] = &[
        ("GET / HTTP/1.1", 200, "static /"),
        ("GET /a HTTP/1.1", 200, "static /a"),
        ("GET /b HTTP/1.1", 200, "static /b"),
        ("GET /ab HTTP/1.1", 200, "static /ab"),
        ("GET /ba HTTP/1.1", 200, "static /ba"),
        ("GET /abc HTTP/1.1", 200, "static /abc"),
        ("GET /cab?x=1 HTTP/1.1", 200, "static /cab"),
        ("GET /plaintext? HTTP/1.1", 200, "static /plaintext"),
        ("GET /x/new HTTP/1.1", 200, "static /x/new"),
        ("GET /x/newer HTTP/1.1", 200, "static /x/newer"),
        // Absolute-form without a path routes as `/`.
        ("GET http://t HTTP/1.1", 200, "static /"),
        ("GET http://t?q=1 HTTP/1.1", 200, "static /"),
        ("GET http://t/ab?q HTTP/1.1", 200, "static /ab"),
        // Next to the static ones, the parameter routes still match.
        ("GET /x/news HTTP/1.1", 200, "x news"),
        ("GET /x/ne HTTP/1.1", 200, "x ne"),
        ("POST /zz HTTP/1.1", 200, "one zz"),
        // A static path with a parameter route on other methods: 405, not the parameter.
        ("POST /ab HTTP/1.1", 405, ""),
        // Case, a trailing slash, a prefix and a longer path are other paths.
        ("GET /A HTTP/1.1", 405, ""),
        ("GET /ab/ HTTP/1.1", 404, ""),
        ("GET /plain HTTP/1.1", 405, ""),
        ("GET /abcd HTTP/1.1", 405, ""),
        ("GET /x/new/ HTTP/1.1", 404, ""),
    ];
    for &(line, status, body) in cases {
        let r = send(&mut c, &format!("{line}\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(r.status, status, "{line}: {} {}", r.head_raw, r.text());
        if status == 200 {
            assert_eq!(r.text(), body, "{line}");
        }
    }
    server.stop();
}

#[test]
fn state_is_per_core_and_shared_by_its_requests() {
    let server = start(router);
    let mut a = server.client();
    let mut b = server.client();
    assert_eq!(
        send(&mut a, "GET /count HTTP/1.1\r\nHost: t\r\n\r\n").text(),
        "count 1"
    );
    assert_eq!(
        send(&mut b, "GET /count HTTP/1.1\r\nHost: t\r\n\r\n").text(),
        "count 2"
    );
    assert_eq!(
        send(&mut a, "GET /count HTTP/1.1\r\nHost: t\r\n\r\n").text(),
        "count 3"
    );
    server.stop();
}

#[test]
fn json_extractor_and_response() {
    let server = start(router);
    let mut c = server.client();
    let body = r#"{"name":"widget","qty":3}"#;
    for ctype in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
    ] {
        let r = send(
            &mut c,
            &format!(
                "POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(r.status, 201, "{ctype}: {} {}", r.head_raw, r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let item: Item = serde_json::from_slice(&r.body).expect("json response");
        assert_eq!(
            item,
            Item {
                name: "WIDGET".into(),
                qty: 6
            }
        );
    }
    server.stop();
}

#[test]
fn json_extractor_rejects_other_content_types_with_415() {
    let server = start(router);
    let mut c = server.client();
    let body = r#"{"name":"widget","qty":3}"#;
    for ctype in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let field = ctype
            .map(|t| format!("Content-Type: {t}\r\n"))
            .unwrap_or_default();
        let r = send(
            &mut c,
            &format!(
                "POST /items HTTP/1.1\r\nHost: t\r\n{field}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(r.status, 415, "{ctype:?}: {}", r.head_raw);
        assert!(!r.has_close(), "{}", r.head_raw);
    }
    server.stop();
}

#[test]
fn json_extractor_rejects_bad_json_with_400() {
    let server = start(router);
    let mut c = server.client();
    for body in [
        r#"{"name":"widget""#,
        r#"{"name":"w","qty":-1}"#,
        r#"{"qty":1}"#,
        "",
        "null",
    ] {
        let r = send(
            &mut c,
            &format!(
                "POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(r.status, 400, "{body:?}: {}", r.head_raw);
        assert!(!r.has_close(), "{}", r.head_raw);
    }
    server.stop();
}

#[test]
fn any_answers_every_method() {
    let server = start(router);
    let mut c = server.client();
    for m in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ] {
        let r = send(
            &mut c,
            &format!("{m} /any HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"),
        );
        assert_eq!(r.status, 200, "{m}: {}", r.head_raw);
        assert_eq!(r.text(), format!("{m} /any"));
    }
    let mut batch = b"HEAD /any HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    batch.extend_from_slice(&get_req("/any"));
    c.send(&batch);
    let head = c.read_head_response();
    assert_eq!(head.status, 200, "{}", head.head_raw);
    assert_eq!(c.read_response().text(), "GET /any", "HEAD sent a body");
    server.stop();
}

#[test]
fn catch_all_and_multiple_parameters() {
    let server = start(router);
    let mut c = server.client();
    let r = send(&mut c, "GET /files/a/b/c.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "a/b/c.txt"));
    let r = send(&mut c, "GET /two/x/y HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.text(), "x/y");
    server.stop();
}

#[test]
fn merged_routes_answer_each_method() {
    let server = start(router);
    let mut c = server.client();
    assert_eq!(
        send(&mut c, "GET /merged HTTP/1.1\r\nHost: t\r\n\r\n").text(),
        "get"
    );
    assert_eq!(
        send(
            &mut c,
            "POST /merged HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        )
        .text(),
        "post"
    );
    assert_eq!(
        send(
            &mut c,
            "PUT /items HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        )
        .text(),
        "put"
    );
    server.stop();
}

#[test]
fn fallback_answers_unmatched_paths() {
    let server = start(|| {
        Router::new()
            .route("/", get(|| async { "root" }))
            .fallback(
                |req: Request| async move { (StatusCode::IM_A_TEAPOT, format!("fallback {}", req.path())) },
            )
    });
    let mut c = server.client();
    let r = send(&mut c, "GET /whatever HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (418, "fallback /whatever"));
    assert_eq!(send(&mut c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").text(), "root");
    server.stop();
}

#[test]
fn put_route_builder_function() {
    let server = start(|| Router::new().route("/x", put(|| async { "put" })));
    let mut c = server.client();
    let r = send(&mut c, "PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.text(), "put");
    let r = send(&mut c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("PUT"));
    server.stop();
}
