"""Issue 8, local API: no client input produces a 5xx (a real Node and a real controller
store behind the API), and the controller refuses network ids it could never serve."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from api_client import ApiTestClient
from ztcore.controller.store import ControllerStore
from ztcore.identity import Identity
from ztcore.runtime.http_api import StoreControllerBackend, make_app
from ztcore.simulation import SimNetwork, make_planet

TOKEN = "0123456789abcdefghijklmn"
AUTH = {"X-ZT1-Auth": TOKEN}


class RealNodeApi:
    """The NodeApi over a real sans-I/O Node (as the runtime's adapter does)."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def status(self) -> dict[str, Any]:
        return self.node.status()

    def peers(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self.node.peers()]

    def networks(self) -> list[dict[str, Any]]:
        return self.node.networks()

    def network(self, nwid: int) -> dict[str, Any] | None:
        return self.node.network(nwid)

    def join(self, nwid: int) -> dict[str, Any]:
        return self.node.join(nwid)

    def leave(self, nwid: int) -> bool:
        return self.node.leave(nwid)

    def set_network_settings(self, nwid: int, settings: dict[str, bool]) -> None:
        self.node.set_network_settings(nwid, settings)


Call = Callable[[str, str, Any], Awaitable[tuple[int, Any]]]


def _run(tmp_path: Path, test: Callable[[Call, str], Awaitable[None]]) -> None:
    net = SimNetwork()
    root_id = Identity.generate()
    ep = net.allocate_endpoint("10.0.0.1")
    planet, _ = make_planet([(root_id, [ep])])
    host = net.add_node(planet=planet)
    address = f"{int(host.node.address):010x}"

    async def main() -> None:
        store = ControllerStore(tmp_path)
        backend = StoreControllerBackend(store, address)
        try:
            async with ApiTestClient(make_app(RealNodeApi(host.node), backend, TOKEN)) as client:

                async def call(method: str, path: str, body: Any) -> tuple[int, Any]:
                    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
                    r = await client.request(method, path, data=data, headers=AUTH)
                    assert r.content_type == "application/json", (method, path, r.status)
                    return r.status, await r.json()

                await test(call, address)
        finally:
            store.close()

    asyncio.run(main())


def test_joining_network_zero_is_a_400(tmp_path: Path) -> None:
    """Defect 4: Node.join raised ZTError, which the API answered with a 500."""

    async def test(call: Call, address: str) -> None:
        status, body = await call("POST", "/network/0000000000000000", {})
        assert status == 400, body
        assert "0000000000000000" in body["error"]
        status, _ = await call("POST", f"/network/{address}000001", {})
        assert status == 200

    _run(tmp_path, test)


def test_settings_errors_of_the_node_are_4xx(tmp_path: Path) -> None:
    async def test(call: Call, address: str) -> None:
        status, body = await call("POST", "/network/8056c2e21c000001", {"allowManaged": "yes"})
        assert status == 400, body

    _run(tmp_path, test)


def test_controller_refuses_network_ids_of_another_controller(tmp_path: Path) -> None:
    """Defect 5: a network id whose controller part is not our address was stored and
    answered 200 (members included), though no member could ever get a config."""

    async def test(call: Call, address: str) -> None:
        for foreign in ("ffffffffff000001", "0000000000000000", "8056c2e21c000001"):
            status, body = await call("POST", f"/controller/network/{foreign}", {"name": "x"})
            assert status == 400, (foreign, body)
            assert address in body["error"]
            status, _ = await call("POST", f"/controller/network/{foreign}/member/1122334455", {})
            assert status == 404
            assert (await call("GET", f"/controller/network/{foreign}", None))[0] == 404
        status, body = await call("GET", "/controller/network", None)
        assert body == []
        own = f"{address}00abcd"
        status, body = await call("POST", f"/controller/network/{own}", {"name": "mine"})
        assert status == 200 and body["id"] == own
        # The ______ form refuses a foreign address the same way.
        status, _ = await call("POST", "/controller/network/ffffffffff______", {})
        assert status == 400

    _run(tmp_path, test)


_FIELDS = [
    "name", "private", "authorized", "activeBridge", "ipAssignments", "noAutoAssignIps", "routes",
    "ipAssignmentPools", "v4AssignMode", "v6AssignMode", "rules", "rulesSource", "tags", "capabilities",
    "dns", "mtu", "multicastLimit", "enableBroadcast", "allowManaged", "allowGlobal", "allowDefault",
    "allowDNS", "remoteTraceTarget", "remoteTraceLevel", "ssoEnabled", "revision", "id", "nwid",
    "target", "via", "ipRangeStart", "ipRangeEnd", "zt", "rfc4193", "6plane", "type", "domain", "servers",
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, 2**64 + 5, -(2**70), rng.randrange(-1000, 100000)])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e300])
    if kind == 4:
        return rng.choice(
            ["", "x" * rng.randrange(300), "10.0.0.1", "10.0.0.0/8", "fd00::1/88", "1122334455",
             "ffffffffffffffff", "\u00e9\u2603", "drop;", "accept;", "0.0.0.0", "::", "zt0"]
        )
    if kind == 5:
        return rng.randrange(256)
    if kind in (6, 7):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(_FIELDS): _value(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_random_requests_to_every_route_never_get_a_5xx(tmp_path: Path) -> None:
    rng = random.Random(8)

    async def test(call: Call, address: str) -> None:
        own = f"{address}000042"
        assert (await call("POST", f"/controller/network/{own}", {"name": "seed"}))[0] == 200
        ids = [own, f"{address}______", "0000000000000000", "ffffffffffffffff", "zz", "1" * 40, "%00",
               f"{address}000043"]
        addrs = ["1122334455", address, "0000000000", "ffffffffff", "xyz", "12345678901", "-1"]
        routes = [
            "/status", "/peer", "/peer/{a}", "/network", "/network/{n}", "/controller",
            "/controller/network", "/controller/network/{n}", "/controller/network/{n}/member",
            "/controller/network/{n}/member/{a}", "/unstable/controller/network",
            "/unstable/controller/network/{n}/member",
        ]
        seen: dict[int, int] = {}
        for _ in range(1200):
            route = rng.choice(routes).format(n=rng.choice(ids), a=rng.choice(addrs))
            method = rng.choice(["GET", "POST", "PUT", "DELETE"])
            r = rng.randrange(6)
            if r == 0:
                body: Any = b"{not json"
            elif r == 1:
                body = rng.choice([[], 1, "x", None, True])
            else:
                body = {rng.choice(_FIELDS): _value(rng) for _ in range(rng.randrange(6))}
            status, answer = await call(method, route, body)
            assert status < 500, (method, route, body, status, answer)
            seen[status] = seen.get(status, 0) + 1
        # The run exercised both accepted and refused requests.
        assert seen.get(200, 0) > 50 and sum(n for s, n in seen.items() if 400 <= s < 500) > 200, seen

    _run(tmp_path, test)
