"""Hand-written parsers and builders for the few frame formats the virtual
network responder speaks: Ethernet II, ARP (Ethernet/IPv4), IPv4, ICMP echo,
IPv6, ICMPv6 (echo and neighbour discovery NS/NA) and UDP over both.

Everything is plain ``struct`` over ``bytes``: this sits on the data path, so
no scapy here. Addresses are raw network-order ``bytes`` (4 or 16 long) and
MACs are 48-bit ints, as in the rest of ztcore. Parsers raise
``InvalidFormatError`` (``ChecksumError`` for a checksum mismatch) and never
anything else; builders compute every checksum.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from ztcore.errors import InvalidFormatError

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV6 = 0x86DD

IPPROTO_ICMP = 1
IPPROTO_UDP = 17
IPPROTO_IPV6_HOPOPTS = 0
IPPROTO_IPV6_ROUTING = 43
IPPROTO_IPV6_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_IPV6_NONXT = 59
IPPROTO_IPV6_DSTOPTS = 60

ARP_REQUEST = 1
ARP_REPLY = 2

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ICMPV6_NEIGHBOR_SOLICITATION = 135
ICMPV6_NEIGHBOR_ADVERTISEMENT = 136

NDP_OPT_SOURCE_LLADDR = 1
NDP_OPT_TARGET_LLADDR = 2
NA_FLAG_ROUTER = 0x80
NA_FLAG_SOLICITED = 0x40
NA_FLAG_OVERRIDE = 0x20

BROADCAST_MAC = 0xFFFFFFFFFFFF
IPV6_ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
IPV6_ALL_NODES_MAC = 0x333300000001
IPV6_UNSPECIFIED = bytes(16)

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_ICMP_ECHO = struct.Struct("!BBHHH")
_UDP = struct.Struct("!HHHH")


class ChecksumError(InvalidFormatError):
    """A header or payload checksum does not verify."""


# --- helpers -------------------------------------------------------------------------------------


def mac_to_bytes(mac: int) -> bytes:
    return (mac & 0xFFFFFFFFFFFF).to_bytes(6, "big")


def mac_from_bytes(b: bytes) -> int:
    return int.from_bytes(b, "big")


def is_multicast_mac(mac: int) -> bool:
    """The Ethernet group bit (least significant bit of the first octet)."""
    return bool((mac >> 40) & 1)


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum of ``data`` (odd length is zero padded).

    Because 2**16 == 1 (mod 0xffff), the big-endian integer of the data taken
    mod 0xffff is the one's complement sum of its 16-bit words -- one C-speed
    operation instead of a Python loop. A non-empty sum that is a multiple of
    0xffff is 0xffff in one's complement, which yields checksum 0x0000.
    """
    if len(data) & 1:
        data += b"\x00"
    s = int.from_bytes(data, "big") % 0xFFFF
    if s == 0 and any(data):
        s = 0xFFFF
    return ~s & 0xFFFF


def checksum_valid(data: bytes) -> bool:
    """True if ``data`` (which includes its checksum field) sums to 0xffff."""
    if len(data) & 1:
        data += b"\x00"
    return int.from_bytes(data, "big") % 0xFFFF == 0 and any(data)


def _pseudo_header(src: bytes, dst: bytes, protocol: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, protocol, length)
    return src + dst + struct.pack("!IxxxB", length, protocol)


def solicited_node_address(ip6: bytes) -> bytes:
    """ff02::1:ffXX:XXXX for an IPv6 address (RFC 4291 2.7.1)."""
    return bytes.fromhex("ff0200000000000000000001ff") + ip6[13:16]


def ipv6_multicast_mac(ip6: bytes) -> int:
    """33:33 followed by the low 32 bits of the IPv6 multicast address (RFC 2464)."""
    return 0x333300000000 | int.from_bytes(ip6[12:16], "big")


def ipv4_multicast_mac(ip4: bytes) -> int:
    """01:00:5e followed by the low 23 bits of the IPv4 multicast address (RFC 1112)."""
    return 0x01005E000000 | (int.from_bytes(ip4, "big") & 0x7FFFFF)


# --- Ethernet ------------------------------------------------------------------------------------


class EthernetFrame(NamedTuple):
    dest_mac: int
    source_mac: int
    ethertype: int
    payload: bytes


