"""A small simulated world for the hardening tests (not a test module itself):
a root, a controller node with a private network, and members that can join it,
plus helpers that send hand-made authenticated packets between nodes."""

from __future__ import annotations

from pathlib import Path

from ztcore.controller.live import EmbeddedController
from ztcore.controller.store import ControllerStore
from ztcore.identity import Identity
from ztcore.runtime.http_api import StoreControllerBackend
from ztcore.simulation import SimHost, SimNetwork, make_planet
from ztcore.vl1.peer import Peer

START_MS = 1_700_000_000_000


class VL2World:
    def __init__(self, identities: list[Identity], tmp: Path, *, members: int = 1, trace: bool = True) -> None:
        self.net = SimNetwork(start_ms=START_MS)
        ep = self.net.allocate_endpoint("10.0.0.1")
        planet, _ = make_planet([(identities[0], [ep])])
        self.planet = planet
        self.root = self.net.add_node(identity=identities[0], planet=planet, endpoint=ep)
        self.ctl = self.net.add_node(identity=identities[1], planet=planet, ip="10.0.1.1")
        self.members = [
            self.net.add_node(identity=identities[2 + i], planet=planet, ip=f"10.0.2.{i + 1}", trace=trace)
            for i in range(members)
        ]
        self.store = ControllerStore(tmp)
        self.controller = EmbeddedController(self.store)
        self.ctl.node.set_controller(self.controller)
        self.backend = StoreControllerBackend(self.store, int(self.ctl.node.address))
        self.backend.add_listener(self.controller)
        self.nw = self.backend.create_network(
            {
                "name": "hardening",
                "private": True,
                "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.20"}],
                "routes": [{"target": "10.147.17.0/24"}],
                "v4AssignMode": {"zt": True},
            }
        )
        self.nwid = int(self.nw["id"], 16)
        hosts = [self.ctl, *self.members]
        assert self.net.run_until(lambda: all(h.node.online for h in hosts))

    @property
    def hosts(self) -> list[SimHost]:
        return [self.root, self.ctl, *self.members]

    def status(self, host: SimHost) -> str | None:
        info = host.node.network(self.nwid)
        return None if info is None else str(info["status"])

    def join_all(self) -> None:
        for m in self.members:
            m.node.join(self.nwid)
            self.backend.post_member(self.nw["id"], str(m.node.address), {"authorized": True})
        assert self.net.run_until(lambda: all(self.status(m) == "OK" for m in self.members), 70_000)


def send_as(src: SimHost, dst: SimHost, verb: int, payload: bytes, *, encrypt: bool = True) -> None:
    """Deliver one packet from `src` to `dst`, armored with the key they share, as if
    `src` had sent it (it is authenticated: only its content may be hostile)."""
    peer = Peer.create(src.node.identity, dst.node.identity.public())
    peer.proto_version = 12
    wire = src.node.switch.armor_for(peer, verb, payload, encrypt)
    dst.node.process_wire_packet(src.net.now, 0, src.endpoint, wire)


def internal_errors(host: SimHost) -> int:
    return host.node.drops.get("internal_error", 0)
