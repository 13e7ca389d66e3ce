//! `dpfctl`: pfctl's habits for a running dpf, over its control socket.
//!
//! ```text
//! dpfctl [-v[v]] -s info|states|rules|labels|timeouts|memory|interfaces|routes|neighbors|carp|pfsync [--json]
//! dpfctl -s states -k 10.0.0.1        (show only states of a host)
//! dpfctl -f pf.conf                   (load rules; errors give file:line:col)
//! dpfctl -a NAME -f|-s rules|-F rules (an anchor's rules)
//! dpfctl -k 10.0.0.1 [-k 10.0.0.2]    (kill states)
//! dpfctl -k id -k ID[/CREATORID], dpfctl -k label -k LABEL
//! dpfctl -F states|rules|all, dpfctl -z (zero rule and label counters)
//! dpfctl carp1 [advskew N|up|down|state S], dpfctl pfsync0
//! dpfctl -g GROUP [carpdemote N|-carpdemote N], dpfctl sysctl [name[=value]]
//! dpfctl -s Tables                    (tables: flags, name, entries)
//! dpfctl -t T -T show|flush|zero|expire N|add|delete|replace|test [ADDR...] [-f FILE]
//! dpfctl -F Tables                    (delete unreferenced tables)
//! dpfctl -s Sources                   (source tracking nodes, pfctl -sS)
//! dpfctl -K HOST, dpfctl -F Sources   (kill source nodes: a host's, all)
//! dpfctl -L [--no-follow] [--log-file F] [--json]  (pflog records, followed live)
//! ```
//!
//! Flags combine as pfctl's do (`-sr`, `-vvsr`, `-ss -v`); an unknown flag
//! or word is refused with exit status 2 before anything is sent.
//!
//! Answers are read into the protocol's types (`control::ctl`); listings
//! arrive in chunks and are printed as they come.

use clap::{ArgAction, Parser, ValueEnum};
use control::ctl::server::{call, Answer, CallError};
use control::ctl::{
    CarpShow, GroupShow, Info, InterfaceEntry, Killed, LabelEntry, LimitEntry, Loaded,
    NeighborEntry, PfsyncShow, Request, RouteEntry, RuleEntry, SourceEntry, SourcesKilled,
    StateEntry, TableAddrEntry, TableChanged, TableInfo, TableOp, TableTested, TablesFlushed,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// What `-s` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Show {
    /// Counters and drops by reason (pfctl -si).
    #[value(alias = "i")]
    Info,
    /// States (pfctl -ss -v); with -k HOST only that host's.
    #[value(alias = "s", alias = "state")]
    States,
    /// Rules (-v: with their counters, -vv: with their numbers).
    #[value(alias = "r")]
    Rules,
    /// Per-label counters (pfctl -sl).
    #[value(alias = "l")]
    Labels,
    /// State timeouts (pfctl -st).
    #[value(alias = "t")]
    Timeouts,
    /// Limits (pfctl -sm).
    #[value(alias = "m")]
    Memory,
    /// Ports: driver, MAC, link, addresses, packet counters.
    #[value(alias = "I")]
    Interfaces,
    /// Routes, longest prefix first.
    #[value(alias = "route")]
    Routes,
    /// Resolved, incomplete and static neighbours.
    #[value(alias = "neighbours", alias = "arp")]
    Neighbors,
    /// Every carp interface, the carp sysctls and carpstats.
    Carp,
    /// pfsync status and statistics.
    Pfsync,
    /// Tables: flags (pfctl -vsT letters), name, number of entries.
    #[value(name = "Tables", alias = "T", alias = "tables")]
    Tables,
    /// Source tracking nodes (pfctl -sS).
    #[value(name = "Sources", alias = "S")]
    Sources,
    /// Every view above, one after the other (pfctl -sa).
    #[value(alias = "a")]
    All,
}

/// Control a running dpf (pfctl-style).
#[derive(Parser, Debug)]
#[command(
    name = "dpfctl",
    version,
    about = "Control a running dpf (pfctl-style): views, rules, states, tables, CARP and pfsync"
)]
struct Args {
    /// Print the dpfctl(8) manual page (roff) and exit.
    #[arg(long)]
    man: bool,
    /// Print a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell) and exit.
    #[arg(long, value_name = "SHELL")]
    completions: Option<clap_complete::Shell>,
    /// Show a view.
    #[arg(short = 's', long = "show", value_name = "WHAT", value_enum)]
    show: Option<Show>,
    /// Load rules from a pf.conf file (the old rules stay if it is refused).
    #[arg(short = 'f', long = "file", value_name = "PF.CONF")]
    file: Option<PathBuf>,
    /// Kill states of a host (twice: states between two hosts). With -s
    /// states, show only states of that host.
    #[arg(short = 'k', long = "kill", value_name = "HOST")]
    kill: Vec<String>,
    /// Kill the source tracking nodes of a host (pfctl -K); their states
    /// stay and no longer count.
    #[arg(short = 'K', long = "kill-sources", value_name = "HOST")]
    kill_sources: Vec<String>,
    /// Flush: rules, states, Sources, Tables or all.
    #[arg(short = 'F', long = "flush", value_name = "WHAT")]
    flush: Option<String>,
    /// Verbose (twice: more), for -s rules and -s states.
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
    /// Zero the rule and label counters.
    #[arg(short = 'z', long = "zero")]
    zero: bool,
    /// The anchor -f, -s rules and -F rules act on.
    #[arg(short = 'a', long = "anchor", value_name = "ANCHOR")]
    anchor: Option<String>,
    /// The table a -T command works on.
    #[arg(short = 't', long = "table", value_name = "TABLE")]
    table: Option<String>,
    /// A table command (pfctl -T): show, add, delete, replace, flush,
    /// test, expire N, zero; addresses follow as words (or come from -f
    /// FILE, one per line).
    #[arg(short = 'T', long = "table-command", value_name = "COMMAND")]
    table_command: Option<String>,
    /// Interface group (ifconfig -g): show it, or change its carpdemote.
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    group: Option<String>,
    /// ifconfig-style words: `carp1`, `carp1 advskew 100`, `carp1 down`,
    /// `pfsync0`, `sysctl net.inet.carp.preempt=1`, or after -g:
    /// `carpdemote 50` / `-carpdemote 50`.
    #[arg(value_name = "WORDS", trailing_var_arg = true)]
    words: Vec<String>,
    /// Print the pflog file's records as `tcpdump -n -e` does (JSON with
    /// --json), then follow it live as `tcpdump -i pflog0` would.
    #[arg(short = 'L', long = "log")]
    log: bool,
    /// With -L: print what the file holds and exit.
    #[arg(long, requires = "log")]
    no_follow: bool,
    /// With -L: the pflog file (`[log] file` of dpf.toml).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/log/dpf/pflog",
        env = "DPF_PFLOG"
    )]
    log_file: PathBuf,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    /// The control socket.
    #[arg(long, default_value = control::config::DEFAULT_SOCKET, env = "DPF_SOCKET")]
    socket: PathBuf,
}

