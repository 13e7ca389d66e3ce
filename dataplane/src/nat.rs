//! Address translation on the packet path: which endpoints a packet of a
//! translated state gets ([`map_endpoints`]) and rewriting a frame to
//! them with incremental checksum updates ([`rewrite`]), including the
//! packet quoted inside an ICMP error ([`rewrite_icmp_error`]).
//!
//! A translated state has two keys ([`Translation`]): the ingress side (as
//! its first packet arrived, [`State::key`]) and the egress side (as that
//! packet left). Only two orientations are valid for a packet: the
//! initiator's direction arriving on the ingress side, and the responder's
//! direction arriving on the egress side — as pf looks a packet up by the
//! wire key inbound and the stack key outbound, a packet that claims the
//! other orientation (a host behind the NAT spoofing the translated
//! address, an outside host sending to the private address) matches
//! nothing and is dropped. ICMP errors quote packets going the other way,
//! so for them the two other orientations are the valid ones.
//!
//! Invariants: a rewrite touches only the fields it changes and updates
//! every checksum that covers them (IPv4 header, TCP, UDP unless 0 over
//! IPv4, ICMPv4 for the query id, ICMPv6 with its pseudo-header); nothing
//! allocates.

use crate::flow::{proto, Addr, Af, PacketInfo};
use crate::state::{State, Translation};
use crate::wire::checksum;

/// A packet's endpoints: source and destination address and port (ICMP
/// queries: the id on the querier's side, the type on the other, as pf
/// keys them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Source address.
    pub src: Addr,
    /// Source port (ICMP query: id of a request, type of a reply).
    pub sport: u16,
    /// Destination address.
    pub dst: Addr,
    /// Destination port (ICMP query: type of a request, id of a reply).
    pub dport: u16,
}

impl Endpoints {
    /// A packet's endpoints.
    pub fn of(info: &PacketInfo) -> Endpoints {
        Endpoints {
            src: info.src,
            sport: info.sport,
            dst: info.dst,
            dport: info.dport,
        }
    }
}

/// How a packet relates to the translated state it matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Orientation {
    /// Initiator to responder, on the ingress side (translated forward).
    IngressForward,
    /// Responder to initiator, on the egress side (translated back).
    EgressReply,
    /// Initiator to responder as seen on the egress side (only valid as
    /// the packet quoted by an ICMP error coming from the egress side).
    EgressForward,
    /// Responder to initiator as seen on the ingress side (only valid as
    /// the packet quoted by an ICMP error coming from the ingress side).
    IngressReply,
}

impl Orientation {
    /// Whether the packet travels from pf's `src` peer (the initiator).
    pub fn from_src(self) -> bool {
        matches!(
            self,
            Orientation::IngressForward | Orientation::EgressForward
        )
    }
}

/// The orientation of a packet from `src` (address, port) that matched
/// `st` by its own key (`far == false`) or its translation's key, and the
/// endpoints it gets on the other side. `None` when `src` is neither end
/// of the matched key (cannot happen for a key match).
pub fn map_endpoints(
    st: &State,
    tr: &Translation,
    far: bool,
    src: (Addr, u16),
) -> Option<(Orientation, Endpoints)> {
    let (a_src, a_dst) = (st.src_endpoint(), st.dst_endpoint());
    let (b_src, b_dst) = (tr.src_endpoint(), tr.dst_endpoint());
    let ends = |s: (Addr, u16), d: (Addr, u16)| Endpoints {
        src: s.0,
        sport: s.1,
        dst: d.0,
        dport: d.1,
    };
    if !far {
        if src == a_src {
            Some((Orientation::IngressForward, ends(b_src, b_dst)))
        } else if src == a_dst {
            Some((Orientation::IngressReply, ends(b_dst, b_src)))
        } else {
            None
        }
    } else if src == b_dst {
        Some((Orientation::EgressReply, ends(a_dst, a_src)))
    } else if src == b_src {
        Some((Orientation::EgressForward, ends(a_src, a_dst)))
    } else {
        None
    }
}

fn get16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn addr_bytes(af: Af, a: &Addr) -> &[u8] {
    match af {
        Af::Inet => &a.0[..4],
        Af::Inet6 => &a.0[..],
    }
}

/// Offsets of the address fields in an IP header.
fn addr_offsets(af: Af) -> (usize, usize) {
    match af {
        Af::Inet => (12, 16),
        Af::Inet6 => (8, 24),
    }
}

