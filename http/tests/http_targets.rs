//! Request-target forms over a real socket (RFC 9112 section 3.2): absolute-form is routed on
//! the path that follows its authority, which ends at the first `/` or `?` (so
//! `http://a?/plaintext` is path `/` with query `/plaintext`); malformed absolute-form
//! targets are 400 and close.

mod common;

use common::{expect_rejected, roundtrip, show, start};
use ringcore_http::{any, Request, Router};

async fn where_to(req: Request) -> String {
    format!("path={} query={:?}", req.path(), req.query())
}

/// Every path lands on `where_to`; `/plaintext` on its own route, to catch misrouting.
fn router() -> Router {
    Router::new()
        .route("/", any(where_to))
        .route("/plaintext", any(|| async { "PLAINTEXT" }))
        .route("/{*rest}", any(where_to))
}

#[test]
fn absolute_form_routes_on_the_path_after_the_authority() {
    let server = start(router);
    for (target, expect) in [
        ("http://a?/plaintext", "path=/ query=Some(\"/plaintext\")"),
        ("http://a", "path=/ query=None"),
        ("http://a/", "path=/ query=None"),
        ("http://a/x/y?q=1", "path=/x/y query=Some(\"q=1\")"),
        ("HTTP://A:8080/x", "path=/x query=None"),
        ("https://a?q", "path=/ query=Some(\"q\")"),
        ("http://user:pw@a/x", "path=/x query=None"),
        ("http://user@a?/plaintext", "path=/ query=Some(\"/plaintext\")"),
        ("http://[::1]:80/x?", "path=/x query=Some(\"\")"),
        ("/x?q", "path=/x query=Some(\"q\")"),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = roundtrip(server.addr, req.as_bytes());
        assert_eq!(r.status, 200, "{target}: {}", r.head_raw);
        assert_eq!(r.text(), expect, "{target}");
    }
    // The absolute-form path itself still routes.
    let r = roundtrip(server.addr, b"GET http://a/plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.text(), "PLAINTEXT");
    server.stop();
}

#[test]
fn malformed_absolute_form_is_400() {
    let server = start(router);
    for target in [
        "http://",
        "http://?/plaintext",
        "http://:80/x",
        "http://u@/x",
        "http://a@b@c/x",
        "http://a:port/x",
        "http://[::1/x",
        "http://a%zz/x",
        "http:/a/x",
        "ftp://a/x",
        "a/x",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = expect_rejected(server.addr, req.as_bytes(), 400);
        assert!(!r.text().contains("PLAINTEXT"), "{}", show(req.as_bytes()));
    }
    server.stop();
}
