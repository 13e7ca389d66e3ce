//! dpf's optional pfsync authentication (`[pfsync] auth`): an HMAC-SHA-256
//! trailer after the pfsync payload, with a per-sender counter the receiver
//! never accepts twice. Not part of OpenBSD's protocol (spec §1: pfsync has
//! no authentication); off by default, and only between dpf boxes.
//!
//! ```text
//! | IPv4 (len = 20 + pfsync len + 52) | pfsync header + body (`len`) | trailer (52) |
//! trailer:
//! 0      4           8       12          20                          52
//! | "dpfA" | creatorid | epoch | counter    | HMAC-SHA-256              |
//!                                            over pfsync bytes ‖ trailer[0..20]
//! ```
//!
//! The pfsync header's `len` does not count the trailer, so a receiver
//! that does not know it (OpenBSD truncates to `len`, §1.1 step 7) reads
//! the packet as usual. `epoch` is random per process start and `counter`
//! starts at 1 and grows by one per packet: a restart never reuses an
//! (epoch, counter) pair, and nothing needs persisting. The receiver keeps
//! the highest counter seen per (creatorid, epoch), after the MAC checked,
//! and refuses anything not above it (replay), for at most
//! [`MAX_SENDERS`] pairs (the least recently advanced one is forgotten:
//! forgetting an epoch only re-opens the replay of frames older than every
//! pair kept).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;

type HmacSha256 = Hmac<Sha256>;

/// Bytes the trailer adds to every packet.
pub const TRAILER_LEN: usize = 52;
/// The trailer's first four bytes.
pub const MAGIC: [u8; 4] = *b"dpfA";
/// Shortest key `[pfsync] auth` accepts, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// (creatorid, epoch) pairs whose highest counter the receiver remembers.
pub const MAX_SENDERS: usize = 64;
/// Bytes of the trailer the MAC covers (magic, creatorid, epoch, counter).
const SIGNED_LEN: usize = 20;

/// Why a received packet failed authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No trailer (or not exactly one) after the pfsync payload.
    #[error("unauthenticated pfsync packet")]
    Missing,
    /// The MAC does not match (wrong key, or altered in transit).
    #[error("pfsync authentication failed")]
    BadMac,
    /// A counter not above the highest seen from this sender and epoch.
    #[error("replayed pfsync packet")]
    Replay,
}

/// The shared key, checked for length.
#[derive(Clone)]
pub struct Key(HmacSha256);

impl Key {
    /// `None` if `key` is shorter than [`MIN_KEY_LEN`] or longer than
    /// [`MAX_KEY_LEN`].
    pub fn new(key: &[u8]) -> Option<Key> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return None;
        }
        HmacSha256::new_from_slice(key).ok().map(Key)
    }

    fn mac(&self, pfsync: &[u8], signed: &[u8]) -> HmacSha256 {
        let mut m = self.0.clone();
        m.update(pfsync);
        m.update(signed);
        m
    }
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The sending side: this box's creatorid, its epoch and the counter.
#[derive(Debug, Clone)]
pub struct Signer {
    key: Key,
    creatorid: u32,
    epoch: u32,
    counter: u64,
}

impl Signer {
    /// Signs as `creatorid`, in `epoch` (random per process start).
    pub fn new(key: Key, creatorid: u32, epoch: u32) -> Signer {
        Signer {
            key,
            creatorid,
            epoch,
            counter: 0,
        }
    }

    /// The trailer for the pfsync payload `pfsync` (header and body, as
    /// many bytes as the header's `len`), with the next counter.
    pub fn sign(&mut self, pfsync: &[u8]) -> [u8; TRAILER_LEN] {
        self.counter += 1;
        let mut t = [0u8; TRAILER_LEN];
        t[0..4].copy_from_slice(&MAGIC);
        t[4..8].copy_from_slice(&self.creatorid.to_be_bytes());
        t[8..12].copy_from_slice(&self.epoch.to_be_bytes());
        t[12..20].copy_from_slice(&self.counter.to_be_bytes());
        let mac = self
            .key
            .mac(pfsync, &t[..SIGNED_LEN])
            .finalize()
            .into_bytes();
        t[SIGNED_LEN..].copy_from_slice(&mac);
        t
    }
}

/// The receiving side: the key and the replay window.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: Key,
    /// (creatorid, epoch) → (highest counter, when it last advanced).
    seen: HashMap<(u32, u32), (u64, u64)>,
    /// Advances so far (the recency order of `seen`).
    tick: u64,
}

impl Verifier {
    /// A verifier for `key` that has seen nothing.
    pub fn new(key: Key) -> Verifier {
        Verifier {
            key,
            seen: HashMap::new(),
            tick: 0,
        }
    }

