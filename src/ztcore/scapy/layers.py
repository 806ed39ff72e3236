"""Scapy layers for ZeroTier's VL1 wire format: the packet header, the fragment
header, the LAN beacon, and the field types the verb payloads share (addresses,
identities, InetAddresses, dictionaries, credentials).

A UDP datagram to or from port 9993 dissects as one of :class:`ZeroTier` (a packet
head), :class:`ZTFragment` or :class:`ZTBeacon` (``ZeroTier.dispatch_hook`` tells
them apart as the real core does: 13 bytes is a beacon, 0xff at byte 13 a
fragment). The payload of a head is dissected by verb only where it is readable:
cipher suite 0 (HELLO, and everything once :mod:`ztcore.scapy.keyring` has
decrypted it, which yields a :class:`ZeroTierDecrypted`). Encrypted payloads stay
:class:`ZTEncrypted`.

Layout facts come from ZeroTier's ``Packet.hpp``; the byte work of decryption is
ztcore's own (``ztcore.vl1.packet``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from scapy.fields import (
    BitEnumField,
    BitField,
    ByteEnumField,
    ByteField,
    ConditionalField,
    FieldLenField,
    IP6Field,
    IPField,
    ShortField,
    StrField,
    StrLenField,
    XBitField,
    XLongField,
)
from scapy.layers.inet import UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw, bind_layers

from ztcore.errors import ZTError
from ztcore.vl1.packet import CipherSuite, ErrorCode, Verb
from ztcore.vl2.dictionary import Dictionary

__all__ = [
    "ZT_PORT",
    "ZTBeacon",
    "ZTEncrypted",
    "ZTFragment",
    "ZTIdentity",
    "ZTInetAddress",
    "ZeroTier",
    "ZeroTierDecrypted",
    "bind_port",
]

ZT_PORT = 9993
VERBS: dict[int, str] = {int(v): v.name for v in Verb}
ERROR_CODES: dict[int, str] = {int(e): e.name.rstrip("_") for e in ErrorCode}
CIPHERS: dict[int, str] = {
    int(CipherSuite.POLY1305_NONE): "POLY1305_NONE",
    int(CipherSuite.POLY1305_SALSA2012): "POLY1305_SALSA2012",
    int(CipherSuite.NONE): "NONE",
    int(CipherSuite.AES_GMAC_SIV): "AES_GMAC_SIV",
}


# --- field types -------------------------------------------------------------------


class ZTAddressField(XBitField):
    """A 40-bit ZeroTier address, shown as its 10 hex digits."""

    def __init__(self, name: str, default: int | None) -> None:
        super().__init__(name, default, 40)

    def i2repr(self, pkt: Any, x: Any) -> str:
        return "None" if x is None else f"{int(x):010x}"

    def any2i(self, pkt: Any, x: Any) -> Any:
        if isinstance(x, str):
            return int(x, 16)
        return None if x is None else int(x)


class NetworkIdField(XLongField):
    """A 64-bit network id, shown as its 16 hex digits (accepts them too)."""

    def i2repr(self, pkt: Any, x: Any) -> str:
        return "None" if x is None else f"{int(x):016x}"

    def any2i(self, pkt: Any, x: Any) -> Any:
        if isinstance(x, str):
            return int(x, 16)
        return super().any2i(pkt, x)


class DictionaryField(StrLenField):
    """A ZeroTier Dictionary (``key=value`` lines with its escapes), shown decoded."""

    def i2repr(self, pkt: Any, x: Any) -> str:
        if not x:
            return "{}"
        try:
            return repr({k: _short(v) for k, v in Dictionary.from_bytes(bytes(x)).to_dict().items()})
        except ZTError:
            return super().i2repr(pkt, x)

    def any2i(self, pkt: Any, x: Any) -> Any:
        if isinstance(x, Dictionary):
            return x.to_bytes()
        if isinstance(x, dict):
            d = Dictionary()
            for k, v in x.items():
                d.add(k, v)
            return d.to_bytes()
        return super().any2i(pkt, x)


def _short(v: bytes) -> str | bytes:
    try:
        s = v.decode()
    except UnicodeDecodeError:
        return v if len(v) <= 32 else v[:32] + b"..."
    return s if len(s) <= 64 else s[:64] + "..."


class CredentialField(StrField):
    """One serialized credential (COM, capability, tag, revocation, COO). Its length
    comes from ztcore's own parser; it is shown parsed."""

    __slots__ = ["kind"]

    def __init__(self, name: str, default: bytes | None, kind: Any) -> None:
        super().__init__(name, default)
        self.kind = kind

    def getfield(self, pkt: Any, s: bytes) -> tuple[bytes, bytes]:
        try:
            _obj, n = self.kind.from_bytes(s, 0)
        except (ZTError, ValueError, IndexError):
            return b"", s  # malformed: keep the rest raw rather than fail the dissection
        return s[n:], s[:n]

    def i2repr(self, pkt: Any, x: Any) -> str:
        if not x:
            return repr(x)
        try:
            obj, _ = self.kind.from_bytes(bytes(x), 0)
        except (ZTError, ValueError, IndexError):
            return f"<malformed {self.kind.__name__} {bytes(x)[:16].hex()}...>"
        return repr(obj)

    def any2i(self, pkt: Any, x: Any) -> Any:
        if hasattr(x, "to_bytes") and not isinstance(x, (bytes, bytearray, int)):
            return x.to_bytes()
        return super().any2i(pkt, x)


