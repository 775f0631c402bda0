"""IPv6 fixtures 30-34: their input generators (for make_inputs.py) and
their checks (for checks.py), kept here so both files only hook them in.

    fixtures(make_inputs_module) -> [builder, ...]
    checks(checks_module)        -> {"30": check, ...}

Every fixture is the dual-stack node1 of state.yaml: vn1 also has
fd00:1:1::/64 with gateway fd00:1:1::1; pod-a is fd00:1:1::3, pod-b
fd00:1:1::4; fd00:1:1::5 is on node2 (label 25, udp), fd00:1:1::6 on node3
(label 26, gre). Facts relied on: RFC 4861 (neighbour discovery), RFC 4443
(ICMPv6), RFC 8200 (hop limit, no fragmentation by routers), and the agent's
router advertisement and neighbour advertisement in
tungstenfabric/tf-controller@6a674397 src/vnsw/agent/services/icmpv6_handler.cc
(source fe80::5e00:100 = PKT0_LINKLOCAL_ADDRESS of icmpv6_proto.h, router
lifetime 9000, on-link prefix with infinite lifetimes, link-layer address
00:00:5e:00:01:00).
"""
import struct
import subprocess
import shutil

from scapy.all import (IP, IPv6, TCP, UDP, Ether, Raw, ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6ND_NS, ICMPv6ND_NA,
                       ICMPv6ND_RS, ICMPv6ND_RA, ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr, ICMPv6NDOptPrefixInfo,
                       ICMPv6NDOptMTU, ICMPv6TimeExceeded, ICMPv6DestUnreach, ICMPv6PacketTooBig, IPv6ExtHdrHopByHop, GRE)
from scapy.contrib.mpls import MPLS

GATEWAY6 = "fd00:1:1::1"
POD_A6 = "fd00:1:1::3"
POD_B6 = "fd00:1:1::4"
REMOTE6 = "fd00:1:1::5"  # node2, label 25, udp
GRE6 = "fd00:1:1::6"  # node3, label 26, gre
UNROUTED6 = "fd00:9::1"
ROUTER_LL = "fe80::5e00:100"
POD_A_LL = "fe80::a"
CLUSTER6 = "fd00:96::10"  # ECMP over node2 and node4
SERVICE6 = "fd00:96::20"  # pod-b's floating IP: udp 5001 -> 8080
POD_C6 = "fd00:2:2::3"  # vn2
VROUTER_MAC = "00:00:5e:00:01:00"
POD_A_MAC = "02:00:0a:01:01:03"
POD_B_MAC = "02:00:0a:01:01:04"
POD_C_MAC = "02:00:0a:02:02:03"
ALL_NODES_MAC = "33:33:00:00:00:01"


def solicited(target):
    """The solicited-node multicast address and MAC of a target (RFC 4291 2.7.1, RFC 2464 7)."""
    raw = bytes(IPv6(dst=target))[24:40]
    return "ff02::1:ff%02x:%02x%02x" % (raw[13], raw[14], raw[15]), "33:33:ff:%02x:%02x:%02x" % (raw[13], raw[14], raw[15])


