//! `ringcore-load --method POST --body '{"user":"u{n}"}'` against `axum_flash_sale`: every
//! request is a different user (across connections and across the runs of a sweep), and the
//! status classes in the JSON add up to what the server sold.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("load-buys-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_axum_flash_sale"))
        .args(["--addr", "127.0.0.1:0", "--threads", "1", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn axum_flash_sale");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .strip_prefix("axum_flash_sale listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, addr, dir }
}

fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("receive");
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Runs the generator; returns its JSON (an array for a sweep).
fn load(addr: &str, extra: &[&str]) -> serde_json::Value {
    let json = std::env::temp_dir().join(format!("load-buys-{}-{}.json", std::process::id(), extra.len()));
    let out = Command::new(env!("CARGO_BIN_EXE_ringcore-load"))
        .args([
            "--url",
            &format!("http://{addr}/items/hot/buy"),
            "--method",
            "POST",
        ])
        .args([
            "--body",
            r#"{"user":"u{n}"}"#,
            "--conns",
            "8",
            "--no-progress",
            "--json",
        ])
        .arg(&json)
        .args(extra)
        .output()
        .expect("run ringcore-load");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&json).expect("generator JSON");
    let _ = std::fs::remove_file(&json);
    serde_json::from_str(&text).expect("valid JSON")
}

fn sold(addr: &str) -> u64 {
    let (status, item) = request(addr, "GET", "/items/hot", "");
    assert_eq!(status, 200);
    item["sold"].as_u64().expect("sold")
}

#[test]
fn distinct_users_across_connections_and_a_sweep() {
    let srv = start("sweep");
    assert_eq!(
        request(&srv.addr, "PUT", "/items/hot", r#"{"stock":1000000000}"#).0,
        201
    );
    let runs = load(
        &srv.addr,
        &["--rates", "400,400", "--duration", "0.5", "--warmup", "0.2"],
    );
    let runs = runs.as_array().expect("a sweep writes an array");
    let mut bought = 0;
    for r in runs {
        let all = &r["status_all"];
        // already_bought would be a 409: no user repeats, within a run or across runs.
        assert_eq!(all["4xx"].as_u64(), Some(0), "{r}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
        assert!(all["2xx"].as_u64().unwrap_or(0) >= r["status"]["2xx"].as_u64().unwrap_or(u64::MAX));
        bought += all["2xx"].as_u64().unwrap_or(0);
    }
    assert!(bought > 0);
    assert_eq!(sold(&srv.addr), bought);
}

#[test]
fn sold_out_shows_as_4xx() {
    let srv = start("soldout");
    assert_eq!(request(&srv.addr, "PUT", "/items/hot", r#"{"stock":100}"#).0, 201);
    let r = load(
        &srv.addr,
        &["--rate", "1000", "--duration", "0.5", "--warmup", "0"],
    );
    let all = &r["status_all"];
    assert_eq!(all["2xx"].as_u64(), Some(100), "{r}");
    assert_eq!(sold(&srv.addr), 100);
    assert!(all["4xx"].as_u64().unwrap_or(0) > 0, "{r}");
}
