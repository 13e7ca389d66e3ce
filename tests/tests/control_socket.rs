//! The control socket cannot hurt the box: a live dpf with 50 000 states,
//! a client that asks for every state and never reads (a suspended
//! `dpfctl`), and meanwhile other clients are answered promptly, the
//! stalled one is dropped and counted, and a full listing still streams
//! whole. Also: dpfctl refuses what it does not know, and dpf refuses to
//! run without its socket.

use dpf_tests::frames::{flags, frame, tcp, write_pcapng, Arrival};
use dpf_tests::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const STATES: usize = 50_000;

fn dpfctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(dpfctl_bin())
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("running dpfctl")
}

fn json(sock: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = dpfctl(sock, &a);
    assert!(
        out.status.success(),
        "dpfctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("dpfctl --json prints JSON")
}

fn config(dir: &Path, sock: &Path, tag: &str) -> std::path::PathBuf {
    let empty = dir.join("empty.pcap");
    write_pcap(&empty, &[]).unwrap();
    std::fs::write(
        dir.join("pf.conf"),
        "block in all\npass in on lan0 proto tcp\n",
    )
    .unwrap();
    let cfg = dir.join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_pcap1,tx_pcap={}\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n",
            eal_args(tag, 512, "0@0,1@1"),
            empty.display(),
            dir.join("wan.pcap").display(),
            sock.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_client_that_does_not_read_cannot_stall_the_control_socket() {
    let dir = scratch();
    let sock = dir.path().join("run").join("dpf.sock");
    let cfg = config(dir.path(), &sock, "ctlsock");
    // 50 000 SYNs from distinct hosts: 50 000 states, set up before start.
    let setup = dir.path().join("setup.pcapng");
    let arrivals: Vec<Arrival> = (0..STATES)
        .map(|i| Arrival {
            port: 0,
            at: Duration::from_micros(i as u64),
            frame: frame(
                format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff)
                    .parse()
                    .unwrap(),
                "198.19.0.1".parse().unwrap(),
                &tcp(40000, 80, 1000, 0, flags::SYN),
            ),
        })
        .collect();
    write_pcapng(&setup, 2, &arrivals);
    let dpf = Proc::spawn(
        "dpf",
        Command::new(dpf_bin()).args([
            "--config",
            cfg.to_str().unwrap(),
            "--preload",
            setup.to_str().unwrap(),
        ]),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::from("no socket");
    loop {
        assert!(
            Instant::now() < deadline,
            "dpf never came up with its states: {last}"
        );
        if sock.exists() {
            let out = dpfctl(&sock, &["-s", "info", "--json"]);
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                if v["states"].as_u64() == Some(STATES as u64) {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Asks for every state, then never reads (Ctrl-Z on dpfctl).
    let mut stalled = UnixStream::connect(&sock).unwrap();
    stalled
        .write_all(b"{\"version\":2,\"request\":{\"cmd\":\"show-states\"}}\n")
        .unwrap();
    // A full listing asked meanwhile waits for the workers, then streams.
    let sock2 = sock.clone();
    let listing = std::thread::spawn(move || dpfctl(&sock2, &["-s", "states", "--json"]));

    // Other clients are answered promptly all along, and the stalled one
    // is dropped and counted.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut answers = 0;
    let dropped_at = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the stalled client was never dropped"
        );
        let t = Instant::now();
        let info = json(&sock, &["-s", "info"]);
        slowest = slowest.max(t.elapsed());
        answers += 1;
        if info["control_socket"]["clients_dropped_slow"] == 1 {
            break started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "stalled client dropped after {dropped_at:?}; {answers} info answers meanwhile, slowest {slowest:?}"
    );
    // Before the change, one answer waited ~5 s on the stalled write.
    assert!(
        slowest < Duration::from_secs(3),
        "dpfctl -s info took {slowest:?} while a client stalled"
    );
    assert!(answers >= 3, "only {answers} answers in {dropped_at:?}");

    // The stalled client got part of the listing, then the end.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = stalled.read_to_end(&mut got);
    let lines = got.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    assert!(
        !got.ends_with(b"{\"version\":2,\"ok\":true,\"done\":true}\n"),
        "the stalled client got the whole listing ({lines} lines)"
    );

    let out = listing.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), STATES);
    assert!(all.iter().all(|s| s["dport"] == 80 && s["proto"] == "tcp"));

    let info = json(&sock, &["-s", "info"]);
    assert_eq!(info["control_socket"]["clients_dropped_slow"], 1);
    assert_eq!(info["states"], STATES as u64);

    dpf.signal(libc::SIGTERM);
    let out = dpf.wait(Duration::from_secs(30)).unwrap();
    expect_success(&out).unwrap();
}

#[test]
fn dpf_without_its_control_socket_does_not_start() {
    let dir = scratch();
    // The socket's directory cannot be created: a file is in the way.
    std::fs::write(dir.path().join("run"), "a file").unwrap();
    let sock = dir.path().join("run").join("dpf.sock");
    let cfg = config(dir.path(), &sock, "ctlbind");
    let out = run_dpf(
        &["--config", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "dpf ran without its control socket"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("control socket") && err.contains("not a directory"),
        "{err}"
    );
}

#[test]
fn dpfctl_refuses_unknown_flags_and_words() {
    let dir = scratch();
    let sock = dir.path().join("none.sock");
    for (args, word) in [
        (&["-x"][..], "-x"),
        (&["-sr", "-v", "-x"][..], "-x"),
        (&["-s", "bogus"][..], "bogus"),
        (&["-s", "rules", "extra"][..], "extra"),
        (&["carp1", "-v"][..], "-v"),
    ] {
        let out = dpfctl(&sock, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "dpfctl {args:?}: {err}");
        assert!(err.contains(&format!("'{word}'")), "dpfctl {args:?}: {err}");
        assert!(
            !err.contains("No such file"),
            "dpfctl {args:?} tried to connect"
        );
    }
    // pfctl's combined flags parse (and then find no dpf to ask).
    for args in [
        &["-sr", "-v"][..],
        &["-vvsr"][..],
        &["-ss", "-v"][..],
        &["-sl"][..],
    ] {
        let out = dpfctl(&sock, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "dpfctl {args:?}: {err}");
        assert!(err.contains("No such file"), "dpfctl {args:?}: {err}");
    }
    // --help lists every view.
    let help = String::from_utf8(dpfctl(&sock, &["--help"]).stdout).unwrap();
    for view in [
        "info",
        "states",
        "rules",
        "interfaces",
        "routes",
        "neighbors",
        "carp",
        "pfsync",
    ] {
        assert!(help.contains(&format!("- {view}:")), "--help lacks {view}");
    }
}
