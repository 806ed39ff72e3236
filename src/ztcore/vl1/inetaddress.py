"""ZeroTier's physical (IP/UDP) address: binary wire form, text form and IP scope classification.

Owns the serialized address layout that HELLO, OK(HELLO), PUSH_DIRECT_PATHS,
RENDEZVOUS-style payloads and world definitions carry:

    0x00                         no address ("nil")
    0x04 <4-byte IP> <u16 port>  IPv4, network byte order
    0x06 <16-byte IP> <u16 port> IPv6, network byte order
    0x01 / 0x02 + 6 bytes        Ethernet / Bluetooth, reserved: skipped (7 bytes total)
    0x03 <u16 len> <len bytes>   other reserved kinds: skipped (len + 3 bytes total)

and the scope classification (`IpScope`) the core uses to rank and filter paths.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, field

from ztcore.errors import InvalidFormatError

__all__ = ["InetAddress", "IpScope", "IPAddress"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Serialized address type bytes.
_TYPE_NIL = 0x00
_TYPE_ETHERNET = 0x01
_TYPE_BLUETOOTH = 0x02
_TYPE_OTHER = 0x03
_TYPE_IPV4 = 0x04
_TYPE_IPV6 = 0x06


class IpScope(enum.IntEnum):
    """IP address scope; values ascend in order of path preference, as in the core."""

    NONE = 0
    MULTICAST = 1
    LOOPBACK = 2
    PSEUDOPRIVATE = 3
    GLOBAL = 4
    LINK_LOCAL = 5
    SHARED = 6  # defined by the core but no longer assigned to any range
    PRIVATE = 7


# IPv4 /8 blocks whose scope follows from the first octet alone.
_V4_FIRST_OCTET_SCOPE: dict[int, IpScope] = {
    0x00: IpScope.NONE,
    0x0A: IpScope.PRIVATE,
    0x7F: IpScope.LOOPBACK,
    0xFF: IpScope.NONE,
    # Blocks assigned to organisations that never route them publicly, so people
    # squat on them as if private; the core ranks them below global addresses.
    **{o: IpScope.PSEUDOPRIVATE for o in (6, 11, 21, 22, 25, 26, 28, 29, 30, 51, 55, 56)},
}

# (mask, network, scope) for IPv4 ranges narrower than a /8, checked in order.
_V4_MASKED_SCOPE: tuple[tuple[int, int, IpScope], ...] = (
    (0xFFC00000, 0x64400000, IpScope.PRIVATE),  # 100.64.0.0/10 (carrier-grade NAT)
    (0xFFFF0000, 0xA9FE0000, IpScope.LINK_LOCAL),  # 169.254.0.0/16
    (0xFFF00000, 0xAC100000, IpScope.PRIVATE),  # 172.16.0.0/12
    (0xFFFF0000, 0xC0A80000, IpScope.PRIVATE),  # 192.168.0.0/16
    (0xFFFFFF00, 0xC0000200, IpScope.PRIVATE),  # 192.0.2.0/24 (TEST-NET-1)
    (0xFFFE0000, 0xC6120000, IpScope.PRIVATE),  # 198.18.0.0/15 (benchmarking)
    (0xFFFFFF00, 0xC6336400, IpScope.PRIVATE),  # 198.51.100.0/24 (TEST-NET-2)
    (0xFFFFFF00, 0xCB007100, IpScope.PRIVATE),  # 203.0.113.0/24 (TEST-NET-3)
)


def _v4_scope(ip: int) -> IpScope:
    scope = _V4_FIRST_OCTET_SCOPE.get(ip >> 24)
    if scope is not None:
        return scope
    for mask, net, masked_scope in _V4_MASKED_SCOPE:
        if ip & mask == net:
            return masked_scope
    top = ip >> 28
    if top == 0xE:
        return IpScope.MULTICAST  # 224.0.0.0/4
    if top == 0xF:
        return IpScope.PSEUDOPRIVATE  # 240.0.0.0/4, reserved and mostly unusable
    return IpScope.GLOBAL


def _v6_scope(ip: bytes) -> IpScope:
    if ip[0] == 0xFF:
        return IpScope.MULTICAST  # ff00::/8
    if ip[0] == 0xFE and ip[1] & 0xC0 == 0x80:
        # fe80::/10; the core singles out fe80::1 and counts it as loopback
        if not any(ip[2:15]) and ip[15] == 0x01:
            return IpScope.LOOPBACK
        return IpScope.LINK_LOCAL
    if ip[0] & 0xFE == 0xFC:
        return IpScope.PRIVATE  # fc00::/7 (unique local)
    # IPv4-mapped loopback ::ffff:127.x.x.x; like the core, byte 9 is not examined.
    if not any(ip[0:9]) and ip[10] == 0xFF and ip[11] == 0xFF and ip[12] == 0x7F:
        return IpScope.LOOPBACK
    if not any(ip[0:15]):
        if ip[15] == 0x01:
            return IpScope.LOOPBACK  # ::1
        if ip[15] == 0x00:
            return IpScope.NONE  # ::
    return IpScope.GLOBAL


@dataclass(frozen=True, slots=True)
class InetAddress:
    """An IP address with a UDP port (the port may be 0: "no port")."""

    ip: IPAddress
    port: int
    # Addresses key the path tables and the runtime's address caches, looked up for every
    # packet: the hash is worked out once (ipaddress hashes in Python, through hex()).
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        return self._hash

    def __post_init__(self) -> None:
        if not isinstance(self.ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            raise TypeError(f"ip must be an IPv4Address or IPv6Address, not {type(self.ip).__name__}")
        if self.ip.version == 6 and self.ip.scope_id is not None:
            # ZeroTier's forms carry no zone; keeping one would break equality with parsed wire data.
            object.__setattr__(self, "ip", ipaddress.IPv6Address(self.ip.packed))
        if not isinstance(self.port, int) or not 0 <= self.port <= 0xFFFF:
            raise InvalidFormatError(f"port out of range: {self.port!r}")
        object.__setattr__(self, "_hash", hash((self.ip, self.port)))

    # ----------------------------------------------------------------- text forms

    @classmethod
    def from_tuple(cls, addr: tuple) -> InetAddress:
        """From a socket/asyncio address tuple: (host, port) or (host, port, flowinfo, scope_id)."""
        try:
            ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
            port = int(addr[1])
        except (IndexError, KeyError, TypeError, ValueError) as e:
            raise InvalidFormatError(f"not an IP address tuple: {addr!r}") from e
        return cls(ip, port)

    def to_tuple(self) -> tuple[str, int]:
        """(host, port), usable with socket.sendto / asyncio transports."""
        return (str(self.ip), self.port)

    @classmethod
    def parse(cls, text: str) -> InetAddress:
        """Parse "IP/port" (ZeroTier's form), "IP" (port 0), "a.b.c.d:port" or "[v6]:port"."""
        s = text.strip()
        host, port_text = s, ""
        if s.startswith("["):
            end = s.find("]")
            if end < 0:
                raise InvalidFormatError(f"unbalanced brackets in address: {text!r}")
            host, rest = s[1:end], s[end + 1 :]
            if rest:
                if rest[0] not in ":/":
                    raise InvalidFormatError(f"junk after bracketed address: {text!r}")
                port_text = rest[1:]
        elif "/" in s:
            host, port_text = s.split("/", 1)
        elif s.count(":") == 1:
            host, port_text = s.split(":", 1)  # host:port is only unambiguous for IPv4
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError as e:
            raise InvalidFormatError(f"not an IP address: {text!r}") from e
        port = 0
        if port_text or s.endswith(("/", ":")):
            if not port_text.isdigit() or not port_text.isascii():
                raise InvalidFormatError(f"bad port in address: {text!r}")
            port = int(port_text)
        return cls(ip, port)

    def __str__(self) -> str:
        ip = self.ip
        if ip.version == 6 and ip.ipv4_mapped is not None:
            # inet_ntop (which the core uses) prints mapped addresses in dotted form
            return f"::ffff:{ip.ipv4_mapped}/{self.port}"
        return f"{ip}/{self.port}"

    # ---------------------------------------------------------------- binary form

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> tuple[InetAddress | None, int]:
        """Read one serialized address at `offset`; returns (address or None, bytes consumed).

        Nil and the reserved non-IP kinds yield None (they are skipped, as the core does);
        an unknown type byte or truncated data raises InvalidFormatError.
        """
        end = len(data)
        if offset < 0 or offset >= end:
            raise InvalidFormatError("truncated address: no type byte")
        kind = data[offset]
        if kind == _TYPE_NIL:
            return None, 1
        if kind in (_TYPE_ETHERNET, _TYPE_BLUETOOTH):
            if offset + 7 > end:
                raise InvalidFormatError("truncated address")
            return None, 7
        if kind == _TYPE_OTHER:
            if offset + 3 > end:
                raise InvalidFormatError("truncated address length")
            total = int.from_bytes(data[offset + 1 : offset + 3], "big") + 3
            if offset + total > end:
                raise InvalidFormatError("truncated address")
            return None, total
        if kind == _TYPE_IPV4:
            if offset + 7 > end:
                raise InvalidFormatError("truncated IPv4 address")
            ip4 = ipaddress.IPv4Address(bytes(data[offset + 1 : offset + 5]))
            return cls(ip4, int.from_bytes(data[offset + 5 : offset + 7], "big")), 7
        if kind == _TYPE_IPV6:
            if offset + 19 > end:
                raise InvalidFormatError("truncated IPv6 address")
            ip6 = ipaddress.IPv6Address(bytes(data[offset + 1 : offset + 17]))
            return cls(ip6, int.from_bytes(data[offset + 17 : offset + 19], "big")), 19
        raise InvalidFormatError(f"unknown address type 0x{kind:02x}")

    def to_bytes(self) -> bytes:
        kind = _TYPE_IPV4 if self.ip.version == 4 else _TYPE_IPV6
        return bytes((kind,)) + self.ip.packed + struct.pack(">H", self.port)

    @staticmethod
    def nil_bytes() -> bytes:
        """The serialized "no address"."""
        return b"\x00"

    # ------------------------------------------------------------------ queries

    @property
    def scope(self) -> IpScope:
        """Scope classification, following the core's rules (not Python's ipaddress flags)."""
        if self.ip.version == 4:
            return _v4_scope(int(self.ip))
        return _v6_scope(self.ip.packed)

    @property
    def is_v4(self) -> bool:
        return self.ip.version == 4

    @property
    def is_v6(self) -> bool:
        return self.ip.version == 6

    def ip_key(self) -> bytes:
        """The raw IP bytes (4 or 16), for keying by IP regardless of port."""
        return self.ip.packed

    def ips_equal(self, other: InetAddress) -> bool:
        """True if both have the same IP (ports ignored)."""
        return self.ip == other.ip

    def with_port(self, port: int) -> InetAddress:
        return InetAddress(self.ip, port)
