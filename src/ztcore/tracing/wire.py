"""Trace events on the wire: the remote-trace Dictionary, VERB_REMOTE_TRACE payloads
and the JSON record zerotier-one's controller makes of a received trace.

* `encode` writes an event as the real core's ``Trace`` does: ``event`` first (the
  id as a hex string such as ``"2006"``), then the event's fields in the core's
  order, into a Dictionary of ZT_MAX_REMOTE_TRACE_SIZE (10000) bytes; a field that
  would not fit is left out, as the core's ``add`` leaves it out.
* `decode` reads one dictionary back into a typed event; anything malformed
  (hostile peers can send anything) raises `InvalidFormatError` and nothing else.
* `split_payload` cuts a VERB_REMOTE_TRACE payload into its NUL-terminated
  dictionaries the way ``IncomingPacket::_doREMOTE_TRACE`` does.
* `controller_record` is ``EmbeddedNetworkController::handleRemoteTrace``: every
  ``key=value`` line as a JSON string (empty values left out), plus ``id``,
  ``objtype: "trace"``, ``ts`` and ``nodeId``. The three binary fields (rule logs
  and frame bytes) are given in hex, since JSON strings cannot hold raw bytes.
"""

from __future__ import annotations

import re
from typing import Any

from ztcore.errors import InvalidFormatError
from ztcore.tracing.events import (
    EVENT_CLASSES,
    MAX_FRAME_DATA,
    MAX_REMOTE_TRACE_SIZE,
    RULE_LOG_BYTES,
    FieldKind,
    TraceEvent,
    UnknownTraceEvent,
)
from ztcore.vl2.dictionary import Dictionary

__all__ = [
    "BINARY_KEYS",
    "controller_record",
    "decode",
    "encode",
    "encode_payload",
    "split_payload",
]

BINARY_KEYS = frozenset(("filterBaseRuleLog", "filterCapRuleLog", "frameData"))
_U64_RE = re.compile(rb"[0-9a-fA-F]{1,16}")
_I64_RE = re.compile(rb"-?[0-9a-fA-F]{1,16}")
_MAX_BINARY = {"filterBaseRuleLog": RULE_LOG_BYTES, "filterCapRuleLog": RULE_LOG_BYTES, "frameData": MAX_FRAME_DATA}
_MAX_TEXT = 1024


def encode(event: TraceEvent) -> bytes:
    """The event's remote-trace dictionary (no terminating NUL)."""
    if isinstance(event, UnknownTraceEvent) or not event.EVENT_ID:
        raise ValueError(f"{type(event).__name__} has no remote-trace form")
    d = Dictionary(MAX_REMOTE_TRACE_SIZE)
    d.add("event", f"{event.EVENT_ID:04x}")
    for attr, key, kind, _optional in event.FIELDS:
        v = getattr(event, attr)
        if v is None:
            continue
        if kind in (FieldKind.U64, FieldKind.ADDRESS):
            value: str | bytes | int | bool = int(v) & 0xFFFFFFFFFFFFFFFF
        elif kind == FieldKind.I64:
            value = int(v)
        elif kind == FieldKind.FLAG:
            value = bool(v)
        elif kind == FieldKind.BINARY:
            raw = bytes(v)
            value = raw[:MAX_FRAME_DATA] if key == "frameData" else raw
            if not value and key == "frameData":
                continue  # the core sends frame bytes only for a non-empty frame
        else:
            value = str(v)
        d.add(key, value)
    return d.to_bytes()


def encode_payload(event: TraceEvent) -> bytes:
    """A VERB_REMOTE_TRACE payload carrying one event: its dictionary as a C string."""
    return encode(event) + b"\x00"


def split_payload(payload: bytes) -> list[bytes]:
    """The dictionaries in a VERB_REMOTE_TRACE payload: each NUL-terminated string
    of 1 to 10000 bytes; an unterminated tail is ignored, as the core ignores it."""
    out: list[bytes] = []
    start = 0
    while True:
        nul = payload.find(b"\x00", start)
        if nul < 0:
            return out
        n = nul - start
        if 0 < n <= MAX_REMOTE_TRACE_SIZE:
            out.append(bytes(payload[start:nul]))
        start = nul + 1


