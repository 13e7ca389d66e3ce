//! `bench live` and `bench rfc2544`: dpf measured against a live,
//! pktgen-style generator over memif links, and the RFC 2544 loss-free
//! throughput search; dpdk-testpmd io forwarding in dpf's place gives the
//! ratio.
//!
//! Topology (two CPUs: the generator's lcore on `--gen-cpu`, the device
//! under test's main and worker lcores on `--dut-cpu`):
//!
//! ```text
//!  generator port A (memif client) ── lan.sock ── DUT port 0 (memif server, "lan")
//!  generator port B (memif client) ── wan.sock ── DUT port 1 (memif server, "wan")
//! ```
//!
//! The DUT starts first (a memif server creates its socket; a client must
//! find it when it starts), with one queue per port on both sides (memif
//! needs equal queue counts). dpf runs in wire mode with the shipped
//! `bench/configs/bench.pf.conf` (UDP to port 9 passed with keep state);
//! the generator's warm-up creates the states. The generator is this
//! binary's hidden `live-gen` subcommand ([`engine`]), one process per DUT
//! run, which prints JSON lines that this module collects.
//!
//! Files: `<out>/runs/<kind>-<dut>/` holds the DUT's configuration, stdout
//! and stderr and the generator's; `<out>/<report>.json` and `.md` the
//! report. The memif sockets live in a short temporary directory (a Unix
//! socket path has at most 107 bytes).

pub mod engine;
pub mod pace;
pub mod payload;
pub mod search;
pub mod seq;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::run::report::Machine;
use crate::run::setup::with_states_limit;
use crate::run::spawn::{find_program, Next, Supervised};
use engine::{Event, TrialResult};

/// The shipped ruleset, relative to the repository.
pub const DEFAULT_RULES: &str = "bench/configs/bench.pf.conf";

/// Options of both commands.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct LiveCommon {
    /// Flows (UDP source address/port pairs from 198.18.0.0/16 to
    /// 198.19.0.1 port 9), sent round robin.
    #[arg(long, default_value_t = 1000)]
    pub flows: u64,
    /// Frame size with FCS.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(64..=1518))]
    pub frame_size: u16,
    /// Warm-up rate, pps: every flow is sent once before the trials.
    #[arg(long, default_value_t = 100_000)]
    pub warmup_pps: u64,
    /// How long to keep receiving after a trial's last transmit, ms.
    #[arg(long, default_value_t = 300)]
    pub drain_ms: u64,
    /// Output directory.
    #[arg(long, default_value = "bench/out")]
    pub out: PathBuf,
    /// pf.conf ruleset for dpf (ports `lan` and `wan`) [default:
    /// bench/configs/bench.pf.conf].
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// No ruleset: dpf forwards everything in wire mode.
    #[arg(long, conflicts_with = "rules")]
    pub no_rules: bool,
    /// The dpf binary [default: $DPF_BIN, else `dpf` next to this binary].
    #[arg(long)]
    pub dpf: Option<PathBuf>,
    /// The testpmd binary.
    #[arg(long, default_value = "dpdk-testpmd")]
    pub testpmd: String,
    /// Skip the dpdk-testpmd baseline.
    #[arg(long)]
    pub no_testpmd: bool,
    /// CPU of the generator.
    #[arg(long, default_value_t = 0)]
    pub gen_cpu: usize,
    /// CPU of the device under test's worker (forwarding) lcore.
    #[arg(long, default_value_t = 1)]
    pub dut_cpu: usize,
    /// CPU of the device under test's main lcore (dpf's control thread)
    /// [default: --dut-cpu].
    #[arg(long)]
    pub dut_main_cpu: Option<usize>,
    /// memif ring size, log2 of the descriptors per ring (both sides; 10
    /// is DPDK's default of 1024, like a NIC ring; more absorbs longer
    /// stalls of a shared machine).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(8..=14))]
    pub memif_rsize: u8,
    /// Base name of the report files [default: the command's name].
    #[arg(long)]
    pub report: Option<String>,
}

/// Arguments of `bench live`.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct LiveArgs {
    /// Offered rate, packets per second.
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// Seconds of the trial.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    #[command(flatten)]
    pub common: LiveCommon,
}