def parse_ethernet(frame: bytes) -> EthernetFrame:
    """Split an Ethernet II frame (no FCS). 802.1Q tags are left in place:
    the ethertype comes back as 0x8100 and the caller ignores the frame."""
    if len(frame) < 14:
        raise InvalidFormatError("Ethernet frame shorter than its header")
    dst, src, et = _ETH.unpack_from(frame)
    return EthernetFrame(mac_from_bytes(dst), mac_from_bytes(src), et, bytes(frame[14:]))


def build_ethernet(dest_mac: int, source_mac: int, ethertype: int, payload: bytes) -> bytes:
    return _ETH.pack(mac_to_bytes(dest_mac), mac_to_bytes(source_mac), ethertype) + payload


# --- ARP -----------------------------------------------------------------------------------------


class ArpPacket(NamedTuple):
    op: int
    sender_mac: int
    sender_ip: bytes
    target_mac: int
    target_ip: bytes


def parse_arp(data: bytes) -> ArpPacket:
    """Parse an Ethernet/IPv4 ARP packet (trailing padding ignored)."""
    if len(data) < 28:
        raise InvalidFormatError("ARP packet too short")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(data)
    if htype != 1 or ptype != ETHERTYPE_IPV4 or hlen != 6 or plen != 4:
        raise InvalidFormatError("ARP packet is not Ethernet/IPv4")
    return ArpPacket(op, mac_from_bytes(sha), spa, mac_from_bytes(tha), tpa)


def build_arp(op: int, sender_mac: int, sender_ip: bytes, target_mac: int, target_ip: bytes) -> bytes:
    return _ARP.pack(
        1, ETHERTYPE_IPV4, 6, 4, op, mac_to_bytes(sender_mac), sender_ip, mac_to_bytes(target_mac), target_ip
    )


# --- IPv4 ----------------------------------------------------------------------------------------


class Ipv4Packet(NamedTuple):
    src: bytes
    dst: bytes
    protocol: int
    ttl: int
    ident: int
    flags_fragment: int
    payload: bytes

    @property
    def is_fragment(self) -> bool:
        # More-fragments set, or a non-zero offset: part of a fragmented datagram.
        return bool(self.flags_fragment & 0x3FFF)


def parse_ipv4(data: bytes) -> Ipv4Packet:
    """Parse and checksum-verify an IPv4 header; the payload is cut at the
    total length (dropping any Ethernet padding)."""
    if len(data) < 20:
        raise InvalidFormatError("IPv4 packet shorter than its header")
    vihl, _tos, total, ident, ff, ttl, proto, _ck, src, dst = _IPV4.unpack_from(data)
    if vihl >> 4 != 4:
        raise InvalidFormatError("not IPv4")
    ihl = (vihl & 0x0F) * 4
    if ihl < 20 or total < ihl or total > len(data):
        raise InvalidFormatError("bad IPv4 header or total length")
    if not checksum_valid(data[:ihl]):
        raise ChecksumError("IPv4 header checksum")
    return Ipv4Packet(src, dst, proto, ttl, ident, ff, bytes(data[ihl:total]))


def build_ipv4(
    src: bytes,
    dst: bytes,
    protocol: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    dont_fragment: bool = True,
) -> bytes:
    total = 20 + len(payload)
    if total > 0xFFFF:
        raise InvalidFormatError("IPv4 packet too long")
    ff = 0x4000 if dont_fragment else 0
    hdr = _IPV4.pack(0x45, 0, total, ident & 0xFFFF, ff, ttl, protocol, 0, src, dst)
    ck = internet_checksum(hdr)
    return hdr[:10] + ck.to_bytes(2, "big") + hdr[12:] + payload


# --- ICMP (v4) -----------------------------------------------------------------------------------


class IcmpEcho(NamedTuple):
    type: int
    code: int
    ident: int
    seq: int
    data: bytes


def parse_icmp_echo(data: bytes) -> IcmpEcho:
    """Checksum-verify an ICMP message and split it as an echo request/reply
    (the caller looks at ``type`` before trusting ident/seq)."""
    if len(data) < 8:
        raise InvalidFormatError("ICMP message too short")
    if not checksum_valid(data):
        raise ChecksumError("ICMP checksum")
    t, c, _ck, ident, seq = _ICMP_ECHO.unpack_from(data)
    return IcmpEcho(t, c, ident, seq, bytes(data[8:]))


