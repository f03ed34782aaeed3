//! Crash safety of `flash-sale serve` with the embedded store, from the outside:
//!
//! * killed (SIGKILL) in the middle of a crowd and restarted on the same data directory, it
//!   still has every order it acknowledged, sells no user twice, and its counts add up;
//! * with the tail of a journal cut short or corrupted, it still starts and serves, keeps the
//!   orders in front of the damage, and says so on stderr.
//!
//! What SIGKILL can show: the page cache survives a killed process, so this checks that no 200
//! goes out before its order is written and synced, not that the disk honours `fdatasync`
//! across a power cut.

mod support_service;

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support_service::{
    assert_order, journal_sizes, outcome, unique, Client, Config, Outcome, Service, TempDir,
};

const THREADS: usize = 16;

#[derive(Default)]
struct Seen {
    /// user -> order id, for every 200.
    acked: HashMap<String, String>,
    /// Users whose request went out but whose answer never came back (the kill).
    unknown: Vec<String>,
}

#[test]
fn sigkill_mid_crowd_loses_no_acknowledged_order() {
    const STOCK: u64 = 2000;

    let dir = TempDir::new("crash");
    let config = Config::new(2, dir.path());
    let service = Service::start(&config);
    let addr = service.addr();
    let item = unique("gpu");
    let put = Client::new(addr).put_item(&item, STOCK);
    assert_eq!(put.status, 201, "create item: {}", put.describe());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (seen, stop, acks, item) = (seen.clone(), stop.clone(), acks.clone(), item.clone());
            thread::spawn(move || {
                let mut client = Client::new(addr);
                // Bounded: at most STOCK attempts per thread, and the kill ends it sooner.
                for n in 0..STOCK as usize {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let user = format!("c{t}-{n}");
                    match client.buy(&item, &user) {
                        Ok(resp) => match outcome(&resp, &item, &user) {
                            Outcome::Ordered(order) => {
                                let mut seen = seen.lock().unwrap();
                                assert!(
                                    seen.acked.insert(user.clone(), order).is_none(),
                                    "{user} acknowledged twice"
                                );
                                acks.fetch_add(1, Ordering::Relaxed);
                            }
                            Outcome::SoldOut => return,
                            other => panic!("buy for {user} before the kill: {other:?}"),
                        },
                        Err(_) => {
                            // The server died with this request in flight (or before it was
                            // sent): its outcome is unknown. Nothing more from this thread.
                            seen.lock().unwrap().unknown.push(user);
                            return;
                        }
                    }
                }
            })
        })
        .collect();

    // Kill in the middle of the load: ~400 ms in once some orders are in, or as soon as
    // half the stock is sold, whichever comes first (bounded at 10 s).
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    loop {
        let n = acks.load(Ordering::Relaxed);
        let mid_load = started.elapsed() >= Duration::from_millis(400) && n >= 20;
        if mid_load || n >= STOCK as usize / 2 || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let acked_at_kill = acks.load(Ordering::Relaxed);
    service.kill9();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("buyer thread");
    }
    let seen = Arc::try_unwrap(seen)
        .ok()
        .expect("threads done")
        .into_inner()
        .unwrap();
    assert!(
        !seen.acked.is_empty(),
        "no buy was acknowledged before the kill ({:?} in)",
        started.elapsed()
    );
    eprintln!(
        "killed after {:?}: {} acknowledged ({} at the kill), {} in flight",
        started.elapsed(),
        seen.acked.len(),
        acked_at_kill,
        seen.unknown.len()
    );
    assert!(
        seen.acked.len() < STOCK as usize,
        "the stock sold out before the kill; the test did not crash mid-load"
    );

    let service = Service::start(&config);
    let addr = service.addr();
    let mut client = Client::new(addr);

    // Counts: nothing lost, nothing invented.
    let state = client.item_until(&item, |_| true);
    assert_eq!(state.stock, STOCK, "after restart: {state:?}");
    assert_eq!(
        state.sold + state.remaining,
        STOCK,
        "after restart sold + remaining must be the stock: {state:?}"
    );
    assert!(
        state.sold >= seen.acked.len() as u64,
        "after restart sold {} < {} acknowledged orders: {state:?}",
        state.sold,
        seen.acked.len()
    );
    assert!(
        state.sold <= (seen.acked.len() + seen.unknown.len()) as u64,
        "after restart sold {} > {} acknowledged + {} in flight at the kill: sales nobody made",
        state.sold,
        seen.acked.len(),
        seen.unknown.len()
    );

    // Every acknowledged order is there, and its user cannot buy again.
    for (user, order) in &seen.acked {
        assert_order(&client.order(order), order, &item, user);
        let resp = client.buy(&item, user).expect("repeat buy");
        assert_eq!(
            outcome(&resp, &item, user),
            Outcome::AlreadyBought(order.clone()),
            "after restart, repeat buy by {user} (acknowledged order {order}): {}",
            resp.describe()
        );
    }
    // A user whose answer was lost has at most one order: buying again either sells (there
    // was none) or names the one order.
    let mut ids: HashSet<String> = seen.acked.values().cloned().collect();
    for user in &seen.unknown {
        let resp = client.buy(&item, user).expect("buy by an in-flight user");
        match outcome(&resp, &item, user) {
            Outcome::Ordered(order) | Outcome::AlreadyBought(order) => {
                assert_order(&client.order(&order), &order, &item, user);
                assert!(
                    ids.insert(order.clone()),
                    "order {order} of {user} also belongs to another user"
                );
            }
            other => panic!("after restart, buy by {user} (in flight at the kill): {other:?}"),
        }
    }
    let state = client.item_until(&item, |s| s.sold == ids.len() as u64);
    assert_eq!(
        (state.sold, state.sold + state.remaining),
        (ids.len() as u64, STOCK),
        "after the in-flight users bought again, sold must count exactly the orders: {state:?}"
    );
    drop(client);
    service.stop_clean();
}

