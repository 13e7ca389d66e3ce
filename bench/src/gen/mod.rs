//! `bench gen`: pktgen-style pcaps for dpf's throughput harness.
//!
//! dpf runs in wire mode, port 0 (`lan`, inside, clients in
//! 198.18.0.0/16 or 2001:2:0:1::/64) cross-connected with port 1 (`wan`,
//! outside, servers in 198.19.0.0/16 or 2001:2:0:2::/64), and the harness
//! replays a pcap on each port with net_pcap `infinite_rx=1`: the same
//! capture repeats for ever. So every profile writes two kinds of file:
//!
//! * **setup** — packets that create the states, played once before the
//!   measurement: `<name>-setup.pcap` holds all of them in order, and
//!   `<name>-setup-port0.pcap` / `-port1.pcap` the same packets split by
//!   arrival port. The order matters across ports (a SYN-ACK before its
//!   SYN is dropped), so setup is written in phases — all SYNs (port 0),
//!   then all SYN-ACKs (port 1), then all ACKs (port 0) — and the sidecar
//!   lists those runs (`setup_port_order`), which is the per-packet port of
//!   the combined file, run-length encoded.
//! * **steady** — `<name>-port0.pcap` (client-to-server) and
//!   `<name>-port1.pcap` (server-to-client), looped by the harness. Every
//!   packet must stay legitimate for a stateful firewall on every pass.
//!
//! `<name>-setup.pcapng` holds the setup packets of `<name>-setup.pcap` in
//! the same order, each tagged with its arrival port as its interface id
//! (0 = port 0, 1 = port 1; see [`pcapng`]): what `dpf --preload` reads.
//!
//! `<name>.json` describes the run: profile, seed, flows, frame size, each
//! file's packet and byte counts, the setup runs, and the pf.conf lines the
//! profile expects (`rules`).
//!
//! # Why looping established TCP stays in window
//!
//! The handshake negotiates window scaling (both SYNs carry wscale 7, MSS
//! 1460, SACK permitted; windows are 65535, i.e. 8 MiB once scaled). In the
//! steady files each connection sends, in each direction, one segment with
//! seq = own ISN + 1 and ack = peer ISN + 1, always the same, carrying
//! `frame size - headers` bytes of payload (at most one MSS). pf's window
//! check (`pf_tcp_track_full`) accepts a segment when its end is below the
//! highest edge the peer advertised, its seq is no more than one (scaled)
//! window behind the highest byte seen, and its ack is within
//! `MAXACKWINDOW` (65535 + 1500) of what the peer has sent. On the first
//! pass the segment is new data at the left edge of the window; on every
//! later pass it is a retransmission of that same data, at most 1460 bytes
//! behind the highest byte seen and so far inside the 8 MiB window; the ack
//! never moves and never acknowledges anything the peer did not send. No
//! pass advances any edge, so pass `k` looks to pf exactly like pass 2:
//! each packet is a state hit that is passed and refreshes the state's
//! expiry. The two ports may be replayed at independent rates: neither
//! direction depends on having seen the other's data.
//!
//! # Frame sizes
//!
//! `--frame-size B` is the Ethernet frame size with FCS; the pcap stores
//! `B - 4` bytes (64 → 60 captured). Steady frames are grown to that size
//! with transport payload (UDP, established TCP) or, for SYNs, which carry
//! no payload, a zero Ethernet trailer after the IP datagram. A frame whose
//! headers alone are longer keeps its natural size (IPv6 TCP is at least
//! 74 + 4 bytes; the handshake SYNs with options 66 + 4 over IPv4). Setup
//! frames are never grown (at least 60 bytes captured): they are not
//! measured.
//!
//! # Profiles (N = `--flows`)
//!
//! * `est-tcp`: N connections; setup = 3N handshake packets; steady = N
//!   segments per port, flow `k` at index `k`.
//! * `new-conn`: steady port 0 only, N SYNs (MSS option only, so 60 bytes
//!   over IPv4) with N distinct 5-tuples; no setup. On the second pass of
//!   the loop each SYN finds the state its first pass created (a
//!   retransmitted SYN), so state *creation* is measured only while the
//!   first pass lasts, or after states expire or are flushed.
//! * `udp`: N flows to port 9; setup = N client datagrams (port 0);
//!   steady = N datagrams per port.
//! * `imix`: as `udp` with 64/570/1518-byte frames 7:4:1 in a fixed
//!   12-frame cycle; each steady file has N rounded up to a multiple of 12
//!   packets (flows wrap around) so the ratio is exact.
//! * `mixed`: setup as `est-tcp`; each steady file is `ceil(N/4)` groups of
//!   4 established segments + 1 other packet: on port 0 a new SYN (slots
//!   after the established flows), on port 1 a SYN from outside to an
//!   inside host's port 23 that the rules block. 8:1:1 over both files.
//!
//! Every byte is a function of the arguments (see [`plan`]): the same
//! arguments write byte-identical files.