/// Rewrites the IP addresses of the header at `ip` (IPv4 header checksum
/// updated); returns the pseudo-header delta source `(old, new)` pairs the
/// transport checksum needs, applied by `adjust`.
fn rewrite_addrs(
    ip: &mut [u8],
    af: Af,
    old: (&Addr, &Addr),
    new: (&Addr, &Addr),
    mut adjust: impl FnMut(&[u8], &[u8]),
) {
    let (so, dof) = addr_offsets(af);
    let n = addr_bytes(af, old.0).len();
    for (at, o, w) in [(so, old.0, new.0), (dof, old.1, new.1)] {
        if o == w {
            continue;
        }
        let (ob, nb) = (addr_bytes(af, o), addr_bytes(af, w));
        if let Some(field) = ip.get_mut(at..at + n) {
            field.copy_from_slice(nb);
        }
        if af == Af::Inet {
            if let Some(c) = get16(ip, 10) {
                put16(ip, 10, checksum::update_bytes(c, ob, nb));
            }
        }
        adjust(ob, nb);
    }
}

/// Where a transport's checksum sits, if the protocol has one this module
/// maintains, and whether it covers the pseudo-header.
fn transport_checksum(af: Af, p: u8) -> Option<(usize, bool)> {
    match p {
        proto::TCP => Some((16, true)),
        proto::UDP => Some((6, true)),
        proto::ICMP if af == Af::Inet => Some((2, false)),
        proto::ICMPV6 if af == Af::Inet6 => Some((2, true)),
        _ => None,
    }
}

/// Rewrites the packet at `frame[l3..]` (transport header at `l4`) from
/// `info`'s endpoints to `to`. TCP/UDP ports, the ICMP query id and every
/// checksum covering them are updated. Returns false (frame untouched) if
/// the headers are not all there.
pub fn rewrite(frame: &mut [u8], l3: usize, l4: usize, info: &PacketInfo, to: &Endpoints) -> bool {
    let af = info.af;
    let min_l4 = match info.proto {
        proto::TCP => 20,
        proto::UDP | proto::ICMP | proto::ICMPV6 => 8,
        _ => 0,
    };
    if l4 < l3 || frame.len() < l4 + min_l4 {
        return false;
    }
    let (ip_part, l4_part) = frame.split_at_mut(l4);
    let Some(ip) = ip_part.get_mut(l3..) else {
        return false;
    };
    let csum = transport_checksum(af, info.proto);
    // A UDP checksum of 0 over IPv4 means "none": leave it so.
    let keep_zero = info.proto == proto::UDP && af == Af::Inet && get16(l4_part, 6) == Some(0);
    let mut l4sum = match csum {
        Some((at, _)) if !keep_zero => get16(l4_part, at),
        _ => None,
    };
    let pseudo = csum.is_some_and(|c| c.1);
    rewrite_addrs(
        ip,
        af,
        (&info.src, &info.dst),
        (&to.src, &to.dst),
        |o, n| {
            if pseudo {
                if let Some(c) = l4sum.as_mut() {
                    *c = checksum::update_bytes(*c, o, n);
                }
            }
        },
    );
    match info.proto {
        proto::TCP | proto::UDP => {
            for (at, o, n) in [(0, info.sport, to.sport), (2, info.dport, to.dport)] {
                if o != n {
                    put16(l4_part, at, n);
                    if let Some(c) = l4sum.as_mut() {
                        *c = checksum::update16(*c, o, n);
                    }
                }
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            // The query id is the port on the querier's side.
            let id_new = if info.sport != to.sport {
                Some(to.sport)
            } else if info.dport != to.dport {
                Some(to.dport)
            } else {
                None
            };
            if let (Some(n), Some(o)) = (id_new, get16(l4_part, 4)) {
                put16(l4_part, 4, n);
                if let Some(c) = l4sum.as_mut() {
                    *c = checksum::update16(*c, o, n);
                }
            }
        }
        _ => {}
    }
    if let (Some((at, _)), Some(mut c)) = (csum, l4sum) {
        if info.proto == proto::UDP && c == 0 {
            c = 0xffff;
        }
        put16(l4_part, at, c);
    }
    true
}

/// How an ICMP error about a translated connection is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpErrorRewrite {
    /// The outer source and destination after translation.
    pub outer: (Addr, Addr),
    /// The quoted packet's protocol.
    pub quoted_proto: u8,
    /// The quoted packet's endpoints as received.
    pub quoted_old: Endpoints,
    /// The quoted packet's endpoints after translation.
    pub quoted_new: Endpoints,
    /// Subtracted from the quoted TCP segment's sequence number: the
    /// `modulate state` offset of its sender (0: none).
    pub quoted_seq_sub: u32,
}

