//! `flash-sale serve` under operational faults, black-box over the binary: a disk that fills
//! up while buyers retry (no oversell, no user with two orders, every 200 durable; buys
//! succeed again once space is freed, without a restart; `/healthz` tells), and a second
//! process on the same data dir or address (refused at start; the first loses nothing).
//!
//! The full disk is a 4 MiB tmpfs that the test mounts and fills with a filler file, where
//! mounting is allowed (root); elsewhere the service runs with SIGXFSZ ignored and the test
//! sets its `RLIMIT_FSIZE` (prlimit on its PID) just above the journals' sizes: the journal
//! then meets EFBIG after a short write, the same fault seen from the process. The test
//! prints which one it used. The journals prepare their space in small steps here, so the
//! fault stops a growth of the prepared space (the buys refused meanwhile, `/healthz`
//! naming it) or, for a batch that no longer fits it, the batch's own write.

mod support_service;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support_service::{outcome, Client, Config, Outcome, Service, TempDir};

/// How long buyers keep retrying against the full disk.
const FULL_PHASE: Duration = Duration::from_millis(1500);
/// How long a freed disk may take to be noticed (the journal probes with back-off up to 1 s).
const RECOVERY_LIMIT: Duration = Duration::from_secs(5);
const BUYERS: usize = 4;
const STOCK: u64 = 200;

/// A data dir whose disk the test can fill and free.
enum SmallDisk {
    Tmpfs { mount: PathBuf, filler: PathBuf },
    Fsize,
}

impl SmallDisk {
    fn new(tmp: &TempDir) -> SmallDisk {
        let mount = tmp.path().join("mnt");
        std::fs::create_dir_all(&mount).expect("mount point");
        // FLASH_SALE_TEST_FSIZE=1 takes the RLIMIT_FSIZE path even where mounting works.
        let mounted = std::env::var_os("FLASH_SALE_TEST_FSIZE").is_none()
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
                .arg(&mount)
                .status()
                .is_ok_and(|s| s.success());
        if mounted {
            eprintln!("disk full: a 4 MiB tmpfs at {}", mount.display());
            SmallDisk::Tmpfs {
                filler: mount.join("filler"),
                mount,
            }
        } else {
            eprintln!("disk full: mounting not allowed here; RLIMIT_FSIZE on the service instead");
            SmallDisk::Fsize
        }
    }

    fn data_dir(&self, tmp: &TempDir) -> PathBuf {
        match self {
            SmallDisk::Tmpfs { mount, .. } => mount.join("data"),
            SmallDisk::Fsize => tmp.path().join("data"),
        }
    }

    /// Leaves no room for more than a few records past what the journals hold now.
    fn fill(&self, pid: u32, data: &Path) {
        match self {
            SmallDisk::Tmpfs { filler, .. } => {
                let mut f = std::fs::File::create(filler).expect("create filler");
                for chunk in [64 * 1024, 4096, 512] {
                    let block = vec![0xabu8; chunk];
                    while f.write_all(&block).is_ok() {}
                }
            }
            SmallDisk::Fsize => {
                let largest = journal_sizes(data).into_iter().max().unwrap_or(0);
                set_fsize(pid, largest + 1500);
            }
        }
    }

