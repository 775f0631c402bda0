#!/usr/bin/python3
"""Generates the INPUT pcaps of every pcap fixture (run with /usr/bin/python3,
Debian's interpreter, which has scapy):

    /usr/bin/python3 pcap-fixtures/make_inputs.py [fixture-name ...]

Each fixture folder pcap-fixtures/<NN-name>/ holds a hand-written state.yaml
and the in/<vif-name>.pcap files written here (the vif name is the file
name). The output is deterministic: every field that scapy would otherwise
pick (IP ids, ports, sequence numbers, payloads) is fixed, and frame n of a
fixture (counted over all of its input files, in the order they are built
here) is stamped 1700000000 s + n us, so a replay that merges several inputs
by timestamp sees them in the order written below. Classic pcap, little
endian, microsecond timestamps, link type 1 (Ethernet).

The expected outputs (expected/) are NOT written here: they come from
replaying the inputs through the vrouter (`npm run fixtures:update`) and are
checked by checks.py against what each scenario means.
"""
import os
import sys

from scapy.all import ARP, DNS, DNSQR, DNSRR, GRE, ICMP, IP, IPv6, TCP, UDP, Dot1Q, Ether, IPOption_Router_Alert, IPOption_RR, Raw, bind_layers
from scapy.contrib.mpls import MPLS
from scapy.utils import PcapWriter

bind_layers(UDP, MPLS, dport=6635)
bind_layers(UDP, MPLS, dport=51234)

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCH = 1700000000

VROUTER_MAC = "00:00:5e:00:01:00"
FABRIC_MAC = "52:54:00:00:00:11"  # node1's eth0
UNDERLAY_GW_MAC = "52:54:00:00:00:fe"  # the underlay router, node.underlayGatewayMac
POD_A_MAC = "02:00:0a:01:01:03"
POD_B_MAC = "02:00:0a:01:01:04"
POD_C_MAC = "02:00:0a:02:02:03"
BROADCAST = "ff:ff:ff:ff:ff:ff"

NODE1 = "192.168.0.11"  # this node
NODE2 = "192.168.0.12"
NODE3 = "192.168.0.13"
NODE4 = "192.168.0.14"
OTHER_NODE = "192.168.0.99"

GATEWAY = "10.1.1.1"
POD_A = "10.1.1.3"
POD_B = "10.1.1.4"
REMOTE_POD = "10.1.1.5"  # on node2, label 25
GRE_POD = "10.1.1.6"  # on node3, advertised with gre only
GRE_PREFERRED_POD = "10.1.1.7"  # on node3, advertised with udp and gre
UDP_ONLY_POD = "10.1.1.8"  # on node4, advertised with udp only
VIP = "10.96.0.10"  # a ClusterIP-like /32 with an ECMP route
POD_C = "10.2.2.3"  # in vn2

ECMP_FLOWS = 300
ECMP_FIRST_SPORT = 20000


class Fixture:
    """The input frames of one fixture, per vif, stamped in creation order."""

    def __init__(self, name):
        self.name = name
        self.frames = {}  # vif name -> [(usec, bytes)]
        self.count = 0

    def add(self, vif, frame):
        data = bytes(frame)
        self.count += 1
        self.frames.setdefault(vif, []).append((self.count, data))
        return data

    def write(self):
        folder = os.path.join(HERE, self.name, "in")
        os.makedirs(folder, exist_ok=True)
        for old in os.listdir(folder):
            if old.endswith(".pcap") and old[:-5] not in self.frames:
                os.remove(os.path.join(folder, old))
        for vif, frames in self.frames.items():
            path = os.path.join(folder, vif + ".pcap")
            writer = PcapWriter(path, linktype=1, endianness="<", snaplen=65535)
            writer.write_header(None)
            for usec, data in frames:
                writer.write_packet(data, sec=EPOCH, usec=usec)
            writer.close()
        total = sum(len(frames) for frames in self.frames.values())
        detail = ", ".join("%s %d" % (vif, len(frames)) for vif, frames in self.frames.items())
        print("%-26s %4d frames (%s)" % (self.name, total, detail))


# ---------------------------------------------------------------- builders

def from_pod(src_mac, packet, vlan=None):
    """A pod's frame: pods send everything to the vrouter MAC (ARP proxy)."""
    if vlan is None:
        return Ether(dst=VROUTER_MAC, src=src_mac) / packet
    return Ether(dst=VROUTER_MAC, src=src_mac) / Dot1Q(vlan=vlan, prio=0) / packet


def ip(src, dst, ip_id, ttl=64, df=False, **extra):
    return IP(src=src, dst=dst, id=ip_id, ttl=ttl, flags="DF" if df else 0, tos=0, **extra)


def udp(sport, dport, payload):
    return UDP(sport=sport, dport=dport) / Raw(payload)


def tcp_syn(sport, dport, seq, flags="S", ack=0):
    return TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=64240, options=[])


