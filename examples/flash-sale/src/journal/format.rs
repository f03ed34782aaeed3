//! The on-disk format, pure: the file header, record encoding, and the replay scanner.

use std::fmt;
use std::ops::Range;

/// First 8 bytes of every journal file.
pub(super) const MAGIC: [u8; 8] = *b"RCJOURNL";
/// Format version written after the magic (u32 LE); the next 4 bytes are reserved (zero).
pub(super) const VERSION: u32 = 1;
/// Length of the file header: magic, version, reserved.
pub const HEADER_LEN: u64 = 16;
/// Bytes in front of every payload: length (u32 LE) and CRC-32 of the payload (u32 LE).
pub const RECORD_OVERHEAD: usize = 8;
/// Largest payload a record may carry. A larger length field on disk is damage, so a garbled
/// length can never make replay allocate or skip gigabytes.
pub const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;

/// The 16-byte file header.
pub(super) fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// What the first bytes of a file say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeaderCheck {
    /// A complete header of this version.
    Valid,
    /// Fewer than [`HEADER_LEN`] bytes, all a prefix of our header: a creation cut short.
    Partial,
    /// Not a journal file.
    Foreign,
    /// A journal of another format version.
    Version(u32),
}

pub(super) fn check_header(bytes: &[u8]) -> HeaderCheck {
    let ours = header();
    if bytes.len() < ours.len() {
        return if ours.starts_with(bytes) {
            HeaderCheck::Partial
        } else {
            HeaderCheck::Foreign
        };
    }
    if bytes[..8] != MAGIC {
        return HeaderCheck::Foreign;
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return HeaderCheck::Version(version);
    }
    HeaderCheck::Valid
}

/// Appends one encoded record for `payload` to `out`. The caller has checked
/// `1 <= payload.len() <= MAX_RECORD_LEN`.
pub(super) fn encode_into(out: &mut Vec<u8>, payload: &[u8]) {
    let len = payload.len() as u32;
    out.reserve(RECORD_OVERHEAD + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A whole journal file holding `payloads` as records, as the journal would have written
/// them: for tools and tests that prepare a data dir. Each payload must have 1 to
/// [`MAX_RECORD_LEN`] bytes (`InvalidInput` otherwise).
pub fn encode_file<P: AsRef<[u8]>>(payloads: &[P]) -> std::io::Result<Vec<u8>> {
    let mut out = header().to_vec();
    for p in payloads {
        let p = p.as_ref();
        if p.is_empty() || p.len() > MAX_RECORD_LEN {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "journal record of {} bytes: payloads must have 1 to {MAX_RECORD_LEN} bytes",
                    p.len()
                ),
            ));
        }
        encode_into(&mut out, p);
    }
    Ok(out)
}

/// Why replay stopped before the end of the file. Offsets are from the start of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The file is shorter than its header, and what is there is a prefix of it: the file's
    /// creation was cut short. It holds no records.
    TornHeader {
        /// Bytes present.
        len: u64,
    },
    /// The file ends inside a record (its 8-byte prefix or its payload): an append cut short.
    Torn {
        /// Where the record starts.
        offset: u64,
        /// Bytes of the record present.
        present: u64,
    },
    /// A length field of zero or above [`MAX_RECORD_LEN`] (zero-filled blocks after a crash
    /// read as a zero length).
    BadLength {
        /// Where the record starts.
        offset: u64,
        /// The length field.
        len: u32,
    },
    /// The payload does not match its CRC-32.
    Checksum {
        /// Where the record starts.
        offset: u64,
        /// The payload length.
        len: u32,
    },
}

