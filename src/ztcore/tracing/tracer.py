"""A node's tracer (the real core's ``Trace`` object): turns what VL1/VL2 report into
typed events, keeps the last N in a ring buffer, posts each one to the node's event
callback, and sends the ones a remote trace target asked for as VERB_REMOTE_TRACE.

Remote sending follows ``Trace.cpp``: an event goes to a network's target
(``tt``/``tl`` of that network's config) when it names that network and the
target's level is at least the event's level; ResettingPathsInScope goes to every
network's target; events the core reserves for a node-wide target (bad packets,
config requests) go only to the global target (`set_global_target`). The
dictionary is bounded to 10000 bytes and the frame excerpt to 256 bytes, as in
the core. The core has no rate limit of its own; ztcore adds one token bucket per
target (`REMOTE_BURST` traces, refilled at `REMOTE_RATE` a second) so a flood
of dropped frames cannot become a flood of traces; refused traces are counted.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Protocol

from ztcore.tracing.events import (
    RULE_LOG_BYTES,
    CredentialRejected,
    IncomingNetworkAccessDenied,
    IncomingNetworkFrameDropped,
    NetworkFilterTrace,
    NodeNote,
    OutgoingNetworkFrameDropped,
    PacketInvalid,
    PacketMacFailure,
    PeerConfirmingUnknownPath,
    PeerLearnedNewPath,
    ResettingPathsInScope,
    TraceEvent,
    TraceLevel,
)
from ztcore.tracing.wire import encode_payload

__all__ = ["REMOTE_BURST", "REMOTE_RATE", "RING_SIZE", "Tracer", "TracerHost"]

log = logging.getLogger(__name__)

RING_SIZE = 1024
REMOTE_BURST = 100
REMOTE_RATE = 50  # traces per second and target, after the burst

# ztcore drop reasons -> the real core's reason texts.
_OUTBOUND_REASONS = {
    "filter_blocked_outbound": "filter blocked",
    "not_a_bridge": "not a bridge",
    "broadcast_disabled": "broadcast disabled",
    "multicast_disabled": "multicast disabled",
    "no_route_to_mac": "no route to MAC",
}
_INBOUND_REASONS = {
    "filter_blocked_inbound": "filter blocked",
    "bridging_not_allowed_remote": "bridging not allowed (remote)",
    "bridging_not_allowed_local": "bridging not allowed (local)",
    "multicast_disabled": "multicast disabled",
}
_HELLO_REASONS = {
    "hello_protocol_too_old": "protocol version too old",
    "hello_identity_address_mismatch": "identity/address mismatch",
    "address_collision": "address collision",
    "hello_illegal_state": "illegal alreadyAuthenticated state",
    "hello_rate_limited": "rate limit exceeded",
    "hello_invalid_identity": "invalid identity",
    "hello_bad_identity": "invalid identity",
}
_VERBS = {
    "FRAME": 0x0E,
    "EXT_FRAME": 0x0F,
    "MULTICAST_FRAME": 0x17,
    "HELLO": 0x01,
    "NETWORK_CREDENTIALS": 0x0A,
}
_CREDENTIAL_TYPES = {"COM": 1, "CAPABILITY": 2, "TAG": 3, "COO": 4, "REVOCATION": 6}


def _int(v: object, base: int = 16) -> int:
    """A trace field as an integer: ints as they are, text as hex (address, network id)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v.replace(":", ""), base)
        except ValueError:
            return 0
    return 0


class TracerHost(Protocol):
    def post_event(self, kind: object, data: object = None) -> None: ...

    def remote_trace_targets(self, network_id: int | None) -> list[tuple[int, int]]:
        """(target address, level) of one network's config, or of every network's (None)."""
        ...

    def send_remote_trace(self, now: int, destination: int, payload: bytes) -> None: ...


