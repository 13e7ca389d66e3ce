//! CARP on the wire (`spec/carp.md` §2): the 36-byte CARP header as a typed
//! zero-copy view ([`Packet`]) with its high-level [`Repr`], the whole-frame
//! advertisement builders for IPv4 and IPv6 ([`AdvertFrameV4`],
//! [`AdvertFrameV6`]) and the receive-side frame parser ([`parse_frame`]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  |     VHID      |    AdvSkew    |    Auth Len   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Demote     |    AdvBase    |           Checksum            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Counter (1)  — 64-bit replay cookie           |
//! |                 Counter (2)                                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 SHA-1 HMAC (md), 20 bytes                     |
//! /                                                               /
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Invariants: after [`Packet::new_checked`] (or a successful
//! [`Packet::check_len`]) no accessor panics. The checksum is RFC 1071 over
//! exactly the 36 header bytes, without a pseudo-header (§2.1); trailing
//! bytes are ignored. Checksum verification is skipped under `cfg(fuzzing)`.
//!
//! The Ethernet/IPv4/IPv6 handling here is deliberately minimal and private:
//! it only builds and recognises CARP advertisements, and is meant to be
//! swapped for the shared `dataplane::wire` views later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A 6-byte Ethernet (MAC) address.
pub type MacAddr = [u8; 6];

/// Length of the CARP header (§2.1).
pub const HEADER_LEN: usize = 36;
/// The only CARP version (§2.1).
pub const CARP_VERSION: u8 = 2;
/// The advertisement type (§2.1).
pub const CARP_ADVERTISEMENT: u8 = 1;
/// `authlen` sent by OpenBSD: counter + HMAC in 32-bit words (§2.1).
pub const CARP_AUTHLEN: u8 = 7;
/// IP protocol number of CARP (§2.2).
pub const IPPROTO_CARP: u8 = 112;
/// TTL / hop limit of every advertisement, required on receive (§2.2, §2.5).
pub const CARP_TTL: u8 = 255;
/// IPv4 TOS of advertisements: IPTOS_LOWDELAY (§2.2).
pub const CARP_TOS: u8 = 0x10;
/// Default IPv4 destination (§2.2).
pub const CARP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 destination (§2.3).
pub const CARP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Ethernet destination for [`CARP_GROUP_V4`] (§2.4).
pub const CARP_GROUP_MAC_V4: MacAddr = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
/// Ethernet destination for [`CARP_GROUP_V6`] (§2.4).
pub const CARP_GROUP_MAC_V6: MacAddr = [0x33, 0x33, 0x00, 0x00, 0x00, 0x12];

/// EtherType IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType IPv6.
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHER_HEADER_LEN: usize = 14;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// Length of a whole IPv4 advertisement frame: Ethernet + IPv4 + CARP.
pub const ADVERT_V4_FRAME_LEN: usize = ETHER_HEADER_LEN + IPV4_HEADER_LEN + HEADER_LEN;
/// Length of a whole IPv6 advertisement frame: Ethernet + IPv6 + CARP.
pub const ADVERT_V6_FRAME_LEN: usize = ETHER_HEADER_LEN + IPV6_HEADER_LEN + HEADER_LEN;

/// The virtual MAC of a VHID, `00:00:5e:00:01:<vhid>` (§2.4).
pub const fn virtual_mac(vhid: u8) -> MacAddr {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vhid]
}

/// The modified-EUI-64 link-local address `fe80::/64` of an Ethernet
/// interface with `mac` (RFC 4291 appendix A): the universal/local bit
/// flipped and `ff:fe` in the middle. A carp interface's automatic
/// link-local address is this of its lladdr (§3.2); a parent without a
/// configured link-local address sources IPv6 advertisements from this of
/// its MAC (§2.3).
pub const fn eui64_link_local(mac: MacAddr) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

/// Errors of the CARP codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("CARP header truncated")]
    Truncated,
    /// The header checksum does not verify (§2.1).
    #[error("CARP header checksum mismatch")]
    BadChecksum,
    /// An output buffer is not exactly the size of what is emitted.
    #[error("output buffer has the wrong size")]
    BufferSize,
}