def fixtures(m):
    def pod6(mac, src, dst, payload, hlim=64):
        return Ether(dst=m.VROUTER_MAC, src=mac) / IPv6(src=src, dst=dst, hlim=hlim, fl=0, tc=0) / payload

    def ns(src, target, hlim=255, mac=POD_A_MAC):
        group, group_mac = solicited(target)
        return Ether(dst=group_mac, src=mac) / IPv6(src=src, dst=group, hlim=hlim) / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=mac)

    def rs(src, mac=POD_A_MAC):
        return Ether(dst="33:33:00:00:00:02", src=mac) / IPv6(src=src, dst="ff02::2", hlim=255) / ICMPv6ND_RS()

    def tunnelled6(src, dst, hlim, payload):
        return IPv6(src=src, dst=dst, hlim=hlim, fl=0, tc=0) / payload

    def f30():
        f = m.Fixture("30-ipv6-neighbour-discovery")
        f.add("pod-a", ns(POD_A6, POD_B6))  # answered
        f.add("pod-a", ns(POD_A6, GATEWAY6))  # answered, router
        f.add("pod-a", ns(POD_A_LL, ROUTER_LL))  # answered, router, from the link-local address
        f.add("pod-a", ns("::", POD_A6))  # DAD probe: not answered
        f.add("pod-a", ns(POD_A6, POD_A6))  # its own address: not answered
        f.add("pod-a", ns(POD_A6, UNROUTED6))  # outside the VN: not answered
        f.add("pod-a", ns(POD_A6, POD_B6, hlim=64))  # not from the link: not answered
        f.add("pod-a", rs(POD_A_LL))  # unicast RA back
        f.add("pod-a", rs("::"))  # RA to all nodes
        f.add("pod-b", ns(POD_B6, POD_A6, mac=POD_B_MAC))  # answered
        return f

    def f31():
        f = m.Fixture("31-ipv6-local-and-tunnels")
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, POD_B6, UDP(sport=33101, dport=7777) / Raw(b"31 udp pod-a to pod-b")))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, POD_B6, TCP(sport=33102, dport=80, seq=3100, flags="S", window=64800, options=[])))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, POD_B6, ICMPv6EchoRequest(id=0x3103, seq=1, data=b"0123456789abcdef")))
        f.add("pod-b", pod6(POD_B_MAC, POD_B6, POD_A6, ICMPv6EchoReply(id=0x3103, seq=1, data=b"0123456789abcdef")))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, REMOTE6, UDP(sport=33104, dport=7777) / Raw(b"31 udp to node2 over udp")))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, GRE6, UDP(sport=33105, dport=7777) / Raw(b"31 udp to node3 over gre")))
        inner = tunnelled6(REMOTE6, POD_A6, 63, UDP(sport=7777, dport=33104) / Raw(b"31 reply from node2 over udp"))
        f.add("eth0", m.mpls_over_udp(m.NODE2, m.NODE1, 0x3101, 51101, 17, 63, inner))
        inner = tunnelled6(GRE6, POD_B6, 63, UDP(sport=7777, dport=33105) / Raw(b"31 from node3 over gre"))
        f.add("eth0", m.mpls_over_gre(m.NODE3, m.NODE1, 0x3102, 18, 63, inner))
        return f

    def f32():
        f = m.Fixture("32-ipv6-icmpv6-errors")
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, REMOTE6, UDP(sport=33201, dport=7777) / Raw(b"32 hop limit 1"), hlim=1))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, REMOTE6, UDP(sport=33202, dport=7777) / Raw(b"32 hop limit 2"), hlim=2))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, UNROUTED6, UDP(sport=33203, dport=7777) / Raw(b"32 no route")))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, REMOTE6, UDP(sport=33204, dport=7777) / Raw(b"32" + b"x" * 1430)))  # 1480 bytes > 1468
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, POD_B6, UDP(sport=33205, dport=7777) / Raw(b"32" + b"y" * 1430)))  # local: fits
        # An ICMPv6 error (about a reply in the hop limit 2 flow) with hop limit 1 expires without an error about it.
        quoted = IPv6(src=REMOTE6, dst=POD_A6, hlim=63) / UDP(sport=7777, dport=33202) / Raw(b"quoted")
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, REMOTE6, ICMPv6DestUnreach(code=4) / quoted, hlim=1))
        # Multicast from a pod is not forwarded (the reference bridges it by MAC) and gets no error (RFC 4443 2.4 (e)).
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, "ff02::fb", UDP(sport=5353, dport=5353) / Raw(b"32 mdns")))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, "ff02::16", IPv6ExtHdrHopByHop() / Raw(b"\x8f\x00\x00\x00\x00\x00\x00\x00"), hlim=1))
        return f

    def f33():
        f = m.Fixture("33-ipv6-clusterip")
        for sport in range(33300, 33320):
            f.add("pod-a", pod6(POD_A_MAC, POD_A6, CLUSTER6, UDP(sport=sport, dport=80) / Raw(b"33 to the ClusterIP")))
        for sport in range(33300, 33320):
            f.add("pod-a", pod6(POD_A_MAC, POD_A6, CLUSTER6, UDP(sport=sport, dport=80) / Raw(b"33 again")))
        query = tunnelled6(REMOTE6, SERVICE6, 63, UDP(sport=40053, dport=5001) / Raw(b"33 query to the service"))
        f.add("eth0", m.mpls_over_udp(m.NODE2, m.NODE1, 0x3301, 51301, 18, 63, query))
        f.add("pod-b", pod6(POD_B_MAC, POD_B6, REMOTE6, UDP(sport=8080, dport=40053) / Raw(b"33 answer from the backend")))
        # pod-b reports the query's port unreachable: it leaves as the service, quoting what node2 sent.
        delivered = IPv6(src=REMOTE6, dst=POD_B6, hlim=63) / UDP(sport=40053, dport=8080) / Raw(b"33 query to the service")
        f.add("pod-b", pod6(POD_B_MAC, POD_B6, REMOTE6, ICMPv6DestUnreach(code=4) / delivered))
        return f

    def f34():
        f = m.Fixture("34-ipv6-policy-and-spoofing")
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, POD_C6, TCP(sport=33401, dport=80, seq=3400, flags="S", window=64800, options=[])))
        f.add("pod-c", pod6(POD_C_MAC, POD_C6, POD_A6, TCP(sport=80, dport=33401, seq=9400, ack=3401, flags="SA", window=64800, options=[])))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, POD_C6, TCP(sport=33402, dport=22, seq=3410, flags="S", window=64800, options=[])))
        f.add("pod-a", pod6(POD_A_MAC, POD_A6, POD_C6, UDP(sport=33403, dport=80) / Raw(b"34 udp 80")))
        f.add("pod-a", pod6(POD_A_MAC, POD_B6, POD_C6, UDP(sport=33404, dport=80) / Raw(b"34 spoofed address")))
        f.add("pod-a", pod6(POD_B_MAC, POD_A6, POD_B6, UDP(sport=33405, dport=80) / Raw(b"34 spoofed MAC")))
        inner = tunnelled6(REMOTE6, POD_A6, 63, UDP(sport=7777, dport=33406) / Raw(b"34 node3 for node2's pod"))
        f.add("eth0", m.mpls_over_udp(m.NODE3, m.NODE1, 0x3401, 51401, 17, 63, inner))
        return f

    return [f30, f31, f32, f33, f34]


