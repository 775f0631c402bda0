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
    own = sorted((frame.time_ns, vif, frame.index, frame.pkt[IP].id) for vif in fx.outputs for frame in fx.outputs[vif]
                 if IP in frame.pkt and (frame.pkt[IP].src in (NODE1, GATEWAY)))
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

    before_fx = Fixture(os.path.join(os.path.dirname(fx.dir), "05-ecmp-three-members"))
    eq([f.data for f in fx.inputs["pod-a"]], [f.data for f in before_fx.inputs["pod-a"]], "%s: inputs identical to 05's (fixture)" % fx.name)
    before = ecmp_assignments(before_fx)
    moved = []
    for flow, (member, port) in sorted(flows.items()):
        old_member, old_port = before[flow]
        if old_member != REMOVED_MEMBER:
            eq(member, old_member, "%s: flow from port %d changed member although its member %s stayed" % (fx.name, flow, old_member))
        else:
            moved.append(member)
        eq(port, old_port, "%s: flow from port %d changed its entropy source port between 05 and 06" % (fx.name, flow))
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
        "ipv6-unsupported": 1,
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


CHECKS = {"01": check_01, "02": check_02, "03": check_03, "04": check_04, "05": check_05, "06": check_06,
          "07": check_07, "08": check_08, "09": check_09, "10": check_10, "11": check_11}


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
