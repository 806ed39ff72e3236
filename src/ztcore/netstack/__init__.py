"""A userspace IP stack for a node on a virtual network, sans-I/O (Ethernet frames
in, frames out through a callback): ARP, ICMP echo, IPv6 neighbour discovery,
ICMPv6 echo, UDP datagram sockets, IP fragmentation and reassembly, and TCP.
The asyncio face of it is ``ztcore.runtime.sockets``.

The names below are loaded on first use (PEP 562): a node that has joined no
network does not load the responder, UDP and TCP.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PingHandle": "responder",
    "Responder": "responder",
    "TcpEndpoints": "sockets",
    "TcpListener": "sockets",
    "EventKind": "tcp",
    "State": "tcp",
    "TcpConfig": "tcp",
    "TcpConnection": "tcp",
    "TcpEvent": "tcp",
    "VirtualUdpSocket": "udp",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
