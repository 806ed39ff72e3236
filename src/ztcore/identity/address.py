"""ZeroTier addresses: 40-bit node identifiers derived from identities.

On the wire an address is 5 bytes, big-endian; as text it is 10 lowercase hex
digits. Address 0 and every address whose first byte is 0xff are reserved
(0xff.. is kept for future use) and never belong to a valid identity.
"""

from __future__ import annotations

from ztcore.errors import InvalidFormatError

__all__ = ["ADDRESS_RESERVED_PREFIX", "Address"]

ADDRESS_RESERVED_PREFIX = 0xFF
_MAX = (1 << 40) - 1
_HEX = frozenset("0123456789abcdefABCDEF")


class Address(int):
    """A 40-bit ZeroTier address (an int subclass, so it is cheap to hash and compare)."""

    __slots__ = ()
    LENGTH = 5

    def __new__(cls, value: int) -> Address:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidFormatError(f"address must be an integer, not {type(value).__name__}")
        if not 0 <= value <= _MAX:
            raise InvalidFormatError(f"address {value:#x} is outside 0..2**40-1")
        return super().__new__(cls, value)

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> Address:  # type: ignore[override]
        """Read 5 big-endian bytes at `offset`."""
        if offset < 0 or len(data) - offset < cls.LENGTH:
            raise InvalidFormatError("address needs 5 bytes")
        return cls(int.from_bytes(bytes(data[offset : offset + cls.LENGTH]), "big"))

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse 10 hex digits (either case)."""
        if not isinstance(text, str):
            raise InvalidFormatError("address text must be a string")
        if len(text) != 10 or not _HEX.issuperset(text):
            raise InvalidFormatError(f"invalid ZeroTier address {text[:40]!r} (want 10 hex digits)")
        return cls(int(text, 16))

    def to_bytes(self) -> bytes:  # type: ignore[override]
        """The 5-byte big-endian wire form."""
        return int.to_bytes(self, 5, "big")

    def is_reserved(self) -> bool:
        """True for 0 and for addresses beginning with the reserved prefix 0xff."""
        return self == 0 or (self >> 32) == ADDRESS_RESERVED_PREFIX

    def __str__(self) -> str:
        return f"{int(self):010x}"

    def __repr__(self) -> str:
        return f"Address('{int(self):010x}')"

    def __format__(self, spec: str) -> str:
        # Plain f"{addr}" gives the 10-digit form; numeric specs still work.
        return str(self) if not spec else int.__format__(int(self), spec)
