//! The FAQ's fw1/fw2 pair as an edge that translates: the LAN (10.1.0.0/24,
//! gateway VIP 10.1.0.254 on carp1) goes out with `nat-to carp2` (the WAN
//! VIP 10.2.0.254, which the new master takes over), and a service on the
//! LAN host (10.1.0.50 port 9090) is published on the WAN VIP port 8080
//! with `rdr-to`. The WAN host (10.2.0.50) has no route to the LAN: it
//! only ever talks to the VIP. Two TCP transfers run through fw1 — LAN
//! client to WAN server (source translated) and WAN client to the LAN
//! server (destination translated) — fw1 is SIGKILLed mid-transfer, and
//! both complete intact through fw2, which has the translated states from
//! pfsync and rewrites the connections exactly as fw1 did: the WAN server
//! sees the same translated address and port before and after.

use dpf_tests::netns::{in_ns, Namespaces};
use dpf_tests::pair::{dpfctl_json as ctl, wait_until};
use dpf_tests::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The edge pair's ruleset: the LAN clients allowed out are a table fed
/// at run time (on both boxes: pf does not sync tables), labels count the
/// two services.
const RULES: &str = "\
table <clients> persist
block all
pass quick on { lan0 wan0 } proto carp keep state (no-sync)
pass quick on lan0 proto pfsync keep state (no-sync)
match out on wan0 inet from 10.1.0.0/24 to any nat-to carp2
pass in on lan0 inet proto { tcp icmp } from <clients> to any label \"lan-out\"
pass out on wan0 inet proto { tcp icmp }
pass in on wan0 inet proto tcp to carp2 port 8080 rdr-to 10.1.0.50 port 9090 label \"published\"
pass out on lan0 inet proto tcp to 10.1.0.50 port 9090
";

/// The WAN VIP (carp2): the translated source of the LAN's connections
/// and the published address.
const WAN_VIP: &str = "10.2.0.254";
const LAN_HOST: &str = "10.1.0.50";
const WAN_HOST: &str = "10.2.0.50";

struct Net {
    // Processes first: they stop before their namespaces go.
    procs: Vec<Option<Proc>>,
    ns: Vec<String>,
    _guard: Namespaces,
    dir: tempfile::TempDir,
}

impl Net {
    fn sock(&self, fw: usize) -> PathBuf {
        self.dir.path().join(format!("fw{fw}.sock"))
    }