/// Arguments of `bench rfc2544`.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Rfc2544Args {
    /// Lowest rate tried, pps.
    #[arg(long, default_value_t = 10_000)]
    pub min_rate: u64,
    /// Highest rate, pps (tried first).
    #[arg(long, default_value_t = 4_000_000)]
    pub max_rate: u64,
    /// Seconds per trial.
    #[arg(long, default_value_t = 1.0)]
    pub trial: f64,
    /// Stop when the pass/fail bracket is narrower than this share of the
    /// failing rate.
    #[arg(long, default_value_t = 0.02)]
    pub resolution: f64,
    /// At most this many trials per device.
    #[arg(long, default_value_t = 16)]
    pub max_trials: usize,
    /// A trial passes with at most this share of its packets lost: 0 is
    /// RFC 2544's zero loss; e.g. 0.0001 gives a partial drop rate that a
    /// few stalls of a shared machine do not decide.
    #[arg(long, default_value_t = 0.0)]
    pub loss_tolerance: f64,
    #[command(flatten)]
    pub common: LiveCommon,
}

/// The device under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dut {
    /// dpf in wire mode.
    Dpf,
    /// dpdk-testpmd io forwarding.
    Testpmd,
}

impl Dut {
    fn name(self) -> &'static str {
        match self {
            Dut::Dpf => "dpf",
            Dut::Testpmd => "testpmd",
        }
    }
}

/// One DUT's run: its command, the generator's trials and what the DUT
/// reported.
#[derive(Clone, Debug, Serialize)]
pub struct DutRun {
    /// Which device.
    pub dut: Dut,
    /// Its command line.
    pub command: String,
    /// dpf's configuration.
    pub config: Option<String>,
    /// The generator's command line.
    pub generator: String,
    /// The warm-up trial.
    pub warmup: Option<TrialResult>,
    /// Measured trials, in order.
    pub trials: Vec<TrialResult>,
    /// Highest loss-free rate, pps.
    pub best_pps: Option<u64>,
    /// dpf's last stats line (burst latency, drops, states).
    pub dpf_final: Option<serde_json::Value>,
    /// How the DUT exited, if not cleanly.
    pub dut_exit: Option<String>,
    /// Why the run failed.
    pub error: Option<String>,
}

impl DutRun {
    /// The highest passing trial (at `best_pps`).
    pub fn best(&self) -> Option<&TrialResult> {
        self.trials
            .iter()
            .filter(|t| t.passed)
            .max_by_key(|t| t.rate_pps)
    }
}

/// The report of `bench live` or `bench rfc2544`.
#[derive(Clone, Debug, Serialize)]
pub struct LiveReport {
    /// `live` or `rfc2544`.
    pub kind: &'static str,
    /// The machine.
    pub machine: Machine,
    /// bench's command line.
    pub invocation: Vec<String>,
    /// The parameters.
    pub params: serde_json::Value,
    /// One run per DUT.
    pub runs: Vec<DutRun>,
    /// dpf's loss-free offered rate over testpmd's.
    pub ratio: Option<f64>,
    /// testpmd's best trial was generator-limited (it may forward more):
    /// the ratio is an upper bound.
    pub ratio_is_upper_bound: bool,
    /// How to read the figures.
    pub notes: Vec<String>,
}

/// What a DUT run needs.
struct Ctx {
    dpf: PathBuf,
    testpmd: Option<PathBuf>,
    bench: PathBuf,
    out: PathBuf,
    rules: Option<PathBuf>,
    common: LiveCommon,
    kind: &'static str,
}

fn resolve(common: &LiveCommon, kind: &'static str) -> anyhow::Result<Ctx> {
    let dpf = match (&common.dpf, std::env::var_os("DPF_BIN")) {
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
    let testpmd = if common.no_testpmd {
        None
    } else {
        Some(find_program(&common.testpmd).with_context(|| {
            format!(
                "{} not found (install dpdk, or run with --no-testpmd)",
                common.testpmd
            )
        })?)
    };
    let rules = if common.no_rules {
        None
    } else {
        let p = common
            .rules
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RULES));
        Some(fs::canonicalize(&p).with_context(|| {
            format!(
                "ruleset {} not found (run from the repository, or give --rules / --no-rules)",
                p.display()
            )
        })?)
    };
    fs::create_dir_all(&common.out)
        .with_context(|| format!("creating {}", common.out.display()))?;
    let out = fs::canonicalize(&common.out)?;
    // Run logs stay out of git, the report files in (as `bench run`).
    let ignore = out.join(".gitignore");
    if !ignore.exists() {
        fs::write(&ignore, "pcaps/\nruns/\n")
            .with_context(|| format!("writing {}", ignore.display()))?;
    }
    Ok(Ctx {
        dpf,
        testpmd,
        bench: std::env::current_exe().context("locating the bench binary")?,
        out,
        rules,
        common: common.clone(),
        kind,
    })
}

