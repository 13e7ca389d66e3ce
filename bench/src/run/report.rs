//! Reports: the terminal table, the markdown table for the README, and the
//! JSON file with every figure, the exact commands and configurations, and
//! the machine they ran on.
//!
//! Invariant: a LOSSY spec never shows a throughput, ratio or Gbit/s cell,
//! only its "LOSSY (...)" text; a failed spec shows its error.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

use super::measure::{RulesChoice, RunResult};
use super::rig::{RigResult, RigSweep};

/// The machine a report was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// Usable CPUs (nproc).
    pub nproc: usize,
    /// Kernel release.
    pub kernel: String,
    /// When the report was written, UTC, ISO 8601.
    pub date_utc: String,
}

impl Machine {
    /// Reads /proc and the clock.
    pub fn detect() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Machine {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_string()),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            date_utc: utc_iso8601(now_s),
        }
    }
}

/// The first `model name` of a /proc/cpuinfo text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// `unix_s` as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, days to civil
/// date after Howard Hinnant's algorithm).
pub fn utc_iso8601(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Which sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SweepKind {
    /// est-tcp over growing flow counts.
    States,
    /// new-conn over growing rulesets.
    Rules,
    /// UDP conversations over worker counts, on the multi-queue rig.
    Workers,
}

impl SweepKind {
    /// Name in files and titles.
    pub fn name(self) -> &'static str {
        match self {
            SweepKind::States => "states",
            SweepKind::Rules => "rules",
            SweepKind::Workers => "workers",
        }
    }

    /// What the x axis counts.
    pub fn axis(self) -> &'static str {
        match self {
            SweepKind::States => "flows (established TCP connections)",
            SweepKind::Rules => "non-matching rules before the pass rule",
            SweepKind::Workers => "workers",
        }
    }

    /// Title of its plot.
    pub fn title(self) -> &'static str {
        match self {
            SweepKind::States => "Mpps vs flows (est-tcp)",
            SweepKind::Rules => "Mpps vs ruleset size (new-conn)",
            SweepKind::Workers => "Mpps vs workers (rig)",
        }
    }
}

/// One point of a sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    /// The x value.
    pub x: u64,
    /// Its measurement.
    pub result: RunResult,
}

/// A sweep's results.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    /// Which sweep.
    pub kind: SweepKind,
    /// What x counts.
    pub axis: &'static str,
    /// Points in x order.
    pub points: Vec<SweepPoint>,
}

/// The JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// bench's command line.
    pub invocation: Vec<String>,
    /// bench's version.
    pub bench_version: &'static str,
    /// The dpf binary.
    pub dpf: String,
    /// The testpmd binary.
    pub testpmd: String,
    /// How to read the figures.
    pub notes: Vec<String>,
    /// Single runs.
    pub runs: Vec<RunResult>,
    /// Sweeps.
    pub sweeps: Vec<Sweep>,
    /// Sweeps on the multi-queue rig (`sweep workers`).
    pub rig_sweeps: Vec<RigSweep>,
}

/// How to read the figures (also printed under the markdown table).
pub fn notes() -> Vec<String> {
    vec![
        "Mpps: packets forwarded per second, both directions together, median of the runs; dpf counts its `forwarded` counter, testpmd the sum of its ports' Tx-pps.".into(),
        "Gbit/s: received frames on the wire: captured bytes + 24 bytes per frame (7 preamble + 1 start delimiter + 12 inter-frame gap + 4 FCS), times 8.".into(),
        "dpf/testpmd: median over A/B pairs (dpf, then dpdk-testpmd io forwarding, alternating, same pcaps, same cores) of dpf's rate divided by testpmd's. Both read the pcaps from memory (net_pcap infinite_rx) and drop what they send, so the rate is bounded by the CPU, not a NIC.".into(),
        "net_pcap infinite_rx copies every received packet out of the pcap it holds in mbufs; past ~100k packets per pcap that copy no longer fits in the caches and both programs slow down, so across flow counts compare the dpf/testpmd ratio rather than raw Mpps.".into(),
        "cyc/pkt: dpf workers' TSC cycles spent on non-empty bursts per received packet (includes net_pcap's rx copy and tx).".into(),
        "burst p50/p99/p99.9 ns: the time one worker took to process one non-empty rx burst (up to 32 packets: rx, decisions, tx), from dpf's per-worker log-linear histogram of TSC cycles (buckets at most 12.5% wide; the bucket's top is shown), over the window, median of the runs.".into(),
        "LOSSY: dpf dropped more than 0.1% of the packets it received in the window; no throughput is given for it.".into(),
        "Warmup seconds are discarded; the window is measured between two of dpf's cumulative --stats-every samples (testpmd: the per-second Rx/Tx-pps prints after the warmup).".into(),
    ]
}