mod field {
    use core::ops::Range;

    pub const VER_TYPE: usize = 0;
    pub const VHID: usize = 1;
    pub const ADVSKEW: usize = 2;
    pub const AUTHLEN: usize = 3;
    pub const DEMOTE: usize = 4;
    pub const ADVBASE: usize = 5;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const COUNTER: Range<usize> = 8..16;
    pub const MD: Range<usize> = 16..36;
}

/// RFC 1071 one's-complement sum of `data`, folded, not inverted.
fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded above: fits in 16 bits.
    sum as u16
}

/// The Internet checksum of `data` (inverted one's-complement sum).
fn internet_checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

/// A read/write wrapper around a CARP header buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic
    /// until [`check_len`](Self::check_len) has succeeded.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer, checking that it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures no accessor panics: at least 36 bytes (§2.1; trailing bytes
    /// are allowed and ignored).
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (high nibble of byte 0).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }
    /// Type (low nibble of byte 0).
    pub fn type_(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }
    /// Virtual host id.
    pub fn vhid(&self) -> u8 {
        self.buffer.as_ref()[field::VHID]
    }
    /// Advertisement skew (1/256 s).
    pub fn advskew(&self) -> u8 {
        self.buffer.as_ref()[field::ADVSKEW]
    }
    /// Authentication length in 32-bit words.
    pub fn authlen(&self) -> u8 {
        self.buffer.as_ref()[field::AUTHLEN]
    }
    /// Demotion count of the sender.
    pub fn demote(&self) -> u8 {
        self.buffer.as_ref()[field::DEMOTE]
    }
    /// Advertisement base interval in seconds.
    pub fn advbase(&self) -> u8 {
        self.buffer.as_ref()[field::ADVBASE]
    }
    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// The counter (replay cookie) as the raw 8 wire bytes, as fed to the HMAC.
    pub fn counter_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&self.buffer.as_ref()[field::COUNTER]);
        out
    }
    /// The counter (replay cookie) as a big-endian 64-bit value.
    pub fn counter(&self) -> u64 {
        u64::from_be_bytes(self.counter_bytes())
    }
    /// The 20-byte HMAC-SHA1.
    pub fn md(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out.copy_from_slice(&self.buffer.as_ref()[field::MD]);
        out
    }

    /// Verifies the header checksum: the sum over the 36 bytes, received
    /// checksum included, must be zero (§2.1). Always true under `cfg(fuzzing)`.
    pub fn verify_checksum(&self) -> bool {
        if cfg!(fuzzing) {
            return true;
        }
        internet_checksum(&self.buffer.as_ref()[..HEADER_LEN]) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version and type (byte 0 = `version << 4 | type`).
    pub fn set_version_type(&mut self, version: u8, type_: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version << 4) | (type_ & 0x0f);
    }
    /// Sets the VHID.
    pub fn set_vhid(&mut self, value: u8) {
        self.buffer.as_mut()[field::VHID] = value;
    }
    /// Sets advskew.
    pub fn set_advskew(&mut self, value: u8) {
        self.buffer.as_mut()[field::ADVSKEW] = value;
    }
    /// Sets authlen.
    pub fn set_authlen(&mut self, value: u8) {
        self.buffer.as_mut()[field::AUTHLEN] = value;
    }
    /// Sets the demote byte.
    pub fn set_demote(&mut self, value: u8) {
        self.buffer.as_mut()[field::DEMOTE] = value;
    }
    /// Sets advbase.
    pub fn set_advbase(&mut self, value: u8) {
        self.buffer.as_mut()[field::ADVBASE] = value;
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the counter (big-endian).
    pub fn set_counter(&mut self, value: u64) {
        self.buffer.as_mut()[field::COUNTER].copy_from_slice(&value.to_be_bytes());
    }
    /// Sets the HMAC.
    pub fn set_md(&mut self, md: &[u8; 20]) {
        self.buffer.as_mut()[field::MD].copy_from_slice(md);
    }
    /// Computes and stores the checksum over the 36 header bytes (§2.1).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = internet_checksum(&self.buffer.as_ref()[..HEADER_LEN]);
        self.set_checksum(sum);
    }
}