fn main() -> ExitCode {
    // `-carpdemote` is a word, not a flag: everything from it on is words.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(i) = argv.iter().position(|a| a == "-carpdemote") {
        argv.insert(i, "--".into());
    }
    let mut args = Args::parse_from(argv);
    if args.man {
        let mut out = std::io::stdout();
        return match clap_mangen::Man::new(<Args as clap::CommandFactory>::command())
            .section("8")
            .render(&mut out)
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dpfctl: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(shell) = args.completions {
        let mut cmd = <Args as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "dpfctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    // `dpfctl carp1 --json`: the trailing words swallow later flags.
    if let Some(i) = args.words.iter().position(|w| w == "--json") {
        args.words.remove(i);
        args.json = true;
    }
    if args.log {
        // The file, not the daemon: works while dpf is down too.
        let mut out = std::io::stdout();
        return match control::pflog::follow(&args.log_file, !args.no_follow, args.json, &mut out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dpfctl: {}: {e}", args.log_file.display());
                ExitCode::from(1)
            }
        };
    }
    let requests = match build(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dpfctl: {e}");
            return ExitCode::from(2);
        }
    };
    let all = args.show == Some(Show::All);
    for request in &requests {
        if all && !args.json {
            println!("{}:", section_title(request));
        }
        let code = run(&args, request);
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    ExitCode::SUCCESS
}

