"""Multicast groups: a multicast MAC plus a 32-bit ADI (additional distinguishing
information), and the groups used for address resolution.

* IPv4 ARP goes to the broadcast MAC ff:ff:ff:ff:ff:ff with the IPv4 address
  (as a big-endian 32-bit integer) in the ADI, so ARP becomes a selective
  multicast query instead of a flood.
* IPv6 NDP uses the solicited-node group's Ethernet form 33:33:ff:xx:xx:xx
  (xx = the last three octets of the IPv6 address) with ADI 0.

On the wire (MULTICAST_LIKE, MULTICAST_GATHER, MULTICAST_FRAME ...) a group is
the 6 MAC octets followed by the ADI as a big-endian uint32.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ztcore.errors import InvalidFormatError
from ztcore.vl2.mac import BROADCAST_MAC, MAC

__all__ = ["MulticastGroup"]


@dataclass(frozen=True, order=True, slots=True)
class MulticastGroup:
    """An immutable (MAC, ADI) pair; ordering is by MAC then ADI, like the core."""

    mac: MAC
    adi: int = 0

    WIRE_LENGTH = 10

    def __post_init__(self) -> None:
        if not isinstance(self.mac, MAC):
            object.__setattr__(self, "mac", MAC(self.mac))
        if isinstance(self.adi, bool) or not isinstance(self.adi, int) or not 0 <= self.adi <= 0xFFFFFFFF:
            raise InvalidFormatError(f"multicast ADI must be a uint32, got {self.adi!r}")

    @classmethod
    def for_address_resolution(cls, ip: object) -> MulticastGroup:
        """The group an ARP (IPv4) or NDP (IPv6) query for ``ip`` is sent to.

        ``ip`` may be an ``ipaddress`` address, text, or anything with an ``ip``
        attribute holding one (such as InetAddress).
        """
        addr = getattr(ip, "ip", ip)
        if isinstance(addr, str):
            try:
                addr = ipaddress.ip_address(addr.split("/", 1)[0])
            except ValueError as e:
                raise InvalidFormatError(f"not an IP address: {ip!r}") from e
        if isinstance(addr, ipaddress.IPv4Address):
            return cls(BROADCAST_MAC, int(addr))
        if isinstance(addr, ipaddress.IPv6Address):
            a = addr.packed
            return cls(MAC(0x3333FF000000 | (a[13] << 16) | (a[14] << 8) | a[15]), 0)
        raise InvalidFormatError(f"not an IP address: {ip!r}")

    def to_bytes(self) -> bytes:
        return self.mac.to_bytes() + self.adi.to_bytes(4, "big")

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> MulticastGroup:
        """Read the 10-byte wire form at ``offset``."""
        if offset < 0 or len(data) - offset < cls.WIRE_LENGTH:
            raise InvalidFormatError("multicast group needs 10 bytes")
        return cls(MAC.from_bytes(data, offset), int.from_bytes(bytes(data[offset + 6 : offset + 10]), "big"))

    def __str__(self) -> str:
        return f"{self.mac}/{self.adi:08x}"
