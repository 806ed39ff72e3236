"""pcap encoding for live capture, without Scapy: UDP datagrams as raw IPv4/IPv6
packets (link type 101) and virtual network frames as Ethernet (link type 1).

Owns only the byte layout of the classic libpcap format (microsecond timestamps)
and of the IP/UDP/Ethernet headers put around what a node sends and receives;
`ztcore.runtime.http_api` streams it, `ztnode capture` writes it to a file that
tcpdump, tshark and Scapy's ``rdpcap`` read.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_RAW",
    "RECORD_HEADER_LENGTH",
    "ethernet_frame",
    "file_header",
    "record",
    "udp_datagram",
]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # the packet starts with an IPv4 or IPv6 header
SNAPLEN = 65535
RECORD_HEADER_LENGTH = 16
_MAGIC = 0xA1B2C3D4


def file_header(linktype: int) -> bytes:
    return struct.pack("<IHHiIII", _MAGIC, 2, 4, 0, 0, SNAPLEN, linktype)


def record(packet: bytes, when: float) -> bytes:
    """One record: seconds, microseconds, captured and original length, the packet."""
    sec = int(when)
    usec = min(int(round((when - sec) * 1_000_000)), 999_999)
    caplen = min(len(packet), SNAPLEN)
    return struct.pack("<IIII", sec, usec, caplen, len(packet)) + packet[:caplen]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_datagram(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 or IPv6 packet carrying `payload` in UDP from `src` to `dst` (checksums set)."""
    s = ipaddress.ip_address(src[0].split("%", 1)[0])
    d = ipaddress.ip_address(dst[0].split("%", 1)[0])
    if s.version != d.version:
        raise ValueError("source and destination must be of one family")
    length = 8 + len(payload)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 17, length)
    else:
        pseudo = s.packed + d.packed + struct.pack("!IxxxB", length, 17)
    udp = struct.pack("!HHHH", src[1], dst[1], length, 0) + payload
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    if s.version == 4:
        head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0, s.packed, d.packed)
        head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
        return head + udp
    return struct.pack("!IHBB", 0x60000000, length, 17, 64) + s.packed + d.packed + udp


def ethernet_frame(dst_mac: int, src_mac: int, ethertype: int, data: bytes, vlan_id: int = 0) -> bytes:
    """An Ethernet II frame (with an 802.1Q tag when `vlan_id` is set)."""
    head = dst_mac.to_bytes(6, "big") + src_mac.to_bytes(6, "big")
    if vlan_id:
        head += struct.pack("!HH", 0x8100, vlan_id & 0x0FFF)
    return head + struct.pack("!H", ethertype) + data
