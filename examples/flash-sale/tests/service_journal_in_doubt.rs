//! The journal's *in doubt* path, over the binary with real faults: a group commit whose
//! write fails **and** whose cut back to the last durable batch (`ftruncate`) fails too.
//!
//! The write fails because the test lowers the service's `RLIMIT_FSIZE` (prlimit on its PID;
//! the service runs with SIGXFSZ ignored) just past the journal's length: the batch's write
//! stops short there and the rest fails with EFBIG, leaving part of a record in the file. The
//! cut fails because the test first sets the append-only attribute on the journal file
//! (`chattr +a`: writes through the open descriptor still work, `ftruncate` fails with EPERM).
//! The buy is then answered 503 "in doubt" (the record may be on disk, so its unit and the
//! user's mark are held), `/healthz` names the journal, and nothing is sold meanwhile. Once the
//! test clears both faults, the journal's probe cuts the partial record off (resolving the
//! doubt: the unit and the mark come back), `/healthz` turns 200 without a restart, the same
//! user's retry buys, and a restart replays exactly the orders answered 200.
//!
//! `chattr +a` needs root (`CAP_LINUX_IMMUTABLE`) and a file system with the attribute under
//! the temporary directory (ext4, xfs, btrfs, tmpfs): where it is refused the test fails and
//! says so, as a missing `redis-server` does elsewhere.

mod support_service;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support_service::{assert_order, Client, Config, Service, TempDir};

/// How long a cleared fault may take to be noticed (the probe backs off up to 1 s).
const RECOVERY_LIMIT: Duration = Duration::from_secs(5);

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

fn chattr(flag: &str, file: &Path) {
    let out = Command::new("chattr")
        .arg(flag)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run chattr ({e}): apt-get install e2fsprogs"));
    assert!(
        out.status.success(),
        "chattr {flag} {}: {} (this test needs root with CAP_LINUX_IMMUTABLE and a file \
         system with the append-only attribute under the temporary directory)",
        file.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Clears the append-only attribute even when an assertion fails, so the directory can go.
struct AppendOnly<'a>(&'a Path);

impl Drop for AppendOnly<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-a").arg(self.0).status();
    }
}

fn len(file: &Path) -> u64 {
    std::fs::metadata(file).expect("journal metadata").len()
}

#[test]
fn a_batch_that_cannot_be_cut_off_is_held_in_doubt_until_the_disk_recovers() {
    let tmp = TempDir::new("journal-doubt");
    let mut cfg = Config::new(1, tmp.path());
    cfg.ignore_sigxfsz = true;
    // The fault needs a batch that extends the file (RLIMIT_FSIZE cuts it short): without
    // preallocation every batch does. (With it, a batch overwrites prepared space below the
    // limit and the limit stops the growth instead: `service_faults.rs`.)
    cfg.extra_args = vec!["--journal-prealloc".into(), "0".into()];
    let svc = Service::start(&cfg);
    let mut client = Client::new(svc.addr());
    assert_eq!(client.put_item("gift", 5).status, 201);
    let first = client.buy_once("gift", "ann").expect("buy");
    assert_eq!(first.status, 200, "{}", first.describe());
    let ann = first.str_field("order").expect("ann's order id");

    let journal = tmp.path().join("journal-0.log");
    let durable = len(&journal);
    chattr("+a", &journal);
    let guard = AppendOnly(&journal);
    // Room for a few bytes of the next record, not for all of it.
    set_fsize(svc.pid(), durable + 16);

    let doubt = client.buy_once("gift", "bob").expect("buy");
    assert_eq!(doubt.status, 503, "{}", doubt.describe());
    assert!(doubt.header("retry-after").is_some(), "{}", doubt.describe());
    let detail = doubt.str_field("detail").unwrap_or_default();
    assert!(
        detail.contains("in doubt"),
        "the cut failed, so the buy is in doubt: {detail}"
    );
    assert_eq!(
        len(&journal),
        durable + 16,
        "the short write stays in the file: it could not be cut off"
    );
    let retry = client.buy_once("gift", "bob").expect("retry");
    assert_eq!(retry.status, 503, "retry while in doubt: {}", retry.describe());
    let other = client.buy_once("gift", "cy").expect("buy");
    assert_eq!(
        other.status,
        503,
        "nothing is sold while the journal is stopped: {}",
        other.describe()
    );
    let health = client.must_get("/healthz");
    assert_eq!(health.status, 503, "{}", health.describe());
    assert!(health.text().contains("journal-0"), "{}", health.text());
    // Held, not lost and not sold: the probe keeps failing while the cut is refused.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client.must_get("/healthz").status, 503, "still in doubt");

    drop(guard);
    set_fsize(svc.pid(), libc::RLIM_INFINITY);
    let started = Instant::now();
    while client.must_get("/healthz").status != 200 {
        assert!(
            started.elapsed() < RECOVERY_LIMIT,
            "/healthz still failing {RECOVERY_LIMIT:?} after the faults were cleared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(len(&journal), durable, "the probe cut the partial record off");
    // The doubt resolved as "not written": bob's mark and the unit came back.
    let bought = client.buy("gift", "bob").expect("buy");
    assert_eq!(bought.status, 200, "bob after recovery: {}", bought.describe());
    let bob = bought.str_field("order").expect("bob's order id");
    let state = client.item_until("gift", |s| s.sold == 2);
    assert_eq!((state.stock, state.sold, state.remaining), (5, 2, 3));
    drop(client);
    svc.stop_clean();

    // A restart replays exactly the two orders answered 200, with no torn tail to cut.
    let svc = Service::start(&Config::new(1, tmp.path()));
    let mut client = Client::new(svc.addr());
    let state = client.item_until("gift", |s| s.sold == 2);
    assert_eq!((state.stock, state.sold, state.remaining), (5, 2, 3));
    assert_order(&client.order(&ann), &ann, "gift", "ann");
    assert_order(&client.order(&bob), &bob, "gift", "bob");
    drop(client);
    svc.stop_clean();
}
