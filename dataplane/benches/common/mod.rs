//! Shared helpers of the dataplane microbenchmarks: test frames built with
//! dpf's own wire `Repr`s (checksums included), flow generators, the
//! criterion configuration and a TSC reader.
//!
//! Frames are the smallest Ethernet frames of their kind: 60 bytes without
//! the FCS (64 on the wire) for TCP/IPv4 and UDP/IPv4, 74 bytes for a
//! TCP/IPv6 segment without options (14 + 40 + 20).
//!
//! Each bench binary includes this module and uses a part of it.
//!
//! Running (no EAL needed; about 2 minutes for everything):
//!
//! ```text
//! cargo bench -p dataplane --no-default-features
//! cargo bench -p dataplane --no-default-features --bench pipeline -- --warm-up-time 1 --measurement-time 3
//! cargo bench -p dataplane --no-default-features --bench state -- lookup/hit
//! ```
//!
//! Numbers are only comparable on an otherwise idle machine, with the bench
//! pinned (`taskset -c N`): a busy neighbour on the same core doubles them.
//! The 1M-state insert and expire benchmarks set their own measurement time
//! (one full fill per sample) and ignore `--measurement-time`; criterion's
//! "unable to complete 10 samples" warning for them is expected.

#![allow(dead_code)]

use criterion::Criterion;
use dataplane::flow::{Direction, IfIndex, PacketInfo};
use dataplane::wire::{
    classify, ethernet, ipv4, ipv6, tcp, udp, EtherType, EthernetAddress, FrameKind, IpPair,
};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Packets per burst (the worker loop's rx burst).
pub const BURST: usize = 32;

/// Minimum Ethernet frame length without the FCS.
pub const MIN_FRAME_LEN: usize = 60;

/// The criterion configuration every bench group uses: few samples and short
/// runs so `cargo bench -p dataplane --no-default-features` stays within a
/// few minutes on a shared 2-core machine. Command-line options
/// (`--warm-up-time`, `--measurement-time`, `--sample-size`) still override.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

/// A reproducible random generator (benchmarks compare runs).
pub fn rng() -> SmallRng {
    SmallRng::seed_from_u64(0x0dbf_5eed)
}

/// `0..n` in a random (seeded) order.
pub fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut rng());
    v
}

/// One TCP segment without options or payload.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte.
    pub flags: u8,
}

fn ethernet_frame(ethertype: EtherType, ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; (14 + ip.len()).max(MIN_FRAME_LEN)];
    let r = ethernet::Repr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        vlan_id: None,
        ethertype,
    };
    r.emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    f[14..14 + ip.len()].copy_from_slice(ip);
    f
}

fn tcp_bytes(seg: Segment, ips: &IpPair) -> Vec<u8> {
    let r = tcp::Repr {
        src_port: seg.sport,
        dst_port: seg.dport,
        seq_number: seg.seq,
        ack_number: seg.ack,
        flags: seg.flags,
        window_len: 65535,
        options: tcp::Options {
            mss: None,
            wscale: None,
            sack_permitted: false,
            timestamp: None,
        },
        payload: &[],
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut tcp::Packet::new_unchecked(&mut b[..]), ips);
    b
}

fn ipv4_frame(src: [u8; 4], dst: [u8; 4], protocol: u8, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0u8; 20 + l4.len()];
    let r = ipv4::Repr {
        src_addr: Ipv4Addr::from(src),
        dst_addr: Ipv4Addr::from(dst),
        protocol,
        payload_len: l4.len(),
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: true,
    };
    r.emit(&mut ipv4::Packet::new_unchecked(&mut ip[..]));
    ip[20..].copy_from_slice(l4);
    ethernet_frame(EtherType::IPV4, &ip)
}

/// A TCP/IPv4 frame (60 bytes).
pub fn tcp4_frame(src: [u8; 4], dst: [u8; 4], seg: Segment) -> Vec<u8> {
    let ips = IpPair::V4 {
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(dst),
    };
    ipv4_frame(src, dst, 6, &tcp_bytes(seg, &ips))
}

/// A UDP/IPv4 frame with 18 zero bytes of payload (60 bytes).
pub fn udp4_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let ips = IpPair::V4 {
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(dst),
    };
    let payload = [0u8; 18];
    let r = udp::Repr {
        src_port: sport,
        dst_port: dport,
        payload: &payload,
    };
    let mut b = vec![0u8; 8 + payload.len()];
    r.emit(&mut udp::Packet::new_unchecked(&mut b[..]), &ips);
    ipv4_frame(src, dst, 17, &b)
}

