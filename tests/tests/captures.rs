//! `dpf --replay` reads captures as other tools write them: a pcap from
//! `tcpdump -w` (microsecond timestamps) and a pcapng from scapy (no
//! `if_tsresol`: microseconds). The replay clock must follow the capture's
//! real time: two packets 1.5 s apart under a 1 s state timeout find the
//! first state expired (read as nanoseconds they would be 1.5 ms apart and
//! share it).

use dpf_tests::netns::{must, Namespaces};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const WIRE: &str = "[eal]\nargs = []\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_null1\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n";

const RULES: &str = "set timeout { icmp.first 1, icmp.error 1, udp.first 1, udp.single 1, udp.multiple 1 }\npass all keep state (sloppy)\n";

/// Replays `capture` (any format) through a bridge; the replay's JSON.
fn replay(capture: &std::path::Path) -> Value {
    let dir = dpf_tests::scratch();
    std::fs::write(dir.path().join("pf.conf"), RULES).unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(&cfg, WIRE).unwrap();
    let out = dir.path().join("out.pcapng");
    let run = dpf_tests::run_dpf(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--replay",
            capture.to_str().unwrap(),
            "--replay-out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    dpf_tests::expect_success(&run).unwrap();
    serde_json::from_slice(&run.stdout).expect("replay prints JSON")
}

#[test]
fn a_tcpdump_capture_replays_in_real_time() {
    let ns = Namespaces::new("cap", &["host"]);
    let host = ns.name(0);
    let dir = dpf_tests::scratch();
    let file = dir.path().join("ping.pcap");
    let mut tcpdump = Command::new("ip")
        .args([
            "netns", "exec", host, "tcpdump", "-i", "lo", "-U", "-c", "4", "-w",
        ])
        .arg(&file)
        .arg("icmp")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump (scripts/setup installs it)");
    std::thread::sleep(Duration::from_millis(1000));
    must(&format!(
        "ip netns exec {host} ping -c 2 -i 1.5 -W 1 127.0.0.1"
    ));
    let status = tcpdump.wait().unwrap();
    assert!(status.success(), "tcpdump");
    let stats = replay(&file);
    // Two echo requests 1.5 s apart (one id): the second finds the first
    // state expired under the 1 s timeout.
    assert_eq!(stats["states_created"].as_u64(), Some(2), "{stats}");
    assert_eq!(stats["forwarded"].as_u64(), Some(4), "{stats}");
}

#[test]
fn a_scapy_pcapng_replays_in_real_time() {
    let dir = dpf_tests::scratch();
    let file = dir.path().join("udp.pcapng");
    let script = format!(
        r#"
from scapy.all import Ether, IP, UDP, wrpcapng
pkts = []
for t in (1000.0, 1000.2, 1001.7):
    p = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=53) / b"x"
    p.time = t
    pkts.append(p)
wrpcapng("{}", pkts)
"#,
        file.display()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scapy (scripts/setup installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = replay(&file);
    // 0.2 s: the same state; 1.5 s later: expired, a new one.
    assert_eq!(stats["states_created"].as_u64(), Some(2), "{stats}");
    assert_eq!(stats["state_hits"].as_u64(), Some(1), "{stats}");
}
