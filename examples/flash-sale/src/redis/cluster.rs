//! A Redis Cluster client on the runtime: the slot map, one [`Client`] per node (so one
//! connection per node per core), and redirections followed.
//!
//! - **Slot map.** `CLUSTER SLOTS`, asked of a known node (the seeds of the URL first time),
//!   at start, after every `MOVED`, after a connection failure, and every
//!   [`REFRESH_EVERY`] by a background task (which ends when the client is dropped).
//! - **Routing.** A command is sent to the master of its key's slot
//!   ([`key_slot`]: CRC16 of the key or its hash tag).
//! - **`MOVED slot host:port`**: the slot has a new owner for good: the map is corrected at
//!   once for that slot, a full refresh is started in the background, and the command is
//!   sent again to the new owner.
//! - **`ASK slot host:port`**: the slot is being migrated and this key is already on the
//!   target: the command is sent once to the target, preceded by `ASKING` in the same write;
//!   the map is not changed.
//! - **`TRYAGAIN`** (a multi-key command during a migration, keys split between the two
//!   nodes): sent again after [`TRYAGAIN_WAIT`].
//!
//! At most [`MAX_REDIRECTS`] redirections per command; every node call has the client's
//! deadline, and the caller ([`crate::service`]'s Redis calls) bounds the whole command by
//! it as well: a node that is down answers a connection error at once (or a timeout at the
//! deadline), never a hang.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::{Rc, Weak};
use std::time::Duration;

use ringcore_runtime::spawn_local;
use ringcore_runtime::time::sleep;

use super::client::{parse_url, Client, RedisError};
use super::resp::Value;
use super::slot::key_slot;

/// How often the slot map is read again when nothing asked for it.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// The most redirections (`MOVED`, `ASK`, `TRYAGAIN`) one command follows.
pub const MAX_REDIRECTS: usize = 6;

/// The wait before a command that got `TRYAGAIN` is sent again.
pub const TRYAGAIN_WAIT: Duration = Duration::from_millis(20);

/// The seeds of a `redis-cluster://host:port[,host:port...]` URL, as `host:port` strings.
pub fn parse_cluster_url(url: &str) -> io::Result<Vec<String>> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("redis cluster URL {url:?}: {why}; expected redis-cluster://host:port[,host:port...]"),
        )
    };
    let rest = url
        .strip_prefix("redis-cluster://")
        .ok_or_else(|| bad("scheme must be redis-cluster://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(bad("no node"));
    }
    rest.split(',')
        .map(|node| {
            let (host, port) = parse_url(&format!("redis://{node}")).map_err(|e| bad(&e.to_string()))?;
            Ok(addr_of(&host, port))
        })
        .collect()
}

/// `host:port`, with brackets around an IPv6 host.
fn addr_of(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Which master serves which slots: sorted, non-overlapping `(first, last, node)` ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct SlotMap {
    ranges: Vec<(u16, u16, Rc<str>)>,
}

impl SlotMap {
    fn owner(&self, slot: u16) -> Option<&Rc<str>> {
        let i = self.ranges.partition_point(|(_, last, _)| *last < slot);
        self.ranges
            .get(i)
            .filter(|(first, _, _)| *first <= slot)
            .map(|(_, _, node)| node)
    }

    /// Gives one slot to `node` (after a `MOVED`), splitting the range that held it.
    fn set(&mut self, slot: u16, node: &str) {
        let node: Rc<str> = Rc::from(node);
        let mut next = Vec::with_capacity(self.ranges.len() + 2);
        for (first, last, owner) in self.ranges.drain(..) {
            if slot < first || slot > last {
                next.push((first, last, owner));
                continue;
            }
            if first < slot {
                next.push((first, slot - 1, owner.clone()));
            }
            next.push((slot, slot, node.clone()));
            if slot < last {
                next.push((slot + 1, last, owner));
            }
        }
        if !next.iter().any(|(f, _, _)| *f == slot) {
            let i = next.partition_point(|(f, _, _)| *f < slot);
            next.insert(i, (slot, slot, node));
        }
        self.ranges = next;
    }

    /// The masters, each once.
    fn masters(&self) -> Vec<Rc<str>> {
        let mut out: Vec<Rc<str>> = Vec::new();
        for (_, _, node) in &self.ranges {
            if !out.contains(node) {
                out.push(node.clone());
            }
        }
        out
    }

    /// Parses a `CLUSTER SLOTS` reply; `asked` is the `host:port` that answered (a node
    /// that does not know its own address reports an empty host).
    fn parse(reply: &Value, asked: &str) -> io::Result<SlotMap> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("redis cluster: unexpected CLUSTER SLOTS reply from {asked}: {reply:?}"),
            )
        };
        let Value::Array(entries) = reply else {
            return Err(bad());
        };
        let asked_host = asked
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or(asked);
        let mut ranges = Vec::with_capacity(entries.len());
        for e in entries {
            let Value::Array(parts) = e else {
                return Err(bad());
            };
            let slot = |v: Option<&Value>| {
                v.and_then(Value::as_int)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n < super::slot::SLOTS)
                    .ok_or_else(bad)
            };
            let (first, last) = (slot(parts.first())?, slot(parts.get(1))?);
            let Some(Value::Array(master)) = parts.get(2) else {
                return Err(bad());
            };
            let host = master.first().and_then(Value::as_str).ok_or_else(bad)?;
            let host = if host.is_empty() || host == "?" {
                asked_host
            } else {
                host
            };
            let port = master
                .get(1)
                .and_then(Value::as_int)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(bad)?;
            if first > last {
                return Err(bad());
            }
            ranges.push((first, last, Rc::from(addr_of(host, port))));
        }
        ranges.sort_by_key(|(first, _, _)| *first);
        Ok(SlotMap { ranges })
    }
}

