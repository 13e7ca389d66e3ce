//! Operator commands to a worker and its replies, over the SPSC ring.
//!
//! The control thread never touches a shard: it sends a [`Command`] on a
//! worker's command ring, and the worker executes it a bounded slice at a
//! time between bursts ([`CommandPort::poll`]), copying states into its
//! reply ring. A full reply ring pauses the listing where it stopped; it
//! resumes on the next poll. Nothing here allocates.

use crate::flow::{Addr, Af, FlowKey};
use crate::pipeline::Pipeline;
use crate::ring::{Consumer, Producer};
use crate::rules::RuleCounters;
use crate::state::State;

/// Slab slots a worker examines per poll.
pub const SLOTS_PER_POLL: usize = 4096;

/// Matches states by endpoint address (`dpfctl -k host [-k host]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFilter {
    /// First host: one endpoint of the state.
    pub host: (Af, Addr),
    /// Optional second host: the other endpoint.
    pub peer: Option<(Af, Addr)>,
}

impl HostFilter {
    /// Whether `key` connects the filter's hosts.
    pub fn matches(&self, key: &FlowKey) -> bool {
        let has =
            |(af, a): (Af, Addr)| key.af == af as u8 && (key.addr[0] == a || key.addr[1] == a);
        match self.peer {
            None => has(self.host),
            Some(p) => {
                has(self.host) && has(p) && (self.host.1 != p.1 || key.addr[0] == key.addr[1])
            }
        }
    }
}

/// A label, by value (commands are `Copy`): at most the 63 bytes pf
/// allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelName {
    bytes: [u8; 64],
    len: u8,
}

impl LabelName {
    /// `label`, if it fits.
    pub fn new(label: &str) -> Option<LabelName> {
        let b = label.as_bytes();
        if b.len() > 63 {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..b.len()].copy_from_slice(b);
        Some(LabelName {
            bytes,
            len: b.len() as u8,
        })
    }

    /// The label's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Which states an operator kill removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// By endpoint address (`dpfctl -k host [-k host]`).
    Host(HostFilter),
    /// One state by id and creator id (`dpfctl -k id -k ID`).
    Id {
        /// The state id.
        id: u64,
        /// Its creator id.
        creatorid: u32,
    },
    /// States whose rule has this label (`dpfctl -k label -k L`), in the
    /// current ruleset or the ones a reload replaced.
    Label(LabelName),
    /// States a source opened (`overload <t> flush`): whose initiator is
    /// `addr`, and with `rule`, created by that rule (its tag).
    Source {
        /// The source's family.
        af: Af,
        /// The source.
        addr: Addr,
        /// `flush` without `global`: only this rule's states.
        rule: Option<u32>,
    },
}

impl StateFilter {
    /// Whether `st` is to be removed; `rulesets` are the worker's
    /// current and recent rulesets (for labels).
    pub fn matches(
        &self,
        st: &State,
        rulesets: &[Option<std::sync::Arc<crate::rules::Ruleset>>],
    ) -> bool {
        match self {
            StateFilter::Host(f) => f.matches(st.key()),
            StateFilter::Id { id, creatorid } => st.id() == *id && st.creatorid() == *creatorid,
            StateFilter::Source { af, addr, rule } => {
                st.key().af == *af as u8
                    && st.src_endpoint().0 == *addr
                    && rule.is_none_or(|r| st.rule == r)
            }
            StateFilter::Label(l) => {
                rulesets
                    .iter()
                    .flatten()
                    .find_map(|r| r.rule_of_tag(st.rule).map(|nr| r.rule_label(nr as usize)))
                    == Some(std::str::from_utf8(l.as_bytes()).ok())
            }
        }
    }
}

/// A request from the control thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Copy every state into the reply ring, then `ListDone`.
    ListStates,
    /// Remove the states matching the filter, then `Killed(n)`.
    KillStates(HostFilter),
    /// Remove the states a [`StateFilter`] selects, then `Killed(n)`.
    KillMatching(StateFilter),
    /// Zero every rule's counters, then `ListDone` (`dpfctl -z`).
    ZeroRuleCounters,
    /// Remove every state, then `Killed(n)`.
    FlushStates,
    /// Send every rule's counters, then `ListDone`.
    RuleCounters,
    /// Detach the states of the source nodes of this address (all with
    /// `None`) from their nodes, then `Killed(n)` (`dpfctl -K`, `-F
    /// Sources`).
    DetachSources(Option<(Af, Addr)>),
}

