"""IPv6 NDP emulation (the real core's answer to neighbour solicitations for the
network's own IPv6 address schemes).

An RFC4193 (/88) or 6PLANE (/40) address embeds its owner's ZeroTier address,
so a solicitation for one can be answered locally with a forged neighbour
advertisement instead of being multicast to the network.
"""

from __future__ import annotations

import struct

from ztcore.vl2.mac import MAC
from ztcore.vl2.netconf import NetworkConfig

__all__ = ["emulated_advertisement"]


def emulated_advertisement(
    config: NetworkConfig, network_id: int, me: int, data: bytes
) -> tuple[MAC, bytes] | None:
    """For an IPv6 neighbour solicitation ``data`` (payload after the ethertype) for
    another member's RFC4193/6PLANE address: (that member's MAC, the advertisement
    to deliver locally). None when the solicitation is not one we answer."""
    if len(data) < 40 + 8 + 16 or data[6] != 0x3A or data[40] != 0x87:
        return None
    target = bytes(data[48:64])
    nwid32 = (network_id ^ (network_id >> 32)) & 0xFFFFFFFF
    embedded = None
    mine = b""
    for sip in config.static_ips:
        if sip.ip.version != 6:
            continue
        my6 = sip.ip.packed
        if sip.port == 88 and my6[0] == 0xFD and my6[9:11] == b"\x99\x93" and target[:11] == my6[:11]:
            embedded, mine = int.from_bytes(target[11:16], "big"), my6
            break
        if (
            sip.port == 40
            and my6[0] == 0xFC
            and my6[1:5] == nwid32.to_bytes(4, "big")
            and target[:5] == my6[:5]
        ):
            embedded, mine = int.from_bytes(target[5:10], "big"), my6
            break
    if embedded is None or embedded == me:
        return None
    peer_mac = MAC.from_address(embedded, network_id)
    icmp = bytearray(b"\x88\x00\x00\x00\x60\x00\x00\x00") + target + b"\x02\x01" + peer_mac.to_bytes()
    pseudo = target + mine + struct.pack(">II", len(icmp), 0x3A) + bytes(icmp)
    total = sum(struct.unpack(f">{len(pseudo) // 2}H", pseudo))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into(">H", icmp, 2, ~total & 0xFFFF)
    advert = struct.pack(">IHBB", 0x60000000, len(icmp), 0x3A, 0xFF) + target + mine + bytes(icmp)
    return peer_mac, advert
