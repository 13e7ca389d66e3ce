//! Ethernet + IPv4 encapsulation of pfsync (`spec/pfsync.md` §1) and the
//! receive checks of §1.1.
//!
//! ```text
//! 0        14              34               54
//! | ether  | IPv4 (IHL 5)  | pfsync header  | subheaders + messages ...
//!   dst = 01:00:5e:00:00:f0 for 224.0.0.240, or the unicast peer's MAC
//!          TOS 0x10, DF, TTL 255, proto 240, id per packet
//! ```
//!
//! This is a deliberately private, minimal Ethernet/IPv4 codec: it builds
//! exactly the frames pfsync sends and accepts untagged IPv4 frames. Callers
//! that parse L2 themselves (VLANs...) hand the IP packet to
//! [`receive_ip`]. The IP header checksum is computed on emit and verified
//! on receive (skipped under `cfg(fuzzing)`).

use super::{
    be16, Header, Walker, HEADER_LEN, IPPROTO_PFSYNC, PFSYNC_GROUP, PFSYNC_TTL, PFSYNC_VERSION,
};
use crate::pfsync::stats::{Counter, PfsyncStats};

/// Ethernet header length (untagged).
pub const ETH_HDR_LEN: usize = 14;
/// IPv4 header length without options, as pfsync sends it.
pub const IPV4_HDR_LEN: usize = 20;
/// Bytes before the pfsync header in a frame.
pub const FRAME_HEADROOM: usize = ETH_HDR_LEN + IPV4_HDR_LEN;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IPTOS_LOWDELAY, the TOS of pfsync packets (§1).
pub const IPTOS_LOWDELAY: u8 = 0x10;
/// IPv4 "don't fragment" flag in the flags/fragment-offset field.
const IP_DF: u16 = 0x4000;
/// IPv4 "more fragments" flag and offset mask.
const IP_MF_OFFSET: u16 = 0x3fff;

/// Where pfsync packets go and come from on the sync interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkParams {
    /// MAC address of the sync interface.
    pub src_mac: [u8; 6],
    /// Destination MAC: the group's multicast MAC or the unicast peer's.
    pub dst_mac: [u8; 6],
    /// IPv4 address of the sync interface.
    pub src_ip: [u8; 4],
    /// The sync peer (`syncpeer`): 224.0.0.240 by default.
    pub dst_ip: [u8; 4],
}

/// Why [`LinkParams::new`] refused a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The sync peer is the broadcast address (§1: refused).
    #[error("syncpeer may not be the broadcast address")]
    Broadcast,
    /// A unicast sync peer needs its resolved MAC address.
    #[error("unicast syncpeer needs a resolved MAC address")]
    NoPeerMac,
}

impl LinkParams {
    /// Builds the link parameters. `syncpeer` 0.0.0.0 means the default group
    /// (§1); a multicast peer maps to its multicast MAC, a unicast peer needs
    /// `peer_mac` (resolved by the caller, e.g. through ARP).
    pub fn new(
        src_mac: [u8; 6],
        src_ip: [u8; 4],
        syncpeer: [u8; 4],
        peer_mac: Option<[u8; 6]>,
    ) -> Result<LinkParams, LinkError> {
        let dst_ip = if syncpeer == [0; 4] {
            PFSYNC_GROUP
        } else {
            syncpeer
        };
        if dst_ip == [255; 4] {
            return Err(LinkError::Broadcast);
        }
        let dst_mac = match multicast_mac(dst_ip) {
            Some(mac) => mac,
            None => peer_mac.ok_or(LinkError::NoPeerMac)?,
        };
        Ok(LinkParams {
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
        })
    }
}

/// The Ethernet multicast MAC of an IPv4 multicast group (01:00:5e + the
/// low 23 bits), or `None` for a non-multicast address.
pub fn multicast_mac(ip: [u8; 4]) -> Option<[u8; 6]> {
    if ip[0] & 0xf0 != 0xe0 {
        return None;
    }
    Some([0x01, 0x00, 0x5e, ip[1] & 0x7f, ip[2], ip[3]])
}

