//! dpf's commands on DPDK's telemetry socket, read with DPDK's own
//! `dpdk-telemetry.py`: `/dpf/info` has the counters of the traffic the
//! live dpf processed, `/dpf/drops` the drops by reason under telemetry
//! names, `/dpf/pfsync` pfsync's, `/dpf/carp` says what it lacks, and
//! DPDK's `/help` describes them.

use dpf_tests::frames::{flags, frame, tcp};
use dpf_tests::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The answers of `dpdk-telemetry.py -f prefix` to `commands`, by command.
fn telemetry(prefix: &str, commands: &[&str]) -> Option<Vec<Value>> {
    let mut child = Command::new("dpdk-telemetry.py")
        .args(["-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dpdk-telemetry.py (the dpdk package; scripts/setup installs it)");
    {
        let mut stdin = child.stdin.take().unwrap();
        for c in commands {
            writeln!(stdin, "{c}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // One JSON document per command (pretty-printed).
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .collect();
    (docs.len() == commands.len()).then_some(docs)
}

#[test]
fn dpdk_telemetry_shows_dpf_counters() {
    let dir = scratch();
    let sock = dir.path().join("dpf.sock");
    let input = dir.path().join("lan.pcap");
    let mut frames = Vec::new();
    for i in 1..=12u8 {
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
        "block in quick from 10.9.9.9\npass all\n",
    )
    .unwrap();
    let prefix = file_prefix("telemetry");
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = [\"--no-huge\", \"-m\", \"256\", \"--file-prefix\", \"{prefix}\", \"--lcores\", \"0@0,1@1\", \"--log-level\", \"*:error\"]\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_pcap1,tx_pcap={}\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n",
            input.display(),
            dir.path().join("wan.pcap").display(),
            sock.display()
        ),
    )
    .unwrap();
    let _dpf = Proc::spawn(
        "dpf",
        Command::new(dpf_bin()).args(["--config", cfg.to_str().unwrap()]),
    )
    .unwrap();
    let commands = [
        "/dpf/info",
        "/dpf/drops",
        "/dpf/pfsync",
        "/dpf/carp",
        "/help,/dpf/carp",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let docs = loop {
        assert!(Instant::now() < deadline, "no telemetry answers from dpf");
        if let Some(docs) = telemetry(&prefix, &commands) {
            if docs[0]["/dpf/info"]["rx"] == 15 {
                break docs;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let info = &docs[0]["/dpf/info"];
    assert_eq!(info["states"], 12, "{info}");
    assert_eq!(info["workers"], 1, "{info}");
    assert!(info["control_socket/poll_max_us"].is_u64(), "{info}");
    assert_eq!(info["forwarded"], 12, "{info}");
    assert_eq!(info["log/dropped"], 0, "{info}");
    assert!(info.get("drops").is_none() && info.get("drops/blocked_by_rule").is_none());
    let drops = &docs[1]["/dpf/drops"];
    assert_eq!(drops["blocked_by_rule"], 3, "{drops}");
    assert!(
        drops.as_object().unwrap().keys().all(|k| !k.contains('-')),
        "{drops}"
    );
    // pfsync is not configured: the control thread says so.
    let pfsync = &docs[2]["/dpf/pfsync"];
    assert!(pfsync["error"].is_string(), "{pfsync}");
    let carp = &docs[3]["/dpf/carp"];
    assert!(
        carp["error"].as_str().unwrap().contains("no carp"),
        "{carp}"
    );
    let help = docs[4]["/help"]["/dpf/carp"].as_str().unwrap_or("");
    assert!(help.contains("carp interface"), "{:?}", docs[4]);
}
