//! dpf's `--stats-every` lines, the measurement window, and what the
//! harness computes from it.
//!
//! dpf prints one JSON object per interval on stdout with *cumulative*
//! counter totals since its workers started (`elapsed_s` counts from there).
//! The harness keeps every line, discards the warmup, and measures between
//! two samples: the window starts at the first sample at or after
//! `warmup_s` and ends at the first sample at or after `warmup_s +
//! duration_s`; every rate is a difference of the two samples' counters over
//! the difference of their `elapsed_s`. The last line dpf prints on SIGINT
//! (`"final": true`) is never a window edge: it is taken after the stop
//! signal, when workers are winding down.
//!
//! Invariants: a [`DpfMeasurement`] is only built from a window whose end is
//! strictly later than its start and whose counters did not go backwards.

use std::collections::BTreeMap;
use std::fmt;

use dataplane::histogram::{cycles_to_ns, BurstHistogram, LatencySummary};
use serde::{Deserialize, Serialize};

/// Bytes a frame occupies on the wire besides its captured bytes: 7 of
/// preamble, 1 start-of-frame delimiter, 12 of inter-frame gap, and the 4
/// of FCS that the pcap (and DPDK's `pkt_len`) leave out.
pub const WIRE_OVERHEAD_BYTES: u64 = 24;

/// A run is LOSSY when its drops exceed this share of its received packets.
pub const LOSSY_DROP_SHARE: f64 = 0.001;

/// Samples may be stamped a little before their nominal time; a sample this
/// close to a window edge counts as at it.
const EDGE_TOLERANCE_S: f64 = 0.005;

/// One `--stats-every` line: cumulative totals over all workers.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct StatsLine {
    /// Seconds since the workers started.
    pub elapsed_s: f64,
    /// Worker threads.
    #[serde(default)]
    pub workers: u64,
    /// TSC frequency of `busy_cycles`.
    #[serde(default)]
    pub tsc_hz: u64,
    /// Packets received.
    pub rx: u64,
    /// Bytes received (DPDK `pkt_len`: no FCS).
    #[serde(default)]
    pub rx_bytes: u64,
    /// Packets transmitted.
    #[serde(default)]
    pub tx: u64,
    /// Packets forwarded.
    pub forwarded: u64,
    /// Packets that matched a state.
    #[serde(default)]
    pub state_hits: u64,
    /// States created.
    #[serde(default)]
    pub states_created: u64,
    /// States removed.
    #[serde(default)]
    pub states_removed: u64,
    /// States in the table now.
    #[serde(default)]
    pub states: u64,
    /// Packets handed to another worker.
    #[serde(default)]
    pub handed_off: u64,
    /// Packets sent to the slow path.
    #[serde(default)]
    pub slow_path: u64,
    /// TSC cycles the workers spent on bursts that had packets.
    #[serde(default)]
    pub busy_cycles: u64,
    /// Non-empty bursts.
    #[serde(default)]
    pub bursts: u64,
    /// Packets dropped, all reasons.
    #[serde(default)]
    pub dropped: u64,
    /// Packets dropped, by reason.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Memory of the state table in bytes, if dpf reports it (read from
    /// `state_table_bytes` or `state_bytes`).
    #[serde(default, alias = "state_bytes")]
    pub state_table_bytes: Option<u64>,
    /// Cumulative per-burst processing cycles as `(bucket, count)` of a
    /// `dataplane::histogram::BurstHistogram`, if dpf reports them.
    #[serde(default)]
    pub burst_cycles_hist: Vec<(usize, u64)>,
    /// The line printed after SIGINT.
    #[serde(default, rename = "final")]
    pub is_final: bool,
}

/// The histogram of a stats line's `burst_cycles_hist`.
fn burst_histogram(line: &StatsLine) -> BurstHistogram {
    let mut h = BurstHistogram::new();
    for &(i, c) in &line.burst_cycles_hist {
        h.set_bucket(i, c);
    }
    h
}