pub mod output;
pub mod pcapng;
pub mod plan;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::frames::MAX_CAPTURED_LEN;
use output::{FileStats, PcapSink, Progress};
use plan::{GenConfig, Plan, Port, Profile, SetupStep};

/// Default `--frame-size`.
pub const DEFAULT_FRAME_SIZE: usize = 64;

/// Arguments of `bench gen`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Traffic profile.
    #[arg(long, value_enum)]
    pub profile: Profile,
    /// Flows (connections) to generate.
    #[arg(long, default_value_t = 1000)]
    pub flows: u64,
    /// Ethernet frame size in bytes including the 4-byte FCS, which the pcap
    /// does not store (64 = 60 captured bytes) [default: 64; not with imix].
    #[arg(long, value_parser = clap::value_parser!(u16).range(64..=1518))]
    pub frame_size: Option<u16>,
    /// Seed of every random choice (ISNs, addresses, ports).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// IPv6 in 2001:2::/48 (RFC 5180) instead of IPv4 in 198.18.0.0/15.
    #[arg(long)]
    pub ipv6: bool,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Base name of the files [default: <profile>-<v4|v6>-<flows>x<frame size>].
    #[arg(long)]
    pub name: Option<String>,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

impl GenArgs {
    /// The generation these arguments ask for.
    pub fn config(&self) -> anyhow::Result<GenConfig> {
        if self.profile == Profile::Imix && self.frame_size.is_some() {
            bail!("--frame-size does not apply to imix (64/570/1518 bytes, 7:4:1)");
        }
        Ok(GenConfig {
            profile: self.profile,
            flows: self.flows,
            frame_size: self.frame_size.map_or(DEFAULT_FRAME_SIZE, usize::from),
            seed: self.seed,
            ipv6: self.ipv6,
        })
    }
}

/// The default base name of a generation's files.
pub fn default_name(cfg: &GenConfig) -> String {
    let family = if cfg.ipv6 { "v6" } else { "v4" };
    match cfg.profile {
        Profile::Imix => format!("imix-{family}-{}", cfg.flows),
        profile => format!(
            "{}-{family}-{}x{}",
            profile.name(),
            cfg.flows,
            cfg.frame_size
        ),
    }
}

/// The files of one generation; `None` where a file would be empty.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Files {
    /// All setup packets in order; `setup_port_order` gives each one's port.
    pub setup: Option<FileStats>,
    /// Setup packets arriving on port 0, in order.
    pub setup_port0: Option<FileStats>,
    /// Setup packets arriving on port 1, in order.
    pub setup_port1: Option<FileStats>,
    /// Steady packets replayed on port 0 (client to server).
    pub port0: Option<FileStats>,
    /// Steady packets replayed on port 1 (server to client).
    pub port1: Option<FileStats>,
}

/// A run of consecutive packets of the combined setup file that arrive on
/// one port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetupRun {
    /// Arrival port (0 or 1).
    pub port: usize,
    /// What the packets are.
    pub step: SetupStep,
    /// Index in the combined setup file of the run's first packet.
    pub first: u64,
    /// Packets in the run.
    pub packets: u64,
}

