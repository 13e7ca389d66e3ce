//! Fragment reassembly (pf's `set reassemble yes`) through the real `dpf`:
//! in replay (router mode, two workers) a fragmented UDP datagram is
//! filtered whole and leaves in its fragments, rewritten for its next hop;
//! `set reassemble no` keeps dropping fragments; malicious fragment sets
//! (overlap, teardrop, too many, never completed, over the limit, DF) are
//! dropped and counted. With real traffic, an 8 KiB UDP datagram crosses
//! dpf between two network namespaces, IPv4 and IPv6.

use dataplane::wire::checksum;
use dpf_tests::frames::{frame_with, Arrival, L4};
use dpf_tests::netns::{must, Namespaces};
use dpf_tests::{dpf_bin, dpfctl_bin, eal_args, scratch, Proc};
use serde_json::Value;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const GW_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];
const GW6_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 6];

const CONFIG: &str = r#"
[eal]
args = []
[dataplane]
mode = "router"
rules = "pf.conf"
[[port]]
name = "lan0"
device = "net_null0"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]
[[port]]
name = "wan0"
device = "net_null1"
addresses = ["10.2.0.1/24", "2001:db8:2::1/64"]
[[route]]
to = "default"
via = "10.2.0.254"
[[route]]
to = "2001:db8:100::/48"
via = "2001:db8:2::fe"
[[neighbor]]
ip = "10.2.0.254"
mac = "02:fe:00:00:00:01"
[[neighbor]]
ip = "2001:db8:2::fe"
mac = "02:fe:00:00:00:06"
"#;

/// Only whole UDP datagrams to port 5353 pass: a fragment without ports
/// matches nothing but `block all`.
const RULES: &str = "\
block all
pass proto udp to port 5353 keep state
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An 8 KiB UDP datagram from the LAN host to `dst` port `dport`, whole.
fn datagram(dst: &str, dport: u16, len: usize) -> Vec<u8> {
    let src = if dst.contains(':') {
        ip("2001:db8:1::7")
    } else {
        ip("10.1.0.7")
    };
    let payload: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
    let l4 = L4::Udp {
        sport: 40000,
        dport,
        payload,
    };
    frame_with(HOST_MAC, LAN_MAC, 64, src, ip(dst), &l4)
}

/// One fragment description: data offset, data length, more fragments.
type Piece = (usize, usize, bool);

/// The pieces of `total` data bytes cut every `size` bytes.
fn even(total: usize, size: usize) -> Vec<Piece> {
    (0..total)
        .step_by(size)
        .map(|o| (o, size.min(total - o), o + size < total))
        .collect()
}

