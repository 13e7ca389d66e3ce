//! The small pfsync messages (`spec/pfsync.md` §3.1–§3.5): CLR, the 12-byte
//! state reference shared by INS_ACK / UPD_REQ / DEL_C, UPD_C, BUS and TDB.
//!
//! ```text
//! CLR (20)      | ifname[16] | creatorid[4] |
//! STATE_ID (12) | id[8] BE | creatorid[4] |          INS_ACK, UPD_REQ, DEL_C
//! UPD_C (84)    | id[8] | src peer[32] | dst peer[32] | creatorid[4] | expire[4] | timeout | state_flags | pad[2] |
//! BUS (12)      | creatorid[4] | endtime[4] | status | pad[3] |
//! TDB (52)      | spi[4] | dst sockaddr[28] | rpl[8] | cur_bytes[8] | sproto | updates | rdomain[2] |
//! ```
//!
//! All integers big-endian; padding is written as zero and ignored on parse.

use super::state::{Peer, PeerRepr, PEER_LEN};
use super::{be16, be32, be64, byte, get, put, set_byte, view, Result};

/// Size of a CLR message.
pub const CLR_LEN: usize = 20;
/// Size of an INS_ACK, UPD_REQ or DEL_C message.
pub const STATE_ID_LEN: usize = 12;
/// Size of an UPD_C message.
pub const UPD_C_LEN: usize = 84;
/// Size of a BUS message.
pub const BUS_LEN: usize = 12;
/// Size of a TDB message.
pub const TDB_LEN: usize = 52;

// ---------------------------------------------------------------------------
// §3.1 CLR

/// Byte ranges of CLR (§3.1).
pub mod clr_field {
    use core::ops::Range;
    /// Interface name, NUL padded; empty = all interfaces.
    pub const IFNAME: Range<usize> = 0..16;
    /// Creator id (opaque).
    pub const CREATORID: Range<usize> = 16..20;
}

view!(
    /// View of a CLR message (§3.1).
    Clr,
    CLR_LEN
);