/// Why a stats line could not be read.
#[derive(Debug, thiserror::Error)]
#[error("dpf stats line is not valid JSON ({source}): {line}")]
pub struct StatsLineError {
    /// The line, cut to 200 characters.
    pub line: String,
    /// The JSON error.
    #[source]
    pub source: serde_json::Error,
}

/// Reads one line of dpf's stdout: `Ok(None)` for lines that are not JSON
/// objects (dpf prints nothing else on stdout today, but a banner must not
/// fail a run).
pub fn parse_line(line: &str) -> Result<Option<StatsLine>, StatsLineError> {
    let line = line.trim();
    if !line.starts_with('{') {
        return Ok(None);
    }
    serde_json::from_str(line)
        .map(Some)
        .map_err(|source| StatsLineError {
            line: line.chars().take(200).collect(),
            source,
        })
}

/// Where the measurement window lies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WindowSpec {
    /// Seconds discarded after the workers start.
    pub warmup_s: f64,
    /// Seconds measured after the warmup.
    pub duration_s: f64,
}

/// Why no measurement could be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WindowError {
    /// No sample at or after the warmup.
    #[error("no stats sample at or after the {warmup_s} s warmup")]
    NoStart {
        /// The warmup.
        warmup_s: f64,
    },
    /// No sample at or after the end of the window.
    #[error("stats stop at {last_s:.3} s, before the window ends at {end_s} s")]
    NoEnd {
        /// Elapsed time of the last sample.
        last_s: f64,
        /// Where the window should end.
        end_s: f64,
    },
    /// No sample counts a received packet (the rig's generator never
    /// reached dpf).
    #[error("dpf received no packet (last sample at {last_s:.3} s)")]
    NoTraffic {
        /// Elapsed time of the last sample.
        last_s: f64,
    },
    /// A counter went backwards inside the window.
    #[error("counter {0} went backwards inside the window")]
    Backwards(&'static str),
}

/// The two samples a measurement is taken between.
#[derive(Clone, Debug, PartialEq)]
pub struct Window<'a> {
    /// First sample at or after the warmup.
    pub start: &'a StatsLine,
    /// First sample at or after the end of the window.
    pub end: &'a StatsLine,
}

impl WindowSpec {
    /// The window over `samples` (in arrival order), or why there is none
    /// yet. `final` lines are skipped.
    pub fn window<'a>(&self, samples: &'a [StatsLine]) -> Result<Window<'a>, WindowError> {
        let periodic = || samples.iter().filter(|s| !s.is_final);
        let start = periodic()
            .find(|s| s.elapsed_s + EDGE_TOLERANCE_S >= self.warmup_s)
            .ok_or(WindowError::NoStart {
                warmup_s: self.warmup_s,
            })?;
        let end_s = self.warmup_s + self.duration_s;
        let end = periodic()
            .find(|s| s.elapsed_s + EDGE_TOLERANCE_S >= end_s && s.elapsed_s > start.elapsed_s)
            .ok_or(WindowError::NoEnd {
                last_s: periodic().next_back().map_or(0.0, |s| s.elapsed_s),
                end_s,
            })?;
        Ok(Window { start, end })
    }
}

