//! Source tracking through the real `dpf` binary in replay mode (router
//! mode, two workers so a source's states sit on both): OpenBSD's classic
//! brute-force ruleset (`max-src-conn`, `max-src-conn-rate`, `overload
//! <t> flush global` with `block quick from <t>`), `max-src-states` and
//! `max-src-nodes`.

use dpf_tests::frames::{flags, frame_with, tcp, Arrival, L4};
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SERVER_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 0x50];
const GW_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];

/// pf.conf(5)'s example, as OpenBSD admins write it.
const BRUTEFORCE: &str = "\
table <bruteforce> persist
block quick from <bruteforce>
pass in on wan0 proto tcp to port 22 keep state (max-src-conn 10, max-src-conn-rate 5/30, overload <bruteforce> flush global)
";

const SERVER: &str = "10.1.0.50";
const ATTACKER: &str = "198.51.100.66";
const OTHER: &str = "198.51.100.77";

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

/// From the internet (wan0, port 1) to the server.
fn inbound(src: &str, l4: &L4) -> Vec<u8> {
    frame_with(GW_MAC, WAN_MAC, 64, ip(src), ip(SERVER), l4)
}

/// From the server (lan0, port 0) back to `dst`.
fn reply(dst: &str, l4: &L4) -> Vec<u8> {
    frame_with(SERVER_MAC, LAN_MAC, 64, ip(SERVER), ip(dst), l4)
}

/// A complete handshake from `src:sport` to port `dport` at `ms`.
fn handshake(src: &str, sport: u16, dport: u16, ms: u64) -> [Arrival; 3] {
    [
        at(1, ms, inbound(src, &tcp(sport, dport, 1000, 0, flags::SYN))),
        at(
            0,
            ms + 1,
            reply(src, &tcp(dport, sport, 5000, 1001, flags::SYN | flags::ACK)),
        ),
        at(
            1,
            ms + 2,
            inbound(src, &tcp(sport, dport, 1001, 5001, flags::ACK)),
        ),
    ]
}

/// A data segment of an established connection from `src:sport`.
fn data(src: &str, sport: u16, dport: u16, ms: u64) -> Arrival {
    at(
        1,
        ms,
        inbound(src, &tcp(sport, dport, 1001, 5001, flags::ACK | flags::PSH)),
    )
}

/// Whether a frame from `src:sport` with `flags` left on lan0.
fn passed(out: &[Arrival], src: &str, sport: u16, tcp_flags: u8) -> bool {
    out.iter().any(|a| {
        a.port == 0 && {
            let f = &a.frame;
            let ihl = usize::from(f[14] & 0x0f) * 4;
            let t = 14 + ihl;
            f[26..30] == ip4(src)
                && u16::from_be_bytes([f[t], f[t + 1]]) == sport
                && f[t + 13] == tcp_flags
        }
    })
}

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

fn drops(stats: &Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap_or(0)
}

fn replay(rules: &str, arrivals: &[Arrival]) -> (Vec<Arrival>, Value) {
    let r = dpf_tests::frames::replay_args(
        &dpf_tests::frames::router_config("10.1.0.50", "02:aa:00:00:00:50", ""),
        Some(rules),
        2,
        arrivals,
        2,
        &[],
    );
    (r.out, r.stats)
}

fn node<'a>(stats: &'a Value, addr: &str) -> Option<&'a Value> {
    stats["source_nodes"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["address"] == addr))
}