/// A high-level representation of a CARP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Version (4 bits; 2 on send).
    pub version: u8,
    /// Type (4 bits; 1 = advertisement).
    pub type_: u8,
    /// Virtual host id.
    pub vhid: u8,
    /// Advertisement skew.
    pub advskew: u8,
    /// Authentication length (7 on send).
    pub authlen: u8,
    /// Demotion count.
    pub demote: u8,
    /// Advertisement base, seconds.
    pub advbase: u8,
    /// Replay cookie.
    pub counter: u64,
    /// HMAC-SHA1.
    pub md: [u8; 20],
}

impl Repr {
    /// An advertisement as OpenBSD sends it: version 2, type 1, authlen 7.
    pub const fn advertisement(
        vhid: u8,
        advbase: u8,
        advskew: u8,
        demote: u8,
        counter: u64,
        md: [u8; 20],
    ) -> Repr {
        Repr {
            version: CARP_VERSION,
            type_: CARP_ADVERTISEMENT,
            vhid,
            advskew,
            authlen: CARP_AUTHLEN,
            demote,
            advbase,
            counter,
            md,
        }
    }

    /// Parses a header: length and checksum are checked, nothing else
    /// (version is checked later in the receive pipeline, §2.5 step 7).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, Error> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            version: packet.version(),
            type_: packet.type_(),
            vhid: packet.vhid(),
            advskew: packet.advskew(),
            authlen: packet.authlen(),
            demote: packet.demote(),
            advbase: packet.advbase(),
            counter: packet.counter(),
            md: packet.md(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Emits the header and fills its checksum last. Version and type are
    /// truncated to 4 bits. The buffer must hold at least 36 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_type(self.version & 0x0f, self.type_);
        packet.set_vhid(self.vhid);
        packet.set_advskew(self.advskew);
        packet.set_authlen(self.authlen);
        packet.set_demote(self.demote);
        packet.set_advbase(self.advbase);
        packet.set_counter(self.counter);
        packet.set_md(&self.md);
        packet.fill_checksum();
    }
}

fn write_ethernet(buf: &mut [u8], dst: &MacAddr, src: &MacAddr, ethertype: u16) {
    buf[0..6].copy_from_slice(dst);
    buf[6..12].copy_from_slice(src);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// A whole IPv4 advertisement frame (§2.2, §2.4): Ethernet + 20-byte IPv4
/// header (TOS 0x10, DF, TTL 255, protocol 112) + CARP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertFrameV4 {
    /// Ethernet source: the carp interface lladdr, normally
    /// [`virtual_mac`]`(leader vhid)` (§2.4).
    pub src_mac: MacAddr,
    /// Ethernet destination: [`CARP_GROUP_MAC_V4`], or the resolved MAC of
    /// a unicast `carppeer`.
    pub dst_mac: MacAddr,
    /// IPv4 source (first address of the parent, §2.2).
    pub src: Ipv4Addr,
    /// IPv4 destination: [`CARP_GROUP_V4`] or the unicast peer.
    pub dst: Ipv4Addr,
    /// IPv4 identification (random per packet, chosen by the caller).
    pub ip_id: u16,
    /// The CARP header, HMAC already computed.
    pub carp: Repr,
}

impl AdvertFrameV4 {
    /// Exact frame length.
    pub const fn buffer_len(&self) -> usize {
        ADVERT_V4_FRAME_LEN
    }

