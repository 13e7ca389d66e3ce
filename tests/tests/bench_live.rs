//! The live generator through dpf over memif (`bench live`): at a low rate
//! every stamped packet arrives once and in order, the warm-up creates one
//! state per flow, and a ruleset that blocks everything shows as total loss.
//! Correctness only: no timing is asserted.

use dpf_tests::dpf_bin;
use std::path::PathBuf;
use std::process::Command;

/// The bench binary beside dpf (or `$BENCH_BIN`).
fn bench_bin() -> PathBuf {
    match std::env::var_os("BENCH_BIN") {
        Some(p) => PathBuf::from(p),
        None => dpf_bin().with_file_name("bench"),
    }
}

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// Runs `bench live` at `rate_pps` for 2 s through dpf with `rules` and
/// returns the report's dpf run.
fn live(rules: &std::path::Path, flows: u64, rate_pps: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bench_bin())
        .args([
            "live",
            "--rate",
            &rate_pps.to_string(),
            "--duration",
            "2",
            "--flows",
            &flows.to_string(),
            "--no-testpmd",
            "--report",
            "t",
        ])
        .arg("--out")
        .arg(dir.path())
        .arg("--dpf")
        .arg(dpf_bin())
        .arg("--rules")
        .arg(rules)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench live failed:\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("t.json")).unwrap()).unwrap();
    assert_eq!(report["kind"], "live");
    let run = report["runs"][0].clone();
    assert_eq!(run["dut"], "dpf");
    assert!(run["error"].is_null(), "{run}");
    assert!(run["dut_exit"].is_null(), "{run}");
    run
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn low_rate_through_dpf_loses_nothing_and_keeps_order() {
    let flows = 50;
    let run = live(&repo_file("bench/configs/bench.pf.conf"), flows, 10_000);
    let t = &run["trials"][0];
    let sent = u(&t["sent"]);
    assert!(sent > 1000, "{t}");
    assert_eq!(u(&t["lost"]), 0, "{t}");
    assert_eq!(u(&t["seq"]["received"]), sent, "{t}");
    assert_eq!(u(&t["seq"]["unique"]), sent, "{t}");
    for k in ["duplicates", "reordered", "invalid"] {
        assert_eq!(u(&t["seq"][k]), 0, "{k}: {t}");
    }
    assert_eq!(u(&t["stale"]), 0, "{t}");
    assert_eq!(t["passed"], true);
    assert_eq!(u(&t["latency"]["count"]), sent);
    assert!(t["latency"]["p99_ns"].as_f64().unwrap() > 0.0);
    assert_eq!(u(&run["best_pps"]), 10_000);
    // The warm-up created one state per flow (UDP passed with keep state)
    // and dpf dropped nothing.
    let w = &run["warmup"];
    assert_eq!(u(&w["lost"]), 0, "{w}");
    let dpf = &run["dpf_final"];
    assert_eq!(u(&dpf["states_created"]), flows, "{dpf}");
    assert_eq!(u(&dpf["dropped"]), 0, "{dpf}");
    assert_eq!(u(&dpf["forwarded"]), u(&w["sent"]) + sent, "{dpf}");
    assert!(u(&dpf["burst_latency"]["count"]) > 0, "{dpf}");
}

#[test]
fn blocked_traffic_is_reported_lost() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("block.pf.conf");
    std::fs::write(&rules, "block all\n").unwrap();
    let run = live(&rules, 10, 5_000);
    let t = &run["trials"][0];
    let sent = u(&t["sent"]);
    assert!(sent > 0);
    assert_eq!(u(&t["lost"]), sent, "{t}");
    assert_eq!(u(&t["seq"]["received"]), 0, "{t}");
    assert_eq!(t["passed"], false);
    assert!(run["best_pps"].is_null());
    let dpf = &run["dpf_final"];
    assert_eq!(u(&dpf["drops"]["blocked-by-rule"]), u(&dpf["rx"]), "{dpf}");
}
