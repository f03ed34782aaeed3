//! Journal records and the start-up replay that rebuilds the sale from every core's journal,
//! checking that what it reads could have happened.
//!
//! Replay reads each `journal-<n>.log` once ([`journal::replay`]), parses its records in
//! place (strings borrowed from the file's bytes where they have no escapes), and keeps the
//! sale in a compact [`Snapshot`]: a few large allocations, freed in one piece once every
//! core has installed its part. Then it checks the meaning of the whole:
//!
//! - every order is for an item that has an item record (in any journal);
//! - no item sells more than its stock (the highest-version item record);
//! - one order per (item, user), and every order id once;
//! - no item record follows an order of that item in the same file (stock changes are
//!   refused once a sale started, so a later stock change cannot be).
//!
//! A record that breaks one, or a checksummed record that is not a flash-sale record, stops
//! the start with an [`Impossible`] error naming its file and byte offset.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::journal::{self, file_name, Entry, Replay};

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

/// A string field borrowed from the payload when it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A record as replay parses it: [`Record`]'s fields, flat, strings borrowed.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    t: Text<'a>,
    #[serde(borrow, default)]
    item: Option<Text<'a>>,
    #[serde(default)]
    stock: Option<u64>,
    #[serde(default)]
    price: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    v: Option<u64>,
    #[serde(borrow, default)]
    order: Option<Text<'a>>,
    #[serde(borrow, default)]
    user: Option<Text<'a>>,
    #[serde(default)]
    ts: Option<u64>,
}

/// A parsed record, strings borrowed.
enum Parsed<'a> {
    Item {
        item: Cow<'a, str>,
        stock: u64,
        price: Option<i64>,
        name: Option<String>,
        v: u64,
    },
    Order {
        order: Cow<'a, str>,
        item: Cow<'a, str>,
        user: Cow<'a, str>,
        ts: u64,
    },
}

fn parse(payload: &[u8]) -> Result<Parsed<'_>, String> {
    let raw: Raw<'_> = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let need = |what: &str| format!("a {:?} record without {what:?}", raw.t.0);
    match &*raw.t.0 {
        "item" => Ok(Parsed::Item {
            item: raw.item.map(|t| t.0).ok_or_else(|| need("item"))?,
            stock: raw.stock.ok_or_else(|| need("stock"))?,
            price: raw.price,
            name: raw.name,
            v: raw.v.ok_or_else(|| need("v"))?,
        }),
        "order" => Ok(Parsed::Order {
            order: raw.order.map(|t| t.0).ok_or_else(|| need("order"))?,
            item: raw.item.map(|t| t.0).ok_or_else(|| need("item"))?,
            user: raw.user.map(|t| t.0).ok_or_else(|| need("user"))?,
            ts: raw.ts.ok_or_else(|| need("ts"))?,
        }),
        other => Err(format!("unknown record type {other:?}")),
    }
}

/// A record that cannot be: replay refuses to start (inside an `InvalidData` `io::Error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impossible {
    /// The journal file.
    pub path: PathBuf,
    /// Where the record starts in it.
    pub offset: u64,
    /// What is wrong with it.
    pub problem: String,
}

impl Impossible {
    /// The report inside `e`, if `e` is one.
    pub fn of(e: &io::Error) -> Option<&Impossible> {
        e.get_ref()?.downcast_ref::<Impossible>()
    }
}

impl fmt::Display for Impossible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal {} at offset {}: {}; refusing to start, the journal is left untouched",
            self.path.display(),
            self.offset,
            self.problem
        )
    }
}

impl std::error::Error for Impossible {}

/// An item as replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    pub id: String,
    pub stock: u64,
    pub price: Option<i64>,
    pub name: Option<String>,
    pub version: u64,
    pub sold: u64,
}

/// An order in the snapshot: its strings live in [`Snapshot`]'s text.
#[derive(Debug, Clone, Copy)]
struct OrderRec {
    ts: u64,
    /// Where the order id starts in the text; the user follows it.
    at: usize,
    order_len: u32,
    user_len: u32,
    /// Index into [`Snapshot::items`].
    item: u32,
}

/// An order as replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderView<'a> {
    pub order: &'a str,
    /// Index into [`Snapshot::items`].
    pub item: u32,
    pub user: &'a str,
    pub ts: u64,
}