    /// Writes the frame into `frame`, which must be exactly
    /// [`ADVERT_V4_FRAME_LEN`] bytes. Checksums are filled last.
    pub fn emit(&self, frame: &mut [u8]) -> Result<(), Error> {
        if frame.len() != ADVERT_V4_FRAME_LEN {
            return Err(Error::BufferSize);
        }
        let (eth, rest) = frame.split_at_mut(ETHER_HEADER_LEN);
        write_ethernet(eth, &self.dst_mac, &self.src_mac, ETHERTYPE_IPV4);
        let (ip, carp) = rest.split_at_mut(IPV4_HEADER_LEN);
        ip[0] = 0x45;
        ip[1] = CARP_TOS;
        ip[2..4].copy_from_slice(&((IPV4_HEADER_LEN + HEADER_LEN) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
        ip[8] = CARP_TTL;
        ip[9] = IPPROTO_CARP;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let sum = internet_checksum(ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        self.carp.emit(&mut Packet::new_unchecked(carp));
        Ok(())
    }
}

/// A whole IPv6 advertisement frame (§2.3, §2.4): Ethernet + IPv6 header
/// (hop limit 255, next header 112) + CARP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertFrameV6 {
    /// Ethernet source: the carp interface lladdr (§2.4).
    pub src_mac: MacAddr,
    /// Ethernet destination, normally [`CARP_GROUP_MAC_V6`].
    pub dst_mac: MacAddr,
    /// IPv6 source (the parent's link-local address in practice, §2.3).
    pub src: Ipv6Addr,
    /// IPv6 destination, normally [`CARP_GROUP_V6`].
    pub dst: Ipv6Addr,
    /// The CARP header, HMAC already computed.
    pub carp: Repr,
}

impl AdvertFrameV6 {
    /// Exact frame length.
    pub const fn buffer_len(&self) -> usize {
        ADVERT_V6_FRAME_LEN
    }

    /// Writes the frame into `frame`, which must be exactly
    /// [`ADVERT_V6_FRAME_LEN`] bytes.
    pub fn emit(&self, frame: &mut [u8]) -> Result<(), Error> {
        if frame.len() != ADVERT_V6_FRAME_LEN {
            return Err(Error::BufferSize);
        }
        let (eth, rest) = frame.split_at_mut(ETHER_HEADER_LEN);
        write_ethernet(eth, &self.dst_mac, &self.src_mac, ETHERTYPE_IPV6);
        let (ip, carp) = rest.split_at_mut(IPV6_HEADER_LEN);
        ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        ip[4..6].copy_from_slice(&(HEADER_LEN as u16).to_be_bytes());
        ip[6] = IPPROTO_CARP;
        ip[7] = CARP_TTL;
        ip[8..24].copy_from_slice(&self.src.octets());
        ip[24..40].copy_from_slice(&self.dst.octets());
        self.carp.emit(&mut Packet::new_unchecked(carp));
        Ok(())
    }
}

/// Why a frame is not a CARP datagram this module can hand to validation.
/// These are IP-layer problems, not CARP statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not Ethernet + IPv4/IPv6 with protocol 112.
    #[error("not a CARP datagram")]
    NotCarp,
    /// A header or the IP datagram is cut short.
    #[error("truncated frame")]
    Truncated,
    /// IPv4 header invalid (bad IHL, fragment, ...).
    #[error("malformed IP header")]
    Malformed,
    /// IPv4 header checksum mismatch.
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
}

/// A received CARP datagram: what the validation pipeline (§2.5) needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address.
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// The IP payload (bounded by the IP length fields): the CARP header and
    /// any trailing bytes. Its length is *not* checked here (that is §2.5
    /// step 4, after the TTL check); use [`Frame::carp`].
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The CARP header view, length-checked.
    pub fn carp(&self) -> Result<Packet<&'a [u8]>, Error> {
        Packet::new_checked(self.payload)
    }
    /// True for an IPv6 datagram.
    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }
}

