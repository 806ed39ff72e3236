"""Typed trace events with the real core's event ids, levels and fields (Trace.hpp).

Each event class is a frozen dataclass carrying the values the real core puts in
its remote-trace dictionary. Its ``FIELDS`` table names, in the real core's
order, the dictionary key and the kind of every field, which is what
`ztcore.tracing.wire` encodes and decodes; ``EVENT_ID`` is the event's id (sent
as the hex string ``"2006"`` and so on) and ``LEVEL`` the lowest remote trace
level at which the real core sends it to a per-network target.

Events the real core has no counterpart for (ztcore's own drop reasons and
notes) become `NodeNote`: typed too, reported locally, never sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

__all__ = [
    "EVENT_CLASSES",
    "MAX_FRAME_DATA",
    "MAX_REMOTE_TRACE_SIZE",
    "RULE_LOG_BYTES",
    "CredentialRejected",
    "FieldKind",
    "IncomingNetworkAccessDenied",
    "IncomingNetworkFrameDropped",
    "NetworkConfigRequestSent",
    "NetworkFilterTrace",
    "NodeNote",
    "OutgoingNetworkFrameDropped",
    "PacketInvalid",
    "PacketMacFailure",
    "PeerConfirmingUnknownPath",
    "PeerLearnedNewPath",
    "PeerRedirected",
    "RemoteTrace",
    "ResettingPathsInScope",
    "TraceEvent",
    "TraceLevel",
    "UnknownTraceEvent",
    "rule_log_entries",
]

# ZT_MAX_REMOTE_TRACE_SIZE: a remote trace dictionary's capacity, terminating NUL included.
MAX_REMOTE_TRACE_SIZE = 10000
# Trace::networkFilter sends at most this much of the frame.
MAX_FRAME_DATA = 256
# Trace::RuleResultLog: four bits for each of ZT_MAX_NETWORK_RULES (1024) rules.
RULE_LOG_BYTES = 1024 // 2


class TraceLevel(enum.IntEnum):
    """Trace::Level."""

    NORMAL = 0
    VERBOSE = 10
    RULES = 15
    DEBUG = 20
    INSANE = 30


class FieldKind(enum.Enum):
    U64 = "u64"  # 16 hex digits
    ADDRESS = "address"  # a ZeroTier address, as 16 hex digits
    I64 = "i64"  # signed: "-" + 16 hex digits when negative
    TEXT = "text"
    FLAG = "flag"  # "1" / "0"
    BINARY = "binary"  # raw bytes (escaped by the Dictionary)


U64, ADDR, I64, TEXT, FLAG, BIN = (
    FieldKind.U64,
    FieldKind.ADDRESS,
    FieldKind.I64,
    FieldKind.TEXT,
    FieldKind.FLAG,
    FieldKind.BINARY,
)


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """Base of every trace event. ``timestamp`` is the reporting node's clock (ms),
    0 when unknown (the wire format carries no time)."""

    EVENT_ID: ClassVar[int] = 0
    LEVEL: ClassVar[TraceLevel] = TraceLevel.DEBUG
    NAME: ClassVar[str] = "event"
    # (attribute, dictionary key, kind, optional): optional fields are left out when None.
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = ()
    # True for events the real core sends only to a node-wide (global) target.
    GLOBAL_ONLY: ClassVar[bool] = False

    @property
    def network_id(self) -> int:
        return int(getattr(self, "network", 0) or 0)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ids and addresses in hex, bytes in hex."""
        out: dict[str, Any] = {"event": f"{self.EVENT_ID:04x}", "type": self.NAME, "level": int(self.LEVEL)}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (bytes, bytearray)):
                v = bytes(v).hex()
            elif f.name in ("network",) and isinstance(v, int):
                v = f"{v:016x}"
            elif f.name in _ADDRESS_ATTRS and isinstance(v, int):
                v = f"{v:010x}"
            elif f.name in ("source_mac", "dest_mac") and isinstance(v, int):
                v = ":".join(f"{(v >> s) & 0xFF:02x}" for s in range(40, -8, -8))
            out[_camel(f.name)] = v
        return out


_ADDRESS_ATTRS = frozenset(("peer", "reporter", "source", "dest", "controller", "issued_to", "target"))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


# ------------------------------------------------------------------------- VL1: paths


@dataclass(frozen=True, slots=True)
class ResettingPathsInScope(TraceEvent):
    """A trusted peer reported a new physical address of ours in `ip_scope` (0x1000)."""

    EVENT_ID: ClassVar[int] = 0x1000
    LEVEL: ClassVar[TraceLevel] = TraceLevel.NORMAL
    NAME: ClassVar[str] = "resettingPathsInScope"
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("reporter", "remoteZtAddr", ADDR, False),
        ("reporter_physical", "remotePhyAddr", TEXT, False),
        ("my_physical", "localPhyAddr", TEXT, False),
        ("ip_scope", "phyAddrIpScope", U64, False),
    )
    timestamp: int = 0
    reporter: int = 0
    reporter_physical: str = ""
    my_physical: str = ""
    ip_scope: int = 0


