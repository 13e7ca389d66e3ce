//! `bench`: dpf's traffic generator and throughput harness.
//!
//! One clap subcommand per module: `gen` ([`gen`]) writes pcaps for the
//! harness; further subcommands (`run`, ...) get their own module and a
//! variant of [`Command`].

mod frames;
mod gen;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Gen(args) => gen::run(&args),
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
        let Command::Gen(args) = cli.command;
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
}
