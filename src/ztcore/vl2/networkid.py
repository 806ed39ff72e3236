"""Network ids and the addresses derived from them.

A network id is 64 bits: the controller's 40-bit ZeroTier address in the top
40 bits and a 24-bit network number chosen by the controller below it. As text
it is 16 lowercase hex digits.

Managed IPv6 addresses computed from (network id, node address):

* RFC4193 (``/88``): ``fd`` + the 8 network id bytes (big-endian) + ``99 93``
  + the 5 node address bytes.
* 6PLANE (``/40``): the network id folded to 32 bits (``nwid ^ (nwid >> 32)``,
  low 32 bits), giving ``fc`` + those 4 bytes (big-endian) + the 5 node address
  bytes + five zero bytes + ``01``. Each member owns the /80 around it.
* IPv6 link-local from a MAC (``/64``): ``fe80::`` + EUI-64 with the
  universal/local bit masked off as the core does (``mac[0] & 0xfd``).

In InetAddress form the prefix length sits in the port field, as the core does
for managed addresses.
"""

from __future__ import annotations

import ipaddress

from ztcore.errors import InvalidFormatError
from ztcore.identity.address import Address
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.mac import MAC

__all__ = [
    "RFC4193_PREFIX_BITS",
    "SIXPLANE_PREFIX_BITS",
    "controller_for",
    "format_network_id",
    "ipv6_link_local",
    "make_network_id",
    "network_number",
    "parse_network_id",
    "rfc4193_address",
    "rfc4193_ip",
    "sixplane_address",
    "sixplane_ip",
]

RFC4193_PREFIX_BITS = 88
SIXPLANE_PREFIX_BITS = 40
_U64 = (1 << 64) - 1
_HEX = frozenset("0123456789abcdefABCDEF")


def _check_nwid(nwid: int) -> int:
    if isinstance(nwid, bool) or not isinstance(nwid, int) or not 0 <= nwid <= _U64:
        raise InvalidFormatError(f"network id must be a 64-bit unsigned integer, got {nwid!r}")
    return nwid


def _check_address(address: int) -> int:
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address < (1 << 40):
        raise InvalidFormatError(f"ZeroTier address must be 40 bits, got {address!r}")
    return address


def controller_for(nwid: int) -> Address:
    """The address of the controller that issues configs for ``nwid`` (top 40 bits)."""
    return Address(_check_nwid(nwid) >> 24)


def network_number(nwid: int) -> int:
    """The controller-local 24-bit part of ``nwid``."""
    return _check_nwid(nwid) & 0xFFFFFF


def make_network_id(controller: int, number: int) -> int:
    """Compose a network id from a controller address and a 24-bit network number."""
    if not 0 <= number <= 0xFFFFFF:
        raise InvalidFormatError("network number must be 24 bits")
    return (_check_address(controller) << 24) | number


def format_network_id(nwid: int) -> str:
    """16 lowercase hex digits."""
    return f"{_check_nwid(nwid):016x}"


def parse_network_id(text: str) -> int:
    """Parse exactly 16 hex digits (either case)."""
    if not isinstance(text, str):
        raise InvalidFormatError("network id text must be a string")
    s = text.strip()
    if len(s) != 16 or not _HEX.issuperset(s):
        raise InvalidFormatError(f"invalid network id {text[:40]!r} (want 16 hex digits)")
    return int(s, 16)


def rfc4193_ip(nwid: int, address: int) -> ipaddress.IPv6Address:
    """The member's RFC4193 address (without prefix length)."""
    raw = (
        b"\xfd"
        + _check_nwid(nwid).to_bytes(8, "big")
        + b"\x99\x93"
        + _check_address(address).to_bytes(5, "big")
    )
    return ipaddress.IPv6Address(raw)


def rfc4193_address(nwid: int, address: int) -> InetAddress:
    """RFC4193 address with its /88 prefix length in the port field."""
    return InetAddress(rfc4193_ip(nwid, address), RFC4193_PREFIX_BITS)


def sixplane_ip(nwid: int, address: int) -> ipaddress.IPv6Address:
    """The member's 6PLANE address (without prefix length)."""
    folded = (_check_nwid(nwid) ^ (nwid >> 32)) & 0xFFFFFFFF
    raw = (
        b"\xfc"
        + folded.to_bytes(4, "big")
        + _check_address(address).to_bytes(5, "big")
        + b"\x00" * 5
        + b"\x01"
    )
    return ipaddress.IPv6Address(raw)


def sixplane_address(nwid: int, address: int) -> InetAddress:
    """6PLANE address with its /40 prefix length in the port field."""
    return InetAddress(sixplane_ip(nwid, address), SIXPLANE_PREFIX_BITS)


def ipv6_link_local(mac: int) -> InetAddress:
    """IPv6 link-local address derived from ``mac`` (prefix /64 in the port field)."""
    m = MAC(mac).to_bytes()
    raw = b"\xfe\x80" + b"\x00" * 6 + bytes((m[0] & 0xFD, m[1], m[2], 0xFF, 0xFE, m[3], m[4], m[5]))
    return InetAddress(ipaddress.IPv6Address(raw), 64)