def _pad_less(self: Packet, s: bytes) -> tuple[bytes, bytes]:
    """extract_padding for sub-packets: what follows belongs to the enclosing layer."""
    return b"", s


# --- shared sub-structures ----------------------------------------------------------


class ZTIdentity(Packet):
    """A serialized identity: address, type, public key, private key (length-prefixed)."""

    name = "ZeroTier Identity"
    fields_desc = [
        ZTAddressField("address", 0),
        ByteEnumField("type", 0, {0: "C25519", 1: "P384"}),
        StrLenField("public_key", b"\x00" * 64, length_from=lambda p: 64 if p.type == 0 else 114),
        FieldLenField("private_length", None, length_of="private_key", fmt="B"),
        StrLenField("private_key", b"", length_from=lambda p: p.private_length),
    ]
    extract_padding = _pad_less

    @classmethod
    def from_identity(cls, identity: Any, include_private: bool = False) -> ZTIdentity:
        """From a `ztcore.identity.Identity` (public part unless `include_private`)."""
        return cls(identity.to_bytes(include_private=include_private))

    def to_identity(self) -> Any:
        from ztcore.identity import Identity

        return Identity.from_bytes(bytes(self))[0]


class ZTInetAddress(Packet):
    """An InetAddress: type 0 (nil), 4 (IPv4 + port) or 6 (IPv6 + port)."""

    name = "ZeroTier InetAddress"
    fields_desc = [
        ByteEnumField("type", 0, {0: "nil", 4: "IPv4", 6: "IPv6"}),
        ConditionalField(IPField("ip", "0.0.0.0"), lambda p: p.type == 4),
        ConditionalField(IP6Field("ip6", "::"), lambda p: p.type == 6),
        ConditionalField(ShortField("port", 0), lambda p: p.type in (4, 6)),
    ]
    extract_padding = _pad_less

    @classmethod
    def of(cls, ip: str, port: int) -> ZTInetAddress:
        """An InetAddress for ``ip``/``port`` (v4 or v6)."""
        if ipaddress.ip_address(ip).version == 6:
            return cls(type=6, ip6=ip, port=port)
        return cls(type=4, ip=ip, port=port)

    def mysummary(self) -> str:
        if self.type == 4:
            return f"{self.ip}/{self.port}"
        if self.type == 6:
            return f"{self.ip6}/{self.port}"
        return "nil"


# --- the packet head ---------------------------------------------------------------


def _header_fields() -> list[Any]:
    return [
        XLongField("packet_id", 0),
        ZTAddressField("dst", 0),
        ZTAddressField("src", 0),
        # FFCCCHHH: legacy encrypted flag, fragmented flag, cipher suite, hops
        BitField("encrypted", 0, 1),
        BitField("fragmented", 0, 1),
        BitEnumField("cipher", 0, 3, CIPHERS),
        BitField("hops", 0, 3),
        XLongField("mac", 0),
        # verb byte: compressed flag, 2 reserved bits, the verb (encrypted under suites 1 and 3)
        BitField("compressed", 0, 1),
        BitField("reserved", 0, 2),
        BitEnumField("verb", 0, 5, VERBS),
    ]


