//! The receiver's subheader walk (`spec/pfsync.md` §2.3) and the owned
//! [`Message`] enum.
//!
//! [`Walker`] iterates the sections (subheader + messages) of a pfsync
//! packet body. Per §2.3:
//!
//! * an action ≥ 16, or a message size smaller than this receiver knows for
//!   the action: if `count == 0` or the size is 0 the packet is unusable
//!   (`badact`, stop); otherwise the section is skipped and the walk goes on;
//! * a known action without a handler (1, 3, 8, 9, 11, 12) is skipped;
//! * a section longer than the rest of the packet is `badlen`, stop.
//!
//! Skipped sections are yielded (as [`Section`]s whose [`Section::action`]
//! is `None`) so the caller can count or log them; a stopping error is
//! yielded once as `Err` and the walk ends. Everything before it was yielded
//! already and stays valid. Senders may use longer messages than this
//! receiver knows (a larger subheader `len`): only the known prefix of each
//! is parsed.

use super::msg::{Bus, BusRepr, Clr, ClrRepr, StateId, StateIdMsg, Tdb, TdbRepr, UpdC, UpdCRepr};
use super::state::{State, StateRepr};
use super::{Action, Error, Result, Subheader, SubheaderRepr, ACTION_MAX, SUBHEADER_LEN};
use crate::pfsync::stats::Counter;

/// One pfsync message, parsed.
///
/// The full-state variants make this enum ~300 bytes; it lives on the stack
/// one message at a time, which beats a heap allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// CLR (§3.1).
    Clr(ClrRepr),
    /// INS_ACK (§3.2).
    InsAck(StateId),
    /// UPD_C (§3.3).
    UpdC(UpdCRepr),
    /// UPD_REQ (§3.2).
    UpdReq(StateId),
    /// DEL with a full state (never sent by OpenBSD, accepted).
    Del(StateRepr),
    /// DEL_C (§3.2).
    DelC(StateId),
    /// BUS (§3.4).
    Bus(BusRepr),
    /// INS (§3.7).
    Ins(StateRepr),
    /// UPD with a full state (§3.7).
    Upd(StateRepr),
    /// TDB (§3.5).
    Tdb(TdbRepr),
}

impl Message {
    /// The message's action code.
    pub const fn action(&self) -> Action {
        match self {
            Message::Clr(_) => Action::Clr,
            Message::InsAck(_) => Action::InsAck,
            Message::UpdC(_) => Action::UpdC,
            Message::UpdReq(_) => Action::UpdReq,
            Message::Del(_) => Action::Del,
            Message::DelC(_) => Action::DelC,
            Message::Bus(_) => Action::Bus,
            Message::Ins(_) => Action::Ins,
            Message::Upd(_) => Action::Upd,
            Message::Tdb(_) => Action::Tdb,
        }
    }

    /// Bytes `emit` writes (the action's message size).
    pub const fn buffer_len(&self) -> usize {
        self.action().message_len()
    }

    /// Parses one message of `action` from the start of `bytes`:
    /// [`Error::Truncated`] if `bytes` is shorter than the message,
    /// [`Error::BadLength`] for an action without a layout (1, 3, 8, 9, 11,
    /// 12).
    pub fn parse(action: Action, bytes: &[u8]) -> Result<Message> {
        Ok(match action {
            Action::Clr => Message::Clr(ClrRepr::parse(&Clr::new_checked(bytes)?)?),
            Action::InsAck => Message::InsAck(StateId::parse(&StateIdMsg::new_checked(bytes)?)?),
            Action::UpdC => Message::UpdC(UpdCRepr::parse(&UpdC::new_checked(bytes)?)?),
            Action::UpdReq => Message::UpdReq(StateId::parse(&StateIdMsg::new_checked(bytes)?)?),
            Action::Del => Message::Del(StateRepr::parse(&State::new_checked(bytes)?)?),
            Action::DelC => Message::DelC(StateId::parse(&StateIdMsg::new_checked(bytes)?)?),
            Action::Bus => Message::Bus(BusRepr::parse(&Bus::new_checked(bytes)?)?),
            Action::Ins => Message::Ins(StateRepr::parse(&State::new_checked(bytes)?)?),
            Action::Upd => Message::Upd(StateRepr::parse(&State::new_checked(bytes)?)?),
            Action::Tdb => Message::Tdb(TdbRepr::parse(&Tdb::new_checked(bytes)?)?),
            Action::OIns
            | Action::OUpd
            | Action::InsF
            | Action::DelF
            | Action::OTdb
            | Action::Eof => return Err(Error::BadLength),
        })
    }

