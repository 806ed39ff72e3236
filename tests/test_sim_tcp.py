"""TCP between two ztcore nodes in the deterministic simulator: the real Node, a
controller, the userspace stacks, simulated time, seeded loss and reordering on the
wire. Everything is reproducible: no sockets, no clock, no event loop."""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ztcore.api import VirtualFrame
from ztcore.controller.live import EmbeddedController
from ztcore.controller.store import ControllerStore
from ztcore.identity import Identity
from ztcore.netstack.attach import NetworkStacks
from ztcore.netstack.tcp import EventKind, TcpConnection, TcpEvent
from ztcore.runtime.http_api import StoreControllerBackend
from ztcore.simulation import SimHost, SimNetwork, make_planet


class SimStack:
    """A member's userspace stacks, fed the frames its node delivers (after the node's
    step, as the runtime does from its event loop)."""

    def __init__(self, net: SimNetwork, host: SimHost) -> None:
        self.net, self.host = net, host
        self.pending: list[VirtualFrame] = []
        self.stacks = NetworkStacks(self._send, lambda: net.now)
        host.virtual_network_frame = self.pending.append  # type: ignore[method-assign]
        host.virtual_network_config = self.stacks.on_network_config  # type: ignore[method-assign]

    def _send(self, nwid: int, src: int, dst: int, ethertype: int, data: bytes) -> None:
        assert self.host.node is not None
        self.host.node.process_virtual_network_frame(self.net.now, nwid, src, dst, ethertype, 0, data)

    def deliver(self) -> None:
        while self.pending:
            self.stacks.on_frame(self.pending.pop(0))