/// What a redirection error says.
#[derive(Debug, PartialEq, Eq)]
enum Redirect {
    Moved { slot: u16, node: String },
    Ask { node: String },
    TryAgain,
}

impl Redirect {
    fn of(e: &io::Error) -> Option<Redirect> {
        let msg = RedisError::of(e)?.message();
        let mut words = msg.split(' ');
        let code = words.next()?;
        if code == "TRYAGAIN" {
            return Some(Redirect::TryAgain);
        }
        let slot = words.next()?.parse::<u16>().ok()?;
        let node = words.next()?.to_owned();
        match code {
            "MOVED" => Some(Redirect::Moved { slot, node }),
            "ASK" => Some(Redirect::Ask { node }),
            _ => None,
        }
    }
}

/// A Redis Cluster, for one core (`!Send`; open one per core).
pub struct ClusterClient {
    me: Weak<ClusterClient>,
    seeds: Vec<String>,
    deadline: Duration,
    nodes: RefCell<HashMap<String, Rc<Client>>>,
    map: RefCell<SlotMap>,
    refreshing: Cell<bool>,
    redirects: Cell<u64>,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("seeds", &self.seeds)
            .field("deadline", &self.deadline)
            .field("masters", &self.map.borrow().masters())
            .finish()
    }
}

impl ClusterClient {
    /// Connects to the cluster of `redis-cluster://host:port[,host:port...]`: reads the
    /// slot map from the first seed that answers, and starts the refresh task on this core.
    /// Every node call is bounded by `deadline`.
    pub async fn connect_with(url: &str, deadline: Duration) -> io::Result<Rc<ClusterClient>> {
        let seeds = parse_cluster_url(url)?;
        let client = Rc::new_cyclic(|me| ClusterClient {
            me: me.clone(),
            seeds,
            deadline,
            nodes: RefCell::new(HashMap::new()),
            map: RefCell::new(SlotMap::default()),
            refreshing: Cell::new(false),
            redirects: Cell::new(0),
        });
        client.refresh().await?;
        let weak = Rc::downgrade(&client);
        spawn_local(async move {
            loop {
                sleep(REFRESH_EVERY).await;
                let Some(c) = weak.upgrade() else { break };
                if let Err(e) = c.refresh().await {
                    tracing::debug!("redis cluster: slot map refresh: {e}");
                }
            }
        })
        .detach();
        Ok(client)
    }

    /// How long each node call may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The seeds, for messages.
    pub fn addr(&self) -> String {
        format!("cluster {}", self.seeds.join(","))
    }

    /// The masters of the current slot map (`host:port`).
    pub fn masters(&self) -> Vec<String> {
        self.map
            .borrow()
            .masters()
            .iter()
            .map(|m| m.to_string())
            .collect()
    }

