"""`ztnode cli` against real `ztnode run` processes: zerotier-cli's output formats and exit codes.

Two nodes run as subprocesses on 127.0.0.1 with a self-made planet whose only
root is the first node, so nothing leaves the machine. The first node is also
the controller of the network the second one joins. What the CLI prints is
checked against zerotier-cli's formats (one.cpp) and against the API's own JSON,
fetched here with plain urllib.

Also holds the node-launching helpers `test_cli_controller` uses.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ztcore.cli.main import main
from ztcore.identity import Identity
from ztcore.simulation import make_planet
from ztcore.vl1.world import save_world_file

SRC = Path(__file__).resolve().parent.parent / "src"
START_TIMEOUT = 15.0


# ------------------------------------------------------------------------------------------
# Running nodes (shared with test_cli_controller)


@dataclass
class RunningNode:
    proc: subprocess.Popen[str]
    home: Path
    address: str
    udp_port: int
    log: Path

    @property
    def api_port(self) -> int:
        return int((self.home / "zerotier-one.port").read_text())

    @property
    def token(self) -> str:
        return (self.home / "authtoken.secret").read_text().strip()

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request to the node's API with plain urllib: (status, parsed JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=data,
            method=method,
            headers={"X-ZT1-Auth": self.token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.api("GET", path)
        assert status == 200, (path, status, body)
        return body

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_root_home(base: Path) -> tuple[Path, Path, int]:
    """A home with a fresh identity and a planet (saved next to it) whose only root is that identity."""
    home = base / "root"
    home.mkdir(parents=True)
    ident = Identity.generate()
    (home / "identity.secret").write_text(ident.to_string(include_private=True))
    port = free_udp_port()
    world, _ = make_planet([(ident, [("127.0.0.1", port)])])
    planet = base / "planet"
    save_world_file(planet, world)
    return home, planet, port


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_node(home: Path, planet: Path, *, port: int = 0, extra: tuple[str, ...] = ()) -> RunningNode:
    """`ztnode run` in a subprocess; returns once it printed "<address> <port>" (killed on failure)."""
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / f"{home.name}.stderr"
    args = [sys.executable, "-c", "from ztcore.cli.main import main; main()", "run"]
    args += ["--home", str(home), "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--planet", str(planet), "--allow-loopback", *extra]
    with open(log, "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True, env=_env())
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline().split() if ready else []
        assert len(line) == 2, f"ztnode run did not start: {line!r}\n{log.read_text()}"
        return RunningNode(proc, home, line[0], int(line[1]), log)
    except BaseException:
        stop_node(proc)
        raise


def stop_node(node: RunningNode | subprocess.Popen[str]) -> int | None:
    """SIGTERM, then SIGKILL if it does not stop within 5 s; returns the exit status."""
    proc = node.proc if isinstance(node, RunningNode) else node
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


def until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ztnode(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


# ------------------------------------------------------------------------------------------
# Fixture: a root/controller node and a leaf that joined one of its networks


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    base = tmp_path_factory.mktemp("cli")
    root_home, planet, root_port = make_root_home(base)
    nodes: list[RunningNode] = []
    try:
        root = start_node(root_home, planet, port=root_port)
        nodes.append(root)
        leaf = start_node(base / "leaf", planet)
        nodes.append(leaf)
        for n in nodes:
            until(lambda n=n: n.get("/status")["online"], what=f"{n.address} online")
        # A public network with a pool on the root's controller, for the leaf to join.
        status, nw = root.api(
            "POST",
            f"/controller/network/{root.address}______",
            {
                "name": "clinet",
                "private": False,
                "ipAssignmentPools": [{"ipRangeStart": "10.77.0.10", "ipRangeEnd": "10.77.0.20"}],
                "routes": [{"target": "10.77.0.0/24", "via": None}],
                "v4AssignMode": {"zt": True},
            },
        )
        assert status == 200, nw
        yield SimpleNamespace(root=root, leaf=leaf, nwid=nw["id"], base=base)
    finally:
        for n in nodes:
            stop_node(n)


def cli(node: RunningNode, *args: str) -> Result:
    return ztnode("cli", "--home", str(node.home), *args)


# ------------------------------------------------------------------------------------------
# info / status


def test_info_plain_and_json(net: SimpleNamespace) -> None:
    st = net.root.get("/status")
    r = cli(net.root, "info")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"200 info {net.root.address} {st['version']} ONLINE\n"
    assert cli(net.root, "status").stdout == r.stdout  # zerotier-cli's alias

    for args in (("-j", "info"), ("info", "-j")):
        r = cli(net.root, *args)
        assert r.exit_code == 0, r.output
        j = json.loads(r.stdout)
        assert j["address"] == net.root.address and j["online"] is True
        assert j["publicIdentity"].startswith(net.root.address + ":0:")
        # zerotier-cli prints nlohmann's dump(1): one-space indentation.
        assert r.stdout.startswith('{\n "')
    settings = j["config"]["settings"]
    assert settings["primaryPort"] == net.root.udp_port
    assert settings["homeDir"] == str(net.root.home)
    assert f"127.0.0.1/{net.root.udp_port}" in settings["listeningOn"]


def test_api_serves_on_the_udp_ports_number_and_records_it(net: SimpleNamespace) -> None:
    # zerotier-one serves TCP on the number of its UDP port; the port file tells clients.
    assert net.root.api_port == net.root.udp_port
    with socket.create_connection(("127.0.0.1", net.root.udp_port), timeout=5):
        pass


def test_home_from_environment(net: SimpleNamespace) -> None:
    r = ztnode("cli", "info", env={"ZTCORE_HOME": str(net.leaf.home)})
    assert r.exit_code == 0, r.output
    assert r.stdout.split()[:3] == ["200", "info", net.leaf.address]


def test_explicit_port_and_token(net: SimpleNamespace, tmp_path: Path) -> None:
    r = ztnode("cli", "--home", str(tmp_path), "-p", str(net.root.api_port), "-T", net.root.token, "info")
    assert r.exit_code == 0, r.output
    assert r.stdout.split()[2] == net.root.address


def test_raw_path_get(net: SimpleNamespace) -> None:
    r = cli(net.root, "/status")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["address"] == net.root.address
    r = cli(net.root, "/no/such/path")
    assert r.exit_code == 1
    assert r.stdout.startswith("404 /no/such/path ")


# ------------------------------------------------------------------------------------------
# peers


def test_listpeers_and_peers_show_the_root_from_the_leaf(net: SimpleNamespace) -> None:
    root, leaf = net.root, net.leaf
    peer = until(
        lambda: next(
            (p for p in leaf.get("/peer") if p["address"] == root.address and p["paths"]),
            None,
        ),
        what="leaf sees the root with a path",
    )
    path = f"127.0.0.1/{root.udp_port}"
    r = cli(leaf, "listpeers")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "200 listpeers <ztaddr> <path> <latency> <version> <role>"
    row = next(ln for ln in lines[1:] if ln.split()[2] == root.address)
    m = re.fullmatch(rf"200 listpeers {root.address} (\S+);(-?\d+);(-?\d+) (-?\d+) (\S+) (\S+)", row)
    assert m, row
    assert m.group(1) == path
    assert m.group(5) == peer["version"] and m.group(6) == "PLANET"

    r = cli(leaf, "peers")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[:2] == ["200 peers", "<ztaddr>   <ver>  <role> <lat> <link>   <lastTX> <lastRX> <path>"]
    row = next(ln for ln in lines[2:] if ln.startswith(root.address))
    # "%s %-6s %-6s %5d %s" with "DIRECT   %-8lld %-8lld %s"
    ver = peer["version"]
    m = re.fullmatch(
        rf"{root.address} {re.escape(ver)}{' ' * max(0, 6 - len(ver))} PLANET ([ \d-]{{5}}) "
        rf"DIRECT   ([-\d]+ *) ([-\d]+ *) {re.escape(path)}",
        row,
    )
    assert m, row
    assert len(m.group(2)) >= 8 and len(m.group(3)) >= 8

    r = cli(leaf, "-j", "peers")
    assert {p["address"] for p in json.loads(r.stdout)} == {p["address"] for p in leaf.get("/peer")}


def test_root_sees_the_leaf(net: SimpleNamespace) -> None:
    until(
        lambda: any(p["address"] == net.leaf.address for p in net.root.get("/peer")),
        what="root sees the leaf",
    )
    r = cli(net.root, "listpeers")
    rows = [ln.split() for ln in r.stdout.splitlines()[1:]]
    assert any(row[2] == net.leaf.address and row[-1] == "LEAF" for row in rows), r.stdout


# ------------------------------------------------------------------------------------------
# networks: join, listnetworks, get, leave


def test_join_listnetworks_get_leave(net: SimpleNamespace) -> None:
    leaf, nwid = net.leaf, net.nwid
    r = cli(leaf, "join", nwid)
    assert (r.exit_code, r.stdout) == (0, "200 join OK\n"), r.output
    nw = until(
        lambda: next((n for n in leaf.get("/network") if n["id"] == nwid and n["status"] == "OK"), None),
        what="network config from the root's controller",
    )
    assert nw["assignedAddresses"], nw
    ip = nw["assignedAddresses"][0]
    assert re.fullmatch(r"10\.77\.0\.(1\d|20)/24", ip), ip  # from the pool, with the route's bits

    r = cli(leaf, "listnetworks")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>"
    expect = (
        f"200 listnetworks {nwid} clinet {nw['mac']} OK PUBLIC {nw['portDeviceName']} "
        f"{','.join(nw['assignedAddresses'])}"
    )
    assert expect in lines[1:], r.stdout

    r = cli(leaf, "listnetworks", "-j")
    assert [n["id"] for n in json.loads(r.stdout)] == [n["id"] for n in leaf.get("/network")]

    assert cli(leaf, "get", nwid, "name").stdout == "clinet\n"
    assert cli(leaf, "get", nwid, "status").stdout == "OK\n"
    assert cli(leaf, "get", nwid, "ip4").stdout == ip.split("/")[0] + "\n"
    r = cli(leaf, "get", "0000000000000001", "name")
    assert r.exit_code == 1 and "unknown network ID" in r.stderr

    # Joining again is harmless; -j prints the network object.
    r = cli(leaf, "-j", "join", nwid)
    assert r.exit_code == 0 and json.loads(r.stdout)["id"] == nwid

    r = cli(leaf, "leave", nwid)
    assert (r.exit_code, r.stdout) == (0, "200 leave OK\n"), r.output
    assert all(n["id"] != nwid for n in leaf.get("/network"))
    r = cli(leaf, "listnetworks")
    assert r.stdout.splitlines()[1:] == []
    # Leaving a network not joined: zerotier-cli's "<code> leave <body>" and exit 1.
    r = cli(leaf, "leave", nwid)
    assert r.exit_code == 1 and r.stdout.startswith("404 leave "), r.output


@pytest.mark.parametrize("bad", ["xyz", "123456789abcdef", "123456789abcdef01", "g234567890abcdef"])
def test_bad_network_id_is_a_usage_error(net: SimpleNamespace, bad: str) -> None:
    for cmd in ("join", "leave"):
        r = cli(net.leaf, cmd, bad)
        assert r.exit_code == 2, r.output
        assert "invalid network id" in r.output
    assert all(n["id"] != bad for n in net.leaf.get("/network"))


def test_set_rejects_unknown_settings(net: SimpleNamespace) -> None:
    r = cli(net.leaf, "set", net.nwid, "bogus=1")
    assert r.exit_code == 2 and "allowManaged" in r.output
    r = cli(net.leaf, "set", net.nwid, "allowManaged")
    assert r.exit_code == 2


# ------------------------------------------------------------------------------------------
# errors: bad token, not running


def test_wrong_token_is_a_401_line_and_exit_1(net: SimpleNamespace) -> None:
    r = cli(net.root, "-T", "not-the-token", "info")
    assert r.exit_code == 1
    assert r.stdout.startswith("401 info ")
    assert json.loads(r.stdout[len("401 info ") :])["status"] == 401
    assert "token" in r.stderr
    r = cli(net.root, "-T", "not-the-token", "join", net.nwid)
    assert r.exit_code == 1 and r.stdout.startswith("401 join ")
    assert all(n["id"] != net.nwid for n in net.root.get("/network"))


def test_home_without_a_node(tmp_path: Path) -> None:
    r = ztnode("cli", "--home", str(tmp_path), "info")
    assert r.exit_code == 1
    assert "zerotier-one.port" in r.output and str(tmp_path) in r.output
    assert "Traceback" not in r.output


def test_node_not_running(tmp_path: Path) -> None:
    # A port file and a token left behind by a node that has stopped.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    (tmp_path / "zerotier-one.port").write_text(str(port))
    (tmp_path / "authtoken.secret").write_text("sometoken")
    for args in (("info",), ("listnetworks",), ("join", "8056c2e21c000001")):
        r = ztnode("cli", "--home", str(tmp_path), *args)
        assert r.exit_code == 1, r.output
        assert f"port {port}" in r.stderr and "running" in r.stderr
        assert "Traceback" not in r.output


def test_missing_token(tmp_path: Path) -> None:
    (tmp_path / "zerotier-one.port").write_text("9993")
    r = ztnode("cli", "--home", str(tmp_path), "info")
    assert r.exit_code == 1
    assert "authtoken.secret" in r.output


def test_stopped_node_stops_answering(tmp_path: Path) -> None:
    home, planet, port = make_root_home(tmp_path)
    node = start_node(home, planet, port=port, extra=("--no-controller",))
    try:
        assert cli(node, "info").exit_code == 0
    finally:
        assert stop_node(node) == 0
    r = cli(node, "info")
    assert r.exit_code == 1 and "cannot connect" in r.stderr


def test_busy_tcp_port_moves_the_api_and_the_port_file_follows(tmp_path: Path) -> None:
    home, planet, port = make_root_home(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))  # TCP at the UDP port's number is taken
        squatter.listen()
        node = start_node(home, planet, port=port, extra=("--no-controller",))
        try:
            assert node.udp_port == port and node.api_port != port
            r = cli(node, "info")
            assert r.exit_code == 0 and r.stdout.split()[2] == node.address
        finally:
            assert stop_node(node) == 0

        # An API port the user chose is not silently replaced: the node refuses to start.
        args = [sys.executable, "-c", "from ztcore.cli.main import main; main()", "run", "--home", str(home)]
        args += ["--port", "0", "--bind", "127.0.0.1", "--planet", str(planet), "--api-port", str(port)]
        r2 = subprocess.run(args, capture_output=True, text=True, timeout=30, env=_env())
        assert r2.returncode == 1 and f"local API on 127.0.0.1 TCP port {port}" in r2.stderr, r2.stderr
        assert "Traceback" not in r2.stderr
