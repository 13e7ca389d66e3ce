//! pf's `log` through the real `dpf` binary in replay mode (router mode),
//! the pflog file read by `tcpdump -n -e -r` as OpenBSD's /var/log/pflog:
//! - `block log` logs every blocked packet with its rule number, `block`,
//!   the direction and the interface;
//! - `pass log` logs the packet that creates the state, not the packets
//!   the state passes; `pass log (all)` logs those too (both directions);
//! - a `match` rule with `log` logs the packet as `match`, and the deciding
//!   rule logs it again;
//! - `dpfctl -L` prints the same records;
//! - `[log] size` rotates the file, keeping `keep` old ones.

use dpf_tests::frames::{flags, frame_with, tcp, Arrival, L4};
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const GW_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];

fn config(log: &Path, extra: &str) -> String {
    format!(
        r#"
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
[[route]]
to = "default"
via = "203.0.113.254"
[[neighbor]]
ip = "203.0.113.254"
mac = "02:fe:00:00:00:01"
[[neighbor]]
ip = "10.1.0.7"
mac = "02:aa:00:00:00:07"
[log]
file = "{}"
{extra}
"#,
        log.display()
    )
}

const RULES: &str = "\
block log all
pass out quick on wan0
pass in log on lan0 proto tcp to port 22
pass in log (all) on lan0 proto udp to port 53
match in log on lan0 proto tcp to port 80
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

fn lan(dst: &str, l4: &L4) -> Vec<u8> {
    frame_with(HOST_MAC, LAN_MAC, 64, ip("10.1.0.7"), ip(dst), l4)
}

fn wan(src: &str, l4: &L4) -> Vec<u8> {
    frame_with(GW_MAC, WAN_MAC, 64, ip(src), ip("10.1.0.7"), l4)
}

fn udp(sport: u16, dport: u16) -> L4 {
    L4::Udp {
        sport,
        dport,
        payload: b"query".to_vec(),
    }
}

fn arrivals() -> Vec<Arrival> {
    vec![
        // ssh: the SYN creates the state and is logged; the rest is not.
        at(0, 10, lan("198.51.100.9", &tcp(40000, 22, 1000, 0, flags::SYN))),
        at(
            1,
            20,
            wan(
                "198.51.100.9",
                &tcp(22, 40000, 5000, 1001, flags::SYN | flags::ACK),
            ),
        ),
        at(0, 30, lan("198.51.100.9", &tcp(40000, 22, 1001, 5001, flags::ACK))),
        // dns with log (all): query, answer, query: three records.
        at(0, 40, lan("198.51.100.53", &udp(5353, 53))),
        at(1, 50, wan("198.51.100.53", &udp(53, 5353))),
        at(0, 60, lan("198.51.100.53", &udp(5353, 53))),
        // telnet: blocked by rule 0.
        at(0, 70, lan("198.51.100.9", &tcp(40001, 23, 1, 0, flags::SYN))),
        // http: the match rule logs, then the block rule decides and logs.
        at(0, 80, lan("198.51.100.9", &tcp(40002, 80, 1, 0, flags::SYN))),
    ]
}

fn tcpdump(file: &Path) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-n", "-e", "-r"])
        .arg(file)
        .output()
        .expect("tcpdump is installed (scripts/setup)");
    assert!(
        out.status.success(),
        "tcpdump -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `rule N/(reason) action dir on if: src > dst` part of a line, in
/// OpenBSD tcpdump's words (Linux's tcpdump 4.99 prints the reason as
/// `0(match):` and does not know PF_MATCH, 12, which it prints `unkn(12)`).
fn gist(line: &str) -> String {
    let line = line
        .replace("/0(match): ", "/(match) ")
        .replace(") unkn(12) ", ") match ");
    let line = line.as_str();
    let start = line.find("rule ").expect("a pflog line");
    let end = line[start..]
        .find(": ")
        .and_then(|colon| {
            let rest = &line[start + colon + 2..];
            rest.find(':').map(|e| start + colon + 2 + e)
        })
        .unwrap_or(line.len());
    line[start..end].to_string()
}

#[test]
fn tcpdump_reads_the_pflog_file_with_rule_numbers_actions_and_interfaces() {
    let dir = dpf_tests::scratch();
    let log = dir.path().join("log").join("pflog");
    let r = dpf_tests::frames::replay(&config(&log, ""), Some(RULES), 2, &arrivals(), 1);
    assert_eq!(r.stats["pflog_logged"], 7, "{}", r.stats);
    assert_eq!(r.stats["pflog_dropped"], 0);
    assert_eq!(r.stats["pflog_written"], 7);
    let lines = tcpdump(&log);
    let got: Vec<String> = lines.iter().map(|l| gist(l)).collect();
    assert_eq!(
        got,
        vec![
            "rule 2/(match) pass in on lan0: 10.1.0.7.40000 > 198.51.100.9.22",
            "rule 3/(match) pass in on lan0: 10.1.0.7.5353 > 198.51.100.53.53",
            "rule 3/(match) pass in on wan0: 198.51.100.53.53 > 10.1.0.7.5353",
            "rule 3/(match) pass in on lan0: 10.1.0.7.5353 > 198.51.100.53.53",
            "rule 0/(match) block in on lan0: 10.1.0.7.40001 > 198.51.100.9.23",
            "rule 4/(match) match in on lan0: 10.1.0.7.40002 > 198.51.100.9.80",
            "rule 0/(match) block in on lan0: 10.1.0.7.40002 > 198.51.100.9.80",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
        "{lines:#?}"
    );
    // The capture's timestamps are the records' (replay's clock).
    assert!(lines[0].starts_with("00:00:00.010000"), "{}", lines[0]);

    // dpfctl -L prints the same records (no daemon needed: it reads the
    // file).
    let out = Command::new(dpf_tests::dpfctl_bin())
        .args(["-L", "--log-file"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ctl: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| gist(l))
        .collect();
    assert_eq!(ctl, got);
}