/// A command line as text.
fn command_line(program: &Path, args: &[String]) -> String {
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

/// memif devargs of link `index` (0: lan, 1: wan) for `role`, with
/// `2^rsize` descriptors per ring.
pub fn memif_device(index: usize, role: &str, socket: &Path, rsize: u8) -> String {
    format!(
        "net_memif{index},role={role},socket={},id=0,socket-abstract=no,rsize={rsize}",
        socket.display()
    )
}

/// Where the DUT's lcores run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DutCpus {
    /// The main lcore (dpf's control thread, testpmd's console).
    pub main: usize,
    /// The worker (forwarding) lcore.
    pub worker: usize,
}

/// EAL arguments of the DUT: lcore 0 (main) and 1 (worker) on `cpus`.
fn dut_eal(prefix: &str, cpus: DutCpus) -> Vec<String> {
    [
        "--no-huge",
        "-m",
        "512",
        "--no-shconf",
        "--file-prefix",
        prefix,
        "--lcores",
        &format!("0@{},1@{}", cpus.main, cpus.worker),
        "--log-level",
        "*:error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// dpf's configuration for the live topology.
pub fn dpf_live_config(
    sockets: &[PathBuf; 2],
    prefix: &str,
    cpus: DutCpus,
    rsize: u8,
    rules: Option<&Path>,
) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let eal: Vec<String> = dut_eal(prefix, cpus).iter().map(|a| quote(a)).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# written by bench live\n[eal]\nargs = [{}]\n",
        eal.join(", ")
    );
    let _ = writeln!(out, "[dataplane]\nmode = \"wire\"");
    if let Some(r) = rules {
        let _ = writeln!(out, "rules = {}", quote(&r.display().to_string()));
    }
    for (i, name) in ["lan", "wan"].iter().enumerate() {
        let _ = writeln!(
            out,
            "\n[[port]]\nname = \"{name}\"\ndevice = {}",
            quote(&memif_device(i, "server", &sockets[i], rsize))
        );
    }
    let _ = writeln!(out, "\n[wire]\npairs = [[\"lan\", \"wan\"]]");
    // Its own control socket (`dpfctl -s info` during a run), beside the
    // memif sockets: never another dpf's.
    let ctl = sockets[0].with_file_name("ctl.sock");
    let _ = writeln!(
        out,
        "\n[control]\nsocket = {}",
        quote(&ctl.display().to_string())
    );
    out
}

/// testpmd's arguments for the live topology.
pub fn testpmd_live_args(
    sockets: &[PathBuf; 2],
    prefix: &str,
    cpus: DutCpus,
    rsize: u8,
) -> Vec<String> {
    let mut args = dut_eal(prefix, cpus);
    args.push("--no-pci".into());
    for (i, s) in sockets.iter().enumerate() {
        args.push("--vdev".into());
        args.push(memif_device(i, "server", s, rsize));
    }
    args.extend(
        [
            "--",
            "--forward-mode=io",
            "--auto-start",
            "--stats-period",
            "1",
            "--total-num-mbufs=16384",
        ]
        .map(String::from),
    );
    args
}

