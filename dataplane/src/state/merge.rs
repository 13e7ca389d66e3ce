//! Merging a pfsync update (UPD / UPD_C) into an existing state, with
//! pf's stale detection (spec/pfsync.md §5.3.1): a peer record never moves
//! backwards, so an update older than what this node has seen is refused
//! side by side, and the caller answers with its own newer state.

use super::entry::{state_flags, tcps, Peer, State};
use super::track::seq_gt;
use crate::flow::proto;
use crate::time::Instant;
use crate::timeouts::TimeoutClass;

/// The result of [`merge_peer_update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Both sides were taken from the update.
    Applied,
    /// At least one side of ours is newer and was kept (pfsync's `stale`
    /// counter): the caller queues an update with our state, which pfsync
    /// flushes at once because the state was just touched by pfsync
    /// (spec/pfsync.md §5.2 "fast path after peer input").
    Stale {
        /// How many sides (1 or 2) were kept.
        stale_sides: u8,
    },
}

/// TCP src side: stale when ours is further along, except that a synproxy
/// state (PROXY_SRC/PROXY_DST) may be replaced by a real TCP state; or
/// when the states are equal and our window is ahead.
fn tcp_src_stale(local: &Peer, recv: &Peer) -> bool {
    let (l, r) = (local.state, recv.state);
    (l > r && (l < tcps::PROXY_SRC || r >= tcps::PROXY_SRC))
        || (l == r && seq_gt(local.seqlo, recv.seqlo))
}

/// TCP dst side: stale when ours is further along, or equal and ahead.
fn tcp_dst_stale(local: &Peer, recv: &Peer) -> bool {
    local.state > recv.state || (local.state == recv.state && seq_gt(local.seqlo, recv.seqlo))
}