/// Human count: 1000 → 1k, 1000000 → 1M, 1500 → 1500.
pub fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// Column headers of the tables.
pub const COLUMNS: [&str; 16] = [
    "run",
    "profile",
    "flows",
    "frame",
    "W",
    "rules",
    "dpf Mpps",
    "Gbit/s",
    "cyc/pkt",
    "states",
    "B/state",
    "burst p50 ns",
    "p99 ns",
    "p99.9 ns",
    "testpmd Mpps",
    "dpf/testpmd",
];

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// The cells of one result's row.
pub fn row(r: &RunResult) -> Vec<String> {
    let s = &r.summary;
    let spec = &r.spec;
    let rules = match &spec.rules {
        RulesChoice::None => "-".to_string(),
        RulesChoice::File(p) => p.file_name().map_or_else(
            || p.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        ),
        RulesChoice::Sweep {
            fillers,
            keep_state,
        } => format!(
            "{}+pass{}",
            human_count(*fillers as u64),
            if *keep_state { "" } else { " (no state)" }
        ),
    };
    let frame = match (spec.profile, spec.frame_size) {
        (crate::gen::plan::Profile::Imix, _) => "imix".to_string(),
        (_, Some(b)) => b.to_string(),
        (_, None) => crate::gen::DEFAULT_FRAME_SIZE.to_string(),
    };
    let family = if spec.ipv6 { " v6" } else { "" };
    let mut cells = vec![
        spec.label.clone(),
        format!("{}{family}", spec.profile.name()),
        human_count(spec.flows),
        frame,
        spec.workers.to_string(),
        rules,
    ];
    let headline = match (&s.lossy, s.dpf_mpps, &s.error) {
        (Some(lossy), _, _) => lossy.clone(),
        (None, Some(mpps), _) => format!("{mpps:.3}"),
        (None, None, Some(error)) => {
            // dpf's own error ("dpf: ..." or clap's "error: ...") comes
            // after "dpf exited ... before its window completed:".
            let first = error
                .lines()
                .skip(1)
                .find(|l| l.starts_with("dpf:") || l.contains("error"))
                .or_else(|| error.lines().next())
                .unwrap_or("");
            format!("FAILED: {}", first.chars().take(80).collect::<String>())
        }
        (None, None, None) => "-".to_string(),
    };
    cells.extend([
        headline,
        opt(s.dpf_wire_gbit_s, 2),
        opt(s.cycles_per_packet, 0),
        s.states.map_or_else(|| "-".to_string(), |n| n.to_string()),
        opt(s.memory_per_state_bytes, 0),
        opt(s.burst_p50_ns, 0),
        opt(s.burst_p99_ns, 0),
        opt(s.burst_p999_ns, 0),
        opt(s.testpmd_mpps, 3),
        opt(s.ratio, 3),
    ]);
    cells
}

/// Column headers of the rig sweep's tables.
pub const RIG_COLUMNS: [&str; 11] = [
    "run",
    "transport",
    "W",
    "CPUs gen / workers",
    "flows",
    "dpf Mpps",
    "rx Mpps",
    "handed off",
    "states",
    "dropped",
    "gen Mpps",
];

/// Leading columns of [`RIG_COLUMNS`] that are text (left-aligned).
const RIG_TEXT_COLUMNS: usize = 5;

