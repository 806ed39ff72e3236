"""Deterministic in-process simulation of many nodes on a virtual UDP wire.

No sockets, threads or real clock: a `SimNetwork` owns a simulated time, a
queue of datagrams in flight, and one `SimHost` per node implementing the
node callbacks. Tests and explorations use it to run the real `Node` code of
several nodes side by side and step time forward precisely.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ztcore.api import Event, EventType, StateObjectType, VirtualFrame
from ztcore.crypto import c25519_generate
from ztcore.identity import Identity
from ztcore.node import Node
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.world import Root, World, WorldType

SIM_EVENT_HISTORY = 16384  # events a SimHost keeps (oldest dropped first)


@dataclass
class SimHost:
    """Callbacks for one simulated node; records everything it sees (the latest
    SIM_EVENT_HISTORY events)."""

    net: SimNetwork
    endpoint: tuple[str, int]
    state: dict[tuple[int, tuple[int, ...]], bytes] = field(default_factory=dict)
    # The latest events only: a long or hostile simulation (a flood's drop traces) must not
    # keep every event it ever produced.
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=SIM_EVENT_HISTORY))
    frames: list[VirtualFrame] = field(default_factory=list)
    node: Node | None = None
    sent: int = 0
    deadline: int = 0
    event_hooks: list[Callable[[Event], None]] = field(default_factory=list)

    def wire_packet_send(self, local_socket: int, remote: tuple[str, int], data: bytes, ttl: int = 0) -> bool:
        self.sent += 1
        self.net.transmit(self.endpoint, (str(remote[0]), int(remote[1])), bytes(data))
        return True

    def state_put(self, kind: StateObjectType, object_id: tuple[int, ...], data: bytes | None) -> None:
        if data is None:
            self.state.pop((int(kind), tuple(object_id)), None)
        else:
            self.state[(int(kind), tuple(object_id))] = bytes(data)

    def state_get(self, kind: StateObjectType, object_id: tuple[int, ...]) -> bytes | None:
        return self.state.get((int(kind), tuple(object_id)))

    def event(self, event: Event) -> None:
        self.events.append(event)
        for hook in self.event_hooks:
            hook(event)

    def virtual_network_frame(self, frame: VirtualFrame) -> None:
        self.frames.append(frame)

    def virtual_network_config(self, network_id: int, operation: str, config: object | None) -> None:
        pass

    def events_of(self, kind: EventType) -> list[Event]:
        return [e for e in self.events if e.type == kind]


class SimNetwork:
    """A virtual UDP network with a fixed one-way latency and an optional loss filter."""

    def __init__(self, *, latency_ms: int = 5, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms
        self.latency_ms = latency_ms
        self.hosts: dict[tuple[str, int], SimHost] = {}
        self._queue: list[tuple[int, int, tuple[str, int], tuple[str, int], bytes]] = []
        self._seq = itertools.count()
        self._next_port = 20000
        # filter(src, dst, data) -> False drops the datagram (NAT / firewall simulation)
        self.filter: Callable[[tuple[str, int], tuple[str, int], bytes], bool] | None = None
        self.delivered = 0
        self.undeliverable = 0

    def allocate_endpoint(self, ip: str = "10.0.0.1") -> tuple[str, int]:
        self._next_port += 1
        return (ip, self._next_port)

    def transmit(self, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        if self.filter is not None and not self.filter(src, dst, data):
            return
        heapq.heappush(self._queue, (self.now + self.latency_ms, next(self._seq), src, dst, data))

    def add_node(
        self,
        *,
        identity: Identity | None = None,
        planet: World | None = None,
        ip: str = "10.0.0.1",
        endpoint: tuple[str, int] | None = None,
        allow_loopback: bool = True,
        trace: bool = False,
    ) -> SimHost:
        endpoint = endpoint if endpoint is not None else self.allocate_endpoint(ip)
        host = SimHost(self, endpoint)
        host.node = Node(
            host, self.now, planet=planet, identity=identity, allow_loopback=allow_loopback, trace=trace
        )
        host.deadline = self.now
        self.hosts[endpoint] = host
        return host

    def remove(self, host: SimHost) -> None:
        self.hosts.pop(host.endpoint, None)

    def step(self) -> bool:
        """Advance to the next datagram or timer; False when nothing is pending."""
        next_timer = min((h.deadline for h in self.hosts.values()), default=None)
        next_packet = self._queue[0][0] if self._queue else None
        candidates = [t for t in (next_timer, next_packet) if t is not None]
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        while self._queue and self._queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(self._queue)
            host = self.hosts.get(dst)
            if host is None or host.node is None:
                self.undeliverable += 1
                continue
            self.delivered += 1
            host.node.process_wire_packet(self.now, 0, src, data)
        for host in list(self.hosts.values()):
            if host.node is not None and host.deadline <= self.now:
                host.deadline = host.node.process_background_tasks(self.now)
        return True

    def run_for(self, ms: int) -> None:
        end = self.now + ms
        while self.now < end:
            # Nothing pending counts as "after end": run_for must not step past `end`.
            next_timer = min((h.deadline for h in self.hosts.values()), default=end + 1)
            next_packet = self._queue[0][0] if self._queue else end + 1
            if min(next_timer, next_packet) > end:
                self.now = end
                break
            self.step()

    def run_until(self, predicate: Callable[[], bool], timeout_ms: int = 60_000) -> bool:
        end = self.now + timeout_ms
        while self.now <= end:
            if predicate():
                return True
            if not self.step():
                return predicate()
        return predicate()


def make_planet(
    roots: list[tuple[Identity, list[tuple[str, int]]]],
    *,
    world_id: int = 0x5A7C0DE0001,
    timestamp: int = 1,
    signing_key: tuple[bytes, bytes] | None = None,
    world_type: WorldType = WorldType.PLANET,
) -> tuple[World, tuple[bytes, bytes]]:
    """Build a signed world whose roots are `roots` (identity, endpoints); returns
    the world and its (public, private) update signing key."""
    public, private = signing_key if signing_key is not None else c25519_generate()
    world = World.make(
        type=world_type,
        id=world_id,
        timestamp=timestamp,
        update_signing_public=public,
        update_signing_private=private,
        roots=[
            Root(identity=ident.public(), stable_endpoints=tuple(InetAddress.from_tuple(ep) for ep in eps))
            for ident, eps in roots
        ],
    )
    return world, (public, private)
