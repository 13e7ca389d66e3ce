//! pfsync wire formats (`spec/pfsync.md` §2, §3): typed zero-copy views over
//! byte buffers and the `Repr`s that parse and emit them.
//!
//! ```text
//! | IPv4 header (20 bytes, proto 240)          |   frame.rs
//! +============================================+
//! | pfsync header (20 bytes)                   |   Header      §2.1
//! +--------------------------------------------+
//! | subheader (4 bytes) | count × message      |   Subheader   §2.2, messages §3
//! +--------------------------------------------+
//! | subheader (4 bytes) | count × message      |   ... until the header `len` is consumed
//! +============================================+
//! ```
//!
//! Every view follows one pattern: `new_unchecked` wraps bytes, `new_checked`
//! (or `check_len`) verifies the buffer is long enough, after which no getter
//! or setter panics. Getters live on `T: AsRef<[u8]>`, setters on
//! `T: AsMut<[u8]>`. A `Repr` is the parsed, owned form: `parse` reads a
//! checked view, `emit` writes every byte of `buffer_len()` bytes (padding as
//! zero), so `parse(emit(x)) == x` and `emit(parse(b)) == b` up to padding.
//!
//! Byte order: every multi-byte integer is big-endian (network order) on the
//! wire, exactly as the spec's tables say; the `Repr`s hold plain host
//! integers. `creatorid` is opaque (§4): it is read big-endian into a `u32`
//! so it compares bytewise and prints as the spec prints it. Ports are read
//! big-endian too (they are network order in pf). There are no host-order
//! fields in protocol version 6.
//!
//! Submodules: [`msg`] (CLR, INS_ACK/UPD_REQ/DEL_C, UPD_C, BUS, TDB),
//! [`state`] (scrub, peer, key, the 264-byte `pfsync_state`), [`walk`] (the
//! §2.3 receiver walk and the [`Message`] enum) and [`frame`] (Ethernet and
//! IPv4 encapsulation, the §1.1 receive checks).

pub mod frame;
pub mod msg;
pub mod state;
pub mod walk;

pub use frame::{LinkParams, RxContext, RxDrop, RxPacket};
pub use msg::{BusRepr, BusStatus, ClrRepr, StateId, TdbRepr, UpdCRepr};
pub use state::{KeyRepr, PeerRepr, ScrubRepr, StateRepr};
pub use walk::{Message, Section, WalkError, Walker};

/// Builds a NUL-padded interface name; longer names are truncated to 15
/// bytes so a terminating NUL always remains (as `strlcpy` does).
pub fn ifname_from_str(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// pfsync protocol version spoken and accepted (§2.1).
pub const PFSYNC_VERSION: u8 = 6;
/// IP protocol number of pfsync (§1).
pub const IPPROTO_PFSYNC: u8 = 240;
/// TTL of every pfsync packet; anything else is dropped on receive (§1).
pub const PFSYNC_TTL: u8 = 255;
/// Default sync peer: the pfsync multicast group 224.0.0.240 (§1).
pub const PFSYNC_GROUP: [u8; 4] = [224, 0, 0, 240];
/// Default pfsync MTU: bounds the IP datagram (§1).
pub const DEFAULT_MTU: usize = 1500;
/// IPv4 header plus pfsync header: the smallest pfsync datagram and the
/// starting length of every packet under construction (§1.2).
pub const PFSYNC_MINPKT: usize = 40;
/// First invalid action code (§2.4).
pub const ACTION_MAX: u8 = 16;

/// Errors of the wire views and `Repr`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the structure.
    #[error("buffer too short")]
    Truncated,
    /// The pfsync header carries a version other than 6.
    #[error("pfsync version {0} is not 6")]
    BadVersion(u8),
    /// A length field is inconsistent with the buffer.
    #[error("inconsistent length field")]
    BadLength,
    /// A message does not fit the section or packet it is emitted into.
    #[error("message does not fit")]
    NoSpace,
}

/// Result of wire operations.
pub type Result<T> = core::result::Result<T, Error>;

