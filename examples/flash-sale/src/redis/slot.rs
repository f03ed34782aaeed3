//! Redis Cluster key slots: CRC16 (XMODEM) of the key, or of its hash tag, modulo 16384.
//!
//! The hash tag is the part between the first `{` and the next `}` when that part is not
//! empty (`{user1000}.following` hashes `user1000`); keys with the same tag share a slot,
//! which is what lets one Lua script touch all of an item's keys on a cluster.
//!
//! [`slot_tag`] goes the other way: a short tag that hashes to a given slot, so that a key
//! can be placed on the slot of another key whose name is not known later (an order, found
//! from its id alone, lives on its item's slot).

use std::sync::OnceLock;

/// How many slots a Redis Cluster has.
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as Redis Cluster uses it.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of `key` that is hashed: its hash tag if it has a non-empty one, else all of it.
pub fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// The cluster slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS
}

/// A short tag (decimal digits) whose slot is `slot`: `key_slot(format!("{{{tag}}}"))`
/// is `slot`. `slot` must be below [`SLOTS`] (it is taken modulo [`SLOTS`]).
///
/// The table (one number per slot, 64 KiB) is computed once per process, on first use
/// (a few hundred thousand CRCs of short strings: milliseconds); it never changes, so it is
/// shared by every core read-only.
pub fn slot_tag(slot: u16) -> u32 {
    static TABLE: OnceLock<Vec<u32>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = vec![u32::MAX; usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        let mut n: u32 = 0;
        // Every slot is reached well before 2^22 (checked by the unit test below).
        while missing > 0 && n < (1 << 22) {
            let s = usize::from(crc16(n.to_string().as_bytes()) % SLOTS);
            if table[s] == u32::MAX {
                table[s] = n;
                missing -= 1;
            }
            n += 1;
        }
        table
    });
    table[usize::from(slot % SLOTS)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_redis_cluster_spec() {
        // The check value in the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_of_known_keys() {
        // Values that `CLUSTER KEYSLOT` answers on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(key_slot(b"user1000"), 3443);
    }

    #[test]
    fn hash_tags_pick_the_hashed_part() {
        let a = key_slot(b"{user1000}.following");
        assert_eq!(a, key_slot(b"{user1000}.followers"));
        assert_eq!(a, key_slot(b"user1000"));
        // Only the first `{...}` counts.
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        // An empty tag means no tag: the whole key is hashed.
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"no-close{tag"), b"no-close{tag");
    }

    #[test]
    fn every_slot_has_a_tag() {
        for slot in 0..SLOTS {
            let tag = slot_tag(slot);
            assert_ne!(tag, u32::MAX, "slot {slot} has no tag");
            assert_eq!(key_slot(format!("x:{{{tag}}}:y").as_bytes()), slot);
        }
    }
}