/// Parses Ethernet (with its VLAN tags) + IPv4/IPv6 (options and
/// extension headers walked) down to the CARP payload, with the
/// dataplane's classifier — the one parse every frame gets. Never panics.
pub fn parse_frame(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    use dataplane::flow::{Af, Direction, IfIndex};
    use dataplane::wire::{classify, FrameKind, WireError};
    let c = classify(frame, IfIndex(0), Direction::In).map_err(|e| match e {
        WireError::Truncated | WireError::BadIpTotalLen => FrameError::Truncated,
        WireError::BadIpChecksum => FrameError::BadIpChecksum,
        _ => FrameError::Malformed,
    })?;
    let FrameKind::Ip {
        info,
        l4_offset,
        fragment,
        ..
    } = c.kind
    else {
        return Err(FrameError::NotCarp);
    };
    // Not reassembled here.
    if fragment {
        return Err(FrameError::Malformed);
    }
    if info.proto != IPPROTO_CARP {
        return Err(FrameError::NotCarp);
    }
    let end = usize::from(c.l3_offset) + usize::from(info.ip_len);
    let payload = frame
        .get(usize::from(l4_offset)..end)
        .ok_or(FrameError::Truncated)?;
    let addr = |a: &dataplane::flow::Addr| -> IpAddr {
        match info.af {
            Af::Inet => Ipv4Addr::from(a.v4_octets()).into(),
            Af::Inet6 => Ipv6Addr::from(a.0).into(),
        }
    };
    Ok(Frame {
        src: addr(&info.src),
        dst: addr(&info.dst),
        ttl: info.ttl,
        payload,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Spec §3.5 "Complete IPv4 advertisement using V1".
    pub(crate) const FRAME_V4: [u8; 70] = [
        0x01, 0x00, 0x5e, 0x00, 0x00, 0x12, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x01, 0x08, 0x00, 0x45,
        0x10, 0x00, 0x38, 0x1c, 0x46, 0x40, 0x00, 0xff, 0x70, 0xbd, 0x42, 0xc0, 0xa8, 0x01, 0x02,
        0xe0, 0x00, 0x00, 0x12, 0x21, 0x01, 0x00, 0x07, 0x00, 0x01, 0xf2, 0x61, 0x01, 0x23, 0x45,
        0x67, 0x89, 0xab, 0xcd, 0xef, 0x30, 0x25, 0x12, 0xfb, 0x82, 0xc4, 0x5c, 0x1c, 0xc0, 0xab,
        0xf1, 0xf8, 0xf0, 0x0f, 0x35, 0x90, 0xed, 0x38, 0x66, 0xf0,
    ];

    /// Spec §3.5 "Complete IPv6 advertisement using V4".
    pub(crate) const FRAME_V6: [u8; 90] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x07, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x24, 0x70, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, 0x0c, 0x29, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x21, 0x07, 0x64, 0x07, 0x00, 0x01,
        0xc2, 0xbb, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xe6, 0x2e, 0x8e, 0xd4, 0x9a,
        0x2b, 0xbc, 0xd7, 0x55, 0x3e, 0xd4, 0x7a, 0x21, 0xbc, 0x3b, 0x56, 0x4f, 0xf9, 0x15, 0x68,
    ];

    pub(crate) const MD_V1: [u8; 20] = [
        0x30, 0x25, 0x12, 0xfb, 0x82, 0xc4, 0x5c, 0x1c, 0xc0, 0xab, 0xf1, 0xf8, 0xf0, 0x0f, 0x35,
        0x90, 0xed, 0x38, 0x66, 0xf0,
    ];
    pub(crate) const MD_V4: [u8; 20] = [
        0xe6, 0x2e, 0x8e, 0xd4, 0x9a, 0x2b, 0xbc, 0xd7, 0x55, 0x3e, 0xd4, 0x7a, 0x21, 0xbc, 0x3b,
        0x56, 0x4f, 0xf9, 0x15, 0x68,
    ];

    fn repr_v1() -> Repr {
        Repr::advertisement(1, 1, 0, 0, 0x0123_4567_89ab_cdef, MD_V1)
    }

    fn repr_v6() -> Repr {
        Repr::advertisement(7, 1, 100, 0, 1, MD_V4)
    }

    #[test]
    fn header_getters_v1() {
        let p = Packet::new_checked(&FRAME_V4[34..]).unwrap();
        assert_eq!(p.version(), 2);
        assert_eq!(p.type_(), 1);
        assert_eq!(p.vhid(), 1);
        assert_eq!(p.advskew(), 0);
        assert_eq!(p.authlen(), 7);
        assert_eq!(p.demote(), 0);
        assert_eq!(p.advbase(), 1);
        assert_eq!(p.checksum(), 0xf261);
        assert_eq!(p.counter(), 0x0123_4567_89ab_cdef);
        assert_eq!(p.md(), MD_V1);
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap(), repr_v1());
    }

    #[test]
    fn header_emit_matches_spec_checksums() {
        let mut buf = [0u8; HEADER_LEN];
        repr_v1().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &FRAME_V4[34..]);
        repr_v6().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &FRAME_V6[54..]);
        assert_eq!(Packet::new_unchecked(&buf[..]).checksum(), 0xc2bb);
    }

    #[test]
    fn spec_headers_parse_and_reemit_identically() {
        for (frame, at) in [(&FRAME_V4[..], 34), (&FRAME_V6[..], 54)] {
            let repr = Repr::parse(&Packet::new_checked(&frame[at..]).unwrap()).unwrap();
            let mut buf = [0u8; HEADER_LEN];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(&buf[..], &frame[at..]);
        }
    }

    #[test]
    fn short_header_rejected() {
        assert_eq!(
            Packet::new_checked(&FRAME_V4[35..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn trailing_bytes_ignored() {
        let mut buf = [0u8; 40];
        buf[..36].copy_from_slice(&FRAME_V4[34..]);
        buf[36..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), repr_v1());
    }

    #[cfg(not(fuzzing))]
    #[test]
    fn bad_checksum_rejected() {
        let mut buf = FRAME_V4;
        buf[34 + 10] ^= 0x01; // flip a counter bit
        let p = Packet::new_checked(&buf[34..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::BadChecksum);
    }

    #[test]
    fn frame_v4_emit_byte_identical() {
        let f = AdvertFrameV4 {
            src_mac: virtual_mac(1),
            dst_mac: CARP_GROUP_MAC_V4,
            src: Ipv4Addr::new(192, 168, 1, 2),
            dst: CARP_GROUP_V4,
            ip_id: 0x1c46,
            carp: repr_v1(),
        };
        let mut buf = [0u8; ADVERT_V4_FRAME_LEN];
        f.emit(&mut buf).unwrap();
        assert_eq!(buf, FRAME_V4);
        assert_eq!(f.emit(&mut [0u8; 71]), Err(Error::BufferSize));
    }

    #[test]
    fn frame_v6_emit_byte_identical() {
        let f = AdvertFrameV6 {
            src_mac: virtual_mac(7),
            dst_mac: CARP_GROUP_MAC_V6,
            src: "fe80::20c:29ff:fe12:3456".parse().unwrap(),
            dst: CARP_GROUP_V6,
            carp: repr_v6(),
        };
        let mut buf = [0u8; ADVERT_V6_FRAME_LEN];
        f.emit(&mut buf).unwrap();
        assert_eq!(buf, FRAME_V6);
        assert_eq!(f.emit(&mut [0u8; 89]), Err(Error::BufferSize));
    }

    #[test]
    fn eui64_link_local_of_the_virtual_mac() {
        // Spec §3.5 V2's link-local is that of vhid 42's virtual MAC.
        assert_eq!(
            eui64_link_local(virtual_mac(42)),
            "fe80::200:5eff:fe00:12a".parse::<Ipv6Addr>().unwrap()
        );
        // The spec frame's source: 00:0c:29:12:34:56.
        assert_eq!(
            eui64_link_local([0x00, 0x0c, 0x29, 0x12, 0x34, 0x56]),
            "fe80::20c:29ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn parse_frame_v4() {
        let f = parse_frame(&FRAME_V4).unwrap();
        assert_eq!(f.src, IpAddr::from([192, 168, 1, 2]));
        assert_eq!(f.dst, IpAddr::from(CARP_GROUP_V4));
        assert_eq!(f.ttl, 255);
        assert!(!f.is_ipv6());
        assert_eq!(Repr::parse(&f.carp().unwrap()).unwrap(), repr_v1());
    }

    #[test]
    fn parse_frame_v6() {
        let f = parse_frame(&FRAME_V6).unwrap();
        assert_eq!(f.src, "fe80::20c:29ff:fe12:3456".parse::<IpAddr>().unwrap());
        assert_eq!(f.dst, IpAddr::from(CARP_GROUP_V6));
        assert_eq!(f.ttl, 255);
        assert!(f.is_ipv6());
        assert_eq!(Repr::parse(&f.carp().unwrap()).unwrap(), repr_v6());
    }

    #[test]
    fn parse_frame_with_vlan_tag_and_ethernet_padding() {
        let mut buf = [0u8; 70 + 4 + 6];
        buf[..12].copy_from_slice(&FRAME_V4[..12]);
        buf[12..14].copy_from_slice(&[0x81, 0x00]);
        buf[14..16].copy_from_slice(&[0x00, 0x05]);
        buf[16..74].copy_from_slice(&FRAME_V4[12..]);
        let f = parse_frame(&buf).unwrap();
        // The IP total length bounds the payload: the padding is not CARP.
        assert_eq!(f.payload.len(), HEADER_LEN);
        assert_eq!(f.carp().unwrap().vhid(), 1);
    }

    #[test]
    fn parse_frame_rejections() {
        assert_eq!(parse_frame(&FRAME_V4[..10]), Err(FrameError::Truncated));
        assert_eq!(parse_frame(&FRAME_V4[..60]), Err(FrameError::Truncated));
        let mut other = FRAME_V4;
        other[23] = 47; // GRE, with the header checksum made right again
        other[24..26].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&other[14..34]);
        other[24..26].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse_frame(&other), Err(FrameError::NotCarp));
        let mut arp = FRAME_V4;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse_frame(&arp), Err(FrameError::NotCarp));
        let mut frag = FRAME_V4;
        frag[20] = 0x20; // MF, with the header checksum made right again
        frag[24..26].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&frag[14..34]);
        frag[24..26].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse_frame(&frag), Err(FrameError::Malformed));
        #[cfg(not(fuzzing))]
        {
            let mut bad = FRAME_V4;
            bad[22] = 64; // TTL changed, checksum now wrong
            assert_eq!(parse_frame(&bad), Err(FrameError::BadIpChecksum));
        }
        // Extension headers are walked: a hop-by-hop header made of the
        // CARP bytes is not CARP either way.
        let mut v6 = FRAME_V6;
        v6[20] = 0; // next header hop-by-hop
        assert!(parse_frame(&v6).is_err());
        assert_eq!(parse_frame(&FRAME_V6[..80]), Err(FrameError::Truncated));
    }

    #[test]
    fn checksum_odd_length() {
        // RFC 1071 pads an odd trailing byte with zero.
        assert_eq!(ones_complement_sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(ones_complement_sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        (
            0u8..16,
            0u8..16,
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u64>(),
            any::<[u8; 20]>(),
        )
            .prop_map(
                |(version, type_, vhid, advskew, authlen, demote, advbase, counter, md)| Repr {
                    version,
                    type_,
                    vhid,
                    advskew,
                    authlen,
                    demote,
                    advbase,
                    counter,
                    md,
                },
            )
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in arb_repr()) {
            let mut buf = [0u8; HEADER_LEN];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p).unwrap(), repr);
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p);
                let _ = (p.version(), p.type_(), p.counter(), p.md(), p.verify_checksum());
            }
        }

        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            if let Ok(f) = parse_frame(&bytes) {
                if let Ok(p) = f.carp() { let _ = Repr::parse(&p); }
            }
        }

        #[test]
        fn mutated_spec_frames_never_panic(idx in 0usize..90, val in any::<u8>(), cut in 0usize..91) {
            let mut v6 = FRAME_V6;
            v6[idx] = val;
            let _ = parse_frame(&v6[..cut.min(90)]);
            let mut v4 = FRAME_V4;
            v4[idx % 70] = val;
            let _ = parse_frame(&v4[..cut.min(70)]);
        }
    }
}
