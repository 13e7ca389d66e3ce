#!/usr/bin/env python3
"""Regenerates the seed corpora in fuzz/corpus/<target>/ from the test
vectors in dpf's sources (run from anywhere: `python3 fuzz/make_corpus.py`).

classify: the byte arrays of dataplane/src/wire (whole frames from
vectors.rs and the per-layer test packets); carp: the spec §3.5 frames of
control/src/carp; pfsync: the spec §7 hex dumps and frame arrays of
control/src/pfsync (plus the DEL_C frame re-labelled INS_ACK / UPD_REQ);
rules: the pf.conf texts of the rules tests and golden tests; config: the
dpf.toml texts of the config tests and scripts/run; ctl: one request line
per command. Files are named by content hash, so reruns are idempotent.
"""
import hashlib, os, re, shutil, sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def src(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def byte_arrays(text, min_len=1):
    """Every `const NAME: [u8; N] = [ ... ];` of literal integers."""
    out = {}
    for m in re.finditer(r"const (\w+): \[u8; [^\]]+\] = \[(.*?)\];", text, re.S):
        body = re.sub(r"//[^\n]*", "", m.group(2))
        items = [x.strip() for x in body.split(",") if x.strip()]
        try:
            data = bytes(int(x.replace("_", ""), 0) for x in items)
        except ValueError:
            continue
        if len(data) >= min_len:
            out[m.group(1)] = data
    return out


def hex_dumps(text):
    """Every `const NAME: &str = "<offset> <hex bytes>..."` dump."""
    out = {}
    for m in re.finditer(r'const (\w+): &str = "\n(.*?)";', text, re.S):
        data = bytearray()
        for line in m.group(2).splitlines():
            parts = line.split()
            data += bytes(int(b, 16) for b in parts[1:])
        out[m.group(1)] = bytes(data)
    return out


def string_literals(text):
    """Raw and plain string literals (escapes of plain ones decoded)."""
    out = [m.group(2) for m in re.finditer(r'r(#+)"(.*?)"\1', text, re.S)]
    for m in re.finditer(r'(?<![r#\w])"((?:[^"\\]|\\.)*)"', text, re.S):
        s = m.group(1)
        s = s.replace("\\\n", "")
        s = re.sub(r"\\n\s*", "\n", s) if "\\\n" in m.group(1) else s.replace("\\n", "\n")
        s = s.replace('\\"', '"').replace("\\t", "\t").replace("\\\\", "\\")
        out.append(s)
    return out


def write(target, seeds):
    d = os.path.join(OUT, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    seen = set()
    for name, data in seeds:
        if isinstance(data, str):
            data = data.encode()
        h = hashlib.sha1(data).hexdigest()[:12]
        if h in seen:
            continue
        seen.add(h)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
        with open(os.path.join(d, f"{safe}-{h}"), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seen)} seeds")


def classify():
    seeds = []
    for f in sorted(os.listdir(os.path.join(ROOT, "dataplane/src/wire"))):
        for name, data in byte_arrays(src(f"dataplane/src/wire/{f}"), 8).items():
            seeds.append((f"{f[:-3]}_{name}", data))
    return seeds


def carp():
    seeds = []
    for f in ["wire.rs", "validate.rs", "auth.rs"]:
        for name, data in byte_arrays(src(f"control/src/carp/{f}"), 36).items():
            seeds.append((name, data))
    for name, data in list(seeds):
        if name == "FRAME_V4":
            seeds.append(("FRAME_V4_VLAN", data[:12] + bytes([0x81, 0, 0, 0x64]) + data[12:]))
            seeds.append(("HEADER_V4", data[34:]))
        if name == "FRAME_V6":
            seeds.append(("HEADER_V6", data[54:]))
    return seeds


def pfsync():
    seeds = list(hex_dumps(src("control/src/pfsync/spec_vectors.rs")).items())
    for f in ["wire/frame.rs", "wire/walk.rs", "wire/msg.rs", "recv.rs"]:
        seeds += byte_arrays(src(f"control/src/pfsync/{f}"), 12).items()
    del_c = dict(seeds).get("DEL_C")
    if del_c:
        # Same 12-byte message layout: INS_ACK (2) and UPD_REQ (5).
        for action, name in [(2, "INS_ACK"), (5, "UPD_REQ")]:
            b = bytearray(del_c)
            b[54] = action
            seeds.append((name, bytes(b)))
    return seeds


def rules():
    texts = string_literals(src("dataplane/src/rules/tests.rs"))
    texts += string_literals(src("tests/tests/filtering.rs"))
    keep = []
    for t in texts:
        if len(t) < 6 or not re.search(r"\b(pass|block|table|set)\b", t):
            continue
        keep.append(("pf", t))
    return keep


def config():
    good = string_literals(src("control/src/config.rs"))
    seeds = [("dpf", t) for t in good if "[eal]" in t]
    run = src("scripts/run")
    for m in re.finditer(r"<<TOML\n(.*?)\nTOML", run, re.S):
        t = m.group(1)
        t = t.replace("$(eal wire)", '["--no-huge", "-m", "256", "--no-shconf"]')
        t = re.sub(r"\$\(eal \w+\)", '["--no-huge", "-m", "256", "-l", "0,1"]', t)
        t = t.replace("$demo", "/tmp/demo")
        seeds.append(("run", t))
    if seeds:
        full = seeds[0][1] + (
            '\n[dataplane]\nmode = "wire"\nmbufs = 8191\nrx_desc = 512\ntx_desc = 512\n'
            'tx_drain_us = 50\n\n[control]\nsocket = "/tmp/dpf.sock"\n'
        )
        seeds.append(("full", full))
        seeds.append(("pci", seeds[0][1].replace("net_ring0", "0000:03:00.0")))
    return seeds


def ctl():
    reqs = [
        '{"cmd":"show-info"}',
        '{"cmd":"show-states"}',
        '{"cmd":"show-states","host":"10.0.0.1"}',
        '{"cmd":"show-rules"}',
        '{"cmd":"show-interfaces"}',
        '{"cmd":"load-rules","text":"block in all\\npass in on lan0 proto tcp to port { 80, 443 }\\n","file":"pf.conf"}',
        '{"cmd":"kill-states","host":"10.0.0.1","peer":"2001:db8::1"}',
        '{"cmd":"kill-states","host":"192.168.1.10"}',
        '{"cmd":"flush-states"}',
    ]
    return [("req", '{"version":1,"request":%s}' % r) for r in reqs] + [
        ("v2", '{"version":2,"request":{"cmd":"show-info"}}'),
    ]


# ---------------------------------------------------------------------------
# Programs for the stateful targets (tests/src/fuzz_bodies.rs documents each
# format): frames are length-prefixed (u16 big-endian), every field is a
# fixed number of bytes. The frames are built here with correct checksums
# for the router of fuzz_bodies::ROUTER_TOML (lan0 02:00:00:00:01:01
# 10.1.0.1/24 2001:db8:1::1/64, wan0 02:00:00:00:02:01 10.2.0.1/24
# 2001:db8:2::1/64, VIPs 10.1.0.254 / 2001:db8:1::fe vhid 1 on lan0,
# 10.2.0.254 vhid 2 on wan0).

import ipaddress
import struct

LAN_MAC = bytes([2, 0, 0, 0, 1, 1])
WAN_MAC = bytes([2, 0, 0, 0, 2, 1])
HOST_MAC = bytes([2, 0, 0, 0, 1, 9])
SERVER_MAC = bytes([2, 0, 0, 0, 2, 0xfe])
BCAST = b"\xff" * 6


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip(a):
    return ipaddress.ip_address(a).packed


def eth(dst, src, ethertype, payload):
    f = dst + src + struct.pack("!H", ethertype) + payload
    return f + b"\0" * max(0, 60 - len(f))


def l4(proto, src, dst, seg, csum_at):
    pseudo = src + dst + (struct.pack("!BBH", 0, proto, len(seg)) if len(src) == 4
                          else struct.pack("!IxxxB", len(seg), proto))
    seg = bytearray(seg)
    if csum_at is not None:
        seg[csum_at:csum_at + 2] = struct.pack("!H", csum(pseudo + bytes(seg)))
    return bytes(seg)


def ip_frame(src_mac, dst_mac, src, dst, proto, seg, ttl=64):
    s, d = ip(src), ip(dst)
    if len(s) == 4:
        csum_at = {6: 16, 17: 6}.get(proto)
        if proto == 1:
            seg = bytearray(seg)
            seg[2:4] = struct.pack("!H", csum(bytes(seg)))
            seg = bytes(seg)
        else:
            seg = l4(proto, s, d, seg, csum_at)
        h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, ttl, proto, 0, s, d))
        h[10:12] = struct.pack("!H", csum(bytes(h)))
        return eth(dst_mac, src_mac, 0x0800, bytes(h) + seg)
    csum_at = {6: 16, 17: 6, 58: 2}.get(proto)
    seg = l4(proto, s, d, seg, csum_at)
    h = struct.pack("!IHBB16s16s", 0x60000000, len(seg), proto, ttl, s, d)
    return eth(dst_mac, src_mac, 0x86DD, h + seg)