@dataclass(frozen=True, slots=True)
class PeerConfirmingUnknownPath(TraceEvent):
    """A packet came in over a path we do not know: we try it with a HELLO (0x1001)."""

    EVENT_ID: ClassVar[int] = 0x1001
    LEVEL: ClassVar[TraceLevel] = TraceLevel.NORMAL
    NAME: ClassVar[str] = "peerConfirmingUnknownPath"
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("packet_id", "packetId", U64, False),
        ("packet_verb", "packetVerb", U64, False),
        ("network", "networkId", U64, True),
        ("peer", "remoteZtAddr", ADDR, False),
        ("remote_physical", "remotePhyAddr", TEXT, False),
        ("local_socket", "localSocket", I64, False),
    )
    timestamp: int = 0
    packet_id: int = 0
    packet_verb: int = 0
    network: int | None = None
    peer: int = 0
    remote_physical: str = ""
    local_socket: int = 0


@dataclass(frozen=True, slots=True)
class PeerLearnedNewPath(TraceEvent):
    """A path confirmed by an OK became one of the peer's paths (0x1002)."""

    EVENT_ID: ClassVar[int] = 0x1002
    LEVEL: ClassVar[TraceLevel] = TraceLevel.NORMAL
    NAME: ClassVar[str] = "peerLearnedNewPath"
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("packet_id", "packetId", U64, False),
        ("network", "networkId", U64, True),
        ("peer", "remoteZtAddr", ADDR, False),
        ("remote_physical", "remotePhyAddr", TEXT, False),
        ("local_socket", "localSocket", I64, False),
    )
    timestamp: int = 0
    packet_id: int = 0
    network: int | None = None
    peer: int = 0
    remote_physical: str = ""
    local_socket: int = 0


@dataclass(frozen=True, slots=True)
class PeerRedirected(TraceEvent):
    """A peer told us to use another path (0x1003)."""

    EVENT_ID: ClassVar[int] = 0x1003
    LEVEL: ClassVar[TraceLevel] = TraceLevel.NORMAL
    NAME: ClassVar[str] = "peerRedirected"
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("network", "networkId", U64, True),
        ("peer", "remoteZtAddr", ADDR, False),
        ("remote_physical", "remotePhyAddr", TEXT, False),
        ("local_socket", "localSocket", I64, False),
    )
    timestamp: int = 0
    network: int | None = None
    peer: int = 0
    remote_physical: str = ""
    local_socket: int = 0


# ------------------------------------------------------------------ VL1: bad packets


@dataclass(frozen=True, slots=True)
class PacketMacFailure(TraceEvent):
    """A packet failed authentication (0x1004; global target, DEBUG)."""

    EVENT_ID: ClassVar[int] = 0x1004
    LEVEL: ClassVar[TraceLevel] = TraceLevel.DEBUG
    NAME: ClassVar[str] = "packetMacFailure"
    GLOBAL_ONLY: ClassVar[bool] = True
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("packet_id", "packetId", U64, False),
        ("hops", "packetHops", U64, False),
        ("source", "remoteZtAddr", ADDR, False),
        ("remote_physical", "remotePhyAddr", TEXT, True),
        ("local_socket", "localSocket", I64, True),
        ("reason", "reason", TEXT, True),
    )
    timestamp: int = 0
    packet_id: int = 0
    hops: int = 0
    source: int = 0
    remote_physical: str | None = None
    local_socket: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PacketInvalid(TraceEvent):
    """A packet (or a HELLO) was dropped as invalid (0x1005; global target, DEBUG)."""

    EVENT_ID: ClassVar[int] = 0x1005
    LEVEL: ClassVar[TraceLevel] = TraceLevel.DEBUG
    NAME: ClassVar[str] = "packetInvalid"
    GLOBAL_ONLY: ClassVar[bool] = True
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("packet_id", "packetId", U64, False),
        ("packet_verb", "packetVerb", U64, True),
        ("source", "remoteZtAddr", ADDR, False),
        ("remote_physical", "remotePhyAddr", TEXT, True),
        ("local_socket", "localSocket", I64, True),
        ("hops", "packetHops", U64, True),
        ("reason", "reason", TEXT, True),
    )
    timestamp: int = 0
    packet_id: int = 0
    packet_verb: int | None = None
    source: int = 0
    remote_physical: str | None = None
    local_socket: int | None = None
    hops: int | None = None
    reason: str | None = None


# ------------------------------------------------------------------------------- VL2