impl<T: AsRef<[u8]>> Clr<T> {
    /// `ifname`, NUL padded.
    pub fn ifname(&self) -> [u8; 16] {
        get(self.buffer.as_ref(), clr_field::IFNAME.start)
    }
    /// `creatorid`.
    pub fn creatorid(&self) -> u32 {
        be32(self.buffer.as_ref(), clr_field::CREATORID.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Clr<T> {
    /// Sets `ifname`.
    pub fn set_ifname(&mut self, value: &[u8; 16]) {
        put(self.buffer.as_mut(), clr_field::IFNAME.start, value);
    }
    /// Sets `creatorid`.
    pub fn set_creatorid(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            clr_field::CREATORID.start,
            &value.to_be_bytes(),
        );
    }
}

/// A CLR message: remove every state of `creatorid` (on `ifname`, if set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClrRepr {
    /// Interface name, NUL padded; all zero = every interface.
    pub ifname: [u8; 16],
    /// Creator whose states are removed.
    pub creatorid: u32,
}

impl ClrRepr {
    /// Parses a CLR message.
    pub fn parse<T: AsRef<[u8]>>(v: &Clr<T>) -> Result<ClrRepr> {
        v.check_len()?;
        Ok(ClrRepr {
            ifname: v.ifname(),
            creatorid: v.creatorid(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        CLR_LEN
    }
    /// Writes the message.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Clr<T>) {
        v.set_ifname(&self.ifname);
        v.set_creatorid(self.creatorid);
    }
    /// The interface name up to the first NUL; empty means all interfaces.
    pub fn ifname_bytes(&self) -> &[u8] {
        ifname_trimmed(&self.ifname)
    }
}

/// A NUL-padded interface name up to its first NUL.
pub fn ifname_trimmed(name: &[u8; 16]) -> &[u8] {
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    &name[..end]
}

pub use super::ifname_from_str;

// ---------------------------------------------------------------------------
// §3.2 INS_ACK, UPD_REQ, DEL_C

/// Byte ranges of the 12-byte state reference (§3.2).
pub mod state_id_field {
    use core::ops::Range;
    /// State id, BE 64-bit.
    pub const ID: Range<usize> = 0..8;
    /// Creator id.
    pub const CREATORID: Range<usize> = 8..12;
}

view!(
    /// View of an INS_ACK, UPD_REQ or DEL_C message (§3.2).
    StateIdMsg,
    STATE_ID_LEN
);

impl<T: AsRef<[u8]>> StateIdMsg<T> {
    /// `id`.
    pub fn id(&self) -> u64 {
        be64(self.buffer.as_ref(), state_id_field::ID.start)
    }
    /// `creatorid`.
    pub fn creatorid(&self) -> u32 {
        be32(self.buffer.as_ref(), state_id_field::CREATORID.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> StateIdMsg<T> {
    /// Sets `id`.
    pub fn set_id(&mut self, value: u64) {
        put(
            self.buffer.as_mut(),
            state_id_field::ID.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `creatorid`.
    pub fn set_creatorid(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            state_id_field::CREATORID.start,
            &value.to_be_bytes(),
        );
    }
}

/// The identity of a synchronised state, `(id, creatorid)` (§4), and the
/// `Repr` of the INS_ACK, UPD_REQ and DEL_C messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StateId {
    /// 64-bit state id.
    pub id: u64,
    /// Creator's hostid (opaque, compared bytewise).
    pub creatorid: u32,
}

impl super::state::StateRepr {
    /// The state's identity (here, so that the state codec does not
    /// depend on the message codecs).
    pub const fn state_id(&self) -> StateId {
        StateId {
            id: self.id,
            creatorid: self.creatorid,
        }
    }
}

impl StateId {
    /// UPD_REQ with id 0 and creatorid 0: "send me all states" (§3.2).
    pub const BULK_REQUEST: StateId = StateId {
        id: 0,
        creatorid: 0,
    };

    /// Whether this is the bulk request.
    pub const fn is_bulk_request(&self) -> bool {
        self.id == 0 && self.creatorid == 0
    }
    /// Parses the message.
    pub fn parse<T: AsRef<[u8]>>(v: &StateIdMsg<T>) -> Result<StateId> {
        v.check_len()?;
        Ok(StateId {
            id: v.id(),
            creatorid: v.creatorid(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        STATE_ID_LEN
    }
    /// Writes the message.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut StateIdMsg<T>) {
        v.set_id(self.id);
        v.set_creatorid(self.creatorid);
    }
}

// ---------------------------------------------------------------------------
// §3.3 UPD_C

/// Byte ranges of UPD_C (§3.3).
pub mod upd_c_field {
    use core::ops::Range;
    /// State id.
    pub const ID: Range<usize> = 0..8;
    /// Source peer.
    pub const SRC: Range<usize> = 8..40;
    /// Destination peer.
    pub const DST: Range<usize> = 40..72;
    /// Creator id.
    pub const CREATORID: Range<usize> = 72..76;
    /// `expire` (sent 0, ignored).
    pub const EXPIRE: Range<usize> = 76..80;
    /// PFTM_* timeout index.
    pub const TIMEOUT: usize = 80;
    /// `state_flags` (sent 0, ignored).
    pub const STATE_FLAGS: usize = 81;
    /// Padding.
    pub const PAD: Range<usize> = 82..84;
}

view!(
    /// View of an UPD_C message (§3.3).
    UpdC,
    UPD_C_LEN
);

impl<T: AsRef<[u8]>> UpdC<T> {
    /// `id`.
    pub fn id(&self) -> u64 {
        be64(self.buffer.as_ref(), upd_c_field::ID.start)
    }
    /// The source peer.
    pub fn src(&self) -> Peer<&[u8]> {
        Peer::new_unchecked(self.buffer.as_ref().get(upd_c_field::SRC).unwrap_or(&[]))
    }
    /// The destination peer.
    pub fn dst(&self) -> Peer<&[u8]> {
        Peer::new_unchecked(self.buffer.as_ref().get(upd_c_field::DST).unwrap_or(&[]))
    }
    /// `creatorid`.
    pub fn creatorid(&self) -> u32 {
        be32(self.buffer.as_ref(), upd_c_field::CREATORID.start)
    }
    /// `expire`.
    pub fn expire(&self) -> u32 {
        be32(self.buffer.as_ref(), upd_c_field::EXPIRE.start)
    }
    /// `timeout`.
    pub fn timeout(&self) -> u8 {
        byte(self.buffer.as_ref(), upd_c_field::TIMEOUT)
    }
    /// `state_flags`.
    pub fn state_flags(&self) -> u8 {
        byte(self.buffer.as_ref(), upd_c_field::STATE_FLAGS)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UpdC<T> {
    /// Sets `id`.
    pub fn set_id(&mut self, value: u64) {
        put(
            self.buffer.as_mut(),
            upd_c_field::ID.start,
            &value.to_be_bytes(),
        );
    }
    /// The source peer, writable.
    pub fn src_mut(&mut self) -> Peer<&mut [u8]> {
        Peer::new_unchecked(
            self.buffer
                .as_mut()
                .get_mut(upd_c_field::SRC)
                .unwrap_or(&mut []),
        )
    }
    /// The destination peer, writable.
    pub fn dst_mut(&mut self) -> Peer<&mut [u8]> {
        Peer::new_unchecked(
            self.buffer
                .as_mut()
                .get_mut(upd_c_field::DST)
                .unwrap_or(&mut []),
        )
    }
    /// Sets `creatorid`.
    pub fn set_creatorid(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            upd_c_field::CREATORID.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `expire`.
    pub fn set_expire(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            upd_c_field::EXPIRE.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `timeout`.
    pub fn set_timeout(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), upd_c_field::TIMEOUT, value);
    }
    /// Sets `state_flags`.
    pub fn set_state_flags(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), upd_c_field::STATE_FLAGS, value);
    }
    /// Zeroes the padding.
    pub fn clear_pad(&mut self) {
        put(self.buffer.as_mut(), upd_c_field::PAD.start, &[0, 0]);
    }
}

/// A compressed update: the peers and timeout of a state the peer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpdCRepr {
    /// State id.
    pub id: u64,
    /// Source peer.
    pub src: PeerRepr,
    /// Destination peer.
    pub dst: PeerRepr,
    /// Creator id.
    pub creatorid: u32,
    /// Seconds to expiry; OpenBSD sends 0 and ignores it.
    pub expire_s: u32,
    /// PFTM_* index (§3.8).
    pub timeout: u8,
    /// OpenBSD sends 0 and ignores it.
    pub state_flags: u8,
}

impl UpdCRepr {
    /// The state this update is about.
    pub const fn state_id(&self) -> StateId {
        StateId {
            id: self.id,
            creatorid: self.creatorid,
        }
    }
    /// Parses the message.
    pub fn parse<T: AsRef<[u8]>>(v: &UpdC<T>) -> Result<UpdCRepr> {
        v.check_len()?;
        Ok(UpdCRepr {
            id: v.id(),
            src: PeerRepr::parse(&v.src())?,
            dst: PeerRepr::parse(&v.dst())?,
            creatorid: v.creatorid(),
            expire_s: v.expire(),
            timeout: v.timeout(),
            state_flags: v.state_flags(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        UPD_C_LEN
    }
    /// Writes the message.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut UpdC<T>) {
        v.set_id(self.id);
        self.src.emit(&mut v.src_mut());
        self.dst.emit(&mut v.dst_mut());
        v.set_creatorid(self.creatorid);
        v.set_expire(self.expire_s);
        v.set_timeout(self.timeout);
        v.set_state_flags(self.state_flags);
        v.clear_pad();
    }
}

const _: () = assert!(upd_c_field::DST.end - upd_c_field::DST.start == PEER_LEN);

// ---------------------------------------------------------------------------
// §3.4 BUS

/// Byte ranges of BUS (§3.4).
pub mod bus_field {
    use core::ops::Range;
    /// Sender's hostid.
    pub const CREATORID: Range<usize> = 0..4;
    /// `endtime` (sent 0, ignored).
    pub const ENDTIME: Range<usize> = 4..8;
    /// 1 = START, 2 = END.
    pub const STATUS: usize = 8;
    /// Padding.
    pub const PAD: Range<usize> = 9..12;
}

view!(
    /// View of a BUS (bulk update status) message (§3.4).
    Bus,
    BUS_LEN
);

impl<T: AsRef<[u8]>> Bus<T> {
    /// `creatorid`.
    pub fn creatorid(&self) -> u32 {
        be32(self.buffer.as_ref(), bus_field::CREATORID.start)
    }
    /// `endtime`.
    pub fn endtime(&self) -> u32 {
        be32(self.buffer.as_ref(), bus_field::ENDTIME.start)
    }
    /// Raw `status`.
    pub fn status(&self) -> u8 {
        byte(self.buffer.as_ref(), bus_field::STATUS)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Bus<T> {
    /// Sets `creatorid`.
    pub fn set_creatorid(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            bus_field::CREATORID.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `endtime`.
    pub fn set_endtime(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            bus_field::ENDTIME.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `status`.
    pub fn set_status(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), bus_field::STATUS, value);
    }
    /// Zeroes the padding.
    pub fn clear_pad(&mut self) {
        put(self.buffer.as_mut(), bus_field::PAD.start, &[0, 0, 0]);
    }
}

/// Bulk update status values (§3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BusStatus {
    /// Bulk transfer starts.
    Start = 1,
    /// Bulk transfer is complete.
    End = 2,
}

/// A BUS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BusRepr {
    /// Sender's hostid.
    pub creatorid: u32,
    /// Current OpenBSD sends 0; ignored on receive.
    pub endtime: u32,
    /// Raw status byte (see [`BusStatus`]).
    pub status: u8,
}

impl BusRepr {
    /// A BUS message as dpf sends it (endtime 0).
    pub const fn new(creatorid: u32, status: BusStatus) -> BusRepr {
        BusRepr {
            creatorid,
            endtime: 0,
            status: status as u8,
        }
    }
    /// The status, if it is START or END.
    pub fn bus_status(&self) -> Option<BusStatus> {
        match self.status {
            1 => Some(BusStatus::Start),
            2 => Some(BusStatus::End),
            _ => None,
        }
    }
    /// Parses the message.
    pub fn parse<T: AsRef<[u8]>>(v: &Bus<T>) -> Result<BusRepr> {
        v.check_len()?;
        Ok(BusRepr {
            creatorid: v.creatorid(),
            endtime: v.endtime(),
            status: v.status(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        BUS_LEN
    }
    /// Writes the message.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Bus<T>) {
        v.set_creatorid(self.creatorid);
        v.set_endtime(self.endtime);
        v.set_status(self.status);
        v.clear_pad();
    }
}

// ---------------------------------------------------------------------------
// §3.5 TDB

/// Byte ranges of TDB (§3.5).
pub mod tdb_field {
    use core::ops::Range;
    /// SPI (network order).
    pub const SPI: Range<usize> = 0..4;
    /// BSD `sockaddr` union of the SA destination.
    pub const DST: Range<usize> = 4..32;
    /// Replay counter, BE 64-bit.
    pub const RPL: Range<usize> = 32..40;
    /// Byte counter, BE 64-bit.
    pub const CUR_BYTES: Range<usize> = 40..48;
    /// IPsec protocol.
    pub const SPROTO: usize = 48;
    /// `updates` (0).
    pub const UPDATES: usize = 49;
    /// Routing domain, BE.
    pub const RDOMAIN: Range<usize> = 50..52;
}

view!(
    /// View of a TDB (IPsec SA counters) message (§3.5).
    Tdb,
    TDB_LEN
);

impl<T: AsRef<[u8]>> Tdb<T> {
    /// `spi`.
    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), tdb_field::SPI.start)
    }
    /// `dst` sockaddr bytes.
    pub fn dst(&self) -> [u8; 28] {
        get(self.buffer.as_ref(), tdb_field::DST.start)
    }
    /// `rpl`.
    pub fn rpl(&self) -> u64 {
        be64(self.buffer.as_ref(), tdb_field::RPL.start)
    }
    /// `cur_bytes`.
    pub fn cur_bytes(&self) -> u64 {
        be64(self.buffer.as_ref(), tdb_field::CUR_BYTES.start)
    }
    /// `sproto`.
    pub fn sproto(&self) -> u8 {
        byte(self.buffer.as_ref(), tdb_field::SPROTO)
    }
    /// `updates`.
    pub fn updates(&self) -> u8 {
        byte(self.buffer.as_ref(), tdb_field::UPDATES)
    }
    /// `rdomain`.
    pub fn rdomain(&self) -> u16 {
        be16(self.buffer.as_ref(), tdb_field::RDOMAIN.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Tdb<T> {
    /// Sets `spi`.
    pub fn set_spi(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            tdb_field::SPI.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `dst`.
    pub fn set_dst(&mut self, value: &[u8; 28]) {
        put(self.buffer.as_mut(), tdb_field::DST.start, value);
    }
    /// Sets `rpl`.
    pub fn set_rpl(&mut self, value: u64) {
        put(
            self.buffer.as_mut(),
            tdb_field::RPL.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `cur_bytes`.
    pub fn set_cur_bytes(&mut self, value: u64) {
        put(
            self.buffer.as_mut(),
            tdb_field::CUR_BYTES.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `sproto`.
    pub fn set_sproto(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), tdb_field::SPROTO, value);
    }
    /// Sets `updates`.
    pub fn set_updates(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), tdb_field::UPDATES, value);
    }
    /// Sets `rdomain`.
    pub fn set_rdomain(&mut self, value: u16) {
        put(
            self.buffer.as_mut(),
            tdb_field::RDOMAIN.start,
            &value.to_be_bytes(),
        );
    }
}

/// A TDB message. dpf has no IPsec: it parses these and ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TdbRepr {
    /// SPI.
    pub spi: u32,
    /// Destination `sockaddr` bytes, uninterpreted.
    pub dst: [u8; 28],
    /// Replay counter.
    pub rpl: u64,
    /// Byte counter.
    pub cur_bytes: u64,
    /// IPsec protocol.
    pub sproto: u8,
    /// `updates`.
    pub updates: u8,
    /// Routing domain.
    pub rdomain: u16,
}

impl TdbRepr {
    /// Parses the message.
    pub fn parse<T: AsRef<[u8]>>(v: &Tdb<T>) -> Result<TdbRepr> {
        v.check_len()?;
        Ok(TdbRepr {
            spi: v.spi(),
            dst: v.dst(),
            rpl: v.rpl(),
            cur_bytes: v.cur_bytes(),
            sproto: v.sproto(),
            updates: v.updates(),
            rdomain: v.rdomain(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        TDB_LEN
    }
    /// Writes the message.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Tdb<T>) {
        v.set_spi(self.spi);
        v.set_dst(&self.dst);
        v.set_rpl(self.rpl);
        v.set_cur_bytes(self.cur_bytes);
        v.set_sproto(self.sproto);
        v.set_updates(self.updates);
        v.set_rdomain(self.rdomain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn del_c_bytes_from_spec_7_2() {
        let bytes = [
            0x67, 0x89, 0x01, 0x23, 0x00, 0x00, 0x0a, 0x2f, 0x8f, 0x3e, 0x21, 0xa7,
        ];
        let r = StateId::parse(&StateIdMsg::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(r.id, 0x6789_0123_0000_0a2f);
        assert_eq!(r.creatorid, 0x8f3e_21a7);
        assert!(!r.is_bulk_request());
        let mut out = [0u8; 12];
        r.emit(&mut StateIdMsg::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    #[test]
    fn bus_end_bytes_from_spec_7_5() {
        let bytes = [0x8f, 0x3e, 0x21, 0xa7, 0, 0, 0, 0, 0x02, 0, 0, 0];
        let r = BusRepr::parse(&Bus::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(r, BusRepr::new(0x8f3e_21a7, BusStatus::End));
        assert_eq!(r.bus_status(), Some(BusStatus::End));
        let mut out = [0xaau8; 12];
        r.emit(&mut Bus::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    #[test]
    fn clr_round_trip_and_ifname() {
        let r = ClrRepr {
            ifname: ifname_from_str("em0"),
            creatorid: 0x0102_0304,
        };
        let mut out = [0u8; CLR_LEN];
        r.emit(&mut Clr::new_unchecked(&mut out[..]));
        assert_eq!(&out[..4], b"em0\0");
        assert_eq!(&out[16..], &[1, 2, 3, 4]);
        let back = ClrRepr::parse(&Clr::new_checked(&out[..]).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.ifname_bytes(), b"em0");
        assert_eq!(ifname_from_str("a-very-long-interface-name")[15], 0);
    }

    #[test]
    fn tdb_round_trip() {
        let r = TdbRepr {
            spi: 0x1000,
            dst: [7; 28],
            rpl: 0x0102_0304_0506_0708,
            cur_bytes: 99,
            sproto: 50,
            updates: 0,
            rdomain: 3,
        };
        let mut out = [0u8; TDB_LEN];
        r.emit(&mut Tdb::new_unchecked(&mut out[..]));
        assert_eq!(&out[32..40], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&out[50..52], &[0, 3]);
        assert_eq!(TdbRepr::parse(&Tdb::new_checked(&out[..]).unwrap()), Ok(r));
        assert!(Tdb::new_checked(&out[..51]).is_err());
    }
}