/// A short directory for the memif sockets, removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new(tag: &str) -> anyhow::Result<SocketDir> {
        let dir = std::env::temp_dir().join(format!("bl{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(SocketDir(dir))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Ctx {
    fn cpus(&self) -> DutCpus {
        DutCpus {
            main: self.common.dut_main_cpu.unwrap_or(self.common.dut_cpu),
            worker: self.common.dut_cpu,
        }
    }

    fn run_dut(&self, dut: Dut, mode: &[String], timeout: Duration) -> DutRun {
        let mut run = DutRun {
            dut,
            command: String::new(),
            config: None,
            generator: String::new(),
            warmup: None,
            trials: Vec::new(),
            best_pps: None,
            dpf_final: None,
            dut_exit: None,
            error: None,
        };
        if let Err(e) = self.run_dut_into(&mut run, mode, timeout) {
            eprintln!("bench: [{}] {e:#}", dut.name());
            run.error = Some(format!("{e:#}"));
        }
        run
    }

    fn run_dut_into(
        &self,
        run: &mut DutRun,
        mode: &[String],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let dut = run.dut;
        let dir = self
            .out
            .join("runs")
            .join(format!("{}-{}", self.kind, dut.name()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let socks = SocketDir::new(dut.name())?;
        let sockets = [socks.0.join("lan.sock"), socks.0.join("wan.sock")];
        let pid = std::process::id();
        let dut_prefix = format!("bl{pid}{}", dut.name());
        let (program, args) = match dut {
            Dut::Dpf => {
                let rules = match &self.rules {
                    Some(r) => {
                        let text = fs::read_to_string(r)
                            .with_context(|| format!("reading {}", r.display()))?;
                        let path = dir.join("bench.pf.conf");
                        fs::write(&path, with_states_limit(&text, self.common.flows))
                            .with_context(|| format!("writing {}", path.display()))?;
                        Some(path)
                    }
                    None => None,
                };
                let config = dpf_live_config(
                    &sockets,
                    &dut_prefix,
                    self.cpus(),
                    self.common.memif_rsize,
                    rules.as_deref(),
                );
                let path = dir.join("dpf.toml");
                fs::write(&path, &config).with_context(|| format!("writing {}", path.display()))?;
                run.config = Some(config);
                (
                    self.dpf.clone(),
                    vec![
                        "--config".to_string(),
                        path.display().to_string(),
                        "--json-stats".into(),
                        "--stats-every".into(),
                        "1000".into(),
                    ],
                )
            }
            Dut::Testpmd => {
                let Some(testpmd) = &self.testpmd else {
                    bail!("no testpmd");
                };
                (
                    testpmd.clone(),
                    testpmd_live_args(&sockets, &dut_prefix, self.cpus(), self.common.memif_rsize),
                )
            }
        };
        run.command = command_line(&program, &args);
        let mut cmd = Command::new(&program);
        cmd.args(&args);
        let dut_proc = Supervised::start(
            dut.name(),
            cmd,
            &dir.join(format!("{}.stdout", dut.name())),
            &dir.join(format!("{}.stderr", dut.name())),
        )?;
        // The memif servers create their sockets when their ports start.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut dut_lines = Vec::new();
        while !sockets.iter().all(|s| s.exists()) {
            match dut_proc.next_line(Instant::now() + Duration::from_millis(20)) {
                Next::Line(l) => dut_lines.push(l),
                Next::Timeout => {}
                Next::Closed => {
                    let tail = dut_proc.stderr_tail(8);
                    let status = dut_proc.wait()?;
                    bail!(
                        "{} exited ({status}) before its memif sockets appeared:\n{tail}",
                        dut.name()
                    );
                }
            }
            if Instant::now() >= deadline {
                bail!("{}'s memif sockets did not appear within 60 s", dut.name());
            }
        }
        let c = &self.common;
        let mut gen_args = vec![
            "live-gen".to_string(),
            "--tx".into(),
            memif_device(0, "client", &sockets[0], c.memif_rsize),
            "--rx".into(),
            memif_device(1, "client", &sockets[1], c.memif_rsize),
            "--file-prefix".into(),
            format!("bl{pid}gen{}", dut.name()),
            "--cpu".into(),
            c.gen_cpu.to_string(),
            "--flows".into(),
            c.flows.to_string(),
            "--frame-size".into(),
            c.frame_size.to_string(),
            "--warmup-pps".into(),
            c.warmup_pps.to_string(),
            "--drain-ms".into(),
            c.drain_ms.to_string(),
        ];
        gen_args.extend(mode.iter().cloned());
        run.generator = command_line(&self.bench, &gen_args);
        let mut cmd = Command::new(&self.bench);
        cmd.args(&gen_args);
        let gen = Supervised::start(
            "generator",
            cmd,
            &dir.join("generator.stdout"),
            &dir.join("generator.stderr"),
        )?;
        let deadline = Instant::now() + timeout;
        let mut done = false;
        loop {
            match gen.next_line(deadline) {
                Next::Line(line) => match serde_json::from_str::<Event>(&line) {
                    Ok(Event::Ready { tsc_hz, .. }) => {
                        eprintln!("bench: [{}] links up (TSC {tsc_hz} Hz)", dut.name())
                    }
                    Ok(Event::Warmup(t)) => {
                        eprintln!(
                            "bench: [{}] warm-up: {} sent, {} lost",
                            dut.name(),
                            t.sent,
                            t.lost
                        );
                        run.warmup = Some(t);
                    }
                    Ok(Event::Trial(t)) => {
                        eprintln!(
                            "bench: [{}] trial {}: {:.3} Mpps offered ({:.3} target), {} sent, {} lost, p99 {}",
                            dut.name(),
                            t.trial,
                            t.offered_pps / 1e6,
                            t.rate_pps as f64 / 1e6,
                            t.sent,
                            t.lost,
                            t.latency.p99_ns.map_or("-".into(), |n| format!("{:.1} µs", n / 1e3))
                        );
                        run.trials.push(t);
                    }
                    Ok(Event::Done { best_pps, .. }) => {
                        run.best_pps = best_pps;
                        done = true;
                        // The generator now holds its ports idle until the
                        // DUT has closed its end: stop the DUT first.
                        break;
                    }
                    Err(_) => {}
                },
                Next::Timeout => bail!("the generator did not finish within {timeout:?}"),
                Next::Closed => break,
            }
        }
        let (rest, dut_status) = dut_proc.interrupt_and_wait()?;
        dut_lines.extend(rest);
        let status = gen.wait()?;
        // testpmd re-raises SIGINT after its cleanup: dying of it is clean.
        let by_sigint = std::os::unix::process::ExitStatusExt::signal(&dut_status) == Some(2);
        if !dut_status.success() && !by_sigint {
            run.dut_exit = Some(format!(
                "{} exited with {dut_status} after SIGINT",
                dut.name()
            ));
        }
        if dut == Dut::Dpf {
            run.dpf_final = dut_lines
                .iter()
                .rev()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v.get("final").is_some());
        }
        if !done {
            let tail = fs::read_to_string(dir.join("generator.stderr")).unwrap_or_default();
            bail!("the generator exited ({status}) before it finished:\n{tail}");
        }
        Ok(())
    }
}

fn notes(kind: &str) -> Vec<String> {
    let mut n = vec![
        "Live topology: generator port A → memif → DUT port 0 (lan), DUT port 1 (wan) → memif → generator port B; one queue per port; the generator on one CPU, the DUT (main and worker lcore) on the other. memif copies every frame on both sides, so the rates are bounded by the copies and the shared machine, not a NIC: compare dpf with testpmd in the same sitting.".to_string(),
        "Frames: UDP/IPv4 from 198.18.0.0/16 to 198.19.0.1 port 9, round robin over the flows; the payload holds a trial number, a sequence number and the transmit TSC. A warm-up sends every flow once (dpf creates the states) before the trials.".to_string(),
        "Latency: receive TSC minus transmit TSC of every received frame (same machine), one-way through both memif links and the DUT, in a log-linear histogram (buckets ≤ 3.2% wide, the bucket's top shown).".to_string(),
        "Lost: sent minus distinct sequence numbers received; frames the DUT's ring refused count as lost (a NIC would count them as missed). Reordered: arrived after a higher sequence number.".to_string(),
    ];
    if kind == "rfc2544" {
        n.push("RFC 2544 §26.1 throughput: the maximum rate is tried first, then a binary search between the highest rate without loss and the lowest with loss, until the bracket is within the resolution; the figure is the highest zero-loss trial, with its latencies (§26.2 measures latency at that rate). With `loss_tolerance` > 0 in the parameters a trial passes with up to that share lost (a partial drop rate, not RFC 2544's).".to_string());
    }
    n
}

fn us(ns: Option<f64>) -> String {
    ns.map_or_else(|| "-".to_string(), |n| format!("{:.1}", n / 1e3))
}

impl LiveReport {
    /// The headline table: one row per DUT.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| DUT | loss-free Mpps | offered Mpps | lost | p50 µs | p99 µs | p99.9 µs | max µs | trials |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for r in &self.runs {
            let best = r.best().or_else(|| r.trials.last());
            let headline = match (&r.error, r.best_pps, r.best()) {
                (Some(e), _, _) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
                (None, Some(_), Some(t)) if t.generator_limited => {
                    format!("≥ {:.3} (generator limit)", t.offered_pps / 1e6)
                }
                (None, Some(b), _) => format!("{:.3}", b as f64 / 1e6),
                (None, None, _) => "none".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.dut.name(),
                headline.replace('|', "\\|"),
                best.map_or("-".into(), |t| format!("{:.3}", t.offered_pps / 1e6)),
                best.map_or("-".into(), |t| t.lost.to_string()),
                us(best.and_then(|t| t.latency.p50_ns)),
                us(best.and_then(|t| t.latency.p99_ns)),
                us(best.and_then(|t| t.latency.p999_ns)),
                us(best.and_then(|t| t.latency.max_ns)),
                r.trials.len()
            );
        }
        out
    }

    /// Every trial of every DUT.
    pub fn trials_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| DUT | trial | target Mpps | offered Mpps | sent | lost | refused | reordered | dup | p50 µs | p99 µs | p99.9 µs | max µs | result |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        );
        for r in &self.runs {
            for t in r.warmup.iter().chain(&r.trials) {
                let result = match (t.trial, t.passed, t.generator_limited) {
                    (0, _, _) => "warm-up",
                    (_, true, false) => "pass",
                    (_, true, true) => "pass (generator-limited)",
                    (_, false, _) => "loss",
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {result} |",
                    r.dut.name(),
                    t.trial,
                    t.rate_pps as f64 / 1e6,
                    t.offered_pps / 1e6,
                    t.sent,
                    t.lost,
                    t.tx_refused,
                    t.seq.reordered,
                    t.seq.duplicates,
                    us(t.latency.p50_ns),
                    us(t.latency.p99_ns),
                    us(t.latency.p999_ns),
                    us(t.latency.max_ns),
                );
            }
        }
        out
    }

    /// The markdown report.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let title = if self.kind == "rfc2544" {
            "dpf RFC 2544 loss-free throughput (live generator)"
        } else {
            "dpf against the live generator"
        };
        let _ = writeln!(out, "## {title}\n");
        let _ = writeln!(
            out,
            "Measured {} on {} ({} CPUs, Linux {}) with `{}`.\n",
            m.date_utc,
            m.cpu_model,
            m.nproc,
            m.kernel,
            self.invocation.join(" ")
        );
        out.push_str(&self.summary_table());
        if let Some(r) = self.ratio {
            let bound = if self.ratio_is_upper_bound {
                "≤ "
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "\ndpf/testpmd (loss-free offered rate): **{bound}{r:.3}**"
            );
            if self.ratio_is_upper_bound {
                let _ = writeln!(
                    out,
                    "\ntestpmd forwarded everything the generator could offer: its loss-free rate is at least the figure shown, so the ratio is an upper bound."
                );
            }
        }
        if let Some(l) = self
            .runs
            .iter()
            .find_map(|r| r.dpf_final.as_ref()?.get("burst_latency").cloned())
        {
            let f = |k: &str| us(l.get(k).and_then(serde_json::Value::as_f64));
            let _ = writeln!(
                out,
                "\ndpf's own per-burst processing time over the whole run: p50 {} µs, p99 {} µs, p99.9 {} µs.",
                f("p50_ns"),
                f("p99_ns"),
                f("p999_ns")
            );
        }
        let _ = writeln!(out, "\n### Trials\n\n{}", self.trials_table());
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        out
    }

    /// Writes `<dir>/<name>.json` and `.md`.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<()> {
        let json = dir.join(format!("{name}.json"));
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        fs::write(&json, text).with_context(|| format!("writing {}", json.display()))?;
        let md = dir.join(format!("{name}.md"));
        fs::write(&md, self.markdown()).with_context(|| format!("writing {}", md.display()))?;
        eprintln!("bench: wrote {} and {}", json.display(), md.display());
        Ok(())
    }
}

