"""Tests for ztcore.netstack: the virtual-network ARP/ICMP/NDP/UDP responder.

scapy is the independent oracle: requests are built with scapy, fed to the
Responder as bytes, and replies are parsed back with scapy, whose recomputed
checksums must equal ours.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import random
from collections import deque

import pytest
from scapy.all import (
    ARP,
    ICMP,
    IP,
    UDP,
    Dot1Q,
    Ether,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
    Raw,
    fuzz,
    raw,
)
from scapy.layers.inet import IPOption_EOL, IPOption_NOP
from scapy.utils import checksum as scapy_checksum

from ztcore.netstack import PingHandle, Responder, VirtualUdpSocket
from ztcore.netstack import frames as fr

MAC_A = 0x02AABBCCDD01
MAC_B = 0x02AABBCCDD02
MAC_PEER = 0x0211223344AA
IP_A = "10.147.17.1"
IP_B = "10.147.17.2"
IP_PEER = "10.147.17.99"
IP6_A = "fd12:3456:789a:1::aa:bb01"
IP6_B = "fd12:3456:789a:1::aa:bb02"
IP6_PEER = "fd12:3456:789a:1::99"
BROADCAST = 0xFFFFFFFFFFFF
NOP_OPTIONS = [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_EOL()]


def mac_str(mac: int) -> str:
    return ":".join(f"{b:02x}" for b in mac.to_bytes(6, "big"))


def mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def addrs(v4: str, v6: str) -> list:
    return [ipaddress.ip_interface(f"{v4}/24"), ipaddress.ip_interface(f"{v6}/64")]


class Capture:
    """A send_frame callback that records frames."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, int, int, bytes]] = []

    def __call__(self, dest: int, src: int, ethertype: int, payload: bytes) -> None:
        assert isinstance(payload, bytes)
        self.frames.append((dest, src, ethertype, payload))

    def ether(self, i: int = -1) -> Ether:
        d, s, et, p = self.frames[i]
        return Ether(d.to_bytes(6, "big") + s.to_bytes(6, "big") + et.to_bytes(2, "big") + p)


def make(mac: int = MAC_A, v4: str = IP_A, v6: str = IP6_A) -> tuple[Responder, Capture]:
    cap = Capture()
    r = Responder(mac, cap)
    r.set_addresses(addrs(v4, v6))
    return r, cap


def feed(r: Responder, pkt: Ether, now: int = 0, *, tail: bytes = b"") -> bool:
    """Give a scapy-built frame to the responder (``tail``: extra bytes, e.g. padding)."""
    b = raw(pkt)
    return r.handle_frame(
        int.from_bytes(b[6:12], "big"), int.from_bytes(b[0:6], "big"), pkt.type, b[14:] + tail, now
    )


def assert_checksum(pkt: Ether, layer: type, fieldname: str = "chksum") -> None:
    """scapy recomputes the checksum of ``layer``; it must equal the one we sent."""
    ours = getattr(pkt[layer], fieldname)
    clone = pkt.copy()
    setattr(clone[layer], fieldname, None)
    assert getattr(Ether(raw(clone))[layer], fieldname) == ours


class Wire:
    """A switch joining responders: frames are queued and pumped so that
    responders never re-enter each other."""

    def __init__(self) -> None:
        self.nodes: list[Responder] = []
        self.queue: deque[tuple[int, int, int, bytes]] = deque()
        self.log: list[tuple[int, int, int, bytes]] = []

    def attach(self, mac: int, v4: str, v6: str) -> Responder:
        r = Responder(mac, lambda d, s, e, p: self.queue.append((d, s, e, p)))
        r.set_addresses(addrs(v4, v6))
        self.nodes.append(r)
        return r

    def pump(self, now: int) -> int:
        n = 0
        while self.queue:
            frame = self.queue.popleft()
            self.log.append(frame)
            d, s, e, p = frame
            for r in self.nodes:
                if r.mac != s:
                    r.handle_frame(s, d, e, p, now)
            n += 1
            assert n < 100, "frame storm"
        return n

    def ether(self, frame: tuple[int, int, int, bytes]) -> Ether:
        d, s, et, p = frame
        return Ether(d.to_bytes(6, "big") + s.to_bytes(6, "big") + et.to_bytes(2, "big") + p)