class Tracer:
    """One node's tracing: ring buffer, local events, remote sending."""

    def __init__(self, host: TracerHost, post: Callable[[TraceEvent], None], ring_size: int = RING_SIZE) -> None:
        self._host = host
        self._post = post
        self._ring: deque[tuple[int, TraceEvent]] = deque(maxlen=max(1, ring_size))
        self._seq = 0
        self.global_target = 0
        self.global_level = TraceLevel.NORMAL
        self._buckets: dict[int, tuple[float, int]] = {}
        self.stats: Counter[str] = Counter()

    # ------------------------------------------------------------------ ring buffer
    @property
    def last_seq(self) -> int:
        """Sequence number of the newest event (0 before the first)."""
        return self._seq

    def since(self, seq: int = 0, limit: int = RING_SIZE) -> list[tuple[int, TraceEvent]]:
        """Events newer than `seq` still in the ring, oldest first, at most `limit`."""
        out = [(s, e) for s, e in self._ring if s > seq]
        return out[: max(0, limit)]

    def set_global_target(self, target: int, level: int) -> None:
        """A node-wide remote trace target (the core's Node::setRemoteTrace...); 0 = none."""
        self.global_target = int(target) & 0xFFFFFFFFFF
        self.global_level = TraceLevel(level) if level in TraceLevel._value2member_map_ else TraceLevel.NORMAL

    # ------------------------------------------------------------------- recording
    def record(self, now: int, event: TraceEvent) -> TraceEvent:
        self._seq += 1
        self._ring.append((self._seq, event))
        self.stats[event.NAME] += 1
        self._post(event)
        if event.EVENT_ID and not isinstance(event, NodeNote):
            self._send_remote(now, event)
        return event

    def record_kind(self, now: int, kind: str, fields: dict[str, object]) -> TraceEvent:
        """Map a VL1/VL2 ``host.trace(kind, **fields)`` call to its typed event and record it."""
        return self.record(now, self.event_for(now, kind, fields))

    def network_filter(
        self,
        now: int,
        network_id: int,
        *,
        source: int,
        dest: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        vlan_id: int,
        no_tee: bool,
        inbound: bool,
        result: int,
        base_rule_log: bytes,
        cap_rule_log: bytes | None = None,
        matching_cap_id: int | None = None,
        frame: bytes = b"",
    ) -> NetworkFilterTrace:
        """Trace::networkFilter. Rule logs are padded to the core's 512 bytes."""
        frame = bytes(frame)
        ev = NetworkFilterTrace(
            timestamp=now,
            network=int(network_id),
            source=int(source) & 0xFFFFFFFFFF,
            dest=int(dest) & 0xFFFFFFFFFF,
            source_mac=int(source_mac),
            dest_mac=int(dest_mac),
            ethertype=int(ethertype),
            vlan_id=int(vlan_id),
            no_tee=bool(no_tee),
            inbound=bool(inbound),
            result=int(result),
            base_rule_log=bytes(base_rule_log)[:RULE_LOG_BYTES].ljust(RULE_LOG_BYTES, b"\x00"),
            cap_rule_log=(
                None
                if cap_rule_log is None
                else bytes(cap_rule_log)[:RULE_LOG_BYTES].ljust(RULE_LOG_BYTES, b"\x00")
            ),
            matching_cap_id=matching_cap_id,
            frame_length=len(frame),
            frame_data=frame[:256] if frame else None,
        )
        self.record(now, ev)
        return ev

    # --------------------------------------------------------------------- mapping
    def event_for(self, now: int, kind: str, f: dict[str, object]) -> TraceEvent:
        reason = str(f.get("reason", ""))
        network = _int(f.get("network"))
        if kind == "packet_dropped":
            source = _int(f.get("source"))
            remote = str(f["remote"]) if "remote" in f else None
            if reason == "bad_mac":
                return PacketMacFailure(now, source=source, remote_physical=remote, reason="invalid MAC")
            if reason in _HELLO_REASONS:
                return PacketInvalid(now, source=source, remote_physical=remote, reason=_HELLO_REASONS[reason])
            if reason in ("too_short", "decompression_failed", "internal_error", "malformed"):
                return PacketInvalid(now, source=source, remote_physical=remote, reason=reason.replace("_", " "))
        elif kind == "frame_dropped":
            peer = _int(f.get("peer"))
            if reason == "access_denied" and network:
                return IncomingNetworkAccessDenied(
                    now, packet_verb=_VERBS["FRAME"], source=peer, network=network
                )
            if reason == "malformed_vl2":
                verb = _VERBS.get(str(f.get("verb", "")), 0)
                return PacketInvalid(now, packet_verb=verb, source=peer, reason=str(f.get("error", reason)))
            if network and "source_mac" in f:
                if reason in _OUTBOUND_REASONS and f.get("inbound") is not True and not peer:
                    return OutgoingNetworkFrameDropped(
                        now,
                        network=network,
                        source_mac=_int(f.get("source_mac")),
                        dest_mac=_int(f.get("dest_mac")),
                        ethertype=_int(f.get("ethertype"), 10),
                        vlan_id=_int(f.get("vlan_id"), 10),
                        frame_length=_int(f.get("frame_len"), 10),
                        reason=_OUTBOUND_REASONS[reason],
                    )
                if reason in _INBOUND_REASONS and peer:
                    return IncomingNetworkFrameDropped(
                        now,
                        packet_verb=_VERBS.get(str(f.get("verb", "EXT_FRAME")), 0x0F),
                        source=peer,
                        network=network,
                        source_mac=_int(f.get("source_mac")),
                        dest_mac=_int(f.get("dest_mac")),
                        reason=_INBOUND_REASONS[reason],
                    )
        elif kind == "credential_rejected" and network:
            return CredentialRejected(
                now,
                network=network,
                credential_type=_CREDENTIAL_TYPES.get(str(f.get("credential", "COM")), 0),
                credential_id=_int(f.get("credential_id")),
                credential_timestamp=_int(f.get("credential_timestamp"), 10) if "credential_timestamp" in f else None,
                issued_to=_int(f.get("issued_to")) if "issued_to" in f else None,
                reason=reason or None,
            )
        elif kind == "peer_learned_new_path":
            return PeerLearnedNewPath(
                now,
                peer=_int(f.get("peer")),
                remote_physical=str(f.get("path", "")),
                local_socket=_int(f.get("local_socket"), 10),
            )
        elif kind == "peer_confirming_unknown_path":
            return PeerConfirmingUnknownPath(
                now,
                packet_verb=_int(f.get("verb"), 10),
                peer=_int(f.get("peer")),
                remote_physical=str(f.get("path", "")),
                local_socket=_int(f.get("local_socket"), 10),
            )
        elif kind == "resetting_paths_in_scope":
            return ResettingPathsInScope(
                now,
                reporter=_int(f.get("reporter")),
                reporter_physical=str(f.get("reporter_physical", "")),
                my_physical=str(f.get("my_physical", "")),
                ip_scope=_int(f.get("scope"), 10),
            )
        details = tuple((k, str(v)) for k, v in f.items() if k not in ("reason", "network"))
        return NodeNote(kind=kind, reason=reason, timestamp=now, network=network, details=details)

    # ---------------------------------------------------------------------- remote
    def _targets(self, event: TraceEvent) -> list[int]:
        level = int(event.LEVEL)
        out: list[int] = []
        if self.global_target and int(self.global_level) >= level:
            out.append(self.global_target)
        if not event.GLOBAL_ONLY:
            if isinstance(event, ResettingPathsInScope):
                pairs: Iterable[tuple[int, int]] = self._host.remote_trace_targets(None)
            elif event.network_id:
                pairs = self._host.remote_trace_targets(event.network_id)
            else:
                pairs = ()
            for target, tl in pairs:
                if target and tl >= level and target not in out:
                    out.append(target)
        return out

    def _allow(self, now: int, target: int) -> bool:
        tokens, last = self._buckets.get(target, (float(REMOTE_BURST), now))
        tokens = min(float(REMOTE_BURST), tokens + (now - last) * REMOTE_RATE / 1000.0)
        if tokens < 1.0:
            self._buckets[target] = (tokens, now)
            return False
        self._buckets[target] = (tokens - 1.0, now)
        if len(self._buckets) > 1024:
            self._buckets.clear()
        return True

    def _send_remote(self, now: int, event: TraceEvent) -> None:
        targets = self._targets(event)
        if not targets:
            return
        payload = encode_payload(event)
        for target in targets:
            if not self._allow(now, target):
                self.stats["remote_rate_limited"] += 1
                continue
            self.stats["remote_sent"] += 1
            self._host.send_remote_trace(now, target, payload)