@dataclass(frozen=True, slots=True)
class OutgoingNetworkFrameDropped(TraceEvent):
    """A frame from the host side was not sent (0x2000, VERBOSE)."""

    EVENT_ID: ClassVar[int] = 0x2000
    LEVEL: ClassVar[TraceLevel] = TraceLevel.VERBOSE
    NAME: ClassVar[str] = "outgoingNetworkFrameDropped"
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("network", "networkId", U64, False),
        ("source_mac", "sourceMac", U64, False),
        ("dest_mac", "destMac", U64, False),
        ("ethertype", "etherType", U64, False),
        ("vlan_id", "vlanId", U64, False),
        ("frame_length", "frameLength", U64, False),
        ("reason", "reason", TEXT, True),
    )
    timestamp: int = 0
    network: int = 0
    source_mac: int = 0
    dest_mac: int = 0
    ethertype: int = 0
    vlan_id: int = 0
    frame_length: int = 0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class IncomingNetworkAccessDenied(TraceEvent):
    """A peer without valid credentials sent us a frame (0x2001, VERBOSE)."""

    EVENT_ID: ClassVar[int] = 0x2001
    LEVEL: ClassVar[TraceLevel] = TraceLevel.VERBOSE
    NAME: ClassVar[str] = "incomingNetworkAccessDenied"
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("packet_id", "packetId", U64, False),
        ("packet_verb", "packetVerb", U64, False),
        ("source", "remoteZtAddr", ADDR, False),
        ("remote_physical", "remotePhyAddr", TEXT, True),
        ("local_socket", "localSocket", I64, True),
        ("network", "networkId", U64, False),
    )
    timestamp: int = 0
    packet_id: int = 0
    packet_verb: int = 0
    source: int = 0
    remote_physical: str | None = None
    local_socket: int | None = None
    network: int = 0


@dataclass(frozen=True, slots=True)
class IncomingNetworkFrameDropped(TraceEvent):
    """A frame from a peer was not delivered (0x2002, VERBOSE)."""

    EVENT_ID: ClassVar[int] = 0x2002
    LEVEL: ClassVar[TraceLevel] = TraceLevel.VERBOSE
    NAME: ClassVar[str] = "incomingNetworkFrameDropped"
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("packet_id", "packetId", U64, False),
        ("packet_verb", "packetVerb", U64, False),
        ("source", "remoteZtAddr", ADDR, False),
        ("remote_physical", "remotePhyAddr", TEXT, True),
        ("local_socket", "localSocket", I64, True),
        ("network", "networkId", U64, False),
        ("source_mac", "sourceMac", U64, False),
        ("dest_mac", "destMac", U64, False),
        ("reason", "reason", TEXT, True),
    )
    timestamp: int = 0
    packet_id: int = 0
    packet_verb: int = 0
    source: int = 0
    remote_physical: str | None = None
    local_socket: int | None = None
    network: int = 0
    source_mac: int = 0
    dest_mac: int = 0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CredentialRejected(TraceEvent):
    """A credential (COM, capability, tag, COO, revocation) was refused (0x2003)."""

    EVENT_ID: ClassVar[int] = 0x2003
    LEVEL: ClassVar[TraceLevel] = TraceLevel.NORMAL
    NAME: ClassVar[str] = "credentialRejected"
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("network", "networkId", U64, False),
        ("credential_type", "credType", U64, False),
        ("credential_id", "credId", U64, False),
        ("credential_timestamp", "credTs", U64, True),
        ("issued_to", "credIssuedTo", ADDR, True),
        ("info", "credInfo", U64, True),
        ("target", "credRevocationTarget", ADDR, True),
        ("reason", "reason", TEXT, True),
    )
    timestamp: int = 0
    network: int = 0
    credential_type: int = 0
    credential_id: int = 0
    credential_timestamp: int | None = None
    issued_to: int | None = None
    info: int | None = None  # a tag's value
    target: int | None = None  # a revocation's target
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class NetworkConfigRequestSent(TraceEvent):
    """We asked a controller for a network's config (0x2005; global target, DEBUG)."""

    EVENT_ID: ClassVar[int] = 0x2005
    LEVEL: ClassVar[TraceLevel] = TraceLevel.DEBUG
    NAME: ClassVar[str] = "networkConfigRequestSent"
    GLOBAL_ONLY: ClassVar[bool] = True
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("network", "networkId", U64, False),
        ("controller", "networkControllerId", ADDR, False),
    )
    timestamp: int = 0
    network: int = 0
    controller: int = 0