# --- frames unit checks against scapy ---------------------------------------------------------------


def test_internet_checksum_matches_scapy() -> None:
    rng = random.Random(1)
    for n in [0, 1, 2, 3, 20, 21, 1499, 2800]:
        for _ in range(5):
            data = rng.randbytes(n)
            assert fr.internet_checksum(data) == scapy_checksum(data)
    # Data summing to a multiple of 0xffff: the checksum is 0, and verifies.
    assert fr.internet_checksum(b"\xff\xff") == scapy_checksum(b"\xff\xff") == 0
    assert fr.checksum_valid(b"\xff\xff")


def test_udp_zero_checksum_sent_as_ones() -> None:
    # Find a payload whose UDP checksum computes to 0; it must go out as 0xffff (RFC 768).
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    base = fr.build_udp(src, dst, 1000, 2000, b"\x00\x00")
    ck = int.from_bytes(base[6:8], "big")
    # Adding ck to the payload's word changes the sum by ck, making the checksum 0.
    payload = ck.to_bytes(2, "big")
    d = fr.build_udp(src, dst, 1000, 2000, payload)
    assert d[6:8] == b"\xff\xff"
    pkt = IP(raw(IP(src="10.0.0.1", dst="10.0.0.2", proto=17) / Raw(d)))
    assert pkt[UDP].chksum == 0xFFFF
    assert fr.parse_udp(src, dst, d).payload == payload


def test_frames_parse_scapy_built() -> None:
    b = raw(IP(src="1.2.3.4", dst="5.6.7.8", ttl=9, id=77) / UDP(sport=1, dport=2) / b"xyz")
    p = fr.parse_ipv4(b)
    assert (p.src, p.dst, p.protocol, p.ttl, p.ident) == (bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8]), 17, 9, 77)
    assert fr.parse_udp(p.src, p.dst, p.payload) == (1, 2, b"xyz")
    b6 = raw(IPv6(src="fd00::1", dst="fd00::2", hlim=7) / UDP(sport=3, dport=4) / b"abc")
    p6 = fr.parse_ipv6(b6)
    assert (p6.next_header, p6.hop_limit) == (17, 7)
    assert fr.parse_udp(p6.src, p6.dst, p6.payload) == (3, 4, b"abc")
    for bad in [b"", b"\x45" * 19, b"\x65" + bytes(30)]:
        with pytest.raises(fr.InvalidFormatError):
            fr.parse_ipv4(bad)


# --- ARP --------------------------------------------------------------------------------------------


def test_arp_request_reply() -> None:
    r, cap = make()
    req = Ether(src=mac_str(MAC_PEER), dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=mac_str(MAC_PEER), psrc=IP_PEER, pdst=IP_A
    )
    assert feed(r, req)
    assert len(cap.frames) == 1
    rep = cap.ether()
    assert rep.dst == mac_str(MAC_PEER) and rep.src == mac_str(MAC_A) and rep.type == 0x0806
    a = rep[ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen, a.op) == (1, 0x0800, 6, 4, 2)
    assert (a.hwsrc, a.psrc, a.hwdst, a.pdst) == (mac_str(MAC_A), IP_A, mac_str(MAC_PEER), IP_PEER)
    assert r.neighbours()[ipaddress.ip_address(IP_PEER)] == MAC_PEER


def test_arp_request_for_other_address_ignored() -> None:
    r, cap = make()
    req = Ether(src=mac_str(MAC_PEER), dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=mac_str(MAC_PEER), psrc=IP_PEER, pdst="10.147.17.50"
    )
    assert not feed(r, req)
    assert cap.frames == [] and r.counters["not_for_us"] == 1
    assert r.neighbours() == {}


def test_multicast_groups_follow_address_resolution_derivation() -> None:
    # MulticastGroup::deriveMulticastGroupForAddressResolution: IPv4 -> (broadcast MAC,
    # ADI = the address as a uint32); IPv6 -> (33:33:ff + low 24 bits, ADI 0).
    r, _ = make()
    assert r.multicast_groups() == sorted([(0xFFFFFFFFFFFF, 0x0A931101), (0x3333FFAABB01, 0)])
    r.set_addresses([])
    assert r.multicast_groups() == []


