//! The receive validation pipeline of `spec/carp.md` §2.5 (counting into
//! the statistics of `stats`).
//!
//! [`validate`] takes a parsed [`Frame`], the receive context (sysctl
//! `allow`, the receiving interface) and the candidate VHIDs configured on
//! the receiving parent (in carp-interface order, with their prepared
//! [`AuthContext`] and cookie), and returns either the validated
//! advertisement for one VHID or the [`CarpDrop`] reason. It counts into a
//! [`CarpStats`]: `ipackets`/`ipackets6` for every frame first, then the
//! counter of the rejection, if any.
//!
//! Invariants: checks run in the spec's order, so the counter that moves is
//! the one OpenBSD would move; nothing allocates; checksum verification is
//! skipped under `cfg(fuzzing)` (see [`Packet::verify_checksum`]).

use std::net::IpAddr;

use super::auth::AuthContext;
use super::fsm::Advert;
use super::stats::{CarpStats, Counter};
use super::wire::{Frame, Packet, CARP_TTL, CARP_VERSION};
use super::{LOG_INFO, LOG_NOTICE, LOG_WARNING};

/// Why a received advertisement was dropped (§2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CarpDrop {
    /// `net.inet.carp.allow == 0` (step 1): dropped silently.
    #[error("CARP input disabled (net.inet.carp.allow=0)")]
    NotAllowed,
    /// Step 2: not on a carp interface / suitable Ethernet interface.
    #[error("packet received on non-carp interface")]
    BadIf,
    /// Step 3: TTL / hop limit not 255.
    #[error("received ttl {ttl} != 255")]
    BadTtl {
        /// The received TTL / hop limit.
        ttl: u8,
    },
    /// Step 4: fewer than 36 bytes after the IP header.
    #[error("packet too short ({len} bytes)")]
    BadLen {
        /// Bytes after the IP header.
        len: usize,
    },
    /// Step 5: header checksum.
    #[error("checksum failed")]
    BadSum,
    /// Step 6: no running VHID matches.
    #[error("no running vhid {vhid}")]
    BadVhid {
        /// The header's VHID.
        vhid: u8,
    },
    /// Step 7: version not 2.
    #[error("invalid version {version}")]
    BadVer {
        /// The header's version.
        version: u8,
    },
    /// Step 8: neither HMAC context verifies.
    #[error("incorrect hash (vhid {vhid})")]
    BadAuth {
        /// The VHID.
        vhid: u8,
    },
    /// Step 9: our own cookie came back. Counted (as `badauth`) and logged
    /// only when the parent is SIMPLEX.
    #[error("replay or network loop detected (vhid {vhid})")]
    OwnCookie {
        /// The VHID.
        vhid: u8,
        /// The parent is SIMPLEX (ordinary Ethernet).
        simplex: bool,
    },
}

impl CarpDrop {
    /// The statistic this drop increments, if any.
    pub const fn counter(&self) -> Option<Counter> {
        match self {
            CarpDrop::NotAllowed => None,
            CarpDrop::BadIf => Some(Counter::BadIf),
            CarpDrop::BadTtl { .. } => Some(Counter::BadTtl),
            CarpDrop::BadLen { .. } => Some(Counter::BadLen),
            CarpDrop::BadSum => Some(Counter::BadSum),
            CarpDrop::BadVhid { .. } => Some(Counter::BadVhid),
            CarpDrop::BadVer { .. } => Some(Counter::BadVer),
            CarpDrop::BadAuth { .. } => Some(Counter::BadAuth),
            CarpDrop::OwnCookie { simplex: true, .. } => Some(Counter::BadAuth),
            CarpDrop::OwnCookie { simplex: false, .. } => None,
        }
    }

    /// Syslog priority of the message for this drop (§5.2), if logged.
    pub const fn log_level(&self) -> Option<u8> {
        match self {
            CarpDrop::NotAllowed | CarpDrop::BadVhid { .. } => None,
            CarpDrop::BadTtl { .. } | CarpDrop::BadVer { .. } => Some(LOG_NOTICE),
            CarpDrop::BadIf
            | CarpDrop::BadLen { .. }
            | CarpDrop::BadSum
            | CarpDrop::BadAuth { .. } => Some(LOG_INFO),
            CarpDrop::OwnCookie { simplex: true, .. } => Some(LOG_WARNING),
            CarpDrop::OwnCookie { simplex: false, .. } => None,
        }
    }