def echo(kind, ident, seq, payload=b"0123456789abcdef"):
    return ICMP(type=kind, code=0, id=ident, seq=seq) / Raw(payload)


def mpls_over_udp(src, dst, ip_id, sport, label, mpls_ttl, inner, dport=6635, s=1, udp_checksum=0):
    """A fabric frame from another node (through the underlay router) carrying MPLS over UDP."""
    datagram = UDP(sport=sport, dport=dport, chksum=udp_checksum) / MPLS(label=label, cos=0, s=s, ttl=mpls_ttl) / inner
    return Ether(dst=FABRIC_MAC, src=UNDERLAY_GW_MAC) / IP(src=src, dst=dst, id=ip_id, ttl=64, flags=0, tos=0) / datagram


def mpls_over_gre(src, dst, ip_id, label, mpls_ttl, inner, **gre_fields):
    tunnel = GRE(proto=0x8847, **gre_fields) / MPLS(label=label, cos=0, s=1, ttl=mpls_ttl) / inner
    return Ether(dst=FABRIC_MAC, src=UNDERLAY_GW_MAC) / IP(src=src, dst=dst, id=ip_id, ttl=64, flags=0, tos=0) / tunnel


def arp(src_mac, op, psrc, pdst, hwdst="00:00:00:00:00:00", eth_dst=BROADCAST):
    return Ether(dst=eth_dst, src=src_mac) / ARP(hwtype=1, ptype=0x0800, hwlen=6, plen=4, op=op,
                                                 hwsrc=src_mac, psrc=psrc, hwdst=hwdst, pdst=pdst)


# ---------------------------------------------------------------- scenarios

def f01():
    f = Fixture("01-local-pod-to-pod")
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0101) / udp(33001, 7777, b"01 udp pod-a to pod-b")))
    f.add("pod-b", from_pod(POD_B_MAC, ip(POD_B, POD_A, 0x0201) / udp(7777, 33001, b"01 udp pod-b to pod-a, reply")))
    # Linux sets DF on TCP; a vrouter routing locally leaves it alone.
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0102, df=True) / tcp_syn(40001, 8080, 1000)))
    # The SYN-ACK as a NIC hands it over: padded to the 60-byte Ethernet minimum.
    synack = from_pod(POD_B_MAC, ip(POD_B, POD_A, 0x0202, df=True) / tcp_syn(8080, 40001, 5000, "SA", 1001))
    f.add("pod-b", bytes(synack) + b"\x00" * (60 - len(synack)))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0103) / echo(8, 0x0a0a, 1)))
    f.add("pod-b", from_pod(POD_B_MAC, ip(POD_B, POD_A, 0x0203) / echo(0, 0x0a0a, 1)))
    return f


def f02():
    f = Fixture("02-encap-to-remote-pod")
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, REMOTE_POD, 0x0301) / udp(33002, 7777, b"02 udp pod-a to the remote pod")))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, REMOTE_POD, 0x0302, df=True) / tcp_syn(40002, 443, 2000)))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, REMOTE_POD, 0x0303) / echo(8, 0x0b0b, 7)))
    return f


def f03():
    f = Fixture("03-decap-to-pod")
    # As node2 sends them: the inner TTL was decremented there (64 -> 63), MPLS TTL = inner TTL.
    inner_udp = ip(REMOTE_POD, POD_A, 0x0401, ttl=63) / udp(7777, 33002, b"03 udp from the remote pod, port 6635")
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x1001, 51111, 17, 63, inner_udp))
    inner_tcp = ip(REMOTE_POD, POD_B, 0x0402, ttl=63, df=True) / tcp_syn(443, 40003, 7000, "SA", 2001)
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x1002, 52222, 18, 63, inner_tcp, dport=51234, udp_checksum=None))
    inner_echo = ip(REMOTE_POD, POD_A, 0x0403, ttl=63) / echo(0, 0x0b0b, 7)
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x1003, 53333, 17, 63, inner_echo, dport=51234))
    return f


def f04():
    f = Fixture("04-mpls-over-gre")
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, GRE_POD, 0x0501) / udp(33004, 7000, b"04 to a pod advertised with gre only")))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, GRE_PREFERRED_POD, 0x0502) / udp(33004, 7000, b"04 udp+gre advertised, node prefers gre")))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, UDP_ONLY_POD, 0x0503) / udp(33004, 7000, b"04 to a pod advertised with udp only")))
    inner = ip(GRE_POD, POD_A, 0x0504, ttl=63) / udp(7000, 33004, b"04 reply over mpls-over-gre")
    f.add("eth0", mpls_over_gre(NODE3, NODE1, 0x2001, 17, 63, inner))
    return f