/// The addresses and ports the traffic uses.
#[derive(Clone, Debug, Serialize)]
pub struct Network {
    /// Port 0.
    pub port0: &'static str,
    /// Port 1.
    pub port1: &'static str,
    /// Inside (client) prefix.
    pub inside: String,
    /// Outside (server) prefix.
    pub outside: String,
    /// Source MAC of inside hosts (destination of outside ones).
    pub inside_mac: String,
    /// Source MAC of outside hosts.
    pub outside_mac: String,
    /// Client ports used.
    pub client_ports: String,
    /// TCP server port.
    pub tcp_server_port: u16,
    /// UDP server port.
    pub udp_server_port: u16,
    /// Port of the packets `mixed` expects blocked.
    pub blocked_port: u16,
}

/// IMIX parameters, for the imix profile.
#[derive(Clone, Debug, Serialize)]
pub struct Imix {
    /// (frame size with FCS, share) pairs.
    pub sizes: Vec<(usize, u32)>,
    /// The frame sizes of one cycle, in order; file packet `k` has
    /// `cycle[k % 12]`.
    pub cycle: Vec<usize>,
}

/// The JSON sidecar `<name>.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Sidecar {
    /// Profile.
    pub profile: Profile,
    /// IPv6 rather than IPv4.
    pub ipv6: bool,
    /// Seed.
    pub seed: u64,
    /// `--flows`.
    pub flows: u64,
    /// Frame size with FCS; `null` for imix.
    pub frame_size: Option<usize>,
    /// IMIX sizes and cycle (imix only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imix: Option<Imix>,
    /// Written files and their counts.
    pub files: Files,
    /// The setup packets as pcapng, tagged with their arrival port.
    pub setup_pcapng: Option<FileStats>,
    /// The arrival port of every packet of `files.setup`, as runs in file
    /// order.
    pub setup_port_order: Vec<SetupRun>,
    /// Addresses and ports.
    pub network: Network,
    /// pf.conf lines the profile expects (port 0 = `lan`, port 1 = `wan`).
    pub rules: Vec<String>,
    /// How to use the files.
    pub notes: Vec<String>,
}

fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn notes(plan: &Plan) -> Vec<String> {
    let cfg = plan.config();
    let mut notes = vec![
        "frame sizes include the 4-byte FCS that pcaps do not store: captured length = frame size - 4; frames whose headers are longer keep their natural size".to_string(),
        "replay setup once, honouring setup_port_order (each run completes before the next starts), then loop port0/port1 with infinite_rx=1".to_string(),
    ];
    match cfg.profile {
        Profile::EstTcp | Profile::Mixed => notes.push(
            "steady TCP segments repeat seq = ISN+1, ack = peer ISN+1 on every pass: in-window retransmissions once the handshake (wscale 7) is done".to_string(),
        ),
        Profile::NewConn => notes.push(
            "each SYN creates a state on the first pass only; later passes hit the SYN_SENT state it created unless states expired or were flushed".to_string(),
        ),
        Profile::Udp | Profile::Imix => notes.push(
            "setup sends one client datagram per flow so that replies on port 1 match a state".to_string(),
        ),
    }
    if cfg.profile == Profile::Mixed {
        notes.push("mixed: steady files are groups of 4 established segments + 1 new SYN (port 0) or 1 blocked SYN to port 23 (port 1); new SYNs also create states on the first pass only".to_string());
    }
    notes
}

