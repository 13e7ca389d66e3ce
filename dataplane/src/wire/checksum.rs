//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Conventions: a *sum* is the folded 16-bit one's-complement sum of some
//! bytes, not complemented ([`data`], [`pseudo_header_v4`], [`combine`]);
//! the *checksum* stored in a header is its complement ([`finish`]). A
//! packet whose checksum field is included in the sum verifies when the
//! sum is `0xffff`. Nothing here allocates; odd-length data is padded with
//! a zero byte as RFC 1071 §4.1 says.

/// Folds a wide one's-complement accumulator into 16 bits (end-around
/// carry, RFC 1071 §2(B)).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The folded one's-complement sum of `bytes` taken as big-endian 16-bit
/// words.
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    // Summing 32-bit words is congruent modulo 0xffff to summing their two
    // halves (2^16 = 1 mod 0xffff), so four bytes go in per step.
    let mut acc: u64 = 0;
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold(acc)
}

/// One's-complement sum of partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|s| u64::from(*s)).sum())
}

/// The checksum field value for a sum: its complement.
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// Sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source,
/// destination, zero, protocol, upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: &[u8; 4], dst: &[u8; 4], protocol: u8, length: u32) -> u16 {
    let acc = u64::from(u32::from_be_bytes(*src))
        + u64::from(u32::from_be_bytes(*dst))
        + u64::from(protocol)
        + u64::from(length);
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination,
/// 32-bit upper-layer length, three zero bytes, next header.
#[inline]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], protocol: u8, length: u32) -> u16 {
    combine(&[
        data(src),
        data(dst),
        fold(u64::from(length)),
        u16::from(protocol),
    ])
}

/// RFC 1624 eqn. 3: the new checksum field after one 16-bit word covered
/// by it changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
///
/// For UDP the caller keeps a transmitted 0 ("no checksum") as 0 and
/// turns a computed 0 into `0xffff` (RFC 768).
#[inline]
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!old) + u64::from(new))
}

/// RFC 1624 eqn. 3 for a changed 32-bit word (an IPv4 address, a TCP
/// sequence number).
#[inline]
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!checksum)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from((new >> 16) as u16)
        + u64::from(new as u16);
    !fold(acc)
}

/// RFC 1624 eqn. 3 for a changed run of bytes at an even offset (an IPv6
/// address): `old` and `new` are the bytes before and after. Bytes past the
/// shorter of the two are ignored; an odd tail is padded as in [`data`].
#[inline]
pub fn update_bytes(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    let n = old.len().min(new.len());
    let acc = u64::from(!checksum) + u64::from(!data(&old[..n])) + u64::from(data(&new[..n]));
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(finish(data(&bytes)), 0x220d);
        // Any split of the data sums the same.
        assert_eq!(combine(&[data(&bytes[..4]), data(&bytes[4..])]), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn ipv4_header_checksum() {
        // A real IPv4 header (ICMP echo 192.168.1.10 -> 192.168.1.1) with
        // its checksum 0x9b07 in place: the sum over it is 0xffff.
        let hdr = [
            0x45, 0x00, 0x00, 0x54, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x9b, 0x07, 0xc0, 0xa8,
            0x01, 0x0a, 0xc0, 0xa8, 0x01, 0x01,
        ];
        assert_eq!(data(&hdr), 0xffff);
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(finish(data(&zeroed)), 0x9b07);
    }

    #[test]
    fn ttl_decrement_update() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x54, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x9b, 0x07, 0xc0, 0xa8,
            0x01, 0x0a, 0xc0, 0xa8, 0x01, 0x01,
        ];
        let old_word = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new_word = u16::from_be_bytes([hdr[8], hdr[9]]);
        let c = update16(0x9b07, old_word, new_word);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(data(&hdr), 0xffff);
        assert_eq!(c, 0x9c07);
    }

    #[test]
    fn pseudo_headers() {
        // 10.0.0.1 -> 10.0.0.2 UDP length 12:
        // 0a00 + 0001 + 0a00 + 0002 + 0011 + 000c = 0x1420.
        assert_eq!(
            pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, 12),
            0x1420
        );
        let mut a = [0u8; 16];
        a[15] = 1;
        let mut b = [0u8; 16];
        b[0] = 0xfe;
        b[1] = 0x80;
        // ::1 -> fe80:: ICMPv6 length 0x10000: 0001 + fe80 + 0001 + 0000 + 003a.
        assert_eq!(pseudo_header_v6(&a, &b, 58, 0x1_0000), 0xfebc);
    }

    fn full(data_bytes: &[u8], at: usize) -> u16 {
        let mut d = data_bytes.to_vec();
        d[at] = 0;
        d[at + 1] = 0;
        finish(data(&d))
    }

    proptest! {
        #[test]
        fn update16_matches_recompute(
            mut bytes in proptest::collection::vec(any::<u8>(), 8..64),
            word in 0usize..3,
            new in any::<u16>(),
        ) {
            // Checksum field at 0..2, changed word somewhere after it.
            let len = bytes.len() & !1;
            bytes.truncate(len);
            let c = full(&bytes, 0);
            bytes[0..2].copy_from_slice(&c.to_be_bytes());
            let at = 2 + 2 * word;
            let old = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            bytes[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let updated = update16(c, old, new);
            // Both are valid: one's-complement arithmetic allows +0/-0 only
            // when every other word is zero, so compare by verification.
            bytes[0..2].copy_from_slice(&updated.to_be_bytes());
            prop_assert_eq!(data(&bytes), 0xffff);
        }

        #[test]
        fn update32_and_bytes_match_recompute(
            mut bytes in proptest::collection::vec(any::<u8>(), 20..21),
            new4 in any::<u32>(),
            new16 in any::<[u8; 16]>(),
        ) {
            let c = full(&bytes, 0);
            bytes[0..2].copy_from_slice(&c.to_be_bytes());
            let old = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            bytes[4..8].copy_from_slice(&new4.to_be_bytes());
            let c2 = update32(c, old, new4);
            bytes[0..2].copy_from_slice(&c2.to_be_bytes());
            prop_assert_eq!(data(&bytes), 0xffff);

            let old16: Vec<u8> = bytes[2..18].to_vec();
            bytes[2..18].copy_from_slice(&new16);
            let c3 = update_bytes(c2, &old16, &new16);
            bytes[0..2].copy_from_slice(&c3.to_be_bytes());
            prop_assert_eq!(data(&bytes), 0xffff);
        }

        #[test]
        fn split_sums_combine(bytes in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..100) {
            let cut = (cut * 2).min(bytes.len() & !1);
            prop_assert_eq!(combine(&[data(&bytes[..cut]), data(&bytes[cut..])]), data(&bytes));
        }
    }
}