/// What one dpf run measured over its window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DpfMeasurement {
    /// Start of the window (s since the workers started).
    pub window_start_s: f64,
    /// Length of the window (s).
    pub window_s: f64,
    /// Worker threads.
    pub workers: u64,
    /// Packets received in the window.
    pub rx: u64,
    /// Packets forwarded in the window.
    pub forwarded: u64,
    /// Packets dropped in the window.
    pub dropped: u64,
    /// Packets one worker received and handed to the flow's owner in the
    /// window.
    pub handed_off: u64,
    /// Received packets per second, millions.
    pub rx_mpps: f64,
    /// Forwarded packets per second, millions: the headline rate.
    pub forwarded_mpps: f64,
    /// Received bits per second on the wire, billions: (rx_bytes + 24 bytes
    /// per frame for preamble, start delimiter, inter-frame gap and FCS) × 8.
    pub rx_wire_gbit_s: f64,
    /// TSC cycles of dpf's own work per received packet (Δbusy_cycles / Δrx,
    /// summed over workers); `None` without packets.
    pub cycles_per_packet: Option<f64>,
    /// States in the table at the end of the window.
    pub states: u64,
    /// States created per second in the window.
    pub states_created_per_s: f64,
    /// State hits per second in the window, millions.
    pub state_hits_mpps: f64,
    /// Bytes of state table per state at the end of the window, if dpf
    /// reports its table memory and has states.
    pub memory_per_state_bytes: Option<f64>,
    /// Drops in the window by reason (reasons with none left out).
    pub drops: BTreeMap<String, u64>,
    /// Per-burst processing time of the bursts in the window (p50/p99/p99.9
    /// in ns, from the difference of the two samples' histograms; `max_ns`
    /// is the largest bucket's top, as the window's own maximum is not
    /// published). `None` if dpf does not report the histogram.
    pub burst_latency: Option<LatencySummary>,
}

impl DpfMeasurement {
    /// Computes the measurement over `window`.
    pub fn from_window(window: &Window<'_>) -> Result<DpfMeasurement, WindowError> {
        let (a, b) = (window.start, window.end);
        let delta = |name: &'static str, x: u64, y: u64| {
            y.checked_sub(x).ok_or(WindowError::Backwards(name))
        };
        let rx = delta("rx", a.rx, b.rx)?;
        let rx_bytes = delta("rx_bytes", a.rx_bytes, b.rx_bytes)?;
        let forwarded = delta("forwarded", a.forwarded, b.forwarded)?;
        let handed_off = delta("handed_off", a.handed_off, b.handed_off)?;
        let busy_cycles = delta("busy_cycles", a.busy_cycles, b.busy_cycles)?;
        let state_hits = delta("state_hits", a.state_hits, b.state_hits)?;
        let states_created = delta("states_created", a.states_created, b.states_created)?;
        let mut drops = BTreeMap::new();
        for (reason, &end) in &b.drops {
            let start = a.drops.get(reason).copied().unwrap_or(0);
            let n = end
                .checked_sub(start)
                .ok_or(WindowError::Backwards("drops"))?;
            if n > 0 {
                drops.insert(reason.clone(), n);
            }
        }
        // Without a per-reason map, the total still counts.
        let dropped = match delta("dropped", a.dropped, b.dropped)? {
            0 => drops.values().sum(),
            n => n,
        };
        let burst_latency = if b.burst_cycles_hist.is_empty() {
            None
        } else {
            let mut delta = burst_histogram(b)
                .since(&burst_histogram(a))
                .ok_or(WindowError::Backwards("burst_cycles_hist"))?;
            // The window's maximum lies in its highest non-empty bucket.
            let top = delta
                .sparse()
                .last()
                .map_or(0, |&(i, _)| BurstHistogram::bounds(i).1);
            delta.set_max(top);
            cycles_to_ns(b.tsc_hz).map(|to_ns| delta.summary(to_ns))
        };
        let window_s = b.elapsed_s - a.elapsed_s;
        let per_s = |n: u64| n as f64 / window_s;
        Ok(DpfMeasurement {
            window_start_s: a.elapsed_s,
            window_s,
            workers: b.workers,
            rx,
            forwarded,
            dropped,
            handed_off,
            rx_mpps: per_s(rx) / 1e6,
            forwarded_mpps: per_s(forwarded) / 1e6,
            rx_wire_gbit_s: per_s(rx_bytes + rx * WIRE_OVERHEAD_BYTES) * 8.0 / 1e9,
            cycles_per_packet: (rx > 0).then(|| busy_cycles as f64 / rx as f64),
            states: b.states,
            states_created_per_s: per_s(states_created),
            state_hits_mpps: per_s(state_hits) / 1e6,
            memory_per_state_bytes: b
                .state_table_bytes
                .filter(|_| b.states > 0)
                .map(|bytes| bytes as f64 / b.states as f64),
            drops,
            burst_latency,
        })
    }

    /// The share of received packets dropped (drops whose reason is in
    /// `expected` left out), and `Some` if it makes the run LOSSY.
    pub fn lossy(&self, expected: &[&str]) -> Option<Lossy> {
        let unexpected: Vec<(String, u64)> = self
            .drops
            .iter()
            .filter(|(r, _)| !expected.contains(&r.as_str()))
            .map(|(r, n)| (r.clone(), *n))
            .collect();
        let dropped: u64 = if self.drops.is_empty() {
            self.dropped
        } else {
            unexpected.iter().map(|(_, n)| n).sum()
        };
        let share = if self.rx == 0 {
            if dropped > 0 {
                1.0
            } else {
                0.0
            }
        } else {
            dropped as f64 / self.rx as f64
        };
        (share > LOSSY_DROP_SHARE).then(|| {
            let mut top = unexpected;
            top.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            top.truncate(3);
            Lossy {
                dropped_percent: share * 100.0,
                top_reasons: top,
            }
        })
    }
}

