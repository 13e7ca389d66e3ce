//! Foundation tier-2 tests: a real `dpf` on DPDK virtual devices.

use dpf_tests::*;
use std::process::Command;
use std::time::Duration;

fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("dpf.toml");
    std::fs::write(&p, with_socket(dir, "dpf", body)).expect("writing config");
    p
}

/// `body` with a control socket of its own in `dir` (tests run in
/// parallel; a second dpf on the default socket is refused at start).
fn with_socket(dir: &std::path::Path, name: &str, body: &str) -> String {
    if body.contains("[control]") {
        return body.to_string();
    }
    format!(
        "{body}[control]\nsocket = \"{}\"\n",
        dir.join(format!("{name}.sock")).display()
    )
}

/// Starts dpf on a `dpf.toml` holding `body`; returns its exit code and
/// stderr.
fn run_config(body: &str, timeout: Duration) -> (i32, String) {
    let dir = scratch();
    let cfg = write_config(dir.path(), body);
    let out = run_dpf(&["--config", cfg.to_str().unwrap()], timeout).unwrap();
    (
        code(&out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = run_dpf(
        &["--config", "/nonexistent/dpf.toml"],
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(code(&out.status), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/dpf.toml"), "{err}");
    assert!(err.contains("cannot read configuration"), "{err}");
}

#[test]
fn unknown_key_is_refused_with_file_line_and_key() {
    let (code, err) = run_config(
        "[eal]\nargs = []\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_ring0\"\nspeeed = 10\n",
        Duration::from_secs(10),
    );
    assert_eq!(code, 2);
    assert!(err.contains("dpf.toml:7:"), "{err}");
    assert!(err.contains("unknown field `speeed`"), "{err}");
}

#[test]
fn bad_devargs_are_refused_before_starting_dpdk() {
    let (code, err) = run_config(
        "[eal]\nargs = []\n[[port]]\nname = \"lan0\"\ndevice = \"net_nosuch0,a=b\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_ring1\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n",
        Duration::from_secs(10),
    );
    assert_eq!(code, 2);
    assert!(err.contains("dpf.toml:5:"), "{err}");
    assert!(err.contains("net_nosuch0"), "{err}");
}

#[test]
fn devargs_dpdk_rejects_fail_with_the_port_named() {
    let (code, err) = run_config(
        &format!(
            "[eal]\nargs = {}\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap=/nonexistent/in.pcap\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_null0\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n",
            eal_args("badpcap", 128, "0@0,1@1")
        ),
        Duration::from_secs(30),
    );
    assert_ne!(code, 0);
    assert!(err.contains("port lan0"), "{err}");
    assert!(err.contains("net_pcap0"), "{err}");
}

/// 10,000 frames through net_pcap ports in wire mode come out identical,
/// in order.
#[test]
fn pcap_round_trip_in_wire_mode_is_identical() {
    let dir = scratch();
    let input = dir.path().join("in.pcap");
    let out_wan = dir.path().join("out_wan.pcap");
    let out_lan = dir.path().join("out_lan.pcap");
    let frames: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| {
            let payload: Vec<u8> = (0..(i % 1400) as usize)
                .map(|b| (b as u32 ^ i) as u8)
                .collect();
            udp4_frame(
                [10, 0, (i >> 8) as u8, i as u8],
                [198, 19, 0, 1],
                1024 + (i % 50000) as u16,
                53,
                &payload,
            )
        })
        .collect();
    write_pcap(&input, &frames).unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[eal]\nargs = {}\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={},tx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_pcap1,tx_pcap={}\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n",
            eal_args("roundtrip", 256, "0@0,1@1"),
            input.display(),
            out_lan.display(),
            out_wan.display()
        ),
    );
    let out = run_dpf(
        &["--config", cfg.to_str().unwrap(), "--exit-when-idle", "500"],
        Duration::from_secs(60),
    )
    .unwrap();
    expect_success(&out).unwrap();
    let got = read_pcap(&out_wan).unwrap();
    assert_eq!(got.len(), frames.len(), "frame count");
    for (i, (a, b)) in frames.iter().zip(&got).enumerate() {
        assert_eq!(a, b, "frame {i} differs");
    }
    assert!(
        read_pcap(&out_lan).unwrap().is_empty(),
        "nothing goes back out lan0"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("forwarded 10000"), "{stdout}");
}

/// Two dpf processes joined by net_memif pass traffic; both stop cleanly on
/// SIGTERM and leave no socket or runtime files behind.
#[test]
fn two_processes_over_memif_pass_traffic_and_stop_cleanly() {
    let dir = scratch();
    let input = dir.path().join("in.pcap");
    let output = dir.path().join("out.pcap");
    let sock = dir.path().join("memif.sock");
    let frames: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            udp4_frame(
                [10, 0, 0, i as u8],
                [198, 19, 0, 1],
                2000 + i as u16,
                53,
                b"memif",
            )
        })
        .collect();
    write_pcap(&input, &frames).unwrap();
    let prefix_a = file_prefix("memifA");
    let prefix_b = file_prefix("memifB");
    let eal = |p: &str| {
        format!(
            r#"["--no-huge", "-m", "256", "--no-shconf", "--file-prefix", "{p}", "--lcores", "0@0,1@1", "--log-level", "*:error"]"#
        )
    };
    // B: memif client -> pcap writer; A: pcap replay (infinite) -> memif server.
    let cfg_b = dir.path().join("b.toml");
    std::fs::write(
        &cfg_b,
        with_socket(dir.path(), "b", &format!(
            "[eal]\nargs = {}\n[[port]]\nname = \"in0\"\ndevice = \"net_memif0,role=client,socket={},id=0,socket-abstract=no\"\n[[port]]\nname = \"out0\"\ndevice = \"net_pcap0,tx_pcap={}\"\n[wire]\npairs = [[\"in0\", \"out0\"]]\n",
            eal(&prefix_b),
            sock.display(),
            output.display()
        )),
    )
    .unwrap();
    let cfg_a = dir.path().join("a.toml");
    std::fs::write(
        &cfg_a,
        with_socket(dir.path(), "a", &format!(
            "[eal]\nargs = {}\n[[port]]\nname = \"src0\"\ndevice = \"net_pcap0,rx_pcap={},infinite_rx=1\"\n[[port]]\nname = \"link0\"\ndevice = \"net_memif0,role=server,socket={},id=0,socket-abstract=no\"\n[wire]\npairs = [[\"src0\", \"link0\"]]\n",
            eal(&prefix_a),
            input.display(),
            sock.display()
        )),
    )
    .unwrap();
    let a = Proc::spawn(
        "dpf A",
        Command::new(dpf_bin()).args(["--config", cfg_a.to_str().unwrap()]),
    )
    .unwrap();
    // The memif client needs the server's socket to exist when it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "memif server socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = Proc::spawn(
        "dpf B",
        Command::new(dpf_bin()).args(["--config", cfg_b.to_str().unwrap()]),
    )
    .unwrap();
    // Let traffic flow for a while once the memif link is up.
    std::thread::sleep(Duration::from_secs(3));
    b.signal(libc::SIGTERM);
    let out_b = b.wait(Duration::from_secs(20)).unwrap();
    a.signal(libc::SIGTERM);
    let out_a = a.wait(Duration::from_secs(20)).unwrap();
    expect_success(&out_b).unwrap();
    expect_success(&out_a).unwrap();
    let got = read_pcap(&output).unwrap();
    assert!(
        got.len() >= frames.len(),
        "B wrote only {} frames\nA: {}\nB: {}",
        got.len(),
        String::from_utf8_lossy(&out_a.stderr),
        String::from_utf8_lossy(&out_b.stderr)
    );
    for f in &got {
        assert!(frames.contains(f), "B received a frame A never sent");
    }
    assert!(!sock.exists(), "memif socket left behind");
    for p in [&prefix_a, &prefix_b] {
        let run = std::path::Path::new("/var/run/dpdk").join(p);
        assert!(!run.exists(), "{} left behind", run.display());
    }
}

/// SIGINT stops a dpf that is busy forwarding, with exit code 0 and stats.
#[test]
fn sigint_stops_a_busy_dpf_with_stats() {
    let dir = scratch();
    let input = dir.path().join("in.pcap");
    write_pcap(
        &input,
        &[udp4_frame([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"x")],
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[eal]\nargs = {}\n[[port]]\nname = \"a\"\ndevice = \"net_pcap0,rx_pcap={},infinite_rx=1\"\n[[port]]\nname = \"b\"\ndevice = \"net_null0\"\n[wire]\npairs = [[\"a\", \"b\"]]\n",
            eal_args("sigint", 256, "0@0,1@1"),
            input.display()
        ),
    );
    let p = Proc::spawn(
        "dpf",
        Command::new(dpf_bin()).args(["--config", cfg.to_str().unwrap()]),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    p.signal(libc::SIGINT);
    let out = p.wait(Duration::from_secs(20)).unwrap();
    expect_success(&out).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("dpf: ran"), "{stdout}");
    let fwd: u64 = stdout
        .split("forwarded ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(fwd > 1000, "forwarded only {fwd}: {stdout}");
}
