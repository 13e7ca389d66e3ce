//! `bench run`, `bench sweep` and `bench suite`: dpf's throughput harness.
//!
//! A measurement ([`measure::RunSpec`]) generates (or reuses) the pcaps of
//! a traffic profile with `bench gen`'s code, then runs `repeat` pairs of
//! processes on them, alternating: dpf in wire mode (`lan` ↔ `wan`, both
//! net_pcap `infinite_rx` ports replaying the steady pcaps, transmit
//! dropped by the PMD), then `dpdk-testpmd` io forwarding between the same
//! two devices on the same cores. dpf is read through its `--stats-every
//! 500` JSON lines, testpmd through its per-second statistics; the warmup
//! is discarded from both. dpf's forwarded rate divided by testpmd's
//! (median over the pairs) is the headline: how close dpf gets to a
//! forwarder that does no work at all on this machine.
//!
//! With a ruleset (`--rules FILE`, or the generated ones of `sweep rules`)
//! dpf's configuration names it under `[dataplane] rules`, with a `set
//! limit states` for the flow count added in front, and a profile with
//! setup packets is given `--preload <name>-setup.pcapng`, which dpf
//! processes before its workers start, so the steady pcaps hit established
//! states from the first packet.
//!
//! Files: `<out>/pcaps/` caches the generated pcaps by name;
//! `<out>/runs/<label>/` holds every configuration, ruleset, stdout and
//! stderr; `<out>/<report>.json` and `.md` the report; `<out>/sweep-*.svg`
//! the plots.
//!
//! `bench sweep workers` is measured on the multi-queue rig instead
//! ([`rig`]): pcap ports replay the same capture on every queue, so they
//! cannot show flows staying on the worker of their queue; the rig's
//! generator places each flow as a NIC's RSS would, and the sweep reports
//! dpf's rate and the share of packets handed between workers per worker
//! count (no testpmd baseline: testpmd would forward without states).
//!
//! Modules: [`stats`] (dpf's lines and the window), [`testpmd`] (testpmd's
//! output), [`setup`] (pcaps, configs, command lines), [`rules`]
//! (generated rulesets), [`spawn`] (child processes), [`measure`] (one
//! spec end to end), [`rig`] (the workers sweep on the rig), [`report`]
//! and [`plot`].

pub mod measure;
pub mod plot;
pub mod report;
pub mod rig;
pub mod rules;
pub mod setup;
pub mod spawn;
pub mod stats;
pub mod testpmd;

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

use anyhow::{bail, Context};

use crate::gen::plan::Profile;
use crate::rss_gen::rig::Transport;
use measure::{Harness, RulesChoice, RunResult, RunSpec};
use plot::{plot_sweep, PlotPoint};
use report::{human_count, notes, Machine, Report, Sweep, SweepKind, SweepPoint};
use rig::{RigSpec, RigSweep};

/// Options every harness command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct HarnessArgs {
    /// Seconds discarded at the start of every process run.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Seconds measured after the warmup [default: 10 for run, 5 for sweep
    /// and suite].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,
    /// (dpf, testpmd) pairs per measurement [default: 3 for run, 2 for
    /// sweep and suite].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub repeat: Option<u64>,
    /// Output directory: pcaps cache, run files, report, plots.
    #[arg(long, default_value = "bench/out")]
    pub out: PathBuf,
    /// pf.conf ruleset for dpf (ports `lan` and `wan`); without it dpf
    /// forwards everything in wire mode.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Skip the dpdk-testpmd baseline (no ratio).
    #[arg(long)]
    pub no_testpmd: bool,
    /// The dpf binary [default: $DPF_BIN, else `dpf` next to this binary].
    #[arg(long)]
    pub dpf: Option<PathBuf>,
    /// The testpmd binary.
    #[arg(long, default_value = "dpdk-testpmd")]
    pub testpmd: String,
    /// Base name of the report files.
    #[arg(long, default_value = "report")]
    pub report: String,
}