/// Message type codes of the subheader `action` byte (§2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Action {
    /// Clear states by creator (and interface).
    Clr = 0,
    /// Old insert; skipped.
    OIns = 1,
    /// Insert acknowledgement.
    InsAck = 2,
    /// Old update; skipped.
    OUpd = 3,
    /// Compressed update.
    UpdC = 4,
    /// Update request (id 0 / creatorid 0 = bulk request).
    UpdReq = 5,
    /// Delete with a full state (accepted, never sent).
    Del = 6,
    /// Compressed delete.
    DelC = 7,
    /// Insert fragment (never implemented); skipped.
    InsF = 8,
    /// Delete fragments (never implemented); skipped.
    DelF = 9,
    /// Bulk update status.
    Bus = 10,
    /// Old TDB update; skipped.
    OTdb = 11,
    /// End of frame (deprecated); skipped.
    Eof = 12,
    /// Insert with a full state.
    Ins = 13,
    /// Update with a full state.
    Upd = 14,
    /// IPsec SA counters.
    Tdb = 15,
}

impl Action {
    /// Every action, in code order.
    pub const ALL: [Action; 16] = [
        Action::Clr,
        Action::OIns,
        Action::InsAck,
        Action::OUpd,
        Action::UpdC,
        Action::UpdReq,
        Action::Del,
        Action::DelC,
        Action::InsF,
        Action::DelF,
        Action::Bus,
        Action::OTdb,
        Action::Eof,
        Action::Ins,
        Action::Upd,
        Action::Tdb,
    ];

    /// The action with code `code`, if it is below [`ACTION_MAX`].
    pub fn from_u8(code: u8) -> Option<Action> {
        Action::ALL.get(usize::from(code)).copied()
    }

    /// The name OpenBSD's tools print (§2.4).
    pub const fn name(self) -> &'static str {
        match self {
            Action::Clr => "CLR ST",
            Action::OIns => "INS ST OLD",
            Action::InsAck => "INS ST ACK",
            Action::OUpd => "UPD ST OLD",
            Action::UpdC => "UPD ST COMP",
            Action::UpdReq => "UPD ST REQ",
            Action::Del => "DEL ST",
            Action::DelC => "DEL ST COMP",
            Action::InsF => "INS FR",
            Action::DelF => "DEL FR",
            Action::Bus => "BULK UPD STAT",
            Action::OTdb => "UPD TDB OLD",
            Action::Eof => "EOF",
            Action::Ins => "INS ST",
            Action::Upd => "UPD ST",
            Action::Tdb => "UPD TDB",
        }
    }

    /// Size in bytes of one message of this action as this receiver knows
    /// it (§2.4); 0 for the actions without a layout.
    pub const fn message_len(self) -> usize {
        match self {
            Action::Clr => msg::CLR_LEN,
            Action::InsAck | Action::UpdReq | Action::DelC => msg::STATE_ID_LEN,
            Action::UpdC => msg::UPD_C_LEN,
            Action::Del | Action::Ins | Action::Upd => state::STATE_LEN,
            Action::Bus => msg::BUS_LEN,
            Action::Tdb => msg::TDB_LEN,
            Action::OIns
            | Action::OUpd
            | Action::InsF
            | Action::DelF
            | Action::OTdb
            | Action::Eof => 0,
        }
    }

    /// Whether a receiver processes this action (§2.3: 1, 3, 8, 9, 11 and 12
    /// are known but skipped).
    pub const fn has_handler(self) -> bool {
        !matches!(
            self,
            Action::OIns | Action::OUpd | Action::InsF | Action::DelF | Action::OTdb | Action::Eof
        )
    }
}

// ---------------------------------------------------------------------------
// Byte helpers. Callers index only after `check_len`, so the slices exist;
// the helpers still never panic (missing bytes read as zero, writes to
// missing bytes are dropped) so a logic slip cannot crash the control thread.

#[inline]
pub(crate) fn get<const N: usize>(data: &[u8], start: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = data.get(start..start + N) {
        out.copy_from_slice(src);
    }
    out
}

