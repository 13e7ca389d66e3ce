//! What one measurement runs on: the cached pcaps of a traffic spec, the
//! ruleset file, the `dpf.toml` and the `dpdk-testpmd` command line.
//! Everything here but [`prepare_traffic`] is a pure function of its
//! arguments, so the configurations are tested as text.
//!
//! Both programs replay the same steady pcaps with net_pcap `infinite_rx=1`.
//! That PMD loads the *whole* pcap into mbufs of the rx queue's pool when
//! the queue is set up, once per `rx_pcap=` (one per queue, one queue per
//! worker), and copies one of them per received packet. So the pool must
//! hold `workers × (packets of both pcaps)` mbufs on top of the descriptor
//! rings, and EAL's `-m` (no hugepages here) must hold the pool: both are
//! sized by [`MemoryPlan`]. A port with no steady pcap (new-conn has no
//! port 1 traffic) is a `net_null` device with `no-rx=1`, which receives
//! nothing and frees what it is given.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::gen::plan::{GenConfig, Plan, Profile};
use crate::gen::{default_name, generate};

/// Memory one mbuf takes, in bytes. An object is about 2.4 KB (128-byte
/// `rte_mbuf`, 128 of headroom, 2048 of data room, the mempool's header),
/// but without hugepages the mempool keeps every object inside one 4 KiB
/// page (it needs IOVA-contiguous objects and 4 KiB pages are only
/// contiguous within themselves), so each mbuf costs a whole page: 2M mbufs
/// fail with `-m 6144` and start with `-m 8192`.
const MBUF_FOOTPRINT_BYTES: u64 = 4096;
/// EAL memory besides the packet pool, MiB.
const EAL_BASE_MB: u64 = 512;
/// Smallest pool (dpf's default).
const MIN_MBUFS: u64 = 16_383;
/// DPDK's largest mempool (24-bit counts).
const MAX_MBUFS: u64 = 16_777_215;
/// dpf's default rx/tx descriptors per queue.
const DESCRIPTORS: u64 = 1024;
/// Per-lcore mempool cache.
const POOL_CACHE: u64 = 256;

/// The generated files of one traffic spec, as the harness uses them.
#[derive(Clone, Debug, Serialize)]
pub struct Traffic {
    /// Base name of the files.
    pub name: String,
    /// Steady pcap of each port, if it has traffic.
    pub steady: [Option<PathBuf>; 2],
    /// Packets in each steady pcap.
    pub steady_packets: [u64; 2],
    /// Frame bytes (with FCS) in each steady pcap.
    pub steady_frame_bytes: [u64; 2],
    /// The tagged setup file for `--preload`, if the profile has setup.
    pub setup_pcapng: Option<PathBuf>,
    /// The pf.conf lines the generator says the profile expects.
    pub rules: Vec<String>,
}

/// The part of the sidecar the harness reads back.
#[derive(Deserialize)]
struct CachedSidecar {
    files: CachedFiles,
    setup_pcapng: Option<CachedFile>,
    rules: Vec<String>,
}

#[derive(Deserialize)]
struct CachedFiles {
    setup: Option<CachedFile>,
    port0: Option<CachedFile>,
    port1: Option<CachedFile>,
}

#[derive(Deserialize)]
struct CachedFile {
    file: String,
    packets: u64,
    frame_bytes: u64,
}

/// Generates the pcaps of `cfg` into `dir` unless a complete earlier
/// generation is there (the sidecar is written last, so its presence means
/// the files are complete; one without a pcapng for its setup predates it
/// and is regenerated).
pub fn prepare_traffic(cfg: &GenConfig, dir: &Path) -> anyhow::Result<Traffic> {
    let name = default_name(cfg);
    let sidecar_path = dir.join(format!("{name}.json"));
    let cached = fs::read(&sidecar_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CachedSidecar>(&bytes).ok())
        .filter(|s| s.files.setup.is_none() || s.setup_pcapng.is_some());
    let sidecar = match cached {
        Some(s) => s,
        None => {
            let plan = Plan::new(*cfg)?;
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            eprintln!("bench: generating {name} in {}", dir.display());
            let sidecar = generate(&plan, dir, &name, false)?;
            let json = serde_json::to_vec_pretty(&sidecar)?;
            fs::write(&sidecar_path, json)
                .with_context(|| format!("writing {}", sidecar_path.display()))?;
            serde_json::from_value(serde_json::to_value(&sidecar)?)?
        }
    };
    let file = |f: &Option<CachedFile>| f.as_ref().map(|f| dir.join(&f.file));
    let count = |f: &Option<CachedFile>, g: fn(&CachedFile) -> u64| f.as_ref().map_or(0, g);
    Ok(Traffic {
        name,
        steady: [file(&sidecar.files.port0), file(&sidecar.files.port1)],
        steady_packets: [
            count(&sidecar.files.port0, |f| f.packets),
            count(&sidecar.files.port1, |f| f.packets),
        ],
        steady_frame_bytes: [
            count(&sidecar.files.port0, |f| f.frame_bytes),
            count(&sidecar.files.port1, |f| f.frame_bytes),
        ],
        setup_pcapng: file(&sidecar.setup_pcapng),
        rules: sidecar.rules,
    })
}