    /// Checks `trailer` (the IP payload after the pfsync header's `len`)
    /// against `pfsync` and, when the MAC holds, the counter against the
    /// highest seen from that sender; records the new highest. Returns the
    /// sender's creatorid.
    pub fn verify(&mut self, pfsync: &[u8], trailer: &[u8]) -> Result<u32, AuthError> {
        if trailer.len() != TRAILER_LEN || trailer[0..4] != MAGIC {
            return Err(AuthError::Missing);
        }
        let (signed, tag) = trailer.split_at(SIGNED_LEN);
        self.key
            .mac(pfsync, signed)
            .verify_slice(tag)
            .map_err(|_| AuthError::BadMac)?;
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let creatorid = be32(&signed[4..8]);
        let epoch = be32(&signed[8..12]);
        let mut c = [0u8; 8];
        c.copy_from_slice(&signed[12..20]);
        let counter = u64::from_be_bytes(c);
        let key = (creatorid, epoch);
        if let Some((highest, _)) = self.seen.get(&key) {
            if counter <= *highest {
                return Err(AuthError::Replay);
            }
        } else if self.seen.len() >= MAX_SENDERS {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k)
            {
                self.seen.remove(&oldest);
            }
        }
        self.tick += 1;
        self.seen.insert(key, (counter, self.tick));
        Ok(creatorid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &[u8] = &[6, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    fn key(k: &[u8]) -> Key {
        Key::new(k).unwrap()
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Key::new(b"fifteen bytes!!").is_none());
        assert!(Key::new(b"sixteen bytes!!!").is_some());
        assert!(Key::new(&[b'x'; MAX_KEY_LEN + 1]).is_none());
    }

    #[test]
    fn the_trailer_layout_and_a_known_answer() {
        let mut s = Signer::new(key(b"0123456789abcdef"), 0x8f3e21a7, 0x01020304);
        let t = s.sign(PAYLOAD);
        assert_eq!(&t[0..4], b"dpfA");
        assert_eq!(&t[4..8], &[0x8f, 0x3e, 0x21, 0xa7]);
        assert_eq!(&t[8..12], &[1, 2, 3, 4]);
        assert_eq!(&t[12..20], &[0, 0, 0, 0, 0, 0, 0, 1]);
        // Recomputed independently over payload ‖ trailer[0..20].
        let mut m = HmacSha256::new_from_slice(b"0123456789abcdef").unwrap();
        m.update(PAYLOAD);
        m.update(&t[..20]);
        assert_eq!(&t[20..], &m.finalize().into_bytes()[..]);
    }

    #[test]
    fn a_signed_packet_verifies_once_and_replays_are_refused() {
        let mut s = Signer::new(key(b"0123456789abcdef"), 7, 99);
        let mut v = Verifier::new(key(b"0123456789abcdef"));
        let t1 = s.sign(PAYLOAD);
        let t2 = s.sign(PAYLOAD);
        assert_eq!(v.verify(PAYLOAD, &t1), Ok(7));
        assert_eq!(v.verify(PAYLOAD, &t1), Err(AuthError::Replay));
        assert_eq!(v.verify(PAYLOAD, &t2), Ok(7));
        assert_eq!(v.verify(PAYLOAD, &t1), Err(AuthError::Replay), "older");
        // A restart: new epoch, counter from 1 again.
        let mut s2 = Signer::new(key(b"0123456789abcdef"), 7, 100);
        assert_eq!(v.verify(PAYLOAD, &s2.sign(PAYLOAD)), Ok(7));
        // The old epoch's frames are still refused.
        assert_eq!(v.verify(PAYLOAD, &t2), Err(AuthError::Replay));
    }

    #[test]
    fn wrong_key_altered_payload_and_missing_trailer_fail() {
        let mut s = Signer::new(key(b"0123456789abcdef"), 7, 1);
        let mut v = Verifier::new(key(b"another key, 16+"));
        let t = s.sign(PAYLOAD);
        assert_eq!(v.verify(PAYLOAD, &t), Err(AuthError::BadMac));
        let mut v = Verifier::new(key(b"0123456789abcdef"));
        let mut altered = PAYLOAD.to_vec();
        altered[4] = 1;
        assert_eq!(v.verify(&altered, &t), Err(AuthError::BadMac));
        let mut forged = t;
        forged[19] = 9; // a higher counter without the key
        assert_eq!(v.verify(PAYLOAD, &forged), Err(AuthError::BadMac));
        assert_eq!(v.verify(PAYLOAD, &[]), Err(AuthError::Missing));
        assert_eq!(v.verify(PAYLOAD, &t[..51]), Err(AuthError::Missing));
        // A failed MAC does not advance the window.
        assert_eq!(v.verify(PAYLOAD, &t), Ok(7));
    }

    #[test]
    fn the_window_is_bounded() {
        let k = b"0123456789abcdef";
        let mut v = Verifier::new(key(k));
        for epoch in 0..(MAX_SENDERS as u32 + 10) {
            let mut s = Signer::new(key(k), 7, epoch);
            assert_eq!(v.verify(PAYLOAD, &s.sign(PAYLOAD)), Ok(7));
        }
        assert_eq!(v.seen.len(), MAX_SENDERS);
    }
}
