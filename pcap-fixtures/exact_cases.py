"""Fixtures 23-29: cases the reference vrouter's own tests check (tungstenfabric/tf-vrouter at commit
432a8e0cfe7a8ea6c7fdb2dc6cb46e3023ca22f4, tests/ and dp-core/), and the per-vif limits.

make_inputs.py takes the input builders from input_fixtures() and checks.py the checks from
fixture_checks(); each passes itself in, so this file reuses their helpers without a circular import.
"""
import struct

from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw
from scapy.contrib.mpls import MPLS

M = None  # make_inputs
C = None  # checks

ECMP_NODES = {"192.168.0.12": 25, "192.168.0.13": 26, "192.168.0.14": 27}


def input_fixtures(make_inputs):
    global M
    M = make_inputs
    return [f23, f24, f25, f26, f27, f28, f29]


def fixture_checks(checks):
    global C
    C = checks
    return {"23": check_23, "24": check_24, "25": check_25, "26": check_26, "27": check_27, "28": check_28, "29": check_29}


# ---------------------------------------------------------------- 23: the entropy port of fragments and ICMP errors

def f23():
    """tests/test_fragmentation.py (in order, out of order, with ECMP) and linux/vrouter_mod.c
    lh_get_udp_src_port: the outer source port is the flow's (fe_udp_src_port), fragments included."""
    f = M.Fixture("23-fragments-keep-the-flow-entropy-port")
    payload = bytes(range(256)) * 2
    a = lambda packet: f.add("pod-a", M.from_pod(M.POD_A_MAC, packet))
    # F1 to the remote pod: a whole datagram, then one in order fragments (3 pieces).
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2300) / M.udp(33201, 7001, b"23 whole datagram of F1"))
    for piece in M.udp_fragments(M.POD_A, M.REMOTE_POD, 0x2301, 33201, 7001, payload, (128, 256)):
        a(piece)
    # F2: fragments out of order (last, middle, head), then a whole datagram of the same flow.
    head, middle, last = M.udp_fragments(M.POD_A, M.REMOTE_POD, 0x2302, 33202, 7001, payload, (128, 256))
    for piece in (last, middle, head):
        a(piece)
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2303) / M.udp(33202, 7001, b"23 whole datagram of F2"))
    # F3 and F4 to the ECMP ClusterIP: in order, and head last; each followed by a whole datagram.
    for piece in M.udp_fragments(M.POD_A, M.VIP, 0x2304, 33203, 7053, payload, (128, 256)):
        a(piece)
    a(M.ip(M.POD_A, M.VIP, 0x2305) / M.udp(33203, 7053, b"23 whole datagram of F3"))
    head, middle, last = M.udp_fragments(M.POD_A, M.VIP, 0x2306, 33204, 7053, payload, (128, 256))
    for piece in (middle, last, head):
        a(piece)
    a(M.ip(M.POD_A, M.VIP, 0x2307) / M.udp(33204, 7053, b"23 whole datagram of F4"))
    # F5 from node2's pod: pod-a replies once, then sends a port unreachable about it: the error is F5's reply too.
    request = M.ip(M.REMOTE_POD, M.POD_A, 0x2350, ttl=63) / M.udp(7005, 33205, b"23 request from node2")
    f.add("eth0", M.mpls_over_udp(M.NODE2, M.NODE1, 0x2351, 50005, 17, 63, request))
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2308) / M.udp(33205, 7005, b"23 reply to node2"))
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2309) / ICMP(type=3, code=3) / Raw(bytes(M.rebuilt(request))))
    # F3's answer from the ClusterIP, and pod-a's port unreachable about it: it takes F3's member and port.
    answer = M.ip(M.VIP, M.POD_A, 0x2352, ttl=63) / M.udp(7053, 33203, b"23 answer from the ClusterIP")
    f.add("eth0", M.mpls_over_udp(M.NODE2, M.NODE1, 0x2353, 50006, 17, 63, answer))
    a(M.ip(M.POD_A, M.VIP, 0x230a) / ICMP(type=3, code=3) / Raw(bytes(M.rebuilt(answer))[:28]))
    return f