/// Writes every file of `plan` into `dir` under base name `name` and
/// returns the sidecar (not yet written). Holds one frame in memory.
pub fn generate(plan: &Plan, dir: &Path, name: &str, progress: bool) -> anyhow::Result<Sidecar> {
    let cfg = *plan.config();
    let phases = plan.setup_phases();
    let setup_total: u64 = phases.iter().map(|p| p.packets).sum();
    let steady_total: u64 = Port::ALL.iter().map(|p| plan.steady_packets(*p)).sum();
    let mut progress = Progress::new(setup_total + steady_total, progress);
    let mut buf = [0u8; MAX_CAPTURED_LEN];
    let mut files = Files::default();

    let mut setup_port_order = Vec::new();
    let mut setup_pcapng = None;
    if setup_total > 0 {
        let mut combined = PcapSink::create(dir, &format!("{name}-setup.pcap"))?;
        let mut tagged = pcapng::PcapNgSink::create(dir, &format!("{name}-setup.pcapng"))?;
        let mut per_port: [Option<PcapSink>; 2] = [None, None];
        for port in Port::ALL {
            if phases
                .iter()
                .any(|p| p.step.port() == port && p.packets > 0)
            {
                per_port[port.index()] = Some(PcapSink::create(
                    dir,
                    &format!("{name}-setup-port{}.pcap", port.index()),
                )?);
            }
        }
        let mut first = 0;
        for phase in &phases {
            let port = phase.step.port();
            setup_port_order.push(SetupRun {
                port: port.index(),
                step: phase.step,
                first,
                packets: phase.packets,
            });
            first += phase.packets;
            for i in 0..phase.packets {
                let len = plan.setup_frame(phase.step, i).emit(&mut buf)?;
                combined.write(&buf[..len])?;
                tagged.write(&buf[..len], port.index() as u32)?;
                if let Some(sink) = &mut per_port[port.index()] {
                    sink.write(&buf[..len])?;
                }
                progress.tick();
            }
        }
        files.setup = Some(combined.finish()?);
        setup_pcapng = Some(tagged.finish()?);
        let [port0, port1] = per_port;
        files.setup_port0 = port0.map(PcapSink::finish).transpose()?;
        files.setup_port1 = port1.map(PcapSink::finish).transpose()?;
    }

    for port in Port::ALL {
        let packets = plan.steady_packets(port);
        if packets == 0 {
            continue;
        }
        let mut sink = PcapSink::create(dir, &format!("{name}-port{}.pcap", port.index()))?;
        for k in 0..packets {
            let len = plan.steady_frame(port, k).emit(&mut buf)?;
            sink.write(&buf[..len])?;
            progress.tick();
        }
        let stats = Some(sink.finish()?);
        match port {
            Port::Lan => files.port0 = stats,
            Port::Wan => files.port1 = stats,
        }
    }
    progress.finish();

    let (inside, outside) = if cfg.ipv6 {
        (
            format!("{}/{}", plan::INSIDE_V6.0, plan::INSIDE_V6.1),
            format!("{}/{}", plan::OUTSIDE_V6.0, plan::OUTSIDE_V6.1),
        )
    } else {
        (
            format!("{}/{}", plan::INSIDE_V4.0, plan::INSIDE_V4.1),
            format!("{}/{}", plan::OUTSIDE_V4.0, plan::OUTSIDE_V4.1),
        )
    };
    Ok(Sidecar {
        profile: cfg.profile,
        ipv6: cfg.ipv6,
        seed: cfg.seed,
        flows: cfg.flows,
        frame_size: (cfg.profile != Profile::Imix).then_some(cfg.frame_size),
        imix: (cfg.profile == Profile::Imix).then(|| Imix {
            sizes: plan::IMIX_SIZES.to_vec(),
            cycle: plan::IMIX_CYCLE.to_vec(),
        }),
        files,
        setup_pcapng,
        setup_port_order,
        network: Network {
            port0: "lan: inside, clients; client-to-server packets arrive here",
            port1: "wan: outside, servers; server-to-client packets arrive here",
            inside,
            outside,
            inside_mac: mac_string(&plan::INSIDE_MAC),
            outside_mac: mac_string(&plan::OUTSIDE_MAC),
            client_ports: format!("{}-65535", plan::CLIENT_PORT_MIN),
            tcp_server_port: plan::TCP_SERVER_PORT,
            udp_server_port: plan::UDP_SERVER_PORT,
            blocked_port: plan::BLOCKED_PORT,
        },
        rules: plan.rules(),
        notes: notes(plan),
    })
}

