//! One measurement spec run for real: pcaps prepared (cached), then `repeat`
//! pairs of (dpf, dpdk-testpmd) runs on the same pcaps, alternating A B A B,
//! and the summary that the reports print.
//!
//! Each process gets its own EAL `--file-prefix` and its own files under
//! `<out>/runs/<label>/` (config, stdout, stderr), and is stopped with
//! SIGINT by PID once its window is complete (see [`super::spawn`]). A
//! failing dpf run ends the spec (the next would fail the same way); a
//! failing testpmd run is recorded and the pairs go on.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dataplane::histogram::LatencySummary;
use serde::Serialize;

use super::rules::sweep_ruleset;
use super::setup::{
    dpf_config, expected_drops, prepare_traffic, testpmd_args, with_states_limit, MemoryPlan,
    Traffic,
};
use super::spawn::{Next, Supervised};
use super::stats::{self, DpfMeasurement, StatsLine, WindowSpec};
use super::testpmd::{self, PeriodWindow, TestpmdMeasurement};
use crate::gen::plan::{GenConfig, Profile};
use crate::gen::DEFAULT_FRAME_SIZE;

/// dpf's `--stats-every`, ms.
pub const STATS_EVERY_MS: u64 = 500;

/// Seed of every generated pcap.
const SEED: u64 = 1;

/// Where a run's ruleset comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RulesChoice {
    /// No ruleset: dpf forwards everything in wire mode.
    None,
    /// A pf.conf file (a `set limit states` for the flows is added in front
    /// unless it sets one).
    File(PathBuf),
    /// The generated ruleset of `bench sweep rules`.
    Sweep {
        /// Non-matching rules before the pass rules.
        fillers: usize,
        /// Pass rules keep state (else `no state`).
        keep_state: bool,
    },
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSpec {
    /// Name in tables and of the run directory.
    pub label: String,
    /// Traffic profile.
    pub profile: Profile,
    /// Flows.
    pub flows: u64,
    /// Frame size with FCS (`None`: 64, or the imix mix).
    pub frame_size: Option<u16>,
    /// IPv6 traffic.
    pub ipv6: bool,
    /// dpf workers (and testpmd forwarding cores).
    pub workers: usize,
    /// Ruleset.
    pub rules: RulesChoice,
    /// Seconds discarded at the start of every process run.
    pub warmup_s: u64,
    /// Seconds measured.
    pub duration_s: u64,
    /// (dpf, testpmd) pairs.
    pub repeat: usize,
    /// Run the testpmd baseline.
    pub testpmd: bool,
}

impl RunSpec {
    /// The generator configuration of this spec.
    pub fn gen_config(&self) -> GenConfig {
        GenConfig {
            profile: self.profile,
            flows: self.flows,
            frame_size: self.frame_size.map_or(DEFAULT_FRAME_SIZE, usize::from),
            seed: SEED,
            ipv6: self.ipv6,
        }
    }

    /// Identity of the measurement (everything but the label), for reuse
    /// of results between a suite's runs and sweeps.
    pub fn key(&self) -> String {
        let mut clone = self.clone();
        clone.label.clear();
        format!("{clone:?}")
    }
}

/// Programs and places shared by every run of one invocation.
#[derive(Debug)]
pub struct Harness {
    /// The dpf binary.
    pub dpf: PathBuf,
    /// The testpmd binary.
    pub testpmd: PathBuf,
    /// `stdbuf`, to make testpmd's stdout line-buffered, if found.
    pub stdbuf: Option<PathBuf>,
    /// Output directory.
    pub out: PathBuf,
    /// Next file-prefix number.
    pub runs: AtomicUsize,
}

/// One dpf process run.
#[derive(Clone, Debug, Serialize)]
pub struct DpfRun {
    /// The command line.
    pub command: String,
    /// What it measured, if it did.
    pub measurement: Option<DpfMeasurement>,
    /// "LOSSY (...)" if it dropped more than 0.1% of its packets.
    pub lossy: Option<String>,
    /// Why it measured nothing.
    pub error: Option<String>,
    /// The line dpf printed on SIGINT.
    pub final_stats: Option<StatsLine>,
}

/// One testpmd process run.
#[derive(Clone, Debug, Serialize)]
pub struct TestpmdRun {
    /// The command line.
    pub command: String,
    /// What it measured, if it did.
    pub measurement: Option<TestpmdMeasurement>,
    /// Why it measured nothing.
    pub error: Option<String>,
}

