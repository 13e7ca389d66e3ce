//! `<name>-setup.pcapng`: the combined setup file with each packet tagged
//! by its arrival port, for `dpf --preload`.
//!
//! Layout: one section header block (little-endian), then two interface
//! description blocks, interface 0 = port 0 (`lan`, inside) and interface
//! 1 = port 1 (`wan`, outside), both Ethernet with nanosecond timestamps
//! (`if_tsresol` = 9, since pcap-file writes nanoseconds), then one enhanced
//! packet block per setup packet in the order of `<name>-setup.pcap`, its
//! `interface_id` the packet's arrival port.
//!
//! Invariants: the `k`-th packet is stamped `k` µs after the epoch, as in
//! the pcaps, so the same packets give byte-identical files; only interface
//! ids 0 and 1 are written; packets go through a `BufWriter` as they are
//! made.

use std::borrow::Cow;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};

use super::output::FileStats;
use crate::frames::MAX_CAPTURED_LEN;

/// Write buffer of the file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// `if_tsresol` for nanoseconds (10^-9 s).
const TSRESOL_NANOSECONDS: u8 = 9;

/// The interfaces written, by id: (name, description).
pub const INTERFACES: [(&str, &str); 2] = [
    ("lan", "port 0: inside, clients"),
    ("wan", "port 1: outside, servers"),
];

/// A pcapng file being written, packets tagged with an interface id.
pub struct PcapNgSink {
    writer: PcapNgWriter<BufWriter<File>>,
    path: PathBuf,
    stats: FileStats,
}

impl PcapNgSink {
    /// Creates (truncates) `dir/file` and writes the section header and the
    /// two interface description blocks.
    pub fn create(dir: &Path, file: &str) -> anyhow::Result<PcapNgSink> {
        let path = dir.join(file);
        let out = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = PcapNgWriter::with_endianness(
            BufWriter::with_capacity(WRITE_BUFFER_BYTES, out),
            Endianness::Little,
        )
        .with_context(|| format!("writing the section header of {}", path.display()))?;
        for (name, description) in INTERFACES {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: MAX_CAPTURED_LEN as u32,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                    InterfaceDescriptionOption::IfDescription(Cow::Borrowed(description)),
                    InterfaceDescriptionOption::IfTsResol(TSRESOL_NANOSECONDS),
                ],
            };
            writer
                .write_pcapng_block(idb)
                .with_context(|| format!("writing an interface of {}", path.display()))?;
        }
        Ok(PcapNgSink {
            writer,
            path,
            stats: FileStats::empty(file),
        })
    }

    /// Appends one frame (captured bytes, no FCS) received on `interface`
    /// (0 or 1).
    pub fn write(&mut self, frame: &[u8], interface: u32) -> anyhow::Result<()> {
        if interface as usize >= INTERFACES.len() {
            bail!("interface id {interface} is not 0 or 1");
        }
        // Frames are at most MAX_CAPTURED_LEN bytes.
        let len = frame.len() as u32;
        let packet = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: Duration::from_micros(self.stats.packets),
            original_len: len,
            data: Cow::Borrowed(frame),
            options: vec![],
        };
        self.writer
            .write_pcapng_block(packet)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.stats.record(len);
        Ok(())
    }

    /// Flushes and closes the file.
    pub fn finish(self) -> anyhow::Result<FileStats> {
        let PcapNgSink {
            writer,
            path,
            stats,
        } = self;
        writer
            .into_inner()
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("flushing {}", path.display()))?;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    /// Reads back (interface names, [(interface id, bytes)]).
    fn read(path: &Path) -> (Vec<String>, Vec<(u32, Vec<u8>)>) {
        let mut reader = PcapNgReader::new(File::open(path).unwrap()).unwrap();
        let (mut names, mut packets) = (Vec::new(), Vec::new());
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => {
                    assert_eq!(idb.linktype, DataLink::ETHERNET);
                    assert!(idb
                        .options
                        .contains(&InterfaceDescriptionOption::IfTsResol(9)));
                    let name = idb.options.iter().find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    });
                    names.push(name.unwrap());
                }
                Block::EnhancedPacket(epb) => {
                    assert_eq!(epb.original_len as usize, epb.data.len());
                    packets.push((epb.interface_id, epb.data.into_owned()));
                }
                other => panic!("unexpected block {other:?}"),
            }
        }
        (names, packets)
    }

    #[test]
    fn interface_ids_round_trip() {
        let dir = std::env::temp_dir().join(format!("bench-pcapng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written: Vec<(u32, Vec<u8>)> = (0..50u8)
            .map(|k| (u32::from(k % 3 == 1), vec![k; 60 + usize::from(k)]))
            .collect();
        let mut sink = PcapNgSink::create(&dir, "t.pcapng").unwrap();
        for (interface, frame) in &written {
            sink.write(frame, *interface).unwrap();
        }
        assert!(sink.write(&[0; 60], 2).is_err());
        let stats = sink.finish().unwrap();
        assert_eq!(stats.packets, 50);
        assert_eq!(
            stats.captured_bytes,
            written.iter().map(|(_, f)| f.len() as u64).sum::<u64>()
        );
        let (names, packets) = read(&dir.join("t.pcapng"));
        assert_eq!(names, ["lan", "wan"]);
        assert_eq!(packets, written);
        // Deterministic bytes.
        let first = std::fs::read(dir.join("t.pcapng")).unwrap();
        let mut again = PcapNgSink::create(&dir, "u.pcapng").unwrap();
        for (interface, frame) in &written {
            again.write(frame, *interface).unwrap();
        }
        again.finish().unwrap();
        assert_eq!(first, std::fs::read(dir.join("u.pcapng")).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn setup_pcapng_is_setup_pcap_tagged_by_port() {
        use super::super::plan::{GenConfig, Plan, Profile};
        let dir = std::env::temp_dir().join(format!("bench-pcapng-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for profile in [Profile::EstTcp, Profile::Udp, Profile::NewConn] {
            let plan = Plan::new(GenConfig {
                profile,
                flows: 30,
                frame_size: 64,
                seed: 3,
                ipv6: false,
            })
            .unwrap();
            let sidecar = super::super::generate(&plan, &dir, "g", false).unwrap();
            let Some(stats) = sidecar.setup_pcapng else {
                assert_eq!(profile, Profile::NewConn);
                assert!(!dir.join("g-setup.pcapng").exists() || sidecar.files.setup.is_none());
                continue;
            };
            assert_eq!(stats.file, "g-setup.pcapng");
            let mut pcap =
                pcap_file::pcap::PcapReader::new(File::open(dir.join("g-setup.pcap")).unwrap())
                    .unwrap();
            let mut plain = Vec::new();
            while let Some(p) = pcap.next_packet() {
                plain.push(p.unwrap().data.into_owned());
            }
            let mut ports = Vec::new();
            for run in &sidecar.setup_port_order {
                ports.extend((0..run.packets).map(|_| run.port as u32));
            }
            let (_, tagged) = read(&dir.join("g-setup.pcapng"));
            assert_eq!(tagged.len() as u64, stats.packets);
            let expected: Vec<(u32, Vec<u8>)> = ports.into_iter().zip(plain).collect();
            assert_eq!(tagged, expected, "{profile:?}");
            if profile == Profile::EstTcp {
                assert!(tagged.iter().any(|(i, _)| *i == 1));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
