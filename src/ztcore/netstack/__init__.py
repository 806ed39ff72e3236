"""A userspace IP stack for a node on a virtual network, sans-I/O (Ethernet frames
in, frames out through a callback): ARP, ICMP echo, IPv6 neighbour discovery,
ICMPv6 echo, UDP datagram sockets, IP fragmentation and reassembly, and TCP.
The asyncio face of it is ``ztcore.runtime.sockets``."""

from ztcore.netstack.responder import PingHandle, Responder
from ztcore.netstack.sockets import TcpEndpoints, TcpListener
from ztcore.netstack.tcp import EventKind, State, TcpConfig, TcpConnection, TcpEvent
from ztcore.netstack.udp import VirtualUdpSocket

__all__ = [
    "EventKind",
    "PingHandle",
    "Responder",
    "State",
    "TcpConfig",
    "TcpConnection",
    "TcpEndpoints",
    "TcpEvent",
    "TcpListener",
    "VirtualUdpSocket",
]