/// The IPv4 header checksum of `header` (whose checksum field may hold
/// anything: it is summed as zero).
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, pair) in header.chunks(2).enumerate() {
        if i == 5 {
            continue; // the checksum field itself
        }
        let word = match pair {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes the Ethernet, IPv4 and pfsync headers at the start of `frame`,
/// in front of a body already written at `frame[54..54 + body_len]`, and
/// returns the frame length. `pfsync_len` counts the pfsync header and body.
pub fn emit_headers(
    frame: &mut [u8],
    link: &LinkParams,
    ip_id: u16,
    pfsync_len: usize,
) -> super::Result<usize> {
    let ip_len = IPV4_HDR_LEN + pfsync_len;
    let frame_len = ETH_HDR_LEN + ip_len;
    if pfsync_len < HEADER_LEN || ip_len > usize::from(u16::MAX) {
        return Err(super::Error::BadLength);
    }
    let Some(frame) = frame.get_mut(..frame_len) else {
        return Err(super::Error::NoSpace);
    };
    frame[0..6].copy_from_slice(&link.dst_mac);
    frame[6..12].copy_from_slice(&link.src_mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

    let ip = &mut frame[ETH_HDR_LEN..FRAME_HEADROOM];
    ip[0] = 0x45;
    ip[1] = IPTOS_LOWDELAY;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
    ip[6..8].copy_from_slice(&IP_DF.to_be_bytes());
    ip[8] = PFSYNC_TTL;
    ip[9] = IPPROTO_PFSYNC;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&link.src_ip);
    ip[16..20].copy_from_slice(&link.dst_ip);
    let csum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());

    let mut header = Header::new_unchecked(&mut frame[FRAME_HEADROOM..FRAME_HEADROOM + HEADER_LEN]);
    super::HeaderRepr {
        len: pfsync_len as u16,
    }
    .emit(&mut header);
    Ok(frame_len)
}

/// Why a received frame was not processed. [`RxDrop::counter`] gives the
/// §5.9 counter for the pfsync-level reasons; the IP-level ones happen
/// before pfsync input and count elsewhere (or nowhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RxDrop {
    /// Not an untagged IPv4 Ethernet frame.
    #[error("not IPv4")]
    NotIpv4,
    /// Malformed IPv4 header or lengths.
    #[error("malformed IPv4 header")]
    IpMalformed,
    /// IPv4 header checksum mismatch.
    #[error("bad IPv4 header checksum")]
    IpChecksum,
    /// A fragment (dpf does not reassemble pfsync).
    #[error("IPv4 fragment")]
    Fragment,
    /// IP protocol is not 240.
    #[error("not pfsync")]
    NotPfsync,
    /// §1.1 step 1: pf is not running; ignored.
    #[error("pf not running")]
    PfDisabled,
    /// §1.1 step 2: the pfsync interface is down; ignored.
    #[error("pfsync down")]
    IfDown,
    /// §1.1 step 3: not received on `syncdev` (`badif`).
    #[error("not received on syncdev")]
    BadIf,
    /// §1.1 step 4: TTL ≠ 255 (`badttl`).
    #[error("TTL is not 255")]
    BadTtl,
    /// §1.1 step 5: shorter than the pfsync header (`hdrops`).
    #[error("shorter than the pfsync header")]
    Short,
    /// §1.1 step 6: version ≠ 6 (`badver`).
    #[error("pfsync version is not 6")]
    BadVersion,
    /// §1.1 step 7: header `len` larger than the packet, or smaller than the
    /// header itself (`badlen`).
    #[error("pfsync length inconsistent")]
    BadLength,
}

impl RxDrop {
    /// The §5.9 counter of this drop, if pfsync counts it.
    pub const fn counter(self) -> Option<Counter> {
        match self {
            RxDrop::BadIf => Some(Counter::Badif),
            RxDrop::BadTtl => Some(Counter::Badttl),
            RxDrop::Short => Some(Counter::Hdrops),
            RxDrop::BadVersion => Some(Counter::Badver),
            RxDrop::BadLength => Some(Counter::Badlen),
            RxDrop::NotIpv4
            | RxDrop::IpMalformed
            | RxDrop::IpChecksum
            | RxDrop::Fragment
            | RxDrop::NotPfsync
            | RxDrop::PfDisabled
            | RxDrop::IfDown => None,
        }
    }
}

/// The receiver's situation for the §1.1 checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxContext {
    /// pf is enabled.
    pub pf_running: bool,
    /// The pfsync interface is up.
    pub pfsync_up: bool,
    /// The frame arrived on `syncdev`.
    pub on_syncdev: bool,
}

/// An accepted pfsync packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPacket<'a> {
    /// IPv4 source.
    pub src_ip: [u8; 4],
    /// IPv4 destination.
    pub dst_ip: [u8; 4],
    /// The pfsync header and body, truncated to the header's `len`.
    pub pfsync: &'a [u8],
    /// The IP payload after the header's `len` (OpenBSD ignores it; dpf's
    /// authentication trailer, `pfsync::auth`, when configured).
    pub trailer: &'a [u8],
}

