//! The Prometheus endpoint of a live dpf: `GET /metrics` answers the text
//! exposition that a Prometheus parser reads, with the state table, the
//! counters and the drops by reason of the traffic dpf processed; other
//! paths and methods are refused; a bad `[metrics] listen` is a
//! configuration error.

use dpf_tests::frames::{flags, frame, tcp};
use dpf_tests::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn the_metrics_endpoint_serves_parseable_prometheus_text() {
    let dir = scratch();
    let sock = dir.path().join("dpf.sock");
    let input = dir.path().join("lan.pcap");
    // 20 SYNs that create states, 5 that the rules block.
    let mut frames = Vec::new();
    for i in 1..=20u8 {
        frames.push(frame(
            format!("10.0.0.{i}").parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            &tcp(40000, 80, 1000, 0, flags::SYN),
        ));
    }
    for p in 0..5u16 {
        frames.push(frame(
            "10.9.9.9".parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            &tcp(50000 + p, 80, 1000, 0, flags::SYN),
        ));
    }
    write_pcap(&input, &frames).unwrap();
    std::fs::write(
        dir.path().join("pf.conf"),
        "block in log quick from 10.9.9.9\npass all\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_pcap1,tx_pcap={}\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[log]\nfile = \"{}\"\n",
            eal_args("metrics", 256, "0@0,1@1"),
            input.display(),
            dir.path().join("wan.pcap").display(),
            sock.display(),
            dir.path().join("pflog.pcap").display()
        ),
    )
    .unwrap();
    let dpf = Proc::spawn(
        "dpf",
        Command::new(dpf_bin()).args(["--config", cfg.to_str().unwrap()]),
    )
    .unwrap();
    // Until dpf has processed its capture.
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        assert!(Instant::now() < deadline, "dpf never served its metrics");
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (head, body) = get(port, "/metrics");
            if head.starts_with("HTTP/1.1 200") && body.contains("dpf_rx_packets_total 25") {
                assert!(head.contains("openmetrics-text"), "{head}");
                break body;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text parses");
    let value = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} {label:?} in\n{body}"))
    };
    assert_eq!(value("dpf_states", None), 20.0);
    assert_eq!(value("dpf_rx_packets_total", None), 25.0);
    assert_eq!(
        value(
            "dpf_dropped_packets_total",
            Some(("reason", "blocked-by-rule"))
        ),
        5.0
    );
    // The five blocked SYNs were logged (`block in log`), none lost.
    assert_eq!(value("dpf_pflog_logged_packets_total", None), 5.0);
    assert_eq!(value("dpf_pflog_dropped_packets_total", None), 0.0);
    assert!(value("dpf_states_limit", None) > 0.0);
    // A ruleset without translation, routing or scrub values: side
    // records for one state in 32, and the tables' bytes.
    let limit = value("dpf_states_limit", None) as u64;
    let workers = value("dpf_workers", None) as u64;
    let even = limit.div_ceil(workers);
    let per_shard = (even + even / 4).max(1024).min(limit);
    assert_eq!(
        value("dpf_state_side_records", None) as u64,
        per_shard.div_ceil(32) * workers
    );
    assert_eq!(value("dpf_state_side_records_used", None), 0.0);
    let bytes = value("dpf_state_table_bytes", None) as u64;
    assert!(bytes > 128 * per_shard * workers && bytes <= 157 * per_shard * workers);
    assert_eq!(value("dpf_port_link_up", Some(("port", "lan0"))), 1.0);
    // Anything but GET /metrics is refused.
    assert!(get(port, "/").0.starts_with("HTTP/1.1 404"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    drop(dpf);

    // A listen address that is not one is refused at start.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(&format!("127.0.0.1:{port}"), "localhost"),
    )
    .unwrap();
    let out = run_dpf(
        &["--config", bad.to_str().unwrap(), "-n"],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an address:port"));
}
