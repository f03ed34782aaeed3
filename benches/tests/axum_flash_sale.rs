//! `axum_flash_sale` as a process over real sockets: the flash-sale invariants (no overselling,
//! one unit per user, orders durable and replayed after a restart) and the HTTP contract.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, threads: usize) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_axum_flash_sale"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--threads",
            &threads.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn axum_flash_sale");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .strip_prefix("axum_flash_sale listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, addr }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("axum-flash-sale-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// One request on its own connection; returns the status and the body.
fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("receive");
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?}: {e}"))
}

#[test]
fn two_hundred_buyers_for_fifty_units() {
    let dir = temp_dir("invariants");
    let srv = start(&dir, 2);
    let addr = srv.addr.clone();
    assert_eq!(
        request(
            &addr,
            "PUT",
            "/items/hot",
            Some(r#"{"stock":50,"price":999,"name":"Hot"}"#)
        )
        .0,
        201
    );
    assert_eq!(
        request(&addr, "PUT", "/items/hot", Some(r#"{"stock":50}"#)).0,
        200
    );

    let buyers: Vec<_> = (0..200)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let (status, body) = request(
                    &addr,
                    "POST",
                    "/items/hot/buy",
                    Some(&format!(r#"{{"user":"u{i}"}}"#)),
                );
                (i, status, body)
            })
        })
        .collect();
    let mut bought = Vec::new();
    let mut sold_out = 0;
    for t in buyers {
        let (i, status, body) = t.join().expect("buyer thread");
        match status {
            200 => {
                let v = json(&body);
                assert_eq!(
                    (v["item"].as_str(), v["user"].as_str()),
                    (Some("hot"), Some(&*format!("u{i}")))
                );
                bought.push((i, v["order"].as_str().expect("order id").to_string()));
            }
            409 => {
                assert_eq!(json(&body)["error"], "sold_out");
                sold_out += 1;
            }
            other => panic!("buyer {i}: {other} {body}"),
        }
    }
    assert_eq!((bought.len(), sold_out), (50, 150));

    let item = json(&request(&addr, "GET", "/items/hot", None).1);
    assert_eq!(
        (
            item["stock"].as_u64(),
            item["sold"].as_u64(),
            item["remaining"].as_u64()
        ),
        (Some(50), Some(50), Some(0))
    );
    let (i, order) = bought[0].clone();
    let (status, body) = request(
        &addr,
        "POST",
        "/items/hot/buy",
        Some(&format!(r#"{{"user":"u{i}"}}"#)),
    );
    assert_eq!(
        (
            status,
            json(&body)["error"].as_str(),
            json(&body)["order"].as_str()
        ),
        (409, Some("already_bought"), Some(&*order))
    );
    let (status, body) = request(&addr, "GET", &format!("/orders/{order}"), None);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["user"], format!("u{i}"));
    assert!(json(&body)["ts"].as_u64().is_some());
    assert_eq!(
        request(&addr, "PUT", "/items/hot", Some(r#"{"stock":80}"#)),
        (409, r#"{"error":"sale_started"}"#.to_string())
    );

    // A restart replays the journal: the same sale, the same orders.
    drop(srv);
    let srv = start(&dir, 1);
    let item = json(&request(&srv.addr, "GET", "/items/hot", None).1);
    assert_eq!(
        (item["sold"].as_u64(), item["remaining"].as_u64()),
        (Some(50), Some(0))
    );
    assert_eq!(
        request(&srv.addr, "GET", &format!("/orders/{order}"), None).0,
        200
    );
    assert_eq!(
        request(&srv.addr, "POST", "/items/hot/buy", Some(r#"{"user":"new"}"#)).0,
        409
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_of_the_contract() {
    let dir = temp_dir("contract");
    let srv = start(&dir, 1);
    let a = srv.addr.as_str();
    assert_eq!(request(a, "GET", "/healthz", None).0, 200);
    assert_eq!(request(a, "GET", "/items/none", None).0, 404);
    assert_eq!(request(a, "GET", "/orders/none", None).0, 404);
    let (s, b) = request(a, "POST", "/items/none/buy", Some(r#"{"user":"u"}"#));
    assert_eq!((s, json(&b)["error"].as_str()), (404, Some("unknown_item")));
    for bad in [r#"{"stock":-1}"#, r#"{"stock":"x"}"#, r#"{}"#] {
        assert_eq!(request(a, "PUT", "/items/x", Some(bad)).0, 400, "{bad}");
    }
    assert_eq!(request(a, "PUT", "/items/x", Some("not json")).0, 400);
    assert_eq!(request(a, "PUT", "/items/x", Some(r#"{"stock":0}"#)).0, 201);
    let (s, b) = request(a, "POST", "/items/x/buy", Some(r#"{"user":"u"}"#));
    assert_eq!((s, json(&b)["error"].as_str()), (409, Some("sold_out")));
    for bad in [r#"{"user":""}"#, r#"{"user":5}"#, r#"{}"#, "nope"] {
        let (s, b) = request(a, "POST", "/items/x/buy", Some(bad));
        assert_eq!(
            (s, json(&b)["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}
