//! CARP, the Common Address Redundancy Protocol, OpenBSD-compatible
//! (`spec/carp.md`). This module is the pure (sans-I/O) core:
//!
//! * [`wire`]: the 36-byte header view and `Repr`, advertisement frame
//!   builders and the receive frame parser (§2);
//! * [`auth`]: key derivation and the HMAC-SHA1 contexts (§3);
//! * [`validate`]: the receive validation pipeline and `struct carpstats`
//!   (§2.5, §5.3);
//! * [`fsm`]: the per-VHID state machine (§4);
//! * [`demote`]: interface-group demotion counters (§4.8).
//!
//! The control thread owns the I/O: it parses received frames, validates
//! them, steps the [`Vhost`]s with `now`, and executes their [`Action`]s.
//! Nothing here reads a clock, allocates per packet, or uses `unsafe`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod demote;
pub mod engine;
pub mod fsm;
pub mod stats;
pub mod validate;
pub mod wire;

pub use auth::{AuthContext, AuthInput, Key};
pub use demote::{Demotion, SendErrors};
pub use fsm::{Action, Actions, Advert, Env, Event, State, Vhost, VhostConfig};
pub use stats::{CarpStats, Counter, NUM_COUNTERS};
pub use validate::{validate, CarpDrop};

/// Syslog priority LOG_CRIT: BACKUP ↔ MASTER transitions (§5.2).
pub const LOG_CRIT: u8 = 2;
/// Syslog priority LOG_ERR: demotion changes (§5.2).
pub const LOG_ERR: u8 = 3;
/// Syslog priority LOG_WARNING: transitions from/to INIT, loops, output failures (§5.2).
pub const LOG_WARNING: u8 = 4;
/// Syslog priority LOG_NOTICE: wrong TTL, unsupported version (§5.2).
pub const LOG_NOTICE: u8 = 5;
/// Syslog priority LOG_INFO: bad interface, short packet, checksum, hash (§5.2).
pub const LOG_INFO: u8 = 6;
/// Syslog priority LOG_DEBUG: load-balancing mask updates (§5.2).
pub const LOG_DEBUG: u8 = 7;
/// Default `net.inet.carp.log` (§5.1): a message of priority p is emitted
/// iff `log >= p`.
pub const DEFAULT_LOG_LEVEL: u8 = LOG_CRIT;

#[cfg(test)]
mod tests {
    //! The pieces glued the way the control thread will: a MASTER's
    //! `SendAdvert` becomes a frame, the peer parses and validates it and
    //! steps its own state machine.
    use std::net::{IpAddr, Ipv4Addr};

    use dataplane::time::Instant;

    use super::validate::{Candidate, RxContext, RxIf};
    use super::wire::{
        parse_frame, virtual_mac, AdvertFrameV4, Repr, ADVERT_V4_FRAME_LEN, CARP_GROUP_MAC_V4,
        CARP_GROUP_V4,
    };
    use super::*;

    fn build(action: &Action, auth: &AuthContext, cookie: u64, src: Ipv4Addr) -> Option<[u8; 70]> {
        let Action::SendAdvert {
            vhid,
            advbase,
            advskew,
            demote,
        } = *action
        else {
            return None;
        };
        let md = auth.generate(&cookie.to_be_bytes());
        let frame = AdvertFrameV4 {
            src_mac: virtual_mac(vhid),
            dst_mac: CARP_GROUP_MAC_V4,
            src,
            dst: CARP_GROUP_V4,
            ip_id: 0x1234,
            carp: Repr::advertisement(vhid, advbase, advskew, demote, cookie, md),
        };
        let mut buf = [0u8; ADVERT_V4_FRAME_LEN];
        frame.emit(&mut buf).ok()?;
        Some(buf)
    }

    #[test]
    fn advert_round_trip_between_two_nodes() {
        let vip: [Ipv4Addr; 1] = [Ipv4Addr::new(192, 168, 1, 10)];
        let key = Key::from_passphrase(b"lanpasswd");
        let auth = AuthContext::new(
            &key,
            &AuthInput {
                vhid: 1,
                lladdr: None,
                v4: &vip,
                v6: &[],
            },
        );
        let (cookie_a, cookie_b) = (0x1111, 0x2222);
        let env = Env {
            preempt: true,
            demote: 0,
        };
        let mut a = Vhost::new(VhostConfig::new(1, 1, 0));
        let mut b = Vhost::new(VhostConfig::new(1, 1, 128));
        for v in [&mut a, &mut b] {
            v.step(Event::LinkUp, Instant::from_secs(0), &env);
            v.step(Event::AdminUp, Instant::from_secs(0), &env);
        }
        // fw1 times out first and advertises.
        let at = a.poll_at().unwrap();
        let actions = a.step(Event::Timer, at, &env);
        let frame = actions
            .iter()
            .find_map(|x| build(x, &auth, cookie_a, Ipv4Addr::new(192, 168, 1, 2)))
            .unwrap();

        let ctx = RxContext {
            allow: true,
            rx_if: RxIf::Carp,
            parent_simplex: true,
        };
        let mut stats = CarpStats::new();
        let parsed = parse_frame(&frame).unwrap();
        let cand = |cookie| Candidate {
            vhid: 1,
            running: true,
            peer_multicast: true,
            auth: &auth,
            cookie,
        };
        let valid = validate(&parsed, &ctx, [cand(cookie_b)], &mut stats).unwrap();
        assert_eq!(valid.advert.src, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)));
        // fw2 hears a better master and keeps waiting.
        let out = b.step(Event::Advert(valid.advert), at, &env);
        assert!(out.is_empty());
        assert_eq!(b.state(), State::Backup);
        assert_eq!(
            b.poll_at(),
            Some(at + dataplane::time::Duration::from_micros(4_500_000))
        );
        // fw1 hearing its own packet drops it as a loop.
        let own = validate(&parsed, &ctx, [cand(cookie_a)], &mut stats);
        assert_eq!(
            own.unwrap_err(),
            CarpDrop::OwnCookie {
                vhid: 1,
                simplex: true
            }
        );
        assert_eq!(stats.get(Counter::IPackets), 2);
        assert_eq!(stats.get(Counter::BadAuth), 1);
    }
}
