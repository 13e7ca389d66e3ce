//! The §5.3 validity checks a received state message must pass before
//! [`crate::pfsync::engine`] hands it to a worker (`spec/pfsync.md` §5.3, §5.4).
//! Merging (§5.3.1) runs on the worker that owns the state
//! (`dataplane::state::merge_peer_update`); this module only decides
//! whether a message's field values are acceptable at all.

use super::wire::state::{AF_INET, AF_INET6, PEER_STATE_MAX, PFTM_MAX};
use super::wire::{PeerRepr, StateRepr};

/// §5.3 validity check shared by INS, UPD and UPD_C: `timeout < 20` and
/// both peer states ≤ 12 (failure: `badval`).
pub fn valid_update(timeout: u8, src: &PeerRepr, dst: &PeerRepr) -> bool {
    timeout < PFTM_MAX && src.state <= PEER_STATE_MAX && dst.state <= PEER_STATE_MAX
}

fn valid_af(af: u8) -> bool {
    af == AF_INET || af == AF_INET6
}

/// §5.3 validity check of INS (and of an UPD imported as a new state):
/// [`valid_update`] plus direction ≤ 2, the state's family, and each
/// non-zero key family (failure: `badval`).
pub fn valid_insert(s: &StateRepr) -> bool {
    valid_update(s.timeout, &s.src, &s.dst)
        && s.direction <= 2
        && valid_af(s.af)
        && s.key.iter().all(|k| k.af == 0 || valid_af(k.af))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> StateRepr {
        let mut s = StateRepr {
            af: AF_INET,
            direction: 1,
            timeout: 2,
            ..StateRepr::default()
        };
        s.src.state = 4;
        s.dst.state = 4;
        s
    }

    #[test]
    fn field_values_outside_pfs_ranges_are_invalid() {
        assert!(valid_insert(&state()));
        let mut s = state();
        s.timeout = PFTM_MAX;
        assert!(!valid_insert(&s));
        let mut s = state();
        s.src.state = PEER_STATE_MAX + 1;
        assert!(!valid_insert(&s));
        let mut s = state();
        s.direction = 3;
        assert!(!valid_insert(&s));
        let mut s = state();
        s.af = 0;
        assert!(!valid_insert(&s));
        let mut s = state();
        s.key[1].af = 7;
        assert!(!valid_insert(&s));
        let mut s = state();
        s.key[1].af = AF_INET6;
        assert!(valid_insert(&s));
    }
}
