"""NodeService / Runtime: real UDP sockets, timers, callbacks and shutdown, with a stand-in node.

The FakeNode below only records what the service hands it and answers b"ping"
datagrams with b"pong" through the callbacks, so the tests exercise the
service's sockets, timers and state plumbing rather than any protocol logic.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ztcore.api import Event, EventType, NodeCallbacks, StateObjectType
from ztcore.identity import Identity
from ztcore.runtime import service as service_mod
from ztcore.runtime.home import HomeDirectory, HomeDirectoryError, MemoryState
from ztcore.runtime.service import NodeService, PortInUseError, Runtime, ServiceError

SRC = Path(__file__).resolve().parent.parent / "src"


class FakeNode:
    """Minimal stand-in for ztcore.node.Node (same constructor and methods the service uses)."""

    interval_ms = 50

    def __init__(
        self, callbacks: NodeCallbacks, now: int, *, planet: object = None, allow_loopback: bool = False
    ) -> None:
        self.cb = callbacks
        self.planet = planet
        self.allow_loopback = allow_loopback
        self.received: list[tuple[int, tuple[str, int], bytes]] = []
        self.background_calls: list[int] = []
        self.shutdown_calls: list[int] = []
        self.fail_on_packet = False
        secret = callbacks.state_get(StateObjectType.IDENTITY_SECRET, ())
        self.address = int.from_bytes(os.urandom(5), "big") if secret is None else int(secret[:10], 16)
        callbacks.event(Event(EventType.UP))

    def process_wire_packet(self, now: int, local_socket: int, remote: tuple[str, int], data: bytes) -> None:
        if self.fail_on_packet:
            raise RuntimeError("simulated node bug")
        self.received.append((local_socket, remote, data))
        if data.startswith(b"ping"):
            self.cb.wire_packet_send(local_socket, remote, b"pong" + data[4:])

    def process_background_tasks(self, now: int) -> int:
        self.background_calls.append(now)
        return now + self.interval_ms

    def send_user_message(self, now: int, destination: int, type_id: int, data: bytes) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"address": f"{self.address:010x}", "online": False}

    def peers(self) -> list[Any]:
        return []

    def networks(self) -> list[Any]:
        return []

    def join(self, nwid: int) -> None:
        pass

    def leave(self, nwid: int) -> None:
        pass

    def shutdown(self, now: int) -> None:
        self.shutdown_calls.append(now)
        self.cb.event(Event(EventType.DOWN))


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout=20))


def have_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def udp_port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((host, port))
        return True
    except OSError:
        return False


def test_two_services_exchange_datagrams_ipv4() -> None:
    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            a = await rt.add_node(MemoryState(), bind=["127.0.0.1"], allow_loopback=True)
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            assert a.node.allow_loopback is True and b.node.allow_loopback is False
            assert a.primary_port != b.primary_port
            assert a.node.cb.wire_packet_send(-1, ("127.0.0.1", b.primary_port), b"ping-1") is True
            await until(lambda: len(a.node.received) == 1)
            ls_b, remote_b, data_b = b.node.received[0]
            assert data_b == b"ping-1"
            assert remote_b == ("127.0.0.1", a.primary_port)  # the source is A's bound socket
            assert ls_b in b.local_sockets
            assert a.node.received[0][1:] == (("127.0.0.1", b.primary_port), b"pong-1")
            assert a.counters.packets_out == 1 and a.counters.packets_in == 1
            assert b.counters.packets_in == 1 and b.counters.packets_out == 1
            assert a.counters.bytes_out == len(b"ping-1")

    run(main)


def test_ipv6_loopback() -> None:
    if not have_ipv6():
        pytest.skip("IPv6 UNAVAILABLE: this kernel cannot bind ::1, IPv6 transport not tested")

    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            a = await rt.add_node(MemoryState(), bind=["::1"])
            b = await rt.add_node(MemoryState(), bind=["::1"])
            assert a.node.cb.wire_packet_send(-1, ("::1", b.primary_port), b"ping6")
            await until(lambda: len(a.node.received) == 1)
            assert b.node.received[0][1] == ("::1", a.primary_port)
            assert a.node.received[0][2] == b"pong6"
            # No IPv4 socket: an IPv4 destination cannot be sent to.
            assert a.node.cb.wire_packet_send(-1, ("127.0.0.1", b.primary_port), b"x") is False

    run(main)


def test_dual_stack_same_port_and_socket_choice() -> None:
    if not have_ipv6():
        pytest.skip("IPv6 UNAVAILABLE: this kernel cannot bind ::1, dual-stack binding not tested")

    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            a = await rt.add_node(MemoryState(), bind=["127.0.0.1", "::1"])
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1", "::1"])
            # One port shared by the IPv4 and IPv6 socket, as zerotier-one binds.
            assert sorted(h for h, _ in a.local_addresses) == ["127.0.0.1", "::1"]
            assert {p for _, p in a.local_addresses} == {a.primary_port}
            v4 = next(ls for ls, (h, _) in a.local_sockets.items() if h == "127.0.0.1")
            v6 = next(ls for ls, (h, _) in a.local_sockets.items() if h == "::1")
            # The named local socket of the wrong family is replaced by one of the right family.
            assert a.node.cb.wire_packet_send(v4, ("::1", b.primary_port), b"to-v6")
            assert a.node.cb.wire_packet_send(v6, ("127.0.0.1", b.primary_port), b"to-v4")
            await until(lambda: len(b.node.received) == 2)
            got = {(d, r[0]) for _, r, d in b.node.received}
            assert got == {(b"to-v6", "::1"), (b"to-v4", "127.0.0.1")}
            by_data = {d: ls for ls, _, d in b.node.received}
            assert b.local_sockets[by_data[b"to-v6"]][0] == "::1"
            assert b.local_sockets[by_data[b"to-v4"]][0] == "127.0.0.1"

    run(main)


def test_default_bind_all_addresses() -> None:
    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            a = await rt.add_node(MemoryState())
            hosts = {h for h, _ in a.local_addresses}
            assert "0.0.0.0" in hosts
            if have_ipv6():
                assert "::" in hosts
            assert {p for _, p in a.local_addresses} == {a.primary_port}
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            assert b.node.cb.wire_packet_send(-1, ("127.0.0.1", a.primary_port), b"ping")
            await until(lambda: len(b.node.received) == 1)

    run(main)


def test_port_zero_picks_free_random_port_and_busy_port_fails() -> None:
    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            a = await rt.add_node(MemoryState(), port=0, bind=["127.0.0.1"])
            # zerotier-one's random range: 20000 + (r % 45500).
            assert 20000 <= a.primary_port < 65500
            assert not udp_port_free("127.0.0.1", a.primary_port)
            created: list[FakeNode] = []

            def counting_factory(*args: Any, **kwargs: Any) -> FakeNode:
                created.append(FakeNode(*args, **kwargs))
                return created[-1]

            busy = NodeService(
                MemoryState(), port=a.primary_port, bind=["127.0.0.1"], node_factory=counting_factory
            )
            with pytest.raises(PortInUseError):
                await busy.start()
            assert created == []  # the port is checked before a node is made
            with pytest.raises(PortInUseError):
                await rt.add_node(MemoryState(), port=a.primary_port, bind=["127.0.0.1"])
            assert len(rt.services) == 1
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1"], secondary_port=0)
            assert len(b.ports) == 2 and b.ports[0] == b.primary_port
            assert not udp_port_free("127.0.0.1", b.ports[1])

    run(main)


def test_explicit_bind_must_work() -> None:
    async def main() -> None:
        svc = NodeService(MemoryState(), bind=["192.0.2.77"], node_factory=FakeNode)  # TEST-NET, not local
        with pytest.raises(ServiceError):
            await svc.start()
        with pytest.raises(ServiceError):
            NodeService(MemoryState(), port=70000, node_factory=FakeNode)

    run(main)


def test_background_tasks_follow_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            a = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            a.node.interval_ms = 60
            await asyncio.sleep(0.5)
            calls = list(a.node.background_calls)
            assert 3 <= len(calls) <= 11, calls
            gaps = [y - x for x, y in itertools.pairwise(calls[1:])]
            assert all(45 <= g <= 400 for g in gaps), gaps

            # A deadline in the past must not turn into a busy loop (>= 10 ms apart).
            a.node.interval_ms = -5000
            n0 = len(a.node.background_calls)
            await asyncio.sleep(0.3)
            assert 3 <= len(a.node.background_calls) - n0 <= 31

            # A far deadline is clamped to the maximum delay.
            monkeypatch.setattr(service_mod, "MAX_BACKGROUND_DELAY_MS", 80)
            a.node.interval_ms = 10**9
            await asyncio.sleep(0.1)
            n1 = len(a.node.background_calls)
            await asyncio.sleep(0.45)
            assert 3 <= len(a.node.background_calls) - n1 <= 7

    run(main)


def test_node_errors_do_not_stop_service() -> None:
    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            a = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            b.node.fail_on_packet = True
            a.node.cb.wire_packet_send(-1, ("127.0.0.1", b.primary_port), b"ping")
            await until(lambda: b.counters.node_errors == 1)
            b.node.fail_on_packet = False
            a.node.cb.wire_packet_send(-1, ("127.0.0.1", b.primary_port), b"ping")
            await until(lambda: len(a.node.received) == 1)
            # Non-literal or malformed destinations are refused (no DNS lookups from the hot path).
            errors = a.counters.send_errors
            assert a.node.cb.wire_packet_send(-1, ("localhost", b.primary_port), b"x") is False
            assert a.node.cb.wire_packet_send(-1, ("127.0.0.1", 0), b"x") is False
            assert a.counters.send_errors == errors + 2

    run(main)


def test_stop_closes_sockets_and_shuts_node_down() -> None:
    async def main() -> None:
        events: list[Event] = []
        svc = NodeService(MemoryState(), bind=["127.0.0.1"], node_factory=FakeNode)
        svc.add_event_listener(events.append)
        await svc.start()
        assert [e.type for e in events] == [EventType.UP]  # listener added before start sees UP
        port = svc.primary_port
        node = svc.node

        seen: list[Event] = []

        async def consume() -> None:
            async for ev in svc.events():
                seen.append(ev)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        await svc.stop()
        await asyncio.wait_for(consumer, 2)  # the iterator ends with the service
        assert [e.type for e in seen] == [EventType.DOWN]
        assert len(node.shutdown_calls) == 1 and events[-1].type == EventType.DOWN
        assert udp_port_free("127.0.0.1", port)
        assert svc.local_addresses == [] and not svc.running
        n = len(node.background_calls)
        await asyncio.sleep(0.15)
        assert len(node.background_calls) == n  # timer cancelled
        await svc.stop()  # idempotent
        assert len(node.shutdown_calls) == 1

    run(main)


def test_state_goes_to_store_and_bad_identity_stops_start(tmp_path: Path) -> None:
    async def main() -> None:
        home = HomeDirectory(tmp_path / "zt")
        ident = Identity.generate()
        home.state_put(StateObjectType.IDENTITY_SECRET, (), ident.to_string(True).encode())
        svc = NodeService(home, bind=["127.0.0.1"], node_factory=FakeNode)
        await svc.start()
        assert svc.address == int(ident.address)  # the fake read it through the callbacks
        svc.node.cb.state_put(StateObjectType.PEER, (0x1234567890,), b"peer")
        assert (tmp_path / "zt" / "peers.d" / "1234567890.peer").read_bytes() == b"peer"
        await svc.stop()

        (tmp_path / "zt" / "identity.secret").write_bytes(b"broken")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        bad = NodeService(home, port=port, bind=["127.0.0.1"], node_factory=FakeNode)
        with pytest.raises(HomeDirectoryError):
            await bad.start()
        assert bad.local_addresses == [] and not bad.running
        assert udp_port_free("127.0.0.1", port)  # the socket bound for it was closed
        assert (tmp_path / "zt" / "identity.secret").read_bytes() == b"broken"

    run(main)


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


_CLI = [sys.executable, "-c", "from ztcore.cli.main import main; main()", "run"]


def test_cli_run_corrupt_home_exits_1(tmp_path: Path) -> None:
    home = tmp_path / "zt"
    home.mkdir()
    (home / "identity.secret").write_text("garbage")
    r = subprocess.run(
        [*_CLI, "--home", str(home), "--port", "0", "--bind", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_cli_env(),
    )
    assert r.returncode == 1
    assert "identity.secret" in r.stderr and "corrupt" in r.stderr
    assert "Traceback" not in r.stderr
    assert (home / "identity.secret").read_text() == "garbage"


def test_cli_run_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    import json
    import urllib.request

    from ztcore.simulation import make_planet
    from ztcore.vl1.world import save_world_file

    home = tmp_path / "zt"
    # A planet whose root (never started) is on loopback: the node makes no outside traffic.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        root_port = s.getsockname()[1]
    world, _ = make_planet([(Identity.generate(), [("127.0.0.1", root_port)])])
    save_world_file(tmp_path / "planet", world)
    proc = subprocess.Popen(
        [
            *_CLI,
            "--home",
            str(home),
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--allow-loopback",
            "--planet",
            str(tmp_path / "planet"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_cli_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert len(line) == 2, line
        address, port = line[0], int(line[1])
        assert len(address) == 10 and int(address, 16) > 0
        # The local JSON API takes the UDP port's number on TCP, as zerotier-one does; if
        # another process holds that TCP port (a random pick can meet one), it serves on a
        # free port, says so, and records that one. CLIs read it from zerotier-one.port.
        api_port = int((home / "zerotier-one.port").read_text())
        assert (home / "identity.secret").read_text().startswith(address + ":0:")
        assert not udp_port_free("127.0.0.1", port)
        token = (home / "authtoken.secret").read_text().strip()
        req = urllib.request.Request(f"http://127.0.0.1:{api_port}/status", headers={"X-ZT1-Auth": token})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["address"] == address
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert api_port == port or f"TCP port {port} is busy" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_real_nodes_reach_each_other_through_a_local_root() -> None:
    # The real Node on real sockets: a one-root planet on 127.0.0.1, two leaves that
    # come online through it and exchange a user message.
    from ztcore.runtime.offline import start_offline_root

    async def main() -> None:
        async with Runtime() as rt:
            planet, _root = await start_offline_root(rt)
            opts: dict[str, Any] = {"bind": ["127.0.0.1"], "planet": planet, "allow_loopback": True}
            a = await rt.add_node(MemoryState(), **opts)
            b = await rt.add_node(MemoryState(), **opts)
            await until(lambda: a.online and b.online, timeout=10)
            got: list[Event] = []
            b.add_event_listener(lambda e: got.append(e) if e.type == EventType.USER_MESSAGE else None)
            assert a.send_user_message(b.address, 42, b"over the runtime")
            await until(lambda: bool(got), timeout=10)
            assert got[0].data.source == a.address and got[0].data.data == b"over the runtime"
            assert a.counters.packets_in > 0 and a.counters.send_errors == 0

    run(main)


def test_joined_network_config_survives_a_restart(tmp_path: Path) -> None:
    # A member's network config is saved in networks.d and restored at the next start,
    # so the network is up again at once, even while its controller is unreachable.
    from ztcore.runtime.home import HomeDirectory
    from ztcore.runtime.offline import start_controller, start_offline_root, wait_until

    async def main() -> None:
        async with Runtime() as rt:
            planet, _root = await start_offline_root(rt)
            opts: dict[str, Any] = {"bind": ["127.0.0.1"], "planet": planet, "allow_loopback": True}
            ctl, backend = await start_controller(rt, planet, tmp_path / "ctl")
            nw = backend.create_network(
                {
                    "private": False,
                    "name": "kept",
                    "ipAssignmentPools": [{"ipRangeStart": "10.9.9.1", "ipRangeEnd": "10.9.9.9"}],
                    "routes": [{"target": "10.9.9.0/24"}],
                    "v4AssignMode": {"zt": True},
                }
            )
            nwid = int(nw["id"], 16)
            home = HomeDirectory(tmp_path / "member")
            member = await rt.add_node(home, **opts)
            member.join(nwid)
            assert await wait_until(lambda: (member.node.network(nwid) or {}).get("status") == "OK", 10)
            before = member.node.network(nwid)
            assert (tmp_path / "member" / "networks.d" / f"{nwid:016x}.conf").is_file()
            await rt.remove_node(member)
            await rt.remove_node(ctl)  # the controller is gone for the restart
            again = await rt.add_node(HomeDirectory(tmp_path / "member"), **opts)
            info = again.node.network(nwid)
            assert info is not None and info["status"] == "OK"
            assert info["name"] == "kept" and info["assignedAddresses"] == before["assignedAddresses"]

    run(main)