class ZeroTier(Packet):
    """A ZeroTier packet head as it is on the wire (header, MAC, verb, payload).

    Build one with the verb's layer on top, e.g. ``ZeroTier(dst=..., src=...)/ZTHello(...)``
    (the verb is filled in), then armor it with :func:`ztcore.scapy.armor` or
    ``Keyring.armor`` to get bytes a node accepts.
    """

    name = "ZeroTier"
    match_subclass = True
    fields_desc = _header_fields()

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        if _pkt is not None and cls is ZeroTier:
            if len(_pkt) == BEACON_LENGTH:
                return ZTBeacon
            if len(_pkt) > FRAGMENT_HEADER_LENGTH and _pkt[13] == 0xFF:
                return ZTFragment
            if len(_pkt) < HEADER_LENGTH:
                return Raw  # e.g. the 4-byte low-TTL datagrams that open NAT mappings
        return cls

    def readable(self) -> bool:
        """Whether the payload is cleartext: suite 0, not compressed, and not wrapped in
        1.16's extended armor (flag 0x80 with suite 0)."""
        return self.cipher == CipherSuite.POLY1305_NONE and not self.compressed and not self.encrypted

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        if not payload:
            return Raw
        if not self.readable():
            return ZTEncrypted
        return VERB_LAYERS.get(self.verb, Raw)

    def answers(self, other: Packet) -> int:
        if not isinstance(other, ZeroTier):
            return 0
        p = self.payload
        return int(
            self.src == other.dst and hasattr(p, "in_re_packet_id") and p.in_re_packet_id == other.packet_id
        )

    def hashret(self) -> bytes:
        return b""

    def mysummary(self) -> str:
        verb = VERBS.get(self.verb, f"verb {self.verb}") if self.readable() else "encrypted"
        return f"ZeroTier {self.src:010x} > {self.dst:010x} {verb}"


class ZeroTierDecrypted(ZeroTier):
    """A packet head after dearmoring: the header as received, the verb byte and
    payload decrypted and decompressed (``compressed`` still says how it came)."""

    name = "ZeroTier (decrypted)"

    def readable(self) -> bool:
        return True

    def mysummary(self) -> str:
        verb = VERBS.get(self.verb, f"verb {self.verb}")
        return f"ZeroTier {self.src:010x} > {self.dst:010x} {verb} (decrypted)"


class ZTEncrypted(Packet):
    """The still-encrypted (or compressed) rest of a packet head."""

    name = "ZeroTier encrypted payload"
    fields_desc = [StrField("data", b"")]


# --- fragments and beacons ----------------------------------------------------------

FRAGMENT_HEADER_LENGTH = 16
HEADER_LENGTH = 28
BEACON_LENGTH = 13


class ZTFragment(ZeroTier):
    """A fragment (not the head) of a packet longer than the path MTU."""

    name = "ZeroTier Fragment"
    fields_desc = [
        XLongField("packet_id", 0),
        ZTAddressField("dst", 0),
        ByteField("indicator", 0xFF),
        BitField("total", 2, 4),
        BitField("number", 1, 4),
        ByteField("hops", 0),
        StrField("data", b""),
    ]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return Raw

    def mysummary(self) -> str:
        return f"ZeroTier fragment {self.number}/{self.total} to {self.dst:010x}"


class ZTBeacon(ZeroTier):
    """The LAN discovery beacon: 8 bytes (ignored) and the sender's address."""

    name = "ZeroTier Beacon"
    fields_desc = [XLongField("random", 0), ZTAddressField("address", 0)]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return Raw

    def mysummary(self) -> str:
        return f"ZeroTier beacon from {self.address:010x}"


# Filled by ztcore.scapy.verbs: verb number -> payload layer.
VERB_LAYERS: dict[int, type[Packet]] = {}


def ether_payload_class(ethertype: int) -> type[Packet]:
    """The layer Scapy's Ether would use for this ethertype (IP, IPv6, ARP, ...)."""
    for fields, cls in Ether.payload_guess:
        if fields.get("type") == ethertype:
            return cls
    return Raw


def bind_port(port: int) -> None:
    """Dissect UDP to or from `port` as ZeroTier too (9993 is bound already)."""
    bind_layers(UDP, ZeroTier, dport=port)
    bind_layers(UDP, ZeroTier, sport=port)


bind_port(ZT_PORT)