# --- ICMP echo v4 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_options", [False, True])
def test_icmp_echo_v4(with_options: bool) -> None:
    r, cap = make()
    ip = IP(src=IP_PEER, dst=IP_A, ttl=5, options=NOP_OPTIONS if with_options else [])
    req = Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A)) / ip / ICMP(type=8, id=0x1234, seq=7) / b"payload!"
    # Ethernet padding after the IP packet must be ignored.
    assert feed(r, req, tail=b"\x00" * 12)
    rep = cap.ether()
    assert rep.dst == mac_str(MAC_PEER) and rep.src == mac_str(MAC_A)
    assert (rep[IP].src, rep[IP].dst, rep[IP].ttl, rep[IP].proto) == (IP_A, IP_PEER, 64, 1)
    assert rep[ICMP].type == 0 and rep[ICMP].code == 0
    assert (rep[ICMP].id, rep[ICMP].seq, rep[ICMP].load) == (0x1234, 7, b"payload!")
    assert_checksum(rep, IP)
    assert_checksum(rep, ICMP)


def test_icmp_echo_reply_is_what_the_general_builders_make() -> None:
    """A plain echo request is answered in a few steps (`_input_icmp_echo`): the reply must
    be byte for byte the one the general IPv4/ICMP builders make, fragmented when the MTU
    is below it, and a request that lies about its length is dropped as malformed."""
    r, cap = make()
    data = bytes(range(256)) * 4
    req = Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A)) / IP(src=IP_PEER, dst=IP_A) / ICMP(type=8, id=9, seq=3) / data
    assert feed(r, req)
    rep = cap.ether()
    ip_a, ip_peer = ipaddress.ip_address(IP_A).packed, ipaddress.ip_address(IP_PEER).packed
    expected = fr.build_ipv4(
        ip_a, ip_peer, 1, fr.build_icmp_echo(0, 9, 3, data), ident=rep[IP].id, dont_fragment=False
    )
    assert raw(rep)[14:] == expected
    r.set_mtu(600)
    cap.frames.clear()
    assert feed(r, req)
    parts = [cap.ether(i) for i in range(len(cap.frames))]
    assert len(parts) == 2 and parts[0][IP].flags == "MF" and parts[1][IP].frag == 576 // 8
    whole = raw(parts[0][IP].payload) + raw(parts[1][IP].payload)
    assert whole == fr.build_icmp_echo(0, 9, 3, data)
    cap.frames.clear()
    b = bytearray(raw(req)[14:])
    b[2:4] = (len(b) + 1).to_bytes(2, "big")  # total length past the end of the frame
    assert not r.handle_frame(MAC_PEER, MAC_A, 0x0800, bytes(b), 0)
    assert r.counters["malformed"] == 1 and cap.frames == []


def test_broadcast_ping_ignored() -> None:
    r, cap = make()
    req = (
        Ether(src=mac_str(MAC_PEER), dst="ff:ff:ff:ff:ff:ff") / IP(src=IP_PEER, dst="10.147.17.255") / ICMP()
    )
    assert not feed(r, req)
    assert cap.frames == []


# --- NDP / ICMPv6 -------------------------------------------------------------------------------------


def test_ns_na() -> None:
    r, cap = make()
    sol = "ff02::1:ffaa:bb01"
    ns = (
        Ether(src=mac_str(MAC_PEER), dst="33:33:ff:aa:bb:01")
        / IPv6(src=IP6_PEER, dst=sol, hlim=255)
        / ICMPv6ND_NS(tgt=IP6_A)
        / ICMPv6NDOptSrcLLAddr(lladdr=mac_str(MAC_PEER))
    )
    assert feed(r, ns)
    na = cap.ether()
    assert na.dst == mac_str(MAC_PEER) and na.src == mac_str(MAC_A)
    assert (na[IPv6].src, na[IPv6].dst, na[IPv6].hlim, na[IPv6].nh) == (IP6_A, IP6_PEER, 255, 58)
    adv = na[ICMPv6ND_NA]
    assert (adv.R, adv.S, adv.O, adv.tgt, adv.code) == (0, 1, 1, IP6_A, 0)
    assert na[ICMPv6NDOptDstLLAddr].lladdr == mac_str(MAC_A)
    assert_checksum(na, ICMPv6ND_NA, "cksum")
    assert r.neighbours()[ipaddress.ip_address(IP6_PEER)] == MAC_PEER