def ecmp_frames(f):
    for rnd in (1, 2):
        for flow in range(ECMP_FLOWS):
            sport = ECMP_FIRST_SPORT + flow
            payload = b"ecmp flow %03d packet %d" % (flow, rnd)
            f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, VIP, (rnd * 1000 + flow) & 0xffff) / udp(sport, 80, payload)))
    return f


def f05():
    return ecmp_frames(Fixture("05-ecmp-three-members"))


def f06():
    return ecmp_frames(Fixture("06-ecmp-member-removed"))


def f07():
    f = Fixture("07-arp-proxy")
    f.add("pod-a", arp(POD_A_MAC, 1, POD_A, POD_B))  # a local pod of the VN: answered
    gateway = arp(POD_A_MAC, 1, POD_A, GATEWAY)  # the gateway, padded to 60 bytes: answered
    f.add("pod-a", bytes(gateway) + b"\x00" * (60 - len(gateway)))
    f.add("pod-a", arp(POD_A_MAC, 1, POD_A, REMOTE_POD))  # a remote pod of the VN: answered
    f.add("pod-a", arp(POD_A_MAC, 1, POD_A, POD_A))  # gratuitous ARP (announcement) of its own IP: silent
    f.add("pod-a", arp(POD_A_MAC, 1, "0.0.0.0", POD_A))  # RFC 5227 probe for its own IP: silent
    f.add("pod-a", arp(POD_A_MAC, 1, POD_A, "172.16.5.5"))  # outside the VN's subnets: silent
    f.add("pod-a", arp(POD_A_MAC, 2, POD_A, GATEWAY, hwdst=VROUTER_MAC, eth_dst=VROUTER_MAC))  # a reply: ignored
    f.add("eth0", arp(UNDERLAY_GW_MAC, 1, "192.168.0.254", POD_B))  # from the fabric: ignored
    f.add("pod-b", arp(POD_B_MAC, 1, POD_B, POD_A))  # the other pod asking: answered on pod-b
    return f


def f08():
    f = Fixture("08-no-route")
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, "10.1.1.99", 0x0801) / udp(33008, 9, b"08 in the subnet, no route")))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, "8.8.8.8", 0x0802) / udp(33008, 53, b"08 outside, no default route")))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_C, 0x0803) / udp(33008, 9, b"08 vn1 to vn2")))
    f.add("pod-c", from_pod(POD_C_MAC, ip(POD_C, POD_A, 0x0804) / udp(33008, 9, b"08 vn2 to vn1")))
    return f


def f09():
    f = Fixture("09-ttl-expiry")
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0901, ttl=1) / udp(33434, 33435, b"09 traceroute probe ttl 1")))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0902, ttl=1) / echo(8, 0x0c0c, 1)))
    # An ICMP error that expires: never an ICMP error about an ICMP error.
    quoted = bytes(ip(POD_B, "10.1.1.200", 0x7777) / udp(1000, 2000, b"12345678"))[:28]
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0903, ttl=1) / ICMP(type=3, code=3) / Raw(quoted)))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0904, ttl=2) / udp(33434, 33436, b"09 ttl 2, local")))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, REMOTE_POD, 0x0905, ttl=2) / udp(33434, 33437, b"09 ttl 2, remote")))
    inner1 = ip(REMOTE_POD, POD_A, 0x0906, ttl=1) / udp(7000, 33004, b"09 mpls ttl 1")
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x3001, 51000, 17, 1, inner1))
    inner2 = ip(REMOTE_POD, POD_A, 0x0907, ttl=1) / udp(7000, 33004, b"09 mpls ttl 2, inner ttl 1")
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x3002, 51001, 17, 2, inner2))
    return f


def f10():
    f = Fixture("10-malformed")
    good = from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0a01) / udp(33010, 9, b"10 malformed"))
    f.add("pod-a", bytes(good)[:10])  # truncated Ethernet header
    f.add("pod-a", bytes(good)[:14 + 12])  # IPv4 header cut at 12 bytes
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0a03, ihl=4) / udp(33010, 9, b"10 ihl 4")))
    bad_sum = from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0a04) / udp(33010, 9, b"10 bad header checksum"))
    right = IP(bytes(bad_sum[IP])).chksum
    bad_sum[IP].chksum = right ^ 0x00ff
    f.add("pod-a", bad_sum)
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0a05, len=200) / udp(33010, 9, b"10 total length 200")))
    inner = ip(REMOTE_POD, POD_A, 0x0a06, ttl=63) / udp(7000, 33010, b"10 inner")
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x4001, 51010, 17, 63, inner, s=0))  # label without S bit
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x4002, 51011, 999, 63, inner))  # unknown label
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x4003, 51012, 3, 63, inner))  # reserved label 3 (implicit null)
    f.add("eth0", mpls_over_gre(NODE3, NODE1, 0x4004, 17, 63, inner, key_present=1, key=0x1234))  # GRE with a key
    f.add("pod-a", Ether(dst=VROUTER_MAC, src=POD_A_MAC) / IPv6(src="fd00::3", dst="fd00::4", hlim=64, nh=50) / Raw(b"\x00\x00\x10\x10\x00\x00\x00\x01" + b"10 ipv6 esp"))
    f.add("eth0", Ether(dst=FABRIC_MAC, src=UNDERLAY_GW_MAC, type=0x88B5) / Raw(b"10 local experimental ethertype"))
    other_port = Ether(dst=FABRIC_MAC, src=UNDERLAY_GW_MAC) / ip(NODE2, NODE1, 0x4005) / udp(51013, 9999, b"10 udp to another port")
    f.add("eth0", other_port)
    f.add("eth0", mpls_over_udp(NODE2, OTHER_NODE, 0x4006, 51014, 17, 63, inner))  # tunnel to another node
    return f


