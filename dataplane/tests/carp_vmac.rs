//! CARP in a router pipeline, both address families: frames to a VHID's
//! virtual MAC are routed only while the per-(port, VHID) MASTER flag of
//! the VIP table is set (a BACKUP drops and counts them as `carp-backup`),
//! and what a CARP box must answer itself — advertisements to ff02::12 /
//! 224.0.0.18, solicitations to a VIP's solicited-node group, echo to a
//! VIP — goes to the slow path.

use std::sync::Arc;

use dataplane::counters::{DropReason, Verdict};
use dataplane::flow::{Addr, Af, IfIndex};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::route::{IfAddr, Interface, Neighbor, Neighbors, Prefix, Routing, Vip, VipTable};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::Shard;
use dataplane::time::Instant;

const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 2, 1];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x50];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 2, 0x09];
const VMAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01];

fn v6(s: &str) -> Addr {
    Addr::v6(s.parse::<std::net::Ipv6Addr>().unwrap().octets())
}

fn ifaddr(af: Af, addr: Addr, len: u8) -> IfAddr {
    IfAddr {
        addr,
        prefix: Prefix::new(af, addr, len),
    }
}

/// lan0 (port 0) and wan0 (port 1), dual stack; VIPs 10.1.0.254 and
/// 2001:db8:1::fe of vhid 1 on lan0; the servers behind wan0 resolved.
fn pipeline() -> (Pipeline, Arc<VipTable>) {
    let vips = Arc::new(VipTable::new(
        vec![
            Vip {
                af: Af::Inet,
                addr: Addr::v4([10, 1, 0, 254]),
                port: 0,
                vhid: 1,
            },
            Vip {
                af: Af::Inet6,
                addr: v6("2001:db8:1::fe"),
                port: 0,
                vhid: 1,
            },
        ],
        2,
    ));
    let routing = Routing::new(
        vec![
            Interface {
                name: "lan0".into(),
                mac: LAN_MAC,
                mtu: 1500,
                addrs: vec![
                    ifaddr(Af::Inet, Addr::v4([10, 1, 0, 1]), 24),
                    ifaddr(Af::Inet6, v6("2001:db8:1::1"), 64),
                ],
            },
            Interface {
                name: "wan0".into(),
                mac: WAN_MAC,
                mtu: 1500,
                addrs: vec![
                    ifaddr(Af::Inet, Addr::v4([10, 2, 0, 1]), 24),
                    ifaddr(Af::Inet6, v6("2001:db8:2::1"), 64),
                ],
            },
        ],
        vec![],
    )
    .with_vips(Arc::clone(&vips));
    let server = Neighbor {
        mac: SERVER_MAC,
        port: 1,
    };
    let neighbors = Neighbors::new([
        ((Af::Inet, Addr::v4([10, 2, 0, 9])), server),
        ((Af::Inet6, v6("2001:db8:2::9")), server),
    ]);
    let ifs = [("lan0", IfIndex(0)), ("wan0", IfIndex(1))];
    let rules = Ruleset::compile(
        "",
        "(none)",
        &RuleEnv {
            interfaces: &ifs,
            self_addrs: &[],
            names: &[],
        },
    )
    .unwrap();
    let cfg = PipelineConfig {
        workers: 1,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::new(cfg, Arc::new(rules), Shard::new(1024, 0).unwrap());
    p.set_router(Arc::new(routing), Arc::new(neighbors), None);
    (p, vips)
}

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An IPv6 frame with `next_header` and `payload` (a UDP payload gets its
/// checksum over the pseudo-header).
fn ipv6_frame(
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    hop: u8,
    next: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (s, d) = (v6(src).0, v6(dst).0);
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, hop]);
    f.extend_from_slice(&s);
    f.extend_from_slice(&d);
    let mut l4 = payload.to_vec();
    if next == 17 || next == 58 {
        let at = if next == 17 { 6 } else { 2 };
        l4[at] = 0;
        l4[at + 1] = 0;
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&s);
        pseudo.extend_from_slice(&d);
        pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, next]);
        let c = fold(sum16(&pseudo) + sum16(&l4));
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(&l4);
    f
}