    /// Writes the message (without subheader) to the start of `bytes`.
    pub fn emit(&self, bytes: &mut [u8]) -> Result<()> {
        if bytes.len() < self.buffer_len() {
            return Err(Error::NoSpace);
        }
        match self {
            Message::Clr(r) => r.emit(&mut Clr::new_unchecked(bytes)),
            Message::InsAck(r) | Message::UpdReq(r) | Message::DelC(r) => {
                r.emit(&mut StateIdMsg::new_unchecked(bytes))
            }
            Message::UpdC(r) => r.emit(&mut UpdC::new_unchecked(bytes)),
            Message::Del(r) | Message::Ins(r) | Message::Upd(r) => {
                r.emit(&mut State::new_unchecked(bytes))
            }
            Message::Bus(r) => r.emit(&mut Bus::new_unchecked(bytes)),
            Message::Tdb(r) => r.emit(&mut Tdb::new_unchecked(bytes)),
        }
        Ok(())
    }
}

/// A walk-stopping problem (§2.3); the rest of the packet is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// Unusable action with count 0 or message size 0 (`badact`).
    #[error("unusable pfsync action {action}")]
    BadAction {
        /// The raw action code.
        action: u8,
    },
    /// The section runs past the end of the packet (`badlen`).
    #[error("pfsync section longer than the packet")]
    BadLength,
}

impl WalkError {
    /// The §5.9 counter this error increments.
    pub const fn counter(self) -> Counter {
        match self {
            WalkError::BadAction { .. } => Counter::Badact,
            WalkError::BadLength => Counter::Badlen,
        }
    }
}

/// One subheader and its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    subheader: SubheaderRepr,
    handled: Option<Action>,
    body: &'a [u8],
}

impl<'a> Section<'a> {
    /// The action to process, or `None` if this section is skipped
    /// (unknown action, short messages, or an action without a handler).
    pub fn action(&self) -> Option<Action> {
        self.handled
    }
    /// The raw subheader.
    pub fn subheader(&self) -> SubheaderRepr {
        self.subheader
    }
    /// Number of messages.
    pub fn count(&self) -> u16 {
        self.subheader.count
    }
    /// Stride between messages in bytes (`len × 4`).
    pub fn message_len(&self) -> usize {
        usize::from(self.subheader.len_words) * 4
    }
    /// The messages, parsed one by one (nothing for a skipped section).
    pub fn messages(&self) -> SectionMessages<'a> {
        SectionMessages {
            action: self.handled,
            body: self.body,
            stride: self.message_len(),
            remaining: if self.handled.is_some() {
                self.count()
            } else {
                0
            },
        }
    }
    /// The first message, if any (BUS handling reads only this one, §5.3).
    pub fn first(&self) -> Option<Message> {
        self.messages().next()
    }
}

/// Iterator over the messages of a [`Section`].
#[derive(Debug, Clone)]
pub struct SectionMessages<'a> {
    action: Option<Action>,
    body: &'a [u8],
    stride: usize,
    remaining: u16,
}

