//! Extractors over real sockets: every extractor's value and its rejection (status and RFC
//! 9457 `application/problem+json` body), percent-decoded paths, `Option` / `Result`
//! wrappers, `WithRejection`, async extraction, sub-state by `FromRef`, a 16-argument
//! handler, and responses built from `HeaderMap` tuples and a user's error type.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use common::{start, Client};
use ringcore_http::extract::{Rejection, RejectionKind, WithRejection};
use ringcore_http::middleware::{from_fn, Next};
use ringcore_http::runtime::time::sleep;
use ringcore_http::{
    get, header, post, ConnectInfo, Extension, Form, FromRef, FromRequestParts, HeaderMap, HeaderValue,
    IntoResponse, Json, Method, Params, Parts, Path, Problem, Query, Request, Response, Router, State,
    StatusCode, Uri,
};
use serde::Deserialize;
use serde_json::Value;

struct Db {
    items: HashMap<String, u64>,
}

struct App {
    db: Rc<Db>,
    name: String,
}

impl FromRef<App> for Db {
    fn from_ref(app: &Rc<App>) -> Rc<Db> {
        app.db.clone()
    }
}

/// A user's error type: one place decides status and body.
enum ShopError {
    NoSuchItem(String),
    SoldOut,
}

impl IntoResponse for ShopError {
    fn into_response(self) -> Response {
        match self {
            ShopError::NoSuchItem(i) => {
                Problem::new(StatusCode::NOT_FOUND, "urn:shop:no-item", "No such item")
                    .detail(format!("no item {i:?}"))
                    .into_response()
            }
            ShopError::SoldOut => (StatusCode::CONFLICT, "sold out").into_response(),
        }
    }
}

async fn stock(State(db): State<Db>, Path(item): Path<String>) -> Result<String, ShopError> {
    match db.items.get(&item) {
        Some(0) => Err(ShopError::SoldOut),
        Some(n) => Ok(format!("{item}: {n}")),
        None => Err(ShopError::NoSuchItem(item)),
    }
}

async fn app_name(State(app): State<App>) -> String {
    app.name.clone()
}

#[derive(Deserialize)]
struct ShopItem {
    shop: String,
    id: u32,
}

async fn by_struct(Path(p): Path<ShopItem>) -> String {
    format!("struct {} {}", p.shop, p.id)
}

async fn by_tuple(Path((shop, id)): Path<(String, u32)>) -> String {
    format!("tuple {shop} {id}")
}

async fn params(p: Params) -> String {
    format!("params {}", p.get("name").unwrap_or("?"))
}

#[derive(Deserialize)]
struct Page {
    page: u32,
    tag: Option<String>,
}

async fn query(Query(p): Query<Page>) -> String {
    format!("page {} tag {}", p.page, p.tag.as_deref().unwrap_or("-"))
}

async fn form(Form(p): Form<Page>) -> String {
    format!("form {} {}", p.page, p.tag.as_deref().unwrap_or("-"))
}

async fn head_info(method: Method, uri: Uri, headers: HeaderMap) -> String {
    let x = headers
        .get_all("x-tag")
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .collect::<Vec<_>>()
        .join(",");
    format!("{method} {} {:?} {x}", uri.path(), uri.query())
}

