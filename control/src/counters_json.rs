//! The workers' counters as JSON: the line `dpf --stats-every` prints, the
//! body of `--json-stats` and of `dpf --replay`'s report, and the burst
//! latency summary `dpfctl -s info` shows. Shared by the daemon and the
//! control socket's handler (neither depends on the other for it).

use dataplane::counters::{DropReason, SharedCounters};
use std::time::Duration;

/// Counter totals as JSON: the line `--stats-every` prints and the body of
/// `--json-stats`.
pub fn totals(shared: &SharedCounters, elapsed: Duration, hz: u64) -> serde_json::Value {
    let t = shared.total();
    let drops: serde_json::Map<String, serde_json::Value> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), t.drops[*r as usize].into()))
        .collect();
    serde_json::json!({
        "elapsed_s": elapsed.as_secs_f64(),
        "workers": shared.workers(),
        "tsc_hz": hz,
        "rx": t.rx, "rx_bytes": t.rx_bytes, "tx": t.tx, "forwarded": t.forwarded,
        "state_hits": t.state_hits, "states_created": t.states_created,
        "states_removed": t.states_removed, "states": t.states,
        "handed_off": t.handed_off, "slow_path": t.slow_path, "local_out": t.local_out, "neighbor_held": t.neighbor_held,
        "busy_cycles": t.busy_cycles, "bursts": t.bursts,
        "block_returns": t.block_returns, "reassembled": t.reassembled,
        "pflog_logged": t.pflog_logged, "pflog_dropped": t.pflog_dropped,
        "local_tx_waits": t.local_tx_waits, "sync_rx_paused": t.sync_rx_paused,
        "side_records_used": t.side_records_used,
        "dropped": t.total_drops(), "drops": drops,
        "burst_latency": burst_latency(&t, hz),
        "burst_cycles_hist": t.burst_cycles.sparse(),
    })
}

/// p50/p99/p99.9/max of the per-burst processing time in nanoseconds
/// (`null`s without a TSC rate, as in `--replay`).
pub fn burst_latency(t: &dataplane::counters::WorkerCounters, hz: u64) -> serde_json::Value {
    let summary = match dataplane::histogram::cycles_to_ns(hz) {
        Some(to_ns) => t.burst_cycles.summary(to_ns),
        None => dataplane::histogram::LatencySummary {
            count: t.burst_cycles.count(),
            ..Default::default()
        },
    };
    serde_json::to_value(summary).unwrap_or_default()
}