/// Arguments of `bench run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Traffic profile.
    #[arg(long, value_enum)]
    pub profile: Profile,
    /// Flows.
    #[arg(long, default_value_t = 10_000)]
    pub flows: u64,
    /// Ethernet frame size with FCS [default: 64; not with imix].
    #[arg(long, value_parser = clap::value_parser!(u16).range(64..=1518))]
    pub frame_size: Option<u16>,
    /// IPv6 traffic.
    #[arg(long)]
    pub ipv6: bool,
    /// dpf workers (testpmd forwarding cores); EAL gets lcores 0..=W.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub workers: u64,
    /// Name in the tables [default: from the profile and flows].
    #[arg(long)]
    pub label: Option<String>,
    #[command(flatten)]
    pub harness: HarnessArgs,
}

/// Arguments of `bench sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// states: est-tcp over 1k, 10k, 100k, 1M flows; rules: new-conn with
    /// 1, 10, 100, 1k, 10k non-matching rules before the pass rule;
    /// workers: UDP conversations from `bench rss-gen` on the multi-queue
    /// rig with 1..=nproc-1 workers (or --workers).
    #[arg(value_enum)]
    pub kind: SweepKind,
    /// workers: the worker counts, e.g. `1,2,4,8` [default: 1..=nproc-1].
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=64))]
    pub workers: Option<Vec<u64>>,
    /// workers: how the rig's generator reaches dpf [default: vhost].
    #[arg(long, value_enum)]
    pub transport: Option<Transport>,
    /// states: add 10M flows (needs ~50 GB for the pcap mbufs).
    #[arg(long)]
    pub big: bool,
    /// Flows of the rules and workers sweeps (the rig: at most 65536).
    #[arg(long, default_value_t = 10_000)]
    pub flows: u64,
    /// rules: the pass rules keep state (then only the first pass of the
    /// looped pcap evaluates the ruleset); default `no state`.
    #[arg(long)]
    pub keep_state: bool,
    /// Ethernet frame size with FCS.
    #[arg(long, value_parser = clap::value_parser!(u16).range(64..=1518))]
    pub frame_size: Option<u16>,
    /// IPv6 traffic.
    #[arg(long)]
    pub ipv6: bool,
    #[command(flatten)]
    pub harness: HarnessArgs,
}

/// Arguments of `bench suite`.
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    #[command(flatten)]
    pub harness: HarnessArgs,
}

/// The flow counts of the states sweep.
pub fn states_points(big: bool) -> Vec<u64> {
    let mut v = vec![1_000, 10_000, 100_000, 1_000_000];
    if big {
        v.push(10_000_000);
    }
    v
}

/// The filler counts of the rules sweep.
pub const RULES_POINTS: [usize; 5] = [1, 10, 100, 1_000, 10_000];

/// The worker counts of the workers sweep on a machine with `nproc` CPUs:
/// one CPU stays for the main lcore.
pub fn workers_points(nproc: usize) -> Vec<u64> {
    (1..=nproc.saturating_sub(1).max(1) as u64).collect()
}

/// Default label of a run.
pub fn default_label(
    profile: Profile,
    flows: u64,
    frame_size: Option<u16>,
    ipv6: bool,
    workers: u64,
) -> String {
    let mut label = format!("{}-{}", profile.name(), human_count(flows));
    if let Some(b) = frame_size {
        label.push_str(&format!("-{b}B"));
    }
    if ipv6 {
        label.push_str("-v6");
    }
    if workers > 1 {
        label.push_str(&format!("-w{workers}"));
    }
    label
}

/// What the workers sweep on the rig runs, from the sweep's arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct RigPlan {
    /// Worker counts, ascending, each once.
    pub workers: Vec<u64>,
    /// The rig's transport.
    pub transport: Transport,
    /// UDP conversations.
    pub flows: u32,
}

