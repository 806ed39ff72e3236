"""VL1 against a real ZeroTier core: a libzt 1.8 node uses a planet made by `ztnode world`
whose root is a ztcore node; a ztcore leaf reaches the libzt node by address alone.

Each node runs in its own network namespace on a private bridge (10.77.X.0/24).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import Lan, LibztNode
from .harness.netns import python_env
from .harness.ztcore_node import ZtcoreNode

pytestmark = pytest.mark.interop


def ztnode(*args: str) -> str:
    """Run the real `ztnode` command line (as a user would) and return its stdout."""
    r = subprocess.run(
        [sys.executable, "-m", "ztcore.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=python_env(),
    )
    assert r.returncode == 0, f"ztnode {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


@dataclass
class Vl1World:
    lan: Lan
    planet: bytes
    root: ZtcoreNode
    libzt: LibztNode
    leaf: ZtcoreNode


def make_planet_with_ztnode(tmp: Path, root_home: Path, root_ip: str) -> bytes:
    root_home.mkdir(parents=True)
    ztnode("idtool", "generate", str(root_home / "identity.secret"), str(root_home / "identity.public"))
    ztnode("world", "genkey", str(tmp / "world.key"))
    ztnode(
        "world", "mkplanet",
        "--key", str(tmp / "world.key"),
        "--id", "0x5a7c0de0000001",
        "--root", f"{root_home / 'identity.public'}@{root_ip}/9993",
        "-o", str(tmp / "planet"),
    )  # fmt: skip
    shown = ztnode("world", "show", "--json", str(tmp / "planet"))
    assert root_ip in shown
    return (tmp / "planet").read_bytes()


@pytest.fixture(scope="module")
def world(harness: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vl1World]:
    tmp = tmp_path_factory.mktemp("vl1")
    with Lan(n_hosts=3) as lan:
        root_h, libzt_h, leaf_h = lan.hosts
        planet = make_planet_with_ztnode(tmp, tmp / "root", root_h.ip)
        root = ZtcoreNode(root_h, tmp / "root", 9993, planet=planet, bind=[root_h.ip], name="ztcore-root")
        libzt = LibztNode(libzt_h, tmp / "libzt", 9993, planet=planet)
        leaf = ZtcoreNode(leaf_h, tmp / "leaf", 9993, planet=planet, bind=[leaf_h.ip], name="ztcore-leaf")
        try:
            root.start()
            libzt.start()
            leaf.start()
            yield Vl1World(lan, planet, root, libzt, leaf)
        finally:
            for n in (leaf, libzt, root):
                n.stop()


def test_libzt_comes_online_through_ztcore_root(world: Vl1World) -> None:
    lz = world.libzt
    lz.wait_online(30)
    assert lz.node_id is not None
    # (libzt 1.8 reports peers only through occasional events, so the root's side of
    # the relationship is what is checked below.)
    # The ztcore root lists the libzt node with its real version and a direct path.
    p = world.root.wait_peer(lz.node_id, timeout=30, direct=True)
    assert p["version"].startswith("1.8."), p
    assert p["role"] == "LEAF"
    assert any(
        path["address"].startswith(world.lan.hosts[1].ip + "/") and path["active"] for path in p["paths"]
    ), p
    assert world.root.stats()["drops"].get("bad_mac", 0) == 0


def test_ztcore_leaf_reaches_libzt_by_address_alone(world: Vl1World) -> None:
    lz, leaf, root = world.libzt, world.leaf, world.root
    lz.wait_online(30)
    leaf.wait_for(leaf.is_online, 30, "ztcore leaf online")
    assert lz.node_id is not None
    assert leaf.peer(lz.node_id) is None  # nothing known but the address
    rtt = leaf.echo(lz.node_id, timeout=20)
    assert rtt >= 0
    stats = leaf.stats()["stats"]
    assert stats.get("whois_sent", 0) >= 1, stats  # identity learned from the root
    # The root introduced them; the leaf confirmed a direct path with HELLO/OK.
    p = leaf.wait_peer(lz.node_id, timeout=30, direct=True)
    assert p["version"].startswith("1.8."), p
    assert p["protoVersion"] >= 11
    assert any(path["address"].startswith(world.lan.hosts[1].ip + "/") for path in p["paths"]), p
    # Now ECHO goes direct: the root relays nothing for it. (The 1.8 core answers at
    # most one ECHO per peer per second, 1.14 one per path per ~166 ms: space them out.)
    relayed = root.stats()["stats"].get("relayed", 0)
    for _ in range(3):
        time.sleep(1.1)
        assert leaf.echo(lz.node_id, timeout=10) >= 0
    assert root.stats()["stats"].get("relayed", 0) == relayed
    assert "bad_mac" not in leaf.stats()["drops"]