class Sink:
    """Takes every byte as it arrives (and says so, which keeps the window open)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.data = bytearray()
        self.events: list[EventKind] = []
        self.conns: list[TcpConnection] = []

    def tcp_accept(self, conn: TcpConnection) -> Sink:
        self.conns.append(conn)
        return self

    def tcp_event(self, conn: TcpConnection, event: TcpEvent) -> None:
        self.events.append(event.kind)
        if event.kind is EventKind.DATA:
            self.data += event.data
            self.table.consumed(conn, len(event.data), self.table.now)


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(4)]


class World:
    def __init__(self, identities: list[Identity], tmp: Path) -> None:
        self.net = SimNetwork()
        ep = self.net.allocate_endpoint("10.0.0.1")
        planet, _ = make_planet([(identities[0], [ep])])
        self.net.add_node(identity=identities[0], planet=planet, endpoint=ep)
        ctl = self.net.add_node(identity=identities[1], planet=planet, ip="10.0.1.1")
        self.a = self.net.add_node(identity=identities[2], planet=planet, ip="10.0.1.2")
        self.b = self.net.add_node(identity=identities[3], planet=planet, ip="10.0.1.3")
        store = ControllerStore(tmp)
        controller = EmbeddedController(store)
        assert ctl.node is not None
        ctl.node.set_controller(controller)
        backend = StoreControllerBackend(store, int(ctl.node.address))
        backend.add_listener(controller)
        nw = backend.create_network(
            {
                "name": "simtcp",
                "private": True,
                "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.20"}],
                "routes": [{"target": "10.147.17.0/24"}],
                "v4AssignMode": {"zt": True},
                "v6AssignMode": {"rfc4193": True},
            }
        )
        self.nwid = int(nw["id"], 16)
        self.sa, self.sb = SimStack(self.net, self.a), SimStack(self.net, self.b)
        for host in (self.a, self.b):
            assert host.node is not None
            backend.post_member(nw["id"], str(host.node.address), {"authorized": True})
            host.node.join(self.nwid)
        assert self.pump(lambda: all(self.addr(s, 4) and self.addr(s, 6) for s in (self.sa, self.sb)), 70_000)

    def responder(self, s: SimStack):  # type: ignore[no-untyped-def]
        return s.stacks.responder(self.nwid)

    def addr(self, s: SimStack, version: int) -> bytes | None:
        r = self.responder(s)
        for a in r.addresses if r is not None else []:
            if a.version == version:
                return a.ip.packed
        return None

    def pump(self, until: Callable[[], bool], timeout_ms: int) -> bool:
        """Run the simulation, the stacks' frames and TCP timers until ``until()``."""
        net = self.net
        end = net.now + timeout_ms
        while net.now <= end:
            for s in (self.sa, self.sb):
                s.deliver()
                s.stacks.expire()
            if until():
                return True
            nxt = min([h.deadline for h in net.hosts.values()] + ([net._queue[0][0]] if net._queue else []))
            tcp = [d for s in (self.sa, self.sb) if (d := s.stacks.next_deadline()) is not None]
            if tcp and min(tcp) < nxt:
                net.now = max(net.now, min(tcp))
            elif not net.step():
                return until()
        return until()

    def lossy_wire(self, seed: int, loss: float, reorder: float) -> None:
        rng = random.Random(seed)
        net = self.net
        members = {self.a.endpoint, self.b.endpoint}

        def transmit(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
            if src in members and dst in members:
                x = rng.random()
                if x < loss:
                    return
                if x < loss + reorder:
                    extra = rng.randint(1, 3 * net.latency_ms)
                    heapq.heappush(net._queue, (net.now + net.latency_ms + extra, next(net._seq), src, dst, data))
                    return
            heapq.heappush(net._queue, (net.now + net.latency_ms, next(net._seq), src, dst, data))

        net.transmit = transmit  # type: ignore[method-assign]


@pytest.mark.parametrize("version", [4, 6])
def test_tcp_transfer_and_close_in_the_simulator(identities: list[Identity], tmp_path: Path, version: int) -> None:
    w = World(identities, tmp_path)
    ra, rb = w.responder(w.sa), w.responder(w.sb)
    server, client = Sink(rb.tcp), Sink(ra.tcp)
    rb.tcp.listen(80, server)
    src, dst = w.addr(w.sa, version), w.addr(w.sb, version)
    assert src is not None and dst is not None
    conn = ra.tcp.connect(src, dst, 80, client, w.net.now)
    assert w.pump(lambda: EventKind.CONNECTED in client.events, 10_000)
    assert conn.send_mss == 2800 - (40 if version == 4 else 60)  # MSS from the network's MTU
    data = random.Random(version).randbytes(300_000)
    ra.tcp.send(conn, data, w.net.now)
    ra.tcp.shutdown(conn, w.net.now)
    assert w.pump(lambda: EventKind.EOF in server.events, 60_000)
    assert bytes(server.data) == data
    rb.tcp.close(server.conns[0], w.net.now)
    assert w.pump(lambda: EventKind.CLOSED in client.events, 10_000)
    assert conn.state.value == "TIME_WAIT"


def test_lossy_reordering_wire_in_the_simulator(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    w.lossy_wire(seed=3, loss=0.05, reorder=0.05)
    ra, rb = w.responder(w.sa), w.responder(w.sb)
    server, client = Sink(rb.tcp), Sink(ra.tcp)
    rb.tcp.listen(443, server)
    src, dst = w.addr(w.sa, 4), w.addr(w.sb, 4)
    assert src is not None and dst is not None
    conn = ra.tcp.connect(src, dst, 443, client, w.net.now)
    data = random.Random(9).randbytes(2_000_000)
    ra.tcp.send(conn, data, w.net.now)  # queued before the handshake, and the FIN too
    ra.tcp.shutdown(conn, w.net.now)
    assert w.pump(lambda: EventKind.EOF in server.events, 3_600_000)
    assert hashlib.sha256(server.data).digest() == hashlib.sha256(data).digest()
    assert conn.counters["retransmits"] > 0
    assert ipaddress.ip_address(dst) in ipaddress.ip_network("10.147.17.0/24")
