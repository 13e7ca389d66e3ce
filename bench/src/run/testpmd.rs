//! `dpdk-testpmd` output: the per-port statistics `--stats-period 1` prints
//! every second, the accumulated totals printed on SIGINT, and the
//! baseline measurement computed from them.
//!
//! One print ("snapshot") looks like this, once per port:
//!
//! ```text
//! Port statistics ====================================
//!   ######################## NIC statistics for port 0  ########################
//!   RX-packets: 29628192   RX-missed: 0          RX-bytes:  1777691520
//!   RX-errors: 0
//!   RX-nombuf:  0
//!   TX-packets: 29606784   TX-errors: 0          TX-bytes:  1776407040
//!
//!   Throughput (since last show)
//!   Rx-pps:     14666332          Rx-bps:   7039839480
//!   Tx-pps:     14666348          Tx-bps:   7039847160
//!   ############################################################################
//! ```
//!
//! testpmd prints the first snapshot as soon as forwarding starts (its
//! rates are 0: there is no previous show) and one about every second
//! after, each rate measured by testpmd itself over the time since the
//! previous print. So snapshot `k` (k ≥ 1) covers about second `k` of
//! forwarding, whatever the pipe's buffering did to when the harness read
//! it; a warmup of `W` s discards snapshots `1..=W` and a duration of `D` s
//! averages snapshots `W+1..=W+D`.
//!
//! The parser is line-based and total: any bytes give some (possibly
//! empty) result, never a panic. Unknown lines are ignored.

use serde::Serialize;

/// Counters and rates of one port in one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortStats {
    /// Port id.
    pub port: u16,
    /// Packets received since start.
    pub rx_packets: u64,
    /// Packets the NIC missed.
    pub rx_missed: u64,
    /// Bytes received (no FCS).
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Receive mbuf allocation failures.
    pub rx_nombuf: u64,
    /// Packets transmitted since start.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Received packets per second since the previous snapshot.
    pub rx_pps: u64,
    /// Received bits per second (no FCS) since the previous snapshot.
    pub rx_bps: u64,
    /// Transmitted packets per second since the previous snapshot.
    pub tx_pps: u64,
    /// Transmitted bits per second since the previous snapshot.
    pub tx_bps: u64,
}

/// One `Port statistics` print.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The ports, in print order.
    pub ports: Vec<PortStats>,
}

impl Snapshot {
    /// Sum of the ports' `Tx-pps`: packets forwarded per second.
    pub fn tx_pps(&self) -> u64 {
        self.ports.iter().map(|p| p.tx_pps).sum()
    }

    /// Sum of the ports' `Rx-pps`.
    pub fn rx_pps(&self) -> u64 {
        self.ports.iter().map(|p| p.rx_pps).sum()
    }

    /// Sum of the ports' `Rx-bps` (no FCS, no preamble or gap).
    pub fn rx_bps(&self) -> u64 {
        self.ports.iter().map(|p| p.rx_bps).sum()
    }
}

/// The `Accumulated forward statistics for all ports` block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Accumulated {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
}

/// Where in the output the parser is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Other,
    /// Inside a port block of a snapshot.
    NicPort,
    /// Inside the accumulated totals.
    Accumulated,
}

/// Incremental parser: feed lines as they arrive.
#[derive(Clone, Debug)]
pub struct Parser {
    ports: usize,
    section: Section,
    open: Option<Snapshot>,
    snapshots: Vec<Snapshot>,
    accumulated: Option<Accumulated>,
}

/// `Key: value` pairs of a line, values parsed as integers.
fn pairs(line: &str) -> impl Iterator<Item = (&str, u64)> {
    let mut tokens = line.split_whitespace().peekable();
    std::iter::from_fn(move || {
        while let Some(token) = tokens.next() {
            if let Some(key) = token.strip_suffix(':') {
                if let Some(value) = tokens.peek().and_then(|v| v.parse::<u64>().ok()) {
                    tokens.next();
                    return Some((key, value));
                }
            }
        }
        None
    })
}

