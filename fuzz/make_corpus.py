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


def main():
    for name, fn in [("classify", classify), ("carp", carp), ("pfsync", pfsync),
                     ("rules", rules), ("config", config), ("ctl", ctl)]:
        write(name, fn())
    total = sum(os.path.getsize(os.path.join(dp, f))
                for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"total {total} bytes")
    if total > 200_000:
        sys.exit("corpus larger than 200 KB")


if __name__ == "__main__":
    main()