impl RigPlan {
    /// The plan, or why the arguments do not apply to the rig.
    pub fn from_args(args: &SweepArgs, nproc: usize) -> anyhow::Result<RigPlan> {
        if args.big || args.keep_state || args.frame_size.is_some() || args.ipv6 {
            bail!("--big, --keep-state, --frame-size and --ipv6 do not apply to `sweep workers` (the rig sends 60-byte IPv4 UDP frames)");
        }
        let flows = u32::try_from(args.flows)
            .ok()
            .filter(|f| (1..=65_536).contains(f))
            .with_context(|| {
                format!(
                    "--flows {}: the rig sends 1 to 65536 conversations",
                    args.flows
                )
            })?;
        let mut workers = args
            .workers
            .clone()
            .unwrap_or_else(|| workers_points(nproc));
        if workers.is_empty() {
            bail!("--workers: give at least one worker count");
        }
        workers.sort_unstable();
        workers.dedup();
        Ok(RigPlan {
            workers,
            transport: args.transport.unwrap_or(Transport::Vhost),
            flows,
        })
    }
}

/// How to read the rig sweep (added to the report's notes).
pub fn rig_notes() -> Vec<String> {
    vec![
        "Rig (sweep workers): `bench rss-gen` sends UDP conversations (request LAN→WAN, then reply WAN→LAN, 60-byte frames) on W queue pairs per link, each frame on the queue symmetric Toeplitz and dpf's 64-entry table pick, into dpf with W workers and rx_placement = \"toeplitz\" (ruleset: `pass all keep state` unless --rules). Paced by transmit: the generator sends as fast as the links take frames.".into(),
        "Rig: dpf Mpps is dpf's forwarded counter over the window, both directions; the warmup counts from dpf's first sample with traffic. handed off: packets received by one worker and passed to the flow's owner, over packets received (expected ~0 with placement). gen Mpps: what the generator sent over its whole run; when it is not above dpf's rate the single generator core is the bottleneck.".into(),
        "Rig CPUs: the generator (and dpf's sleeping control thread) on the first CPU of the affinity mask, workers one per remaining CPU; \"(shared)\" marks workers sharing CPUs, whose figures are functional, not scaling.".into(),
    ]
}

/// One invocation: the harness, the memo of measured specs, and the
/// report being built.
struct Session {
    harness: Harness,
    args: HarnessArgs,
    duration_s: u64,
    repeat: usize,
    memo: HashMap<String, RunResult>,
    report: Report,
}