impl Parser {
    /// A parser for a testpmd forwarding on `ports` ports: a snapshot is
    /// complete once it has that many port blocks.
    pub fn new(ports: usize) -> Parser {
        Parser {
            ports: ports.max(1),
            section: Section::Other,
            open: None,
            snapshots: Vec::new(),
            accumulated: None,
        }
    }

    /// Parses one line (without its newline).
    pub fn feed_line(&mut self, line: &str) {
        let trimmed = line.trim();
        if trimmed.contains("Port statistics ===") {
            // A new print; an unfinished one before it is dropped.
            self.open = Some(Snapshot::default());
            self.section = Section::Other;
        } else if let Some(rest) = trimmed
            .split("NIC statistics for port")
            .nth(1)
            .map(str::trim_start)
        {
            let id = rest.split_whitespace().next().and_then(|t| t.parse().ok());
            match (&mut self.open, id) {
                (Some(snapshot), Some(port)) => {
                    snapshot.ports.push(PortStats {
                        port,
                        ..PortStats::default()
                    });
                    self.section = Section::NicPort;
                }
                _ => self.section = Section::Other,
            }
        } else if trimmed.contains("Accumulated forward statistics") {
            self.accumulated = Some(Accumulated::default());
            self.section = Section::Accumulated;
        } else if trimmed.contains("Forward statistics for port") {
            self.section = Section::Other;
        } else if !trimmed.is_empty()
            && trimmed.chars().all(|c| c == '#')
            && self.section == Section::NicPort
        {
            self.section = Section::Other;
            if self.open.as_ref().map(|s| s.ports.len()) == Some(self.ports) {
                if let Some(done) = self.open.take() {
                    self.snapshots.push(done);
                }
            }
        } else if !trimmed.is_empty() && trimmed.chars().all(|c| c == '+') {
            if self.section == Section::Accumulated {
                self.section = Section::Other;
            }
        } else {
            self.fields(trimmed);
        }
    }

    fn fields(&mut self, line: &str) {
        match self.section {
            Section::NicPort => {
                let Some(port) = self.open.as_mut().and_then(|s| s.ports.last_mut()) else {
                    return;
                };
                for (key, value) in pairs(line) {
                    let field = match key {
                        "RX-packets" => &mut port.rx_packets,
                        "RX-missed" => &mut port.rx_missed,
                        "RX-bytes" => &mut port.rx_bytes,
                        "RX-errors" => &mut port.rx_errors,
                        "RX-nombuf" => &mut port.rx_nombuf,
                        "TX-packets" => &mut port.tx_packets,
                        "TX-errors" => &mut port.tx_errors,
                        "TX-bytes" => &mut port.tx_bytes,
                        "Rx-pps" => &mut port.rx_pps,
                        "Rx-bps" => &mut port.rx_bps,
                        "Tx-pps" => &mut port.tx_pps,
                        "Tx-bps" => &mut port.tx_bps,
                        _ => continue,
                    };
                    *field = value;
                }
            }
            Section::Accumulated => {
                let Some(acc) = self.accumulated.as_mut() else {
                    return;
                };
                for (key, value) in pairs(line) {
                    let field = match key {
                        "RX-packets" => &mut acc.rx_packets,
                        "RX-dropped" => &mut acc.rx_dropped,
                        "TX-packets" => &mut acc.tx_packets,
                        "TX-dropped" => &mut acc.tx_dropped,
                        _ => continue,
                    };
                    *field = value;
                }
            }
            Section::Other => {}
        }
    }

    /// Complete snapshots so far, in print order.
    pub fn snapshots(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// The accumulated totals, once printed.
    pub fn accumulated(&self) -> Option<&Accumulated> {
        self.accumulated.as_ref()
    }
}

/// Which snapshots are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PeriodWindow {
    /// Snapshots discarded after the first (seconds of warmup).
    pub warmup_periods: usize,
    /// Snapshots averaged (seconds measured).
    pub periods: usize,
}