#[inline]
pub(crate) fn put(data: &mut [u8], start: usize, bytes: &[u8]) {
    if let Some(dst) = data.get_mut(start..start + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

#[inline]
pub(crate) fn be16(data: &[u8], start: usize) -> u16 {
    u16::from_be_bytes(get(data, start))
}

#[inline]
pub(crate) fn be32(data: &[u8], start: usize) -> u32 {
    u32::from_be_bytes(get(data, start))
}

#[inline]
pub(crate) fn be64(data: &[u8], start: usize) -> u64 {
    u64::from_be_bytes(get(data, start))
}

#[inline]
pub(crate) fn byte(data: &[u8], at: usize) -> u8 {
    data.get(at).copied().unwrap_or(0)
}

#[inline]
pub(crate) fn set_byte(data: &mut [u8], at: usize, value: u8) {
    if let Some(b) = data.get_mut(at) {
        *b = value;
    }
}

/// Declares a view type: the struct, `new_unchecked`, `new_checked`,
/// `check_len`, `into_inner` and the raw byte accessors.
macro_rules! view {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Size of the structure in bytes.
            pub const LEN: usize = $len;

            /// Wraps `buffer` without checking its length.
            pub const fn new_unchecked(buffer: T) -> Self {
                Self { buffer }
            }

            /// Wraps `buffer` after checking it is long enough.
            pub fn new_checked(buffer: T) -> $crate::pfsync::wire::Result<Self> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// Checks the buffer holds the whole structure; after this no
            /// accessor panics.
            pub fn check_len(&self) -> $crate::pfsync::wire::Result<()> {
                if self.buffer.as_ref().len() < Self::LEN {
                    Err($crate::pfsync::wire::Error::Truncated)
                } else {
                    Ok(())
                }
            }

            /// Returns the underlying buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}
pub(crate) use view;

// ---------------------------------------------------------------------------
// §2.1 pfsync header.

/// Byte ranges of the pfsync header (§2.1).
pub mod header_field {
    use core::ops::Range;
    /// `version` (6).
    pub const VERSION: usize = 0;
    /// `_pad`.
    pub const PAD: usize = 1;
    /// `len`: header + subheaders + messages, BE.
    pub const LEN: Range<usize> = 2..4;
    /// `pfcksum`: sent as zeros, ignored.
    pub const PFCKSUM: Range<usize> = 4..20;
}

/// Size of the pfsync header.
pub const HEADER_LEN: usize = 20;

view!(
    /// View of the 20-byte pfsync header (§2.1).
    Header,
    HEADER_LEN
);

impl<T: AsRef<[u8]>> Header<T> {
    /// `version`.
    pub fn version(&self) -> u8 {
        byte(self.buffer.as_ref(), header_field::VERSION)
    }
    /// `len`: bytes of header, subheaders and messages.
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), header_field::LEN.start)
    }
    /// Whether `len` is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `pfcksum` (ignored by receivers).
    pub fn pfcksum(&self) -> [u8; 16] {
        get(self.buffer.as_ref(), header_field::PFCKSUM.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets `version`.
    pub fn set_version(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), header_field::VERSION, value);
    }
    /// Sets `len`.
    pub fn set_len(&mut self, value: u16) {
        put(
            self.buffer.as_mut(),
            header_field::LEN.start,
            &value.to_be_bytes(),
        );
    }
    /// Zeroes the padding byte and `pfcksum`, as current senders do.
    pub fn clear_reserved(&mut self) {
        set_byte(self.buffer.as_mut(), header_field::PAD, 0);
        put(
            self.buffer.as_mut(),
            header_field::PFCKSUM.start,
            &[0u8; 16],
        );
    }
}

/// Parsed pfsync header: only `len` carries information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    /// Bytes of header, subheaders and messages.
    pub len: u16,
}

impl HeaderRepr {
    /// Parses a checked header; the version must be 6 (§1.1 step 6).
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<HeaderRepr> {
        header.check_len()?;
        if header.version() != PFSYNC_VERSION {
            return Err(Error::BadVersion(header.version()));
        }
        Ok(HeaderRepr { len: header.len() })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes version 6, `len` and zero checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_version(PFSYNC_VERSION);
        header.clear_reserved();
        header.set_len(self.len);
    }
}

// ---------------------------------------------------------------------------
// §2.2 subheader.

/// Byte ranges of the subheader (§2.2).
pub mod subheader_field {
    use core::ops::Range;
    /// `action`.
    pub const ACTION: usize = 0;
    /// `len`: size of one message in 32-bit words.
    pub const LEN: usize = 1;
    /// `count`: number of messages, BE.
    pub const COUNT: Range<usize> = 2..4;
}

/// Size of a subheader.
pub const SUBHEADER_LEN: usize = 4;

