//! `flash-sale serve` on journals that were damaged or hold records that cannot be, run as a
//! user would (the binary, its exit status, what it prints):
//!
//! * a bit flipped in an acknowledged order with valid records after it: the start is refused
//!   naming the file, the offset and how many valid records follow; `flash-sale repair` cuts
//!   it and lists every order it drops; `serve --accept-data-loss` does the same and serves;
//! * each impossible record (an order for an unknown item, more sold than the stock, two
//!   orders for one (item, user), an order id twice, a stock change after sales, a
//!   checksummed record that is not JSON): the start is refused naming the file and offset;
//! * a `journal-*` file the service does not know: refused, naming it.

mod support_service;

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use flash_sale::journal::{encode_file, HEADER_LEN, RECORD_OVERHEAD};
use serde_json::json;
use support_service::{assert_order, outcome, unique, Client, Config, Outcome, Service, TempDir};

/// How long a refused start or a repair may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run of the binary that should exit by itself left: (success, stdout, stderr).
fn run_to_exit(args: &[&str], dir: &Path) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flash-sale"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flash-sale");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            // Our own child, by its PID.
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap flash-sale");
            panic!(
                "flash-sale {args:?} did not exit within {EXIT_TIMEOUT:?}; stdout {:?}; stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `serve` on `dir`, expected to be refused: returns its stderr.
fn refused_start(dir: &Path) -> String {
    let (ok, stdout, stderr) = run_to_exit(&["serve", "--addr", "127.0.0.1:0", "--cores", "1"], dir);
    assert!(
        !ok && !stdout.contains("listening on"),
        "flash-sale served on a journal it must refuse; stdout {stdout:?}; stderr {stderr:?}"
    );
    stderr
}

/// Record boundaries of a journal file: `(offset, payload)` of each record.
fn records(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("read journal");
    let mut out = Vec::new();
    let mut at = HEADER_LEN as usize;
    while at + RECORD_OVERHEAD <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            // The journal's prepared space: zeros to the end of the file.
            assert!(
                bytes[at..].iter().all(|&b| b == 0),
                "{} is intact",
                path.display()
            );
            at = bytes.len();
            break;
        }
        out.push((
            at as u64,
            bytes[at + RECORD_OVERHEAD..at + RECORD_OVERHEAD + len].to_vec(),
        ));
        at += RECORD_OVERHEAD + len;
    }
    assert_eq!(at, bytes.len(), "{} is intact before the test", path.display());
    out
}

/// `bytes` without the zeros at its end (the journal's prepared space, which a cut does not
/// save).
fn trim_zeros(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)]
}

/// A data dir with one sale of `STOCK` units on one core, ten orders acknowledged; returns
/// (item, [(user, order)] in the order they were bought).
fn ten_orders(dir: &Path) -> (String, Vec<(String, String)>) {
    const STOCK: u64 = 10;
    let service = Service::start(&Config::new(1, dir));
    let item = unique("lamp");
    let mut client = Client::new(service.addr());
    let put = client.put_item(&item, STOCK);
    assert_eq!(put.status, 201, "create item: {}", put.describe());
    let mut orders = Vec::new();
    for i in 0..STOCK {
        let user = format!("buyer-{i}");
        let resp = client.buy(&item, &user).expect("buy");
        match outcome(&resp, &item, &user) {
            Outcome::Ordered(order) => orders.push((user, order)),
            other => panic!("buy for {user}: {other:?}"),
        }
    }
    drop(client);
    service.stop_clean();
    (item, orders)
}

/// Flips one bit in the payload of the second order record (record 2: the item record is
/// first); returns the record's offset.
fn flip_second_order(dir: &Path) -> u64 {
    let path = dir.join("journal-0.log");
    let recs = records(&path);
    assert_eq!(recs.len(), 11, "one item record and ten orders");
    let (offset, payload) = &recs[2];
    assert!(
        String::from_utf8_lossy(payload).contains("\"order\""),
        "record 2 is an order"
    );
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[*offset as usize + RECORD_OVERHEAD + payload.len() / 2] ^= 0x04;
    std::fs::write(&path, bytes).expect("write");
    *offset
}