/// Rewrites an ICMP error at `frame[l3..]` (ICMP header at `l4`) as `rw`
/// says: the outer addresses, the quoted packet's endpoints (its IP header
/// checksum and, when quoted, its UDP/TCP checksum updated); the ICMP
/// checksum is recomputed over the message. Returns false (frame
/// untouched) if the quote is not all there.
pub fn rewrite_icmp_error(
    frame: &mut [u8],
    l3: usize,
    l4: usize,
    info: &PacketInfo,
    rw: &IcmpErrorRewrite,
) -> bool {
    let outer = (&rw.outer.0, &rw.outer.1);
    let (quoted_proto, quoted_old, quoted_new) = (rw.quoted_proto, &rw.quoted_old, &rw.quoted_new);
    let af = info.af;
    let inner_l3 = l4 + 8;
    let ip_len = match af {
        Af::Inet => frame
            .get(inner_l3)
            .map(|v| usize::from(v & 0x0f) * 4)
            .unwrap_or(0),
        Af::Inet6 => 40,
    };
    // Only quotes whose transport header follows the IP header directly
    // (what the classifier parsed the ports from).
    let inner_l4 = inner_l3 + ip_len;
    if ip_len < 20 || frame.len() < inner_l4 + 8 || l4 < l3 {
        return false;
    }
    let ip_total = match af {
        Af::Inet => get16(frame, l3 + 2).map(usize::from).unwrap_or(0),
        Af::Inet6 => get16(frame, l3 + 4)
            .map(|p| usize::from(p) + 40)
            .unwrap_or(0),
    };
    let end = (l3 + ip_total).min(frame.len());
    if end < inner_l4 + 8 {
        return false;
    }
    // The quoted packet: addresses (and its header checksum), then ports
    // with its transport checksum when the quote holds it.
    {
        let (head, tail) = frame.split_at_mut(inner_l4);
        let inner_ip = &mut head[inner_l3..];
        let tsum_at = match quoted_proto {
            proto::UDP => Some(6),
            proto::TCP => Some(16),
            _ => None,
        }
        .filter(|at| tail.len() >= at + 2 && (l3 + ip_total) >= inner_l4 + at + 2);
        let mut tsum = tsum_at
            .and_then(|at| get16(tail, at))
            .filter(|c| *c != 0 || af == Af::Inet6);
        rewrite_addrs(
            inner_ip,
            af,
            (&quoted_old.src, &quoted_old.dst),
            (&quoted_new.src, &quoted_new.dst),
            |o, n| {
                if let Some(c) = tsum.as_mut() {
                    *c = checksum::update_bytes(*c, o, n);
                }
            },
        );
        if quoted_proto == proto::TCP && rw.quoted_seq_sub != 0 && tail.len() >= 8 {
            // The quote goes back to its sender as that sender sent it.
            let old = u32::from_be_bytes([tail[4], tail[5], tail[6], tail[7]]);
            let new = old.wrapping_sub(rw.quoted_seq_sub);
            tail[4..8].copy_from_slice(&new.to_be_bytes());
            if let Some(c) = tsum.as_mut() {
                *c = checksum::update32(*c, old, new);
            }
        }
        match quoted_proto {
            proto::TCP | proto::UDP => {
                for (at, o, n) in [
                    (0, quoted_old.sport, quoted_new.sport),
                    (2, quoted_old.dport, quoted_new.dport),
                ] {
                    if o != n {
                        put16(tail, at, n);
                        if let Some(c) = tsum.as_mut() {
                            *c = checksum::update16(*c, o, n);
                        }
                    }
                }
            }
            proto::ICMP | proto::ICMPV6 => {
                let id_new = if quoted_old.sport != quoted_new.sport {
                    Some(quoted_new.sport)
                } else if quoted_old.dport != quoted_new.dport {
                    Some(quoted_new.dport)
                } else {
                    None
                };
                if let Some(n) = id_new {
                    put16(tail, 4, n);
                }
            }
            _ => {}
        }
        if let (Some(at), Some(c)) = (tsum_at, tsum) {
            put16(tail, at, c);
        }
    }
    // The outer header.
    if let Some(ip) = frame.get_mut(l3..) {
        rewrite_addrs(ip, af, (&info.src, &info.dst), outer, |_, _| {});
    }
    // The ICMP checksum over the whole message (and ICMPv6's
    // pseudo-header), recomputed: errors are rare and short.
    put16(frame, l4 + 2, 0);
    let msg = &frame[l4..end];
    let mut sum = checksum::data(msg);
    if af == Af::Inet6 {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&outer.0 .0);
        d.copy_from_slice(&outer.1 .0);
        let ph = checksum::pseudo_header_v6(&s, &d, proto::ICMPV6, msg.len() as u32);
        sum = checksum::combine(&[sum, ph]);
    }
    put16(frame, l4 + 2, checksum::finish(sum));
    true
}

