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


def wire(key: str, kind: FieldKind, default: Any = 0) -> Any:
    """A field carried in the remote-trace dictionary under `key` as `kind`; it is
    optional (left out of the dictionary when None) when its default is None."""
    return field(default=default, metadata={"wire": (key, kind)})


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """Base of every trace event. ``timestamp`` is the reporting node's clock (ms),
    0 when unknown (the wire format carries no time)."""

    EVENT_ID: ClassVar[int] = 0
    LEVEL: ClassVar[TraceLevel] = TraceLevel.DEBUG
    NAME: ClassVar[str] = "event"
    # (attribute, dictionary key, kind, optional), in wire order: derived from the
    # fields declared with `wire` (optional ones default to None and are left out then).
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
    timestamp: int = 0
    reporter: int = wire("remoteZtAddr", ADDR)
    reporter_physical: str = wire("remotePhyAddr", TEXT, "")
    my_physical: str = wire("localPhyAddr", TEXT, "")
    ip_scope: int = wire("phyAddrIpScope", U64)


@dataclass(frozen=True, slots=True)
class PeerConfirmingUnknownPath(TraceEvent):
    """A packet came in over a path we do not know: we try it with a HELLO (0x1001)."""

    EVENT_ID: ClassVar[int] = 0x1001
    LEVEL: ClassVar[TraceLevel] = TraceLevel.NORMAL
    NAME: ClassVar[str] = "peerConfirmingUnknownPath"
    timestamp: int = 0
    packet_id: int = wire("packetId", U64)
    packet_verb: int = wire("packetVerb", U64)
    network: int | None = wire("networkId", U64, None)
    peer: int = wire("remoteZtAddr", ADDR)
    remote_physical: str = wire("remotePhyAddr", TEXT, "")
    local_socket: int = wire("localSocket", I64)


@dataclass(frozen=True, slots=True)
class PeerLearnedNewPath(TraceEvent):
    """A path confirmed by an OK became one of the peer's paths (0x1002)."""

    EVENT_ID: ClassVar[int] = 0x1002
    LEVEL: ClassVar[TraceLevel] = TraceLevel.NORMAL
    NAME: ClassVar[str] = "peerLearnedNewPath"
    timestamp: int = 0
    packet_id: int = wire("packetId", U64)
    network: int | None = wire("networkId", U64, None)
    peer: int = wire("remoteZtAddr", ADDR)
    remote_physical: str = wire("remotePhyAddr", TEXT, "")
    local_socket: int = wire("localSocket", I64)


@dataclass(frozen=True, slots=True)
class PeerRedirected(TraceEvent):
    """A peer told us to use another path (0x1003)."""

    EVENT_ID: ClassVar[int] = 0x1003
    LEVEL: ClassVar[TraceLevel] = TraceLevel.NORMAL
    NAME: ClassVar[str] = "peerRedirected"
    timestamp: int = 0
    network: int | None = wire("networkId", U64, None)
    peer: int = wire("remoteZtAddr", ADDR)
    remote_physical: str = wire("remotePhyAddr", TEXT, "")
    local_socket: int = wire("localSocket", I64)


# ------------------------------------------------------------------ VL1: bad packets


@dataclass(frozen=True, slots=True)
class PacketMacFailure(TraceEvent):
    """A packet failed authentication (0x1004; global target, DEBUG)."""

    EVENT_ID: ClassVar[int] = 0x1004
    LEVEL: ClassVar[TraceLevel] = TraceLevel.DEBUG
    NAME: ClassVar[str] = "packetMacFailure"
    GLOBAL_ONLY: ClassVar[bool] = True
    timestamp: int = 0
    packet_id: int = wire("packetId", U64)
    hops: int = wire("packetHops", U64)
    source: int = wire("remoteZtAddr", ADDR)
    remote_physical: str | None = wire("remotePhyAddr", TEXT, None)
    local_socket: int | None = wire("localSocket", I64, None)
    reason: str | None = wire("reason", TEXT, None)


@dataclass(frozen=True, slots=True)
class PacketInvalid(TraceEvent):
    """A packet (or a HELLO) was dropped as invalid (0x1005; global target, DEBUG)."""

    EVENT_ID: ClassVar[int] = 0x1005
    LEVEL: ClassVar[TraceLevel] = TraceLevel.DEBUG
    NAME: ClassVar[str] = "packetInvalid"
    GLOBAL_ONLY: ClassVar[bool] = True
    timestamp: int = 0
    packet_id: int = wire("packetId", U64)
    packet_verb: int | None = wire("packetVerb", U64, None)
    source: int = wire("remoteZtAddr", ADDR)
    remote_physical: str | None = wire("remotePhyAddr", TEXT, None)
    local_socket: int | None = wire("localSocket", I64, None)
    hops: int | None = wire("packetHops", U64, None)
    reason: str | None = wire("reason", TEXT, None)


# ------------------------------------------------------------------------------- VL2


