"""An offline ZeroTier world in one call, for demos, tests and local development.

`offline_world(n)` starts, in the running event loop, a throw-away planet whose only
root is an in-process node on 127.0.0.1, a controller node hosting one private
network (IPv4 from a pool, RFC4193 IPv6), and `n` member nodes that join it, are
authorized and have their addresses before it returns. Nothing leaves the machine.

    from ztcore.offline import offline_world

    async with offline_world(2) as world:
        a, b = world.members
        reader, writer = await a.open_connection(world.ipv4(b), 8080, network=world.network_id)

Every member is a `ztcore.runtime.NodeService`; `world.controller` hosts the network
and `world.backend` manages it (authorize, rules, tags, ...) as the local API does.
"""

from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from ztcore.runtime import MemoryState, NodeService, Runtime
from ztcore.runtime.http_api import StoreControllerBackend
from ztcore.runtime.offline import start_controller, start_offline_root
from ztcore.vl1.world import World

__all__ = ["OfflineWorld", "offline_world"]

HOST = "127.0.0.1"


@dataclass
class OfflineWorld:
    """What `offline_world` started; see the module docstring."""

    runtime: Runtime
    planet: World
    root: NodeService
    controller: NodeService
    backend: StoreControllerBackend
    network_id: int
    members: list[NodeService] = field(default_factory=list)
    timeout: float = 30.0
    ipv4_route: str = "10.147.17.0/24"

    @property
    def network_hex(self) -> str:
        return f"{self.network_id:016x}"

    async def add_member(self, *, authorize: bool = True) -> NodeService:
        """Start one more node and join it to the network; with `authorize`, return
        once it has its config and addresses (TimeoutError naming its status if not)."""
        node = await self.runtime.add_node(
            MemoryState(), port=0, bind=[HOST], planet=self.planet, allow_loopback=True
        )
        if authorize:
            self.authorize(node)
        node.join(self.network_id)
        self.members.append(node)
        if authorize:
            await node.wait_network(self.network_id, self.timeout)
        return node

    def authorize(self, member: NodeService | int | str, authorized: bool = True) -> dict[str, Any]:
        """Authorize (or deauthorize) a member on the network through the controller."""
        address = member.address_hex if isinstance(member, NodeService) else _address_hex(member)
        return self.backend.post_member(self.network_hex, address, {"authorized": authorized})

    def addresses(self, member: NodeService) -> list[str]:
        """The member's assigned addresses on the network, without prefix lengths."""
        info = (member.node.network(self.network_id) if member.node is not None else None) or {}
        return [str(ipaddress.ip_interface(a).ip) for a in info.get("assignedAddresses", [])]

    def ipv4(self, member: NodeService) -> str:
        """The member's IPv4 address on the network (LookupError if it has none)."""
        for a in self.addresses(member):
            if ipaddress.ip_address(a).version == 4:
                return a
        raise LookupError(f"{member.address_hex} has no IPv4 address on {self.network_hex}")

    def ipv4_broadcast(self) -> str:
        """The IPv4 broadcast address of the network's route (e.g. 10.147.17.255)."""
        return str(ipaddress.ip_network(self.ipv4_route, strict=False).broadcast_address)

    def ipv6(self, member: NodeService) -> str:
        """The member's RFC4193 IPv6 address on the network (LookupError if it has none)."""
        for a in self.addresses(member):
            if ipaddress.ip_address(a).version == 6:
                return a
        raise LookupError(f"{member.address_hex} has no IPv6 address on {self.network_hex}")


def _address_hex(value: int | str) -> str:
    return f"{int(value, 16) if isinstance(value, str) else int(value):010x}"


@asynccontextmanager
async def offline_world(
    members: int = 2,
    *,
    name: str = "ztcore-offline",
    ipv4_pool: tuple[str, str] = ("10.147.17.1", "10.147.17.254"),
    ipv4_route: str = "10.147.17.0/24",
    timeout: float = 30.0,
) -> AsyncIterator[OfflineWorld]:
    """Start an offline world with `members` authorized members (see the module
    docstring); everything is stopped and its temporary files removed on exit."""
    if members < 0:
        raise ValueError("members must not be negative")
    with tempfile.TemporaryDirectory(prefix="ztcore-offline-") as tmp:
        runtime = Runtime()
        try:
            planet, root = await start_offline_root(runtime, HOST)
            controller, backend = await start_controller(runtime, planet, tmp, HOST)
            network = backend.create_network(
                {
                    "name": name,
                    "private": True,
                    "ipAssignmentPools": [{"ipRangeStart": ipv4_pool[0], "ipRangeEnd": ipv4_pool[1]}],
                    "routes": [{"target": ipv4_route}],
                    "v4AssignMode": {"zt": True},
                    "v6AssignMode": {"zt": False, "6plane": False, "rfc4193": True},
                }
            )
            world = OfflineWorld(
                runtime,
                planet,
                root,
                controller,
                backend,
                int(network["id"], 16),
                timeout=timeout,
                ipv4_route=ipv4_route,
            )
            for _ in range(members):
                await world.add_member()
            yield world
        finally:
            await runtime.stop_all()
