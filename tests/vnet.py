"""Test helper: an offline ZeroTier world in one event loop — a root, a controller
with one private network (IPv4 pool, RFC4193 and 6PLANE), and N authorized
member nodes on 127.0.0.1 — for the socket tests and examples' tests."""

from __future__ import annotations

import asyncio
import ipaddress
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ztcore.runtime import MemoryState, NodeService, Runtime
from ztcore.runtime.offline import start_controller, start_offline_root


async def until(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class VNet:
    runtime: Runtime
    nwid: int
    members: list[NodeService]
    _tmp: tempfile.TemporaryDirectory[str] = field(repr=False)

    def addresses(self, svc: NodeService) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        info = svc.node.network(self.nwid) or {}
        return [ipaddress.ip_interface(a) for a in info.get("assignedAddresses", [])]

    def ipv4(self, svc: NodeService) -> str:
        return next(str(a.ip) for a in self.addresses(svc) if a.version == 4)

    def rfc4193(self, svc: NodeService) -> str:
        return next(str(a.ip) for a in self.addresses(svc) if a.version == 6 and a.network.prefixlen == 88)

    def sixplane(self, svc: NodeService) -> str:
        return next(str(a.ip) for a in self.addresses(svc) if a.version == 6 and a.network.prefixlen == 40)

    async def close(self) -> None:
        await self.runtime.stop_all()
        self._tmp.cleanup()


async def start_vnet(n: int = 2, timeout: float = 20.0, *, sixplane: bool = True) -> VNet:
    runtime = Runtime()
    tmp = tempfile.TemporaryDirectory(prefix="ztcore-vnet-")
    try:
        planet, _root = await start_offline_root(runtime)
        _ctl, backend = await start_controller(runtime, planet, tmp.name)
        network = backend.create_network(
            {
                "name": "vnet",
                "private": True,
                "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.254"}],
                "routes": [{"target": "10.147.17.0/24"}],
                "v4AssignMode": {"zt": True},
                "v6AssignMode": {"zt": False, "6plane": sixplane, "rfc4193": True},
            }
        )
        nwid = int(network["id"], 16)
        members = []
        for _ in range(n):
            members.append(
                await runtime.add_node(
                    MemoryState(), port=0, bind=["127.0.0.1"], planet=planet, allow_loopback=True
                )
            )
        await until(lambda: all(m.online for m in members), timeout, "members online")
        for m in members:
            m.join(nwid)
            backend.post_member(network["id"], m.address_hex, {"authorized": True})
        vnet = VNet(runtime, nwid, members, tmp)

        def ready(m: NodeService) -> bool:
            info = m.node.network(nwid) or {}
            r = m.responder(nwid)
            want = 3 if sixplane else 2
            return info.get("status") == "OK" and r is not None and len(r.addresses) >= want

        await until(lambda: all(ready(m) for m in members), timeout, "network configs")
        return vnet
    except BaseException:
        await runtime.stop_all()
        tmp.cleanup()
        raise