impl Session {
    fn new(
        args: &HarnessArgs,
        default_duration_s: u64,
        default_repeat: u64,
    ) -> anyhow::Result<Session> {
        let dpf = match (&args.dpf, std::env::var_os("DPF_BIN")) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => PathBuf::from(p),
            (None, None) => std::env::current_exe()
                .context("locating the bench binary")?
                .with_file_name("dpf"),
        };
        if !dpf.is_file() {
            bail!(
                "dpf binary {} not found: build it with `cargo build --release -p control --bin dpf`, or give --dpf / DPF_BIN",
                dpf.display()
            );
        }
        let testpmd = match spawn::find_program(&args.testpmd) {
            Some(p) => p,
            None if args.no_testpmd => PathBuf::from(&args.testpmd),
            None => bail!(
                "{} not found (install dpdk, or run with --no-testpmd)",
                args.testpmd
            ),
        };
        fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        // dpf resolves a relative `rules` against its config's directory and
        // DPDK devargs against the working directory: use absolute paths.
        let out = fs::canonicalize(&args.out)
            .with_context(|| format!("resolving {}", args.out.display()))?;
        let ignore = out.join(".gitignore");
        // The pcaps and run logs are large and reproducible: keep them out
        // of git, and the report files in.
        if !ignore.exists() {
            fs::write(&ignore, "pcaps/\nruns/\n")
                .with_context(|| format!("writing {}", ignore.display()))?;
        }
        let mut args = args.clone();
        args.out = out;
        if let Some(rules) = &args.rules {
            args.rules = Some(
                fs::canonicalize(rules)
                    .with_context(|| format!("ruleset {} not found", rules.display()))?,
            );
        }
        let report = Report {
            machine: Machine::detect(),
            invocation: std::env::args().collect(),
            bench_version: env!("CARGO_PKG_VERSION"),
            dpf: dpf.display().to_string(),
            testpmd: testpmd.display().to_string(),
            notes: notes(),
            runs: Vec::new(),
            sweeps: Vec::new(),
            rig_sweeps: Vec::new(),
        };
        let duration_s = args.duration.unwrap_or(default_duration_s);
        let repeat = args.repeat.unwrap_or(default_repeat) as usize;
        Ok(Session {
            harness: Harness {
                dpf,
                testpmd,
                stdbuf: spawn::find_program("stdbuf"),
                out: args.out.clone(),
                runs: AtomicUsize::new(0),
            },
            args,
            duration_s,
            repeat,
            memo: HashMap::new(),
            report,
        })
    }

    fn rules(&self) -> RulesChoice {
        match &self.args.rules {
            Some(p) => RulesChoice::File(p.clone()),
            None => RulesChoice::None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spec(
        &self,
        label: String,
        profile: Profile,
        flows: u64,
        frame_size: Option<u16>,
        ipv6: bool,
        workers: u64,
        rules: RulesChoice,
    ) -> RunSpec {
        RunSpec {
            label,
            profile,
            flows,
            frame_size,
            ipv6,
            workers: workers as usize,
            rules,
            warmup_s: self.args.warmup,
            duration_s: self.duration_s,
            repeat: self.repeat,
            testpmd: !self.args.no_testpmd,
        }
    }

    /// Measures `spec`, or reuses the result of an identical spec.
    fn measure(&mut self, spec: RunSpec) -> RunResult {
        let key = spec.key();
        if let Some(done) = self.memo.get(&key) {
            let mut again = done.clone();
            again.spec.label = spec.label;
            return again;
        }
        eprintln!("bench: measuring {}", spec.label);
        let result = self.harness.measure(&spec);
        self.memo.insert(key, result.clone());
        result
    }

    /// Measures the sweep `kind` into the report.
    fn sweep(&mut self, kind: SweepKind, args: &SweepArgs) -> anyhow::Result<()> {
        let frame = args.frame_size;
        let specs: Vec<(u64, RunSpec)> = match kind {
            SweepKind::States => states_points(args.big)
                .into_iter()
                .map(|flows| {
                    let label = default_label(Profile::EstTcp, flows, frame, args.ipv6, 1);
                    (
                        flows,
                        self.spec(
                            label,
                            Profile::EstTcp,
                            flows,
                            frame,
                            args.ipv6,
                            1,
                            self.rules(),
                        ),
                    )
                })
                .collect(),
            SweepKind::Rules => RULES_POINTS
                .iter()
                .map(|&fillers| {
                    let rules = RulesChoice::Sweep {
                        fillers,
                        keep_state: args.keep_state,
                    };
                    let label = format!("rules-{}", human_count(fillers as u64));
                    (
                        fillers as u64,
                        self.spec(
                            label,
                            Profile::NewConn,
                            args.flows,
                            frame,
                            args.ipv6,
                            1,
                            rules,
                        ),
                    )
                })
                .collect(),
            SweepKind::Workers => {
                let sweep = self.rig_sweep(args)?;
                self.report.rig_sweeps.push(sweep);
                return Ok(());
            }
        };
        let points = specs
            .into_iter()
            .map(|(x, spec)| SweepPoint {
                x,
                result: self.measure(spec),
            })
            .collect();
        self.report.sweeps.push(Sweep {
            kind,
            axis: kind.axis(),
            points,
        });
        Ok(())
    }

    /// The workers sweep on the multi-queue rig.
    fn rig_sweep(&mut self, args: &SweepArgs) -> anyhow::Result<RigSweep> {
        let plan = RigPlan::from_args(args, self.report.machine.nproc)?;
        let bench = std::env::current_exe().context("locating the bench binary")?;
        let cpus: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect();
        if cpus.is_empty() {
            bail!("cannot read this process's CPU affinity");
        }
        let mut points = Vec::new();
        for &w in &plan.workers {
            let spec = RigSpec {
                label: format!("workers-{w}-{}", plan.transport.name()),
                workers: w as usize,
                transport: plan.transport,
                flows: plan.flows,
                warmup_s: self.args.warmup,
                duration_s: self.duration_s,
                repeat: self.repeat,
                rules: self.args.rules.clone(),
            };
            eprintln!("bench: measuring {} on the rig", spec.label);
            points.push(self.harness.measure_rig(&spec, &bench, &cpus));
        }
        Ok(RigSweep {
            transport: plan.transport,
            points,
        })
    }

    /// Plots the sweeps, writes the report files and prints the table.
    fn finish(mut self) -> anyhow::Result<()> {
        let mut svgs = Vec::new();
        for sweep in &self.report.sweeps {
            let name = format!("sweep-{}.svg", sweep.kind.name());
            let points: Vec<PlotPoint> = sweep
                .points
                .iter()
                .map(|p| PlotPoint {
                    x: p.x,
                    dpf_mpps: p.result.summary.dpf_mpps,
                    testpmd_mpps: p.result.summary.testpmd_mpps,
                })
                .collect();
            let log_x = sweep.kind != SweepKind::Workers;
            plot_sweep(
                &self.args.out.join(&name),
                sweep.kind.title(),
                sweep.axis,
                log_x,
                &points,
            )?;
            svgs.push(name);
        }
        for sweep in &self.report.rig_sweeps {
            let name = format!("sweep-workers-{}.svg", sweep.transport.name());
            let points: Vec<PlotPoint> = sweep
                .points
                .iter()
                .map(|p| PlotPoint {
                    x: p.spec.workers as u64,
                    dpf_mpps: p.summary.dpf_mpps,
                    testpmd_mpps: None,
                })
                .collect();
            let title = format!(
                "{} ({})",
                SweepKind::Workers.title(),
                sweep.transport.name()
            );
            plot_sweep(
                &self.args.out.join(&name),
                &title,
                SweepKind::Workers.axis(),
                false,
                &points,
            )?;
            svgs.push(name);
        }
        // The pcap notes describe pcap runs only; a rig sweep has its own.
        let pcap = !self.report.runs.is_empty() || !self.report.sweeps.is_empty();
        if pcap {
            self.report.notes.push(match &self.args.rules {
                Some(p) => format!("Ruleset: {} (runs and states sweep); the rules sweep generates its own.", p.display()),
                None => "No ruleset given: dpf forwards every packet in wire mode without state lookups (the rules sweep still generates and configures its rulesets).".to_string(),
            });
        } else {
            self.report.notes.clear();
        }
        if !self.report.rig_sweeps.is_empty() {
            self.report.notes.extend(rig_notes());
            if let Some(p) = &self.args.rules {
                self.report
                    .notes
                    .push(format!("Ruleset of the rig: {}.", p.display()));
            }
        }
        self.report
            .write(&self.args.out, &self.args.report, &svgs)?;
        print!("{}", self.report.text());
        let results = self.report.runs.iter().chain(
            self.report
                .sweeps
                .iter()
                .flat_map(|s| s.points.iter().map(|p| &p.result)),
        );
        let mut measured = false;
        let mut any = false;
        for r in results {
            any = true;
            measured |= r.summary.dpf_mpps.is_some() || r.summary.lossy.is_some();
        }
        for p in self.report.rig_sweeps.iter().flat_map(|s| &s.points) {
            any = true;
            measured |= p.summary.dpf_mpps.is_some() || p.summary.lossy.is_some();
        }
        if any && !measured {
            bail!(
                "no measurement succeeded (see the FAILED cells and {}/runs/)",
                self.args.out.display()
            );
        }
        Ok(())
    }
}

/// `bench run`.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    if args.profile == Profile::Imix && args.frame_size.is_some() {
        bail!("--frame-size does not apply to imix");
    }
    let mut session = Session::new(&args.harness, 10, 3)?;
    let label = args.label.clone().unwrap_or_else(|| {
        default_label(
            args.profile,
            args.flows,
            args.frame_size,
            args.ipv6,
            args.workers,
        )
    });
    let rules = session.rules();
    let spec = session.spec(
        label,
        args.profile,
        args.flows,
        args.frame_size,
        args.ipv6,
        args.workers,
        rules,
    );
    let result = session.measure(spec);
    session.report.runs.push(result);
    session.finish()
}

