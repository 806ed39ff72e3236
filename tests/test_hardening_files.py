"""Issue 8 defect 8: the CLI tools and world files are written atomically (a failure at
any point leaves the old file whole, and no temporary file behind), and `idtool generate`
refuses to overwrite an existing secret without --force."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ztcore.atomicfile import write_atomic
from ztcore.cli.idtool import idtool
from ztcore.cli.world import world as world_cli
from ztcore.identity import Identity
from ztcore.simulation import make_planet
from ztcore.vl1.world import load_world_file, save_world_file


def _fail_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)


def test_idtool_generate_refuses_an_existing_secret(tmp_path: Path) -> None:
    secret = tmp_path / "identity.secret"
    ident = Identity.generate()
    secret.write_text(ident.to_string(include_private=True))
    r = CliRunner().invoke(idtool, ["generate", str(secret), str(tmp_path / "identity.public")])
    assert r.exit_code == 1
    assert "refusing to overwrite" in r.output and "--force" in r.output
    assert secret.read_text() == ident.to_string(include_private=True)
    assert not (tmp_path / "identity.public").exists()
    # An empty file is still someone's file: refused too.
    empty = tmp_path / "empty.secret"
    empty.write_bytes(b"")
    assert CliRunner().invoke(idtool, ["generate", str(empty)]).exit_code == 1
    r = CliRunner().invoke(idtool, ["generate", str(secret), "--force"])
    assert r.exit_code == 0
    assert Identity.from_string(secret.read_text()).address != ident.address


def test_idtool_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "identity.secret"
    secret.write_text("old contents")
    _fail_rename(monkeypatch)
    r = CliRunner().invoke(idtool, ["generate", str(secret), "--force"])
    assert r.exit_code == 1 and "Error writing" in r.output
    assert secret.read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.secret"]


def test_world_cli_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "world.key"
    assert CliRunner().invoke(world_cli, ["genkey", str(key)]).exit_code == 0
    before = key.read_bytes()
    _fail_rename(monkeypatch)
    r = CliRunner().invoke(world_cli, ["genkey", str(key), "--force"])
    assert r.exit_code == 1
    assert key.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world.key"]


def test_save_world_file_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, _ = make_planet([(Identity.generate(), [("10.0.0.1", 9993)])], timestamp=1)
    new, _ = make_planet([(Identity.generate(), [("10.0.0.2", 9993)])], timestamp=2)
    path = tmp_path / "planet"
    save_world_file(path, old)
    _fail_rename(monkeypatch)
    with pytest.raises(OSError):
        save_world_file(path, new)
    monkeypatch.undo()
    assert load_world_file(path).timestamp == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planet"]
    save_world_file(path, new)
    assert load_world_file(path).timestamp == 2


def test_write_atomic_modes_and_no_overwrite(tmp_path: Path) -> None:
    p = tmp_path / "f"
    old_umask = os.umask(0o077)
    try:
        write_atomic(p, b"one")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644 and p.read_bytes() == b"one"
    write_atomic(p, b"two", mode=0o600)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600 and p.read_bytes() == b"two"
    with pytest.raises(FileExistsError):
        write_atomic(p, b"three", overwrite=False)
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]