def test_ns_dad_probe_defended_to_all_nodes() -> None:
    r, cap = make()
    ns = (
        Ether(src=mac_str(MAC_PEER), dst="33:33:ff:aa:bb:01")
        / IPv6(src="::", dst="ff02::1:ffaa:bb01", hlim=255)
        / ICMPv6ND_NS(tgt=IP6_A)
    )
    assert feed(r, ns)
    na = cap.ether()
    assert na.dst == "33:33:00:00:00:01" and na[IPv6].dst == "ff02::1"
    assert (na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].O) == (0, 1)
    assert_checksum(na, ICMPv6ND_NA, "cksum")


def test_ns_invalid_dropped() -> None:
    r, cap = make()
    base = Ether(src=mac_str(MAC_PEER), dst="33:33:ff:aa:bb:01")
    bad_hlim = base / IPv6(src=IP6_PEER, dst="ff02::1:ffaa:bb01", hlim=64) / ICMPv6ND_NS(tgt=IP6_A)
    assert not feed(r, bad_hlim)
    # A zero-length option is invalid (RFC 4861 7.1.1).
    zero_opt = (
        base
        / IPv6(src=IP6_PEER, dst="ff02::1:ffaa:bb01", hlim=255)
        / ICMPv6ND_NS(tgt=IP6_A)
        / Raw(b"\x01\x00" + bytes(6))
    )
    assert not feed(r, zero_opt)
    other = base / IPv6(src=IP6_PEER, dst="ff02::1:ffaa:bb01", hlim=255) / ICMPv6ND_NS(tgt=IP6_B)
    assert not feed(r, other)
    assert cap.frames == []
    assert r.counters["ndp_invalid"] == 1 and r.counters["malformed"] == 1 and r.counters["not_for_us"] == 1


def test_icmpv6_echo() -> None:
    r, cap = make()
    req = (
        Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A))
        / IPv6(src=IP6_PEER, dst=IP6_A)
        / ICMPv6EchoRequest(id=0xBEEF, seq=3, data=b"hello v6")
    )
    assert feed(r, req)
    rep = cap.ether()
    assert rep.dst == mac_str(MAC_PEER)
    assert (rep[IPv6].src, rep[IPv6].dst, rep[IPv6].hlim) == (IP6_A, IP6_PEER, 64)
    e = rep[ICMPv6EchoReply]
    assert (e.type, e.code, e.id, e.seq, e.data) == (129, 0, 0xBEEF, 3, b"hello v6")
    assert_checksum(rep, ICMPv6EchoReply, "cksum")


# --- UDP --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("v6", [False, True])
def test_udp_both_ways_between_two_responders(v6: bool) -> None:
    wire = Wire()
    a = wire.attach(MAC_A, IP_A, IP6_A)
    b = wire.attach(MAC_B, IP_B, IP6_B)
    ip_a, ip_b = (IP6_A, IP6_B) if v6 else (IP_A, IP_B)
    sa = a.udp_socket(v6=v6)
    sb = b.udp_socket(5000, v6=v6)
    assert sa.local_address == (ip_a, sa.port) and 49152 <= sa.port <= 65535
    sa.sendto(b"hello b", (ip_b, 5000), now=10)
    wire.pump(10)
    assert sb.recvfrom_nowait() == (b"hello b", (ip_a, sa.port))
    assert sb.recvfrom_nowait() is None
    # The first frame was address resolution, then the datagram; check it with scapy.
    udp_frames = [wire.ether(fm) for fm in wire.log if UDP in wire.ether(fm)]
    assert len(udp_frames) == 1
    u = udp_frames[0]
    assert u.dst == mac_str(MAC_B) and u.src == mac_str(MAC_A)
    assert (u[UDP].sport, u[UDP].dport, u[UDP].load) == (sa.port, 5000, b"hello b")
    if v6:
        assert (u[IPv6].src, u[IPv6].dst, u[IPv6].hlim) == (IP6_A, IP6_B, 64)
    else:
        assert (u[IP].src, u[IP].dst, u[IP].ttl) == (IP_A, IP_B, 64)
        assert_checksum(u, IP)
    assert_checksum(u, UDP)
    # And back, with the neighbour already known on both sides: no resolution.
    got: list = []
    sa.set_handler(lambda data, addr: got.append((data, addr)))
    before = len(wire.log)
    sb.sendto(b"x" * 1000, (ip_a, sa.port))
    wire.pump(11)
    assert len(wire.log) == before + 1
    assert got == [(b"x" * 1000, (ip_b, 5000))]


