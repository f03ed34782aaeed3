//! An item's stock in buckets: `put_item`, `get_item` and `buy` of [`RedisStore`].
//!
//! An item has `B` buckets (`PUT /items/{item}` with `"buckets": B`, default 1), each with
//! its own hash tag (bucket 0: `{P:item}`, bucket `b`: `{P#b:item}`), so on a cluster a
//! hot item's sale spreads over `B` slots and, usually, several masters. Bucket `b` holds
//! `remaining` / `sold` of its share, its buyers hash, its orders stream and its transfer
//! records; bucket 0 also holds `stock` (the item's total), `buckets`, `price`, `name`.
//! An item with one bucket is exactly the single-hash layout.
//!
//! # One order per user, exactly
//!
//! A user belongs to one bucket, `crc16(user) % B`: the already-bought check and the order
//! are there, in one script, so a user can never buy twice whatever bucket has the stock.
//! The order id carries the bucket's slot (`{slot}~{base}`), so `GET /orders/{id}` finds it.
//!
//! # Borrowing, and a transfer that survives a crash
//!
//! When the user's bucket is empty, the buy borrows from the others (in order from `b+1`):
//! half of what bucket `c` has left, rounded up, moved in three idempotent steps, each one
//! script on one slot, keyed by a transfer id `tid` (the order id, the round and `c`):
//!
//! 1. `TAKE` on `c`: unless `tid` is recorded, `remaining -= n` and `xout[tid] = "b:n"`
//!    (units in transit, still counted as remaining by `get_item`); answers `n` (the
//!    recorded `n` if `tid` was already taken).
//! 2. `GIVE` on `b`: unless `tid` is in `xin`, `remaining += n` and `tid` added to `xin`.
//! 3. `DONE` on `c`: `xout[tid]` moves to `xdone`.
//!
//! A crash (or a lost reply) after 1 leaves `xout[tid]`; after 2, `xout[tid]` and `tid` in
//! `xin`. Every buy that borrows first settles the pending transfers of each bucket it
//! visits (steps 2 and 3 again, both no-ops if done), so a unit is never lost, and `GIVE`
//! applies a `tid` at most once, so it is never doubled.
//!
//! # Sold out
//!
//! Only when every other bucket gave nothing *and* the buckets' `sold` counts add up to
//! the item's `stock` (`sold` only grows, so a sum of reads that reaches the stock proves
//! every unit is sold, whatever moved meanwhile). Otherwise units are moving between
//! buckets: the buy tries again, at most [`BORROW_ROUNDS`] times, then fails with
//! `WouldBlock` (the service answers 503 + `Retry-After`), never with a wrong sold-out.

use std::io;
use std::time::Instant;

use super::resp::Value;
use super::slot::{crc16, key_slot};
use super::store::{
    non_empty, order_slot, unexpected, Backend, BuyOutcome, ItemView, PutOutcome, RedisStore,
};

/// The most buckets an item may have.
pub const MAX_BUCKETS: u32 = 64;

/// How many times a buy whose bucket is empty borrows (or re-checks) before giving up.
pub const BORROW_ROUNDS: usize = 4;

/// The store's scripts, indexes into [`SCRIPTS`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Script {
    Put = 0,
    Buy = 1,
    Take = 2,
    Give = 3,
    Done = 4,
}

/// The scripts' sources, in [`Script`] order.
pub(super) const SCRIPTS: [&str; 5] = [PUT, BUY, TAKE, GIVE, DONE];

/// One bucket of `put_item`: refuse once it sold anything, else (re)set it and forget its
/// transfers.
///
/// KEYS: bucket hash, xout, xdone, xin. ARGV: stock (the item's total on bucket 0, the
/// share elsewhere), share, buckets, has_price, price, has_name, name.
const PUT: &str = r"
local sold = tonumber(redis.call('HGET', KEYS[1], 'sold') or '0') or 0
if sold > 0 then return 'sale_started' end
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'stock', ARGV[1], 'remaining', ARGV[2], 'sold', '0', 'buckets', ARGV[3])
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'price', ARGV[5]) end
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'name', ARGV[7]) end
if existed == 1 then return 'updated' end
return 'created'
";