    fn free(&self, pid: u32) {
        match self {
            SmallDisk::Tmpfs { filler, .. } => std::fs::remove_file(filler).expect("remove filler"),
            SmallDisk::Fsize => set_fsize(pid, libc::RLIM_INFINITY),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let SmallDisk::Tmpfs { mount, .. } = self {
            let _ = Command::new("umount").arg("-l").arg(&*mount).status();
        }
    }
}

fn journal_sizes(dir: &Path) -> Vec<u64> {
    support_service::journal_sizes(dir).into_values().collect()
}

fn set_fsize(pid: u32, limit: u64) {
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = libc::pid_t::try_from(pid).expect("pid");
    // SAFETY: prlimit(2) on our own child's PID with a valid rlimit that outlives the call.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// What the buyers saw.
#[derive(Default)]
struct Tally {
    /// user -> order, for every 200.
    orders: HashMap<String, String>,
    unavailable: u64,
}

/// `BUYERS` threads buy for distinct users until `until`, retrying each user's 503s (which
/// must carry `Retry-After`) until a 200 or a 409.
fn buy_until(addr: std::net::SocketAddr, round: &str, until: Instant, tally: &Arc<Mutex<Tally>>) {
    let threads: Vec<_> = (0..BUYERS)
        .map(|t| {
            let (tally, round) = (tally.clone(), round.to_string());
            thread::spawn(move || {
                let mut client = Client::new(addr);
                let mut i = 0;
                while Instant::now() < until {
                    let user = format!("{round}-{t}-{i}");
                    i += 1;
                    loop {
                        let resp = client.buy_once("gift", &user).expect("buy");
                        match outcome(&resp, "gift", &user) {
                            Outcome::Ordered(o) => {
                                let mut t = tally.lock().unwrap();
                                assert!(t.orders.insert(user.clone(), o).is_none(), "{user} got two 200s");
                                break;
                            }
                            Outcome::SoldOut => return,
                            Outcome::Throttled(503) => {
                                assert!(resp.header("retry-after").is_some(), "503 without Retry-After");
                                tally.lock().unwrap().unavailable += 1;
                                if Instant::now() >= until {
                                    break;
                                }
                                thread::sleep(Duration::from_millis(20));
                            }
                            other => panic!("buy for {user}: {other:?} ({})", resp.describe()),
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("buyer");
    }
}

fn healthz(client: &mut Client) -> (u16, serde_json::Value) {
    let resp = client.must_get("/healthz");
    (resp.status, resp.json())
}

#[test]
fn a_full_disk_never_oversells_and_recovers_without_a_restart() {
    let tmp = TempDir::new("diskfull");
    let disk = SmallDisk::new(&tmp);
    let data = disk.data_dir(&tmp);
    let mut cfg = Config::new(2, &data);
    cfg.ignore_sigxfsz = matches!(disk, SmallDisk::Fsize);
    // The per-user limit is not under test; retries of one user must not meet it.
    cfg.extra_args = vec!["--user-rate".into(), "1000".into()];
    // Two pages of prepared space per step, so the journals need more of the disk every ~40
    // orders and the full disk stops a growth during the test (a 16 MiB step would not fit
    // the 4 MiB disk at all).
    cfg.extra_args
        .extend(["--journal-prealloc".into(), "8192".into()]);
    let svc = Service::start(&cfg);
    let mut admin = Client::new(svc.addr());
    assert_eq!(admin.put_item("gift", STOCK).status, 201);
    let (status, body) = healthz(&mut admin);
    assert_eq!(
        (status, &body["status"]),
        (200, &serde_json::json!("ok")),
        "{body}"
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    for i in 0..10 {
        let user = format!("warm-{i}");
        let resp = admin.buy("gift", &user).expect("buy");
        match outcome(&resp, "gift", &user) {
            Outcome::Ordered(o) => tally.lock().unwrap().orders.insert(user, o),
            other => panic!("buy before the disk filled: {other:?}"),
        };
    }

    disk.fill(svc.pid(), &data);
    buy_until(svc.addr(), "full", Instant::now() + FULL_PHASE, &tally);
    let (status, body) = healthz(&mut admin);
    assert_eq!(status, 503, "/healthz while the disk is full: {body}");
    let failing = body["failing"].as_array().expect("failing parts");
    assert!(
        failing
            .iter()
            .any(|p| p["part"].as_str().is_some_and(|s| s.starts_with("journal-"))
                && p["since_unix_ms"].as_u64().is_some()
                && p["error"].as_str().is_some_and(|e| !e.is_empty())),
        "/healthz names the failing journal, its error and since when: {body}"
    );
    // With small steps the full disk is met by the growth of the prepared space, before any
    // batch runs out of it: buys are refused while the prepared space still takes batches.
    assert!(
        failing
            .iter()
            .any(|p| p["error"].as_str().is_some_and(|e| e.contains("preparing space"))),
        "/healthz names the failed growth: {body}"
    );
    let metrics = admin.must_get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("flash_sale_part_failing{part=\"journal-") && l.ends_with(" 1")),
        "/metrics shows the failing journal"
    );
    let during_full = tally.lock().unwrap().unavailable;
    assert!(during_full > 0, "the disk was full but no buy was refused");

    disk.free(svc.pid());
    let deadline = Instant::now() + RECOVERY_LIMIT;
    loop {
        let (status, body) = healthz(&mut admin);
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still {status} {RECOVERY_LIMIT:?} after space was freed: {body}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let sold_before_free = tally.lock().unwrap().orders.len();
    buy_until(
        svc.addr(),
        "freed",
        Instant::now() + Duration::from_secs(2),
        &tally,
    );
    let acked: HashMap<String, String> = tally.lock().unwrap().orders.clone();
    assert!(
        acked.len() > sold_before_free,
        "no buy succeeded after space was freed ({} orders before, {} after)",
        sold_before_free,
        acked.len()
    );
    let ids: HashSet<&String> = acked.values().collect();
    assert_eq!(ids.len(), acked.len(), "an order id was given twice");
    assert!(
        acked.len() as u64 <= STOCK,
        "{} orders acknowledged for a stock of {STOCK}",
        acked.len()
    );
    let live = admin.item_until("gift", |s| s.sold == acked.len() as u64);
    assert_eq!(
        live.sold,
        acked.len() as u64,
        "sold (live) vs orders acknowledged"
    );
    eprintln!(
        "disk full: {} orders acknowledged ({} before the disk filled), {} buys answered 503",
        acked.len(),
        10,
        during_full
    );
    svc.stop_clean();

    // After a restart, exactly the acknowledged orders are there: none lost, none that was
    // answered 503 (whose unit was sold again) counted on top.
    let svc = Service::start(&cfg);
    let mut client = Client::new(svc.addr());
    let after = client.item_until("gift", |s| s.sold == acked.len() as u64);
    assert_eq!(after.stock, STOCK);
    assert_eq!(
        after.sold,
        acked.len() as u64,
        "after a restart: sold {} but {} orders were acknowledged",
        after.sold,
        acked.len()
    );
    for (user, order) in &acked {
        support_service::assert_order(&client.order(order), order, "gift", user);
        let again = client.buy_once("gift", user).expect("buy again");
        assert_eq!(
            outcome(&again, "gift", user),
            Outcome::AlreadyBought(order.clone()),
            "{user} bought again after the restart"
        );
    }
    svc.stop_clean();
    drop(disk);
}

#[test]
fn a_second_process_on_the_same_data_dir_or_address_is_refused() {
    let tmp = TempDir::new("double");
    let first = Service::start(&Config::new(1, tmp.path()));
    let mut client = Client::new(first.addr());
    assert_eq!(client.put_item("gift", 50).status, 201);
    let mut acked = Vec::new();
    for i in 0..10 {
        let user = format!("first-{i}");
        let resp = client.buy("gift", &user).expect("buy");
        match outcome(&resp, "gift", &user) {
            Outcome::Ordered(o) => acked.push((user, o)),
            other => panic!("buy: {other:?}"),
        }
    }

    // Same data dir, any port: the lock says who holds it.
    let (status, err) = Service::start_refused(&Config::new(1, tmp.path()));
    assert!(!status.success(), "second serve on the same data dir: {status}");
    assert!(
        err.contains(&tmp.path().display().to_string()) && err.contains(&format!("PID {}", first.pid())),
        "the refusal names the data dir and the holder's PID: {err}"
    );

    // Another data dir, the same address: refused, unless sharing is asked for.
    let other = TempDir::new("double-other");
    let mut same_addr = Config::new(1, other.path());
    same_addr.addr = Some(first.addr().to_string());
    let (status, err) = Service::start_refused(&same_addr);
    assert!(!status.success());
    assert!(
        err.contains(&first.addr().to_string()) && err.contains("--share-addr"),
        "the refusal names the address and the flag: {err}"
    );
    same_addr.extra_args = vec!["--share-addr".into()];
    let shared = Service::start(&same_addr);
    assert_eq!(shared.addr(), first.addr());
    shared.stop_clean();

    // A data dir that is a plain file.
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write file");
    let (status, err) = Service::start_refused(&Config::new(1, &file));
    assert!(!status.success());
    assert!(err.contains("not a directory"), "{err}");

    // The first one kept serving and lost nothing.
    for i in 0..10 {
        let user = format!("second-{i}");
        let resp = client.buy("gift", &user).expect("buy");
        match outcome(&resp, "gift", &user) {
            Outcome::Ordered(o) => acked.push((user, o)),
            other => panic!("buy after the refused starts: {other:?}"),
        }
    }
    first.stop_clean();
    let again = Service::start(&Config::new(1, tmp.path()));
    let mut client = Client::new(again.addr());
    let state = client.item_until("gift", |s| s.sold == acked.len() as u64);
    assert_eq!(state.sold, acked.len() as u64);
    for (user, order) in &acked {
        support_service::assert_order(&client.order(order), order, "gift", user);
    }
    again.stop_clean();
}
