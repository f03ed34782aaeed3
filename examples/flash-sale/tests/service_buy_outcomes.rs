//! The buy handler's outcomes as a client and an operator see them: each answer (sold,
//! sold_out, already_bought, rate_limited, a rejected body) and the
//! `flash_sale_buys_total{outcome}` counters agree exactly; item paths are percent-decoded.

mod support_service;

use std::collections::BTreeMap;

use support_service::{unique, Client, Config, Service, TempDir};

/// `flash_sale_buys_total` by outcome, summed over any other labels.
fn buy_counters(client: &mut Client) -> BTreeMap<String, u64> {
    let text = client.must_get("/metrics").text();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("flash_sale_buys_total{")) {
        let outcome = line
            .split("outcome=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no outcome label: {line}"));
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value: {line}"));
        *out.entry(outcome.to_string()).or_insert(0) += value as u64;
    }
    out
}

#[test]
fn answers_and_outcome_counters_agree() {
    let dir = TempDir::new("buy-outcomes");
    let service = Service::start(&Config::new(1, dir.path()));
    let mut client = Client::new(service.addr());
    let item = unique("lamp");
    assert_eq!(client.put_item(&item, 2).status, 201);

    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = |resp: &support_service::Response| {
        let outcome = match (resp.status, resp.error()) {
            (200, _) => "sold".to_string(),
            (409 | 429, Some(e)) => e,
            (400, Some(e)) if e == "bad_request" => return,
            other => panic!("unexpected answer {other:?}: {}", resp.describe()),
        };
        *seen.entry(outcome).or_insert(0) += 1;
    };
    for user in ["ann", "ann", "bob", "cy"] {
        count(&client.buy(&item, user).expect("buy"));
    }
    // A body without a user: rejected by the extractor, counted nowhere.
    count(&client.post(&format!("/items/{item}/buy"), "{}").expect("bad buy"));
    let hammered = unique("pen");
    assert_eq!(client.put_item(&hammered, 100).status, 201);
    for _ in 0..30 {
        count(&client.buy_once(&hammered, "hammer").expect("buy"));
    }

    assert_eq!(seen.get("sold"), Some(&3), "{seen:?}");
    // ann's second buy, and the hammering user's buys after the first while tokens last.
    assert!(seen.get("already_bought").is_some_and(|&n| n >= 2), "{seen:?}");
    assert_eq!(seen.get("sold_out"), Some(&1), "{seen:?}");
    assert!(seen.get("rate_limited").is_some_and(|&n| n > 0), "{seen:?}");

    let counters = buy_counters(&mut client);
    for (outcome, n) in &seen {
        assert_eq!(
            counters.get(outcome),
            Some(n),
            "counter for {outcome}: answers {seen:?}, counters {counters:?}"
        );
    }
    assert_eq!(
        counters.get("overloaded").copied().unwrap_or(0),
        0,
        "{counters:?}"
    );

    // Path parameters are percent-decoded: %41 is A.
    assert_eq!(client.put_item("A", 1).status, 201);
    let resp = client.must_get("/items/%41");
    assert_eq!(
        (resp.status, resp.str_field("item").as_deref()),
        (200, Some("A")),
        "{}",
        resp.describe()
    );
    drop(client);
    service.stop_clean();
}