#[test]
fn the_sixth_connection_in_30_seconds_overloads_and_flushes_the_source() {
    let mut arrivals = Vec::new();
    // Another source is connected first, and stays connected.
    arrivals.extend(handshake(OTHER, 50000, 22, 0));
    // Six connections from the attacker within a few seconds.
    for i in 0..6u16 {
        arrivals.extend(handshake(ATTACKER, 40000 + i, 22, 100 + u64::from(i) * 500));
    }
    // Then: data on the attacker's first connection, a seventh SYN, and
    // data from the other source.
    arrivals.push(data(ATTACKER, 40000, 22, 5000));
    arrivals.push(at(
        1,
        5001,
        inbound(ATTACKER, &tcp(40010, 22, 1000, 0, flags::SYN)),
    ));
    arrivals.push(data(OTHER, 50000, 22, 5002));
    let (out, stats) = replay(BRUTEFORCE, &arrivals);

    for i in 0..6u16 {
        assert!(
            passed(&out, ATTACKER, 40000 + i, flags::SYN),
            "SYN {i} passes: {stats}"
        );
    }
    for i in 0..5u16 {
        assert!(
            passed(&out, ATTACKER, 40000 + i, flags::ACK),
            "handshake {i} completes"
        );
    }
    assert!(
        !passed(&out, ATTACKER, 40005, flags::ACK),
        "the sixth connection does not complete: {stats}"
    );
    assert_eq!(drops(&stats, "src-limit"), 1, "{stats}");
    // The attacker is in <bruteforce> now: its states are gone (flush
    // global), so its first connection's data meets the block rule, as
    // does its next SYN.
    assert!(
        !passed(&out, ATTACKER, 40000, flags::ACK | flags::PSH),
        "the flushed connection is dead: {stats}"
    );
    assert!(
        !passed(&out, ATTACKER, 40010, flags::SYN),
        "blocked: {stats}"
    );
    assert!(drops(&stats, "blocked-by-rule") >= 2, "{stats}");
    // The other source is not affected.
    assert!(passed(&out, OTHER, 50000, flags::ACK | flags::PSH));
    let states: Vec<&Value> = stats["state_list"].as_array().unwrap().iter().collect();
    assert!(
        states
            .iter()
            .all(|s| !s["src"].as_str().unwrap().contains(ATTACKER)),
        "no state of the attacker is left: {states:?}"
    );
    assert_eq!(node(&stats, OTHER).unwrap()["states"], 1, "{stats}");
    assert_eq!(node(&stats, OTHER).unwrap()["connections"], 1);
    // The attacker's node stays src.track (30 s, the rate's interval)
    // without states.
    assert_eq!(node(&stats, ATTACKER).unwrap()["states"], 0, "{stats}");
}

#[test]
fn max_src_conn_counts_established_connections_only() {
    let rules = "\
table <bruteforce> persist
block quick from <bruteforce>
pass in on wan0 proto tcp to port 22 keep state (max-src-conn 2, overload <bruteforce>)
";
    let mut arrivals = Vec::new();
    // Half-open connections do not count (pf counts at ESTABLISHED).
    for i in 0..4u16 {
        arrivals.push(at(
            1,
            u64::from(i),
            inbound(ATTACKER, &tcp(30000 + i, 22, 1000, 0, flags::SYN)),
        ));
    }
    for i in 0..3u16 {
        arrivals.extend(handshake(ATTACKER, 40000 + i, 22, 100 + u64::from(i) * 10));
    }
    arrivals.push(data(ATTACKER, 40000, 22, 500));
    let (out, stats) = replay(rules, &arrivals);
    assert!(passed(&out, ATTACKER, 40001, flags::ACK));
    assert!(!passed(&out, ATTACKER, 40002, flags::ACK), "{stats}");
    assert_eq!(drops(&stats, "src-limit"), 1, "{stats}");
    // No flush: the source's established connections live on.
    assert!(passed(&out, ATTACKER, 40000, flags::ACK | flags::PSH));
    assert_eq!(node(&stats, ATTACKER).unwrap()["connections"], 2, "{stats}");
}

#[test]
fn max_src_states_limits_each_source_across_workers() {
    let rules = "pass in on wan0 proto tcp to port 80 keep state (max-src-states 3)\n";
    let mut arrivals = Vec::new();
    // Five SYNs from one source (their flows hash to both workers), one
    // from another.
    for i in 0..5u16 {
        arrivals.push(at(
            1,
            u64::from(i),
            inbound(ATTACKER, &tcp(40000 + i, 80, 1000, 0, flags::SYN)),
        ));
    }
    arrivals.push(at(
        1,
        10,
        inbound(OTHER, &tcp(50000, 80, 1000, 0, flags::SYN)),
    ));
    let (out, stats) = replay(rules, &arrivals);
    let through = (0..5u16)
        .filter(|i| passed(&out, ATTACKER, 40000 + i, flags::SYN))
        .count();
    assert_eq!(through, 3, "{stats}");
    assert_eq!(drops(&stats, "src-limit"), 2);
    assert!(passed(&out, OTHER, 50000, flags::SYN));
    assert_eq!(node(&stats, ATTACKER).unwrap()["states"], 3);
}

