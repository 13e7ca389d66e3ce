//! `bench sync`: pfsync between two dpf processes, measured end to end.
//!
//! Topology (every link a memif pair, no namespaces): the live generator
//! (`bench live-gen`) sends UDP flows into the master's `lan` port; the
//! master routes them out of `wan` back to the generator and exports one
//! state per flow; its `sync` port is joined to the backup's. Both dpf run
//! with `--sync-trace`, which logs every state message with a TSC
//! timestamp that all processes on one host share, so the master's export
//! of a state (its creation) and the backup's receipt of it can be
//! subtracted.
//!
//! Phases: (1) the backup is up and done with its (empty) bulk update;
//! (2) the generator's warm-up sends every flow once at `--rate` new flows
//! per second, each creating a state on the master; the harness waits
//! until the backup holds them all, then reports the creation → backup
//! latency per state (median, p99, p99.9, max), the states synced per
//! second (backup receipts over the span between the first and the last),
//! and what was lost; (3) unless `--no-bulk`, the backup is restarted and
//! fetches the whole table by bulk update, timed the same way.
//!
//! CPU placement on a 2-core machine: the generator and the backup share
//! CPU 0, the master's worker and control thread CPU 1 — three busy
//! pollers on two cores, so the figures include scheduling delays.

use crate::live::engine::Event;
use crate::run::spawn::{Next, Supervised};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `bench sync` arguments.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Flows, one state each.
    #[arg(long, default_value_t = 50_000)]
    pub flows: u64,
    /// New flows (states) per second the generator offers, one value per
    /// run.
    #[arg(long, value_delimiter = ',', default_values_t = [20_000u64, 1_000_000])]
    pub rates: Vec<u64>,
    /// Skip the bulk update phase.
    #[arg(long)]
    pub no_bulk: bool,
    /// The dpf binary [default: $DPF_BIN, else `dpf` next to this binary].
    #[arg(long)]
    pub dpf: Option<PathBuf>,
    /// Output directory (report `<report>.json` / `.md`, logs in `runs/`).
    #[arg(long, default_value = "bench/out")]
    pub out: PathBuf,
    /// Report name.
    #[arg(long, default_value = "sync")]
    pub report: String,
    /// Seconds to wait for the backup to hold every state (well under the
    /// 30 s UDP timeouts, after which the states start to expire).
    #[arg(long, default_value_t = 20)]
    pub timeout_s: u64,
    /// Stop the restarted backup (SIGSTOP) for this many milliseconds once
    /// its bulk update has begun, then let it go on (SIGCONT): the sync
    /// link fills and the master must wait for it, not drop states.
    #[arg(long, default_value_t = 0)]
    pub stall_backup_ms: u64,
    /// Stop the backup (SIGSTOP) for this many milliseconds 300 ms into
    /// the live phase, then let it go on: longer than the master's sync
    /// port waits (1 s), the master drops what the backup does not take,
    /// and the backup must fetch the table again.
    #[arg(long, default_value_t = 0)]
    pub stall_live_ms: u64,
    /// Workers of each dpf (all on the box's one CPU; their sync ports get
    /// as many queues, so a pfsync packet may leave from any worker). The
    /// generator keeps one queue: above 1 the forwarded traffic it counts
    /// is not meaningful, only the sync figures are; and on a 2-core
    /// machine five busy pollers starve everything else.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub workers: u16,
}

/// Stops `pid` (SIGSTOP) after `after`, for `for_`, then continues it.
fn stall(pid: u32, after: Duration, for_: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let pid = pid.to_string();
        let _ = Command::new("kill").args(["-STOP", &pid]).status();
        std::thread::sleep(for_);
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
    })
}

/// The MAC of the master's `lan` port and of the generator's receiving
/// port: the generator addresses its frames to its receiving port's MAC.
const LAN_MAC: &str = "02:00:00:00:5e:01";

