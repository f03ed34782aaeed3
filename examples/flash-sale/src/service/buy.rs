//! `POST /items/{item}/buy`: the buyer is parsed once from the body by an extractor
//! ([`Buyer`]), every way a buy can end is a [`BuyError`] variant, and that one value decides
//! both the answer (its `IntoResponse`) and the metrics outcome.

use std::rc::Rc;
use std::time::Duration;

use ringcore_http::extract::FromRequest;
use ringcore_http::middleware::retry_after_secs;
use ringcore_http::runtime::time::sleep;
use ringcore_http::runtime::{n_shards, shard_id, spawn_local_in, submit_to, TaskClass};
use ringcore_http::{header, HeaderValue, IntoResponse, Path, Request, Response, State, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::embedded::{self, Order, Reserve, Take};
use super::replay::Record;
use super::{
    json_response, now_ms, object, on, redis_calls, redis_of, retry_later, user_limit, App, InFlight,
    MeshDown, COMMIT_WAIT_TARGET, MAX_BUYS_IN_FLIGHT, MAX_QUEUED_RECORDS, WAIT_LIMIT,
};
use crate::journal::AppendError;
use crate::redis::{new_order_id, BuyOutcome};

/// Longest user name a buy accepts, in bytes.
const MAX_USER_LEN: usize = 256;

/// The buyer named by the body `{"user": ".."}` (a non-empty name of at most 256 bytes): the
/// one parse of the body; the per-user rate limit and the order use this value.
pub(super) struct Buyer(pub(super) String);

#[derive(Deserialize)]
struct BuyBody {
    user: Option<String>,
}

impl<S> FromRequest<S> for Buyer {
    type Rejection = BuyError;

    async fn from_request(req: Request, _: &Rc<S>) -> Result<Self, BuyError> {
        match object::<BuyBody>(req.body()) {
            Ok(BuyBody { user: Some(u) }) if !u.is_empty() && u.len() <= MAX_USER_LEN => Ok(Buyer(u)),
            Ok(_) => Err(BuyError::BadRequest(
                "a non-empty \"user\" (at most 256 bytes) is required".into(),
            )),
            Err(e) => Err(BuyError::BadRequest(format!("malformed JSON: {e}"))),
        }
    }
}

/// Every way a buy can fail; each answers with its own status and `{"error": ..}` body.
#[derive(Debug)]
pub(super) enum BuyError {
    /// 400 `bad_request`: the body does not name a user.
    BadRequest(String),
    /// 503 `overloaded` + `Retry-After`: this core's own bounds (buys in flight, group commit
    /// backlog). Counted as `overloaded`.
    Overloaded(String),
    /// 429 `rate_limited` + `Retry-After`: the user's buy rate. Counted as `rate_limited`.
    RateLimited(Duration),
    /// 409 `sold_out`. Counted as `sold_out`.
    SoldOut,
    /// 409 `already_bought` with the user's order. Counted as `already_bought`.
    AlreadyBought(String),
    /// 404 `unknown_item`.
    UnknownItem,
    /// 503 `unavailable` + `Retry-After`: the store, the journal or the mesh failed, or the
    /// item stayed busy; a retry tells the truth.
    Unavailable(String),
    /// 503 `in_doubt` + `Retry-After` with the order id: Redis ran the buy, but fewer
    /// replicas than `--redis-wait-replicas` acknowledged it in time, so a failover may
    /// still lose it. The outcome is unknown: `GET /orders/{order}` answers it while the
    /// order exists, and a retry answers `already_bought` with it (or buys anew if a
    /// failover lost it). Counted as `in_doubt`.
    InDoubt { order: String, detail: String },
}

impl From<MeshDown> for BuyError {
    fn from(e: MeshDown) -> Self {
        BuyError::Unavailable(e.0)
    }
}

impl IntoResponse for BuyError {
    fn into_response(self) -> Response {
        match self {
            BuyError::BadRequest(detail) => json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request", "detail": detail}),
            ),
            BuyError::Overloaded(detail) => retry_later("overloaded", &detail),
            BuyError::RateLimited(wait) => json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "rate_limited", "detail": "this user's buys per second"}),
            )
            .header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(wait))),
            BuyError::SoldOut => json_response(StatusCode::CONFLICT, json!({"error": "sold_out"})),
            BuyError::AlreadyBought(order) => json_response(
                StatusCode::CONFLICT,
                json!({"error": "already_bought", "order": order}),
            ),
            BuyError::UnknownItem => json_response(StatusCode::NOT_FOUND, json!({"error": "unknown_item"})),
            BuyError::Unavailable(detail) => retry_later("unavailable", &detail),
            BuyError::InDoubt { order, detail } => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "error": "in_doubt",
                    "detail": format!(
                        "the outcome of this buy is unknown: {detail}; GET /orders/{order} \
                         answers it once it is readable, and a retry answers already_bought \
                         if it went through"
                    ),
                    "order": order,
                }),
            )
            .header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        }
    }
}