/// A TCP/IPv6 frame (74 bytes).
pub fn tcp6_frame(src: [u8; 16], dst: [u8; 16], seg: Segment) -> Vec<u8> {
    let ips = IpPair::V6 {
        src: Ipv6Addr::from(src),
        dst: Ipv6Addr::from(dst),
    };
    let l4 = tcp_bytes(seg, &ips);
    let mut ip = vec![0u8; 40 + l4.len()];
    let r = ipv6::Repr {
        src_addr: Ipv6Addr::from(src),
        dst_addr: Ipv6Addr::from(dst),
        next_header: 6,
        payload_len: l4.len(),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    };
    r.emit(&mut ipv6::Packet::new_unchecked(&mut ip[..]));
    ip[40..].copy_from_slice(&l4);
    ethernet_frame(EtherType::IPV6, &ip)
}

/// The client address of flow `i` (10.0.0.0/8, so up to 2^24 flows).
pub fn client_v4(i: usize) -> [u8; 4] {
    [10, (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

/// The client port of flow `i`.
pub fn client_port(i: usize) -> u16 {
    1024 + (i % 60_000) as u16
}

/// The server every generated flow talks to.
pub const SERVER_V4: [u8; 4] = [192, 0, 2, 80];

/// The server port every generated flow talks to.
pub const SERVER_PORT: u16 = 80;

/// The summary `classify` gives `frame` (received on port 0), for benches
/// that start after the parse pass.
///
/// # Panics
///
/// If `frame` is not an IP packet (bench set-up only).
pub fn packet_info(frame: &[u8]) -> PacketInfo {
    match classify(frame, IfIndex(0), Direction::In).map(|c| c.kind) {
        Ok(FrameKind::Ip { info, .. }) => info,
        other => panic!("bench frame is not IP: {other:?}"),
    }
}

/// The TSC (x86_64). The TSC ticks at a constant rate (`constant_tsc`,
/// `nonstop_tsc`), the CPU's nominal frequency, whatever the core clock
/// does: a TSC delta is "cycles at nominal frequency". Convert with
/// `cycles = ns * tsc_ghz` ([`CycleTally::report`] measures the rate
/// against the monotonic clock); with turbo or power saving the core's own cycle count
/// differs by the ratio of the actual to the nominal clock.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn tsc() -> u64 {
    // SAFETY: RDTSC has no memory effects and is available on every x86_64
    // CPU; the intrinsic is only `unsafe` because it is an arch intrinsic.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// On other architectures there is no TSC; cycles read as 0.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn tsc() -> u64 {
    0
}

/// Sums what several `iter_custom` calls measured, to print cycles per
/// packet once a benchmark is done.
#[derive(Debug, Default)]
pub struct CycleTally {
    /// TSC ticks measured.
    pub cycles: u64,
    /// Nanoseconds measured.
    pub nanos: u128,
    /// Packets processed while measuring.
    pub packets: u64,
}

impl CycleTally {
    /// Adds one measured run.
    pub fn add(&mut self, cycles: u64, elapsed: Duration, packets: u64) {
        self.cycles += cycles;
        self.nanos += elapsed.as_nanos();
        self.packets += packets;
    }

    /// Prints `name: X TSC cycles/packet, Y ns/packet, Z Mpps (TSC G GHz)`.
    pub fn report(&self, name: &str) {
        if self.packets == 0 {
            return;
        }
        let p = self.packets as f64;
        let ns = self.nanos as f64 / p;
        let cycles = self.cycles as f64 / p;
        let ghz = if self.nanos == 0 {
            0.0
        } else {
            self.cycles as f64 / self.nanos as f64
        };
        println!(
            "{name}: {cycles:.1} TSC cycles/packet, {ns:.1} ns/packet, {:.2} Mpps \
             (TSC {ghz:.2} GHz, over {} packets)",
            1e3 / ns,
            self.packets
        );
    }
}

/// lan0's MAC in the router benchmarks and tests (port 0).
pub const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
/// wan0's MAC (port 1).
pub const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 2, 1];
/// The clients' MAC (behind lan0).
pub const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x50];
/// The server's MAC (behind wan0).
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 2, 0x09];

