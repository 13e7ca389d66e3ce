//! The pflog logger: drains every worker's pflog ring (see
//! [`dataplane::pflog`]) into a pcap file with link type `DLT_PFLOG`, as
//! OpenBSD's pflogd writes `/var/log/pflog`, so `tcpdump -n -e -r FILE`
//! reads it. The file is rotated when the next record would take it past
//! `[log] size` bytes: `FILE.(keep-1)` is dropped, `FILE.i` becomes
//! `FILE.(i+1)` and `FILE` becomes `FILE.0`. Also reads the file back for
//! `dpfctl -L` ([`follow`]).
//!
//! The logger runs on its own thread in the daemon ([`Logger::spawn`]) and
//! inline after each packet in `--replay` ([`Logger::drain`]); workers never
//! wait for it (their rings drop and count when it falls behind).

use dataplane::pflog::{self, Header, Record};
use dataplane::ring::Consumer;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Records per worker ring.
pub const RING: usize = 4096;

/// Records the logger takes from one ring at a time.
const BATCH: usize = 64;

/// `[log]` of dpf.toml.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogSpec {
    /// The pflog file.
    pub file: PathBuf,
    /// Rotate when the file would grow past this many bytes (`None`: never).
    pub size_bytes: Option<u64>,
    /// Rotated files kept (`FILE.0` newest).
    pub keep: u32,
}