#[test]
fn bit_flip_mid_journal_refuses_start_and_repair_lists_every_dropped_order() {
    let dir = TempDir::new("corrupt");
    let (item, orders) = ten_orders(dir.path());
    let offset = flip_second_order(dir.path());
    let journal = dir.path().join("journal-0.log");
    let before = std::fs::read(&journal).expect("read");

    let stderr = refused_start(dir.path());
    assert!(
        stderr.contains(&journal.display().to_string())
            && stderr.contains(&format!("offset {offset}"))
            && stderr.contains("8 valid record")
            && stderr.contains("flash-sale repair --data-dir"),
        "the refusal names the file, the offset, the valid records after it and the repair: {stderr}"
    );
    assert_eq!(
        std::fs::read(&journal).expect("read"),
        before,
        "a refused start leaves the journal untouched"
    );

    let (ok, stdout, stderr) = run_to_exit(&["repair"], dir.path());
    assert!(ok, "repair failed; stdout {stdout:?}; stderr {stderr:?}");
    // Every order after the damage is listed with its id, item and user; the damaged one by
    // its offset.
    for (user, order) in &orders[2..] {
        assert!(
            stdout.lines().any(|l| l.contains("dropped order")
                && l.contains(order)
                && l.contains(&item)
                && l.contains(user)),
            "repair does not list the dropped order {order} of {user}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("offset {offset}")) && stdout.contains("damaged record"),
        "repair names the damaged record:\n{stdout}"
    );
    assert!(
        !stdout.contains(&format!("order {}:", orders[0].1)),
        "repair lists an order it kept:\n{stdout}"
    );
    assert_eq!(std::fs::metadata(&journal).expect("stat").len(), offset);
    let side = dir.path().join(format!("journal-0.log.cut-{offset}"));
    assert_eq!(
        std::fs::read(&side).expect("the cut bytes are kept in a side file"),
        trim_zeros(&before[offset as usize..]),
        "the side file holds the cut bytes up to the journal's zero-filled prepared space"
    );

    // The service starts again with what is left: the first order, and no trace of the
    // dropped ones, whose units are for sale again (the list above is how the operator knows).
    let service = Service::start(&Config::new(1, dir.path()));
    let mut client = Client::new(service.addr());
    let (user0, order0) = &orders[0];
    assert_order(&client.order(order0), order0, &item, user0);
    for (_, order) in &orders[1..] {
        assert_eq!(
            client.order(order).status,
            404,
            "dropped order {order} still answers"
        );
    }
    let state = client.item_until(&item, |s| s.sold == 1);
    assert_eq!((state.stock, state.sold, state.remaining), (10, 1, 9));
    let resp = client.buy(&item, user0).expect("repeat buy");
    assert_eq!(
        outcome(&resp, &item, user0),
        Outcome::AlreadyBought(order0.clone())
    );
    drop(client);
    service.stop_clean();
}

#[test]
fn accept_data_loss_repairs_lists_the_dropped_orders_and_serves() {
    let dir = TempDir::new("accept-loss");
    let (item, orders) = ten_orders(dir.path());
    let offset = flip_second_order(dir.path());
    let mut config = Config::new(1, dir.path());
    config.extra_args = vec!["--accept-data-loss".into()];
    let service = Service::start(&config);
    let stderr = service.stderr_until(|s| s.matches("dropped order").count() >= 8);
    for (user, order) in &orders[2..] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("dropped order") && l.contains(order) && l.contains(user)),
            "--accept-data-loss does not list the dropped order {order} of {user}:\n{stderr}"
        );
    }
    let mut client = Client::new(service.addr());
    let state = client.item_until(&item, |s| s.sold == 1);
    assert_eq!((state.sold, state.remaining), (1, 9));
    drop(client);
    service.stop_clean();
    // Cut at the damage; the serving journal then prepared zeros after it again.
    assert_eq!(
        trim_zeros(&std::fs::read(dir.path().join("journal-0.log")).expect("read")).len() as u64,
        offset,
        "the journal was cut at the damage"
    );
}

fn item(id: &str, stock: u64, v: u64) -> Vec<u8> {
    json!({"t": "item", "item": id, "stock": stock, "v": v})
        .to_string()
        .into_bytes()
}

fn order(id: &str, item: &str, user: &str) -> Vec<u8> {
    json!({"t": "order", "order": id, "item": item, "user": user, "ts": 1})
        .to_string()
        .into_bytes()
}