#[test]
fn max_src_nodes_limits_the_sources_of_a_rule() {
    let rules = "pass in on wan0 proto tcp to port 80 keep state (max-src-nodes 2)\n";
    let sources = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
    let mut arrivals = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        arrivals.push(at(
            1,
            i as u64,
            inbound(s, &tcp(40000, 80, 1000, 0, flags::SYN)),
        ));
    }
    // A known source gets more states.
    arrivals.push(at(
        1,
        10,
        inbound(sources[0], &tcp(40001, 80, 1000, 0, flags::SYN)),
    ));
    let (out, stats) = replay(rules, &arrivals);
    assert!(passed(&out, sources[0], 40000, flags::SYN));
    assert!(passed(&out, sources[1], 40000, flags::SYN));
    assert!(!passed(&out, sources[2], 40000, flags::SYN), "{stats}");
    assert!(passed(&out, sources[0], 40001, flags::SYN));
    assert_eq!(drops(&stats, "src-limit"), 1);
    assert_eq!(stats["source_nodes"].as_array().unwrap().len(), 2);
}

fn dpfctl(sock: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(dpf_tests::dpfctl_bin())
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("running dpfctl");
    assert!(
        out.status.success(),
        "dpfctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A live dpf whose states (made by `--preload`) count against source
/// nodes: `dpfctl -s Sources` lists them as pfctl -sS does, `-K host`
/// kills one source's node (its states stay), `-F Sources` all.
#[test]
fn dpfctl_shows_and_kills_source_nodes() {
    use dpf_tests::frames::{frame, write_pcapng};
    let dir = dpf_tests::scratch();
    let sock = dir.path().join("dpf.sock");
    let empty = dir.path().join("empty.pcap");
    dpf_tests::write_pcap(&empty, &[]).unwrap();
    std::fs::write(
        dir.path().join("pf.conf"),
        "set timeout src.track 3600\n\
         pass in on lan0 proto tcp keep state (max-src-states 10)\n",
    )
    .unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_null0\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n",
            dpf_tests::eal_args("srcnodes", 256, "0@0,1@1"),
            empty.display(),
            sock.display()
        ),
    )
    .unwrap();
    let setup = dir.path().join("setup.pcapng");
    let syns: Vec<Arrival> = [("10.0.0.1", 3u16), ("10.0.0.2", 2)]
        .iter()
        .flat_map(|(src, n)| {
            (0..*n).map(move |i| {
                at(
                    0,
                    u64::from(i),
                    frame(
                        ip(src),
                        ip("198.19.0.1"),
                        &tcp(40000 + i, 80, 1000, 0, flags::SYN),
                    ),
                )
            })
        })
        .collect();
    write_pcapng(&setup, 2, &syns);
    let _dpf = dpf_tests::Proc::spawn(
        "dpf",
        std::process::Command::new(dpf_tests::dpf_bin()).args([
            "--config",
            cfg.to_str().unwrap(),
            "--preload",
            setup.to_str().unwrap(),
        ]),
    )
    .unwrap();
    let mut sources = String::new();
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        if sock.exists() {
            sources = dpfctl(&sock, &["-s", "Sources"]);
            if !sources.is_empty() {
                break;
            }
        }
    }
    assert_eq!(
        sources,
        "10.0.0.1 ( states 3, connections 0, rate 0.0/0s )\n\
         10.0.0.2 ( states 2, connections 0, rate 0.0/0s )\n"
    );
    let json: Value = serde_json::from_str(&dpfctl(&sock, &["-s", "Sources", "--json"])).unwrap();
    assert_eq!(
        json[0]["rule"],
        Value::Null,
        "max-src-states: a global node"
    );
    assert!(dpfctl(&sock, &["-s", "memory"]).contains("src-nodes"));
    assert!(dpfctl(&sock, &["-s", "timeouts"]).contains("src.track"));
    assert_eq!(
        dpfctl(&sock, &["-K", "10.0.0.1"]),
        "killed 1 src nodes from host 10.0.0.1\n"
    );
    assert_eq!(
        dpfctl(&sock, &["-s", "Sources"]),
        "10.0.0.2 ( states 2, connections 0, rate 0.0/0s )\n"
    );
    let info: Value = serde_json::from_str(&dpfctl(&sock, &["-s", "info", "--json"])).unwrap();
    assert_eq!(info["states"], 5, "the states stay: {info}");
    assert_eq!(
        dpfctl(&sock, &["-F", "Sources"]),
        "source tracking entries cleared\n"
    );
    assert_eq!(dpfctl(&sock, &["-s", "Sources"]), "");
}
