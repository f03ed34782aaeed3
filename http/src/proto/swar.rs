//! Eight bytes at a time: the byte tests the head scanners use on a little-endian `u64`
//! word. A test's result has the high bit set in some byte whenever a byte of the word passes,
//! and in none otherwise; its lowest set bit is in the first byte that passes (a byte above
//! it may be flagged wrongly, by the borrow out of a passing byte), so [`first`] is exact.

const ONES: u64 = u64::from_le_bytes([1; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// Flags the bytes below `n` (`n` at most 128).
#[inline]
pub(super) const fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * n as u64) & !w & HIGH
}

/// Flags the bytes equal to `b`.
#[inline]
pub(super) const fn equal(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * b as u64);
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Flags the bytes at or above 0x80.
#[inline]
pub(super) const fn high(w: u64) -> u64 {
    w & HIGH
}

/// Flags the bytes strictly between `m` (at most 127) and `n` (at most 128). Exact in every byte: no
/// borrow or carry crosses from one byte to the next (the bytes are masked to 7 bits first,
/// and a byte at or above 0x80 is never flagged).
#[inline]
pub(super) const fn between(w: u64, m: u8, n: u8) -> u64 {
    let low = w & (ONES * 0x7f);
    (ONES * (127 + n as u64)).wrapping_sub(low) & !w & low.wrapping_add(ONES * (127 - m as u64)) & HIGH
}

/// Flags the bytes that are not a letter, a digit or `-` (the bytes of nearly every field
/// name). Exact in every byte.
#[inline]
pub(super) const fn not_name_letter(w: u64) -> u64 {
    // Bit 5 set maps `A`-`Z` onto `a`-`z`, and no other byte into that range.
    let letter = between(w | (ONES * 0x20), b'a' - 1, b'z' + 1);
    let digit = between(w, b'0' - 1, b'9' + 1);
    let dash = between(w, b'-' - 1, b'-' + 1);
    !(letter | digit | dash) & HIGH
}

/// Flags the bytes that are not a letter, a digit, `-`, `.` or `:` (the bytes of nearly
/// every `Host` value: a name or an IPv4 address, and a port). Exact in every byte. The same
/// shape as [`not_name_letter`], written out: the two through one helper taking the ranges
/// compiled the `Host` scan 9 instructions longer (`scripts/callgrind-http.sh` 4x16).
#[inline]
pub(super) const fn not_plain_host(w: u64) -> u64 {
    let letter = between(w | (ONES * 0x20), b'a' - 1, b'z' + 1);
    // `-` and `.`; the digits and `:` (one range, 0x30 to 0x3a).
    let dash_dot = between(w, b'-' - 1, b'.' + 1);
    let digit_colon = between(w, b'0' - 1, b':' + 1);
    !(letter | dash_dot | digit_colon) & HIGH
}

/// The index (0 to 7) of the first flagged byte of a non-zero test result.
#[inline]
pub(super) const fn first(flagged: u64) -> usize {
    (flagged.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact tests flag each byte as a byte-at-a-time check does, whatever its
    /// neighbours: every byte value at every position, next to bytes that would borrow or
    /// carry into it.
    #[test]
    fn the_exact_tests_flag_every_byte_as_a_byte_check_does() {
        let name_letter = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
        let next = [
            0u8, 1, 0x0d, 0x2c, 0x2d, 0x2e, 0x2f, 0x3a, 0x3b, 0x40, 0x5b, 0x60, 0x7b, 0x7f, 0x80, 0xff,
        ];
        for at in 0..8 {
            for hit in 0..=255u8 {
                for fill in next {
                    let mut bytes = [fill; 8];
                    bytes[at] = hit;
                    let w = u64::from_le_bytes(bytes);
                    let flagged = |f: u64, i: usize| f & (0x80 << (8 * i)) != 0;
                    for i in 0..8 {
                        let b = bytes[i];
                        assert_eq!(
                            flagged(not_name_letter(w), i),
                            !name_letter(b),
                            "{bytes:02x?} at {i}"
                        );
                        assert_eq!(
                            flagged(not_plain_host(w), i),
                            !(name_letter(b) || b == b'.' || b == b':'),
                            "{bytes:02x?} at {i}"
                        );
                        assert_eq!(
                            flagged(between(w, 0x2f, 0x3a), i),
                            b.is_ascii_digit(),
                            "{bytes:02x?} at {i}"
                        );
                        assert_eq!(
                            flagged(between(w, 0, 128), i),
                            b != 0 && b < 0x80,
                            "{bytes:02x?} at {i}"
                        );
                    }
                }
            }
        }
    }

    /// Every test against a byte-at-a-time check, for words with passing bytes at every
    /// position and of every value next to them.
    #[test]
    fn the_first_flagged_byte_is_the_first_that_passes() {
        let probes = [
            0u8, 1, 8, 9, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x3f, 0x7e, 0x7f, 0x80, 0xff,
        ];
        for fill in probes {
            for at in 0..8 {
                for hit in probes {
                    for next in probes {
                        let mut bytes = [fill; 8];
                        bytes[at] = hit;
                        if at < 7 {
                            bytes[at + 1] = next;
                        }
                        let w = u64::from_le_bytes(bytes);
                        let cases: [(u64, &dyn Fn(u8) -> bool); 5] = [
                            (below(w, 0x20), &|b| b < 0x20),
                            (below(w, 0x21), &|b| b < 0x21),
                            (equal(w, 0x7f), &|b| b == 0x7f),
                            (equal(w, b'?'), &|b| b == b'?'),
                            (high(w), &|b| b >= 0x80),
                        ];
                        for (flagged, passes) in cases {
                            let want = bytes.iter().position(|&b| passes(b));
                            let got = (flagged != 0).then(|| first(flagged));
                            assert_eq!(got, want, "{bytes:02x?}");
                        }
                    }
                }
            }
        }
    }
}