/// `buy` in the user's bucket: every check before the first write, then all the writes.
///
/// KEYS: bucket hash, buyers hash, order hash, orders stream.
/// ARGV: item id, user, order id, ts, buckets the caller assumed, bucket index.
const BUY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[6] == '0' then return {'unknown'} end
  return {'rebucket'}
end
local nb = redis.call('HGET', KEYS[1], 'buckets') or '1'
if nb ~= ARGV[5] then return {'rebucket'} end
local prev = redis.call('HGET', KEYS[2], ARGV[2])
if prev then return {'already', prev} end
local remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining') or '0') or 0
if remaining <= 0 then return {'empty'} end
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

/// Transfer step 1, on the giving bucket.
///
/// KEYS: bucket hash, xout, xdone. ARGV: tid, receiving bucket index.
const TAKE: &str = r"
local rec = redis.call('HGET', KEYS[2], ARGV[1]) or redis.call('HGET', KEYS[3], ARGV[1])
if rec then return tonumber(string.match(rec, ':(%d+)$')) end
local r = tonumber(redis.call('HGET', KEYS[1], 'remaining') or '0') or 0
if r <= 0 then return 0 end
local n = math.ceil(r / 2)
redis.call('HINCRBY', KEYS[1], 'remaining', -n)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. n)
return n
";

/// Transfer step 2, on the receiving bucket: applied at most once per tid.
///
/// KEYS: bucket hash, xin. ARGV: tid, n.
const GIVE: &str = r"
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HINCRBY', KEYS[1], 'remaining', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
";

/// Transfer step 3, on the giving bucket: the record leaves `xout`.
///
/// KEYS: xout, xdone. ARGV: tid.
const DONE: &str = r"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if rec then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], rec)
end
return 1
";

/// The bucket of `user` among `buckets`.
pub fn bucket_of(user: &str, buckets: u32) -> u32 {
    u32::from(crc16(user.as_bytes())) % buckets.max(1)
}

/// What one buy script in one bucket said.
enum Step {
    Done(BuyOutcome),
    /// The bucket has nothing left.
    Empty,
    /// The item has another number of buckets than assumed.
    Rebucket,
}

impl RedisStore {
    /// Creates an item or resets its stock (one bucket), unless the sale has started. `None`
    /// leaves the price or name as it was.
    pub async fn put_item(
        &self,
        item: &str,
        stock: u64,
        price: Option<i64>,
        name: Option<&str>,
    ) -> io::Result<PutOutcome> {
        self.put_item_buckets(item, stock, 1, price, name).await
    }