/// A pflog pcap file being written, rotated by size.
pub struct PflogFile {
    spec: LogSpec,
    out: BufWriter<File>,
    written: u64,
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

impl PflogFile {
    /// Opens the file: appends to an existing pflog file, starts a new one
    /// when there is none (or it is empty). A file that is not a pflog
    /// capture is an error (dpf does not overwrite it).
    pub fn open(spec: LogSpec) -> io::Result<PflogFile> {
        if let Some(dir) = spec.file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&spec.file)?;
        let len = f.metadata()?.len();
        let mut written = len;
        if len == 0 {
            f.write_all(&pflog::pcap_file_header())?;
            written = 24;
        } else {
            let mut head = [0u8; 24];
            f.seek(SeekFrom::Start(0))?;
            let ok = f.read_exact(&mut head).is_ok() && head == pflog::pcap_file_header();
            if !ok {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} exists and is not a dpf pflog file (pcap, DLT_PFLOG, snaplen {})",
                        spec.file.display(),
                        pflog::SNAPLEN
                    ),
                ));
            }
        }
        Ok(PflogFile {
            spec,
            out: BufWriter::new(f),
            written,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let path = &self.spec.file;
        if self.spec.keep == 0 {
            std::fs::remove_file(path)?;
        } else {
            let last = rotated(path, self.spec.keep - 1);
            let _ = std::fs::remove_file(&last);
            for i in (0..self.spec.keep - 1).rev() {
                let from = rotated(path, i);
                if from.exists() {
                    std::fs::rename(&from, rotated(path, i + 1))?;
                }
            }
            std::fs::rename(path, rotated(path, 0))?;
        }
        let mut f = OpenOptions::new().append(true).create(true).open(path)?;
        f.write_all(&pflog::pcap_file_header())?;
        self.out = BufWriter::new(f);
        self.written = 24;
        Ok(())
    }

    /// Appends `rec` (taken on interface `ifname`, at `wall_ns` since the
    /// epoch), rotating first if the file would outgrow its size.
    pub fn write(&mut self, rec: &Record, ifname: &str, wall_ns: u64) -> io::Result<()> {
        let len = 16 + pflog::HDRLEN as u64 + rec.caplen as u64;
        if let Some(max) = self.spec.size_bytes {
            if self.written > 24 && self.written + len > max {
                self.rotate()?;
            }
        }
        self.out
            .write_all(&pflog::pcap_record_header(rec, wall_ns))?;
        self.out.write_all(&Header::of_record(rec, ifname).emit())?;
        self.out.write_all(rec.packet())?;
        self.written += len;
        Ok(())
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Drains the workers' rings into a [`PflogFile`].
pub struct Logger {
    rings: Vec<Consumer<Record>>,
    file: PflogFile,
    ifnames: Vec<String>,
    /// Wall-clock nanoseconds minus the workers' clock (0 in replay, where
    /// packet timestamps are the clock).
    wall_offset_ns: i128,
    /// Records written.
    pub written: u64,
    /// Records lost to write errors.
    pub write_errors: u64,
}

impl Logger {
    /// A logger of `rings` into `file`; `ifnames[i]` names port `i`.
    pub fn new(
        rings: Vec<Consumer<Record>>,
        file: PflogFile,
        ifnames: Vec<String>,
        wall_offset_ns: i128,
    ) -> Logger {
        Logger {
            rings,
            file,
            ifnames,
            wall_offset_ns,
            written: 0,
            write_errors: 0,
        }
    }

    /// Writes every record waiting in the rings; returns how many. A write
    /// error is returned after the records are counted lost.
    pub fn drain(&mut self) -> io::Result<usize> {
        let mut batch = [Record::new(0, 0, 0, 0, 0, 0, 0, &[]); BATCH];
        let mut total = 0;
        let mut err = None;
        for r in 0..self.rings.len() {
            loop {
                let n = self.rings[r].pop_batch(&mut batch);
                if n == 0 {
                    break;
                }
                total += n;
                for rec in &batch[..n] {
                    let name = self
                        .ifnames
                        .get(rec.ifindex as usize)
                        .map_or("?", String::as_str);
                    let wall = (rec.ts_ns as i128 + self.wall_offset_ns).max(0) as u64;
                    match self.file.write(rec, name, wall) {
                        Ok(()) => self.written += 1,
                        Err(e) => {
                            self.write_errors += 1;
                            err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        if let Err(e) = self.file.flush() {
            err.get_or_insert(e);
        }
        match err {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Runs the logger on a thread of its own until `stop` (then drains
    /// once more): polls the rings every 10 ms, reports a write error once
    /// per minute at most.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> io::Result<std::thread::JoinHandle<Logger>> {
        std::thread::Builder::new()
            .name("dpf-pflog".into())
            .spawn(move || {
                let mut last_err: Option<std::time::Instant> = None;
                loop {
                    let stopping = stop.load(Ordering::Acquire);
                    match self.drain() {
                        Ok(_) => {}
                        Err(e) => {
                            if last_err.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                                crate::log!(
                                    crate::log::Level::Err,
                                    "pflog: writing {}: {e}",
                                    self.file.spec.file.display()
                                );
                                last_err = Some(std::time::Instant::now());
                            }
                        }
                    }
                    if stopping {
                        return self;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            })
    }
}

/// One record read back from a pflog file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Seconds and microseconds since the epoch.
    pub ts: (u32, u32),
    /// The pflog header.
    pub hdr: Header,
    /// The packet bytes kept.
    pub packet: Vec<u8>,
}

/// Reads pflog records from `buf` (record after record, no file header);
/// returns them and how many bytes they used (a partial record at the end
/// is left for later).
pub fn parse_records(buf: &[u8]) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 16 {
        let le = |o: usize| u32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let (sec, usec, incl) = (le(at), le(at + 4), le(at + 8) as usize);
        if buf.len() < at + 16 + incl {
            break;
        }
        let body = &buf[at + 16..at + 16 + incl];
        if let Some(hdr) = Header::parse(body) {
            out.push(Entry {
                ts: (sec, usec),
                hdr,
                packet: body[pflog::HDRLEN..].to_vec(),
            });
        }
        at += 16 + incl;
    }
    (out, at)
}

fn reason_name(r: u8) -> String {
    const NAMES: [&str; 17] = [
        "match",
        "bad-offset",
        "fragment",
        "short",
        "normalize",
        "memory",
        "bad-timestamp",
        "congestion",
        "ip-option",
        "proto-cksum",
        "state-mismatch",
        "state-insert",
        "state-limit",
        "src-limit",
        "synproxy",
        "translate",
        "no-route",
    ];
    NAMES
        .get(r as usize)
        .map_or_else(|| format!("unkn({r})"), |s| s.to_string())
}

fn action_name(a: u8) -> String {
    match a {
        pflog::action::PASS => "pass".into(),
        pflog::action::DROP => "block".into(),
        pflog::action::MATCH => "match".into(),
        a => format!("unkn({a})"),
    }
}

/// The addresses and protocol of the packet in `e`: (source, destination,
/// protocol number), `?` for a packet too short.
fn addresses(e: &Entry) -> (String, String, u8) {
    let p = &e.packet;
    if e.hdr.af == pflog::AF_INET && p.len() >= 20 {
        let a = |o: usize| std::net::Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]).to_string();
        (a(12), a(16), p[9])
    } else if e.hdr.af == pflog::AF_INET6 && p.len() >= 40 {
        let a = |o: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&p[o..o + 16]);
            std::net::Ipv6Addr::from(b).to_string()
        };
        (a(8), a(24), p[6])
    } else {
        ("?".into(), "?".into(), 0)
    }
}

/// The source (`src`) or destination of `e` as tcpdump writes it:
/// `addr.port` for TCP and UDP, `addr` otherwise.
fn endpoint(e: &Entry, src: bool) -> String {
    let (s, d, proto) = addresses(e);
    let (a, port) = if src {
        (s, e.hdr.sport)
    } else {
        (d, e.hdr.dport)
    };
    match proto {
        6 | 17 => format!("{a}.{port}"),
        _ => a,
    }
}

/// One line for `e` as `tcpdump -n -e` prints a pflog record (time of day
/// in UTC): `rule 2/(match) block in on lan0: 10.0.0.1.1000 > 10.0.0.2.22:
/// tcp`.
pub fn format_entry(e: &Entry) -> String {
    let h = &e.hdr;
    let rule = if h.rulenr == u32::MAX {
        "-1".to_string()
    } else {
        h.rulenr.to_string()
    };
    let dir = match h.dir {
        pflog::dir::IN => "in",
        pflog::dir::OUT => "out",
        _ => "in/out",
    };
    let pname = match addresses(e).2 {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmp6",
        _ => "ip",
    };
    let secs = e.ts.0 % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06} rule {rule}/({}) {} {dir} on {}: {} > {}: {pname}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        e.ts.1,
        reason_name(h.reason),
        action_name(h.action),
        h.ifname_str(),
        endpoint(e, true),
        endpoint(e, false),
    )
}

/// A pflog file being read by [`follow`]: the open file, its identity
/// (device, inode) and the bytes of a record not yet whole.
struct Reader {
    file: File,
    id: (u64, u64),
    pending: Vec<u8>,
}

impl Reader {
    /// Opens `path` and checks its file header; `Ok(None)` when the file
    /// is missing or shorter than a header (being created by a rotation).
    fn open(path: &Path) -> io::Result<Option<Reader>> {
        use std::os::unix::fs::MetadataExt;
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let m = file.metadata()?;
        let mut head = [0u8; 24];
        match file.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        if head != pflog::pcap_file_header() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a dpf pflog file (pcap, DLT_PFLOG, snaplen {})",
                    path.display(),
                    pflog::SNAPLEN
                ),
            ));
        }
        Ok(Some(Reader {
            file,
            id: (m.dev(), m.ino()),
            pending: Vec::new(),
        }))
    }

    /// Prints the whole records appended since the last call.
    fn print_new(&mut self, json: bool, out: &mut dyn Write) -> io::Result<()> {
        self.file.read_to_end(&mut self.pending)?;
        let (entries, used) = parse_records(&self.pending);
        self.pending.drain(..used);
        for e in &entries {
            if json {
                writeln!(out, "{}", entry_json(e))?;
            } else {
                writeln!(out, "{}", format_entry(e))?;
            }
        }
        out.flush()
    }
}