def inner_ip(frame):
    return Ether(frame.data)[MPLS][IP] if MPLS in Ether(frame.data) else Ether(frame.data)[IP]


def fragment_key(frame):
    ip = inner_ip(frame)
    return (ip.src, ip.dst, ip.id, ip.frag)


def flow_of(ip):
    """The flow a pod-a packet belongs to: its source port, from the UDP header, the datagram's id, or the quote."""
    if ip.proto == 1:
        return struct.unpack("!H", bytes(ip[ICMP].payload)[22:24])[0]
    return {0x2301: 33201, 0x2302: 33202, 0x2304: 33203, 0x2306: 33204}.get(ip.id) or ip[UDP].sport


def check_23(fx):
    C.check_common(fx, {"tx": {"eth0": 19, "pod-a": 2}, "drops": {}})
    sent = fx.inputs["pod-a"]
    out = {fragment_key(frame): frame for frame in fx.out("eth0")}
    C.eq(len(out), len(sent), "%s: one tunnel frame per pod-a frame" % fx.name)
    # A held fragment leaves right after its head, with the head's time.
    heads = {inner_ip(frame).id: frame for frame in sent if inner_ip(frame).frag == 0}
    ports, members = {}, {}
    for inp in sent:
        ip = inner_ip(inp)
        got = out.get(fragment_key(inp))
        C.expect(got is not None, "%s: %s (id %#x offset %d) did not leave on eth0" % (fx.name, inp, ip.id, ip.frag * 8))
        dip = got.pkt[IP].dst
        label = 25 if ip.dst == C.REMOTE_POD else ECMP_NODES.get(dip)
        C.expect(label is not None, "%s: %s went to %s, not an ECMP member" % (fx.name, got, dip))
        clock = heads[ip.id] if ip.id in heads and heads[ip.id].time_ns > inp.time_ns else inp
        sport = C.check_tunnelled(got, C.Frame(inp.data, clock.time_ns, inp.file, inp.index), dip, label, "udp")
        flow = flow_of(ip)
        ports.setdefault(flow, set()).add(sport)
        members.setdefault(flow, set()).add(dip)
    for flow in sorted(ports):
        C.eq(len(ports[flow]), 1, "%s: entropy ports of flow %d (whole datagrams, fragments, ICMP errors)" % (fx.name, flow))
        C.eq(len(members[flow]), 1, "%s: underlay destinations of flow %d" % (fx.name, flow))
    C.expect(len(set().union(*ports.values())) == len(ports), "%s: the five flows should have five entropy ports" % fx.name)
    C.report(fx, "entropy-port", "every fragment (in order, held for its head, with ECMP) and every ICMP error leaves with its flow's port and member")
    delivered = C.match(fx, "pod-a", fx.inputs["eth0"])
    for got, inp in zip(delivered, fx.inputs["eth0"]):
        C.check_delivered(got, inp, C.POD_A_MAC, ttl_drop=0)
    C.report(fx, "from-node2", "node2's request and the ClusterIP's answer delivered to pod-a unchanged")
    pairs = C.flow_pairs(fx, C.load_flows(fx))
    C.eq(len(pairs), 5, "%s: flows.json pairs (F1-F5)" % fx.name)
    C.report(fx, "flows", "one pair per flow: fragments and errors made none of their own")


# ---------------------------------------------------------------- 24: which TCP RST closes a pair

#: (pod-a port, pod-b port): tests/test_tcp_rst.py (1136 > 500) and tests/test_syn_sent_rst.py (11004 > 11004).
RST_CONNECTIONS = {"exact": (1136, 500), "seq+2": (1137, 500), "syn-acked": (11004, 11004), "syn-ack+1": (11005, 11005), "syn-no-ack": (11006, 11006)}


