//! The live generator's frames: one UDP/IPv4 template per flow, from the
//! RFC 2544 benchmark range (clients in 198.18.0.0/16, the server
//! 198.19.0.1, UDP port 9: what `bench/configs/bench.pf.conf` passes with
//! keep state), stamped per packet with a trial number, a sequence number
//! and the TSC at transmission.
//!
//! ```text
//! | ethernet (14) | IPv4 (20) | UDP (8) | trial (2) | seq (8) | tsc (8) | pad |
//!                                        ^ STAMP_OFFSET = 42, big-endian
//! ```
//!
//! A 64-byte frame (60 bytes without FCS) has exactly the 18 bytes of stamp
//! as UDP payload. The UDP checksum is kept valid: the template stores the
//! one's-complement sum of everything but the stamp, and [`Template::stamp`]
//! adds the stamp's words and finishes it.

use std::net::Ipv4Addr;

use crate::frames::{
    checksum, Fill, FrameRepr, IpPair, L4Repr, MacAddr, UdpRepr, ETHER_HEADER_LEN, IPV4_HEADER_LEN,
    MAX_CAPTURED_LEN, MIN_CAPTURED_LEN, UDP_HEADER_LEN,
};

/// Where the stamp starts: the UDP payload of an IPv4 frame.
pub const STAMP_OFFSET: usize = ETHER_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;
/// Stamp bytes: trial (2), sequence (8), TSC (8).
pub const STAMP_LEN: usize = 18;
/// UDP destination port of every flow (discard).
pub const DST_PORT: u16 = 9;
/// The server every flow goes to.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// Client addresses per source port: 198.18.0.1 ... 198.18.255.254.
const CLIENTS: u64 = 65_534;
/// First client source port.
const FIRST_SPORT: u16 = 1024;
/// Offset of the UDP checksum field.
const UDP_CHECKSUM_AT: usize = ETHER_HEADER_LEN + IPV4_HEADER_LEN + 6;

/// What a packet carries besides its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Trial number (0: the warm-up).
    pub trial: u16,
    /// Sequence number within the trial, from 0.
    pub seq: u64,
    /// TSC when the packet was handed to the driver.
    pub tsc: u64,
}

impl Stamp {
    fn bytes(&self) -> [u8; STAMP_LEN] {
        let mut b = [0u8; STAMP_LEN];
        b[0..2].copy_from_slice(&self.trial.to_be_bytes());
        b[2..10].copy_from_slice(&self.seq.to_be_bytes());
        b[10..18].copy_from_slice(&self.tsc.to_be_bytes());
        b
    }

    /// Reads the stamp of a received frame: `None` unless it is an IPv4
    /// UDP frame to [`DST_PORT`] long enough to carry one.
    pub fn read(frame: &[u8]) -> Option<Stamp> {
        let b = frame.get(..STAMP_OFFSET + STAMP_LEN)?;
        let ethertype = u16::from_be_bytes([b[12], b[13]]);
        let ihl_ok = b[14] == 0x45;
        let udp = b[ETHER_HEADER_LEN + 9] == 17;
        let dport = u16::from_be_bytes([b[36], b[37]]);
        if ethertype != 0x0800 || !ihl_ok || !udp || dport != DST_PORT {
            return None;
        }
        let s = &b[STAMP_OFFSET..];
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&s[at..at + 8]);
            u64::from_be_bytes(w)
        };
        Some(Stamp {
            trial: u16::from_be_bytes([s[0], s[1]]),
            seq: u64_at(2),
            tsc: u64_at(10),
        })
    }
}

/// Source address and port of flow `i`.
pub fn flow_source(i: u64) -> (Ipv4Addr, u16) {
    let host = (i % CLIENTS + 1) as u32;
    let sport = FIRST_SPORT.wrapping_add((i / CLIENTS) as u16);
    (
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) | host),
        sport,
    )
}

/// The bytes of one flow's frames, with a zero stamp.
#[derive(Clone, Debug)]
pub struct Template {
    bytes: Vec<u8>,
    /// One's-complement sum of the pseudo-header and the UDP datagram with
    /// a zero checksum field and a zero stamp.
    partial_sum: u64,
}

/// Why no template could be built.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Frame size outside 64..=1518.
    #[error("frame size {0} is outside 64..=1518 bytes (with FCS)")]
    FrameSize(usize),
    /// The frame builder refused.
    #[error("building the frame: {0}")]
    Frame(#[from] crate::frames::FrameError),
}