    /// Whether the carp interface's input-error counter also moves
    /// (steps 7 and 8).
    pub const fn input_error(&self) -> bool {
        matches!(self, CarpDrop::BadVer { .. } | CarpDrop::BadAuth { .. })
    }
}

/// The interface a CARP datagram was received on (§2.5 step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxIf {
    /// Delivered to a carp interface (multicast copied to UP carp children).
    Carp,
    /// Received on a plain Ethernet interface.
    Ether {
        /// The Ethernet interface has carp children (unicast `carppeer`).
        has_carp_children: bool,
    },
}

/// Receive-side context of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxContext {
    /// `net.inet.carp.allow`.
    pub allow: bool,
    /// Receiving interface.
    pub rx_if: RxIf,
    /// The parent is SIMPLEX (ordinary Ethernet), for step 9.
    pub parent_simplex: bool,
}

/// A VHID configured on the receiving parent, in carp-interface order.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The VHID.
    pub vhid: u8,
    /// Its carp interface is UP+RUNNING.
    pub running: bool,
    /// Its carp interface's peer is multicast (the default 224.0.0.18).
    pub peer_multicast: bool,
    /// Its prepared HMAC contexts.
    pub auth: &'a AuthContext,
    /// Its own cookie (§3.4).
    pub cookie: u64,
}

/// An advertisement that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidAdvert {
    /// Position of the matching candidate.
    pub index: usize,
    /// Its VHID.
    pub vhid: u8,
    /// What the state machine needs (§4.5).
    pub advert: Advert,
}

/// Runs §2.5 on a parsed frame. Counts `ipackets`/`ipackets6` and the
/// rejection's counter in `stats`.
pub fn validate<'a, I>(
    frame: &Frame<'_>,
    ctx: &RxContext,
    candidates: I,
    stats: &mut CarpStats,
) -> Result<ValidAdvert, CarpDrop>
where
    I: IntoIterator<Item = Candidate<'a>>,
{
    let is_v6 = frame.is_ipv6();
    stats.inc(if is_v6 {
        Counter::IPackets6
    } else {
        Counter::IPackets
    });
    let result = run_checks(frame, ctx, candidates, is_v6);
    if let Err(drop) = &result {
        if let Some(c) = drop.counter() {
            stats.inc(c);
        }
    }
    result
}

