//! `RedisStore`: the flash-sale operations, each one atomic in Redis (see the module docs of
//! [`crate::redis`] for the key layout and the scripts' logic).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::buckets::{Script, SCRIPTS};
use super::client::{Client, RedisError};
use super::cluster::ClusterClient;
use super::resp::Value;
use super::slot::slot_tag;

/// The key prefix when none is chosen.
pub const DEFAULT_PREFIX: &str = "fs";

/// What a buy keeps of its deadline for the rest when it sends `WAIT`: Redis times blocked
/// clients out on its own clock (`hz`, 10 per second by default), so a `WAIT` can overrun
/// its timeout by up to 100 ms, and the script and the reply take their share too.
pub const WAIT_SLACK: Duration = Duration::from_millis(150);

/// What [`RedisStore::put_item`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The item did not exist (HTTP 201).
    Created,
    /// The item existed and nothing was sold yet: stock reset (HTTP 200).
    Updated,
    /// Something was sold already; nothing changed (HTTP 409).
    SaleStarted,
    /// Written, but fewer replicas than [`RedisStore::with_wait_replicas`] asks for
    /// acknowledged it within the deadline (HTTP 503): a failover now could lose the item, so
    /// it is not reported as done. `PUT` it again (nothing is sold yet, so it is idempotent).
    Unacknowledged,
}

/// An item's counters as one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemView {
    /// The stock set by the last `put_item`.
    pub stock: u64,
    /// Units sold.
    pub sold: u64,
    /// Units left (`stock - sold`).
    pub remaining: u64,
    /// Price, if one was ever given.
    pub price: Option<i64>,
    /// Display name, if one was ever given.
    pub name: Option<String>,
}

/// What [`RedisStore::buy`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyOutcome {
    /// One unit is this user's; the order is stored and on the orders stream.
    Bought {
        /// The order id the caller passed.
        order: String,
    },
    /// No unit left.
    SoldOut,
    /// This user already bought this item; nothing changed.
    AlreadyBought {
        /// The order of the earlier purchase.
        order: String,
    },
    /// No such item.
    UnknownItem,
    /// The buy script took the unit on the master (the order exists there now), but fewer
    /// replicas than [`RedisStore::with_wait_replicas`] asks for acknowledged it in time, so
    /// a failover of that master may still lose it: neither a sale nor a refusal. Reading
    /// the order later tells (`get_order`), and a retry of the same user answers
    /// [`BuyOutcome::AlreadyBought`] with this order while it exists.
    InDoubt {
        /// The order id the script stored.
        order: String,
        /// What `WAIT` said, in words.
        why: String,
    },
}

/// What [`RedisStore::durability`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// `appendonly yes` and `appendfsync always`: a write is on disk before Redis answers
    /// it, so every acknowledged order survives a crash or a power cut.
    Durable,
    /// A crash can lose acknowledged writes: no append-only file, or one synced only now
    /// and then (`everysec`: up to a second of writes; `no`: whatever the kernel held).
    Lossy {
        /// The `appendonly` setting (`yes`/`no`).
        appendonly: String,
        /// The `appendfsync` setting (`always`/`everysec`/`no`).
        appendfsync: String,
    },
    /// The server would not say (`CONFIG` renamed, disabled or denied by an ACL).
    Unknown {
        /// Why, in words.
        why: String,
    },
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    /// Order id.
    pub order: String,
    /// Item id.
    pub item: String,
    /// User id.
    pub user: String,
    /// The timestamp the service passed to `buy` (milliseconds since the Unix epoch).
    pub ts: u64,
}

/// An order id no other instance, core or process run can produce: `{node}-{shard}-{seq}`.
///
/// `node` must be unique among instances *and* across restarts of one instance (a restart
/// starts `seq` again); [`run_tag`] makes one. The buy script refuses an id that is already
/// stored, so a collision fails the buy instead of overwriting an order.
pub fn new_order_id(node: &str, shard: usize, seq: u64) -> String {
    format!("{node}-{shard}-{seq}")
}

/// A tag for this process run, for [`new_order_id`]: the process id and the start time in
/// milliseconds, in hex.
pub fn run_tag() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{:x}.{ms:x}", std::process::id())
}

