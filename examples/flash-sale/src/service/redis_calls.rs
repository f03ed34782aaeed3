//! Every Redis call a handler makes: one deadline over the whole operation, and the
//! `redis-<core>` part of [`health`](super::health) kept true.
//!
//! - [`call`] bounds an operation of [`RedisStore`] (which may be two commands: `EVALSHA`,
//!   then `EVAL` after a Redis restart) by the client's deadline (`serve --redis-timeout`).
//!   A failure or a timeout marks `redis-<core>` failing (503 on `/healthz`, with the error
//!   and since when); the first success marks it healthy again.
//! - While it is failing, one probe task per core sends `PING` with back-off, so `/healthz`
//!   turns 200 once Redis answers again even on a core that gets no traffic.
//! - [`check_durability`] runs once at start: a Redis that could lose an acknowledged order
//!   is refused unless the user allowed it (`--allow-redis-data-loss`).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use ringcore_http::runtime::time::{sleep, timeout};
use ringcore_http::runtime::{shard_id, spawn_local};

use super::health;
use crate::redis::{Durability, RedisStore};

/// The first wait of the health probe; it doubles up to [`PROBE_MAX`].
const PROBE_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between two probes.
const PROBE_MAX: Duration = Duration::from_millis(500);

ringcore_http::runtime::core_local! {
    /// A probe task runs on this core.
    static PROBING: Cell<bool> = Cell::new(false);
}

fn part() -> String {
    format!("redis-{}", shard_id())
}

/// Runs `op` (a call of `store`) for at most the client's deadline, and records the outcome
/// in this core's health.
///
/// If the connection turns out to have been closed (Redis restarted, and this core had not
/// used the connection since), the operation is made once more, on a fresh connection,
/// within the same deadline. That is safe for every operation the service makes: reads, the
/// item script, and the buy script, which is idempotent per (item, user) (a buy that went
/// through the first time answers `already_bought` with its order).
pub(super) async fn call<T, F>(store: &Rc<RedisStore>, mut op: impl FnMut() -> F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    let deadline = store.backend().deadline();
    let attempts = async {
        match op().await {
            Err(e) if found_closed(&e) => op().await,
            r => r,
        }
    };
    let result = timeout(deadline, attempts).await.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "redis: no answer from {} within {deadline:?}",
                store.backend().addr()
            ),
        ))
    });
    match &result {
        Ok(_) => {
            health::set_healthy(&part());
        }
        // Contention between a hot item's buckets, or a bad argument: Redis answered.
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::InvalidInput) => {
            health::set_healthy(&part());
        }
        Err(e) => failing(store, e),
    }
    result
}

/// Whether `e` says the connection was gone, not that Redis refused or was slow.
fn found_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

fn failing(store: &Rc<RedisStore>, e: &io::Error) {
    health::set_failing(&part(), e.to_string());
    if PROBING.with(|p| p.replace(true)) {
        return;
    }
    let store = store.clone();
    spawn_local(async move {
        let mut wait = PROBE_FIRST;
        loop {
            sleep(wait).await;
            match timeout(store.backend().deadline(), store.backend().ping()).await {
                Ok(Ok(_)) => {
                    health::set_healthy(&part());
                    break;
                }
                Ok(Err(e)) => health::set_failing(&part(), e.to_string()),
                Err(_) => health::set_failing(&part(), "redis: PING timed out"),
            }
            wait = (wait * 2).min(PROBE_MAX);
        }
        PROBING.with(|p| p.set(false));
    })
    .detach();
}

/// Warns when `--redis-wait-replicas` does not fit the replicas the masters have now: more
/// than a master has (every buy on it would answer `in_doubt`), or 0 while masters have
/// replicas (which, on a cluster, take over after a crash and may lack the last
/// acknowledged orders). Only a warning: replicas may be restarting, and a single Redis's
/// replicas do not take over by themselves.
pub(super) async fn check_replicas(store: &RedisStore) {
    let wanted = store.wait_replicas();
    let replicas = match store.replicas().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                "cannot read the replicas of redis at {}: {e}",
                store.backend().addr()
            );
            return;
        }
    };
    for (node, n) in replicas {
        if n < wanted {
            tracing::warn!(
                "redis master {node} has {n} replicas, but --redis-wait-replicas is {wanted}: \
                 its buys answer 503 in_doubt until enough replicas are connected"
            );
        } else if wanted == 0 && n > 0 && matches!(store.backend(), crate::redis::Backend::Cluster(_)) {
            tracing::warn!(
                "redis master {node} has {n} replicas but --redis-wait-replicas is 0: after a \
                 crash of the master, the replica that takes over may lack the last \
                 acknowledged orders (use --redis-wait-replicas 1)"
            );
        }
    }
}

/// Refuses (an error naming the setting, its value and the remedy) a Redis that could lose
/// an acknowledged order, unless `allow_loss`; then it only warns.
pub(super) async fn check_durability(store: &RedisStore, allow_loss: bool) -> io::Result<()> {
    let addr = store.backend().addr();
    const NEEDED: &str = "`appendonly yes` and `appendfsync always` (in redis.conf, or \
                          CONFIG SET appendonly yes + CONFIG SET appendfsync always)";
    let problem = match store.durability().await? {
        Durability::Durable => return Ok(()),
        Durability::Lossy {
            appendonly,
            appendfsync,
        } => {
            let mut wrong = Vec::new();
            if appendonly != "yes" {
                wrong.push(format!("appendonly is {appendonly:?}"));
            }
            if appendfsync != "always" {
                wrong.push(format!("appendfsync is {appendfsync:?}"));
            }
            format!(
                "redis at {addr} can lose acknowledged orders in a crash: {}; a 200 must mean \
                 the order is on disk, which needs {NEEDED}",
                wrong.join(" and ")
            )
        }
        Durability::Unknown { why } => format!(
            "cannot check that redis at {addr} keeps acknowledged orders: {why}; make sure it \
             runs with {NEEDED}"
        ),
    };
    if allow_loss {
        tracing::warn!("{problem}; starting anyway (--allow-redis-data-loss)");
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{problem}; or pass --allow-redis-data-loss to start anyway"),
        ))
    }
}