impl Template {
    /// Flow `i`'s frame of `frame_size` bytes with FCS (64..=1518).
    pub fn new(
        i: u64,
        frame_size: usize,
        src_mac: MacAddr,
        dst_mac: MacAddr,
    ) -> Result<Template, TemplateError> {
        let captured = frame_size.wrapping_sub(crate::frames::FCS_LEN);
        if !(MIN_CAPTURED_LEN..=MAX_CAPTURED_LEN).contains(&captured) {
            return Err(TemplateError::FrameSize(frame_size));
        }
        let (src, src_port) = flow_source(i);
        let ip = IpPair::V4 { src, dst: SERVER };
        let repr = FrameRepr::new(
            src_mac,
            dst_mac,
            ip,
            L4Repr::Udp(UdpRepr {
                src_port,
                dst_port: DST_PORT,
            }),
        )
        .fill_to(captured, Fill::Payload);
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut bytes)?;
        bytes[STAMP_OFFSET..STAMP_OFFSET + STAMP_LEN].fill(0);
        bytes[UDP_CHECKSUM_AT..UDP_CHECKSUM_AT + 2].fill(0);
        let l4 = &bytes[STAMP_OFFSET - UDP_HEADER_LEN..ETHER_HEADER_LEN + repr.ip_len()];
        let partial_sum = checksum::add(checksum::pseudo_header(&ip, 17, l4.len() as u32), l4);
        Ok(Template { bytes, partial_sum })
    }

    /// Frame length without FCS.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Writes the frame with `stamp` into `out` (exactly [`Template::len`]
    /// bytes) and completes the UDP checksum. Returns `false` if `out` has
    /// the wrong length.
    pub fn stamp(&self, stamp: &Stamp, out: &mut [u8]) -> bool {
        if out.len() != self.bytes.len() {
            return false;
        }
        out.copy_from_slice(&self.bytes);
        let s = stamp.bytes();
        out[STAMP_OFFSET..STAMP_OFFSET + STAMP_LEN].copy_from_slice(&s);
        let sum = checksum::finish(checksum::add(self.partial_sum, &s));
        // RFC 768: a computed zero is sent as all ones.
        let sum = if sum == 0 { 0xffff } else { sum };
        out[UDP_CHECKSUM_AT..UDP_CHECKSUM_AT + 2].copy_from_slice(&sum.to_be_bytes());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::decode::decode;
    use proptest::prelude::*;

    #[test]
    fn flows_stay_in_the_benchmark_range() {
        assert_eq!(flow_source(0), (Ipv4Addr::new(198, 18, 0, 1), 1024));
        assert_eq!(
            flow_source(65_533),
            (Ipv4Addr::new(198, 18, 255, 254), 1024)
        );
        assert_eq!(flow_source(65_534), (Ipv4Addr::new(198, 18, 0, 1), 1025));
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000 {
            assert!(seen.insert(flow_source(i)), "flow {i} repeats");
        }
    }

    #[test]
    fn stamped_frames_decode_with_valid_checksums() {
        for size in [64usize, 65, 128, 1518] {
            let t = Template::new(7, size, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).unwrap();
            assert_eq!(t.len(), size - 4);
            let stamp = Stamp {
                trial: 3,
                seq: 0x0102_0304_0506_0708,
                tsc: u64::MAX - 5,
            };
            let mut buf = vec![0u8; t.len()];
            assert!(t.stamp(&stamp, &mut buf));
            assert_eq!(Stamp::read(&buf), Some(stamp));
            let d = decode(&buf).unwrap();
            assert!(d.ip_checksum_ok && d.l4_checksum_ok, "{size}: {d:?}");
            assert!(!t.stamp(&stamp, &mut vec![0u8; t.len() + 1]));
        }
        assert!(Template::new(0, 63, [0; 6], [0; 6]).is_err());
        assert!(Template::new(0, 1519, [0; 6], [0; 6]).is_err());
    }

    #[test]
    fn foreign_frames_have_no_stamp() {
        let t = Template::new(0, 64, [0; 6], [0; 6]).unwrap();
        let mut buf = vec![0u8; t.len()];
        t.stamp(
            &Stamp {
                trial: 1,
                seq: 2,
                tsc: 3,
            },
            &mut buf,
        );
        assert!(Stamp::read(&buf[..59]).is_none());
        for (at, value) in [(12, 0x86), (14, 0x46), (23, 6), (37, 10)] {
            let mut other = buf.clone();
            other[at] = value;
            assert!(Stamp::read(&other).is_none(), "byte {at}");
        }
    }

    proptest! {
        #[test]
        fn checksums_hold_for_any_stamp(
            flow in 0u64..1_000_000, trial in any::<u16>(), seq in any::<u64>(),
            tsc in any::<u64>(), size in 64usize..=1518,
        ) {
            let t = Template::new(flow, size, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).unwrap();
            let stamp = Stamp { trial, seq, tsc };
            let mut buf = vec![0u8; t.len()];
            prop_assert!(t.stamp(&stamp, &mut buf));
            prop_assert_eq!(Stamp::read(&buf), Some(stamp));
            let d = decode(&buf).unwrap();
            prop_assert!(d.l4_checksum_ok);
        }

        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = Stamp::read(&bytes);
        }
    }
}
