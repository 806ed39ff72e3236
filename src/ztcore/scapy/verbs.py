"""Scapy layers for the payload of every ZeroTier verb, and of OK/ERROR per in-re verb.

Each layer sits on :class:`~ztcore.scapy.layers.ZeroTier` (bound by verb, so building
``ZeroTier()/ZTWhois(...)`` sets the verb), and OK sits under a per-in-re-verb layer.
Frames hand their contents to Scapy: EXT_FRAME's destination/source/ethertype are an
Ethernet header, so what follows its flags is dissected as ``Ether``; FRAME and
MULTICAST_FRAME carry no (or a partial) Ethernet header and go by ethertype. Fields
whose presence depends on what the sender's version writes (HELLO's planet, a config
chunk's signature) are optional at the end (``MayEnd``).
"""

from __future__ import annotations

from typing import Any

from scapy.data import ETHER_TYPES
from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    FieldLenField,
    FieldListField,
    FlagsField,
    IntField,
    IP6Field,
    IPField,
    LongField,
    MACField,
    MayEnd,
    PacketField,
    PacketListField,
    ShortField,
    StrField,
    StrLenField,
    StrNullField,
    XByteField,
    XIntField,
    XLongField,
    XShortEnumField,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw, bind_layers

from ztcore.vl1.packet import Verb
from ztcore.vl2.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    Revocation,
    Tag,
)

from .layers import (
    ERROR_CODES,
    VERB_LAYERS,
    VERBS,
    CredentialField,
    DictionaryField,
    NetworkIdField,
    ZeroTier,
    ZTAddressField,
    ZTIdentity,
    ZTInetAddress,
    _pad_less,
    ether_payload_class,
)

__all__ = [
    "ZTDirectPath",
    "ZTEcho",
    "ZTError",
    "ZTExtFrame",
    "ZTFrame",
    "ZTHello",
    "ZTMulticastFrame",
    "ZTMulticastGather",
    "ZTMulticastLike",
    "ZTMulticastSubscription",
    "ZTNetworkConfig",
    "ZTNetworkConfigRequest",
    "ZTNetworkCredentials",
    "ZTNop",
    "ZTOk",
    "ZTOkEcho",
    "ZTOkExtFrame",
    "ZTOkHello",
    "ZTOkMulticastFrame",
    "ZTOkMulticastGather",
    "ZTOkWhois",
    "ZTPushDirectPaths",
    "ZTRemoteTrace",
    "ZTRendezvous",
    "ZTUserMessage",
    "ZTWhois",
]

_VERB_ENUM = VERBS


def _has(flag: int) -> Any:
    return lambda p: bool((p.flags or 0) & flag)


class _ByEthertype(Packet):
    """Layers whose payload is an Ethernet payload of type ``ethertype``."""

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return ether_payload_class(self.ethertype)


# --- VL1 verbs -----------------------------------------------------------------------


class ZTNop(Packet):
    name = "ZeroTier NOP"
    fields_desc: list[Any] = []


class ZTHello(Packet):
    """HELLO: sent with cipher suite 0, so readable without keys. The moon list at the
    end is encrypted with the agreed key (``moons``; see ``Keyring.hello_moons``)."""

    name = "ZeroTier HELLO"
    fields_desc = [
        ByteField("proto_version", 12),
        ByteField("major", 1),
        ByteField("minor", 14),
        ShortField("revision", 1),
        LongField("timestamp", 0),
        PacketField("identity", ZTIdentity(), ZTIdentity),
        MayEnd(PacketField("physical_dest", ZTInetAddress(), ZTInetAddress)),
        MayEnd(XLongField("planet_id", 0)),
        MayEnd(LongField("planet_timestamp", 0)),
        StrField("moons", b""),
    ]


class ZTError(Packet):
    name = "ZeroTier ERROR"
    fields_desc = [
        ByteEnumField("in_re_verb", 0, _VERB_ENUM),
        XLongField("in_re_packet_id", 0),
        MayEnd(ByteEnumField("code", 0, ERROR_CODES)),
        MayEnd(NetworkIdField("nwid", None)),
        StrField("data", b""),
    ]


class ZTOk(Packet):
    """OK: the verb and packet id it answers; the rest depends on that verb."""

    name = "ZeroTier OK"
    fields_desc = [ByteEnumField("in_re_verb", 0, _VERB_ENUM), XLongField("in_re_packet_id", 0)]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return OK_LAYERS.get(self.in_re_verb & 0x1F, Raw)


