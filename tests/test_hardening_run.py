"""Issue 8, `ztnode run` on its home directory: one daemon per home, stores checked before
anything starts, an empty identity.secret refused. Real subprocesses on loopback only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import daemon_env, idle_root_planet

_CLI = [sys.executable, "-c", "from ztcore.cli.main import main; main()", "run"]


@pytest.fixture()
def planet(tmp_path: Path) -> Path:
    return idle_root_planet(tmp_path)


def _args(home: Path, planet: Path) -> list[str]:
    return [*_CLI, "--home", str(home), "--port", "0", "--bind", "127.0.0.1", "--allow-loopback",
            "--planet", str(planet)]  # fmt: skip


def _run_once(home: Path, planet: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_args(home, planet), capture_output=True, text=True, timeout=60, env=daemon_env())


def test_second_daemon_on_the_same_home_refuses(tmp_path: Path, planet: Path) -> None:
    home = tmp_path / "zt"
    first = subprocess.Popen(
        _args(home, planet), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=daemon_env()
    )
    try:
        assert first.stdout is not None
        line = first.stdout.readline().split()
        assert len(line) == 2, line
        port_file = (home / "zerotier-one.port").read_text()
        second = _run_once(home, planet)
        assert second.returncode != 0
        assert f"in use by another running node (pid {first.pid})" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        # The first daemon's files are untouched and it still runs.
        assert (home / "zerotier-one.port").read_text() == port_file
        assert first.poll() is None
    finally:
        first.terminate()
        assert first.wait(timeout=15) == 0
    # Once the first is gone the home is free again (the lock is not a stale-file problem).
    again = subprocess.Popen(
        _args(home, planet), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=daemon_env()
    )
    try:
        assert again.stdout is not None
        assert again.stdout.readline().split()[0] == line[0]
    finally:
        again.terminate()
        again.wait(timeout=15)


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_corrupt_controller_db_stops_before_anything_starts(
    tmp_path: Path, planet: Path, damage: str
) -> None:
    """Defect 6: a corrupt controller.db ended `ztnode run` with a sqlite3 traceback after
    the UDP service had started."""
    from ztcore.controller.model import update_network
    from ztcore.controller.store import ControllerStore

    home = tmp_path / "zt"
    home.mkdir()
    if damage == "random":
        data = os.urandom(8192)
    else:
        with ControllerStore(home) as store:
            for i in range(40):
                store.put_network(update_network(None, {"name": "n" * 400}, 0x1122334455000000 + i, 1))
        data = (home / "controller.db").read_bytes()
        data = data[: len(data) // 2]
    for leftover in home.glob("controller.db-*"):
        leftover.unlink()
    (home / "controller.db").write_bytes(data)
    r = _run_once(home, planet)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "controller.db" in lines[0] and "not a usable controller database" in lines[0]
    assert r.stdout == ""  # nothing was started, so no "<address> <port>" line
    assert (home / "controller.db").read_bytes() == data


def test_empty_identity_secret_is_refused_not_replaced(tmp_path: Path, planet: Path) -> None:
    """Defect 7 through the daemon: no new identity is generated over an empty file."""
    home = tmp_path / "zt"
    home.mkdir()
    (home / "identity.secret").write_bytes(b"")
    r = _run_once(home, planet)
    assert r.returncode == 1
    assert "identity.secret: file is empty" in r.stderr and "Traceback" not in r.stderr
    assert (home / "identity.secret").read_bytes() == b""
    assert not (home / "identity.public").exists()