def tcp_seg(sport, dport, seq, ack, flags):
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)


def udp_seg(sport, dport, payload=b"hello"):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def echo(v6, ident=7, seq=1):
    return struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq) + b"ping"


def arp(op, sha, spa, tha, tpa, dst=BCAST):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, ip(spa), tha, ip(tpa))
    return eth(dst, sha, 0x0806, body)


def ns(src, target, src_mac):
    t = ip(target)
    group = ipaddress.ip_address("ff02::1:ff00:0").packed[:13] + t[13:]
    mac = bytes([0x33, 0x33]) + group[12:]
    seg = struct.pack("!BBHI16s", 135, 0, 0, 0, t) + bytes([1, 1]) + src_mac
    return ip_frame(src_mac, mac, src, str(ipaddress.ip_address(group)), 58, seg, ttl=255)


def fr(frame):
    return struct.pack("!H", len(frame)) + frame


def slowpath():
    arp_us = arp(1, HOST_MAC, "10.1.0.9", b"\0" * 6, "10.1.0.1")
    arp_vip = arp(1, HOST_MAC, "10.1.0.9", b"\0" * 6, "10.1.0.254")
    arp_reply = arp(2, SERVER_MAC, "10.2.0.77", WAN_MAC, "10.2.0.1", dst=WAN_MAC)
    ping = ip_frame(HOST_MAC, LAN_MAC, "10.1.0.9", "10.1.0.1", 1, echo(False))
    ping6 = ip_frame(HOST_MAC, LAN_MAC, "2001:db8:1::9", "2001:db8:1::1", 58, echo(True))
    ns_us = ns("2001:db8:1::9", "2001:db8:1::1", HOST_MAC)
    ns_vip = ns("2001:db8:1::9", "2001:db8:1::fe", HOST_MAC)
    ttl1 = ip_frame(HOST_MAC, LAN_MAC, "10.1.0.9", "10.2.0.50", 17, udp_seg(5000, 53), ttl=1)
    resolve = bytes([2, 0]) + ip("10.2.0.77") + b"\0" * 12 + bytes([1])
    step = bytes([3]) + struct.pack("!H", 70)  # 70 x 16 ms
    vip_master = bytes([4, 0, 1, 1])
    return [
        ("arp_us", bytes([0, 0]) + fr(arp_us)),
        ("arp_vip", vip_master + bytes([0, 0]) + fr(arp_vip)),
        ("ping", bytes([0, 0]) + fr(ping) + bytes([1, 0]) + fr(ping6)),
        ("ns", bytes([0, 0]) + fr(ns_us) + vip_master + bytes([0, 0]) + fr(ns_vip)),
        ("ttl", bytes([0, 0]) + fr(ttl1) + step + bytes([0, 0]) + fr(ttl1)),
        ("resolve", resolve + step + step + bytes([0, 1]) + fr(arp_reply) + step * 4),
        ("retry", resolve + step * 5 + bytes([2, 1]) + ip("2001:db8:2::77") + bytes([1]) + step * 5),
    ]


