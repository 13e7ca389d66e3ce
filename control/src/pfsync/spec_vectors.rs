//! The worked example frames of `spec/pfsync.md` §7: each one parses to
//! the expected messages and is reproduced byte for byte from its `Repr`s.

use super::pack::{Packer, PacketWriter};
use super::wire::frame::{receive_frame, LinkParams, RxContext};
use super::wire::state::tests::example_state;
use super::wire::{BusRepr, BusStatus, Message, StateId, UpdCRepr, PFSYNC_GROUP};
use super::{Counter, PfsyncStats};

const INS: &str = "
0000  01 00 5e 00 00 f0 00 0c 29 aa bb 01 08 00 45 10
0010  01 34 3a 7c 40 00 ff f0 4a 52 0a 0a 0a 01 e0 00
0020  00 f0 06 00 01 20 00 00 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 0d 42 00 01 67 89 01 23 00 00
0040  0a 2f 65 6d 30 00 00 00 00 00 00 00 00 00 00 00
0050  00 00 c0 00 02 0a 00 00 00 00 00 00 00 00 00 00
0060  00 00 c6 33 64 14 00 00 00 00 00 00 00 00 00 00
0070  00 00 c7 38 01 bb 00 00 02 00 c0 00 02 0a 00 00
0080  00 00 00 00 00 00 00 00 00 00 c6 33 64 14 00 00
0090  00 00 00 00 00 00 00 00 00 00 c7 38 01 bb 00 00
00a0  02 00 00 00 00 00 00 00 00 00 1a 2b 3c 4d 1a 2c
00b0  8f 61 00 00 00 00 fa f0 05 b4 04 87 00 00 00 00
00c0  00 00 00 00 00 00 00 00 00 00 5e 6f 70 81 5e 70
00d0  d2 f9 00 00 00 00 01 f6 05 b4 04 87 00 00 00 00
00e0  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00f0  00 00 00 00 00 03 ff ff ff ff ff ff ff ff 00 00
0100  00 1e 00 01 51 80 00 00 00 00 00 00 00 0c 00 00
0110  00 00 00 00 00 0a 00 00 00 00 00 00 07 08 00 00
0120  00 00 00 00 23 28 8f 3e 21 a7 ff ff ff ff 00 00
0130  00 00 00 00 02 06 01 00 00 02 00 00 00 00 00 00
0140  00 00
";

const DEL_C: &str = "
0000  01 00 5e 00 00 f0 00 0c 29 aa bb 01 08 00 45 10
0010  00 38 3a 7d 40 00 ff f0 4b 4d 0a 0a 0a 01 e0 00
0020  00 f0 06 00 00 24 00 00 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 07 03 00 01 67 89 01 23 00 00
0040  0a 2f 8f 3e 21 a7
";

const UPD_C: &str = "
0000  01 00 5e 00 00 f0 00 0c 29 aa bb 01 08 00 45 10
0010  00 80 3a 7e 40 00 ff f0 4b 04 0a 0a 0a 01 e0 00
0020  00 f0 06 00 00 6c 00 00 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 04 15 00 01 67 89 01 23 00 00
0040  0a 2f 00 00 00 00 00 00 00 00 1a 2b 3c 4d 1a 2c
0050  8f 61 00 00 00 00 fa f0 05 b4 04 87 00 00 00 00
0060  00 00 00 00 00 00 00 00 00 00 5e 6f 70 81 5e 70
0070  d2 f9 00 00 00 00 01 f6 05 b4 04 87 00 00 00 00
0080  00 00 8f 3e 21 a7 00 00 00 00 02 00 00 00
";

const BULK_REQUEST: &str = "
0000  01 00 5e 00 00 f0 00 0c 29 aa bb 01 08 00 45 10
0010  00 38 3a 7f 40 00 ff f0 4b 4b 0a 0a 0a 01 e0 00
0020  00 f0 06 00 00 24 00 00 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 05 03 00 01 00 00 00 00 00 00
0040  00 00 00 00 00 00
";

const BUS_END: &str = "
0000  01 00 5e 00 00 f0 00 0c 29 aa bb 01 08 00 45 10
0010  00 38 3a 80 40 00 ff f0 4b 4a 0a 0a 0a 01 e0 00
0020  00 f0 06 00 00 24 00 00 00 00 00 00 00 00 00 00
0030  00 00 00 00 00 00 0a 03 00 01 8f 3e 21 a7 00 00
0040  00 00 02 00 00 00
";