/// Sends one request and prints its answer.
fn run(args: &Args, request: &Request) -> ExitCode {
    let mut printer = Printer::new(request, args.json, args.verbose, args.anchor.clone());
    let answer = call(&args.socket, request, Duration::from_secs(30), |items| {
        printer.items(items)
    });
    // pfctl -T test exits 2 when not every address matches.
    let mut exit_code = 0;
    let r = match answer {
        Ok(Answer::Streamed) => printer.end(),
        Ok(Answer::Data(v)) => {
            if let Request::TableTest { .. } = request {
                if v.get("matched") != v.get("given") {
                    exit_code = 2;
                }
            }
            printer.whole(v)
        }
        Err(CallError::Refused(e)) => {
            printer.abort();
            eprintln!("dpfctl: {e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            printer.abort();
            eprintln!("dpfctl: {}: {e}", args.socket.display());
            return ExitCode::from(1);
        }
    };
    match r {
        Ok(()) => ExitCode::from(exit_code),
        Err(e) => {
            eprintln!("dpfctl: {e}");
            ExitCode::from(1)
        }
    }
}

/// A word that can name an interface (`carp1`, `pfsync0`).
fn is_ifname(w: &str) -> bool {
    w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `-t TABLE -T COMMAND [ADDR...]` (addresses also from `-f FILE`).
fn build_table(args: &Args) -> Result<Request, String> {
    let (Some(table), Some(cmd)) = (&args.table, &args.table_command) else {
        return Err(if args.table.is_some() {
            "-t needs a -T command (show, add, delete, replace, flush, test, expire N, zero)".into()
        } else {
            "-T needs a table: -t TABLE".into()
        });
    };
    let other = [
        args.show.map(|_| "-s"),
        args.flush.as_ref().map(|_| "-F"),
        (!args.kill.is_empty()).then_some("-k"),
        args.group.as_ref().map(|_| "-g"),
    ];
    if let Some(flag) = other.into_iter().flatten().next() {
        return Err(format!("-T cannot be combined with {flag}"));
    }
    if let Some(w) = args.words.iter().find(|w| w.starts_with('-')) {
        return Err(format!("unknown option '{w}' (see --help)"));
    }
    let mut addresses = args.words.clone();
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let list = dataplane::rules::table::parse_table_text(&text)
            .map_err(|e| format!("{}:{e}", path.display()))?;
        addresses.extend(list.into_iter().map(|(a, _, _)| a.to_string()));
    }
    let table = table.clone();
    let no_words = |what: &str| -> Result<(), String> {
        match addresses.first() {
            Some(w) => Err(format!("-T {what} takes no addresses (got '{w}')")),
            None => Ok(()),
        }
    };
    let change = |op: TableOp, addresses: Vec<String>| Request::TableChange {
        table: table.clone(),
        op,
        addresses,
    };
    match cmd.as_str() {
        "show" => {
            no_words("show")?;
            Ok(Request::TableShow {
                table: table.clone(),
            })
        }
        "test" => {
            if addresses.is_empty() {
                return Err("-T test needs addresses".into());
            }
            Ok(Request::TableTest {
                table: table.clone(),
                addresses,
            })
        }
        "add" | "delete" | "replace" => {
            if addresses.is_empty() && cmd != "replace" {
                return Err(format!("-T {cmd} needs addresses (words or -f FILE)"));
            }
            let op = match cmd.as_str() {
                "add" => TableOp::Add,
                "delete" => TableOp::Delete,
                _ => TableOp::Replace,
            };
            Ok(change(op, addresses))
        }
        "flush" => no_words("flush").map(|()| change(TableOp::Flush, Vec::new())),
        "zero" => no_words("zero").map(|()| change(TableOp::Zero, Vec::new())),
        "expire" => match addresses.as_slice() {
            [n] => {
                let seconds = n
                    .parse::<u64>()
                    .map_err(|_| format!("-T expire: '{n}' is not a number of seconds"))?;
                Ok(change(TableOp::Expire { seconds }, Vec::new()))
            }
            _ => Err("-T expire takes one number of seconds".into()),
        },
        "kill" | "load" => Err(format!("-T {cmd} is not supported by dpf")),
        other => Err(format!(
            "unknown -T command '{other}' (show, add, delete, replace, flush, test, expire N, zero)"
        )),
    }
}

/// The requests a command line makes, in order (most make one).
fn build(args: &Args) -> Result<Vec<Request>, String> {
    if args.table.is_some() || args.table_command.is_some() {
        return build_table(args).map(|r| vec![r]);
    }
    // Words come after -g, or alone (carp1 ..., pfsync0, sysctl ...);
    // anything else is a mistake to name, never an interface.
    if let Some(w) = args
        .words
        .iter()
        .find(|w| w.starts_with('-') && !(args.group.is_some() && w.as_str() == "-carpdemote"))
    {
        return Err(format!("unknown option '{w}' (see --help)"));
    }
    if let Some(a) = &args.anchor {
        let ok = args.file.is_some()
            || args.show == Some(Show::Rules)
            || args
                .flush
                .as_deref()
                .is_some_and(|f| matches!(f, "rules" | "r"));
        if !ok {
            return Err(format!("-a {a}: goes with -f, -s rules or -F rules"));
        }
    }
    // `-k id ID` / `-k label L`, pfctl's `-k id -k ID` also.
    if let Some(kind) = args
        .kill
        .first()
        .filter(|k| matches!(k.as_str(), "id" | "label"))
    {
        let value = match (args.kill.len(), args.words.as_slice()) {
            (2, []) => args.kill[1].clone(),
            (1, [w]) => w.clone(),
            _ => return Err(format!("-k {kind}: give one {kind}: -k {kind} -k VALUE")),
        };
        if args.show.is_some() || args.file.is_some() || args.flush.is_some() {
            return Err(format!("-k {kind} goes alone"));
        }
        return Ok(vec![if kind == "id" {
            Request::KillStateId {
                id: value,
                creatorid: None,
            }
        } else {
            Request::KillLabel { label: value }
        }]);
    }
    build_one(args).map(|mut r| {
        // -z with -s: show, then zero (pfctl's -z clears as it reads).
        if args.zero && !r.contains(&Request::ZeroCounters) {
            r.push(Request::ZeroCounters);
        }
        r
    })
}

fn build_one(args: &Args) -> Result<Vec<Request>, String> {
    if !args.kill_sources.is_empty() {
        if args.show.is_some()
            || args.file.is_some()
            || args.flush.is_some()
            || !args.kill.is_empty()
            || !args.words.is_empty()
            || args.zero
        {
            return Err("-K goes alone".into());
        }
        return match args.kill_sources.as_slice() {
            [host] => Ok(vec![Request::KillSources {
                host: Some(host.clone()),
            }]),
            // pfctl's second -K matches a node's translation address;
            // dpf's nodes have none (sticky-address keeps no node).
            _ => Err("-K takes one host (dpf's source nodes have no translation address)".into()),
        };
    }
    if args.zero
        && args.show.is_none()
        && args.file.is_none()
        && args.flush.is_none()
        && args.kill.is_empty()
        && args.words.is_empty()
    {
        return Ok(vec![Request::ZeroCounters]);
    }
    if args.zero
        && (args.file.is_some()
            || args.flush.is_some()
            || !args.kill.is_empty()
            || !args.words.is_empty())
    {
        return Err("-z goes alone or with -s".into());
    }
    if let Some(first) = args.words.first() {
        let other = [
            args.show.map(|_| "-s"),
            args.file.as_ref().map(|_| "-f"),
            args.flush.as_ref().map(|_| "-F"),
            (!args.kill.is_empty()).then_some("-k"),
            (args.verbose > 0).then_some("-v"),
        ];
        if let Some(flag) = other.into_iter().flatten().next() {
            return Err(format!(
                "unexpected word '{first}' with {flag} (see --help)"
            ));
        }
        if args.group.is_none() && !is_ifname(first) {
            return Err(format!(
                "'{first}' is not an interface name, sysctl or option (see --help)"
            ));
        }
    }
    if let Some(group) = &args.group {
        let w: Vec<&str> = args.words.iter().map(String::as_str).collect();
        let carpdemote = match w.as_slice() {
            [] => None,
            ["carpdemote"] => Some(1),
            ["carpdemote", n] => Some(parse_demote(n)?),
            ["-carpdemote"] => Some(-1),
            ["-carpdemote", n] => Some(-parse_demote(n)?),
            _ => {
                return Err(format!(
                    "-g {group}: expected carpdemote N or -carpdemote N, got '{}'",
                    w.join(" ")
                ))
            }
        };
        return Ok(vec![Request::Group {
            group: group.clone(),
            carpdemote,
        }]);
    }
    if let Some(first) = args.words.first() {
        if first == "sysctl" {
            return match args.words.len() {
                1 | 2 => Ok(vec![Request::Sysctl {
                    arg: args.words.get(1).cloned(),
                }]),
                _ => Err("sysctl takes one name or name=value".into()),
            };
        }
        if first == "pfsync0" && args.words.len() == 1 {
            return Ok(vec![Request::ShowPfsync]);
        }
        if args.words.len() == 1 {
            return Ok(vec![Request::ShowCarp {
                name: Some(first.clone()),
            }]);
        }
        return Ok(vec![Request::CarpSet {
            name: first.clone(),
            words: args.words[1..].to_vec(),
        }]);
    }
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // An anchor's file is named in full (its includes are relative to
        // it whatever the daemon's directory); the main file as given,
        // with the directory its relative includes start from.
        let file = match &args.anchor {
            Some(_) => std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string(),
            None => path.display().to_string(),
        };
        return Ok(vec![Request::LoadRules {
            text,
            file,
            dir: std::env::current_dir()
                .ok()
                .map(|d| d.display().to_string()),
            anchor: args.anchor.clone(),
        }]);
    }
    if let Some(what) = &args.flush {
        if args.show.is_some() || !args.kill.is_empty() {
            return Err(format!("-F {what} goes alone"));
        }
        // pfctl's -F modifiers, matched by prefix as pfctl does.
        let rules = Request::FlushRules {
            anchor: args.anchor.clone(),
        };
        return match what.as_str() {
            "rules" | "r" => Ok(vec![rules]),
            "states" | "state" | "s" => Ok(vec![Request::FlushStates]),
            "Tables" | "T" => Ok(vec![Request::FlushTables]),
            "Sources" | "S" => Ok(vec![Request::KillSources { host: None }]),
            "all" | "a" => Ok(vec![
                rules,
                Request::FlushStates,
                Request::KillSources { host: None },
                Request::FlushTables,
            ]),
            other => Err(format!(
                "-F {other}: can flush rules, states, Sources, Tables or all"
            )),
        };
    }
    if let Some(what) = args.show {
        if args.kill.len() > 1 || (!args.kill.is_empty() && what != Show::States) {
            return Err("-k with -s: one host, with -s states".into());
        }
        if args.verbose > 0 && !matches!(what, Show::Rules | Show::States) {
            return Err("-v goes with -s rules or -s states".into());
        }
        return Ok(vec![match what {
            Show::Info => Request::ShowInfo,
            Show::States => Request::ShowStates {
                host: args.kill.first().cloned(),
            },
            Show::Rules => Request::ShowRules,
            Show::Labels => Request::ShowLabels,
            Show::Timeouts => Request::ShowTimeouts,
            Show::Memory => Request::ShowMemory,
            Show::Tables => Request::ShowTables,
            Show::Sources => Request::ShowSources,
            Show::All => {
                return Ok(vec![
                    Request::ShowInfo,
                    Request::ShowRules,
                    Request::ShowLabels,
                    Request::ShowTimeouts,
                    Request::ShowMemory,
                    Request::ShowTables,
                    Request::ShowSources,
                    Request::ShowCarp { name: None },
                    Request::ShowPfsync,
                    Request::ShowStates { host: None },
                ])
            }
            Show::Interfaces => Request::ShowInterfaces,
            Show::Routes => Request::ShowRoutes,
            Show::Neighbors => Request::ShowNeighbors,
            Show::Carp => Request::ShowCarp { name: None },
            Show::Pfsync => Request::ShowPfsync,
        }]);
    }
    if args.verbose > 0 {
        return Err("-v goes with -s rules or -s states".into());
    }
    match args.kill.as_slice() {
        [] => Err("nothing to do: give -s, -f, -k, -F or -z (see --help)".into()),
        [host] => Ok(vec![Request::KillStates {
            host: host.clone(),
            peer: None,
        }]),
        [host, peer] => Ok(vec![Request::KillStates {
            host: host.clone(),
            peer: Some(peer.clone()),
        }]),
        _ => Err("-k takes one or two hosts".into()),
    }
}

