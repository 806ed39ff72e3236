"""For tests that start a real `ztnode run` in a subprocess (not a test module itself):
its environment and a planet that keeps it on loopback."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ztcore.identity import Identity
from ztcore.simulation import make_planet
from ztcore.vl1.world import save_world_file

SRC = Path(__file__).resolve().parent.parent / "src"


def daemon_env() -> dict[str, str]:
    """This environment, with this tree's package first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def idle_root_planet(directory: Path) -> Path:
    """`directory/planet`: a planet whose only root (never started) is on a free loopback
    port, so the nodes under test make no outside traffic."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        root_port = s.getsockname()[1]
    world, _ = make_planet([(Identity.generate(), [("127.0.0.1", root_port)])])
    save_world_file(directory / "planet", world)
    return directory / "planet"
