#!/usr/bin/python3
"""The independent decoder check of the pcap fixtures (run with Debian's
/usr/bin/python3, which has scapy; tshark is used too when installed):

    /usr/bin/python3 pcap-fixtures/checks.py [--keep-going] [fixture-dir ...]

For each fixture (default: every pcap-fixtures/NN-*/) it decodes the inputs
(in/<vif>.pcap) and the expected outputs the vrouter produced by replaying them
(expected/<vif>.pcap, expected/summary.json) with scapy, and asserts, field by
field, what the scenario means. The expectations below are written from each
scenario's intent (the OpenContrail facts and the vrouter's documented
behaviour), never copied from an output: an output that changes must still
satisfy them, and one that does not is a regression or a bug.

Prints one line per check group and stops at the first failure with a message
naming the fixture, the file, the frame and the field (with --keep-going it
goes on with the next fixture instead); exits 1 when anything failed.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys

from scapy.all import ARP, GRE, ICMP, IP, TCP, UDP, Dot1Q, Ether, Raw, bind_layers, conf
from scapy.contrib.mpls import MPLS

conf.verb = 0
bind_layers(UDP, MPLS, dport=6635)
bind_layers(UDP, MPLS, dport=51234)
bind_layers(GRE, MPLS, proto=0x8847)

HERE = os.path.dirname(os.path.abspath(__file__))
DROP_REASONS_TS = os.path.join(HERE, "..", "src", "dataplane", "drop-reasons.ts")

VROUTER_MAC = "00:00:5e:00:01:00"
FABRIC_MAC = "52:54:00:00:00:11"
UNDERLAY_GW_MAC = "52:54:00:00:00:fe"
POD_A_MAC = "02:00:0a:01:01:03"
POD_B_MAC = "02:00:0a:01:01:04"
NODE1 = "192.168.0.11"
NODE2 = "192.168.0.12"
NODE3 = "192.168.0.13"
NODE4 = "192.168.0.14"
GATEWAY = "10.1.1.1"
POD_A = "10.1.1.3"
POD_B = "10.1.1.4"
REMOTE_POD = "10.1.1.5"
VIP = "10.96.0.10"
MPLS_OVER_UDP_PORT = 6635
ENTROPY_PORT_MIN = 49152
ECMP_FLOWS = 300
#: ECMP members of 05/06: underlay destination -> the label that node advertised.
ECMP_MEMBERS = {NODE2: 25, NODE3: 26, NODE4: 27}
REMOVED_MEMBER = NODE3  # slot 1 in 06


class CheckFailed(Exception):
    pass


def fail(message):
    raise CheckFailed(message)


def expect(condition, message):
    if not condition:
        fail(message)


def eq(actual, expected, what):
    if actual != expected:
        fail("%s: expected %r, got %r" % (what, expected, actual))


# ---------------------------------------------------------------- pcap files

class Frame:
    """One captured frame: its bytes, its time (ns since the epoch) and where it came from."""

    def __init__(self, data, time_ns, file, index):
        self.data = data
        self.time_ns = time_ns
        self.file = file
        self.index = index  # 1-based, as tshark numbers frames
        self._pkt = None

    @property
    def pkt(self):
        if self._pkt is None:
            self._pkt = Ether(self.data)
        return self._pkt

    def __str__(self):
        shown = os.path.relpath(self.file, HERE) if self.file.startswith(HERE + os.sep) else self.file
        return "%s frame %d" % (shown, self.index)


def read_pcap(path, classic_only):
    """Reads a pcap with no help from the vrouter's code; checks it is classic pcap of Ethernet."""
    with open(path, "rb") as f:
        blob = f.read()
    expect(len(blob) >= 24, "%s: shorter than a pcap file header" % path)
    magics = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
              b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}
    magic = blob[:4]
    if magic not in magics:
        expect(not classic_only, "%s: not a classic pcap file (magic %s)" % (path, magic.hex()))
        fail("%s: unsupported capture format (magic %s)" % (path, magic.hex()))
    endian, ns_per_unit = magics[magic]
    major, minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack(endian + "HHiIII", blob[4:24])
    eq((major, minor), (2, 4), "%s: pcap version" % path)
    eq(linktype, 1, "%s: link type (1 = Ethernet)" % path)
    frames, offset = [], 24
    while offset < len(blob):
        expect(offset + 16 <= len(blob), "%s: truncated record header at byte %d" % (path, offset))
        sec, frac, caplen, wirelen = struct.unpack(endian + "IIII", blob[offset:offset + 16])
        expect(caplen <= wirelen, "%s: record %d captured %d > original %d" % (path, len(frames) + 1, caplen, wirelen))
        data = blob[offset + 16:offset + 16 + caplen]
        expect(len(data) == caplen, "%s: truncated record %d" % (path, len(frames) + 1))
        frames.append(Frame(data, sec * 1_000_000_000 + frac * ns_per_unit, path, len(frames) + 1))
        offset += 16 + caplen
    return frames


# ---------------------------------------------------------------- checksums

