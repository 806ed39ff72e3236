"""A private ZeroTier network on this machine for the examples: a throw-away
planet whose root is an in-process node on 127.0.0.1, a controller hosting one
private network (IPv4 10.147.17.0/24 and RFC4193 IPv6), and ``n`` member
nodes, joined and authorized. Everything runs in the current event loop."""

from __future__ import annotations

import asyncio
import ipaddress
import tempfile
import time
from dataclasses import dataclass

from ztcore.runtime import MemoryState, NodeService, Runtime
from ztcore.runtime.offline import start_controller, start_offline_root


@dataclass
class World:
    runtime: Runtime
    network_id: int
    members: list[NodeService]
    tmp: tempfile.TemporaryDirectory[str]

    def ipv4(self, member: NodeService) -> str:
        info = member.node.network(self.network_id) or {}
        for a in info.get("assignedAddresses", []):
            iface = ipaddress.ip_interface(a)
            if iface.version == 4:
                return str(iface.ip)
        raise LookupError("no IPv4 address")

    def broadcast(self) -> str:
        info = self.members[0].node.network(self.network_id) or {}
        for a in info.get("assignedAddresses", []):
            iface = ipaddress.ip_interface(a)
            if iface.version == 4:
                return str(iface.network.broadcast_address)
        raise LookupError("no IPv4 subnet")

    async def close(self) -> None:
        await self.runtime.stop_all()
        self.tmp.cleanup()


async def start_world(n: int, timeout: float = 30.0) -> World:
    runtime = Runtime()
    tmp = tempfile.TemporaryDirectory(prefix="ztcore-example-")
    try:
        planet, _root = await start_offline_root(runtime)
        _ctl, backend = await start_controller(runtime, planet, tmp.name)
        network = backend.create_network(
            {
                "name": "example",
                "private": True,
                "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.254"}],
                "routes": [{"target": "10.147.17.0/24"}],
                "v4AssignMode": {"zt": True},
                "v6AssignMode": {"zt": False, "6plane": False, "rfc4193": True},
            }
        )
        nwid = int(network["id"], 16)
        members = [
            await runtime.add_node(
                MemoryState(), port=0, bind=["127.0.0.1"], planet=planet, allow_loopback=True
            )
            for _ in range(n)
        ]
        for m in members:
            backend.post_member(network["id"], m.address_hex, {"authorized": True})
            m.join(nwid)
        deadline = time.monotonic() + timeout

        def ready(m: NodeService) -> bool:
            r = m.responder(nwid)
            return r is not None and len(r.addresses) >= 2

        while not all(ready(m) for m in members):
            if time.monotonic() > deadline:
                raise TimeoutError("members did not get their network configuration")
            await asyncio.sleep(0.02)
        return World(runtime, nwid, members, tmp)
    except BaseException:
        await runtime.stop_all()
        tmp.cleanup()
        raise