    /// How many redirections (`MOVED`, `ASK`, `TRYAGAIN`) this client has followed.
    pub fn redirects(&self) -> u64 {
        self.redirects.get()
    }

    /// Runs `args` on the master of `key`'s slot, following redirections. An error reply
    /// becomes an `io::Error` holding a [`RedisError`].
    pub async fn cmd(&self, key: &str, args: &[&str]) -> io::Result<Value> {
        self.cmd_then(key, args, None).await.map(|(v, _)| v)
    }

    /// Like [`ClusterClient::cmd`], and when `then` is given, sends it right after `args` in
    /// the same write, so on the same connection of the node that runs `args` (after the
    /// last redirection): e.g. `WAIT`, which counts the replicas that have this connection's
    /// writes. `then`'s reply (an error reply included, as [`Value::Error`]) comes back only
    /// when `args` succeeded.
    pub async fn cmd_then(
        &self,
        key: &str,
        args: &[&str],
        then: Option<&[&str]>,
    ) -> io::Result<(Value, Option<Value>)> {
        let slot = key_slot(key.as_bytes());
        let mut target: Option<(String, bool)> = None;
        for _ in 0..=MAX_REDIRECTS {
            let (node, asking) = match target.take() {
                Some(t) => t,
                None => (self.owner(slot).await?, false),
            };
            let result = match self.node(&node).await {
                Ok(client) => send(&client, asking, args, then).await,
                Err(e) => Err(e),
            };
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match Redirect::of(&e) {
                Some(Redirect::Moved { slot, node }) => {
                    self.redirects.set(self.redirects.get() + 1);
                    self.map.borrow_mut().set(slot, &node);
                    self.refresh_soon();
                    target = Some((node, false));
                }
                Some(Redirect::Ask { node }) => {
                    self.redirects.set(self.redirects.get() + 1);
                    target = Some((node, true));
                }
                Some(Redirect::TryAgain) => {
                    self.redirects.set(self.redirects.get() + 1);
                    sleep(TRYAGAIN_WAIT).await;
                }
                None => {
                    if RedisError::of(&e).is_none() || is_cluster_down(&e) {
                        // The node is unreachable or lost its slots: the map may be stale.
                        self.refresh_soon();
                    }
                    return Err(e);
                }
            }
        }
        Err(io::Error::other(format!(
            "redis cluster: more than {MAX_REDIRECTS} redirections for slot {slot}"
        )))
    }

    /// Runs `args` on every master (e.g. `CONFIG GET`), each answer with its node.
    pub async fn on_every_master(&self, args: &[&str]) -> io::Result<Vec<(String, Value)>> {
        let mut out = Vec::new();
        for node in self.masters() {
            let client = self.node(&node).await?;
            let mut replies = client.pipeline(&[args]).await?;
            let reply = replies.pop().unwrap_or(Value::Nil);
            out.push((node, reply));
        }
        Ok(out)
    }

