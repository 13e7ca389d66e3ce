//! The one logging facade: syslog priorities 0-7 (`net.inet.carp.log`
//! semantics: a message is printed when its priority is at or below the
//! configured level). Control and sync threads log; workers log only at
//! start and stop.

use std::sync::atomic::{AtomicU8, Ordering};

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

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the highest priority number that is printed (0-7).
pub fn set_level(level: u8) {
    LEVEL.store(level.min(7), Ordering::Relaxed);
}

/// Whether messages of `level` are printed.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Prints `msg` at `level` to stderr with a `dpf[<pid>]: <level>:` prefix.
pub fn log(level: Level, msg: std::fmt::Arguments<'_>) {
    if enabled(level) {
        let name = match level {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Err => "err",
            Level::Warning => "warning",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        };
        eprintln!("dpf[{}]: {name}: {msg}", std::process::id());
    }
}

/// `log!(Level::Info, "...", args)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        $crate::log::log($level, format_args!($($arg)*))
    };
}
