//! Building pfsync packets (`spec/pfsync.md` §1.2).
//!
//! * [`Packer`] is a slice's packet: messages are grouped per action under
//!   one subheader each, sections in the fixed §1.2 order `INS_ACK, UPD_C,
//!   DEL_C, INS, UPD, TDB`. Its running length starts at 40 (IPv4 + pfsync
//!   header) and grows by each message plus 4 for a section's first
//!   message; a message that would push it past the MTU closes the current
//!   packet, which `push` returns, and starts the next one.
//! * [`PacketWriter`] writes sections in call order (consecutive messages of
//!   one action share a subheader). It builds the packets that bypass the
//!   slices: bulk updates (BUS START, UPD..., BUS END), CLR, UPD_REQ lists.
//!
//! Both own one frame buffer of `14 + MTU` bytes allocated at construction
//! and return finished Ethernet frames as `&[u8]` borrowed from it; the
//! frame is valid until the next call. The MTU bounds the IP datagram. The
//! caller transmits the frame and counts `opackets` / `oerrors`.

use super::wire::frame::{emit_headers, LinkParams, FRAME_HEADROOM};
use super::wire::{
    Action, Message, Subheader, SubheaderRepr, HEADER_LEN, PFSYNC_MINPKT, SUBHEADER_LEN,
};

/// Smallest MTU dpf accepts: one full state in one section must fit
/// (40 + 4 + 264 bytes).
pub const MIN_MTU: usize = PFSYNC_MINPKT + SUBHEADER_LEN + super::wire::state::STATE_LEN;
/// Largest MTU: the IPv4 total length field.
pub const MAX_MTU: usize = u16::MAX as usize;

/// Section order of a slice packet (§1.2).
pub const SLICE_ORDER: [Action; 6] = [
    Action::InsAck,
    Action::UpdC,
    Action::DelC,
    Action::Ins,
    Action::Upd,
    Action::Tdb,
];

/// Errors of the packet builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// The MTU is outside [`MIN_MTU`]`..=`[`MAX_MTU`].
    #[error("pfsync MTU {0} outside {MIN_MTU}..={MAX_MTU}")]
    BadMtu(usize),
    /// The current packet has no room for the message: finish it first.
    #[error("packet full")]
    Full,
    /// The action does not travel in slice packets (CLR, UPD_REQ, DEL, BUS).
    #[error("{0:?} is not sent through a slice")]
    NotSliceAction(Action),
}

/// Pseudo-random IPv4 ids, one per packet (§1: "IP id random per packet").
/// A xorshift generator: unpredictable enough for a dedicated sync link,
/// deterministic under a fixed seed for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpIds {
    state: u32,
}

impl IpIds {
    /// A generator from `seed` (0 is replaced by a fixed non-zero value).
    pub const fn new(seed: u32) -> IpIds {
        IpIds {
            state: if seed == 0 { 0x9e37_79b9 } else { seed },
        }
    }
    /// The next id.
    pub fn next_id(&mut self) -> u16 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        (x >> 16) as u16
    }
}

fn check_mtu(mtu: usize) -> Result<(), PackError> {
    if (MIN_MTU..=MAX_MTU).contains(&mtu) {
        Ok(())
    } else {
        Err(PackError::BadMtu(mtu))
    }
}

/// Writes sections in call order into one frame buffer.
#[derive(Debug, Clone)]
pub struct PacketWriter {
    link: LinkParams,
    ip_ids: IpIds,
    mtu: usize,
    frame: Vec<u8>,
    /// End of the written body, as an offset into `frame`.
    end: usize,
    /// Offset, action and count of the last section's subheader.
    last: Option<(usize, Action, u16)>,
}

/// Offset of the first subheader in a frame.
const BODY_START: usize = FRAME_HEADROOM + HEADER_LEN;

impl PacketWriter {
    /// A writer for packets of at most `mtu` IP bytes.
    pub fn new(mtu: usize, link: LinkParams, ip_id_seed: u32) -> Result<PacketWriter, PackError> {
        check_mtu(mtu)?;
        Ok(PacketWriter {
            link,
            ip_ids: IpIds::new(ip_id_seed),
            mtu,
            frame: vec![0; FRAME_HEADROOM + mtu],
            end: BODY_START,
            last: None,
        })
    }

