//! `bench`: dpf's traffic generator and throughput harness.
//!
//! One clap subcommand per module: `gen` ([`gen`]) writes pcaps for the
//! harness; `run`, `sweep` and `suite` ([`run`]) measure dpf against
//! dpdk-testpmd on them; `live` and `rfc2544` ([`live`]) drive dpf and
//! testpmd from a live DPDK generator (`live-gen`) over memif; `carp-cpu`
//! ([`carp_cpu`]) measures the control thread with many CARP vhids;
//! `sync` ([`sync`]) measures pfsync between two dpf; `rss-gen`
//! ([`rss_gen`]) sends over multi-queue links as an RSS NIC would.

mod carp_cpu;
mod frames;
mod gen;
mod live;
mod rss_gen;
mod run;
mod sync;

use clap::{Parser, Subcommand};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    version,
    about = "dpf traffic generator and throughput harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Write setup and steady pcaps (and a JSON sidecar) for a traffic profile.
    Gen(gen::GenArgs),
    /// Measure dpf's throughput on one profile, against dpdk-testpmd.
    Run(run::RunArgs),
    /// Measure over flows (states), ruleset sizes (rules) or workers.
    Sweep(run::SweepArgs),
    /// The standard set: est-tcp 10k and 1M, new-conn, udp, imix, the
    /// states and rules sweeps; one report.
    Suite(run::SuiteArgs),
    /// CPU of the control thread with many CARP vhids (two dpf on memif).
    CarpCpu(carp_cpu::CarpCpuArgs),
    /// Offer a fixed rate from the live generator through dpf (and
    /// testpmd) over memif; loss, reordering and latency.
    Live(live::LiveArgs),
    /// RFC 2544 loss-free throughput search with the live generator,
    /// through dpf and dpdk-testpmd.
    Rfc2544(live::Rfc2544Args),
    /// pfsync between two dpf over memif: states synced per second,
    /// creation-to-backup latency, bulk update time.
    Sync(sync::SyncArgs),
    /// The live generator process (started by `live` and `rfc2544`).
    #[command(hide = true)]
    LiveGen(live::engine::AgentArgs),
    /// A generator that places frames on N queue pairs by symmetric
    /// Toeplitz and a redirection table, as a multi-queue NIC does.
    RssGen(rss_gen::RssGenArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Gen(args) => gen::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Sweep(args) => run::sweep(&args),
        Command::Suite(args) => run::suite(&args),
        Command::CarpCpu(args) => carp_cpu::run(&args),
        Command::Live(args) => live::live(&args),
        Command::Rfc2544(args) => live::rfc2544(&args),
        Command::Sync(args) => sync::run(&args),
        Command::LiveGen(args) => live::engine::run(&args),
        Command::RssGen(args) => rss_gen::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_gen() {
        let cli = Cli::try_parse_from([
            "bench",
            "gen",
            "--profile",
            "est-tcp",
            "--flows",
            "10000",
            "--frame-size",
            "128",
            "--seed",
            "3",
            "--out",
            "/tmp/x",
            "--ipv6",
            "--progress",
        ])
        .unwrap();
        let Command::Gen(args) = cli.command else {
            panic!("not gen")
        };
        assert_eq!(args.profile, gen::plan::Profile::EstTcp);
        assert_eq!(
            (args.flows, args.frame_size, args.seed),
            (10000, Some(128), 3)
        );
        assert!(args.ipv6 && args.progress);
        for bad in ["63", "1519"] {
            let parsed = Cli::try_parse_from([
                "bench",
                "gen",
                "--profile",
                "udp",
                "--frame-size",
                bad,
                "--out",
                "/tmp/x",
            ]);
            assert!(parsed.is_err(), "--frame-size {bad}");
        }
    }

    #[test]
    fn parses_run_sweep_and_suite() {
        let cli = Cli::try_parse_from([
            "bench",
            "run",
            "--profile",
            "est-tcp",
            "--flows",
            "1000",
            "--workers",
            "2",
            "--warmup",
            "1",
            "--duration",
            "3",
            "--repeat",
            "2",
            "--out",
            "/tmp/o",
            "--rules",
            "r.conf",
            "--no-testpmd",
            "--dpf",
            "/x/dpf",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!((args.flows, args.workers), (1000, 2));
        let h = &args.harness;
        assert_eq!((h.warmup, h.duration, h.repeat), (1, Some(3), Some(2)));
        assert!(h.no_testpmd);
        assert_eq!(h.rules.as_deref(), Some(std::path::Path::new("r.conf")));
        let cli = Cli::try_parse_from(["bench", "sweep", "rules", "--keep-state"]).unwrap();
        let Command::Sweep(args) = cli.command else {
            panic!("not sweep")
        };
        assert!(args.keep_state);
        assert!(Cli::try_parse_from(["bench", "sweep", "colours"]).is_err());
        assert!(
            Cli::try_parse_from(["bench", "run", "--profile", "udp", "--duration", "0"]).is_err()
        );
        assert!(Cli::try_parse_from(["bench", "suite", "--out", "x"]).is_ok());
    }
}