    fn start(&mut self, fw: usize, advskew: u8) {
        let dir = self.dir.path();
        std::fs::write(dir.join("pf.conf"), RULES).unwrap();
        let cfg = dir.join(format!("fw{fw}.toml"));
        std::fs::write(
            &cfg,
            dpf_tests::pair::faq_fw_config(
                fw,
                advskew,
                WAN_VIP,
                "maxupd = 128\ndefer = true\n",
                "natha",
                &self.sock(fw),
            ),
        )
        .unwrap();
        let ns = self.ns[fw + 1].clone();
        let p = Proc::spawn(
            &format!("fw{fw}"),
            Command::new("ip")
                .args(["netns", "exec", &ns])
                .arg(dpf_bin())
                .args(["--config", cfg.to_str().unwrap()]),
        )
        .unwrap();
        self.procs[fw] = Some(p);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.sock(fw).exists() {
            assert!(Instant::now() < deadline, "fw{fw} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lan(&self) -> &str {
        &self.ns[0]
    }

    fn wan(&self) -> &str {
        &self.ns[1]
    }

    /// Starts `python3 peer.py ARGS` in namespace `ns`.
    fn python(&self, name: &str, ns: &str, args: &[&str]) -> Proc {
        Proc::spawn(
            name,
            Command::new("ip")
                .args(["netns", "exec", ns, "python3"])
                .arg(self.dir.path().join("peer.py"))
                .args(args),
        )
        .unwrap()
    }
}

fn carp_state(net: &Net, fw: usize, name: &str) -> String {
    ctl(&net.sock(fw), &[name])["interfaces"][0]["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn setup() -> Net {
    let guard = dpf_tests::pair::faq_segments("dpn", false, false);
    let ns: Vec<String> = guard.names().to_vec();
    Net {
        procs: vec![None, None, None],
        ns,
        _guard: guard,
        dir: scratch(),
    }
}

/// `peer.py server PORT BLOCKS GAP_S`: accepts one connection, prints
/// `peer ADDR PORT` (getpeername) at once, sends BLOCKS blocks of 16 KiB
/// GAP_S apart, then waits for the client's `done` line — which arrives
/// long after a failover in the middle — and prints it with the peer
/// address the socket has then.
///
/// `peer.py client ADDR PORT BLOCKS`: connects, checks every block,
/// answers `done BLOCKS_OK BAD` after the last one and prints
/// `blocks bad leftover` when the server closes.
const PEER_PY: &str = r#"
import socket, sys
block = bytes(range(256)) * 64
if sys.argv[1] == "server":
    port, blocks, gap = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    import time
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(1)
    s.settimeout(30)  # never outlive the test
    c, _ = s.accept()
    c.settimeout(30)
    a, p = c.getpeername()
    print("peer", a, p, flush=True)
    for i in range(blocks):
        c.sendall(block)
        time.sleep(gap)
    got = b""
    while not got.endswith(b"\n"):
        b = c.recv(100)
        if not b:
            break
        got += b
    a, p = c.getpeername()
    print("end", a, p, got.decode().strip(), flush=True)
    c.close()
else:
    addr, port, blocks = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    c = socket.create_connection((addr, port), timeout=30)
    n = bad = 0
    rest = b""
    while n < blocks:
        b = c.recv(65536)
        if not b:
            break
        rest += b
        while len(rest) >= len(block):
            if rest[:len(block)] != block:
                bad += 1
            rest = rest[len(block):]; n += 1
    c.sendall(("done %d %d\n" % (n, bad)).encode())
    while True:
        b = c.recv(65536)
        if not b:
            break
        rest += b
    print(n, bad, len(rest))
"#;

/// The server sockets listening on `port` in `ns` with an established
/// connection: their peers (`ss`), as `addr:port` strings.
fn peers_of_server(ns: &str, port: u16) -> Vec<String> {
    let out = in_ns(
        ns,
        &format!("ss -Htn state established '( sport = :{port} )'"),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// The tcp states of the two transfers on `fw`: (nat-to, rdr-to).
fn transfer_states(net: &Net, fw: usize) -> (Option<Value>, Option<Value>) {
    let all = ctl(&net.sock(fw), &["-s", "states"]);
    let find = |pred: &dyn Fn(&Value) -> bool| {
        all.as_array()
            .and_then(|a| a.iter().find(|s| s["proto"] == "tcp" && pred(s)).cloned())
    };
    (
        find(&|s| s["src"] == LAN_HOST && s["dst"] == WAN_HOST && s["dport"] == 8080),
        find(&|s| s["src"] == WAN_HOST && s["dst"] == WAN_VIP && s["dport"] == 8080),
    )
}

#[test]
fn translated_connections_survive_a_failover_with_the_same_translation() {
    const BLOCKS: usize = 150;
    let t_start = Instant::now();
    let mut net = setup();
    net.start(1, 0);
    net.start(2, 100);
    wait_until("fw1 MASTER of both", Duration::from_secs(15), || {
        carp_state(&net, 1, "carp1") == "MASTER" && carp_state(&net, 1, "carp2") == "MASTER"
    });
    wait_until("fw2's bulk update", Duration::from_secs(15), || {
        !ctl(&net.sock(2), &["pfsync0"])["bulk"]
            .as_str()
            .unwrap_or("pending")
            .starts_with("pending")
    });
    std::fs::write(net.dir.path().join("peer.py"), PEER_PY).unwrap();
    // Nothing from the LAN passes until its client is in <clients>.
    let refused = in_ns(net.lan(), &format!("ping -c 1 -W 1 {WAN_HOST}"));
    assert!(
        !refused.status.success(),
        "an empty <clients> lets nothing out"
    );
    for fw in [1, 2] {
        ctl(&net.sock(fw), &["-t", "clients", "-T", "add", LAN_HOST]);
    }
    // fw1 resolves both hosts (a packet to an unresolved next hop is
    // dropped and a SYN would wait for its retransmission); the ping is
    // translated too, so the WAN host answers the VIP.
    let ping = in_ns(net.lan(), &format!("ping -c 3 -i 0.2 -W 1 {WAN_HOST}"));
    assert!(
        ping.status.success(),
        "ping through fw1's nat-to: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // About 150 × 25 ms ≈ 4 s of transfer each way.
    let gap = "0.025";
    let blocks = BLOCKS.to_string();
    let wan_server = net.python("wan server", net.wan(), &["server", "8080", &blocks, gap]);
    let lan_server = net.python("lan server", net.lan(), &["server", "9090", &blocks, gap]);
    std::thread::sleep(Duration::from_millis(300));
    let lan_client = net.python(
        "lan client",
        net.lan(),
        &["client", WAN_HOST, "8080", &blocks],
    );
    let wan_client = net.python(
        "wan client",
        net.wan(),
        &["client", WAN_VIP, "8080", &blocks],
    );

    // Both translated states reach fw2, translation included.
    let t0 = Instant::now();
    let (nat1, rdr1) = loop {
        let (n1, r1) = transfer_states(&net, 1);
        let (n2, r2) = transfer_states(&net, 2);
        if let (Some(n1), Some(r1), Some(n2), Some(r2)) = (n1, r1, n2, r2) {
            if n2["nat"] == n1["nat"] && r2["nat"] == r1["nat"] {
                break (n1, r1);
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "translated states not synced\nfw1 states: {}\nfw2 states: {}\nfw1 info: {}\nfw2 pfsync0: {}",
            ctl(&net.sock(1), &["-s", "states"]),
            ctl(&net.sock(2), &["-s", "states"]),
            ctl(&net.sock(1), &["-s", "info"]),
            ctl(&net.sock(2), &["pfsync0"]),
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // fw1 translated as the rules say.
    let nat_to = &nat1["nat"];
    assert_eq!(nat_to["src"], WAN_VIP, "nat-to carp2: {nat1}");
    assert_eq!(
        (&nat_to["dst"], &nat_to["dport"]),
        (&Value::from(WAN_HOST), &Value::from(8080))
    );
    let nat_port = nat_to["sport"].as_u64().expect("translated port") as u16;
    let rdr_to = &rdr1["nat"];
    assert_eq!(
        (&rdr_to["dst"], &rdr_to["dport"]),
        (&Value::from(LAN_HOST), &Value::from(9090)),
        "rdr-to: {rdr1}"
    );
    assert_eq!(
        (&rdr_to["src"], &rdr_to["sport"]),
        (&rdr1["src"], &rdr1["sport"]),
        "rdr-to keeps the source"
    );
    // pfsync `defer`: each connection's first packet, translated, was held
    // on fw1 until fw2 had its state.
    let p1 = ctl(&net.sock(1), &["pfsync0"]);
    assert!(p1["exports"]["deferred"].as_u64() >= Some(2), "{p1}");
    // What the WAN server's connection looks like before the failover.
    let before = peers_of_server(net.wan(), 8080);
    assert_eq!(before, vec![format!("{WAN_VIP}:{nat_port}")]);

    // Kill the master mid-transfer.
    std::thread::sleep(Duration::from_millis(700));
    // The labels counted both services on fw1 (before it goes).
    let labels = ctl(&net.sock(1), &["-s", "labels"]);
    for l in ["lan-out", "published"] {
        let entry = labels
            .as_array()
            .and_then(|a| a.iter().find(|e| e["label"] == l))
            .unwrap_or_else(|| panic!("label {l} in {labels}"));
        assert!(entry["packets"].as_u64() > Some(0), "{entry}");
    }

    for (ns, port) in [(net.wan(), 8080), (net.lan(), 9090)] {
        assert_eq!(
            peers_of_server(ns, port).len(),
            1,
            "the transfer to port {port} ended before the failover: make it longer"
        );
    }
    let killed_at = Instant::now();
    if let Some(p) = net.procs[1].take() {
        p.signal(libc::SIGKILL);
        let _ = p.wait(Duration::from_secs(10));
    }
    let took = wait_until("fw2 MASTER of both", Duration::from_secs(10), || {
        carp_state(&net, 2, "carp1") == "MASTER" && carp_state(&net, 2, "carp2") == "MASTER"
    });
    // Once fw2 has passed packets of the nat-to connection both ways, the
    // WAN server's socket still has the same peer.
    let fw2_passed = |i: usize| {
        transfer_states(&net, 2)
            .0
            .and_then(|s| s["packets"][i].as_u64())
            .unwrap_or(0)
    };
    wait_until(
        "fw2 to pass the nat-to connection's packets",
        Duration::from_secs(15),
        || fw2_passed(0) > 0 && fw2_passed(1) > 0,
    );
    let after = peers_of_server(net.wan(), 8080);

    let lan_out = lan_client.wait(Duration::from_secs(40)).unwrap();
    let wan_out = wan_client.wait(Duration::from_secs(40)).unwrap();
    let transfers_done = killed_at.elapsed();
    let wan_srv = wan_server.wait(Duration::from_secs(10)).unwrap();
    let lan_srv = lan_server.wait(Duration::from_secs(10)).unwrap();
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (nat2, rdr2) = transfer_states(&net, 2);
    let info2 = ctl(&net.sock(2), &["-s", "info"]);
    let expect = format!("{BLOCKS} 0 0");
    assert_eq!(
        text(&lan_out),
        expect,
        "LAN -> WAN (nat-to) through the failover: {}\nfw2 state: {nat2:?}\nfw2: {info2}",
        String::from_utf8_lossy(&lan_out.stderr)
    );
    assert_eq!(
        text(&wan_out),
        expect,
        "WAN -> LAN (rdr-to) through the failover: {}\nfw2 state: {rdr2:?}\nfw2: {info2}",
        String::from_utf8_lossy(&wan_out.stderr)
    );
    // The WAN server: the connection came from the VIP and the translated
    // port, and the client's last words (sent through fw2) came on it.
    let wan_seen = text(&wan_srv);
    assert_eq!(
        wan_seen,
        format!("peer {WAN_VIP} {nat_port}\nend {WAN_VIP} {nat_port} done {BLOCKS} 0"),
        "{}",
        String::from_utf8_lossy(&wan_srv.stderr)
    );
    assert_eq!(after, before, "the WAN server's peer after the failover");
    // The LAN server: the WAN client's own address (rdr-to translates the
    // destination only).
    let lan_seen = text(&lan_srv);
    let rdr_src = format!("{} {}", rdr1["src"].as_str().unwrap(), rdr1["sport"]);
    assert_eq!(
        lan_seen,
        format!("peer {rdr_src}\nend {rdr_src} done {BLOCKS} 0")
    );
    // fw2 rewrote them with the translations it got from fw1 (the states
    // are fw1's, by id and creator id).
    let (nat2, rdr2) = (
        nat2.expect("nat-to state on fw2"),
        rdr2.expect("rdr-to state on fw2"),
    );
    for (m, b) in [(&nat1, &nat2), (&rdr1, &rdr2)] {
        assert_eq!((&m["id"], &m["creatorid"]), (&b["id"], &b["creatorid"]));
        assert_eq!(m["nat"], b["nat"]);
        assert!(b["packets"][0].as_u64() > Some(0), "{b}");
    }
    // The new master's table decides new connections: the client passes,
    // and no longer once it is deleted from fw2's <clients>.
    let ping = in_ns(net.lan(), &format!("ping -c 2 -i 0.2 -W 1 {WAN_HOST}"));
    assert!(
        ping.status.success(),
        "ping through fw2 with the client in <clients>"
    );
    ctl(&net.sock(2), &["-t", "clients", "-T", "delete", LAN_HOST]);
    let ping = in_ns(net.lan(), &format!("ping -c 1 -W 1 -p 01 {WAN_HOST}"));
    assert!(
        !ping.status.success(),
        "the client deleted from <clients> on fw2"
    );
    eprintln!(
        "WAN server saw {before:?} before and {after:?} after the failover; \
         fw2 MASTER {:.2} s after the kill, transfers done {:.2} s after it; \
         test ran {:.1} s",
        took.as_secs_f64(),
        transfers_done.as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
}