/// The answer to a buy: the order, or why not.
#[derive(Debug)]
pub(super) struct Sold {
    order: String,
    item: String,
    user: String,
}

impl IntoResponse for Sold {
    fn into_response(self) -> Response {
        json_response(
            StatusCode::OK,
            json!({"order": self.order, "item": self.item, "user": self.user}),
        )
    }
}

pub(super) async fn buy(
    Path(item): Path<String>,
    State(app): State<App>,
    Buyer(user): Buyer,
) -> Result<Sold, BuyError> {
    let result = attempt(&app, item, user).await;
    let m = &app.m;
    match &result {
        Ok(_) => m.sold.inc(),
        Err(BuyError::SoldOut) => m.sold_out.inc(),
        Err(BuyError::AlreadyBought(_)) => m.already.inc(),
        Err(BuyError::Overloaded(_)) => m.shed.inc(),
        Err(BuyError::RateLimited(_)) => m.rate_limited.inc(),
        Err(BuyError::InDoubt { .. }) => m.in_doubt.inc(),
        Err(BuyError::BadRequest(_) | BuyError::UnknownItem | BuyError::Unavailable(_)) => {}
    }
    result
}

async fn attempt(app: &App, item: String, user: String) -> Result<Sold, BuyError> {
    if app.buys_in_flight.get() >= MAX_BUYS_IN_FLIGHT {
        return Err(BuyError::Overloaded(
            "too many buys in progress on this core".into(),
        ));
    }
    app.buys_in_flight.set(app.buys_in_flight.get() + 1);
    let _in_flight = InFlight(app.buys_in_flight.clone());
    let redis = redis_of(app);
    if redis.is_some() {
        // The embedded store charges the user's rate in `reserve`, on the same core trip.
        let owner = embedded::user_owner(&user, n_shards());
        let u = user.clone();
        on(owner, move || user_limit::take(&u))
            .await?
            .map_err(BuyError::RateLimited)?;
    }
    let me = shard_id();
    let seq = app.seq.get() + 1;
    app.seq.set(seq);
    let order = new_order_id(&format!("{me}-{}", app.tag), 0, seq);
    let ts = now_ms();
    let order = match redis {
        Some(store) => match redis_calls::call(&store, || store.buy(&item, &user, &order, ts)).await {
            Ok(BuyOutcome::Bought { order }) => order,
            Ok(BuyOutcome::SoldOut) => return Err(BuyError::SoldOut),
            Ok(BuyOutcome::AlreadyBought { order }) => return Err(BuyError::AlreadyBought(order)),
            Ok(BuyOutcome::UnknownItem) => return Err(BuyError::UnknownItem),
            Ok(BuyOutcome::InDoubt { order, why }) => return Err(BuyError::InDoubt { order, detail: why }),
            // In doubt when it timed out: the script may have run. A retry tells the truth
            // (`already_bought` with that order), and never sells a second unit.
            Err(e) => {
                return Err(BuyError::Unavailable(format!(
                    "store: {e}; retry: a buy that went through answers already_bought"
                )))
            }
        },
        None => match commit_backlog() {
            Some(why) => return Err(BuyError::Overloaded(why)),
            None => buy_embedded(app, &item, &user, order, ts).await?,
        },
    };
    Ok(Sold { order, item, user })
}

/// Why this core's group commit cannot take another buy in time, if it cannot.
fn commit_backlog() -> Option<String> {
    let journal = embedded::core().journal.borrow().clone()?;
    let age = journal.flush_age();
    if age > COMMIT_WAIT_TARGET {
        return Some(format!(
            "the group commit ahead has waited {} ms for the disk",
            age.as_millis()
        ));
    }
    let queued = journal.queued_records();
    (queued >= MAX_QUEUED_RECORDS).then(|| format!("{queued} records wait for the group commit"))
}

