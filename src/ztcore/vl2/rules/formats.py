"""Rule formats: the ZT_VirtualNetworkRule model and its binary form (as carried
in network configs and capabilities).

Binary form of one rule (big-endian)::

    u8  type byte: bit 7 = NOT, bit 6 = OR, bits 0-5 = rule type
    u8  length of the value field that follows
    ... value field, layout by type:
        ACTION_TEE/WATCH/REDIRECT  14: u64 address, u32 flags, u16 length
        MATCH_SOURCE/DEST_ZEROTIER_ADDRESS 5: 5-byte address
        MATCH_VLAN_ID               2: u16
        MATCH_VLAN_PCP / VLAN_DEI   1: u8
        MATCH_MAC_SOURCE/DEST       6: MAC
        MATCH_IPV4_SOURCE/DEST      5: 4-byte IP, u8 mask bits
        MATCH_IPV6_SOURCE/DEST     17: 16-byte IP, u8 mask bits
        MATCH_IP_TOS                3: u8 mask, u8 start, u8 end
        MATCH_IP_PROTOCOL           1: u8
        MATCH_ETHERTYPE             2: u16
        MATCH_ICMP                  3: u8 type, u8 code, u8 flags (0x01: match code)
        MATCH_IP_*_PORT_RANGE       4: u16 start, u16 end
        MATCH_CHARACTERISTICS       8: u64
        MATCH_FRAME_SIZE_RANGE      4: u16 start, u16 end
        MATCH_RANDOM                4: u32 probability (0 never .. 2**32-1 always)
        MATCH_TAGS_* / TAG_*        8: u32 tag id, u32 value
        MATCH_INTEGER_RANGE        19: u64 start, u64 start+end, u16 idx, u8 format
        anything else               0 (ACTION_PRIORITY's bucket is not transmitted)

Readers skip ``length`` bytes after a rule, so unknown types are passed over.

The controller's JSON form lives in `ztcore.vl2.rules.jsonform`.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

from ztcore.errors import InvalidFormatError
from ztcore.vl2.mac import MAC

__all__ = [
    "CHARACTERISTICS_BROADCAST",
    "CHARACTERISTICS_INBOUND",
    "CHARACTERISTICS_MULTICAST",
    "CHARACTERISTICS_SENDER_IP_AUTHENTICATED",
    "CHARACTERISTICS_SENDER_MAC_AUTHENTICATED",
    "CHARACTERISTICS_TCP_ACK",
    "CHARACTERISTICS_TCP_CWR",
    "CHARACTERISTICS_TCP_ECE",
    "CHARACTERISTICS_TCP_FIN",
    "CHARACTERISTICS_TCP_NS",
    "CHARACTERISTICS_TCP_PSH",
    "CHARACTERISTICS_TCP_RST",
    "CHARACTERISTICS_TCP_SYN",
    "CHARACTERISTICS_TCP_URG",
    "RULE_FLAG_NOT",
    "RULE_FLAG_OR",
    "Rule",
    "RuleType",
    "deserialize_rules",
    "serialize_rules",
]

RULE_FLAG_NOT = 0x80
RULE_FLAG_OR = 0x40
_TYPE_MASK = 0x3F

# Packet characteristic bits for MATCH_CHARACTERISTICS.
CHARACTERISTICS_INBOUND = 0x8000000000000000
CHARACTERISTICS_MULTICAST = 0x4000000000000000
CHARACTERISTICS_BROADCAST = 0x2000000000000000
CHARACTERISTICS_SENDER_IP_AUTHENTICATED = 0x1000000000000000
CHARACTERISTICS_SENDER_MAC_AUTHENTICATED = 0x0800000000000000
CHARACTERISTICS_TCP_NS = 0x0100
CHARACTERISTICS_TCP_CWR = 0x0080
CHARACTERISTICS_TCP_ECE = 0x0040
CHARACTERISTICS_TCP_URG = 0x0020
CHARACTERISTICS_TCP_ACK = 0x0010
CHARACTERISTICS_TCP_PSH = 0x0008
CHARACTERISTICS_TCP_RST = 0x0004
CHARACTERISTICS_TCP_SYN = 0x0002
CHARACTERISTICS_TCP_FIN = 0x0001

_U64 = (1 << 64) - 1


class RuleType(enum.IntEnum):
    """Rule type codes (the low 6 bits of the type byte). 0-15 are actions."""

    ACTION_DROP = 0
    ACTION_ACCEPT = 1
    ACTION_TEE = 2
    ACTION_WATCH = 3
    ACTION_REDIRECT = 4
    ACTION_BREAK = 5
    ACTION_PRIORITY = 6
    MATCH_SOURCE_ZEROTIER_ADDRESS = 24
    MATCH_DEST_ZEROTIER_ADDRESS = 25
    MATCH_VLAN_ID = 26
    MATCH_VLAN_PCP = 27
    MATCH_VLAN_DEI = 28
    MATCH_MAC_SOURCE = 29
    MATCH_MAC_DEST = 30
    MATCH_IPV4_SOURCE = 31
    MATCH_IPV4_DEST = 32
    MATCH_IPV6_SOURCE = 33
    MATCH_IPV6_DEST = 34
    MATCH_IP_TOS = 35
    MATCH_IP_PROTOCOL = 36
    MATCH_ETHERTYPE = 37
    MATCH_ICMP = 38
    MATCH_IP_SOURCE_PORT_RANGE = 39
    MATCH_IP_DEST_PORT_RANGE = 40
    MATCH_CHARACTERISTICS = 41
    MATCH_FRAME_SIZE_RANGE = 42
    MATCH_RANDOM = 43
    MATCH_TAGS_DIFFERENCE = 44
    MATCH_TAGS_BITWISE_AND = 45
    MATCH_TAGS_BITWISE_OR = 46
    MATCH_TAGS_BITWISE_XOR = 47
    MATCH_TAGS_EQUAL = 48
    MATCH_TAG_SENDER = 49
    MATCH_TAG_RECEIVER = 50
    MATCH_INTEGER_RANGE = 51


ACTION_MAX_ID = 15

_FWD_TYPES = frozenset((RuleType.ACTION_TEE, RuleType.ACTION_WATCH, RuleType.ACTION_REDIRECT))
_ZT_TYPES = frozenset((RuleType.MATCH_SOURCE_ZEROTIER_ADDRESS, RuleType.MATCH_DEST_ZEROTIER_ADDRESS))
_MAC_TYPES = frozenset((RuleType.MATCH_MAC_SOURCE, RuleType.MATCH_MAC_DEST))
_IPV4_TYPES = frozenset((RuleType.MATCH_IPV4_SOURCE, RuleType.MATCH_IPV4_DEST))
_IPV6_TYPES = frozenset((RuleType.MATCH_IPV6_SOURCE, RuleType.MATCH_IPV6_DEST))
_PORT_TYPES = frozenset((RuleType.MATCH_IP_SOURCE_PORT_RANGE, RuleType.MATCH_IP_DEST_PORT_RANGE))
_TAG_TYPES = frozenset(
    (
        RuleType.MATCH_TAGS_DIFFERENCE,
        RuleType.MATCH_TAGS_BITWISE_AND,
        RuleType.MATCH_TAGS_BITWISE_OR,
        RuleType.MATCH_TAGS_BITWISE_XOR,
        RuleType.MATCH_TAGS_EQUAL,
        RuleType.MATCH_TAG_SENDER,
        RuleType.MATCH_TAG_RECEIVER,
    )
)

# Width in bits of each integer value field, checked on construction.
_FIELD_BITS: dict[str, int] = {
    "fwd_address": 64,
    "fwd_flags": 32,
    "fwd_length": 16,
    "zt": 40,
    "vlan_id": 16,
    "vlan_pcp": 8,
    "vlan_dei": 8,
    "mask": 8,
    "tos_mask": 8,
    "tos_start": 8,
    "tos_end": 8,
    "ip_protocol": 8,
    "ether_type": 16,
    "icmp_type": 8,
    "icmp_code": 8,
    "icmp_flags": 8,
    "start": 16,
    "end": 16,
    "characteristics": 64,
    "probability": 32,
    "tag_id": 32,
    "tag_value": 32,
    "int_start": 64,
    "int_end": 32,
    "int_idx": 16,
    "int_format": 8,
    "qos_bucket": 8,
}


def _zero_ip(rule_type: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if rule_type in _IPV4_TYPES:
        return ipaddress.IPv4Address(0)
    if rule_type in _IPV6_TYPES:
        return ipaddress.IPv6Address(0)
    return None


@dataclass(frozen=True, slots=True)
class Rule:
    """One rules-table entry. Only the value fields of its type are meaningful;
    the others stay at their defaults so equal rules compare equal."""

    type: int
    not_: bool = False
    or_: bool = False
    # ACTION_TEE / ACTION_WATCH / ACTION_REDIRECT
    fwd_address: int = 0
    fwd_flags: int = 0
    fwd_length: int = 0
    # MATCH_SOURCE/DEST_ZEROTIER_ADDRESS
    zt: int = 0
    # MATCH_VLAN_*
    vlan_id: int = 0
    vlan_pcp: int = 0
    vlan_dei: int = 0
    # MATCH_MAC_SOURCE/DEST
    mac: MAC | None = None
    # MATCH_IPV4_* / MATCH_IPV6_*: address and netmask bits
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    mask: int = 0
    # MATCH_IP_TOS
    tos_mask: int = 0
    tos_start: int = 0
    tos_end: int = 0
    # MATCH_IP_PROTOCOL / MATCH_ETHERTYPE
    ip_protocol: int = 0
    ether_type: int = 0
    # MATCH_ICMP (icmp_flags bit 0: also match icmp_code)
    icmp_type: int = 0
    icmp_code: int = 0
    icmp_flags: int = 0
    # MATCH_IP_*_PORT_RANGE and MATCH_FRAME_SIZE_RANGE (inclusive)
    start: int = 0
    end: int = 0
    # MATCH_CHARACTERISTICS
    characteristics: int = 0
    # MATCH_RANDOM
    probability: int = 0
    # MATCH_TAGS_* / MATCH_TAG_*
    tag_id: int = 0
    tag_value: int = 0
    # MATCH_INTEGER_RANGE: int_end is relative to int_start, as in the core
    int_start: int = 0
    int_end: int = 0
    int_idx: int = 0
    int_format: int = 0
    # ACTION_PRIORITY (local only: not part of the binary form)
    qos_bucket: int = 0

    def __post_init__(self) -> None:
        t = self.type
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= _TYPE_MASK:
            raise InvalidFormatError(f"rule type must be 0..63, got {t!r}")
        try:
            object.__setattr__(self, "type", RuleType(t))
        except ValueError:
            pass  # unknown types are kept (and serialized with an empty value)
        object.__setattr__(self, "not_", bool(self.not_))
        object.__setattr__(self, "or_", bool(self.or_))
        for name, bits in _FIELD_BITS.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < (1 << bits):
                raise InvalidFormatError(
                    f"rule field {name} must be a {bits}-bit unsigned integer, got {v!r}"
                )
        if t in _MAC_TYPES:
            object.__setattr__(self, "mac", MAC(0) if self.mac is None else MAC(self.mac))
        elif self.mac is not None:
            object.__setattr__(self, "mac", MAC(self.mac))
        if t in _IPV4_TYPES or t in _IPV6_TYPES:
            want = ipaddress.IPv4Address if t in _IPV4_TYPES else ipaddress.IPv6Address
            ip = self.ip
            if ip is None:
                ip = _zero_ip(t)
            elif isinstance(ip, (str, int, bytes)):
                try:
                    ip = want(ip)
                except ValueError as e:
                    raise InvalidFormatError(f"bad IP for {RuleType(t).name}: {self.ip!r}") from e
            if not isinstance(ip, want):
                raise InvalidFormatError(
                    f"{RuleType(t).name} needs an IPv{4 if want is ipaddress.IPv4Address else 6} address"
                )
            object.__setattr__(self, "ip", ip)

    # ---------------------------------------------------------------- basics

    @property
    def type_byte(self) -> int:
        """The type byte as transmitted (type | NOT | OR)."""
        return int(self.type) | (RULE_FLAG_NOT if self.not_ else 0) | (RULE_FLAG_OR if self.or_ else 0)

    @property
    def is_action(self) -> bool:
        return int(self.type) <= ACTION_MAX_ID

    @property
    def is_known(self) -> bool:
        return isinstance(self.type, RuleType)

    @property
    def icmp_code_matched(self) -> int | None:
        """The ICMP code a MATCH_ICMP rule requires, or None if any code matches."""
        return self.icmp_code if self.icmp_flags & 0x01 else None

    def __repr__(self) -> str:
        name = self.type.name if isinstance(self.type, RuleType) else str(int(self.type))
        parts = [name]
        if self.not_:
            parts.append("not_=True")
        if self.or_:
            parts.append("or_=True")
        for f in fields(self)[3:]:
            v = getattr(self, f.name)
            if v != f.default:
                parts.append(f"{f.name}={v!r}" if not isinstance(v, (MAC,)) else f"{f.name}='{v}'")
        return f"Rule({', '.join(parts)})"

    # ------------------------------------------------------------ constructors

    @classmethod
    def action_drop(cls) -> Rule:
        return cls(RuleType.ACTION_DROP)

    @classmethod
    def action_accept(cls) -> Rule:
        return cls(RuleType.ACTION_ACCEPT)

    @classmethod
    def action_break(cls) -> Rule:
        return cls(RuleType.ACTION_BREAK)

    @classmethod
    def action_tee(cls, address: int, flags: int = 0, length: int = 0) -> Rule:
        """Send a copy of (the first ``length`` bytes of) matching frames to ``address``."""
        return cls(RuleType.ACTION_TEE, fwd_address=int(address), fwd_flags=flags, fwd_length=length)

    @classmethod
    def action_watch(cls, address: int, flags: int = 0, length: int = 0) -> Rule:
        return cls(RuleType.ACTION_WATCH, fwd_address=int(address), fwd_flags=flags, fwd_length=length)

    @classmethod
    def action_redirect(cls, address: int, flags: int = 0) -> Rule:
        return cls(RuleType.ACTION_REDIRECT, fwd_address=int(address), fwd_flags=flags)

    @classmethod
    def action_priority(cls, qos_bucket: int) -> Rule:
        return cls(RuleType.ACTION_PRIORITY, qos_bucket=qos_bucket)

    @classmethod
    def match_source_zerotier_address(cls, address: int, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(RuleType.MATCH_SOURCE_ZEROTIER_ADDRESS, not_, or_, zt=int(address))

    @classmethod
    def match_dest_zerotier_address(cls, address: int, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(RuleType.MATCH_DEST_ZEROTIER_ADDRESS, not_, or_, zt=int(address))

    @classmethod
    def match_vlan_id(cls, vlan_id: int, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(RuleType.MATCH_VLAN_ID, not_, or_, vlan_id=vlan_id)

    @classmethod
    def match_vlan_pcp(cls, pcp: int, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(RuleType.MATCH_VLAN_PCP, not_, or_, vlan_pcp=pcp)

    @classmethod
    def match_vlan_dei(cls, dei: int, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(RuleType.MATCH_VLAN_DEI, not_, or_, vlan_dei=dei)

    @classmethod
    def match_mac_source(cls, mac: int | str, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(
            RuleType.MATCH_MAC_SOURCE, not_, or_, mac=MAC.parse(mac) if isinstance(mac, str) else MAC(mac)
        )

    @classmethod
    def match_mac_dest(cls, mac: int | str, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(
            RuleType.MATCH_MAC_DEST, not_, or_, mac=MAC.parse(mac) if isinstance(mac, str) else MAC(mac)
        )

    @classmethod
    def _ip_rule(cls, rule_type: RuleType, ip: Any, mask: int | None, not_: bool, or_: bool) -> Rule:
        v6 = rule_type in _IPV6_TYPES
        if isinstance(ip, str):
            try:
                net = ipaddress.ip_network(ip, strict=False)
                addr = ipaddress.ip_address(ip.split("/", 1)[0])
            except ValueError as e:
                raise InvalidFormatError(f"bad IP/mask {ip!r}") from e
            if mask is None:
                mask = net.prefixlen
        else:
            addr = ipaddress.ip_address(ip)
        if mask is None:
            mask = 128 if v6 else 32
        if (addr.version == 6) != v6:
            raise InvalidFormatError(f"{rule_type.name} needs an IPv{6 if v6 else 4} address")
        return cls(rule_type, not_, or_, ip=addr, mask=mask)

    @classmethod
    def match_ipv4_source(
        cls, ip: Any, mask: int | None = None, *, not_: bool = False, or_: bool = False
    ) -> Rule:
        """``ip`` may be "10.0.0.0/8" (mask taken from it) or an address plus ``mask``."""
        return cls._ip_rule(RuleType.MATCH_IPV4_SOURCE, ip, mask, not_, or_)

    @classmethod
    def match_ipv4_dest(
        cls, ip: Any, mask: int | None = None, *, not_: bool = False, or_: bool = False
    ) -> Rule:
        return cls._ip_rule(RuleType.MATCH_IPV4_DEST, ip, mask, not_, or_)

    @classmethod
    def match_ipv6_source(
        cls, ip: Any, mask: int | None = None, *, not_: bool = False, or_: bool = False
    ) -> Rule:
        return cls._ip_rule(RuleType.MATCH_IPV6_SOURCE, ip, mask, not_, or_)

    @classmethod
    def match_ipv6_dest(
        cls, ip: Any, mask: int | None = None, *, not_: bool = False, or_: bool = False
    ) -> Rule:
        return cls._ip_rule(RuleType.MATCH_IPV6_DEST, ip, mask, not_, or_)

    @classmethod
    def match_ip_tos(cls, mask: int, start: int, end: int, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(RuleType.MATCH_IP_TOS, not_, or_, tos_mask=mask, tos_start=start, tos_end=end)

    @classmethod
    def match_ip_protocol(cls, protocol: int, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(RuleType.MATCH_IP_PROTOCOL, not_, or_, ip_protocol=protocol)

    @classmethod
    def match_ethertype(cls, ether_type: int, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(RuleType.MATCH_ETHERTYPE, not_, or_, ether_type=ether_type)

    @classmethod
    def match_icmp(
        cls, icmp_type: int, code: int | None = None, *, not_: bool = False, or_: bool = False
    ) -> Rule:
        """Match ICMP type, and also ``code`` unless it is None."""
        return cls(
            RuleType.MATCH_ICMP,
            not_,
            or_,
            icmp_type=icmp_type,
            icmp_code=0 if code is None else code,
            icmp_flags=0 if code is None else 0x01,
        )

    @classmethod
    def match_ip_source_port_range(
        cls, start: int, end: int | None = None, *, not_: bool = False, or_: bool = False
    ) -> Rule:
        return cls(
            RuleType.MATCH_IP_SOURCE_PORT_RANGE, not_, or_, start=start, end=start if end is None else end
        )

    @classmethod
    def match_ip_dest_port_range(
        cls, start: int, end: int | None = None, *, not_: bool = False, or_: bool = False
    ) -> Rule:
        return cls(
            RuleType.MATCH_IP_DEST_PORT_RANGE, not_, or_, start=start, end=start if end is None else end
        )

    @classmethod
    def match_characteristics(cls, mask: int, *, not_: bool = False, or_: bool = False) -> Rule:
        return cls(RuleType.MATCH_CHARACTERISTICS, not_, or_, characteristics=mask)

    @classmethod
    def match_frame_size_range(
        cls, start: int, end: int | None = None, *, not_: bool = False, or_: bool = False
    ) -> Rule:
        return cls(RuleType.MATCH_FRAME_SIZE_RANGE, not_, or_, start=start, end=start if end is None else end)

    @classmethod
    def match_random(cls, probability: int, *, not_: bool = False, or_: bool = False) -> Rule:
        """``probability`` is out of 2**32-1 (0: never, 0xffffffff: always)."""
        return cls(RuleType.MATCH_RANDOM, not_, or_, probability=probability)

    @classmethod
    def match_tag(
        cls, rule_type: RuleType, tag_id: int, value: int, *, not_: bool = False, or_: bool = False
    ) -> Rule:
        """Any of the MATCH_TAGS_* / MATCH_TAG_* rules."""
        if rule_type not in _TAG_TYPES:
            raise InvalidFormatError(f"{rule_type!r} is not a tag rule type")
        return cls(rule_type, not_, or_, tag_id=tag_id, tag_value=value)

    @classmethod
    def match_tags_difference(cls, tag_id: int, value: int, **kw: bool) -> Rule:
        return cls.match_tag(RuleType.MATCH_TAGS_DIFFERENCE, tag_id, value, **kw)

    @classmethod
    def match_tags_bitwise_and(cls, tag_id: int, value: int, **kw: bool) -> Rule:
        return cls.match_tag(RuleType.MATCH_TAGS_BITWISE_AND, tag_id, value, **kw)

    @classmethod
    def match_tags_bitwise_or(cls, tag_id: int, value: int, **kw: bool) -> Rule:
        return cls.match_tag(RuleType.MATCH_TAGS_BITWISE_OR, tag_id, value, **kw)

    @classmethod
    def match_tags_bitwise_xor(cls, tag_id: int, value: int, **kw: bool) -> Rule:
        return cls.match_tag(RuleType.MATCH_TAGS_BITWISE_XOR, tag_id, value, **kw)

    @classmethod
    def match_tags_equal(cls, tag_id: int, value: int, **kw: bool) -> Rule:
        return cls.match_tag(RuleType.MATCH_TAGS_EQUAL, tag_id, value, **kw)

    @classmethod
    def match_tag_sender(cls, tag_id: int, value: int, **kw: bool) -> Rule:
        return cls.match_tag(RuleType.MATCH_TAG_SENDER, tag_id, value, **kw)

    @classmethod
    def match_tag_receiver(cls, tag_id: int, value: int, **kw: bool) -> Rule:
        return cls.match_tag(RuleType.MATCH_TAG_RECEIVER, tag_id, value, **kw)

    @classmethod
    def match_integer_range(
        cls,
        start: int,
        end: int,
        idx: int,
        bits: int = 8,
        little_endian: bool = False,
        *,
        not_: bool = False,
        or_: bool = False,
    ) -> Rule:
        """Match a ``bits``-wide integer at byte ``idx`` of the frame payload within [start, end]."""
        if not 1 <= bits <= 64:
            raise InvalidFormatError("integer range width must be 1..64 bits")
        if not 0 <= end - start <= 0xFFFFFFFF:
            raise InvalidFormatError("integer range end must be within 2**32-1 above start")
        fmt = (0x80 if little_endian else 0) | ((bits - 1) & 63)
        return cls(
            RuleType.MATCH_INTEGER_RANGE,
            not_,
            or_,
            int_start=start,
            int_end=end - start,
            int_idx=idx,
            int_format=fmt,
        )

    # ------------------------------------------------------------ binary form

    def _value_bytes(self) -> bytes:
        t = self.type
        if t in _FWD_TYPES:
            return struct.pack(">QIH", self.fwd_address, self.fwd_flags, self.fwd_length)
        if t in _ZT_TYPES:
            return self.zt.to_bytes(5, "big")
        if t == RuleType.MATCH_VLAN_ID:
            return struct.pack(">H", self.vlan_id)
        if t == RuleType.MATCH_VLAN_PCP:
            return bytes((self.vlan_pcp,))
        if t == RuleType.MATCH_VLAN_DEI:
            return bytes((self.vlan_dei,))
        if t in _MAC_TYPES:
            return MAC(self.mac or 0).to_bytes()
        if t in _IPV4_TYPES or t in _IPV6_TYPES:
            assert self.ip is not None
            return self.ip.packed + bytes((self.mask,))
        if t == RuleType.MATCH_IP_TOS:
            return bytes((self.tos_mask, self.tos_start, self.tos_end))
        if t == RuleType.MATCH_IP_PROTOCOL:
            return bytes((self.ip_protocol,))
        if t == RuleType.MATCH_ETHERTYPE:
            return struct.pack(">H", self.ether_type)
        if t == RuleType.MATCH_ICMP:
            return bytes((self.icmp_type, self.icmp_code, self.icmp_flags))
        if t in _PORT_TYPES or t == RuleType.MATCH_FRAME_SIZE_RANGE:
            return struct.pack(">HH", self.start, self.end)
        if t == RuleType.MATCH_CHARACTERISTICS:
            return struct.pack(">Q", self.characteristics)
        if t == RuleType.MATCH_RANDOM:
            return struct.pack(">I", self.probability)
        if t in _TAG_TYPES:
            return struct.pack(">II", self.tag_id, self.tag_value)
        if t == RuleType.MATCH_INTEGER_RANGE:
            # The end travels as an absolute value (start + relative end, mod 2**64).
            return struct.pack(
                ">QQHB", self.int_start, (self.int_start + self.int_end) & _U64, self.int_idx, self.int_format
            )
        return b""

    def to_bytes(self) -> bytes:
        v = self._value_bytes()
        return bytes((self.type_byte, len(v))) + v

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Rule, int]:
        """Parse one rule at ``offset``; returns (rule, bytes consumed)."""
        d = bytes(data[offset:]) if offset else bytes(data)
        if len(d) < 2:
            raise InvalidFormatError("truncated rule: missing type or length byte")
        tb, flen = d[0], d[1]
        if 2 + flen > len(d):
            raise InvalidFormatError(f"truncated rule: value field of {flen} bytes runs past the end")
        v = d[2 : 2 + flen]
        t = tb & _TYPE_MASK
        kw: dict[str, Any] = {}
        need = _VALUE_LENGTH.get(t, 0)
        if flen < need:
            raise InvalidFormatError(f"rule type {t} needs a {need}-byte value, got {flen}")
        if t in _FWD_TYPES:
            kw["fwd_address"], kw["fwd_flags"], kw["fwd_length"] = struct.unpack_from(">QIH", v)
        elif t in _ZT_TYPES:
            kw["zt"] = int.from_bytes(v[:5], "big")
        elif t == RuleType.MATCH_VLAN_ID:
            kw["vlan_id"] = struct.unpack_from(">H", v)[0]
        elif t == RuleType.MATCH_VLAN_PCP:
            kw["vlan_pcp"] = v[0]
        elif t == RuleType.MATCH_VLAN_DEI:
            kw["vlan_dei"] = v[0]
        elif t in _MAC_TYPES:
            kw["mac"] = MAC.from_bytes(v)
        elif t in _IPV4_TYPES:
            kw["ip"] = ipaddress.IPv4Address(v[:4])
            kw["mask"] = v[4]
        elif t in _IPV6_TYPES:
            kw["ip"] = ipaddress.IPv6Address(v[:16])
            kw["mask"] = v[16]
        elif t == RuleType.MATCH_IP_TOS:
            kw["tos_mask"], kw["tos_start"], kw["tos_end"] = v[0], v[1], v[2]
        elif t == RuleType.MATCH_IP_PROTOCOL:
            kw["ip_protocol"] = v[0]
        elif t == RuleType.MATCH_ETHERTYPE:
            kw["ether_type"] = struct.unpack_from(">H", v)[0]
        elif t == RuleType.MATCH_ICMP:
            kw["icmp_type"], kw["icmp_code"], kw["icmp_flags"] = v[0], v[1], v[2]
        elif t in _PORT_TYPES or t == RuleType.MATCH_FRAME_SIZE_RANGE:
            kw["start"], kw["end"] = struct.unpack_from(">HH", v)
        elif t == RuleType.MATCH_CHARACTERISTICS:
            kw["characteristics"] = struct.unpack_from(">Q", v)[0]
        elif t == RuleType.MATCH_RANDOM:
            kw["probability"] = struct.unpack_from(">I", v)[0]
        elif t in _TAG_TYPES:
            kw["tag_id"], kw["tag_value"] = struct.unpack_from(">II", v)
        elif t == RuleType.MATCH_INTEGER_RANGE:
            start, end_abs, idx, fmt = struct.unpack_from(">QQHB", v)
            kw.update(int_start=start, int_end=(end_abs - start) & 0xFFFFFFFF, int_idx=idx, int_format=fmt)
        rule = cls(t, bool(tb & RULE_FLAG_NOT), bool(tb & RULE_FLAG_OR), **kw)
        return rule, 2 + flen

    def with_flags(self, *, not_: bool | None = None, or_: bool | None = None) -> Rule:
        return replace(self, not_=self.not_ if not_ is None else not_, or_=self.or_ if or_ is None else or_)


# Minimum value length a reader needs for each known type.
_VALUE_LENGTH: dict[int, int] = {
    **{int(t): 14 for t in _FWD_TYPES},
    **{int(t): 5 for t in _ZT_TYPES},
    RuleType.MATCH_VLAN_ID: 2,
    RuleType.MATCH_VLAN_PCP: 1,
    RuleType.MATCH_VLAN_DEI: 1,
    **{int(t): 6 for t in _MAC_TYPES},
    **{int(t): 5 for t in _IPV4_TYPES},
    **{int(t): 17 for t in _IPV6_TYPES},
    RuleType.MATCH_IP_TOS: 3,
    RuleType.MATCH_IP_PROTOCOL: 1,
    RuleType.MATCH_ETHERTYPE: 2,
    RuleType.MATCH_ICMP: 3,
    **{int(t): 4 for t in _PORT_TYPES},
    RuleType.MATCH_CHARACTERISTICS: 8,
    RuleType.MATCH_FRAME_SIZE_RANGE: 4,
    RuleType.MATCH_RANDOM: 4,
    **{int(t): 8 for t in _TAG_TYPES},
    RuleType.MATCH_INTEGER_RANGE: 19,
}


def serialize_rules(rules: Iterable[Rule]) -> bytes:
    """Concatenated binary rules (no count prefix), as in network configs."""
    return b"".join(r.to_bytes() for r in rules)


def deserialize_rules(
    data: bytes | bytearray | memoryview, offset: int = 0, max_count: int | None = None
) -> tuple[list[Rule], int]:
    """Read rules from ``offset`` until the data ends or ``max_count`` rules were read.

    Returns (rules, offset after the last rule read).
    """
    d = bytes(data)
    out: list[Rule] = []
    p = offset
    while p < len(d) and (max_count is None or len(out) < max_count):
        rule, n = Rule.from_bytes(d, p)
        out.append(rule)
        p += n
    return out, p