/// The flash-sale state in Redis, for one core (`!Send`; open one per core).
#[derive(Debug)]
pub struct RedisStore {
    pub(super) backend: Backend,
    pub(super) prefix: String,
    /// The SHA1 of each of [`SCRIPTS`], in order.
    pub(super) shas: Vec<String>,
    /// Items seen with more than one bucket, and how many (a buy of an item not listed
    /// assumes one; the buy script corrects a wrong guess).
    pub(super) buckets: RefCell<HashMap<String, u32>>,
    /// How many replicas must acknowledge a buy's writes (`WAIT`); 0: none asked.
    pub(super) wait_replicas: u32,
}

/// Where the store's keys live: one server, or a Redis Cluster (each command sent to the
/// master of its key's slot).
#[derive(Debug, Clone)]
pub enum Backend {
    /// One server (`redis://host:port`).
    Single(Rc<Client>),
    /// A cluster (`redis-cluster://host:port[,host:port...]`).
    Cluster(Rc<ClusterClient>),
}

impl Backend {
    /// Connects to `url`: `redis://` for one server, `redis-cluster://` for a cluster.
    pub async fn connect_with(url: &str, deadline: Duration) -> io::Result<Backend> {
        if url.starts_with("redis-cluster://") {
            Ok(Backend::Cluster(
                ClusterClient::connect_with(url, deadline).await?,
            ))
        } else {
            Ok(Backend::Single(Rc::new(
                Client::connect_with(url, deadline).await?,
            )))
        }
    }

    /// How long each call may take.
    pub fn deadline(&self) -> Duration {
        match self {
            Backend::Single(c) => c.deadline(),
            Backend::Cluster(c) => c.deadline(),
        }
    }

    /// The server's `host:port`, or the cluster's seeds, for messages.
    pub fn addr(&self) -> String {
        match self {
            Backend::Single(c) => c.addr(),
            Backend::Cluster(c) => c.addr(),
        }
    }

    /// Runs one command; on a cluster, on the master of `key`'s slot (one server ignores
    /// `key`).
    pub async fn cmd(&self, key: &str, args: &[&str]) -> io::Result<Value> {
        match self {
            Backend::Single(c) => c.cmd(args).await,
            Backend::Cluster(c) => c.cmd(key, args).await,
        }
    }

    /// Like [`Backend::cmd`], with `then` sent right after `args` in the same write, on the
    /// same connection (see [`ClusterClient::cmd_then`]).
    pub async fn cmd_then(
        &self,
        key: &str,
        args: &[&str],
        then: Option<&[&str]>,
    ) -> io::Result<(Value, Option<Value>)> {
        match self {
            Backend::Single(c) => super::cluster::send(c, false, args, then).await,
            Backend::Cluster(c) => c.cmd_then(key, args, then).await,
        }
    }

    /// Runs `args` on the one server, or on every master of the cluster; the replies in
    /// order (error replies included as [`Value::Error`]).
    pub async fn on_every_node(&self, args: &[&str]) -> io::Result<Vec<(String, Value)>> {
        match self {
            Backend::Single(c) => {
                let mut replies = c.pipeline(&[args]).await?;
                Ok(vec![(c.addr(), replies.pop().unwrap_or(Value::Nil))])
            }
            Backend::Cluster(c) => c.on_every_master(args).await,
        }
    }