/// Pool and EAL memory for a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryPlan {
    /// Mbufs in the packet pool.
    pub mbufs: u64,
    /// EAL `-m`, MiB.
    pub eal_mb: u64,
}

impl MemoryPlan {
    /// Enough for `workers` copies of both steady pcaps plus every queue's
    /// descriptors and the lcore caches.
    pub fn new(traffic: &Traffic, workers: usize) -> anyhow::Result<MemoryPlan> {
        let w = workers as u64;
        let loaded = w * traffic.steady_packets.iter().sum::<u64>();
        let rings = 2 * w * 2 * DESCRIPTORS;
        let caches = (w + 1) * POOL_CACHE * 2;
        let mbufs = (loaded + rings + caches + 4096).max(MIN_MBUFS);
        if mbufs > MAX_MBUFS {
            bail!(
                "{} needs {mbufs} mbufs with {workers} worker(s) (net_pcap infinite_rx holds every packet of every queue's pcap), more than DPDK's {MAX_MBUFS}",
                traffic.name
            );
        }
        let eal_mb = EAL_BASE_MB + (mbufs * MBUF_FOOTPRINT_BYTES).div_ceil(1 << 20);
        Ok(MemoryPlan { mbufs, eal_mb })
    }
}

/// EAL lcore list for `workers` workers plus the main lcore: `0-W`.
pub fn lcore_list(workers: usize) -> String {
    if workers == 1 {
        "0,1".to_string()
    } else {
        format!("0-{workers}")
    }
}

/// The vdev devargs of port `index` for `workers` queues.
pub fn device(traffic: &Traffic, index: usize, workers: usize) -> String {
    match &traffic.steady[index] {
        Some(pcap) => {
            let mut dev = format!("net_pcap{index}");
            for _ in 0..workers {
                let _ = write!(dev, ",rx_pcap={}", pcap.display());
            }
            dev.push_str(",infinite_rx=1");
            dev
        }
        None => format!("net_null{index},no-rx=1"),
    }
}