/// Merges the received `src` / `dst` peers and `timeout` of a pfsync update
/// into `state` (spec/pfsync.md §5.3.1). Each side that is not stale is
/// copied whole. Unless both sides were stale, the state's activity time is
/// set to `now` and it adopts `timeout`. The caller validated the message
/// (`timeout < 20`, peer states `<= 12`, spec §5.3) and maps the PFTM index
/// to a [`TimeoutClass`].
pub fn merge_peer_update(
    state: &mut State,
    src: &Peer,
    dst: &Peer,
    timeout: TimeoutClass,
    now: Instant,
) -> MergeOutcome {
    let (src_stale, dst_stale) = if state.key().proto == proto::TCP {
        (
            tcp_src_stale(&state.src, src),
            tcp_dst_stale(&state.dst, dst),
        )
    } else {
        (state.src.state > src.state, state.dst.state > dst.state)
    };
    if !src_stale {
        state.src = *src;
        state.state_flags |= state_flags::SYNCED_SRC;
    }
    if !dst_stale {
        state.dst = *dst;
        state.state_flags |= state_flags::SYNCED_DST;
    }
    let stale_sides = src_stale as u8 + dst_stale as u8;
    if stale_sides < 2 {
        state.touch(now);
        state.timeout = timeout;
    }
    if stale_sides == 0 {
        MergeOutcome::Applied
    } else {
        MergeOutcome::Stale { stale_sides }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Addr, Af, FlowKey};
    use crate::state::entry::udps;

    fn tcp_state(now: Instant) -> State {
        let (k, sw) = FlowKey::from_packet(
            Af::Inet,
            proto::TCP,
            Addr::v4([10, 0, 0, 1]),
            1234,
            Addr::v4([10, 0, 0, 2]),
            80,
        );
        let mut s = State::new(k, sw, 5, 9, now);
        s.src = Peer {
            seqlo: 1000,
            seqhi: 70000,
            state: tcps::ESTABLISHED,
            max_win: 65535,
            ..Peer::default()
        };
        s.dst = Peer {
            seqlo: 5000,
            seqhi: 60000,
            state: tcps::ESTABLISHED,
            max_win: 65535,
            ..Peer::default()
        };
        s.timeout = TimeoutClass::TcpEstablished;
        s
    }

    #[test]
    fn newer_update_is_applied_and_refreshes() {
        let mut s = tcp_state(Instant::from_secs(10));
        let mut src = s.src;
        src.seqlo = 2000;
        let mut dst = s.dst;
        dst.state = tcps::CLOSING;
        let now = Instant::from_secs(50);
        let r = merge_peer_update(&mut s, &src, &dst, TimeoutClass::TcpClosing, now);
        assert_eq!(r, MergeOutcome::Applied);
        assert_eq!({ s.src.seqlo }, 2000);
        assert_eq!(s.dst.state, tcps::CLOSING);
        assert_eq!(s.timeout, TimeoutClass::TcpClosing);
        assert_eq!(s.last_seen_s(), 50);
    }

    #[test]
    fn older_sequence_on_one_side_is_stale_but_other_side_applies() {
        let mut s = tcp_state(Instant::from_secs(10));
        let mut src = s.src;
        src.seqlo = 999; // behind ours
        let mut dst = s.dst;
        dst.seqlo = 6000; // ahead
        let r = merge_peer_update(
            &mut s,
            &src,
            &dst,
            TimeoutClass::TcpEstablished,
            Instant::from_secs(20),
        );
        assert_eq!(r, MergeOutcome::Stale { stale_sides: 1 });
        assert_eq!({ s.src.seqlo }, 1000, "our newer src kept");
        assert_eq!({ s.dst.seqlo }, 6000);
        assert_eq!(s.last_seen_s(), 20, "one side accepted: refreshed");
    }

    #[test]
    fn both_sides_stale_keeps_everything() {
        let mut s = tcp_state(Instant::from_secs(10));
        let mut src = s.src;
        src.state = tcps::SYN_SENT;
        let mut dst = s.dst;
        dst.state = tcps::SYN_SENT;
        let before = s;
        let r = merge_peer_update(
            &mut s,
            &src,
            &dst,
            TimeoutClass::TcpOpening,
            Instant::from_secs(20),
        );
        assert_eq!(r, MergeOutcome::Stale { stale_sides: 2 });
        assert_eq!(s, before);
    }

    #[test]
    fn sequence_comparison_wraps() {
        let mut s = tcp_state(Instant::from_secs(10));
        s.src.seqlo = 0xffff_fff0;
        let mut src = s.src;
        src.seqlo = 0x10; // after the wrap: newer
        let dst = s.dst;
        let r = merge_peer_update(
            &mut s,
            &src,
            &dst,
            TimeoutClass::TcpEstablished,
            Instant::from_secs(11),
        );
        assert_eq!(r, MergeOutcome::Applied);
        assert_eq!({ s.src.seqlo }, 0x10);
    }

    #[test]
    fn synproxy_state_may_be_replaced_by_a_real_one() {
        let mut s = tcp_state(Instant::from_secs(10));
        s.src.state = tcps::PROXY_DST;
        let mut src = s.src;
        src.state = tcps::ESTABLISHED;
        let dst = s.dst;
        let r = merge_peer_update(
            &mut s,
            &src,
            &dst,
            TimeoutClass::TcpEstablished,
            Instant::from_secs(11),
        );
        assert_eq!(r, MergeOutcome::Applied);
        assert_eq!(s.src.state, tcps::ESTABLISHED);
    }

    #[test]
    fn udp_levels_never_go_back() {
        let (k, sw) = FlowKey::from_packet(
            Af::Inet,
            proto::UDP,
            Addr::v4([10, 0, 0, 1]),
            5353,
            Addr::v4([10, 0, 0, 2]),
            53,
        );
        let mut s = State::new(k, sw, 1, 2, Instant::from_secs(1));
        s.src.state = udps::MULTIPLE;
        s.dst.state = udps::SINGLE;
        let src = Peer {
            state: udps::SINGLE,
            ..Peer::default()
        };
        let dst = Peer {
            state: udps::MULTIPLE,
            ..Peer::default()
        };
        let r = merge_peer_update(
            &mut s,
            &src,
            &dst,
            TimeoutClass::UdpMultiple,
            Instant::from_secs(2),
        );
        assert_eq!(r, MergeOutcome::Stale { stale_sides: 1 });
        assert_eq!((s.src.state, s.dst.state), (udps::MULTIPLE, udps::MULTIPLE));
        assert_eq!(s.timeout, TimeoutClass::UdpMultiple);
    }
}
