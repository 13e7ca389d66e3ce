//! dpf's per-burst processing time: the percentiles `dpfctl -s info`
//! shows (text and JSON) while dpf forwards, and the histogram in the
//! `--json-stats` line it prints on SIGINT. Ordering and consistency only;
//! no timing is asserted.

use dpf_tests::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

#[test]
fn burst_percentiles_in_dpfctl_info_and_json_stats() {
    let dir = scratch();
    let input = dir.path().join("in.pcap");
    let sock = dir.path().join("dpf.sock");
    let frames: Vec<Vec<u8>> = (0..64u8)
        .map(|i| udp4_frame([10, 0, 0, i], [198, 19, 0, 1], 2000, 9, b"burst"))
        .collect();
    write_pcap(&input, &frames).unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[[port]]\nname = \"a\"\ndevice = \"net_pcap0,rx_pcap={},infinite_rx=1\"\n[[port]]\nname = \"b\"\ndevice = \"net_null0\"\n[wire]\npairs = [[\"a\", \"b\"]]\n[control]\nsocket = \"{}\"\n",
            eal_args("burstlat", 256, "0@0,1@1"),
            input.display(),
            sock.display()
        ),
    )
    .unwrap();
    let p = Proc::spawn(
        "dpf",
        Command::new(dpf_bin()).args(["--config", cfg.to_str().unwrap(), "--json-stats"]),
    )
    .unwrap();
    // Ask until the workers have published some bursts.
    let mut info = Value::Null;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        let out = Command::new(dpfctl_bin())
            .arg("--socket")
            .arg(&sock)
            .args(["-s", "info", "--json"])
            .output()
            .unwrap();
        if !out.status.success() {
            continue;
        }
        info = serde_json::from_slice(&out.stdout).unwrap();
        if info["burst_latency"]["count"].as_u64().unwrap_or(0) > 0 {
            break;
        }
    }
    let l = &info["burst_latency"];
    assert!(l["count"].as_u64().unwrap_or(0) > 0, "{info}");
    let q = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("{k}: {l}"));
    assert!(q("p50_ns") > 0.0);
    assert!(
        q("p50_ns") <= q("p99_ns") && q("p99_ns") <= q("p999_ns"),
        "{l}"
    );
    assert!(q("p999_ns") <= q("max_ns"), "{l}");
    let text = Command::new(dpfctl_bin())
        .arg("--socket")
        .arg(&sock)
        .args(["-s", "info"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Burst processing time (ns)"), "{text}");
    assert!(text.contains("p99.9"), "{text}");

    p.signal(libc::SIGINT);
    let out = p.wait(Duration::from_secs(20)).unwrap();
    expect_success(&out).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON stats line: {stdout}"));
    // Every non-empty burst is in the histogram exactly once.
    let bursts = last["bursts"].as_u64().unwrap();
    assert!(bursts > 0);
    assert_eq!(
        last["burst_latency"]["count"].as_u64(),
        Some(bursts),
        "{last}"
    );
    let in_buckets: u64 = last["burst_cycles_hist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[1].as_u64().unwrap())
        .sum();
    assert_eq!(in_buckets, bursts);
}
