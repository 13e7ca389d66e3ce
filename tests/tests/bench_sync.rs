//! `bench sync` end to end with the debug binaries: two dpf joined by a
//! memif sync link, the live generator creating states on the master.
//! Every state the master created reaches the backup as it is created,
//! and again by bulk update when the backup restarts empty; the report
//! holds a latency for every state. Correctness only: no timing asserted.

use dpf_tests::dpf_bin;
use std::path::PathBuf;
use std::process::Command;

/// One `bench sync` at a time: each runs two dpf and a generator, three
/// busy pollers on this machine's cores, and the stall tests need the
/// master to outrun a stopped backup.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bench_bin() -> PathBuf {
    match std::env::var_os("BENCH_BIN") {
        Some(p) => PathBuf::from(p),
        None => dpf_bin().with_file_name("bench"),
    }
}

/// What one `bench sync` gave.
struct Run {
    report: serde_json::Value,
    markdown: String,
    stderr: String,
}

/// Runs `bench sync` with `args` (one at a time) and asserts it
/// succeeded.
fn run_sync(args: &[&str]) -> Run {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bench_bin())
        .arg("sync")
        .args(args)
        .args(["--report", "t"])
        .arg("--out")
        .arg(dir.path())
        .arg("--dpf")
        .arg(dpf_bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bench sync failed:\n{stderr}");
    let report =
        serde_json::from_slice(&std::fs::read(dir.path().join("t.json")).unwrap()).unwrap();
    let markdown = std::fs::read_to_string(dir.path().join("t.md")).unwrap();
    Run {
        report,
        markdown,
        stderr,
    }
}

#[test]
fn every_state_reaches_the_backup_live_and_by_bulk_update() {
    let Run {
        report,
        markdown: md,
        stderr,
    } = run_sync(&["--flows", "3000", "--rates", "3000"]);
    assert!(!stderr.contains("not within"), "{stderr}");
    assert_eq!(report["kind"], "sync");
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "{report}");
    let (live, bulk) = (&phases[0], &phases[1]);
    assert_eq!(live["kind"], "live");
    let created = live["master_states"].as_u64().unwrap();
    // The generator at 3000 new flows/s loses nothing over memif.
    assert_eq!(created, 3000, "{live}");
    assert_eq!(live["exported"], created);
    assert_eq!(live["received"], created);
    assert_eq!(live["missing"], 0);
    assert_eq!(live["backup_states"], created);
    let lat = live["latency_us"].as_array().unwrap();
    let lat: Vec<f64> = lat.iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(
        lat[0] > 0.0 && lat[0] <= lat[1] && lat[1] <= lat[2] && lat[2] <= lat[3],
        "{lat:?}"
    );
    assert_eq!(bulk["kind"], "bulk");
    assert_eq!(bulk["backup_states"], created, "{bulk}");
    assert_eq!(bulk["received"], created, "{bulk}");
    assert_eq!(bulk["missing"], 0);
    assert!(md.contains("| live | 3000 | 3000 |"), "{md}");
}

/// The backup is stopped for 600 ms in the middle of its bulk update: the
/// memif link fills and the master's sync port refuses its packets. They
/// wait (in the worker, the injection ring, the control thread's queue,
/// and the bulk sender slows down) instead of being dropped: every state
/// arrives. Without the wait the master drops what the port refuses
/// (`tx-full`) and the backup misses states.
#[test]
fn a_bulk_update_to_a_stalled_backup_waits_for_it_and_loses_nothing() {
    let report = run_sync(&[
        "--flows",
        "40000",
        "--rates",
        "40000",
        "--stall-backup-ms",
        "600",
        "--timeout-s",
        "60",
    ])
    .report;
    let bulk = &report["phases"][1];
    assert_eq!(bulk["kind"], "bulk", "{report}");
    let created = bulk["master_states"].as_u64().unwrap();
    assert!(created > 0, "{bulk}");
    assert_eq!(bulk["backup_stalled_ms"], 600, "{bulk}");
    // The stall made the master wait for its sync port...
    assert!(
        bulk["master_local_tx_waits"].as_u64().unwrap() >= 1,
        "{bulk}"
    );
    // ... and nothing was lost for it.
    assert_eq!(bulk["master_tx_full"], 0, "{bulk}");
    assert_eq!(bulk["backup_slow_path_ring_full"], 0, "{bulk}");
    assert_eq!(bulk["backup_states"], created, "{bulk}");
    assert_eq!(bulk["missing"], 0, "{bulk}");
}

/// The backup is stopped for 2.8 s while the master creates states: its
/// end of the link fills in about a second, then the master's sync port
/// waits 1 s and gives up, dropping what the backup does not take. The backup finds its control thread was stalled
/// past that and asks for a bulk update: it ends with every state. Without
/// that request the states created during the stall stay missing.
#[test]
fn a_backup_stalled_past_the_senders_wait_fetches_the_table_again() {
    let report = run_sync(&[
        "--flows",
        "120000",
        "--rates",
        "40000",
        "--no-bulk",
        "--stall-live-ms",
        "2800",
        "--timeout-s",
        "30",
    ])
    .report;
    let live = &report["phases"][0];
    assert_eq!(live["kind"], "live", "{report}");
    assert_eq!(live["backup_stalled_ms"], 2800, "{live}");
    let created = live["master_states"].as_u64().unwrap();
    assert!(created > 0, "{live}");
    // The master gave up waiting and dropped pfsync packets...
    assert!(live["master_tx_full"].as_u64().unwrap() > 0, "{live}");
    // ... and the backup fetched the table again: nothing missing.
    assert_eq!(live["backup_states"], created, "{live}");
    assert!(
        live["backup_pfsync"]["bulk"] == "done",
        "the backup's second bulk update ended: {live}"
    );
}