/// EAL arguments shared by dpf and testpmd.
fn eal_args(memory: &MemoryPlan, file_prefix: &str, workers: usize) -> Vec<String> {
    [
        "--no-huge",
        "-m",
        &memory.eal_mb.to_string(),
        "--no-shconf",
        "--file-prefix",
        file_prefix,
        "-l",
        &lcore_list(workers),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Quotes a string as a TOML basic string.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `dpf.toml` of a run: ports `lan` (port 0) and `wan` (port 1) in one
/// wire pair, `workers` queues each, the pool sized by `memory`, and the
/// ruleset if given.
pub fn dpf_config(
    traffic: &Traffic,
    workers: usize,
    memory: &MemoryPlan,
    file_prefix: &str,
    rules: Option<&Path>,
) -> String {
    let mut eal = eal_args(memory, file_prefix, workers);
    eal.extend(["--log-level".to_string(), "*:error".to_string()]);
    let eal: Vec<String> = eal.iter().map(|a| toml_string(a)).collect();
    let mut out = String::new();
    let _ = writeln!(out, "# written by bench run");
    let _ = writeln!(out, "[eal]\nargs = [{}]\n", eal.join(", "));
    let _ = writeln!(
        out,
        "[dataplane]\nmode = \"wire\"\nmbufs = {}",
        memory.mbufs
    );
    if let Some(rules) = rules {
        let _ = writeln!(out, "rules = {}", toml_string(&rules.display().to_string()));
    }
    for (index, name) in ["lan", "wan"].iter().enumerate() {
        let _ = writeln!(
            out,
            "\n[[port]]\nname = \"{name}\"\ndevice = {}",
            toml_string(&device(traffic, index, workers))
        );
    }
    let _ = writeln!(out, "\n[wire]\npairs = [[\"lan\", \"wan\"]]");
    out
}

/// The arguments of `dpdk-testpmd` (without the program) for io forwarding
/// between the same two devices with `workers` forwarding cores.
pub fn testpmd_args(
    traffic: &Traffic,
    workers: usize,
    memory: &MemoryPlan,
    file_prefix: &str,
) -> Vec<String> {
    let mut args = eal_args(memory, file_prefix, workers);
    args.push("--no-pci".into());
    for index in 0..2 {
        args.push("--vdev".into());
        args.push(device(traffic, index, workers));
    }
    args.extend(
        [
            "--log-level",
            "*:error",
            "--",
            "--forward-mode=io",
            "--auto-start",
            "--stats-period",
            "1",
        ]
        .map(String::from),
    );
    args.push(format!("--total-num-mbufs={}", memory.mbufs));
    if workers > 1 {
        args.push(format!("--nb-cores={workers}"));
        args.push(format!("--rxq={workers}"));
        args.push(format!("--txq={workers}"));
    }
    args
}

/// The states limit a ruleset needs for `flows` flows: dpf keeps one
/// state per connection (for both interfaces it crosses), so the flows and
/// 1/64 to spare, at least pf's default of 100000. The report's B/state is
/// the table's bytes over the states present, so it is the table's cost
/// per state of capacity within that spare.
pub fn states_limit(flows: u64) -> u64 {
    (flows + flows / 64 + 1024).max(100_000)
}

/// A ruleset text with `set limit states` for `flows` flows added in front,
/// unless it sets the limit itself.
pub fn with_states_limit(rules: &str, flows: u64) -> String {
    let sets_limit = rules.lines().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.starts_with(&["set", "limit"]) && words.contains(&"states")
    });
    if sets_limit {
        rules.to_string()
    } else {
        format!(
            "# bench: state limit for {flows} flows\nset limit states {}\n{rules}",
            states_limit(flows)
        )
    }
}

