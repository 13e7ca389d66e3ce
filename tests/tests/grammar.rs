//! pf.conf grammar through the real `dpf --replay`: `include` and `load
//! anchor` files beside the ruleset, anchors evaluated in place, port names
//! of /etc/services, address ranges, abbreviated networks, `antispoof` and
//! `return-icmp (code)` answers on the wire. Wire mode: lan0 (port 0) <->
//! wan0 (port 1).

use dataplane::flow::{Direction, IfIndex, L4Info};
use dataplane::wire::{classify, FrameKind};
use dpf_tests::frames::{at, flags, frame, read_pcapng, tcp, write_pcapng, Arrival, L4};
use dpf_tests::*;
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

const LAN: u32 = 0;
const WAN: u32 = 1;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Runs `arrivals` through `dpf --replay` with `files` (pf.conf first)
/// written in one directory.
fn replay_files(files: &[(&str, &str)], arrivals: &[Arrival]) -> (Vec<Arrival>, Value) {
    let dir = scratch();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        "[eal]\nargs = []\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\naddresses = [\"10.0.0.1/24\"]\n[[port]]\nname = \"wan0\"\ndevice = \"net_null1\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n",
    )
    .unwrap();
    let input = dir.path().join("in.pcapng");
    let output = dir.path().join("out.pcapng");
    write_pcapng(&input, 2, arrivals);
    let out = run_dpf(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--replay",
            input.to_str().unwrap(),
            "--replay-out",
            output.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    expect_success(&out).unwrap();
    let stats: Value = serde_json::from_slice(&out.stdout).expect("replay prints JSON");
    (read_pcapng(&output), stats)
}

fn syn(port: u32, ms: u64, src: &str, dst: &str, dport: u16) -> Arrival {
    at(
        port,
        ms,
        frame(ip(src), ip(dst), &tcp(40000, dport, 1, 0, flags::SYN)),
    )
}

fn udp(port: u32, ms: u64, src: &str, dst: &str, dport: u16) -> Arrival {
    at(
        port,
        ms,
        frame(
            ip(src),
            ip(dst),
            &L4::Udp {
                sport: 5000,
                dport,
                payload: b"x".to_vec(),
            },
        ),
    )
}

fn forwarded(out: &[Arrival], a: &Arrival) -> bool {
    out.iter()
        .any(|o| o.port == 1 - a.port && o.frame == a.frame)
}

#[test]
fn include_anchors_services_ranges_and_antispoof_on_the_wire() {
    let files = [
        (
            "pf.conf",
            "block in all\ninclude \"conf.d/lan.conf\"\nanchor \"pub\" in on wan0\nload anchor \"pub\" from \"pub.conf\"\nantispoof quick for lan0 inet\n",
        ),
        (
            "conf.d/lan.conf",
            "pass in on lan0 proto udp to port syslog\npass in on lan0 proto tcp from 10.0.0.10 - 10.0.0.20 to 10/8 port mysql\n",
        ),
        ("pub.conf", "pass in proto tcp to port echo\n"),
    ];
    let arrivals = vec![
        // include: syslog (514/udp) passes, another UDP port does not.
        udp(LAN, 0, "10.0.0.5", "10.9.0.1", 514),
        udp(LAN, 1, "10.0.0.5", "10.9.0.1", 515),
        // The range and the abbreviated network, mysql = 3306.
        syn(LAN, 2, "10.0.0.15", "10.200.0.1", 3306),
        syn(LAN, 3, "10.0.0.21", "10.200.0.1", 3306),
        // The anchor: its rule applies on wan0 only (echo = 7).
        syn(WAN, 4, "198.51.100.7", "10.0.0.5", 7),
        syn(LAN, 5, "10.0.0.5", "198.51.100.7", 7),
        // antispoof: lan0's network arriving on wan0 is dropped although
        // the anchor would pass it.
        syn(WAN, 6, "10.0.0.99", "10.0.0.5", 7),
    ];
    let (out, stats) = replay_files(&files, &arrivals);
    let want = [true, false, true, false, true, false, false];
    for (i, (a, w)) in arrivals.iter().zip(want).enumerate() {
        assert_eq!(forwarded(&out, a), w, "arrival {i}: {stats}");
    }
}

#[test]
fn return_icmp_code_is_the_answers_code() {
    let files = [(
        "pf.conf",
        "block return-icmp (host-unr) in on wan0 proto udp\nblock return-icmp (filter-prohib) in on wan0 proto tcp\n",
    )];
    let arrivals = vec![
        udp(WAN, 0, "198.51.100.7", "10.0.0.5", 161),
        syn(WAN, 1, "198.51.100.7", "10.0.0.5", 23),
    ];
    let (out, stats) = replay_files(&files, &arrivals);
    assert_eq!(out.len(), 2, "{stats}");
    let codes: Vec<(u8, u8)> = out
        .iter()
        .map(|a| {
            assert_eq!(a.port, WAN);
            let c = classify(&a.frame, IfIndex(1), Direction::In).unwrap();
            let FrameKind::Ip { info, .. } = c.kind else {
                panic!("not IP")
            };
            let L4Info::Icmp(i) = info.l4 else {
                panic!("not ICMP")
            };
            (i.icmp_type, i.code)
        })
        .collect();
    assert_eq!(codes, vec![(3, 1), (3, 13)]);
}
