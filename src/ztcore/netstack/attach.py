"""One userspace `Responder` per joined network of a node, kept in step with the
network's configuration (MAC, assigned addresses) and fed the node's frames.

This is what makes a ztcore node pingable, and gives applications UDP on a
virtual network, without a TAP device or root. It is on by default in the
runtime; switch it off where the host has its own IP stack on the network.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ztcore.api import VirtualFrame
from ztcore.vl2.mac import MAC

if TYPE_CHECKING:
    from ztcore.netstack.responder import Responder

log = logging.getLogger(__name__)

# (network id, source MAC, dest MAC, ethertype, payload) -> sent into the node
FrameSender = Callable[[int, int, int, int, bytes], None]


class NetworkStacks:
    def __init__(self, send: FrameSender, clock: Callable[[], int]) -> None:
        self._send = send
        self._clock = clock
        self.responders: dict[int, Responder] = {}
        self.enabled = True
        # Told the earliest time a responder's TCP needs its timers run (see TcpEndpoints.wakeup).
        self._wakeup: Callable[[int], None] | None = None
        # Called after a responder appears, goes, changes addresses or is switched on or off.
        self.on_change: Callable[[], None] | None = None

    def set_wakeup(self, wakeup: Callable[[int], None] | None) -> None:
        self._wakeup = wakeup
        for responder in self.responders.values():
            responder.tcp.wakeup = wakeup

    def next_deadline(self) -> int | None:
        """The earliest TCP timer over all networks (None: nothing scheduled)."""
        deadlines = [d for r in self.responders.values() if (d := r.tcp.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    def on_network_config(self, network_id: int, operation: str, info: object | None) -> None:
        try:
            self._on_network_config(network_id, operation, info)
        finally:
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _on_network_config(self, network_id: int, operation: str, info: object | None) -> None:
        if operation == "destroy" or not isinstance(info, dict):
            gone = self.responders.pop(network_id, None)
            if gone is not None:
                gone.close(OSError(errno.ENETDOWN, f"left network {network_id:016x}"))
            return
        try:
            mac = MAC.parse(str(info["mac"]))
            addresses = [ipaddress.ip_interface(a) for a in info.get("assignedAddresses", [])]
            mtu = int(info.get("mtu", 2800))
        except (KeyError, ValueError, TypeError) as e:
            log.warning("network %016x: unusable config for the userspace stack: %s", network_id, e)
            return
        responder = self.responders.get(network_id)
        if responder is None or responder.mac != mac:
            if responder is not None:
                responder.close(OSError(errno.ENETRESET, "the node's MAC on the network changed"))

            def send(
                dest_mac: int, src_mac: int, ethertype: int, payload: bytes, nwid: int = network_id
            ) -> None:
                self._send(nwid, src_mac, dest_mac, ethertype, payload)

            # Loaded with the first network (an idle daemon that joined none does without it).
            from ztcore.netstack.responder import Responder

            responder = Responder(int(mac), send, mtu=mtu)
            responder.enabled = self.enabled
            responder.on_change = self._changed
            responder.tcp.wakeup = self._wakeup
            self.responders[network_id] = responder
        elif responder.mtu != mtu:
            responder.set_mtu(mtu)
        responder.set_addresses(addresses)

    def close_all(self, error: OSError) -> None:
        """End every connection and socket on every network (the node is stopping)."""
        for responder in self.responders.values():
            responder.close(error)

    def on_frame(self, frame: VirtualFrame) -> bool:
        responder = self.responders.get(frame.network_id)
        if responder is None or not self.enabled:
            return False
        return responder.handle_frame(
            frame.source_mac, frame.dest_mac, frame.ethertype, frame.data, self._clock()
        )

    def expire(self) -> None:
        now = self._clock()
        for responder in list(self.responders.values()):
            responder.expire(now)

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        for responder in self.responders.values():
            responder.enabled = enabled
        self._changed()

    def responder(self, network_id: int) -> Responder | None:
        return self.responders.get(int(network_id))