/// Decodes a hex dump with offsets.
fn hex(dump: &str) -> Vec<u8> {
    dump.lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| l.split_whitespace().skip(1))
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn link() -> LinkParams {
    LinkParams::new(
        [0x00, 0x0c, 0x29, 0xaa, 0xbb, 0x01],
        [10, 10, 10, 1],
        PFSYNC_GROUP,
        None,
    )
    .unwrap()
}

fn parse(frame: &[u8]) -> Vec<Message> {
    let ctx = RxContext {
        pf_running: true,
        pfsync_up: true,
        on_syncdev: true,
    };
    let mut stats = PfsyncStats::default();
    let p = receive_frame(frame, &ctx, &mut stats).unwrap();
    assert_eq!(p.src_ip, [10, 10, 10, 1]);
    let mut msgs = Vec::new();
    p.walker()
        .for_each_message(|e| panic!("{e}"), |m| msgs.push(m));
    assert_eq!(
        stats.as_array().iter().sum::<u64>(),
        stats.get(Counter::Ipackets)
    );
    msgs
}

fn emit(msg: &Message, ip_id: u16) -> Vec<u8> {
    let mut w = PacketWriter::new(1500, link(), 0).unwrap();
    w.push(msg).unwrap();
    w.finish_with_ip_id(ip_id).unwrap().to_vec()
}

fn the_state_id() -> StateId {
    StateId {
        id: 0x6789_0123_0000_0a2f,
        creatorid: 0x8f3e_21a7,
    }
}

fn the_upd_c() -> UpdCRepr {
    let s = example_state();
    UpdCRepr {
        id: s.id,
        src: s.src,
        dst: s.dst,
        creatorid: s.creatorid,
        expire_s: 0,
        timeout: 2,
        state_flags: 0,
    }
}

#[test]
fn ins_7_1() {
    let frame = hex(INS);
    assert_eq!(frame.len(), 322);
    let msgs = parse(&frame);
    assert_eq!(msgs, vec![Message::Ins(example_state())]);
    assert_eq!(emit(&msgs[0], 0x3a7c), frame);
    // The slice packer builds the same bytes for a lone INS.
    let mut p = Packer::new(1500, link(), 0).unwrap();
    assert!(p.push(&msgs[0]).unwrap().is_none());
    let mut built = p.flush().unwrap().to_vec();
    built[18..20].copy_from_slice(&[0x3a, 0x7c]);
    built[24..26].copy_from_slice(&[0x4a, 0x52]);
    assert_eq!(built, frame);
}

#[test]
fn del_c_7_2() {
    let frame = hex(DEL_C);
    let msgs = parse(&frame);
    assert_eq!(msgs, vec![Message::DelC(the_state_id())]);
    assert_eq!(emit(&msgs[0], 0x3a7d), frame);
}

#[test]
fn upd_c_7_3() {
    let frame = hex(UPD_C);
    assert_eq!(frame.len(), 142);
    let msgs = parse(&frame);
    assert_eq!(msgs, vec![Message::UpdC(the_upd_c())]);
    assert_eq!(emit(&msgs[0], 0x3a7e), frame);
}

#[test]
fn bulk_request_7_4() {
    let frame = hex(BULK_REQUEST);
    let msgs = parse(&frame);
    assert_eq!(msgs, vec![Message::UpdReq(StateId::BULK_REQUEST)]);
    assert_eq!(emit(&Message::UpdReq(StateId::BULK_REQUEST), 0x3a7f), frame);
}

#[test]
fn bus_end_7_5() {
    let frame = hex(BUS_END);
    let msgs = parse(&frame);
    let end = BusRepr::new(0x8f3e_21a7, BusStatus::End);
    assert_eq!(msgs, vec![Message::Bus(end)]);
    assert_eq!(emit(&Message::Bus(end), 0x3a80), frame);
}

#[test]
fn deferred_ins_sets_ack_bytes() {
    let mut s = example_state();
    s.state_flags = super::wire::state::state_flags::ACK;
    let frame = emit(&Message::Ins(s), 0x3a7c);
    assert_eq!(&frame[0x13e..0x140], &[0x00, 0x10]);
}