    /// The MTU (bound on the IP datagram).
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Replaces the link parameters (e.g. the peer's MAC changed).
    pub fn set_link(&mut self, link: LinkParams) {
        self.link = link;
    }

    /// Whether no message was written since the last finish.
    pub fn is_empty(&self) -> bool {
        self.end == BODY_START
    }

    /// Current IP datagram length.
    pub fn ip_len(&self) -> usize {
        self.end - crate::pfsync::wire::frame::ETH_HDR_LEN
    }

    fn cost(&self, action: Action) -> usize {
        let sub = match self.last {
            // BUS messages never share a section: receivers read only the
            // first message of a BUS section (§5.3).
            Some((_, a, count)) if a == action && action != Action::Bus && count < u16::MAX => 0,
            _ => SUBHEADER_LEN,
        };
        sub + action.message_len()
    }

    /// Whether one more message of `action` fits.
    pub fn fits(&self, action: Action) -> bool {
        self.ip_len() + self.cost(action) <= self.mtu
    }

    /// Appends `msg`, opening a new section unless the previous message had
    /// the same action (BUS always opens its own). [`PackError::Full`] leaves the packet unchanged.
    pub fn push(&mut self, msg: &Message) -> Result<(), PackError> {
        let action = msg.action();
        if !self.fits(action) {
            return Err(PackError::Full);
        }
        if self.cost(action) > action.message_len() {
            let at = self.end;
            let mut sub = Subheader::new_unchecked(&mut self.frame[at..at + SUBHEADER_LEN]);
            SubheaderRepr::for_action(action, 1).emit(&mut sub);
            self.last = Some((at, action, 1));
            self.end += SUBHEADER_LEN;
        } else if let Some((at, a, count)) = self.last {
            let count = count + 1;
            Subheader::new_unchecked(&mut self.frame[at..at + SUBHEADER_LEN]).set_count(count);
            self.last = Some((at, a, count));
        }
        let at = self.end;
        let len = action.message_len();
        msg.emit(&mut self.frame[at..at + len])
            .map_err(|_| PackError::Full)?;
        self.end += len;
        Ok(())
    }

    /// Finishes the packet with a fresh IP id and returns the frame, or
    /// `None` if nothing was written.
    pub fn finish(&mut self) -> Option<&[u8]> {
        let id = self.ip_ids.next_id();
        self.finish_with_ip_id(id)
    }

    /// Finishes the packet with the given IP id.
    pub fn finish_with_ip_id(&mut self, ip_id: u16) -> Option<&[u8]> {
        if self.is_empty() {
            return None;
        }
        let end = self.end;
        self.end = BODY_START;
        self.last = None;
        let pfsync_len = end - FRAME_HEADROOM;
        let frame_len = emit_headers(&mut self.frame, &self.link, ip_id, pfsync_len).ok()?;
        self.frame.get(..frame_len)
    }

    /// Drops what was written.
    pub fn clear(&mut self) {
        self.end = BODY_START;
        self.last = None;
    }
}

/// A slice packet: per-action sections in the §1.2 order.
#[derive(Debug, Clone)]
pub struct Packer {
    mtu: usize,
    /// Message bytes per entry of [`SLICE_ORDER`], each with capacity `mtu`.
    sections: [Vec<u8>; 6],
    counts: [u16; 6],
    /// Running IP length (§1.2), starting at 40.
    ip_len: usize,
    out: PacketWriter,
}

fn slice_index(action: Action) -> Option<usize> {
    SLICE_ORDER.iter().position(|a| *a == action)
}

impl Packer {
    /// A packer for packets of at most `mtu` IP bytes.
    pub fn new(mtu: usize, link: LinkParams, ip_id_seed: u32) -> Result<Packer, PackError> {
        let out = PacketWriter::new(mtu, link, ip_id_seed)?;
        Ok(Packer {
            mtu,
            sections: core::array::from_fn(|_| Vec::with_capacity(mtu)),
            counts: [0; 6],
            ip_len: PFSYNC_MINPKT,
            out,
        })
    }

    /// The MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Replaces the link parameters.
    pub fn set_link(&mut self, link: LinkParams) {
        self.out.set_link(link);
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ip_len == PFSYNC_MINPKT
    }

    /// The running IP length of the packet being built (§1.2).
    pub fn ip_len(&self) -> usize {
        self.ip_len
    }

    /// Messages of `action` in the current packet.
    pub fn count(&self, action: Action) -> u16 {
        slice_index(action).map_or(0, |i| self.counts[i])
    }