impl<'a> RxPacket<'a> {
    /// The subheaders and messages after the pfsync header.
    pub fn body(&self) -> &'a [u8] {
        self.pfsync.get(HEADER_LEN..).unwrap_or(&[])
    }
    /// A §2.3 walker over the body.
    pub fn walker(&self) -> Walker<'a> {
        Walker::new(self.body())
    }
}

/// Parses an Ethernet frame with the dataplane's classifier (VLAN tags,
/// IPv4 options, the header checksum: the one parse every frame gets) and
/// applies the §1.1 checks, counting as [`receive_ip`] does.
pub fn receive_frame<'a>(
    frame: &'a [u8],
    ctx: &RxContext,
    stats: &mut PfsyncStats,
) -> Result<RxPacket<'a>, RxDrop> {
    use dataplane::flow::{Af, Direction, IfIndex};
    use dataplane::wire::{classify, FrameKind, WireError};
    if frame.len() < ETH_HDR_LEN {
        return Err(RxDrop::NotIpv4);
    }
    let c = classify(frame, IfIndex(0), Direction::In).map_err(|e| match e {
        WireError::BadIpChecksum => RxDrop::IpChecksum,
        WireError::BadIpVersion => RxDrop::NotIpv4,
        _ => RxDrop::IpMalformed,
    })?;
    let FrameKind::Ip {
        info,
        l4_offset,
        fragment,
        ..
    } = c.kind
    else {
        return Err(RxDrop::NotIpv4);
    };
    if info.af != Af::Inet {
        return Err(RxDrop::NotIpv4);
    }
    if fragment {
        return Err(RxDrop::Fragment);
    }
    if info.proto != IPPROTO_PFSYNC {
        return Err(RxDrop::NotPfsync);
    }
    // The IP total length bounds the packet (link-layer padding dropped).
    let end = usize::from(c.l3_offset) + usize::from(info.ip_len);
    let pfsync = frame
        .get(usize::from(l4_offset)..end)
        .ok_or(RxDrop::IpMalformed)?;
    let packet = RxPacket {
        src_ip: info.src.v4_octets(),
        dst_ip: info.dst.v4_octets(),
        pfsync,
        trailer: &[],
    };
    count_and_check(packet, info.ttl, ctx, stats)
}

/// Checks an IPv4 packet (trailing link padding allowed) and applies the
/// §1.1 checks in order, counting into `stats`: `ipackets` for every
/// pfsync packet that reaches pfsync input, then the drop counter if any.
pub fn receive_ip<'a>(
    ip: &'a [u8],
    ctx: &RxContext,
    stats: &mut PfsyncStats,
) -> Result<RxPacket<'a>, RxDrop> {
    // IP layer (not pfsync counters).
    if ip.len() < IPV4_HDR_LEN || ip[0] >> 4 != 4 {
        return Err(RxDrop::NotIpv4);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2));
    if ihl < IPV4_HDR_LEN || total < ihl || total > ip.len() {
        return Err(RxDrop::IpMalformed);
    }
    let ip = &ip[..total]; // drop link-layer padding
    if !cfg!(fuzzing) && ipv4_checksum(&ip[..ihl]) != be16(ip, 10) {
        return Err(RxDrop::IpChecksum);
    }
    if be16(ip, 6) & IP_MF_OFFSET != 0 {
        return Err(RxDrop::Fragment);
    }
    if ip[9] != IPPROTO_PFSYNC {
        return Err(RxDrop::NotPfsync);
    }
    let packet = RxPacket {
        src_ip: [ip[12], ip[13], ip[14], ip[15]],
        dst_ip: [ip[16], ip[17], ip[18], ip[19]],
        pfsync: &ip[ihl..],
        trailer: &[],
    };
    count_and_check(packet, ip[8], ctx, stats)
}

/// `ipackets`, then §1.1 in order, counting the drop.
fn count_and_check<'a>(
    packet: RxPacket<'a>,
    ttl: u8,
    ctx: &RxContext,
    stats: &mut PfsyncStats,
) -> Result<RxPacket<'a>, RxDrop> {
    stats.incr(Counter::Ipackets);
    let verdict = check_pfsync(packet, ttl, ctx);
    if let Err(drop) = verdict {
        if let Some(c) = drop.counter() {
            stats.incr(c);
        }
    }
    verdict
}