def pipeline():
    def burst(port, frames):
        return bytes([0, len(frames) - 1, port]) + b"".join(fr(f) for f in frames)

    def answers(port, picks):
        return bytes([2, len(picks) - 1, port]) + b"".join(bytes(p) for p in picks)

    def step(ms50, budget):
        return bytes([3]) + struct.pack("!HB", ms50, budget)

    c, s = "10.1.0.9", "10.2.0.50"
    syn = ip_frame(HOST_MAC, LAN_MAC, c, s, 6, tcp_seg(40000, 80, 1000, 0, 0x02))
    synack = ip_frame(SERVER_MAC, WAN_MAC, s, c, 6, tcp_seg(80, 40000, 5000, 1001, 0x12))
    ack = ip_frame(HOST_MAC, LAN_MAC, c, s, 6, tcp_seg(40000, 80, 1001, 5001, 0x10))
    fin = ip_frame(HOST_MAC, LAN_MAC, c, s, 6, tcp_seg(40000, 80, 1001, 5001, 0x11))
    udp = ip_frame(HOST_MAC, LAN_MAC, c, s, 17, udp_seg(5353, 53))
    ping = ip_frame(HOST_MAC, LAN_MAC, c, s, 1, echo(False))
    syn6 = ip_frame(HOST_MAC, LAN_MAC, "2001:db8:1::9", "2001:db8:2::50", 6, tcp_seg(40001, 443, 7, 0, 0x02))
    ping6 = ip_frame(HOST_MAC, LAN_MAC, "2001:db8:1::9", "2001:db8:2::50", 58, echo(True))
    smtp = ip_frame(SERVER_MAC, WAN_MAC, s, c, 6, tcp_seg(1234, 25, 1, 0, 0x02))
    echo7 = ip_frame(HOST_MAC, LAN_MAC, c, s, 17, udp_seg(999, 7))
    ttl1 = ip_frame(HOST_MAC, LAN_MAC, c, s, 17, udp_seg(5000, 53), ttl=1)
    unknown = ip_frame(HOST_MAC, LAN_MAC, c, "10.2.0.99", 17, udp_seg(5000, 53))
    handshake = (burst(0, [syn]) + answers(1, [(0, 0x12)]) + answers(0, [(1, 0x10)])
                 + burst(0, [ack, fin]) + step(20, 255) + answers(1, [(3, 0x11)]))
    udp_flood = burst(0, [ip_frame(HOST_MAC, LAN_MAC, c, s, 17, udp_seg(10000 + i, 53)) for i in range(32)])
    udp_flood += burst(0, [ip_frame(HOST_MAC, LAN_MAC, c, s, 17, udp_seg(20000 + i, 53)) for i in range(32)])
    udp_flood += burst(0, [ip_frame(HOST_MAC, LAN_MAC, c, s, 17, udp_seg(30000 + i, 53)) for i in range(8)])
    return [
        ("wire_handshake", bytes([0]) + handshake),
        ("wire_lookahead", bytes([2]) + handshake + burst(0, [udp, ping, syn6, ping6])),
        ("wire_two_workers", bytes([4]) + handshake + answers(1, [(4, 0), (5, 0), (6, 0x12)])),
        ("wire_small_table", bytes([8]) + udp_flood + step(1300, 255) + udp_flood),
        ("wire_return", bytes([0]) + burst(1, [smtp]) + burst(0, [echo7])),
        ("router_handshake", bytes([1]) + burst(0, [syn]) + burst(1, [synack]) + burst(0, [ack, fin])),
        ("router_mixed", bytes([3]) + burst(0, [udp, ping, syn6, ping6, ttl1, unknown, echo7]) + burst(1, [smtp])),
    ]