/// `e` as one JSON object (`dpfctl -L --json`).
pub fn entry_json(e: &Entry) -> serde_json::Value {
    let h = &e.hdr;
    serde_json::json!({
        "ts": format!("{}.{:06}", e.ts.0, e.ts.1),
        "rule": if h.rulenr == u32::MAX { -1 } else { i64::from(h.rulenr) },
        "reason": reason_name(h.reason),
        "action": action_name(h.action),
        "dir": match h.dir {
            pflog::dir::IN => "in",
            pflog::dir::OUT => "out",
            _ => "in/out",
        },
        "ifname": h.ifname_str(),
        "af": if h.af == pflog::AF_INET6 { "inet6" } else { "inet" },
        "src": endpoint(e, true),
        "dst": endpoint(e, false),
        "line": format_entry(e),
    })
}

/// `dpfctl -L`: prints the records of pflog file `path`, one line each
/// ([`format_entry`], or JSON objects with `json`); with `live`, then
/// follows it as `tail -F` does: records appended, and across rotation
/// (the path names a new file: the old one is read to its end, then the
/// new one from its start). Returns only on an error when `live`.
pub fn follow(path: &Path, live: bool, json: bool, out: &mut dyn Write) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut r = Reader::open(path)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is missing or not yet a pflog file", path.display()),
        )
    })?;
    loop {
        r.print_new(json, out)?;
        if !live {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let replaced = match std::fs::metadata(path) {
            Ok(m) => (m.dev(), m.ino()) != r.id,
            Err(_) => true,
        };
        if replaced {
            if let Some(next) = Reader::open(path)? {
                // What the logger wrote before it renamed the old file.
                r.print_new(json, out)?;
                r = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&1000u16.to_be_bytes());
        p[22..24].copy_from_slice(&22u16.to_be_bytes());
        p
    }

    #[test]
    fn file_rotates_by_size_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pflog");
        let spec = LogSpec {
            file: path.clone(),
            size_bytes: Some(24 + 3 * (16 + 100 + 40)),
            keep: 2,
        };
        let mut f = PflogFile::open(spec.clone()).unwrap();
        let rec = Record::new(0, 2, 0, 1, 0, 1, pflog::AF_INET, &packet());
        for i in 0..10u64 {
            f.write(&rec, "lan0", i * 1_000_000_000).unwrap();
        }
        f.flush().unwrap();
        // 10 records, 3 a file: FILE has 1, FILE.0 3, FILE.1 3, the
        // oldest 3 are gone.
        let count = |p: &Path| {
            let b = std::fs::read(p).unwrap();
            assert_eq!(&b[..24], &pflog::pcap_file_header());
            parse_records(&b[24..]).0
        };
        assert_eq!(count(&path).len(), 1);
        assert_eq!(count(&rotated(&path, 0)).len(), 3);
        let old = count(&rotated(&path, 1));
        assert_eq!(old.len(), 3);
        assert_eq!(old[0].ts.0, 3);
        assert!(!rotated(&path, 2).exists());
        let line = format_entry(&count(&path)[0]);
        assert_eq!(
            line,
            "00:00:09.000000 rule 2/(match) block in on lan0: 10.0.0.1.1000 > 10.0.0.2.22: tcp"
        );
        // Reopening appends.
        drop(f);
        let mut f = PflogFile::open(spec).unwrap();
        f.write(&rec, "lan0", 0).unwrap();
        f.flush().unwrap();
        assert_eq!(count(&path).len(), 2);
    }

    #[test]
    fn a_foreign_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes");
        std::fs::write(&path, b"important notes, not a capture").unwrap();
        let spec = LogSpec {
            file: path.clone(),
            size_bytes: None,
            keep: 1,
        };
        assert!(PflogFile::open(spec).is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"important notes, not a capture"
        );
    }
}