def f11():
    f = Fixture("11-vlan-and-options")
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0b01) / udp(33011, 9, b"11 802.1Q tagged, local"), vlan=100))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x0b02, options=[IPOption_Router_Alert()]) / udp(33011, 9, b"11 router alert option, local")))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, REMOTE_POD, 0x0b03) / udp(33011, 9, b"11 802.1Q tagged, remote"), vlan=100))
    rr = IPOption_RR(routers=["0.0.0.0", "0.0.0.0"])
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, REMOTE_POD, 0x0b04, options=[rr]) / udp(33011, 9, b"11 record route option, remote")))
    return f


# ---------------------------------------------------------------- ClusterIP, flows, policy (12-22)
#
# 12/13 and 17 involve a second node: node2 (underlay 192.168.0.12, fabric vif eth0 52:54:00:00:00:12)
# hosts the backend pods of the ClusterIP 10.96.0.10 in VN `web` (10.1.2.0/24, label 40 on node2).
# On node1 the client pod-a keeps label 17.

NODE2_FABRIC_MAC = "52:54:00:00:00:12"  # node2's eth0
BACKEND = "10.1.2.5"  # web-1 on node2 (12/13) and dns-1 on node2 (17), label 40 there
BACKEND_MAC = "02:00:0a:01:02:05"
BACKEND_LABEL = 40
LOCAL_BACKEND = "10.1.2.6"  # dns-1 on node1 itself (14, 22)
LOCAL_BACKEND_MAC = "02:00:0a:01:02:06"
POD_A_LABEL = 17


def mpls_over_udp_to(fabric_mac, src, dst, ip_id, sport, label, mpls_ttl, inner):
    """A fabric frame to a node other than node1 (its own fabric MAC), MPLS over UDP, checksum 0."""
    datagram = UDP(sport=sport, dport=6635, chksum=0) / MPLS(label=label, cos=0, s=1, ttl=mpls_ttl) / inner
    return Ether(dst=fabric_mac, src=UNDERLAY_GW_MAC) / IP(src=src, dst=dst, id=ip_id, ttl=64, flags=0, tos=0) / datagram


def rebuilt(packet):
    """A scapy packet with every checksum computed from scratch (bytes -> IP)."""
    return IP(bytes(packet))


def clusterip_tcp_conversation():
    """The TCP exchange of 12/13, as the two pods send it: (side, ip id, flags, seq, ack, payload).

    side "c" is the client pod-a (10.1.1.3:41000 -> 10.96.0.10:80), side "s" the backend pod
    (10.1.2.5:8080 -> 10.1.1.3:41000). Handshake, one request, one response, FIN / FIN-ACK / ACK.
    """
    request = b"GET / HTTP/1.0\r\n\r\n"
    response = b"HTTP/1.0 200 OK\r\n\r\nhello from web-1\n"
    c_isn, s_isn = 1000, 5000
    c_next = c_isn + 1 + len(request)
    s_next = s_isn + 1 + len(response)
    return [
        ("c", 0x1201, "S", c_isn, 0, b""),
        ("s", 0x1301, "SA", s_isn, c_isn + 1, b""),
        ("c", 0x1202, "A", c_isn + 1, s_isn + 1, b""),
        ("c", 0x1203, "PA", c_isn + 1, s_isn + 1, request),
        ("s", 0x1302, "PA", s_isn + 1, c_next, response),
        ("c", 0x1204, "FA", c_next, s_next, b""),
        ("s", 0x1303, "FA", s_next, c_next + 1, b""),
        ("c", 0x1205, "A", c_next + 1, s_next + 1, b""),
    ]


CLIENT_PORT = 41000


def conversation_segment(side, ip_id, flags, seq, ack, payload, ttl=64, translated=False):
    """One segment of the 12/13 exchange as an IP packet. The client always addresses the ClusterIP.
    A backend segment is as the pod sent it, or (translated) as the client sees it: from 10.96.0.10:80."""
    if side == "c":
        packet = ip(POD_A, VIP, ip_id, ttl=ttl, df=True) / TCP(sport=CLIENT_PORT, dport=80, seq=seq, ack=ack, flags=flags, window=64240, options=[])
    else:
        src, sport = (VIP, 80) if translated else (BACKEND, 8080)
        packet = ip(src, POD_A, ip_id, ttl=ttl, df=True) / TCP(sport=sport, dport=CLIENT_PORT, seq=seq, ack=ack, flags=flags, window=65160, options=[])
    if payload:
        packet = packet / Raw(payload)
    return rebuilt(packet)