async fn peer(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> String {
    addr.ip().to_string()
}

async fn text(body: String) -> String {
    format!("{} chars", body.chars().count())
}

async fn json(Json(v): Json<Value>) -> Json<Value> {
    Json(v)
}

async fn maybe_json(v: Option<Json<Value>>) -> String {
    match v {
        Some(Json(v)) => format!("some {v}"),
        None => "none".to_string(),
    }
}

async fn result_json(v: Result<Json<Value>, Rejection>) -> String {
    match v {
        Ok(Json(v)) => format!("ok {v}"),
        Err(r) => format!("err {}", r.kind().slug()),
    }
}

async fn maybe_page(p: Option<Query<Page>>, r: Result<Path<u32>, Rejection>) -> String {
    let p = p.map_or("none".to_string(), |Query(p)| p.page.to_string());
    let r = r.map_or_else(|e| e.status().as_u16().to_string(), |Path(n)| n.to_string());
    format!("{p} {r}")
}

/// The caller's own answer to a bad JSON body.
struct Teapot(RejectionKind);

impl From<Rejection> for Teapot {
    fn from(r: Rejection) -> Self {
        Teapot(r.kind())
    }
}

impl IntoResponse for Teapot {
    fn into_response(self) -> Response {
        (StatusCode::IM_A_TEAPOT, format!("teapot: {}", self.0.slug())).into_response()
    }
}

async fn mapped(WithRejection(Json(v), _): WithRejection<Json<Value>, Teapot>) -> String {
    v.to_string()
}

/// An async extractor: waits on a timer before deciding.
struct Slowly(String);

impl<S> FromRequestParts<S> for Slowly {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Problem> {
        sleep(std::time::Duration::from_millis(5)).await;
        match parts.header_str("x-user") {
            Some(u) => Ok(Slowly(u.to_string())),
            None => Err(Problem::new(StatusCode::UNAUTHORIZED, "urn:test:no-user", "Who?")),
        }
    }
}

async fn slowly(Slowly(u): Slowly) -> String {
    format!("hello {u}")
}

#[derive(Clone)]
struct RequestTag(&'static str);

async fn tag_request(mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(RequestTag("tagged"));
    next.run(req).await
}

async fn extension(Extension(t): Extension<RequestTag>) -> &'static str {
    t.0
}

#[allow(clippy::too_many_arguments)]
async fn sixteen(
    _: Method,
    _: Uri,
    _: HeaderMap,
    _: Params,
    _: Query<HashMap<String, String>>,
    _: Option<Slowly>,
    _: State<App>,
    _: State<Db>,
    _: ConnectInfo<SocketAddr>,
    _: Method,
    _: Uri,
    _: Parts,
    _: Option<Extension<RequestTag>>,
    _: Result<Path<String>, Rejection>,
    _: Method,
    body: String,
) -> String {
    format!("sixteen {body}")
}

async fn headers_tuple() -> impl IntoResponse {
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.append("x-multi", HeaderValue::from_static("a"));
    h.append("x-multi", HeaderValue::from_static("b"));
    (StatusCode::ACCEPTED, h, "with headers")
}

fn router() -> Router<App> {
    let db = Db {
        items: [("A".to_string(), 3), ("sold out".to_string(), 0)]
            .into_iter()
            .collect(),
    };
    Router::with_state(App {
        db: Rc::new(db),
        name: "shop".into(),
    })
    .route("/items/{item}", get(stock))
    .route("/name", get(app_name))
    .route("/shops/{shop}/items/{id}", get(by_struct))
    .route("/tuple/{shop}/{id}", get(by_tuple))
    .route("/params/{name}", get(params))
    .route("/query", get(query))
    .route("/form", post(form))
    .route("/head", get(head_info))
    .route("/peer", get(peer))
    .route("/text", post(text))
    .route("/json", post(json))
    .route("/maybe-json", post(maybe_json))
    .route("/result-json", post(result_json))
    .route("/maybe/{n}", get(maybe_page))
    .route("/mapped", post(mapped))
    .route("/slowly", get(slowly))
    .route("/ext", get(extension).layer(from_fn(tag_request)))
    .route("/ext-missing", get(extension))
    .route("/sixteen/{x}", post(sixteen))
    .route("/headers", get(headers_tuple))
}

fn get_path(c: &mut Client, path: &str) -> common::Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    c.read_response()
}

fn post_body(c: &mut Client, path: &str, ctype: Option<&str>, body: &[u8]) -> common::Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = ctype {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    c.send(&bytes);
    c.read_response()
}

