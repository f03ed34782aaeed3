//! The invariants a flash sale must keep, judged from what the crowd was told and what the
//! service says afterwards. Pure: the I/O that gathers the evidence is in `mod.rs`.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::crowd::{item_name, user_name, Attempt, Outcome};

/// `GET /items/{item}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct ItemState {
    pub(crate) stock: u64,
    pub(crate) sold: u64,
    pub(crate) remaining: u64,
}

/// `GET /orders/{order}` answered 200.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct OrderState {
    pub(crate) order: String,
    pub(crate) item: String,
    pub(crate) user: String,
}

/// What `GET /orders/{order}` said: the order, `None` for 404, or what went wrong.
pub(crate) type OrderLookup = Result<Option<OrderState>, String>;

/// Everything the invariants are judged on.
#[derive(Debug)]
pub(crate) struct Evidence<'a> {
    pub(crate) stock: u64,
    pub(crate) items: u32,
    pub(crate) attempts: &'a [Attempt],
    pub(crate) outcomes: &'a [Outcome],
    /// Per item, `GET /items/item-k` after the crowd.
    pub(crate) item_states: &'a [Result<ItemState, String>],
    /// Every order id named by a 200 or an already_bought answer.
    pub(crate) orders: &'a HashMap<String, OrderLookup>,
}

/// One invariant's verdict and its report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) ok: bool,
    pub(crate) text: String,
}

impl Check {
    fn new(ok: bool, text: String) -> Check {
        Check { ok, text }
    }
}

/// Order ids the checks will want looked up, each once, in first-seen order.
pub(crate) fn orders_to_look_up(outcomes: &[Outcome]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for o in outcomes {
        let id = match o {
            Outcome::Bought { order, .. } => order,
            Outcome::AlreadyBought { order: Some(order) } => order,
            _ => continue,
        };
        if seen.insert(id.as_str()) {
            out.push(id.clone());
        }
    }
    out
}

/// Per item: what the crowd saw of it.
#[derive(Debug, Default, Clone)]
struct ItemSeen {
    /// Distinct users told 200 or sold_out: the demand that got a definite answer.
    decided: HashSet<u32>,
    bought: u64,
    sold_out: bool,
    /// Sent and never answered: each may or may not have bought.
    lost: u64,
}