@dataclass(frozen=True, slots=True)
class OutgoingNetworkFrameDropped(TraceEvent):
    """A frame from the host side was not sent (0x2000, VERBOSE)."""

    EVENT_ID: ClassVar[int] = 0x2000
    LEVEL: ClassVar[TraceLevel] = TraceLevel.VERBOSE
    NAME: ClassVar[str] = "outgoingNetworkFrameDropped"
    timestamp: int = 0
    network: int = wire("networkId", U64)
    source_mac: int = wire("sourceMac", U64)
    dest_mac: int = wire("destMac", U64)
    ethertype: int = wire("etherType", U64)
    vlan_id: int = wire("vlanId", U64)
    frame_length: int = wire("frameLength", U64)
    reason: str | None = wire("reason", TEXT, None)


@dataclass(frozen=True, slots=True)
class IncomingNetworkAccessDenied(TraceEvent):
    """A peer without valid credentials sent us a frame (0x2001, VERBOSE)."""

    EVENT_ID: ClassVar[int] = 0x2001
    LEVEL: ClassVar[TraceLevel] = TraceLevel.VERBOSE
    NAME: ClassVar[str] = "incomingNetworkAccessDenied"
    timestamp: int = 0
    packet_id: int = wire("packetId", U64)
    packet_verb: int = wire("packetVerb", U64)
    source: int = wire("remoteZtAddr", ADDR)
    remote_physical: str | None = wire("remotePhyAddr", TEXT, None)
    local_socket: int | None = wire("localSocket", I64, None)
    network: int = wire("networkId", U64)


@dataclass(frozen=True, slots=True)
class IncomingNetworkFrameDropped(TraceEvent):
    """A frame from a peer was not delivered (0x2002, VERBOSE)."""

    EVENT_ID: ClassVar[int] = 0x2002
    LEVEL: ClassVar[TraceLevel] = TraceLevel.VERBOSE
    NAME: ClassVar[str] = "incomingNetworkFrameDropped"
    timestamp: int = 0
    packet_id: int = wire("packetId", U64)
    packet_verb: int = wire("packetVerb", U64)
    source: int = wire("remoteZtAddr", ADDR)
    remote_physical: str | None = wire("remotePhyAddr", TEXT, None)
    local_socket: int | None = wire("localSocket", I64, None)
    network: int = wire("networkId", U64)
    source_mac: int = wire("sourceMac", U64)
    dest_mac: int = wire("destMac", U64)
    reason: str | None = wire("reason", TEXT, None)


@dataclass(frozen=True, slots=True)
class CredentialRejected(TraceEvent):
    """A credential (COM, capability, tag, COO, revocation) was refused (0x2003)."""

    EVENT_ID: ClassVar[int] = 0x2003
    LEVEL: ClassVar[TraceLevel] = TraceLevel.NORMAL
    NAME: ClassVar[str] = "credentialRejected"
    timestamp: int = 0
    network: int = wire("networkId", U64)
    credential_type: int = wire("credType", U64)
    credential_id: int = wire("credId", U64)
    credential_timestamp: int | None = wire("credTs", U64, None)
    issued_to: int | None = wire("credIssuedTo", ADDR, None)
    info: int | None = wire("credInfo", U64, None)  # a tag's value
    target: int | None = wire("credRevocationTarget", ADDR, None)  # a revocation's target
    reason: str | None = wire("reason", TEXT, None)


@dataclass(frozen=True, slots=True)
class NetworkConfigRequestSent(TraceEvent):
    """We asked a controller for a network's config (0x2005; global target, DEBUG)."""

    EVENT_ID: ClassVar[int] = 0x2005
    LEVEL: ClassVar[TraceLevel] = TraceLevel.DEBUG
    NAME: ClassVar[str] = "networkConfigRequestSent"
    GLOBAL_ONLY: ClassVar[bool] = True
    timestamp: int = 0
    network: int = wire("networkId", U64)
    controller: int = wire("networkControllerId", ADDR)


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
    timestamp: int = 0
    network: int = wire("networkId", U64)
    source: int = wire("sourceZtAddr", ADDR)
    dest: int = wire("destZtAddr", ADDR)
    source_mac: int = wire("sourceMac", U64)
    dest_mac: int = wire("destMac", U64)
    ethertype: int = wire("etherType", U64)
    vlan_id: int = wire("vlanId", U64)
    no_tee: bool = wire("filterNoTee", FLAG, False)
    inbound: bool = wire("filterInbound", FLAG, False)
    result: int = wire("filterResult", I64)
    base_rule_log: bytes = wire("filterBaseRuleLog", BIN, b"")
    cap_rule_log: bytes | None = wire("filterCapRuleLog", BIN, None)
    matching_cap_id: int | None = wire("filterMatchingCapId", U64, None)
    frame_length: int = wire("frameLength", U64)
    frame_data: bytes | None = wire("frameData", BIN, None)

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

for _cls in EVENT_CLASSES.values():
    _cls.FIELDS = tuple(
        (f.name, *f.metadata["wire"], f.default is None) for f in fields(_cls) if "wire" in f.metadata
    )
del _cls


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
