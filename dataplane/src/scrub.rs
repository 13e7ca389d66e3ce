//! pf's scrub options applied to a packet on the wire: `no-df`,
//! `random-id`, `min-ttl`, `set-tos` (pf_norm.c `pf_scrub`) and `max-mss`
//! (pf_norm.c `pf_normalize_mss`), each with an incremental checksum
//! update (RFC 1624, [`crate::wire::checksum::update16`]).
//!
//! What pf does, and so dpf:
//! - `no-df` clears IPv4's don't-fragment bit (IPv6 has none);
//! - `random-id` gives an IPv4 packet that is not a fragment (offset 0, no
//!   more-fragments bit) a random identification;
//! - `min-ttl N` raises the IPv4 TTL or the IPv6 hop limit to at least N;
//! - `set-tos T` (`set tos T`) sets the IPv4 TOS / IPv6 traffic class to T
//!   and keeps the packet's two ECN bits (`tos | (old & IPTOS_ECN_MASK)`);
//! - `max-mss N` lowers every TCP MSS option above N to N (in practice the
//!   SYN and the SYN-ACK; pf applies it to every TCP packet of the state,
//!   both directions).
//!
//! The caller gives the frame and the offsets of the IP and transport
//! headers its classifier found; every access is bounds-checked (a frame
//! too short for a field is left as it is), nothing allocates.

#![forbid(unsafe_code)]

use crate::state::{state_flags, Scrub};
use crate::wire::checksum::update16;

/// The [`state_flags`] bits that are scrub options applied per packet.
pub const SCRUB_FLAGS: u16 = state_flags::NODF | state_flags::RANDOMID | state_flags::SETTOS;

/// The scrub a packet gets: its state's (or, without a state, the rules')
/// flags and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubAction {
    /// [`SCRUB_FLAGS`] bits.
    pub flags: u16,
    /// `max-mss`, `min-ttl`, `set-tos` values.
    pub values: Scrub,
}

impl ScrubAction {
    /// The action for `flags` (other bits ignored) and `values`, `None`
    /// when it does nothing.
    #[inline]
    pub fn of(flags: u16, values: Scrub) -> Option<ScrubAction> {
        let flags = flags & SCRUB_FLAGS;
        (flags != 0 || values.max_mss != 0 || values.min_ttl != 0)
            .then_some(ScrubAction { flags, values })
    }

    /// Whether it needs a random IPv4 id.
    #[inline]
    pub fn wants_random_id(&self) -> bool {
        self.flags & state_flags::RANDOMID != 0
    }
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(w) = b.get_mut(at..at + 2) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}

/// Applies `a` to the IPv4 packet whose header starts at `l3`.
/// `random_id` is used when `a` asks for `random-id`.
pub fn apply_v4(frame: &mut [u8], l3: usize, a: &ScrubAction, random_id: u16) {
    let Some(ip) = frame.get_mut(l3..) else {
        return;
    };
    let (Some(mut ck), Some(mut off)) = (be16(ip, 10), be16(ip, 6)) else {
        return;
    };
    if ip.len() < 20 {
        return;
    }
    // Clear IP_DF if no-df was requested.
    if a.flags & state_flags::NODF != 0 && off & 0x4000 != 0 {
        let new = off & !0x4000;
        ck = update16(ck, off, new);
        off = new;
        put16(ip, 6, off);
    }
    // Enforce a minimum TTL (word 4: TTL, protocol).
    if a.values.min_ttl != 0 && ip[8] < a.values.min_ttl {
        let old = u16::from_be_bytes([ip[8], ip[9]]);
        ip[8] = a.values.min_ttl;
        ck = update16(ck, old, u16::from_be_bytes([ip[8], ip[9]]));
    }
    // Enforce the TOS, keeping the ECN bits (word 0: version/IHL, TOS).
    if a.flags & state_flags::SETTOS != 0 {
        let old = u16::from_be_bytes([ip[0], ip[1]]);
        ip[1] = a.values.set_tos | (ip[1] & 0x03);
        ck = update16(ck, old, u16::from_be_bytes([ip[0], ip[1]]));
    }
    // random-id, but not for fragments (pf: `!(ip_off & ~IP_DF)`).
    if a.flags & state_flags::RANDOMID != 0 && off & !0x4000 == 0 {
        if let Some(old) = be16(ip, 4) {
            put16(ip, 4, random_id);
            ck = update16(ck, old, random_id);
        }
    }
    put16(ip, 10, ck);
}