def inet_checksum(data):
    """RFC 1071, written here so it depends on neither scapy nor the vrouter."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def with_ttl(ip_bytes, ttl):
    """An IPv4 packet with another TTL and its header checksum recomputed from scratch."""
    ihl = (ip_bytes[0] & 0x0F) * 4
    header = bytearray(ip_bytes[:ihl])
    header[8] = ttl
    header[10:12] = b"\x00\x00"
    header[10:12] = struct.pack("!H", inet_checksum(bytes(header)))
    return bytes(header) + ip_bytes[ihl:]


def ip_bytes_of(frame_bytes):
    """The IPv4 packet of an Ethernet frame (one optional 802.1Q tag), cut at its total length."""
    l3 = 18 if frame_bytes[12:14] == b"\x81\x00" else 14
    total = struct.unpack("!H", frame_bytes[l3 + 2:l3 + 4])[0]
    return frame_bytes[l3:l3 + total]


def ip_layers(pkt):
    """Every real IPv4 layer of a decoded frame (outer and tunnelled; not an ICMP error's quote)."""
    layer, found = pkt, []
    while layer is not None and layer.name != "NoPayload":
        if type(layer) is IP:
            found.append(layer)
        layer = layer.payload if layer.payload.name != "NoPayload" else None
    return found


def verify_checksums(frame):
    """Every IPv4 header checksum and every non-zero UDP/TCP/ICMP checksum, recomputed with scapy and by hand."""
    layers = ip_layers(frame.pkt)
    for depth, layer in enumerate(layers):
        raw = bytes(layer)
        position = "" if len(layers) == 1 else "outer " if depth == 0 else "inner "
        where = "%s: %sIPv4 %s > %s" % (frame, position, layer.src, layer.dst)
        ihl = layer.ihl * 4
        total = layer.len
        expect(len(raw) >= total, "%s: total length %d beyond the %d bytes present" % (where, total, len(raw)))
        fresh = IP(raw)
        del fresh.chksum
        eq(layer.chksum, IP(bytes(fresh)).chksum, where + " checksum (scapy recomputed)")
        eq(inet_checksum(raw[:ihl]), 0, where + " checksum (RFC 1071 over the header)")
        if layer.frag != 0 or layer.flags.MF:
            continue
        l4 = raw[ihl:total]
        proto = layer.proto
        if proto in (6, 17) and not (proto == 17 and layer[UDP].chksum == 0):
            cls = TCP if proto == 6 else UDP
            fresh = IP(raw[:total])
            del fresh[cls].chksum
            recomputed = IP(bytes(fresh))[cls].chksum
            eq(layer[cls].chksum, recomputed, "%s %s checksum (scapy recomputed)" % (where, cls.__name__))
            pseudo = struct.pack("!4s4sBBH", raw[12:16], raw[16:20], 0, proto, len(l4))
            eq(inet_checksum(pseudo + l4), 0, "%s %s checksum (RFC 1071 with the pseudo-header)" % (where, cls.__name__))
        elif proto == 1:
            header = ICMP(l4[:8])
            del header.chksum
            recomputed = ICMP(bytes(header / Raw(l4[8:]))).chksum
            eq(layer[ICMP].chksum, recomputed, where + " ICMP checksum (scapy recomputed)")
            eq(inet_checksum(l4), 0, where + " ICMP checksum (RFC 1071)")


TSHARK_STATUS = {"0": "Bad", "4": "Illegal"}


def tshark_checksums(path):
    """Wireshark's own verdict on every IPv4/UDP/TCP/ICMP checksum of a file (status 0 = Bad, 1 Good, 2 Unverified, 3 Not present)."""
    fields = ["ip.checksum.status", "udp.checksum.status", "tcp.checksum.status", "icmp.checksum.status"]
    command = ["tshark", "-r", path, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
               "-o", "tcp.check_checksum:TRUE", "-T", "fields", "-e", "frame.number", "-e", "_ws.malformed"]
    for field in fields:
        command += ["-e", field]
    result = subprocess.run(command, capture_output=True, text=True)
    eq(result.returncode, 0, "tshark -r %s exit status (stderr: %s)" % (path, result.stderr.strip()[-300:]))
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    for line in lines:
        columns = line.split("\t")
        number, malformed, statuses = columns[0], columns[1], columns[2:]
        expect(malformed == "", "tshark: %s frame %s is malformed" % (path, number))
        for field, values in zip(fields, statuses):
            for value in filter(None, values.split(",")):
                expect(value not in TSHARK_STATUS, "tshark: %s frame %s: %s is %s" % (path, number, field, TSHARK_STATUS.get(value)))
    return len(lines)


# ---------------------------------------------------------------- fixtures

class Fixture:
    def __init__(self, folder):
        self.dir = os.path.abspath(folder)
        self.name = os.path.basename(self.dir)
        self.inputs = {}
        in_dir = os.path.join(self.dir, "in")
        expect(os.path.isdir(in_dir), "%s: no in/ folder (run make_inputs.py)" % self.name)
        for file in sorted(os.listdir(in_dir)):
            if file.endswith(".pcap"):
                self.inputs[file[:-5]] = read_pcap(os.path.join(in_dir, file), classic_only=True)
        self.expected_dir = os.path.join(self.dir, "expected")
        expect(os.path.isdir(self.expected_dir), "%s: no expected/ folder (run npm run fixtures:update)" % self.name)
        self.outputs = {}
        for file in sorted(os.listdir(self.expected_dir)):
            if file.endswith(".pcap"):
                self.outputs[file[:-5]] = read_pcap(os.path.join(self.expected_dir, file), classic_only=True)
        summary = os.path.join(self.expected_dir, "summary.json")
        expect(os.path.isfile(summary), "%s: no expected/summary.json" % self.name)
        with open(summary) as f:
            self.summary = json.load(f)
        self.state_text = open(os.path.join(self.dir, "state.yaml")).read()

    def out(self, vif):
        return self.outputs.get(vif, [])

    def input(self, vif, index):
        """Input frame `index` (1-based) of a vif."""
        return self.inputs[vif][index - 1]


def report(fixture, group, detail):
    print("ok    %-26s %-18s %s" % (fixture.name, group, detail))


def drop_reason_names():
    with open(DROP_REASONS_TS) as f:
        text = f.read()
    body = text[text.index("DROP_REASONS = ["):text.index("] as const")]
    return re.findall(r"'([a-z0-9-]+)'", body)


def check_common(fx, intent):
    """What holds for every fixture: files, the state file's comment, checksums, counters."""
    expect(fx.state_text.startswith("#"), "%s: state.yaml must start with a # comment saying what it shows" % fx.name)
    eq(sorted(fx.outputs), sorted(intent["tx"]), "%s: expected/ pcaps (one per vif that sent something)" % fx.name)
    for vif, count in intent["tx"].items():
        eq(len(fx.out(vif)), count, "%s: frames sent on %s" % (fx.name, vif))
    report(fx, "files", "outputs %s" % (", ".join("%s %d" % item for item in sorted(intent["tx"].items())) or "none"))

    frames = [frame for vif in sorted(fx.outputs) for frame in fx.outputs[vif]]
    for frame in frames:
        verify_checksums(frame)
    report(fx, "checksums", "%d frames, every IPv4 header and non-zero L4 checksum valid" % len(frames))

    if shutil.which("tshark"):
        count = sum(tshark_checksums(os.path.join(fx.expected_dir, vif + ".pcap")) for vif in sorted(fx.outputs))
        report(fx, "tshark", "%d frames, no Bad/Illegal checksum, nothing malformed" % count)

    s = fx.summary
    known = drop_reason_names()
    for reason in intent["drops"]:
        expect(reason in known, "checks.py: drop reason %r is not in src/dataplane/drop-reasons.ts %s" % (reason, known))
    eq(s["drops"], intent["drops"], "%s: summary.json drops" % fx.name)
    received = sum(len(frames) for frames in fx.inputs.values())
    transmitted = sum(intent["tx"].values())
    dropped = sum(intent["drops"].values())
    generated = intent.get("generated", 0)
    held = intent.get("held", 0)
    eq(s["packets"], {"received": received, "transmitted": transmitted, "dropped": dropped, "generated": generated, "held": held},
       "%s: summary.json packets" % fx.name)
    eq(received + generated, transmitted + dropped + held, "%s: received + generated = transmitted + dropped + held" % fx.name)
    for vif in fx.inputs:
        expect(vif in s["vifs"], "%s: summary.json has no vif %s, which received frames" % (fx.name, vif))
    for vif, counters in s["vifs"].items():
        ins, outs = fx.inputs.get(vif, []), fx.out(vif)
        want = {"rxPackets": len(ins), "rxBytes": sum(len(f.data) for f in ins),
                "txPackets": len(outs), "txBytes": sum(len(f.data) for f in outs)}
        got = {key: counters.get(key) for key in want}
        eq(got, want, "%s: summary.json vifs.%s counters" % (fx.name, vif))
    report(fx, "summary", "received %d, transmitted %d, dropped %d, generated %d, drops %s"
           % (received, transmitted, dropped, generated, json.dumps(intent["drops"], sort_keys=True)))

    # Every IPv4 header the vrouter writes itself (tunnel outer headers, ICMP errors) takes its
    # identification from one per-run counter starting at 1, in the order packets were processed
    # (outputs carry their input's timestamp, and inputs are replayed in timestamp order).
    # (intent "own": the addresses this node writes headers from, when the fixture's node is not node1.)
    own_sources = intent.get("own", (NODE1, GATEWAY))
    own = sorted((frame.time_ns, vif, frame.index, frame.pkt[IP].id) for vif in fx.outputs for frame in fx.outputs[vif]
                 if IP in frame.pkt and (frame.pkt[IP].src in own_sources))
    ids = [item[3] for item in own]
    eq(ids, list(range(1, len(ids) + 1)), "%s: IP ids of the headers the vrouter wrote, in processing order" % fx.name)
    if ids:
        report(fx, "ip-ids", "%d headers written by the vrouter, ids 1..%d in order" % (len(ids), len(ids)))


def same_time(out, inp):
    eq(out.time_ns, inp.time_ns, "%s: timestamp (the input frame's, %s)" % (out, inp))


def check_delivered(out, inp, dst_mac, ttl_drop):
    """`out` is `inp`'s IPv4 packet delivered to a pod: fresh Ethernet header from the vrouter MAC, TTL down by ttl_drop."""
    p, q = out.pkt, Ether(inp.data)
    eq(p.dst, dst_mac, "%s: Ethernet destination (the pod's MAC)" % out)
    eq(p.src, VROUTER_MAC, "%s: Ethernet source (the vrouter MAC)" % out)
    eq(p.type, 0x0800, "%s: ethertype" % out)
    expect(Dot1Q not in p, "%s: delivered to a pod with an 802.1Q tag" % out)
    sent = q[MPLS][IP] if MPLS in q else q[IP]  # a tunnelled input: its inner packet
    got = p[IP]
    for field in ("src", "dst", "proto", "id", "tos", "flags", "frag", "ihl", "len"):
        eq(getattr(got, field), getattr(sent, field), "%s: IPv4 %s" % (out, field))
    eq(got.ttl, sent.ttl - ttl_drop, "%s: IPv4 TTL (sent %d)" % (out, sent.ttl))
    for cls in (UDP, TCP):
        if cls in sent:
            for field in ("sport", "dport", "chksum"):
                eq(getattr(got[cls], field), getattr(sent[cls], field), "%s: %s %s" % (out, cls.__name__, field))
    if ICMP in sent:
        for field in ("type", "code", "id", "seq", "chksum"):
            eq(getattr(got[ICMP], field), getattr(sent[ICMP], field), "%s: ICMP %s" % (out, field))
    sent_ip = bytes(sent)[:sent.len]
    eq(len(out.data), 14 + sent.len, "%s: frame length (Ethernet header + IPv4 total length, no padding)" % out)
    eq(out.data[14:], with_ttl(sent_ip, sent.ttl - ttl_drop), "%s: IPv4 packet bytes" % out)
    same_time(out, inp)


def check_tunnelled(out, inp, dip, label, encap):
    """`out` is `inp` (a pod's frame) tunnelled to `dip`: RFC 7510 MPLS over UDP or MPLS over GRE, TTL down by one."""
    p = out.pkt
    sent = Ether(inp.data)[IP]
    eq(p.dst, UNDERLAY_GW_MAC, "%s: outer Ethernet destination (node.underlayGatewayMac)" % out)
    eq(p.src, FABRIC_MAC, "%s: outer Ethernet source (the fabric vif's MAC)" % out)
    eq(p.type, 0x0800, "%s: outer ethertype" % out)
    outer = p[IP]
    eq(outer.version, 4, "%s: outer IPv4 version" % out)
    eq(outer.ihl, 5, "%s: outer IPv4 IHL" % out)
    eq(outer.src, NODE1, "%s: outer IPv4 source (this node's underlay IP)" % out)
    eq(outer.dst, dip, "%s: outer IPv4 destination" % out)
    eq(outer.ttl, 64, "%s: outer IPv4 TTL" % out)
    expect(not outer.flags.DF, "%s: outer IPv4 DF set (must be clear)" % out)
    expect(not outer.flags.MF and outer.frag == 0, "%s: outer IPv4 is a fragment" % out)
    eq(outer.len, len(out.data) - 14, "%s: outer IPv4 total length" % out)
    if encap == "udp":
        eq(outer.proto, 17, "%s: outer IPv4 protocol" % out)
        u = p[UDP]
        eq(u.dport, MPLS_OVER_UDP_PORT, "%s: UDP destination port" % out)
        expect(ENTROPY_PORT_MIN <= u.sport <= 65535, "%s: UDP source port %d outside %d-65535" % (out, u.sport, ENTROPY_PORT_MIN))
        eq(u.chksum, 0, "%s: UDP checksum (0, RFC 7510 over IPv4)" % out)
        eq(u.len, outer.len - 20, "%s: UDP length" % out)
        expect(isinstance(u.payload, MPLS), "%s: UDP payload not decoded as MPLS" % out)
        m = u.payload
        sport = u.sport
    else:
        eq(outer.proto, 47, "%s: outer IPv4 protocol (GRE)" % out)
        g = p[GRE]
        raw_gre = bytes(outer)[20:24]
        eq(raw_gre, b"\x00\x00\x88\x47", "%s: GRE header (flags 0, version 0, protocol 0x8847, no key)" % out)
        expect(isinstance(g.payload, MPLS), "%s: GRE payload not decoded as MPLS" % out)
        m = g.payload
        sport = None
    eq(m.label, label, "%s: MPLS label" % out)
    eq(m.s, 1, "%s: MPLS bottom-of-stack bit" % out)
    eq(m.cos, 0, "%s: MPLS EXP" % out)
    inner = m.payload
    expect(type(inner) is IP, "%s: MPLS payload not IPv4" % out)
    eq(inner.ttl, sent.ttl - 1, "%s: inner IPv4 TTL (sent %d, one hop)" % (out, sent.ttl))
    eq(m.ttl, inner.ttl, "%s: MPLS TTL (= inner TTL)" % out)
    for field in ("src", "dst", "proto", "id", "tos", "flags", "frag", "ihl", "len"):
        eq(getattr(inner, field), getattr(sent, field), "%s: inner IPv4 %s" % (out, field))
    for cls in (UDP, TCP):
        if cls in sent:
            for field in ("sport", "dport", "chksum"):
                eq(getattr(inner[cls], field), getattr(sent[cls], field), "%s: inner %s %s" % (out, cls.__name__, field))
    sent_ip = bytes(sent)[:sent.len]
    eq(bytes(inner)[:inner.len], with_ttl(sent_ip, sent.ttl - 1), "%s: inner IPv4 packet bytes" % out)
    eq(len(bytes(inner)), inner.len, "%s: bytes after the inner packet" % out)
    same_time(out, inp)
    return sport


def by_inner_id(frames):
    """Frames keyed by their innermost IPv4 (src, dst, id)."""
    index = {}
    for frame in frames:
        layers = ip_layers(frame.pkt)
        expect(layers, "%s: no IPv4 packet" % frame)
        ip = layers[-1]
        key = (ip.src, ip.dst, ip.id)
        expect(key not in index, "%s: same IPv4 src/dst/id as %s" % (frame, index.get(key)))
        index[key] = frame
    return index


def sent_key(frame):
    ip = ip_layers(Ether(frame.data))[-1]
    return (ip.src, ip.dst, ip.id)


def match(fx, out_vif, in_frames):
    """The output frame on out_vif for each input frame, by inner IPv4 (src, dst, id)."""
    index = by_inner_id(fx.out(out_vif))
    found = []
    for inp in in_frames:
        key = sent_key(inp)
        expect(key in index, "%s: %s (%s > %s id %d) did not come out on %s" % (fx.name, inp, key[0], key[1], key[2], out_vif))
        found.append(index[key])
    return found


# ---------------------------------------------------------------- scenarios

def check_01(fx):
    check_common(fx, {"tx": {"pod-a": 3, "pod-b": 3}, "drops": {}})
    for src, dst, mac in (("pod-a", "pod-b", POD_B_MAC), ("pod-b", "pod-a", POD_A_MAC)):
        for out, inp in zip(match(fx, dst, fx.inputs[src]), fx.inputs[src]):
            check_delivered(out, inp, mac, ttl_drop=1)
        eq([f.time_ns for f in fx.out(dst)], sorted(f.time_ns for f in fx.out(dst)), "%s: %s output order" % (fx.name, dst))
    report(fx, "local-forward", "UDP, TCP SYN/SYN-ACK (DF kept, padding trimmed), ICMP echo both ways: TTL 64 -> 63, MACs rewritten")


def check_02(fx):
    check_common(fx, {"tx": {"eth0": 3}, "drops": {}})
    ports = []
    for out, inp in zip(match(fx, "eth0", fx.inputs["pod-a"]), fx.inputs["pod-a"]):
        ports.append(check_tunnelled(out, inp, NODE2, 25, "udp"))
    report(fx, "mpls-over-udp", "3 frames to %s label 25: outer TTL 64 DF clear, UDP 6635 from %s, checksum 0, MPLS TTL = inner TTL = 63"
           % (NODE2, ports))


def check_03(fx):
    check_common(fx, {"tx": {"pod-a": 2, "pod-b": 1}, "drops": {}})
    label_to_pod = {17: ("pod-a", POD_A_MAC), 18: ("pod-b", POD_B_MAC)}
    ports = set()
    for inp in fx.inputs["eth0"]:
        q = Ether(inp.data)
        ports.add(q[UDP].dport)
        vif, mac = label_to_pod[q[MPLS].label]
        [out] = match(fx, vif, [inp])
        # The sending node decremented the TTL: the receiving node delivers the inner packet as it came.
        check_delivered(out, inp, mac, ttl_drop=0)
    eq(ports, {6635, 51234}, "%s: input UDP ports (fixture)" % fx.name)
    report(fx, "decap", "MPLS over UDP on 6635 and 51234: label 17 -> pod-a, 18 -> pod-b, inner packet delivered byte for byte (TTL 63)")


def check_04(fx):
    check_common(fx, {"tx": {"eth0": 3, "pod-a": 1}, "drops": {}})
    routes = {"10.1.1.6": (NODE3, 26, "gre"), "10.1.1.7": (NODE3, 28, "gre"), "10.1.1.8": (NODE4, 27, "udp")}
    for out, inp in zip(match(fx, "eth0", fx.inputs["pod-a"]), fx.inputs["pod-a"]):
        dip, label, encap = routes[Ether(inp.data)[IP].dst]
        check_tunnelled(out, inp, dip, label, encap)
    report(fx, "encap", "gre-only and udp+gre routes over GRE (priority [gre, udp]), udp-only route over UDP")
    [inp] = fx.inputs["eth0"]
    [out] = match(fx, "pod-a", [inp])
    check_delivered(out, inp, POD_A_MAC, ttl_drop=0)
    report(fx, "decap", "MPLS over GRE label 17 -> pod-a, inner packet delivered byte for byte")


def ecmp_assignments(fx):
    """Per flow (inner UDP source port): the set of (member, label) and the set of entropy ports its packets used."""
    outs = match(fx, "eth0", fx.inputs["pod-a"])
    flows = {}
    for out, inp in zip(outs, fx.inputs["pod-a"]):
        outer = out.pkt[IP]
        expect(outer.dst in ECMP_MEMBERS, "%s: outer destination %s is no ECMP member" % (out, outer.dst))
        label = ECMP_MEMBERS[outer.dst]
        sport = check_tunnelled(out, inp, outer.dst, label, "udp")
        expect(out.pkt[MPLS][IP].dst == VIP, "%s: inner destination must stay the VIP" % out)
        flow = Ether(inp.data)[UDP].sport
        members, ports = flows.setdefault(flow, (set(), set()))
        members.add(outer.dst)
        ports.add(sport)
    eq(len(flows), ECMP_FLOWS, "%s: flows seen" % fx.name)
    for flow, (members, ports) in sorted(flows.items()):
        expect(len(members) == 1, "%s: flow from port %d used several members %s" % (fx.name, flow, sorted(members)))
        expect(len(ports) == 1, "%s: flow from port %d used several UDP source ports %s" % (fx.name, flow, sorted(ports)))
    return {flow: (next(iter(members)), next(iter(ports))) for flow, (members, ports) in flows.items()}


def spread(assignments, members):
    return {member: sum(1 for m, _ in assignments.values() if m == member) for member in members}


def compare_after_member_removal(fx, flows, before_name, assign, removed):
    """fx's ECMP flows ({source port: (member, entropy port)}) against fixture
    before_name: the same inputs with `removed` still a member. A flow whose
    member stayed keeps it; every flow keeps its entropy port. Returns the
    earlier fixture, its assignments and the members the removed one's flows
    moved to (one entry per flow)."""
    before_fx = Fixture(os.path.join(os.path.dirname(fx.dir), before_name))
    eq([f.data for f in fx.inputs["pod-a"]], [f.data for f in before_fx.inputs["pod-a"]],
       "%s: inputs identical to %s's (fixture)" % (fx.name, before_name))
    before = assign(before_fx)
    moved = []
    for sport, (member, port) in sorted(flows.items()):
        old_member, old_port = before[sport]
        if old_member != removed:
            eq(member, old_member, "%s: the flow from port %d changed member although its member %s stayed" % (fx.name, sport, old_member))
        else:
            moved.append(member)
        eq(port, old_port, "%s: the flow from port %d changed its entropy port since %s" % (fx.name, sport, before_name))
    return before_fx, before, moved


def check_05(fx):
    check_common(fx, {"tx": {"eth0": 2 * ECMP_FLOWS}, "drops": {}})
    flows = ecmp_assignments(fx)
    report(fx, "tunnel-headers", "600 frames, each a valid MPLS over UDP frame to its member's node with its label")
    counts = spread(flows, ECMP_MEMBERS)
    for member, count in counts.items():
        share = count / ECMP_FLOWS
        expect(0.25 <= share <= 0.42, "%s: member %s got %d of %d flows (%.0f%%), outside 25%%-42%%" % (fx.name, member, count, ECMP_FLOWS, 100 * share))
    report(fx, "ecmp-spread", "flows per member %s" % counts)
    ports = set(port for _, port in flows.values())
    expect(len(ports) >= 0.95 * ECMP_FLOWS, "%s: only %d distinct UDP source ports for %d flows" % (fx.name, len(ports), ECMP_FLOWS))
    report(fx, "ecmp-sticky", "both packets of each flow on one member and one source port; %d distinct source ports" % len(ports))


def check_06(fx):
    check_common(fx, {"tx": {"eth0": 2 * ECMP_FLOWS}, "drops": {}})
    flows = ecmp_assignments(fx)
    report(fx, "tunnel-headers", "600 frames, each a valid MPLS over UDP frame to its member's node with its label")
    counts = spread(flows, ECMP_MEMBERS)
    eq(counts[REMOVED_MEMBER], 0, "%s: flows sent to the removed member %s" % (fx.name, REMOVED_MEMBER))
    report(fx, "ecmp-removed", "nothing to %s; flows per member %s" % (REMOVED_MEMBER, counts))

    _, _, moved = compare_after_member_removal(fx, flows, "05-ecmp-three-members", ecmp_assignments, REMOVED_MEMBER)
    expect(moved, "%s: no flow was on the removed member in 05 (fixture too small)" % fx.name)
    landed = {member: moved.count(member) for member in sorted(set(moved))}
    if len(moved) >= 10:
        expect(len(landed) == 2, "%s: the %d flows of the removed member all went to %s" % (fx.name, len(moved), landed))
    report(fx, "ecmp-stable", "%d flows kept their member and port; %d from %s re-spread %s"
           % (ECMP_FLOWS - len(moved), len(moved), REMOVED_MEMBER, landed))


def check_07(fx):
    # Answered: pod-a asking for a local VN address, the gateway, a remote VN address; pod-b asking for pod-a.
    answered = {"pod-a": [(1, POD_B), (2, GATEWAY), (3, REMOTE_POD)], "pod-b": [(1, POD_A)]}
    silent = ["pod-a's gratuitous ARP for its own IP", "pod-a's RFC 5227 probe for its own IP (sender 0.0.0.0)",
              "a request for an address outside the VN", "an ARP reply", "a request from the fabric"]
    for vif, replies in answered.items():
        asked = [fx.input(vif, i).pkt[ARP].pdst for i, _ in replies]
        got = [(f.pkt[ARP].psrc if ARP in f.pkt else "?", f.pkt[ARP].pdst if ARP in f.pkt else "?") for f in fx.out(vif)]
        if len(fx.out(vif)) != len(replies):
            fail("%s: %d ARP replies on %s, expected %d (for %s); got replies (psrc, pdst) %s"
                 % (fx.name, len(fx.out(vif)), vif, len(replies), asked, got))
    check_common(fx, {"tx": {vif: len(r) for vif, r in answered.items()}, "drops": {"arp-not-proxied": len(silent)}})
    for vif, replies in answered.items():
        for out, (index, target) in zip(fx.out(vif), replies):
            req = fx.input(vif, index)
            r, q = out.pkt, Ether(req.data)
            eq(len(out.data), 42, "%s: ARP reply length" % out)
            eq(r.dst, q.src, "%s: Ethernet destination (the requester)" % out)
            eq(r.src, VROUTER_MAC, "%s: Ethernet source" % out)
            eq(r.type, 0x0806, "%s: ethertype" % out)
            a = r[ARP]
            eq((a.hwtype, a.ptype, a.hwlen, a.plen), (1, 0x0800, 6, 4), "%s: ARP hardware/protocol types and lengths" % out)
            eq(a.op, 2, "%s: ARP op (reply)" % out)
            eq(a.hwsrc, VROUTER_MAC, "%s: ARP sender MAC" % out)
            eq(a.psrc, target, "%s: ARP sender IP (the asked address)" % out)
            eq(a.hwdst, q[ARP].hwsrc, "%s: ARP target MAC (the requester)" % out)
            eq(a.pdst, q[ARP].psrc, "%s: ARP target IP (the requester)" % out)
            same_time(out, req)
    report(fx, "arp-replies", "4 replies (VN address, gateway, remote VN address, from pod-b), 42 bytes from 00:00:5e:00:01:00; silent for: %s"
           % "; ".join(silent))


def check_08(fx):
    check_common(fx, {"tx": {}, "drops": {"no-route": 4}})
    report(fx, "no-route", "unrouted subnet address, outside address, vn1 -> vn2 and vn2 -> vn1: all dropped, nothing sent")


def check_icmp_time_exceeded(out, inp):
    r, sent = out.pkt, Ether(inp.data)[IP]
    eq(r.dst, Ether(inp.data).src, "%s: Ethernet destination (the sender pod)" % out)
    eq(r.src, VROUTER_MAC, "%s: Ethernet source" % out)
    ip = r[IP]
    eq(ip.src, GATEWAY, "%s: IPv4 source (the VN's gateway)" % out)
    eq(ip.dst, sent.src, "%s: IPv4 destination (the sender)" % out)
    eq(ip.proto, 1, "%s: IPv4 protocol" % out)
    expect(ip.ttl >= 32, "%s: IPv4 TTL %d of a fresh ICMP error" % (out, ip.ttl))
    expect(not ip.flags.MF and ip.frag == 0, "%s: ICMP error fragmented" % out)
    eq(len(out.data), 14 + ip.len, "%s: frame length" % out)
    icmp = r[ICMP]
    eq((icmp.type, icmp.code), (11, 0), "%s: ICMP type/code (time exceeded in transit)" % out)
    quote = bytes(ip)[ip.ihl * 4 + 8:ip.len]
    original = bytes(sent)[:sent.len]
    eq(bytes(ip)[ip.ihl * 4 + 4:ip.ihl * 4 + 8], b"\x00" * 4, "%s: ICMP unused field" % out)
    need = sent.ihl * 4 + 8
    expect(len(quote) >= need, "%s: quotes %d bytes, needs the header and 8 bytes (%d)" % (out, len(quote), need))
    eq(quote, original[:len(quote)], "%s: quoted bytes (the original header as received, then its data)" % out)
    expect(ip.len <= 576, "%s: ICMP error longer than 576 bytes" % out)
    same_time(out, inp)


def check_09(fx):
    # The TTL-1 ICMP error quotes a packet of no flow: the flow table drops it before any TTL check.
    check_common(fx, {"tx": {"pod-a": 3, "pod-b": 1, "eth0": 1},
                      "drops": {"ttl-expired": 2, "icmp-error-no-flow": 1, "mpls-ttl-expired": 1}, "generated": 2})
    errors = [f for f in fx.out("pod-a") if f.pkt[IP].proto == 1]
    eq(len(errors), 2, "%s: ICMP errors on pod-a (for the UDP and the echo with TTL 1; none for the ICMP error)" % fx.name)
    for out, index in zip(errors, (1, 2)):
        check_icmp_time_exceeded(out, fx.input("pod-a", index))
    report(fx, "time-exceeded", "ICMP 11/0 from %s for the TTL-1 UDP and echo, quoting header + 8 bytes; none for an ICMP error" % GATEWAY)
    [local] = match(fx, "pod-b", [fx.input("pod-a", 4)])
    check_delivered(local, fx.input("pod-a", 4), POD_B_MAC, ttl_drop=1)
    [remote] = match(fx, "eth0", [fx.input("pod-a", 5)])
    check_tunnelled(remote, fx.input("pod-a", 5), NODE2, 25, "udp")
    report(fx, "ttl-2", "TTL 2 leaves with TTL 1: to pod-b, and to %s with MPLS TTL 1" % NODE2)
    mpls1, mpls2 = fx.inputs["eth0"]
    eq((Ether(mpls1.data)[MPLS].ttl, Ether(mpls2.data)[MPLS].ttl), (1, 2), "%s: input MPLS TTLs (fixture)" % fx.name)
    delivered = [f for f in fx.out("pod-a") if f.pkt[IP].proto != 1]
    eq([sent_key(f) for f in delivered], [sent_key(mpls2)], "%s: tunnelled packets delivered to pod-a (only the MPLS TTL 2 one)" % fx.name)
    check_delivered(delivered[0], mpls2, POD_A_MAC, ttl_drop=0)
    report(fx, "mpls-ttl", "MPLS TTL 1 dropped; MPLS TTL 2 (inner TTL 1) delivered unchanged")


def check_10(fx):
    check_common(fx, {"tx": {}, "drops": {
        "truncated": 3,  # cut Ethernet header, IPv4 header cut at 12 bytes, total length beyond the frame
        "bad-ip-header": 1,  # IHL 4
        "bad-checksum": 1,
        "invalid-mpls-stack": 1,  # label without the S bit
        "invalid-label": 2,  # unknown label 999, reserved label 3
        "bad-gre-header": 1,  # GRE with the key flag
        "ipv6-unsupported": 1,  # an IPv6 ESP packet (next header 50)
        "unknown-ethertype": 1,
        "not-for-vrouter": 2,  # UDP to this node on port 9999, MPLS over UDP to another node's IP
    }})
    report(fx, "drops", "13 malformed or foreign frames, each under its reason, nothing sent")


def check_11(fx):
    check_common(fx, {"tx": {"pod-b": 2, "eth0": 2}, "drops": {}})
    sent = fx.inputs["pod-a"]
    eq([Dot1Q in Ether(f.data) for f in sent], [True, False, True, False], "%s: inputs tagged (fixture)" % fx.name)
    eq([Ether(f.data)[IP].ihl for f in sent], [5, 6, 5, 8], "%s: input IHLs (fixture)" % fx.name)
    for out, inp in zip(match(fx, "pod-b", sent[:2]), sent[:2]):
        check_delivered(out, inp, POD_B_MAC, ttl_drop=1)
    for out, inp in zip(match(fx, "eth0", sent[2:]), sent[2:]):
        check_tunnelled(out, inp, NODE2, 25, "udp")
    report(fx, "forwarded", "802.1Q-tagged frame delivered untagged and tunnelled; IPv4 options (router alert IHL 6, record route IHL 8) kept byte for byte")


# ---------------------------------------------------------------- 12-22: ClusterIP NAT, flows, policy, source checks

NODE2_FABRIC_MAC = "52:54:00:00:00:12"
POD_C = "10.2.2.3"
POD_C_MAC = "02:00:0a:02:02:03"
BACKEND = "10.1.2.5"  # web-1 (13) / dns-1 (17) on node2, label 40 there
BACKEND_MAC = "02:00:0a:01:02:05"
BACKEND_LABEL = 40
LOCAL_BACKEND = "10.1.2.6"  # dns-1 on node1 (14, 22)
LOCAL_BACKEND_MAC = "02:00:0a:01:02:06"
POD_A_LABEL = 17
CLIENT_PORT = 41000  # pod-a's port in 12/13
TCP_FLAG_NAMES = {0x02: "S", 0x12: "SA", 0x10: "A", 0x18: "PA", 0x11: "FA", 0x04: "R"}


def ip_packet(frame_bytes):
    """The IPv4 packet a frame carries (innermost for a tunnel), cut at its total length."""
    pkt = Ether(frame_bytes)
    inner = pkt[MPLS].payload if MPLS in pkt else pkt[IP]
    raw = bytes(inner)
    return raw[:struct.unpack("!H", raw[2:4])[0]]


def translated(ip_raw, src=None, dst=None, sport=None, dport=None, ttl_drop=0):
    """What a NAT'd packet must be: `ip_raw` with new addresses/ports, TTL lowered by ttl_drop, and its
    IPv4 and TCP/UDP checksums computed from scratch by scapy (a zero UDP checksum stays zero)."""
    p = IP(ip_raw)
    if src is not None:
        p.src = src
    if dst is not None:
        p.dst = dst
    p.ttl -= ttl_drop
    del p.chksum
    l4 = p[TCP] if TCP in p else p[UDP] if UDP in p else None
    if l4 is not None:
        if sport is not None:
            l4.sport = sport
        if dport is not None:
            l4.dport = dport
        if not (isinstance(l4, UDP) and l4.chksum == 0):
            del l4.chksum
    return bytes(IP(bytes(p)))


def same_ip(got, want, what):
    """Two IPv4 packets byte for byte; on a difference, names the first differing field."""
    if got == want:
        return
    g, w = IP(got), IP(want)
    for field in ("version", "ihl", "tos", "len", "id", "flags", "frag", "ttl", "proto", "chksum", "src", "dst"):
        eq(getattr(g, field), getattr(w, field), "%s: IPv4 %s" % (what, field))
    for cls, fields in ((TCP, ("sport", "dport", "seq", "ack", "flags", "window", "chksum")), (UDP, ("sport", "dport", "len", "chksum")),
                        (ICMP, ("type", "code", "chksum"))):
        if cls in w and g.frag == 0:
            expect(cls in g, "%s: no %s header" % (what, cls.__name__))
            for field in fields:
                eq(getattr(g[cls], field), getattr(w[cls], field), "%s: %s %s" % (what, cls.__name__, field))
    eq(len(got), len(want), "%s: IPv4 packet length" % what)
    at = next(i for i in range(len(want)) if got[i] != want[i])
    fail("%s: IPv4 packet bytes differ from offset %d (got %s, expected %s)" % (what, at, got[at:at + 8].hex(), want[at:at + 8].hex()))


def check_delivered_as(out, inp, dst_mac, want_ip):
    """`out` delivers the IPv4 packet `want_ip` to a pod: fresh Ethernet header from the vrouter MAC, nothing after the packet."""
    p = out.pkt
    eq(p.dst, dst_mac, "%s: Ethernet destination (the pod's MAC)" % out)
    eq(p.src, VROUTER_MAC, "%s: Ethernet source (the vrouter MAC)" % out)
    eq(p.type, 0x0800, "%s: ethertype" % out)
    eq(len(out.data), 14 + len(want_ip), "%s: frame length (Ethernet header + IPv4 total length, no padding)" % out)
    same_ip(out.data[14:], want_ip, str(out))
    same_time(out, inp)


def check_tunnel_outer(out, node, node_mac, dip, label):
    """The outer headers of an MPLS over UDP frame that node `node` sends to `dip`; returns (entropy port, inner IPv4 bytes)."""
    p = out.pkt
    eq(p.dst, UNDERLAY_GW_MAC, "%s: outer Ethernet destination (node.underlayGatewayMac)" % out)
    eq(p.src, node_mac, "%s: outer Ethernet source (the fabric vif's MAC)" % out)
    eq(p.type, 0x0800, "%s: outer ethertype" % out)
    outer = p[IP]
    eq((outer.version, outer.ihl, outer.proto), (4, 5, 17), "%s: outer IPv4 version, IHL, protocol" % out)
    eq(outer.src, node, "%s: outer IPv4 source (the node's underlay IP)" % out)
    eq(outer.dst, dip, "%s: outer IPv4 destination" % out)
    eq(outer.ttl, 64, "%s: outer IPv4 TTL" % out)
    expect(not outer.flags.DF and not outer.flags.MF and outer.frag == 0, "%s: outer IPv4 DF/MF/offset must be clear" % out)
    eq(outer.len, len(out.data) - 14, "%s: outer IPv4 total length" % out)
    u = p[UDP]
    eq(u.dport, MPLS_OVER_UDP_PORT, "%s: UDP destination port" % out)
    expect(ENTROPY_PORT_MIN <= u.sport <= 65535, "%s: UDP source port %d outside %d-65535" % (out, u.sport, ENTROPY_PORT_MIN))
    eq(u.chksum, 0, "%s: UDP checksum (0, RFC 7510 over IPv4)" % out)
    eq(u.len, outer.len - 20, "%s: UDP length" % out)
    expect(isinstance(u.payload, MPLS), "%s: UDP payload not decoded as MPLS" % out)
    m = u.payload
    eq((m.label, m.s, m.cos), (label, 1, 0), "%s: MPLS label, bottom-of-stack bit, EXP" % out)
    inner = out.data[14 + 20 + 8 + 4:]
    expect(len(inner) >= 20 and inner[0] >> 4 == 4, "%s: MPLS payload not IPv4" % out)
    eq(struct.unpack("!H", inner[2:4])[0], len(inner), "%s: inner IPv4 total length = the bytes after the MPLS header" % out)
    eq(m.ttl, inner[8], "%s: MPLS TTL (= inner TTL)" % out)
    return u.sport, inner


def by_ip_id(frames):
    """Frames keyed by their innermost IPv4 identification (unique in the fixtures that use it)."""
    index = {}
    for frame in frames:
        key = IP(ip_packet(frame.data)).id
        expect(key not in index, "%s: same IPv4 id %#x as %s" % (frame, key, index.get(key)))
        index[key] = frame
    return index


def match_id(fx, out_vif, in_frames):
    """The output frame on out_vif for each input frame, by IPv4 id (addresses change under NAT)."""
    index = by_ip_id(fx.out(out_vif))
    found = []
    for inp in in_frames:
        key = IP(ip_packet(inp.data)).id
        expect(key in index, "%s: %s (IPv4 id %#x) did not come out on %s" % (fx.name, inp, key, out_vif))
        found.append(index[key])
    return found


def load_flows(fx):
    path = os.path.join(fx.expected_dir, "flows.json")
    expect(os.path.isfile(path), "%s: no expected/flows.json" % fx.name)
    with open(path) as f:
        flows = json.load(f)
    eq(flows["activePairs"], len(flows["pairs"]), "%s: flows.json activePairs = number of pairs listed" % fx.name)
    return flows


def flow_key(entry):
    return (entry["protocol"], entry["src"], entry["srcPort"], entry["dst"], entry["dstPort"])


def flow_pairs(fx, flows):
    """flows.json pairs by their forward key (protocol, src, src port, dst, dst port); each pair's two entries linked."""
    pairs = {}
    for pair in flows["pairs"]:
        fwd, rev = pair["forward"], pair["reverse"]
        eq((fwd["reverseIndex"], rev["reverseIndex"]), (rev["index"], fwd["index"]), "%s: flows.json pair %s linked both ways" % (fx.name, flow_key(fwd)))
        expect(flow_key(fwd) not in pairs, "%s: flows.json lists %s twice" % (fx.name, flow_key(fwd)))
        pairs[flow_key(fwd)] = pair
    return pairs


def check_pair(fx, pairs, key, what, forward=None, reverse=None, **fields):
    """A flows.json pair: its reverse key, and fields of the forward / reverse entries and of the pair."""
    expect(key in pairs, "%s: flows.json has no pair %s (%s); it has %s" % (fx.name, key, what, sorted(pairs)))
    pair = pairs[key]
    for side, want in (("forward", forward or {}), ("reverse", reverse or {})):
        for field, value in want.items():
            got = flow_key(pair[side]) if field == "key" else pair[side][field]
            if field == "nat":
                got, value = sorted(got), sorted(value)
            eq(got, value, "%s: flows.json %s (%s) %s %s" % (fx.name, key, what, side, field))
    for field, value in fields.items():
        eq(pair[field], value, "%s: flows.json %s (%s) %s" % (fx.name, key, what, field))
    return pair


def tcp_flags(frame_bytes):
    flags = int(IP(ip_packet(frame_bytes))[TCP].flags)
    return TCP_FLAG_NAMES.get(flags, hex(flags))


def in_time_order(fx):
    """(vif, frame) of every input, in replay order."""
    return sorted(((vif, frame) for vif, frames in fx.inputs.items() for frame in frames), key=lambda item: item[1].time_ns)


def check_12(fx):
    check_common(fx, {"tx": {"eth0": 5, "pod-a": 3}, "drops": {}})
    order = [(vif, tcp_flags(frame.data)) for vif, frame in in_time_order(fx)]
    eq(order, [("pod-a", "S"), ("eth0", "SA"), ("pod-a", "A"), ("pod-a", "PA"), ("eth0", "PA"), ("pod-a", "FA"), ("eth0", "FA"), ("pod-a", "A")],
       "%s: the exchange (fixture): handshake, request, response, FIN / FIN-ACK / ACK" % fx.name)
    sent, replies = fx.inputs["pod-a"], fx.inputs["eth0"]
    for inp in sent:
        q = IP(ip_packet(inp.data))
        eq((q.src, q.dst, q[TCP].sport, q[TCP].dport), (POD_A, VIP, CLIENT_PORT, 80), "%s: pod-a's segment addresses (fixture)" % inp)
    for inp in replies:
        q = Ether(inp.data)
        eq((q[IP].src, q[IP].dst, q[MPLS].label), (NODE2, NODE1, POD_A_LABEL), "%s: node2's tunnel to pod-a's label (fixture)" % inp)
        r = IP(ip_packet(inp.data))
        eq((r.src, r.dst, r[TCP].sport, r[TCP].dport), (VIP, POD_A, 80, CLIENT_PORT), "%s: the reply comes from the ClusterIP (fixture)" % inp)

    ports = set()
    for out, inp in zip(match(fx, "eth0", sent), sent):
        # The ClusterIP stays the inner destination: the client node does no NAT.
        ports.add(check_tunnelled(out, inp, NODE2, BACKEND_LABEL, "udp"))
        inner = out.pkt[MPLS][IP]
        eq((inner.dst, inner[TCP].dport), (VIP, 80), "%s: inner destination (the ClusterIP and service port)" % out)
    eq(len(ports), 1, "%s: entropy ports of the connection's segments" % fx.name)
    report(fx, "to-clusterip", "5 segments tunnelled to %s label %d, inner destination %s:80 untouched, TTL 63, one entropy port %s"
           % (NODE2, BACKEND_LABEL, VIP, sorted(ports)))
    for out, inp in zip(match(fx, "pod-a", replies), replies):
        check_delivered(out, inp, POD_A_MAC, ttl_drop=0)
        got = out.pkt[IP]
        eq((got.src, got[TCP].sport), (VIP, 80), "%s: the reply's source (the ClusterIP and service port)" % out)
    for vif in fx.outputs:
        for out in fx.out(vif):
            inner = IP(ip_packet(out.data))
            expect(BACKEND not in (inner.src, inner.dst) and 8080 not in (inner[TCP].sport, inner[TCP].dport),
                   "%s: the backend's own address or port shows on the client node" % out)
    report(fx, "from-clusterip", "3 replies from %s:80 delivered to pod-a as node2 sent them (TTL 63); 10.1.2.5:8080 never seen" % VIP)
    flows = load_flows(fx)
    eq(flows["pairs"], [], "%s: flows.json pairs after FIN / FIN-ACK / last ACK (the pair must be gone)" % fx.name)
    report(fx, "flows", "flow table empty after the teardown")


def check_13(fx):
    check_common(fx, {"tx": {"web-1": 5, "eth0": 3}, "drops": {}, "own": (NODE2,)})
    order = [(vif, tcp_flags(frame.data)) for vif, frame in in_time_order(fx)]
    eq(order, [("eth0", "S"), ("web-1", "SA"), ("eth0", "A"), ("eth0", "PA"), ("web-1", "PA"), ("eth0", "FA"), ("web-1", "FA"), ("eth0", "A")],
       "%s: the exchange (fixture): handshake, request, response, FIN / FIN-ACK / ACK" % fx.name)
    tunnelled, replies = fx.inputs["eth0"], fx.inputs["web-1"]
    for inp in tunnelled:
        q = Ether(inp.data)
        eq((q.dst, q[IP].src, q[IP].dst, q[MPLS].label), (NODE2_FABRIC_MAC, NODE1, NODE2, BACKEND_LABEL), "%s: node1's tunnel to web-1's label (fixture)" % inp)
    for out, inp in zip(match_id(fx, "web-1", tunnelled), tunnelled):
        # DNAT + DPAT to the backend; no TTL change at the receiving node.
        want = translated(ip_packet(inp.data), dst=BACKEND, dport=8080)
        check_delivered_as(out, inp, BACKEND_MAC, want)
    report(fx, "dnat", "5 segments to %s:80 delivered to web-1 as %s:8080, TTL 63, IPv4 and TCP checksums updated" % (VIP, BACKEND))
    ports = set()
    for out, inp in zip(match_id(fx, "eth0", replies), replies):
        port, inner = check_tunnel_outer(out, NODE2, NODE2_FABRIC_MAC, NODE1, POD_A_LABEL)
        ports.add(port)
        same_ip(inner, translated(ip_packet(inp.data), src=VIP, sport=80, ttl_drop=1), str(out))
        same_time(out, inp)
    eq(len(ports), 1, "%s: entropy ports of the connection's replies" % fx.name)
    report(fx, "snat", "3 replies from web-1 leave from %s:80 (TTL 63, checksums updated), tunnelled to %s label %d" % (VIP, NODE1, POD_A_LABEL))

    # Two halves of one connection: what node1 sends (12's output) is what node2 receives here, and back.
    client = Fixture(os.path.join(os.path.dirname(fx.dir), "12-clusterip-tcp-client-node"))
    eq([ip_packet(f.data) for f in tunnelled], [ip_packet(f.data) for f in client.out("eth0")],
       "%s: inner packets received = 12's tunnelled output, byte for byte" % fx.name)
    eq({Ether(f.data)[IP].dst for f in client.out("eth0")}, {NODE2}, "%s: 12 tunnels to this node" % fx.name)
    eq([ip_packet(f.data) for f in fx.out("eth0")], [ip_packet(f.data) for f in client.inputs["eth0"]],
       "%s: inner packets sent = 12's fabric input, byte for byte" % fx.name)
    eq({Ether(f.data)[MPLS].label for f in client.inputs["eth0"]}, {POD_A_LABEL}, "%s: 12's fabric input label" % fx.name)
    report(fx, "two-nodes", "inner packets in = 12's tunnelled output, inner packets out = 12's fabric input")
    flows = load_flows(fx)
    eq(flows["pairs"], [], "%s: flows.json pairs after FIN / FIN-ACK / last ACK (the NAT pair must be gone)" % fx.name)
    report(fx, "flows", "flow table empty after the teardown")


def check_14(fx):
    check_common(fx, {"tx": {"dns-1": 3, "pod-a": 2}, "drops": {"flow-action-drop": 1, "no-route": 1}})
    q1, q2, port54, direct, q3 = fx.inputs["pod-a"]
    r1, r2 = fx.inputs["dns-1"]
    eq([IP(ip_packet(f.data))[UDP].chksum == 0 for f in (q1, q2, r1, r2)], [False, True, False, True], "%s: zero UDP checksums (fixture)" % fx.name)
    for out, inp in zip(match_id(fx, "dns-1", [q1, q2, q3]), [q1, q2, q3]):
        sent = IP(ip_packet(inp.data))
        eq((sent.dst, sent[UDP].dport), (VIP, 53), "%s: sent to the ClusterIP on port 53 (fixture)" % inp)
        check_delivered_as(out, inp, LOCAL_BACKEND_MAC, translated(ip_packet(inp.data), dst=LOCAL_BACKEND, dport=5353, ttl_drop=1))
        if sent[UDP].chksum == 0:
            eq(out.pkt[UDP].chksum, 0, "%s: a zero UDP checksum stays zero through NAT" % out)
    report(fx, "dnat", "3 queries to %s:53 delivered to dns-1 as %s:5353, TTL 63; zero UDP checksum kept zero" % (VIP, LOCAL_BACKEND))
    for out, inp in zip(match_id(fx, "pod-a", [r1, r2]), [r1, r2]):
        check_delivered_as(out, inp, POD_A_MAC, translated(ip_packet(inp.data), src=VIP, sport=53, ttl_drop=1))
        if IP(ip_packet(inp.data))[UDP].chksum == 0:
            eq(out.pkt[UDP].chksum, 0, "%s: a zero UDP checksum stays zero through NAT" % out)
    report(fx, "snat", "2 answers from dns-1 reach pod-a from %s:53" % VIP)
    ids = {IP(ip_packet(f.data)).id for vif in fx.outputs for f in fx.out(vif)}
    for inp, why in ((port54, "port 54 is no service port"), (direct, "the backend's own address")):
        expect(IP(ip_packet(inp.data)).id not in ids, "%s: forwarded although %s" % (inp, why))
    flows = load_flows(fx)
    pairs = flow_pairs(fx, flows)
    eq(len(pairs), 3, "%s: flows.json pairs (two queries' flows and the denied port 54)" % fx.name)
    for sport, packets in ((33053, (2, 1)), (33054, (1, 1))):
        check_pair(fx, pairs, ("udp", POD_A, sport, VIP, 53), "a query flow",
                   forward={"action": "nat", "nat": ["dnat", "dpat"], "vrf": 1, "packets": packets[0]},
                   reverse={"action": "nat", "nat": ["snat", "spat"], "vrf": 3, "packets": packets[1], "key": ("udp", LOCAL_BACKEND, 5353, POD_A, sport)},
                   replied=True)
    check_pair(fx, pairs, ("udp", POD_A, 33055, VIP, 54), "port 54, denied", forward={"action": "drop", "packets": 1},
               reverse={"action": "drop", "packets": 0}, replied=False)
    report(fx, "flows", "NAT pairs (forward dnat+dpat in vn1, reverse snat+spat from 10.1.2.6:5353 in dns), port 54 pair drop; no flow to 10.1.2.6 from vn1")


ECMP_STICKY_FLOWS = 1000
ECMP_STICKY_PACKETS = 3
ECMP_STICKY_FIRST_SPORT = 30000
#: 15/16 composite members: node -> (label, slot in members [10, 11, 12]).
STICKY_MEMBERS = {NODE2: (25, 0), NODE3: (26, 1), NODE4: (27, 2)}
STICKY_REMOVED = NODE3  # slot 1 empty in 16


_STICKY_ASSIGNMENTS = {}  # fixture folder -> assignments (16 reuses 15's when both are checked)


def ecmp_sticky_assignments(fx):
    """Per flow (UDP source port): (member node, entropy port), checking every packet of the flow used them."""
    if fx.dir not in _STICKY_ASSIGNMENTS:
        _STICKY_ASSIGNMENTS[fx.dir] = _ecmp_sticky_assignments(fx)
    return _STICKY_ASSIGNMENTS[fx.dir]


def _ecmp_sticky_assignments(fx):
    sent = fx.inputs["pod-a"]
    sports = [Ether(f.data)[UDP].sport for f in sent]
    first = {}
    last = {}
    for n, sport in enumerate(sports):
        first.setdefault(sport, n)
        last[sport] = n
    eq(sorted(first), list(range(ECMP_STICKY_FIRST_SPORT, ECMP_STICKY_FIRST_SPORT + ECMP_STICKY_FLOWS)), "%s: flows sent (fixture)" % fx.name)
    expect(any(last[a] > first[b] for a, b in zip(sorted(first), sorted(first)[1:])), "%s: flows not interleaved (fixture)" % fx.name)
    flows = {}
    for out, inp, sport in zip(match(fx, "eth0", sent), sent, sports):
        outer = out.pkt[IP]
        expect(outer.dst in STICKY_MEMBERS, "%s: outer destination %s is no ECMP member" % (out, outer.dst))
        port = check_tunnelled(out, inp, outer.dst, STICKY_MEMBERS[outer.dst][0], "udp")
        eq(out.pkt[MPLS][IP].dst, VIP, "%s: inner destination (must stay the VIP)" % out)
        flows.setdefault(sport, []).append((outer.dst, port))
    for sport, used in sorted(flows.items()):
        eq(len(used), ECMP_STICKY_PACKETS, "%s: packets of the flow from port %d that came out" % (fx.name, sport))
        expect(len(set(used)) == 1, "%s: the flow from port %d used several (member, entropy port) %s" % (fx.name, sport, sorted(set(used))))
    return {sport: used[0] for sport, used in flows.items()}


def sticky_flow_slots(fx, assignments):
    """flows.json of 15/16: one pair per flow, unreplied, 3 packets, and the recorded slot = the member used on the wire."""
    flows = load_flows(fx)
    pairs = flow_pairs(fx, flows)
    eq(len(pairs), ECMP_STICKY_FLOWS, "%s: flows.json pairs" % fx.name)
    slots = {}
    for sport, (member, _) in sorted(assignments.items()):
        pair = check_pair(fx, pairs, ("udp", POD_A, sport, VIP, 80), "an ECMP flow",
                          forward={"action": "forward", "nexthop": 20, "packets": ECMP_STICKY_PACKETS}, reverse={"packets": 0}, replied=False)
        eq(pair["forward"]["ecmpSlot"], STICKY_MEMBERS[member][1], "%s: flows.json ecmpSlot of the flow from port %d (sent to %s)" % (fx.name, sport, member))
        slots[sport] = pair["forward"]["ecmpSlot"]
    return slots


def check_15(fx):
    check_common(fx, {"tx": {"eth0": ECMP_STICKY_FLOWS * ECMP_STICKY_PACKETS}, "drops": {}})
    flows = ecmp_sticky_assignments(fx)
    report(fx, "sticky", "3000 frames: all 3 packets of each of the 1000 interleaved flows on one member, label and entropy port")
    counts = spread(flows, STICKY_MEMBERS)
    for member, count in counts.items():
        share = count / ECMP_STICKY_FLOWS
        expect(0.28 <= share <= 0.39, "%s: member %s got %d of %d flows (%.1f%%), outside 28%%-39%%" % (fx.name, member, count, ECMP_STICKY_FLOWS, 100 * share))
    ports = set(port for _, port in flows.values())
    expect(len(ports) >= 0.95 * ECMP_STICKY_FLOWS, "%s: only %d distinct entropy ports for %d flows" % (fx.name, len(ports), ECMP_STICKY_FLOWS))
    report(fx, "ecmp-spread", "flows per member %s; %d distinct entropy ports" % (counts, len(ports)))
    sticky_flow_slots(fx, flows)
    report(fx, "flows", "1000 pairs, each with the ECMP slot of the member its packets took, 3 packets")


def check_16(fx):
    check_common(fx, {"tx": {"eth0": ECMP_STICKY_FLOWS * ECMP_STICKY_PACKETS}, "drops": {}})
    flows = ecmp_sticky_assignments(fx)
    counts = spread(flows, STICKY_MEMBERS)
    eq(counts[STICKY_REMOVED], 0, "%s: flows sent to the removed member %s" % (fx.name, STICKY_REMOVED))
    report(fx, "sticky", "all packets of each flow on one member and entropy port; nothing to %s; flows per member %s" % (STICKY_REMOVED, counts))
    before_fx, before, moved = compare_after_member_removal(fx, flows, "15-ecmp-1000-flows-sticky", ecmp_sticky_assignments, STICKY_REMOVED)
    expect(len(moved) >= 100, "%s: only %d flows were on the removed member in 15" % (fx.name, len(moved)))
    landed = {member: moved.count(member) for member in sorted(set(moved))}
    eq(sorted(landed), sorted(set(STICKY_MEMBERS) - {STICKY_REMOVED}), "%s: members the removed member's flows went to" % fx.name)
    for member, count in landed.items():
        expect(count >= 0.3 * len(moved), "%s: only %d of the %d re-spread flows went to %s" % (fx.name, count, len(moved), member))
    report(fx, "ecmp-stable", "%d flows kept their member and port; %d from %s re-spread %s, same entropy ports"
           % (ECMP_STICKY_FLOWS - len(moved), len(moved), STICKY_REMOVED, landed))
    slots = sticky_flow_slots(fx, flows)
    old_slots = {flow_key(p["forward"])[2]: p["forward"]["ecmpSlot"] for p in load_flows(before_fx)["pairs"]}
    for sport, slot in slots.items():
        expect(slot != STICKY_MEMBERS[STICKY_REMOVED][1], "%s: the flow from port %d recorded the empty slot" % (fx.name, sport))
        if before[sport][0] != STICKY_REMOVED:
            eq(slot, old_slots[sport], "%s: flows.json ecmpSlot of the flow from port %d (15 recorded %d)" % (fx.name, sport, old_slots[sport]))
    report(fx, "flows", "1000 pairs; no flow on slot 1; flows of slots 0 and 2 keep 15's slot")


def udp_checksum_ok(src, dst, udp_bytes):
    pseudo = struct.pack("!4s4sBBH", bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))), 0, 17, len(udp_bytes))
    return inet_checksum(pseudo + udp_bytes) == 0