class ZTOkHello(Packet):
    name = "ZeroTier OK(HELLO)"
    fields_desc = [
        LongField("timestamp_echo", 0),
        ByteField("proto_version", 12),
        ByteField("major", 1),
        ByteField("minor", 14),
        ShortField("revision", 1),
        MayEnd(PacketField("physical_dest", ZTInetAddress(), ZTInetAddress)),
        MayEnd(FieldLenField("worlds_length", None, length_of="worlds", fmt="!H")),
        StrLenField("worlds", b"", length_from=lambda p: p.worlds_length),
    ]


class ZTWhois(Packet):
    name = "ZeroTier WHOIS"
    fields_desc = [FieldListField("addresses", [], ZTAddressField("address", 0))]


class ZTOkWhois(Packet):
    name = "ZeroTier OK(WHOIS)"
    fields_desc = [PacketListField("identities", [], ZTIdentity)]


class ZTRendezvous(Packet):
    name = "ZeroTier RENDEZVOUS"
    fields_desc = [
        XByteField("flags", 0),
        ZTAddressField("with_address", 0),
        ShortField("port", 0),
        ByteField("addr_length", 4),
        ConditionalField(IPField("ip", "0.0.0.0"), lambda p: p.addr_length == 4),
        ConditionalField(IP6Field("ip6", "::"), lambda p: p.addr_length == 16),
    ]


class ZTEcho(Packet):
    name = "ZeroTier ECHO"
    fields_desc = [StrField("data", b"")]


class ZTOkEcho(Packet):
    """OK(ECHO): the echoed data (also how a NETWORK_CONFIG chunk is acknowledged:
    network id and config update id)."""

    name = "ZeroTier OK(ECHO)"
    fields_desc = [StrField("data", b"")]


class ZTDirectPath(Packet):
    name = "ZeroTier direct path"
    fields_desc = [
        FlagsField("flags", 0, 8, ["FORGET_PATH", "CLUSTER_REDIRECT"]),
        FieldLenField("ext_length", None, length_of="ext", fmt="!H"),
        StrLenField("ext", b"", length_from=lambda p: p.ext_length),
        ByteEnumField("addr_type", 4, {4: "IPv4", 6: "IPv6"}),
        ByteField("addr_length", 6),
        ConditionalField(IPField("ip", "0.0.0.0"), lambda p: p.addr_type == 4 and p.addr_length == 6),
        ConditionalField(IP6Field("ip6", "::"), lambda p: p.addr_type == 6 and p.addr_length == 18),
        ConditionalField(ShortField("port", 0), lambda p: (p.addr_type, p.addr_length) in ((4, 6), (6, 18))),
        ConditionalField(
            StrLenField("addr", b"", length_from=lambda p: p.addr_length),
            lambda p: (p.addr_type, p.addr_length) not in ((4, 6), (6, 18)),
        ),
    ]
    extract_padding = _pad_less


class ZTPushDirectPaths(Packet):
    name = "ZeroTier PUSH_DIRECT_PATHS"
    fields_desc = [
        FieldLenField("count", None, count_of="paths", fmt="!H"),
        PacketListField("paths", [], ZTDirectPath, count_from=lambda p: p.count),
    ]


class ZTUserMessage(Packet):
    name = "ZeroTier USER_MESSAGE"
    fields_desc = [XLongField("type_id", 0), StrField("data", b"")]


class _NullTerminatedDictionary(StrNullField):
    """A Dictionary ended by a 0 byte, shown decoded."""

    def i2repr(self, pkt: Any, x: Any) -> str:
        return DictionaryField.i2repr(self, pkt, x)  # type: ignore[arg-type]


class ZTRemoteTrace(Packet):
    """REMOTE_TRACE: one or more 0-terminated Dictionaries describing trace events."""

    name = "ZeroTier REMOTE_TRACE"
    fields_desc = [FieldListField("dictionaries", [], _NullTerminatedDictionary("", b""))]


# --- VL2 verbs -----------------------------------------------------------------------


class ZTFrame(_ByEthertype):
    """FRAME: a frame between the two members' own MACs; only the ethertype travels."""

    name = "ZeroTier FRAME"
    fields_desc = [NetworkIdField("nwid", 0), XShortEnumField("ethertype", 0x0800, ETHER_TYPES)]