def test_udp_from_scapy_and_checksum_rules() -> None:
    r, _ = make()
    s4 = r.udp_socket(9993)
    s6 = r.udp_socket(9993, v6=True)
    e = Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A))
    assert feed(r, e / IP(src=IP_PEER, dst=IP_A) / UDP(sport=1234, dport=9993) / b"one")
    # A zero UDP checksum means "none" over IPv4 ...
    assert feed(r, e / IP(src=IP_PEER, dst=IP_A) / UDP(sport=1234, dport=9993, chksum=0) / b"two")
    assert s4.recvfrom_nowait() == (b"one", (IP_PEER, 1234))
    assert s4.recvfrom_nowait() == (b"two", (IP_PEER, 1234))
    # ... but is invalid over IPv6.
    assert not feed(r, e / IPv6(src=IP6_PEER, dst=IP6_A) / UDP(sport=1, dport=9993, chksum=0) / b"three")
    assert feed(r, e / IPv6(src=IP6_PEER, dst=IP6_A) / UDP(sport=1, dport=9993) / b"four")
    assert s6.recvfrom_nowait() == (b"four", (IP6_PEER, 1))
    assert r.counters["bad_checksum"] == 1
    # Subnet broadcast reaches bound sockets.
    bc = Ether(src=mac_str(MAC_PEER), dst="ff:ff:ff:ff:ff:ff") / IP(src=IP_PEER, dst="10.147.17.255")
    assert feed(r, bc / UDP(sport=7, dport=9993) / b"bc")
    assert s4.recvfrom_nowait() == (b"bc", (IP_PEER, 7))
    # Nobody bound: dropped and counted.
    assert not feed(r, e / IP(src=IP_PEER, dst=IP_A) / UDP(sport=1, dport=1) / b"x")
    assert r.counters["udp_no_socket"] == 1


def test_udp_socket_api() -> None:
    r, cap = make()
    s = r.udp_socket(4000)
    with pytest.raises(OSError) as ei:
        r.udp_socket(4000)
    assert ei.value.errno == errno.EADDRINUSE
    r.udp_socket(4000, v6=True).close()  # other family: separate port space
    e1, e2 = r.udp_socket(), r.udp_socket()
    assert e1.port != e2.port
    with pytest.raises(OSError) as ei:
        s.sendto(b"x", (IP6_PEER, 1))
    assert ei.value.errno == errno.EAFNOSUPPORT
    # 2800 - 20 - 8 fits the MTU in one packet; one more byte takes two fragments;
    # beyond what IPv4 can carry is refused.
    r.set_addresses(addrs(IP_A, IP6_A))
    r._neighbours[ipaddress.ip_address(IP_PEER).packed] = (MAC_PEER, 10**9)
    s.sendto(b"\x00" * 2772, (IP_PEER, 1))
    assert len(cap.frames[-1][3]) == 2800
    n = len(cap.frames)
    s.sendto(b"\x00" * 2773, (IP_PEER, 1))
    assert len(cap.frames) == n + 2 and all(len(fr[3]) <= 2800 for fr in cap.frames[n:])
    with pytest.raises(OSError) as ei:
        s.sendto(b"\x00" * 65508, (IP_PEER, 1))
    assert ei.value.errno == errno.EMSGSIZE
    s.close()
    with pytest.raises(OSError):
        s.sendto(b"x", (IP_PEER, 1))
    assert not feed(
        r, Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A)) / IP(src=IP_PEER, dst=IP_A) / UDP(dport=4000)
    )
    assert r.counters["udp_no_socket"] == 1
    # Without any IPv4 address there is no route.
    r.set_addresses([ipaddress.ip_interface(f"{IP6_A}/64")])
    with pytest.raises(OSError) as ei:
        e1.sendto(b"x", (IP_PEER, 1))
    assert ei.value.errno == errno.ENETUNREACH