def checks(c):
    def ipv6_layers(pkt):
        layer, found = pkt, []
        while layer is not None and layer.name != "NoPayload":
            if type(layer) is IPv6:
                found.append(layer)
            layer = layer.payload if layer.payload.name != "NoPayload" else None
        return found

    def verify_checksums6(frame):
        """Every upper-layer checksum of every IPv6 packet (outer or tunnelled), by hand over the pseudo-header and by scapy."""
        for layer in ipv6_layers(frame.pkt):
            raw = bytes(layer)
            length = struct.unpack("!H", raw[4:6])[0]
            nh = raw[6]
            c.expect(len(raw) >= 40 + length, "%s: IPv6 payload length %d beyond the packet" % (frame, length))
            if nh not in (6, 17, 58):
                continue
            segment = raw[40:40 + length]
            pseudo = raw[8:40] + struct.pack("!IxxxB", length, nh)
            c.eq(c.inet_checksum(pseudo + segment), 0, "%s: IPv6 %s > %s next header %d checksum (RFC 1071 with the pseudo-header)" % (frame, layer.src, layer.dst, nh))
            fresh = IPv6(raw[:40 + length])
            upper = fresh.payload
            stored = upper.cksum if nh == 58 else upper.chksum
            if nh == 58:
                del upper.cksum
            else:
                del upper.chksum
            rebuilt = IPv6(bytes(fresh)).payload
            c.eq(stored, rebuilt.cksum if nh == 58 else rebuilt.chksum, "%s: next header %d checksum (scapy recomputed)" % (frame, nh))

    def tshark_icmpv6(path):
        result = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.number", "-e", "icmpv6.checksum.status"], capture_output=True, text=True)
        c.eq(result.returncode, 0, "tshark -r %s" % path)
        for line in filter(None, result.stdout.splitlines()):
            number, *status = line.split("\t")
            for value in filter(None, ",".join(status).split(",")):
                c.expect(value != "0", "tshark: %s frame %s: icmpv6.checksum.status is Bad" % (path, number))

    def common6(fx, intent):
        c.check_common(fx, intent)
        frames = [frame for vif in sorted(fx.outputs) for frame in fx.outputs[vif]]
        for frame in frames:
            verify_checksums6(frame)
        if shutil.which("tshark"):
            for vif in sorted(fx.outputs):
                tshark_icmpv6(fx.expected_dir + "/" + vif + ".pcap")
        c.report(fx, "checksums6", "%d frames, every IPv6 upper-layer checksum valid (hand, scapy%s)" % (len(frames), ", tshark" if shutil.which("tshark") else ""))

    def ip6(frame):
        return frame.pkt[IPv6]

    def check_30(fx):
        common6(fx, {"tx": {"pod-a": 5, "pod-b": 1}, "drops": {"nd-not-proxied": 4}})
        out = fx.out("pod-a")
        for got, (target, requester, router) in zip(out[:3], ((POD_B6, POD_A6, False), (GATEWAY6, POD_A6, True), (ROUTER_LL, POD_A_LL, True))):
            c.eq((got.pkt.dst, got.pkt.src), (POD_A_MAC, VROUTER_MAC), "%s: Ethernet" % got)
            c.eq((ip6(got).src, ip6(got).dst, ip6(got).hlim), (target, requester, 255), "%s: from the target to the soliciting address, hop limit 255" % got)
            na = got.pkt[ICMPv6ND_NA]
            c.eq((na.tgt, na.R, na.S, na.O), (target, int(router), 1, 1), "%s: target and flags (R for the router's addresses only)" % got)
            c.eq(got.pkt[ICMPv6NDOptDstLLAddr].lladdr, VROUTER_MAC, "%s: target link-layer address" % got)
        c.report(fx, "neighbour-adverts", "pod-b, the gateway and fe80::5e00:100 answered with 00:00:5e:00:01:00, S and O, R for the router")
        for got, (dst, mac) in zip(out[3:5], ((POD_A_LL, POD_A_MAC), ("ff02::1", ALL_NODES_MAC))):
            c.eq((got.pkt.dst, got.pkt.src), (mac, VROUTER_MAC), "%s: Ethernet" % got)
            c.eq((ip6(got).src, ip6(got).dst, ip6(got).hlim), (ROUTER_LL, dst, 255), "%s: from the router's link-local address" % got)
            ra = got.pkt[ICMPv6ND_RA]
            c.eq((ra.chlim, ra.M, ra.O, ra.routerlifetime, ra.reachabletime, ra.retranstimer), (64, 0, 0, 9000, 0, 0), "%s: RA fields" % got)
            c.eq(got.pkt[ICMPv6NDOptSrcLLAddr].lladdr, VROUTER_MAC, "%s: source link-layer address" % got)
            c.eq(got.pkt[ICMPv6NDOptMTU].mtu, 1500, "%s: MTU option (the vif's)" % got)
            pio = got.pkt[ICMPv6NDOptPrefixInfo]
            c.eq((pio.prefix, pio.prefixlen, pio.L, pio.A, pio.validlifetime, pio.preferredlifetime), ("fd00:1:1::", 64, 1, 0, 0xFFFFFFFF, 0xFFFFFFFF),
                 "%s: prefix information" % got)
        c.report(fx, "router-adverts", "RS from fe80::a answered unicast, RS from :: to ff02::1: lifetime 9000, MTU 1500, fd00:1:1::/64 on-link")
        b = fx.out("pod-b")[0]
        c.eq((b.pkt.dst, ip6(b).src, ip6(b).dst, b.pkt[ICMPv6ND_NA].tgt), (POD_B_MAC, POD_A6, POD_B6, POD_A6), "%s: pod-b's answer" % b)
        c.report(fx, "not-answered", "DAD probe, own address, outside the VN, hop limit 64: 4 x nd-not-proxied")

    def same_inner(got_ip6, sent_frame, hlim, what):
        want = bytearray(bytes(Ether(sent_frame.data)[IPv6]))
        want[7] = hlim
        c.eq(bytes(got_ip6)[:len(want)], bytes(want), what)

    def check_31(fx):
        common6(fx, {"tx": {"pod-a": 2, "pod-b": 4, "eth0": 2}, "drops": {}})
        a = fx.inputs["pod-a"]
        b_out = fx.out("pod-b")
        for got, inp in zip(b_out[:3], a[:3]):  # pod-a sent: UDP, SYN, echo to pod-b; UDP to node2; UDP to node3
            c.eq((got.pkt.dst, got.pkt.src, got.pkt.type), (POD_B_MAC, VROUTER_MAC, 0x86DD), "%s: Ethernet" % got)
            same_inner(ip6(got), inp, 63, "%s: the packet, hop limit 63, else byte for byte" % got)
        same_inner(ip6(fx.out("pod-a")[0]), fx.inputs["pod-b"][0], 63, "echo reply to pod-a")
        c.report(fx, "local", "UDP, TCP SYN, echo request and reply between the pods: hop limit 63, else unchanged")
        udp_out, gre_out = fx.out("eth0")
        c.eq((udp_out.pkt[IP].src, udp_out.pkt[IP].dst, udp_out.pkt[IP].ttl, udp_out.pkt[IP].flags.DF, udp_out.pkt[UDP].dport, udp_out.pkt[UDP].chksum), (c.NODE1, c.NODE2, 64, 0, 6635, 0),
             "%s: MPLS over UDP outer headers" % udp_out)
        c.expect(49152 <= udp_out.pkt[UDP].sport <= 65535, "%s: entropy source port" % udp_out)
        c.eq((udp_out.pkt[MPLS].label, udp_out.pkt[MPLS].s, udp_out.pkt[MPLS].ttl), (25, 1, 63), "%s: MPLS label, S, TTL = hop limit" % udp_out)
        same_inner(udp_out.pkt[IPv6], a[3], 63, "%s: inner IPv6" % udp_out)
        c.eq((gre_out.pkt[IP].dst, gre_out.pkt[IP].proto, gre_out.pkt[GRE].proto, gre_out.pkt[MPLS].label), (c.NODE3, 47, 0x8847, 26), "%s: MPLS over GRE" % gre_out)
        same_inner(gre_out.pkt[IPv6], a[4], 63, "%s: inner IPv6" % gre_out)
        c.report(fx, "encap", "IPv6 inside MPLS over UDP (label 25) and GRE (label 26) over the IPv4 underlay, label TTL 63")
        decap_a, decap_b = fx.out("pod-a")[1], b_out[3]
        e = fx.inputs["eth0"]
        c.eq(bytes(ip6(decap_a)), bytes(e[0].pkt[IPv6]), "%s: decapsulated from MPLS over UDP, unchanged" % decap_a)
        c.eq(bytes(ip6(decap_b)), bytes(e[1].pkt[IPv6]), "%s: decapsulated from MPLS over GRE, unchanged" % decap_b)
        c.eq((decap_a.pkt.dst, decap_a.pkt.type, decap_b.pkt.dst), (POD_A_MAC, 0x86DD, POD_B_MAC), "decapsulated frames' Ethernet")
        c.report(fx, "decap", "labels 17 and 18 deliver the inner IPv6 packets unchanged (the sender took the hop)")

    def check_error(got, inp, icmp_type, code, rest, quote_len, hlim_quoted):
        c.eq((got.pkt.dst, got.pkt.src, ip6(got).src, ip6(got).dst), (POD_A_MAC, VROUTER_MAC, GATEWAY6, POD_A6), "%s: from the gateway to pod-a" % got)
        raw = bytes(ip6(got))
        c.eq((raw[40], raw[41], struct.unpack("!I", raw[44:48])[0]), (icmp_type, code, rest), "%s: ICMPv6 type, code, MTU/unused" % got)
        sent = bytearray(bytes(Ether(inp.data)[IPv6]))
        sent[7] = hlim_quoted
        c.eq(raw[48:], bytes(sent[:quote_len]), "%s: the offending packet quoted (%d bytes)" % (got, quote_len))

    def check_32(fx):
        common6(fx, {"tx": {"pod-a": 3, "pod-b": 1, "eth0": 1}, "drops": {"ttl-expired": 2, "no-route": 1, "fragment-needed": 1, "multicast-not-forwarded": 2},
                     "generated": 3})
        a = fx.inputs["pod-a"]
        exceeded, unreachable, too_big = fx.out("pod-a")
        check_error(exceeded, a[0], 3, 0, 0, len(bytes(Ether(a[0].data)[IPv6])), 1)
        check_error(unreachable, a[2], 1, 0, 0, len(bytes(Ether(a[2].data)[IPv6])), 64)
        check_error(too_big, a[3], 2, 0, 1500 - 20 - 8 - 4, 1280 - 48, 64)
        c.eq(len(too_big.data), 14 + 1280, "%s: a packet too big is at most 1280 bytes" % too_big)
        c.report(fx, "errors", "time exceeded (3/0), no route (1/0), packet too big (2/0, MTU 1468, 1232 bytes quoted, hop limit as sent) from %s" % GATEWAY6)
        tunnelled = fx.out("eth0")[0]
        c.eq((tunnelled.pkt[MPLS].ttl, tunnelled.pkt[IPv6].hlim), (1, 1), "%s: hop limit 2 leaves with 1, MPLS TTL 1" % tunnelled)
        c.eq(len(fx.out("pod-b")[0].data), len(a[4].data), "a 1494-byte packet fits pod-b's MTU: delivered whole")
        c.report(fx, "no-error", "no error about an ICMPv6 error; multicast (mDNS, MLD behind its hop-by-hop header) not forwarded, without an error")

    def check_33(fx):
        common6(fx, {"tx": {"eth0": 42, "pod-b": 1}, "drops": {}})
        out = fx.out("eth0")
        first = {}
        for got in out[:40]:
            inner = got.pkt[IPv6]
            c.eq(inner.dst, CLUSTER6, "%s: the ClusterIP stays the inner destination" % got)
            key = inner[UDP].sport
            member = (got.pkt[IP].dst, got.pkt[MPLS].label, got.pkt[UDP].sport)
            c.eq(first.setdefault(key, member), member, "%s: flow %d keeps its member, label and entropy port" % (got, key))
        members = set(member[0] for member in first.values())
        c.eq(members, {c.NODE2, c.NODE4}, "20 flows spread over both members")
        c.report(fx, "ecmp", "20 flows x 2 packets: both members used, every flow sticky (node, label, entropy port)")
        delivered = fx.out("pod-b")[0]
        c.eq((ip6(delivered).src, ip6(delivered).dst, delivered.pkt[UDP].sport, delivered.pkt[UDP].dport), (REMOTE6, POD_B6, 40053, 8080), "%s: DNAT + DPAT" % delivered)
        answer, error = out[40], out[41]
        c.eq((answer.pkt[MPLS].label, answer.pkt[IPv6].src, answer.pkt[IPv6].dst, answer.pkt[IPv6][UDP].sport), (25, SERVICE6, REMOTE6, 5001), "%s: SNAT + SPAT to node2" % answer)
        quoted = error.pkt[ICMPv6DestUnreach].payload
        c.eq((error.pkt[IPv6].src, quoted.src, quoted.dst, quoted.payload.sport, quoted.payload.dport), (SERVICE6, REMOTE6, SERVICE6, 40053, 5001),
             "%s: the error leaves as the service, its quote translated back" % error)
        sent = bytes(fx.inputs["eth0"][0].pkt[IPv6])
        c.eq(bytes(quoted), sent, "%s: the quote is the query as node2 sent it" % error)
        c.report(fx, "nat", "query DNAT'd to %s:8080, answer and port unreachable SNAT'd to %s:5001, the quote byte for byte what node2 sent" % (POD_B6, SERVICE6))

    def check_34(fx):
        common6(fx, {"tx": {"pod-c": 1, "pod-a": 1}, "drops": {"flow-action-drop": 2, "spoofed-source": 2, "invalid-tunnel-source": 1}})
        c.eq(fx.out("pod-c")[0].pkt[TCP].dport, 80, "the allowed SYN to port 80")
        c.eq(fx.out("pod-a")[0].pkt[TCP].flags, "SA", "pod-c's SYN-ACK, the reply of an allowed flow")
        c.report(fx, "policy", "vn1 -> vn2 TCP 80 allowed (and its reply); TCP 22 and UDP 80 dropped; spoofed address and MAC; node3 for node2's pod")

    return {"30": check_30, "31": check_31, "32": check_32, "33": check_33, "34": check_34}