def pfsync_import():
    frames = [f for _, f in pfsync() if len(f) > 60]
    seeds = [(name, bytes([0, 10]) + fr(f)) for name, f in pfsync() if len(f) > 60]
    seeds.append(("all", b"".join(bytes([0, 50]) + fr(f) for f in frames)))
    return seeds


def import_records():
    def key(v6, proto_i, a, c):
        return bytes([(proto_i << 1) | v6, a, c])

    def peer(seqlo, seqhi, max_win, wscale, state):
        return struct.pack("!IIIHHBB", seqlo, seqhi, 0, max_win, 1460, wscale, state)

    def identity(id_, who):
        return struct.pack("!Q", id_) + bytes([who])

    def upsert(k, side, id_, who, timeout, src, dst):
        return (bytes([0]) + k + bytes([side]) + identity(id_, who) + bytes([128]) + struct.pack("!H", 0)
                + bytes([timeout, 1]) + src + dst + struct.pack("!II", 10, 3600))

    def packets(pkts, secs):
        # TCP packets carry flags, seq, ack and window; UDP nothing more.
        body = b"".join(k + bytes([side]) + (bytes([flags]) + struct.pack("!IIH", seq, ack, win)
                                             if (k[0] >> 1) % 4 == 0 else b"")
                        for k, side, flags, seq, ack, win in pkts)
        return bytes([7, len(pkts) - 1]) + body + bytes([0, secs])

    tcp = key(0, 0, 1, 2)
    est_src = peer(1000, 70000, 65535, 0, 4)
    est_dst = peer(5000, 80000, 65535, 0, 4)
    insert = upsert(tcp, 0, 1, 1, 4, est_src, est_dst)
    flow = packets([(tcp, 1, 0x10, 1000, 5000, 65535), (tcp, 0, 0x10, 5000, 1000, 65535)], 1)
    merge = bytes([2]) + identity(1, 1) + peer(2000, 71000, 65535, 0, 4) + est_dst + bytes([4])
    udp = key(0, 1, 3, 0)
    v6 = key(1, 0, 2, 1)
    return [
        ("insert_track", bytes([0]) + insert + flow + merge + flow),
        ("insert_scaled", bytes([1]) + upsert(v6, 1, 2, 0, 2, peer(1, 2, 512, 14 | 0x80, 3), peer(9, 99, 512, 14 | 0x80, 3))
         + packets([(v6, 0, 0x10, 1, 9, 512), (v6, 1, 0x14, 9, 1, 0)], 2)),
        ("requests", bytes([0]) + insert + bytes([3]) + identity(1, 1) + bytes([4]) + identity(1, 1)
         + bytes([5]) + identity(1, 1) + bytes([3]) + identity(1, 1)),
        ("clear", bytes([4]) + insert + upsert(udp, 0, 2, 1, 6, peer(0, 0, 0, 0, 1), peer(0, 0, 0, 0, 2))
         + bytes([6]) + identity(0, 1) + flow),
        ("defer_ack", bytes([2 | 0x30]) + packets([(tcp, 1, 0x02, 1000, 0, 65535)], 0)
         + bytes([4]) + identity(1, 0) + packets([(udp, 1, 0, 0, 0, 0)], 1)),
    ]