/// §1.1 steps 1–7 after `ipackets` was counted.
fn check_pfsync<'a>(
    mut packet: RxPacket<'a>,
    ttl: u8,
    ctx: &RxContext,
) -> Result<RxPacket<'a>, RxDrop> {
    if !ctx.pf_running {
        return Err(RxDrop::PfDisabled);
    }
    if !ctx.pfsync_up {
        return Err(RxDrop::IfDown);
    }
    if !ctx.on_syncdev {
        return Err(RxDrop::BadIf);
    }
    if ttl != PFSYNC_TTL {
        return Err(RxDrop::BadTtl);
    }
    let header = Header::new_checked(packet.pfsync).map_err(|_| RxDrop::Short)?;
    if header.version() != PFSYNC_VERSION {
        return Err(RxDrop::BadVersion);
    }
    let len = usize::from(header.len());
    // A `len` below the header size cannot describe a packet; OpenBSD would
    // process nothing of it, dpf counts it as `badlen`.
    if len > packet.pfsync.len() || len < HEADER_LEN {
        return Err(RxDrop::BadLength);
    }
    let (pfsync, trailer) = packet.pfsync.split_at(len);
    packet.pfsync = pfsync;
    packet.trailer = trailer;
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const GOOD: RxContext = RxContext {
        pf_running: true,
        pfsync_up: true,
        on_syncdev: true,
    };

    /// §7.2 DEL_C frame.
    const DEL_C_FRAME: [u8; 70] = [
        0x01, 0x00, 0x5e, 0x00, 0x00, 0xf0, 0x00, 0x0c, 0x29, 0xaa, 0xbb, 0x01, 0x08, 0x00, 0x45,
        0x10, 0x00, 0x38, 0x3a, 0x7d, 0x40, 0x00, 0xff, 0xf0, 0x4b, 0x4d, 0x0a, 0x0a, 0x0a, 0x01,
        0xe0, 0x00, 0x00, 0xf0, 0x06, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x03, 0x00, 0x01, 0x67, 0x89,
        0x01, 0x23, 0x00, 0x00, 0x0a, 0x2f, 0x8f, 0x3e, 0x21, 0xa7,
    ];

    fn with_ip_checksum(mut frame: Vec<u8>) -> Vec<u8> {
        let c = ipv4_checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
        frame
    }

    #[test]
    fn multicast_mac_and_link_params() {
        assert_eq!(multicast_mac(PFSYNC_GROUP), Some([1, 0, 0x5e, 0, 0, 0xf0]));
        assert_eq!(
            multicast_mac([239, 255, 1, 2]),
            Some([1, 0, 0x5e, 0x7f, 1, 2])
        );
        assert_eq!(multicast_mac([10, 0, 0, 2]), None);
        let l = LinkParams::new([2; 6], [10, 0, 0, 1], [0; 4], None).unwrap();
        assert_eq!(l.dst_ip, PFSYNC_GROUP);
        assert_eq!(l.dst_mac, [1, 0, 0x5e, 0, 0, 0xf0]);
        assert_eq!(
            LinkParams::new([2; 6], [10, 0, 0, 1], [10, 0, 0, 2], None),
            Err(LinkError::NoPeerMac)
        );
        assert_eq!(
            LinkParams::new([2; 6], [10, 0, 0, 1], [10, 0, 0, 2], Some([4; 6])).map(|l| l.dst_mac),
            Ok([4; 6])
        );
        assert_eq!(
            LinkParams::new([2; 6], [10, 0, 0, 1], [255; 4], Some([4; 6])),
            Err(LinkError::Broadcast)
        );
    }

    #[test]
    fn spec_frame_is_accepted_and_padding_ignored() {
        let mut stats = PfsyncStats::default();
        let mut padded = DEL_C_FRAME.to_vec();
        padded.extend_from_slice(&[0xee; 10]);
        let p = receive_frame(&padded, &GOOD, &mut stats).unwrap();
        assert_eq!(p.src_ip, [10, 10, 10, 1]);
        assert_eq!(p.dst_ip, PFSYNC_GROUP);
        assert_eq!(p.pfsync.len(), 36);
        assert_eq!(p.body()[0], 7);
        assert_eq!(stats.get(Counter::Ipackets), 1);
        assert_eq!(stats.as_array().iter().sum::<u64>(), 1);
    }

    #[test]
    fn receive_checks_in_order_with_counters() {
        let cases: Vec<(Vec<u8>, RxContext, RxDrop)> = vec![
            (
                DEL_C_FRAME.to_vec(),
                RxContext {
                    pf_running: false,
                    ..GOOD
                },
                RxDrop::PfDisabled,
            ),
            (
                DEL_C_FRAME.to_vec(),
                RxContext {
                    pfsync_up: false,
                    ..GOOD
                },
                RxDrop::IfDown,
            ),
            // Wrong interface wins over bad TTL (step 3 before step 4).
            (
                with_ip_checksum({
                    let mut f = DEL_C_FRAME.to_vec();
                    f[22] = 64;
                    f
                }),
                RxContext {
                    on_syncdev: false,
                    ..GOOD
                },
                RxDrop::BadIf,
            ),
            (
                with_ip_checksum({
                    let mut f = DEL_C_FRAME.to_vec();
                    f[22] = 254;
                    f
                }),
                GOOD,
                RxDrop::BadTtl,
            ),
            (
                with_ip_checksum({
                    let mut f = DEL_C_FRAME[..34 + 19].to_vec();
                    f[16..18].copy_from_slice(&(20u16 + 19).to_be_bytes());
                    f
                }),
                GOOD,
                RxDrop::Short,
            ),
            (
                {
                    let mut f = DEL_C_FRAME.to_vec();
                    f[34] = 5;
                    f
                },
                GOOD,
                RxDrop::BadVersion,
            ),
            (
                {
                    let mut f = DEL_C_FRAME.to_vec();
                    f[36..38].copy_from_slice(&37u16.to_be_bytes());
                    f
                },
                GOOD,
                RxDrop::BadLength,
            ),
        ];
        for (frame, ctx, want) in cases {
            let mut stats = PfsyncStats::default();
            assert_eq!(
                receive_frame(&frame, &ctx, &mut stats),
                Err(want),
                "{want:?}"
            );
            assert_eq!(stats.get(Counter::Ipackets), 1, "{want:?}");
            let counted: u64 = stats.as_array().iter().sum::<u64>() - 1;
            assert_eq!(counted, u64::from(want.counter().is_some()), "{want:?}");
            if let Some(c) = want.counter() {
                assert_eq!(stats.get(c), 1);
            }
        }
    }

    #[test]
    fn ip_level_rejections_do_not_count() {
        let mut stats = PfsyncStats::default();
        let mut bad_sum = DEL_C_FRAME.to_vec();
        bad_sum[25] ^= 1;
        assert_eq!(
            receive_frame(&bad_sum, &GOOD, &mut stats),
            Err(RxDrop::IpChecksum)
        );
        let other = with_ip_checksum({
            let mut f = DEL_C_FRAME.to_vec();
            f[23] = 47;
            f
        });
        assert_eq!(
            receive_frame(&other, &GOOD, &mut stats),
            Err(RxDrop::NotPfsync)
        );
        let frag = with_ip_checksum({
            let mut f = DEL_C_FRAME.to_vec();
            f[20] = 0x20;
            f
        });
        assert_eq!(
            receive_frame(&frag, &GOOD, &mut stats),
            Err(RxDrop::Fragment)
        );
        assert_eq!(
            receive_frame(&DEL_C_FRAME[..60], &GOOD, &mut stats),
            Err(RxDrop::IpMalformed)
        );
        assert_eq!(
            receive_frame(&[0u8; 10], &GOOD, &mut stats),
            Err(RxDrop::NotIpv4)
        );
        assert_eq!(stats, PfsyncStats::default());
    }

    #[test]
    fn emit_headers_reproduces_spec_headers() {
        let link = LinkParams::new(
            [0x00, 0x0c, 0x29, 0xaa, 0xbb, 0x01],
            [10, 10, 10, 1],
            PFSYNC_GROUP,
            None,
        )
        .unwrap();
        let mut frame = [0u8; 70];
        frame[54..].copy_from_slice(&DEL_C_FRAME[54..]);
        assert_eq!(emit_headers(&mut frame, &link, 0x3a7d, 36), Ok(70));
        assert_eq!(frame, DEL_C_FRAME);
        assert_eq!(
            emit_headers(&mut frame, &link, 1, 19),
            Err(crate::pfsync::wire::Error::BadLength)
        );
        assert_eq!(
            emit_headers(&mut frame[..69], &link, 1, 36),
            Err(crate::pfsync::wire::Error::NoSpace)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..400),
                                        valid_prefix in any::<bool>()) {
            let mut f = frame;
            if valid_prefix && f.len() >= 34 {
                f[..34].copy_from_slice(&DEL_C_FRAME[..34]);
                let total = (f.len() - 14).min(0xffff) as u16;
                f[16..18].copy_from_slice(&total.to_be_bytes());
                let c = ipv4_checksum(&f[14..34]);
                f[24..26].copy_from_slice(&c.to_be_bytes());
            }
            let mut stats = PfsyncStats::default();
            if let Ok(p) = receive_frame(&f, &GOOD, &mut stats) {
                prop_assert!(p.pfsync.len() >= HEADER_LEN);
                for s in p.walker().flatten() { let _ = s.messages().count(); }
            }
        }
    }
}