def f12():
    """Client node (node1): pod-a talks to the ClusterIP; node2's replies come back from the ClusterIP."""
    f = Fixture("12-clusterip-tcp-client-node")
    outer_id = 0x5001
    for side, ip_id, flags, seq, ack, payload in clusterip_tcp_conversation():
        if side == "c":
            f.add("pod-a", from_pod(POD_A_MAC, conversation_segment(side, ip_id, flags, seq, ack, payload)))
        else:
            # As node2 sends it: SNAT/SPAT back to 10.96.0.10:80, TTL 63 (node2 routed it), MPLS TTL = 63.
            inner = conversation_segment(side, ip_id, flags, seq, ack, payload, ttl=63, translated=True)
            f.add("eth0", mpls_over_udp(NODE2, NODE1, outer_id, 54321, POD_A_LABEL, 63, inner))
            outer_id += 1
    return f


def f13():
    """Server node (node2): node1's tunnelled client segments and the backend pod's replies."""
    f = Fixture("13-clusterip-tcp-server-node")
    outer_id = 0x6001
    for side, ip_id, flags, seq, ack, payload in clusterip_tcp_conversation():
        if side == "c":
            # As node1 sends it: inner destination still the ClusterIP, TTL 63, label 40 (web-1 on node2).
            inner = conversation_segment(side, ip_id, flags, seq, ack, payload, ttl=63)
            f.add("eth0", mpls_over_udp_to(NODE2_FABRIC_MAC, NODE1, NODE2, outer_id, 53412, BACKEND_LABEL, 63, inner))
            outer_id += 1
        else:
            f.add("web-1", from_pod(BACKEND_MAC, conversation_segment(side, ip_id, flags, seq, ack, payload)))
    return f


def dns_query(ident, name):
    """A DNS query for an A record (real DNS, so that tshark's DNS/mDNS dissectors accept it)."""
    return DNS(id=ident, rd=1, qd=DNSQR(qname=name, qtype="A", qclass="IN"))


def dns_answer(ident, name, address):
    return DNS(id=ident, qr=1, aa=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype="A", qclass="IN"),
               an=DNSRR(rrname=name, type="A", rclass="IN", ttl=30, rdata=address))


WEB = "web.default.svc.cluster.local"
API = "api.default.svc.cluster.local"


def f14():
    f = Fixture("14-clusterip-udp-port-translation")
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, VIP, 0x1401) / UDP(sport=33053, dport=53) / dns_query(0x1401, WEB)))
    f.add("dns-1", from_pod(LOCAL_BACKEND_MAC, ip(LOCAL_BACKEND, POD_A, 0x1451) / UDP(sport=5353, dport=33053) / dns_answer(0x1401, WEB, "10.96.0.80")))
    # A datagram without UDP checksum (0): NAT must leave it 0.
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, VIP, 0x1402) / UDP(sport=33054, dport=53, chksum=0) / dns_query(0x1402, API)))
    f.add("dns-1", from_pod(LOCAL_BACKEND_MAC, ip(LOCAL_BACKEND, POD_A, 0x1452) / UDP(sport=5353, dport=33054, chksum=0) / dns_answer(0x1402, API, "10.96.0.81")))
    # Not a service port: vn1 may use the service on 53 only.
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, VIP, 0x1403) / UDP(sport=33055, dport=54) / dns_query(0x1403, WEB)))
    # The backend pod's own address is not routed in vn1: only the ClusterIP reaches it.
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, LOCAL_BACKEND, 0x1404) / UDP(sport=33056, dport=5353) / dns_query(0x1404, WEB)))
    # A second query of flow 1 (the flow hit path).
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, VIP, 0x1405) / UDP(sport=33053, dport=53) / dns_query(0x1405, API)))
    return f


ECMP_STICKY_FLOWS = 1000
ECMP_STICKY_PACKETS = 3
ECMP_STICKY_FIRST_SPORT = 30000


def ecmp_sticky_frames(f):
    """1,000 UDP flows to the VIP, 3 packets each, interleaved in a fixed pseudo-random order
    (every flow's packets stay in order; flows are mixed)."""
    import random
    order = [flow for flow in range(ECMP_STICKY_FLOWS) for _ in range(ECMP_STICKY_PACKETS)]
    random.Random(1515).shuffle(order)
    sent = [0] * ECMP_STICKY_FLOWS
    for n, flow in enumerate(order):
        sent[flow] += 1
        payload = b"f%03d p%d" % (flow, sent[flow])
        f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, VIP, 0x4000 + n) / udp(ECMP_STICKY_FIRST_SPORT + flow, 80, payload)))
    return f


