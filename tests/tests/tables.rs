//! Runtime tables through the real binaries: a live dpf (a pcap port
//! replaying one UDP flow forever, a null port) with `block all` and
//! `pass in from <allowed>`, changed with `dpfctl -t allowed -T ...` while
//! it forwards. Whether the flow passes is read from the `forwarded`
//! counter of `dpfctl -s info` moving or not.

use dpf_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn dpfctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(dpfctl_bin())
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("running dpfctl")
}

fn ok(sock: &Path, args: &[&str]) -> String {
    let out = dpfctl(sock, args);
    assert!(
        out.status.success(),
        "dpfctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn info(sock: &Path) -> Option<Value> {
    let out = dpfctl(sock, &["-s", "info", "--json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("JSON"))
}

/// Whether the flow passes: `forwarded` moves while `rx` moves.
fn passes(sock: &Path) -> bool {
    // A change reaches the worker at its next burst; the burst it was in
    // the middle of when dpfctl got its answer may still count under the
    // old table.
    std::thread::sleep(Duration::from_millis(100));
    let a = info(sock).expect("info");
    std::thread::sleep(Duration::from_millis(300));
    let b = info(sock).expect("info");
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    assert!(n(&b, "rx") > n(&a, "rx"), "the flow is not arriving: {b}");
    n(&b, "forwarded") > n(&a, "forwarded")
}

#[test]
fn tables_change_at_run_time_without_a_reload() {
    let dir = scratch();
    let input = dir.path().join("in.pcap");
    let sock = dir.path().join("dpf.sock");
    write_pcap(
        &input,
        &[udp4_frame(
            [10, 9, 9, 9],
            [198, 19, 0, 1],
            2000,
            9,
            b"tables",
        )],
    )
    .unwrap();
    std::fs::write(
        dir.path().join("clients.txt"),
        "# test clients\n192.0.2.1\n\n!192.0.2.0/31   # not the pair\n192.0.2.0/24\n2001:db8::/32\n",
    )
    .unwrap();
    let rules = "table <allowed> persist\n\
                 table <listed> persist { 10.0.0.1 }\n\
                 table <fixed> const { 192.0.2.0/24 }\n\
                 table <fromfile> persist file \"clients.txt\"\n\
                 block all\n\
                 pass out on b no state\n\
                 pass in on a from <allowed> no state\n\
                 pass in on a from <fromfile> no state\n";
    let conf = dir.path().join("pf.conf");
    std::fs::write(&conf, rules).unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"a\"\ndevice = \"net_pcap0,rx_pcap={},infinite_rx=1\"\n[[port]]\nname = \"b\"\ndevice = \"net_null0\"\n[wire]\npairs = [[\"a\", \"b\"]]\n[control]\nsocket = \"{}\"\n",
            eal_args("tables", 256, "0@0,1@1"),
            input.display(),
            sock.display()
        ),
    )
    .unwrap();
    let p = Proc::spawn(
        "dpf",
        Command::new(dpf_bin()).args(["--config", cfg.to_str().unwrap()]),
    )
    .unwrap();
    let mut up = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if info(&sock).is_some_and(|i| i["rx"].as_u64().unwrap_or(0) > 0) {
            up = true;
            break;
        }
    }
    assert!(up, "dpf did not come up");

    // The file-backed table loaded; flags as pfctl -vsT shows them.
    let tables = ok(&sock, &["-s", "Tables"]);
    assert!(tables.contains("-pa-r--\tallowed\t0 addresses"), "{tables}");
    assert!(tables.contains("-pa----\tlisted\t1 addresses"), "{tables}");
    assert!(tables.contains("c-a----\tfixed\t1 addresses"), "{tables}");
    assert!(
        tables.contains("-pa-r--\tfromfile\t4 addresses"),
        "{tables}"
    );
    let shown = ok(&sock, &["-t", "fromfile", "-T", "show"]);
    assert_eq!(
        shown,
        "   192.0.2.0/24\n  !192.0.2.0/31\n   192.0.2.1\n   2001:db8::/32\n"
    );

    // Not in the table: blocked.
    assert!(!passes(&sock), "10.9.9.9 passed before it was added");
    let added = ok(
        &sock,
        &["-t", "allowed", "-T", "add", "10.9.9.9", "10.0.0.0/24"],
    );
    assert_eq!(added, "2/2 addresses added.\n");
    assert!(passes(&sock), "10.9.9.9 still blocked after -T add");

    // -T test: per address, and exit status 2 unless all match.
    let t = dpfctl(
        &sock,
        &[
            "-t", "allowed", "-T", "test", "10.9.9.9", "10.0.0.7", "10.5.5.5",
        ],
    );
    assert_eq!(t.status.code(), Some(2));
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(text.contains("M 10.0.0.7 (10.0.0.0/24)"), "{text}");
    assert!(text.contains("  10.5.5.5 (no entry)"), "{text}");
    assert!(text.ends_with("2/3 addresses match.\n"), "{text}");
    assert_eq!(
        dpfctl(&sock, &["-t", "allowed", "-T", "test", "10.9.9.9"])
            .status
            .code(),
        Some(0)
    );
    let e = dpfctl(&sock, &["-t", "allowed", "-T", "test", "10.0.0.0/8"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("not networks"));

    // const refuses changes; an unknown table does not exist.
    let e = dpfctl(&sock, &["-t", "fixed", "-T", "add", "1.2.3.4"]);
    assert!(!e.status.success());
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("table <fixed> is const"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    let e = dpfctl(&sock, &["-t", "nosuch", "-T", "show"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("table <nosuch> does not exist"));
    let e = dpfctl(&sock, &["-t", "allowed", "-T", "show", "10.0.0.1"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("-T show takes no addresses"));
    let e = dpfctl(&sock, &["-t", "allowed", "-T", "add", "10.0.0.1", "-x"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("unknown option '-x'"));
    let e = dpfctl(&sock, &["-t", "allowed", "-T", "kill"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("-T kill is not supported"));

    // A reload keeps what was added to a table defined without addresses
    // and resets one defined with them (pf's pfr_ina_commit).
    ok(&sock, &["-t", "listed", "-T", "add", "10.7.7.7"]);
    ok(&sock, &["-f", conf.to_str().unwrap()]);
    assert_eq!(
        ok(&sock, &["-t", "allowed", "-T", "show"]),
        "   10.0.0.0/24\n   10.9.9.9\n"
    );
    assert_eq!(ok(&sock, &["-t", "listed", "-T", "show"]), "   10.0.0.1\n");
    assert!(passes(&sock), "10.9.9.9 blocked after the reload");

    // -T add on an unknown table creates it (pfctl), JSON shows times.
    assert_eq!(
        ok(&sock, &["-t", "made", "-T", "add", "!10.1/16"]),
        "1 table created.\n1/1 addresses added.\n"
    );
    let v: Value =
        serde_json::from_str(&ok(&sock, &["-t", "made", "-T", "show", "--json"])).unwrap();
    assert_eq!(v[0]["address"], "!10.1.0.0/16");
    assert!(v[0]["cleared"].as_u64().unwrap() > 1_600_000_000, "{v}");

    // Delete: blocked again.
    assert_eq!(
        ok(&sock, &["-t", "allowed", "-T", "delete", "10.9.9.9"]),
        "1/1 addresses deleted.\n"
    );
    assert!(!passes(&sock), "10.9.9.9 passed after -T delete");

    // Replace, zero, expire, flush.
    assert_eq!(
        ok(&sock, &["-t", "allowed", "-T", "replace", "10.9.9.0/24"]),
        "1 addresses added.\n1 addresses deleted.\n"
    );
    assert!(passes(&sock), "10.9.9.9 blocked after -T replace");
    assert_eq!(
        ok(&sock, &["-t", "allowed", "-T", "zero"]),
        "1 table/stats cleared.\n"
    );
    assert_eq!(
        ok(&sock, &["-t", "allowed", "-T", "expire", "3600"]),
        "0/0 addresses expired.\n"
    );
    assert_eq!(
        ok(&sock, &["-t", "allowed", "-T", "flush"]),
        "1 addresses deleted.\n"
    );
    assert!(!passes(&sock), "10.9.9.9 passed after -T flush");

    // -F Tables: unreferenced tables go, referenced ones lose persist.
    assert_eq!(ok(&sock, &["-F", "Tables"]), "3 tables deleted.\n");
    let tables = ok(&sock, &["-s", "Tables"]);
    assert_eq!(
        tables,
        "--a-r--\tallowed\t0 addresses\n--a-r--\tfromfile\t4 addresses\n"
    );

    p.signal(libc::SIGINT);
    let out = p.wait(Duration::from_secs(20)).unwrap();
    expect_success(&out).unwrap();
}
