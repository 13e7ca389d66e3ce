//! `bench sweep workers`: dpf's forwarding rate and handoff share over
//! worker counts, on the multi-queue rig (`bench rss-gen`, see
//! [`crate::rss_gen`]) instead of pcap ports.
//!
//! A point (W workers) runs `repeat` times: dpf with W workers, its two
//! ports on the rig's transport with W queue pairs and `rx_placement =
//! "toeplitz"`, then the generator with W queues in its timed mode. The
//! window is measured on dpf's `--stats-every` lines like the pcap runs
//! ([`super::stats`]), except that its warmup counts from the first
//! sample with traffic (the generator starts after dpf and brings its
//! links up first). Reported per point: Mpps forwarded and received, the
//! share of received packets handed to another worker, the generator's
//! offered rate (when it is no higher than dpf's, the generator is the
//! bottleneck), drops, and where every thread ran ([`CpuPlan`]).
//!
//! Order of shutdown: the generator stops sending on its own, prints its
//! report and idles; only then is dpf interrupted (a memif side that is
//! busy must disconnect first, see the live generator), and the generator
//! exits when its links go down.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::measure::{command_line, median, sanitize, Harness, STATS_EVERY_MS};
use super::setup::{toml_string, with_states_limit};
use super::spawn::{Next, Supervised};
use super::stats::{self, DpfMeasurement, StatsLine, Window, WindowError, WindowSpec};
use crate::rss_gen::rig::{CpuPlan, RigMemory, Transport};

/// The ruleset when none is given: every conversation gets a state on its
/// request and its reply matches it (what flow placement is about).
pub const DEFAULT_RULES: &str = "pass all keep state\n";

/// Seconds the generator keeps sending beyond warmup + duration: dpf's
/// samples are 0.5 s apart and traffic starts up to one sample before the
/// first sample that counts it.
const SEND_MARGIN_S: u64 = 2;

/// Seconds the links may take to come up.
const LINK_TIMEOUT_S: u64 = 30;

/// What to measure at one worker count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RigSpec {
    /// Name in tables and of the run directory.
    pub label: String,
    /// dpf workers = queue pairs per link.
    pub workers: usize,
    /// How the generator reaches dpf.
    pub transport: Transport,
    /// UDP conversations.
    pub flows: u32,
    /// Seconds discarded after traffic starts.
    pub warmup_s: u64,
    /// Seconds measured.
    pub duration_s: u64,
    /// Runs.
    pub repeat: usize,
    /// A pf.conf for dpf ([`DEFAULT_RULES`] when `None`).
    pub rules: Option<PathBuf>,
}

/// One (dpf, generator) run.
#[derive(Clone, Debug, Serialize)]
pub struct RigRun {
    /// dpf's command line.
    pub dpf_command: String,
    /// The generator's command line.
    pub generator_command: String,
    /// dpf's window, if it was measured.
    pub measurement: Option<DpfMeasurement>,
    /// "LOSSY (...)" if dpf dropped more than 0.1% of what it received.
    pub lossy: Option<String>,
    /// The generator's JSON report.
    pub generator: Option<serde_json::Value>,
    /// Why the run measured nothing.
    pub error: Option<String>,
}

/// The figures the reports print for one point.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RigSummary {
    /// Median forwarded Mpps (absent when a run was LOSSY).
    pub dpf_mpps: Option<f64>,
    /// Median received Mpps.
    pub rx_mpps: Option<f64>,
    /// Median share of received packets handed to another worker.
    pub handoff_share: Option<f64>,
    /// Median of the generator's sent Mpps over its whole sending time.
    pub generator_mpps: Option<f64>,
    /// States at the end of the last window.
    pub states: Option<u64>,
    /// Packets dropped in the windows, all runs.
    pub dropped: Option<u64>,
    /// The first LOSSY text, if a run was.
    pub lossy: Option<String>,
    /// Why nothing was measured.
    pub error: Option<String>,
}