/// The cells of one rig point's row.
pub fn rig_row(r: &RigResult) -> Vec<String> {
    let s = &r.summary;
    let cpus = r.cpus.as_ref().map_or_else(
        || "-".to_string(),
        |c| {
            let workers: Vec<String> = c.workers.iter().map(|w| w.to_string()).collect();
            format!(
                "{} / {}{}",
                c.generator,
                workers.join(","),
                if c.shared { " (shared)" } else { "" }
            )
        },
    );
    let headline = match (&s.lossy, s.dpf_mpps, &s.error) {
        (Some(lossy), _, _) => lossy.clone(),
        (None, Some(mpps), _) => format!("{mpps:.3}"),
        (None, None, Some(error)) => format!(
            "FAILED: {}",
            error
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(80)
                .collect::<String>()
        ),
        (None, None, None) => "-".to_string(),
    };
    vec![
        r.spec.label.clone(),
        r.spec.transport.name().to_string(),
        r.spec.workers.to_string(),
        cpus,
        human_count(u64::from(r.spec.flows)),
        headline,
        opt(s.rx_mpps, 3),
        s.handoff_share
            .map_or_else(|| "-".to_string(), |h| format!("{:.2}%", h * 100.0)),
        s.states.map_or_else(|| "-".to_string(), |n| n.to_string()),
        s.dropped.map_or_else(|| "-".to_string(), |n| n.to_string()),
        opt(s.generator_mpps, 3),
    ]
}

/// A plain-text table with aligned columns under `columns`, the first
/// `text` of them left-aligned.
fn text_table_of(columns: &[&str], text: usize, rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < text {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut columns.iter().copied());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "{}", rule.join("  "));
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