def f15():
    return ecmp_sticky_frames(Fixture("15-ecmp-1000-flows-sticky"))


def f16():
    return ecmp_sticky_frames(Fixture("16-ecmp-backend-removed-midstream"))


def f17():
    """Server node (node2): a UDP datagram to the ClusterIP, answered by the backend with ICMP port unreachable."""
    f = Fixture("17-icmp-port-unreachable-translated")
    outer_id = 0x7001
    for n, (sport, quote_all) in enumerate(((33017, True), (33018, False))):
        query = rebuilt(ip(POD_A, VIP, 0x1701 + n, ttl=63) / UDP(sport=sport, dport=53) / dns_query(0x1701 + n, WEB))
        f.add("eth0", mpls_over_udp_to(NODE2_FABRIC_MAC, NODE1, NODE2, outer_id + n, 53417, BACKEND_LABEL, 63, query))
        # What dns-1 received (DNAT to 10.1.2.5, DPAT 53 -> 5353) and quotes back.
        received = translated_copy(query, dst=BACKEND, dport=5353)
        # Linux quotes as much as fits in 576 bytes (here all of it); RFC 792 asks for the header + 8 bytes.
        quote = received if quote_all else received[:28]
        error = ip(BACKEND, POD_A, 0x1751 + n) / ICMP(type=3, code=3) / Raw(quote)
        f.add("dns-1", from_pod(BACKEND_MAC, error))
    # The other way: dns-1 answers a third query, and pod-a (whose socket has closed) answers the answer with
    # port unreachable, quoting it as it arrived (from 10.96.0.10:53, TTL 63); node1 tunnels that error here.
    query = rebuilt(ip(POD_A, VIP, 0x1703, ttl=63) / UDP(sport=33019, dport=53) / dns_query(0x1703, WEB))
    f.add("eth0", mpls_over_udp_to(NODE2_FABRIC_MAC, NODE1, NODE2, outer_id + 2, 53419, BACKEND_LABEL, 63, query))
    answer = rebuilt(ip(BACKEND, POD_A, 0x1753) / UDP(sport=5353, dport=33019) / dns_answer(0x1703, WEB, "10.96.0.80"))
    f.add("dns-1", from_pod(BACKEND_MAC, answer))
    seen = translated_copy(answer, src=VIP, sport=53, ttl=63)  # as pod-a received it
    error = rebuilt(ip(POD_A, VIP, 0x1704, ttl=63) / ICMP(type=3, code=3) / Raw(seen))
    f.add("eth0", mpls_over_udp_to(NODE2_FABRIC_MAC, NODE1, NODE2, outer_id + 3, 53420, BACKEND_LABEL, 63, error))
    return f


def translated_copy(packet, src=None, dst=None, sport=None, dport=None, ttl=None):
    """The bytes of an IP/UDP packet with other addresses, ports or TTL, checksums computed from scratch."""
    p = IP(bytes(packet))
    for field, value in (("src", src), ("dst", dst), ("ttl", ttl)):
        if value is not None:
            setattr(p, field, value)
    for field, value in (("sport", sport), ("dport", dport)):
        if value is not None:
            setattr(p[UDP], field, value)
    del p.chksum
    del p[UDP].chksum
    return bytes(IP(bytes(p)))


def f18():
    f = Fixture("18-policy-deny-and-port-allow")
    # Allowed: vn1 -> vn2 TCP port 80, and its replies.
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_C, 0x1801, df=True) / tcp_syn(41080, 80, 8000)))
    f.add("pod-c", from_pod(POD_C_MAC, ip(POD_C, POD_A, 0x1851, df=True) / tcp_syn(80, 41080, 9000, "SA", 8001)))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_C, 0x1802, df=True) / tcp_syn(41080, 80, 8001, "A", 9001)))
    # Denied: port 22 (twice: the flow remembers the verdict), and pod-c's answer from port 22.
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_C, 0x1803, df=True) / tcp_syn(41022, 22, 8100)))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_C, 0x1804, df=True) / tcp_syn(41022, 22, 8100)))
    f.add("pod-c", from_pod(POD_C_MAC, ip(POD_C, POD_A, 0x1852, df=True) / tcp_syn(22, 41022, 9100, "SA", 8101)))
    # Denied: the other way round (vn2 -> vn1, no rule), UDP to port 80 (the rule is TCP), ICMP echo.
    f.add("pod-c", from_pod(POD_C_MAC, ip(POD_C, POD_A, 0x1853, df=True) / tcp_syn(42080, 80, 9200)))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_C, 0x1805) / udp(41080, 80, b"18 udp to port 80")))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_C, 0x1806) / echo(8, 0x1818, 1)))
    return f