def icmp_error_expected(error_ip, src, dst, ttl, quote):
    """An ICMP port unreachable (3/3) as it must leave: `error_ip`'s IPv4 header with new addresses and TTL,
    the message quoting `quote`, both checksums computed here."""
    e = IP(error_ip)
    header = IP(version=4, ihl=5, tos=e.tos, id=e.id, flags=e.flags, frag=0, ttl=ttl, proto=1, src=src, dst=dst)
    message = bytearray(struct.pack("!BBHI", 3, 3, 0, 0) + quote)
    message[2:4] = struct.pack("!H", inet_checksum(bytes(message)))
    return bytes(IP(bytes(header / Raw(bytes(message)))))


def check_quote(out, inner, original, quoted_len, src, dst, sport, dport):
    """The quote of the ICMP error `inner` (an IPv4 packet): the first quoted_len bytes of `original`, its
    header checksum and (when all of it is quoted) its UDP checksum valid, else the original's UDP checksum."""
    got_quote = inner[28:]
    eq(len(got_quote), quoted_len, "%s: quote length" % out)
    qip = IP(got_quote[:20])
    eq((qip.src, qip.dst), (src, dst), "%s: quoted IPv4 source/destination" % out)
    eq(inet_checksum(got_quote[:20]), 0, "%s: quoted IPv4 header checksum (RFC 1071)" % out)
    qsport, qdport, _qlen, qsum = struct.unpack("!HHHH", got_quote[20:28])
    eq((qsport, qdport), (sport, dport), "%s: quoted UDP ports" % out)
    if quoted_len == len(original):
        expect(udp_checksum_ok(src, dst, got_quote[20:]), "%s: quoted UDP checksum over the whole quoted datagram" % out)
    else:
        eq(qsum, struct.unpack("!H", original[26:28])[0], "%s: quoted UDP checksum (the original datagram's)" % out)
    eq(got_quote, original[:quoted_len], "%s: quoted bytes" % out)