impl Iterator for SectionMessages<'_> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        let action = self.action?;
        while self.remaining > 0 {
            self.remaining -= 1;
            let this = self.body.get(..self.stride)?;
            self.body = self.body.get(self.stride..).unwrap_or(&[]);
            // The walker guaranteed stride ≥ the known size, so this parses;
            // a failure would only skip the one message.
            if let Ok(msg) = Message::parse(action, this) {
                return Some(msg);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.remaining)))
    }
}

/// Iterator over the sections of a pfsync packet body (the bytes after the
/// 20-byte header, truncated to the header's `len`).
#[derive(Debug, Clone)]
pub struct Walker<'a> {
    rest: &'a [u8],
    stopped: bool,
}

impl<'a> Walker<'a> {
    /// Walks `body`.
    pub fn new(body: &'a [u8]) -> Walker<'a> {
        Walker {
            rest: body,
            stopped: false,
        }
    }

    /// Every message of every handled section, in packet order; a stopping
    /// error is reported to `on_error` (once) and ends the walk.
    pub fn for_each_message(self, mut on_error: impl FnMut(WalkError), mut f: impl FnMut(Message)) {
        for section in self {
            match section {
                Ok(s) => s.messages().for_each(&mut f),
                Err(e) => on_error(e),
            }
        }
    }
}

impl<'a> Iterator for Walker<'a> {
    type Item = core::result::Result<Section<'a>, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        // §2.3: while at least 4 bytes remain.
        if self.stopped || self.rest.len() < SUBHEADER_LEN {
            return None;
        }
        let sub = SubheaderRepr::parse(&Subheader::new_unchecked(self.rest)).ok()?;
        let mlen = usize::from(sub.len_words) * 4;
        let known = Action::from_u8(sub.action).filter(|_| sub.action < ACTION_MAX);
        let handled = match known {
            Some(action) if mlen >= action.message_len() => {
                if action.has_handler() {
                    Some(action)
                } else {
                    None
                }
            }
            _ => {
                // Unknown action or messages shorter than we know: skippable
                // only if the sender told us a usable size.
                if sub.count == 0 || mlen == 0 {
                    self.stopped = true;
                    return Some(Err(WalkError::BadAction { action: sub.action }));
                }
                None
            }
        };
        let after_sub = &self.rest[SUBHEADER_LEN..];
        let len = mlen * usize::from(sub.count);
        let Some(body) = after_sub.get(..len) else {
            self.stopped = true;
            return Some(Err(WalkError::BadLength));
        };
        self.rest = &after_sub[len..];
        Some(Ok(Section {
            subheader: sub,
            handled,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfsync::wire::msg::BusStatus;
    use proptest::prelude::*;

    fn del_c(id: u64) -> [u8; 12] {
        let mut b = [0u8; 12];
        StateId { id, creatorid: 7 }.emit(&mut StateIdMsg::new_unchecked(&mut b[..]));
        b
    }

    #[test]
    fn unknown_and_handlerless_sections_are_skipped_and_later_ones_parse() {
        let mut body = Vec::new();
        // Unknown action 200 with 2 messages of 2 words: skipped.
        body.extend_from_slice(&[200, 2, 0, 2]);
        body.extend_from_slice(&[0xee; 16]);
        // EOF (no handler, size 0, count 1): skipped without consuming.
        body.extend_from_slice(&[12, 0, 0, 1]);
        // DEL_C sent with longer (5-word) messages: known prefix read.
        body.extend_from_slice(&[7, 5, 0, 2]);
        body.extend_from_slice(&del_c(1));
        body.extend_from_slice(&[0xaa; 8]);
        body.extend_from_slice(&del_c(2));
        body.extend_from_slice(&[0xaa; 8]);
        // UPD_C with too short messages (3 words < 21): skipped.
        body.extend_from_slice(&[4, 3, 0, 1]);
        body.extend_from_slice(&[0x55; 12]);
        // BUS end.
        body.extend_from_slice(&[10, 3, 0, 1]);
        let mut bus = [0u8; 12];
        BusRepr::new(9, BusStatus::End).emit(&mut Bus::new_unchecked(&mut bus[..]));
        body.extend_from_slice(&bus);

        let sections: Vec<_> = Walker::new(&body).collect();
        assert_eq!(sections.len(), 5);
        assert!(sections.iter().all(|s| s.is_ok()));
        let handled: Vec<_> = sections.iter().map(|s| s.unwrap().action()).collect();
        assert_eq!(
            handled,
            vec![None, None, Some(Action::DelC), None, Some(Action::Bus)]
        );

        let mut msgs = Vec::new();
        let mut errors = Vec::new();
        Walker::new(&body).for_each_message(|e| errors.push(e), |m| msgs.push(m));
        assert!(errors.is_empty());
        assert_eq!(
            msgs,
            vec![
                Message::DelC(StateId {
                    id: 1,
                    creatorid: 7
                }),
                Message::DelC(StateId {
                    id: 2,
                    creatorid: 7
                }),
                Message::Bus(BusRepr::new(9, BusStatus::End)),
            ]
        );
    }

    #[test]
    fn unusable_action_stops_with_badact_after_earlier_messages() {
        let mut body = Vec::new();
        body.extend_from_slice(&[7, 3, 0, 1]);
        body.extend_from_slice(&del_c(5));
        body.extend_from_slice(&[99, 0, 0, 1]); // unknown, size 0: badact
        body.extend_from_slice(&[7, 3, 0, 1]);
        body.extend_from_slice(&del_c(6));
        let mut msgs = Vec::new();
        let mut errors = Vec::new();
        Walker::new(&body).for_each_message(|e| errors.push(e), |m| msgs.push(m));
        assert_eq!(
            msgs,
            vec![Message::DelC(StateId {
                id: 5,
                creatorid: 7
            })]
        );
        assert_eq!(errors, vec![WalkError::BadAction { action: 99 }]);
        assert_eq!(errors[0].counter(), Counter::Badact);
    }

    #[test]
    fn short_section_is_badlen() {
        let mut body = Vec::new();
        body.extend_from_slice(&[7, 3, 0, 2]);
        body.extend_from_slice(&del_c(5)); // only one of two
        let out: Vec<_> = Walker::new(&body).collect();
        assert_eq!(out, vec![Err(WalkError::BadLength)]);
        // Fewer than 4 trailing bytes end the walk silently.
        assert_eq!(Walker::new(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn message_emit_parse_round_trip() {
        let m = Message::UpdReq(StateId::BULK_REQUEST);
        let mut buf = [0xffu8; 12];
        m.emit(&mut buf).unwrap();
        assert_eq!(buf, [0u8; 12]);
        assert_eq!(Message::parse(Action::UpdReq, &buf), Ok(m));
        assert_eq!(m.emit(&mut [0u8; 11]), Err(Error::NoSpace));
        assert_eq!(Message::parse(Action::Eof, &buf), Err(Error::BadLength));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut n = 0usize;
            for sec in Walker::new(&body).flatten() {
                n += sec.messages().count();
                let _ = sec.first();
            }
            // Every handled message is at least 12 bytes plus its section.
            prop_assert!(n * 12 <= body.len());
        }

        #[test]
        fn arbitrary_sections_never_panic(parts in proptest::collection::vec(
            (0u8..20, 0u8..70, 0u16..4, proptest::collection::vec(any::<u8>(), 0..300)), 0..6)) {
            let mut body = Vec::new();
            for (a, l, c, bytes) in parts {
                body.extend_from_slice(&[a, l]);
                body.extend_from_slice(&c.to_be_bytes());
                body.extend_from_slice(&bytes);
            }
            for s in Walker::new(&body).flatten() {
                for m in s.messages() {
                    let mut out = [0u8; 264];
                    prop_assert!(m.emit(&mut out).is_ok());
                    prop_assert_eq!(Message::parse(m.action(), &out[..m.buffer_len()]), Ok(m));
                }
            }
        }
    }
}