    /// Like [`RedisStore::put_item`], the stock split over `buckets` buckets (1 to
    /// [`MAX_BUCKETS`]; bucket `b` gets `stock / buckets`, plus one for the first
    /// `stock % buckets`).
    ///
    /// Every bucket (old and new) is checked for sales first, then buckets are written from
    /// the last to bucket 0; with more than one bucket this is not one atomic step, so set
    /// an item up before its sale opens (a failure half way is repaired by the same `PUT`
    /// again, since nothing is sold). With [`RedisStore::with_wait_replicas`], each bucket's
    /// write is followed by `WAIT`, as a buy's is, and [`PutOutcome::Unacknowledged`] says
    /// that too few replicas acknowledged one in time.
    pub async fn put_item_buckets(
        &self,
        item: &str,
        stock: u64,
        buckets: u32,
        price: Option<i64>,
        name: Option<&str>,
    ) -> io::Result<PutOutcome> {
        non_empty("item", item)?;
        if buckets == 0 || buckets > MAX_BUCKETS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("redis store: buckets must be 1 to {MAX_BUCKETS}"),
            ));
        }
        let old = self.read_buckets(item).await?.unwrap_or(1);
        for b in 0..old.max(buckets) {
            let key = self.bucket_key(item, b, "item");
            let sold = self.cmd(&key, &["HGET", &key, "sold"]).await?;
            if sold.as_int().is_some_and(|n| n > 0) {
                return Ok(PutOutcome::SaleStarted);
            }
        }
        for b in buckets..old {
            let keys: Vec<String> = ["item", "buyers", "orders", "xout", "xdone", "xin"]
                .iter()
                .map(|k| self.bucket_key(item, b, k))
                .collect();
            let mut del = vec!["DEL"];
            del.extend(keys.iter().map(String::as_str));
            self.cmd(&keys[0], &del).await?;
        }
        let price = price.map(|p| p.to_string());
        let flag = |b: bool| if b { "1" } else { "0" };
        let n = u64::from(buckets);
        let mut outcome = PutOutcome::Created;
        // With `with_wait_replicas`, each bucket's write waits for the replicas like a buy's:
        // an item acknowledged on its master alone would vanish in a failover, and its buyers
        // would be told it does not exist.
        let until = Instant::now() + self.backend.deadline();
        let mut unacked = false;
        for b in (0..buckets).rev() {
            let share = (stock / n + u64::from(u64::from(b) < stock % n)).to_string();
            let total = if b == 0 { stock.to_string() } else { share.clone() };
            let keys: Vec<String> = ["item", "xout", "xdone", "xin"]
                .iter()
                .map(|k| self.bucket_key(item, b, k))
                .collect();
            let nb = buckets.to_string();
            let is0 = b == 0;
            let args = [
                keys[0].as_str(),
                &keys[1],
                &keys[2],
                &keys[3],
                &total,
                &share,
                &nb,
                flag(is0 && price.is_some()),
                price.as_deref().unwrap_or(""),
                flag(is0 && name.is_some()),
                name.unwrap_or(""),
            ];
            // Once one bucket went unacknowledged the answer is decided: the others are
            // written without waiting again, so the `PUT` still answers within its deadline.
            let reply = if unacked {
                self.eval(Script::Put, 4, &args).await?
            } else {
                let (reply, short) = self.eval_acked(Script::Put, 4, &args, until).await?;
                unacked = short.is_some();
                reply
            };
            outcome = match reply.as_str() {
                Some("created") => PutOutcome::Created,
                Some("updated") => PutOutcome::Updated,
                Some("sale_started") => return Ok(PutOutcome::SaleStarted),
                _ => return Err(unexpected("put_item script", Some(&reply))),
            };
        }
        self.remember_buckets(item, buckets);
        if unacked {
            return Ok(PutOutcome::Unacknowledged);
        }
        Ok(outcome)
    }

    /// The item's counters summed over its buckets (units in transit between buckets count
    /// as remaining), `None` if it does not exist.
    pub async fn get_item(&self, item: &str) -> io::Result<Option<ItemView>> {
        let key = self.item_key(item);
        let reply = self
            .cmd(
                &key,
                &[
                    "HMGET",
                    &key,
                    "stock",
                    "sold",
                    "remaining",
                    "price",
                    "name",
                    "buckets",
                ],
            )
            .await?;
        let Value::Array(f) = &reply else {
            return Err(unexpected("HMGET", Some(&reply)));
        };
        let [stock, sold, remaining, price, name, buckets] = f.as_slice() else {
            return Err(unexpected("HMGET", Some(&reply)));
        };
        if *stock == Value::Nil {
            return Ok(None);
        }
        let mut view = ItemView {
            stock: count(stock)?,
            sold: count(sold)?,
            remaining: count(remaining)?,
            price: price.as_int(),
            name: name.as_str().map(str::to_owned),
        };
        let buckets = match buckets {
            Value::Nil => 1,
            v => u32::try_from(count(v)?).map_err(|_| unexpected("buckets", Some(v)))?,
        };
        self.remember_buckets(item, buckets);
        if buckets > 1 {
            for b in 0..buckets {
                if b > 0 {
                    let key = self.bucket_key(item, b, "item");
                    let reply = self.cmd(&key, &["HMGET", &key, "sold", "remaining"]).await?;
                    if let Value::Array(f) = &reply {
                        if let [sold, remaining] = f.as_slice() {
                            view.sold += count_or_zero(sold)?;
                            view.remaining += count_or_zero(remaining)?;
                        }
                    }
                }
                for (_, _, n) in self.pending(item, b).await? {
                    view.remaining += n;
                }
            }
        }
        Ok(Some(view))
    }

    /// Buys one unit of `item` for `user`, with an order id made from `base` (e.g.
    /// [`super::new_order_id`]): `base` itself on one server for an item with one bucket,
    /// else `{slot}~{base}` with the slot of the user's bucket (an id that already carries
    /// that slot is kept). The order id is in the answer.
    ///
    /// Safe to retry after an I/O error with the same arguments: if the first attempt ran,
    /// the retry answers [`BuyOutcome::AlreadyBought`] with the same order, and a transfer
    /// between buckets that the first attempt began is finished, not repeated.
    ///
    /// With [`RedisStore::with_wait_replicas`], the answer is [`BuyOutcome::InDoubt`] when
    /// the replicas did not acknowledge the order within the deadline (`WAIT` timeouts are
    /// counted from this call: what is left of the client's deadline less
    /// [`super::store::WAIT_SLACK`]).
    pub async fn buy(&self, item: &str, user: &str, base: &str, ts: u64) -> io::Result<BuyOutcome> {
        non_empty("item", item)?;
        non_empty("user", user)?;
        non_empty("order id", base)?;
        let until = Instant::now() + self.backend.deadline();
        let mut buckets = self.cached_buckets(item);
        for _ in 0..3 {
            let b = bucket_of(user, buckets);
            let order = self.order_id_in(item, b, buckets, base)?;
            match self.buy_in(item, b, buckets, user, &order, ts, until).await? {
                Step::Done(outcome) => return Ok(outcome),
                Step::Empty if buckets == 1 => return Ok(BuyOutcome::SoldOut),
                Step::Empty => {
                    return self
                        .borrow_and_buy(item, b, buckets, user, &order, ts, until)
                        .await
                }
                Step::Rebucket => match self.read_buckets(item).await? {
                    Some(n) => {
                        self.remember_buckets(item, n);
                        buckets = n;
                    }
                    None => return Ok(BuyOutcome::UnknownItem),
                },
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("redis store: {item}'s buckets keep changing; retry"),
        ))
    }

    /// Moves units into bucket `to` from the others until the buy in `to` succeeds or every
    /// unit is sold (see the module docs).
    #[allow(clippy::too_many_arguments)]
    async fn borrow_and_buy(
        &self,
        item: &str,
        to: u32,
        buckets: u32,
        user: &str,
        order: &str,
        ts: u64,
        until: Instant,
    ) -> io::Result<BuyOutcome> {
        for round in 0..BORROW_ROUNDS {
            let mut got = false;
            for k in 1..buckets {
                let from = (to + k) % buckets;
                self.settle_by(item, from, until).await?;
                let tid = format!("{order}/{round}/{from}");
                if self.take_by(item, from, to, &tid, until).await? > 0 {
                    self.finish(item, from, to, &tid, until).await?;
                    got = true;
                    break;
                }
            }
            if !got && self.sold_everything(item, buckets).await? {
                return Ok(BuyOutcome::SoldOut);
            }
            match self.buy_in(item, to, buckets, user, order, ts, until).await? {
                Step::Done(outcome) => return Ok(outcome),
                Step::Empty => {}
                Step::Rebucket => break,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("redis store: {item}'s units are moving between buckets; retry"),
        ))
    }

    /// Transfer step 1 (see the module docs): takes up to half (rounded up) of bucket
    /// `from`'s remaining units for bucket `to` under transfer id `tid`; answers how many
    /// (the recorded number if `tid` was taken before). The units are in transit until
    /// [`RedisStore::settle`] (or the borrowing buy) finishes the transfer.
    pub async fn take(&self, item: &str, from: u32, to: u32, tid: &str) -> io::Result<u64> {
        let until = Instant::now() + self.backend.deadline();
        self.take_by(item, from, to, tid, until).await
    }

    /// [`RedisStore::take`]; when the store waits for replicas, a step they did not
    /// acknowledge by `until` is an error (the units stay recorded in transit on the giver,
    /// so the next borrower finishes the transfer, or, if the master crashes and its
    /// replica never saw the step, they were never taken).
    async fn take_by(&self, item: &str, from: u32, to: u32, tid: &str, until: Instant) -> io::Result<u64> {
        let keys: Vec<String> = ["item", "xout", "xdone"]
            .iter()
            .map(|k| self.bucket_key(item, from, k))
            .collect();
        let to = to.to_string();
        let args = [keys[0].as_str(), &keys[1], &keys[2], tid, &to];
        let (reply, short) = self.eval_acked(Script::Take, 3, &args, until).await?;
        let n = count(&reply)?;
        match short {
            Some(why) if n > 0 => Err(unreplicated("TAKE", tid, &why)),
            _ => Ok(n),
        }
    }

    /// Transfer steps 2 and 3 for `tid` (each a no-op if done before). When the store waits
    /// for replicas, step 3 runs only once step 2 is acknowledged: a step 2 lost in a
    /// failover is then still pending on the giver and applied again by the next borrower.
    async fn finish(&self, item: &str, from: u32, to: u32, tid: &str, until: Instant) -> io::Result<()> {
        let n = match self
            .pending(item, from)
            .await?
            .into_iter()
            .find(|(t, _, _)| t == tid)
        {
            Some((_, _, n)) => n,
            None => return Ok(()), // finished by someone else
        };
        let (hash, xin) = (
            self.bucket_key(item, to, "item"),
            self.bucket_key(item, to, "xin"),
        );
        let n = n.to_string();
        let (given, short) = self
            .eval_acked(Script::Give, 2, &[&hash, &xin, tid, &n], until)
            .await?;
        if let Some(why) = short.filter(|_| given.as_int() == Some(1)) {
            return Err(unreplicated("GIVE", tid, &why));
        }
        let (xout, xdone) = (
            self.bucket_key(item, from, "xout"),
            self.bucket_key(item, from, "xdone"),
        );
        self.eval(Script::Done, 2, &[&xout, &xdone, tid]).await?;
        Ok(())
    }

    /// Finishes every transfer out of bucket `from` that a crash or a lost reply left
    /// half done.
    pub async fn settle(&self, item: &str, from: u32) -> io::Result<()> {
        let until = Instant::now() + self.backend.deadline();
        self.settle_by(item, from, until).await
    }

    async fn settle_by(&self, item: &str, from: u32, until: Instant) -> io::Result<()> {
        for (tid, to, _) in self.pending(item, from).await? {
            self.finish(item, from, to, &tid, until).await?;
        }
        Ok(())
    }

    /// The transfers out of bucket `b` not yet finished: (tid, receiving bucket, units).
    async fn pending(&self, item: &str, b: u32) -> io::Result<Vec<(String, u32, u64)>> {
        let xout = self.bucket_key(item, b, "xout");
        let reply = self.cmd(&xout, &["HGETALL", &xout]).await?;
        let Value::Array(kv) = &reply else {
            return Err(unexpected("HGETALL", Some(&reply)));
        };
        kv.chunks(2)
            .map(|pair| {
                let bad = || unexpected("transfer record", Some(&reply));
                let tid = pair.first().and_then(Value::as_str).ok_or_else(bad)?;
                let rec = pair.get(1).and_then(Value::as_str).ok_or_else(bad)?;
                let (to, n) = rec.split_once(':').ok_or_else(bad)?;
                Ok((
                    tid.to_owned(),
                    to.parse().map_err(|_| bad())?,
                    n.parse().map_err(|_| bad())?,
                ))
            })
            .collect()
    }

    /// Whether the buckets' `sold` add up to the item's stock.
    async fn sold_everything(&self, item: &str, buckets: u32) -> io::Result<bool> {
        let key = self.item_key(item);
        let stock = count_or_zero(&self.cmd(&key, &["HGET", &key, "stock"]).await?)?;
        let mut sold = 0;
        for b in 0..buckets {
            let key = self.bucket_key(item, b, "item");
            sold += count_or_zero(&self.cmd(&key, &["HGET", &key, "sold"]).await?)?;
        }
        Ok(sold >= stock)
    }

    /// The buy script in bucket `b` (and `WAIT`, when the store waits for replicas).
    #[allow(clippy::too_many_arguments)]
    async fn buy_in(
        &self,
        item: &str,
        b: u32,
        buckets: u32,
        user: &str,
        order: &str,
        ts: u64,
        until: Instant,
    ) -> io::Result<Step> {
        let ts = ts.to_string();
        let keys = [
            self.bucket_key(item, b, "item"),
            self.bucket_key(item, b, "buyers"),
            self.order_key(order),
            self.bucket_key(item, b, "orders"),
        ];
        let (nb, bi) = (buckets.to_string(), b.to_string());
        let args = [
            &keys[0], &keys[1], &keys[2], &keys[3], item, user, order, &ts, &nb, &bi,
        ];
        let (reply, short) = self.eval_acked(Script::Buy, keys.len(), &args, until).await?;
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
            Some("bought") => Ok(Step::Done(match short {
                None => BuyOutcome::Bought { order: order()? },
                Some(why) => BuyOutcome::InDoubt { order: order()?, why },
            })),
            Some("already") => Ok(Step::Done(BuyOutcome::AlreadyBought { order: order()? })),
            Some("empty") => Ok(Step::Empty),
            Some("rebucket") => Ok(Step::Rebucket),
            Some("unknown") => Ok(Step::Done(BuyOutcome::UnknownItem)),
            _ => Err(bad()),
        }
    }

    /// The order id for bucket `b` (see [`RedisStore::buy`]).
    fn order_id_in(&self, item: &str, b: u32, buckets: u32, base: &str) -> io::Result<String> {
        let slot = key_slot(self.bucket_tag(item, b).as_bytes());
        match order_slot(base) {
            Some(s) if s == slot => Ok(base.to_owned()),
            Some(s) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("redis store: order id {base:?} names slot {s}, not {item:?}'s ({slot})"),
            )),
            None if buckets == 1 && matches!(self.backend, Backend::Single(_)) => Ok(base.to_owned()),
            None => Ok(format!("{slot}~{base}")),
        }
    }

    /// The item's bucket count from bucket 0, `None` if the item does not exist.
    async fn read_buckets(&self, item: &str) -> io::Result<Option<u32>> {
        let key = self.item_key(item);
        let reply = self.cmd(&key, &["HMGET", &key, "stock", "buckets"]).await?;
        match &reply {
            Value::Array(f) => match f.as_slice() {
                [Value::Nil, _] => Ok(None),
                [_, Value::Nil] => Ok(Some(1)),
                [_, n] => Ok(Some(
                    u32::try_from(count(n)?)
                        .ok()
                        .filter(|n| (1..=MAX_BUCKETS).contains(n))
                        .ok_or_else(|| unexpected("buckets", Some(n)))?,
                )),
                _ => Err(unexpected("HMGET", Some(&reply))),
            },
            _ => Err(unexpected("HMGET", Some(&reply))),
        }
    }

    /// The bucket count this core last saw for `item` (1 if none).
    fn cached_buckets(&self, item: &str) -> u32 {
        self.buckets.borrow().get(item).copied().unwrap_or(1)
    }

    fn remember_buckets(&self, item: &str, n: u32) {
        let mut cache = self.buckets.borrow_mut();
        if n > 1 {
            cache.insert(item.to_owned(), n);
        } else {
            cache.remove(item);
        }
    }

    /// The bucket count for reads: cached, else read (1 for an item that does not exist).
    pub(super) async fn known_buckets(&self, item: &str) -> io::Result<u32> {
        Ok(self.read_buckets(item).await?.unwrap_or(1))
    }
}

/// A transfer step the replicas did not acknowledge.
fn unreplicated(step: &str, tid: &str, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("redis store: transfer {tid}: {step} not acknowledged by the replicas ({why})"),
    )
}

fn count(v: &Value) -> io::Result<u64> {
    v.as_int()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| unexpected("item counter", Some(v)))
}

fn count_or_zero(v: &Value) -> io::Result<u64> {
    match v {
        Value::Nil => Ok(0),
        v => count(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_spread_over_buckets_and_one_bucket_takes_all() {
        assert_eq!(bucket_of("anyone", 1), 0);
        let mut seen = [0u32; 8];
        for i in 0..800 {
            seen[bucket_of(&format!("user-{i}"), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 40), "{seen:?}");
        assert_eq!(bucket_of("user-7", 8), bucket_of("user-7", 8));
    }
}