def check_17(fx):
    check_common(fx, {"tx": {"dns-1": 4, "eth0": 3}, "drops": {}, "own": (NODE2,)})
    fabric, pod = fx.inputs["eth0"], fx.inputs["dns-1"]
    queries, client_error = fabric[:3], fabric[3]
    errors, answer = pod[:2], pod[2]
    for inp in fabric:
        q = Ether(inp.data)
        eq((q[IP].src, q[IP].dst, q[MPLS].label), (NODE1, NODE2, BACKEND_LABEL), "%s: node1's tunnel to dns-1's label (fixture)" % inp)
    for out, inp in zip(match_id(fx, "dns-1", queries), queries):
        check_delivered_as(out, inp, BACKEND_MAC, translated(ip_packet(inp.data), dst=BACKEND, dport=5353))
    report(fx, "dnat", "3 datagrams to %s:53 delivered to dns-1 as %s:5353" % (VIP, BACKEND))
    ports = set()
    for n, (out, error, query) in enumerate(zip(match_id(fx, "eth0", errors), errors, queries)):
        original = ip_packet(query.data)  # the datagram as node1 sent it: to the ClusterIP, port 53
        sent = ip_packet(error.data)
        e = IP(sent)
        quote = sent[28:]
        eq((e.src, e.dst, e[ICMP].type, e[ICMP].code), (BACKEND, POD_A, 3, 3), "%s: dns-1's port unreachable (fixture)" % error)
        delivered = ip_packet(fx.out("dns-1")[n].data)
        eq(quote, delivered[:len(quote)], "%s: dns-1 quotes the datagram it received (fixture)" % error)
        eq(len(quote), len(original) if n == 0 else 28, "%s: quote length (fixture: all of it, then header + 8 bytes)" % error)
        port, inner = check_tunnel_outer(out, NODE2, NODE2_FABRIC_MAC, NODE1, POD_A_LABEL)
        ports.add(port)
        r = IP(inner)
        eq((r.src, r.dst, r.proto, r.ttl), (VIP, POD_A, 1, e.ttl - 1), "%s: the error's IPv4 source (the ClusterIP), destination, protocol, TTL" % out)
        icmp = inner[20:]
        eq((icmp[0], icmp[1], icmp[4:8]), (3, 3, b"\x00" * 4), "%s: ICMP type, code, unused" % out)
        eq(inet_checksum(icmp), 0, "%s: ICMP checksum (RFC 1071 over the message)" % out)
        # Translated back: the quote is what node1 sent, destination the ClusterIP, port 53.
        check_quote(out, inner, original, len(quote), POD_A, VIP, struct.unpack("!H", original[20:22])[0], 53)
        same_ip(inner, icmp_error_expected(sent, VIP, POD_A, e.ttl - 1, original[:len(quote)]), str(out))
        same_time(out, error)
    report(fx, "icmp-error", "2 port unreachables from dns-1 (full quote, header + 8) leave from %s quoting %s:53 as node1 sent it; outer IP, ICMP, quoted IP and quoted UDP checksums valid"
           % (VIP, VIP))
    [out] = match_id(fx, "eth0", [answer])
    port, inner = check_tunnel_outer(out, NODE2, NODE2_FABRIC_MAC, NODE1, POD_A_LABEL)
    ports.add(port)
    seen = translated(ip_packet(answer.data), src=VIP, sport=53, ttl_drop=1)
    same_ip(inner, seen, str(out))
    same_time(out, answer)
    # pod-a's port unreachable about that answer comes back through node1: DNAT it to dns-1, and the quote
    # back to what dns-1 sent (from 10.1.2.5:5353; TTL 63 as it left this node).
    c = IP(ip_packet(client_error.data))
    eq((c.src, c.dst, c[ICMP].type, c[ICMP].code), (POD_A, VIP, 3, 3), "%s: pod-a's port unreachable to the ClusterIP (fixture)" % client_error)
    eq(ip_packet(client_error.data)[28:], seen, "%s: pod-a quotes the answer as it received it (fixture)" % client_error)
    [out] = match_id(fx, "dns-1", [client_error])
    original = with_ttl(ip_packet(answer.data), 63)
    inner = out.data[14:]
    eq(inet_checksum(inner[20:]), 0, "%s: ICMP checksum (RFC 1071 over the message)" % out)
    check_quote(out, inner, original, len(original), BACKEND, POD_A, 5353, 33019)
    check_delivered_as(out, client_error, BACKEND_MAC, icmp_error_expected(ip_packet(client_error.data), POD_A, BACKEND, c.ttl, original))
    report(fx, "icmp-error-back", "dns-1's answer leaves from %s:53; pod-a's port unreachable about it reaches dns-1 to %s, quoting %s:5353 as dns-1 sent it, checksums valid; entropy ports %s"
           % (VIP, BACKEND, BACKEND, sorted(ports)))
    pairs = flow_pairs(fx, load_flows(fx))
    eq(len(pairs), 3, "%s: flows.json pairs" % fx.name)
    for query, packets in zip(queries, ((1, 1), (1, 1), (2, 1))):
        sport = IP(ip_packet(query.data))[UDP].sport
        check_pair(fx, pairs, ("udp", POD_A, sport, VIP, 53), "a datagram's NAT flow",
                   forward={"action": "nat", "nat": ["dnat", "dpat"], "packets": packets[0]},
                   reverse={"action": "nat", "nat": ["snat", "spat"], "packets": packets[1], "key": ("udp", BACKEND, 5353, POD_A, sport)})
    report(fx, "flows", "3 NAT pairs; each ICMP error counted on the flow of the datagram it quotes, in its direction (no flow of its own)")