    /// `PING` to the server, or to every master: `Ok` once each answers.
    pub async fn ping(&self) -> io::Result<()> {
        match self {
            Backend::Single(c) => c.cmd(&["PING"]).await.map(drop),
            Backend::Cluster(c) => {
                c.refresh().await?;
                for (node, reply) in c.on_every_master(&["PING"]).await? {
                    if let Value::Error(e) = reply {
                        return Err(io::Error::other(format!("redis: {node} answered {e}")));
                    }
                }
                Ok(())
            }
        }
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port` or `redis-cluster://host:port[,...]`) and
    /// opens the store under `prefix`, with the client's default deadline on every call.
    pub async fn connect(url: &str, prefix: &str) -> io::Result<RedisStore> {
        RedisStore::connect_with(url, prefix, super::client::DEFAULT_DEADLINE).await
    }

    /// Like [`RedisStore::connect`], every Redis call bounded by `deadline`
    /// ([`Client::connect_with`]).
    pub async fn connect_with(url: &str, prefix: &str, deadline: Duration) -> io::Result<RedisStore> {
        RedisStore::open_on(Backend::connect_with(url, deadline).await?, prefix).await
    }

    /// Opens the store on an existing client of one server.
    pub async fn open(client: Rc<Client>, prefix: &str) -> io::Result<RedisStore> {
        RedisStore::open_on(Backend::Single(client), prefix).await
    }

    /// Opens the store on `backend`: loads the two scripts into the script cache of the
    /// server (of every master, on a cluster; a master that joins later gets them through
    /// the `EVAL` fallback). Every key starts with `prefix:` inside a hash tag, so the
    /// prefix may not contain `{` or `}`.
    pub async fn open_on(backend: Backend, prefix: &str) -> io::Result<RedisStore> {
        if prefix.is_empty() || prefix.contains(['{', '}', '#']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("redis store: key prefix {prefix:?} must be non-empty, without '{{', '}}' or '#'"),
            ));
        }
        let mut shas = Vec::with_capacity(SCRIPTS.len());
        for src in SCRIPTS {
            let replies = backend.on_every_node(&["SCRIPT", "LOAD", src]).await?;
            let reply = replies.first().map(|(_, v)| v);
            match reply {
                Some(Value::Bulk(b)) => {
                    shas.push(String::from_utf8(b.clone()).map_err(|_| unexpected("SCRIPT LOAD", reply))?)
                }
                other => return Err(unexpected("SCRIPT LOAD", other)),
            }
        }
        Ok(RedisStore {
            shas,
            backend,
            prefix: prefix.to_owned(),
            buckets: RefCell::new(HashMap::new()),
            wait_replicas: 0,
        })
    }

    /// Makes every buy wait until `n` replicas of the master that ran it have its writes
    /// (`WAIT n <ms>`, sent right after the script on the same connection, the timeout what
    /// is left of the call's deadline less [`WAIT_SLACK`], at least a quarter of what is
    /// left): a buy they did not all acknowledge in time is [`BuyOutcome::InDoubt`], and a
    /// transfer step between buckets they did not acknowledge fails the buy (the next
    /// borrower finishes it). 0 (the default) sends no `WAIT`.
    ///
    /// Why: Redis replication is asynchronous, so a replica promoted after its master
    /// crashed can lack the last writes the master acknowledged; a write acknowledged by `n`
    /// replicas survives the crash of the master (a replica acknowledges what it received,
    /// not what it synced to its disk).
    pub fn with_wait_replicas(mut self, n: u32) -> RedisStore {
        self.wait_replicas = n;
        self
    }

    /// How many replicas must acknowledge a buy ([`RedisStore::with_wait_replicas`]).
    pub fn wait_replicas(&self) -> u32 {
        self.wait_replicas
    }

    /// How many replicas each master has (`INFO replication`, `connected_slaves`), per
    /// master (the one server, or every master of the cluster).
    pub async fn replicas(&self) -> io::Result<Vec<(String, u32)>> {
        let replies = self.backend.on_every_node(&["INFO", "replication"]).await?;
        replies
            .into_iter()
            .map(|(node, reply)| {
                let n = reply
                    .as_str()
                    .and_then(|text| {
                        text.lines()
                            .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
                            .and_then(|n| n.parse::<u32>().ok())
                    })
                    .ok_or_else(|| unexpected("INFO replication", Some(&reply)))?;
                Ok((node, n))
            })
            .collect()
    }

    /// Where the keys live.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Runs one command, on a cluster on the master of `key`'s slot.
    pub async fn cmd(&self, key: &str, args: &[&str]) -> io::Result<Value> {
        self.backend.cmd(key, args).await
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash tag of bucket `b` of `item`: `{P:item}` for bucket 0 (every key of an item
    /// with one bucket), `{P#b:item}` for the others (the prefix has no `#`, so no item's
    /// bucket 0 can have another item's bucket tag).
    pub fn bucket_tag(&self, item: &str, b: u32) -> String {
        if b == 0 {
            format!("{{{}:{item}}}", self.prefix)
        } else {
            format!("{{{}#{b}:{item}}}", self.prefix)
        }
    }

    /// The key of kind `kind` (`item`, `buyers`, `orders`, `xout`, `xdone`, `xin`) of bucket
    /// `b` of `item`.
    pub fn bucket_key(&self, item: &str, b: u32, kind: &str) -> String {
        format!("{}:{kind}", self.bucket_tag(item, b))
    }

    /// The key of an item's hash (bucket 0: `stock`, `sold`, `remaining`, `buckets`,
    /// `price`, `name`).
    pub fn item_key(&self, item: &str) -> String {
        self.bucket_key(item, 0, "item")
    }

    /// The key of an item's buyers hash (bucket 0's; user → order id).
    pub fn buyers_key(&self, item: &str) -> String {
        self.bucket_key(item, 0, "buyers")
    }

    /// The key of an order's hash (`item`, `user`, `ts`): on the slot written in the id
    /// (`{slot}~...`, see [`RedisStore::buy`]), `P:order:{T}:id` with `T` a tag of that slot; an id
    /// without a slot (`P:order::id`) works on one server only.
    pub fn order_key(&self, order: &str) -> String {
        match order_slot(order) {
            Some(slot) => format!("{}:order:{{{}}}:{order}", self.prefix, slot_tag(slot)),
            None => format!("{}:order::{order}", self.prefix),
        }
    }

    /// The key of an item's orders stream (bucket 0's; one entry per order: `order`,
    /// `item`, `user`, `ts`).
    pub fn orders_stream_key(&self, item: &str) -> String {
        self.bucket_key(item, 0, "orders")
    }

    /// A stored order, `None` if there is none with this id.
    pub async fn get_order(&self, order: &str) -> io::Result<Option<OrderView>> {
        let key = self.order_key(order);
        let reply = self.cmd(&key, &["HMGET", &key, "item", "user", "ts"]).await?;
        let Value::Array(f) = &reply else {
            return Err(unexpected("HMGET", Some(&reply)));
        };
        let [item, user, ts] = f.as_slice() else {
            return Err(unexpected("HMGET", Some(&reply)));
        };
        if *item == Value::Nil {
            return Ok(None);
        }
        let text = |v: &Value| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| unexpected("order field", Some(v)))
        };
        Ok(Some(OrderView {
            order: order.to_owned(),
            item: text(item)?,
            user: text(user)?,
            ts: ts
                .as_int()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| unexpected("order ts", Some(ts)))?,
        }))
    }

    /// How many entries `item`'s orders streams hold (`XLEN` of each bucket's, summed).
    pub async fn orders_stream_len(&self, item: &str) -> io::Result<u64> {
        let mut total = 0;
        for b in 0..self.known_buckets(item).await? {
            let key = self.bucket_key(item, b, "orders");
            let reply = self.cmd(&key, &["XLEN", &key]).await?;
            total += reply
                .as_int()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| unexpected("XLEN", Some(&reply)))?;
        }
        Ok(total)
    }

    /// Whether the server (every master, on a cluster) keeps what it acknowledged across a
    /// crash (`CONFIG GET appendonly` and `appendfsync`): see [`Durability`]. On a cluster
    /// the first master that is not [`Durability::Durable`] decides.
    pub async fn durability(&self) -> io::Result<Durability> {
        let appendonly = self
            .backend
            .on_every_node(&["CONFIG", "GET", "appendonly"])
            .await?;
        let appendfsync = self
            .backend
            .on_every_node(&["CONFIG", "GET", "appendfsync"])
            .await?;
        for ((node, a), (_, f)) in appendonly.into_iter().zip(appendfsync) {
            match durability_of(&[a, f])? {
                Durability::Durable => {}
                Durability::Unknown { why } => {
                    return Ok(Durability::Unknown {
                        why: format!("{node}: {why}"),
                    })
                }
                lossy => return Ok(lossy),
            }
        }
        Ok(Durability::Durable)
    }
}

