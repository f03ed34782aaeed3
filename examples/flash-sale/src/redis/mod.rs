//! The Redis store: stock, per-user records and orders in one Redis server or a Redis
//! Cluster, so that several service instances behind a load balancer share one sale
//! (`--store redis://host:port` or `--store redis-cluster://host:port[,host:port...]`).
//!
//! - [`resp`]: RESP2 without I/O (command encoder, incremental reply decoder).
//! - [`client`]: [`Client`], a minimal async client on the runtime's `TcpStream`; one
//!   connection per core, requests queued to one connection task and pipelined.
//! - [`slot`]: cluster key slots (CRC16, hash tags) and a tag for any slot.
//! - [`cluster`]: [`ClusterClient`], the slot map and one [`Client`] per node, `MOVED` /
//!   `ASK` / `TRYAGAIN` followed.
//! - [`buckets`]: an item's stock over buckets: `put_item`, `get_item`, `buy`, borrowing.
//! - [`store`]: [`RedisStore`], the flash-sale operations, each one atomic in Redis, on a
//!   [`Backend`] (one server or a cluster: the same keys and the same scripts).
//!
//! # Key layout
//!
//! Every key carries a hash tag `{P:item}` (prefix `P`, default `fs`, which may not contain
//! `{`, `}` or `#`), so all of an item's keys are on one cluster slot and the buy script, which
//! touches them all, runs on one node (no `CROSSSLOT`). A single server ignores the tags.
//!
//! | key                   | type   | content                                              |
//! |-----------------------|--------|------------------------------------------------------|
//! | `{P:item}:item`       | hash   | `stock`, `sold`, `remaining`, optional `price`, `name` |
//! | `{P:item}:buyers`     | hash   | user → order id, one field per buyer                 |
//! | `{P:item}:orders`     | stream | the item's orders: `order`, `item`, `user`, `ts`     |
//! | `P:order:{T}:id`      | hash   | `item`, `user`, `ts`                                 |
//!
//! A hot item split over `B` buckets (`put_item_buckets`) has these keys once per bucket,
//! bucket `b > 0` under the tag `{P#b:item}` (another slot), plus each bucket's transfer
//! records `xout` / `xdone` (hashes) and `xin` (set); bucket 0's hash also holds the total
//! `stock` and `buckets`. See [`buckets`] for the one-order-per-user rule across buckets and
//! the crash-safe transfers.
//!
//! An order id is `{slot}~{base}` ([`RedisStore::buy`] makes it): the slot of the keys of
//! the user's bucket, then a unique base ([`new_order_id`]); on one server, for an item with
//! one bucket, the base alone. `T` is a short tag that hashes to that slot
//! ([`slot::slot_tag`]), so the order hash sits on its item's slot and `GET /orders/{id}`
//! finds it from the id alone. (An id without a slot is stored as `P:order::id`, which only
//! a single server accepts in the same script.)
//!
//! The kind of key is the last segment, after the tag, and kinds never contain `}:`, so no
//! item or order id (even one containing `:`, `{` or `}`) can make two keys collide.
//!
//! # The buy script
//!
//! One `EVALSHA` (with `EVAL` as the fallback on `NOSCRIPT`) per purchase, keys passed as
//! `KEYS`:
//!
//! 1. no item hash → `unknown` (for a bucket other than 0: `rebucket`);
//! 2. the hash's `buckets` is not the count the caller assumed → `rebucket` (the caller reads
//!    it again and recomputes the user's bucket);
//! 3. the user has a field in the buyers hash → `already` with that order id;
//! 4. `remaining <= 0` → `empty` (sold out for an item with one bucket; with more, the
//!    caller borrows from the other buckets, see [`buckets`]);
//! 5. the order hash exists already → an error reply (an order id reused by a misconfigured
//!    instance must fail, not overwrite);
//! 6. only now write: `remaining - 1`, `sold + 1`, `buyers[user] = order`, the order hash,
//!    `XADD {P:item}:orders * order .. item .. user .. ts ..` → `bought`.
//!
//! Why it cannot oversell or sell twice: Redis runs a script to its end before it runs any
//! other command, from any connection. The check of `remaining` and of the buyers hash and
//! the writes that change them are one indivisible step, so two buyers, on any cores of any
//! instances, can never both see the last unit, nor one user buy twice. Every check comes
//! before the first write, so a script that stops early leaves nothing half done (Redis does
//! not roll back a script's writes on error). `put_item` is a script for the same reason: it
//! resets stock only if `sold` is still 0, atomically with that check (per bucket: an item
//! with several buckets is reset bucket by bucket, after all were checked, see
//! [`RedisStore::put_item_buckets`]).
//!
//! # Deadlines, and a buy in doubt
//!
//! Every call has a deadline (`serve --redis-timeout`, 1 s by default; see [`client`]): a
//! stalled or unreachable Redis costs a caller at most that, then an error (the service
//! answers 503 + `Retry-After`). A connection whose reply is late is closed, never reused,
//! so a late reply cannot reach another caller; reconnects back off.
//!
//! A buy that timed out after its command was written may or may not have run (Redis may
//! run it when it wakes up, even after the connection is gone). Retrying with the same user
//! is safe and tells the truth: the script answers `already` with the first order if that
//! attempt went through (step 2 runs before any write, whichever attempt Redis runs first),
//! and never sells a second unit. A command whose caller gave up before it was written is
//! never sent.
//!
//! # Durability
//!
//! Durability is the server's. "Never acknowledge an order that is not durable" needs
//! `appendonly yes` *and* `appendfsync always` (Redis answers a write only once it is in
//! the fsynced append-only file). `RedisStore::durability` reads both with `CONFIG GET`, and
//! `serve` refuses to start against anything else, or against a server that refuses
//! `CONFIG` (renamed, ACL), unless `--allow-redis-data-loss` is given (it then starts with a
//! warning). The tests run Redis with both settings.
//!
//! Replication is the other half: a replica promoted after its master crashed may lack the
//! master's last acknowledged writes (replication is asynchronous).
//! [`RedisStore::with_wait_replicas`] makes each buy `WAIT` for N replicas on the same
//! connection right after its script; a buy they do not acknowledge in time is
//! [`BuyOutcome::InDoubt`] (see `docs/deploy.md` for what that means for the invariants).

pub mod buckets;
pub mod client;
pub mod cluster;
pub mod resp;
pub mod slot;
pub mod store;

pub use buckets::{bucket_of, BORROW_ROUNDS, MAX_BUCKETS};
pub use client::{parse_url, Client, RedisError};
pub use cluster::{parse_cluster_url, ClusterClient};
pub use resp::Value;
pub use store::{
    new_order_id, run_tag, Backend, BuyOutcome, Durability, ItemView, OrderView, PutOutcome, RedisStore,
    DEFAULT_PREFIX, WAIT_SLACK,
};

/// Checks a `--store` URL: `redis://host:port` or `redis-cluster://host:port[,host:port...]`.
pub fn check_store_url(url: &str) -> std::io::Result<()> {
    if url.starts_with("redis-cluster://") {
        parse_cluster_url(url).map(drop)
    } else {
        parse_url(url).map(drop)
    }
}