/// A worker's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// One state of a listing, with its translation
    /// ([`Translation::NONE`](crate::state::Translation::NONE) if none).
    State(State, crate::state::Translation),
    /// The listing is complete.
    ListDone,
    /// A kill or flush removed this many states.
    Killed(u64),
    /// Counters of rule `index` (a `RuleCounters` listing).
    Rule(u32, RuleCounters),
}

#[derive(Clone, Copy, Debug)]
enum Active {
    Idle,
    Listing {
        cursor: usize,
    },
    Killing {
        cursor: usize,
        filter: Option<StateFilter>,
        removed: u64,
    },
    Rules {
        next: usize,
    },
    Detaching {
        cursor: usize,
        host: Option<(Af, Addr)>,
        detached: u64,
    },
    Reporting(Reply),
}

/// The worker's end of its command and reply rings.
#[derive(Debug)]
pub struct CommandPort {
    commands: Consumer<Command>,
    replies: Producer<Reply>,
    active: Active,
}

/// Names one command sent to a worker: its replies are those
/// [`CommandClient::recv`] tags with it.
pub type Ticket = u64;

/// The control thread's end of one worker's command and reply rings.
///
/// Several conversations may share the rings (a streamed `dpfctl -s
/// states` and a pfsync bulk update): a worker answers its commands in
/// order, each ending with one terminating reply (`ListDone` or
/// `Killed`), so counting terminators tells which command a reply
/// answers. A reader tags every reply with its command's [`Ticket`] and
/// drops replies of tickets it does not own; the owner of a ticket whose
/// terminator was read by someone else learns it from [`Self::finished`].
#[derive(Debug)]
pub struct CommandClient {
    commands: Producer<Command>,
    replies: Consumer<Reply>,
    /// Tickets issued (the last command sent has ticket `sent`).
    sent: Ticket,
    /// Commands whose terminating reply was read.
    finished: Ticket,
    /// Tickets of commands nobody waits for ([`CommandClient::send_orphan`]),
    /// oldest first: their replies are dropped as they come.
    orphans: std::collections::VecDeque<Ticket>,
}

/// Rings for one worker: (worker end, control end).
pub fn command_channel(reply_capacity: usize) -> (CommandPort, CommandClient) {
    let (cp, cc) = crate::ring::channel(16);
    let (rp, rc) = crate::ring::channel(reply_capacity);
    (
        CommandPort {
            commands: cc,
            replies: rp,
            active: Active::Idle,
        },
        CommandClient {
            commands: cp,
            replies: rc,
            sent: 0,
            finished: 0,
            orphans: std::collections::VecDeque::new(),
        },
    )
}

impl CommandClient {
    /// Sends `cmd`; its replies will carry the returned ticket. Fails
    /// (giving the command back) when the command ring is full.
    pub fn send(&mut self, cmd: Command) -> Result<Ticket, Command> {
        self.commands.push(cmd)?;
        self.commands.publish();
        self.sent += 1;
        Ok(self.sent)
    }

    /// Whether the command ring has room for one more command.
    pub fn has_room(&mut self) -> bool {
        self.commands.free_slots() > 0
    }

    /// Sends `cmd` without anyone waiting for its answer (the control
    /// thread's own kills): its replies are dropped by
    /// [`CommandClient::recv`] and [`CommandClient::reap`]. Fails like
    /// [`CommandClient::send`].
    pub fn send_orphan(&mut self, cmd: Command) -> Result<(), Command> {
        let t = self.send(cmd)?;
        self.orphans.push_back(t);
        Ok(())
    }

    /// Drops the replies of orphan commands that are next on the ring
    /// (call it every round of the control loop: nobody else may).
    pub fn reap(&mut self) {
        while self.orphans.front() == Some(&(self.finished + 1)) {
            let Some(r) = self.replies.pop() else { break };
            if r.is_terminator() {
                self.finished += 1;
                self.orphans.pop_front();
            }
        }
    }

    /// The next reply and the ticket of the command it answers (replies
    /// of orphan commands are skipped).
    pub fn recv(&mut self) -> Option<(Ticket, Reply)> {
        loop {
            let r = self.replies.pop()?;
            let ticket = self.finished + 1;
            if r.is_terminator() {
                self.finished += 1;
            }
            if self.orphans.front() == Some(&ticket) {
                if r.is_terminator() {
                    self.orphans.pop_front();
                }
                continue;
            }
            return Some((ticket, r));
        }
    }

