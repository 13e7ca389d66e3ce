//! `bench carp-cpu`: the CPU the control thread spends on CARP with many
//! VHIDs. Two `dpf` processes are joined by a memif link (no namespaces,
//! no root needed beyond what DPDK needs); each has `--vhids` carp
//! interfaces on it. The first (advskew `--advskew`) becomes MASTER of
//! every VHID and advertises, the second (advskew + 100) stays BACKUP and
//! validates every advertisement (two HMAC-SHA1 per packet). Once every
//! VHID has settled, the harness reads the on-CPU time of each process's
//! control thread over `--duration` seconds and prints it as % of one
//! core, with the advertisement rates seen in the carp counters.
//!
//! The control thread is the process's main thread (the control loop runs
//! on the EAL main lcore), so its task id is the process id; its time is
//! read from `/proc/<pid>/task/<pid>/schedstat` (nanoseconds on CPU), with
//! `utime + stime` from `.../stat` (clock ticks) as a cross-check.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `bench carp-cpu` arguments.
#[derive(Debug, Args)]
pub struct CarpCpuArgs {
    /// Carp interfaces (one VHID each) on each box, 1-255.
    #[arg(long, default_value_t = 255, value_parser = clap::value_parser!(u16).range(1..=255))]
    pub vhids: u16,
    /// advbase of every carp interface (0: sub-second intervals).
    #[arg(long, default_value_t = 1)]
    pub advbase: u8,
    /// advskew of the master box; the backup box uses advskew + 100.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=154))]
    pub advskew: u8,
    /// Seconds measured.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,
    /// Seconds waited after every VHID settled, before measuring.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// The dpf binary (default: `$DPF_BIN`, else `dpf` beside this binary).
    #[arg(long)]
    pub dpf: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The two roles of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// memif server, preferred (lower advskew): MASTER of every VHID.
    Master,
    /// memif client, advskew + 100: BACKUP of every VHID.
    Backup,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Backup => "backup",
        }
    }
}

/// The dpf.toml of one box.
fn config(role: Role, args: &CarpCpuArgs, dir: &Path) -> String {
    let (memif_role, host, advskew) = match role {
        Role::Master => ("server", 1, args.advskew),
        Role::Backup => ("client", 2, args.advskew + 100),
    };
    let mut c = format!(
        "[eal]\nargs = [\"--no-huge\", \"-m\", \"256\", \"--no-shconf\", \"--file-prefix\", \"dpf-carpcpu-{}-{}\", \"--lcores\", \"0@0,1@1\", \"--log-level\", \"*:error\"]\n\
         [dataplane]\nmode = \"router\"\n\
         [[port]]\nname = \"lan0\"\ndevice = \"net_memif0,role={memif_role},socket={},id=0,socket-abstract=no\"\naddresses = [\"10.1.0.{host}/16\"]\n\
         [control]\nsocket = \"{}\"\n",
        role.name(),
        std::process::id(),
        dir.join("memif.sock").display(),
        socket(role, dir).display(),
    );
    for vhid in 1..=args.vhids {
        c.push_str(&format!(
            "[[carp]]\nname = \"carp{vhid}\"\nvhid = {vhid}\npass = \"bench\"\ncarpdev = \"lan0\"\nadvbase = {}\nadvskew = {advskew}\naddresses = [\"10.2.{}.1/24\"]\n",
            args.advbase,
            vhid - 1
        ));
    }
    c
}

fn socket(role: Role, dir: &Path) -> PathBuf {
    dir.join(format!("{}.sock", role.name()))
}

/// On-CPU time of one task: `schedstat` nanoseconds and `stat` ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuTime {
    run_ns: u64,
    ticks: u64,
}

/// The first field of `/proc/.../schedstat`: time spent on the CPU, ns.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// `utime + stime` (fields 14 and 15) of `/proc/.../stat`; the command
/// name in parentheses may hold spaces, so fields count from the last `)`.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn task_cpu(pid: u32) -> Result<CpuTime> {
    let base = format!("/proc/{pid}/task/{pid}");
    let sched = fs::read_to_string(format!("{base}/schedstat"))
        .with_context(|| format!("reading {base}/schedstat"))?;
    let stat = fs::read_to_string(format!("{base}/stat"))
        .with_context(|| format!("reading {base}/stat"))?;
    Ok(CpuTime {
        run_ns: parse_schedstat(&sched).context("parsing schedstat")?,
        ticks: parse_stat_ticks(&stat).context("parsing stat")?,
    })
}