def build_icmp_echo(type_: int, ident: int, seq: int, data: bytes) -> bytes:
    msg = _ICMP_ECHO.pack(type_, 0, 0, ident, seq) + data
    ck = internet_checksum(msg)
    return msg[:2] + ck.to_bytes(2, "big") + msg[4:]


# --- IPv6 ----------------------------------------------------------------------------------------


class Ipv6Packet(NamedTuple):
    src: bytes
    dst: bytes
    next_header: int  # of the upper layer, after skipped extension headers (44 = fragment)
    hop_limit: int
    payload: bytes


_SKIPPABLE_EXT = (IPPROTO_IPV6_HOPOPTS, IPPROTO_IPV6_ROUTING, IPPROTO_IPV6_DSTOPTS)


def parse_ipv6(data: bytes) -> Ipv6Packet:
    """Parse an IPv6 header, cut the payload at payload-length and walk past
    hop-by-hop / routing / destination-options headers. A fragment header
    stops the walk (next_header 44) so the caller can drop the fragment."""
    if len(data) < 40:
        raise InvalidFormatError("IPv6 packet shorter than its header")
    vtf, plen, nh, hlim, src, dst = _IPV6.unpack_from(data)
    if vtf >> 28 != 6:
        raise InvalidFormatError("not IPv6")
    if 40 + plen > len(data):
        raise InvalidFormatError("IPv6 payload length beyond the frame")
    payload = bytes(data[40 : 40 + plen])
    while nh in _SKIPPABLE_EXT:
        if len(payload) < 8:
            raise InvalidFormatError("truncated IPv6 extension header")
        ext_len = (payload[1] + 1) * 8
        if ext_len > len(payload):
            raise InvalidFormatError("truncated IPv6 extension header")
        nh = payload[0]
        payload = payload[ext_len:]
    return Ipv6Packet(src, dst, nh, hlim, payload)


def build_ipv6(src: bytes, dst: bytes, next_header: int, payload: bytes, *, hop_limit: int = 64) -> bytes:
    if len(payload) > 0xFFFF:
        raise InvalidFormatError("IPv6 payload too long (no jumbograms)")
    return _IPV6.pack(0x60000000, len(payload), next_header, hop_limit, src, dst) + payload


# --- ICMPv6 --------------------------------------------------------------------------------------


def build_icmpv6(src: bytes, dst: bytes, type_: int, code: int, body: bytes) -> bytes:
    """An ICMPv6 message with its checksum over the IPv6 pseudo-header."""
    msg = bytes((type_, code, 0, 0)) + body
    ck = internet_checksum(_pseudo_header(src, dst, IPPROTO_ICMPV6, len(msg)) + msg)
    return msg[:2] + ck.to_bytes(2, "big") + msg[4:]


def verify_icmpv6(src: bytes, dst: bytes, msg: bytes) -> tuple[int, int, bytes]:
    """Checksum-verify an ICMPv6 message; returns (type, code, body after the checksum)."""
    if len(msg) < 4:
        raise InvalidFormatError("ICMPv6 message too short")
    if not checksum_valid(_pseudo_header(src, dst, IPPROTO_ICMPV6, len(msg)) + msg):
        raise ChecksumError("ICMPv6 checksum")
    return msg[0], msg[1], bytes(msg[4:])


def build_icmpv6_echo(src: bytes, dst: bytes, type_: int, ident: int, seq: int, data: bytes) -> bytes:
    return build_icmpv6(src, dst, type_, 0, struct.pack("!HH", ident, seq) + data)


def parse_icmpv6_echo_body(body: bytes) -> tuple[int, int, bytes]:
    """(ident, seq, data) from the body of an ICMPv6 echo request/reply."""
    if len(body) < 4:
        raise InvalidFormatError("ICMPv6 echo too short")
    ident, seq = struct.unpack_from("!HH", body)
    return ident, seq, bytes(body[4:])


class NdpMessage(NamedTuple):
    flags: int  # first byte of the reserved/flags word (R, S, O for an NA)
    target: bytes
    link_layer: int | None  # source LL option of an NS, target LL option of an NA