impl Damage {
    /// Where the damage starts: the file is valid up to this offset.
    pub fn offset(&self) -> u64 {
        match *self {
            Damage::TornHeader { .. } => 0,
            Damage::Torn { offset, .. }
            | Damage::BadLength { offset, .. }
            | Damage::Checksum { offset, .. } => offset,
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Damage::TornHeader { len } => write!(f, "file header cut short ({len} of {HEADER_LEN} bytes)"),
            Damage::Torn { offset, present } => {
                write!(f, "record at offset {offset} cut short ({present} bytes present)")
            }
            Damage::BadLength { offset, len } => {
                write!(f, "record at offset {offset} has an invalid length ({len})")
            }
            Damage::Checksum { offset, len } => {
                write!(f, "record at offset {offset} ({len} bytes) fails its checksum")
            }
        }
    }
}

/// The result of scanning a file body.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Scan {
    /// Payload ranges within the scanned slice, in order.
    pub(super) records: Vec<Range<usize>>,
    /// Length of the valid prefix of the slice.
    pub(super) valid: usize,
    /// Why the scan stopped before the end, if it did.
    pub(super) damage: Option<Damage>,
    /// Payload ranges of the whole, checksummed records found *after* the damage (empty
    /// without damage). None of them is part of the valid prefix; they only tell a torn tail
    /// (none) from corruption of records that were followed by more writes (some).
    pub(super) after_damage: Vec<Range<usize>>,
}

impl Scan {
    /// Damage followed by valid records: not a torn append but corruption of records that
    /// more writes came after (acknowledged ones, as each batch is synced before the next).
    pub(super) fn is_corruption(&self) -> bool {
        self.damage.is_some() && !self.after_damage.is_empty()
    }
}

/// What the record starting at `rest[0]` is.
enum Head {
    /// A whole record whose payload is `rest[RECORD_OVERHEAD..end]`.
    Valid {
        end: usize,
    },
    Damaged(Damage),
}