/// The figures the reports print for one spec.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Median forwarded Mpps of dpf's runs (absent when LOSSY).
    pub dpf_mpps: Option<f64>,
    /// Median received Gbit/s on the wire (24 bytes of preamble, SFD, gap
    /// and FCS added per frame).
    pub dpf_wire_gbit_s: Option<f64>,
    /// Median TSC cycles per packet of dpf's own work.
    pub cycles_per_packet: Option<f64>,
    /// States at the end of the last measured window.
    pub states: Option<u64>,
    /// Median states created per second.
    pub states_created_per_s: Option<f64>,
    /// Bytes per state, if dpf reports its table memory.
    pub memory_per_state_bytes: Option<f64>,
    /// Median over dpf's runs of the per-burst processing time's p50, ns.
    pub burst_p50_ns: Option<f64>,
    /// Median over dpf's runs of its p99, ns.
    pub burst_p99_ns: Option<f64>,
    /// Median over dpf's runs of its p99.9, ns.
    pub burst_p999_ns: Option<f64>,
    /// Median forwarded Mpps of testpmd's runs.
    pub testpmd_mpps: Option<f64>,
    /// Median over pairs of dpf Mpps / testpmd Mpps: the headline.
    pub ratio: Option<f64>,
    /// The worst run's LOSSY text, if any run was.
    pub lossy: Option<String>,
    /// Why nothing was measured.
    pub error: Option<String>,
}