/// Clock ticks per second of `/proc/.../stat` (USER_HZ).
fn clock_ticks_per_s() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A started dpf, stopped with SIGTERM (then killed) when dropped.
struct Box_ {
    role: Role,
    child: Child,
}

impl Box_ {
    fn start(role: Role, dpf: &Path, args: &CarpCpuArgs, dir: &Path) -> Result<Box_> {
        let cfg = dir.join(format!("{}.toml", role.name()));
        fs::write(&cfg, config(role, args, dir))?;
        let log = fs::File::create(dir.join(format!("{}.log", role.name())))?;
        let child = Command::new(dpf)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", dpf.display()))?;
        let b = Box_ { role, child };
        let sock = socket(role, dir);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sock.exists() {
            if Instant::now() > deadline {
                bail!(
                    "dpf ({}) did not open its control socket; see {}",
                    role.name(),
                    dir.join(format!("{}.log", role.name())).display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(b)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Box_ {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("carp-cpu: {} dpf had to be killed", self.role.name());
    }
}

/// `dpfctl -s carp --json` of one box.
fn show_carp(dpfctl: &Path, sock: &Path) -> Result<Value> {
    let out = Command::new(dpfctl)
        .arg("--socket")
        .arg(sock)
        .args(["-s", "carp", "--json"])
        .output()
        .with_context(|| format!("running {}", dpfctl.display()))?;
    if !out.status.success() {
        bail!("dpfctl: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn count_state(v: &Value, state: &str) -> usize {
    v["interfaces"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|i| i["state"] == state).count())
}

fn stat(v: &Value, name: &str) -> u64 {
    v["stats"][name].as_u64().unwrap_or(0)
}

/// Runs the measurement.
pub fn run(args: &CarpCpuArgs) -> Result<()> {
    let dpf = match (&args.dpf, std::env::var_os("DPF_BIN")) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => std::env::current_exe()
            .context("locating the bench binary")?
            .with_file_name("dpf"),
    };
    let dpfctl = dpf.with_file_name("dpfctl");
    for p in [&dpf, &dpfctl] {
        if !p.is_file() {
            bail!(
                "{} not found: build with `cargo build --release -p control --bins`, or give --dpf / DPF_BIN",
                p.display()
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("dpf-carp-cpu-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let result = measure(args, &dpf, &dpfctl, &dir);
    if result.is_ok() {
        let _ = fs::remove_dir_all(&dir);
    } else {
        eprintln!("carp-cpu: logs kept in {}", dir.display());
    }
    let v = result?;
    if args.json {
        println!("{v}");
    } else {
        println!(
            "carp-cpu: {} vhids, advbase {} advskew {} (master) / {} (backup), {} s measured",
            args.vhids,
            args.advbase,
            args.advskew,
            args.advskew + 100,
            args.duration
        );
        for role in ["master", "backup"] {
            let r = &v[role];
            println!(
                "  {role:<6} control thread (tid {}, '{}'): {:.3} % of one core (schedstat), {:.2} % (stat ticks); adverts sent {:.1}/s, received {:.1}/s",
                r["tid"],
                r["thread"].as_str().unwrap_or("?"),
                r["cpu_pct"].as_f64().unwrap_or(0.0),
                r["cpu_pct_ticks"].as_f64().unwrap_or(0.0),
                r["adverts_sent_per_s"].as_f64().unwrap_or(0.0),
                r["adverts_received_per_s"].as_f64().unwrap_or(0.0),
            );
            println!("         vMAC filter: {}", r["vmac_filter"]);
        }
    }
    Ok(())
}

fn measure(args: &CarpCpuArgs, dpf: &Path, dpfctl: &Path, dir: &Path) -> Result<Value> {
    // The memif server first: the client needs its socket.
    let master = Box_::start(Role::Master, dpf, args, dir)?;
    let backup = Box_::start(Role::Backup, dpf, args, dir)?;
    let n = usize::from(args.vhids);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = show_carp(dpfctl, &socket(Role::Master, dir))?;
        let b = show_carp(dpfctl, &socket(Role::Backup, dir))?;
        if count_state(&m, "MASTER") == n && count_state(&b, "BACKUP") == n {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "vhids did not settle: master box {} MASTER, backup box {} BACKUP of {n}",
                count_state(&m, "MASTER"),
                count_state(&b, "BACKUP")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(args.warmup));
    let boxes = [&master, &backup];
    let before_stats: Vec<Value> = boxes
        .iter()
        .map(|b| show_carp(dpfctl, &socket(b.role, dir)))
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    let before: Vec<CpuTime> = boxes
        .iter()
        .map(|b| task_cpu(b.pid()))
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_secs(args.duration));
    let after: Vec<CpuTime> = boxes
        .iter()
        .map(|b| task_cpu(b.pid()))
        .collect::<Result<_>>()?;
    let wall = t0.elapsed().as_secs_f64();
    let after_stats: Vec<Value> = boxes
        .iter()
        .map(|b| show_carp(dpfctl, &socket(b.role, dir)))
        .collect::<Result<_>>()?;
    let hz = clock_ticks_per_s() as f64;
    let mut out = json!({
        "vhids": args.vhids,
        "advbase": args.advbase,
        "advskew_master": args.advskew,
        "advskew_backup": args.advskew + 100,
        "duration_s": wall,
    });
    for (i, b) in boxes.iter().enumerate() {
        let pid = b.pid();
        let thread = fs::read_to_string(format!("/proc/{pid}/task/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let run_s = after[i].run_ns.saturating_sub(before[i].run_ns) as f64 / 1e9;
        let tick_s = after[i].ticks.saturating_sub(before[i].ticks) as f64 / hz;
        let sent = (stat(&after_stats[i], "carps_opackets")
            + stat(&after_stats[i], "carps_opackets6"))
        .saturating_sub(
            stat(&before_stats[i], "carps_opackets") + stat(&before_stats[i], "carps_opackets6"),
        ) as f64;
        let received = (stat(&after_stats[i], "carps_ipackets")
            + stat(&after_stats[i], "carps_ipackets6"))
        .saturating_sub(
            stat(&before_stats[i], "carps_ipackets") + stat(&before_stats[i], "carps_ipackets6"),
        ) as f64;
        out[b.role.name()] = json!({
            "pid": pid,
            "tid": pid,
            "thread": thread,
            "cpu_pct": 100.0 * run_s / wall,
            "cpu_pct_ticks": 100.0 * tick_s / wall,
            "adverts_sent_per_s": sent / wall,
            "adverts_received_per_s": received / wall,
            "vmac_filter": after_stats[i]["vmac_filter"].clone(),
            "state_counts": {
                "MASTER": count_state(&after_stats[i], "MASTER"),
                "BACKUP": count_state(&after_stats[i], "BACKUP"),
            },
        });
    }
    drop(backup);
    drop(master);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_task_files() {
        assert_eq!(parse_schedstat("123456789 2000 17\n"), Some(123_456_789));
        assert_eq!(parse_schedstat(""), None);
        let stat =
            "4242 (dpf main) S 1 4242 4242 0 -1 4194560 5000 0 0 0 31 17 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(48));
        assert_eq!(parse_stat_ticks("4242 (dpf) S 1"), None);
    }

    #[test]
    fn configs_hold_every_vhid_with_the_role_advskew() {
        let args = CarpCpuArgs {
            vhids: 255,
            advbase: 0,
            advskew: 20,
            duration: 1,
            warmup: 0,
            dpf: None,
            json: false,
        };
        let dir = Path::new("/tmp/x");
        let m = config(Role::Master, &args, dir);
        let b = config(Role::Backup, &args, dir);
        assert_eq!(m.matches("[[carp]]").count(), 255);
        assert!(m.contains("role=server") && b.contains("role=client"));
        assert!(m.contains("advskew = 20\n") && b.contains("advskew = 120\n"));
        assert!(m.contains("vhid = 255\n") && m.contains("\"10.2.254.1/24\""));
        let parsed: toml::Value = toml::from_str(&m).unwrap();
        assert_eq!(parsed["carp"].as_array().unwrap().len(), 255);
    }
}