/// A record a repair cut off the journal, as the operator is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The journal file.
    pub path: PathBuf,
    /// Where the record was.
    pub offset: u64,
    /// The record, if it parses.
    pub record: Option<Record>,
    /// The record's checksum failed: its content is a best guess.
    pub damaged: bool,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = format!("{} offset {}", self.path.display(), self.offset);
        let guess = if self.damaged {
            "damaged record (checksum fails), reads as "
        } else {
            ""
        };
        match &self.record {
            Some(Record::Order {
                order, item, user, ..
            }) => write!(f, "{guess}order {order}: item {item}, user {user} ({at})"),
            Some(Record::Item { item, stock, v, .. }) => {
                write!(
                    f,
                    "{guess}stock record: item {item}, stock {stock}, version {v} ({at})"
                )
            }
            None if self.damaged => write!(f, "damaged record, unreadable ({at})"),
            None => write!(f, "a record that is not a flash-sale record ({at})"),
        }
    }
}

/// The whole sale rebuilt from the journals.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every item; orders refer to them by index.
    pub items: Vec<ItemState>,
    orders: Vec<OrderRec>,
    /// Order ids and users, back to back.
    text: String,
    /// One line per journal whose torn tail was cut.
    pub damage: Vec<String>,
    /// Records a repair (`--accept-data-loss`) cut off, to be listed.
    pub dropped: Vec<Dropped>,
    /// Records read, over all files.
    pub records: usize,
    /// The valid length of each journal read, by core number: where its appends continue.
    pub journals: BTreeMap<usize, u64>,
}

impl Snapshot {
    /// Number of orders.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Every order, in replay order.
    pub fn orders(&self) -> impl ExactSizeIterator<Item = OrderView<'_>> + '_ {
        self.orders.iter().map(|o| self.view(o))
    }

    fn view(&self, o: &OrderRec) -> OrderView<'_> {
        let order_end = o.at + o.order_len as usize;
        OrderView {
            order: &self.text[o.at..order_end],
            item: o.item,
            user: &self.text[order_end..order_end + o.user_len as usize],
            ts: o.ts,
        }
    }
}

/// What to do with a journal whose damage valid records follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorruption {
    /// Refuse to start ([`journal::Corruption`]).
    Refuse,
    /// Cut at the damage and list what is dropped ([`Snapshot::dropped`]).
    Cut,
}

/// The core numbers of the journals in `dir`. Every name starting with `journal-` must be
/// `journal-<n>.log` or a side file `journal-<n>.log.cut-<...>` (with `<n>` written as
/// [`file_name`] writes it); anything else is an `InvalidData` error naming it. Other names
/// (the lock file, for one) are not looked at.
pub fn journal_cores(dir: &Path) -> io::Result<Vec<usize>> {
    let mut cores = Vec::new();
    let listing = |e: io::Error| io::Error::new(e.kind(), format!("data dir {}: {e}", dir.display()));
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let raw = entry.map_err(listing)?.file_name();
        if !raw.as_encoded_bytes().starts_with(b"journal-") {
            continue;
        }
        let unrecognised = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "data dir {}: {:?} is not a journal file this build knows (journal-<core>.log, \
                     or journal-<core>.log.cut-<offset> for a saved cut): move it out of the data dir",
                    dir.display(),
                    raw
                ),
            )
        };
        let name = raw.to_str().ok_or_else(unrecognised)?;
        let (log, side) = match name.find(".log.cut-") {
            Some(i) if name.len() > i + ".log.cut-".len() => (&name[..i + ".log".len()], true),
            Some(_) => return Err(unrecognised()),
            None => (name, false),
        };
        let core = log
            .strip_prefix("journal-")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| file_name(n) == log)
            .ok_or_else(unrecognised)?;
        if !side {
            cores.push(core);
        }
    }
    cores.sort_unstable();
    Ok(cores)
}

/// Where a record came from, kept while the snapshot is checked.
#[derive(Debug, Clone, Copy)]
struct Loc {
    file: u32,
    offset: u64,
}

/// Builds the snapshot file by file; `check` then tests the whole.
#[derive(Default)]
struct Builder {
    snap: Snapshot,
    ids: HashMap<String, u32>,
    /// Per item: declared by an item record (and where the winning one is).
    declared: Vec<Option<Loc>>,
    /// Per item: the file of the last order seen, to catch a stock change after sales.
    ordered_in: Vec<Option<u32>>,
    paths: Vec<PathBuf>,
    order_locs: Vec<Loc>,
}

