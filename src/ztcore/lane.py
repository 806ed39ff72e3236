"""The Node's established-session fast lane: when it is filled, when it is emptied, and
the ICMP echo offload a runner may give it (the C side is ``ztcore._lane``).

The lane is a cache of decisions the general path made, for both directions. After
the general path has taken (or sent: `offer_sent`) a FRAME from a peer in memory over a kept path (``Switch._open_from_session``)
and the network accepted it without rules to evaluate -- its rules accept everything,
nothing is traced, the peer passed the network's gate -- the Node `offer`s that peer,
path and network to the lane, and the next such packets are checked, decrypted,
accounted and handed out in one C call (``receive``), and frames to that peer on that
network are armored in one (``send``). Anything the lane does not hold
goes the general way, which stays the reference: tests hold the two to each other.

The lane is emptied (`clear`) whenever what it caches may have changed: every ping
check (5 s: paths and peers come and go there), every packet other than a FRAME that
reaches the general path (HELLO, OK, credentials, configs, revocations, ...), a network
joined, left, reconfigured or traced, and the node's tracing switched on or off. The
next FRAME of each session takes the general path once and fills it again.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from ztcore.vl1.packet import Dearmored
    from ztcore.vl1.path import Path
    from ztcore.vl1.peer import Peer
    from ztcore.vl2.network import Network

log = logging.getLogger(__name__)

try:
    from ztcore import _lane
    from ztcore.crypto.armor import HAVE_C_ARMOR
except ImportError as _e:  # an install without the C extensions: the general path only
    log.debug("no fast lane: %s", _e)
    _lane = None  # type: ignore[assignment]
    HAVE_C_ARMOR = False

# ZTCORE_PURE_PYTHON_ARMOR keeps every packet on the reference path, the lane included;
# ZTCORE_NO_LANE=1 only the lane (for A/B comparisons).
AVAILABLE = (
    _lane is not None
    and HAVE_C_ARMOR
    and not os.environ.get("ZTCORE_PURE_PYTHON_ARMOR")
    and not os.environ.get("ZTCORE_NO_LANE")
)


class NodeLane:
    """The lane of one Node. `receive(now, local_socket, remote, data)` returns None (not
    the lane's: call ``Node.process_wire_packet(..., lane_tried=True)``), bytes (a reply to
    send back over the same local socket to `remote`), ``(network_id, source_mac,
    dest_mac, ethertype, payload)`` (a frame to deliver, as
    ``NodeCallbacks.virtual_network_frame``), True (a piece of a packet, kept) or
    ``(packet,)`` (put together from pieces it kept, for the general path:
    ``Node.lane_output`` hands on all of these). `send(now, network_id, source_mac,
    dest_mac, ethertype, data)` returns None (call ``Node.process_virtual_network_frame``)
    or ``(local_socket, remote, datagram or tuple of datagrams)`` to send
    (``Node.lane_send``)."""

    def __init__(self, node: Any, vl1_stats: dict[str, int], vl2_stats: dict[str, int]) -> None:
        assert _lane is not None
        self._node = node
        self._lane = _lane.Lane(int(node.identity.address), vl1_stats, vl2_stats)
        self.receive: Callable[[int, int, tuple[Any, ...], bytes], Any] = self._lane.receive
        self.send: Callable[[int, int, int, int, int, bytes], Any] = self._lane.send
        self.clear: Callable[[], None] = self._lane.clear
        self._echo: set[int] = set()

    @property
    def sessions(self) -> int:
        return int(self._lane.sessions)

    def offer(self, now: int, peer: Peer, path: Path, pkt: Dearmored) -> None:
        """A FRAME from `peer` over the kept `path` just went through the general path."""
        p = pkt.payload
        if not pkt.compressed and len(p) >= 10:
            network = self._node.get_network(int.from_bytes(p[:8], "big"))
            if network is not None and network.accepts_all():  # first: frames under rules pass by
                self._offer(now, peer, path, network)

    def offer_sent(self, now: int, network: Network, address: int) -> None:
        """The general path just sent a FRAME on `network` to `address` (traffic that only
        goes one way would otherwise reach the lane only when the peer sends something)."""
        peer = self._node.topology.get_peer(address)
        if peer is not None:
            path = peer.best_path(now)
            if path is not None and path.alive(now):
                self._offer(now, peer, path, network)

    def _offer(self, now: int, peer: Peer, path: Path, network: Network) -> None:
        node = self._node
        if (
            node.topology.is_upstream(peer.address)  # the root: the general way (upstream liveness)
            or not network.accepts_all()
            or node.filter_trace_wanted(network.id)
            or not network.gate(now, peer)  # also for sending: a session takes frames both ways
        ):
            return
        nwid = network.id
        peer_path = next((pp for pp in peer.paths if pp.path is path), None)
        if peer_path is None:
            return  # a path being confirmed: the general path sends the HELLO
        aes = peer.aes_keys_if_supported()
        siv = peer.aes_keys.siv.kernel
        if aes is not None and siv is None:
            return  # suite 3 on the pure-Python AES: no C to hand it to
        address = int(peer.address)
        # Frames to this peer will go out through the lane too, past the general path's
        # credential push: push now if due (the lane is emptied long before the next).
        node.vl2.push_credentials(now, network, address)
        self._lane.add_session(
            address,
            path.local_socket,
            path.address.to_tuple(),
            peer.key,
            siv,
            3 if aes is not None else 1,
            peer,
            path,
            peer_path,
        )
        self._lane.add_member(nwid, address, int(network.mac), network.mac_first_octet, network.mac_mask)

    def set_echo_offloads(self, offloads: dict[int, tuple[tuple[bytes, ...], int]]) -> None:
        """Answer ICMP echo requests to these IPv4 addresses in the lane:
        network id -> (4-byte addresses, MTU). Networks not named lose theirs."""
        for nwid in self._echo - offloads.keys():
            self._lane.clear_echo(nwid)
        for nwid, (addresses, mtu) in offloads.items():
            self._lane.set_echo(nwid, addresses, mtu)
        self._echo = set(offloads)


def make_lane(node: Any, vl1_stats: dict[str, int], vl2_stats: dict[str, int]) -> NodeLane | None:
    return NodeLane(node, vl1_stats, vl2_stats) if AVAILABLE else None
