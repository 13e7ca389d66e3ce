//! dpfctl's pfctl words against a live dpf (net_pcap ports): labels and
//! their counters, `-k label`, `-k id`, `-z`, `-v`/`-vv` listings,
//! timeouts and limits, `-F rules|all`, anchors loaded, listed and flushed
//! at run time, and flags combined as pfctl's.

use dpf_tests::frames::{flags, frame, tcp};
use dpf_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn dpfctl_in(dir: &Path, sock: &Path, args: &[&str]) -> Output {
    Command::new(dpfctl_bin())
        .current_dir(dir)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("running dpfctl")
}

fn ok_text(dir: &Path, sock: &Path, args: &[&str]) -> String {
    let out = dpfctl_in(dir, sock, args);
    assert!(
        out.status.success(),
        "dpfctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(dir: &Path, sock: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&ok_text(dir, sock, &a)).expect("dpfctl --json prints JSON")
}

/// Waits until `f` holds (the workers pick a new ruleset up between
/// bursts).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn labels_kills_counters_listings_and_anchors_on_a_live_dpf() {
    let dir = scratch();
    let d = dir.path();
    let sock = d.join("dpf.sock");
    let input = d.join("lan.pcap");
    // 20 SYNs to port 80 from 10.0.0.1..20, 10 to port 443 from .101..110.
    let mut frames = Vec::new();
    for i in 1..=20u8 {
        frames.push(frame(
            format!("10.0.0.{i}").parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            &tcp(40000, 80, 1000, 0, flags::SYN),
        ));
    }
    for i in 101..=110u8 {
        frames.push(frame(
            format!("10.0.0.{i}").parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            &tcp(40000, 443, 1000, 0, flags::SYN),
        ));
    }
    write_pcap(&input, &frames).unwrap();
    std::fs::write(
        d.join("pf.conf"),
        "block in all\npass in on lan0 proto tcp to port { www https } label \"web\"\npass in on lan0 proto tcp to port 443 label \"tls-$dstport\"\nset timeout tcp.first 77\nset limit states 5000\n",
    )
    .unwrap();
    let cfg = d.join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_pcap1,tx_pcap={}\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n",
            eal_args("parity", 256, "0@0,1@1"),
            input.display(),
            d.join("wan.pcap").display(),
            sock.display()
        ),
    )
    .unwrap();
    let dpf = Proc::spawn(
        "dpf",
        Command::new(dpf_bin()).args(["--config", cfg.to_str().unwrap()]),
    )
    .unwrap();
    eventually("dpf processed its capture", || {
        sock.exists()
            && dpfctl_in(d, &sock, &["-s", "info", "--json"])
                .status
                .success()
            && json(d, &sock, &["-s", "info"])["states"] == 30
    });

    // -s labels: one line per label, summed over its rules and workers,
    // with pfctl -sl's columns; $dstport expanded.
    let labels = ok_text(d, &sock, &["-sl"]);
    // web: its www rule decided the 20 port-80 SYNs (40-byte packets, in);
    // its https rule lost the 443 ones to the later tls rule (last match).
    // Evaluations: the port-80 SYNs saw both web rules, the port-443 ones
    // skipped the www rule's port and saw the https one.
    assert_eq!(
        labels,
        "web 60 20 800 20 800 0 0 20\ntls-443 10 10 400 10 400 0 0 10\n"
    );

    // -v / -vv rule listings as pfctl prints them.
    let plain = ok_text(d, &sock, &["-sr"]);
    assert!(plain.starts_with("block drop in all\n"), "{plain}");
    assert!(!plain.contains("Evaluations"), "{plain}");
    let v = ok_text(d, &sock, &["-sr", "-v"]);
    let counters = format!(
        "  [ Evaluations: {:<8}  Packets: {:<8}  Bytes: {:<10}  States: {:<6}]",
        30, 20, 800, 20
    );
    assert!(v.contains(&counters), "{v}");
    assert!(
        v.contains("  [ Inserted: uid 0 pid 0 State Creations: 20    ]"),
        "{v}"
    );
    let vv = ok_text(d, &sock, &["-vvsr"]);
    assert!(vv.starts_with("@0 block drop in all\n"), "{vv}");
    // -v states: age and rule lines; -vv: id and creatorid.
    let ss = ok_text(d, &sock, &["-ss", "-v"]);
    assert!(
        ss.contains("   age 00:00:") && ss.contains(", rule 1"),
        "{ss}"
    );
    assert!(!ss.contains("creatorid"), "{ss}");
    let ssvv = ok_text(d, &sock, &["-vvss"]);
    assert!(
        ssvv.contains("   id: ") && ssvv.contains(" creatorid: "),
        "{ssvv}"
    );

    // -s timeouts, -s memory.
    let t = ok_text(d, &sock, &["-s", "timeouts"]);
    assert!(
        t.lines()
            .any(|l| l.starts_with("tcp.first") && l.ends_with(" 77s")),
        "{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with("udp.first") && l.ends_with(" 60s")),
        "{t}"
    );
    // pfctl's adaptive values from `set limit states 5000`: 60% / 120%.
    for (name, n) in [("adaptive.start", 3000), ("adaptive.end", 6000)] {
        assert!(
            t.lines()
                .any(|l| l.starts_with(name) && l.ends_with(&format!(" {n} states"))),
            "{t}"
        );
    }
    let m = ok_text(d, &sock, &["-sm"]);
    assert!(
        m.contains("states") && m.contains("hard limit") && m.contains("5000"),
        "{m}"
    );

    // -k label: the states of that label's rules go.
    assert_eq!(
        json(d, &sock, &["-k", "label", "-k", "tls-443"])["killed"],
        10
    );
    assert_eq!(json(d, &sock, &["-s", "info"])["states"], 20);
    // -k id: one state, by its id.
    let states = json(d, &sock, &["-s", "states"]);
    let id = states[0]["id"].as_str().unwrap().to_string();
    assert_eq!(json(d, &sock, &["-k", "id", &id])["killed"], 1);
    assert_eq!(json(d, &sock, &["-k", "id", &id])["killed"], 0);
    assert_eq!(json(d, &sock, &["-s", "info"])["states"], 19);
    // The current states per rule follow the kills.
    let rules = json(d, &sock, &["-s", "rules"]);
    assert_eq!(rules[1]["states_cur"], 19);
    assert_eq!(rules[3]["states_cur"], 0);
    assert_eq!(rules[3]["states_created"], 10);

    // -z: counters zeroed, current states kept.
    assert!(ok_text(d, &sock, &["-z"]).contains("cleared"));
    let rules = json(d, &sock, &["-s", "rules"]);
    assert_eq!(
        (
            rules[1]["evaluations"].as_u64(),
            rules[1]["states_created"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(rules[1]["states_cur"], 19);
    assert!(ok_text(d, &sock, &["-sl"]).starts_with("web 0 0 0 0 0 0 0 0\n"));

    // Anchors at run time: main rules call "ext", its rules come from a
    // file loaded with -a; -a -s rules lists them; errors name the file.
    std::fs::write(
        d.join("main.conf"),
        "block in all\nanchor \"ext\" in on lan0\nset timeout tcp.first 77\n",
    )
    .unwrap();
    std::fs::write(
        d.join("ext.conf"),
        "pass in proto tcp to port 22 label ssh\n",
    )
    .unwrap();
    std::fs::write(d.join("bad.conf"), "pass in on lan9\n").unwrap();
    ok_text(d, &sock, &["-f", "main.conf"]);
    let out = dpfctl_in(d, &sock, &["-a", "ext", "-f", "bad.conf"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.conf:1:12:") && err.contains("lan9"),
        "{err}"
    );
    let loaded = ok_text(d, &sock, &["-a", "ext", "-f", "ext.conf"]);
    assert!(
        loaded.contains("loaded anchor ext") && loaded.contains("3 rules in all"),
        "{loaded}"
    );
    eventually("the anchor's rules are in the ruleset", || {
        json(d, &sock, &["-a", "ext", "-s", "rules"])
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    let main = ok_text(d, &sock, &["-sr"]);
    assert_eq!(main, "block drop in all\nanchor \"ext\" in on lan0 all\n");
    let ext = ok_text(d, &sock, &["-a", "ext", "-sr"]);
    assert_eq!(
        ext,
        "pass in proto tcp from any to any port = ssh flags S/SA label \"ssh\"\n"
    );
    // States survived the swaps.
    assert_eq!(json(d, &sock, &["-s", "info"])["states"], 19);
    ok_text(d, &sock, &["-a", "ext", "-F", "rules"]);
    eventually("the anchor is empty", || {
        json(d, &sock, &["-a", "ext", "-s", "rules"])
            .as_array()
            .unwrap()
            .is_empty()
    });
    assert_eq!(ok_text(d, &sock, &["-a", "ext", "-sr"]), "");

    // -F rules: no rule left, options kept; -F all: rules and states.
    assert_eq!(ok_text(d, &sock, &["-F", "rules"]), "rules cleared\n");
    eventually("no rules", || {
        json(d, &sock, &["-s", "rules"])
            .as_array()
            .unwrap()
            .is_empty()
    });
    assert!(ok_text(d, &sock, &["-st"]).contains(" 77s"));
    let all = ok_text(d, &sock, &["-F", "all"]);
    // pfctl -F all: rules, states, source nodes, then the tables no rule
    // refers to.
    assert_eq!(
        all,
        "rules cleared\n19 states cleared\nsource tracking entries cleared\n0 tables deleted.\n"
    );
    assert_eq!(json(d, &sock, &["-s", "info"])["states"], 0);

    // Refused before anything is sent: exit status 2 and the word named.
    for (args, word) in [
        (&["-x"][..], "-x"),
        (&["-F", "bogus"][..], "bogus"),
        (&["-v", "-s", "info"][..], "-v"),
        (&["-a", "x", "-s", "info"][..], "-a x"),
    ] {
        let out = dpfctl_in(d, &sock, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "dpfctl {args:?}: {err}");
        assert!(err.contains(word), "dpfctl {args:?}: {err}");
    }

    dpf.signal(libc::SIGTERM);
    let out = dpf.wait(Duration::from_secs(20)).unwrap();
    expect_success(&out).unwrap();
}