def f24():
    f = M.Fixture("24-tcp-rst-exact-sequence")
    a = lambda ip_id, seg: f.add("pod-a", M.from_pod(M.POD_A_MAC, M.ip(M.POD_A, M.POD_B, ip_id) / seg))
    b = lambda ip_id, seg: f.add("pod-b", M.from_pod(M.POD_B_MAC, M.ip(M.POD_B, M.POD_A, ip_id) / seg))
    # Established, then an RST from pod-b at exactly pod-a's ACK (closes), or two past it (left, test_tcp_reset_0_outseq_rst).
    for n, (name, rst_offset) in enumerate((("exact", 0), ("seq+2", 2))):
        sport, dport = RST_CONNECTIONS[name]
        a(0x2400 + n * 16, M.tcp_segment(sport, dport, 1, 0, "S", 64240))
        b(0x2401 + n * 16, M.tcp_segment(dport, sport, 1, 2, "SA", 65160))
        a(0x2402 + n * 16, M.tcp_segment(sport, dport, 2, 2, "A", 502))
        b(0x2403 + n * 16, M.tcp_segment(dport, sport, 2 + rst_offset, 0, "R", 0))
    # seq+2 is still a connection: data flows in its pair.
    sport, dport = RST_CONNECTIONS["seq+2"]
    a(0x2420, M.tcp_segment(sport, dport, 2, 2, "PA", 502, payload=b"24 after the inexact RST"))
    # An RST answering a SYN: acknowledging it (closes), acknowledging one more (left), without ACK (left).
    for n, (name, flags, ack) in enumerate((("syn-acked", "RA", 1), ("syn-ack+1", "RA", 2), ("syn-no-ack", "R", 0))):
        sport, dport = RST_CONNECTIONS[name]
        a(0x2430 + n * 16, M.tcp_segment(sport, dport, 0, 0, "S", 64240))
        b(0x2431 + n * 16, M.tcp_segment(dport, sport, 1, ack, flags, 0))
    return f


def check_24(fx):
    C.check_common(fx, {"tx": {"pod-a": 7, "pod-b": 8}, "drops": {}})
    for src, dst, mac in (("pod-a", "pod-b", C.POD_B_MAC), ("pod-b", "pod-a", C.POD_A_MAC)):
        for out, inp in zip(C.match(fx, dst, fx.inputs[src]), fx.inputs[src]):
            C.check_delivered(out, inp, mac, ttl_drop=1)
    C.report(fx, "forwarded", "every segment forwarded, RSTs included: the vrouter judges an RST only for its flow")
    pairs = C.flow_pairs(fx, C.load_flows(fx))
    kept = [("tcp", C.POD_A, RST_CONNECTIONS[name][0], C.POD_B, RST_CONNECTIONS[name][1]) for name in ("seq+2", "syn-ack+1", "syn-no-ack")]
    C.eq(sorted(pairs), sorted(kept), "%s: flows.json pairs (the exact RST and the RST acknowledging the SYN closed theirs)" % fx.name)
    C.check_pair(fx, pairs, kept[0], "RST two past the ACK", forward={"packets": 3}, reverse={"packets": 2}, replied=True)
    for key in kept[1:]:
        C.check_pair(fx, pairs, key, "RST not acknowledging the SYN", forward={"packets": 1}, reverse={"packets": 1}, replied=True)
    C.report(fx, "flows", "closed: RST at pod-a's ACK, RST+ACK of SYN+1; kept: RST at ACK+2 (data still counted), RST+ACK of SYN+2, RST without ACK")


# ---------------------------------------------------------------- 25: TTL 1 to the vrouter itself

VHOST_MAC = "52:54:00:00:00:11"  # vhost0 shares the fabric interface's MAC