    /// The next reply of `ticket`, and only of it: `None` while the replies
    /// of an earlier command (another reader's) are still ahead on the ring,
    /// or when none has come. Several readers (a `dpfctl` listing, a pfsync
    /// bulk update) share a worker's ring this way without taking each
    /// other's replies; a reader that gives up calls
    /// [`CommandClient::abandon`].
    pub fn recv_for(&mut self, ticket: Ticket) -> Option<Reply> {
        loop {
            let next = self.finished + 1;
            if self.orphans.front() == Some(&next) {
                let r = self.replies.pop()?;
                if r.is_terminator() {
                    self.finished += 1;
                    self.orphans.pop_front();
                }
                continue;
            }
            if next != ticket {
                return None;
            }
            let r = self.replies.pop()?;
            if r.is_terminator() {
                self.finished += 1;
            }
            return Some(r);
        }
    }

    /// Nobody will read the rest of `ticket`'s replies: they are dropped as
    /// they come (as an orphan command's), so later readers are not held.
    pub fn abandon(&mut self, ticket: Ticket) {
        if self.finished(ticket) || ticket > self.sent || self.orphans.contains(&ticket) {
            return;
        }
        let at = self.orphans.partition_point(|t| *t < ticket);
        self.orphans.insert(at, ticket);
    }

    /// Whether every reply of `ticket` (and of the tickets before it) has
    /// been read, by anyone.
    pub fn finished(&self, ticket: Ticket) -> bool {
        self.finished >= ticket
    }

    /// Whether no command is outstanding.
    pub fn is_idle(&self) -> bool {
        self.finished == self.sent
    }
}

impl Reply {
    /// Whether this reply ends its command's answer.
    pub fn is_terminator(&self) -> bool {
        matches!(self, Reply::ListDone | Reply::Killed(_))
    }
}