    fn cost(&self, i: usize, action: Action) -> usize {
        let sub = if self.counts[i] == 0 {
            SUBHEADER_LEN
        } else {
            0
        };
        sub + action.message_len()
    }

    /// Adds `msg`. If it does not fit, the current packet is closed and
    /// returned (send it) and `msg` starts the next packet (§1.2).
    pub fn push(&mut self, msg: &Message) -> Result<Option<&[u8]>, PackError> {
        let action = msg.action();
        let i = slice_index(action).ok_or(PackError::NotSliceAction(action))?;
        let mut closed = false;
        if self.ip_len + self.cost(i, action) > self.mtu || self.counts[i] == u16::MAX {
            self.write_out();
            closed = true;
        }
        let start = self.sections[i].len();
        self.sections[i].resize(start + action.message_len(), 0);
        if msg.emit(&mut self.sections[i][start..]).is_err() {
            self.sections[i].truncate(start);
            return Err(PackError::Full);
        }
        self.ip_len += self.cost(i, action);
        self.counts[i] += 1;
        Ok(if closed { self.out.finish() } else { None })
    }

    /// Closes the current packet and returns it, or `None` if empty.
    pub fn flush(&mut self) -> Option<&[u8]> {
        if self.is_empty() {
            return None;
        }
        self.write_out();
        self.out.finish()
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        for s in &mut self.sections {
            s.clear();
        }
        self.counts = [0; 6];
        self.ip_len = PFSYNC_MINPKT;
        self.out.clear();
    }