@dataclass(frozen=True, slots=True)
class NetworkFilterTrace(TraceEvent):
    """One frame through a network's rules (0x2006, RULES).

    `result` is 0 (drop), 1 (accept) or 2 (super-accept: we are a TEE/REDIRECT
    target). The rule logs hold four bits per rule (`rule_log_entries`);
    `frame_data` is at most the first 256 bytes of a frame of `frame_length`.
    """

    EVENT_ID: ClassVar[int] = 0x2006
    LEVEL: ClassVar[TraceLevel] = TraceLevel.RULES
    NAME: ClassVar[str] = "networkFilter"
    FIELDS: ClassVar[tuple[tuple[str, str, FieldKind, bool], ...]] = (
        ("network", "networkId", U64, False),
        ("source", "sourceZtAddr", ADDR, False),
        ("dest", "destZtAddr", ADDR, False),
        ("source_mac", "sourceMac", U64, False),
        ("dest_mac", "destMac", U64, False),
        ("ethertype", "etherType", U64, False),
        ("vlan_id", "vlanId", U64, False),
        ("no_tee", "filterNoTee", FLAG, False),
        ("inbound", "filterInbound", FLAG, False),
        ("result", "filterResult", I64, False),
        ("base_rule_log", "filterBaseRuleLog", BIN, False),
        ("cap_rule_log", "filterCapRuleLog", BIN, True),
        ("matching_cap_id", "filterMatchingCapId", U64, True),
        ("frame_length", "frameLength", U64, False),
        ("frame_data", "frameData", BIN, True),
    )
    timestamp: int = 0
    network: int = 0
    source: int = 0
    dest: int = 0
    source_mac: int = 0
    dest_mac: int = 0
    ethertype: int = 0
    vlan_id: int = 0
    no_tee: bool = False
    inbound: bool = False
    result: int = 0
    base_rule_log: bytes = b""
    cap_rule_log: bytes | None = None
    matching_cap_id: int | None = None
    frame_length: int = 0
    frame_data: bytes | None = None

    @property
    def accepted(self) -> bool:
        return self.result > 0


# ------------------------------------------------------------------ not in the real core


@dataclass(frozen=True, slots=True)
class UnknownTraceEvent(TraceEvent):
    """A received trace whose event id this implementation does not know."""

    NAME: ClassVar[str] = "unknown"
    event_id: int = 0
    timestamp: int = 0
    fields_raw: dict[str, bytes] = field(default_factory=dict)

    @property
    def network_id(self) -> int:
        v = self.fields_raw.get("networkId", b"")
        try:
            return int(v, 16) if v else 0
        except ValueError:
            return 0

    def to_json(self) -> dict[str, Any]:
        out = {k: v.decode("utf-8", "replace") for k, v in self.fields_raw.items()}
        out.update({"event": f"{self.event_id:04x}", "type": self.NAME, "level": int(self.LEVEL)})
        return out


@dataclass(frozen=True, slots=True)
class NodeNote(TraceEvent):
    """A ztcore trace with no real-core event (e.g. a relay without route, a config
    chunk refused): typed and reported locally, never sent to a remote target."""

    NAME: ClassVar[str] = "note"
    kind: str = ""
    reason: str = ""
    timestamp: int = 0
    network: int = 0
    details: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": None, "type": self.NAME, "level": int(self.LEVEL), "kind": self.kind}
        out["timestamp"] = self.timestamp
        if self.reason:
            out["reason"] = self.reason
        if self.network:
            out["network"] = f"{self.network:016x}"
        out.update(dict(self.details))
        return out


EVENT_CLASSES: dict[int, type[TraceEvent]] = {
    cls.EVENT_ID: cls
    for cls in (
        ResettingPathsInScope,
        PeerConfirmingUnknownPath,
        PeerLearnedNewPath,
        PeerRedirected,
        PacketMacFailure,
        PacketInvalid,
        OutgoingNetworkFrameDropped,
        IncomingNetworkAccessDenied,
        IncomingNetworkFrameDropped,
        CredentialRejected,
        NetworkConfigRequestSent,
        NetworkFilterTrace,
    )
}


def rule_log_entries(log: bytes) -> list[tuple[int, bool | None, bool | None]]:
    """Decode a Trace::RuleResultLog: (rule index, this rule matched, its set matched)
    for every rule with an entry; None where a two-bit value was 00 (not evaluated)."""

    def two(bits: int) -> bool | None:
        return {1: False, 2: True}.get(bits)

    out: list[tuple[int, bool | None, bool | None]] = []
    for i, b in enumerate(log):
        for half in (0, 1):
            nib = (b >> (half * 4)) & 0xF
            if nib:
                out.append((i * 2 + half, two(nib >> 2), two(nib & 3)))
    return out


@dataclass(frozen=True, slots=True)
class RemoteTrace:
    """A trace received in a VERB_REMOTE_TRACE (the data of EventType.REMOTE_TRACE):
    who sent it, the dictionary as received, and the decoded event (None if the
    dictionary was malformed)."""

    origin: int
    data: bytes
    event: TraceEvent | None
    received: int = 0
