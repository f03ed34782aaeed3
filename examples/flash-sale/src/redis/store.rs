//! `RedisStore`: the flash-sale operations, each one atomic in Redis (see the module docs of
//! [`crate::redis`] for the key layout and the scripts' logic).

use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::client::{Client, RedisError};
use super::resp::Value;

/// `put_item`: refuse once anything is sold, else (re)set the stock.
///
/// KEYS: item hash. ARGV: stock, has_price (`1`/`0`), price, has_name, name.
const PUT_ITEM: &str = r"
local sold = tonumber(redis.call('HGET', KEYS[1], 'sold') or '0') or 0
if sold > 0 then return 'sale_started' end
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'stock', ARGV[1], 'remaining', ARGV[1], 'sold', '0')
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'price', ARGV[3]) end
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'name', ARGV[5]) end
if existed == 1 then return 'updated' end
return 'created'
";

/// `buy`: every check before the first write, then all the writes.
///
/// KEYS: item hash, buyers hash, order hash, orders stream.
/// ARGV: item id, user, order id, ts.
const BUY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown'} end
local prev = redis.call('HGET', KEYS[2], ARGV[2])
if prev then return {'already', prev} end
local remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining') or '0') or 0
if remaining <= 0 then return {'sold_out'} end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return redis.error_reply('ERR flash-sale: order id ' .. ARGV[3] .. ' is already used')
end
redis.call('HINCRBY', KEYS[1], 'remaining', -1)
redis.call('HINCRBY', KEYS[1], 'sold', 1)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], 'item', ARGV[1], 'user', ARGV[2], 'ts', ARGV[4])
redis.call('XADD', KEYS[4], '*', 'order', ARGV[3], 'item', ARGV[1], 'user', ARGV[2], 'ts', ARGV[4])
return {'bought', ARGV[3]}
";

/// The key prefix when none is chosen.
pub const DEFAULT_PREFIX: &str = "fs";

