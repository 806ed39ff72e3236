"""An offline ZeroTier world in one process: a throw-away planet whose only root is
an in-process ztcore node on loopback. Used by `ztnode demo`, the benchmarks and
tests, and handy in a REPL."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable

from ztcore.api import StateObjectType
from ztcore.controller.live import EmbeddedController
from ztcore.controller.store import ControllerStore
from ztcore.crypto import c25519_generate
from ztcore.identity import Identity
from ztcore.runtime.home import MemoryState
from ztcore.runtime.http_api import StoreControllerBackend
from ztcore.runtime.service import NodeService, Runtime
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.world import Root, World, WorldType


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port that is free on `host` right now (for a root whose port the planet names)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_loopback_planet(root: Identity, host: str, port: int) -> World:
    """A freshly signed planet (random id, signing key thrown away) with one root at host/port."""
    public, private = c25519_generate()
    return World.make(
        type=WorldType.PLANET,
        id=secrets.randbits(63) | 1,
        timestamp=int(time.time() * 1000),
        update_signing_public=public,
        update_signing_private=private,
        roots=[Root(root.public(), (InetAddress.parse(f"{host}/{port}"),))],
    )


def identity_state(identity: Identity) -> MemoryState:
    """In-memory node state holding `identity` (a node started on it uses that identity)."""
    state = MemoryState()
    state.state_put(StateObjectType.IDENTITY_SECRET, (), identity.to_string(include_private=True).encode())
    return state


async def start_offline_root(runtime: Runtime, host: str = "127.0.0.1") -> tuple[World, NodeService]:
    """Start a root node on `host` under a new planet; returns (planet, root service).
    Leaves join this world with ``runtime.add_node(..., planet=planet, allow_loopback=True)``."""
    identity = Identity.generate()
    port = free_udp_port(host)
    planet = make_loopback_planet(identity, host, port)
    root = await runtime.add_node(identity_state(identity), port=port, bind=[host], planet=planet, allow_loopback=True)
    return planet, root


async def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Poll `predicate` on the event loop until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


async def start_controller(
    runtime: Runtime, planet: World, store_dir: str | os.PathLike[str], host: str = "127.0.0.1"
) -> tuple[NodeService, StoreControllerBackend]:
    """Start a node that hosts an embedded network controller (SQLite store in
    `store_dir`); returns the node and the backend to create networks and members
    with (what the local JSON API's /controller routes use)."""
    node = await runtime.add_node(MemoryState(), port=0, bind=[host], planet=planet, allow_loopback=True)
    store = ControllerStore(store_dir)
    controller = EmbeddedController(store)
    node.node.set_controller(controller)
    backend = StoreControllerBackend(store, int(node.address))
    backend.add_listener(controller)
    return node, backend
