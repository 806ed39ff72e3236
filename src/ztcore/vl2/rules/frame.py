"""A frame as the rules engine sees it, and what certificates of ownership say
about its sender. The IPv6 header chain is walked at most once per frame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ETHERTYPE_ARP", "ETHERTYPE_IPV4", "ETHERTYPE_IPV6", "NO_OWNERSHIP", "Frame", "Ownership"]

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD


# --------------------------------------------------------------------- frames


class Frame:
    """One Ethernet frame as the rules see it. ``data`` is the payload after the
    ethertype; the IPv6 header chain is walked at most once, when a rule needs it."""

    __slots__ = (
        "source_address",
        "dest_address",
        "source_mac",
        "dest_mac",
        "ethertype",
        "vlan_id",
        "data",
        "_v6",
    )

    def __init__(
        self,
        source_address: int,
        dest_address: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        data: bytes,
        vlan_id: int = 0,
    ) -> None:
        self.source_address = int(source_address)
        self.dest_address = int(dest_address)
        self.source_mac = int(source_mac)
        self.dest_mac = int(dest_mac)
        self.ethertype = int(ethertype)
        self.vlan_id = int(vlan_id)
        self.data = bytes(data)
        self._v6: tuple[int, int] | None | bool = False  # False: not walked yet

    def ipv6_payload(self) -> tuple[int, int] | None:
        """(offset, protocol) of the IPv6 payload past the extension headers the core
        skips (hop-by-hop, routing, destination options, mobility), or None if the
        header chain is invalid or the frame too short."""
        v = self._v6
        if v is False:
            v = self._v6 = _ipv6_payload(self.data)
        return v  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"Frame({self.source_address:010x}->{self.dest_address:010x}, "
            f"{self.source_mac:012x}->{self.dest_mac:012x}, type={self.ethertype:04x}, len={len(self.data)})"
        )


def _ipv6_payload(d: bytes) -> tuple[int, int] | None:
    n = len(d)
    if n < 40:
        return None
    pos = 40
    proto = d[6]
    while pos <= n:
        if proto in (0, 43, 60, 135):
            if pos + 8 > n:
                return None
            proto = d[pos]
            pos += d[pos + 1] * 8 + 8
        else:
            return pos, proto
    return None


# ------------------------------------------------------------------ ownership


class Ownership:
    """What certificates of ownership say about the frame's sender: the IPs and
    MACs they name (the sender's own COOs: ours outbound, the remote member's
    inbound), plus IPv6 prefixes that count as owned under NDP emulation (the
    core's Membership::_isV6NDPEmulated; inbound only)."""

    __slots__ = ("ips", "macs", "ndp_prefixes")

    def __init__(
        self,
        ips: Sequence[bytes] = (),
        macs: Sequence[int] = (),
        ndp_prefixes: Sequence[tuple[bytes, int]] = (),
    ) -> None:
        self.ips = frozenset(bytes(i) for i in ips)
        self.macs = frozenset(int(m) for m in macs)
        self.ndp_prefixes = tuple(ndp_prefixes)  # (16-byte address, prefix length in bytes)

    @classmethod
    def from_coos(cls, coos: Sequence[Any], ndp_prefixes: Sequence[tuple[bytes, int]] = ()) -> Ownership:
        """From CertificateOfOwnership objects (things: (type, 16-byte value))."""
        ips: list[bytes] = []
        macs: list[int] = []
        for coo in coos:
            for t, v in coo.things:
                if int(t) == 1:
                    macs.append(int.from_bytes(bytes(v[:6]), "big"))
                elif int(t) == 2:
                    ips.append(bytes(v[:4]))
                elif int(t) == 3:
                    ips.append(bytes(v[:16]))
        return cls(ips, macs, ndp_prefixes)

    def owns_ip(self, ip: bytes) -> bool:
        if ip in self.ips:
            return True
        if len(ip) == 16:
            return any(ip[:n] == p[:n] for p, n in self.ndp_prefixes)
        return False

    def owns_mac(self, mac: int) -> bool:
        return mac in self.macs


NO_OWNERSHIP = Ownership()