def check_18(fx):
    check_common(fx, {"tx": {"pod-c": 2, "pod-a": 1}, "drops": {"flow-action-drop": 6}})
    a, c = fx.inputs["pod-a"], fx.inputs["pod-c"]
    for out, inp in zip(match(fx, "pod-c", [a[0], a[1]]), [a[0], a[1]]):
        check_delivered(out, inp, POD_C_MAC, ttl_drop=1)
    [out] = match(fx, "pod-a", [c[0]])
    check_delivered(out, c[0], POD_A_MAC, ttl_drop=1)
    report(fx, "allowed", "pod-a -> pod-c:80 (SYN, ACK) and pod-c's SYN-ACK forwarded, TTL 63")
    pairs = flow_pairs(fx, load_flows(fx))
    eq(len(pairs), 5, "%s: flows.json pairs" % fx.name)
    check_pair(fx, pairs, ("tcp", POD_A, 41080, POD_C, 80), "allowed by the rule", forward={"action": "forward", "vrf": 1, "packets": 2},
               reverse={"action": "forward", "vrf": 2, "packets": 1}, replied=True)
    check_pair(fx, pairs, ("tcp", POD_A, 41022, POD_C, 22), "port 22", forward={"action": "drop", "packets": 2},
               reverse={"action": "drop", "packets": 1})
    check_pair(fx, pairs, ("tcp", POD_C, 42080, POD_A, 80), "vn2 -> vn1", forward={"action": "drop", "vrf": 2}, reverse={"action": "drop"})
    check_pair(fx, pairs, ("udp", POD_A, 41080, POD_C, 80), "UDP to port 80", forward={"action": "drop"}, reverse={"action": "drop"})
    check_pair(fx, pairs, ("icmp", POD_A, 0x1818, POD_C, 0x1818), "ICMP echo", forward={"action": "drop"}, reverse={"action": "drop"})
    report(fx, "denied", "port 22 (twice, and pod-c's answer from 22), vn2 -> vn1, UDP 80, ICMP: 6 drops, each pair's action drop")