def test_udp_loopback_to_own_address() -> None:
    r, cap = make()
    s1, s2 = r.udp_socket(1), r.udp_socket(2)
    s1.sendto(b"me", (IP_A, 2))
    assert s2.recvfrom_nowait() == (b"me", (IP_A, 1))
    assert cap.frames == []


def test_udp_async_recvfrom() -> None:
    r, _ = make()
    s = r.udp_socket(7000)
    pkt = (
        Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A))
        / IP(src=IP_PEER, dst=IP_A)
        / UDP(sport=5, dport=7000)
    )

    async def main() -> tuple:
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, feed, r, pkt / b"async")
        got = await s.recvfrom(timeout=2)
        with pytest.raises(TimeoutError):
            await s.recvfrom(timeout=0.01)
        feed(r, pkt / b"queued")  # no waiter: queued, returned at once
        return got, await s.recvfrom()

    assert asyncio.run(main()) == ((b"async", (IP_PEER, 5)), (b"queued", (IP_PEER, 5)))
    assert isinstance(s, VirtualUdpSocket) and not s._waiters


# --- ping -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("v6", [False, True])
def test_ping_between_two_responders_with_resolution(v6: bool) -> None:
    wire = Wire()
    a = wire.attach(MAC_A, IP_A, IP6_A)
    wire.attach(MAC_B, IP_B, IP6_B)
    callbacks: list[PingHandle] = []
    h = a.ping(IP6_B if v6 else IP_B, 100, seq=1, payload=b"ping!", on_reply=callbacks.append)
    assert not h.done and h.reply_time is None
    # Before any pumping only the resolution request went out.
    first = wire.ether(wire.queue[0])
    if v6:
        assert first.dst == "33:33:ff:aa:bb:02" and first[ICMPv6ND_NS].tgt == IP6_B
        assert first[ICMPv6NDOptSrcLLAddr].lladdr == mac_str(MAC_A) and first[IPv6].hlim == 255
        assert first[IPv6].dst == "ff02::1:ffaa:bb02"
        assert_checksum(first, ICMPv6ND_NS, "cksum")
    else:
        assert first.dst == "ff:ff:ff:ff:ff:ff"
        assert (first[ARP].op, first[ARP].pdst, first[ARP].psrc) == (1, IP_B, IP_A)
    assert len(wire.queue) == 1
    wire.pump(107)
    assert h.done and h.reply_time == 7 and h.error is None
    assert callbacks == [h] and a.ping_results() == [h] and a.ping_results() == []
    # request, resolution reply, echo request, echo reply
    assert len(wire.log) == 4
    # A second ping goes straight out.
    h2 = a.ping(IP6_B if v6 else IP_B, 200, seq=2)
    assert wire.pump(203) == 2 and h2.reply_time == 3


def test_ping_own_address_is_local() -> None:
    r, cap = make()
    h = r.ping(IP_A, 5)
    assert h.done and h.reply_time == 0
    assert cap.frames == []


def test_resolution_queue_timeout() -> None:
    r, cap = make()
    s = r.udp_socket(1000)
    h = r.ping(IP_PEER, 0)
    s.sendto(b"queued", (IP_PEER, 2000), now=10)
    assert len(cap.frames) == 1 and cap.ether()[ARP].pdst == IP_PEER  # one ARP for both packets
    r.expire(500)
    assert len(cap.frames) == 1
    r.expire(1000)  # re-solicit
    assert len(cap.frames) == 2 and cap.ether()[ARP].op == 1
    r.expire(3000)
    assert h.done and h.reply_time is None and h.error == "unreachable"
    assert r.counters["resolution_timeout"] == 2
    # Nothing but ARP requests was ever sent, and a late reply releases nothing.
    assert all(fm[2] == 0x0806 for fm in cap.frames)
    late = Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A)) / ARP(
        op=2, hwsrc=mac_str(MAC_PEER), psrc=IP_PEER, hwdst=mac_str(MAC_A), pdst=IP_A
    )
    assert feed(r, late, 3100)
    assert all(fm[2] == 0x0806 for fm in cap.frames)