/// A run that dropped too much to be reported as a throughput.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lossy {
    /// Dropped share of received packets, percent.
    pub dropped_percent: f64,
    /// Up to three reasons, most drops first.
    pub top_reasons: Vec<(String, u64)>,
}

impl fmt::Display for Lossy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LOSSY ({:.2}% dropped", self.dropped_percent)?;
        for (i, (reason, n)) in self.top_reasons.iter().enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(f, "{sep}{reason} {n}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A real line of dpf's `--stats-every 500` output (wire mode, est-tcp
    /// 1000 flows).
    const REAL_LINE: &str = r#"{"bursts":771104,"busy_cycles":3648767572,"dropped":0,"drops":{"bad-header":0,"bad-rst":0,"blocked-by-rule":0,"carp-backup":0,"fragment":0,"handoff-ring-full":0,"neighbor-unresolved":0,"no-egress":0,"no-route":0,"not-for-us":0,"rule-max-states":0,"slowpath-ring-full":0,"state-mismatch":0,"state-table-full":0,"ttl-exceeded":0,"tx-full":0,"unclassified":0,"unsupported":0},"elapsed_s":1.000689964,"forwarded":24675328,"handed_off":0,"rx":24675328,"rx_bytes":1480519680,"slow_path":0,"state_hits":0,"states":0,"states_created":0,"states_removed":0,"tsc_hz":2450000000,"tx":24675328,"workers":1}"#;

    fn sample(elapsed_s: f64, rx: u64) -> StatsLine {
        StatsLine {
            elapsed_s,
            workers: 1,
            tsc_hz: 1_000_000_000,
            rx,
            rx_bytes: rx * 60,
            tx: rx,
            forwarded: rx,
            busy_cycles: rx * 100,
            states: 1000,
            ..StatsLine::default()
        }
    }

    #[test]
    fn parses_a_real_line() {
        let s = parse_line(REAL_LINE).unwrap().unwrap();
        assert_eq!(s.elapsed_s, 1.000689964);
        assert_eq!((s.rx, s.forwarded, s.tx), (24675328, 24675328, 24675328));
        assert_eq!(s.rx_bytes, 1480519680);
        assert_eq!(
            (s.busy_cycles, s.bursts, s.tsc_hz),
            (3648767572, 771104, 2450000000)
        );
        assert_eq!(s.drops.len(), 18);
        assert_eq!(s.drops["tx-full"], 0);
        assert_eq!(s.state_table_bytes, None);
        assert!(!s.is_final);
    }

    #[test]
    fn parses_final_and_optional_fields_and_skips_text() {
        let s = parse_line(
            r#"{"elapsed_s":2.5,"rx":10,"forwarded":9,"final":true,"state_table_bytes":4096,"states":32}"#,
        )
        .unwrap()
        .unwrap();
        assert!(s.is_final);
        assert_eq!(s.state_table_bytes, Some(4096));
        let alias = parse_line(r#"{"elapsed_s":1,"rx":1,"forwarded":1,"state_bytes":7}"#)
            .unwrap()
            .unwrap();
        assert_eq!(alias.state_table_bytes, Some(7));
        assert_eq!(parse_line("dpf: ran 3 s").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
        assert!(parse_line("{\"elapsed_s\": oops}").is_err());
        assert!(parse_line("{\"rx\": 1}").is_err(), "elapsed_s is required");
    }

    #[test]
    fn window_discards_the_warmup() {
        // 10 Mpps for the first second (warmup), 20 Mpps after.
        let mut samples = Vec::new();
        let mut rx = 0;
        for k in 1..=12u32 {
            let t = f64::from(k) * 0.5;
            rx += if t <= 1.0 { 5_000_000 } else { 10_000_000 };
            samples.push(sample(t + 0.0004, rx));
        }
        let spec = WindowSpec {
            warmup_s: 1.0,
            duration_s: 3.0,
        };
        let w = spec.window(&samples).unwrap();
        assert_eq!((w.start.elapsed_s, w.end.elapsed_s), (1.0004, 4.0004));
        let m = DpfMeasurement::from_window(&w).unwrap();
        assert!((m.window_s - 3.0).abs() < 1e-9);
        assert!(
            (m.forwarded_mpps - 20.0).abs() < 1e-9,
            "{}",
            m.forwarded_mpps
        );
        assert_eq!(m.rx, 60_000_000);
        // 60-byte captures + 24 bytes of wire overhead = 84 bytes a frame.
        assert!((m.rx_wire_gbit_s - 20e6 * 84.0 * 8.0 / 1e9).abs() < 1e-9);
        assert_eq!(m.cycles_per_packet, Some(100.0));
        assert_eq!(m.memory_per_state_bytes, None);
        // Without the warmup discarded the rate would be lower.
        let all = WindowSpec {
            warmup_s: 0.0,
            duration_s: 3.0,
        };
        let m0 = DpfMeasurement::from_window(&all.window(&samples).unwrap()).unwrap();
        assert!(m0.forwarded_mpps < 19.0);
    }

    #[test]
    fn window_needs_its_end_and_skips_final() {
        let spec = WindowSpec {
            warmup_s: 1.0,
            duration_s: 2.0,
        };
        assert_eq!(
            spec.window(&[]).unwrap_err(),
            WindowError::NoStart { warmup_s: 1.0 }
        );
        let mut samples = vec![sample(0.5, 1), sample(1.0, 2), sample(1.5, 3)];
        let mut last = sample(3.2, 4);
        last.is_final = true;
        samples.push(last);
        assert!(matches!(
            spec.window(&samples),
            Err(WindowError::NoEnd { last_s, .. }) if last_s == 1.5
        ));
        samples.push(sample(3.0, 5));
        let w = spec.window(&samples).unwrap();
        assert_eq!(w.end.rx, 5);
    }

    #[test]
    fn counters_going_backwards_are_an_error() {
        let spec = WindowSpec {
            warmup_s: 0.5,
            duration_s: 0.5,
        };
        let samples = [sample(0.5, 100), sample(1.0, 50)];
        let w = spec.window(&samples).unwrap();
        assert_eq!(
            DpfMeasurement::from_window(&w).unwrap_err(),
            WindowError::Backwards("rx")
        );
    }

    fn with_drops(rx: u64, drops: &[(&str, u64)]) -> DpfMeasurement {
        let mut a = sample(1.0, 0);
        let mut b = sample(2.0, rx);
        for (r, n) in drops {
            a.drops.insert(r.to_string(), 5);
            b.drops.insert(r.to_string(), 5 + n);
        }
        b.dropped = drops.iter().map(|(_, n)| n).sum();
        DpfMeasurement::from_window(&Window { start: &a, end: &b }).unwrap()
    }

    #[test]
    fn lossy_above_a_tenth_of_a_percent() {
        // 0.1% exactly is not lossy; just above is.
        assert_eq!(with_drops(1_000_000, &[("tx-full", 1000)]).lossy(&[]), None);
        let m = with_drops(
            1_000_000,
            &[("tx-full", 900), ("state-mismatch", 200), ("bad-header", 0)],
        );
        assert_eq!(m.dropped, 1100);
        assert!(!m.drops.contains_key("bad-header"));
        let lossy = m.lossy(&[]).unwrap();
        assert!((lossy.dropped_percent - 0.11).abs() < 1e-9);
        assert_eq!(
            lossy.to_string(),
            "LOSSY (0.11% dropped: tx-full 900, state-mismatch 200)"
        );
        // Expected drops (mixed's blocked packets) do not count.
        let mixed = with_drops(1_000_000, &[("blocked-by-rule", 100_000), ("tx-full", 10)]);
        assert_eq!(mixed.lossy(&["blocked-by-rule"]), None);
        assert!(mixed.lossy(&[]).is_some());
        // Nothing received but drops counted.
        assert!(with_drops(0, &[("tx-full", 1)]).lossy(&[]).is_some());
    }

    #[test]
    fn burst_latency_is_the_windows_share() {
        let mut a = sample(1.0, 0);
        let mut b = sample(2.0, 10);
        // 1 GHz TSC: cycles are ns. 100 bursts of ~1000 cycles before the
        // window, 99 of ~1000 and one of ~1 000 000 inside it.
        let i1k = BurstHistogram::index_of(1000);
        let i1m = BurstHistogram::index_of(1_000_000);
        a.burst_cycles_hist = vec![(i1k, 100)];
        b.burst_cycles_hist = vec![(i1k, 199), (i1m, 1)];
        let m = DpfMeasurement::from_window(&Window { start: &a, end: &b }).unwrap();
        let l = m.burst_latency.unwrap();
        assert_eq!(l.count, 100);
        let top = |i| BurstHistogram::bounds(i).1 as f64;
        assert_eq!(l.p50_ns, Some(top(i1k)));
        assert_eq!(l.p99_ns, Some(top(i1k)));
        assert_eq!(l.p999_ns, Some(top(i1m)));
        assert_eq!(l.max_ns, Some(top(i1m)));
        // Without the histogram there is no latency; a shrinking one is an error.
        let plain = DpfMeasurement::from_window(&Window {
            start: &sample(1.0, 0),
            end: &sample(2.0, 10),
        })
        .unwrap();
        assert_eq!(plain.burst_latency, None);
        assert_eq!(
            DpfMeasurement::from_window(&Window { start: &b, end: &a }).unwrap_err(),
            WindowError::Backwards("rx")
        );
        a.rx = 0;
        b.burst_cycles_hist = vec![(i1k, 50)];
        assert_eq!(
            DpfMeasurement::from_window(&Window { start: &a, end: &b }).unwrap_err(),
            WindowError::Backwards("burst_cycles_hist")
        );
    }

    #[test]
    fn memory_per_state_when_reported() {
        let a = sample(1.0, 0);
        let mut b = sample(2.0, 10);
        b.states = 1000;
        b.state_table_bytes = Some(128_000);
        let m = DpfMeasurement::from_window(&Window { start: &a, end: &b }).unwrap();
        assert_eq!(m.memory_per_state_bytes, Some(128.0));
        b.states = 0;
        let m = DpfMeasurement::from_window(&Window { start: &a, end: &b }).unwrap();
        assert_eq!(m.memory_per_state_bytes, None);
    }

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,300}") {
            let _ = parse_line(&line);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            elapsed in 0.0f64..100.0, rx in any::<u64>(), fwd in any::<u64>(),
        ) {
            let line = format!(r#"{{"elapsed_s":{elapsed},"rx":{rx},"forwarded":{fwd}}}"#);
            let s = parse_line(&line).unwrap().unwrap();
            prop_assert_eq!((s.rx, s.forwarded), (rx, fwd));
        }
    }
}