def parse_ndp(type_: int, body: bytes) -> NdpMessage:
    """Parse the body of an NS/NA (after the 4-byte ICMPv6 header), checking
    options are well formed (RFC 4861 7.1.1 / 7.1.2: no zero-length option)."""
    if len(body) < 20:
        raise InvalidFormatError("NDP message too short")
    flags = body[0]
    target = bytes(body[4:20])
    want = NDP_OPT_SOURCE_LLADDR if type_ == ICMPV6_NEIGHBOR_SOLICITATION else NDP_OPT_TARGET_LLADDR
    lladdr: int | None = None
    pos, n = 20, len(body)
    while pos < n:
        if pos + 2 > n:
            raise InvalidFormatError("truncated NDP option")
        otype, olen = body[pos], body[pos + 1] * 8
        if olen == 0 or pos + olen > n:
            raise InvalidFormatError("bad NDP option length")
        if otype == want and olen >= 8:
            lladdr = mac_from_bytes(body[pos + 2 : pos + 8])
        pos += olen
    return NdpMessage(flags, target, lladdr)


def build_ndp_ns(src: bytes, dst: bytes, target: bytes, source_mac: int | None) -> bytes:
    """Neighbour solicitation; the source LL option is left out for DAD (src ::)."""
    body = bytes(4) + target
    if source_mac is not None:
        body += bytes((NDP_OPT_SOURCE_LLADDR, 1)) + mac_to_bytes(source_mac)
    return build_icmpv6(src, dst, ICMPV6_NEIGHBOR_SOLICITATION, 0, body)


def build_ndp_na(src: bytes, dst: bytes, target: bytes, target_mac: int, flags: int) -> bytes:
    """Neighbour advertisement with a target link-layer address option."""
    body = bytes((flags, 0, 0, 0)) + target + bytes((NDP_OPT_TARGET_LLADDR, 1)) + mac_to_bytes(target_mac)
    return build_icmpv6(src, dst, ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, body)


# --- UDP -----------------------------------------------------------------------------------------


class UdpDatagram(NamedTuple):
    source_port: int
    dest_port: int
    payload: bytes


def parse_udp(src: bytes, dst: bytes, data: bytes) -> UdpDatagram:
    """Parse and checksum-verify a UDP datagram carried between ``src`` and
    ``dst`` (4- or 16-byte addresses). A zero checksum means "none" over IPv4
    but is invalid over IPv6 (RFC 8200 8.1)."""
    if len(data) < 8:
        raise InvalidFormatError("UDP datagram too short")
    sport, dport, length, ck = _UDP.unpack_from(data)
    if length < 8 or length > len(data):
        raise InvalidFormatError("bad UDP length")
    data = data[:length]
    if ck == 0:
        if len(src) == 16:
            raise ChecksumError("UDP over IPv6 without checksum")
    elif not checksum_valid(_pseudo_header(src, dst, IPPROTO_UDP, length) + data):
        raise ChecksumError("UDP checksum")
    return UdpDatagram(sport, dport, bytes(data[8:]))


def build_udp_ipv4_py(
    src: bytes, dst: bytes, source_port: int, dest_port: int, ident: int, ttl: int, payload: bytes
) -> bytes:
    """An IPv4 packet (no options, DF clear) carrying a UDP datagram: the reference of
    the C kernel `ztcore.netstack._wire.udp_ipv4`, which `build_udp_ipv4` uses."""
    udp = build_udp(src, dst, source_port, dest_port, payload)
    return build_ipv4(src, dst, IPPROTO_UDP, udp, ttl=ttl, ident=ident, dont_fragment=False)


def _load_udp_ipv4() -> Callable[[bytes, bytes, int, int, int, int, bytes], bytes]:
    try:
        from ztcore.netstack._wire import udp_ipv4  # type: ignore[import-not-found]
    except ImportError:  # an install without the C extensions
        return build_udp_ipv4_py
    fn: Callable[[bytes, bytes, int, int, int, int, bytes], bytes] = udp_ipv4
    return fn


build_udp_ipv4 = _load_udp_ipv4()


def build_udp(src: bytes, dst: bytes, source_port: int, dest_port: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    if length > 0xFFFF:
        raise InvalidFormatError("UDP datagram too long")
    dgram = _UDP.pack(source_port, dest_port, length, 0) + payload
    ck = internet_checksum(_pseudo_header(src, dst, IPPROTO_UDP, length) + dgram)
    # A computed zero goes on the wire as all ones; zero means "no checksum".
    return dgram[:6] + (ck or 0xFFFF).to_bytes(2, "big") + dgram[8:]