def test_pending_queue_is_bounded() -> None:
    r, cap = make()
    s = r.udp_socket(1000)
    for i in range(40):
        s.sendto(bytes([i]), (IP_PEER, 2000), now=0)
    assert r.counters["queue_overflow"] == 40 - 32
    rep = Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A)) / ARP(
        op=2, hwsrc=mac_str(MAC_PEER), psrc=IP_PEER, hwdst=mac_str(MAC_A), pdst=IP_A
    )
    assert feed(r, rep, 5)
    sent = [cap.ether(i) for i in range(len(cap.frames)) if cap.frames[i][2] == 0x0800]
    # The newest 32 went out, in order, to the resolved MAC.
    assert [p[UDP].load[0] for p in sent] == list(range(8, 40))
    assert all(p.dst == mac_str(MAC_PEER) for p in sent)


def test_ping_timeout_without_reply_and_neighbour_expiry() -> None:
    r, cap = make()
    # Learn the peer from its ARP request, then ping it: the echo goes out directly.
    req = Ether(src=mac_str(MAC_PEER), dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=mac_str(MAC_PEER), psrc=IP_PEER, pdst=IP_A
    )
    feed(r, req, 0)
    h = r.ping(IP_PEER, 10, timeout=1000)
    assert cap.ether()[ICMP].type == 8 and cap.ether().dst == mac_str(MAC_PEER)
    r.expire(1009)
    assert not h.done
    r.expire(1010)
    assert h.done and h.error == "timeout" and h.reply_time is None
    # A reply after the timeout is unexpected.
    rep = (
        Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A))
        / IP(src=IP_PEER, dst=IP_A)
        / ICMP(type=0, id=h.ident, seq=h.seq)
    )
    assert not feed(r, rep, 1100)
    assert r.counters["unexpected_echo_reply"] == 1
    r.expire(10**7)
    assert r.neighbours() == {}


# --- dropping -----------------------------------------------------------------------------------------


def test_bad_checksums_dropped_and_counted() -> None:
    r, cap = make()
    r.udp_socket(53)
    r.udp_socket(53, v6=True)
    e = Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A))
    bad = [
        e / IP(src=IP_PEER, dst=IP_A, chksum=0x1234) / ICMP(),
        e / IP(src=IP_PEER, dst=IP_A) / ICMP(chksum=0x1234),
        e / IP(src=IP_PEER, dst=IP_A) / UDP(dport=53, chksum=0x1234) / b"q",
        e / IPv6(src=IP6_PEER, dst=IP6_A) / ICMPv6EchoRequest(cksum=0x1234),
        e / IPv6(src=IP6_PEER, dst=IP6_A) / UDP(dport=53, chksum=0x1234) / b"q",
    ]
    for pkt in bad:
        assert not feed(r, pkt)
    assert cap.frames == []
    assert r.counters["bad_checksum"] == len(bad)
    assert r.counters["malformed"] == 0


def test_fragments_and_foreign_frames_dropped() -> None:
    r, cap = make()
    r.udp_socket(53)
    e = Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A))
    # Lone fragments wait for the rest (and expire); a non-final fragment whose length is
    # not a multiple of 8 is refused.
    assert feed(r, e / IP(src=IP_PEER, dst=IP_A, flags="MF") / UDP(dport=53) / b"q")
    assert feed(r, e / IP(src=IP_PEER, dst=IP_A, frag=10) / b"tail")
    assert feed(r, e / IPv6(src=IP6_PEER, dst=IP6_A) / IPv6ExtHdrFragment(m=1) / UDP(dport=53))
    assert r.reassembler.counters["frag_bad_length"] == 1 and len(r.reassembler) == 2
    r.expire(10**6)
    assert len(r.reassembler) == 0 and r.reassembler.counters["frag_timeout"] == 2
    # Unicast to another MAC, another IP, a VLAN-tagged frame, an unknown ethertype.
    assert not feed(r, Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_B)) / IP(src=IP_PEER, dst=IP_A) / ICMP())
    assert not feed(r, e / IP(src=IP_PEER, dst=IP_B) / ICMP())
    assert not feed(r, e / Dot1Q(vlan=5) / IP(src=IP_PEER, dst=IP_A) / ICMP())
    assert not feed(r, Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A), type=0x88B5) / b"whatever")
    assert r.counters["not_for_us"] == 2 and r.counters["vlan"] == 1
    assert r.counters["unsupported_ethertype"] == 1
    assert cap.frames == []