/// Applies `a` to the IPv6 packet whose header starts at `l3` (hop limit
/// and traffic class; IPv6 has no header checksum, and neither field is
/// in the transport checksum's pseudo-header).
pub fn apply_v6(frame: &mut [u8], l3: usize, a: &ScrubAction) {
    let Some(ip) = frame.get_mut(l3..l3 + 8) else {
        return;
    };
    if a.values.min_ttl != 0 && ip[7] < a.values.min_ttl {
        ip[7] = a.values.min_ttl;
    }
    if a.flags & state_flags::SETTOS != 0 {
        let tc = (ip[0] & 0x0f) << 4 | ip[1] >> 4;
        let tc = a.values.set_tos | (tc & 0x03);
        ip[0] = (ip[0] & 0xf0) | tc >> 4;
        ip[1] = (ip[1] & 0x0f) | (tc & 0x0f) << 4;
    }
}

/// pf's `pf_normalize_mss`: every MSS option of the TCP header at `l4`
/// above `max_mss` becomes `max_mss`, the TCP checksum follows. Returns
/// whether an option was changed.
pub fn clamp_mss(frame: &mut [u8], l4: usize, max_mss: u16) -> bool {
    let Some(tcp) = frame.get_mut(l4..) else {
        return false;
    };
    let Some(&doff) = tcp.get(12) else {
        return false;
    };
    let hlen = ((doff >> 4) as usize * 4).min(tcp.len());
    let Some(mut ck) = be16(tcp, 16) else {
        return false;
    };
    let mut changed = false;
    let mut i = 20;
    while i < hlen {
        let kind = tcp[i];
        match kind {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = tcp.get(i + 1) else { break };
        let len = len as usize;
        if len < 2 || i + len > hlen {
            break;
        }
        if kind == 2 && len == 4 {
            let at = i + 2;
            if let Some(mss) = be16(tcp, at) {
                if mss > max_mss {
                    put16(tcp, at, max_mss);
                    // The segment is summed in 16-bit words from its start:
                    // a field at an odd offset straddles two words, which
                    // sums as the byte-swapped value.
                    ck = if at % 2 == 0 {
                        update16(ck, mss, max_mss)
                    } else {
                        update16(ck, mss.swap_bytes(), max_mss.swap_bytes())
                    };
                    changed = true;
                }
            }
        }
        i += len;
    }
    if changed {
        put16(tcp, 16, ck);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    /// An IPv4 TCP SYN: 20-byte IP header, 20-byte TCP header and `opts`.
    fn syn_v4(opts: &[u8], ttl: u8, tos: u8, df: bool) -> Vec<u8> {
        let tcp_len = 20 + opts.len();
        let mut p = vec![0u8; 20 + tcp_len];
        p[0] = 0x45;
        p[1] = tos;
        p[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        if df {
            p[6] = 0x40;
        }
        p[8] = ttl;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[192, 0, 2, 1]);
        let ck = checksum::finish(checksum::data(&p[..20]));
        p[10..12].copy_from_slice(&ck.to_be_bytes());
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[12] = ((tcp_len / 4) as u8) << 4;
        t[13] = 0x02;
        t[20..].copy_from_slice(opts);
        fill_tcp(&mut p);
        p
    }

    fn tcp_sum(p: &[u8]) -> u16 {
        let src: [u8; 4] = p[12..16].try_into().unwrap();
        let dst: [u8; 4] = p[16..20].try_into().unwrap();
        checksum::combine(&[
            checksum::pseudo_header_v4(&src, &dst, 6, (p.len() - 20) as u32),
            checksum::data(&p[20..]),
        ])
    }

    fn fill_tcp(p: &mut [u8]) {
        p[36..38].copy_from_slice(&[0, 0]);
        let ck = checksum::finish(tcp_sum(p));
        p[36..38].copy_from_slice(&ck.to_be_bytes());
    }

    fn ip_ok(p: &[u8]) -> bool {
        checksum::data(&p[..20]) == 0xffff
    }

    #[test]
    fn every_ipv4_option_with_a_valid_header_checksum() {
        let mut p = syn_v4(&[], 3, 0xb9, true); // EF with ECN 01
        let a = ScrubAction::of(
            state_flags::NODF | state_flags::SETTOS | state_flags::RANDOMID,
            Scrub {
                max_mss: 0,
                min_ttl: 64,
                set_tos: 0x28,
            },
        )
        .unwrap();
        apply_v4(&mut p, 0, &a, 0xbeef);
        assert_eq!(p[6] & 0x40, 0, "DF cleared");
        assert_eq!(p[8], 64, "TTL raised");
        assert_eq!(p[1], 0x29, "TOS set, ECN kept");
        assert_eq!(&p[4..6], &[0xbe, 0xef], "random id");
        assert!(ip_ok(&p));
        // A TTL above the minimum stays; a fragment keeps its id.
        let mut q = syn_v4(&[], 200, 0, false);
        q[6] = 0x20; // more fragments
        let ck = checksum::finish(checksum::data(&{
            let mut h = q[..20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        }));
        q[10..12].copy_from_slice(&ck.to_be_bytes());
        apply_v4(&mut q, 0, &a, 0xbeef);
        assert_eq!(q[8], 200);
        assert_eq!(&q[4..6], &[0x12, 0x34]);
        assert!(ip_ok(&q));
    }

    #[test]
    fn mss_is_clamped_at_even_and_odd_offsets_with_a_valid_checksum() {
        // MSS first (even offset), then after a NOP (odd offset).
        for opts in [
            vec![2, 4, 0x05, 0xb4, 1, 1, 4, 2],
            vec![1, 2, 4, 0x05, 0xb4, 1, 1, 0],
            vec![1, 3, 3, 7, 2, 4, 0x23, 0x28],
        ] {
            let mut p = syn_v4(&opts, 64, 0, false);
            assert!(clamp_mss(&mut p, 20, 1400));
            let at = 20 + 20 + opts.iter().position(|b| *b == 2).unwrap() + 2;
            assert_eq!(u16::from_be_bytes([p[at], p[at + 1]]), 1400);
            assert_eq!(tcp_sum(&p), 0xffff, "{opts:?}");
            // Already below: untouched.
            let before = p.clone();
            assert!(!clamp_mss(&mut p, 20, 1460));
            assert_eq!(p, before);
        }
        // Malformed option lengths end the walk without harm.
        let mut p = syn_v4(&[2, 0, 0, 0, 2, 9, 0, 0], 64, 0, false);
        assert!(!clamp_mss(&mut p, 20, 100));
        let mut short = syn_v4(&[2, 4, 0x05, 0xb4], 64, 0, false);
        short.truncate(41);
        assert!(!clamp_mss(&mut short, 20, 100));
    }

    #[test]
    fn ipv6_hop_limit_and_traffic_class() {
        let mut h = [0u8; 40];
        h[0] = 0x6b; // traffic class 0xb9: high nibble in byte 0
        h[1] = 0x91; // ... low nibble, then flow label 0x1...
        h[2] = 0x23;
        h[7] = 1;
        let a = ScrubAction::of(
            state_flags::SETTOS,
            Scrub {
                max_mss: 0,
                min_ttl: 32,
                set_tos: 0x10,
            },
        )
        .unwrap();
        apply_v6(&mut h, 0, &a);
        assert_eq!(h[7], 32);
        let tc = (h[0] & 0x0f) << 4 | h[1] >> 4;
        assert_eq!(tc, 0x11, "lowdelay with the ECN bits kept");
        assert_eq!(h[0] >> 4, 6, "version kept");
        assert_eq!((h[1] & 0x0f, h[2]), (0x01, 0x23), "flow label kept");
    }

    #[test]
    fn nothing_to_do_is_none() {
        assert_eq!(ScrubAction::of(state_flags::SLOPPY, Scrub::NONE), None);
        assert!(ScrubAction::of(
            0,
            Scrub {
                max_mss: 1,
                ..Scrub::NONE
            }
        )
        .is_some());
    }
}
