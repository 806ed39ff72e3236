"""The boundary of the sans-I/O `Node`, shaped like ZeroTierOne.h.

Everything that crosses between a `Node` and the runner that drives it is
declared here: state object kinds, events, and the callbacks a runner
provides. Remote addresses cross as socket-style tuples ``(host, port)``;
``local_socket`` is an opaque integer the runner uses to name one of its
sockets (``-1`` = any).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


class StateObjectType(enum.IntEnum):
    """Kinds of persisted state, numbered as ZT_STATE_OBJECT_* ."""

    NULL = 0
    IDENTITY_PUBLIC = 1  # id: ()
    IDENTITY_SECRET = 2  # id: ()
    PLANET = 3  # id: ()
    MOON = 4  # id: (moon world id,)
    PEER = 5  # id: (address,)
    NETWORK_CONFIG = 6  # id: (network id,)


class EventType(enum.IntEnum):
    """Node events, numbered as ZT_EVENT_* ."""

    UP = 0
    OFFLINE = 1
    ONLINE = 2
    DOWN = 3
    FATAL_ERROR_IDENTITY_COLLISION = 4
    TRACE = 5
    USER_MESSAGE = 6
    REMOTE_TRACE = 7


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A VERB_USER_MESSAGE received from another node (ZT_UserMessage)."""

    source: int  # the sender's address (a ztcore.identity.Address)
    type_id: int  # the application's 64-bit message type
    data: bytes

    def __repr__(self) -> str:
        return f"UserMessage(source={int(self.source):010x}, type_id={self.type_id:#x}, data={self.data[:64]!r})"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    # USER_MESSAGE: a UserMessage; TRACE: a ztcore.tracing.TraceEvent;
    # REMOTE_TRACE: a ztcore.tracing.RemoteTrace
    data: Any = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VirtualFrame:
    """An Ethernet frame delivered by the node to the host side of a virtual network."""

    network_id: int
    source_mac: int
    dest_mac: int
    ethertype: int
    vlan_id: int
    data: bytes


class NodeCallbacks(Protocol):
    """What a runner gives a `Node` (the ZT_Node_Callbacks of ZeroTierOne.h).

    A runner may also offer ``wire_packets_send(local_socket, remote, datagrams)``: the
    pieces of one packet (a tuple of datagrams) to one address, in order, in one call
    (the runtime sends them with one sendmmsg). Without it they go one by one through
    ``wire_packet_send``."""

    def wire_packet_send(self, local_socket: int, remote: tuple[str, int], data: bytes, ttl: int = 0) -> bool:
        """Send one UDP datagram; returns False if it could not be sent."""
        ...

    def state_put(self, kind: StateObjectType, object_id: tuple[int, ...], data: bytes | None) -> None:
        """Store (or with ``data=None`` delete) one state object."""
        ...

    def state_get(self, kind: StateObjectType, object_id: tuple[int, ...]) -> bytes | None:
        """Load one state object, or None if there is none."""
        ...

    def event(self, event: Event) -> None:
        """Receive a node event."""
        ...

    def virtual_network_frame(self, frame: VirtualFrame) -> None:
        """Receive an Ethernet frame for the host side of a joined network."""
        ...

    def virtual_network_config(self, network_id: int, operation: str, config: object | None) -> None:
        """A network came up ("up"), changed ("update"), went down ("down") or was left ("destroy")."""
        ...