/// Fragments an untagged IPv4 or IPv6 frame into `pieces` (IPv6: a
/// fragment header with id `id` after the fixed header; IPv4: the
/// frame's own id), `df` set on IPv4 fragments when asked.
fn fragments(whole: &[u8], pieces: &[Piece], id: u32, df: bool) -> Vec<Vec<u8>> {
    let v6 = whole[12..14] == [0x86, 0xdd];
    let hdr = if v6 { 14 + 40 } else { 14 + 20 };
    let end = if v6 {
        hdr + usize::from(u16::from_be_bytes([whole[18], whole[19]]))
    } else {
        14 + usize::from(u16::from_be_bytes([whole[16], whole[17]]))
    };
    let data = &whole[hdr..end];
    pieces
        .iter()
        .map(|&(off, len, more)| {
            let mut f = whole[..hdr].to_vec();
            if v6 {
                let nh = f[20];
                f[20] = 44;
                let offlg = off as u16 & 0xfff8 | u16::from(more);
                f.extend_from_slice(&[nh, 0]);
                f.extend_from_slice(&offlg.to_be_bytes());
                f.extend_from_slice(&id.to_be_bytes());
                f.extend_from_slice(&data[off..off + len]);
                f[18..20].copy_from_slice(&((8 + len) as u16).to_be_bytes());
            } else {
                f.extend_from_slice(&data[off..off + len]);
                let ipf = &mut f[14..34];
                ipf[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
                let flags =
                    (off / 8) as u16 | if more { 0x2000 } else { 0 } | if df { 0x4000 } else { 0 };
                ipf[6..8].copy_from_slice(&flags.to_be_bytes());
                ipf[10..12].copy_from_slice(&[0, 0]);
                let c = !checksum::data(ipf);
                ipf[10..12].copy_from_slice(&c.to_be_bytes());
            }
            while f.len() < 60 {
                f.push(0);
            }
            f
        })
        .collect()
}

fn at(ms: u64, f: Vec<u8>) -> Arrival {
    Arrival {
        port: 0,
        at: Duration::from_millis(ms),
        frame: f,
    }
}

fn replay(rules: &str, arrivals: &[Arrival]) -> (Vec<Arrival>, Value) {
    let r = dpf_tests::frames::replay(CONFIG, Some(rules), 2, arrivals, 2);
    (r.out, r.stats)
}

fn drops(stats: &Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap_or(0)
}

/// The IP data of a frame's fragment, with its offset.
fn fragment_data(f: &[u8]) -> (usize, Vec<u8>) {
    if f[12..14] == [0x86, 0xdd] {
        let plen = usize::from(u16::from_be_bytes([f[18], f[19]]));
        let off = usize::from(u16::from_be_bytes([f[56], f[57]]) & 0xfff8);
        (off, f[62..54 + plen].to_vec())
    } else {
        let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
        let off = usize::from(u16::from_be_bytes([f[20], f[21]]) & 0x1fff) * 8;
        (off, f[34..14 + total].to_vec())
    }
}

fn passes_whole_and_leaves_in_its_fragments(dst: &str, size: usize, gw: [u8; 6]) {
    let whole = datagram(dst, 5353, 8192);
    let v6 = dst.contains(':');
    let hdr = if v6 { 54 } else { 34 };
    let data_len = whole.len() - hdr;
    let mut frags = fragments(&whole, &even(data_len, size), 0x0102_0304, false);
    let n = frags.len();
    // Out of order: the last first, the first last.
    frags.reverse();
    let arrivals: Vec<Arrival> = frags.iter().cloned().map(|f| at(0, f)).collect();
    let (out, stats) = replay(RULES, &arrivals);
    assert_eq!(stats["reassembled"], 1, "{stats}");
    assert_eq!(out.len(), n, "every fragment leaves: {stats}");
    let mut got = vec![0u8; data_len];
    for (o, input) in out.iter().zip(frags.iter().rev()) {
        assert_eq!(o.port, 1, "out on wan0");
        assert_eq!(o.frame.len(), input.len(), "each keeps its size");
        assert_eq!(o.frame[..6], gw, "to the next hop");
        let ttl = if v6 { o.frame[21] } else { o.frame[22] };
        assert_eq!(ttl, 63);
        if !v6 {
            assert_eq!(checksum::data(&o.frame[14..34]), 0xffff, "header checksum");
        }
        let (off, d) = fragment_data(&o.frame);
        got[off..off + d.len()].copy_from_slice(&d);
    }
    assert_eq!(got, whole[hdr..], "the datagram arrives intact");
    assert_eq!(stats["states"], 1, "one state for the datagram: {stats}");
}

#[test]
fn an_ipv4_datagram_is_filtered_whole_and_leaves_in_its_fragments() {
    passes_whole_and_leaves_in_its_fragments("10.9.9.9", 1480, GW_MAC);
}

#[test]
fn an_ipv6_datagram_is_filtered_whole_and_leaves_in_its_fragments() {
    passes_whole_and_leaves_in_its_fragments("2001:db8:100::9", 1448, GW6_MAC);
}

#[test]
fn a_blocked_datagram_is_dropped_whole() {
    let whole = datagram("10.9.9.9", 53, 8192);
    let frags = fragments(&whole, &even(8200, 1480), 0, false);
    let arrivals: Vec<Arrival> = frags.into_iter().map(|f| at(0, f)).collect();
    let (out, stats) = replay(RULES, &arrivals);
    assert!(out.is_empty());
    assert_eq!(drops(&stats, "blocked-by-rule"), 6, "{stats}");
}

#[test]
fn set_reassemble_no_drops_fragments() {
    let whole = datagram("10.9.9.9", 5353, 8192);
    let frags = fragments(&whole, &even(8200, 1480), 0, false);
    let arrivals: Vec<Arrival> = frags.into_iter().map(|f| at(0, f)).collect();
    let (out, stats) = replay(&format!("set reassemble no\n{RULES}"), &arrivals);
    assert!(out.is_empty());
    assert_eq!(drops(&stats, "fragment"), 6, "{stats}");
    assert_eq!(stats["reassembled"], 0);
}

#[test]
fn overlaps_and_teardrop_drop_the_whole_datagram() {
    for dst in ["10.9.9.9", "2001:db8:100::9"] {
        let whole = datagram(dst, 5353, 4000);
        // Teardrop: the second fragment starts inside the first.
        let teardrop = fragments(
            &whole,
            &[(0, 1480, true), (1000, 1480, true), (2480, 1528, false)],
            5,
            false,
        );
        // A duplicate of a fragment already held.
        let dup = fragments(
            &whole,
            &[(0, 1480, true), (0, 1480, true), (1480, 2528, false)],
            6,
            false,
        );
        for (set, name) in [(teardrop, "teardrop"), (dup, "duplicate")] {
            let arrivals: Vec<Arrival> = set.into_iter().map(|f| at(0, f)).collect();
            let (out, stats) = replay(RULES, &arrivals);
            assert!(out.is_empty(), "{dst} {name}");
            // The two overlapping ones; the third starts a datagram that
            // never completes.
            assert_eq!(
                drops(&stats, "fragment-overlap"),
                2,
                "{dst} {name}: {stats}"
            );
            assert_eq!(stats["reassembled"], 0);
        }
    }
}

#[test]
fn too_many_fragments_drop_the_datagram() {
    let whole = datagram("10.9.9.9", 5353, 1000);
    // 65 fragments of 8 bytes, then the rest.
    let mut pieces: Vec<Piece> = (0..65).map(|i| (i * 8, 8, true)).collect();
    pieces.push((520, 1008 - 520, false));
    let arrivals: Vec<Arrival> = fragments(&whole, &pieces, 0, false)
        .into_iter()
        .map(|f| at(0, f))
        .collect();
    let (out, stats) = replay(RULES, &arrivals);
    assert!(out.is_empty());
    assert_eq!(drops(&stats, "fragment-too-many"), 65, "{stats}");
}

#[test]
fn a_datagram_never_completed_times_out() {
    let whole = datagram("10.9.9.9", 5353, 4000);
    let frags = fragments(&whole, &even(4008, 1480), 0, false);
    // The first two; the last one comes after `set timeout frag 10`.
    let mut arrivals = vec![at(0, frags[0].clone()), at(1, frags[1].clone())];
    arrivals.push(at(11_000, frags[2].clone()));
    let rules = format!("set timeout frag 10\n{RULES}");
    let (out, stats) = replay(&rules, &arrivals);
    assert!(out.is_empty(), "{stats}");
    assert_eq!(drops(&stats, "fragment-timeout"), 2, "{stats}");
    // Within the timeout the same fragments pass.
    let arrivals: Vec<Arrival> = frags
        .iter()
        .enumerate()
        .map(|(i, f)| at(i as u64 * 4000, f.clone()))
        .collect();
    let (out, stats) = replay(&rules, &arrivals);
    assert_eq!(out.len(), 3, "{stats}");
}

#[test]
fn the_frags_limit_drops_the_oldest_datagrams() {
    // 100 datagrams whose last fragment never comes, then a whole one:
    // `set limit frags 40` (20 a worker) keeps dropping the oldest, and
    // the last datagram still passes.
    let mut arrivals = Vec::new();
    for i in 0..100u16 {
        let mut whole = datagram("10.9.9.9", 5353, 4000);
        whole[18..20].copy_from_slice(&i.to_be_bytes());
        let f = fragments(&whole, &even(4008, 1480), 0, false);
        arrivals.push(at(0, f[0].clone()));
    }
    let whole = datagram("10.9.9.9", 5353, 4000);
    let mut last = fragments(&whole, &even(4008, 1480), 0, false);
    for f in &mut last {
        f[18..20].copy_from_slice(&999u16.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = !checksum::data(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    arrivals.extend(last.into_iter().map(|f| at(1, f)));
    let rules = format!("set limit frags 40\n{RULES}");
    let (out, stats) = replay(&rules, &arrivals);
    assert_eq!(out.len(), 3, "the newest datagram passes: {stats}");
    assert!(drops(&stats, "fragment-limit") >= 60, "{stats}");
}

#[test]
fn df_fragments_are_dropped_unless_no_df() {
    let whole = datagram("10.9.9.9", 5353, 4000);
    let frags = fragments(&whole, &even(4008, 1480), 0, true);
    let arrivals: Vec<Arrival> = frags.into_iter().map(|f| at(0, f)).collect();
    let (out, stats) = replay(RULES, &arrivals);
    assert!(out.is_empty());
    assert_eq!(drops(&stats, "fragment-bad"), 3, "{stats}");
    let (out, stats) = replay(&format!("set reassemble yes no-df\n{RULES}"), &arrivals);
    assert_eq!(out.len(), 3, "{stats}");
    for o in &out {
        assert_eq!(o.frame[20] & 0x40, 0, "DF cleared");
        assert_eq!(checksum::data(&o.frame[14..34]), 0xffff);
    }
}

/// Real traffic: hosts `a` (10.1.0.2, 2001:db8:1::2) and `b` (10.2.0.2,
/// 2001:db8:2::2) in their own namespaces, dpf routing between them in a
/// third over veths read with libpcap (`net_pcap,iface=`: DPDK's
/// af_packet PMD joins its socket to a fanout group with the kernel's
/// IPv4 defragmentation on, so dpf would never see IPv4 fragments
/// through it); an 8 KiB UDP datagram (six fragments at
/// MTU 1500) crosses dpf both ways of addressing, and a `set reassemble
/// no` dpf lets none through.
#[test]
fn an_8k_udp_datagram_crosses_dpf_between_namespaces() {
    let ns = Namespaces::new("dpfr", &["a", "fw", "b"]);
    let (a, fw, b) = (ns.name(0), ns.name(1), ns.name(2));
    let mac = |last: u8| format!("02:00:00:00:0f:{last:02x}");
    for (host, dev, hmac, fwmac, n) in [(a, "l0", 0x0a, 0x01, 1), (b, "w0", 0x0b, 0x02, 2)] {
        must(&format!(
            "ip link add eth0 netns {host} address {} type veth peer name {dev} netns {fw} address {}",
            mac(hmac),
            mac(fwmac)
        ));
        must(&format!(
            "ip netns exec {fw} ethtool -K {dev} tx off rx off tso off gso off gro off"
        ));
        must(&format!(
            "ip netns exec {host} ethtool -K eth0 tx off rx off tso off gso off gro off"
        ));
        must(&format!("ip -n {fw} link set {dev} up"));
        must(&format!("ip -n {host} link set eth0 up"));
        must(&format!("ip -n {host} addr add 10.{n}.0.2/24 dev eth0"));
        must(&format!(
            "ip -n {host} addr add 2001:db8:{n}::2/64 dev eth0 nodad"
        ));
        must(&format!("ip -n {host} route add default via 10.{n}.0.1"));
        must(&format!(
            "ip -n {host} -6 route add default via 2001:db8:{n}::1"
        ));
        must(&format!(
            "ip -n {host} neigh add 10.{n}.0.1 lladdr {} dev eth0 nud permanent",
            mac(fwmac)
        ));
        must(&format!(
            "ip -n {host} neigh add 2001:db8:{n}::1 lladdr {} dev eth0 nud permanent",
            mac(fwmac)
        ));
    }
    let dir = scratch();
    let run = |reassemble: &str, tag: &str| -> (bool, bool) {
        let rules = dir.path().join(format!("{tag}.conf"));
        std::fs::write(
            &rules,
            format!(
                "set reassemble {reassemble}\nblock all\npass proto udp to port 9999 keep state\n"
            ),
        )
        .unwrap();
        let sock = dir.path().join(format!("{tag}.sock"));
        let cfg = dir.path().join(format!("{tag}.toml"));
        std::fs::write(
            &cfg,
            format!(
                r#"[eal]
args = {eal}
[dataplane]
mode = "router"
rules = "{rules}"
[[port]]
name = "lan0"
device = "net_pcap0,iface=l0"
mac = "{fa}"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]
[[port]]
name = "wan0"
device = "net_pcap1,iface=w0"
mac = "{fb}"
addresses = ["10.2.0.1/24", "2001:db8:2::1/64"]
[[neighbor]]
ip = "10.2.0.2"
mac = "{mb}"
[[neighbor]]
ip = "2001:db8:2::2"
mac = "{mb}"
[[neighbor]]
ip = "10.1.0.2"
mac = "{ma}"
[[neighbor]]
ip = "2001:db8:1::2"
mac = "{ma}"
[control]
socket = "{sock}"
"#,
                eal = eal_args("frag", 256, "0@0,1@1"),
                rules = rules.display(),
                mb = mac(0x0b),
                ma = mac(0x0a),
                fa = mac(0x01),
                fb = mac(0x02),
                sock = sock.display(),
            ),
        )
        .unwrap();
        let dpf = Proc::spawn(
            "dpf",
            Command::new("ip")
                .args(["netns", "exec", fw])
                .arg(dpf_bin())
                .args(["--config", cfg.to_str().unwrap()]),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "dpf did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = [("10.2.0.2", "AF_INET"), ("2001:db8:2::2", "AF_INET6")].map(|(dst, fam)| {
            // The receiver in b waits up to 5 s for one 8192-byte datagram
            // with the expected bytes; the sender in a sends one every
            // 0.2 s meanwhile.
            let py_rx = format!(
                r#"import socket, sys
s = socket.socket(socket.{fam}, socket.SOCK_DGRAM); s.bind(("{dst}", 9999)); s.settimeout(5)
want = bytes(i * 13 % 251 for i in range(8192))
try:
    d, _ = s.recvfrom(65535)
except socket.timeout:
    sys.exit(1)
sys.exit(0 if d == want else 2)
"#
            );
            let rx = Proc::spawn(
                "rx",
                Command::new("ip").args(["netns", "exec", b, "python3", "-c", &py_rx]),
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let py_tx = format!(
                r#"import socket, time
s = socket.socket(socket.{fam}, socket.SOCK_DGRAM)
d = bytes(i * 13 % 251 for i in range(8192))
for _ in range(20):
    s.sendto(d, ("{dst}", 9999)); time.sleep(0.2)
"#
            );
            let tx = Proc::spawn(
                "tx",
                Command::new("ip").args(["netns", "exec", a, "python3", "-c", &py_tx]),
            )
            .unwrap();
            let out = rx.wait(Duration::from_secs(15)).unwrap();
            drop(tx);
            out.status.code() == Some(0)
        });
        let info = Command::new(dpfctl_bin())
            .arg("--socket")
            .arg(&sock)
            .args(["--json", "-s", "info"])
            .output()
            .unwrap();
        let info: Value = serde_json::from_slice(&info.stdout).unwrap_or(Value::Null);
        eprintln!("set reassemble {reassemble}: {info}");
        dpf.signal(libc::SIGTERM);
        let _ = dpf.wait(Duration::from_secs(10));
        (got[0], got[1])
    };
    assert_eq!(run("yes", "on"), (true, true), "reassembled datagrams pass");
    assert_eq!(
        run("no", "off"),
        (false, false),
        "fragments are dropped without reassembly"
    );
}