def check_19(fx):
    check_common(fx, {"tx": {"pod-b": 1, "pod-a": 1}, "drops": {"spoofed-source": 3, "invalid-tunnel-source": 3}})
    pods, fabric = fx.inputs["pod-a"], fx.inputs["eth0"]
    eq([(Ether(f.data).src, Ether(f.data)[IP].src) for f in pods], [(POD_A_MAC, POD_B), (POD_A_MAC, "198.51.100.7"), (POD_B_MAC, POD_A), (POD_A_MAC, POD_A)],
       "%s: pod-a's frames' source MAC and IP (fixture)" % fx.name)
    eq([(Ether(f.data)[IP].src, Ether(f.data)[MPLS][IP].src) for f in fabric], [(NODE3, REMOTE_POD), (NODE2, "10.1.1.77"), (NODE2, POD_A), (NODE2, REMOTE_POD)],
       "%s: tunnels' node and inner source (fixture)" % fx.name)
    [out] = match(fx, "pod-b", [pods[3]])
    check_delivered(out, pods[3], POD_B_MAC, ttl_drop=1)
    [out] = match(fx, "pod-a", [fabric[3]])
    check_delivered(out, fabric[3], POD_A_MAC, ttl_drop=0)
    report(fx, "legitimate", "pod-a as itself reaches pod-b; node2's tunnel for 10.1.1.5 reaches pod-a")
    pairs = flow_pairs(fx, load_flows(fx))
    eq(sorted(pairs), sorted([("udp", POD_A, 33019, POD_B, 9), ("udp", REMOTE_POD, 7019, POD_A, 33019)]),
       "%s: flows.json pairs (the spoofed packets make no flow)" % fx.name)
    check_pair(fx, pairs, ("udp", POD_A, 33019, POD_B, 9), "pod-a as itself", forward={"packets": 1})
    report(fx, "spoofed", "other pod's IP, an outside IP, other pod's MAC: spoofed-source; node3 for node2's pod, an unrouted source, a local pod's address: invalid-tunnel-source; no flows for them")