def f19():
    f = Fixture("19-spoofed-sources")
    # pod-a with pod-b's IP, with an address that is nobody's, and with pod-b's MAC: spoofed-source.
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_B, REMOTE_POD, 0x1901) / udp(33019, 9, b"19 pod-a claiming pod-b's IP")))
    f.add("pod-a", from_pod(POD_A_MAC, ip("198.51.100.7", REMOTE_POD, 0x1902) / udp(33019, 9, b"19 pod-a claiming an outside IP")))
    f.add("pod-a", from_pod(POD_B_MAC, ip(POD_A, POD_B, 0x1903) / udp(33019, 9, b"19 pod-a's IP with pod-b's MAC")))
    # Legitimate: pod-a to pod-b.
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x1904) / udp(33019, 9, b"19 pod-a as itself")))
    # From the fabric: node3 sending for the remote pod that vn1 routes to node2; node2 sending for an
    # unrouted address; node2 sending for pod-a (a local pod): invalid-tunnel-source.
    inner = ip(REMOTE_POD, POD_A, 0x1951, ttl=63) / udp(7019, 33019, b"19 10.1.1.5 via node3")
    f.add("eth0", mpls_over_udp(NODE3, NODE1, 0x9001, 50019, 17, 63, inner))
    inner = ip("10.1.1.77", POD_A, 0x1952, ttl=63) / udp(7019, 33019, b"19 unrouted 10.1.1.77 via node2")
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x9002, 50020, 17, 63, inner))
    inner = ip(POD_A, POD_B, 0x1953, ttl=63) / udp(7019, 33019, b"19 pod-a's address via node2")
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x9003, 50021, 18, 63, inner))
    # Legitimate: node2 for its own pod 10.1.1.5.
    inner = ip(REMOTE_POD, POD_A, 0x1954, ttl=63) / udp(7019, 33019, b"19 10.1.1.5 via node2")
    f.add("eth0", mpls_over_udp(NODE2, NODE1, 0x9004, 50022, 17, 63, inner))
    return f


def f20():
    f = Fixture("20-flow-table-full")

    def a_to_b(n, ip_id, text):
        return from_pod(POD_A_MAC, ip(POD_A, POD_B, ip_id) / udp(20000 + n, 7000 + n, b"20 " + text))

    def b_to_a(n, ip_id, text):
        return from_pod(POD_B_MAC, ip(POD_B, POD_A, ip_id) / udp(7000 + n, 20000 + n, b"20 " + text))

    f.add("pod-a", a_to_b(1, 0x2001, b"flow A"))
    f.add("pod-b", b_to_a(1, 0x2051, b"flow A reply: established"))
    f.add("pod-a", a_to_b(2, 0x2002, b"flow B, never answered"))  # the table (2 pairs) is now full
    f.add("pod-a", a_to_b(3, 0x2003, b"flow C evicts unreplied B"))
    f.add("pod-a", a_to_b(1, 0x2004, b"flow A again"))
    f.add("pod-b", b_to_a(3, 0x2052, b"flow C reply: established"))
    f.add("pod-a", a_to_b(4, 0x2005, b"flow D: table full of established pairs"))
    f.add("pod-a", a_to_b(1, 0x2006, b"flow A once more"))
    f.add("pod-a", a_to_b(2, 0x2007, b"flow B again: evicted, no room"))
    f.add("pod-b", b_to_a(2, 0x2053, b"flow B reply: evicted, no room"))
    return f


def tcp_segment(sport, dport, seq, ack, flags, window, options=(), payload=b""):
    segment = TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=window, options=list(options))
    return segment / Raw(payload) if payload else segment


def f21():
    f = Fixture("21-tcp-rst-in-and-out-of-window")
    wscale = [("MSS", 1460), ("NOP", None), ("WScale", 7)]
    # Connection 1: a stray RST far outside pod-a's window (502 << 7 = 64256 bytes) leaves the pair.
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x2101, df=True) / tcp_segment(41001, 8080, 1000, 0, "S", 64240, wscale)))
    f.add("pod-b", from_pod(POD_B_MAC, ip(POD_B, POD_A, 0x2151, df=True) / tcp_segment(8080, 41001, 5000, 1001, "SA", 65160, wscale)))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x2102, df=True) / tcp_segment(41001, 8080, 1001, 5001, "A", 502)))
    f.add("pod-b", from_pod(POD_B_MAC, ip(POD_B, POD_A, 0x2152, df=True) / tcp_segment(8080, 41001, 5001 + 100000, 0, "R", 0)))
    data = b"21 data after the stray RST"
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x2103, df=True) / tcp_segment(41001, 8080, 1001, 5001, "PA", 502, payload=data)))
    f.add("pod-b", from_pod(POD_B_MAC, ip(POD_B, POD_A, 0x2153, df=True) / tcp_segment(8080, 41001, 5001, 1001 + len(data), "A", 509)))
    # Connection 2: an RST 50000 bytes into pod-a's window: in window only with the scale (502 << 7).
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x2104, df=True) / tcp_segment(41002, 8080, 2000, 0, "S", 64240, wscale)))
    f.add("pod-b", from_pod(POD_B_MAC, ip(POD_B, POD_A, 0x2154, df=True) / tcp_segment(8080, 41002, 6000, 2001, "SA", 65160, wscale)))
    f.add("pod-a", from_pod(POD_A_MAC, ip(POD_A, POD_B, 0x2105, df=True) / tcp_segment(41002, 8080, 2001, 6001, "A", 502)))
    f.add("pod-b", from_pod(POD_B_MAC, ip(POD_B, POD_A, 0x2155, df=True) / tcp_segment(8080, 41002, 6001 + 50000, 0, "R", 0)))
    return f