impl Builder {
    fn item_index(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.ids.get(id) {
            return i;
        }
        let i = self.snap.items.len() as u32;
        self.snap.items.push(ItemState {
            id: id.to_string(),
            stock: 0,
            price: None,
            name: None,
            version: 0,
            sold: 0,
        });
        self.declared.push(None);
        self.ordered_in.push(None);
        self.ids.insert(id.to_string(), i);
        i
    }

    fn impossible(&self, loc: Loc, problem: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Impossible {
                path: self.paths[loc.file as usize].clone(),
                offset: loc.offset,
                problem,
            },
        )
    }

    fn add_file<'a>(
        &mut self,
        path: PathBuf,
        records: impl ExactSizeIterator<Item = Entry<'a>>,
    ) -> io::Result<()> {
        let file = self.paths.len() as u32;
        self.paths.push(path);
        self.snap.records += records.len();
        self.snap.orders.reserve(records.len());
        for Entry { offset, payload } in records {
            let loc = Loc { file, offset };
            let rec = parse(payload).map_err(|e| {
                self.impossible(
                    loc,
                    format!("a checksummed record is not a flash-sale record: {e}"),
                )
            })?;
            match rec {
                Parsed::Item {
                    item,
                    stock,
                    price,
                    name,
                    v,
                } => {
                    let i = self.item_index(&item);
                    if self.ordered_in[i as usize] == Some(file) {
                        return Err(self.impossible(
                            loc,
                            format!(
                                "a stock change of item {item:?} (stock {stock}, version {v}) after \
                                 sales of it in the same journal (stock changes are refused once a \
                                 sale started)"
                            ),
                        ));
                    }
                    let s = &mut self.snap.items[i as usize];
                    if self.declared[i as usize].is_none() || v >= s.version {
                        (s.stock, s.price, s.name, s.version) = (stock, price, name, v);
                        self.declared[i as usize] = Some(loc);
                    }
                }
                Parsed::Order {
                    order,
                    item,
                    user,
                    ts,
                } => {
                    let i = self.item_index(&item);
                    self.ordered_in[i as usize] = Some(file);
                    let (order_len, user_len) = (u32::try_from(order.len()), u32::try_from(user.len()));
                    let (Ok(order_len), Ok(user_len)) = (order_len, user_len) else {
                        return Err(self.impossible(loc, "an order with a field over 4 GiB".into()));
                    };
                    let at = self.snap.text.len();
                    self.snap.text.push_str(&order);
                    self.snap.text.push_str(&user);
                    self.snap.orders.push(OrderRec {
                        ts,
                        at,
                        order_len,
                        user_len,
                        item: i,
                    });
                    self.order_locs.push(loc);
                }
            }
        }
        Ok(())
    }

    /// Checks the whole sale and counts the sold units.
    fn check(mut self) -> io::Result<Snapshot> {
        let snap = &self.snap;
        let mut ids: HashMap<&str, usize> = HashMap::with_capacity(snap.orders.len());
        let mut buyers: HashMap<(u32, &str), usize> = HashMap::with_capacity(snap.orders.len());
        let mut sold = vec![0u64; snap.items.len()];
        let at = |k: usize| {
            let l = self.order_locs[k];
            format!("{} offset {}", self.paths[l.file as usize].display(), l.offset)
        };
        for (k, o) in snap.orders.iter().enumerate() {
            let v = snap.view(o);
            let item = &snap.items[o.item as usize];
            let loc = self.order_locs[k];
            let Some(declared) = self.declared[o.item as usize] else {
                return Err(self.impossible(
                    loc,
                    format!(
                        "order {:?} is for item {:?}, which no item record creates",
                        v.order, item.id
                    ),
                ));
            };
            if let Some(first) = ids.insert(v.order, k) {
                return Err(self.impossible(
                    loc,
                    format!("order id {:?} again (first at {})", v.order, at(first)),
                ));
            }
            if let Some(first) = buyers.insert((o.item, v.user), k) {
                return Err(self.impossible(
                    loc,
                    format!(
                        "a second order ({:?}) of item {:?} for user {:?} (the first, {:?}, at {})",
                        v.order,
                        item.id,
                        v.user,
                        snap.view(&snap.orders[first]).order,
                        at(first)
                    ),
                ));
            }
            sold[o.item as usize] += 1;
            if sold[o.item as usize] > item.stock {
                return Err(self.impossible(
                    loc,
                    format!(
                        "order {:?} sells unit {} of item {:?}, whose stock is {} (item record at {} \
                         offset {})",
                        v.order,
                        sold[o.item as usize],
                        item.id,
                        item.stock,
                        self.paths[declared.file as usize].display(),
                        declared.offset
                    ),
                ));
            }
        }
        drop((ids, buyers));
        for (item, s) in self.snap.items.iter_mut().zip(sold) {
            item.sold = s;
        }
        Ok(self.snap)
    }
}