pub(crate) fn invariants(ev: &Evidence<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut seen = vec![ItemSeen::default(); ev.items as usize];
    for (a, o) in ev.attempts.iter().zip(ev.outcomes) {
        let s = &mut seen[a.item as usize];
        match o {
            Outcome::Bought { .. } => {
                s.bought += 1;
                s.decided.insert(a.user);
            }
            Outcome::SoldOut => {
                s.sold_out = true;
                s.decided.insert(a.user);
            }
            Outcome::Lost => s.lost += 1,
            _ => {}
        }
    }

    // Stock: sold out exactly where demand exceeded it, never oversold.
    let stock = ev.stock;
    let mut sales = Vec::new();
    for (k, (s, state)) in seen.iter().zip(ev.item_states).enumerate() {
        let name = item_name(k as u32);
        let st = match state {
            Ok(st) => st,
            Err(e) => {
                checks.push(Check::new(
                    false,
                    format!("{name}: GET /items/{name} failed: {e}"),
                ));
                continue;
            }
        };
        sales.push((s, st));
        let demand = s.decided.len() as u64;
        if demand > stock || s.sold_out {
            let ok = st.sold == stock && st.remaining == 0 && st.stock == stock;
            let why = if demand > stock {
                format!("{demand} users wanted {stock}")
            } else {
                "a buyer was told sold_out".to_string()
            };
            checks.push(Check::new(
                ok,
                format!(
                    "{name}: sold {} {} stock {stock} (remaining {}; {why})",
                    st.sold,
                    if st.sold == stock { "==" } else { "!=" },
                    st.remaining
                ),
            ));
        } else {
            let ok = st.sold <= stock && st.remaining + st.sold == stock && st.stock == stock;
            checks.push(Check::new(
                ok,
                format!(
                    "{name}: sold {} {} stock {stock} (remaining {}; {demand} users wanted it, none told sold_out)",
                    st.sold,
                    if st.sold <= stock { "<=" } else { ">" },
                    st.remaining
                ),
            ));
        }
    }

    // Every sale is an order somebody was told about (lost answers may hide some).
    let sold: u64 = sales.iter().map(|(_, st)| st.sold).sum();
    let bought: u64 = sales.iter().map(|(s, _)| s.bought).sum();
    let lost: u64 = sales.iter().map(|(s, _)| s.lost).sum();
    let ok = sales
        .iter()
        .all(|(s, st)| s.bought <= st.sold && st.sold <= s.bought + s.lost);
    let text = if lost == 0 {
        format!(
            "every sale was answered 200 (sold {sold} in total {} {bought} answers 200)",
            if sold == bought { "==" } else { "!=" }
        )
    } else {
        format!("every sale was answered 200 (sold {sold} in total, {bought} answers 200, {lost} attempts unanswered)")
    };
    checks.push(Check::new(ok, text));

    // No double sale: one order per (item, user), every order id distinct.
    let mut pairs = HashSet::new();
    let mut ids = HashSet::new();
    let mut n200 = 0;
    let mut as_asked = 0;
    for (a, o) in ev.attempts.iter().zip(ev.outcomes) {
        if let Outcome::Bought { order, item, user } = o {
            n200 += 1;
            pairs.insert((a.item, a.user));
            ids.insert(order.as_str());
            if *item == item_name(a.item) && *user == user_name(a.user) {
                as_asked += 1;
            }
        }
    }
    checks.push(Check::new(
        pairs.len() == n200 && ids.len() == n200,
        format!(
            "no user bought an item twice ({n200} orders, {} distinct (item,user), {} distinct order ids)",
            pairs.len(),
            ids.len()
        ),
    ));
    checks.push(Check::new(
        as_asked == n200,
        format!("every 200 named the item and user it was asked for ({as_asked} of {n200})"),
    ));

    // Every 200 is durable and readable.
    let mut readable = 0;
    let mut first_bad = None;
    for o in ev.outcomes {
        if let Outcome::Bought { order, item, user } = o {
            match ev.orders.get(order) {
                Some(Ok(Some(got))) if got.order == *order && got.item == *item && got.user == *user => {
                    readable += 1
                }
                other => {
                    first_bad.get_or_insert_with(|| format!("{order}: {}", describe(other)));
                }
            }
        }
    }
    checks.push(Check::new(
        readable == n200,
        format!(
            "every 200 order is readable via GET /orders ({readable} of {n200}){}",
            first_bad
                .map(|b| format!("; first unreadable {b}"))
                .unwrap_or_default()
        ),
    ));

    // already_bought names the user's own, real order.
    let mut own_order: HashMap<(u32, u32), &str> = HashMap::new();
    for (a, o) in ev.attempts.iter().zip(ev.outcomes) {
        if let Outcome::Bought { order, .. } = o {
            own_order.entry((a.item, a.user)).or_insert(order);
        }
    }
    let (mut already, mut named_own) = (0, 0);
    let mut first_bad = None;
    for (a, o) in ev.attempts.iter().zip(ev.outcomes) {
        let Outcome::AlreadyBought { order } = o else {
            continue;
        };
        already += 1;
        let verdict = match order {
            None => Err("no order named".to_string()),
            Some(id) => match (own_order.get(&(a.item, a.user)), ev.orders.get(id)) {
                (Some(own), _) if own != id => Err(format!("named {id}, but the user was sold {own}")),
                (_, Some(Ok(Some(got))))
                    if got.item == item_name(a.item) && got.user == user_name(a.user) =>
                {
                    Ok(())
                }
                (_, other) => Err(format!("{id}: {}", describe(other))),
            },
        };
        match verdict {
            Ok(()) => named_own += 1,
            Err(e) => {
                first_bad
                    .get_or_insert_with(|| format!("{} on {}: {e}", user_name(a.user), item_name(a.item)));
            }
        }
    }
    checks.push(Check::new(
        named_own == already,
        format!(
            "every already_bought named the user's own order ({named_own} of {already}){}",
            first_bad
                .map(|b| format!("; first wrong: {b}"))
                .unwrap_or_default()
        ),
    ));

    // Shedding tells the client when to come back.
    let (mut shed, mut with_retry) = (0, 0);
    for o in ev.outcomes {
        if let Outcome::TooMany { retry_after } | Outcome::Unavailable { retry_after } = o {
            shed += 1;
            with_retry += u64::from(*retry_after);
        }
    }
    checks.push(Check::new(
        with_retry == shed,
        format!("503/429 answers carried Retry-After ({with_retry} of {shed})"),
    ));

    // Nothing else came back.
    let others: Vec<_> = ev
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Other { status, body } => Some((status, body)),
            _ => None,
        })
        .collect();
    checks.push(Check::new(
        others.is_empty(),
        format!(
            "no answer outside the contract (other: {}){}",
            others.len(),
            others
                .first()
                .map(|(s, b)| format!("; first: {s} {b:?}"))
                .unwrap_or_default()
        ),
    ));
    checks
}