def f25():
    f = M.Fixture("25-ttl-1-to-the-vrouter-itself")
    a = lambda packet: f.add("pod-a", M.from_pod(M.POD_A_MAC, packet))
    # To node1's own address (a receive nexthop in vn1): delivered to vhost0 with the TTL it came with.
    a(M.ip(M.POD_A, M.NODE1, 0x2501, ttl=1) / M.udp(33251, 7001, b"25 ttl 1 to the vrouter"))
    a(M.ip(M.POD_A, M.NODE1, 0x2502, ttl=1) / M.echo(8, 0x2500, 1))
    a(M.ip(M.POD_A, M.NODE1, 0x2503, ttl=64) / M.echo(8, 0x2500, 2))
    # The same TTL 1 to pod-b is forwarded, so it expires: time exceeded from the gateway.
    a(M.ip(M.POD_A, M.POD_B, 0x2504, ttl=1) / M.udp(33252, 7001, b"25 ttl 1 to pod-b"))
    return f


def check_25(fx):
    C.check_common(fx, {"tx": {"vhost0": 3, "pod-a": 1}, "drops": {"ttl-expired": 1}, "generated": 1})
    sent = fx.inputs["pod-a"]
    for out, inp in zip(C.match(fx, "vhost0", sent[:3]), sent[:3]):
        C.check_delivered(out, inp, VHOST_MAC, ttl_drop=0)
    C.report(fx, "receive", "TTL 1 (UDP, echo) and TTL 64 to 192.168.0.11 delivered to vhost0, TTL unchanged (RFC 1812 5.3.1)")
    [error] = fx.out("pod-a")
    C.check_icmp_time_exceeded(error, sent[3])
    C.report(fx, "forwarded", "TTL 1 to pod-b expired: time exceeded from the gateway")


# ---------------------------------------------------------------- 26, 27: jumbo frames

JUMBO = 9000  # the pods' MTU: IPv4 packets of 9000 bytes (tests/test_vm_comm_jumbo_packets.py: vifs of MTU 9014)


def jumbo_payload(tag, header):
    """Payload bytes that make a 9000-byte IPv4 packet behind `header` (28 for UDP and ICMP, 40 for TCP)."""
    body = (tag * (JUMBO // len(tag) + 1))[:JUMBO - header]
    return body


def f26():
    f = M.Fixture("26-jumbo-frames-whole")
    a = lambda packet: f.add("pod-a", M.from_pod(M.POD_A_MAC, packet))
    a(M.ip(M.POD_A, M.POD_B, 0x2601, df=True) / M.udp(33261, 7001, jumbo_payload(b"26 udp to pod-b ", 28)))
    a(M.ip(M.POD_A, M.POD_B, 0x2602, df=True) / M.tcp_segment(33262, 8080, 1, 1, "PA", 502, payload=jumbo_payload(b"26 tcp to pod-b ", 40)))
    a(M.ip(M.POD_A, M.POD_B, 0x2603) / M.echo(8, 0x2600, 1, jumbo_payload(b"26 echo to pod-b ", 28)))
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2604, df=True) / M.udp(33264, 7001, jumbo_payload(b"26 udp to node2 ", 28)))
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2605) / M.echo(8, 0x2600, 2, jumbo_payload(b"26 echo to node2 ", 28)))
    reply = M.ip(M.REMOTE_POD, M.POD_A, 0x2651, ttl=63) / M.echo(0, 0x2600, 2, jumbo_payload(b"26 echo to node2 ", 28))
    f.add("eth0", M.mpls_over_udp(M.NODE2, M.NODE1, 0x2652, 50026, 17, 63, reply))
    return f


def check_26(fx):
    C.check_common(fx, {"tx": {"pod-b": 3, "eth0": 2, "pod-a": 1}, "drops": {}})
    sent = fx.inputs["pod-a"]
    C.eq([len(C.ip_packet(frame.data)) for frame in sent], [JUMBO] * 5, "%s: pod-a's IPv4 packets are 9000 bytes (fixture)" % fx.name)
    for out, inp in zip(C.match(fx, "pod-b", sent[:3]), sent[:3]):
        C.check_delivered(out, inp, C.POD_B_MAC, ttl_drop=1)
    C.report(fx, "local", "UDP, TCP (DF) and an echo of 9000 bytes reach pod-b whole")
    for out, inp in zip(C.match(fx, "eth0", sent[3:]), sent[3:]):
        C.check_tunnelled(out, inp, C.NODE2, 25, "udp")
        C.eq(out.pkt[IP].len, JUMBO + 32, "%s: outer IPv4 length (9000 + MPLS over UDP)" % out)
    C.report(fx, "tunnel", "9000-byte UDP (DF) and echo leave whole as one 9032-byte MPLS-over-UDP packet to node2")
    [out] = C.match(fx, "pod-a", fx.inputs["eth0"])
    C.check_delivered(out, fx.inputs["eth0"][0], C.POD_A_MAC, ttl_drop=0)
    C.report(fx, "decap", "node2's 9032-byte tunnel packet reaches pod-a as one 9000-byte echo reply")


