//! pf's `log` through the real `dpf` binary in replay mode (router mode),
//! the pflog file read by `tcpdump -n -e -r` as OpenBSD's /var/log/pflog:
//! - `block log` logs every blocked packet with its rule number, `block`,
//!   the direction and the interface;
//! - `pass log` logs the packet that creates the state, not the packets
//!   the state passes; `pass log (all)` logs those too (both directions);
//! - a `match` rule with `log` logs the packet as `match`, and the deciding
//!   rule logs it again;
//! - `dpfctl -L` prints the same records, as JSON with `--json`, and
//!   follows records appended and the file's rotation;
//! - `[log] size` rotates the file, keeping `keep` old ones;
//! - log rules without `[log]`, and bad `[log]` keys, are refused;
//! - a live dpf (net_pcap ports) writes the file and counts its records in
//!   `dpfctl -s info`.

use dpf_tests::frames::{flags, frame_with, tcp, Arrival, L4};
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const GW_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];

fn config(log: &Path, extra: &str) -> String {
    dpf_tests::frames::router_config(
        "10.1.0.7",
        "02:aa:00:00:00:07",
        &format!("[log]\nfile = \"{}\"\n{extra}\n", log.display()),
    )
}

const RULES: &str = "\
block log all
pass out quick on wan0
pass in log on lan0 proto tcp to port 22
pass in log (all) on lan0 proto udp to port 53
match in log on lan0 proto tcp to port 80
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(port: u32, ms: u64, frame: Vec<u8>) -> Arrival {
    Arrival {
        port,
        at: Duration::from_millis(ms),
        frame,
    }
}

fn lan(dst: &str, l4: &L4) -> Vec<u8> {
    frame_with(HOST_MAC, LAN_MAC, 64, ip("10.1.0.7"), ip(dst), l4)
}

fn wan(src: &str, l4: &L4) -> Vec<u8> {
    frame_with(GW_MAC, WAN_MAC, 64, ip(src), ip("10.1.0.7"), l4)
}

fn udp(sport: u16, dport: u16) -> L4 {
    L4::Udp {
        sport,
        dport,
        payload: b"query".to_vec(),
    }
}

fn arrivals() -> Vec<Arrival> {
    vec![
        // ssh: the SYN creates the state and is logged; the rest is not.
        at(
            0,
            10,
            lan("198.51.100.9", &tcp(40000, 22, 1000, 0, flags::SYN)),
        ),
        at(
            1,
            20,
            wan(
                "198.51.100.9",
                &tcp(22, 40000, 5000, 1001, flags::SYN | flags::ACK),
            ),
        ),
        at(
            0,
            30,
            lan("198.51.100.9", &tcp(40000, 22, 1001, 5001, flags::ACK)),
        ),
        // dns with log (all): query, answer, query: three records.
        at(0, 40, lan("198.51.100.53", &udp(5353, 53))),
        at(1, 50, wan("198.51.100.53", &udp(53, 5353))),
        at(0, 60, lan("198.51.100.53", &udp(5353, 53))),
        // telnet: blocked by rule 0.
        at(
            0,
            70,
            lan("198.51.100.9", &tcp(40001, 23, 1, 0, flags::SYN)),
        ),
        // http: the match rule logs, then the block rule decides and logs.
        at(
            0,
            80,
            lan("198.51.100.9", &tcp(40002, 80, 1, 0, flags::SYN)),
        ),
    ]
}