    /// Moves the sections into the output writer (in order) and resets.
    fn write_out(&mut self) {
        self.out.clear();
        let mut at = BODY_START;
        for (i, action) in SLICE_ORDER.iter().enumerate() {
            let count = self.counts[i];
            if count == 0 {
                continue;
            }
            let body = &self.sections[i];
            let frame = &mut self.out.frame;
            if let Some(sub) = frame.get_mut(at..at + SUBHEADER_LEN) {
                SubheaderRepr::for_action(*action, count).emit(&mut Subheader::new_unchecked(sub));
            }
            at += SUBHEADER_LEN;
            if let Some(dst) = frame.get_mut(at..at + body.len()) {
                dst.copy_from_slice(body);
            }
            at += body.len();
        }
        self.out.end = at;
        self.out.last = None;
        for s in &mut self.sections {
            s.clear();
        }
        self.counts = [0; 6];
        self.ip_len = PFSYNC_MINPKT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfsync::wire::frame::{receive_frame, RxContext, ETH_HDR_LEN};
    use crate::pfsync::wire::msg::{BusRepr, BusStatus, StateId};
    use crate::pfsync::wire::state::tests::example_state;
    use crate::pfsync::wire::PFSYNC_GROUP;
    use crate::pfsync::PfsyncStats;

    fn link() -> LinkParams {
        LinkParams::new(
            [0x00, 0x0c, 0x29, 0xaa, 0xbb, 0x01],
            [10, 10, 10, 1],
            PFSYNC_GROUP,
            None,
        )
        .unwrap()
    }

    const GOOD: RxContext = RxContext {
        pf_running: true,
        pfsync_up: true,
        on_syncdev: true,
    };

    /// Parses a frame back into (action, count) per section and messages.
    fn sections(frame: &[u8]) -> (Vec<(u8, u16)>, Vec<Message>) {
        let mut stats = PfsyncStats::default();
        let p = receive_frame(frame, &GOOD, &mut stats).unwrap();
        let mut secs = Vec::new();
        let mut msgs = Vec::new();
        for s in p.walker() {
            let s = s.unwrap();
            secs.push((s.subheader().action, s.count()));
            msgs.extend(s.messages());
        }
        (secs, msgs)
    }

    fn del_c(id: u64) -> Message {
        Message::DelC(StateId { id, creatorid: 1 })
    }

    #[test]
    fn rejects_bad_mtu_and_non_slice_actions() {
        assert_eq!(
            Packer::new(307, link(), 1).err(),
            Some(PackError::BadMtu(307))
        );
        assert!(Packer::new(308, link(), 1).is_ok());
        let mut p = Packer::new(1500, link(), 1).unwrap();
        let bus = Message::Bus(BusRepr::new(1, BusStatus::End));
        assert_eq!(
            p.push(&bus).err(),
            Some(PackError::NotSliceAction(Action::Bus))
        );
        assert!(p.flush().is_none());
    }

    #[test]
    fn packer_groups_in_slice_order() {
        let mut p = Packer::new(1500, link(), 1).unwrap();
        let ins = Message::Ins(example_state());
        let ack = Message::InsAck(StateId {
            id: 9,
            creatorid: 1,
        });
        assert!(p.push(&ins).unwrap().is_none());
        assert!(p.push(&del_c(1)).unwrap().is_none());
        assert!(p.push(&ack).unwrap().is_none());
        assert!(p.push(&del_c(2)).unwrap().is_none());
        assert_eq!(p.ip_len(), 40 + (4 + 264) + (4 + 12 + 12) + (4 + 12));
        assert_eq!(p.count(Action::DelC), 2);
        let frame = p.flush().unwrap().to_vec();
        assert_eq!(frame.len(), ETH_HDR_LEN + 40 + 268 + 28 + 16);
        let (secs, msgs) = sections(&frame);
        assert_eq!(secs, vec![(2, 1), (7, 2), (13, 1)]);
        assert_eq!(msgs, vec![ack, del_c(1), del_c(2), ins]);
        assert!(p.is_empty());
        assert!(p.flush().is_none());
    }

    #[test]
    fn packer_splits_at_mtu() {
        // MTU 1500: (1500 - 40 - 4) / 264 = 5 states per packet.
        let mut p = Packer::new(1500, link(), 1).unwrap();
        let mut frames = Vec::new();
        for i in 0..12u64 {
            let mut s = example_state();
            s.id = i;
            if let Some(f) = p.push(&Message::Upd(s)).unwrap() {
                frames.push(f.to_vec());
            }
        }
        frames.extend(p.flush().map(|f| f.to_vec()));
        let counts: Vec<usize> = frames.iter().map(|f| sections(f).1.len()).collect();
        assert_eq!(counts, vec![5, 5, 2]);
        for f in &frames {
            assert!(f.len() - ETH_HDR_LEN <= 1500);
        }
        assert_eq!(frames[0].len() - ETH_HDR_LEN, 40 + 4 + 5 * 264);
        let ids: Vec<u64> = frames
            .iter()
            .flat_map(|f| sections(f).1)
            .map(|m| match m {
                Message::Upd(s) => s.id,
                _ => u64::MAX,
            })
            .collect();
        assert_eq!(ids, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn packer_split_accounts_for_subheaders() {
        // 40 + 4 + 264 = 308 exactly: a DEL_C (needs 4 + 12) no longer fits.
        let mut p = Packer::new(308, link(), 1).unwrap();
        assert!(p.push(&Message::Ins(example_state())).unwrap().is_none());
        assert_eq!(p.ip_len(), 308);
        let closed = p.push(&del_c(3)).unwrap().unwrap().to_vec();
        assert_eq!(sections(&closed).0, vec![(13, 1)]);
        assert_eq!(p.ip_len(), 40 + 16);
        let rest = p.flush().unwrap().to_vec();
        assert_eq!(sections(&rest).1, vec![del_c(3)]);
    }

    #[test]
    fn writer_keeps_call_order_and_reports_full() {
        let mut w = PacketWriter::new(40 + 16 + 4 + 264 + 16, link(), 7).unwrap();
        let start = Message::Bus(BusRepr::new(5, BusStatus::Start));
        let end = Message::Bus(BusRepr::new(5, BusStatus::End));
        w.push(&start).unwrap();
        w.push(&Message::Upd(example_state())).unwrap();
        assert!(w.fits(Action::Bus));
        w.push(&end).unwrap();
        assert!(!w.fits(Action::Upd));
        assert_eq!(w.push(&Message::Upd(example_state())), Err(PackError::Full));
        let frame = w.finish().unwrap().to_vec();
        let (secs, msgs) = sections(&frame);
        assert_eq!(secs, vec![(10, 1), (14, 1), (10, 1)]);
        assert_eq!(msgs[0], start);
        assert_eq!(msgs[2], end);
        assert!(w.is_empty());
        assert!(w.finish().is_none());
    }

    #[test]
    fn ip_ids_vary() {
        let mut ids = IpIds::new(0);
        let a = ids.next_id();
        let b = ids.next_id();
        let c = ids.next_id();
        assert!(a != b || b != c);
    }
}