def udp_fragments(src, dst, ip_id, sport, dport, payload, cuts):
    """A UDP datagram (checksum over the whole datagram) cut at the byte offsets `cuts` of its IP
    payload: one IP packet per piece, in datagram order, MF set on all but the last."""
    datagram = bytes(IP(bytes(ip(src, dst, ip_id) / UDP(sport=sport, dport=dport) / payload)))[20:]
    bounds = [0] + list(cuts) + [len(datagram)]
    pieces = []
    for i in range(len(bounds) - 1):
        start, end = bounds[i], bounds[i + 1]
        assert start % 8 == 0
        last = i == len(bounds) - 2
        piece = IP(src=src, dst=dst, id=ip_id, ttl=64, tos=0, proto=17, flags=0 if last else "MF", frag=start // 8) / Raw(datagram[start:end])
        pieces.append(rebuilt(piece))
    return pieces


def f22():
    f = Fixture("22-fragmented-udp-to-clusterip")
    # UDP header + DNS query > 40 bytes: cut at 24 and 40 (offsets 0, 3, 5).
    payload = dns_query(0x2200, "fragmented.default.svc.cluster.local")
    # D1: head first, in order.
    for piece in udp_fragments(POD_A, VIP, 0x2201, 33101, 53, payload, (24, 40)):
        f.add("pod-a", from_pod(POD_A_MAC, piece))
    # D2: head last: the two later fragments wait for it.
    head, middle, last = udp_fragments(POD_A, VIP, 0x2202, 33102, 53, payload, (24, 40))
    for piece in (middle, last, head):
        f.add("pod-a", from_pod(POD_A_MAC, piece))
    # D3: head, then a fragment overlapping it (bytes 16-32 of the IP payload), then the real last one.
    head, last = udp_fragments(POD_A, VIP, 0x2203, 33103, 53, payload, (24,))
    overlap = rebuilt(IP(src=POD_A, dst=VIP, id=0x2203, ttl=64, tos=0, proto=17, flags="MF", frag=2) / Raw(b"OVERLAP!OVERLAP!"))
    for piece in (head, overlap, last):
        f.add("pod-a", from_pod(POD_A_MAC, piece))
    # R1: dns-1 answers D1 with a fragmented datagram: source translated back on both, port on the head.
    for piece in udp_fragments(LOCAL_BACKEND, POD_A, 0x2251, 5353, 33101, dns_answer(0x2200, "fragmented.default.svc.cluster.local", "10.96.0.82"), (24,)):
        f.add("dns-1", from_pod(LOCAL_BACKEND_MAC, piece))
    # D4 and D5: to port 54, not a service port. The head's flow is denied, and the later fragment follows
    # that verdict: after the head (D4), and held before it, then released into the drop (D5).
    for piece in udp_fragments(POD_A, VIP, 0x2204, 33104, 54, payload, (24,)):
        f.add("pod-a", from_pod(POD_A_MAC, piece))
    head, last = udp_fragments(POD_A, VIP, 0x2205, 33105, 54, payload, (24,))
    for piece in (last, head):
        f.add("pod-a", from_pod(POD_A_MAC, piece))
    return f


FIXTURES = [f01, f02, f03, f04, f05, f06, f07, f08, f09, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22]
FIXTURES += __import__("exact_cases").input_fixtures(sys.modules[__name__])  # 23-29
FIXTURES += __import__("ipv6_cases").fixtures(sys.modules[__name__])
FIXTURES += __import__("ipv6_fragment_cases").fixtures(sys.modules[__name__])  # 35


def main(argv):
    wanted = set(os.path.basename(os.path.normpath(a)) for a in argv[1:])
    for build in FIXTURES:
        fixture = build()
        if wanted and fixture.name not in wanted:
            continue
        if not os.path.isfile(os.path.join(HERE, fixture.name, "state.yaml")):
            print("warning: %s has no state.yaml" % fixture.name, file=sys.stderr)
        fixture.write()


if __name__ == "__main__":
    main(sys.argv)
