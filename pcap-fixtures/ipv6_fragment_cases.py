"""Fixture 35: IPv6 extension headers and fragments, its inputs (for make_inputs.py) and its checks
(for checks.py), hooked in as ipv6_cases.py is.

The node is 33's (dual-stack node1; the ClusterIP fd00:96::10 is ECMP over node2 and node4; pod-b
backs fd00:96::20, udp 5001 -> 8080). Facts relied on: RFC 8200 4 (the extension headers, their
order, the fragment header and its identification), RFC 7112 (the first fragment carries the whole
header chain), RFC 7510 3 (the entropy port is the flow's, as the reference takes it from the flow
entry: tungstenfabric/tf-vrouter@432a8e0c linux/vrouter_mod.c lh_get_udp_src_port, and keys IPv6
fragments by (VRF, source, destination, identification): dp-core/vr_fragment.c
vr_v6_fragment_add), and dp-core/vr_bridge.c vr_bridge_input (multicast such as MLD is bridged by
MAC, never routed; no flood route, no forwarding).
"""
import shutil
import struct

from scapy.all import (IP, IPv6, UDP, Ether, Raw, ICMPv6EchoRequest, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrRouting, PadN, RouterAlert)
from scapy.contrib.mpls import MPLS

POD_A6 = "fd00:1:1::3"
POD_B6 = "fd00:1:1::4"
REMOTE6 = "fd00:1:1::5"  # node2, label 25, udp
CLUSTER6 = "fd00:96::10"  # ECMP over node2 (label 25) and node4 (label 27)
SERVICE6 = "fd00:96::20"  # pod-b's floating IP: udp 5001 -> 8080
POD_A_MAC = "02:00:0a:01:01:03"
POD_B_MAC = "02:00:0a:01:01:04"
NAME = "35-ipv6-extension-headers-and-fragments"
ECMP_FLOWS = range(33510, 33518)
MAX_EXTENSION_HEADERS = 8  # src/dataplane/steps/ipv6-input.ts


def datagram(src, dst, sport, dport, size, seed):
    """A UDP segment (header and payload) with its checksum over the whole datagram."""
    payload = bytes((seed + i) & 0xFF for i in range(size))
    return bytes(IPv6(src=src, dst=dst, nh=17) / UDP(sport=sport, dport=dport) / Raw(payload))[40:]