fn run_checks<'a, I>(
    frame: &Frame<'_>,
    ctx: &RxContext,
    candidates: I,
    is_v6: bool,
) -> Result<ValidAdvert, CarpDrop>
where
    I: IntoIterator<Item = Candidate<'a>>,
{
    // Step 1.
    if !ctx.allow {
        return Err(CarpDrop::NotAllowed);
    }
    let dst_multicast = match frame.dst {
        IpAddr::V4(a) => a.is_multicast(),
        IpAddr::V6(a) => a.is_multicast(),
    };
    // Step 2: IPv6 only on a carp interface; IPv4 also on Ethernet when
    // multicast or when it has carp children.
    let if_ok = match ctx.rx_if {
        RxIf::Carp => true,
        RxIf::Ether { has_carp_children } => !is_v6 && (dst_multicast || has_carp_children),
    };
    if !if_ok {
        return Err(CarpDrop::BadIf);
    }
    // Step 3.
    if frame.ttl != CARP_TTL {
        return Err(CarpDrop::BadTtl { ttl: frame.ttl });
    }
    // Step 4.
    let packet = Packet::new_checked(frame.payload).map_err(|_| CarpDrop::BadLen {
        len: frame.payload.len(),
    })?;
    // Step 5.
    if !packet.verify_checksum() {
        return Err(CarpDrop::BadSum);
    }
    // Step 6: the first VHID equal to the header's; for IPv4 only among
    // carp interfaces whose peer kind matches the destination.
    let vhid = packet.vhid();
    let (index, cand) = candidates
        .into_iter()
        .enumerate()
        .find(|(_, c)| c.vhid == vhid && (is_v6 || c.peer_multicast == dst_multicast))
        .ok_or(CarpDrop::BadVhid { vhid })?;
    if !cand.running {
        return Err(CarpDrop::BadVhid { vhid });
    }
    // Step 7.
    if packet.version() != CARP_VERSION {
        return Err(CarpDrop::BadVer {
            version: packet.version(),
        });
    }
    // Step 8: either HMAC context (§3.3).
    let counter = packet.counter_bytes();
    if !cand.auth.verify(&counter, &packet.md()) {
        return Err(CarpDrop::BadAuth { vhid });
    }
    // Step 9: our own packet looped back.
    if packet.counter() == cand.cookie {
        return Err(CarpDrop::OwnCookie {
            vhid,
            simplex: ctx.parent_simplex,
        });
    }
    Ok(ValidAdvert {
        index,
        vhid,
        advert: Advert {
            advbase: packet.advbase(),
            advskew: packet.advskew(),
            demote: packet.demote(),
            src: frame.src,
            counter: packet.counter(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::auth::{AuthInput, Key};
    use super::super::wire::tests::{FRAME_V4, FRAME_V6};
    use super::super::wire::{parse_frame, Packet, Repr, HEADER_LEN};
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    fn auth_v1() -> AuthContext {
        AuthContext::new(
            &Key::from_passphrase(b"secret"),
            &AuthInput {
                vhid: 1,
                lladdr: None,
                v4: &["192.168.1.10".parse().unwrap()],
                v6: &[],
            },
        )
    }

    fn auth_v6() -> AuthContext {
        let v6: Vec<Ipv6Addr> = ["2001:db8:1::10", "2001:db8:1::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        AuthContext::new(
            &Key::default(),
            &AuthInput {
                vhid: 7,
                lladdr: None,
                v4: &[],
                v6: &v6,
            },
        )
    }

    fn cand(vhid: u8, auth: &AuthContext) -> Candidate<'_> {
        Candidate {
            vhid,
            running: true,
            peer_multicast: true,
            auth,
            cookie: 99,
        }
    }

    const CTX: RxContext = RxContext {
        allow: true,
        rx_if: RxIf::Carp,
        parent_simplex: true,
    };

    fn run(
        frame: &[u8],
        ctx: &RxContext,
        cands: &[Candidate<'_>],
    ) -> (Result<ValidAdvert, CarpDrop>, CarpStats) {
        let mut stats = CarpStats::new();
        let f = parse_frame(frame).unwrap();
        let r = validate(&f, ctx, cands.iter().copied(), &mut stats);
        (r, stats)
    }

    /// Rewrites the IPv4 frame's CARP header and fixes its checksum.
    fn v4_with(edit: impl FnOnce(&mut Repr)) -> [u8; 70] {
        let mut buf = FRAME_V4;
        let mut repr = Repr::parse(&Packet::new_checked(&buf[34..]).unwrap()).unwrap();
        edit(&mut repr);
        repr.emit(&mut Packet::new_unchecked(&mut buf[34..]));
        buf
    }

    #[test]
    fn counter_names_in_order() {
        let names: Vec<_> = CarpStats::new().iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 16);
        assert_eq!(names[0], "carps_ipackets");
        assert_eq!(names[8], "carps_badauth");
        assert_eq!(names[15], "carps_preempt");
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        let mut a = CarpStats::new();
        a.inc(Counter::BadSum);
        let mut b = CarpStats::new();
        b.add(Counter::BadSum, 2);
        b.merge(&a);
        assert_eq!(b.get(Counter::BadSum), 3);
        assert_eq!(b.as_array()[5], 3);
    }

    #[test]
    fn spec_frames_are_valid() {
        let a1 = auth_v1();
        let (r, s) = run(&FRAME_V4, &CTX, &[cand(1, &a1)]);
        let v = r.unwrap();
        assert_eq!((v.index, v.vhid), (0, 1));
        assert_eq!(
            v.advert,
            Advert {
                advbase: 1,
                advskew: 0,
                demote: 0,
                src: "192.168.1.2".parse().unwrap(),
                counter: 0x0123_4567_89ab_cdef
            }
        );
        assert_eq!(s.get(Counter::IPackets), 1);
        assert_eq!(s.iter().map(|(_, n)| n).sum::<u64>(), 1);

        let a6 = auth_v6();
        let (r, s) = run(&FRAME_V6, &CTX, &[cand(1, &a1), cand(7, &a6)]);
        let v = r.unwrap();
        assert_eq!((v.index, v.vhid, v.advert.advskew), (1, 7, 100));
        assert_eq!(s.get(Counter::IPackets6), 1);
    }

    #[test]
    fn each_step_rejects_with_its_counter() {
        let a1 = auth_v1();
        let ok = [cand(1, &a1)];
        // 1: allow = 0 → silent, only ipackets.
        let (r, s) = run(
            &FRAME_V4,
            &RxContext {
                allow: false,
                ..CTX
            },
            &ok,
        );
        assert_eq!(r.unwrap_err(), CarpDrop::NotAllowed);
        assert_eq!(s.iter().map(|(_, n)| n).sum::<u64>(), 1);
        // 2: IPv6 on Ethernet; IPv4 unicast on Ethernet without carp children.
        let eth = RxContext {
            rx_if: RxIf::Ether {
                has_carp_children: false,
            },
            ..CTX
        };
        let (r, s) = run(&FRAME_V6, &eth, &ok);
        assert_eq!(r.unwrap_err(), CarpDrop::BadIf);
        assert_eq!(s.get(Counter::BadIf), 1);
        let (r, _) = run(&FRAME_V4, &eth, &ok);
        assert!(r.is_ok(), "multicast IPv4 is accepted on Ethernet");
        // 3: TTL.
        let mut f = parse_frame(&FRAME_V4).unwrap();
        f.ttl = 254;
        let mut s = CarpStats::new();
        assert_eq!(
            validate(&f, &CTX, ok, &mut s).unwrap_err(),
            CarpDrop::BadTtl { ttl: 254 }
        );
        assert_eq!(s.get(Counter::BadTtl), 1);
        // TTL is checked before length.
        f.payload = &f.payload[..10];
        assert_eq!(
            validate(&f, &CTX, ok, &mut s).unwrap_err(),
            CarpDrop::BadTtl { ttl: 254 }
        );
        // 4: length.
        let mut f = parse_frame(&FRAME_V4).unwrap();
        f.payload = &f.payload[..HEADER_LEN - 1];
        assert_eq!(
            validate(&f, &CTX, ok, &mut s).unwrap_err(),
            CarpDrop::BadLen { len: 35 }
        );
        assert_eq!(s.get(Counter::BadLen), 1);
        // 5: checksum (before vhid lookup: an unknown vhid with a bad sum is badsum).
        #[cfg(not(fuzzing))]
        {
            let mut bad = FRAME_V4;
            bad[35] = 9; // vhid 9, checksum not fixed
            let (r, s) = run(&bad, &CTX, &ok);
            assert_eq!(r.unwrap_err(), CarpDrop::BadSum);
            assert_eq!(s.get(Counter::BadSum), 1);
        }
        // 6: unknown vhid, not running, peer kind mismatch.
        let other = v4_with(|r| r.vhid = 9);
        let (r, s) = run(&other, &CTX, &ok);
        assert_eq!(r.unwrap_err(), CarpDrop::BadVhid { vhid: 9 });
        assert_eq!(s.get(Counter::BadVhid), 1);
        let stopped = [Candidate {
            running: false,
            ..cand(1, &a1)
        }];
        assert_eq!(
            run(&FRAME_V4, &CTX, &stopped).0.unwrap_err(),
            CarpDrop::BadVhid { vhid: 1 }
        );
        let unicast = [Candidate {
            peer_multicast: false,
            ..cand(1, &a1)
        }];
        assert_eq!(
            run(&FRAME_V4, &CTX, &unicast).0.unwrap_err(),
            CarpDrop::BadVhid { vhid: 1 }
        );
        // 7: version (checked after the vhid lookup).
        let v3 = v4_with(|r| r.version = 3);
        let (r, s) = run(&v3, &CTX, &ok);
        assert_eq!(r.unwrap_err(), CarpDrop::BadVer { version: 3 });
        assert_eq!(s.get(Counter::BadVer), 1);
        assert!(CarpDrop::BadVer { version: 3 }.input_error());
        let v3_unknown = v4_with(|r| {
            r.version = 3;
            r.vhid = 9
        });
        assert_eq!(
            run(&v3_unknown, &CTX, &ok).0.unwrap_err(),
            CarpDrop::BadVhid { vhid: 9 }
        );
        // 8: HMAC: wrong key, or changed advskew is still authentic (not covered)
        // but a changed counter is not.
        let wrong = AuthContext::new(
            &Key::from_passphrase(b"other"),
            &AuthInput {
                vhid: 1,
                lladdr: None,
                v4: &["192.168.1.10".parse().unwrap()],
                v6: &[],
            },
        );
        let (r, s) = run(&FRAME_V4, &CTX, &[cand(1, &wrong)]);
        assert_eq!(r.unwrap_err(), CarpDrop::BadAuth { vhid: 1 });
        assert_eq!(s.get(Counter::BadAuth), 1);
        let replayed = v4_with(|r| r.counter += 1);
        assert_eq!(
            run(&replayed, &CTX, &ok).0.unwrap_err(),
            CarpDrop::BadAuth { vhid: 1 }
        );
        let skewed = v4_with(|r| r.advskew = 200);
        assert_eq!(run(&skewed, &CTX, &ok).0.unwrap().advert.advskew, 200);
        // 9: own cookie: counted as badauth only on simplex parents.
        let mine = [Candidate {
            cookie: 0x0123_4567_89ab_cdef,
            ..cand(1, &a1)
        }];
        let (r, s) = run(&FRAME_V4, &CTX, &mine);
        assert_eq!(
            r.unwrap_err(),
            CarpDrop::OwnCookie {
                vhid: 1,
                simplex: true
            }
        );
        assert_eq!(s.get(Counter::BadAuth), 1);
        let (r, s) = run(
            &FRAME_V4,
            &RxContext {
                parent_simplex: false,
                ..CTX
            },
            &mine,
        );
        assert_eq!(
            r.unwrap_err(),
            CarpDrop::OwnCookie {
                vhid: 1,
                simplex: false
            }
        );
        assert_eq!(s.get(Counter::BadAuth), 0);
    }

    #[test]
    fn first_matching_vhid_wins_and_type_authlen_unchecked() {
        let a1 = auth_v1();
        let wrong = AuthContext::new(
            &Key::from_passphrase(b"x"),
            &AuthInput {
                vhid: 1,
                lladdr: None,
                v4: &[],
                v6: &[],
            },
        );
        // Two carp interfaces with vhid 1: the first (wrong key) is used.
        let (r, _) = run(&FRAME_V4, &CTX, &[cand(1, &wrong), cand(1, &a1)]);
        assert_eq!(r.unwrap_err(), CarpDrop::BadAuth { vhid: 1 });
        // Unicast IPv4 selects the unicast-peer interface.
        let a = v4_with(|r| {
            r.type_ = 9;
            r.authlen = 0
        });
        let (r, _) = run(&a, &CTX, &[cand(1, &a1)]);
        assert!(r.is_ok(), "type and authlen are not validated");
    }

    #[test]
    fn drop_log_levels() {
        assert_eq!(CarpDrop::BadTtl { ttl: 1 }.log_level(), Some(LOG_NOTICE));
        assert_eq!(CarpDrop::BadSum.log_level(), Some(LOG_INFO));
        assert_eq!(
            CarpDrop::OwnCookie {
                vhid: 1,
                simplex: true
            }
            .log_level(),
            Some(LOG_WARNING)
        );
        assert_eq!(CarpDrop::NotAllowed.counter(), None);
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let a1 = auth_v1();
            if let Ok(f) = parse_frame(&bytes) {
                let mut s = CarpStats::new();
                let _ = validate(&f, &CTX, [cand(1, &a1)], &mut s);
                prop_assert_eq!(s.get(Counter::IPackets) + s.get(Counter::IPackets6), 1);
            }
        }
    }
}