/// Record boundaries of a journal file: `(offset, payload length)` of each intact record.
fn records(path: &Path) -> Vec<(u64, u32)> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .expect("read journal");
    assert!(bytes.len() >= 16, "{} shorter than its header", path.display());
    assert_eq!(&bytes[..8], b"RCJOURNL", "{} header", path.display());
    let mut out = Vec::new();
    let mut at = 16usize;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let end = at + 8 + len as usize;
        if len == 0 || end > bytes.len() {
            break;
        }
        out.push((at as u64, len));
        at = end;
    }
    // After the records: nothing, or the journal's prepared space (zeros to the end).
    assert!(
        bytes[at..].iter().all(|&b| b == 0),
        "{} has a damaged tail before the test damaged it",
        path.display()
    );
    out
}

/// Lines of `stderr` that mention the journal and have no counterpart (digits aside) in
/// `clean`, the stderr of a start on intact journals.
fn damage_report(clean: &str, stderr: &str) -> Vec<String> {
    // Every run of digits becomes one '#'.
    let shape = |line: &str| -> String {
        let mut out = String::new();
        for c in line.chars() {
            if !c.is_ascii_digit() {
                out.push(c);
            } else if !out.ends_with('#') {
                out.push('#');
            }
        }
        out
    };
    let routine: HashSet<String> = clean.lines().map(shape).collect();
    stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("journal") && !routine.contains(&shape(l)))
        .map(str::to_owned)
        .collect()
}

/// Buys one unit for each user, sequentially; returns (user, order) in order.
fn buy_all(client: &mut Client, item: &str, users: &[String]) -> Vec<(String, String)> {
    users
        .iter()
        .map(|user| {
            let resp = client.buy(item, user).expect("buy");
            match outcome(&resp, item, user) {
                Outcome::Ordered(order) => (user.clone(), order),
                other => panic!("buy for {user}: {other:?}"),
            }
        })
        .collect()
}

/// After a restart on a damaged journal: the orders in `kept` are all there; of `maybe` (the
/// orders whose records may sit in the damaged tail), each is either there or unknown, and
/// the item's sold count matches exactly the orders present. Returns that count.
fn check_after_damage(
    service: &Service,
    item: &str,
    stock: u64,
    kept: &[(String, String)],
    maybe: &[(String, String)],
) -> u64 {
    let mut client = Client::new(service.addr());
    for (user, order) in kept {
        assert_order(&client.order(order), order, item, user);
    }
    let mut present = kept.len() as u64;
    for (user, order) in maybe {
        let resp = client.order(order);
        match resp.status {
            200 => {
                assert_order(&resp, order, item, user);
                present += 1;
            }
            404 => {}
            _ => panic!("GET /orders/{order} after the damage: {}", resp.describe()),
        }
    }
    let state = client.item_until(item, |s| s.sold == present);
    assert_eq!(
        (state.stock, state.sold, state.remaining),
        (stock, present, stock - present),
        "after restart on a damaged journal the item must count exactly the orders present"
    );
    // The kept users cannot buy again.
    for (user, order) in kept {
        let resp = client.buy(item, user).expect("repeat buy");
        assert_eq!(
            outcome(&resp, item, user),
            Outcome::AlreadyBought(order.clone()),
            "repeat buy by {user} after the damage: {}",
            resp.describe()
        );
    }
    present
}