/// What [`RedisStore::put_item`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The item did not exist (HTTP 201).
    Created,
    /// The item existed and nothing was sold yet: stock reset (HTTP 200).
    Updated,
    /// Something was sold already; nothing changed (HTTP 409).
    SaleStarted,
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
    client: Rc<Client>,
    prefix: String,
    put_sha: String,
    buy_sha: String,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port`) and opens the store under `prefix`, with the
    /// client's default deadline on every call.
    pub async fn connect(url: &str, prefix: &str) -> io::Result<RedisStore> {
        RedisStore::open(Rc::new(Client::connect(url).await?), prefix).await
    }

    /// Like [`RedisStore::connect`], every Redis call bounded by `deadline`
    /// ([`Client::connect_with`]).
    pub async fn connect_with(url: &str, prefix: &str, deadline: Duration) -> io::Result<RedisStore> {
        RedisStore::open(Rc::new(Client::connect_with(url, deadline).await?), prefix).await
    }

    /// Opens the store on an existing client: loads the two scripts into the server's
    /// script cache. Every key starts with `prefix:`.
    pub async fn open(client: Rc<Client>, prefix: &str) -> io::Result<RedisStore> {
        if prefix.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "redis store: empty key prefix",
            ));
        }
        let load = |src: &'static str| ["SCRIPT", "LOAD", src];
        let replies = client.pipeline(&[load(PUT_ITEM), load(BUY)]).await?;
        let sha = |v: Option<&Value>| match v {
            Some(Value::Bulk(b)) => String::from_utf8(b.clone()).map_err(|_| unexpected("SCRIPT LOAD", v)),
            other => Err(unexpected("SCRIPT LOAD", other)),
        };
        Ok(RedisStore {
            put_sha: sha(replies.first())?,
            buy_sha: sha(replies.get(1))?,
            client,
            prefix: prefix.to_owned(),
        })
    }

    /// The client this store uses.
    pub fn client(&self) -> &Rc<Client> {
        &self.client
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of an item's hash (`stock`, `sold`, `remaining`, `price`, `name`).
    pub fn item_key(&self, item: &str) -> String {
        format!("{}:item:{item}", self.prefix)
    }

    /// The key of an item's buyers hash (user → order id).
    pub fn buyers_key(&self, item: &str) -> String {
        format!("{}:buyers:{item}", self.prefix)
    }

    /// The key of an order's hash (`item`, `user`, `ts`).
    pub fn order_key(&self, order: &str) -> String {
        format!("{}:order:{order}", self.prefix)
    }

    /// The key of the orders stream (one entry per order: `order`, `item`, `user`, `ts`).
    pub fn orders_stream_key(&self) -> String {
        format!("{}:orders", self.prefix)
    }

    /// Creates an item or resets its stock, unless the sale has started. `None` leaves the
    /// price or name as it was.
    pub async fn put_item(
        &self,
        item: &str,
        stock: u64,
        price: Option<i64>,
        name: Option<&str>,
    ) -> io::Result<PutOutcome> {
        non_empty("item", item)?;
        let stock = stock.to_string();
        let price = price.map(|p| p.to_string());
        let flag = |b: bool| if b { "1" } else { "0" };
        let key = self.item_key(item);
        let args = [
            key.as_str(),
            &stock,
            flag(price.is_some()),
            price.as_deref().unwrap_or(""),
            flag(name.is_some()),
            name.unwrap_or(""),
        ];
        let reply = self.eval(&self.put_sha, PUT_ITEM, 1, &args).await?;
        match reply.as_str() {
            Some("created") => Ok(PutOutcome::Created),
            Some("updated") => Ok(PutOutcome::Updated),
            Some("sale_started") => Ok(PutOutcome::SaleStarted),
            _ => Err(unexpected("put_item script", Some(&reply))),
        }
    }

    /// The item's counters, `None` if it does not exist.
    pub async fn get_item(&self, item: &str) -> io::Result<Option<ItemView>> {
        let key = self.item_key(item);
        let reply = self
            .client
            .cmd(&["HMGET", &key, "stock", "sold", "remaining", "price", "name"])
            .await?;
        let Value::Array(f) = &reply else {
            return Err(unexpected("HMGET", Some(&reply)));
        };
        let [stock, sold, remaining, price, name] = f.as_slice() else {
            return Err(unexpected("HMGET", Some(&reply)));
        };
        if *stock == Value::Nil {
            return Ok(None);
        }
        let count = |v: &Value| {
            v.as_int()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| unexpected("item counter", Some(v)))
        };
        Ok(Some(ItemView {
            stock: count(stock)?,
            sold: count(sold)?,
            remaining: count(remaining)?,
            price: price.as_int(),
            name: name.as_str().map(str::to_owned),
        }))
    }

    /// Buys one unit of `item` for `user` as order `order_id`, atomically (one script).
    ///
    /// Safe to retry after an I/O error with the same arguments: if the first attempt ran,
    /// the retry answers [`BuyOutcome::AlreadyBought`] with the same order.
    pub async fn buy(&self, item: &str, user: &str, order_id: &str, ts: u64) -> io::Result<BuyOutcome> {
        non_empty("item", item)?;
        non_empty("user", user)?;
        non_empty("order id", order_id)?;
        let ts = ts.to_string();
        let keys = [
            self.item_key(item),
            self.buyers_key(item),
            self.order_key(order_id),
            self.orders_stream_key(),
        ];
        let args = [&keys[0], &keys[1], &keys[2], &keys[3], item, user, order_id, &ts];
        let reply = self.eval(&self.buy_sha, BUY, keys.len(), &args).await?;
        let bad = || unexpected("buy script", Some(&reply));
        let Value::Array(parts) = &reply else {
            return Err(bad());
        };
        let order = || {
            parts
                .get(1)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(bad)
        };
        match parts.first().and_then(Value::as_str) {
            Some("bought") => Ok(BuyOutcome::Bought { order: order()? }),
            Some("already") => Ok(BuyOutcome::AlreadyBought { order: order()? }),
            Some("sold_out") => Ok(BuyOutcome::SoldOut),
            Some("unknown") => Ok(BuyOutcome::UnknownItem),
            _ => Err(bad()),
        }
    }

    /// A stored order, `None` if there is none with this id.
    pub async fn get_order(&self, order: &str) -> io::Result<Option<OrderView>> {
        let key = self.order_key(order);
        let reply = self.client.cmd(&["HMGET", &key, "item", "user", "ts"]).await?;
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

    /// How many entries the orders stream holds (`XLEN`).
    pub async fn orders_stream_len(&self) -> io::Result<u64> {
        let key = self.orders_stream_key();
        let reply = self.client.cmd(&["XLEN", &key]).await?;
        reply
            .as_int()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| unexpected("XLEN", Some(&reply)))
    }

    /// Whether the server keeps what it acknowledged across a crash (`CONFIG GET appendonly`
    /// and `appendfsync`): see [`Durability`].
    pub async fn durability(&self) -> io::Result<Durability> {
        let replies = self
            .client
            .pipeline(&[["CONFIG", "GET", "appendonly"], ["CONFIG", "GET", "appendfsync"]])
            .await?;
        let mut values = Vec::with_capacity(2);
        for (name, reply) in ["appendonly", "appendfsync"].into_iter().zip(&replies) {
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

    /// `EVALSHA`, falling back to `EVAL` (which caches the script again) when the server
    /// lost its script cache (a restart, `SCRIPT FLUSH`). `args` is the keys, then the
    /// arguments.
    async fn eval(&self, sha: &str, src: &str, n_keys: usize, args: &[&str]) -> io::Result<Value> {
        let n_keys = n_keys.to_string();
        let mut cmd = vec!["EVALSHA", sha, &n_keys];
        cmd.extend_from_slice(args);
        match self.client.cmd(&cmd).await {
            Err(e) if RedisError::of(&e).is_some_and(|r| r.code() == "NOSCRIPT") => {
                cmd[0] = "EVAL";
                cmd[1] = src;
                self.client.cmd(&cmd).await
            }
            other => other,
        }
    }
}

fn non_empty(what: &str, s: &str) -> io::Result<()> {
    if s.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("redis store: empty {what}"),
        ));
    }
    Ok(())
}

fn unexpected(what: &str, v: Option<&Value>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("redis store: unexpected reply to {what}: {v:?}"),
    )
}