/// Writes `journal-<core>.log` holding `records`; returns each record's offset.
fn write_journal(dir: &Path, core: usize, records: &[Vec<u8>]) -> Vec<u64> {
    let bytes = encode_file(records).expect("encode");
    std::fs::write(dir.join(format!("journal-{core}.log")), bytes).expect("write journal");
    let mut at = HEADER_LEN;
    records
        .iter()
        .map(|r| {
            let o = at;
            at += (RECORD_OVERHEAD + r.len()) as u64;
            o
        })
        .collect()
}

#[test]
fn each_impossible_record_refuses_start_naming_file_and_offset() {
    // (what, records, index of the record to be named, words the error must contain)
    let cases: Vec<(&str, Vec<Vec<u8>>, usize, &str)> = vec![
        (
            "order for an unknown item",
            vec![
                item("a", 5, 1),
                order("o1", "a", "u1"),
                order("o2", "ghost", "u2"),
            ],
            2,
            "no item record",
        ),
        (
            "more sold than the stock",
            vec![item("a", 1, 1), order("o1", "a", "u1"), order("o2", "a", "u2")],
            2,
            "whose stock is 1",
        ),
        (
            "two orders for one (item, user)",
            vec![item("a", 5, 1), order("o1", "a", "u1"), order("o2", "a", "u1")],
            2,
            "second order",
        ),
        (
            "an order id twice",
            vec![
                item("a", 5, 1),
                item("b", 5, 1),
                order("o1", "a", "u1"),
                order("o1", "b", "u2"),
            ],
            3,
            "order id \"o1\" again",
        ),
        (
            "a stock change after sales",
            vec![item("a", 5, 1), order("o1", "a", "u1"), item("a", 9, 2)],
            2,
            "after sales",
        ),
        (
            "a checksummed record that is not JSON",
            vec![item("a", 5, 1), b"not json at all".to_vec()],
            1,
            "not a flash-sale record",
        ),
    ];
    for (what, recs, bad, words) in cases {
        let dir = TempDir::new("impossible");
        let offsets = write_journal(dir.path(), 0, &recs);
        let path = dir.path().join("journal-0.log");
        let before = std::fs::read(&path).expect("read");
        let stderr = refused_start(dir.path());
        assert!(
            stderr.contains(&format!("journal {} at offset {}", path.display(), offsets[bad]))
                && stderr.contains(words),
            "{what}: the refusal must name {} offset {} and say {words:?}: {stderr}",
            path.display(),
            offsets[bad]
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "{what}: journal touched"
        );
    }
}

#[test]
fn valid_journals_over_several_files_start_and_count_every_order() {
    // An item created on core 1 and sold on core 0 and 1 (files are replayed core by core).
    let dir = TempDir::new("multi");
    write_journal(
        dir.path(),
        0,
        &[order("0-o1", "a", "u1"), order("0-o2", "a", "u2")],
    );
    write_journal(dir.path(), 1, &[item("a", 3, 1), order("1-o3", "a", "u3")]);
    // A side file and a lock file are not journals and not errors.
    std::fs::write(dir.path().join("journal-0.log.cut-16"), b"old damage").expect("write");
    std::fs::write(dir.path().join("flash-sale.lock"), b"").expect("write");
    let service = Service::start(&Config::new(2, dir.path()));
    let mut client = Client::new(service.addr());
    let state = client.item_until("a", |s| s.sold == 3);
    assert_eq!((state.stock, state.sold, state.remaining), (3, 3, 0));
    assert_order(&client.order("1-o3"), "1-o3", "a", "u3");
    let resp = client.buy("a", "u4").expect("buy");
    assert_eq!(outcome(&resp, "a", "u4"), Outcome::SoldOut);
    drop(client);
    service.stop_clean();
}

#[test]
fn unrecognised_journal_files_refuse_start_naming_them() {
    for name in [
        "journal-x.log",
        "journal-01.log",
        "journal-0.log.bak",
        "journal-0.log.cut-",
    ] {
        let dir = TempDir::new("unknown-file");
        write_journal(dir.path(), 0, &[item("a", 1, 1)]);
        std::fs::write(dir.path().join(name), b"?").expect("write");
        let stderr = refused_start(dir.path());
        assert!(
            stderr.contains(&format!("{name:?}")) && stderr.contains(&dir.path().display().to_string()),
            "the refusal names {name}: {stderr}"
        );
    }
}
