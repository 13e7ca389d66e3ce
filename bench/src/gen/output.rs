//! The impure shell of `bench gen`: pcap files, the JSON sidecar and the
//! progress line.
//!
//! Invariants: pcaps are little-endian, microsecond, Ethernet link type,
//! whatever the host, and the `k`-th packet of a file is stamped `k` µs after
//! the epoch, so equal packets give byte-identical files. Packets go through
//! a `BufWriter` as they are made; nothing holds a whole file.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use serde::Serialize;

use crate::frames::{FCS_LEN, MAX_CAPTURED_LEN};

/// Write buffer of each pcap.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Counts of one written file, as the sidecar reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileStats {
    /// File name, relative to the sidecar's directory.
    pub file: String,
    /// Packets in the file.
    pub packets: u64,
    /// Sum of captured lengths (no FCS).
    pub captured_bytes: u64,
    /// Sum of Ethernet frame sizes with FCS (captured + 4 per packet), the
    /// figure a throughput in bits per second is computed from (add 20
    /// bytes of preamble and inter-frame gap per packet for line rate).
    pub frame_bytes: u64,
}

impl FileStats {
    /// Counts of a file with no packet yet.
    pub fn empty(file: &str) -> FileStats {
        FileStats {
            file: file.to_string(),
            packets: 0,
            captured_bytes: 0,
            frame_bytes: 0,
        }
    }

    /// Counts one written packet of `captured_len` bytes.
    pub fn record(&mut self, captured_len: u32) {
        self.packets += 1;
        self.captured_bytes += u64::from(captured_len);
        self.frame_bytes += u64::from(captured_len) + FCS_LEN as u64;
    }
}

/// A pcap file being written.
pub struct PcapSink {
    writer: PcapWriter<BufWriter<File>>,
    path: PathBuf,
    stats: FileStats,
}

impl PcapSink {
    /// Creates (truncates) `dir/file` and writes the pcap header.
    pub fn create(dir: &Path, file: &str) -> anyhow::Result<PcapSink> {
        let path = dir.join(file);
        let out = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: MAX_CAPTURED_LEN as u32,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::Little,
        };
        let writer =
            PcapWriter::with_header(BufWriter::with_capacity(WRITE_BUFFER_BYTES, out), header)
                .with_context(|| format!("writing the header of {}", path.display()))?;
        Ok(PcapSink {
            writer,
            path,
            stats: FileStats::empty(file),
        })
    }

    /// Appends one frame (captured bytes, no FCS).
    pub fn write(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let timestamp = Duration::from_micros(self.stats.packets);
        // Frames are at most MAX_CAPTURED_LEN bytes.
        let len = frame.len() as u32;
        self.writer
            .write_packet(&PcapPacket::new(timestamp, len, frame))
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.stats.record(len);
        Ok(())
    }

    /// Flushes and closes the file.
    pub fn finish(self) -> anyhow::Result<FileStats> {
        let PcapSink {
            writer,
            path,
            stats,
        } = self;
        writer
            .into_writer()
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("flushing {}", path.display()))?;
        Ok(stats)
    }
}

/// A one-line progress report on stderr: percent and packets per second,
/// redrawn at most every 200 ms.
pub struct Progress {
    enabled: bool,
    total: u64,
    done: u64,
    started: Instant,
    last_draw: Instant,
}

impl Progress {
    /// Redraw interval.
    const INTERVAL: Duration = Duration::from_millis(200);
    /// Packets between clock reads (a power of two).
    const CHECK_EVERY: u64 = 4096;

    /// Shows progress if `forced` or stderr is a terminal.
    pub fn new(total: u64, forced: bool) -> Progress {
        let now = Instant::now();
        Progress {
            enabled: forced || std::io::stderr().is_terminal(),
            total,
            done: 0,
            started: now,
            last_draw: now,
        }
    }

    /// Counts one generated packet.
    pub fn tick(&mut self) {
        self.done += 1;
        if self.enabled && self.done & (Self::CHECK_EVERY - 1) == 0 {
            let now = Instant::now();
            if now.duration_since(self.last_draw) >= Self::INTERVAL {
                self.last_draw = now;
                self.draw(now, '\r');
            }
        }
    }

    fn draw(&self, now: Instant, end: char) {
        let elapsed_s = now.duration_since(self.started).as_secs_f64();
        let percent = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        let rate_pps = if elapsed_s > 0.0 {
            self.done as f64 / elapsed_s
        } else {
            0.0
        };
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail generation.
        let _ = write!(
            err,
            "\rgen: {percent:5.1}% {}/{} packets, {:.2} Mpps{end}",
            self.done,
            self.total,
            rate_pps / 1e6
        );
        let _ = err.flush();
    }

    /// Draws the final line.
    pub fn finish(&self) {
        if self.enabled {
            self.draw(Instant::now(), '\n');
        }
    }
}
