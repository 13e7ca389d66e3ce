//! dpfctl against a live dpf on DPDK virtual devices: the control socket
//! (mode 0600), every read with text and JSON, rule reload (good and bad),
//! state kills, and refusal of malformed requests without harm.

use dpf_tests::frames::{flags, frame, tcp};
use dpf_tests::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn dpfctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(dpfctl_bin())
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("running dpfctl")
}

fn json(sock: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = dpfctl(sock, &a);
    assert!(
        out.status.success(),
        "dpfctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("dpfctl --json prints JSON")
}

/// (thread id, name, nice value) of every thread of process `pid`.
fn thread_nices(pid: u32) -> Vec<(u32, String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let tid: u32 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap();
        // pid (comm) state ppid ...: the nice value is field 19, the
        // 17th after the closing parenthesis.
        let (head, rest) = stat.rsplit_once(") ").unwrap();
        let name = head.split_once(" (").unwrap().1.to_string();
        let nice = rest.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((tid, name, nice));
    }
    out
}

#[test]
fn dpfctl_reads_reloads_and_kills_on_a_live_dpf() {
    let dir = scratch();
    let sock = dir.path().join("dpf.sock");
    let input = dir.path().join("lan.pcap");
    // 50 outbound SYNs from 10.0.0.1..50 (states), 3 from 10.9.9.9 (blocked).
    let mut frames = Vec::new();
    for i in 1..=50u8 {
        frames.push(frame(
            format!("10.0.0.{i}").parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            &tcp(40000, 80, 1000, 0, flags::SYN),
        ));
    }
    for p in 0..3u16 {
        frames.push(frame(
            "10.9.9.9".parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            &tcp(50000 + p, 80, 1000, 0, flags::SYN),
        ));
    }
    write_pcap(&input, &frames).unwrap();
    std::fs::write(
        dir.path().join("pf.conf"),
        "block in all\npass in on lan0 proto tcp from 10.0.0.0/24 to any port 80\n",
    )
    .unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_pcap1,tx_pcap={}\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n",
            eal_args("ctl", 256, "0@0,1@1"),
            input.display(),
            dir.path().join("wan.pcap").display(),
            sock.display()
        ),
    )
    .unwrap();
    let dpf = Proc::spawn(
        "dpf",
        Command::new(dpf_bin()).args(["--config", cfg.to_str().unwrap()]),
    )
    .unwrap();

    // Wait for the socket and for the capture to be processed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "dpf never processed its capture");
        if sock.exists() {
            let out = dpfctl(&sock, &["-s", "info", "--json"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                if v["rx"].as_u64() == Some(53) {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");
    // The control thread (the main one) runs above the workers' priority.
    let threads = thread_nices(dpf.pid());
    assert_eq!(
        threads.iter().find(|t| t.0 == dpf.pid()).map(|t| t.2),
        Some(-10),
        "{threads:?}"
    );
    assert!(
        threads
            .iter()
            .any(|(_, name, nice)| name.starts_with("rte-worker") && *nice == 0),
        "{threads:?}"
    );

    let info = json(&sock, &["-s", "info"]);
    assert_eq!(info["states"], 50);
    assert_eq!(info["drops"]["blocked-by-rule"], 3);
    let text = String::from_utf8(dpfctl(&sock, &["-s", "info"]).stdout).unwrap();
    assert!(
        text.contains("current entries") && text.contains("50"),
        "{text}"
    );

    let states = json(&sock, &["-s", "states"]);
    assert_eq!(states.as_array().unwrap().len(), 50);
    let s0 = &states[0];
    assert_eq!(s0["proto"], "tcp");
    assert_eq!(s0["dst"], "198.19.0.1");
    assert_eq!(s0["src_state"], "SYN_SENT");
    assert!(s0["creatorid"].as_str().unwrap().len() == 8);
    let one = json(&sock, &["-s", "states", "-k", "10.0.0.7"]);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["src"], "10.0.0.7");
    let text = String::from_utf8(dpfctl(&sock, &["-s", "states"]).stdout).unwrap();
    assert!(
        text.contains("10.0.0.7:40000") && text.contains("SYN_SENT"),
        "{text}"
    );

    let rules = json(&sock, &["-s", "rules"]);
    assert_eq!(rules.as_array().unwrap().len(), 2);
    assert_eq!(rules[1]["states_created"], 50);
    assert!(rules[1]["rule"]
        .as_str()
        .unwrap()
        .starts_with("pass in on lan0"));

    let ifs = json(&sock, &["-s", "interfaces"]);
    assert_eq!(ifs[0]["name"], "lan0");
    assert_eq!(ifs[0]["stats"]["ipackets"], 53);

    // A bad ruleset is refused with file:line:col and the old rules stay.
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "block in all\npass in on lan9 proto tcp\n").unwrap();
    let out = dpfctl(&sock, &["-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf:2:") && err.contains("lan9"), "{err}");
    assert_eq!(json(&sock, &["-s", "rules"]).as_array().unwrap().len(), 2);
    // A good one replaces them; states survive.
    let good = dir.path().join("good.conf");
    std::fs::write(
        &good,
        "block in all\npass in on lan0 proto tcp\npass in on lan0 proto udp\n",
    )
    .unwrap();
    let out = dpfctl(&sock, &["-f", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while json(&sock, &["-s", "rules"]).as_array().unwrap().len() != 3 {
        assert!(
            Instant::now() < deadline,
            "workers never picked up the new rules"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(json(&sock, &["-s", "info"])["states"], 50);

    // The tables were sized for rules that neither translate, route nor
    // scrub: a side record for one state in 32.
    let info = json(&sock, &["-s", "info"]);
    let limit = info["states_limit"].as_u64().unwrap();
    let workers = info["workers"].as_u64().unwrap();
    let even = limit.div_ceil(workers);
    let per_shard = (even + even / 4).max(1024).min(limit);
    assert_eq!(
        info["side_records"],
        per_shard.div_ceil(32) * workers,
        "{info}"
    );
    let bytes = info["state_table_bytes"].as_u64().unwrap();
    assert!(bytes <= 156 * per_shard * workers, "{bytes} bytes");
    // A reload that brings scrub values is told the tables stay so.
    let scrub = dir.path().join("scrub.conf");
    std::fs::write(
        &scrub,
        "match in all scrub (max-mss 1400)\nblock in all\npass in on lan0 proto tcp\npass in on lan0 proto icmp\n",
    )
    .unwrap();
    let out = dpfctl(&sock, &["-f", scrub.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("note:") && said.contains("side-records-full"),
        "{said}"
    );
    let out = dpfctl(&sock, &["-f", good.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !said.contains("side-records"),
        "{said}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while json(&sock, &["-s", "rules"]).as_array().unwrap().len() != 3 {
        assert!(
            Instant::now() < deadline,
            "workers never picked up good.conf again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Kill the states of one host, then of a pair that does not exist.
    let killed = json(&sock, &["-k", "10.0.0.7"]);
    assert_eq!(killed["killed"], 1);
    assert_eq!(
        json(&sock, &["-k", "10.0.0.8", "-k", "10.0.0.9"])["killed"],
        0
    );
    assert_eq!(json(&sock, &["-s", "states"]).as_array().unwrap().len(), 49);

    // Malformed and unknown requests: an error each, nothing changes.
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"{\"version\":1,\"request\":{\"cmd\":\"format-disk\"}}\n{garbage\n{\"version\":9,\"request\":{\"cmd\":\"show-info\"}}\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.iter().filter(|b| **b == b'\n').count() < 3 {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    for line in String::from_utf8(buf).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["ok"], false, "{line}");
        assert!(v["error"].as_str().is_some());
    }
    let out = dpfctl(&sock, &["-s", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let info = json(&sock, &["-s", "info"]);
    assert_eq!(info["states"], 49);
    assert_eq!(info["control_bad_requests"], 3);

    dpf.signal(libc::SIGTERM);
    let out = dpf.wait(Duration::from_secs(20)).unwrap();
    expect_success(&out).unwrap();
    assert!(!sock.exists(), "control socket left behind");
}