/// Drop reasons a profile produces on purpose: `mixed` sends packets its
/// rules block.
pub fn expected_drops(profile: Profile, with_rules: bool) -> &'static [&'static str] {
    match (profile, with_rules) {
        (Profile::Mixed, true) => &["blocked-by-rule"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(port1: bool) -> Traffic {
        Traffic {
            name: "t".into(),
            steady: [
                Some(PathBuf::from("/p/t-port0.pcap")),
                port1.then(|| PathBuf::from("/p/t-port1.pcap")),
            ],
            steady_packets: [1000, if port1 { 1000 } else { 0 }],
            steady_frame_bytes: [64_000, if port1 { 64_000 } else { 0 }],
            setup_pcapng: None,
            rules: vec![],
        }
    }

    #[test]
    fn memory_holds_every_queue_copy() {
        let small = MemoryPlan::new(&traffic(true), 1).unwrap();
        assert_eq!(small.mbufs, MIN_MBUFS);
        let mut big = traffic(true);
        big.steady_packets = [1_000_000, 1_000_000];
        let m1 = MemoryPlan::new(&big, 1).unwrap();
        assert!(m1.mbufs >= 2_000_000 && m1.mbufs < 2_020_000, "{m1:?}");
        assert!(
            m1.eal_mb * (1 << 20) >= m1.mbufs * 4096 + (256 << 20),
            "{m1:?}"
        );
        let m2 = MemoryPlan::new(&big, 2).unwrap();
        assert!(m2.mbufs >= 4_000_000);
        big.steady_packets = [10_000_000, 10_000_000];
        assert!(MemoryPlan::new(&big, 1).is_err());
    }

    #[test]
    fn devices_repeat_rx_pcap_per_worker() {
        let t = traffic(false);
        assert_eq!(
            device(&t, 0, 2),
            "net_pcap0,rx_pcap=/p/t-port0.pcap,rx_pcap=/p/t-port0.pcap,infinite_rx=1"
        );
        assert_eq!(device(&t, 1, 2), "net_null1,no-rx=1");
        assert_eq!(lcore_list(1), "0,1");
        assert_eq!(lcore_list(3), "0-3");
    }

    #[test]
    fn dpf_config_is_valid_toml_with_the_pieces() {
        let t = traffic(true);
        let mem = MemoryPlan::new(&t, 1).unwrap();
        let text = dpf_config(&t, 1, &mem, "bench-x", Some(Path::new("/r/b.pf.conf")));
        let v: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let args: Vec<&str> = v["eal"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--no-huge",
                "-m",
                &mem.eal_mb.to_string(),
                "--no-shconf",
                "--file-prefix",
                "bench-x",
                "-l",
                "0,1",
                "--log-level",
                "*:error"
            ]
        );
        assert_eq!(v["dataplane"]["rules"].as_str(), Some("/r/b.pf.conf"));
        assert_eq!(v["dataplane"]["mbufs"].as_integer(), Some(mem.mbufs as i64));
        let ports = v["port"].as_array().unwrap();
        assert_eq!(ports[0]["name"].as_str(), Some("lan"));
        assert_eq!(ports[1]["device"].as_str(), Some(device(&t, 1, 1).as_str()));
        assert_eq!(v["wire"]["pairs"][0][1].as_str(), Some("wan"));
        let no_rules = dpf_config(&t, 1, &mem, "bench-x", None);
        assert!(!no_rules.contains("rules"));
        assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
    }

    #[test]
    fn testpmd_command_line() {
        let t = traffic(true);
        let mem = MemoryPlan::new(&t, 1).unwrap();
        let args = testpmd_args(&t, 1, &mem, "bench-y");
        let line = args.join(" ");
        assert!(line.starts_with("--no-huge -m "));
        assert!(line.contains(
            "--no-shconf --file-prefix bench-y -l 0,1 --no-pci --vdev net_pcap0,rx_pcap=/p/t-port0.pcap,infinite_rx=1 --vdev net_pcap1,"
        ));
        assert!(line.ends_with(&format!(
            "--log-level *:error -- --forward-mode=io --auto-start --stats-period 1 --total-num-mbufs={}",
            mem.mbufs
        )));
        let two = testpmd_args(&t, 2, &mem, "bench-y").join(" ");
        assert!(two.ends_with("--nb-cores=2 --rxq=2 --txq=2"));
    }

    #[test]
    fn states_limit_is_added_once() {
        let r = with_states_limit("block all\npass in on lan", 1_000_000);
        assert!(r.starts_with("# bench"));
        assert!(r.contains("\nset limit states 1016649\nblock all"));
        let own = "set limit states 5\nblock all";
        assert_eq!(with_states_limit(own, 1_000_000), own);
        assert_eq!(states_limit(10), 100_000);
    }

    #[test]
    fn shipped_ruleset_has_every_profiles_rules() {
        let shipped = include_str!("../../configs/bench.pf.conf");
        let lines: Vec<&str> = shipped.lines().map(str::trim).collect();
        for profile in [
            Profile::EstTcp,
            Profile::NewConn,
            Profile::Udp,
            Profile::Imix,
            Profile::Mixed,
        ] {
            for ipv6 in [false, true] {
                let plan = Plan::new(GenConfig {
                    profile,
                    flows: 1,
                    frame_size: 64,
                    seed: 1,
                    ipv6,
                })
                .unwrap();
                for rule in plan.rules() {
                    assert!(lines.contains(&rule.as_str()), "{profile:?} {rule}");
                }
            }
        }
        // `block all` comes before every pass rule.
        let block = lines.iter().position(|l| *l == "block all").unwrap();
        assert!(lines[..block].iter().all(|l| !l.starts_with("pass")));
    }

    #[test]
    fn prepare_traffic_generates_then_reuses() {
        let dir = std::env::temp_dir().join(format!("bench-run-traffic-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let cfg = GenConfig {
            profile: Profile::EstTcp,
            flows: 20,
            frame_size: 64,
            seed: 1,
            ipv6: false,
        };
        let t = prepare_traffic(&cfg, &dir).unwrap();
        assert_eq!(t.name, "est-tcp-v4-20x64");
        assert_eq!(t.steady_packets, [20, 20]);
        assert_eq!(t.steady_frame_bytes, [20 * 64, 20 * 64]);
        assert!(t.steady.iter().all(|p| p.as_ref().unwrap().exists()));
        assert!(t.setup_pcapng.as_ref().unwrap().exists());
        assert_eq!(t.rules[0], "block all");
        // Cached: the pcaps are not rewritten.
        let pcap = t.steady[0].clone().unwrap();
        fs::write(&pcap, b"sentinel").unwrap();
        let again = prepare_traffic(&cfg, &dir).unwrap();
        assert_eq!(fs::read(&pcap).unwrap(), b"sentinel");
        assert_eq!(again.steady_packets, [20, 20]);
        let nc = prepare_traffic(
            &GenConfig {
                profile: Profile::NewConn,
                ..cfg
            },
            &dir,
        )
        .unwrap();
        assert_eq!(
            (nc.steady[1].is_none(), nc.setup_pcapng.is_none()),
            (true, true)
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
