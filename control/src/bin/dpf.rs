//! `dpf --config dpf.toml`: the firewall daemon.

use clap::Parser;
use control::config::Config;
use control::daemon::{self, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// dpf: a pf-style stateful firewall on DPDK poll-mode drivers.
#[derive(Parser, Debug)]
#[command(
    name = "dpf",
    version,
    about = "A pf-style stateful firewall on DPDK poll-mode drivers, run as a CARP + pfsync pair"
)]
struct Args {
    /// Print the dpf(8) manual page (roff) and exit.
    #[arg(long)]
    man: bool,
    /// Print the dpf.toml(5) manual page (roff) and exit.
    #[arg(long)]
    man_config: bool,
    /// Print a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell) and exit.
    #[arg(long, value_name = "SHELL")]
    completions: Option<clap_complete::Shell>,
    /// The configuration file.
    #[arg(short = 'c', long, default_value = "/etc/dpf/dpf.toml")]
    config: PathBuf,
    /// Check the configuration and exit (0 if valid).
    #[arg(short = 'n', long)]
    check: bool,
    /// Exit once every rx queue has been empty this many milliseconds
    /// (batch mode for pcap-driven runs).
    #[arg(long, value_name = "MS")]
    exit_when_idle: Option<u64>,
    /// Print final statistics as JSON.
    #[arg(long)]
    json_stats: bool,
    /// Process this pcapng before the workers start, each packet as if
    /// received on the port whose index is its pcapng interface id.
    #[arg(long, value_name = "PCAPNG")]
    preload: Option<PathBuf>,
    /// Replay a pcapng through the configured rules and exit, without DPDK:
    /// packet interface id = receiving port, timestamps = the clock.
    #[arg(long, value_name = "PCAPNG", requires = "replay_out")]
    replay: Option<PathBuf>,
    /// Where `--replay` writes forwarded packets (interface id = egress port).
    #[arg(long, value_name = "PCAPNG")]
    replay_out: Option<PathBuf>,
    /// With `--replay`: packets reach the workers as a NIC with symmetric
    /// RSS spreads them (the worker of the queue their Toeplitz hash
    /// picks), and flows are owned by that placement.
    #[arg(long, requires = "replay")]
    replay_rss: bool,
    /// Pipelines (workers) for `--replay`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    replay_workers: u16,
    /// Makes a `--replay` reproducible: keys the flow hash (and so the
    /// worker of each flow and the `nat-to` port choices) from SEED
    /// instead of the OS RNG. Replay only.
    #[arg(long, value_name = "SEED", requires = "replay")]
    replay_seed: Option<u64>,
    /// pfsync creator id (host id) of this box; random when not given.
    #[arg(long, value_parser = parse_creatorid)]
    creatorid: Option<u32>,
    /// Write one line per pfsync state message sent or received to FILE
    /// (`tx|rx ins|upd|updc|delc|bulk <id> <creatorid> <t_ns>`; for the
    /// sync benchmark).
    #[arg(long, value_name = "FILE")]
    sync_trace: Option<PathBuf>,
    /// Print a JSON line of counter totals every MS milliseconds.
    #[arg(long, value_name = "MS")]
    stats_every: Option<u64>,
    /// Where daemon messages go: `stderr`, `syslog` (the socket of
    /// --syslog-socket, facility daemon), `journald` (the systemd journal's
    /// native protocol), or `auto`: the journal when stderr is connected to
    /// it (a systemd service), else stderr.
    #[arg(long, value_enum, default_value_t = LogTo::Auto)]
    log_to: LogTo,
    /// The syslog socket for `--log-to syslog`.
    #[arg(long, value_name = "PATH", default_value = "/dev/log")]
    syslog_socket: PathBuf,
    /// Log level, syslog 0-7 (default 6, info).
    #[arg(short = 'l', long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(0..=7))]
    log_level: u8,
}

/// `--log-to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogTo {
    Auto,
    Stderr,
    Syslog,
    Journald,
}

/// Starts the log writer for the daemon (not for `-n` or `--replay`, which
/// print to the terminal).
fn start_log(to: LogTo, syslog_socket: PathBuf) -> std::io::Result<()> {
    use control::log::Sink;
    let sink = match to {
        LogTo::Stderr => Sink::Stderr,
        LogTo::Syslog => Sink::Syslog(syslog_socket),
        LogTo::Journald => Sink::Journald,
        LogTo::Auto if systemd_journal_logger::connected_to_journal() => Sink::Journald,
        LogTo::Auto => Sink::Stderr,
    };
    control::log::start(sink)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.man {
        return match clap_mangen::Man::new(<Args as clap::CommandFactory>::command())
            .section("8")
            .render(&mut std::io::stdout())
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dpf: {e}");
                ExitCode::from(1)
            }
        };
    }
    if args.man_config {
        print!("{}", control::config_doc::man_page());
        return ExitCode::SUCCESS;
    }
    if let Some(shell) = args.completions {
        let mut cmd = <Args as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "dpf", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    control::log::set_level(args.log_level);
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dpf: {e}");
            return ExitCode::from(2);
        }
    };
    let ruleset = match daemon::load_ruleset(&config) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("dpf: {e}");
            }
            if errors.len() > 1 {
                eprintln!("dpf: {} errors", errors.len());
            }
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("dpf: {}: configuration OK", args.config.display());
        return ExitCode::SUCCESS;
    }
    if let (Some(input), Some(output)) = (&args.replay, &args.replay_out) {
        let opts = daemon::ReplayOptions {
            workers: args.replay_workers as usize,
            creatorid: args.creatorid.unwrap_or(1),
            seed: args.replay_seed,
            rss: args.replay_rss,
        };
        return match daemon::replay(&config, ruleset, input, output, &opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dpf: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Err(e) = start_log(args.log_to, args.syslog_socket.clone()) {
        eprintln!("dpf: starting the logger ({:?}): {e}", args.log_to);
        return ExitCode::from(1);
    }
    let opts = RunOptions {
        exit_when_idle: args.exit_when_idle.map(Duration::from_millis),
        json_stats: args.json_stats,
        stats_every: args.stats_every.map(Duration::from_millis),
        preload: args.preload,
        creatorid: args.creatorid,
        sync_trace: args.sync_trace,
    };
    let result = daemon::run(config, ruleset, opts);
    if let Err(e) = &result {
        if args.log_to != LogTo::Stderr {
            control::log!(control::log::Level::Err, "{e:#}");
        }
    }
    control::log::flush();
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(rc) => ExitCode::from(rc as u8),
        Err(e) => {
            eprintln!("dpf: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn parse_creatorid(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("creatorid '{s}': {e}"))?;
    if v == 0 {
        return Err("creatorid 0 is reserved".into());
    }
    Ok(v)
}
