//! `dpf --config dpf.toml`: the firewall daemon.

use clap::Parser;
use control::config::Config;
use control::daemon::{self, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// dpf: a pf-style stateful firewall on DPDK poll-mode drivers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
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
    /// Print a JSON line of counter totals every MS milliseconds.
    #[arg(long, value_name = "MS")]
    stats_every: Option<u64>,
    /// Log level, syslog 0-7 (default 6, info).
    #[arg(short = 'l', long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(0..=7))]
    log_level: u8,
}

fn main() -> ExitCode {
    let args = Args::parse();
    control::log::set_level(args.log_level);
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dpf: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("dpf: {}: configuration OK", args.config.display());
        return ExitCode::SUCCESS;
    }
    let opts = RunOptions {
        exit_when_idle: args.exit_when_idle.map(Duration::from_millis),
        json_stats: args.json_stats,
        stats_every: args.stats_every.map(Duration::from_millis),
    };
    match daemon::run(config, opts) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(rc) => ExitCode::from(rc as u8),
        Err(e) => {
            eprintln!("dpf: {e:#}");
            ExitCode::from(1)
        }
    }
}