/// Everything about one spec: inputs, exact commands and configs, every
/// process run and the summary.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// What was asked.
    pub spec: RunSpec,
    /// The pcaps.
    pub traffic: Option<Traffic>,
    /// Pool and EAL memory.
    pub memory: Option<MemoryPlan>,
    /// The ruleset file given to dpf.
    pub rules_file: Option<PathBuf>,
    /// Lines in it.
    pub rules_lines: Option<usize>,
    /// The first dpf run's configuration (later ones differ only in
    /// `--file-prefix`).
    pub dpf_config: Option<String>,
    /// dpf runs, in order.
    pub dpf: Vec<DpfRun>,
    /// testpmd runs, in order (run `i` follows dpf run `i`).
    pub testpmd: Vec<TestpmdRun>,
    /// The figures.
    pub summary: Summary,
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if mid * 2 == v.len() {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// The figures of a spec's process runs (pure).
pub fn summarize(dpf: &[DpfRun], testpmd: &[TestpmdRun]) -> Summary {
    let measured: Vec<&DpfMeasurement> =
        dpf.iter().filter_map(|r| r.measurement.as_ref()).collect();
    let worst_lossy = dpf
        .iter()
        .filter(|r| r.lossy.is_some())
        .max_by(|a, b| {
            let share = |r: &DpfRun| {
                r.measurement
                    .as_ref()
                    .map_or(0.0, |m| m.dropped as f64 / m.rx.max(1) as f64)
            };
            share(a).total_cmp(&share(b))
        })
        .and_then(|r| r.lossy.clone());
    let of =
        |f: fn(&DpfMeasurement) -> f64| median(&measured.iter().map(|m| f(m)).collect::<Vec<_>>());
    let testpmd_rates: Vec<f64> = testpmd
        .iter()
        .filter_map(|r| r.measurement.as_ref().map(|m| m.forwarded_mpps))
        .collect();
    let ratios: Vec<f64> = dpf
        .iter()
        .zip(testpmd)
        .filter_map(|(d, t)| {
            let d = d.measurement.as_ref()?;
            let t = t.measurement.as_ref()?;
            (t.forwarded_mpps > 0.0).then(|| d.forwarded_mpps / t.forwarded_mpps)
        })
        .collect();
    let error = if measured.is_empty() {
        dpf.iter()
            .find_map(|r| r.error.clone())
            .or_else(|| Some("no dpf run".to_string()))
    } else {
        None
    };
    let burst = |f: fn(&LatencySummary) -> Option<f64>| {
        median(
            &measured
                .iter()
                .filter_map(|m| m.burst_latency.as_ref().and_then(f))
                .collect::<Vec<_>>(),
        )
    };
    let lossy = worst_lossy.is_some();
    Summary {
        dpf_mpps: if lossy {
            None
        } else {
            of(|m| m.forwarded_mpps)
        },
        dpf_wire_gbit_s: if lossy {
            None
        } else {
            of(|m| m.rx_wire_gbit_s)
        },
        cycles_per_packet: median(
            &measured
                .iter()
                .filter_map(|m| m.cycles_per_packet)
                .collect::<Vec<_>>(),
        ),
        states: measured.last().map(|m| m.states),
        states_created_per_s: of(|m| m.states_created_per_s),
        memory_per_state_bytes: median(
            &measured
                .iter()
                .filter_map(|m| m.memory_per_state_bytes)
                .collect::<Vec<_>>(),
        ),
        burst_p50_ns: burst(|l| l.p50_ns),
        burst_p99_ns: burst(|l| l.p99_ns),
        burst_p999_ns: burst(|l| l.p999_ns),
        testpmd_mpps: median(&testpmd_rates),
        ratio: if lossy { None } else { median(&ratios) },
        lossy: worst_lossy,
        error,
    }
}

/// A command line as text, for the report.
pub(crate) fn command_line(program: &Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| {
            if a.is_empty() || a.contains([' ', '*', '\'', '"', '$']) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.clone()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seconds a process may take to start forwarding: EAL zeroes its memory
/// and net_pcap loads every packet into mbufs, so large pcaps start slowly.
fn startup_allowance(traffic: &Traffic, memory: &MemoryPlan) -> Duration {
    let packets: u64 = traffic.steady_packets.iter().sum();
    Duration::from_secs(30 + memory.eal_mb / 200 + packets / 100_000)
}

/// `MemAvailable` of /proc/meminfo, MiB.
fn mem_available_mb() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Only plain names become directory names.
pub(crate) fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Harness {
    pub(crate) fn file_prefix(&self) -> String {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        format!("bench{}r{n}", std::process::id())
    }

    /// Runs `spec` and returns its result; errors before any process run
    /// (generation, ruleset) are recorded in the summary.
    pub fn measure(&self, spec: &RunSpec) -> RunResult {
        let mut result = RunResult {
            spec: spec.clone(),
            traffic: None,
            memory: None,
            rules_file: None,
            rules_lines: None,
            dpf_config: None,
            dpf: Vec::new(),
            testpmd: Vec::new(),
            summary: Summary::default(),
        };
        if let Err(e) = self.measure_into(spec, &mut result) {
            eprintln!("bench: [{}] {e:#}", spec.label);
            result.summary = summarize(&result.dpf, &result.testpmd);
            // A dpf run's own error says more than "not repeating".
            if result.summary.error.is_none() {
                result.summary.error = Some(format!("{e:#}"));
            }
            return result;
        }
        result.summary = summarize(&result.dpf, &result.testpmd);
        result
    }

    fn measure_into(&self, spec: &RunSpec, result: &mut RunResult) -> anyhow::Result<()> {
        let dir = self.out.join("runs").join(sanitize(&spec.label));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let traffic = prepare_traffic(&spec.gen_config(), &self.out.join("pcaps"))?;
        let memory = MemoryPlan::new(&traffic, spec.workers)?;
        if let Some(available_mb) = mem_available_mb() {
            if memory.eal_mb > available_mb {
                bail!(
                    "{} needs -m {} MB (net_pcap holds every packet of the pcaps in 4 KiB mbufs), only {available_mb} MB are available",
                    traffic.name,
                    memory.eal_mb
                );
            }
        }
        result.traffic = Some(traffic.clone());
        result.memory = Some(memory);

        let rules_text = match &spec.rules {
            RulesChoice::None => None,
            RulesChoice::File(path) => Some(
                fs::read_to_string(path)
                    .with_context(|| format!("reading the ruleset {}", path.display()))?,
            ),
            RulesChoice::Sweep {
                fillers,
                keep_state,
            } => Some(sweep_ruleset(&traffic.rules, *fillers, *keep_state)?),
        };
        let rules_file = match rules_text {
            Some(text) => {
                let text = with_states_limit(&text, spec.flows);
                let path = dir.join("bench.pf.conf");
                fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
                result.rules_lines = Some(text.lines().count());
                Some(path)
            }
            None => None,
        };
        result.rules_file = rules_file.clone();
        let preload = match (&rules_file, &traffic.setup_pcapng) {
            (Some(_), Some(pcapng)) => Some(pcapng.clone()),
            _ => None,
        };
        let expected = expected_drops(spec.profile, rules_file.is_some());
        let window = WindowSpec {
            warmup_s: spec.warmup_s as f64,
            duration_s: spec.duration_s as f64,
        };
        let periods = PeriodWindow {
            warmup_periods: spec.warmup_s as usize,
            periods: spec.duration_s as usize,
        };
        let allowance = startup_allowance(&traffic, &memory)
            + Duration::from_secs(spec.warmup_s + spec.duration_s + 5);

        for i in 1..=spec.repeat {
            let prefix = self.file_prefix();
            let config = dpf_config(
                &traffic,
                spec.workers,
                &memory,
                &prefix,
                rules_file.as_deref(),
            );
            let config_path = dir.join(format!("dpf-{i}.toml"));
            fs::write(&config_path, &config)
                .with_context(|| format!("writing {}", config_path.display()))?;
            if result.dpf_config.is_none() {
                result.dpf_config = Some(config);
            }
            let run = self.run_dpf(
                &dir,
                i,
                &config_path,
                preload.as_deref(),
                window,
                expected,
                allowance,
            );
            let failed = run.measurement.is_none();
            match (&run.measurement, &run.lossy, &run.error) {
                (_, Some(lossy), _) => {
                    eprintln!("bench: [{}] dpf {i}/{}: {lossy}", spec.label, spec.repeat)
                }
                (Some(m), None, _) => eprintln!(
                    "bench: [{}] dpf {i}/{}: {:.3} Mpps forwarded, {:.0} cycles/packet, {} states, burst p50/p99/p99.9 {} ns",
                    spec.label,
                    spec.repeat,
                    m.forwarded_mpps,
                    m.cycles_per_packet.unwrap_or(0.0),
                    m.states,
                    m.burst_latency.map_or_else(|| "-".to_string(), |l| format!(
                        "{:.0}/{:.0}/{:.0}",
                        l.p50_ns.unwrap_or(0.0),
                        l.p99_ns.unwrap_or(0.0),
                        l.p999_ns.unwrap_or(0.0)
                    ))
                ),
                (None, _, error) => eprintln!(
                    "bench: [{}] dpf {i}/{} failed: {}",
                    spec.label,
                    spec.repeat,
                    error.as_deref().unwrap_or("?")
                ),
            }
            result.dpf.push(run);
            if failed {
                bail!("dpf run {i} failed; not repeating");
            }
            if spec.testpmd {
                let run =
                    self.run_testpmd(&dir, i, &traffic, spec.workers, &memory, periods, allowance);
                match (&run.measurement, &run.error) {
                    (Some(m), _) => eprintln!(
                        "bench: [{}] testpmd {i}/{}: {:.3} Mpps forwarded",
                        spec.label, spec.repeat, m.forwarded_mpps
                    ),
                    (None, error) => eprintln!(
                        "bench: [{}] testpmd {i}/{} failed: {}",
                        spec.label,
                        spec.repeat,
                        error.as_deref().unwrap_or("?")
                    ),
                }
                result.testpmd.push(run);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_dpf(
        &self,
        dir: &Path,
        i: usize,
        config: &Path,
        preload: Option<&Path>,
        window: WindowSpec,
        expected: &[&str],
        allowance: Duration,
    ) -> DpfRun {
        let mut args = vec![
            "--config".to_string(),
            config.display().to_string(),
            "--json-stats".to_string(),
            "--stats-every".to_string(),
            STATS_EVERY_MS.to_string(),
        ];
        if let Some(p) = preload {
            args.extend(["--preload".to_string(), p.display().to_string()]);
        }
        let command = command_line(&self.dpf, &args);
        let mut run = DpfRun {
            command,
            measurement: None,
            lossy: None,
            error: None,
            final_stats: None,
        };
        match self.dpf_window(dir, i, &args, window, allowance) {
            Ok((samples, final_stats)) => {
                run.final_stats = final_stats;
                match window
                    .window(&samples)
                    .map_err(anyhow::Error::from)
                    .and_then(|w| Ok(DpfMeasurement::from_window(&w)?))
                {
                    Ok(m) => {
                        run.lossy = m.lossy(expected).map(|l| l.to_string());
                        run.measurement = Some(m);
                    }
                    Err(e) => run.error = Some(format!("{e:#}")),
                }
            }
            Err(e) => run.error = Some(format!("{e:#}")),
        }
        run
    }

    /// Runs dpf until its window is complete; returns every periodic
    /// sample and the final line.
    fn dpf_window(
        &self,
        dir: &Path,
        i: usize,
        args: &[String],
        window: WindowSpec,
        allowance: Duration,
    ) -> anyhow::Result<(Vec<StatsLine>, Option<StatsLine>)> {
        let mut command = Command::new(&self.dpf);
        command.args(args);
        let proc = Supervised::start(
            "dpf",
            command,
            &dir.join(format!("dpf-{i}.stdout")),
            &dir.join(format!("dpf-{i}.stderr")),
        )?;
        let deadline = Instant::now() + allowance;
        let mut samples = Vec::new();
        loop {
            match proc.next_line(deadline) {
                Next::Line(line) => {
                    if let Some(s) = stats::parse_line(&line)? {
                        samples.push(s);
                        if window.window(&samples).is_ok() {
                            break;
                        }
                    }
                }
                Next::Timeout => bail!(
                    "dpf (pid {}) did not complete its window within {allowance:?}",
                    proc.pid()
                ),
                Next::Closed => {
                    let tail = proc.stderr_tail(8);
                    let status = proc.wait()?;
                    bail!("dpf exited ({status}) before its window completed:\n{tail}");
                }
            }
        }
        let (rest, status) = proc.interrupt_and_wait()?;
        let mut final_stats = None;
        for line in rest {
            if let Ok(Some(s)) = stats::parse_line(&line) {
                if s.is_final {
                    final_stats = Some(s);
                }
            }
        }
        if !status.success() {
            eprintln!("bench: dpf exited with {status} after SIGINT");
        }
        Ok((samples, final_stats))
    }

    #[allow(clippy::too_many_arguments)]
    fn run_testpmd(
        &self,
        dir: &Path,
        i: usize,
        traffic: &Traffic,
        workers: usize,
        memory: &MemoryPlan,
        periods: PeriodWindow,
        allowance: Duration,
    ) -> TestpmdRun {
        let prefix = self.file_prefix();
        let mut args = testpmd_args(traffic, workers, memory, &prefix);
        let program = match &self.stdbuf {
            Some(stdbuf) => {
                let mut with = vec!["-oL".to_string(), self.testpmd.display().to_string()];
                with.append(&mut args);
                args = with;
                stdbuf.clone()
            }
            None => self.testpmd.clone(),
        };
        let command = command_line(&program, &args);
        let mut run = TestpmdRun {
            command,
            measurement: None,
            error: None,
        };
        let result = (|| -> anyhow::Result<TestpmdMeasurement> {
            let mut cmd = Command::new(&program);
            cmd.args(&args);
            let proc = Supervised::start(
                "dpdk-testpmd",
                cmd,
                &dir.join(format!("testpmd-{i}.stdout")),
                &dir.join(format!("testpmd-{i}.stderr")),
            )?;
            let mut parser = testpmd::Parser::new(2);
            let deadline = Instant::now() + allowance;
            while parser.snapshots().len() < periods.needed() {
                match proc.next_line(deadline) {
                    Next::Line(line) => parser.feed_line(&line),
                    Next::Timeout => bail!(
                        "testpmd (pid {}) did not print {} statistics within {allowance:?}",
                        proc.pid(),
                        periods.needed()
                    ),
                    Next::Closed => {
                        let tail = proc.stderr_tail(8);
                        let status = proc.wait()?;
                        bail!("testpmd exited ({status}) before its window completed:\n{tail}");
                    }
                }
            }
            let (rest, _) = proc.interrupt_and_wait()?;
            for line in rest {
                parser.feed_line(&line);
            }
            Ok(TestpmdMeasurement::from_parser(&parser, periods)?)
        })();
        match result {
            Ok(m) => run.measurement = Some(m),
            Err(e) => run.error = Some(format!("{e:#}")),
        }
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn dpf_run(mpps: f64, dropped: u64, lossy: bool) -> DpfRun {
        DpfRun {
            command: String::new(),
            measurement: Some(DpfMeasurement {
                window_start_s: 2.0,
                window_s: 1.0,
                workers: 1,
                rx: (mpps * 1e6) as u64,
                forwarded: (mpps * 1e6) as u64,
                dropped,
                handed_off: 0,
                rx_mpps: mpps,
                forwarded_mpps: mpps,
                rx_wire_gbit_s: mpps * 84.0 * 8.0 / 1e3,
                cycles_per_packet: Some(100.0),
                states: 10,
                states_created_per_s: 0.0,
                state_hits_mpps: 0.0,
                memory_per_state_bytes: None,
                drops: BTreeMap::new(),
                burst_latency: Some(LatencySummary {
                    count: 10,
                    p50_ns: Some(mpps * 100.0),
                    p99_ns: Some(mpps * 200.0),
                    p999_ns: None,
                    max_ns: None,
                }),
            }),
            lossy: lossy.then(|| format!("LOSSY ({dropped})")),
            error: None,
            final_stats: None,
        }
    }

    fn testpmd_run(mpps: Option<f64>) -> TestpmdRun {
        TestpmdRun {
            command: String::new(),
            measurement: mpps.map(|m| TestpmdMeasurement {
                periods: 1,
                forwarded_mpps: m,
                rx_mpps: m,
                rx_wire_gbit_s: 0.0,
                rx_errors: 0,
                accumulated: None,
            }),
            error: mpps.is_none().then(|| "failed".to_string()),
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn ratio_is_the_median_of_pairs() {
        let dpf = [
            dpf_run(10.0, 0, false),
            dpf_run(12.0, 0, false),
            dpf_run(9.0, 0, false),
        ];
        let tp = [
            testpmd_run(Some(20.0)),
            testpmd_run(Some(20.0)),
            testpmd_run(Some(10.0)),
        ];
        let s = summarize(&dpf, &tp);
        assert_eq!(s.dpf_mpps, Some(10.0));
        assert_eq!(s.testpmd_mpps, Some(20.0));
        // Pair ratios 0.5, 0.6, 0.9.
        assert_eq!(s.ratio, Some(0.6));
        assert_eq!(
            (s.burst_p50_ns, s.burst_p99_ns),
            (Some(1000.0), Some(2000.0))
        );
        assert_eq!(s.burst_p999_ns, None);
        assert_eq!(s.lossy, None);
        assert_eq!(s.error, None);
        // A failed testpmd run drops its pair only.
        let tp = [
            testpmd_run(Some(20.0)),
            testpmd_run(None),
            testpmd_run(Some(10.0)),
        ];
        assert_eq!(summarize(&dpf, &tp).ratio, Some((0.5 + 0.9) / 2.0));
        // Without testpmd there is no ratio.
        assert_eq!(summarize(&dpf, &[]).ratio, None);
    }

    #[test]
    fn lossy_runs_are_not_throughput() {
        let dpf = [
            dpf_run(10.0, 0, false),
            dpf_run(12.0, 50_000, true),
            dpf_run(9.0, 20_000, true),
        ];
        let tp = [
            testpmd_run(Some(20.0)),
            testpmd_run(Some(20.0)),
            testpmd_run(Some(20.0)),
        ];
        let s = summarize(&dpf, &tp);
        assert_eq!(s.dpf_mpps, None);
        assert_eq!(s.ratio, None);
        // The worst run (0.42% against 0.22%).
        assert_eq!(s.lossy.as_deref(), Some("LOSSY (50000)"));
        assert_eq!(s.testpmd_mpps, Some(20.0));
    }

    #[test]
    fn errors_are_summarized() {
        let failed = DpfRun {
            command: String::new(),
            measurement: None,
            lossy: None,
            error: Some("dpf exited".into()),
            final_stats: None,
        };
        let s = summarize(&[failed], &[]);
        assert_eq!(s.error.as_deref(), Some("dpf exited"));
        assert_eq!(s.dpf_mpps, None);
    }

    #[test]
    fn keys_ignore_labels_and_commands_quote() {
        let spec = RunSpec {
            label: "a".into(),
            profile: Profile::EstTcp,
            flows: 10,
            frame_size: None,
            ipv6: false,
            workers: 1,
            rules: RulesChoice::None,
            warmup_s: 1,
            duration_s: 2,
            repeat: 1,
            testpmd: true,
        };
        let other = RunSpec {
            label: "b".into(),
            ..spec.clone()
        };
        assert_eq!(spec.key(), other.key());
        assert_ne!(
            spec.key(),
            RunSpec {
                flows: 11,
                ..spec.clone()
            }
            .key()
        );
        assert_eq!(
            command_line(
                Path::new("/x/dpdk-testpmd"),
                &["--log-level".into(), "*:error".into()]
            ),
            "/x/dpdk-testpmd --log-level '*:error'"
        );
        assert_eq!(sanitize("est-tcp 10k/x"), "est-tcp_10k_x");
    }
}