#[test]
fn damaged_journal_tail_is_reported_and_earlier_orders_survive() {
    const STOCK: u64 = 100;

    let dir = TempDir::new("damage");
    // One core: one journal file holding every record in order.
    let config = Config::new(1, dir.path());
    let service = Service::start(&config);
    let item = unique("watch");
    let mut client = Client::new(service.addr());
    let put = client.put_item(&item, STOCK);
    assert_eq!(put.status, 201, "create item: {}", put.describe());
    let users: Vec<String> = (0..10).map(|i| format!("early-{i}")).collect();
    let first = buy_all(&mut client, &item, &users);
    drop(client);
    service.stop_clean();
    // What a start on intact journals says, to tell a damage report from routine lines.
    let clean_stderr = Service::start(&config).stop_clean();

    let journals = journal_sizes(dir.path());
    assert_eq!(
        journals.keys().collect::<Vec<_>>(),
        ["journal-0.log"],
        "one core writes one journal file"
    );
    let journal = dir.path().join("journal-0.log");
    let before = records(&journal);
    assert!(
        before.len() > users.len(),
        "journal holds {} records for an item and {} orders",
        before.len(),
        users.len()
    );

    // 1. Cut the last record short (an append torn by a crash): its last 3 bytes never
    // reached the disk, so the prepared zeros are still there.
    let (offset, len) = *before.last().expect("journal has records");
    let end = offset + 8 + u64::from(len);
    let mut f = OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("open journal");
    f.seek(SeekFrom::Start(end - 3)).unwrap();
    f.write_all(&[0u8; 3]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let service = Service::start(&config);
    let stderr = service.stderr_until(|s| !damage_report(&clean_stderr, s).is_empty());
    assert!(
        !damage_report(&clean_stderr, &stderr).is_empty(),
        "restart on a torn journal: stderr says nothing about the journal beyond what an intact \
         start says ({clean_stderr:?}):\n{stderr}"
    );
    eprintln!("damage report: {:?}", damage_report(&clean_stderr, &stderr));
    // The last record may be the last order or something written after it; every earlier
    // order is certainly intact.
    let (kept, maybe) = first.split_at(first.len() - 1);
    let present = check_after_damage(&service, &item, STOCK, kept, maybe);

    // The service goes on appending after the cut: more orders, then stop.
    let mut client = Client::new(service.addr());
    let users: Vec<String> = (0..5).map(|i| format!("later-{i}")).collect();
    let second = buy_all(&mut client, &item, &users);
    drop(client);
    service.stop_clean();

    // 2. Flip a byte in the payload of the last record (corruption the CRC catches).
    let recs = records(&journal);
    let (offset, len) = *recs.last().expect("journal has records");
    let target = offset + 8 + u64::from(len) / 2;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&journal)
        .expect("open journal");
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(target)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(target)).unwrap();
    f.write_all(&[byte[0] ^ 0x5a]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let service = Service::start(&config);
    let stderr = service.stderr_until(|s| !damage_report(&clean_stderr, s).is_empty());
    assert!(
        !damage_report(&clean_stderr, &stderr).is_empty(),
        "restart on a corrupt journal record: stderr says nothing about the journal beyond what an intact \
         start says ({clean_stderr:?}):\n{stderr}"
    );
    eprintln!("damage report: {:?}", damage_report(&clean_stderr, &stderr));
    // Kept: the orders that survived the first damage, and the later orders but the last.
    let mut kept: Vec<(String, String)> = first[..first.len() - 1].to_vec();
    let mut client = Client::new(service.addr());
    for (user, order) in maybe {
        if client.order(order).status == 200 {
            kept.push((user.clone(), order.clone()));
        }
    }
    assert_eq!(
        kept.len() as u64,
        present,
        "orders present changed between restarts"
    );
    kept.extend_from_slice(&second[..second.len() - 1]);
    let maybe = &second[second.len() - 1..];
    check_after_damage(&service, &item, STOCK, &kept, maybe);

    // Still serving: a new buyer gets an order that is readable.
    let resp = client.buy(&item, "after-repair").expect("buy after repair");
    match outcome(&resp, &item, "after-repair") {
        Outcome::Ordered(order) => assert_order(&client.order(&order), &order, &item, "after-repair"),
        other => panic!("buy after the repaired restart: {other:?}"),
    }
    drop(client);
    service.stop_clean();
}