/// One measured phase.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Phase {
    /// What: `live` (states as they are created) or `bulk`.
    pub kind: String,
    /// Offered new flows per second (live).
    pub rate: u64,
    /// States on the master.
    pub master_states: u64,
    /// States the master exported (trace `tx` lines of the phase).
    pub exported: u64,
    /// States the backup received (trace `rx` lines of the phase).
    pub received: u64,
    /// Exported states the backup never received.
    pub missing: u64,
    /// States on the backup at the end.
    pub backup_states: u64,
    /// Received states per second, from the first to the last receipt.
    pub synced_per_s: f64,
    /// Creation (master) → receipt (backup) latency, µs: p50, p99, p99.9,
    /// max (live only).
    pub latency_us: Option<[f64; 4]>,
    /// Wall time from the backup's start to holding every state (bulk).
    pub wall_s: Option<f64>,
    /// Master's pfsync counters at the end.
    pub master_pfsync: Value,
    /// Backup's pfsync counters at the end.
    pub backup_pfsync: Value,
    /// Master: frames dropped for a full tx queue (`tx-full`) during the
    /// phase (the live phase from the generator's start, the bulk phase
    /// from the bulk update's first state on the backup: drops to the
    /// backup stopped for its restart are not the bulk update's).
    pub master_tx_full: u64,
    /// Master: times the sync port began refusing pfsync packets (kept and
    /// sent when it took them).
    pub master_local_tx_waits: u64,
    /// Backup: worker iterations that left the sync port unread while its
    /// pfsync ring was full.
    pub backup_sync_rx_paused: u64,
    /// Backup: frames dropped for a full slow-path ring.
    pub backup_slow_path_ring_full: u64,
    /// Milliseconds the backup was stopped during the phase.
    pub backup_stalled_ms: u64,
}

fn master_tx_full(p: &Paths) -> u64 {
    info_of(p, "master")["drops"]["tx-full"]
        .as_u64()
        .unwrap_or(0)
}