async fn buy_embedded(app: &App, item: &str, user: &str, order: String, ts: u64) -> Result<String, BuyError> {
    if let Some(why) = embedded::core()
        .journal
        .borrow()
        .as_ref()
        .and_then(|j| j.failure())
    {
        // Nothing could be made durable: answer before reserving anything.
        return Err(BuyError::Unavailable(format!("journal: {why}")));
    }
    let n = n_shards();
    let u = embedded::user_owner(user, n);
    let started = std::time::Instant::now();
    let mut take_token = true;
    loop {
        if started.elapsed() > WAIT_LIMIT {
            return Err(BuyError::Unavailable("the item is busy".into()));
        }
        let (i, us) = (item.to_string(), user.to_string());
        let reserved = on(u, move || embedded::reserve(&i, &us, take_token)).await?;
        // One token per buy, not per retry of the reservation.
        take_token = false;
        let got = match reserved {
            Reserve::RateLimited(wait) => return Err(BuyError::RateLimited(wait)),
            Reserve::Got => true,
            Reserve::Empty => false,
            Reserve::Already(o) => return Err(BuyError::AlreadyBought(o)),
            Reserve::Unknown => return Err(BuyError::UnknownItem),
            Reserve::InDoubt => {
                return Err(BuyError::Unavailable(
                    "an earlier buy by this user is in doubt (a journal write failed); retry later".into(),
                ))
            }
            Reserve::InFlight | Reserve::Frozen | Reserve::NotReady => {
                sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        if !got {
            let stolen = match steal(item, u, n).await {
                Ok(s) => s,
                Err(r) => {
                    // No unit was taken: the user's pending mark goes, or every later buy
                    // of this user would wait on it.
                    let (i, us) = (item.to_string(), user.to_string());
                    on(u, move || embedded::release(&i, &us, false)).await?;
                    return Err(r);
                }
            };
            match stolen {
                Some((giver, extra)) => {
                    if extra > 0 {
                        let i = item.to_string();
                        on(u, move || embedded::deposit(&i, extra)).await?;
                        let i = item.to_string();
                        on(giver, move || embedded::settle(&i, extra)).await?;
                    }
                }
                None => {
                    let (i, us) = (item.to_string(), user.to_string());
                    on(u, move || embedded::release(&i, &us, false)).await?;
                    return Err(BuyError::SoldOut);
                }
            }
        }
        // A unit is ours and the user is pending: make the order durable.
        break;
    }
    let rec = Record::Order {
        order: order.clone(),
        item: item.to_string(),
        user: user.to_string(),
        ts,
    };
    let payload = serde_json::to_vec(&rec).map_err(|e| BuyError::Unavailable(e.to_string()))?;
    let journal = embedded::core().journal.borrow().clone();
    let Some(journal) = journal else {
        let (i, us) = (item.to_string(), user.to_string());
        on(u, move || embedded::release(&i, &us, true)).await?;
        return Err(BuyError::Unavailable("journal not open".into()));
    };
    let durable = journal.append(&payload).await;
    app.m.journal_batches.set(journal.stats().batches as i64);
    match durable {
        Ok(()) => {}
        Err(AppendError::NotWritten(e)) => {
            // Certainly not in the file: the unit and the user's mark go back.
            let (i, us) = (item.to_string(), user.to_string());
            on(u, move || embedded::release(&i, &us, true)).await?;
            return Err(BuyError::Unavailable(format!("journal: {e}")));
        }
        Err(AppendError::InDoubt(e, doubt)) => {
            // Maybe durable: hold the unit and the mark until the journal cuts the batch off.
            let (i, us) = (item.to_string(), user.to_string());
            on(u, move || embedded::mark_in_doubt(&i, &us)).await?;
            let (i, us) = (item.to_string(), user.to_string());
            spawn_local_in(TaskClass::Background, async move {
                doubt.await;
                let _ = submit_to(u, move || embedded::release(&i, &us, true)).await;
            })
            .detach();
            return Err(BuyError::Unavailable(format!(
                "journal: {e}; this buy is in doubt, retry later"
            )));
        }
    }
    let (i, us, o) = (item.to_string(), user.to_string(), order.clone());
    on(u, move || embedded::commit(&i, &us, &o)).await?;
    let owner = embedded::order_owner(&order, n);
    let o = Order {
        order: order.clone(),
        item: item.to_string(),
        user: user.to_string(),
        ts,
    };
    on(owner, move || embedded::index_order(o)).await?;
    Ok(order)
}

/// Takes units of `item` from any core for core `u`: `Some((giver, extra))` when one unit
/// was found (plus `extra` more, lent by `giver`, to deposit on `u`), `None` when no core has
/// any and none are in transit. Waits out stock changes and transits in progress.
async fn steal(item: &str, u: usize, n: usize) -> Result<Option<(usize, u64)>, BuyError> {
    let started = std::time::Instant::now();
    // "Sold out" needs two scans in a row that found every segment empty, nothing in
    // transit, and no segment refilled in between (a unit deposited on a core the first
    // scan had already passed would otherwise be missed).
    let mut previous: Option<Vec<u64>> = None;
    loop {
        let mut wait = false;
        let mut refills = Vec::with_capacity(n);
        for step in 0..n {
            let k = (u + step) % n;
            let i = item.to_string();
            match on(k, move || embedded::take(&i)).await? {
                Take::Units(g) => return Ok(Some((k, g - 1))),
                Take::Empty { lent, deposits } => {
                    wait |= lent > 0;
                    refills.push(deposits);
                }
                Take::Frozen => wait = true,
            }
        }
        if !wait {
            if previous.as_ref() == Some(&refills) {
                return Ok(None);
            }
            previous = Some(refills);
            continue;
        }
        previous = None;
        if started.elapsed() > WAIT_LIMIT {
            return Err(BuyError::Unavailable("the item is busy".into()));
        }
        sleep(Duration::from_millis(1)).await;
    }
}