fn tcpdump(file: &Path) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-n", "-e", "-r"])
        .arg(file)
        .output()
        .expect("tcpdump is installed (scripts/setup)");
    assert!(
        out.status.success(),
        "tcpdump -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `rule N/(reason) action dir on if: src > dst` part of a line, in
/// OpenBSD tcpdump's words (Linux's tcpdump 4.99 prints the reason as
/// `0(match):` and does not know PF_MATCH, 12, which it prints `unkn(12)`).
fn gist(line: &str) -> String {
    let line = line
        .replace("/0(match): ", "/(match) ")
        .replace(") unkn(12) ", ") match ");
    let line = line.as_str();
    let start = line.find("rule ").expect("a pflog line");
    let end = line[start..]
        .find(": ")
        .and_then(|colon| {
            let rest = &line[start + colon + 2..];
            rest.find(':').map(|e| start + colon + 2 + e)
        })
        .unwrap_or(line.len());
    line[start..end].to_string()
}

#[test]
fn tcpdump_reads_the_pflog_file_with_rule_numbers_actions_and_interfaces() {
    let dir = dpf_tests::scratch();
    let log = dir.path().join("log").join("pflog");
    let r = dpf_tests::frames::replay(&config(&log, ""), Some(RULES), 2, &arrivals(), 1);
    assert_eq!(r.stats["pflog_logged"], 7, "{}", r.stats);
    assert_eq!(r.stats["pflog_dropped"], 0);
    assert_eq!(r.stats["pflog_written"], 7);
    let lines = tcpdump(&log);
    let got: Vec<String> = lines.iter().map(|l| gist(l)).collect();
    assert_eq!(
        got,
        [
            "rule 2/(match) pass in on lan0: 10.1.0.7.40000 > 198.51.100.9.22",
            "rule 3/(match) pass in on lan0: 10.1.0.7.5353 > 198.51.100.53.53",
            "rule 3/(match) pass in on wan0: 198.51.100.53.53 > 10.1.0.7.5353",
            "rule 3/(match) pass in on lan0: 10.1.0.7.5353 > 198.51.100.53.53",
            "rule 0/(match) block in on lan0: 10.1.0.7.40001 > 198.51.100.9.23",
            "rule 4/(match) match in on lan0: 10.1.0.7.40002 > 198.51.100.9.80",
            "rule 0/(match) block in on lan0: 10.1.0.7.40002 > 198.51.100.9.80",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
        "{lines:#?}"
    );
    // The capture's timestamps are the records' (replay's clock).
    assert!(lines[0].starts_with("00:00:00.010000"), "{}", lines[0]);

    // dpfctl -L prints the same records (no daemon needed: it reads the
    // file).
    let out = Command::new(dpf_tests::dpfctl_bin())
        .args(["-L", "--no-follow", "--log-file"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ctl: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(gist)
        .collect();
    assert_eq!(ctl, got);
}

/// `n` blocked TCP SYNs from lan0, 1 ms apart.
fn blocked(n: u16) -> Vec<Arrival> {
    (0..n)
        .map(|i| {
            at(
                0,
                1 + u64::from(i),
                lan("198.51.100.9", &tcp(30000 + i, 23, 1, 0, flags::SYN)),
            )
        })
        .collect()
}

#[test]
fn the_file_rotates_by_size_keeping_keep_old_files() {
    let dir = dpf_tests::scratch();
    let log = dir.path().join("pflog");
    // A record is 16 + 100 + 40 bytes: 25 fit in 4096 with the header.
    let r = dpf_tests::frames::replay(
        &config(&log, "size = 4096\nkeep = 2"),
        Some(RULES),
        2,
        &blocked(100),
        1,
    );
    assert_eq!(r.stats["pflog_written"], 100, "{}", r.stats);
    let old = |i: u32| dir.path().join(format!("pflog.{i}"));
    assert!(!old(2).exists(), "keep = 2: pflog.0 and pflog.1 only");
    let mut seen = Vec::new();
    for f in [old(1), old(0), log.clone()] {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len <= 4096, "{}: {len} bytes", f.display());
        let lines = tcpdump(&f);
        assert!(!lines.is_empty(), "{}", f.display());
        seen.extend(lines.iter().map(|l| gist(l)));
    }
    // The newest records, in order, the oldest rotated away.
    assert!(seen.len() > 50 && seen.len() < 100, "{}", seen.len());
    let want: Vec<String> = (100 - seen.len() as u16..100)
        .map(|i| {
            format!(
                "rule 0/(match) block in on lan0: 10.1.0.7.{} > 198.51.100.9.23",
                30000 + i
            )
        })
        .collect();
    assert_eq!(seen, want);
}

#[test]
fn log_rules_without_a_log_file_are_refused_and_log_keys_are_checked() {
    let dir = dpf_tests::scratch();
    std::fs::write(dir.path().join("pf.conf"), RULES).unwrap();
    let log = dir.path().join("pflog");
    let check = |extra_cfg: &str, drop_log: bool| {
        let mut cfg = config(&log, extra_cfg);
        if drop_log {
            cfg = cfg
                .replace("[log]\n", "")
                .replace(&format!("file = \"{}\"\n", log.display()), "");
        }
        let path = dir.path().join("dpf.toml");
        std::fs::write(&path, cfg).unwrap();
        let out = dpf_tests::run_dpf(
            &["-n", "-c", path.to_str().unwrap()],
            Duration::from_secs(30),
        )
        .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, err) = check("", false);
    assert!(ok, "{err}");
    let (ok, err) = check("", true);
    assert!(!ok);
    assert!(err.contains("log rules need a pflog file"), "{err}");
    let (ok, err) = check("size = 100", false);
    assert!(!ok);
    assert!(
        err.contains("dpf.toml:") && err.contains("at least 4096"),
        "{err}"
    );
    let (ok, err) = check("keep = 5000", false);
    assert!(!ok);
    assert!(err.contains("keep must be 0 to 1000"), "{err}");
    let (ok, err) = check("format = \"text\"", false);
    assert!(!ok);
    assert!(err.contains("unknown field `format`"), "{err}");
}

#[test]
fn dpfctl_prints_json_and_follows_appends_and_rotation() {
    use control::pflog::{LogSpec, PflogFile};
    use dataplane::pflog::{action, dir as pdir, reason, Record, AF_INET};
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = dpf_tests::scratch();
    let log = dir.path().join("pflog");
    let spec = LogSpec {
        file: log.clone(),
        // Three records a file.
        size_bytes: Some(24 + 3 * (16 + 100 + 20)),
        keep: 1,
    };
    let packet = |i: u8| {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[9] = 1;
        p[12..16].copy_from_slice(&[10, 1, 0, i]);
        p[16..20].copy_from_slice(&[203, 0, 113, 9]);
        p
    };
    let rec = |i: u8| {
        Record::new(
            0,
            7,
            1,
            action::DROP,
            reason::MATCH,
            pdir::OUT,
            AF_INET,
            &packet(i),
        )
    };
    let mut f = PflogFile::open(spec).unwrap();
    f.write(&rec(1), "wan0", 1_000_000_000).unwrap();
    f.flush().unwrap();

    // --json --no-follow: one object a record.
    let out = Command::new(dpf_tests::dpfctl_bin())
        .args(["-L", "--no-follow", "--json", "--log-file"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rule"], 7);
    assert_eq!(v["action"], "block");
    assert_eq!(v["dir"], "out");
    assert_eq!(v["ifname"], "wan0");
    assert_eq!(v["src"], "10.1.0.1");
    assert_eq!(v["dst"], "203.0.113.9");
    assert_eq!(v["ts"], "1.000000");

    // Following: the record there, then appended ones across rotations
    // (3 a file, keep = 1: the logger renames the file twice).
    let mut child = Command::new(dpf_tests::dpfctl_bin())
        .args(["-L", "--log-file"])
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let expect = |n: usize, lines: &mut Vec<String>| {
        while lines.len() < n {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(l) => lines.push(l),
                Err(_) => panic!("dpfctl -L printed {lines:#?}, waiting for {n}"),
            }
        }
    };
    expect(1, &mut lines);
    for i in 2..=8u8 {
        f.write(&rec(i), "wan0", u64::from(i) * 1_000_000_000)
            .unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    expect(8, &mut lines);
    let _ = child.kill();
    let _ = child.wait();
    let want: Vec<String> = (1..=8)
        .map(|i| format!("00:00:0{i}.000000 rule 7/(match) block out on wan0: 10.1.0.{i} > 203.0.113.9: icmp"))
        .collect();
    assert_eq!(lines, want);
    assert!(dir.path().join("pflog.0").exists());
}

#[test]
fn dpfctl_help_lists_the_log_flag() {
    let out = Command::new(dpf_tests::dpfctl_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("-L, --log"), "{help}");
    assert!(
        help.contains("--no-follow") && help.contains("--log-file"),
        "{help}"
    );
}

#[test]
fn a_live_dpf_writes_the_pflog_file_and_counts_its_records() {
    use dpf_tests::frames::frame;
    let dir = dpf_tests::scratch();
    let sock = dir.path().join("dpf.sock");
    let input = dir.path().join("lan.pcap");
    let log = dir.path().join("pflog");
    // 2 SYNs passed (not logged), 3 blocked and logged.
    let mut frames = Vec::new();
    for i in 1..=2u8 {
        frames.push(frame(
            format!("10.0.0.{i}").parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            &tcp(40000, 80, 1000, 0, flags::SYN),
        ));
    }
    for p in 0..3u16 {
        frames.push(frame(
            "10.9.9.9".parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            &tcp(50000 + p, 80, 1000, 0, flags::SYN),
        ));
    }
    dpf_tests::write_pcap(&input, &frames).unwrap();
    std::fs::write(
        dir.path().join("pf.conf"),
        "block in log all\npass in on lan0 proto tcp from 10.0.0.0/24 to any port 80\n",
    )
    .unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_pcap1,tx_pcap={}\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n[log]\nfile = \"{}\"\n",
            dpf_tests::eal_args("pflog", 256, "0@0,1@1"),
            input.display(),
            dir.path().join("wan.pcap").display(),
            sock.display(),
            log.display(),
        ),
    )
    .unwrap();
    let dpf = dpf_tests::Proc::spawn(
        "dpf",
        Command::new(dpf_tests::dpf_bin()).args(["--config", cfg.to_str().unwrap()]),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let lines = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "dpf never logged its 3 blocked packets"
        );
        if log.exists() {
            let lines = tcpdump(&log);
            if lines.len() >= 3 {
                break lines;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let got: Vec<String> = lines.iter().map(|l| gist(l)).collect();
    let want: Vec<String> = (0..3)
        .map(|p| {
            format!(
                "rule 0/(match) block in on lan0: 10.9.9.9.{} > 198.19.0.1.80",
                50000 + p
            )
        })
        .collect();
    assert_eq!(got, want);
    let out = Command::new(dpf_tests::dpfctl_bin())
        .arg("--socket")
        .arg(&sock)
        .args(["-s", "info", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["pflog"]["logged"], 3, "{info}");
    assert_eq!(info["pflog"]["dropped"], 0, "{info}");
    dpf.signal(libc::SIGTERM);
    let out = dpf.wait(Duration::from_secs(30)).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing more after the stop, and the file still reads.
    assert_eq!(tcpdump(&log).len(), 3);
}
