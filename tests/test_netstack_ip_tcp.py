"""The responder's IP fragmentation/reassembly and its TCP endpoint table,
frame in / frame out, with scapy as the oracle (fragment(), TCP, IPv6 fragments)."""

from __future__ import annotations

import ipaddress
import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether

from ztcore.netstack import frames as f
from ztcore.netstack.ip import Reassembler, fragment_ipv4, fragment_ipv6
from ztcore.netstack.responder import Responder
from ztcore.netstack.tcp import EventKind, State, TcpConnection, TcpEvent
from ztcore.netstack.tcpsack import Scoreboard, receiver_blocks

MAC_A, MAC_P = 0x02AA00000001, 0x02BB00000002
IP_A, IP_P = "10.5.0.1", "10.5.0.2"
IP6_A, IP6_P = "fd00:5::1", "fd00:5::2"


def mac_str(mac: int) -> str:
    return ":".join(f"{b:02x}" for b in mac.to_bytes(6, "big"))


class Capture:
    def __init__(self) -> None:
        self.frames: list[tuple[int, int, int, bytes]] = []

    def __call__(self, dest: int, src: int, ethertype: int, payload: bytes) -> None:
        self.frames.append((dest, src, ethertype, payload))

    def ether(self, i: int = -1) -> Ether:
        d, s, t, p = self.frames[i]
        return Ether(f.build_ethernet(d, s, t, p))


def make(mtu: int = 1500) -> tuple[Responder, Capture]:
    cap = Capture()
    r = Responder(MAC_A, cap, mtu=mtu)
    r.set_addresses([ipaddress.ip_interface(f"{IP_A}/24"), ipaddress.ip_interface(f"{IP6_A}/64")])
    r._neighbours[ipaddress.ip_address(IP_P).packed] = (MAC_P, 10**12)
    r._neighbours[ipaddress.ip_address(IP6_P).packed] = (MAC_P, 10**12)
    return r, cap


def feed(r: Responder, pkt: Ether, now: int = 0) -> bool:
    raw = bytes(pkt)
    e = f.parse_ethernet(raw)
    return r.handle_frame(e.source_mac, e.dest_mac, e.ethertype, e.payload, now)


def eth() -> Ether:
    return Ether(src=mac_str(MAC_P), dst=mac_str(MAC_A))


# --- fragmentation and reassembly ---------------------------------------------------------------


def test_scapy_ipv4_fragments_reassemble_in_any_order() -> None:
    r, cap = make()
    sock = r.udp_socket(53)
    payload = random.Random(1).randbytes(8000)
    frags = fragment(IP(src=IP_P, dst=IP_A, id=77) / UDP(sport=1000, dport=53) / payload, fragsize=1400)
    assert len(frags) == 6
    random.Random(2).shuffle(frags)
    for frag in frags:
        assert feed(r, eth() / frag)
    assert sock.recvfrom_nowait() == (payload, (IP_P, 1000))
    assert len(r.reassembler) == 0 and r.reassembler.counters["reassembled"] == 1


def test_scapy_ipv6_fragments_reassemble() -> None:
    r, cap = make()
    sock = r.udp_socket(53, v6=True)
    payload = random.Random(3).randbytes(6000)
    pkt = IPv6(src=IP6_P, dst=IP6_A) / IPv6ExtHdrFragment(id=9) / UDP(sport=7, dport=53) / payload
    frags = fragment6(pkt, 1280)
    assert len(frags) > 4
    for frag in reversed(frags):
        feed(r, eth() / frag)
    assert sock.recvfrom_nowait() == (payload, (IP6_P, 7))


def test_large_udp_leaves_as_fragments_scapy_reassembles() -> None:
    for v6, src, dst in ((False, IP_A, IP_P), (True, IP6_A, IP6_P)):
        r, cap = make(mtu=1500)
        payload = random.Random(4).randbytes(8192)
        r.udp_socket(4000, v6=v6).sendto(payload, (dst, 5000), now=0)
        assert len(cap.frames) == 6 and all(len(fr[3]) <= 1500 for fr in cap.frames)
        if v6:
            from scapy.layers.inet6 import defragment6

            whole = defragment6([cap.ether(i)[IPv6] for i in range(len(cap.frames))])
            assert whole[IPv6].src == src
            udp = UDP(bytes(whole[IPv6].payload))  # after the reassembled header chain
        else:
            from scapy.layers.inet import defragment

            whole = defragment([cap.ether(i)[IP] for i in range(len(cap.frames))])[0]
            assert whole[IP].src == src
            udp = whole[UDP]
        assert bytes(udp.payload) == payload and udp.dport == 5000 and udp.sport == 4000