class ZTExtFrame(Packet):
    """EXT_FRAME: bridged or TEEd frames; after the flags (and the deprecated COM) the
    destination MAC, source MAC and ethertype form an Ethernet header, handed to Ether."""

    name = "ZeroTier EXT_FRAME"
    fields_desc = [
        NetworkIdField("nwid", 0),
        FlagsField("flags", 0, 8, ["COM", "SUBTYPE_MSB", "SUBTYPE_MID", "SUBTYPE_LSB", "ACK"]),
        ConditionalField(CredentialField("com", b"", CertificateOfMembership), _has(0x01)),
    ]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return Ether


class ZTOkExtFrame(Packet):
    name = "ZeroTier OK(EXT_FRAME)"
    fields_desc = [NetworkIdField("nwid", 0)]


class ZTMulticastSubscription(Packet):
    name = "ZeroTier multicast subscription"
    fields_desc = [NetworkIdField("nwid", 0), MACField("mac", "ff:ff:ff:ff:ff:ff"), XIntField("adi", 0)]
    extract_padding = _pad_less


class ZTMulticastLike(Packet):
    name = "ZeroTier MULTICAST_LIKE"
    fields_desc = [PacketListField("groups", [], ZTMulticastSubscription)]


class _Com(Packet):
    name = "ZeroTier COM"
    fields_desc = [CredentialField("com", b"", CertificateOfMembership)]
    extract_padding = _pad_less


def _next_com(remaining: bytes) -> type[Packet] | None:
    # COMs run until a 0 byte (the type byte of a COM is 1).
    return _Com if remaining and remaining[0] != 0 else None


class ZTNetworkCredentials(Packet):
    name = "ZeroTier NETWORK_CREDENTIALS"
    fields_desc = [
        PacketListField("coms", [], _Com, next_cls_cb=lambda p, lst, cur, rem: _next_com(rem)),
        ByteField("end_of_coms", 0),
        MayEnd(FieldLenField("capability_count", None, count_of="capabilities", fmt="!H")),
        FieldListField(
            "capabilities", [], CredentialField("", b"", Capability), count_from=lambda p: p.capability_count
        ),
        MayEnd(FieldLenField("tag_count", None, count_of="tags", fmt="!H")),
        FieldListField("tags", [], CredentialField("", b"", Tag), count_from=lambda p: p.tag_count),
        MayEnd(FieldLenField("revocation_count", None, count_of="revocations", fmt="!H")),
        FieldListField(
            "revocations", [], CredentialField("", b"", Revocation), count_from=lambda p: p.revocation_count
        ),
        MayEnd(FieldLenField("coo_count", None, count_of="coos", fmt="!H")),
        FieldListField(
            "coos", [], CredentialField("", b"", CertificateOfOwnership), count_from=lambda p: p.coo_count
        ),
    ]


class ZTNetworkConfigRequest(Packet):
    name = "ZeroTier NETWORK_CONFIG_REQUEST"
    fields_desc = [
        NetworkIdField("nwid", 0),
        MayEnd(FieldLenField("dict_length", None, length_of="metadata", fmt="!H")),
        MayEnd(DictionaryField("metadata", b"", length_from=lambda p: p.dict_length)),
        MayEnd(LongField("revision", 0)),
        LongField("timestamp", 0),
    ]


class ZTNetworkConfig(Packet):
    """A config chunk: NETWORK_CONFIG's payload, and OK(NETWORK_CONFIG_REQUEST)'s."""

    name = "ZeroTier NETWORK_CONFIG"
    fields_desc = [
        NetworkIdField("nwid", 0),
        FieldLenField("chunk_length", None, length_of="chunk", fmt="!H"),
        MayEnd(DictionaryField("chunk", b"", length_from=lambda p: p.chunk_length)),
        FlagsField("flags", 0, 8, ["FAST_PROPAGATE"]),
        XLongField("update_id", 0),
        IntField("total_length", 0),
        IntField("chunk_index", 0),
        ByteField("signature_type", 1),
        FieldLenField("signature_length", None, length_of="signature", fmt="!H"),
        StrLenField("signature", b"", length_from=lambda p: p.signature_length),
    ]