def test_disabled_responder_does_nothing() -> None:
    r, cap = make()
    r.enabled = False
    req = Ether(src=mac_str(MAC_PEER), dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=mac_str(MAC_PEER), psrc=IP_PEER, pdst=IP_A
    )
    assert not feed(r, req)
    assert cap.frames == [] and not r.counters and r.neighbours() == {}
    r.enabled = True
    assert feed(r, req) and len(cap.frames) == 1


def _templates() -> list[Ether]:
    e = Ether(src=mac_str(MAC_PEER), dst=mac_str(MAC_A))
    return [
        Ether(src=mac_str(MAC_PEER), dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=mac_str(MAC_PEER), psrc=IP_PEER, pdst=IP_A),
        e / IP(src=IP_PEER, dst=IP_A) / ICMP(id=1, seq=1) / b"abcdef",
        e / IP(src=IP_PEER, dst=IP_A, options=NOP_OPTIONS) / UDP(sport=1, dport=53) / b"q",
        e / IPv6(src=IP6_PEER, dst=IP6_A) / ICMPv6EchoRequest(data=b"zz"),
        e / IPv6(src=IP6_PEER, dst=IP6_A) / UDP(sport=1, dport=53) / b"q",
        Ether(src=mac_str(MAC_PEER), dst="33:33:ff:aa:bb:01")
        / IPv6(src=IP6_PEER, dst="ff02::1:ffaa:bb01", hlim=255)
        / ICMPv6ND_NS(tgt=IP6_A)
        / ICMPv6NDOptSrcLLAddr(lladdr=mac_str(MAC_PEER)),
        e
        / IPv6(src=IP6_PEER, dst=IP6_A, hlim=255)
        / ICMPv6ND_NA(tgt=IP6_PEER, S=1)
        / ICMPv6NDOptDstLLAddr(lladdr=mac_str(MAC_PEER)),
    ]


def _rechecksummed(frame: bytes) -> bytes | None:
    """Have scapy recompute every checksum of a (mutated) frame, so the
    mutation reaches the parsers behind the checksum checks."""
    try:
        pkt = Ether(frame)
        layer = pkt
        while layer:
            for name in ("chksum", "cksum"):
                if name in layer.fields:
                    setattr(layer, name, None)
            layer = layer.payload
        return raw(pkt)
    except Exception:  # scapy itself may choke on garbage; then just skip it
        return None


def test_fuzz_never_raises() -> None:
    rng = random.Random(0xC0FFEE)
    r, cap = make()
    r.udp_socket(53)
    r.udp_socket(53, v6=True)
    r.ping(IP_PEER, 0)
    r.ping(IP6_PEER, 0)
    valid = [raw(t) for t in _templates()]
    # scapy's own field fuzzing, with scapy computing the checksums.
    fuzzed = [raw(t.__class__(raw(fuzz(t.copy())))) for t in _templates() for _ in range(20)]
    inputs = 0
    for i in range(3000):
        base = bytearray(rng.choice(valid if rng.random() < 0.6 else fuzzed))
        kind = i % 5
        if kind in (0, 4):
            for _ in range(rng.randint(1, 3)):
                base[rng.randrange(14, len(base))] = rng.randrange(256)
            if kind == 4:
                base = bytearray(_rechecksummed(bytes(base)) or base)
        elif kind == 1:
            base = base[: rng.randrange(len(base) + 1)]
        elif kind == 2:
            base = bytearray(base[:14] + rng.randbytes(rng.randrange(80)))
        else:
            base += rng.randbytes(rng.randrange(16))
        if len(base) < 14:
            base += bytes(14 - len(base))
        dst = int.from_bytes(base[0:6], "big")
        src = int.from_bytes(base[6:12], "big")
        et = int.from_bytes(base[12:14], "big")
        result = r.handle_frame(src, dst, et, bytes(base[14:]), i)
        assert isinstance(result, bool)
        inputs += 1
        if i % 500 == 0:
            r.expire(i)
    assert inputs == 3000
    assert r.counters["internal_error"] == 0
    assert r.counters["malformed"] > 0 and r.counters["bad_checksum"] > 0
    assert len(cap.frames) > 100  # plenty of mutated frames were still valid enough to answer
    # The responder still works afterwards.
    cap.frames.clear()
    assert feed(r, _templates()[1], 5000) and cap.ether()[ICMP].type == 0