view!(
    /// View of a 4-byte subheader (§2.2).
    Subheader,
    SUBHEADER_LEN
);

impl<T: AsRef<[u8]>> Subheader<T> {
    /// Raw `action` code (may be unknown).
    pub fn action(&self) -> u8 {
        byte(self.buffer.as_ref(), subheader_field::ACTION)
    }
    /// `len`: one message's size in 32-bit words.
    pub fn len_words(&self) -> u8 {
        byte(self.buffer.as_ref(), subheader_field::LEN)
    }
    /// One message's size in bytes (`len × 4`).
    pub fn message_len(&self) -> usize {
        usize::from(self.len_words()) * 4
    }
    /// `count`.
    pub fn count(&self) -> u16 {
        be16(self.buffer.as_ref(), subheader_field::COUNT.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Subheader<T> {
    /// Sets `action`.
    pub fn set_action(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), subheader_field::ACTION, value);
    }
    /// Sets `len` (words).
    pub fn set_len_words(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), subheader_field::LEN, value);
    }
    /// Sets `count`.
    pub fn set_count(&mut self, value: u16) {
        put(
            self.buffer.as_mut(),
            subheader_field::COUNT.start,
            &value.to_be_bytes(),
        );
    }
}

/// Parsed subheader, raw so unknown actions survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubheaderRepr {
    /// Action code.
    pub action: u8,
    /// Message size in 32-bit words.
    pub len_words: u8,
    /// Number of messages.
    pub count: u16,
}

impl SubheaderRepr {
    /// The subheader a sender writes for `count` messages of `action`.
    pub const fn for_action(action: Action, count: u16) -> SubheaderRepr {
        SubheaderRepr {
            action: action as u8,
            len_words: (action.message_len() / 4) as u8,
            count,
        }
    }
    /// Parses a subheader.
    pub fn parse<T: AsRef<[u8]>>(sub: &Subheader<T>) -> Result<SubheaderRepr> {
        sub.check_len()?;
        Ok(SubheaderRepr {
            action: sub.action(),
            len_words: sub.len_words(),
            count: sub.count(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        SUBHEADER_LEN
    }
    /// Writes the subheader.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, sub: &mut Subheader<T>) {
        sub.set_action(self.action);
        sub.set_len_words(self.len_words);
        sub.set_count(self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_table_matches_spec() {
        let sizes: Vec<(u8, usize, bool)> = Action::ALL
            .iter()
            .map(|a| (*a as u8, a.message_len(), a.has_handler()))
            .collect();
        assert_eq!(
            sizes,
            vec![
                (0, 20, true),
                (1, 0, false),
                (2, 12, true),
                (3, 0, false),
                (4, 84, true),
                (5, 12, true),
                (6, 264, true),
                (7, 12, true),
                (8, 0, false),
                (9, 0, false),
                (10, 12, true),
                (11, 0, false),
                (12, 0, false),
                (13, 264, true),
                (14, 264, true),
                (15, 52, true),
            ]
        );
        assert_eq!(Action::from_u8(16), None);
        assert_eq!(Action::from_u8(13), Some(Action::Ins));
        assert_eq!(Action::UpdC.name(), "UPD ST COMP");
        assert_eq!(SubheaderRepr::for_action(Action::Ins, 1).len_words, 66);
    }

    #[test]
    fn header_round_trip_and_version() {
        let bytes = [
            6u8, 0, 0x01, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let h = Header::new_checked(&bytes[..]).unwrap();
        let repr = HeaderRepr::parse(&h).unwrap();
        assert_eq!(repr.len, 288);
        let mut out = [0xffu8; 20];
        repr.emit(&mut Header::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
        let mut v5 = bytes;
        v5[0] = 5;
        assert_eq!(
            HeaderRepr::parse(&Header::new_unchecked(&v5[..])),
            Err(Error::BadVersion(5))
        );
        assert_eq!(
            Header::new_checked(&bytes[..19]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn subheader_round_trip() {
        let bytes = [0x0du8, 0x42, 0x00, 0x01];
        let s = SubheaderRepr::parse(&Subheader::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(s, SubheaderRepr::for_action(Action::Ins, 1));
        let mut out = [0u8; 4];
        s.emit(&mut Subheader::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }
}