/// Asserts an RFC 9457 rejection: status, content type, and the four members.
fn assert_problem(r: &common::Response, status: u16, slug: &str) -> Value {
    assert_eq!(r.status, status, "{}{}", r.head_raw, r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.head_raw
    );
    let v: Value = serde_json::from_slice(&r.body).expect("problem body is JSON");
    assert_eq!(v["type"], format!("urn:ringcore:rejection:{slug}"), "{v}");
    assert_eq!(v["status"], status, "{v}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert!(v["detail"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    v
}

#[test]
fn path_is_percent_decoded_and_state_parts_are_extracted() {
    let server = start(router);
    let mut c = server.client();
    let r = get_path(&mut c, "/items/%41");
    assert_eq!((r.status, r.text().as_str()), (200, "A: 3"), "%41 is A");
    let r = get_path(&mut c, "/items/A");
    assert_eq!((r.status, r.text().as_str()), (200, "A: 3"));
    let r = get_path(&mut c, "/items/sold%20out");
    assert_eq!(
        (r.status, r.text().as_str()),
        (409, "sold out"),
        "user error type"
    );
    let r = get_path(&mut c, "/items/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let v: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        (v["type"].as_str(), v["detail"].as_str()),
        (Some("urn:shop:no-item"), Some("no item \"nope\""))
    );
    let r = get_path(&mut c, "/name");
    assert_eq!(r.text(), "shop", "the whole state through State<App>");
    let r = get_path(&mut c, "/params/caf%C3%A9");
    assert_eq!(r.text(), "params café");
    server.stop();
}

#[test]
fn path_takes_structs_and_tuples_and_rejects_what_does_not_fit() {
    let server = start(router);
    let mut c = server.client();
    let r = get_path(&mut c, "/shops/big%2Fsmall/items/7");
    assert_eq!((r.status, r.text().as_str()), (200, "struct big/small 7"));
    let r = get_path(&mut c, "/tuple/s/8");
    assert_eq!((r.status, r.text().as_str()), (200, "tuple s 8"));
    let r = get_path(&mut c, "/tuple/s/x");
    let v = assert_problem(&r, 400, "invalid-path-params");
    assert!(v["detail"].as_str().unwrap_or("").contains("\"id\""), "{v}");
    let r = get_path(&mut c, "/shops/s/items/-1");
    assert_problem(&r, 400, "invalid-path-params");
    // %FF is not UTF-8.
    let r = get_path(&mut c, "/items/%FF");
    assert_problem(&r, 400, "invalid-path-params");
    assert!(!r.has_close(), "a rejection keeps the connection");
    let r = get_path(&mut c, "/items/A");
    assert_eq!(r.status, 200);
    server.stop();
}

#[test]
fn query_form_and_head_extractors() {
    let server = start(router);
    let mut c = server.client();
    let r = get_path(&mut c, "/query?page=2&tag=a%20b");
    assert_eq!(r.text(), "page 2 tag a b");
    let r = get_path(&mut c, "/query?page=two");
    assert_problem(&r, 400, "invalid-query");
    let r = get_path(&mut c, "/query");
    assert_problem(&r, 400, "invalid-query");

    let r = post_body(
        &mut c,
        "/form",
        Some("application/x-www-form-urlencoded"),
        b"page=3&tag=x+y",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "form 3 x y"));
    let r = post_body(&mut c, "/form", Some("text/plain"), b"page=3");
    assert_problem(&r, 415, "missing-form-content-type");
    let r = post_body(
        &mut c,
        "/form",
        Some("application/x-www-form-urlencoded"),
        b"tag=1",
    );
    assert_problem(&r, 400, "invalid-form-body");

    c.send(b"GET /head?q=1 HTTP/1.1\r\nHost: t\r\nX-Tag: one\r\nx-tag: two\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.text(), "GET /head Some(\"q=1\") one,two");
    let r = get_path(&mut c, "/peer");
    assert_eq!(r.text(), "127.0.0.1");
    server.stop();
}

#[test]
fn body_extractors_and_their_rejections() {
    let server = start(router);
    let mut c = server.client();
    let r = post_body(&mut c, "/text", None, "héllo".as_bytes());
    assert_eq!(r.text(), "5 chars");
    let r = post_body(&mut c, "/text", None, b"\xff\xfe");
    assert_problem(&r, 400, "invalid-utf8-body");

    let r = post_body(&mut c, "/json", Some("application/json"), br#"{"a":1}"#);
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"a":1}"#));
    let r = post_body(
        &mut c,
        "/json",
        Some("application/merge-patch+json; charset=utf-8"),
        b"[1]",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "[1]"));
    let r = post_body(&mut c, "/json", Some("text/plain"), br#"{"a":1}"#);
    assert_problem(&r, 415, "missing-json-content-type");
    let r = post_body(&mut c, "/json", None, br#"{"a":1}"#);
    assert_problem(&r, 415, "missing-json-content-type");
    let r = post_body(&mut c, "/json", Some("application/json"), br#"{"a":"#);
    assert_problem(&r, 400, "invalid-json-body");
    server.stop();
}

#[test]
fn option_result_and_with_rejection_wrappers() {
    let server = start(router);
    let mut c = server.client();
    let r = post_body(&mut c, "/maybe-json", Some("application/json"), b"2");
    assert_eq!(r.text(), "some 2");
    let r = post_body(&mut c, "/maybe-json", Some("application/json"), b"{");
    assert_eq!((r.status, r.text().as_str()), (200, "none"));
    let r = post_body(&mut c, "/result-json", Some("text/plain"), b"2");
    assert_eq!(r.text(), "err missing-json-content-type");
    let r = post_body(&mut c, "/result-json", Some("application/json"), b"[");
    assert_eq!(r.text(), "err invalid-json-body");
    let r = get_path(&mut c, "/maybe/9?page=4");
    assert_eq!(r.text(), "4 9");
    let r = get_path(&mut c, "/maybe/x?page=no");
    assert_eq!(r.text(), "none 400");

    let r = post_body(&mut c, "/mapped", Some("application/json"), b"[]");
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));
    let r = post_body(&mut c, "/mapped", Some("application/json"), b"]");
    assert_eq!((r.status, r.text().as_str()), (418, "teapot: invalid-json-body"));
    server.stop();
}

#[test]
fn async_extractor_extensions_sixteen_arguments_and_header_tuples() {
    let server = start(router);
    let mut c = server.client();
    c.send(b"GET /slowly HTTP/1.1\r\nHost: t\r\nX-User: ann\r\n\r\n");
    assert_eq!(c.read_response().text(), "hello ann");
    let r = get_path(&mut c, "/slowly");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));

    let r = get_path(&mut c, "/ext");
    assert_eq!((r.status, r.text().as_str()), (200, "tagged"));
    let r = get_path(&mut c, "/ext-missing");
    assert_problem(&r, 500, "missing-extension");

    let r = post_body(&mut c, "/sixteen/z", None, b"body");
    assert_eq!((r.status, r.text().as_str()), (200, "sixteen body"));

    let r = get_path(&mut c, "/headers");
    assert_eq!(r.status, 202);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header_all("x-multi"), vec!["a", "b"]);
    assert_eq!(r.text(), "with headers");
    server.stop();
}
