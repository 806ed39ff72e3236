"""Tracing: the real core's trace events (``node/Trace.*``), typed.

`events` holds the event classes (ids, levels, fields), `wire` their remote-trace
Dictionary form, the VERB_REMOTE_TRACE payload and the controller's JSON record,
and `tracer` a node's tracer (ring buffer, local events, remote sending). This
package sits at the node layer: it imports from vl2 and below only.
"""

from ztcore.tracing.events import (
    EVENT_CLASSES,
    MAX_FRAME_DATA,
    MAX_REMOTE_TRACE_SIZE,
    RULE_LOG_BYTES,
    CredentialRejected,
    IncomingNetworkAccessDenied,
    IncomingNetworkFrameDropped,
    NetworkConfigRequestSent,
    NetworkFilterTrace,
    NodeNote,
    OutgoingNetworkFrameDropped,
    PacketInvalid,
    PacketMacFailure,
    PeerConfirmingUnknownPath,
    PeerLearnedNewPath,
    PeerRedirected,
    RemoteTrace,
    ResettingPathsInScope,
    TraceEvent,
    TraceLevel,
    UnknownTraceEvent,
    rule_log_entries,
)
from ztcore.tracing.tracer import Tracer
from ztcore.tracing.wire import controller_record, decode, encode, encode_payload, split_payload

__all__ = [
    "EVENT_CLASSES",
    "MAX_FRAME_DATA",
    "MAX_REMOTE_TRACE_SIZE",
    "RULE_LOG_BYTES",
    "CredentialRejected",
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
    "Tracer",
    "UnknownTraceEvent",
    "controller_record",
    "decode",
    "encode",
    "encode_payload",
    "rule_log_entries",
    "split_payload",
]