/// `bench sweep`.
pub fn sweep(args: &SweepArgs) -> anyhow::Result<()> {
    if args.kind == SweepKind::Workers {
        // Fail on bad arguments before anything runs.
        RigPlan::from_args(args, 1)?;
    } else {
        if args.workers.is_some() || args.transport.is_some() {
            bail!("--workers and --transport apply to `sweep workers` only");
        }
    }
    let mut session = Session::new(&args.harness, 5, 2)?;
    session.sweep(args.kind, args)?;
    session.finish()
}

/// The standard set: est-tcp 10k and 1M, new-conn, udp and imix at 10k
/// flows, the states sweep and the rules sweep; identical measurements are
/// made once.
pub fn suite(args: &SuiteArgs) -> anyhow::Result<()> {
    let mut session = Session::new(&args.harness, 5, 2)?;
    let runs = [
        (Profile::EstTcp, 10_000),
        (Profile::EstTcp, 1_000_000),
        (Profile::NewConn, 10_000),
        (Profile::Udp, 10_000),
        (Profile::Imix, 10_000),
    ];
    for (profile, flows) in runs {
        let label = default_label(profile, flows, None, false, 1);
        let rules = session.rules();
        let spec = session.spec(label, profile, flows, None, false, 1, rules);
        let result = session.measure(spec);
        session.report.runs.push(result);
    }
    let sweep_args = SweepArgs {
        kind: SweepKind::States,
        workers: None,
        transport: None,
        big: false,
        flows: 10_000,
        keep_state: false,
        frame_size: None,
        ipv6: false,
        harness: args.harness.clone(),
    };
    for kind in [SweepKind::States, SweepKind::Rules] {
        session.sweep(kind, &sweep_args)?;
    }
    session.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep_args(args: &[&str]) -> Result<SweepArgs, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            sweep: SweepArgs,
        }
        Cli::try_parse_from(std::iter::once("sweep").chain(args.iter().copied())).map(|c| c.sweep)
    }

    #[test]
    fn rig_plans() {
        let plan = RigPlan::from_args(&sweep_args(&["workers"]).unwrap(), 8).unwrap();
        assert_eq!(plan.workers, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!((plan.transport, plan.flows), (Transport::Vhost, 10_000));
        let args = sweep_args(&["workers", "--workers", "8,1,4,2,4", "--transport", "memif"]);
        let plan = RigPlan::from_args(&args.unwrap(), 2).unwrap();
        assert_eq!(plan.workers, [1, 2, 4, 8]);
        assert_eq!(plan.transport, Transport::Memif);
        // Bad input is refused with a message.
        assert!(sweep_args(&["workers", "--workers", "0"]).is_err());
        assert!(sweep_args(&["workers", "--workers", "65"]).is_err());
        assert!(sweep_args(&["workers", "--workers", "two"]).is_err());
        assert!(sweep_args(&["workers", "--transport", "pcap"]).is_err());
        let err = RigPlan::from_args(&sweep_args(&["workers", "--flows", "70000"]).unwrap(), 2)
            .unwrap_err();
        assert!(err.to_string().contains("1 to 65536"), "{err}");
        let err = RigPlan::from_args(&sweep_args(&["workers", "--ipv6"]).unwrap(), 2).unwrap_err();
        assert!(err.to_string().contains("do not apply"), "{err}");
    }

    #[test]
    fn sweep_points() {
        assert_eq!(states_points(false), [1_000, 10_000, 100_000, 1_000_000]);
        assert_eq!(states_points(true).last(), Some(&10_000_000));
        assert_eq!(workers_points(2), [1]);
        assert_eq!(workers_points(1), [1]);
        assert_eq!(workers_points(8), [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn labels() {
        assert_eq!(
            default_label(Profile::EstTcp, 10_000, None, false, 1),
            "est-tcp-10k"
        );
        assert_eq!(
            default_label(Profile::Udp, 1500, Some(128), true, 2),
            "udp-1500-128B-v6-w2"
        );
    }
}
