//! TCP segments (RFC 9293 §3.1) and the options pf looks at: MSS (kind
//! 2), window scale (3, RFC 7323 §2), SACK-permitted (4, RFC 2018) and
//! timestamps (8, RFC 7323 §3).
//!
//! ```text
//!  0               16              32
//! +---------------+---------------+
//! |  source port  |  dest port    |
//! |        sequence number        |
//! |     acknowledgment number     |
//! |off|rsv| flags |    window     |
//! |   checksum    | urgent pointer|
//! |   options (off * 4 - 20)      |
//! |   payload ...                 |
//! +-------------------------------+
//! ```
//!
//! Invariants: the view's buffer is exactly the segment (the IP payload),
//! since the checksum covers all of it; after [`Packet::check_len`],
//! `20 <= header_len <= buffer length`. The options parser never reads
//! past the options and stops at the first malformed option.

use super::{be16, be32, checksum, put16, put32, IpPair, WireError};
use crate::flow::{proto, tcp_flags};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const HEADER_LEN: usize = 20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// The largest window shift RFC 7323 §2.3 allows (larger values are used
/// as 14).
pub const MAX_WINDOW_SHIFT: u8 = 14;

/// Option kinds.
pub mod kind {
    /// End of option list.
    pub const END: u8 = 0;
    /// No-operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum segment size.
    pub const MSS: u8 = 2;
    /// Window scale.
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted.
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks.
    pub const SACK: u8 = 5;
    /// Timestamps.
    pub const TIMESTAMP: u8 = 8;
}

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; getters may panic.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the fixed header fits and that the data offset is at
    /// least 5 and inside the buffer (RFC 9293 §3.1).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN {
            Err(WireError::Truncated)
        } else if self.header_len() < field::HEADER_LEN || self.header_len() > len {
            Err(WireError::BadTcpHeaderLen)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The flags byte (see [`crate::flow::tcp_flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// FIN.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & tcp_flags::FIN != 0
    }

    /// SYN.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & tcp_flags::SYN != 0
    }

    /// RST.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & tcp_flags::RST != 0
    }

    /// PSH.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & tcp_flags::PSH != 0
    }

    /// ACK.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & tcp_flags::ACK != 0
    }

    /// URG.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & tcp_flags::URG != 0
    }

    /// Window field (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// The raw options.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADER_LEN..self.header_len()]
    }

    /// The options, parsed.
    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }

    /// The payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Segment length in sequence space: payload + SYN + FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Whether the checksum over pseudo-header and segment is correct
    /// (always computes, also under `cfg(fuzzing)`).
    pub fn verify_checksum(&self, ips: &IpPair) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            ips.pseudo_header_sum(proto::TCP, data.len() as u32),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        put32(self.buffer.as_mut(), field::SEQ, value);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        put32(self.buffer.as_mut(), field::ACK, value);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60); the
    /// reserved bits are cleared.
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        self.buffer.as_mut()[field::DATA_OFFSET] = ((value / 4) as u8) << 4;
    }

    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the window field.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::WINDOW, value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// The options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::HEADER_LEN..end]
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and writes the checksum over pseudo-header and segment.
    pub fn fill_checksum(&mut self, ips: &IpPair) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            ips.pseudo_header_sum(proto::TCP, data.len() as u32),
            checksum::data(data),
        ]);
        self.set_checksum(checksum::finish(sum));
    }
}

/// One TCP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list.
    EndOfList,
    /// No-operation.
    NoOperation,
    /// Maximum segment size.
    MaxSegmentSize(u16),
    /// Window scale shift count (as sent; see [`MAX_WINDOW_SHIFT`]).
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// SACK blocks (raw pairs of 32-bit edges).
    Sack(&'a [u8]),
    /// Timestamps.
    Timestamp {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// Any other option, or a known one with the wrong length.
    Unknown {
        /// Kind.
        kind: u8,
        /// Data after kind and length.
        data: &'a [u8],
    },
}

/// Iterates over TCP options. Yields `Err(Malformed)` once for an option
/// whose length is below 2 or past the end, then stops; stops after
/// [`TcpOption::EndOfList`].
#[derive(Clone, Debug)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    /// Iterates over `options` (the bytes between the fixed header and the
    /// data offset).
    pub fn new(options: &'a [u8]) -> Self {
        OptionsIter { rest: options }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<TcpOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&k, after) = self.rest.split_first()?;
        match k {
            kind::END => {
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            kind::NOP => {
                self.rest = after;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let len = match after.first() {
            Some(&l) if l >= 2 && usize::from(l) <= self.rest.len() => usize::from(l),
            _ => {
                self.rest = &[];
                return Some(Err(WireError::Malformed));
            }
        };
        let data = &self.rest[2..len];
        self.rest = &self.rest[len..];
        Some(Ok(match (k, data.len()) {
            (kind::MSS, 2) => TcpOption::MaxSegmentSize(be16(data, 0)),
            (kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (kind::SACK, n) if n % 8 == 0 && n > 0 => TcpOption::Sack(data),
            (kind::TIMESTAMP, 8) => TcpOption::Timestamp {
                tsval: be32(data, 0),
                tsecr: be32(data, 4),
            },
            (kind, _) => TcpOption::Unknown { kind, data },
        }))
    }
}

/// The options pf tracks, summarised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// MSS.
    pub mss: Option<u16>,
    /// Window scale shift count as sent.
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

impl Options {
    /// Summarises `options`; a malformed option ends the parse, keeping
    /// what was found before it (as pf does).
    #[inline]
    pub fn parse(options: &[u8]) -> Options {
        let mut out = Options::default();
        for opt in OptionsIter::new(options) {
            match opt {
                Ok(TcpOption::MaxSegmentSize(v)) => out.mss = Some(v),
                Ok(TcpOption::WindowScale(v)) => out.wscale = Some(v),
                Ok(TcpOption::SackPermitted) => out.sack_permitted = true,
                Ok(TcpOption::Timestamp { tsval, tsecr }) => out.timestamp = Some((tsval, tsecr)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        out
    }

    /// Bytes [`Options::emit`] writes: a multiple of 4 (each option is
    /// NOP-padded to a 4-byte boundary).
    pub const fn buffer_len(&self) -> usize {
        (if self.mss.is_some() { 4 } else { 0 })
            + (if self.wscale.is_some() { 4 } else { 0 })
            + (if self.sack_permitted { 4 } else { 0 })
            + (if self.timestamp.is_some() { 12 } else { 0 })
    }

    /// Writes the options into the first [`Options::buffer_len`] bytes.
    pub fn emit(&self, out: &mut [u8]) {
        let mut at = 0;
        if let Some(mss) = self.mss {
            out[at..at + 2].copy_from_slice(&[kind::MSS, 4]);
            put16(out, at + 2, mss);
            at += 4;
        }
        if let Some(ws) = self.wscale {
            out[at..at + 4].copy_from_slice(&[kind::NOP, kind::WINDOW_SCALE, 3, ws]);
            at += 4;
        }
        if self.sack_permitted {
            out[at..at + 4].copy_from_slice(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]);
            at += 4;
        }
        if let Some((tsval, tsecr)) = self.timestamp {
            out[at..at + 4].copy_from_slice(&[kind::NOP, kind::NOP, kind::TIMESTAMP, 10]);
            put32(out, at + 4, tsval);
            put32(out, at + 8, tsecr);
        }
    }
}

/// A TCP segment. The urgent pointer is not represented (emitted as 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number (meaningful with ACK).
    pub ack_number: u32,
    /// Flags byte.
    pub flags: u8,
    /// Window field.
    pub window_len: u16,
    /// Options.
    pub options: Options,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a checked segment, verifying the checksum against `ips`
    /// (skipped under `cfg(fuzzing)`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        ips: &IpPair,
    ) -> Result<Repr<'a>, WireError> {
        packet.check_len()?;
        if !cfg!(fuzzing) && !packet.verify_checksum(ips) {
            return Err(WireError::BadChecksum);
        }
        let data: &'a [u8] = packet.buffer.as_ref();
        let header_len = packet.header_len();
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            options: Options::parse(&data[field::HEADER_LEN..header_len]),
            payload: &data[header_len..],
        })
    }

    /// Header length this emits (20 + options).
    pub const fn header_len(&self) -> usize {
        field::HEADER_LEN + self.options.buffer_len()
    }

    /// Segment length this emits.
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the segment into a buffer of exactly [`Repr::buffer_len`]
    /// bytes, checksum last.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, ips: &IpPair) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(self.header_len());
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(0);
        self.options.emit(packet.options_mut());
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(ips);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    pub(crate) const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    pub(crate) const DST: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

    pub(crate) fn ips() -> IpPair {
        IpPair::V4 { src: SRC, dst: DST }
    }

    /// A Linux SYN 192.168.1.10:43210 -> 93.184.216.34:80, options
    /// MSS 1460, SACK-permitted, timestamps, NOP, window scale 7; checksum
    /// computed independently.
    pub(crate) const SYN: [u8; 40] = [
        0xa8, 0xca, 0x00, 0x50, 0x3b, 0x9a, 0xca, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0xc4, 0x8a, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01,
        0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn deconstruct_syn() {
        let p = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 43210);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 1_000_000_000);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.segment_len(), 1);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(&ips()));
        let other = IpPair::V4 {
            src: SRC,
            dst: Ipv4Addr::new(93, 184, 216, 35),
        };
        assert!(!p.verify_checksum(&other));
        let opts: Vec<_> = p.options_iter().map(|o| o.unwrap()).collect();
        assert_eq!(
            opts,
            vec![
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamp {
                    tsval: 123_456,
                    tsecr: 0
                },
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
            ]
        );
        assert_eq!(
            Options::parse(p.options()),
            Options {
                mss: Some(1460),
                wscale: Some(7),
                sack_permitted: true,
                timestamp: Some((123_456, 0)),
            }
        );
    }

    #[test]
    fn header_len_errors() {
        assert_eq!(
            Packet::new_checked(&SYN[..19]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Packet::new_checked(&SYN[..39]).unwrap_err(),
            WireError::BadTcpHeaderLen
        );
        let mut b = SYN;
        b[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::BadTcpHeaderLen
        );
    }

    #[test]
    fn malformed_options_stop_the_parse() {
        // MSS, then an option of length 1, then a window scale never seen.
        let opts = [2, 4, 0x05, 0xb4, 0x1e, 1, 3, 3, 7];
        assert_eq!(
            Options::parse(&opts),
            Options {
                mss: Some(1460),
                ..Options::default()
            }
        );
        let mut it = OptionsIter::new(&opts);
        assert_eq!(it.next(), Some(Ok(TcpOption::MaxSegmentSize(1460))));
        assert_eq!(it.next(), Some(Err(WireError::Malformed)));
        assert_eq!(it.next(), None);
        // Length past the end.
        assert_eq!(Options::parse(&[3, 3]), Options::default());
        // A wrong-length MSS is skipped, later options still count.
        assert_eq!(
            Options::parse(&[2, 3, 5, 4, 2, 1, 0, 3, 3, 9]).wscale,
            None,
            "EOL ends the list"
        );
        assert!(Options::parse(&[2, 3, 5, 4, 2]).sack_permitted);
    }

    #[test]
    fn parse_and_emit_syn() {
        let p = Packet::new_checked(&SYN[..]).unwrap();
        let repr = Repr::parse(&p, &ips()).unwrap();
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &ips());
        // dpf pads each option itself, so the layout differs from Linux's
        // but parses to the same thing with a valid checksum.
        assert_eq!(buf.len(), 20 + 24);
        let q = Packet::new_checked(&buf[..]).unwrap();
        assert!(q.verify_checksum(&ips()));
        assert_eq!(Repr::parse(&q, &ips()).unwrap(), repr);
        #[cfg(not(fuzzing))]
        {
            let mut bad = SYN;
            bad[5] ^= 0x40;
            let p = Packet::new_checked(&bad[..]).unwrap();
            assert_eq!(Repr::parse(&p, &ips()).unwrap_err(), WireError::BadChecksum);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.options(), p.payload(), p.segment_len());
                for o in p.options_iter() { let _ = o; }
                let _ = Repr::parse(&p, &ips());
            }
            let _ = Options::parse(&bytes);
        }

        #[test]
        fn repr_round_trip(
            sp in any::<u16>(), dp in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(),
            flags in any::<u8>(), win in any::<u16>(), mss in proptest::option::of(any::<u16>()),
            ws in proptest::option::of(any::<u8>()), sack in any::<bool>(),
            ts in proptest::option::of(any::<(u32, u32)>()),
            payload in proptest::collection::vec(any::<u8>(), 0..20), v6 in any::<bool>(),
        ) {
            let ips = if v6 {
                IpPair::V6 { src: [1u8; 16].into(), dst: [2u8; 16].into() }
            } else {
                ips()
            };
            let repr = Repr {
                src_port: sp, dst_port: dp, seq_number: seq, ack_number: ack, flags,
                window_len: win,
                options: Options { mss, wscale: ws, sack_permitted: sack, timestamp: ts },
                payload: &payload,
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &ips);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p, &ips).unwrap(), repr);
        }
    }
}