/// `modulate state`: adds `seq_add` to the TCP sequence number of the
/// segment at `frame[l4..]`, subtracts `ack_sub` from its acknowledgement
/// number (when ACK is set) and from the edges of its SACK blocks (they
/// acknowledge the same sequence space), updating the TCP checksum. False
/// (frame untouched) if the header is not all there.
pub fn modulate(frame: &mut [u8], l4: usize, seq_add: u32, ack_sub: u32) -> bool {
    let Some(tcp) = frame.get_mut(l4..) else {
        return false;
    };
    if tcp.len() < 20 {
        return false;
    }
    let hlen = usize::from(tcp[12] >> 4) * 4;
    if hlen < 20 || tcp.len() < hlen {
        return false;
    }
    let get32 = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let Some(mut sum) = get16(tcp, 16) else {
        return false;
    };
    let change = |b: &mut [u8], at: usize, new: u32, sum: &mut u16| {
        let old = get32(b, at);
        b[at..at + 4].copy_from_slice(&new.to_be_bytes());
        *sum = checksum::update32(*sum, old, new);
    };
    if seq_add != 0 {
        let seq = get32(tcp, 4);
        change(tcp, 4, seq.wrapping_add(seq_add), &mut sum);
    }
    let has_ack = tcp[13] & crate::flow::tcp_flags::ACK != 0;
    if ack_sub != 0 && has_ack {
        let ack = get32(tcp, 8);
        change(tcp, 8, ack.wrapping_sub(ack_sub), &mut sum);
        // SACK blocks (kind 5): pairs of edges in the acknowledged space.
        let mut i = 20;
        while i < hlen {
            match tcp[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let Some(&len) = tcp.get(i + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || i + len > hlen {
                        break;
                    }
                    if kind == 5 {
                        let mut e = i + 2;
                        while e + 4 <= i + len {
                            let edge = get32(tcp, e);
                            change(tcp, e, edge.wrapping_sub(ack_sub), &mut sum);
                            e += 4;
                        }
                    }
                    i += len;
                }
            }
        }
    }
    put16(tcp, 16, sum);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP header with ACK and one SACK block, its checksum over the
    /// header alone (the pseudo-header does not change here, so an
    /// incremental update must keep the header's own sum valid).
    fn segment(seq: u32, ack: u32, sack: (u32, u32)) -> Vec<u8> {
        let mut t = vec![0u8; 32];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = 8 << 4;
        t[13] = crate::flow::tcp_flags::ACK;
        t[20] = 1;
        t[21] = 1;
        t[22] = 5;
        t[23] = 10;
        t[24..28].copy_from_slice(&sack.0.to_be_bytes());
        t[28..32].copy_from_slice(&sack.1.to_be_bytes());
        let c = checksum::finish(checksum::data(&t));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    #[test]
    fn modulation_shifts_seq_ack_and_sack_with_a_valid_checksum() {
        let mut t = segment(1000, 5001, (5101, 5201));
        assert!(modulate(&mut t, 0, 7, 3000));
        let be = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
        assert_eq!((be(4), be(8)), (1007, 2001));
        assert_eq!(
            (be(24), be(28)),
            (2101, 2201),
            "SACK edges in the acknowledged space"
        );
        assert_eq!(checksum::data(&t), 0xffff, "checksum still valid");
        // Wrapping around 2^32.
        let mut t = segment(u32::MAX - 1, 2, (10, 20));
        assert!(modulate(&mut t, 0, 5, 5));
        let be = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
        assert_eq!((be(4), be(8), be(24)), (3, u32::MAX - 2, 5));
        assert_eq!(checksum::data(&t), 0xffff);
        // A truncated header is left alone.
        let mut short = vec![0u8; 12];
        assert!(!modulate(&mut short, 0, 1, 1));
    }
}
