//! `route-to` and `reply-to` through the real `dpf` binary in replay mode:
//! an edge box with two uplinks keeps a LAN host's connections on the
//! uplink its rule names, and replies to connections that came in on the
//! second uplink leave by it (not by the default route), as pf does.

use dataplane::flow::{Addr, Direction, IfIndex};
use dataplane::wire::{classify, FrameKind};
use dpf_tests::frames::{flags, frame_with, tcp, Arrival};
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const WAN0_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const WAN1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const GW0_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];
const GW1_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 2];

const CONFIG: &str = r#"
[eal]
args = []
[dataplane]
mode = "router"
rules = "pf.conf"
[[port]]
name = "lan0"
device = "net_null0"
addresses = ["10.1.0.1/24"]
[[port]]
name = "wan0"
device = "net_null1"
addresses = ["203.0.113.1/24"]
[[port]]
name = "wan1"
device = "net_null2"
addresses = ["198.18.1.1/24"]
[[route]]
to = "default"
via = "203.0.113.254"
[[neighbor]]
ip = "203.0.113.254"
mac = "02:fe:00:00:00:01"
[[neighbor]]
ip = "198.18.1.254"
mac = "02:fe:00:00:00:02"
[[neighbor]]
ip = "10.1.0.7"
mac = "02:aa:00:00:00:07"
[[neighbor]]
ip = "10.1.0.8"
mac = "02:aa:00:00:00:08"
[[neighbor]]
ip = "10.1.0.50"
mac = "02:aa:00:00:00:50"
"#;

const RULES: &str = "\
block all
pass in on lan0 inet from 10.1.0.8 route-to (wan1 198.18.1.254)
pass in on lan0 inet from 10.1.0.7
pass out on { wan0 wan1 }
pass in on wan1 inet proto tcp to 10.1.0.50 port 22 reply-to (wan1 198.18.1.254)
pass in on wan0 inet proto tcp to 10.1.0.50 port 22
pass out on lan0
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(port: u32, ms: u64, frame: Vec<u8>) -> Arrival {
    Arrival {
        port,
        at: Duration::from_millis(ms),
        frame,
    }
}

fn replay(rules: &str, arrivals: &[Arrival]) -> (Vec<Arrival>, Value) {
    let r = dpf_tests::frames::replay(CONFIG, Some(rules), 3, arrivals, 1);
    (r.out, r.stats)
}

fn dst_of(a: &Arrival) -> Addr {
    match classify(&a.frame, IfIndex(a.port as u16), Direction::Out)
        .expect("parses")
        .kind
    {
        FrameKind::Ip { info, .. } => info.dst,
        k => panic!("{k:?}"),
    }
}

#[test]
fn route_to_sends_a_hosts_connections_out_its_uplink() {
    let from_8 = at(
        0,
        0,
        frame_with(
            HOST_MAC,
            LAN_MAC,
            64,
            ip("10.1.0.8"),
            ip("198.51.100.10"),
            &tcp(40000, 443, 1, 0, flags::SYN),
        ),
    );
    let from_7 = at(
        0,
        1,
        frame_with(
            HOST_MAC,
            LAN_MAC,
            64,
            ip("10.1.0.7"),
            ip("198.51.100.10"),
            &tcp(40001, 443, 1, 0, flags::SYN),
        ),
    );
    // The answer to .8 comes back on wan1 and is routed normally (route-to
    // is for the initiator's direction); .8's next segment takes wan1
    // again.
    let answer = at(
        2,
        2,
        frame_with(
            GW1_MAC,
            WAN1_MAC,
            64,
            ip("198.51.100.10"),
            ip("10.1.0.8"),
            &tcp(443, 40000, 9, 2, flags::SYN | flags::ACK),
        ),
    );
    let ack = at(
        0,
        3,
        frame_with(
            HOST_MAC,
            LAN_MAC,
            64,
            ip("10.1.0.8"),
            ip("198.51.100.10"),
            &tcp(40000, 443, 2, 10, flags::ACK),
        ),
    );
    let (out, stats) = replay(RULES, &[from_8, from_7, answer, ack]);
    assert_eq!(out.len(), 4, "{stats}");
    assert_eq!(
        (out[0].port, &out[0].frame[0..6], &out[0].frame[6..12]),
        (2, &GW1_MAC[..], &WAN1_MAC[..]),
        "route-to wan1"
    );
    assert_eq!(
        (out[1].port, &out[1].frame[0..6]),
        (1, &GW0_MAC[..]),
        "the default route"
    );
    assert_eq!(out[2].port, 0, "the answer to the LAN");
    assert_eq!(
        (out[3].port, &out[3].frame[0..6]),
        (2, &GW1_MAC[..]),
        "the state keeps the route"
    );
    assert_eq!(dst_of(&out[3]), Addr::v4([198, 51, 100, 10]));
}

#[test]
fn reply_to_keeps_replies_on_the_uplink_the_connection_came_from() {
    let syn_wan1 = at(
        2,
        0,
        frame_with(
            GW1_MAC,
            WAN1_MAC,
            64,
            ip("198.51.100.30"),
            ip("10.1.0.50"),
            &tcp(5000, 22, 1, 0, flags::SYN),
        ),
    );
    let syn_wan0 = at(
        1,
        1,
        frame_with(
            GW0_MAC,
            WAN0_MAC,
            64,
            ip("198.51.100.31"),
            ip("10.1.0.50"),
            &tcp(5001, 22, 1, 0, flags::SYN),
        ),
    );
    let server = [2, 0xaa, 0, 0, 0, 0x50];
    let reply_1 = at(
        0,
        2,
        frame_with(
            server,
            LAN_MAC,
            64,
            ip("10.1.0.50"),
            ip("198.51.100.30"),
            &tcp(22, 5000, 7, 2, flags::SYN | flags::ACK),
        ),
    );
    let reply_0 = at(
        0,
        3,
        frame_with(
            server,
            LAN_MAC,
            64,
            ip("10.1.0.50"),
            ip("198.51.100.31"),
            &tcp(22, 5001, 7, 2, flags::SYN | flags::ACK),
        ),
    );
    let (out, stats) = replay(RULES, &[syn_wan1, syn_wan0, reply_1, reply_0]);
    assert_eq!(out.len(), 4, "{stats}");
    assert_eq!(
        (out[0].port, out[1].port),
        (0, 0),
        "both SYNs to the server"
    );
    assert_eq!(
        (out[2].port, &out[2].frame[0..6]),
        (2, &GW1_MAC[..]),
        "reply-to: back out wan1 to its gateway, not the default route"
    );
    assert_eq!(
        (out[3].port, &out[3].frame[0..6]),
        (1, &GW0_MAC[..]),
        "the default route"
    );
}

#[test]
fn route_to_on_a_bridge_is_refused() {
    let dir = dpf_tests::scratch();
    std::fs::write(
        dir.path().join("pf.conf"),
        "pass in on lan0 route-to (wan0 192.0.2.1)\n",
    )
    .unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        "[eal]\nargs = []\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_null1\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n",
    )
    .unwrap();
    let out = dpf_tests::run_dpf(
        &["--config", cfg.to_str().unwrap(), "-n"],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route-to / reply-to need router mode"),
        "{err}"
    );
}