def fragments(src, dst, segment, ident, sizes, hlim=64):
    """The segment cut into fragments of `sizes` bytes (multiples of 8 but the last), in order."""
    out, offset = [], 0
    for size in sizes:
        more = int(offset + size < len(segment))
        out.append(IPv6(src=src, dst=dst, hlim=hlim, fl=0, tc=0) / IPv6ExtHdrFragment(nh=17, offset=offset // 8, m=more, id=ident) / Raw(segment[offset:offset + size]))
        offset += size
    assert offset == len(segment)
    return out


def fixtures(m):
    def pod(mac, packet):
        return Ether(dst=m.VROUTER_MAC, src=mac) / packet

    def f35():
        f = m.Fixture(NAME)
        a = lambda packet: f.add("pod-a", pod(POD_A_MAC, packet))
        # 1-2: UDP behind hop-by-hop and destination options to pod-b; an echo behind destination options to node2.
        a(IPv6(src=POD_A6, dst=POD_B6, fl=0) / IPv6ExtHdrHopByHop(options=[PadN(otype=1, optlen=4, optdata=b"\x00" * 4)])
          / IPv6ExtHdrDestOpt(options=[PadN(otype=1, optlen=4, optdata=b"\x00" * 4)]) / UDP(sport=33501, dport=7777) / Raw(b"35 behind two headers"))
        a(IPv6(src=POD_A6, dst=REMOTE6, fl=0) / IPv6ExtHdrDestOpt(options=[PadN(otype=1, optlen=4, optdata=b"\x00" * 4)])
          / ICMPv6EchoRequest(id=0x3502, seq=1, data=b"35 echo behind options"))
        # 3-9: to node2, one flow: a datagram head first, one head last (tail, middle, head), a whole one.
        for piece in fragments(POD_A6, REMOTE6, datagram(POD_A6, REMOTE6, 33503, 7777, 120, 1), 0x35000001, (48, 48, 32)):
            a(piece)
        head, middle, tail = fragments(POD_A6, REMOTE6, datagram(POD_A6, REMOTE6, 33503, 7777, 120, 2), 0x35000002, (48, 48, 32))
        for piece in (tail, middle, head):
            a(piece)
        a(IPv6(src=POD_A6, dst=REMOTE6, fl=0) / UDP(sport=33503, dport=7777) / Raw(b"35 whole datagram"))
        # 10-41: to the ECMP ClusterIP, 8 flows: even ones head first, odd ones head last; then a whole datagram each.
        for k, sport in enumerate(ECMP_FLOWS):
            pieces = fragments(POD_A6, CLUSTER6, datagram(POD_A6, CLUSTER6, sport, 80, 96, k), 0x35100000 + sport, (48, 56))
            for piece in (pieces if k % 2 == 0 else pieces[::-1]):
                a(piece)
        for sport in ECMP_FLOWS:
            a(IPv6(src=POD_A6, dst=CLUSTER6, fl=0) / UDP(sport=sport, dport=80) / Raw(b"35 whole to the ClusterIP"))
        # 42-44: node2 to the service, head last: DNAT to pod-b on every fragment, DPAT on the head.
        head, middle, tail = fragments(REMOTE6, SERVICE6, datagram(REMOTE6, SERVICE6, 40535, 5001, 100, 3), 0x35200001, (40, 40, 28), hlim=63)
        for k, piece in enumerate((middle, tail, head)):
            f.add("eth0", m.mpls_over_udp(m.NODE2, m.NODE1, 0x3501 + k, 51501, 18, 63, piece))
        # 45-47: pod-b's fragmented answer: SNAT to the service on every fragment, SPAT on the head.
        for piece in fragments(POD_B6, REMOTE6, datagram(POD_B6, REMOTE6, 8080, 40535, 80, 4), 0x35200002, (40, 48)):
            f.add("pod-b", pod(POD_B_MAC, piece))
        # 48-52: dropped. A destination options header cut short; one header too many; ESP; hop-by-hop not first;
        # an MLDv2 report (hop-by-hop with router alert, from the link-local address, to ff02::16).
        udp = UDP(sport=33520, dport=7777) / Raw(b"35 never forwarded")
        a(IPv6(src=POD_A6, dst=POD_B6, fl=0, nh=60, plen=16) / Raw(bytes(IPv6ExtHdrDestOpt(nh=17, len=2, options=[PadN(otype=1, optlen=20, optdata=b"\x00" * 20)]))[:16]))
        chain = IPv6ExtHdrDestOpt(options=[PadN(otype=1, optlen=4, optdata=b"\x00" * 4)])
        for _ in range(MAX_EXTENSION_HEADERS):
            chain = chain / IPv6ExtHdrDestOpt(options=[PadN(otype=1, optlen=4, optdata=b"\x00" * 4)])
        a(IPv6(src=POD_A6, dst=POD_B6, fl=0) / chain / udp)
        a(IPv6(src=POD_A6, dst=POD_B6, fl=0, nh=50) / Raw(struct.pack("!II", 0x3505, 1) + b"35 esp"))
        a(IPv6(src=POD_A6, dst=POD_B6, fl=0) / IPv6ExtHdrDestOpt(options=[PadN(otype=1, optlen=4, optdata=b"\x00" * 4)]) / IPv6ExtHdrHopByHop(options=[PadN(otype=1, optlen=4, optdata=b"\x00" * 4)]) / udp)
        mld = Raw(bytes.fromhex("8f000000") + struct.pack("!HH", 0, 1) + bytes([4, 0]) + struct.pack("!H", 0) + bytes(IPv6(dst="ff02::fb"))[24:40])
        f.add("pod-a", Ether(dst="33:33:00:00:00:16", src=POD_A_MAC) / IPv6(src="fe80::a", dst="ff02::16", hlim=1, fl=0)
              / IPv6ExtHdrHopByHop(options=[RouterAlert(value=0), PadN(otype=1, optlen=0)]) / mld)
        return f

    return [f35]


def checks(c):
    def upper6(packet_bytes):
        """(next header, offset) of the upper-layer header of an unfragmented IPv6 packet, walking the chain by hand."""
        nh, at = packet_bytes[6], 40
        while nh in (0, 43, 60):
            nh, at = packet_bytes[at], at + (packet_bytes[at + 1] + 1) * 8
        return nh, at

    def checksum_ok(src_dst, nh, segment, what):
        pseudo = src_dst + struct.pack("!IxxxB", len(segment), nh)
        c.eq(c.inet_checksum(pseudo + segment), 0, "%s: upper-layer checksum (RFC 1071 with the pseudo-header)" % what)

    def reassemble(packets, what):
        """Reassembles IPv6 fragments by hand (offset order) and checks the datagram's checksum; returns its segment."""
        pieces = sorted(((struct.unpack("!H", p[42:44])[0] & 0xFFF8, p) for p in packets), key=lambda item: item[0])
        expected, segment = 0, b""
        for offset, p in pieces:
            c.eq(offset, expected, "%s: fragments contiguous" % what)
            data = p[48:40 + struct.unpack("!H", p[4:6])[0]]
            segment += data
            expected += len(data)
        c.eq(struct.unpack("!H", pieces[-1][1][42:44])[0] & 1, 0, "%s: the last fragment has M clear" % what)
        checksum_ok(pieces[0][1][8:40], pieces[0][1][40], segment, what + " reassembled")
        # scapy's own recomputation over the reassembled datagram.
        whole = IPv6(src=IPv6(pieces[0][1]).src, dst=IPv6(pieces[0][1]).dst, nh=17) / UDP(segment)
        stored = whole[UDP].chksum
        del whole[UDP].chksum
        c.eq(IPv6(bytes(whole))[UDP].chksum, stored, "%s: reassembled UDP checksum (scapy recomputed)" % what)
        return segment

    def inner(frame):
        return bytes(frame.pkt[MPLS].payload)

    def sent_after_hop(frame):
        packet = bytearray(bytes(Ether(frame.data)[IPv6]))
        packet[7] -= 1
        return bytes(packet)

    def tunnel(frame):
        return frame.pkt[IP].dst, frame.pkt[MPLS].label, frame.pkt[UDP].sport

    def check_35(fx):
        drops = {"ipv6-chain-truncated": 1, "ipv6-chain-too-long": 1, "ipv6-unsupported": 1, "ipv6-bad-extension-header": 1, "multicast-not-forwarded": 1}
        c.check_common(fx, {"tx": {"pod-b": 4, "eth0": 1 + 7 + 3 * len(ECMP_FLOWS) + 2}, "drops": drops})
        report_tshark = "tshark reassembled them without a Bad checksum" if shutil.which("tshark") else "tshark not installed"
        a, e = fx.inputs["pod-a"], fx.out("eth0")
        b_out = fx.out("pod-b")

        chained = b_out[0]
        c.eq(bytes(chained.pkt[IPv6]), sent_after_hop(a[0]), "%s: the chain forwarded untouched, hop limit 63" % chained)
        c.eq((chained.pkt[IPv6ExtHdrHopByHop].nh, chained.pkt[IPv6ExtHdrDestOpt].nh, chained.pkt[UDP].sport), (60, 17, 33501), "%s: scapy decodes the chain" % chained)
        raw = bytes(chained.pkt[IPv6])
        nh, at = upper6(raw)
        checksum_ok(raw[8:40], nh, raw[at:], str(chained))
        echo = e[0]
        c.eq((echo.pkt[IP].dst, echo.pkt[MPLS].label, inner(echo)), (c.NODE2, 25, sent_after_hop(a[1])), "%s: the echo behind options to node2" % echo)
        c.eq(echo.pkt[ICMPv6EchoRequest].id, 0x3502, "%s: echo id" % echo)
        c.report(fx, "chains", "UDP behind hop-by-hop + destination options to pod-b, an echo behind options to node2: forwarded untouched")

        to_node2 = e[1:8]
        c.eq(set(tunnel(frame) for frame in to_node2), {tunnel(to_node2[6])}, "fragments and the whole datagram of one flow: one node, label and entropy port")
        c.eq(tunnel(to_node2[6])[:2], (c.NODE2, 25), "to node2, label 25")
        order = [2, 3, 4, 7, 5, 6]  # inputs (0-based): D1 in order; D2 sent tail, middle, head leaves head, tail, middle
        for frame, k in zip(to_node2[:6], order):
            c.eq(inner(frame), sent_after_hop(a[k]), "%s: fragment %d as sent, hop limit 63" % (frame, k + 1))
        reassemble([inner(frame) for frame in to_node2[:3]], "D1")
        reassemble([inner(frame) for frame in to_node2[3:6]], "D2")
        c.report(fx, "fragments", "2 datagrams to node2 in order and head last (held, released head first), and a whole one: one entropy port %d" % tunnel(to_node2[6])[2])

        ecmp = e[8:8 + 3 * len(ECMP_FLOWS)]
        whole = {frame.pkt[IPv6][UDP].sport: tunnel(frame) for frame in ecmp[2 * len(ECMP_FLOWS):]}
        c.eq(sorted(whole), list(ECMP_FLOWS), "a whole datagram per ClusterIP flow")
        by_id = {}
        for frame in ecmp[:2 * len(ECMP_FLOWS)]:
            packet = inner(frame)
            c.eq(IPv6(packet).dst, CLUSTER6, "%s: the ClusterIP stays the inner destination" % frame)
            by_id.setdefault(struct.unpack("!I", packet[44:48])[0], []).append((frame, packet))
        for sport in ECMP_FLOWS:
            pieces = by_id[0x35100000 + sport]
            c.eq(len(pieces), 2, "flow %d: both fragments out" % sport)
            for frame, _ in pieces:
                c.eq(tunnel(frame), whole[sport], "%s: flow %d's member, label and entropy port" % (frame, sport))
            c.eq(struct.unpack("!H", pieces[0][1][42:44])[0] & 0xFFF8, 0, "flow %d: the head leaves first" % sport)
            segment = reassemble([packet for _, packet in pieces], "flow %d" % sport)
            c.eq(struct.unpack("!HH", segment[:4]), (sport, 80), "flow %d: the ports" % sport)
        members = sorted(set(member[0] for member in whole.values()))
        c.eq(members, [c.NODE2, c.NODE4], "%d flows over both members" % len(ECMP_FLOWS))
        c.report(fx, "ecmp", "%d flows to %s, head first and head last: every fragment on its flow's member and port" % (len(ECMP_FLOWS), CLUSTER6))

        delivered = [bytes(frame.pkt[IPv6]) for frame in b_out[1:]]
        for frame, packet in zip(b_out[1:], delivered):
            c.eq((IPv6(packet).src, IPv6(packet).dst, packet[7]), (REMOTE6, POD_B6, 63), "%s: DNAT on every fragment, hop limit as node2 sent it" % frame)
        sent = {struct.unpack("!H", bytes(x.pkt[MPLS].payload)[42:44])[0] & 0xFFF8: bytes(x.pkt[MPLS].payload) for x in fx.inputs["eth0"]}
        c.eq(struct.unpack("!H", delivered[0][42:44])[0] & 0xFFF8, 0, "the head leaves first, then the held fragments")
        for packet in delivered[1:]:
            offset = struct.unpack("!H", packet[42:44])[0] & 0xFFF8
            c.eq(packet[48:], sent[offset][48:], "offset %d: a later fragment's data untouched" % offset)
        segment = reassemble(delivered, "to pod-b")
        c.eq(struct.unpack("!HH", segment[:4]), (40535, 8080), "DPAT on the head")
        answer = e[-2:]
        for frame in answer:
            c.eq((IPv6(inner(frame)).src, tunnel(frame)[:2]), (SERVICE6, (c.NODE2, 25)), "%s: SNAT on every fragment, to node2" % frame)
        c.eq(tunnel(answer[0]), tunnel(answer[1]), "the answer's fragments: one entropy port")
        segment = reassemble([inner(frame) for frame in answer], "the answer")
        c.eq(struct.unpack("!HH", segment[:4]), (5001, 40535), "SPAT on the head")
        c.report(fx, "nat", "fragments to %s reach pod-b (DNAT all, DPAT on the head); its answer leaves as the service (SNAT all, SPAT on the head); %s"
                 % (SERVICE6, report_tshark))

    return {"35": check_35}
