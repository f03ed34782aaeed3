//! `ringcore-load --timeline` over real sockets on 127.0.0.1: the CSV holds one line per
//! measured request (the same count as the JSON's `requests`), ordered by scheduled send time
//! inside the measurement window, and `--timeline-every 2` keeps every other schedule slot.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

/// Answers `200 ok` to every request, keep-alive, one thread per connection (bounded).
fn server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in l.incoming().take(64) {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Bounded by the read timeout and the client's close at the end of its run.
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// Runs 0.5 s at 200 req/s over 2 connections; returns (CSV rows, JSON `requests`).
fn run(addr: &str, every: &str) -> (Vec<(u64, u64, u16)>, u64) {
    let dir = std::env::temp_dir();
    let tag = format!("{}-{every}", std::process::id());
    let csv = dir.join(format!("load-timeline-{tag}.csv"));
    let json = dir.join(format!("load-timeline-{tag}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_ringcore-load"))
        .args([
            "--url",
            &format!("http://{addr}/"),
            "--rate",
            "200",
            "--conns",
            "2",
        ])
        .args(["--duration", "0.5", "--warmup", "0.1", "--no-progress"])
        .args(["--timeline", csv.to_str().expect("utf-8 path")])
        .args(["--timeline-every", every])
        .args(["--json", json.to_str().expect("utf-8 path")])
        .output()
        .expect("run ringcore-load");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv).expect("timeline written");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    let _ = std::fs::remove_file(&csv);
    let _ = std::fs::remove_file(&json);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("offset_us,latency_us,status"));
    let rows = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{l:?}");
            (
                f[0].parse().expect("offset"),
                f[1].parse().expect("latency"),
                f[2].parse().expect("status"),
            )
        })
        .collect();
    (rows, j["requests"].as_u64().expect("requests"))
}

#[test]
fn one_line_per_measured_request_in_send_order() {
    let addr = server();
    let (rows, requests) = run(&addr, "1");
    assert!(requests >= 50, "{requests} requests in 0.5 s at 200/s");
    assert_eq!(rows.len() as u64, requests);
    // The schedule sends one request every 5 ms: offsets 0, 5000, 10000, ... below 0.5 s.
    for (i, &(offset, latency, status)) in rows.iter().enumerate() {
        assert_eq!(status, 200);
        assert!(offset < 500_000, "{offset}");
        assert!(latency > 0 && latency < 2_000_000, "{latency}");
        if i > 0 {
            assert!(offset >= rows[i - 1].0, "not in send order at line {i}");
        }
    }
    assert!(
        rows.windows(2).all(|w| w[1].0 - w[0].0 < 100_000),
        "a gap in the schedule"
    );

    let (half, requests) = run(&addr, "2");
    // Slots alternate between the two connections: every other one is kept.
    assert!(
        (half.len() as i64 - requests as i64 / 2).abs() <= 2,
        "{} of {requests}",
        half.len()
    );
    assert!(half.windows(2).all(|w| w[1].0 - w[0].0 >= 9_000), "{half:?}");
}
