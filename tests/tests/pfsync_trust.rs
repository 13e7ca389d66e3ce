//! pfsync trust through real dpf processes (issue 12 item 3): two boxes
//! on a sync segment (a Linux bridge) with `syncpeer` and `auth`, and a
//! third host on the same segment that forges pfsync with a raw
//! AF_PACKET socket. The forged INS, BUS START/END and CLR — from its own
//! address and spoofing the peer's — change nothing and are counted;
//! meanwhile the two boxes sync: the bulk update completes and a state
//! created on one appears on the other.

use control::pfsync::pack::PacketWriter;
use control::pfsync::wire::frame::LinkParams;
use control::pfsync::wire::{BusRepr, BusStatus, ClrRepr, KeyRepr, Message, StateRepr};
use dataplane::flow::{proto, Addr, FlowKey};
use dpf_tests::netns::{in_ns, must, plain_link, Namespaces};
use dpf_tests::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RULES: &str = "\
block all
pass quick on sync0 proto pfsync keep state (no-sync)
pass in on sync0 proto icmp keep state
";
const KEY: &str = "a test key that is long enough";
const ATTACKER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];
/// The forged state's destination port: never a real flow here.
const FORGED_DPORT: u16 = 5353;

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

    fn start(&mut self, fw: usize) {
        let dir = self.dir.path();
        std::fs::write(dir.join("pf.conf"), RULES).unwrap();
        let cfg = dir.join(format!("fw{fw}.toml"));
        let peer = 3 - fw;
        std::fs::write(
            &cfg,
            format!(
                r#"[eal]
args = {eal}
[dataplane]
mode = "router"
rules = "pf.conf"
[[port]]
name = "sync0"
device = "net_af_packet0,iface=s0"
addresses = ["10.9.0.{fw}/24"]
[pfsync]
syncdev = "sync0"
syncpeer = "10.9.0.{peer}"
auth = "{KEY}"
[control]
socket = "{sock}"
"#,
                eal = eal_args(&format!("trust{fw}"), 256, "0@0,1@1"),
                sock = self.sock(fw).display(),
            ),
        )
        .unwrap();
        let p = Proc::spawn(
            &format!("fw{fw}"),
            Command::new("ip")
                .args(["netns", "exec", &self.ns[fw]])
                .arg(dpf_bin())
                .args(["--config", cfg.to_str().unwrap()]),
        )
        .unwrap();
        self.procs[fw] = Some(p);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.sock(fw).exists() {
            assert!(Instant::now() < deadline, "fw{fw} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn ctl(sock: &Path, args: &[&str]) -> Value {
    let out = Command::new(dpfctl_bin())
        .arg("--socket")
        .arg(sock)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpfctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "{what} not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn setup() -> Net {
    // 0: the segment (a bridge), 1/2: the firewalls, 3: the attacker.
    let guard = Namespaces::new("dpt", &["seg", "fw1", "fw2", "atk"]);
    let ns: Vec<String> = guard.names().to_vec();
    let seg = &ns[0];
    must(&format!("ip -n {seg} link add br0 type bridge"));
    for (i, (host, dev)) in [(&ns[1], "s0"), (&ns[2], "s0"), (&ns[3], "a0")]
        .iter()
        .enumerate()
    {
        let p = format!("p{i}");
        must(&format!(
            "ip link add {p} netns {seg} type veth peer name {dev} netns {host}"
        ));
        must(&format!("ip -n {seg} link set {p} master br0"));
        plain_link(seg, &p);
        plain_link(host, dev);
    }
    plain_link(seg, "br0");
    let atk = &ns[3];
    must(&format!("ip -n {atk} addr add 10.9.0.66/24 dev a0"));
    must(&format!(
        "ip -n {atk} link set a0 address 02:00:00:00:00:66"
    ));
    Net {
        procs: vec![None, None, None],
        ns,
        _guard: guard,
        dir: scratch(),
    }
}

/// A pfsync frame from `src_ip` to 224.0.0.240 (every box on the segment
/// gets it), without authentication.
fn forged(src_ip: [u8; 4], msgs: &[Message]) -> Vec<u8> {
    let link = LinkParams::new(ATTACKER_MAC, src_ip, [0; 4], None).unwrap();
    let mut w = PacketWriter::new(1500, link, 7).unwrap();
    for m in msgs {
        w.push(m).unwrap();
    }
    w.finish().unwrap().to_vec()
}

/// A state that would open 10.66.0.1 -> 10.77.0.1:5353 (UDP).
fn forged_state(creatorid: u32) -> Message {
    let k = KeyRepr::from_flow_key(&FlowKey {
        addr: [Addr::v4([10, 66, 0, 1]), Addr::v4([10, 77, 0, 1])],
        port: [4444, FORGED_DPORT],
        rdomain: 0,
        af: 2,
        proto: proto::UDP,
    });
    let mut s = StateRepr {
        id: 0x4242,
        key: [k, k],
        creatorid,
        af: 2,
        proto: proto::UDP,
        direction: 1,
        timeout: 8,
        expire_s: 60,
        ..StateRepr::default()
    };
    s.src.state = 2;
    s.dst.state = 2;
    s.ifname[..3].copy_from_slice(b"all");
    Message::Ins(s)
}

/// Sends `frames` from the attacker's namespace through a raw socket.
fn inject(net: &Net, frames: &[Vec<u8>]) {
    let hex: Vec<String> = frames
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let out = in_ns(
        &net.ns[3],
        &format!(
            "python3 -c 'import socket,sys\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind((\"a0\",0))\nfor h in sys.argv[1:]: s.send(bytes.fromhex(h))' {}",
            hex.join(" ")
        ),
    );
    assert!(out.status.success(), "inject: {out:?}");
}

/// Counts, for `secs` seconds, the pfsync frames the attacker's port
/// receives from others: `<to broadcast or multicast MAC> <unicast>`.
const SNIFF_PY: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
s.bind(("a0", 0))
s.settimeout(0.2)
group = uni = 0
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        f = s.recv(65535)
    except socket.timeout:
        continue
    if len(f) < 34 or f[12:14] != b"\x08\x00" or f[23] != 240:
        continue
    if f[6:12] == bytes.fromhex("020000000066"):
        continue
    if f[0] & 1:
        group += 1
    else:
        uni += 1
print(group, uni)
"#;

fn pfsync0(net: &Net, fw: usize) -> Value {
    ctl(&net.sock(fw), &["pfsync0"])
}

fn states(net: &Net, fw: usize) -> Vec<Value> {
    ctl(&net.sock(fw), &["-s", "states"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn forged_pfsync_changes_nothing_while_the_authenticated_pair_syncs() {
    let mut net = setup();
    std::fs::write(net.dir.path().join("sniff.py"), SNIFF_PY).unwrap();
    let sniffer = Proc::spawn(
        "sniffer",
        Command::new("ip")
            .args(["netns", "exec", &net.ns[3], "python3"])
            .arg(net.dir.path().join("sniff.py"))
            .arg("6"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    net.start(1);
    let fw2_creator = 0x0bad_cafe;
    // A host on the segment, from its own address and spoofing fw2's:
    // an INS (a hole through block all) and a bulk START/END (which would
    // end fw1's start-up demotion early).
    let msgs = [
        forged_state(fw2_creator),
        Message::Bus(BusRepr::new(fw2_creator, BusStatus::Start)),
    ];
    let end = [Message::Bus(BusRepr::new(fw2_creator, BusStatus::End))];
    inject(
        &net,
        &[
            forged([10, 9, 0, 66], &msgs),
            forged([10, 9, 0, 66], &end),
            forged([10, 9, 0, 2], &msgs),
            forged([10, 9, 0, 2], &end),
        ],
    );
    wait_until("the forgeries counted", Duration::from_secs(5), || {
        let p = pfsync0(&net, 1);
        p["not_from_peer"].as_u64() >= Some(2) && p["auth_missing"].as_u64() >= Some(2)
    });
    let p = pfsync0(&net, 1);
    assert!(
        p["bulk"].as_str().unwrap_or("").starts_with("pending"),
        "a forged BUS END ended the bulk wait: {p}"
    );
    assert!(p["stats"]["badauth"].as_u64() >= Some(2), "{p}");
    assert_eq!(p["received_states"], 0, "{p}");
    assert!(
        !states(&net, 1).iter().any(|s| s["dport"] == FORGED_DPORT),
        "a forged state was imported"
    );

    // The real peer: fw1's request (re-sent every 2 s) is answered, and
    // fw2 gets fw1's (empty) table.
    net.start(2);
    wait_until("both bulk updates", Duration::from_secs(15), || {
        pfsync0(&net, 1)["bulk"] == "done" && pfsync0(&net, 2)["bulk"] == "done"
    });
    // A state created on fw2 (a ping to it) reaches fw1.
    let creator2 = pfsync0(&net, 2)["creatorid"].as_str().unwrap().to_string();
    let ping = in_ns(&net.ns[3], "ping -c 2 -i 0.2 -W 1 10.9.0.2");
    assert!(ping.status.success(), "ping fw2: {ping:?}");
    wait_until("fw2's ICMP state on fw1", Duration::from_secs(5), || {
        states(&net, 1)
            .iter()
            .any(|s| s["proto"] == "icmp" && s["creatorid"] == creator2.as_str())
    });
    assert!(pfsync0(&net, 1)["sent_packets"].as_u64() > Some(0));
    assert_eq!(
        pfsync0(&net, 1)["stats"]["opackets"],
        pfsync0(&net, 1)["sent_packets"]
    );
    // A forged CLR of fw2's states, spoofing fw2: nothing is removed.
    let creator2_id = u32::from_str_radix(&creator2, 16).unwrap();
    let clr = Message::Clr(ClrRepr {
        ifname: [0; 16],
        creatorid: creator2_id,
    });
    let before = pfsync0(&net, 1)["auth_missing"].as_u64().unwrap();
    inject(&net, &[forged([10, 9, 0, 2], &[clr])]);
    wait_until("the forged CLR counted", Duration::from_secs(5), || {
        pfsync0(&net, 1)["auth_missing"].as_u64() > Some(before)
    });
    assert!(
        states(&net, 1)
            .iter()
            .any(|s| s["proto"] == "icmp" && s["creatorid"] == creator2.as_str()),
        "the forged CLR removed fw2's states"
    );
    assert_eq!(pfsync0(&net, 1)["received_clears"], 0);
    // fw2 got the same forgeries from the start (no match: no peer yet
    // for the first ones), and nothing unauthenticated went through.
    assert!(!states(&net, 2).iter().any(|s| s["dport"] == FORGED_DPORT));
    // With a unicast syncpeer, the boxes never sent pfsync to a group or
    // broadcast MAC: the attacker's port saw none.
    let out = sniffer.wait(Duration::from_secs(10)).unwrap();
    let seen = String::from_utf8_lossy(&out.stdout).to_string();
    let group: u64 = seen
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("sniffer output: {seen:?} {out:?}"));
    assert_eq!(group, 0, "pfsync to a group/broadcast MAC seen: {seen}");
}