/// Everything about one point.
#[derive(Clone, Debug, Serialize)]
pub struct RigResult {
    /// What was asked.
    pub spec: RigSpec,
    /// Where the processes ran.
    pub cpus: Option<CpuPlan>,
    /// dpf's (and the generator's) mbufs and EAL memory.
    pub memory: RigMemory,
    /// The first run's dpf configuration.
    pub dpf_config: Option<String>,
    /// The runs, in order.
    pub runs: Vec<RigRun>,
    /// The figures.
    pub summary: RigSummary,
}

/// The rig sweep's results.
#[derive(Clone, Debug, Serialize)]
pub struct RigSweep {
    /// The transport of every point.
    pub transport: Transport,
    /// Points in worker order.
    pub points: Vec<RigResult>,
}

/// The window over `samples` whose warmup counts from the first sample
/// that received a packet.
pub fn traffic_window(
    samples: &[StatsLine],
    warmup_s: f64,
    duration_s: f64,
) -> Result<Window<'_>, WindowError> {
    let periodic = || samples.iter().filter(|s| !s.is_final);
    let Some(first) = periodic().find(|s| s.rx > 0) else {
        return Err(WindowError::NoTraffic {
            last_s: periodic().next_back().map_or(0.0, |s| s.elapsed_s),
        });
    };
    WindowSpec {
        warmup_s: first.elapsed_s + warmup_s,
        duration_s,
    }
    .window(samples)
}

/// The share of `m`'s received packets that were handed off.
pub fn handoff_share(m: &DpfMeasurement) -> Option<f64> {
    (m.rx > 0).then(|| m.handed_off as f64 / m.rx as f64)
}

/// The figures of a point's runs (pure).
pub fn summarize(runs: &[RigRun]) -> RigSummary {
    let measured: Vec<&DpfMeasurement> =
        runs.iter().filter_map(|r| r.measurement.as_ref()).collect();
    let lossy = runs.iter().find_map(|r| r.lossy.clone());
    let of = |f: &dyn Fn(&DpfMeasurement) -> Option<f64>| {
        median(&measured.iter().filter_map(|m| f(m)).collect::<Vec<_>>())
    };
    let generator: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.generator.as_ref()?["sent_mpps"].as_f64())
        .collect();
    RigSummary {
        dpf_mpps: if lossy.is_some() {
            None
        } else {
            of(&|m| Some(m.forwarded_mpps))
        },
        rx_mpps: of(&|m| Some(m.rx_mpps)),
        handoff_share: of(&handoff_share),
        generator_mpps: median(&generator),
        states: measured.last().map(|m| m.states),
        dropped: (!measured.is_empty()).then(|| measured.iter().map(|m| m.dropped).sum()),
        lossy,
        error: if measured.is_empty() {
            runs.iter()
                .find_map(|r| r.error.clone())
                .or_else(|| Some("no run".to_string()))
        } else {
            None
        },
    }
}

/// dpf's configuration for `spec`: ports `lan` and `wan` on the rig's
/// transport with `rx_placement = "toeplitz"`, in one wire pair.
pub fn dpf_config(
    spec: &RigSpec,
    cpus: &CpuPlan,
    memory: RigMemory,
    file_prefix: &str,
    sockets: [&Path; 2],
    rules: &Path,
) -> String {
    use std::fmt::Write as _;
    let queues = spec.workers as u16;
    let eal: Vec<String> = [
        "--no-huge",
        "-m",
        &memory.eal_mb.to_string(),
        "--no-shconf",
        "--file-prefix",
        file_prefix,
        "--lcores",
        &cpus.dpf_lcores(),
        "--log-level",
        "*:error",
    ]
    .iter()
    .map(|a| toml_string(a))
    .collect();
    let mut out = String::new();
    let _ = writeln!(out, "# written by bench sweep workers (rig)");
    let _ = writeln!(out, "[eal]\nargs = [{}]\n", eal.join(", "));
    let _ = writeln!(
        out,
        "[dataplane]\nmode = \"wire\"\nmbufs = {}\nrules = {}",
        memory.mbufs,
        toml_string(&rules.display().to_string())
    );
    for (index, name) in ["lan", "wan"].iter().enumerate() {
        let _ = writeln!(
            out,
            "\n[[port]]\nname = \"{name}\"\ndevice = {}\nrx_placement = \"toeplitz\"",
            toml_string(&spec.transport.dut_device(index, sockets[index], queues))
        );
    }
    let _ = writeln!(out, "\n[wire]\npairs = [[\"lan\", \"wan\"]]");
    out
}