def check_frag_needed(out, inp, mtu):
    """`out` is ICMP fragmentation needed (3/4) about `inp` from the gateway, naming `mtu` (RFC 1191)."""
    r, sent = out.pkt, Ether(inp.data)[IP]
    C.eq((r.dst, r.src), (Ether(inp.data).src, C.VROUTER_MAC), "%s: Ethernet destination and source" % out)
    ip = r[IP]
    C.eq((ip.src, ip.dst, ip.proto), (C.GATEWAY, sent.src, 1), "%s: IPv4 source, destination, protocol" % out)
    icmp = r[ICMP]
    C.eq((icmp.type, icmp.code), (3, 4), "%s: ICMP type/code (fragmentation needed and DF set)" % out)
    C.eq(bytes(ip)[ip.ihl * 4 + 4:ip.ihl * 4 + 8], struct.pack("!HH", 0, mtu), "%s: unused and next-hop MTU" % out)
    quote = bytes(ip)[ip.ihl * 4 + 8:ip.len]
    C.expect(len(quote) >= sent.ihl * 4 + 8, "%s: quotes %d bytes, needs the header and 8 bytes" % (out, len(quote)))
    C.eq(quote, bytes(sent)[:len(quote)], "%s: quoted bytes (the original as received)" % out)
    C.same_time(out, inp)


def f27():
    f = M.Fixture("27-jumbo-frames-over-a-1500-underlay")
    a = lambda packet: f.add("pod-a", M.from_pod(M.POD_A_MAC, packet))
    a(M.ip(M.POD_A, M.POD_B, 0x2701) / M.udp(33271, 7001, jumbo_payload(b"27 udp to pod-b ", 28)))
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2702) / M.udp(33272, 7001, jumbo_payload(b"27 udp to node2, DF clear ", 28)))
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2703) / M.echo(8, 0x2700, 1, jumbo_payload(b"27 echo to node2, DF clear ", 28)))
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2704, df=True) / M.tcp_segment(33274, 8080, 1, 1, "PA", 502, payload=jumbo_payload(b"27 tcp, DF ", 40)))
    a(M.ip(M.POD_A, M.REMOTE_POD, 0x2705, df=True) / M.udp(33275, 7001, b"27 udp, DF, small enough"))
    return f


