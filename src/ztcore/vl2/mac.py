"""48-bit Ethernet MAC addresses and ZeroTier's MAC <-> node address mapping.

On a ZeroTier network every member's MAC is derived from its 40-bit address and
the 64-bit network id:

* first octet: the network id's least significant byte with the multicast bit
  cleared and the locally-administered bit set (``(nwid & 0xfe) | 0x02``),
  except that 0x52 (used by KVM/libvirt) is replaced by 0x32;
* remaining five octets: the node address XORed with network id bytes
  1..5 counted from the least significant end, i.e. MAC octet 1 is XORed
  with ``(nwid >> 8) & 0xff``, octet 2 with ``(nwid >> 16) & 0xff`` ...
  octet 5 with ``(nwid >> 40) & 0xff``.
"""

from __future__ import annotations

from ztcore.errors import InvalidFormatError
from ztcore.identity.address import Address

__all__ = ["BROADCAST_MAC", "MAC", "address_mask"]

_MAX = (1 << 48) - 1
_HEX = frozenset("0123456789abcdefABCDEF")


def address_mask(nwid: int) -> int:
    """The 40-bit value XORed onto the node address (network id bytes 1..5, LSB first)."""
    return (
        (((nwid >> 8) & 0xFF) << 32)
        | (((nwid >> 16) & 0xFF) << 24)
        | (((nwid >> 24) & 0xFF) << 16)
        | (((nwid >> 32) & 0xFF) << 8)
        | ((nwid >> 40) & 0xFF)
    )


class MAC(int):
    """An Ethernet MAC address held as a 48-bit integer (big-endian octet order)."""

    __slots__ = ()
    LENGTH = 6

    def __new__(cls, value: int) -> MAC:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidFormatError(f"MAC must be an integer, not {type(value).__name__}")
        if not 0 <= value <= _MAX:
            raise InvalidFormatError(f"MAC {value:#x} is outside 48 bits")
        return super().__new__(cls, value)

    # ------------------------------------------------------------ conversions

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> MAC:  # type: ignore[override]
        """Read 6 octets at ``offset``."""
        if offset < 0 or len(data) - offset < 6:
            raise InvalidFormatError("MAC needs 6 bytes")
        return cls(int.from_bytes(bytes(data[offset : offset + 6]), "big"))

    def to_bytes(self) -> bytes:  # type: ignore[override]
        return int.to_bytes(self, 6, "big")

    @classmethod
    def parse(cls, text: str) -> MAC:
        """Parse ``aa:bb:cc:dd:ee:ff``, ``aa-bb-...`` or 12 bare hex digits."""
        if not isinstance(text, str):
            raise InvalidFormatError("MAC text must be a string")
        s = text.strip()
        if len(s) == 17 and s[2::3] in (":::::", "-----"):
            s = s.replace(":", "").replace("-", "")
        if len(s) != 12 or not _HEX.issuperset(s):
            raise InvalidFormatError(f"invalid MAC address {text[:40]!r}")
        return cls(int(s, 16))

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.to_bytes())

    def __repr__(self) -> str:
        return f"MAC('{self}')"

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else int.__format__(int(self), spec)

    def octet(self, i: int) -> int:
        """Octet ``i`` (0..5) in transmission order."""
        if not 0 <= i < 6:
            raise IndexError("MAC octet index out of range")
        return (self >> (40 - 8 * i)) & 0xFF

    # --------------------------------------------------------------- queries

    @property
    def is_broadcast(self) -> bool:
        return self == _MAX

    @property
    def is_multicast(self) -> bool:
        return bool(self & 0x010000000000)

    @property
    def is_locally_administered(self) -> bool:
        return bool(self & 0x020000000000)

    # ------------------------------------------------- ZeroTier address mapping

    @staticmethod
    def first_octet_for_network(nwid: int) -> int:
        """First MAC octet used by members of network ``nwid``."""
        a = (nwid & 0xFE) | 0x02
        return 0x32 if a == 0x52 else a

    @classmethod
    def from_address(cls, address: int, nwid: int) -> MAC:
        """The MAC of node ``address`` on network ``nwid``."""
        if not 0 <= address < (1 << 40):
            raise InvalidFormatError("ZeroTier address must be 40 bits")
        if not 0 <= nwid < (1 << 64):
            raise InvalidFormatError("network id must be 64 bits")
        return cls((cls.first_octet_for_network(nwid) << 40) | (address ^ address_mask(nwid)))

    def to_address(self, nwid: int) -> Address:
        """The node address this MAC maps to on ``nwid`` (assuming no bridging)."""
        return Address((self & 0xFFFFFFFFFF) ^ address_mask(nwid))

    def is_for_network(self, nwid: int) -> bool:
        """True if the first octet is the one ZeroTier-derived MACs use on ``nwid``."""
        return (self >> 40) == self.first_octet_for_network(nwid)


BROADCAST_MAC = MAC(_MAX)