fn describe(lookup: Option<&OrderLookup>) -> String {
    match lookup {
        None => "not looked up".into(),
        Some(Ok(None)) => "404".into(),
        Some(Ok(Some(got))) => format!("read back as {} {} {}", got.order, got.item, got.user),
        Some(Err(e)) => e.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(user: u32, item: u32) -> Attempt {
        Attempt {
            user,
            item,
            repeat: false,
        }
    }

    fn bought(order: &str, item: u32, user: u32) -> Outcome {
        Outcome::Bought {
            order: order.into(),
            item: item_name(item),
            user: user_name(user),
        }
    }

    fn found(order: &str, item: u32, user: u32) -> OrderLookup {
        Ok(Some(OrderState {
            order: order.into(),
            item: item_name(item),
            user: user_name(user),
        }))
    }

    /// Stock 2 of item 0 (three users: two buy, one is told sold_out, the first repeats) and
    /// of item 1 (one user buys).
    type Case = (
        Vec<Attempt>,
        Vec<Outcome>,
        Vec<Result<ItemState, String>>,
        HashMap<String, OrderLookup>,
    );

    fn good() -> Case {
        let attempts = vec![
            attempt(0, 0),
            attempt(1, 0),
            attempt(2, 0),
            attempt(0, 0),
            attempt(3, 1),
        ];
        let outcomes = vec![
            bought("a", 0, 0),
            bought("b", 0, 1),
            Outcome::SoldOut,
            Outcome::AlreadyBought {
                order: Some("a".into()),
            },
            bought("c", 1, 3),
        ];
        let states = vec![
            Ok(ItemState {
                stock: 2,
                sold: 2,
                remaining: 0,
            }),
            Ok(ItemState {
                stock: 2,
                sold: 1,
                remaining: 1,
            }),
        ];
        let orders = [("a", 0, 0), ("b", 0, 1), ("c", 1, 3)]
            .into_iter()
            .map(|(o, i, u)| (o.to_string(), found(o, i, u)))
            .collect();
        (attempts, outcomes, states, orders)
    }

    fn judge(
        attempts: &[Attempt],
        outcomes: &[Outcome],
        states: &[Result<ItemState, String>],
        orders: &HashMap<String, OrderLookup>,
    ) -> Vec<Check> {
        invariants(&Evidence {
            stock: 2,
            items: 2,
            attempts,
            outcomes,
            item_states: states,
            orders,
        })
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks.iter().filter(|c| !c.ok).map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn a_correct_sale_passes_every_check() {
        let (a, o, s, ord) = good();
        let checks = judge(&a, &o, &s, &ord);
        assert_eq!(failed(&checks), Vec::<&str>::new());
        let texts: Vec<_> = checks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "item-0: sold 2 == stock 2 (remaining 0; 3 users wanted 2)",
                "item-1: sold 1 <= stock 2 (remaining 1; 1 users wanted it, none told sold_out)",
                "every sale was answered 200 (sold 3 in total == 3 answers 200)",
                "no user bought an item twice (3 orders, 3 distinct (item,user), 3 distinct order ids)",
                "every 200 named the item and user it was asked for (3 of 3)",
                "every 200 order is readable via GET /orders (3 of 3)",
                "every already_bought named the user's own order (1 of 1)",
                "503/429 answers carried Retry-After (0 of 0)",
                "no answer outside the contract (other: 0)",
            ]
        );
        assert_eq!(orders_to_look_up(&o), ["a", "b", "c"]);
    }

    #[test]
    fn stock_left_behind_a_sold_out_answer_fails() {
        let (a, o, mut s, ord) = good();
        s[0] = Ok(ItemState {
            stock: 2,
            sold: 1,
            remaining: 1,
        });
        let checks = judge(&a, &o, &s, &ord);
        let f = failed(&checks);
        assert!(
            f.iter().any(|t| t.starts_with("item-0: sold 1 != stock 2")),
            "{f:?}"
        );
        // The service also claims one sale fewer than it confirmed.
        assert!(
            f.iter().any(|t| t.starts_with("every sale was answered 200")),
            "{f:?}"
        );
    }

    #[test]
    fn double_sales_and_missing_orders_fail() {
        let (mut a, mut o, s, mut ord) = good();
        // user-1 is sold item-0 twice under different ids, and the second is not readable.
        a.push(attempt(1, 0));
        o.push(bought("d", 0, 1));
        let checks = judge(&a, &o, &s, &ord);
        let f = failed(&checks);
        assert!(
            f.iter()
                .any(|t| t.starts_with("no user bought an item twice (4 orders, 3 distinct")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|t| t.contains("(3 of 4); first unreadable d: not looked up")),
            "{f:?}"
        );
        // A reused id is caught even for distinct users.
        let (a, mut o, s, _) = good();
        o[4] = bought("a", 1, 3);
        let checks = judge(&a, &o, &s, &ord);
        assert!(failed(&checks).iter().any(|t| t.contains("2 distinct order ids")));
        // An order readable with the wrong user.
        ord.insert("b".into(), found("b", 0, 9));
        let (a, o, s, _) = good();
        let f = judge(&a, &o, &s, &ord);
        assert!(
            failed(&f)
                .iter()
                .any(|t| t.contains("read back as b item-0 user-9")),
            "{f:?}"
        );
    }

    #[test]
    fn already_bought_must_name_the_users_own_order() {
        let (a, mut o, s, ord) = good();
        o[3] = Outcome::AlreadyBought {
            order: Some("b".into()),
        };
        let f = judge(&a, &o, &s, &ord);
        assert!(
            failed(&f)
                .iter()
                .any(|t| t.contains("named b, but the user was sold a")),
            "{f:?}"
        );
        o[3] = Outcome::AlreadyBought { order: None };
        let f = judge(&a, &o, &s, &ord);
        assert!(failed(&f).iter().any(|t| t.contains("no order named")), "{f:?}");
    }

    #[test]
    fn shedding_without_retry_after_and_other_answers_fail() {
        let (mut a, mut o, s, ord) = good();
        a.extend([attempt(5, 1), attempt(6, 1), attempt(7, 1)]);
        o.extend([
            Outcome::Unavailable { retry_after: true },
            Outcome::TooMany { retry_after: false },
            Outcome::Other {
                status: 500,
                body: "boom".into(),
            },
        ]);
        let f = judge(&a, &o, &s, &ord);
        let f = failed(&f);
        assert!(
            f.contains(&"503/429 answers carried Retry-After (1 of 2)"),
            "{f:?}"
        );
        assert!(
            f.contains(&"no answer outside the contract (other: 1); first: 500 \"boom\""),
            "{f:?}"
        );
    }

    #[test]
    fn lost_answers_widen_what_sold_may_be() {
        let (mut a, mut o, mut s, ord) = good();
        a.push(attempt(8, 1));
        o.push(Outcome::Lost);
        s[1] = Ok(ItemState {
            stock: 2,
            sold: 2,
            remaining: 0,
        });
        let f = judge(&a, &o, &s, &ord);
        assert_eq!(failed(&f), Vec::<&str>::new());
        assert!(f.iter().any(|c| c.text
            == "every sale was answered 200 (sold 4 in total, 3 answers 200, 1 attempts unanswered)"));
        let (a, o, mut s, ord) = good();
        s[1] = Err("connection refused".into());
        let f = judge(&a, &o, &s, &ord);
        assert_eq!(
            failed(&f),
            ["item-1: GET /items/item-1 failed: connection refused"]
        );
    }
}
