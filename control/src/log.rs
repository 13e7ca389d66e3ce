//! Daemon messages (CARP transitions, pfsync events, errors): syslog
//! priorities 0-7 filtered at the `-l` level (a message is emitted when its
//! priority is at or below it, as `net.inet.carp.log` reads), and where
//! they go: stderr in the foreground, syslog (`/dev/log`, RFC 3164, facility
//! daemon, through the `syslog` crate) or the systemd journal (its native
//! protocol, through `systemd-journal-logger`) when running as a service.
//!
//! No caller waits for a sink. Once [`start`] has run, a message is
//! formatted by the caller and pushed into a bounded queue (try-send: a
//! full queue drops the message and counts it, [`dropped`]); a thread of
//! its own writes it out. So a stderr pipe nobody reads, a stuck syslogd
//! or journald cannot delay CARP's advertisements or pfsync's sends, which
//! log from the control thread. Before [`start`] (configuration errors,
//! `dpf -n`, `--replay`) messages go straight to stderr. Other crates'
//! records through the `log` facade take the same path ([`start`]
//! installs the bridge).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Syslog priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// LOG_EMERG.
    Emerg = 0,
    /// LOG_ALERT.
    Alert = 1,
    /// LOG_CRIT.
    Crit = 2,
    /// LOG_ERR.
    Err = 3,
    /// LOG_WARNING.
    Warning = 4,
    /// LOG_NOTICE.
    Notice = 5,
    /// LOG_INFO.
    Info = 6,
    /// LOG_DEBUG.
    Debug = 7,
}

impl Level {
    /// The syslog name (`err`, `notice`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Err => "err",
            Level::Warning => "warning",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// The `log` crate's level whose journal priority is this one
    /// (`systemd-journal-logger` maps Error 3, Warn 4, Info 5, Debug 6,
    /// Trace 7; 0-2 become 3, as that crate has no higher level).
    fn to_log(self) -> log::Level {
        match self {
            Level::Emerg | Level::Alert | Level::Crit | Level::Err => log::Level::Error,
            Level::Warning => log::Level::Warn,
            Level::Notice => log::Level::Info,
            Level::Info => log::Level::Debug,
            Level::Debug => log::Level::Trace,
        }
    }

    /// The inverse of [`Level::to_log`], for other crates' records.
    fn from_log(level: log::Level) -> Level {
        match level {
            log::Level::Error => Level::Err,
            log::Level::Warn => Level::Warning,
            log::Level::Info => Level::Notice,
            log::Level::Debug => Level::Info,
            log::Level::Trace => Level::Debug,
        }
    }
}

/// Where messages go.
pub enum Sink {
    /// `dpf[<pid>]: <priority>: <message>` lines on stderr.
    Stderr,
    /// Syslog datagrams (RFC 3164, facility daemon, tag `dpf[<pid>]`) to
    /// this socket (`/dev/log`).
    Syslog(PathBuf),
    /// The systemd journal, with PRIORITY, SYSLOG_IDENTIFIER=dpf and
    /// SYSLOG_PID fields.
    Journald,
    /// Lines as for stderr, to any writer (tests).
    Stream(Box<dyn Write + Send>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Stderr => f.write_str("stderr"),
            Sink::Syslog(p) => write!(f, "syslog {}", p.display()),
            Sink::Journald => f.write_str("journald"),
            Sink::Stream(_) => f.write_str("stream"),
        }
    }
}

/// Messages the queue holds at most; beyond, they are dropped and counted.
pub const QUEUE_LEN: usize = 4096;

struct Message {
    level: Level,
    text: String,
}

/// One logger: a bounded queue and the counters of what happened to it.
/// The process has one (see [`start`]); tests make their own.
pub struct Logger {
    tx: SyncSender<Message>,
    /// Messages queued and not yet written (for [`Logger::flush`]).
    pending: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
}

impl Logger {
    /// A logger writing to `sink` from a thread of its own; `queue` is the
    /// queue's bound.
    pub fn spawn(sink: Sink, queue: usize) -> std::io::Result<&'static Logger> {
        let (tx, rx) = sync_channel(queue.max(1));
        let writer = Writer::open(sink)?;
        // Leaked on purpose: the writer thread and every caller hold it for
        // the life of the process.
        let logger: &'static Logger = Box::leak(Box::new(Logger {
            tx,
            pending: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        }));
        std::thread::Builder::new()
            .name("dpf-log".into())
            .spawn(move || writer.run(rx, logger))?;
        Ok(logger)
    }

    /// Queues a message; never blocks (a full queue drops it, counted).
    pub fn push(&self, level: Level, text: String) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(Message { level, text }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until every queued message is written, `timeout` at most;
    /// whether the queue drained.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.pending.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages the sink refused (syslogd or journald not listening).
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }
}