/// A markdown table under `columns`, the first `text` left-aligned.
fn markdown_table_of(columns: &[&str], text: usize, rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", columns.join(" | "));
    let align: Vec<&str> = (0..columns.len())
        .map(|i| if i < text { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |", align.join(" | "));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// One table of a report.
struct Section {
    title: String,
    columns: &'static [&'static str],
    text_columns: usize,
    rows: Vec<Vec<String>>,
}

impl Report {
    /// Every result's row: runs, then each sweep's points, then the rig
    /// sweeps' (with their own columns).
    fn sections(&self) -> Vec<Section> {
        let mut sections = Vec::new();
        if !self.runs.is_empty() {
            sections.push(Section {
                title: "Runs".to_string(),
                columns: &COLUMNS,
                text_columns: 6,
                rows: self.runs.iter().map(row).collect::<Vec<_>>(),
            });
        }
        for sweep in &self.sweeps {
            sections.push(Section {
                title: format!("Sweep: {} (x = {})", sweep.kind.name(), sweep.axis),
                columns: &COLUMNS,
                text_columns: 6,
                rows: sweep.points.iter().map(|p| row(&p.result)).collect(),
            });
        }
        for sweep in &self.rig_sweeps {
            sections.push(Section {
                title: format!(
                    "Sweep: workers on the rig ({}, rx_placement toeplitz)",
                    sweep.transport.name()
                ),
                columns: &RIG_COLUMNS,
                text_columns: RIG_TEXT_COLUMNS,
                rows: sweep.points.iter().map(rig_row).collect(),
            });
        }
        sections
    }

    /// The terminal table.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for s in self.sections() {
            let _ = writeln!(
                out,
                "\n{}\n{}",
                s.title,
                text_table_of(s.columns, s.text_columns, &s.rows)
            );
        }
        out
    }

    /// The markdown report.
    pub fn markdown(&self, svgs: &[String]) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "## dpf throughput\n");
        let _ = writeln!(
            out,
            "Measured {} on {} ({} CPUs, Linux {}) with `{}`.\n",
            m.date_utc,
            m.cpu_model,
            m.nproc,
            m.kernel,
            self.invocation.join(" ")
        );
        for s in self.sections() {
            let _ = writeln!(
                out,
                "### {}\n\n{}",
                s.title,
                markdown_table_of(s.columns, s.text_columns, &s.rows)
            );
        }
        for svg in svgs {
            let _ = writeln!(out, "![{svg}]({svg})\n");
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    /// Writes `<dir>/<name>.json` and `<dir>/<name>.md`.
    pub fn write(&self, dir: &Path, name: &str, svgs: &[String]) -> anyhow::Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join(format!("{name}.json"));
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        fs::write(&json, text).with_context(|| format!("writing {}", json.display()))?;
        let md = dir.join(format!("{name}.md"));
        fs::write(&md, self.markdown(svgs)).with_context(|| format!("writing {}", md.display()))?;
        eprintln!("bench: wrote {} and {}", json.display(), md.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::plan::Profile;
    use crate::rss_gen::rig::{CpuPlan, RigMemory, Transport};
    use crate::run::measure::{RunSpec, Summary};
    use crate::run::rig::{RigSpec, RigSummary};

    fn result(label: &str, summary: Summary) -> RunResult {
        RunResult {
            spec: RunSpec {
                label: label.into(),
                profile: Profile::EstTcp,
                flows: 10_000,
                frame_size: None,
                ipv6: false,
                workers: 1,
                rules: RulesChoice::Sweep {
                    fillers: 1000,
                    keep_state: false,
                },
                warmup_s: 2,
                duration_s: 5,
                repeat: 2,
                testpmd: true,
            },
            traffic: None,
            memory: None,
            rules_file: None,
            rules_lines: None,
            dpf_config: None,
            dpf: vec![],
            testpmd: vec![],
            summary,
        }
    }

    #[test]
    fn dates_and_counts() {
        assert_eq!(utc_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(human_count(1000), "1k");
        assert_eq!(human_count(1_000_000), "1M");
        assert_eq!(human_count(1500), "1500");
        assert_eq!(human_count(1), "1");
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"),
            Some("AMD EPYC 7B13".into())
        );
        assert_eq!(cpu_model(""), None);
    }

    #[test]
    fn rows_show_lossy_instead_of_throughput() {
        let ok = result(
            "a",
            Summary {
                dpf_mpps: Some(12.3456),
                dpf_wire_gbit_s: Some(8.3),
                cycles_per_packet: Some(150.2),
                states: Some(20000),
                burst_p50_ns: Some(1234.4),
                burst_p99_ns: Some(5000.0),
                testpmd_mpps: Some(20.0),
                ratio: Some(0.617),
                ..Summary::default()
            },
        );
        let cells = row(&ok);
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(
            cells,
            [
                "a",
                "est-tcp",
                "10k",
                "64",
                "1",
                "1k+pass (no state)",
                "12.346",
                "8.30",
                "150",
                "20000",
                "-",
                "1234",
                "5000",
                "-",
                "20.000",
                "0.617"
            ]
        );
        let lossy = result(
            "b",
            Summary {
                lossy: Some("LOSSY (1.00% dropped: tx-full 5)".into()),
                testpmd_mpps: Some(20.0),
                ..Summary::default()
            },
        );
        let cells = row(&lossy);
        assert_eq!(cells[6], "LOSSY (1.00% dropped: tx-full 5)");
        assert_eq!((cells[7].as_str(), cells[15].as_str()), ("-", "-"));
        let failed = result(
            "c",
            Summary {
                error: Some("dpf exited\nmore".into()),
                ..Summary::default()
            },
        );
        assert_eq!(row(&failed)[6], "FAILED: dpf exited");
        let exited = result(
            "d",
            Summary {
                error: Some("dpf exited (2) before:\nerror: unexpected argument\n\nUsage".into()),
                ..Summary::default()
            },
        );
        assert_eq!(row(&exited)[6], "FAILED: error: unexpected argument");

        let text = text_table_of(&COLUMNS, 6, &[row(&ok), row(&lossy)]);
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().next().unwrap().starts_with("run"));
        let md = markdown_table_of(&COLUMNS, 6, &[row(&ok)]);
        assert!(md.starts_with("| run | profile |"));
        assert!(md.contains("| 12.346 | 8.30 |"));
    }

    fn rig_result(workers: usize, summary: RigSummary) -> RigResult {
        RigResult {
            spec: RigSpec {
                label: format!("rig-w{workers}"),
                workers,
                transport: Transport::Vhost,
                flows: 1000,
                warmup_s: 2,
                duration_s: 5,
                repeat: 1,
                rules: None,
            },
            cpus: CpuPlan::new(&[0, 1], workers),
            memory: RigMemory::for_queues(workers as u16),
            dpf_config: None,
            runs: vec![],
            summary,
        }
    }

    #[test]
    fn rig_rows() {
        let ok = rig_row(&rig_result(
            1,
            RigSummary {
                dpf_mpps: Some(2.5),
                rx_mpps: Some(2.5004),
                handoff_share: Some(0.0123),
                generator_mpps: Some(2.6),
                states: Some(1000),
                dropped: Some(0),
                ..RigSummary::default()
            },
        ));
        assert_eq!(ok.len(), RIG_COLUMNS.len());
        assert_eq!(
            ok,
            [
                "rig-w1", "vhost", "1", "0 / 1", "1k", "2.500", "2.500", "1.23%", "1000", "0",
                "2.600"
            ]
        );
        let lossy = rig_row(&rig_result(
            4,
            RigSummary {
                lossy: Some("LOSSY (0.50% dropped: tx-full 5)".into()),
                rx_mpps: Some(1.0),
                ..RigSummary::default()
            },
        ));
        assert_eq!(lossy[3], "0 / 1,1,1,1 (shared)");
        assert_eq!(lossy[5], "LOSSY (0.50% dropped: tx-full 5)");
        let failed = rig_row(&rig_result(
            2,
            RigSummary {
                error: Some("links not up after 30 s\nmore".into()),
                ..RigSummary::default()
            },
        ));
        assert_eq!(failed[5], "FAILED: links not up after 30 s");
        assert_eq!(failed[7], "-");
    }

    #[test]
    fn report_writes_json_and_markdown() {
        let dir = std::env::temp_dir().join(format!("bench-report-{}", std::process::id()));
        let report = Report {
            machine: Machine::detect(),
            invocation: vec!["bench".into(), "run".into()],
            bench_version: "0",
            dpf: "dpf".into(),
            testpmd: "dpdk-testpmd".into(),
            notes: notes(),
            runs: vec![result("a", Summary::default())],
            sweeps: vec![Sweep {
                kind: SweepKind::Rules,
                axis: SweepKind::Rules.axis(),
                points: vec![SweepPoint {
                    x: 1000,
                    result: result("r", Summary::default()),
                }],
            }],
            rig_sweeps: vec![RigSweep {
                transport: Transport::Vhost,
                points: vec![rig_result(
                    2,
                    RigSummary {
                        dpf_mpps: Some(1.25),
                        handoff_share: Some(0.0),
                        ..RigSummary::default()
                    },
                )],
            }],
        };
        report
            .write(&dir, "t", &["sweep-rules.svg".into()])
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("t.json")).unwrap()).unwrap();
        assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);
        assert_eq!(json["runs"][0]["spec"]["label"], "a");
        assert_eq!(json["sweeps"][0]["kind"], "rules");
        assert_eq!(json["sweeps"][0]["points"][0]["x"], 1000);
        let md = fs::read_to_string(dir.join("t.md")).unwrap();
        assert!(md.contains("### Runs") && md.contains("### Sweep: rules"));
        assert!(md.contains("![sweep-rules.svg](sweep-rules.svg)"));
        assert!(md.contains("24 bytes per frame"));
        assert!(report.text().contains("Sweep: rules"));
        assert_eq!(json["rig_sweeps"][0]["transport"], "vhost");
        assert_eq!(json["rig_sweeps"][0]["points"][0]["spec"]["workers"], 2);
        assert!(md.contains("### Sweep: workers on the rig (vhost, rx_placement toeplitz)"));
        assert!(md.contains("| run | transport | W | CPUs gen / workers |"));
        assert!(md.contains("| rig-w2 | vhost | 2 | 0 / 1,1 (shared) | 1k | 1.250 | - | 0.00% |"));
        let _ = fs::remove_dir_all(&dir);
    }
}