fn finish(ctx: &Ctx, params: serde_json::Value, runs: Vec<DutRun>) -> anyhow::Result<()> {
    let best = |d: Dut| {
        runs.iter()
            .find(|r| r.dut == d && r.error.is_none())
            .and_then(|r| r.best().cloned())
    };
    let (ratio, ratio_is_upper_bound) = match (best(Dut::Dpf), best(Dut::Testpmd)) {
        (Some(a), Some(b)) if b.offered_pps > 0.0 => {
            (Some(a.offered_pps / b.offered_pps), b.generator_limited)
        }
        _ => (None, false),
    };
    let report = LiveReport {
        kind: ctx.kind,
        machine: Machine::detect(),
        invocation: std::env::args().collect(),
        params,
        runs,
        ratio,
        ratio_is_upper_bound,
        notes: notes(ctx.kind),
    };
    let name = ctx
        .common
        .report
        .clone()
        .unwrap_or_else(|| ctx.kind.to_string());
    report.write(&ctx.out, &name)?;
    print!("\n{}", report.summary_table());
    if let Some(r) = ratio {
        let bound = if ratio_is_upper_bound {
            "≤ (testpmd generator-limited) "
        } else {
            ""
        };
        println!("\ndpf/testpmd: {bound}{r:.3}");
    }
    if let Some(failed) = report
        .runs
        .iter()
        .find(|r| r.error.is_some() && r.dut == Dut::Dpf)
    {
        bail!(
            "the dpf run failed: {}",
            failed.error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

fn duts(ctx: &Ctx) -> Vec<Dut> {
    let mut v = vec![Dut::Dpf];
    if ctx.testpmd.is_some() {
        v.push(Dut::Testpmd);
    }
    v
}

/// Seconds the generator may take beyond its trials: EAL start, links,
/// the warm-up.
fn overhead_s(common: &LiveCommon) -> f64 {
    60.0 + common.flows as f64 / common.warmup_pps.max(1) as f64
}

/// `bench live`: one trial at a fixed rate through dpf (and testpmd).
pub fn live(args: &LiveArgs) -> anyhow::Result<()> {
    let ctx = resolve(&args.common, "live")?;
    let mode = [
        "--rate".to_string(),
        args.rate.to_string(),
        "--trial-s".into(),
        args.duration.to_string(),
    ];
    let timeout = Duration::from_secs_f64(overhead_s(&args.common) + args.duration + 10.0);
    let runs = duts(&ctx)
        .into_iter()
        .map(|d| ctx.run_dut(d, &mode, timeout))
        .collect();
    finish(&ctx, serde_json::to_value(args)?, runs)
}

/// `bench rfc2544`: the loss-free throughput search through dpf (and
/// testpmd).
pub fn rfc2544(args: &Rfc2544Args) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.loss_tolerance) {
        bail!(
            "--loss-tolerance {} is not a share in [0, 1)",
            args.loss_tolerance
        );
    }
    if args.min_rate > args.max_rate {
        bail!(
            "--min-rate {} is above --max-rate {}",
            args.min_rate,
            args.max_rate
        );
    }
    let ctx = resolve(&args.common, "rfc2544")?;
    let mode = [
        "--min-pps".to_string(),
        args.min_rate.to_string(),
        "--max-pps".into(),
        args.max_rate.to_string(),
        "--trial-s".into(),
        args.trial.to_string(),
        "--resolution".into(),
        args.resolution.to_string(),
        "--max-trials".into(),
        args.max_trials.to_string(),
        "--loss-tolerance".into(),
        args.loss_tolerance.to_string(),
    ];
    let per_trial = args.trial + args.common.drain_ms as f64 / 1e3 + 1.0;
    let timeout =
        Duration::from_secs_f64(overhead_s(&args.common) + per_trial * args.max_trials as f64);
    let runs = duts(&ctx)
        .into_iter()
        .map(|d| ctx.run_dut(d, &mode, timeout))
        .collect();
    finish(&ctx, serde_json::to_value(args)?, runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(n: u16, rate: u64, lost: u64) -> TrialResult {
        TrialResult {
            trial: n,
            rate_pps: rate,
            offered_pps: rate as f64,
            sent: rate,
            lost,
            passed: lost == 0,
            latency: dataplane::histogram::LatencySummary {
                count: rate - lost,
                p50_ns: Some(2000.0),
                p99_ns: Some(9000.0),
                p999_ns: Some(12_000.0),
                max_ns: Some(50_000.0),
            },
            ..TrialResult::default()
        }
    }

    #[test]
    fn configs_name_the_memif_servers() {
        let s = [PathBuf::from("/t/lan.sock"), PathBuf::from("/t/wan.sock")];
        let one = DutCpus { main: 1, worker: 1 };
        let text = dpf_live_config(&s, "pfx", one, 10, Some(Path::new("/r/b.pf.conf")));
        let v: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(v["dataplane"]["mode"].as_str(), Some("wire"));
        assert_eq!(v["control"]["socket"].as_str(), Some("/t/ctl.sock"));
        assert_eq!(v["dataplane"]["rules"].as_str(), Some("/r/b.pf.conf"));
        assert_eq!(
            v["port"][1]["device"].as_str(),
            Some("net_memif1,role=server,socket=/t/wan.sock,id=0,socket-abstract=no,rsize=10")
        );
        let args: Vec<&str> = v["eal"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.windows(2).any(|w| w == ["--lcores", "0@1,1@1"]));
        assert!(!dpf_live_config(&s, "pfx", one, 10, None).contains("rules"));
        let split = DutCpus { main: 0, worker: 1 };
        assert!(dpf_live_config(&s, "pfx", split, 10, None).contains("\"0@0,1@1\""));
        let tp = testpmd_live_args(&s, "p2", one, 12).join(" ");
        assert!(tp.contains(
            "--vdev net_memif0,role=server,socket=/t/lan.sock,id=0,socket-abstract=no,rsize=12 --vdev net_memif1"
        ));
        assert!(tp.ends_with(
            "-- --forward-mode=io --auto-start --stats-period 1 --total-num-mbufs=16384"
        ));
    }

    #[test]
    fn report_tables_show_the_best_passing_trial() {
        let run = DutRun {
            dut: Dut::Dpf,
            command: "dpf".into(),
            config: None,
            generator: "bench live-gen".into(),
            warmup: Some(trial(0, 1000, 0)),
            trials: vec![
                trial(1, 4_000_000, 10),
                trial(2, 2_000_000, 0),
                trial(3, 3_000_000, 5),
            ],
            best_pps: Some(2_000_000),
            dpf_final: Some(
                serde_json::json!({"final": true, "burst_latency": {"p50_ns": 1500.0, "p99_ns": 3000.0, "p999_ns": 4000.0}}),
            ),
            dut_exit: None,
            error: None,
        };
        assert_eq!(run.best().unwrap().trial, 2);
        let failed = DutRun {
            dut: Dut::Testpmd,
            error: Some("testpmd exited\nmore".into()),
            trials: vec![],
            warmup: None,
            best_pps: None,
            dpf_final: None,
            ..run.clone()
        };
        let report = LiveReport {
            kind: "rfc2544",
            machine: Machine::detect(),
            invocation: vec!["bench".into(), "rfc2544".into()],
            params: serde_json::json!({}),
            runs: vec![run, failed],
            ratio: Some(0.5),
            ratio_is_upper_bound: true,
            notes: notes("rfc2544"),
        };
        let summary = report.summary_table();
        assert!(
            summary.contains("| dpf | 2.000 | 2.000 | 0 | 2.0 | 9.0 | 12.0 | 50.0 | 3 |"),
            "{summary}"
        );
        assert!(summary.contains("| testpmd | FAILED: testpmd exited |"));
        let trials = report.trials_table();
        assert_eq!(trials.lines().count(), 2 + 4);
        assert!(trials.contains("| dpf | 0 | 0.001 |") && trials.contains("warm-up"));
        assert!(
            trials.contains("| dpf | 1 | 4.000 | 4.000 | 4000000 | 10 |")
                && trials.contains("| loss |")
        );
        let md = report.markdown();
        assert!(md.contains("dpf/testpmd (loss-free offered rate): **≤ 0.500**"));
        assert!(md.contains("p50 1.5 µs, p99 3.0 µs, p99.9 4.0 µs"));
        assert!(md.contains("RFC 2544 §26.1"));
        // A best trial the generator could not offer in full is a bound.
        let mut limited = report.runs[0].clone();
        limited.trials[1].generator_limited = true;
        limited.trials[1].offered_pps = 1_950_000.0;
        let bound = LiveReport {
            runs: vec![limited],
            ..report.clone()
        };
        assert!(bound
            .summary_table()
            .contains("| dpf | ≥ 1.950 (generator limit) |"));
    }
}