impl Phase {
    /// Reads the boxes' transmit and receive waits from `dpfctl -s info`
    /// (`tx_full_base`: the master's `tx-full` at the phase's start).
    fn read_waits(&mut self, p: &Paths, tx_full_base: u64) {
        let m = info_of(p, "master");
        let b = info_of(p, "backup");
        self.master_tx_full = m["drops"]["tx-full"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(tx_full_base);
        self.master_local_tx_waits = m["local_tx_waits"].as_u64().unwrap_or(0);
        self.backup_sync_rx_paused = b["sync_rx_paused"].as_u64().unwrap_or(0);
        self.backup_slow_path_ring_full = b["drops"]["slowpath-ring-full"].as_u64().unwrap_or(0);
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn eal(prefix: &str, cpu: usize, workers: u16) -> String {
    let lcores = (0..=workers)
        .map(|l| format!("{l}@{cpu}"))
        .collect::<Vec<_>>()
        .join(",");
    [
        "--no-huge",
        "-m",
        "512",
        "--no-shconf",
        "--file-prefix",
        prefix,
        "--lcores",
        &lcores,
        "--log-level",
        "*:error",
    ]
    .iter()
    .map(|a| quote(a))
    .collect::<Vec<_>>()
    .join(", ")
}

fn memif(index: usize, role: &str, socket: &Path, extra: &str) -> String {
    format!(
        "net_memif{index},role={role},socket={},id=0,socket-abstract=no,rsize=12{extra}",
        socket.display()
    )
}

/// The master: lan, wan (to the generator) and sync, router mode.
fn master_config(dir: &Path, rules: &Path, workers: u16) -> String {
    format!(
        "[eal]\nargs = [{}]\n[dataplane]\nmode = \"router\"\nrules = {}\n\
         [[port]]\nname = \"lan\"\ndevice = {}\naddresses = [\"10.254.0.1/24\"]\n\
         [[port]]\nname = \"wan\"\ndevice = {}\naddresses = [\"198.19.255.254/16\"]\n\
         [[port]]\nname = \"sync\"\ndevice = {}\naddresses = [\"10.9.0.1/24\"]\n\
         [[neighbor]]\nip = \"198.19.0.1\"\nmac = \"{LAN_MAC}\"\n\
         [pfsync]\nsyncdev = \"sync\"\n\
         [control]\nsocket = {}\n",
        eal(&format!("bs{}m", std::process::id()), 1, workers),
        quote(&rules.display().to_string()),
        quote(&memif(
            0,
            "server",
            &dir.join("lan.sock"),
            &format!(",mac={LAN_MAC}")
        )),
        quote(&memif(1, "server", &dir.join("wan.sock"), "")),
        quote(&memif(2, "server", &dir.join("sync.sock"), "")),
        quote(&dir.join("master.ctl").display().to_string()),
    )
}

/// The backup: only the sync port; the master's rules (state limit and
/// timeouts).
fn backup_config(dir: &Path, rules: &Path, generation: u32, workers: u16) -> String {
    format!(
        "[eal]\nargs = [{}]\n[dataplane]\nmode = \"router\"\nrules = {}\n\
         [[port]]\nname = \"sync\"\ndevice = {}\naddresses = [\"10.9.0.2/24\"]\n\
         [pfsync]\nsyncdev = \"sync\"\n\
         [control]\nsocket = {}\n",
        eal(
            &format!("bs{}b{generation}", std::process::id()),
            0,
            workers
        ),
        quote(&rules.display().to_string()),
        quote(&memif(0, "client", &dir.join("sync.sock"), "")),
        quote(&dir.join("backup.ctl").display().to_string()),
    )
}

fn dpfctl(dpfctl: &Path, sock: &Path, args: &[&str]) -> Result<Value> {
    let out = Command::new(dpfctl)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .arg("--json")
        .output()
        .with_context(|| format!("running {}", dpfctl.display()))?;
    if !out.status.success() {
        bail!(
            "dpfctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if f().unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `--sync-trace` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceLine {
    /// Sent (`tx`) or received.
    pub tx: bool,
    /// Message: ins, upd, updc, delc, bulk.
    pub msg: [u8; 4],
    /// (id, creatorid).
    pub id: (u64, u32),
    /// TSC nanoseconds.
    pub t_ns: u64,
}

/// Parses one trace line (`tx ins 00..01 000000aa 123`).
pub fn parse_trace_line(line: &str) -> Option<TraceLine> {
    let mut f = line.split_whitespace();
    let tx = match f.next()? {
        "tx" => true,
        "rx" => false,
        _ => return None,
    };
    let m = f.next()?.as_bytes();
    let mut msg = [0u8; 4];
    for (d, s) in msg.iter_mut().zip(m) {
        *d = *s;
    }
    let id = u64::from_str_radix(f.next()?, 16).ok()?;
    let creatorid = u32::from_str_radix(f.next()?, 16).ok()?;
    let t_ns = f.next()?.parse().ok()?;
    Some(TraceLine {
        tx,
        msg,
        id: (id, creatorid),
        t_ns,
    })
}

fn read_trace(path: &Path) -> Vec<TraceLine> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_trace_line)
        .collect()
}

/// Value at quantile `q` of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Creation → receipt latencies of `msg` states: the master's `tx ins`
/// instants joined with the backup's `rx ins`. Returns (latencies in µs
/// sorted, exported, received, missing, receipt span in s).
pub fn join_latencies(
    master: &[TraceLine],
    backup: &[TraceLine],
) -> (Vec<f64>, u64, u64, u64, f64) {
    let sent: HashMap<(u64, u32), u64> = master
        .iter()
        .filter(|l| l.tx && &l.msg == b"ins\0")
        .map(|l| (l.id, l.t_ns))
        .collect();
    let got: Vec<&TraceLine> = backup
        .iter()
        .filter(|l| !l.tx && &l.msg == b"ins\0")
        .collect();
    let mut lat: Vec<f64> = got
        .iter()
        .filter_map(|l| {
            sent.get(&l.id)
                .map(|t| l.t_ns.saturating_sub(*t) as f64 / 1e3)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let received_ids: std::collections::HashSet<(u64, u32)> = got.iter().map(|l| l.id).collect();
    let missing = sent.keys().filter(|k| !received_ids.contains(k)).count() as u64;
    (
        lat,
        sent.len() as u64,
        received_ids.len() as u64,
        missing,
        span_s(got.iter().map(|l| l.t_ns)),
    )
}

fn span_s(t: impl Iterator<Item = u64>) -> f64 {
    let (mut lo, mut hi) = (u64::MAX, 0);
    for x in t {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if hi > lo {
        (hi - lo) as f64 / 1e9
    } else {
        0.0
    }
}

struct Paths {
    dpf: PathBuf,
    dpfctl: PathBuf,
    bench: PathBuf,
    dir: PathBuf,
    logs: PathBuf,
}

fn start_dpf(p: &Paths, name: &str, config: &str, trace: &Path) -> Result<Supervised> {
    let cfg = p.logs.join(format!("{name}.toml"));
    fs::write(&cfg, config)?;
    let mut cmd = Command::new(&p.dpf);
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--sync-trace")
        .arg(trace)
        .args(["-l", "5"]);
    let s = Supervised::start(
        name,
        cmd,
        &p.logs.join(format!("{name}.stdout")),
        &p.logs.join(format!("{name}.stderr")),
    )?;
    let sock = p.dir.join(format!("{name}.ctl"));
    wait_for(
        &format!("{name}'s control socket"),
        Duration::from_secs(60),
        || Ok(sock.exists()),
    )?;
    Ok(s)
}

fn info_of(p: &Paths, name: &str) -> Value {
    dpfctl(
        &p.dpfctl,
        &p.dir.join(format!("{name}.ctl")),
        &["-s", "info"],
    )
    .unwrap_or(Value::Null)
}

fn states_of(p: &Paths, name: &str) -> u64 {
    info_of(p, name)["states"].as_u64().unwrap_or(0)
}

fn pfsync_of(p: &Paths, name: &str) -> Value {
    dpfctl(&p.dpfctl, &p.dir.join(format!("{name}.ctl")), &["pfsync0"]).unwrap_or(Value::Null)
}

fn wait_bulk_done(p: &Paths, within: Duration) -> Result<()> {
    wait_for("the backup's bulk update", within, || {
        Ok(pfsync_of(p, "backup")["bulk"] == "done")
    })
}

/// Runs the generator's warm-up (one state per flow at `rate`), waits for
/// its end, and returns it (it holds its ports until the master closes).
fn run_generator(p: &Paths, flows: u64, rate: u64, tag: &str) -> Result<Supervised> {
    let sock = |n: &str| p.dir.join(n);
    let mut cmd = Command::new(&p.bench);
    cmd.arg("live-gen")
        .arg("--tx")
        .arg(memif(0, "client", &sock("lan.sock"), ""))
        .arg("--rx")
        .arg(memif(
            1,
            "client",
            &sock("wan.sock"),
            &format!(",mac={LAN_MAC}"),
        ))
        .args(["--file-prefix", &format!("bs{}g{tag}", std::process::id())])
        .args(["--cpu", "0", "--frame-size", "64"])
        .args(["--flows", &flows.to_string()])
        .args(["--warmup-pps", &rate.to_string()])
        .args(["--rate", "1000", "--trial-s", "0.1", "--drain-ms", "100"]);
    let gen = Supervised::start(
        "generator",
        cmd,
        &p.logs.join(format!("generator-{tag}.stdout")),
        &p.logs.join(format!("generator-{tag}.stderr")),
    )?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match gen.next_line(deadline) {
            Next::Line(l) => {
                if let Ok(Event::Done { .. }) = serde_json::from_str::<Event>(&l) {
                    return Ok(gen);
                }
            }
            Next::Timeout => bail!("the generator did not finish"),
            Next::Closed => bail!("the generator exited early:\n{}", gen.stderr_tail(20)),
        }
    }
}

fn measure(args: &SyncArgs, p: &Paths) -> Result<Vec<Phase>> {
    // Room for every state, and UDP states that outlive the run on both.
    let options = format!(
        "set limit states {}\nset timeout {{ udp.first 3600, udp.single 3600, udp.multiple 3600 }}\n",
        (args.flows * 2).max(10_000)
    );
    let rules = p.logs.join("bench.pf.conf");
    // pfsync is filtered like any protocol: the FAQ's pass line for the
    // sync port.
    fs::write(
        &rules,
        format!(
            "{options}{}\npass quick on sync proto pfsync no state\n",
            include_str!("../configs/bench.pf.conf")
        ),
    )?;
    let backup_rules = p.logs.join("backup.pf.conf");
    fs::write(&backup_rules, &options)?;
    let mut phases = Vec::new();
    for (i, &rate) in args.rates.iter().enumerate() {
        let mtrace = p.logs.join(format!("master-{rate}.trace"));
        let btrace = p.logs.join(format!("backup-{rate}.trace"));
        let master = start_dpf(
            p,
            "master",
            &master_config(&p.dir, &rules, args.workers),
            &mtrace,
        )?;
        let backup = start_dpf(
            p,
            "backup",
            &backup_config(&p.dir, &backup_rules, i as u32 * 2, args.workers),
            &btrace,
        )?;
        wait_bulk_done(p, Duration::from_secs(30))?;
        eprintln!("bench sync: {} flows at {rate} new flows/s", args.flows);
        let live_base = master_tx_full(p);
        let stalled = (args.stall_live_ms > 0).then(|| {
            stall(
                backup.pid(),
                Duration::from_millis(300),
                Duration::from_millis(args.stall_live_ms),
            )
        });
        let gen = run_generator(p, args.flows, rate, &format!("{i}"))?;
        if let Some(t) = stalled {
            let _ = t.join();
        }
        eprintln!("bench sync: the generator's warm-up ended");
        // The states the master made (at high rates the generator offers
        // more than reaches it): wait until the backup has as many.
        let created = info_of(p, "master")["states_created"].as_u64().unwrap_or(0);
        let waited = wait_for(
            "every state on the backup",
            Duration::from_secs(args.timeout_s),
            || Ok(states_of(p, "backup") >= created),
        );
        let mut phase = Phase {
            kind: "live".into(),
            rate,
            master_states: states_of(p, "master"),
            backup_states: states_of(p, "backup"),
            master_pfsync: pfsync_of(p, "master"),
            backup_pfsync: pfsync_of(p, "backup"),
            backup_stalled_ms: args.stall_live_ms,
            ..Phase::default()
        };
        phase.read_waits(p, live_base);
        if let Err(e) = waited {
            eprintln!("bench sync: {e:#}");
        }
        eprintln!("bench sync: live phase measured");
        let mut bulk = None;
        if !args.no_bulk && i + 1 == args.rates.len() {
            // The backup starts again, empty: the whole table by bulk update.
            eprintln!("bench sync: stopping the backup");
            let _ = backup.interrupt_and_wait();
            eprintln!("bench sync: the backup stopped; starting it again");
            let btrace2 = p.logs.join("backup-bulk.trace");
            let t0 = Instant::now();
            let backup2 = start_dpf(
                p,
                "backup",
                &backup_config(&p.dir, &backup_rules, i as u32 * 2 + 1, args.workers),
                &btrace2,
            )?;
            wait_for("the bulk update to begin", Duration::from_secs(30), || {
                Ok(states_of(p, "backup") > 0)
            })?;
            let bulk_base = master_tx_full(p);
            if args.stall_backup_ms > 0 {
                let _ = stall(
                    backup2.pid(),
                    Duration::ZERO,
                    Duration::from_millis(args.stall_backup_ms),
                )
                .join();
            }
            let full = wait_for(
                "every state on the restarted backup",
                Duration::from_secs(args.timeout_s),
                || Ok(states_of(p, "backup") >= phase.master_states),
            );
            let wall = t0.elapsed().as_secs_f64();
            if let Err(e) = full {
                eprintln!("bench sync: {e:#}");
            }
            let mut b = Phase {
                kind: "bulk".into(),
                master_states: states_of(p, "master"),
                backup_states: states_of(p, "backup"),
                master_pfsync: pfsync_of(p, "master"),
                backup_pfsync: pfsync_of(p, "backup"),
                wall_s: Some(wall),
                backup_stalled_ms: args.stall_backup_ms,
                ..Phase::default()
            };
            b.read_waits(p, bulk_base);
            eprintln!("bench sync: bulk phase measured");
            let _ = backup2.interrupt_and_wait();
            let got = read_trace(&btrace2);
            let bulk_rx: Vec<&TraceLine> =
                got.iter().filter(|l| !l.tx && &l.msg == b"bulk").collect();
            b.received = bulk_rx.len() as u64;
            b.exported = b.master_states;
            b.missing = b.exported.saturating_sub(b.backup_states);
            let span = span_s(bulk_rx.iter().map(|l| l.t_ns));
            b.synced_per_s = if span > 0.0 {
                b.received as f64 / span
            } else {
                0.0
            };
            bulk = Some(b);
        } else {
            let _ = backup.interrupt_and_wait();
        }
        eprintln!("bench sync: stopping the master");
        let _ = master.interrupt_and_wait();
        eprintln!("bench sync: waiting for the generator");
        let _ = gen.wait();
        let (lat, exported, received, missing, span) =
            join_latencies(&read_trace(&mtrace), &read_trace(&btrace));
        phase.exported = exported;
        phase.received = received;
        phase.missing = missing;
        phase.synced_per_s = if span > 0.0 {
            received as f64 / span
        } else {
            0.0
        };
        if !lat.is_empty() {
            phase.latency_us = Some([
                quantile(&lat, 0.5),
                quantile(&lat, 0.99),
                quantile(&lat, 0.999),
                *lat.last().unwrap_or(&f64::NAN),
            ]);
        }
        phases.push(phase);
        phases.extend(bulk);
    }
    Ok(phases)
}

/// The report as a markdown table.
pub fn markdown(phases: &[Phase], command: &str) -> String {
    let mut s = format!(
        "## pfsync between two dpf (bench sync)\n\nCommand: `{command}`\n\n\
         | phase | offered new states/s | master states | exported | backup received | missing | synced states/s | creation → backup p50 / p99 / p99.9 / max µs | wall s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n"
    );
    for p in phases {
        let lat = p.latency_us.map_or("-".to_string(), |l| {
            format!("{:.0} / {:.0} / {:.0} / {:.0}", l[0], l[1], l[2], l[3])
        });
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |\n",
            p.kind,
            if p.kind == "live" {
                p.rate.to_string()
            } else {
                "-".into()
            },
            p.master_states,
            p.exported,
            p.received,
            p.missing,
            p.synced_per_s,
            lat,
            p.wall_s.map_or("-".into(), |w| format!("{w:.2}")),
        ));
    }
    for p in phases {
        s.push_str(&format!(
            "\n- {}{}: master tx-full drops {}, waits for the sync port {}; backup sync-port \
             pauses {}, slow-path-ring-full drops {}",
            p.kind,
            if p.backup_stalled_ms > 0 {
                format!(" (backup stopped {} ms during it)", p.backup_stalled_ms)
            } else {
                String::new()
            },
            p.master_tx_full,
            p.master_local_tx_waits,
            p.backup_sync_rx_paused,
            p.backup_slow_path_ring_full,
        ));
    }
    s.push('\n');
    s.push_str(
        "\n- live: the generator's warm-up sends every flow once at the offered rate; each first \
         packet creates a state on the master, exported to the backup. Latency: the master's \
         export instant of the state's INS (its creation, on the worker) to the backup's \
         hand-off of it to its owning worker, from both processes' `--sync-trace` (one TSC \
         clock on one host).\n\
         - synced states/s: states the backup received divided by the time from the first to \
         the last receipt.\n\
         - bulk: the backup restarted empty and fetched the whole table (BUS START, full \
         UPDs, BUS END); wall s from its start to holding every state.\n\
         - Placement: generator and backup on CPU 0, the master on CPU 1 (2 cores, three busy \
         pollers): scheduling delays are in the figures.\n",
    );
    s
}

/// Runs `bench sync`.
pub fn run(args: &SyncArgs) -> Result<()> {
    let dpf = match (&args.dpf, std::env::var_os("DPF_BIN")) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => std::env::current_exe()
            .context("locating the bench binary")?
            .with_file_name("dpf"),
    };
    let dpfctl = dpf.with_file_name("dpfctl");
    let bench = std::env::current_exe().context("locating the bench binary")?;
    for b in [&dpf, &dpfctl] {
        if !b.is_file() {
            bail!(
                "{} not found: build with `cargo build --release -p control --bins`, or give --dpf / DPF_BIN",
                b.display()
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("bs{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let logs = args.out.join("runs").join("sync");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    // The configs name the rules by path: absolute, whatever dpf's cwd.
    let logs = fs::canonicalize(&logs)?;
    let paths = Paths {
        dpf,
        dpfctl,
        bench,
        dir: dir.clone(),
        logs,
    };
    let result = measure(args, &paths);
    let _ = fs::remove_dir_all(&dir);
    let phases = result?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let md = markdown(&phases, &command);
    print!("{md}");
    let report = json!({
        "kind": "sync",
        "command": command,
        "flows": args.flows,
        "workers": args.workers,
        "rates": args.rates,
        "phases": phases,
    });
    fs::write(
        args.out.join(format!("{}.json", args.report)),
        serde_json::to_string_pretty(&report)?,
    )?;
    fs::write(args.out.join(format!("{}.md", args.report)), md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> TraceLine {
        parse_trace_line(s).unwrap()
    }

    #[test]
    fn each_box_gets_its_workers_on_its_one_cpu() {
        let one = eal("p", 1, 1);
        assert!(one.contains("\"0@1,1@1\""), "{one}");
        let two = eal("p", 0, 2);
        assert!(two.contains("\"0@0,1@0,2@0\""), "{two}");
    }

    #[test]
    fn trace_lines_parse_and_join() {
        assert_eq!(parse_trace_line("xx ins 1 2 3"), None);
        assert_eq!(parse_trace_line("tx ins zz 2 3"), None);
        let master = [
            l("tx ins 0000000000000001 000000aa 1000"),
            l("tx ins 0000000000000002 000000aa 2000"),
            l("tx updc 0000000000000001 000000aa 2500"),
            l("tx ins 0000000000000003 000000aa 3000"),
        ];
        let backup = [
            l("rx ins 0000000000000001 000000aa 6000"),
            l("rx updc 0000000000000001 000000aa 9000"),
            l("rx ins 0000000000000002 000000aa 10000"),
        ];
        let (lat, exported, received, missing, span) = join_latencies(&master, &backup);
        assert_eq!(lat, vec![5.0, 8.0]);
        assert_eq!((exported, received, missing), (3, 2, 1));
        assert!((span - 4e-6).abs() < 1e-12);
        assert_eq!(quantile(&lat, 0.5), 8.0);
        assert_eq!(quantile(&lat, 0.0), 5.0);
    }
}