fn udp6(dst_mac: [u8; 6], dst: &str) -> Vec<u8> {
    let mut udp = vec![0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0];
    udp.extend_from_slice(b"ping");
    ipv6_frame(dst_mac, "2001:db8:1::50", dst, 64, 17, &udp)
}

fn udp4(dst_mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![
        0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 50, 10, 2, 0, 9,
    ];
    let c = fold(sum16(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0]);
    f.extend_from_slice(b"ping");
    f
}

#[test]
fn ipv6_frames_to_the_virtual_mac_are_routed_only_by_the_master() {
    let (mut p, vips) = pipeline();
    let now = Instant::from_secs(1);
    let mut f = udp6(VMAC, "2001:db8:2::9");
    assert_eq!(
        p.process(&mut f, 0, now),
        Verdict::Drop(DropReason::CarpBackup)
    );
    vips.set_master(0, 1, true);
    let mut f = udp6(VMAC, "2001:db8:2::9");
    assert_eq!(p.process(&mut f, 0, now), Verdict::Forward(1));
    assert_eq!(&f[0..6], &SERVER_MAC);
    assert_eq!(&f[6..12], &WAN_MAC);
    assert_eq!(f[21], 63, "hop limit decremented");
    // Another VHID's virtual MAC, or ours on another port: not ours.
    let mut f = udp6([0, 0, 0x5e, 0, 1, 2], "2001:db8:2::9");
    assert_eq!(
        p.process(&mut f, 0, now),
        Verdict::Drop(DropReason::CarpBackup)
    );
    let mut f = udp6(VMAC, "2001:db8:2::9");
    assert_eq!(
        p.process(&mut f, 1, now),
        Verdict::Drop(DropReason::CarpBackup)
    );
    vips.set_master(0, 1, false);
    let mut f = udp6(VMAC, "2001:db8:2::9");
    assert_eq!(
        p.process(&mut f, 0, now),
        Verdict::Drop(DropReason::CarpBackup)
    );
}

#[test]
fn ipv4_frames_to_the_virtual_mac_are_routed_only_by_the_master() {
    let (mut p, vips) = pipeline();
    let now = Instant::from_secs(1);
    let mut f = udp4(VMAC);
    assert_eq!(
        p.process(&mut f, 0, now),
        Verdict::Drop(DropReason::CarpBackup)
    );
    vips.set_master(0, 1, true);
    let mut f = udp4(VMAC);
    assert_eq!(p.process(&mut f, 0, now), Verdict::Forward(1));
    assert_eq!(&f[0..6], &SERVER_MAC);
}

#[test]
fn ipv6_carp_nd_and_echo_for_a_vip_go_to_the_slow_path() {
    let (mut p, vips) = pipeline();
    let now = Instant::from_secs(1);
    // An IPv6 advertisement (next header 112, hop limit 255) to ff02::12.
    let mut carp = ipv6_frame(
        [0x33, 0x33, 0, 0, 0, 0x12],
        "fe80::1",
        "ff02::12",
        255,
        112,
        &[
            0x21, 1, 0, 7, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    assert_eq!(
        p.process(&mut carp, 0, now),
        Verdict::SlowPath(dataplane::counters::Punt::Carp)
    );
    // A solicitation for the VIP, to its solicited-node group.
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&v6("2001:db8:1::fe").0);
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&HOST_MAC);
    let mut ns = ipv6_frame(
        [0x33, 0x33, 0xff, 0, 0, 0xfe],
        "2001:db8:1::50",
        "ff02::1:ff00:fe",
        255,
        58,
        &ns,
    );
    assert_eq!(
        p.process(&mut ns, 0, now),
        Verdict::SlowPath(dataplane::counters::Punt::Nd)
    );
    // Echo to the VIP, MASTER or not (the slow path decides).
    for master in [false, true] {
        vips.set_master(0, 1, master);
        let mut echo = ipv6_frame(
            VMAC,
            "2001:db8:1::50",
            "2001:db8:1::fe",
            64,
            58,
            &[128, 0, 0, 0, 0, 7, 0, 1, 0xab, 0xcd],
        );
        assert!(matches!(
            p.process(&mut echo, 0, now),
            Verdict::SlowPath(dataplane::counters::Punt::Icmp)
        ));
    }
}