/// Prints answers: listings item by item as chunks arrive, the rest whole.
struct Printer<'a> {
    request: &'a Request,
    json: bool,
    /// `-v` count.
    verbose: u8,
    /// `-a`: the anchor whose rules `-s rules` lists (none: the main
    /// ruleset's).
    anchor: Option<String>,
    out: std::io::BufWriter<std::io::Stdout>,
    /// Items printed so far.
    count: usize,
}

fn typed<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("unexpected answer from dpf: {e}"))
}

impl<'a> Printer<'a> {
    fn new(request: &'a Request, json: bool, verbose: u8, anchor: Option<String>) -> Printer<'a> {
        Printer {
            request,
            json,
            verbose,
            anchor,
            out: std::io::BufWriter::new(std::io::stdout()),
            count: 0,
        }
    }

    /// Items of a streamed listing.
    fn items(&mut self, items: Vec<Value>) -> Result<(), String> {
        for item in items {
            // -s rules lists one ruleset: the main one, or -a's anchor.
            if let Request::ShowRules = self.request {
                let anchor = item.get("anchor").and_then(Value::as_str);
                if anchor != self.anchor.as_deref() {
                    continue;
                }
            }
            if self.json {
                let sep = if self.count == 0 { "[\n" } else { ",\n" };
                let text = serde_json::to_string_pretty(&item).map_err(|e| e.to_string())?;
                write!(self.out, "{sep}{text}").map_err(|e| e.to_string())?;
            } else {
                if self.count == 0 {
                    self.header()?;
                }
                self.item(item)?;
            }
            self.count += 1;
        }
        Ok(())
    }

    fn header(&mut self) -> Result<(), String> {
        if let Request::ShowNeighbors = self.request {
            writeln!(
                self.out,
                "{:<40} {:<18} {:<10} State",
                "Address", "MAC", "Interface"
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn item(&mut self, item: Value) -> Result<(), String> {
        let o = &mut self.out;
        let r = match self.request {
            Request::ShowStates { .. } => {
                let st: StateEntry = typed(item)?;
                let (a, arrow, b) = match &st.nat {
                    // pfctl: the translated source with the original in
                    // parentheses (nat-to), or the original destination
                    // with the redirection target in parentheses (rdr-to).
                    Some(n) if n.src != st.src || n.sport != st.sport => (
                        format!(
                            "{} ({})",
                            fmt_ep(&n.src, n.sport),
                            fmt_ep(&st.src, st.sport)
                        ),
                        "->",
                        fmt_ep(&n.dst, n.dport),
                    ),
                    Some(n) => (
                        format!(
                            "{} ({})",
                            fmt_ep(&st.dst, st.dport),
                            fmt_ep(&n.dst, n.dport)
                        ),
                        "<-",
                        fmt_ep(&st.src, st.sport),
                    ),
                    None if st.direction == "out" => {
                        (fmt_ep(&st.src, st.sport), "->", fmt_ep(&st.dst, st.dport))
                    }
                    None => (fmt_ep(&st.dst, st.dport), "<-", fmt_ep(&st.src, st.sport)),
                };
                let v = self.verbose;
                writeln!(
                    o,
                    "{:<6} {:<5} {:<40} {} {:<40} {}:{}",
                    st.interface, st.proto, a, arrow, b, st.src_state, st.dst_state
                )
                .and_then(|()| {
                    // pfctl -vvss: the sequence windows.
                    if v < 2 || st.proto != "tcp" {
                        return Ok(());
                    }
                    let seq = |w: &control::ctl::PeerWindow| {
                        format!("[{} + {}]", w.seqlo, w.seqhi.wrapping_sub(w.seqlo))
                    };
                    writeln!(o, "   {}  {}", seq(&st.src_window), seq(&st.dst_window))
                })
                .and_then(|()| {
                    // pfctl -vss.
                    if v < 1 {
                        return Ok(());
                    }
                    write!(
                        o,
                        "   age {}, expires in {}, {}:{} pkts, {}:{} bytes",
                        hms(st.age_s),
                        hms(st.expires_in_s),
                        st.packets[0],
                        st.packets[1],
                        st.bytes[0],
                        st.bytes[1],
                    )?;
                    if let Some(r) = st.rule {
                        write!(o, ", rule {r}")?;
                    }
                    writeln!(o)
                })
                .and_then(|()| {
                    if v < 2 {
                        return Ok(());
                    }
                    writeln!(o, "   id: {} creatorid: {}", st.id, st.creatorid)
                })
            }
            Request::ShowRules => {
                let r: RuleEntry = typed(item)?;
                // pfctl: the rule number with -vv, the counters with -v.
                let nr = if self.verbose >= 2 {
                    format!("@{} ", r.number)
                } else {
                    String::new()
                };
                writeln!(o, "{nr}{}", r.rule).and_then(|()| {
                    if self.verbose == 0 {
                        return Ok(());
                    }
                    writeln!(
                        o,
                        "  [ Evaluations: {:<8}  Packets: {:<8}  Bytes: {:<10}  States: {:<6}]",
                        r.evaluations, r.packets, r.bytes, r.states_cur
                    )?;
                    writeln!(
                        o,
                        "  [ Inserted: uid 0 pid 0 State Creations: {:<6}]",
                        r.states_created
                    )
                })
            }
            Request::TableShow { .. } => {
                let e: TableAddrEntry = typed(item)?;
                // pfctl's print_addrx: two columns, then '!' or ' '.
                match e.address.strip_prefix('!') {
                    Some(a) => writeln!(o, "  !{a}"),
                    None => writeln!(o, "   {}", e.address),
                }
            }
            Request::ShowNeighbors => {
                let n: NeighborEntry = typed(item)?;
                writeln!(
                    o,
                    "{:<40} {:<18} {:<10} {}",
                    n.address,
                    n.mac.as_deref().unwrap_or("(incomplete)"),
                    n.interface,
                    n.state
                )
            }
            _ => writeln!(o, "{item}"),
        };
        r.map_err(|e| e.to_string())
    }

    /// The end of a streamed listing.
    fn end(mut self) -> Result<(), String> {
        let r = if self.json {
            if self.count == 0 {
                writeln!(self.out, "[]")
            } else {
                writeln!(self.out, "\n]")
            }
        } else if self.count == 0 {
            match self.request {
                Request::ShowStates { .. } => writeln!(self.out, "no states"),
                Request::ShowNeighbors => self.header().map_err(std::io::Error::other),
                _ => Ok(()),
            }
        } else {
            Ok(())
        };
        r.and_then(|()| self.out.flush()).map_err(|e| e.to_string())
    }

    /// The listing failed midway: end what was printed.
    fn abort(mut self) {
        if self.json && self.count > 0 {
            let _ = writeln!(self.out, "\n]");
        }
        let _ = self.out.flush();
    }

    /// A one-line answer.
    fn whole(mut self, d: Value) -> Result<(), String> {
        if self.json {
            let text = serde_json::to_string_pretty(&d).map_err(|e| e.to_string())?;
            return writeln!(self.out, "{text}")
                .and_then(|()| self.out.flush())
                .map_err(|e| e.to_string());
        }
        print_text(&mut self.out, self.request, d)?;
        self.out.flush().map_err(|e| e.to_string())
    }
}

fn print_text(o: &mut impl Write, request: &Request, d: Value) -> Result<(), String> {
    let w = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    match request {
        Request::ShowInfo => {
            let i: Info = typed(d)?;
            w(writeln!(
                o,
                "Status: Enabled for {} s, {} worker(s)\n",
                i.uptime_s, i.workers
            ))?;
            w(writeln!(o, "State Table                          Total"))?;
            for (k, v) in [
                ("current entries", i.states),
                ("limit", i.states_limit),
                ("side records", i.side_records),
                ("side records used", i.side_records_used),
                ("memory (bytes)", i.state_table_bytes),
                ("inserts", i.states_created),
                ("removals", i.states_removed),
                ("state hits", i.state_hits),
            ] {
                w(writeln!(o, "  {k:<30} {v:>12}"))?;
            }
            w(writeln!(o, "Packets"))?;
            for (k, v) in [
                ("rx", i.rx),
                ("tx", i.tx),
                ("forwarded", i.forwarded),
                ("handed off", i.handed_off),
                ("slow path", i.slow_path),
                ("dropped", i.dropped),
            ] {
                w(writeln!(o, "  {k:<30} {v:>12}"))?;
            }
            w(writeln!(o, "pfsync transmit and receive waits"))?;
            for (k, v) in [
                ("sync port waits (sender)", i.local_tx_waits),
                ("sync port pauses (receiver)", i.sync_rx_paused),
            ] {
                w(writeln!(o, "  {k:<30} {v:>12}"))?;
            }
            w(writeln!(o, "pflog"))?;
            for (k, v) in [("logged", i.pflog.logged), ("dropped", i.pflog.dropped)] {
                w(writeln!(o, "  {k:<30} {v:>12}"))?;
            }
            w(writeln!(o, "Drops"))?;
            for (k, v) in &i.drops {
                w(writeln!(o, "  {k:<30} {v:>12}"))?;
            }
            let l = &i.burst_latency;
            if l.get("count").and_then(Value::as_u64).unwrap_or(0) > 0 {
                w(writeln!(o, "Burst processing time (ns)"))?;
                for (name, k) in [
                    ("p50", "p50_ns"),
                    ("p99", "p99_ns"),
                    ("p99.9", "p999_ns"),
                    ("max", "max_ns"),
                ] {
                    let ns = l.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                    w(writeln!(o, "  {name:<30} {ns:>12.0}"))?;
                }
            }
            let c = i.control_socket;
            w(writeln!(o, "Control socket"))?;
            for (k, v) in [
                ("clients", c.clients),
                ("accepted", c.clients_accepted),
                ("refused (too many)", c.clients_refused),
                ("dropped (not reading)", c.clients_dropped_slow),
                ("bad requests", i.control_bad_requests),
            ] {
                w(writeln!(o, "  {k:<30} {v:>12}"))?;
            }
            w(writeln!(o, "Daemon log"))?;
            for (k, v) in [
                ("dropped (queue full)", i.log.dropped),
                ("write errors", i.log.write_errors),
            ] {
                w(writeln!(o, "  {k:<30} {v:>12}"))?;
            }
        }
        Request::ShowInterfaces => {
            let list: Vec<InterfaceEntry> = typed(d)?;
            w(writeln!(
                o,
                "{:<10} {:<12} {:<18} {:<5} {:>12} {:>12} {:>10} {:>8}",
                "NAME", "DRIVER", "MAC", "LINK", "IPACKETS", "OPACKETS", "IMISSED", "OERRORS"
            ))?;
            for i in list {
                let st = |k: &str| i.stats.get(k).copied().unwrap_or(0);
                w(writeln!(
                    o,
                    "{:<10} {:<12} {:<18} {:<5} {:>12} {:>12} {:>10} {:>8}",
                    i.name,
                    i.driver,
                    i.mac,
                    if i.link.up { "up" } else { "down" },
                    st("ipackets"),
                    st("opackets"),
                    st("imissed"),
                    st("oerrors")
                ))?;
            }
        }
        Request::LoadRules { file, anchor, .. } => {
            let l: Loaded = typed(d)?;
            match anchor {
                None => w(writeln!(o, "dpfctl: loaded {} rules from {file}", l.rules))?,
                Some(a) => w(writeln!(
                    o,
                    "dpfctl: loaded anchor {a} from {file} ({} rules in all)",
                    l.rules
                ))?,
            }
            for n in l.notes {
                w(writeln!(o, "dpfctl: note: {n}"))?;
            }
        }
        Request::ShowRoutes => {
            let list: Vec<RouteEntry> = typed(d)?;
            w(writeln!(
                o,
                "{:<44} {:<40} Interface",
                "Destination", "Gateway"
            ))?;
            for r in list {
                w(writeln!(
                    o,
                    "{:<44} {:<40} {}",
                    r.destination,
                    r.gateway.as_deref().unwrap_or("link"),
                    r.interface
                ))?;
            }
        }
        Request::ShowCarp { name } => {
            let c: CarpShow = typed(d)?;
            print_carp(o, &c, name.is_none())?;
        }
        Request::CarpSet { name, .. } => {
            let c: CarpShow = typed(d)?;
            if let Some(c) = c.interfaces.first() {
                w(writeln!(
                    o,
                    "{name}: carp: {} carpdev {} vhid {} advbase {} advskew {}",
                    c.state, c.carpdev, c.vhid, c.advbase, c.advskew
                ))?;
            }
        }
        Request::Group { .. } => {
            let g: GroupShow = typed(d)?;
            w(writeln!(
                o,
                "{}: carp demote count {}",
                g.group, g.carpdemote
            ))?;
        }
        Request::ShowPfsync => {
            let p: PfsyncShow = typed(d)?;
            print_pfsync(o, &p)?;
        }
        Request::Sysctl { .. } => {
            let m: BTreeMap<String, Value> = typed(d)?;
            for (k, v) in m {
                w(writeln!(o, "{k}={v}"))?;
            }
        }
        Request::KillStates { .. } | Request::KillStateId { .. } | Request::KillLabel { .. } => {
            let k: Killed = typed(d)?;
            w(writeln!(o, "killed {} states", k.killed))?;
        }
        Request::FlushStates => {
            let k: Killed = typed(d)?;
            w(writeln!(o, "{} states cleared", k.killed))?;
        }
        Request::FlushRules { .. } => {
            let _: Loaded = typed(d)?;
            w(writeln!(o, "rules cleared"))?;
        }
        Request::ZeroCounters => {
            w(writeln!(o, "rule counters cleared"))?;
        }
        Request::ShowLabels => {
            // pfctl -sl: label evaluations packets bytes in-packets
            // in-bytes out-packets out-bytes states.
            let list: Vec<LabelEntry> = typed(d)?;
            for l in list {
                w(writeln!(
                    o,
                    "{} {} {} {} {} {} {} {} {}",
                    l.label,
                    l.evaluations,
                    l.packets,
                    l.bytes,
                    l.packets_in,
                    l.bytes_in,
                    l.packets_out,
                    l.bytes_out,
                    l.states
                ))?;
            }
        }
        Request::ShowTimeouts => {
            let list: Vec<LimitEntry> = typed(d)?;
            for t in list {
                // pfctl -st: adaptive.start / adaptive.end are in states.
                if t.name.starts_with("adaptive.") {
                    w(writeln!(o, "{:<20} {:>7} states", t.name, t.value))?;
                } else {
                    w(writeln!(o, "{:<20} {:>7}s", t.name, t.value))?;
                }
            }
        }
        Request::ShowMemory => {
            let list: Vec<LimitEntry> = typed(d)?;
            for t in list {
                w(writeln!(o, "{:<14} hard limit {:>8}", t.name, t.value))?;
            }
        }
        Request::ShowTables => {
            let list: Vec<TableInfo> = typed(d)?;
            for t in list {
                w(writeln!(
                    o,
                    "{}\t{}\t{} addresses",
                    t.flags, t.name, t.addresses
                ))?;
            }
        }
        Request::ShowSources => {
            // pfctl's print_src_node: `addr ( states S, connections C,
            // rate R.r/Ss )`.
            let list: Vec<SourceEntry> = typed(d)?;
            for n in list {
                w(writeln!(
                    o,
                    "{} ( states {}, connections {}, rate {}.{}/{}s )",
                    n.address,
                    n.states,
                    n.connections,
                    n.rate / 1000,
                    (n.rate % 1000) / 100,
                    n.rate_seconds
                ))?;
            }
        }
        Request::KillSources { host } => {
            let k: SourcesKilled = typed(d)?;
            match host {
                Some(h) => w(writeln!(o, "killed {} src nodes from host {h}", k.killed))?,
                None => w(writeln!(o, "source tracking entries cleared"))?,
            }
        }
        Request::FlushTables => {
            let f: TablesFlushed = typed(d)?;
            w(writeln!(o, "{} tables deleted.", f.deleted))?;
        }
        Request::TableTest { .. } => {
            let t: TableTested = typed(d)?;
            for r in &t.results {
                let entry = r.entry.as_deref().unwrap_or("no entry");
                let m = if r.matched { "M" } else { " " };
                w(writeln!(o, "{m} {} ({entry})", r.address))?;
            }
            w(writeln!(o, "{}/{} addresses match.", t.matched, t.given))?;
        }
        Request::TableChange { op, .. } => {
            let c: TableChanged = typed(d)?;
            print_table_change(o, op, &c)?;
        }
        // Listings are streamed; a one-line answer to one is unexpected
        // but printed as it is.
        Request::ShowStates { .. }
        | Request::ShowRules
        | Request::ShowNeighbors
        | Request::TableShow { .. } => {
            w(writeln!(o, "{d}"))?;
        }
    }
    Ok(())
}

/// pfctl's messages for a table change.
fn print_table_change(o: &mut impl Write, op: &TableOp, c: &TableChanged) -> Result<(), String> {
    let w = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    if c.created {
        w(writeln!(o, "1 table created."))?;
    }
    match op {
        TableOp::Add => w(writeln!(o, "{}/{} addresses added.", c.added, c.given))?,
        TableOp::Delete => w(writeln!(o, "{}/{} addresses deleted.", c.deleted, c.given))?,
        TableOp::Replace => {
            if c.added > 0 {
                w(writeln!(o, "{} addresses added.", c.added))?;
            }
            if c.deleted > 0 {
                w(writeln!(o, "{} addresses deleted.", c.deleted))?;
            }
            if c.changed > 0 {
                w(writeln!(o, "{} addresses changed.", c.changed))?;
            }
            if c.added + c.deleted + c.changed == 0 {
                w(writeln!(o, "no changes."))?;
            }
        }
        TableOp::Flush => w(writeln!(o, "{} addresses deleted.", c.deleted))?,
        TableOp::Expire { .. } => w(writeln!(o, "{}/{} addresses expired.", c.deleted, c.given))?,
        TableOp::Zero => w(writeln!(o, "1 table/stats cleared."))?,
    }
    if c.conflicts > 0 {
        w(writeln!(
            o,
            "{} addresses left alone: the table has them with the other negation.",
            c.conflicts
        ))?;
    }
    Ok(())
}

fn print_carp(o: &mut impl Write, d: &CarpShow, all: bool) -> Result<(), String> {
    let w = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    for c in &d.interfaces {
        let up = if c.up { "UP" } else { "DOWN" };
        let running = if c.running { ",RUNNING" } else { "" };
        w(writeln!(o, "{}: flags=<{up}{running}>", c.name))?;
        w(writeln!(o, "\tlladdr {}", c.lladdr))?;
        w(writeln!(
            o,
            "\tcarp: {} carpdev {} vhid {} advbase {} advskew {}{}",
            c.state,
            c.carpdev,
            c.vhid,
            c.advbase,
            c.advskew,
            c.carppeer
                .as_ref()
                .map(|p| format!(" carppeer {p}"))
                .unwrap_or_default()
        ))?;
        w(writeln!(o, "\tcarpdev {} link {}", c.carpdev, c.link))?;
        w(writeln!(o, "\tgroups: {}", c.groups.join(" ")))?;
        if c.demote > 0 {
            w(writeln!(o, "\tdemote: {}", c.demote))?;
        }
        for a in &c.addresses {
            let family = if a.contains(':') { "inet6" } else { "inet" };
            w(writeln!(o, "\t{family} {a}"))?;
        }
    }
    if all {
        for (k, v) in &d.sysctl {
            w(writeln!(o, "{k}={v}"))?;
        }
        w(writeln!(o, "carp statistics:"))?;
        for (k, v) in &d.stats {
            w(writeln!(o, "  {k:<24} {v:>12}"))?;
        }
        for (k, v) in &d.vmac_filter {
            w(writeln!(o, "  vmac_filter_{k:<12} {v:>12}"))?;
        }
    }
    Ok(())
}

fn print_pfsync(o: &mut impl Write, d: &PfsyncShow) -> Result<(), String> {
    let w = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    let e = &d.exports;
    w(writeln!(o, "pfsync0: flags=<UP,RUNNING>"))?;
    w(writeln!(
        o,
        "\tpfsync: syncdev {} syncpeer {} maxupd {} defer {}",
        d.syncdev,
        d.syncpeer,
        d.maxupd,
        if d.defer { "on" } else { "off" }
    ))?;
    w(writeln!(o, "\tbulk update: {}", d.bulk))?;
    w(writeln!(
        o,
        "\tsent {} packets ({} states), received {} states",
        d.sent_packets, d.sent_states, d.received_states
    ))?;
    w(writeln!(
        o,
        "\tcompressed updates: sent {} received {}; update requests: sent {} received {}",
        d.sent_compressed, d.received_compressed, d.sent_requests, d.received_requests
    ))?;
    w(writeln!(
        o,
        "\texport ring full {} (re-sent {}, lost {}); stale updates answered {}",
        e.export_dropped, e.export_resent, e.export_lost, e.stale_answered
    ))?;
    w(writeln!(
        o,
        "\tdeferred {} packets: {} acknowledged, {} timed out; {} not deferred (slots full); INS_ACK sent {} received {}",
        e.deferred, e.defer_acked, e.defer_timeout, e.defer_full, d.sent_acks, d.received_acks
    ))?;
    for (k, v) in &d.stats {
        w(writeln!(o, "  {k:<24} {v:>12}"))?;
    }
    Ok(())
}

fn parse_demote(n: &str) -> Result<i32, String> {
    n.parse::<i32>()
        .ok()
        .filter(|v| (0..=255).contains(v))
        .ok_or_else(|| format!("carpdemote '{n}': a number 0-255"))
}

/// Seconds as pfctl prints ages: `HH:MM:SS`.
fn hms(s: u64) -> String {
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn fmt_ep(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// pfctl -sa's section titles.
fn section_title(request: &Request) -> &'static str {
    match request {
        Request::ShowInfo => "INFO",
        Request::ShowRules => "FILTER RULES",
        Request::ShowLabels => "LABEL COUNTERS",
        Request::ShowTimeouts => "TIMEOUTS",
        Request::ShowMemory => "LIMITS",
        Request::ShowTables => "TABLES",
        Request::ShowCarp { .. } => "CARP",
        Request::ShowPfsync => "PFSYNC",
        Request::ShowStates { .. } => "STATES",
        Request::ShowSources => "SOURCE TRACKING NODES",
        _ => "",
    }
}