/// `bench gen`.
pub fn run(args: &GenArgs) -> anyhow::Result<()> {
    let cfg = args.config()?;
    let plan = Plan::new(cfg)?;
    let name = args.name.clone().unwrap_or_else(|| default_name(&cfg));
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("--name {name:?} must be a plain file name");
    }
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let sidecar = generate(&plan, &args.out, &name, args.progress)?;
    let json_path = args.out.join(format!("{name}.json"));
    let mut json = serde_json::to_string_pretty(&sidecar)?;
    json.push('\n');
    fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;

    let files = &sidecar.files;
    for stats in [
        &files.setup,
        &files.setup_port0,
        &files.setup_port1,
        &sidecar.setup_pcapng,
        &files.port0,
        &files.port1,
    ]
    .into_iter()
    .flatten()
    {
        println!(
            "{}: {} packets, {} bytes",
            args.out.join(&stats.file).display(),
            stats.packets,
            stats.frame_bytes
        );
    }
    println!("{}", json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::decode::decode;
    use crate::frames::{L4Repr, FCS_LEN};
    use pcap_file::pcap::PcapReader;
    use std::collections::HashMap;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let path = std::env::temp_dir().join(format!(
                "bench-gen-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn args(profile: Profile, flows: u64, out: &Path) -> GenArgs {
        GenArgs {
            profile,
            flows,
            frame_size: None,
            seed: 7,
            ipv6: false,
            out: out.to_path_buf(),
            name: None,
            progress: false,
        }
    }

    fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
        let mut reader = PcapReader::new(fs::File::open(path).unwrap()).unwrap();
        let header = reader.header();
        assert_eq!(header.datalink, pcap_file::DataLink::ETHERNET);
        let mut frames = Vec::new();
        while let Some(packet) = reader.next_packet() {
            let packet = packet.unwrap();
            assert_eq!(packet.orig_len as usize, packet.data.len());
            frames.push(packet.data.into_owned());
        }
        frames
    }

    fn dir_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn same_arguments_same_bytes() {
        for profile in [Profile::EstTcp, Profile::Mixed, Profile::Imix] {
            let (a, b) = (TempDir::new("det-a"), TempDir::new("det-b"));
            run(&args(profile, 50, &a.0)).unwrap();
            run(&args(profile, 50, &b.0)).unwrap();
            let (fa, fb) = (dir_contents(&a.0), dir_contents(&b.0));
            assert!(fa.len() >= 3);
            assert_eq!(fa, fb, "{profile:?}");
            // And another seed changes the pcaps.
            let c = TempDir::new("det-c");
            run(&GenArgs {
                seed: 8,
                ..args(profile, 50, &c.0)
            })
            .unwrap();
            let fc = dir_contents(&c.0);
            let pcap = fa
                .iter()
                .position(|(n, _)| n.ends_with("port0.pcap"))
                .unwrap();
            assert_ne!(fa[pcap].1, fc[pcap].1);
        }
    }

    #[test]
    fn est_tcp_files_sidecar_and_loop_invariants() {
        let dir = TempDir::new("est");
        let a = GenArgs {
            frame_size: Some(128),
            ..args(Profile::EstTcp, 300, &dir.0)
        };
        run(&a).unwrap();
        let name = "est-tcp-v4-300x128";
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.0.join(format!("{name}.json"))).unwrap()).unwrap();
        assert_eq!(json["profile"], "est-tcp");
        assert_eq!(json["flows"], 300);
        assert_eq!(json["frame_size"], 128);
        assert_eq!(json["files"]["setup"]["packets"], 900);
        assert_eq!(json["files"]["setup_port0"]["packets"], 600);
        assert_eq!(json["files"]["setup_port1"]["packets"], 300);
        assert_eq!(json["files"]["port0"]["packets"], 300);
        assert_eq!(json["files"]["port0"]["frame_bytes"], 300 * 128);
        let runs: Vec<(u64, &str, u64)> = json["setup_port_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["port"].as_u64().unwrap(),
                    r["step"].as_str().unwrap(),
                    r["packets"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            runs,
            vec![(0, "syn", 300), (1, "syn-ack", 300), (0, "ack", 300)]
        );
        assert!(json["rules"].as_array().unwrap().len() >= 2);

        // The combined setup file is the per-port files interleaved by runs.
        let setup = read_pcap(&dir.0.join(format!("{name}-setup.pcap")));
        let setup0 = read_pcap(&dir.0.join(format!("{name}-setup-port0.pcap")));
        let setup1 = read_pcap(&dir.0.join(format!("{name}-setup-port1.pcap")));
        assert_eq!(setup[..300], setup0[..300]);
        assert_eq!(setup[300..600], setup1[..]);
        assert_eq!(setup[600..], setup0[300..]);

        // Handshake state per 4-tuple, then every steady packet continues it
        // with one fixed (seq, ack) per flow and direction.
        let mut handshake = HashMap::new();
        for frame in &setup[600..] {
            let d = decode(frame).unwrap();
            let L4Repr::Tcp(t) = d.l4 else { panic!() };
            handshake.insert((d.ip, t.src_port, t.dst_port), (t.seq, t.ack));
        }
        let mut seen = HashMap::new();
        for (port, file) in [(0, "port0"), (1, "port1")] {
            let frames = read_pcap(&dir.0.join(format!("{name}-{file}.pcap")));
            assert_eq!(frames.len(), 300);
            for frame in &frames {
                assert_eq!(frame.len() + FCS_LEN, 128);
                let d = decode(frame).unwrap();
                assert!(d.ip_checksum_ok && d.l4_checksum_ok);
                let L4Repr::Tcp(t) = d.l4 else { panic!() };
                let (seq_ack, key) = if port == 0 {
                    (
                        handshake[&(d.ip, t.src_port, t.dst_port)],
                        (d.ip, t.src_port, t.dst_port),
                    )
                } else {
                    let rev = d.ip.reversed();
                    let (s, a) = handshake[&(rev, t.dst_port, t.src_port)];
                    ((a, s), (d.ip, t.src_port, t.dst_port))
                };
                assert_eq!((t.seq, t.ack), seq_ack);
                assert!(seen.insert(key, (t.seq, t.ack)).is_none());
            }
        }
        assert_eq!(seen.len(), 600);
    }

    #[test]
    fn every_profile_writes_valid_pcaps() {
        for profile in [
            Profile::EstTcp,
            Profile::NewConn,
            Profile::Udp,
            Profile::Imix,
            Profile::Mixed,
        ] {
            for ipv6 in [false, true] {
                let dir = TempDir::new("all");
                let mut a = args(profile, 40, &dir.0);
                a.ipv6 = ipv6;
                a.name = Some("t".into());
                a.progress = true;
                run(&a).unwrap();
                let json: serde_json::Value =
                    serde_json::from_slice(&fs::read(dir.0.join("t.json")).unwrap()).unwrap();
                for (key, file) in json["files"].as_object().unwrap() {
                    if file.is_null() {
                        continue;
                    }
                    let frames = read_pcap(&dir.0.join(file["file"].as_str().unwrap()));
                    assert_eq!(
                        frames.len() as u64,
                        file["packets"].as_u64().unwrap(),
                        "{key}"
                    );
                    for frame in &frames {
                        let d = decode(frame).unwrap();
                        assert!(d.ip_checksum_ok && d.l4_checksum_ok, "{profile:?} {key}");
                        assert_eq!(matches!(d.ip, crate::frames::IpPair::V6 { .. }), ipv6);
                    }
                }
                let new_conn = profile == Profile::NewConn;
                assert_eq!(json["files"]["setup"].is_null(), new_conn);
                assert_eq!(json["files"]["port1"].is_null(), new_conn);
            }
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        let dir = TempDir::new("bad");
        let imix = GenArgs {
            frame_size: Some(128),
            ..args(Profile::Imix, 10, &dir.0)
        };
        assert!(run(&imix).is_err());
        let name = GenArgs {
            name: Some("../x".into()),
            ..args(Profile::Udp, 10, &dir.0)
        };
        assert!(run(&name).is_err());
        assert!(run(&args(Profile::Udp, 0, &dir.0)).is_err());
    }
}