def carp_engine():
    def advert(vhid_i, v6, advbase, advskew, demote, counter, bad=False, own=False):
        return (bytes([1, vhid_i, v6, advbase, advskew, demote]) + struct.pack("!Q", counter)
                + bytes([0xff if bad else 0, 0xff if own else 0]))

    def step(ms):
        return bytes([3]) + struct.pack("!H", ms)

    master = step(4000)
    frames = [f for name, f in carp() if name.startswith("FRAME")]
    return [
        ("become_master", master + step(1000) + step(1000)),
        ("preempted", master + advert(0, 0, 1, 0, 0, 5) + step(500) + advert(0, 1, 1, 0, 0, 6)),
        ("lower_priority", advert(0, 0, 1, 200, 0, 1) + master + advert(1, 0, 1, 250, 0, 2) + step(3000)),
        ("bad_hmac", advert(0, 0, 1, 0, 0, 1, bad=True) + advert(0, 0, 1, 0, 0, 1, own=True) + master),
        ("link", master + bytes([4, 0, 0]) + step(1000) + bytes([4, 0, 1]) + step(4000)),
        ("demote", master + bytes([5, 5]) + step(1000) + bytes([5, 0xfb]) + step(4000)),
        ("raw", b"".join(bytes([0, 0]) + fr(f) for f in frames) + master),
    ]


TARGETS = [("classify", classify), ("carp", carp), ("pfsync", pfsync),
           ("rules", rules), ("config", config), ("ctl", ctl),
           ("slowpath", slowpath), ("pipeline", pipeline),
           ("pfsync_import", pfsync_import), ("import_records", import_records),
           ("carp_engine", carp_engine)]


def main():
    # `make_corpus.py [target...]`: only those (default: every target).
    only = set(sys.argv[1:])
    for name, fn in TARGETS:
        if not only or name in only:
            write(name, fn())
    total = sum(os.path.getsize(os.path.join(dp, f))
                for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"total {total} bytes")
    if total > 200_000:
        sys.exit("corpus larger than 200 KB")


if __name__ == "__main__":
    main()
