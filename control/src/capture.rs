//! Reading captures as other tools write them: pcapng (every interface's
//! `if_tsresol` honoured, microseconds when absent as the format says) and
//! plain pcap (micro- and nanosecond magic, either byte order), Ethernet
//! link type only. What `--replay` and `--preload` read.
//!
//! The pcapng crate hands back an enhanced packet's 64-bit timestamp as if
//! it counted nanoseconds; this module rescales it by the resolution of
//! the packet's interface (`10^-n` or `2^-n` seconds).

use anyhow::{bail, Context, Result};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The interface it was captured on (pcapng interface id; 0 for pcap).
    pub interface: u32,
    /// Its capture time.
    pub timestamp: Duration,
    /// The frame.
    pub data: Vec<u8>,
}

enum Inner {
    Ng {
        reader: PcapNgReader<File>,
        /// `if_tsresol` of each interface, in order of their description
        /// blocks (6, microseconds, when absent).
        tsresol: Vec<u8>,
    },
    Pcap(PcapReader<File>),
}

/// A pcapng or pcap file, packet by packet.
pub struct CaptureReader {
    inner: Inner,
}

/// pcapng's section header block type.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// The pcapng default resolution: microseconds.
const TSRESOL_DEFAULT: u8 = 6;

/// A raw timestamp `raw` in units of `if_tsresol` `tsresol` (pcapng §4.2:
/// most significant bit 0: 10^-n s; 1: 2^-n s).
pub fn scale_timestamp(raw: u64, tsresol: u8) -> Duration {
    let n = u32::from(tsresol & 0x7f);
    let ns: u128 = if tsresol & 0x80 == 0 {
        if n <= 9 {
            u128::from(raw) * 10u128.pow(9 - n)
        } else {
            u128::from(raw) / 10u128.pow((n - 9).min(38))
        }
    } else {
        (u128::from(raw) * 1_000_000_000) >> n.min(127)
    };
    Duration::from_nanos(ns.min(u128::from(u64::MAX)) as u64)
}

impl CaptureReader {
    /// Opens `path`, pcapng or pcap by its first bytes.
    pub fn open(path: &Path) -> Result<CaptureReader> {
        let mut magic = [0u8; 4];
        File::open(path)
            .context("opening")?
            .read_exact(&mut magic)
            .context("reading the file's magic number")?;
        let file = File::open(path).context("opening")?;
        let inner = if magic == PCAPNG_MAGIC {
            Inner::Ng {
                reader: PcapNgReader::new(file).context("reading the pcapng header")?,
                tsresol: Vec::new(),
            }
        } else {
            let reader = PcapReader::new(file).context(
                "not a pcapng or pcap capture (unknown magic number) or a bad pcap header",
            )?;
            let link = reader.header().datalink;
            if link != DataLink::ETHERNET {
                bail!("pcap link type {link:?} is not supported (Ethernet captures only)");
            }
            Inner::Pcap(reader)
        };
        Ok(CaptureReader { inner })
    }

    /// The next packet, `None` at the end.
    pub fn next_packet(&mut self) -> Option<Result<Packet>> {
        match &mut self.inner {
            Inner::Pcap(r) => {
                let p = r.next_packet()?;
                Some(
                    p.map(|p| Packet {
                        interface: 0,
                        timestamp: p.timestamp,
                        data: p.data.into_owned(),
                    })
                    .context("reading a pcap packet"),
                )
            }
            Inner::Ng { reader, tsresol } => loop {
                let block = match reader.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e).context("reading a pcapng block")),
                };
                match block {
                    Block::InterfaceDescription(idb) => {
                        if idb.linktype != DataLink::ETHERNET {
                            return Some(Err(anyhow::anyhow!(
                                "pcapng interface {} has link type {:?}: Ethernet captures only",
                                tsresol.len(),
                                idb.linktype
                            )));
                        }
                        let res = idb
                            .options
                            .iter()
                            .find_map(|o| match o {
                                InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                                _ => None,
                            })
                            .unwrap_or(TSRESOL_DEFAULT);
                        tsresol.push(res);
                    }
                    Block::EnhancedPacket(p) => {
                        let Some(&res) = tsresol.get(p.interface_id as usize) else {
                            return Some(Err(anyhow::anyhow!(
                                "packet on interface {} with no interface description block",
                                p.interface_id
                            )));
                        };
                        // The crate's Duration holds the raw 64-bit count.
                        let raw = p.timestamp.as_nanos() as u64;
                        return Some(Ok(Packet {
                            interface: p.interface_id,
                            timestamp: scale_timestamp(raw, res),
                            data: p.data.into_owned(),
                        }));
                    }
                    Block::SimplePacket(p) => {
                        return Some(Ok(Packet {
                            interface: 0,
                            timestamp: Duration::ZERO,
                            data: p.data.into_owned(),
                        }))
                    }
                    _ => continue,
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::TsResolution;

    #[test]
    fn resolutions_scale_as_pcapng_says() {
        assert_eq!(scale_timestamp(1_500_000, 6), Duration::from_millis(1500));
        assert_eq!(
            scale_timestamp(1_500_000_000, 9),
            Duration::from_millis(1500)
        );
        assert_eq!(scale_timestamp(15, 1), Duration::from_millis(1500));
        assert_eq!(scale_timestamp(3 << 10, 0x80 | 10), Duration::from_secs(3));
        assert_eq!(scale_timestamp(7, 12), Duration::from_nanos(0));
    }

    #[test]
    fn pcapng_without_tsresol_is_microseconds_and_pcap_magic_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        // pcapng as libpcap and Wireshark write it: no if_tsresol, µs.
        let ng = dir.path().join("a.pcapng");
        let mut w = PcapNgWriter::new(File::create(&ng).unwrap()).unwrap();
        for opts in [vec![], vec![InterfaceDescriptionOption::IfTsResol(9)]] {
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 65535,
                options: opts,
            })
            .unwrap();
        }
        for (iface, raw) in [(0u32, 2_000_000u64), (1, 3_000_000_000)] {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: iface,
                timestamp: Duration::from_nanos(raw),
                original_len: 60,
                data: vec![0u8; 60].into(),
                options: vec![],
            })
            .unwrap();
        }
        drop(w);
        let mut r = CaptureReader::open(&ng).unwrap();
        let a = r.next_packet().unwrap().unwrap();
        let b = r.next_packet().unwrap().unwrap();
        assert!(r.next_packet().is_none());
        assert_eq!((a.interface, a.timestamp), (0, Duration::from_secs(2)));
        assert_eq!((b.interface, b.timestamp), (1, Duration::from_secs(3)));
        // pcap, microsecond and nanosecond magic.
        for res in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
            let p = dir.path().join(format!("{res:?}.pcap"));
            let header = PcapHeader {
                ts_resolution: res,
                ..Default::default()
            };
            let mut w = PcapWriter::with_header(File::create(&p).unwrap(), header).unwrap();
            let data = [0u8; 60];
            w.write_packet(&PcapPacket::new(Duration::from_millis(2500), 60, &data))
                .unwrap();
            drop(w);
            let mut r = CaptureReader::open(&p).unwrap();
            let pkt = r.next_packet().unwrap().unwrap();
            assert_eq!(
                (pkt.interface, pkt.timestamp),
                (0, Duration::from_millis(2500)),
                "{res:?}"
            );
        }
        // Anything else is refused by name.
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"not a capture at all").unwrap();
        assert!(format!("{:#}", CaptureReader::open(&junk).err().unwrap())
            .contains("not a pcapng or pcap"));
    }
}