/// The routing and neighbour tables of a router between lan0 (port 0,
/// 10.0.0.0/8 — the clients of [`client_v4`] — box address 10.255.255.254)
/// and wan0 (port 1, 192.0.2.0/24 with [`SERVER_V4`], box address
/// 192.0.2.1); vhid 1 on lan0 (VIP 10.255.255.253), MASTER when `master`.
/// The server and the first `clients` clients are resolved.
pub fn router_tables(
    master: bool,
    clients: usize,
) -> (
    std::sync::Arc<dataplane::route::Routing>,
    std::sync::Arc<dataplane::route::Neighbors>,
) {
    use dataplane::flow::{Addr, Af};
    use dataplane::route::{
        IfAddr, Interface, Neighbor, Neighbors, Prefix, Routing, Vip, VipTable,
    };
    use std::sync::Arc;
    let ifaddr = |a: [u8; 4], len| IfAddr {
        addr: Addr::v4(a),
        prefix: Prefix::new(Af::Inet, Addr::v4(a), len),
    };
    let vips = Arc::new(VipTable::new(
        vec![Vip {
            af: Af::Inet,
            addr: Addr::v4([10, 255, 255, 253]),
            port: 0,
            vhid: 1,
        }],
        2,
    ));
    vips.set_master(0, 1, master);
    let routing = Routing::new(
        vec![
            Interface {
                name: "lan0".into(),
                mac: LAN_MAC,
                mtu: 1500,
                addrs: vec![ifaddr([10, 255, 255, 254], 8)],
            },
            Interface {
                name: "wan0".into(),
                mac: WAN_MAC,
                mtu: 1500,
                addrs: vec![ifaddr([192, 0, 2, 1], 24)],
            },
        ],
        vec![],
    )
    .with_vips(vips);
    let mut neighbors: Vec<((Af, Addr), Neighbor)> = (0..clients)
        .map(|i| {
            let host = Neighbor {
                mac: HOST_MAC,
                port: 0,
            };
            ((Af::Inet, Addr::v4(client_v4(i))), host)
        })
        .collect();
    neighbors.push((
        (Af::Inet, Addr::v4(SERVER_V4)),
        Neighbor {
            mac: SERVER_MAC,
            port: 1,
        },
    ));
    (Arc::new(routing), Arc::new(Neighbors::new(neighbors)))
}

/// Runs `packets` (port, frame) through `p` in bursts of at most
/// `max_burst` that never mix ports (like the worker's per-port rx
/// bursts); the verdicts, and the frames as they leave.
pub fn run_bursts(
    p: &mut dataplane::pipeline::Pipeline,
    packets: &[(u16, Vec<u8>)],
    max_burst: usize,
    now: dataplane::time::Instant,
) -> (Vec<dataplane::counters::Verdict>, Vec<Vec<u8>>) {
    use dataplane::counters::{DropReason, Verdict};
    let mut frames: Vec<Vec<u8>> = packets.iter().map(|(_, fr)| fr.clone()).collect();
    let mut verdicts = Vec::new();
    let mut i = 0;
    while i < packets.len() {
        let port = packets[i].0;
        let mut j = i;
        while j < packets.len() && packets[j].0 == port && j - i < max_burst {
            j += 1;
        }
        let mut burst: Vec<&mut [u8]> = frames[i..j].iter_mut().map(|v| v.as_mut_slice()).collect();
        let mut out = vec![Verdict::Drop(DropReason::Unclassified); j - i];
        p.process_burst(&mut burst, port, now, &mut out);
        verdicts.extend(out);
        i = j;
    }
    (verdicts, frames)
}

/// [`run_bursts`] a packet at a time with `Pipeline::process`.
pub fn run_one_by_one(
    p: &mut dataplane::pipeline::Pipeline,
    packets: &[(u16, Vec<u8>)],
    now: dataplane::time::Instant,
) -> (Vec<dataplane::counters::Verdict>, Vec<Vec<u8>>) {
    let mut frames: Vec<Vec<u8>> = packets.iter().map(|(_, fr)| fr.clone()).collect();
    let verdicts = packets
        .iter()
        .zip(frames.iter_mut())
        .map(|((port, _), fr)| p.process(fr, *port, now))
        .collect();
    (verdicts, frames)
}
