//! A private Redis Cluster for one test: three masters (`redis-server --cluster-enabled yes`,
//! durable: `appendonly yes`, `appendfsync always`, each in a fresh temporary `--dir`) joined
//! with `redis-cli --cluster create`, on free 127.0.0.1 ports (client and cluster-bus port
//! each picked free), killed by their own PIDs when the guard drops.
//!
//! [`RedisCluster::move_slot`] migrates one slot to another master by hand (`CLUSTER SETSLOT
//! IMPORTING/MIGRATING`, `MIGRATE` of the keys in small steps, `CLUSTER SETSLOT NODE`), as
//! `redis-cli --cluster reshard` does, so clients meet `ASK`, `TRYAGAIN` and then `MOVED`.
//!
//! No `redis-server` / `redis-cli` on PATH is a test failure, not a skip: CI installs them.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One node (master or replica).
pub(crate) struct Node {
    child: Child,
    pub(crate) port: u16,
    bus: u16,
    dir: PathBuf,
    /// Killed by [`RedisCluster::kill9`]: the helpers no longer ask it anything.
    dead: bool,
}

/// Three masters; every node killed on drop.
pub(crate) struct RedisCluster {
    pub(crate) nodes: Vec<Node>,
}

impl Node {
    /// Waits (at most 10 s) until this node's own process answers on its port; `false` if
    /// it exited (reaped) or another process answers there.
    fn answers(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let me = format!("process_id:{}", self.child.id());
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let out = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "INFO", "server"])
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): apt-get install redis-tools"));
            let info = String::from_utf8_lossy(&out.stdout);
            if info.lines().any(|l| l.trim() == me) {
                return true;
            }
            if info.contains("process_id:") {
                // Another process's server on our port: ours cannot bind it.
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer in 10 s", self.port);
    }
}

/// A port free now that `used` does not hold yet (two picks in a row may return the same).
fn fresh_port(used: &mut HashSet<u16>) -> u16 {
    loop {
        let p = free_port();
        if used.insert(p) {
            return p;
        }
    }
}