def check_20(fx):
    check_common(fx, {"tx": {"pod-b": 5, "pod-a": 2}, "drops": {"flow-table-full": 3}})
    a, b = fx.inputs["pod-a"], fx.inputs["pod-b"]
    flow_of = lambda f: Ether(f.data)[UDP].sport % 10 if f in a else Ether(f.data)[UDP].dport % 10
    eq([flow_of(f) for f in a], [1, 2, 3, 1, 4, 1, 2], "%s: pod-a's flows A B C A D A B (fixture)" % fx.name)
    eq([flow_of(f) for f in b], [1, 3, 2], "%s: pod-b's replies for A C B (fixture)" % fx.name)
    delivered = [a[0], a[1], a[2], a[3], a[5]]
    for out, inp in zip(match(fx, "pod-b", delivered), delivered):
        check_delivered(out, inp, POD_B_MAC, ttl_drop=1)
    for out, inp in zip(match(fx, "pod-a", [b[0], b[1]]), [b[0], b[1]]):
        check_delivered(out, inp, POD_A_MAC, ttl_drop=1)
    report(fx, "forwarded", "A (established) forwarded before and after the table filled; B until evicted; C after evicting B, and its reply")
    flows = load_flows(fx)
    eq((flows["activePairs"], flows["evictions"]), (2, 1), "%s: flows.json activePairs, evictions" % fx.name)
    pairs = flow_pairs(fx, flows)
    eq(sorted(pairs), sorted([("udp", POD_A, 20001, POD_B, 7001), ("udp", POD_A, 20003, POD_B, 7003)]), "%s: flows.json pairs (A and C)" % fx.name)
    check_pair(fx, pairs, ("udp", POD_A, 20001, POD_B, 7001), "flow A", forward={"packets": 3}, reverse={"packets": 1}, replied=True)
    check_pair(fx, pairs, ("udp", POD_A, 20003, POD_B, 7003), "flow C", forward={"packets": 1}, reverse={"packets": 1}, replied=True)
    report(fx, "flows", "A and C established; B evicted (1 eviction); D, B again and B's reply dropped as flow-table-full")


