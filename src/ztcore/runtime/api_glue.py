"""Glue between a running `NodeService` and the local HTTP JSON API.

Owns `NodeServiceApi`, the `ztcore.runtime.http_api.NodeApi` adapter over a
`NodeService` (peer objects to zerotier-one's /peer JSON, /status completed
with the ``config.settings`` block zerotier-one's service adds), and
`start_local_api`, which starts the API on loopback with the home directory's
``authtoken.secret`` and records its port in ``zerotier-one.port``, where
zerotier-cli style clients look for it.

The API runs in the service's event loop, so the adapter calls the service and
its node directly, without locks.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ztcore.api import VirtualFrame
from ztcore.controller.model import ApiError
from ztcore.runtime import pcap
from ztcore.runtime.home import HomeDirectory
from ztcore.runtime.http_api import ControllerBackend, HttpApiServer
from ztcore.runtime.service import NodeService

__all__ = ["NodeServiceApi", "start_local_api"]

log = logging.getLogger(__name__)

# What a node without an updater reports; the same values as a zerotier-one build without one.
SOFTWARE_UPDATE = "disable"
SOFTWARE_UPDATE_CHANNEL = "release"


def _peer_json(peer: Any) -> dict[str, Any]:
    if isinstance(peer, Mapping):
        return dict(peer)
    to_json = getattr(peer, "to_json", None)
    if to_json is None:
        raise TypeError(f"peer {peer!r} has no JSON form")
    return dict(to_json())


class NodeServiceApi:
    """`NodeApi` over a `NodeService` (call from the service's event loop only).

    `home_path` is reported as ``config.settings.homeDir`` in /status.
    """

    def __init__(self, service: NodeService, home_path: str | None = None) -> None:
        self.service = service
        self.home_path = home_path

    @property
    def _node(self) -> Any:
        node = self.service.node
        if node is None:
            raise ApiError(503, "node not started")
        return node

    def status(self) -> dict[str, Any]:
        svc = self.service
        st = dict(svc.status())
        st["address"] = f"{int(svc.address):010x}"
        st["online"] = bool(st.get("online", svc.online))
        st.setdefault("tcpFallbackActive", False)
        ports = svc.ports
        settings: dict[str, Any] = {
            # No TCP relay in ztcore: UDP only, as zerotier-one with the relay disabled.
            "allowTcpFallbackRelay": False,
            "forceTcpRelay": False,
            "primaryPort": svc.primary_port,
            "secondaryPort": ports[1] if len(ports) > 1 else 0,
            "tertiaryPort": 0,
            "listeningOn": [f"{h}/{p}" for h, p in svc.local_addresses],
            "surfaceAddresses": [],
            "portMappingEnabled": False,
            "softwareUpdate": SOFTWARE_UPDATE,
            "softwareUpdateChannel": SOFTWARE_UPDATE_CHANNEL,
        }
        if self.home_path is not None:
            settings["homeDir"] = self.home_path
        config = st.get("config")
        config = dict(config) if isinstance(config, Mapping) else {}
        given = config.get("settings")
        # Settings the node itself reports win over the service's view.
        config["settings"] = {**settings, **(dict(given) if isinstance(given, Mapping) else {})}
        st["config"] = config
        return st

    def peers(self) -> list[dict[str, Any]]:
        return [_peer_json(p) for p in self.service.peers()]

    def networks(self) -> list[dict[str, Any]]:
        if not hasattr(self._node, "networks"):
            return []  # a node without virtual networks has joined none
        return [dict(n) for n in self.service.networks()]

    def network(self, nwid: int) -> dict[str, Any] | None:
        node = self._node
        getter = getattr(node, "network", None)
        if getter is not None:
            nw = getter(nwid)
            return dict(nw) if nw is not None else None
        want = f"{nwid:016x}"
        for nw in self.networks():
            if str(nw.get("nwid", nw.get("id", ""))).lower() == want:
                return nw
        return None

    def join(self, nwid: int) -> dict[str, Any]:
        if not hasattr(self._node, "join"):
            raise ApiError(501, "this node does not support virtual networks")
        result = self.service.join(nwid)
        if isinstance(result, Mapping):
            return dict(result)
        nw = self.network(nwid)
        if nw is None:
            raise ApiError(500, f"network {nwid:016x} missing right after join")
        return nw

    def leave(self, nwid: int) -> bool:
        if not hasattr(self._node, "leave"):
            return False
        return bool(self.service.leave(nwid))

    def capture(self, nwid: int | None, sink: Callable[[bytes, float], None]) -> Callable[[], None]:
        """Hand `sink` every packet from now on, pcap-ready: the node's UDP datagrams as
        IP packets (`nwid` None) or a joined network's frames, both directions, as
        Ethernet. Returns the function that stops it."""
        svc = self.service
        if nwid is None:

            def on_wire(direction: str, local: tuple[str, int], remote: tuple[str, int], data: bytes) -> None:
                src, dst = (remote, local) if direction == "in" else (local, remote)
                sink(pcap.udp_datagram(src, dst, data), time.time())

            return svc.add_wire_listener(on_wire)
        if self.network(nwid) is None:
            raise ApiError(404, f"network {nwid:016x} not joined")

        def on_frame(f: VirtualFrame) -> None:
            if f.network_id == nwid:
                sink(pcap.ethernet_frame(f.dest_mac, f.source_mac, f.ethertype, f.data, f.vlan_id), time.time())

        removers = [svc.add_frame_listener(on_frame), svc.add_local_frame_listener(on_frame)]

        def stop() -> None:
            for remove in removers:
                remove()

        return stop

    def traces(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """The node's ring buffer of trace events newer than `after`, as JSON objects."""
        getter = getattr(self._node, "traces", None)
        if getter is None:
            return []
        return [{"seq": seq, **ev.to_json()} for seq, ev in getter(after, limit)]

    def set_network_settings(self, nwid: int, settings: Mapping[str, bool]) -> None:
        setter = getattr(self._node, "set_network_settings", None)
        if setter is None:
            raise ApiError(501, "this node does not support per-network settings")
        setter(nwid, dict(settings))


async def start_local_api(
    service: NodeService,
    home: HomeDirectory,
    port: int,
    controller_backend: ControllerBackend | None,
    *,
    fallback: bool = False,
    hosts: tuple[str, ...] = ("127.0.0.1", "::1"),
) -> HttpApiServer:
    """Serve the API for `service` on loopback at `port` (0 = a free port) and record it.

    With `fallback`, a busy `port` is replaced by a free one instead of failing
    (zerotier-one shares one number between UDP and the API, which another program
    may hold on TCP). The port actually used is written to ``zerotier-one.port``.
    """
    token = home.authtoken()
    api = NodeServiceApi(service, str(home.path))
    server = HttpApiServer(api, controller_backend, token, port, hosts=hosts)
    try:
        await server.start()
    except OSError as e:
        if not (fallback and port != 0 and e.errno in (errno.EADDRINUSE, errno.EACCES)):
            raise
        log.warning("TCP port %d is busy, serving the local API on a free port", port)
        server = HttpApiServer(api, controller_backend, token, 0, hosts=hosts)
        await server.start()
    assert server.port is not None
    try:
        home.write_port(server.port)
    except BaseException:
        await server.stop()
        raise
    return server