fn head(rest: &[u8], offset: u64) -> Head {
    if rest.len() < RECORD_OVERHEAD {
        return Head::Damaged(Damage::Torn {
            offset,
            present: rest.len() as u64,
        });
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 || len as usize > MAX_RECORD_LEN {
        return Head::Damaged(Damage::BadLength { offset, len });
    }
    let end = RECORD_OVERHEAD + len as usize;
    if rest.len() < end {
        return Head::Damaged(Damage::Torn {
            offset,
            present: rest.len() as u64,
        });
    }
    if crc32fast::hash(&rest[RECORD_OVERHEAD..end]) != crc {
        return Head::Damaged(Damage::Checksum { offset, len });
    }
    Head::Valid { end }
}

/// Reads whole records from `body[at..]` until the end or the first damaged one; returns
/// where it stopped and why.
fn run(body: &[u8], mut at: usize, base: u64, records: &mut Vec<Range<usize>>) -> (usize, Option<Damage>) {
    while at < body.len() {
        match head(&body[at..], base + at as u64) {
            Head::Valid { end } => {
                records.push(at + RECORD_OVERHEAD..at + end);
                at += end;
            }
            Head::Damaged(d) => return (at, Some(d)),
        }
    }
    (at, None)
}

/// The first offset at or after `from` where a whole record starts: a length of 1 to
/// [`MAX_RECORD_LEN`], the whole payload present, and a matching CRC-32.
///
/// A false match needs a small length field and a 32-bit checksum matching by chance; inside
/// the service's JSON payloads no offset even has a valid length (any four text bytes read
/// as a length over [`MAX_RECORD_LEN`]).
pub(super) fn next_record(body: &[u8], from: usize) -> Option<usize> {
    // No record starts inside the zeros that end the slice (its length field would be 0),
    // so the search stops at the last non-zero byte: a megabytes-long prepared tail costs
    // one backwards pass, not a record check at each of its offsets.
    let limit = body.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (from..limit).find(|&at| matches!(head(&body[at..], 0), Head::Valid { .. }))
}

/// Scans `body` (the file from offset `base` on) record by record and stops the valid prefix
/// at the first record that is cut short, has an invalid length, or fails its checksum: no
/// record after that point is ever part of the replay. Zero bytes from there to the end of
/// the slice are the **clean end** (the journal's prepared space), not damage. Otherwise the
/// bytes after the damage are searched, offset by offset, for whole checksummed records
/// ([`Scan::after_damage`]), to tell a torn tail from corruption.
pub(super) fn scan(body: &[u8], base: u64) -> Scan {
    let mut records = Vec::new();
    let (valid, mut damage) = run(body, 0, base, &mut records);
    if damage.is_some() && body[valid..].iter().all(|&b| b == 0) {
        damage = None;
    }
    let mut after_damage = Vec::new();
    if damage.is_some() {
        let mut from = valid + 1;
        while let Some(start) = next_record(body, from) {
            let (stop, more) = run(body, start, base, &mut after_damage);
            if more.is_none() {
                break;
            }
            from = stop + 1;
        }
    }
    Scan {
        records,
        valid,
        damage,
        after_damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_into(&mut out, p);
        }
        out
    }

    #[test]
    fn round_trip() {
        let body = encode(&[b"a", b"hello", &[0u8; 300]]);
        let s = scan(&body, HEADER_LEN);
        assert_eq!(s.damage, None);
        assert_eq!(s.valid, body.len());
        let got: Vec<&[u8]> = s.records.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(got, vec![&b"a"[..], b"hello", &[0u8; 300]]);
    }

    #[test]
    fn every_cut_point_keeps_exactly_the_whole_records() {
        let body = encode(&[b"first", b"second record", b"third"]);
        let ends = [8 + 5, 8 + 5 + 8 + 13, body.len()];
        for cut in 0..=body.len() {
            let s = scan(&body[..cut], 0);
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(s.records.len(), whole, "cut at {cut}");
            let valid = if whole == 0 { 0 } else { ends[whole - 1] };
            assert_eq!(s.valid, valid, "cut at {cut}");
            if cut == valid {
                assert_eq!(s.damage, None);
            } else {
                assert!(matches!(s.damage, Some(Damage::Torn { offset, .. }) if offset == valid as u64));
            }
        }
    }

    #[test]
    fn any_flipped_payload_byte_is_caught() {
        let body = encode(&[b"keep", b"flip me"]);
        for i in 8 + 4 + 8..body.len() {
            let mut bad = body.clone();
            bad[i] ^= 0x01;
            let s = scan(&bad, 100);
            assert_eq!(s.records.len(), 1);
            assert_eq!(
                s.damage,
                Some(Damage::Checksum {
                    offset: 100 + 12,
                    len: 7
                })
            );
        }
    }

    #[test]
    fn zeros_and_huge_lengths_are_bad_lengths() {
        let mut body = encode(&[b"x"]);
        body.extend_from_slice(&[0u8; 64]);
        body.push(1); // not a zero tail: something follows the zeros
        let s = scan(&body, 0);
        assert_eq!((s.records.len(), s.valid), (1, 9));
        assert_eq!(s.damage, Some(Damage::BadLength { offset: 9, len: 0 }));

        let mut huge = (MAX_RECORD_LEN as u32 + 1).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0u8; 12]);
        assert!(matches!(scan(&huge, 0).damage, Some(Damage::BadLength { .. })));
    }

    #[test]
    fn a_bad_record_hides_everything_after_it_but_is_told_from_a_torn_tail() {
        let mut body = encode(&[b"one", b"two", b"three", b"four"]);
        body[8 + 3 + 8] ^= 0xff; // first payload byte of "two"
        let s = scan(&body, 0);
        assert_eq!(s.records.len(), 1, "records after the damage are not read");
        assert_eq!(s.valid, 11);
        assert!(s.is_corruption());
        let after: Vec<&[u8]> = s.after_damage.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(after, vec![&b"three"[..], b"four"]);
    }

    #[test]
    fn damaged_length_fields_are_resynced_past() {
        for field in 0..8 {
            let mut body = encode(&[b"one", b"two", b"three"]);
            body[11 + field] ^= 0x40; // length or CRC of "two"
            let s = scan(&body, 16);
            assert_eq!((s.records.len(), s.valid), (1, 11), "field byte {field}");
            assert_eq!(s.damage.as_ref().map(Damage::offset), Some(16 + 11));
            let after: Vec<&[u8]> = s.after_damage.iter().map(|r| &body[r.clone()]).collect();
            assert_eq!(after, vec![&b"three"[..]], "field byte {field}");
        }
    }

    #[test]
    fn several_damaged_spots_still_find_every_valid_record_after_them() {
        let mut body = encode(&[b"a1", b"b22", b"c333", b"d4444", b"e55555"]);
        body[10 + 8] ^= 1; // "b22"
        body[10 + 11 + 12 + 8] ^= 1; // "d4444"
        let s = scan(&body, 0);
        let after: Vec<&[u8]> = s.after_damage.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(after, vec![&b"c333"[..], b"e55555"]);
    }

    #[test]
    fn torn_tails_are_not_corruption_and_a_zero_tail_is_a_clean_end() {
        let body = encode(&[b"first", b"second record", b"third"]);
        for cut in 0..body.len() {
            let s = scan(&body[..cut], 0);
            assert!(!s.is_corruption(), "cut at {cut}: {:?}", s.after_damage);
        }
        let mut zeros = body.clone();
        zeros.extend_from_slice(&[0u8; 4096]);
        let s = scan(&zeros, 0);
        assert_eq!((s.records.len(), s.valid, s.damage), (3, body.len(), None));
        // A record torn inside the zero-filled space is damage, and still a torn tail.
        let mut torn = zeros.clone();
        torn[body.len()..body.len() + 6].copy_from_slice(&[4, 0, 0, 0, 0xaa, 0xbb]);
        let s = scan(&torn, 0);
        assert_eq!(s.valid, body.len());
        assert!(
            matches!(s.damage, Some(Damage::Checksum { .. })),
            "{:?}",
            s.damage
        );
        assert!(!s.is_corruption());
        // Zeros in the middle, followed by a record: still corruption.
        let mut hole = encode(&[b"one"]);
        hole.extend_from_slice(&[0u8; 64]);
        encode_into(&mut hole, b"after the hole");
        hole.extend_from_slice(&[0u8; 4096]);
        let s = scan(&hole, 0);
        assert!(s.is_corruption(), "{s:?}");
    }

    #[test]
    fn a_payload_ending_in_zeros_before_the_zero_tail_is_kept() {
        let mut body = encode(&[b"x", &[7, 0, 0, 0]]);
        let end = body.len();
        body.extend_from_slice(&[0u8; 1 << 20]);
        let s = scan(&body, 0);
        assert_eq!((s.records.len(), s.valid, s.damage), (2, end, None));
    }

    #[test]
    fn next_record_needs_a_whole_checksummed_record() {
        let body = encode(&[b"xyz"]);
        let mut junk = vec![0xffu8, 0, 0, 0, 1, 2];
        junk.extend_from_slice(&body);
        assert_eq!(next_record(&junk, 0), Some(6));
        assert_eq!(next_record(&junk, 7), None);
        assert_eq!(next_record(&junk[..junk.len() - 1], 0), None, "payload cut short");
    }

    #[test]
    fn header_checks() {
        let h = header();
        assert_eq!(check_header(&h), HeaderCheck::Valid);
        assert_eq!(check_header(&h[..5]), HeaderCheck::Partial);
        assert_eq!(check_header(&[]), HeaderCheck::Partial);
        assert_eq!(check_header(b"{\"not\": \"a journal\"}"), HeaderCheck::Foreign);
        assert_eq!(check_header(b"RCJ0"), HeaderCheck::Foreign);
        let mut v2 = h;
        v2[8] = 2;
        assert_eq!(check_header(&v2), HeaderCheck::Version(2));
    }
}
