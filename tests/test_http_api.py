"""The local HTTP JSON API: auth, node routes, controller routes and their zerotier-one shapes."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_client import ApiTestClient
from ztcore.controller.store import ControllerStore
from ztcore.runtime.http_api import HttpApiServer, NodeApi, StoreControllerBackend, make_app

TOKEN = "0123456789abcdefghijklmn"
AUTH = {"X-ZT1-Auth": TOKEN}
CTL = "abcdef0123"
JOINED = 0x8056C2E21C000001


class FakeNode:
    """A node side with zerotier-one shaped answers, recording what the API asked of it."""

    def __init__(self) -> None:
        self.nets: dict[int, dict[str, Any]] = {JOINED: self._net(JOINED)}
        self.settings: dict[int, dict[str, bool]] = {}
        self.fail = False

    @staticmethod
    def _net(nwid: int) -> dict[str, Any]:
        return {
            "id": f"{nwid:016x}",
            "nwid": f"{nwid:016x}",
            "mac": "32:aa:bb:cc:dd:ee",
            "name": "",
            "status": "REQUESTING_CONFIGURATION",
            "type": "PRIVATE",
            "mtu": 2800,
            "assignedAddresses": [],
            "routes": [],
            "portDeviceName": "zt0",
            "allowManaged": True,
        }

    def status(self) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("node is broken")
        return {
            "address": CTL,
            "online": True,
            "version": "1.14.1",
            "versionMajor": 1,
            "versionMinor": 14,
            "versionRev": 1,
            "publicIdentity": f"{CTL}:0:" + "00" * 64,
            "clock": 1,
        }

    def peers(self) -> list[dict[str, Any]]:
        return [
            {
                "address": "778cde7190",
                "latency": 12,
                "version": "-1.-1.-1",
                "versionMajor": -1,
                "versionMinor": -1,
                "versionRev": -1,
                "role": "PLANET",
                "paths": [
                    {
                        "address": "103.195.103.66/9993",
                        "active": True,
                        "expired": False,
                        "preferred": True,
                        "lastSend": 5,
                        "lastReceive": 6,
                    }
                ],
            }
        ]

    def networks(self) -> list[dict[str, Any]]:
        return list(self.nets.values())

    def network(self, nwid: int) -> dict[str, Any] | None:
        return self.nets.get(nwid)

    def join(self, nwid: int) -> dict[str, Any]:
        return self.nets.setdefault(nwid, self._net(nwid))

    def leave(self, nwid: int) -> bool:
        return self.nets.pop(nwid, None) is not None

    def set_network_settings(self, nwid: int, settings: dict[str, bool]) -> None:
        self.settings[nwid] = dict(settings)
        self.nets[nwid].update(settings)


class Recorder:
    """A controller listener that records every change it is told about."""

    def __init__(self) -> None:
        self.members: list[tuple[str, str, dict | None, dict | None]] = []
        self.networks: list[tuple[str, dict | None, dict | None]] = []

    def on_network_changed(self, nwid: str, old: dict | None, new: dict | None) -> None:
        self.networks.append((nwid, old, new))

    def on_member_changed(self, nwid: str, address: str, old: dict | None, new: dict | None) -> None:
        self.members.append((nwid, address, old, new))


class Env:
    def __init__(self, client: ApiTestClient, node: FakeNode, backend: StoreControllerBackend, rec: Recorder):
        self.client, self.node, self.backend, self.rec = client, node, backend, rec

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        headers = kw.pop("headers", AUTH)
        data = body if isinstance(body, str | bytes) or body is None else None
        json_body = None if data is not None or body is None else body
        r = await self.client.request(method, path, data=data, json=json_body, headers=headers, **kw)
        assert r.content_type == "application/json", (method, path, r.status)
        return r.status, await r.json()


def run(tmp_path: Path, test: Callable[[Env], Awaitable[None]]) -> None:
    async def main() -> None:
        node = FakeNode()
        store = ControllerStore(tmp_path)
        backend = StoreControllerBackend(store, CTL)
        rec = Recorder()
        backend.add_listener(rec)
        try:
            async with ApiTestClient(make_app(node, backend, TOKEN)) as client:
                await test(Env(client, node, backend, rec))
        finally:
            store.close()

    asyncio.run(main())


def test_fake_node_satisfies_protocol() -> None:
    assert isinstance(FakeNode(), NodeApi)


# ------------------------------------------------------------------------------------------
# Auth


def test_auth_required_and_both_forms_work(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        for path in ("/status", "/peer", "/network", "/controller", "/controller/network", "/no/such/route"):
            status, body = await env.call("GET", path, headers={})
            assert status == 401 and "error" in body
        status, _ = await env.call("GET", "/status", headers={"X-ZT1-Auth": "wrong"})
        assert status == 401
        status, _ = await env.call("GET", "/status?auth=wrong", headers={})
        assert status == 401
        # As in zerotier-one a present header decides, even if ?auth= would be right.
        status, _ = await env.call("GET", f"/status?auth={TOKEN}", headers={"X-ZT1-Auth": "wrong"})
        assert status == 401
        status, body = await env.call("GET", "/status", headers={"X-ZT1-Auth": TOKEN})
        assert status == 200 and body["address"] == CTL
        status, body = await env.call("GET", f"/status?auth={TOKEN}", headers={})
        assert status == 200 and body["online"] is True
        status, _ = await env.call("GET", "/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        status, _ = await env.call("POST", "/controller/network", {"name": "x"}, headers={})
        assert status == 401 and env.backend.list_networks() == []

    run(tmp_path, t)


# ------------------------------------------------------------------------------------------
# Node routes


def test_node_routes(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        status, body = await env.call("GET", "/status")
        assert status == 200
        for k in ("address", "online", "version", "publicIdentity", "clock"):
            assert k in body
        status, peers = await env.call("GET", "/peer")
        assert status == 200 and isinstance(peers, list) and peers[0]["role"] == "PLANET"
        assert peers[0]["paths"][0]["address"] == "103.195.103.66/9993"
        status, peer = await env.call("GET", "/peer/778CDE7190")
        assert status == 200 and peer == peers[0]
        assert (await env.call("GET", "/peer/1111111111"))[0] == 404
        assert (await env.call("GET", "/peer/xyz"))[0] == 400

        status, nets = await env.call("GET", "/network")
        assert status == 200 and [n["nwid"] for n in nets] == [f"{JOINED:016x}"]
        for k in (
            "id",
            "nwid",
            "mac",
            "name",
            "status",
            "type",
            "assignedAddresses",
            "routes",
            "portDeviceName",
        ):
            assert k in nets[0]
        status, nw = await env.call("GET", f"/network/{JOINED:016x}")
        assert status == 200 and nw["id"] == f"{JOINED:016x}"
        assert (await env.call("GET", "/network/1111111111111111"))[0] == 404
        assert (await env.call("GET", "/network/123"))[0] == 400

        # Join with and without local settings; clients send an empty JSON body too.
        status, nw = await env.call(
            "POST", "/network/1111111111111111", "", headers={**AUTH, "Content-Type": "application/json"}
        )
        assert status == 200 and nw["nwid"] == "1111111111111111" and 0x1111111111111111 in env.node.nets
        status, nw = await env.call(
            "POST", "/network/1111111111111111", {"allowManaged": False, "allowDNS": True}
        )
        assert status == 200 and env.node.settings[0x1111111111111111] == {
            "allowManaged": False,
            "allowDNS": True,
        }
        assert nw["allowManaged"] is False
        assert (await env.call("POST", "/network/1111111111111111", {"allowGlobal": "yes"}))[0] == 400
        assert (await env.call("POST", "/network/1111111111111111", "{oops"))[0] == 400

        status, body = await env.call(
            "DELETE", "/network/1111111111111111", headers={**AUTH, "Content-Type": "application/json"}
        )
        assert status == 200 and body == {"result": True} and 0x1111111111111111 not in env.node.nets
        assert (await env.call("DELETE", "/network/1111111111111111"))[0] == 404

    run(tmp_path, t)


def test_errors_are_json_and_server_survives(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        status, body = await env.call("PATCH", "/status")
        assert status == 405 and "error" in body
        status, body = await env.call("GET", "/nothing/here")
        assert status == 404 and "error" in body
        env.node.fail = True
        status, body = await env.call("GET", "/status")
        assert status == 500 and "error" in body
        env.node.fail = False
        assert (await env.call("GET", "/status"))[0] == 200

    run(tmp_path, t)


# ------------------------------------------------------------------------------------------
# Controller: networks


def test_controller_status(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        status, body = await env.call("GET", "/controller")
        assert status == 200
        assert set(body) == {"controller", "apiVersion", "clock", "databaseReady"}
        assert body["controller"] is True and body["apiVersion"] == 4 and body["databaseReady"] is True
        assert abs(body["clock"] - time.time() * 1000) < 60_000

    run(tmp_path, t)


def test_network_create_read_update_delete(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        status, nw = await env.call("POST", f"/controller/network/{CTL}______", {"name": "first"})
        assert status == 200 and nw["name"] == "first" and nw["revision"] == 1
        nwid = nw["id"]
        assert nwid[:10] == CTL and len(nwid) == 16 and nw["nwid"] == nwid and nw["objtype"] == "network"
        assert int(nwid[10:], 16) != 0
        # Uppercase controller prefix is the same address.
        status, nw2 = await env.call("POST", f"/controller/network/{CTL.upper()}______", None)
        assert status == 200 and nw2["id"] != nwid and nw2["name"] == ""
        # Someone else's address as prefix: 400, nothing created.
        status, body = await env.call("POST", "/controller/network/1122334455______", {})
        assert status == 400 and "error" in body
        # Newer clients create with POST /controller/network.
        status, nw3 = await env.call("POST", "/controller/network", {"private": False})
        assert status == 200 and nw3["id"].startswith(CTL) and nw3["private"] is False

        status, ids = await env.call("GET", "/controller/network")
        assert status == 200 and sorted(ids) == sorted([nwid, nw2["id"], nw3["id"]])
        assert all(isinstance(i, str) for i in ids)

        status, got = await env.call("GET", f"/controller/network/{nwid}")
        assert status == 200 and got == nw
        # Partial update merges and bumps the revision; an identical POST does not.
        status, upd = await env.call(
            "POST",
            f"/controller/network/{nwid}",
            {"routes": [{"target": "10.9.0.0/16", "via": None}], "v6AssignMode": {"6plane": True}},
        )
        assert status == 200 and upd["revision"] == 2 and upd["name"] == "first"
        assert upd["routes"] == [{"target": "10.9.0.0/16", "via": None}]
        assert upd["v6AssignMode"] == {"rfc4193": False, "zt": False, "6plane": True}
        status, same = await env.call("POST", f"/controller/network/{nwid}", upd)  # whole object back
        assert status == 200 and same["revision"] == 2
        # POST to an unknown id creates it (a 404 here broke every UI once).
        status, made = await env.call("POST", f"/controller/network/{CTL}00abcd", {"name": "explicit"})
        assert status == 200 and made["id"] == f"{CTL}00abcd" and made["revision"] == 1
        status, made = await env.call("PUT", f"/controller/network/{CTL}00ABCD", {"name": "put"})
        assert status == 200 and made["id"] == f"{CTL}00abcd" and made["name"] == "put"

        status, gone = await env.call(
            "DELETE", f"/controller/network/{nwid}", headers={**AUTH, "Content-Type": "application/json"}
        )
        assert status == 200 and gone["id"] == nwid and gone["revision"] == 2
        assert (await env.call("GET", f"/controller/network/{nwid}"))[0] == 404
        assert (await env.call("DELETE", f"/controller/network/{nwid}"))[0] == 404

    run(tmp_path, t)


def test_network_bad_requests(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        _, nw = await env.call("POST", "/controller/network", {})
        nwid = nw["id"]
        cases = [
            ("POST", f"/controller/network/{nwid}", "{not json"),
            ("POST", f"/controller/network/{nwid}", "[1, 2]"),
            ("POST", f"/controller/network/{nwid}", {"mtu": "huge"}),
            ("POST", f"/controller/network/{nwid}", {"routes": [{"target": "300.0.0.0/8"}]}),
            ("POST", f"/controller/network/{nwid}", {"rules": [{"type": "BOGUS"}]}),
            ("POST", "/controller/network", "nope"),
            ("GET", "/controller/network/xyz", None),
            ("POST", "/controller/network/12345678901234567", {}),
            ("GET", f"/controller/network/{CTL}______", None),
        ]
        for method, path, body in cases:
            status, err = await env.call(method, path, body)
            assert 400 <= status < 500 and "error" in err, (method, path, body, status)
        assert (await env.call("GET", "/controller/network/1234567890abcdef"))[0] == 404
        status, after = await env.call("GET", f"/controller/network/{nwid}")
        assert after == nw  # nothing half-applied
        assert env.backend.list_networks() == [nwid]

    run(tmp_path, t)


# ------------------------------------------------------------------------------------------
# Controller: members


def test_member_authorize_deauthorize_flow(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        _, nw = await env.call("POST", "/controller/network", {"name": "m"})
        nwid = nw["id"]
        base = f"/controller/network/{nwid}/member"
        status, members = await env.call("GET", base)
        assert status == 200 and members == {}
        assert (await env.call("GET", f"{base}/1122334455"))[0] == 404

        # A member may be created by POST before it ever asks for a config.
        t0 = int(time.time() * 1000)
        status, m = await env.call("POST", f"{base}/1122334455", {"authorized": True, "name": "pc"})
        assert status == 200 and m["authorized"] is True and m["revision"] == 1
        assert m["id"] == m["address"] == "1122334455" and m["nwid"] == nwid and m["objtype"] == "member"
        assert m["lastAuthorizedCredentialType"] == "api" and m["lastAuthorizedTime"] >= t0
        for k in ("activeBridge", "noAutoAssignIps", "ipAssignments", "tags", "capabilities", "creationTime",
                  "lastDeauthorizedTime", "vMajor", "vMinor", "vRev", "vProto", "remoteTraceTarget", "remoteTraceLevel"):  # fmt: skip
            assert k in m
        status, members = await env.call("GET", base)
        assert members == {"1122334455": 1}

        status, m2 = await env.call("POST", f"{base}/1122334455", {"authorized": False})
        assert status == 200 and m2["authorized"] is False and m2["revision"] == 2
        assert m2["lastDeauthorizedTime"] >= m["lastAuthorizedTime"]
        status, m3 = await env.call("POST", f"{base}/1122334455", {"authorized": False})
        assert m3["revision"] == 2  # nothing changed
        status, m4 = await env.call("PUT", f"{base}/1122334455", {"tags": [[5, 1]], "capabilities": [3]})
        assert m4["tags"] == [[5, 1]] and m4["capabilities"] == [3] and m4["revision"] == 3
        await env.call("POST", f"{base}/99aabbccdd", {})
        status, members = await env.call("GET", base)
        assert members == {"1122334455": 3, "99aabbccdd": 1}
        status, got = await env.call("GET", f"{base}/1122334455")
        assert got == m4

        # The listener saw the authorization, then the deauthorization (with both records).
        changes = [
            (old and old["authorized"], new and new["authorized"])
            for _, a, old, new in env.rec.members
            if a == "1122334455"
        ]
        assert changes == [(None, True), (True, False), (False, False)]

        status, unstable = await env.call("GET", f"/unstable/controller/network/{nwid}/member")
        assert status == 200 and unstable["meta"] == {"totalCount": 2, "authorizedCount": 0}
        assert sorted(x["id"] for x in unstable["data"]) == ["1122334455", "99aabbccdd"]
        await env.call("POST", f"{base}/99aabbccdd", {"authorized": True})
        status, unstable = await env.call("GET", "/unstable/controller/network")
        assert unstable["meta"] == {"networkCount": 1}
        assert unstable["data"][0]["id"] == nwid
        assert unstable["data"][0]["meta"] == {"totalMemberCount": 2, "authorizedMemberCount": 1}

        status, gone = await env.call("DELETE", f"{base}/1122334455")
        assert status == 200 and gone == m4
        assert (await env.call("GET", f"{base}/1122334455"))[0] == 404
        assert (await env.call("DELETE", f"{base}/1122334455"))[0] == 404
        assert env.rec.members[-1][2:] == (m4, None)

        # Network deletion reports every member gone, then the network.
        await env.call("DELETE", f"/controller/network/{nwid}")
        _, address, old_m, new_m = env.rec.members[-1]
        assert address == "99aabbccdd" and old_m is not None and old_m["authorized"] is True and new_m is None
        assert env.rec.networks[-1][0] == nwid and env.rec.networks[-1][2] is None

    run(tmp_path, t)


def test_member_bad_requests(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        _, nw = await env.call("POST", "/controller/network", {})
        base = f"/controller/network/{nw['id']}/member"
        for path, body, want in (
            ("/controller/network/1234567890abcdef/member/1122334455", {"authorized": True}, 404),
            ("/controller/network/1234567890abcdef/member", None, 404),
            ("/unstable/controller/network/1234567890abcdef/member", None, 404),
            (f"{base}/11223344", {}, 400),
            (f"{base}/ff22334455", {}, 400),
            (f"{base}/0000000000", {}, 400),
            (f"{base}/1122334455", "{bad", 400),
            (f"{base}/1122334455", {"authorized": "maybe"}, 400),
            (f"{base}/1122334455", {"ipAssignments": ["1.2.3.999"]}, 400),
            (f"{base}/1122334455", {"tags": [1, 2]}, 400),
        ):
            status, err = await env.call("GET" if body is None else "POST", path, body)
            assert status == want and "error" in err, (path, body, status)
        assert (await env.call("GET", base))[1] == {}  # nothing was created

    run(tmp_path, t)


def test_ip_auto_assignment_on_authorize(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        _, nw = await env.call(
            "POST",
            f"/controller/network/{CTL}______",
            {
                "v4AssignMode": {"zt": True},
                "routes": [{"target": "10.147.20.0/24", "via": None}],
                "ipAssignmentPools": [{"ipRangeStart": "10.147.20.1", "ipRangeEnd": "10.147.20.254"}],
            },
        )
        base = f"/controller/network/{nw['id']}/member"
        _, pending = await env.call("POST", f"{base}/1122334455", {"name": "not yet"})
        assert pending["ipAssignments"] == []  # unauthorized: nothing
        assigned = set()
        for addr in ("1122334455", "1122334456", "5566778899"):
            _, m = await env.call("POST", f"{base}/{addr}", {"authorized": True})
            assert len(m["ipAssignments"]) == 1
            ip = ipaddress.IPv4Address(m["ipAssignments"][0])
            assert ipaddress.IPv4Address("10.147.20.1") <= ip < ipaddress.IPv4Address("10.147.20.254")
            assigned.add(str(ip))
        assert len(assigned) == 3  # no collisions
        # Re-authorizing or renaming keeps the address.
        _, m = await env.call("POST", f"{base}/1122334455", {"name": "renamed"})
        assert m["ipAssignments"][0] in assigned and len(m["ipAssignments"]) == 1
        # Explicit ipAssignments win; noAutoAssignIps members get none.
        _, m = await env.call(
            "POST", f"{base}/0011223344", {"authorized": True, "ipAssignments": ["10.147.20.77"]}
        )
        assert m["ipAssignments"] == ["10.147.20.77"]
        _, m = await env.call("POST", f"{base}/0011223345", {"authorized": True, "noAutoAssignIps": True})
        assert m["ipAssignments"] == []

    run(tmp_path, t)


# ------------------------------------------------------------------------------------------
# A real listening server


def test_server_listens_on_loopback(tmp_path: Path) -> None:
    async def main() -> None:
        store = ControllerStore(tmp_path)
        server = HttpApiServer(FakeNode(), StoreControllerBackend(store, CTL), TOKEN, 0)
        await server.start()
        try:
            assert server.port and "127.0.0.1" in server.bound
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{server.port}/status", headers=AUTH) as r:
                    assert r.status == 200 and r.content_type == "application/json"
                    assert (await r.json())["address"] == CTL
                async with s.get(f"http://127.0.0.1:{server.port}/controller") as r:
                    assert r.status == 401
        finally:
            await server.stop()
            store.close()

    asyncio.run(main())


def test_without_controller_its_routes_are_404(tmp_path: Path) -> None:
    async def main() -> None:
        async with ApiTestClient(make_app(FakeNode(), None, TOKEN)) as client:
            r = await client.get("/controller", headers=AUTH)
            assert r.status == 404 and "error" in await r.json()
            r = await client.get("/status", headers=AUTH)
            assert r.status == 200

    asyncio.run(main())


def test_make_app_needs_a_token() -> None:
    with pytest.raises(ValueError):
        make_app(FakeNode(), None, "")
