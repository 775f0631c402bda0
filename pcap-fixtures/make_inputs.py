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

from scapy.all import ARP, GRE, ICMP, IP, IPv6, TCP, UDP, Dot1Q, Ether, IPOption_Router_Alert, IPOption_RR, Raw, bind_layers
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
    f.add("pod-a", Ether(dst=VROUTER_MAC, src=POD_A_MAC) / IPv6(src="fd00::3", dst="fd00::4", hlim=64) / udp(33010, 9, b"10 ipv6"))
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


FIXTURES = [f01, f02, f03, f04, f05, f06, f07, f08, f09, f10, f11]


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