def test_big_ping_is_fragmented_and_answered_in_fragments() -> None:
    r, cap = make(mtu=1500)
    data = random.Random(6).randbytes(4000)
    for frag in fragment(IP(src=IP_P, dst=IP_A, id=5) / ICMP(id=1, seq=2) / data, fragsize=1400):
        feed(r, eth() / frag)
    assert len(cap.frames) == 3
    from scapy.layers.inet import defragment

    reply = defragment([cap.ether(i)[IP] for i in range(3)])[0]
    assert reply[ICMP].type == 0 and bytes(reply[ICMP].payload) == data


def test_reassembly_refuses_overlaps_oversize_and_bounds_memory() -> None:
    ra = Reassembler(max_datagrams=4)
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])

    def frag(ident: int, off: int, more: bool, data: bytes) -> f.Ipv4Packet:
        return f.Ipv4Packet(src, dst, 17, 64, ident, (0x2000 if more else 0) | off // 8, data)

    assert ra.add_ipv4(frag(1, 0, True, b"a" * 16), 0) is None
    assert ra.add_ipv4(frag(1, 8, True, b"b" * 16), 0) is None  # overlaps 8..16
    assert ra.counters["frag_overlap"] == 1 and len(ra) == 0
    assert ra.add_ipv4(frag(2, 65528, False, b"x" * 16), 0) is None
    assert ra.counters["frag_too_long"] == 1
    for ident in range(10, 20):
        ra.add_ipv4(frag(ident, 0, True, b"c" * 8), ident)
    assert len(ra) == 4 and ra.counters["frag_evicted"] == 6
    # A duplicate fragment is harmless.
    ra2 = Reassembler()
    assert ra2.add_ipv4(frag(3, 0, True, b"d" * 8), 0) is None
    assert ra2.add_ipv4(frag(3, 0, True, b"d" * 8), 0) is None
    assert ra2.add_ipv4(frag(3, 8, False, b"e"), 0) == b"d" * 8 + b"e"


def test_own_fragmenters_round_trip_through_own_reassembler() -> None:
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    payload = random.Random(8).randbytes(20000)
    ra = Reassembler()
    out = None
    for pkt in fragment_ipv4(src, dst, 17, payload, 2800, 99):
        out = ra.add_ipv4(f.parse_ipv4(pkt), 0) or out
    assert out == payload
    s6, d6 = ipaddress.ip_address(IP6_A).packed, ipaddress.ip_address(IP6_P).packed
    got = None
    for pkt in fragment_ipv6(s6, d6, 17, payload, 2800, 1234):
        p = f.parse_ipv6(pkt)
        got = ra.add_ipv6(p.src, p.dst, p.payload, 0) or got
    assert got == (17, payload)


# --- the TCP endpoint table in the responder -----------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[TcpEvent] = []
        self.accepted: list[TcpConnection] = []

    def tcp_event(self, conn: TcpConnection, event: TcpEvent) -> None:
        self.events.append(event)

    def tcp_accept(self, conn: TcpConnection) -> Recorder:
        self.accepted.append(conn)
        return self


def test_segment_for_no_listener_gets_rst() -> None:
    r, cap = make()
    assert not feed(r, eth() / IP(src=IP_P, dst=IP_A) / TCP(sport=1234, dport=80, flags="S", seq=1000))
    rst = cap.ether()[TCP]
    assert rst.flags == "RA" and rst.ack == 1001 and rst.seq == 0 and (rst.sport, rst.dport) == (80, 1234)
    feed(r, eth() / IP(src=IP_P, dst=IP_A) / TCP(sport=1234, dport=80, flags="A", seq=5, ack=777))
    rst = cap.ether()[TCP]
    assert rst.flags == "R" and rst.seq == 777
    n = len(cap.frames)
    feed(r, eth() / IP(src=IP_P, dst=IP_A) / TCP(sport=1234, dport=80, flags="R", seq=5))
    assert len(cap.frames) == n  # never a RST for a RST
    assert r.tcp.counters["reset_sent"] == 2


def test_passive_open_with_scapy_peer_v6() -> None:
    r, cap = make()
    rec = Recorder()
    r.tcp.listen(8080, rec)
    syn = TCP(sport=40000, dport=8080, flags="S", seq=100, window=64000, options=[("MSS", 1000), ("WScale", 2)])
    assert feed(r, eth() / IPv6(src=IP6_P, dst=IP6_A) / syn, now=10)
    sa = cap.ether()[TCP]
    assert sa.flags == "SA" and sa.ack == 101
    opts = dict(sa.options)
    assert opts["MSS"] == 1500 - 60 and "WScale" in opts
    feed(r, eth() / IPv6(src=IP6_P, dst=IP6_A) / TCP(sport=40000, dport=8080, flags="A", seq=101, ack=sa.seq + 1))
    assert len(rec.accepted) == 1 and rec.accepted[0].state is State.ESTABLISHED
    assert [e.kind for e in rec.events] == [EventKind.CONNECTED]  # after tcp_accept chose the handler
    data = TCP(sport=40000, dport=8080, flags="PA", seq=101, ack=sa.seq + 1) / b"GET /"
    feed(r, eth() / IPv6(src=IP6_P, dst=IP6_A) / data, now=20)
    assert rec.events[-1].kind is EventKind.DATA and rec.events[-1].data == b"GET /"
    conn = rec.accepted[0]
    r.tcp.send(conn, b"200 OK", 21)
    out = cap.ether()[TCP]
    assert bytes(out.payload) == b"200 OK" and out.ack == 106 and "P" in str(out.flags)
    r.tcp.close(conn, 22)
    assert "F" in str(cap.ether()[TCP].flags)


def test_backlog_full_drops_syns() -> None:
    r, cap = make()
    r.tcp.listen(80, Recorder(), backlog=2)
    for port in (1001, 1002, 1003):
        feed(r, eth() / IP(src=IP_P, dst=IP_A) / TCP(sport=port, dport=80, flags="S", seq=1))
    assert len(cap.frames) == 2 and r.tcp.counters["syn_backlog_full"] == 1


def test_connect_to_own_address_runs_through_loopback() -> None:
    r, cap = make()
    server, client = Recorder(), Recorder()
    r.tcp.listen(7, server)
    a = ipaddress.ip_address(IP_A).packed
    conn = r.tcp.connect(a, a, 7, client, 0)
    assert conn.state is State.ESTABLISHED and len(server.accepted) == 1
    r.tcp.send(conn, b"x" * 100_000, 1)
    got = b"".join(e.data for e in server.events if e.kind is EventKind.DATA)
    assert got == b"x" * 100_000 and cap.frames == []


def test_timers_expire_through_the_responder() -> None:
    r, cap = make()
    rec = Recorder()
    a, p = ipaddress.ip_address(IP_A).packed, ipaddress.ip_address(IP_P).packed
    conn = r.tcp.connect(a, p, 80, rec, 0)
    assert r.tcp.next_deadline() == 1000
    r.expire(1000)
    syns = [cap.ether(i)[TCP] for i in range(len(cap.frames))]
    assert [str(s.flags) for s in syns] == ["S", "S"] and conn.state is State.SYN_SENT


def test_scoreboard_and_receiver_blocks() -> None:
    sb = Scoreboard()
    assert sb.add([(110, 120), (130, 140)], 100, 200)
    assert sb.add([(115, 135)], 100, 200) and sb.ranges() == [(110, 140)] and sb.sacked_bytes == 30
    assert not sb.add([(90, 100), (150, 250)], 100, 200)  # D-SACK / beyond snd_max: ignored
    assert list(sb.holes(100, 160)) == [(100, 110), (140, 160)]
    assert sb.covering(125) == 140 and sb.covering(140) is None
    sb.advance(120)
    assert sb.ranges() == [(120, 140)] and sb.sacked_bytes == 20
    sb.advance(150)
    assert not sb and sb.highest is None
    ooo = {200: b"x" * 10, 210: b"y" * 5, 300: b"z" * 10, 400: b"w"}
    assert receiver_blocks(ooo, 300) == [(300, 310), (400, 401), (200, 215)]
    assert receiver_blocks(ooo, None, limit=2) == [(400, 401), (300, 310)]


@pytest.mark.parametrize("seed", [12, 13, 14])
def test_random_segments_never_break_the_stack(seed: int) -> None:
    """Well-formed (checksummed) but random segments, at a listener and at live connections
    in every state: nothing raises inside the stack and every connection stays consistent."""
    from ztcore.netstack.tcpwire import TcpSegment, build_tcp

    rng = random.Random(seed)
    r, cap = make()
    rec = Recorder()
    r.tcp.listen(80, rec)
    a, p = ipaddress.ip_address(IP_A).packed, ipaddress.ip_address(IP_P).packed
    now = 0
    for round_no in range(60):
        # A real connection from the peer first, so some segments land in a live state machine.
        sport = 20000 + round_no
        feed(r, eth() / IP(src=IP_P, dst=IP_A) / TCP(sport=sport, dport=80, flags="S", seq=1000), now)
        sa = cap.ether()[TCP]
        if sa.flags == "SA":
            feed(r, eth() / IP(src=IP_P, dst=IP_A) / TCP(sport=sport, dport=80, flags="A", seq=1001, ack=sa.seq + 1), now)
        conns = r.tcp.connections()
        for _ in range(80):
            now += rng.choice((0, 1, 5, 50, 400))
            base = rng.choice(conns) if conns and rng.random() < 0.8 else None
            seq = (base.rcv_nxt + rng.randint(-3000, 3000)) & 0xFFFFFFFF if base else rng.getrandbits(32)
            ack = (base.snd_una + rng.randint(-3000, 3000)) & 0xFFFFFFFF if base else rng.getrandbits(32)
            seg = TcpSegment(
                sport if rng.random() < 0.9 else rng.randint(1, 65535),
                80 if rng.random() < 0.9 else rng.randint(1, 65535),
                seq,
                ack,
                rng.getrandbits(8),
                rng.getrandbits(16),
                rng.randbytes(rng.choice((0, 0, 1, 100, 1400))),
                mss=rng.choice((None, 0, 1, 536, 65535)),
                wscale=rng.choice((None, 0, 7, 14)),
                sack_permitted=rng.random() < 0.3,
                sack_blocks=[(rng.getrandbits(32), rng.getrandbits(32))] if rng.random() < 0.2 else [],
            )
            raw = build_tcp(p, a, seg)
            pkt = f.build_ipv4(p, a, 6, raw)
            r.handle_frame(MAC_P, MAC_A, f.ETHERTYPE_IPV4, pkt, now)
            if rng.random() < 0.1:
                r.expire(now)
            if rng.random() < 0.08 and rec.accepted:
                c = rng.choice(rec.accepted)
                action = rng.random()
                if c.state in (State.ESTABLISHED, State.CLOSE_WAIT) and action < 0.6:
                    r.tcp.send(c, rng.randbytes(rng.randint(1, 5000)), now)
                elif action < 0.8:
                    r.tcp.shutdown(c, now)
                elif action < 0.95:
                    r.tcp.close(c, now)
                else:
                    r.tcp.abort(c, now)
        assert r.counters["internal_error"] == 0, "the stack raised on a segment"
        assert r.tcp.counters["handler_error"] == 0
        for c in r.tcp.connections():
            assert c.snd_una <= c.snd_nxt <= c.snd_max or c.state is State.CLOSED
            assert c.send_buffered >= 0 and c.cwnd >= 0


def test_tcp_traffic_keeps_the_neighbour_entry_fresh() -> None:
    r, cap = make()
    r.tcp.listen(80, Recorder())
    p = ipaddress.ip_address(IP_P).packed
    r._neighbours[p] = (MAC_P, 1000)
    feed(r, eth() / IP(src=IP_P, dst=IP_A) / TCP(sport=5, dport=80, flags="S", seq=1), now=900)
    assert r._neighbours[p][1] > 1000  # confirmed by the peer's segment
    # A segment from another MAC claiming the address confirms nothing.
    r._neighbours[p] = (MAC_P, 2000)
    other = Ether(src="02:cc:00:00:00:03", dst=mac_str(MAC_A))
    feed(r, other / IP(src=IP_P, dst=IP_A) / TCP(sport=6, dport=80, flags="S", seq=1), now=1900)
    assert r._neighbours[p] == (MAC_P, 2000)