class ZTMulticastGather(Packet):
    name = "ZeroTier MULTICAST_GATHER"
    fields_desc = [
        NetworkIdField("nwid", 0),
        FlagsField("flags", 0, 8, ["COM"]),
        MACField("mac", "ff:ff:ff:ff:ff:ff"),
        XIntField("adi", 0),
        IntField("gather_limit", 0),
        ConditionalField(CredentialField("com", b"", CertificateOfMembership), _has(0x01)),
    ]


def _gather_fields(condition: Any) -> list[Any]:
    return [
        ConditionalField(IntField("total_known", 0), condition),
        ConditionalField(FieldLenField("count", None, count_of="members", fmt="!H"), condition),
        ConditionalField(
            FieldListField("members", [], ZTAddressField("member", 0), count_from=lambda p: p.count),
            condition,
        ),
    ]


class ZTOkMulticastGather(Packet):
    name = "ZeroTier OK(MULTICAST_GATHER)"
    fields_desc = [
        NetworkIdField("nwid", 0),
        MACField("mac", "ff:ff:ff:ff:ff:ff"),
        XIntField("adi", 0),
        *_gather_fields(lambda p: True),
    ]


class ZTMulticastFrame(_ByEthertype):
    name = "ZeroTier MULTICAST_FRAME"
    fields_desc = [
        NetworkIdField("nwid", 0),
        FlagsField("flags", 0, 8, ["COM", "GATHER", "SOURCE_MAC", "REPLICATE"]),
        ConditionalField(CredentialField("com", b"", CertificateOfMembership), _has(0x01)),
        ConditionalField(IntField("gather_limit", 0), _has(0x02)),
        ConditionalField(MACField("src_mac", "00:00:00:00:00:00"), _has(0x04)),
        MACField("dst_mac", "ff:ff:ff:ff:ff:ff"),
        XIntField("adi", 0),
        XShortEnumField("ethertype", 0x0800, ETHER_TYPES),
    ]


class ZTOkMulticastFrame(Packet):
    name = "ZeroTier OK(MULTICAST_FRAME)"
    fields_desc = [
        NetworkIdField("nwid", 0),
        MACField("mac", "ff:ff:ff:ff:ff:ff"),
        XIntField("adi", 0),
        FlagsField("flags", 0, 8, ["COM", "GATHER"]),
        ConditionalField(CredentialField("com", b"", CertificateOfMembership), _has(0x01)),
        *_gather_fields(_has(0x02)),
    ]


VERB_LAYERS.update(
    {
        Verb.NOP: ZTNop,
        Verb.HELLO: ZTHello,
        Verb.ERROR: ZTError,
        Verb.OK: ZTOk,
        Verb.WHOIS: ZTWhois,
        Verb.RENDEZVOUS: ZTRendezvous,
        Verb.FRAME: ZTFrame,
        Verb.EXT_FRAME: ZTExtFrame,
        Verb.ECHO: ZTEcho,
        Verb.MULTICAST_LIKE: ZTMulticastLike,
        Verb.NETWORK_CREDENTIALS: ZTNetworkCredentials,
        Verb.NETWORK_CONFIG_REQUEST: ZTNetworkConfigRequest,
        Verb.NETWORK_CONFIG: ZTNetworkConfig,
        Verb.MULTICAST_GATHER: ZTMulticastGather,
        Verb.MULTICAST_FRAME: ZTMulticastFrame,
        Verb.PUSH_DIRECT_PATHS: ZTPushDirectPaths,
        Verb.USER_MESSAGE: ZTUserMessage,
        Verb.REMOTE_TRACE: ZTRemoteTrace,
    }
)

OK_LAYERS: dict[int, type[Packet]] = {
    Verb.HELLO: ZTOkHello,
    Verb.WHOIS: ZTOkWhois,
    Verb.ECHO: ZTOkEcho,
    Verb.EXT_FRAME: ZTOkExtFrame,
    Verb.NETWORK_CONFIG_REQUEST: ZTNetworkConfig,
    Verb.MULTICAST_GATHER: ZTOkMulticastGather,
    Verb.MULTICAST_FRAME: ZTOkMulticastFrame,
}

# Building: the verb (and OK's in-re verb) follow from the layer put on top. Dissection
# goes through ZeroTier.guess_payload_class / ZTOk.guess_payload_class instead, which
# also look at the cipher suite.
for _verb, _cls in VERB_LAYERS.items():
    bind_layers(ZeroTier, _cls, verb=int(_verb))
for _verb, _cls in OK_LAYERS.items():
    bind_layers(ZTOk, _cls, in_re_verb=int(_verb))