/// The generator's arguments for `spec` (without the program).
pub fn generator_args(
    spec: &RigSpec,
    cpus: &CpuPlan,
    file_prefix: &str,
    sockets: [&Path; 2],
) -> Vec<String> {
    vec![
        "rss-gen".into(),
        "--transport".into(),
        spec.transport.name().into(),
        "--lan-socket".into(),
        sockets[0].display().to_string(),
        "--wan-socket".into(),
        sockets[1].display().to_string(),
        "--queues".into(),
        spec.workers.to_string(),
        "--flows".into(),
        spec.flows.to_string(),
        "--seconds".into(),
        (spec.warmup_s + spec.duration_s + SEND_MARGIN_S).to_string(),
        "--file-prefix".into(),
        file_prefix.into(),
        "--cpu".into(),
        cpus.generator.to_string(),
        "--link-timeout-s".into(),
        LINK_TIMEOUT_S.to_string(),
    ]
}

impl Harness {
    /// Runs `spec` on the rig with the generator `bench` on the CPUs
    /// `cpus`; errors are recorded in the result.
    pub fn measure_rig(&self, spec: &RigSpec, bench: &Path, cpus: &[usize]) -> RigResult {
        let memory = RigMemory::for_queues(spec.workers as u16);
        let mut result = RigResult {
            spec: spec.clone(),
            cpus: CpuPlan::new(cpus, spec.workers),
            memory,
            dpf_config: None,
            runs: Vec::new(),
            summary: RigSummary::default(),
        };
        if let Err(e) = self.measure_rig_into(spec, bench, &mut result) {
            eprintln!("bench: [{}] {e:#}", spec.label);
            result.summary = summarize(&result.runs);
            if result.summary.error.is_none() {
                result.summary.error = Some(format!("{e:#}"));
            }
            return result;
        }
        result.summary = summarize(&result.runs);
        result
    }

