//! Journal records and the start-up replay that rebuilds the sale from every core's journal.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::journal::{file_name, Journal};

/// One journal record (JSON payload).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// An item was created or its stock changed (before any sale). The highest `v` wins.
    Item {
        item: String,
        stock: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        price: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        name: Option<String>,
        v: u64,
    },
    /// A durable order.
    Order {
        order: String,
        item: String,
        user: String,
        ts: u64,
    },
}

/// An item as replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    pub stock: u64,
    pub price: Option<i64>,
    pub name: Option<String>,
    pub version: u64,
    pub sold: u64,
}

/// An order as replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRec {
    pub order: String,
    pub item: String,
    pub user: String,
    pub ts: u64,
}

/// The whole sale rebuilt from the journals.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub items: HashMap<String, ItemState>,
    pub orders: Vec<OrderRec>,
    /// One line per journal that was damaged (and cut back to its valid prefix).
    pub damage: Vec<String>,
    /// Records read, over all files.
    pub records: usize,
}

/// The core numbers of every `journal-<n>.log` in `dir`.
pub fn journal_cores(dir: &Path) -> io::Result<Vec<usize>> {
    let mut cores = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix("journal-").and_then(|r| r.strip_suffix(".log")) {
            if let Ok(n) = n.parse::<usize>() {
                if file_name(n) == name {
                    cores.push(n);
                }
            }
        }
    }
    cores.sort_unstable();
    Ok(cores)
}

/// Opens (repairing a damaged tail) and reads every journal in `dir`. Runs on a shard.
pub async fn replay_dir(dir: &Path) -> io::Result<Snapshot> {
    let mut records = Vec::new();
    let mut damage = Vec::new();
    for core in journal_cores(dir)? {
        let (journal, replay) = Journal::open(dir, core).await?;
        if let Some(d) = &replay.damage {
            damage.push(format!(
                "{}: {d}; cut {} bytes{}",
                journal.path().display(),
                replay.truncated_bytes,
                replay
                    .cut_saved_to
                    .as_ref()
                    .map(|p| format!(", saved to {}", p.display()))
                    .unwrap_or_default()
            ));
        }
        for payload in replay.records {
            let rec: Record = serde_json::from_slice(&payload).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: a checksummed record is not a flash-sale record: {e}",
                        journal.path().display()
                    ),
                )
            })?;
            records.push(rec);
        }
    }
    let mut snap = build(records);
    snap.damage = damage;
    Ok(snap)
}

/// Applies records: the highest-version item record per item, every order once.
pub fn build(records: Vec<Record>) -> Snapshot {
    let mut snap = Snapshot {
        records: records.len(),
        ..Snapshot::default()
    };
    let mut seen = std::collections::HashSet::new();
    for rec in records {
        match rec {
            Record::Item {
                item,
                stock,
                price,
                name,
                v,
            } => {
                let e = snap.items.entry(item).or_insert(ItemState {
                    stock,
                    price,
                    name: name.clone(),
                    version: v,
                    sold: 0,
                });
                if v >= e.version {
                    e.stock = stock;
                    e.price = price;
                    e.name = name;
                    e.version = v;
                }
            }
            Record::Order {
                order,
                item,
                user,
                ts,
            } => {
                if seen.insert(order.clone()) {
                    snap.orders.push(OrderRec {
                        order,
                        item,
                        user,
                        ts,
                    });
                }
            }
        }
    }
    for o in &snap.orders {
        if let Some(i) = snap.items.get_mut(&o.item) {
            i.sold += 1;
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_as_json() {
        let r = Record::Order {
            order: "0-a-1".into(),
            item: "x".into(),
            user: "u".into(),
            ts: 7,
        };
        let text = serde_json::to_string(&r).expect("serialize");
        assert_eq!(
            text,
            r#"{"t":"order","order":"0-a-1","item":"x","user":"u","ts":7}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&text).expect("parse"), r);
    }

    #[test]
    fn the_latest_item_version_wins_and_orders_count_once() {
        let item = |stock, v| Record::Item {
            item: "x".into(),
            stock,
            price: None,
            name: None,
            v,
        };
        let order = |id: &str| Record::Order {
            order: id.into(),
            item: "x".into(),
            user: id.into(),
            ts: 1,
        };
        // Files are read core by core, so a later version may come first.
        let snap = build(vec![item(5, 2), order("a"), item(9, 1), order("b"), order("a")]);
        assert_eq!(snap.items["x"].stock, 5);
        assert_eq!(snap.items["x"].sold, 2);
        assert_eq!(snap.orders.len(), 2);
    }
}