/// [`RedisStore::durability`] of one server, from its answers to `CONFIG GET appendonly` and
/// `CONFIG GET appendfsync`.
fn durability_of(replies: &[Value]) -> io::Result<Durability> {
    let mut values = Vec::with_capacity(2);
    for (name, reply) in ["appendonly", "appendfsync"].into_iter().zip(replies) {
        match reply {
            Value::Error(e) => {
                return Ok(Durability::Unknown {
                    why: format!("CONFIG GET {name} was refused: {e}"),
                })
            }
            // `[name, value]`; an empty array for a parameter the server does not know.
            Value::Array(kv) => match kv.get(1).and_then(Value::as_str) {
                Some(v) => values.push(v.to_ascii_lowercase()),
                None => {
                    return Ok(Durability::Unknown {
                        why: format!("CONFIG GET {name} answered no value ({reply:?})"),
                    })
                }
            },
            other => return Err(unexpected("CONFIG GET", Some(other))),
        }
    }
    let [appendonly, appendfsync] =
        <[String; 2]>::try_from(values).map_err(|_| unexpected("CONFIG GET", replies.first()))?;
    if appendonly == "yes" && appendfsync == "always" {
        Ok(Durability::Durable)
    } else {
        Ok(Durability::Lossy {
            appendonly,
            appendfsync,
        })
    }
}