    /// Reads the slot map again from the first node that answers (known masters first,
    /// then the seeds).
    pub async fn refresh(&self) -> io::Result<()> {
        let mut candidates = self.masters();
        for s in &self.seeds {
            if !candidates.contains(s) {
                candidates.push(s.clone());
            }
        }
        let mut last = io::Error::new(io::ErrorKind::NotConnected, "redis cluster: no node to ask");
        for node in candidates {
            let reply = match self.node(&node).await {
                Ok(c) => c.cmd(&["CLUSTER", "SLOTS"]).await,
                Err(e) => Err(e),
            };
            match reply.and_then(|r| SlotMap::parse(&r, &node)) {
                Ok(map) if !map.ranges.is_empty() => {
                    *self.map.borrow_mut() = map;
                    return Ok(());
                }
                Ok(_) => {
                    last = io::Error::new(
                        io::ErrorKind::NotConnected,
                        format!("redis cluster: {node} serves no slots"),
                    )
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Starts a background [`ClusterClient::refresh`] unless one runs.
    fn refresh_soon(&self) {
        if self.refreshing.replace(true) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        spawn_local(async move {
            if let Err(e) = me.refresh().await {
                tracing::debug!("redis cluster: slot map refresh: {e}");
            }
            me.refreshing.set(false);
        })
        .detach();
    }

    /// The master of `slot`; reads the map again if no node serves it.
    async fn owner(&self, slot: u16) -> io::Result<String> {
        if let Some(node) = self.map.borrow().owner(slot) {
            return Ok(node.to_string());
        }
        self.refresh().await?;
        self.map
            .borrow()
            .owner(slot)
            .map(|n| n.to_string())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("redis cluster: no node serves slot {slot}"),
                )
            })
    }

    /// This core's client of `node`, connected on first use.
    async fn node(&self, node: &str) -> io::Result<Rc<Client>> {
        if let Some(c) = self.nodes.borrow().get(node) {
            return Ok(c.clone());
        }
        let client = Rc::new(Client::connect_with(&format!("redis://{node}"), self.deadline).await?);
        // Another task may have connected meanwhile: keep one client per node.
        let mut nodes = self.nodes.borrow_mut();
        Ok(nodes.entry(node.to_owned()).or_insert(client).clone())
    }
}

/// `args` on `client`, preceded by `ASKING` when `asking` and followed by `then` when given,
/// all in one write; the answer to `args` (an error reply as an `Err`) and to `then`.
pub(super) async fn send(
    client: &Client,
    asking: bool,
    args: &[&str],
    then: Option<&[&str]>,
) -> io::Result<(Value, Option<Value>)> {
    if !asking && then.is_none() {
        return client.cmd(args).await.map(|v| (v, None));
    }
    let mut cmds: Vec<&[&str]> = Vec::with_capacity(3);
    if asking {
        cmds.push(&["ASKING"]);
    }
    cmds.push(args);
    cmds.extend(then);
    let mut replies = client.pipeline(&cmds).await?;
    let then_reply = if then.is_some() { replies.pop() } else { None };
    match replies.pop() {
        Some(Value::Error(message)) => Err(RedisError::reply(message)),
        Some(v) => Ok((v, then_reply)),
        None => Err(io::Error::other("redis: no reply")),
    }
}

fn is_cluster_down(e: &io::Error) -> bool {
    RedisError::of(e).is_some_and(|r| r.code() == "CLUSTERDOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls() {
        assert_eq!(
            parse_cluster_url("redis-cluster://127.0.0.1:7000,127.0.0.1:7001/").ok(),
            Some(vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()])
        );
        assert_eq!(
            parse_cluster_url("redis-cluster://[::1]:7000").ok(),
            Some(vec!["[::1]:7000".into()])
        );
        for bad in [
            "redis://h:1",
            "redis-cluster://",
            "redis-cluster://h:1,",
            "redis-cluster://h:x",
        ] {
            assert!(parse_cluster_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slot_map_lookup_and_moved_slots() {
        let node = |s: &str| {
            Value::Array(vec![
                Value::Bulk(s.into()),
                Value::Int(7000),
                Value::Bulk(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(8192), Value::Int(16383), node("10.0.0.2")]),
            Value::Array(vec![Value::Int(0), Value::Int(8191), node("")]),
        ]);
        let mut map = SlotMap::parse(&reply, "10.0.0.1:7000").expect("parse");
        assert_eq!(map.owner(0).map(|n| &**n), Some("10.0.0.1:7000"));
        assert_eq!(map.owner(8191).map(|n| &**n), Some("10.0.0.1:7000"));
        assert_eq!(map.owner(8192).map(|n| &**n), Some("10.0.0.2:7000"));
        assert_eq!(map.owner(16383).map(|n| &**n), Some("10.0.0.2:7000"));
        map.set(100, "10.0.0.3:7000");
        assert_eq!(map.owner(99).map(|n| &**n), Some("10.0.0.1:7000"));
        assert_eq!(map.owner(100).map(|n| &**n), Some("10.0.0.3:7000"));
        assert_eq!(map.owner(101).map(|n| &**n), Some("10.0.0.1:7000"));
        assert_eq!(map.masters().len(), 3);
        assert!(SlotMap::parse(&Value::Int(1), "x:1").is_err());
    }

    #[test]
    fn redirections() {
        let r = |m: &str| Redirect::of(&RedisError::reply(m.to_owned()));
        assert_eq!(
            r("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: 3999,
                node: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            r("ASK 3999 127.0.0.1:6381"),
            Some(Redirect::Ask {
                node: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            r("TRYAGAIN Multiple keys request during rehashing of slot"),
            Some(Redirect::TryAgain)
        );
        assert_eq!(r("ERR unknown command"), None);
        assert_eq!(Redirect::of(&io::Error::other("x")), None);
    }
}