/// The writer thread's end: the sink, opened.
enum Writer {
    Stream(Box<dyn Write + Send>),
    Syslog {
        path: PathBuf,
        logger: Option<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>,
    },
    Journald(systemd_journal_logger::JournalLog),
}

impl Writer {
    fn open(sink: Sink) -> std::io::Result<Writer> {
        Ok(match sink {
            Sink::Stderr => Writer::Stream(Box::new(std::io::stderr())),
            Sink::Stream(w) => Writer::Stream(w),
            // Connected lazily (and again after an error): syslogd may
            // start after dpf.
            Sink::Syslog(path) => Writer::Syslog { path, logger: None },
            Sink::Journald => Writer::Journald(
                systemd_journal_logger::JournalLog::new()?.with_syslog_identifier("dpf".into()),
            ),
        })
    }

    fn run(mut self, rx: Receiver<Message>, logger: &Logger) {
        let mut reported_drops = 0;
        while let Ok(m) = rx.recv() {
            let drops = logger.dropped();
            if drops > reported_drops {
                let note = format!(
                    "{} log messages dropped: the log queue was full",
                    drops - reported_drops
                );
                reported_drops = drops;
                if self.write(Level::Warning, &note).is_err() {
                    logger.write_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            if self.write(m.level, &m.text).is_err() {
                logger.write_errors.fetch_add(1, Ordering::Relaxed);
            }
            logger.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn write(&mut self, level: Level, text: &str) -> Result<(), ()> {
        match self {
            Writer::Stream(w) => {
                writeln!(w, "dpf[{}]: {}: {text}", std::process::id(), level.name())
                    .map_err(drop)?;
                w.flush().map_err(drop)
            }
            Writer::Syslog { path, logger } => {
                if logger.is_none() {
                    let formatter = syslog::Formatter3164 {
                        facility: syslog::Facility::LOG_DAEMON,
                        hostname: None,
                        process: "dpf".into(),
                        pid: std::process::id(),
                    };
                    *logger = Some(syslog::unix_custom(formatter, &*path).map_err(drop)?);
                }
                let l = logger.as_mut().ok_or(())?;
                let sent = match level {
                    Level::Emerg => l.emerg(text),
                    Level::Alert => l.alert(text),
                    Level::Crit => l.crit(text),
                    Level::Err => l.err(text),
                    Level::Warning => l.warning(text),
                    Level::Notice => l.notice(text),
                    Level::Info => l.info(text),
                    Level::Debug => l.debug(text),
                };
                if sent.is_err() {
                    *logger = None;
                    return Err(());
                }
                Ok(())
            }
            Writer::Journald(j) => j
                .journal_send(
                    &log::Record::builder()
                        .level(level.to_log())
                        .target("dpf")
                        .args(format_args!("{text}"))
                        .build(),
                )
                .map_err(drop),
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static LOGGER: OnceLock<&'static Logger> = OnceLock::new();

/// Sets the highest priority number that is emitted (0-7).
pub fn set_level(level: u8) {
    LEVEL.store(level.min(7), Ordering::Relaxed);
}

/// Whether messages of `level` are emitted.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Sends the process's messages to `sink` from now on, through the queue
/// and the writer thread; installs the `log` facade's bridge. Once per
/// process.
pub fn start(sink: Sink) -> std::io::Result<()> {
    let logger = Logger::spawn(sink, QUEUE_LEN)?;
    if LOGGER.set(logger).is_err() {
        return Err(std::io::Error::other("the logger is already started"));
    }
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    Ok(())
}

/// Waits (1 s at most) until the queued messages are written: call it
/// before the process exits.
pub fn flush() {
    if let Some(l) = LOGGER.get() {
        l.flush(Duration::from_secs(1));
    }
}

/// Messages dropped because the log queue was full.
pub fn dropped() -> u64 {
    LOGGER.get().map_or(0, |l| l.dropped())
}

/// Messages the sink refused.
pub fn write_errors() -> u64 {
    LOGGER.get().map_or(0, |l| l.write_errors())
}

/// Emits `msg` at `level`: queued once [`start`] has run, else written to
/// stderr at once.
pub fn log(level: Level, msg: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    match LOGGER.get() {
        Some(l) => l.push(level, msg.to_string()),
        None => eprintln!("dpf[{}]: {}: {msg}", std::process::id(), level.name()),
    }
}

/// Other crates' `log` records, at their mapped priority.
struct Bridge;

static BRIDGE: Bridge = Bridge;

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        enabled(Level::from_log(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = Level::from_log(record.level());
        log(
            level,
            format_args!("{}: {}", record.target(), record.args()),
        );
    }

    fn flush(&self) {}
}

/// `log!(Level::Info, "...", args)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        $crate::log::log($level, format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A sink whose writes block until the test ends (it drops the
    /// sender): a stuck syslogd or a full pipe nobody reads, without a
    /// file descriptor another test could disturb.
    struct Stuck(std::sync::mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Err(std::io::Error::other("the test ended"))
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_sink_that_never_drains_costs_callers_nothing_but_drops() {
        let (_release, stuck) = std::sync::mpsc::channel::<()>();
        let logger = Logger::spawn(Sink::Stream(Box::new(Stuck(stuck))), 64).unwrap();
        // 64 queued messages hold far less than this; were push to wait,
        // the loop would never end.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..20_000 {
                logger.push(Level::Notice, format!("message {i} {}", "x".repeat(100)));
            }
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("push waited for the sink");
        assert!(logger.dropped() > 10_000, "dropped {}", logger.dropped());
        assert!(!logger.flush(Duration::from_millis(50)));
    }

    /// A sink that holds its first write until the gate opens, then keeps
    /// what it is given.
    struct Gated {
        gate: Option<std::sync::mpsc::Receiver<()>>,
        out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(gate) = self.gate.take() {
                let _ = gate.recv();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writer_reports_drops_and_flush_waits_for_the_sink() {
        let (open, gate) = std::sync::mpsc::channel();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Gated {
            gate: Some(gate),
            out: out.clone(),
        };
        let logger = Logger::spawn(Sink::Stream(Box::new(sink)), 4).unwrap();
        for i in 0..1000 {
            logger.push(Level::Err, format!("m{i}"));
        }
        // The writer holds one message, the queue four: the rest dropped.
        let dropped = logger.dropped();
        assert!(dropped >= 995, "dropped {dropped}");
        assert!(
            !logger.flush(Duration::from_millis(20)),
            "flushed past a closed sink"
        );
        open.send(()).unwrap();
        assert!(logger.flush(Duration::from_secs(30)));
        logger.push(Level::Notice, "after".into());
        assert!(logger.flush(Duration::from_secs(30)));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let pid = std::process::id();
        assert!(text.contains(&format!("dpf[{pid}]: err: m0\n")), "{text}");
        let reported: u64 = text
            .lines()
            .filter_map(|l| l.split(": warning: ").nth(1))
            .filter_map(|l| l.strip_suffix(" log messages dropped: the log queue was full"))
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert_eq!(reported, dropped, "{text}");
        assert!(text.ends_with(": notice: after\n"), "{text}");
    }

    #[test]
    fn syslog_gets_rfc3164_daemon_priorities() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let logger = Logger::spawn(Sink::Syslog(path.clone()), 16).unwrap();
        logger.push(Level::Notice, "carp1: BACKUP -> MASTER".into());
        logger.push(Level::Err, "pfsync: bad".into());
        logger.push(Level::Debug, "d".into());
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let pid = std::process::id();
        // facility daemon (3) * 8 + priority.
        assert!(got[0].starts_with("<29>"), "{got:?}");
        assert!(
            got[0].ends_with(&format!("dpf[{pid}]: carp1: BACKUP -> MASTER")),
            "{got:?}"
        );
        assert!(got[1].starts_with("<27>"), "{got:?}");
        assert!(got[2].starts_with("<31>"), "{got:?}");
        assert!(logger.flush(Duration::from_secs(30)));
        assert_eq!(logger.write_errors(), 0);
    }

    #[test]
    fn a_missing_syslogd_is_counted_and_reconnected_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let logger = Logger::spawn(Sink::Syslog(path.clone()), 16).unwrap();
        logger.push(Level::Notice, "lost".into());
        assert!(logger.flush(Duration::from_secs(30)));
        assert_eq!(logger.write_errors(), 1);
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        logger.push(Level::Notice, "found".into());
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("found"));
    }

    #[test]
    fn levels_keep_their_journal_priority() {
        // systemd-journal-logger's priorities of the log levels.
        let journal = |l: log::Level| match l {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 5,
            log::Level::Debug => 6,
            log::Level::Trace => 7,
        };
        for p in 3..=7u8 {
            let level = [
                Level::Err,
                Level::Warning,
                Level::Notice,
                Level::Info,
                Level::Debug,
            ][usize::from(p - 3)];
            assert_eq!(journal(level.to_log()), p);
            assert_eq!(Level::from_log(level.to_log()), level);
        }
        assert_eq!(journal(Level::Crit.to_log()), 3);
    }
}