impl RedisStore {
    /// `EVALSHA`, falling back to `EVAL` (which caches the script again) when the server
    /// lost its script cache (a restart, `SCRIPT FLUSH`). `args` is the keys, then the
    /// arguments.
    pub(super) async fn eval(&self, script: Script, n_keys: usize, args: &[&str]) -> io::Result<Value> {
        let (sha, src) = (&self.shas[script as usize], SCRIPTS[script as usize]);
        let n_keys = n_keys.to_string();
        let key = args.first().copied().unwrap_or("");
        let mut cmd = vec!["EVALSHA", sha, &n_keys];
        cmd.extend_from_slice(args);
        match self.cmd(key, &cmd).await {
            Err(e) if RedisError::of(&e).is_some_and(|r| r.code() == "NOSCRIPT") => {
                cmd[0] = "EVAL";
                cmd[1] = src;
                self.cmd(key, &cmd).await
            }
            other => other,
        }
    }
}

impl RedisStore {
    /// Like [`RedisStore::eval`], and when the store waits for replicas, `WAIT` right after
    /// the script on the same connection, its timeout what is left until `until` less
    /// [`WAIT_SLACK`], at least a quarter of what is left and at least 1 ms (`WAIT` with 0
    /// would block for ever). Returns the script's reply and, when a `WAIT` was sent and
    /// fewer replicas acknowledged, why.
    ///
    /// `WAIT` counts the replicas that have every write *this connection* made so far, so it
    /// covers the script's writes (and maybe other callers' on this core). After a script
    /// that wrote nothing it returns at once, unless an earlier write on this connection is
    /// not acknowledged yet (then it waits for that one).
    pub(super) async fn eval_acked(
        &self,
        script: Script,
        n_keys: usize,
        args: &[&str],
        until: Instant,
    ) -> io::Result<(Value, Option<String>)> {
        if self.wait_replicas == 0 {
            return Ok((self.eval(script, n_keys, args).await?, None));
        }
        let (sha, src) = (&self.shas[script as usize], SCRIPTS[script as usize]);
        let n_keys = n_keys.to_string();
        let key = args.first().copied().unwrap_or("");
        let mut cmd = vec!["EVALSHA", sha, &n_keys];
        cmd.extend_from_slice(args);
        let wanted = self.wait_replicas.to_string();
        let left = until.saturating_duration_since(Instant::now());
        let ms = left
            .saturating_sub(WAIT_SLACK)
            .max(left / 4)
            .as_millis()
            .max(1)
            .to_string();
        let wait = ["WAIT", wanted.as_str(), &ms];
        let (reply, acked) = match self.backend.cmd_then(key, &cmd, Some(&wait)).await {
            Err(e) if RedisError::of(&e).is_some_and(|r| r.code() == "NOSCRIPT") => {
                cmd[0] = "EVAL";
                cmd[1] = src;
                self.backend.cmd_then(key, &cmd, Some(&wait)).await?
            }
            other => other?,
        };
        let short = match acked {
            Some(Value::Int(n)) if n >= i64::from(self.wait_replicas) => None,
            Some(Value::Int(n)) => Some(format!(
                "{n} of {wanted} replicas acknowledged the write within {ms} ms"
            )),
            Some(Value::Error(e)) => Some(format!("WAIT failed: {e}")),
            other => Some(format!("unexpected reply to WAIT: {other:?}")),
        };
        Ok((reply, short))
    }
}

/// The slot written in an order id (`{slot}~...`).
pub(super) fn order_slot(order: &str) -> Option<u16> {
    let (slot, _) = order.split_once('~')?;
    if slot.is_empty() || slot.len() > 5 || !slot.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    slot.parse::<u16>().ok().filter(|s| *s < super::slot::SLOTS)
}

pub(super) fn non_empty(what: &str, s: &str) -> io::Result<()> {
    if s.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("redis store: empty {what}"),
        ));
    }
    Ok(())
}

pub(super) fn unexpected(what: &str, v: Option<&Value>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("redis store: unexpected reply to {what}: {v:?}"),
    )
}
