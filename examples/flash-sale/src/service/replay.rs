//! Journal records and the start-up replay that rebuilds the sale from every core's journal,
//! checking that what it reads could have happened.
//!
//! Replay reads each `journal-<n>.log` once, all of them in parallel ([`journal::load`], one
//! thread each), parses its records in place (strings borrowed from the file's bytes where
//! they have no escapes; the service's own order records without serde), hashes what the
//! cores will look up, and keeps the sale in a compact [`Snapshot`]: a few large allocations
//! per journal, freed in one piece once every core has installed its part. Then, file by file
//! in core order, it cuts what needs cutting and checks the meaning of the whole:
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

use super::{embedded, orders};
use crate::journal::{self, file_name, Entry, Loaded, Replay};

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
#[derive(Debug, PartialEq, Eq)]
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
    match parse_plain_order(payload) {
        Some(order) => Ok(order),
        None => parse_json(payload),
    }
}

fn parse_json(payload: &[u8]) -> Result<Parsed<'_>, String> {
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

/// An order record exactly as the service writes it ([`Record::Order`] through serde_json)
/// when no string needs an escape, which is nearly every record of a big journal: parsed
/// without serde (its share of a 1,000,000-order start-up, `scripts/bench-flash-sale-startup.sh`,
/// went from about 0.3 s per journal to a fraction of it). Anything else, `None`, and serde
/// decides; what this accepts, serde reads the same.
fn parse_plain_order(payload: &[u8]) -> Option<Parsed<'_>> {
    let rest = payload.strip_prefix(br#"{"t":"order","order":""#)?;
    let (order, rest) = plain_str(rest)?;
    let (item, rest) = plain_str(rest.strip_prefix(br#","item":""#)?)?;
    let (user, rest) = plain_str(rest.strip_prefix(br#","user":""#)?)?;
    let ts = plain_u64(rest.strip_prefix(br#","ts":"#)?.strip_suffix(b"}")?)?;
    Some(Parsed::Order {
        order: Cow::Borrowed(order),
        item: Cow::Borrowed(item),
        user: Cow::Borrowed(user),
        ts,
    })
}

/// A JSON string's body up to its closing quote, when it has no escape and no control
/// character, and the bytes after the quote.
fn plain_str(b: &[u8]) -> Option<(&str, &[u8])> {
    let end = b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    if b[end] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&b[..end]).ok()?, &b[end + 1..]))
}

/// A JSON integer without sign, exponent or leading zero that fits a `u64`.
fn plain_u64(digits: &[u8]) -> Option<u64> {
    match digits {
        [b'0'] => Some(0),
        [b'1'..=b'9', ..] => digits.iter().try_fold(0u64, |n, &c| {
            c.is_ascii_digit()
                .then(|| n.checked_mul(10)?.checked_add(u64::from(c - b'0')))?
        }),
        _ => None,
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

/// An order in the snapshot: its strings live in its [`Part`]'s text. Replay works out here,
/// once, what each core's install needs (the hashes and the owner cores' inputs), so no core
/// hashes a string again.
#[derive(Debug, Clone, Copy)]
struct OrderRec {
    ts: u64,
    /// Where the order id starts in the text; the user follows it.
    at: usize,
    /// [`embedded::stable_hash`] of the user: the user's owner core is this modulo the
    /// number of cores.
    owner_hash: u64,
    /// [`orders::text_hash`] of the order id and of the user.
    id_hash: u64,
    user_hash: u64,
    order_len: u32,
    user_len: u32,
    /// Index into [`Snapshot::items`].
    item: u32,
    /// The core number the order id starts with ([`embedded::id_core`]), `u32::MAX` if none
    /// (or one no run has).
    id_core: u32,
}

/// One journal's orders: their records and their strings, back to back.
#[derive(Debug, Default)]
struct Part {
    orders: Vec<OrderRec>,
    text: String,
}

impl Part {
    fn order(&self, o: &OrderRec) -> &str {
        &self.text[o.at..o.at + o.order_len as usize]
    }

    fn user(&self, o: &OrderRec) -> &str {
        let start = o.at + o.order_len as usize;
        &self.text[start..start + o.user_len as usize]
    }
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

/// An order as a core's install reads it: the view, and what replay worked out for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replayed<'a> {
    pub(crate) view: OrderView<'a>,
    /// [`orders::text_hash`] of the order id and of the user.
    pub(crate) id_hash: u64,
    pub(crate) user_hash: u64,
    owner_hash: u64,
    id_core: u32,
}

impl Replayed<'_> {
    /// [`embedded::user_owner`] of the order's user.
    pub(crate) fn user_owner(&self, n: usize) -> usize {
        embedded::owner_of(self.owner_hash, n)
    }

    /// [`embedded::order_owner`] of the order.
    pub(crate) fn order_owner(&self, n: usize) -> usize {
        match self.id_core as usize {
            c if c < n => c,
            _ => embedded::owner_of(embedded::stable_hash(self.view.order), n),
        }
    }
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
    /// The orders, journal by journal.
    parts: Vec<Part>,
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
        self.parts.iter().map(|p| p.orders.len()).sum()
    }

    /// Every order, in replay order.
    pub fn orders(&self) -> impl Iterator<Item = OrderView<'_>> + '_ {
        self.replayed().map(|r| r.view)
    }

    /// Every order with what replay worked out for it, in replay order.
    pub(crate) fn replayed(&self) -> impl Iterator<Item = Replayed<'_>> + '_ {
        self.parts
            .iter()
            .flat_map(|p| p.orders.iter().map(move |o| p.replayed(o)))
    }

    /// The order numbered `k` in replay order: (its file's number, its number in the file).
    /// `k` must be below [`Snapshot::order_count`].
    fn locate(&self, k: usize) -> (usize, usize) {
        let mut k = k;
        for (file, p) in self.parts.iter().enumerate() {
            if k < p.orders.len() {
                return (file, k);
            }
            k -= p.orders.len();
        }
        (self.parts.len(), k)
    }

    fn nth(&self, k: usize) -> (&Part, &OrderRec) {
        let (file, i) = self.locate(k);
        let p = &self.parts[file];
        (p, &p.orders[i])
    }
}

impl Part {
    fn replayed(&self, o: &OrderRec) -> Replayed<'_> {
        Replayed {
            view: OrderView {
                order: self.order(o),
                item: o.item,
                user: self.user(o),
                ts: o.ts,
            },
            id_hash: o.id_hash,
            user_hash: o.user_hash,
            owner_hash: o.owner_hash,
            id_core: o.id_core,
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

/// One journal parsed on its own thread, its items numbered in the order the file first
/// names them.
#[derive(Default)]
struct Parsed1 {
    /// Item ids by this file's numbers.
    items: Vec<String>,
    /// The file's item records, in order.
    stock: Vec<Stock>,
    /// The file's orders (their `item` is this file's number until [`Builder::add_file`]).
    part: Part,
    /// Per order: where its record starts.
    offsets: Vec<u64>,
    records: usize,
}

/// An item record.
struct Stock {
    item: u32,
    stock: u64,
    price: Option<i64>,
    name: Option<String>,
    v: u64,
    offset: u64,
}

/// Parses one journal's records and hashes what the cores will look up (see [`OrderRec`]);
/// stops at the first record that cannot be, with its offset and the problem. Reads nothing
/// outside the file, so the journals are parsed in parallel.
fn parse_file<'a>(records: impl ExactSizeIterator<Item = Entry<'a>>) -> Result<Parsed1, (u64, String)> {
    let mut f = Parsed1 {
        records: records.len(),
        ..Parsed1::default()
    };
    f.part.orders.reserve(records.len());
    f.offsets.reserve(records.len());
    let mut numbers: HashMap<String, u32> = HashMap::new();
    // Per item: an order of it came earlier in this file.
    let mut ordered: Vec<bool> = Vec::new();
    let mut number = |f: &mut Parsed1, ordered: &mut Vec<bool>, id: &str| -> u32 {
        if let Some(&i) = numbers.get(id) {
            return i;
        }
        let i = f.items.len() as u32;
        f.items.push(id.to_string());
        ordered.push(false);
        numbers.insert(id.to_string(), i);
        i
    };
    for Entry { offset, payload } in records {
        let rec = parse(payload).map_err(|e| {
            (
                offset,
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
                let i = number(&mut f, &mut ordered, &item);
                if ordered[i as usize] {
                    return Err((
                        offset,
                        format!(
                            "a stock change of item {item:?} (stock {stock}, version {v}) after \
                             sales of it in the same journal (stock changes are refused once a \
                             sale started)"
                        ),
                    ));
                }
                f.stock.push(Stock {
                    item: i,
                    stock,
                    price,
                    name,
                    v,
                    offset,
                });
            }
            Parsed::Order {
                order,
                item,
                user,
                ts,
            } => {
                let i = number(&mut f, &mut ordered, &item);
                ordered[i as usize] = true;
                let (order_len, user_len) = (u32::try_from(order.len()), u32::try_from(user.len()));
                let (Ok(order_len), Ok(user_len)) = (order_len, user_len) else {
                    return Err((offset, "an order with a field over 4 GiB".into()));
                };
                let at = f.part.text.len();
                f.part.text.push_str(&order);
                f.part.text.push_str(&user);
                f.part.orders.push(OrderRec {
                    ts,
                    at,
                    owner_hash: embedded::stable_hash(&user),
                    id_hash: orders::text_hash(&order),
                    user_hash: orders::text_hash(&user),
                    order_len,
                    user_len,
                    item: i,
                    id_core: embedded::id_core(&order)
                        .and_then(|c| u32::try_from(c).ok())
                        .unwrap_or(u32::MAX),
                });
                f.offsets.push(offset);
            }
        }
    }
    Ok(f)
}

/// Builds the snapshot file by file; `check` then tests the whole.
#[derive(Default)]
struct Builder {
    snap: Snapshot,
    ids: HashMap<String, u32>,
    /// Per item: declared by an item record (and where the winning one is).
    declared: Vec<Option<Loc>>,
    paths: Vec<PathBuf>,
    /// Per file, per order: where its record starts.
    offsets: Vec<Vec<u64>>,
}

/// What is wrong with an order, in the order the checks run on each order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wrong {
    /// Its item has no item record.
    Undeclared,
    /// Its id came before, at this order number.
    RepeatedId(usize),
    /// Its user bought the item before, in this order.
    RepeatedBuyer(usize),
    /// It sells this unit of an item with less stock.
    Oversold(u64),
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

    /// Adds a parsed file (or reports why it could not be parsed).
    fn add_file(&mut self, path: PathBuf, parsed: Result<Parsed1, (u64, String)>) -> io::Result<()> {
        let file = self.paths.len() as u32;
        self.paths.push(path);
        let f = parsed.map_err(|(offset, problem)| self.impossible(Loc { file, offset }, problem))?;
        self.snap.records += f.records;
        let global: Vec<u32> = f.items.iter().map(|id| self.item_index(id)).collect();
        for st in f.stock {
            let i = global[st.item as usize] as usize;
            let s = &mut self.snap.items[i];
            if self.declared[i].is_none() || st.v >= s.version {
                (s.stock, s.price, s.name, s.version) = (st.stock, st.price, st.name, st.v);
                self.declared[i] = Some(Loc {
                    file,
                    offset: st.offset,
                });
            }
        }
        let mut part = f.part;
        for o in &mut part.orders {
            o.item = global[o.item as usize];
        }
        self.snap.parts.push(part);
        self.offsets.push(f.offsets);
        Ok(())
    }

    fn loc_of(&self, k: usize) -> Loc {
        let (file, i) = self.snap.locate(k);
        Loc {
            file: file as u32,
            offset: self.offsets[file][i],
        }
    }

    /// Checks the whole sale and counts the sold units. The repeat checks (order ids, and
    /// `(item, user)`) run on two threads; the first order that breaks any check is reported,
    /// as if the orders were checked one by one.
    fn check(mut self) -> io::Result<Snapshot> {
        let snap = &self.snap;
        let count = snap.order_count();
        if count >= u32::MAX as usize {
            let loc = self.loc_of(count - 1);
            return Err(self.impossible(loc, "more than 4 billion orders".into()));
        }
        let (repeated_id, repeated_buyer) = std::thread::scope(|s| {
            let ids = s.spawn(|| {
                first_repeat(
                    snap,
                    count,
                    |o| o.id_hash,
                    |(p, o), (q, r)| p.order(o) == q.order(r),
                )
            });
            let buyers = first_repeat(
                snap,
                count,
                |o| orders::pair_hash(o.item, o.user_hash),
                |(p, o), (q, r)| o.item == r.item && p.user(o) == q.user(r),
            );
            let ids = ids.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            (ids, buyers)
        });
        let mut sold = vec![0u64; snap.items.len()];
        let mut wrong: Option<(usize, Wrong)> = None;
        'orders: for (k, o) in snap.parts.iter().flat_map(|p| p.orders.iter()).enumerate() {
            let i = o.item as usize;
            if self.declared[i].is_none() {
                wrong = Some((k, Wrong::Undeclared));
                break 'orders;
            }
            sold[i] += 1;
            if sold[i] > snap.items[i].stock {
                wrong = Some((k, Wrong::Oversold(sold[i])));
                break 'orders;
            }
        }
        let wrong = [
            wrong,
            repeated_id.map(|(k, first)| (k, Wrong::RepeatedId(first))),
            repeated_buyer.map(|(k, first)| (k, Wrong::RepeatedBuyer(first))),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some((k, wrong)) = wrong {
            return Err(self.wrong(k, wrong));
        }
        for (item, s) in self.snap.items.iter_mut().zip(sold) {
            item.sold = s;
        }
        Ok(self.snap)
    }

    /// The error for order `k`.
    fn wrong(&self, k: usize, wrong: Wrong) -> io::Error {
        let snap = &self.snap;
        let (p, o) = snap.nth(k);
        let v = p.replayed(o).view;
        let item = &snap.items[o.item as usize];
        let loc = self.loc_of(k);
        let at = |k: usize| {
            let l = self.loc_of(k);
            format!("{} offset {}", self.paths[l.file as usize].display(), l.offset)
        };
        let problem = match wrong {
            Wrong::Undeclared => format!(
                "order {:?} is for item {:?}, which no item record creates",
                v.order, item.id
            ),
            Wrong::RepeatedId(first) => format!("order id {:?} again (first at {})", v.order, at(first)),
            Wrong::RepeatedBuyer(first) => {
                let (q, r) = snap.nth(first);
                format!(
                    "a second order ({:?}) of item {:?} for user {:?} (the first, {:?}, at {})",
                    v.order,
                    item.id,
                    v.user,
                    q.order(r),
                    at(first)
                )
            }
            Wrong::Oversold(unit) => {
                let declared = self.declared[o.item as usize].unwrap_or(loc);
                format!(
                    "order {:?} sells unit {} of item {:?}, whose stock is {} (item record at {} \
                     offset {})",
                    v.order,
                    unit,
                    item.id,
                    item.stock,
                    self.paths[declared.file as usize].display(),
                    declared.offset
                )
            }
        };
        self.impossible(loc, problem)
    }
}

/// The first order (in replay order) whose key an earlier order has, and that earlier order:
/// `(k, first)`. `hash` gives an order's key hash, `same` tells equal keys.
fn first_repeat(
    snap: &Snapshot,
    count: usize,
    hash: impl Fn(&OrderRec) -> u64,
    same: impl Fn((&Part, &OrderRec), (&Part, &OrderRec)) -> bool,
) -> Option<(usize, usize)> {
    let mut seen = Seen::with_capacity(count);
    let mut k = 0u32;
    for p in &snap.parts {
        for o in &p.orders {
            if let Some(first) = seen.insert(hash(o), k, |x| same((p, o), snap.nth(x as usize))) {
                return Some((k as usize, first as usize));
            }
            k += 1;
        }
    }
    None
}

/// The repeat finder's table: open addressing of order numbers, linear probing, at most half
/// full; each slot holds the upper half of its key's hash beside the number (stored + 1; 0 is
/// an empty slot), so a probe compares keys only when 32 more bits of hash agree. The hashes
/// are keyed per process ([`orders::text_hash`]): journaled user ids cannot be chosen to
/// collide.
struct Seen {
    slots: Vec<u64>,
}

impl Seen {
    fn with_capacity(n: usize) -> Seen {
        Seen {
            slots: vec![0; (n * 2).next_power_of_two().max(2)],
        }
    }

    /// Adds order `k` with key hash `hash`, unless an order whose key `same` accepts is
    /// there: then returns that order's number.
    fn insert(&mut self, hash: u64, k: u32, same: impl Fn(u32) -> bool) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let tag = hash >> 32;
        let mut i = hash as usize & mask;
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = tag << 32 | (u64::from(k) + 1);
                    return None;
                }
                s if s >> 32 == tag && same(s as u32 - 1) => return Some(s as u32 - 1),
                _ => i = (i + 1) & mask,
            }
        }
    }
}