impl PeriodWindow {
    /// Snapshots needed before the window is complete: the initial one,
    /// the warmup and the measured ones.
    pub fn needed(&self) -> usize {
        1 + self.warmup_periods + self.periods
    }
}

/// Why testpmd's output gives no measurement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("testpmd printed {got} statistics snapshots, {needed} are needed")]
pub struct TooFewSnapshots {
    /// Snapshots printed.
    pub got: usize,
    /// Snapshots needed.
    pub needed: usize,
}

/// testpmd's forwarding rate over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestpmdMeasurement {
    /// Snapshots averaged.
    pub periods: usize,
    /// Forwarded (transmitted, all ports) packets per second, millions.
    pub forwarded_mpps: f64,
    /// Received packets per second, millions.
    pub rx_mpps: f64,
    /// Received bits per second on the wire, billions (Rx-bps + 24 bytes per
    /// frame of preamble, start delimiter, gap and FCS).
    pub rx_wire_gbit_s: f64,
    /// Receive errors + misses + mbuf failures over the run, all ports (last
    /// snapshot).
    pub rx_errors: u64,
    /// The accumulated totals printed on SIGINT, if any.
    pub accumulated: Option<Accumulated>,
}

impl TestpmdMeasurement {
    /// Averages the window's snapshots.
    pub fn from_parser(
        parser: &Parser,
        window: PeriodWindow,
    ) -> Result<TestpmdMeasurement, TooFewSnapshots> {
        let snapshots = parser.snapshots();
        let needed = window.needed();
        if snapshots.len() < needed || window.periods == 0 {
            return Err(TooFewSnapshots {
                got: snapshots.len(),
                needed,
            });
        }
        let measured = &snapshots[1 + window.warmup_periods..needed];
        let n = measured.len() as f64;
        let mean = |f: fn(&Snapshot) -> u64| measured.iter().map(|s| f(s) as f64).sum::<f64>() / n;
        let rx_pps = mean(Snapshot::rx_pps);
        let wire_bits =
            mean(Snapshot::rx_bps) + rx_pps * (super::stats::WIRE_OVERHEAD_BYTES as f64) * 8.0;
        let rx_errors = snapshots
            .last()
            .map(|s| {
                s.ports
                    .iter()
                    .map(|p| p.rx_errors + p.rx_missed + p.rx_nombuf)
                    .sum()
            })
            .unwrap_or(0);
        Ok(TestpmdMeasurement {
            periods: measured.len(),
            forwarded_mpps: mean(Snapshot::tx_pps) / 1e6,
            rx_mpps: rx_pps / 1e6,
            rx_wire_gbit_s: wire_bits / 1e9,
            rx_errors,
            accumulated: parser.accumulated().cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Parses a whole output.
    fn parse(text: &str, ports: usize) -> Parser {
        let mut parser = Parser::new(ports);
        for line in text.lines() {
            parser.feed_line(line);
        }
        parser
    }

    /// Real output of `dpdk-testpmd` 22.11 (io forwarding, two net_pcap
    /// ports with infinite_rx, `--stats-period 1`, SIGINT after ~6 s),
    /// with the terminal-clearing escape sequences it prints.
    const SAMPLE: &str = include_str!("testpmd_sample.txt");

    #[test]
    fn parses_the_real_sample() {
        let p = parse(SAMPLE, 2);
        let s = p.snapshots();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].ports.len(), 2);
        assert_eq!((s[0].tx_pps(), s[0].rx_pps()), (0, 0));
        assert_eq!(s[0].ports[0].rx_packets, 291360);
        assert_eq!(s[0].ports[1].rx_packets, 311456);
        let p0 = &s[1].ports[0];
        assert_eq!(p0.port, 0);
        assert_eq!((p0.rx_packets, p0.rx_bytes), (29628192, 1777691520));
        assert_eq!((p0.rx_pps, p0.rx_bps), (14666332, 7039839480));
        assert_eq!((p0.tx_pps, p0.tx_bps), (14666348, 7039847160));
        assert_eq!(s[1].ports[1].port, 1);
        assert_eq!(s[1].tx_pps(), 14666348 + 14666433);
        assert_eq!(s[2].rx_pps(), 14619315 + 14619164);
        assert_eq!(
            p.accumulated(),
            Some(&Accumulated {
                rx_packets: 173899776,
                rx_dropped: 0,
                tx_packets: 173899776,
                tx_dropped: 0,
            })
        );
    }

    #[test]
    fn window_skips_the_first_snapshot_and_the_warmup() {
        let p = parse(SAMPLE, 2);
        let m = TestpmdMeasurement::from_parser(
            &p,
            PeriodWindow {
                warmup_periods: 1,
                periods: 1,
            },
        )
        .unwrap();
        assert_eq!(m.periods, 1);
        // Only the third snapshot.
        assert!((m.forwarded_mpps - (14619315.0 + 14619164.0) / 1e6).abs() < 1e-9);
        assert!((m.rx_mpps - 29.238479).abs() < 1e-9);
        let bits = 7017271392.0 + 7017199048.0 + 29238479.0 * 24.0 * 8.0;
        assert!((m.rx_wire_gbit_s - bits / 1e9).abs() < 1e-9);
        assert_eq!(m.accumulated.unwrap().tx_packets, 173899776);
        // Without warmup: mean of the second and third.
        let m = TestpmdMeasurement::from_parser(
            &p,
            PeriodWindow {
                warmup_periods: 0,
                periods: 2,
            },
        )
        .unwrap();
        let expected = (14666348.0 + 14666433.0 + 14619315.0 + 14619164.0) / 2e6;
        assert!((m.forwarded_mpps - expected).abs() < 1e-9);
        let too_long = PeriodWindow {
            warmup_periods: 1,
            periods: 2,
        };
        assert_eq!(
            TestpmdMeasurement::from_parser(&p, too_long).unwrap_err(),
            TooFewSnapshots { got: 3, needed: 4 }
        );
    }

    #[test]
    fn incomplete_snapshots_are_not_counted() {
        // Cut the sample in the middle of the second snapshot's port 1.
        let cut = SAMPLE.find("RX-packets: 29648512").unwrap();
        let p = parse(&SAMPLE[..cut], 2);
        assert_eq!(p.snapshots().len(), 1);
        assert_eq!(p.accumulated(), None);
        // A one-port testpmd completes a snapshot per port block.
        assert_eq!(parse(SAMPLE, 1).snapshots().len(), 3);
    }

    #[test]
    fn pairs_take_integer_values() {
        let v: Vec<_> = pairs("  Rx-pps:     14666332          Rx-bps:   7039839480").collect();
        assert_eq!(v, [("Rx-pps", 14666332), ("Rx-bps", 7039839480)]);
        let v: Vec<_> = pairs("RX-nombuf:  0   X: y  Z:").collect();
        assert_eq!(v, [("RX-nombuf", 0)]);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,2000}", ports in 0usize..4) {
            let p = parse(&text, ports);
            let _ = TestpmdMeasurement::from_parser(&p, PeriodWindow { warmup_periods: 0, periods: 1 });
        }

        #[test]
        fn sample_lines_in_any_order_never_panic(
            order in proptest::collection::vec(0usize..200, 0..300)
        ) {
            let lines: Vec<&str> = SAMPLE.lines().collect();
            let mut p = Parser::new(2);
            for i in order {
                p.feed_line(lines[i % lines.len()]);
            }
            for s in p.snapshots() {
                prop_assert_eq!(s.ports.len(), 2);
            }
        }
    }
}