def check_21(fx):
    check_common(fx, {"tx": {"pod-a": 5, "pod-b": 5}, "drops": {}})
    a, b = fx.inputs["pod-a"], fx.inputs["pod-b"]
    rst1, rst2 = IP(ip_packet(b[1].data))[TCP], IP(ip_packet(b[4].data))[TCP]
    ack1, ack2 = IP(ip_packet(a[1].data))[TCP], IP(ip_packet(a[4].data))[TCP]
    window = ack1.window << 7
    eq((tcp_flags(b[1].data), tcp_flags(b[4].data)), ("R", "R"), "%s: the RSTs (fixture)" % fx.name)
    expect(rst1.seq - ack1.ack >= window, "%s: the first RST must be outside pod-a's scaled window (fixture)" % fx.name)
    expect(ack2.window <= rst2.seq - ack2.ack < ack2.window << 7, "%s: the second RST must be in the window only when scaled (fixture)" % fx.name)
    for src, dst, mac in (("pod-a", "pod-b", POD_B_MAC), ("pod-b", "pod-a", POD_A_MAC)):
        for out, inp in zip(match(fx, dst, fx.inputs[src]), fx.inputs[src]):
            check_delivered(out, inp, mac, ttl_drop=1)
    report(fx, "forwarded", "all 10 segments forwarded, RSTs included (the receiving stack judges them)")
    # RFC 5961 3.2, as tf-vrouter's vr_flow_tcp_digest: only an RST at exactly pod-a's last ACK closes; neither is.
    expect(rst1.seq != ack1.ack and rst2.seq != ack2.ack, "%s: neither RST is at the sequence number pod-a acknowledged (fixture)" % fx.name)
    pairs = flow_pairs(fx, load_flows(fx))
    eq(sorted(pairs), [("tcp", POD_A, 41001, POD_B, 8080), ("tcp", POD_A, 41002, POD_B, 8080)], "%s: flows.json pairs (both kept: neither RST is exact)" % fx.name)
    check_pair(fx, pairs, ("tcp", POD_A, 41001, POD_B, 8080), "connection 1", forward={"packets": 3}, reverse={"packets": 3}, replied=True)
    check_pair(fx, pairs, ("tcp", POD_A, 41002, POD_B, 8080), "connection 2", forward={"packets": 2}, reverse={"packets": 2}, replied=True)
    report(fx, "flows", "RST outside the window and RST inside it (scale 7) but not at pod-a's ACK: both pairs kept, every segment counted")


def reassemble(frames):
    """The IP payload of a datagram from its fragments (any order, no overlaps), and the first fragment's header."""
    pieces = sorted((IP(ip_packet(f.data)) for f in frames), key=lambda p: p.frag)
    data = b""
    for piece in pieces:
        eq(piece.frag * 8, len(data), "fragment offset of %s > %s id %#x" % (piece.src, piece.dst, piece.id))
        data += bytes(piece)[piece.ihl * 4:piece.len]
    expect(not pieces[-1].flags.MF, "the last fragment of %s > %s id %#x has MF set" % (pieces[0].src, pieces[0].dst, pieces[0].id))
    return pieces[0], data


def check_fragment(out, inp, dst_mac, want_head, src=None, dst=None, head_udp=None, ttl_drop=1):
    """A translated fragment: the input's IPv4 header with new addresses and TTL (checksum from scratch),
    the head's UDP header replaced by `head_udp`, the rest of the payload as sent."""
    sent = IP(ip_packet(inp.data))
    header = IP(bytes(sent)[:sent.ihl * 4])
    if src is not None:
        header.src = src
    if dst is not None:
        header.dst = dst
    header.ttl -= ttl_drop
    del header.chksum
    payload = bytes(sent)[sent.ihl * 4:sent.len]
    if sent.frag == 0:
        expect(want_head, "%s: a head where a later fragment was expected" % out)
        payload = head_udp + payload[8:]
    want = bytes(IP(bytes(header)))[:sent.ihl * 4] + payload
    eq(out.pkt.dst, dst_mac, "%s: Ethernet destination" % out)
    eq(out.pkt.src, VROUTER_MAC, "%s: Ethernet source" % out)
    eq(len(out.data), 14 + len(want), "%s: frame length" % out)
    same_ip(out.data[14:], want, str(out))


def check_22(fx):
    check_common(fx, {"tx": {"dns-1": 7, "pod-a": 2}, "drops": {"fragment-overlap": 2, "flow-action-drop": 4}})
    a, r = fx.inputs["pod-a"], fx.inputs["dns-1"]
    layout = [(IP(ip_packet(f.data)).id, IP(ip_packet(f.data)).frag) for f in a]
    eq(layout, [(0x2201, 0), (0x2201, 3), (0x2201, 5), (0x2202, 3), (0x2202, 5), (0x2202, 0), (0x2203, 0), (0x2203, 2), (0x2203, 3),
                (0x2204, 0), (0x2204, 3), (0x2205, 3), (0x2205, 0)],
       "%s: pod-a's fragments (id, offset) (fixture)" % fx.name)
    eq([struct.unpack("!H", ip_packet(f.data)[22:24])[0] for f in (a[9], a[12])], [54, 54], "%s: D4 and D5 go to port 54 (fixture)" % fx.name)
    out = fx.out("dns-1")
    eq([(IP(ip_packet(f.data)).id, IP(ip_packet(f.data)).frag) for f in out],
       [(0x2201, 0), (0x2201, 3), (0x2201, 5), (0x2202, 0), (0x2202, 3), (0x2202, 5), (0x2203, 0)],
       "%s: fragments delivered to dns-1, in order (D2: the head, then the two held for it; D3: its head only, "
       "its overlapping fragment and the one after it dropped as RFC 5722 section 4 asks)" % fx.name)
    # Which input each output fragment is, and the time it must carry: held fragments leave when their head does.
    sources = [(a[0], a[0]), (a[1], a[1]), (a[2], a[2]), (a[5], a[5]), (a[3], a[5]), (a[4], a[5])]
    for datagram in ((0, 3), (3, 6)):
        frames = [src for src, _ in sources[datagram[0]:datagram[1]]]
        sent_head, sent_data = reassemble(frames)
        eq((sent_head.dst, struct.unpack("!H", sent_data[2:4])[0]), (VIP, 53), "%s: datagram id %#x sent to the ClusterIP port 53 (fixture)" % (fx.name, sent_head.id))
        head_udp = translated(bytes(IP(src=sent_head.src, dst=VIP, proto=17) / Raw(sent_data)), dst=LOCAL_BACKEND, dport=5353)[20:28]
        for (inp, clock), got in zip(sources[datagram[0]:datagram[1]], out[datagram[0]:datagram[1]]):
            check_fragment(got, inp, LOCAL_BACKEND_MAC, IP(ip_packet(inp.data)).frag == 0, dst=LOCAL_BACKEND, head_udp=head_udp)
            same_time(got, clock)
        got_head, got_data = reassemble(out[datagram[0]:datagram[1]])
        eq(got_data[8:], sent_data[8:], "%s: datagram id %#x payload after reassembly" % (fx.name, sent_head.id))
        eq(struct.unpack("!HH", got_data[:4]), (struct.unpack("!H", sent_data[:2])[0], 5353), "%s: datagram id %#x ports after reassembly" % (fx.name, sent_head.id))
        expect(udp_checksum_ok(got_head.src, got_head.dst, got_data), "%s: datagram id %#x UDP checksum after reassembly (translated)" % (fx.name, sent_head.id))
    # D3's UDP checksum covers the datagram as sent: its head and the fragment at offset 3 (the one at 2 overlaps).
    d3_head, d3_data = reassemble([a[6], a[8]])
    d3_head_udp = translated(bytes(IP(src=d3_head.src, dst=VIP, proto=17) / Raw(d3_data)), dst=LOCAL_BACKEND, dport=5353)[20:28]
    check_fragment(out[6], a[6], LOCAL_BACKEND_MAC, True, dst=LOCAL_BACKEND, head_udp=d3_head_udp)
    same_time(out[6], a[6])
    report(fx, "dnat-fragments", "D1, D2: every fragment to %s, only the head's port 53 -> 5353; reassembled UDP checksums valid; D2's held fragments after its head, stamped with its time; D3: head translated, the overlapping fragment and the rest of its datagram dropped" % LOCAL_BACKEND)
    answer = fx.out("pod-a")
    eq([(IP(ip_packet(f.data)).id, IP(ip_packet(f.data)).frag) for f in answer], [(0x2251, 0), (0x2251, 3)], "%s: answer fragments delivered to pod-a" % fx.name)
    sent_head, sent_data = reassemble(r)
    head_udp = translated(bytes(IP(src=LOCAL_BACKEND, dst=POD_A, proto=17) / Raw(sent_data)), src=VIP, sport=53)[20:28]
    for got, inp in zip(answer, r):
        check_fragment(got, inp, POD_A_MAC, IP(ip_packet(inp.data)).frag == 0, src=VIP, head_udp=head_udp)
        same_time(got, inp)
    got_head, got_data = reassemble(answer)
    expect(udp_checksum_ok(got_head.src, got_head.dst, got_data), "%s: the answer's UDP checksum after reassembly (translated)" % fx.name)
    eq(struct.unpack("!HH", got_data[:4]), (53, 33101), "%s: the answer's ports after reassembly" % fx.name)
    report(fx, "snat-fragments", "the fragmented answer leaves from %s, the head's port 5353 -> 53, checksum valid after reassembly" % VIP)
    report(fx, "denied-fragments", "D4 (head first) and D5 (head last, its fragment held then released): head and fragment both dropped as flow-action-drop, nothing delivered")
    pairs = flow_pairs(fx, load_flows(fx))
    eq(len(pairs), 5, "%s: flows.json pairs" % fx.name)
    for sport, forward, reverse in ((33101, 3, 2), (33102, 3, 0), (33103, 1, 0)):
        check_pair(fx, pairs, ("udp", POD_A, sport, VIP, 53), "a fragmented datagram's flow",
                   forward={"action": "nat", "nat": ["dnat", "dpat"], "packets": forward},
                   reverse={"nat": ["snat", "spat"], "packets": reverse, "key": ("udp", LOCAL_BACKEND, 5353, POD_A, sport)})
    for sport in (33104, 33105):
        check_pair(fx, pairs, ("udp", POD_A, sport, VIP, 54), "a denied fragmented datagram's flow", forward={"action": "drop", "packets": 2},
                   reverse={"action": "drop", "packets": 0})
    report(fx, "flows", "one pair per datagram (from its head), NAT for port 53, drop for port 54; every fragment that reached the flow counted in it")


CHECKS = {"01": check_01, "02": check_02, "03": check_03, "04": check_04, "05": check_05, "06": check_06,
          "07": check_07, "08": check_08, "09": check_09, "10": check_10, "11": check_11,
          "12": check_12, "13": check_13, "14": check_14, "15": check_15, "16": check_16, "17": check_17,
          "18": check_18, "19": check_19, "20": check_20, "21": check_21, "22": check_22}
CHECKS.update(__import__("exact_cases").fixture_checks(sys.modules[__name__]))  # 23-29
CHECKS.update(__import__("ipv6_cases").checks(sys.modules[__name__]))
CHECKS.update(__import__("ipv6_fragment_cases").checks(sys.modules[__name__]))  # 35


def main(argv):
    keep_going = "--keep-going" in argv
    args = [a for a in argv[1:] if a != "--keep-going"]
    if args:
        folders = [a if os.path.isdir(a) else os.path.join(HERE, a) for a in args]
    else:
        folders = sorted(os.path.join(HERE, d) for d in os.listdir(HERE) if re.match(r"\d\d-", d) and os.path.isdir(os.path.join(HERE, d)))
    failures = 0
    for folder in folders:
        name = os.path.basename(os.path.normpath(folder))
        check = CHECKS.get(name[:2])
        try:
            expect(os.path.isdir(folder), "%s: no such fixture folder" % folder)
            expect(check is not None, "%s: no checks for this fixture in checks.py" % name)
            check(Fixture(folder))
        except CheckFailed as error:
            failures += 1
            print("FAIL  %s: %s" % (name, error))
            if not keep_going:
                return 1
    if failures:
        print("%d fixture(s) failed" % failures)
        return 1
    print("all %d fixture(s) passed" % len(folders))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