def check_27(fx):
    pieces = 1 + -(-(JUMBO - 20 - 1448) // 1448)  # 1468-byte inner fragments: 1448 bytes of data each
    C.check_common(fx, {"tx": {"pod-b": 1, "eth0": 2 * pieces + 1, "pod-a": 1}, "drops": {"fragment-needed": 1},
                        "generated": 2 * (pieces - 1) + 1})
    sent = fx.inputs["pod-a"]
    [local] = C.match(fx, "pod-b", sent[:1])
    C.check_delivered(local, sent[0], C.POD_B_MAC, ttl_drop=1)
    C.report(fx, "local", "a 9000-byte datagram reaches pod-b (MTU 9000) whole")
    tunnel = fx.out("eth0")
    for inp in sent[1:3]:
        want = Ether(inp.data)[IP]
        frames = [frame for frame in tunnel if frame.pkt[MPLS][IP].id == want.id]
        C.eq(len(frames), pieces, "%s: tunnel packets of datagram id %#x" % (fx.name, want.id))
        ports = set()
        for frame in frames:
            outer = frame.pkt[IP]
            C.expect(outer.len <= 1500, "%s: outer IPv4 length %d beyond the underlay MTU" % (frame, outer.len))
            C.expect(not outer.flags.DF and not outer.flags.MF and outer.frag == 0, "%s: outer header DF clear, not a fragment" % frame)
            C.eq((outer.dst, frame.pkt[MPLS].label), (C.NODE2, 25), "%s: node2, label 25" % frame)
            C.eq(frame.pkt[MPLS].ttl, want.ttl - 1, "%s: MPLS TTL" % frame)
            ports.add(frame.pkt[UDP].sport)
            C.same_time(frame, inp)
        C.eq(len(ports), 1, "%s: entropy ports of datagram id %#x's fragments" % (fx.name, want.id))
        inner = [C.Frame(bytes(Ether(dst=C.POD_A_MAC) / frame.pkt[MPLS][IP]), frame.time_ns, frame.file, frame.index) for frame in frames]
        head, data = C.reassemble(inner)
        C.eq(bytes(data), bytes(want)[20:], "%s: datagram id %#x reassembled from its fragments" % (fx.name, want.id))
        C.eq((head.ttl, head.flags.DF), (want.ttl - 1, False), "%s: fragments' TTL and DF" % fx.name)
    C.report(fx, "fragmented", "DF clear: each 9000-byte packet cut into %d inner fragments of at most 1468 bytes, each its own 1500-byte tunnel packet, one entropy port; reassembly gives the datagram" % pieces)
    [error] = fx.out("pod-a")
    check_frag_needed(error, sent[3], 1500 - 32)
    C.report(fx, "frag-needed", "DF set: ICMP fragmentation needed from the gateway naming MTU 1468")
    [small] = [frame for frame in tunnel if frame.pkt[MPLS][IP].id == 0x2705]
    C.check_tunnelled(small, sent[4], C.NODE2, 25, "udp")
    C.report(fx, "small", "a small DF datagram still leaves whole")


# ---------------------------------------------------------------- 28, 29: per-vif limits

def f28():
    f = M.Fixture("28-vif-flow-limit")
    a = lambda ip_id, sport, payload=b"28 from pod-a": f.add("pod-a", M.from_pod(M.POD_A_MAC, M.ip(M.POD_A, M.POD_B, ip_id) / M.udp(sport, 7001, payload)))
    # pod-a may hold 3 flows (flows.maxFlowsPerVif): its 4th and 5th new flows are dropped.
    for n in range(5):
        a(0x2801 + n, 28001 + n)
    a(0x2806, 28001, b"28 again in pod-a's first flow")
    # pod-b has no limit (maxFlows: 0): all its new flows pass, and it answers pod-a's first flow.
    for n in range(4):
        f.add("pod-b", M.from_pod(M.POD_B_MAC, M.ip(M.POD_B, M.POD_A, 0x2851 + n) / M.udp(28101 + n, 7002, b"28 from pod-b")))
    f.add("pod-b", M.from_pod(M.POD_B_MAC, M.ip(M.POD_B, M.POD_A, 0x2855) / M.udp(7001, 28001, b"28 answer to pod-a")))
    # A new flow from node2 to pod-a counts against pod-a, which holds its 3.
    inner = M.ip(M.REMOTE_POD, M.POD_A, 0x2871, ttl=63) / M.udp(7003, 28201, b"28 from node2")
    f.add("eth0", M.mpls_over_udp(M.NODE2, M.NODE1, 0x2872, 50028, 17, 63, inner))
    return f


def check_28(fx):
    C.check_common(fx, {"tx": {"pod-b": 4, "pod-a": 5}, "drops": {"vif-flow-limit": 3}})
    a, b = fx.inputs["pod-a"], fx.inputs["pod-b"]
    for out, inp in zip(C.match(fx, "pod-b", a[:3] + a[5:]), a[:3] + a[5:]):
        C.check_delivered(out, inp, C.POD_B_MAC, ttl_drop=1)
    for out, inp in zip(C.match(fx, "pod-a", b), b):
        C.check_delivered(out, inp, C.POD_A_MAC, ttl_drop=1)
    C.report(fx, "forwarded", "pod-a's first 3 flows and its first flow again; all of pod-b's flows (no limit) and its answer")
    pairs = C.flow_pairs(fx, C.load_flows(fx))
    want = [("udp", C.POD_A, 28001 + n, C.POD_B, 7001) for n in range(3)] + [("udp", C.POD_B, 28101 + n, C.POD_A, 7002) for n in range(4)]
    C.eq(sorted(pairs), sorted(want), "%s: flows.json pairs (pod-a's 3, pod-b's 4; none for the refused ones or node2's)" % fx.name)
    C.check_pair(fx, pairs, want[0], "pod-a's first flow", forward={"packets": 2}, reverse={"packets": 1}, replied=True)
    C.report(fx, "flows", "pod-a holds its limit of 3: 2 more from it and 1 from node2 to it dropped as vif-flow-limit")


FRAGMENT_RECORDS_PER_VIF = 64  # src/dataplane/fragment-table.ts
HELD_FRAGMENTS_PER_VIF = 16


def f29():
    f = M.Fixture("29-fragment-limits-per-vif")
    payload = bytes(range(64))
    # pod-a: the heads of 66 datagrams whose later fragments never come: 64 records, then fragment-vif-limit.
    for n in range(FRAGMENT_RECORDS_PER_VIF + 2):
        head, _last = M.udp_fragments(M.POD_A, M.POD_B, 0x2900 + n, 29001, 7001, payload, (24,))
        f.add("pod-a", M.from_pod(M.POD_A_MAC, head))
    # pod-b still gets records: one datagram, whole, in order.
    for piece in M.udp_fragments(M.POD_B, M.POD_A, 0x2a00, 29101, 7001, payload, (24,)):
        f.add("pod-b", M.from_pod(M.POD_B_MAC, piece))
    # pod-b: 17 later fragments before their heads: 16 held, then fragment-hold-vif-limit; one head releases its own.
    for n in range(HELD_FRAGMENTS_PER_VIF + 1):
        _head, last = M.udp_fragments(M.POD_B, M.POD_A, 0x2b00 + n, 29102, 7001, payload, (24,))
        f.add("pod-b", M.from_pod(M.POD_B_MAC, last))
    head, _last = M.udp_fragments(M.POD_B, M.POD_A, 0x2b00, 29102, 7001, payload, (24,))
    f.add("pod-b", M.from_pod(M.POD_B_MAC, head))
    return f


def check_29(fx):
    records, held = FRAGMENT_RECORDS_PER_VIF, HELD_FRAGMENTS_PER_VIF
    C.check_common(fx, {"tx": {"pod-b": records, "pod-a": 4}, "drops": {"fragment-vif-limit": 2, "fragment-hold-vif-limit": 1}, "held": held - 1})
    a = fx.inputs["pod-a"]
    C.eq([IP(C.ip_packet(frame.data)).id for frame in a][records:], [0x2900 + records, 0x2900 + records + 1],
         "%s: pod-a's last two heads (fixture)" % fx.name)
    delivered = fx.out("pod-b")
    C.eq(sorted(IP(C.ip_packet(frame.data)).id for frame in delivered), [0x2900 + n for n in range(records)], "%s: heads delivered to pod-b (the first 64)" % fx.name)
    C.report(fx, "records", "pod-a: %d records, its next 2 heads dropped as fragment-vif-limit" % records)
    got = [(IP(C.ip_packet(frame.data)).id, IP(C.ip_packet(frame.data)).frag) for frame in fx.out("pod-a")]
    C.eq(got, [(0x2a00, 0), (0x2a00, 3), (0x2b00, 0), (0x2b00, 3)], "%s: delivered to pod-a: pod-b's whole datagram, then a head and the fragment it released" % fx.name)
    C.report(fx, "held", "pod-b: records still free for it; %d later fragments held, the next dropped as fragment-hold-vif-limit; a head releases its own, %d stay held" % (held, held - 1))