/// Reads every journal in `dir` once, cutting torn tails (and, with [`OnCorruption::Cut`],
/// corruption), and rebuilds and checks the sale. Plain blocking I/O: runs at start-up.
///
/// The journals are read, scanned and parsed in parallel, one thread each, changing nothing
/// on disk ([`journal::load`]); then, file by file in core order, each is cut where needed
/// and its records join the snapshot, so errors and cuts come out as if the files were read
/// one after the other.
///
/// Errors (`InvalidData`): an unrecognised `journal-*` file ([`journal_cores`]), corruption
/// with [`OnCorruption::Refuse`] (a [`journal::Corruption`] inside), a record that cannot be (an
/// [`Impossible`] inside); I/O errors.
pub fn replay_dir(dir: &Path, on_corruption: OnCorruption) -> io::Result<Snapshot> {
    let cores = journal_cores(dir)?;
    type Read = io::Result<(Loaded, Result<Parsed1, (u64, String)>)>;
    let read: Vec<Read> = std::thread::scope(|s| {
        let threads: Vec<_> = cores
            .iter()
            .map(|&core| {
                s.spawn(move || -> Read {
                    let loaded = journal::load(dir, core)?;
                    let parsed = parse_file(loaded.records());
                    Ok((loaded, parsed))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut b = Builder::default();
    for (core, read) in cores.into_iter().zip(read) {
        let (loaded, parsed) = read?;
        let replay = match on_corruption {
            OnCorruption::Refuse => loaded.replay()?,
            OnCorruption::Cut => loaded.repair()?,
        };
        let path = dir.join(file_name(core));
        if let Some(d) = &replay.damage {
            b.snap.damage.push(damage_line(&path, &replay, d));
        }
        b.snap.dropped.extend(dropped(&path, &replay));
        b.snap.journals.insert(core, replay.valid_len);
        drop(replay);
        b.add_file(path, parsed)?;
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

    #[test]
    fn plain_orders_parse_exactly_as_serde_does() {
        let plain: &[&[u8]] = &[
            br#"{"t":"order","order":"0-a-1","item":"x","user":"u","ts":7}"#,
            br#"{"t":"order","order":"","item":"","user":"","ts":0}"#,
            "{\"t\":\"order\",\"order\":\"ü\",\"item\":\"x y\",\"user\":\"☃\",\"ts\":18446744073709551615}"
                .as_bytes(),
        ];
        for &p in plain {
            assert!(parse_plain_order(p).is_some(), "{}", String::from_utf8_lossy(p));
            assert_eq!(parse(p), parse_json(p));
        }
        // Everything else is serde's to read or refuse.
        let other: &[&[u8]] = &[
            br#"{"t":"order","order":"a\"b","item":"x","user":"u","ts":7}"#,
            br#"{"t":"order","order":"a\u0041","item":"x","user":"u","ts":7}"#,
            b"{\"t\":\"order\",\"order\":\"a\tb\",\"item\":\"x\",\"user\":\"u\",\"ts\":7}",
            b"{\"t\":\"order\",\"order\":\"\xff\",\"item\":\"x\",\"user\":\"u\",\"ts\":7}",
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":07}"#,
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":-7}"#,
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":7.0}"#,
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":18446744073709551616}"#,
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":7} "#,
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":7}}"#,
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":7,"x":1}"#,
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":}"#,
            br#"{"t":"order","order":"o","item":"x","user":"u"}"#,
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":"7"}"#,
            br#"{"t":"order","order":"o","user":"u","item":"x","ts":7}"#,
            br#"{"t":"order","order":"o","item":"x","user":"u","ts":7"#,
        ];
        for &p in other {
            assert_eq!(parse_plain_order(p), None, "{}", String::from_utf8_lossy(p));
            assert_eq!(parse(p), parse_json(p));
        }
    }

    fn journal_dir(name: &str, files: &[&[Record]]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flash-sale-replay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create dir");
        for (core, records) in files.iter().enumerate() {
            let payloads: Vec<Vec<u8>> = records
                .iter()
                .map(|r| serde_json::to_vec(r).expect("serialize"))
                .collect();
            let bytes = journal::encode_file(&payloads).expect("encode");
            std::fs::write(dir.join(file_name(core)), bytes).expect("write");
        }
        dir
    }

    fn item(id: &str, stock: u64) -> Record {
        Record::Item {
            item: id.into(),
            stock,
            price: None,
            name: None,
            v: 1,
        }
    }

    fn order(id: &str, item: &str, user: &str) -> Record {
        Record::Order {
            order: id.into(),
            item: item.into(),
            user: user.into(),
            ts: 1,
        }
    }

    /// Offset of record `n` of a journal whose records are `records`.
    fn offset_of(records: &[Record], n: usize) -> u64 {
        journal::HEADER_LEN
            + records[..n]
                .iter()
                .map(|r| (journal::RECORD_OVERHEAD + serde_json::to_vec(r).expect("json").len()) as u64)
                .sum::<u64>()
    }

    #[test]
    fn the_first_impossible_order_is_named_whichever_check_finds_it() {
        // Core 1's third record is a repeated (item, user) and oversells `a`; its fourth
        // repeats an order id; core 0 is fine. The checks run apart, the first order wins,
        // and at one order the checks' own order decides (repeated buyer before oversold).
        let zero = [
            item("a", 3),
            item("b", 5),
            order("0-1", "a", "u1"),
            order("0-2", "a", "u2"),
        ];
        let one = [
            order("1-1", "a", "u3"),
            order("1-2", "b", "u1"),
            order("1-3", "a", "u1"),
            order("0-1", "a", "u4"),
        ];
        let dir = journal_dir("first", &[&zero, &one]);
        let e = replay_dir(&dir, OnCorruption::Refuse).expect_err("impossible");
        let report = Impossible::of(&e).expect("an impossible record");
        assert_eq!(report.path, dir.join(file_name(1)));
        assert_eq!(report.offset, offset_of(&one, 2), "{report}");
        assert!(report.problem.contains("a second order (\"1-3\")"), "{report}");
        assert!(
            report
                .problem
                .contains(&format!("offset {}", offset_of(&zero, 2))),
            "names the first order: {report}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");

        // Without the repeated buyer, the repeated id...
        let one = [order("1-1", "b", "u3"), order("0-1", "a", "u4")];
        let dir = journal_dir("first-id", &[&zero, &one]);
        let e = replay_dir(&dir, OnCorruption::Refuse).expect_err("impossible");
        let report = Impossible::of(&e).expect("an impossible record");
        assert_eq!(report.offset, offset_of(&one, 1), "{report}");
        assert!(report.problem.contains("order id \"0-1\" again"), "{report}");
        std::fs::remove_dir_all(&dir).expect("clean up");

        // ...and the same sale without it starts, every order counted once.
        let one = [order("1-1", "b", "u3"), order("1-2", "a", "u4")];
        let dir = journal_dir("first-ok", &[&zero, &one]);
        let snap = replay_dir(&dir, OnCorruption::Refuse).expect("valid");
        let sold: Vec<(&str, u64)> = snap.items.iter().map(|i| (i.id.as_str(), i.sold)).collect();
        assert_eq!(sold, [("a", 3), ("b", 1)]);
        let ids: Vec<&str> = snap.orders().map(|o| o.order).collect();
        assert_eq!(ids, ["0-1", "0-2", "1-1", "1-2"]);
        assert_eq!(snap.journals.len(), 2);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