def _dictionary(data: bytes) -> Dictionary:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidFormatError("a remote trace must be bytes")
    raw = bytes(data)
    if not raw:
        raise InvalidFormatError("empty remote trace")
    if b"\x00" in raw:
        raise InvalidFormatError("a remote trace dictionary cannot contain NUL")
    if len(raw) > MAX_REMOTE_TRACE_SIZE:
        raise InvalidFormatError(f"remote trace of {len(raw)} bytes exceeds {MAX_REMOTE_TRACE_SIZE}")
    return Dictionary.from_bytes(raw, MAX_REMOTE_TRACE_SIZE + 1)


def _parse_u64(key: str, v: bytes) -> int:
    if not _U64_RE.fullmatch(v):
        raise InvalidFormatError(f"trace field {key!r} is not a hex integer")
    return int(v, 16)


def _parse_i64(key: str, v: bytes) -> int:
    if not _I64_RE.fullmatch(v):
        raise InvalidFormatError(f"trace field {key!r} is not a signed hex integer")
    n = int(v, 16)
    if not -(1 << 63) <= n < (1 << 63):
        raise InvalidFormatError(f"trace field {key!r} is outside int64")
    return n


def decode(data: bytes, *, timestamp: int = 0) -> TraceEvent:
    """One remote-trace dictionary as a typed event (`UnknownTraceEvent` for an event
    id this implementation does not know). Raises `InvalidFormatError` only."""
    d = _dictionary(data)
    ev = d.get("event", 16)
    if ev is None:
        raise InvalidFormatError("remote trace has no 'event' field")
    event_id = _parse_u64("event", ev)
    cls = EVENT_CLASSES.get(event_id)
    if cls is None:
        raw = {k.decode("utf-8", "replace"): v for k, v in d.items()}
        return UnknownTraceEvent(event_id=event_id, timestamp=timestamp, fields_raw=raw)
    values: dict[str, Any] = {"timestamp": timestamp}
    for attr, key, kind, optional in cls.FIELDS:
        v = d.get(key)
        if v is None:
            if optional:
                continue
            raise InvalidFormatError(f"{cls.NAME} trace lacks field {key!r}")
        if kind == FieldKind.U64:
            values[attr] = _parse_u64(key, v)
        elif kind == FieldKind.ADDRESS:
            n = _parse_u64(key, v)
            if n >> 40:
                raise InvalidFormatError(f"trace field {key!r} is not a 40-bit address")
            values[attr] = n
        elif kind == FieldKind.I64:
            values[attr] = _parse_i64(key, v)
        elif kind == FieldKind.FLAG:
            if v not in (b"0", b"1"):
                raise InvalidFormatError(f"trace field {key!r} is not 0 or 1")
            values[attr] = v == b"1"
        elif kind == FieldKind.BINARY:
            if len(v) > _MAX_BINARY[key]:
                raise InvalidFormatError(f"trace field {key!r} is longer than {_MAX_BINARY[key]} bytes")
            values[attr] = v
        else:
            if len(v) > _MAX_TEXT:
                raise InvalidFormatError(f"trace field {key!r} is longer than {_MAX_TEXT} bytes")
            values[attr] = v.decode("utf-8", "replace")
    return cls(**values)


def controller_record(
    data: bytes, *, origin: int, controller: int, now: int, counter: int
) -> dict[str, Any]:
    """The JSON object zerotier-one's controller makes of one received trace dictionary.

    Keys and values as received (later lines win, empty values left out), binary
    fields in hex, then ``id`` (controller-time-origin-counter), ``objtype``,
    ``ts`` and ``nodeId``. Raises `InvalidFormatError` for input that is not a
    remote-trace dictionary at all.
    """
    d = _dictionary(data)
    rec: dict[str, Any] = {}
    for k, v in d.items():
        key = k.decode("utf-8", "replace")
        if not v:
            continue
        rec[key] = v.hex() if key in BINARY_KEYS else v.decode("utf-8", "replace")
    rec["id"] = f"{controller & 0xFFFFFFFFFF:010x}-{now & 0xFFFFFFFFFFFFFFFF:016x}-{origin:010x}-{counter & 0xFFFF:04x}"
    rec["objtype"] = "trace"
    rec["ts"] = now
    rec["nodeId"] = f"{origin & 0xFFFFFFFFFF:010x}"
    return rec
