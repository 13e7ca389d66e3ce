//! The rig that behaves like a multi-queue NIC: `bench rss-gen` sends UDP
//! conversations over two links of N queue pairs, each frame on the
//! queue symmetric Toeplitz and the redirection table pick, into a live
//! dpf with N workers (one rx queue each). The links are memif (dpf the
//! server) or vhost-user (dpf's ports are `net_vhost`, the generator's
//! `virtio_user`); neither PMD hashes, so dpf is told the frames arrive
//! placed. With `rx_placement = "toeplitz"` dpf owns each flow on the
//! queue it arrives on: with 2 and 4 workers less than 1 % of the traffic
//! is handed to another worker (counted by dpf), every frame is
//! forwarded, and the states are spread over the workers. With the
//! software hash instead, about (N-1)/N of the packets change worker.

use dpf_tests::pair::dpfctl_json;
use dpf_tests::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// The links between dpf and the generator.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Memif,
    Vhost,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Memif => "memif",
            Transport::Vhost => "vhost",
        }
    }

    /// dpf's end of link `i`, listening on `sock`.
    fn dut_device(self, i: u8, sock: &std::path::Path, queues: u16) -> String {
        match self {
            Transport::Memif => format!(
                "net_memif{i},role=server,socket={},id=0,socket-abstract=no,rsize=10",
                sock.display()
            ),
            Transport::Vhost => format!("net_vhost{i},iface={},queues={queues}", sock.display()),
        }
    }
}

/// Runs the rig with `workers` workers; returns (generator's report,
/// dpf's `-s info`).
fn rig(transport: Transport, workers: u16, placement: Option<&str>) -> (Value, Value) {
    let dir = scratch();
    let d = dir.path();
    std::fs::write(d.join("pf.conf"), "pass all keep state\n").unwrap();
    // Worker lcores share the machine's two CPUs (functional, not a
    // throughput figure); the generator has its own process.
    let lcores: Vec<String> = (0..=workers)
        .map(|l| format!("{l}@{}", if l == 0 { 1 } else { l % 2 }))
        .collect();
    let (lan, wan) = (d.join("lan.sock"), d.join("wan.sock"));
    let placement_line = placement
        .map(|p| format!("rx_placement = \"{p}\"\n"))
        .unwrap_or_default();
    let cfg = d.join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = [\"--no-huge\", \"-m\", \"512\", \"--no-shconf\", \"--file-prefix\", \"{}\", \"--lcores\", \"{}\", \"--log-level\", \"*:error\"]\n\
             [dataplane]\nrules = \"pf.conf\"\n\
             [[port]]\nname = \"lan0\"\ndevice = \"{}\"\n{placement_line}\
             [[port]]\nname = \"wan0\"\ndevice = \"{}\"\n{placement_line}\
             [wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n",
            file_prefix("rigdut"),
            lcores.join(","),
            transport.dut_device(0, &lan, workers),
            transport.dut_device(1, &wan, workers),
            d.join("dpf.sock").display()
        ),
    )
    .unwrap();
    let sock = d.join("dpf.sock");
    let mut dut = Proc::spawn(
        "dpf",
        Command::new(dpf_bin()).args(["--config", cfg.to_str().unwrap()]),
    )
    .unwrap();
    dpf_tests::pair::wait_until("dpf's control socket", Duration::from_secs(30), || {
        sock.exists()
    });
    let mut gen = Proc::spawn(
        "rss-gen",
        Command::new(bench_bin()).args([
            "rss-gen",
            "--transport",
            transport.name(),
            "--lan-socket",
            lan.to_str().unwrap(),
            "--wan-socket",
            wan.to_str().unwrap(),
            "--queues",
            &workers.to_string(),
            "--flows",
            "1000",
            "--rounds",
            "5",
            "--file-prefix",
            &file_prefix("riggen"),
            "--cpu",
            "0",
            "--link-timeout-s",
            "30",
        ]),
    )
    .unwrap();
    // The generator prints its report once its replies are in (or after
    // its drain timeout), then waits for dpf to close the links: read the
    // line as it comes, and stop dpf only after it.
    let stdout = gen.take_stdout().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = line_tx.send(line);
        }
    });
    let mut info = Value::Null;
    dpf_tests::pair::wait_until("the generator's traffic", Duration::from_secs(60), || {
        info = live_info(&mut dut, &sock);
        info["rx"].as_u64() == Some(10_000)
    });
    let report = line_rx
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .and_then(|line| serde_json::from_str::<Value>(&line).ok());
    info = live_info(&mut dut, &sock);
    drop(dut);
    let out = gen.wait(Duration::from_secs(60)).unwrap();
    let report = report.unwrap_or_else(|| {
        panic!(
            "no report from the generator: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, info)
}

/// `dpfctl -s info` of the running dpf. When the call fails, dpf's exit
/// status and output name the cause if it has died.
fn live_info(dut: &mut Proc, sock: &std::path::Path) -> Value {
    match std::panic::catch_unwind(|| dpfctl_json(sock, &["-s", "info"])) {
        Ok(info) => info,
        Err(e) => {
            std::thread::sleep(Duration::from_millis(500));
            if let Some(report) = dut.exit_report() {
                panic!("{report}");
            }
            std::panic::resume_unwind(e)
        }
    }
}

fn flows_stay_on_the_queue_a_nic_gives_them(transport: Transport) {
    for workers in [2u16, 4] {
        let (report, info) = rig(transport, workers, Some("toeplitz"));
        assert_eq!(report["transport"], transport.name(), "{report}");
        assert_eq!(report["sent"], 10_000, "{report}");
        // dpf forwarded every frame (below); the generator gets nearly all
        // back (a memif ring it was not polling while it sent may drop).
        assert!(report["received"].as_u64().unwrap() >= 9_500, "{report}");
        let queues = report["per_queue"].as_array().unwrap();
        assert!(
            queues.iter().all(|q| q.as_u64().unwrap() > 1000),
            "{report}"
        );
        let rx = info["rx"].as_u64().unwrap();
        let handed = info["handed_off"].as_u64().unwrap();
        eprintln!(
            "{} {workers} workers, toeplitz: {handed} of {rx} handed off",
            transport.name()
        );
        assert_eq!(rx, 10_000);
        assert!(
            handed * 100 < rx,
            "{workers} workers: {handed} of {rx} handed off"
        );
        assert_eq!(info["states"], 1000);
        assert_eq!(info["forwarded"], 10_000);
    }
}

#[test]
fn flows_stay_on_their_queue_over_memif() {
    flows_stay_on_the_queue_a_nic_gives_them(Transport::Memif);
}

#[test]
fn flows_stay_on_their_queue_over_vhost() {
    flows_stay_on_the_queue_a_nic_gives_them(Transport::Vhost);
}

#[test]
fn the_software_hash_hands_most_packets_over() {
    for transport in [Transport::Memif, Transport::Vhost] {
        let (report, info) = rig(transport, 2, None);
        assert!(report["received"].as_u64().unwrap() > 0, "{report}");
        let rx = info["rx"].as_u64().unwrap();
        let handed = info["handed_off"].as_u64().unwrap();
        eprintln!(
            "{} 2 workers, hash: {handed} of {rx} handed off",
            transport.name()
        );
        assert!(handed * 4 > rx, "{handed} of {rx} handed off");
    }
}