impl CommandPort {
    /// Advances the current command by one bounded slice, or starts the
    /// next one. Returns the number of states removed (for counters).
    pub fn poll(&mut self, pipeline: &mut Pipeline) -> u64 {
        let mut removed_now = 0;
        let rule_counters_len = pipeline.rule_counters().len();
        self.active = match self.active {
            Active::Idle => match self.commands.pop() {
                None => Active::Idle,
                Some(Command::ListStates) => Active::Listing { cursor: 0 },
                Some(Command::KillStates(f)) => Active::Killing {
                    cursor: 0,
                    filter: Some(StateFilter::Host(f)),
                    removed: 0,
                },
                Some(Command::KillMatching(f)) => Active::Killing {
                    cursor: 0,
                    filter: Some(f),
                    removed: 0,
                },
                Some(Command::ZeroRuleCounters) => {
                    pipeline.zero_rule_counters();
                    Active::Reporting(Reply::ListDone)
                }
                Some(Command::FlushStates) => Active::Killing {
                    cursor: 0,
                    filter: None,
                    removed: 0,
                },
                Some(Command::RuleCounters) => Active::Rules { next: 0 },
                Some(Command::DetachSources(host)) => Active::Detaching {
                    cursor: 0,
                    host,
                    detached: 0,
                },
            },
            Active::Detaching {
                cursor,
                host,
                detached,
            } => {
                let (next, n) = pipeline.detach_sources(cursor, SLOTS_PER_POLL, |k| {
                    host.is_none_or(|(af, a)| k.af == af && k.addr == a)
                });
                match next {
                    Some(cursor) => Active::Detaching {
                        cursor,
                        host,
                        detached: detached + n,
                    },
                    None => Active::Reporting(Reply::Killed(detached + n)),
                }
            }
            Active::Rules { mut next } => {
                let counters = pipeline.rule_counters();
                while next < rule_counters_len {
                    let c = counters[next];
                    if self.replies.push(Reply::Rule(next as u32, c)).is_err() {
                        break;
                    }
                    next += 1;
                }
                if next < rule_counters_len {
                    Active::Rules { next }
                } else {
                    Active::Reporting(Reply::ListDone)
                }
            }
            Active::Listing { cursor } => {
                let replies = &mut self.replies;
                match pipeline.shard().scan(cursor, SLOTS_PER_POLL, |st, tr| {
                    replies.push(Reply::State(*st, *tr)).is_ok()
                }) {
                    Some(next) => Active::Listing { cursor: next },
                    None => Active::Reporting(Reply::ListDone),
                }
            }
            Active::Killing {
                cursor,
                filter,
                removed,
            } => {
                // A label kill looks states' rules up in the rulesets
                // (reference counts only; nothing is allocated).
                let mut rulesets: [Option<std::sync::Arc<crate::rules::Ruleset>>; 9] =
                    Default::default();
                if matches!(filter, Some(StateFilter::Label(_))) {
                    for (slot, r) in rulesets.iter_mut().zip(pipeline.rulesets()) {
                        *slot = Some(r.clone());
                    }
                }
                // Kills are exported one by one; a flush is one CLR.
                let (next, n) = pipeline.kill_states(
                    cursor,
                    SLOTS_PER_POLL,
                    |st| filter.is_none_or(|f| f.matches(st, &rulesets)),
                    filter.is_some(),
                );
                removed_now = n;
                match next {
                    Some(cursor) => Active::Killing {
                        cursor,
                        filter,
                        removed: removed + n,
                    },
                    None => Active::Reporting(Reply::Killed(removed + n)),
                }
            }
            Active::Reporting(r) => {
                if self.replies.push(r).is_ok() {
                    Active::Idle
                } else {
                    Active::Reporting(r)
                }
            }
        };
        self.replies.publish();
        removed_now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{proto, tcp_flags, Direction, IfIndex, L4Info, PacketInfo, TcpInfo};
    use crate::pipeline::PipelineConfig;
    use crate::rules::{RuleEnv, Ruleset};
    use crate::state::{new_state, Shard, StateOptions};
    use crate::time::Instant;
    use std::sync::Arc;

    fn syn(i: u8) -> PacketInfo {
        PacketInfo {
            af: Af::Inet,
            proto: proto::TCP,
            src: Addr::v4([10, 0, 0, i]),
            dst: Addr::v4([192, 0, 2, 1]),
            sport: 40000,
            dport: 80,
            ip_len: 60,
            ttl: 64,
            ifindex: IfIndex(0),
            dir: Direction::In,
            l4: L4Info::Tcp(TcpInfo {
                seq: 1,
                win: 1000,
                flags: tcp_flags::SYN,
                ..Default::default()
            }),
        }
    }

    fn drive(port: &mut CommandPort, p: &mut Pipeline, client: &mut CommandClient) -> Vec<Reply> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            port.poll(p);
            while let Some((_, r)) = client.recv() {
                let done = !matches!(r, Reply::State(..));
                out.push(r);
                if done {
                    return out;
                }
            }
        }
        panic!("command never completed");
    }

    #[test]
    fn list_then_kill_by_host() {
        let mut shard = Shard::new(20_000, 0).unwrap();
        for i in 1..=200u8 {
            let id = shard.alloc_id();
            let st = new_state(
                &syn(i),
                Instant::from_secs(1),
                StateOptions::default(),
                id,
                7,
            )
            .unwrap();
            shard.insert(st).unwrap();
        }
        let env = RuleEnv {
            interfaces: &[],
            self_addrs: &[],
            names: &[],
        };
        let rules = Arc::new(Ruleset::compile("", "t", &env).unwrap());
        let mut p = Pipeline::new(PipelineConfig::default(), rules, shard);
        let (export, mut exported) = crate::ring::channel::<crate::export::StateRecord>(1024);
        let (_imports, import) = crate::ring::channel::<crate::export::ImportRecord>(16);
        p.set_sync(export, import, 1);
        // A tiny reply ring forces the listing to pause and resume.
        let (mut port, mut client) = command_channel(8);
        let t = client.send(Command::ListStates).unwrap();
        assert!(!client.is_idle() && !client.finished(t));
        let replies = drive(&mut port, &mut p, &mut client);
        assert_eq!(replies.len(), 201);
        assert_eq!(replies.last(), Some(&Reply::ListDone));
        assert!(client.is_idle() && client.finished(t));

        let filter = HostFilter {
            host: (Af::Inet, Addr::v4([10, 0, 0, 5])),
            peer: None,
        };
        client.send(Command::KillStates(filter)).unwrap();
        assert_eq!(
            drive(&mut port, &mut p, &mut client),
            vec![Reply::Killed(1)]
        );
        assert_eq!(p.shard().len(), 199);
        // The kill goes to pfsync as one deletion of that state.
        p.sync_poll(Instant::from_secs(1), 0);
        let deleted: Vec<_> = std::iter::from_fn(|| exported.pop()).collect();
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].action, crate::export::SyncAction::Delete);
        assert!(filter.matches(deleted[0].state.key()));
        client.send(Command::FlushStates).unwrap();
        assert_eq!(
            drive(&mut port, &mut p, &mut client),
            vec![Reply::Killed(199)]
        );
        assert!(p.shard().is_empty());
        // A flush is one CLR from the control thread, not 199 deletions.
        p.sync_poll(Instant::from_secs(1), 0);
        assert!(exported.pop().is_none());
    }

    #[test]
    fn replies_carry_the_ticket_of_their_command() {
        let (mut port, mut client) = command_channel(64);
        let rules = Arc::new(
            Ruleset::compile(
                "pass all\nblock all\n",
                "t",
                &RuleEnv {
                    interfaces: &[],
                    self_addrs: &[],
                    names: &[],
                },
            )
            .unwrap(),
        );
        let mut p = Pipeline::new(
            PipelineConfig::default(),
            rules,
            Shard::new(1024, 0).unwrap(),
        );
        // Two conversations queued back to back: a reader can tell which
        // replies are whose, and an owner learns its answer was read.
        let first = client.send(Command::RuleCounters).unwrap();
        let second = client.send(Command::RuleCounters).unwrap();
        assert!(second > first && !client.is_idle());
        let mut seen = Vec::new();
        for _ in 0..100 {
            port.poll(&mut p);
            while let Some((t, r)) = client.recv() {
                seen.push((t, r.is_terminator()));
            }
        }
        let of = |t| seen.iter().filter(|(x, _)| *x == t).count();
        assert_eq!(of(first), 3, "{seen:?}");
        assert_eq!(of(second), 3, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(client.finished(first) && client.finished(second) && client.is_idle());
    }

    #[test]
    fn readers_of_one_worker_take_only_their_own_replies() {
        let (mut port, mut client) = command_channel(64);
        let rules = Arc::new(
            Ruleset::compile(
                "pass all\nblock all\n",
                "t",
                &RuleEnv {
                    interfaces: &[],
                    self_addrs: &[],
                    names: &[],
                },
            )
            .unwrap(),
        );
        let mut p = Pipeline::new(
            PipelineConfig::default(),
            rules,
            Shard::new(1024, 0).unwrap(),
        );
        let first = client.send(Command::RuleCounters).unwrap();
        let second = client.send(Command::RuleCounters).unwrap();
        let third = client.send(Command::RuleCounters).unwrap();
        for _ in 0..100 {
            port.poll(&mut p);
        }
        // The second reader waits while the first's replies are ahead.
        assert_eq!(client.recv_for(second), None);
        let mut firsts = 0;
        while let Some(r) = client.recv_for(first) {
            firsts += 1;
            if r.is_terminator() {
                break;
            }
        }
        assert_eq!(firsts, 3);
        assert_eq!(client.recv_for(first), None, "nothing past its terminator");
        // The second reader gives up after one reply: the third is not held.
        assert!(client.recv_for(second).is_some());
        client.abandon(second);
        let thirds = std::iter::from_fn(|| client.recv_for(third)).count();
        assert_eq!(thirds, 3);
        assert!(client.is_idle());
        // Abandoning what is finished, or not yet sent, changes nothing.
        client.abandon(first);
        client.abandon(third + 5);
        let fourth = client.send(Command::RuleCounters).unwrap();
        for _ in 0..100 {
            port.poll(&mut p);
        }
        assert_eq!(std::iter::from_fn(|| client.recv_for(fourth)).count(), 3);
    }

    #[test]
    fn host_pair_filter_needs_both_endpoints() {
        let (key, _) = FlowKey::from_packet(
            Af::Inet,
            proto::TCP,
            Addr::v4([10, 0, 0, 1]),
            1,
            Addr::v4([10, 0, 0, 2]),
            2,
        );
        let f = |a: [u8; 4], b: Option<[u8; 4]>| HostFilter {
            host: (Af::Inet, Addr::v4(a)),
            peer: b.map(|b| (Af::Inet, Addr::v4(b))),
        };
        assert!(f([10, 0, 0, 1], None).matches(&key));
        assert!(f([10, 0, 0, 1], Some([10, 0, 0, 2])).matches(&key));
        assert!(!f([10, 0, 0, 1], Some([10, 0, 0, 3])).matches(&key));
        assert!(!f([10, 0, 0, 3], None).matches(&key));
    }
}
