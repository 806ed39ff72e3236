"""A userspace IP stack for a node on a virtual network, sans-I/O (Ethernet frames
in, frames out through a callback): ARP, ICMP echo, IPv6 neighbour discovery,
ICMPv6 echo, UDP datagram sockets, IP fragmentation and reassembly, and TCP.
The asyncio face of it is ``ztcore.runtime.sockets``.

The names below are loaded on first use (PEP 562): a node that has joined no
network does not load the responder, UDP and TCP.
"""

from __future__ import annotations

from ztcore.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