    fn measure_rig_into(
        &self,
        spec: &RigSpec,
        bench: &Path,
        result: &mut RigResult,
    ) -> anyhow::Result<()> {
        let Some(cpus) = result.cpus.clone() else {
            bail!("no CPU to run on (workers {})", spec.workers);
        };
        let dir = self.out.join("runs").join(sanitize(&spec.label));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let rules_text = match &spec.rules {
            Some(p) => fs::read_to_string(p)
                .with_context(|| format!("reading the ruleset {}", p.display()))?,
            None => DEFAULT_RULES.to_string(),
        };
        let rules = dir.join("rig.pf.conf");
        fs::write(
            &rules,
            with_states_limit(&rules_text, u64::from(spec.flows)),
        )
        .with_context(|| format!("writing {}", rules.display()))?;
        for i in 1..=spec.repeat {
            let run = self.rig_run(spec, bench, &cpus, result.memory, &dir, &rules, i, result)?;
            match (&run.measurement, &run.error) {
                (Some(m), _) => eprintln!(
                    "bench: [{}] run {i}/{}: {:.3} Mpps forwarded, {} of {} handed off, generator {:.3} Mpps{}",
                    spec.label,
                    spec.repeat,
                    m.forwarded_mpps,
                    m.handed_off,
                    m.rx,
                    run.generator
                        .as_ref()
                        .and_then(|g| g["sent_mpps"].as_f64())
                        .unwrap_or(0.0),
                    run.lossy.as_deref().map_or(String::new(), |l| format!(", {l}"))
                ),
                (None, e) => eprintln!(
                    "bench: [{}] run {i}/{} failed: {}",
                    spec.label,
                    spec.repeat,
                    e.as_deref().unwrap_or("?")
                ),
            }
            let failed = run.measurement.is_none();
            result.runs.push(run);
            if failed {
                bail!("run {i} failed; not repeating");
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn rig_run(
        &self,
        spec: &RigSpec,
        bench: &Path,
        cpus: &CpuPlan,
        memory: RigMemory,
        dir: &Path,
        rules: &Path,
        i: usize,
        result: &mut RigResult,
    ) -> anyhow::Result<RigRun> {
        let prefix = self.file_prefix();
        // Unix socket paths are short (108 bytes): keep them out of `out`.
        let sock_dir = std::env::temp_dir().join(format!("bench-rig-{prefix}"));
        fs::create_dir_all(&sock_dir)
            .with_context(|| format!("creating {}", sock_dir.display()))?;
        let (lan, wan) = (sock_dir.join("lan.sock"), sock_dir.join("wan.sock"));
        let sockets = [lan.as_path(), wan.as_path()];
        let config = dpf_config(spec, cpus, memory, &prefix, sockets, rules);
        let config_path = dir.join(format!("dpf-{i}.toml"));
        fs::write(&config_path, &config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        result.dpf_config.get_or_insert(config);
        let dpf_args = vec![
            "--config".to_string(),
            config_path.display().to_string(),
            "--json-stats".to_string(),
            "--stats-every".to_string(),
            STATS_EVERY_MS.to_string(),
        ];
        let gen_args = generator_args(spec, cpus, &format!("{prefix}g"), sockets);
        let mut run = RigRun {
            dpf_command: command_line(&self.dpf, &dpf_args),
            generator_command: command_line(bench, &gen_args),
            measurement: None,
            lossy: None,
            generator: None,
            error: None,
        };
        match self.rig_processes(dir, i, &dpf_args, bench, &gen_args, sockets, spec) {
            Ok((samples, generator)) => {
                run.generator = generator;
                match traffic_window(&samples, spec.warmup_s as f64, spec.duration_s as f64)
                    .map_err(anyhow::Error::from)
                    .and_then(|w| Ok(DpfMeasurement::from_window(&w)?))
                {
                    Ok(m) => {
                        run.lossy = m.lossy(&[]).map(|l| l.to_string());
                        run.measurement = Some(m);
                    }
                    Err(e) => run.error = Some(format!("{e:#}")),
                }
            }
            Err(e) => run.error = Some(format!("{e:#}")),
        }
        let _ = fs::remove_dir_all(&sock_dir);
        Ok(run)
    }

    /// Starts dpf, then the generator once dpf's sockets exist; returns
    /// dpf's samples up to the end of the window and the generator's
    /// report.
    #[allow(clippy::too_many_arguments)]
    fn rig_processes(
        &self,
        dir: &Path,
        i: usize,
        dpf_args: &[String],
        bench: &Path,
        gen_args: &[String],
        sockets: [&Path; 2],
        spec: &RigSpec,
    ) -> anyhow::Result<(Vec<StatsLine>, Option<serde_json::Value>)> {
        let mut command = Command::new(&self.dpf);
        command.args(dpf_args);
        let dpf = Supervised::start(
            "dpf",
            command,
            &dir.join(format!("dpf-{i}.stdout")),
            &dir.join(format!("dpf-{i}.stderr")),
        )?;
        let mut samples = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(LINK_TIMEOUT_S);
        while !sockets.iter().all(|s| s.exists()) {
            match dpf.next_line(Instant::now() + Duration::from_millis(50)) {
                Next::Line(line) => samples.extend(stats::parse_line(&line)?),
                Next::Timeout => {}
                Next::Closed => {
                    let tail = dpf.stderr_tail(8);
                    let status = dpf.wait()?;
                    bail!("dpf exited ({status}) before it listened:\n{tail}");
                }
            }
            if Instant::now() >= deadline {
                bail!("dpf (pid {}) did not create its sockets", dpf.pid());
            }
        }
        let mut command = Command::new(bench);
        command.args(gen_args);
        let gen = Supervised::start(
            "rss-gen",
            command,
            &dir.join(format!("gen-{i}.stdout")),
            &dir.join(format!("gen-{i}.stderr")),
        )?;
        let deadline = Instant::now()
            + Duration::from_secs(LINK_TIMEOUT_S + spec.warmup_s + spec.duration_s + 10);
        loop {
            match dpf.next_line(deadline) {
                Next::Line(line) => {
                    if let Some(s) = stats::parse_line(&line)? {
                        samples.push(s);
                        if traffic_window(&samples, spec.warmup_s as f64, spec.duration_s as f64)
                            .is_ok()
                        {
                            break;
                        }
                    }
                }
                Next::Timeout => bail!(
                    "dpf (pid {}) did not complete its window; the generator said:\n{}",
                    dpf.pid(),
                    gen.stderr_tail(8)
                ),
                Next::Closed => {
                    let tail = dpf.stderr_tail(8);
                    let status = dpf.wait()?;
                    bail!("dpf exited ({status}) before its window completed:\n{tail}");
                }
            }
        }
        // The generator stops sending on its own and prints its report;
        // then dpf may close the links.
        let report_by = Instant::now() + Duration::from_secs(SEND_MARGIN_S + 5 + 10);
        let mut report = None;
        while report.is_none() {
            match gen.next_line(report_by) {
                Next::Line(line) => report = serde_json::from_str(&line).ok(),
                Next::Timeout | Next::Closed => break,
            }
        }
        let (_, status) = dpf.interrupt_and_wait()?;
        if !status.success() {
            eprintln!("bench: dpf exited with {status} after SIGINT");
        }
        let status = gen.wait()?;
        if report.is_none() {
            bail!(
                "the generator gave no report ({status}):\n{}",
                fs::read_to_string(dir.join(format!("gen-{i}.stderr"))).unwrap_or_default()
            );
        }
        Ok((samples, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(elapsed_s: f64, rx: u64, handed_off: u64) -> StatsLine {
        StatsLine {
            elapsed_s,
            workers: 2,
            rx,
            forwarded: rx,
            handed_off,
            ..StatsLine::default()
        }
    }

    fn spec(workers: usize, transport: Transport) -> RigSpec {
        RigSpec {
            label: format!("rig-{}-w{workers}", transport.name()),
            workers,
            transport,
            flows: 1000,
            warmup_s: 1,
            duration_s: 2,
            repeat: 1,
            rules: None,
        }
    }

    #[test]
    fn the_warmup_counts_from_the_first_packet() {
        let samples: Vec<StatsLine> = [
            (0.5, 0, 0),
            (1.0, 0, 0),
            (1.5, 100, 0),
            (2.0, 1_000, 0),
            (2.5, 2_000, 10),
            (3.0, 3_000, 10),
            (3.5, 4_000, 10),
            (4.0, 5_000, 20),
            (4.5, 6_000, 20),
        ]
        .iter()
        .map(|&(t, rx, h)| sample(t, rx, h))
        .collect();
        let w = traffic_window(&samples, 1.0, 2.0).unwrap();
        assert_eq!((w.start.elapsed_s, w.end.elapsed_s), (2.5, 4.5));
        let m = DpfMeasurement::from_window(&w).unwrap();
        assert_eq!((m.rx, m.handed_off), (4_000, 10));
        assert_eq!(handoff_share(&m), Some(10.0 / 4_000.0));
        // Not complete yet, and no traffic at all.
        assert!(matches!(
            traffic_window(&samples[..6], 1.0, 2.0),
            Err(WindowError::NoEnd { .. })
        ));
        assert_eq!(
            traffic_window(&samples[..2], 1.0, 2.0),
            Err(WindowError::NoTraffic { last_s: 1.0 })
        );
    }

    fn run(mpps: f64, handed: u64, dropped: u64, lossy: bool) -> RigRun {
        let rx = (mpps * 1e6) as u64;
        let a = sample(1.0, 0, 0);
        let mut b = sample(2.0, rx, handed);
        b.dropped = dropped;
        let m = DpfMeasurement::from_window(&Window { start: &a, end: &b }).unwrap();
        RigRun {
            dpf_command: "dpf".into(),
            generator_command: "bench rss-gen".into(),
            lossy: lossy.then(|| "LOSSY (2.00% dropped)".to_string()),
            measurement: Some(m),
            generator: Some(serde_json::json!({ "sent_mpps": mpps * 1.1 })),
            error: None,
        }
    }

    #[test]
    fn summaries_take_medians_and_hide_lossy_rates() {
        let s = summarize(&[run(1.0, 0, 0, false), run(3.0, 30_000, 5, false)]);
        assert_eq!(s.dpf_mpps, Some(2.0));
        assert_eq!(s.handoff_share, Some(0.005));
        assert!((s.generator_mpps.unwrap() - 2.2).abs() < 1e-9);
        assert_eq!((s.dropped, s.error.as_deref()), (Some(5), None));
        let s = summarize(&[run(1.0, 0, 20_000, true)]);
        assert_eq!(s.dpf_mpps, None);
        assert_eq!(s.rx_mpps, Some(1.0));
        assert_eq!(s.lossy.as_deref(), Some("LOSSY (2.00% dropped)"));
        let failed = RigRun {
            measurement: None,
            generator: None,
            lossy: None,
            error: Some("links not up".into()),
            ..run(1.0, 0, 0, false)
        };
        assert_eq!(summarize(&[failed]).error.as_deref(), Some("links not up"));
        assert_eq!(summarize(&[]).error.as_deref(), Some("no run"));
    }

    #[test]
    fn config_and_generator_agree_on_the_link() {
        let cpus = CpuPlan::new(&[0, 1, 2], 2).unwrap();
        let memory = RigMemory::for_queues(2);
        let (lan, wan) = (Path::new("/tmp/x/lan.sock"), Path::new("/tmp/x/wan.sock"));
        let s = spec(2, Transport::Vhost);
        let cfg = dpf_config(
            &s,
            &cpus,
            memory,
            "p1",
            [lan, wan],
            Path::new("/r/rig.pf.conf"),
        );
        assert!(cfg.contains("\"--lcores\", \"0@0,1@1,2@2\""), "{cfg}");
        assert!(cfg.contains("device = \"net_vhost0,iface=/tmp/x/lan.sock,queues=2\""));
        assert!(cfg.contains("device = \"net_vhost1,iface=/tmp/x/wan.sock,queues=2\""));
        assert_eq!(cfg.matches("rx_placement = \"toeplitz\"").count(), 2);
        assert!(cfg.contains(&format!("mbufs = {}", memory.mbufs)));
        assert!(cfg.contains("rules = \"/r/rig.pf.conf\""));
        let value: toml::Value = toml::from_str(&cfg).unwrap();
        assert_eq!(value["wire"]["pairs"][0][1].as_str(), Some("wan"));
        let args = generator_args(&s, &cpus, "p1g", [lan, wan]);
        let joined = args.join(" ");
        assert!(joined.starts_with("rss-gen --transport vhost --lan-socket /tmp/x/lan.sock --wan-socket /tmp/x/wan.sock --queues 2"));
        assert!(joined.contains("--seconds 5 ") && joined.contains("--cpu 0 "));
    }
}