/// One durable cluster node on `port` (bus port `bus`), its files in `dir`.
fn spawn_node(port: u16, bus: u16, dir: &std::path::Path) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()])
        .args([
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run redis-server ({e}): apt-get install redis-server"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `redis-cli -p port args...`, its trimmed stdout; panics if it fails.
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): apt-get install redis-tools"));
    assert!(
        out.status.success(),
        "redis-cli -p {port} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl RedisCluster {
    /// Starts three durable masters and joins them into one cluster; returns once every node
    /// says `cluster_state:ok` (bounded: panics after 30 s).
    pub(crate) fn start() -> RedisCluster {
        RedisCluster::start_with(0)
    }

    /// Like [`RedisCluster::start`], with `replicas` durable replicas per master; returns once
    /// every replica's link to its master is up as well.
    pub(crate) fn start_with(replicas: usize) -> RedisCluster {
        let mut nodes = Vec::new();
        let mut used = HashSet::new();
        for i in 0..3 * (1 + replicas) {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "flash-sale-cluster-{}-{}-{i}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("cluster node dir");
            let (port, bus) = (fresh_port(&mut used), fresh_port(&mut used));
            nodes.push(Node {
                child: spawn_node(port, bus, &dir),
                port,
                bus,
                dir,
                dead: false,
            });
        }
        let mut cluster = RedisCluster { nodes };
        // A port found free may be taken before the node binds it (other tests pick ports
        // too): a node that exits instead of answering starts again on new ports.
        for n in &mut cluster.nodes {
            let mut attempt = 0;
            while !n.answers() {
                attempt += 1;
                assert!(
                    attempt < 5,
                    "redis-server on port {} did not start in 5 tries",
                    n.port
                );
                n.port = fresh_port(&mut used);
                n.bus = fresh_port(&mut used);
                n.child = spawn_node(n.port, n.bus, &n.dir);
            }
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for n in &cluster.nodes {
            cluster.wait(&format!("node {} cluster_state:ok", n.port), || {
                cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
            if cli(n.port, &["ROLE"]).starts_with("slave") {
                cluster.wait(&format!("replica {} in sync", n.port), || {
                    cli(n.port, &["INFO", "replication"]).contains("master_link_status:up")
                });
            }
        }
        cluster
    }

    /// The port of a replica of the master on `master`.
    pub(crate) fn replica_of(&self, master: u16) -> u16 {
        let id = cli(master, &["CLUSTER", "MYID"]);
        let nodes = cli(master, &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[2].contains("slave") && f[3] == id)
            .and_then(|f| f[1].split([':', '@']).nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no replica of {master} in {nodes}"))
    }

    /// `CLUSTER FAILOVER` on the replica on `replica` (a manual failover: the replica catches
    /// up with its master, then takes its slots); returns once every master sees it own
    /// `slot` (bounded: panics after 30 s).
    pub(crate) fn failover(&self, replica: u16, slot: u16) {
        cli(replica, &["CLUSTER", "FAILOVER"]);
        self.wait(&format!("failover to {replica}"), || {
            self.nodes
                .iter()
                .filter(|n| cli(n.port, &["ROLE"]).starts_with("master"))
                .all(|n| self.owner_seen_by(n.port, slot) == Some(replica))
        });
    }

    /// `redis-cluster://` with every node as a seed.
    pub(crate) fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", addrs.join(","))
    }

    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "redis cluster: no {what} in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub(crate) fn slot(&self, key: &str) -> u16 {
        cli(
            self.live().next().expect("a live node"),
            &["CLUSTER", "KEYSLOT", key],
        )
        .parse()
        .expect("CLUSTER KEYSLOT")
    }

    /// The port of the master serving `slot`, as the first master sees it.
    pub(crate) fn owner(&self, slot: u16) -> u16 {
        let master = self
            .live()
            .find(|p| cli(*p, &["ROLE"]).starts_with("master"))
            .expect("a master");
        self.owner_seen_by(master, slot)
            .unwrap_or_else(|| panic!("no owner of slot {slot} seen by {master}"))
    }

    /// The port of the master serving `slot`, as the node on `port` sees it.
    fn owner_seen_by(&self, port: u16, slot: u16) -> Option<u16> {
        let nodes = cli(port, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 8 || !f[2].contains("master") {
                continue;
            }
            let Some(node) = f[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok()) else {
                continue;
            };
            for range in &f[8..] {
                if range.starts_with('[') {
                    continue;
                }
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    if (a..=b).contains(&slot) {
                        return Some(node);
                    }
                }
            }
        }
        None
    }

    /// Migrates `slot` from its owner to `to` (a port), `step` keys per `MIGRATE` with
    /// `pause` between them, then gives the slot to `to` on every node. `on_migrating` runs
    /// once both sides are in the migrating state, before the first key moves. Returns how
    /// many keys moved.
    pub(crate) fn move_slot(
        &self,
        slot: u16,
        to: u16,
        step: usize,
        pause: Duration,
        on_migrating: impl FnOnce(),
    ) -> usize {
        let from = self.owner(slot);
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let id = |port| cli(port, &["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from), id(to));
        let s = slot.to_string();
        cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
        cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
        on_migrating();
        let mut moved = 0;
        // Bounded: each round moves `step` keys; buyers add at most a few per round.
        for _ in 0..10_000 {
            let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &s, &step.to_string()]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(&keys);
            cli(from, &args);
            moved += keys.len();
            std::thread::sleep(pause);
        }
        for n in &self.nodes {
            cli(n.port, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        }
        moved
    }
}

impl RedisCluster {
    /// SIGSTOP to the node on `port`: it stalls, connections stay open, nothing is answered
    /// (SIGKILL on drop still ends it).
    pub(crate) fn stall(&self, port: u16) {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        let pid = libc::pid_t::try_from(node.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with the PID of our own child, not yet reaped (so the PID cannot have
        // been reused), and a valid signal number.
        let rc = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(rc, 0, "SIGSTOP {pid}");
    }
}

impl RedisCluster {
    /// The ports of the nodes not killed.
    pub(crate) fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes.iter().filter(|n| !n.dead).map(|n| n.port)
    }

    /// SIGKILL to the node on `port` (a crash: no shutdown, no last words to its replicas),
    /// reaped at once.
    pub(crate) fn kill9(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        // `Child::kill` sends SIGKILL to exactly this child's PID.
        node.child.kill().expect("SIGKILL redis-server");
        node.child.wait().expect("reap redis-server");
        node.dead = true;
    }

    /// Starts the node killed on `port` again, on its ports and files (so with its cluster
    /// identity: a master that was failed over rejoins as a replica of the node that took
    /// its slots); returns once it is a replica whose link to its master is up and its
    /// master counts it `online` (bounded: panics after 30 s).
    pub(crate) fn restart_as_replica(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port && n.dead)
            .expect("a killed node of this cluster");
        node.child = spawn_node(node.port, node.bus, &node.dir);
        node.dead = false;
        self.wait(&format!("node {port} back as a replica in sync"), || {
            Command::new("redis-cli")
                .args(["-p", &port.to_string(), "INFO", "replication"])
                .output()
                .is_ok_and(|o| {
                    let info = String::from_utf8_lossy(&o.stdout);
                    info.contains("role:slave") && info.contains("master_link_status:up")
                })
        });
        let master: u16 = cli(port, &["INFO", "replication"])
            .lines()
            .find_map(|l| l.trim().strip_prefix("master_port:")?.parse().ok())
            .expect("a replica names its master's port");
        let online = format!("port={port},state=online");
        self.wait(&format!("master {master} counts {port} online"), || {
            cli(master, &["INFO", "replication"]).contains(&online)
        });
    }

    /// Waits (bounded: panics after 30 s) until the replica on `replica` has taken over
    /// `slot` by an automatic failover: every live node says `cluster_state:ok` and every
    /// live master sees `replica` own the slot.
    pub(crate) fn wait_promoted(&self, replica: u16, slot: u16) {
        self.wait(&format!("automatic failover of slot {slot} to {replica}"), || {
            self.live().all(|p| {
                cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    && (!cli(p, &["ROLE"]).starts_with("master")
                        || self.owner_seen_by(p, slot) == Some(replica))
            })
        });
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            // `Child::kill` sends SIGKILL to exactly this child's PID.
            let _ = n.child.kill();
            let _ = n.child.wait();
            let _ = std::fs::remove_dir_all(&n.dir);
        }
    }
}
