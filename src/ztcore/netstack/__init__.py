"""A userspace responder for a node on a virtual network: ARP, ICMP echo,
IPv6 neighbour discovery, ICMPv6 echo and UDP datagram sockets, all
sans-I/O (Ethernet frames in, frames out through a callback)."""

from ztcore.netstack.responder import PingHandle, Responder
from ztcore.netstack.udp import VirtualUdpSocket

__all__ = ["PingHandle", "Responder", "VirtualUdpSocket"]