/// Reads every journal in `dir` once, cutting torn tails (and, with [`OnCorruption::Cut`],
/// corruption), and rebuilds and checks the sale. Plain blocking I/O: runs at start-up.
///
/// Errors (`InvalidData`): an unrecognised `journal-*` file ([`journal_cores`]), corruption
/// with [`OnCorruption::Refuse`] (a [`journal::Corruption`] inside), a record that cannot be (an
/// [`Impossible`] inside); I/O errors.
pub fn replay_dir(dir: &Path, on_corruption: OnCorruption) -> io::Result<Snapshot> {
    let mut b = Builder::default();
    for core in journal_cores(dir)? {
        let replay = match on_corruption {
            OnCorruption::Refuse => journal::replay(dir, core)?,
            OnCorruption::Cut => journal::repair(dir, core)?,
        };
        let path = dir.join(file_name(core));
        if let Some(d) = &replay.damage {
            b.snap.damage.push(damage_line(&path, &replay, d));
        }
        b.snap.dropped.extend(dropped(&path, &replay));
        b.snap.journals.insert(core, replay.valid_len);
        b.add_file(path, replay.records())?;
    }
    b.check()
}

fn damage_line(path: &Path, replay: &Replay, d: &journal::Damage) -> String {
    format!(
        "{}: {d}; cut {} bytes{}",
        path.display(),
        replay.truncated_bytes,
        replay
            .cut_saved_to
            .as_ref()
            .map(|p| format!(", saved to {}", p.display()))
            .unwrap_or_default()
    )
}

/// The records `replay` cut off past the damage (a repair), the damaged one first.
fn dropped(path: &Path, replay: &Replay) -> Vec<Dropped> {
    let mut out = Vec::new();
    if replay.dropped().len() == 0 {
        return out;
    }
    if let Some(d) = &replay.damage {
        out.push(Dropped {
            path: path.to_path_buf(),
            offset: d.offset(),
            record: replay
                .damaged_payload()
                .and_then(|p| serde_json::from_slice(p).ok()),
            damaged: true,
        });
    }
    out.extend(replay.dropped().map(|e| Dropped {
        path: path.to_path_buf(),
        offset: e.offset,
        record: serde_json::from_slice(e.payload).ok(),
        damaged: false,
    }));
    out
}

/// What a repair did to the journals in a data dir.
#[derive(Debug, Default)]
pub struct Repaired {
    /// One line per journal that was cut.
    pub cuts: Vec<String>,
    /// The records cut off after damage (orders lost from the journal), for the operator.
    pub dropped: Vec<Dropped>,
}

/// Cuts every journal in `dir` at its first damaged record (saving the cut bytes beside it)
/// and lists the records dropped. The meaning of what is left is checked at the next start.
pub fn repair_dir(dir: &Path) -> io::Result<Repaired> {
    let mut out = Repaired::default();
    for core in journal_cores(dir)? {
        let replay = journal::repair(dir, core)?;
        let path = dir.join(file_name(core));
        if let Some(d) = &replay.damage {
            out.cuts.push(damage_line(&path, &replay, d));
        }
        out.dropped.extend(dropped(&path, &replay));
    }
    Ok(out)
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
    fn replay_parses_what_the_service_writes_escapes_included() {
        let r = Record::Order {
            order: "0-a-1".into(),
            item: "x\"y".into(),
            user: "ü\\n".into(),
            ts: 7,
        };
        let text = serde_json::to_vec(&r).expect("serialize");
        match parse(&text).expect("parse") {
            Parsed::Order {
                order,
                item,
                user,
                ts,
            } => {
                assert_eq!((&*order, &*item, &*user, ts), ("0-a-1", "x\"y", "ü\\n", 7));
            }
            Parsed::Item { .. } => panic!("an order parsed as an item"),
        }
        assert!(parse(br#"{"t":"order","order":"o","item":"x","user":"u"}"#).is_err());
        assert!(parse(br#"{"t":"refund","order":"o"}"#).is_err());
        assert!(parse(b"[1,2]").is_err());
    }
}
