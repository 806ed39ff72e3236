"""HomeDirectory / MemoryState: zerotier-one file layout, permissions, atomic writes, corruption handling."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ztcore.api import StateObjectType as S
from ztcore.identity import Identity
from ztcore.runtime.home import HomeDirectory, HomeDirectoryError, MemoryState


@pytest.fixture(scope="module")
def ident() -> Identity:
    return Identity.generate()


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_layout_matches_zerotier_one(tmp_path: Path) -> None:
    # File names follow OneService's "%.10llx.peer", "%.16llx.moon", "%.16llx.conf".
    home = HomeDirectory(tmp_path / "zt")
    assert home.path_for(S.IDENTITY_SECRET, ()) == tmp_path / "zt" / "identity.secret"
    assert home.path_for(S.IDENTITY_PUBLIC, ()) == tmp_path / "zt" / "identity.public"
    assert home.path_for(S.PLANET, ()) == tmp_path / "zt" / "planet"
    assert home.path_for(S.PEER, (0x89E92CEEE5,)) == tmp_path / "zt" / "peers.d" / "89e92ceee5.peer"
    assert home.path_for(S.PEER, (0x1,)) == tmp_path / "zt" / "peers.d" / "0000000001.peer"
    assert home.path_for(S.MOON, (0x89E92CEEE5,)) == tmp_path / "zt" / "moons.d" / "00000089e92ceee5.moon"
    assert (
        home.path_for(S.NETWORK_CONFIG, (0x8056C2E21C000001,))
        == tmp_path / "zt" / "networks.d" / "8056c2e21c000001.conf"
    )


def test_put_get_creates_subdirectories(tmp_path: Path) -> None:
    home = HomeDirectory(tmp_path / "zt")
    home.state_put(S.PEER, (0x89E92CEEE5,), b"peer-bytes")
    home.state_put(S.NETWORK_CONFIG, (0x8056C2E21C000001,), b"netconf")
    home.state_put(S.MOON, (0xDEADBEEF,), b"moon")
    home.state_put(S.PLANET, (), b"planet")
    assert (tmp_path / "zt" / "peers.d" / "89e92ceee5.peer").read_bytes() == b"peer-bytes"
    assert (tmp_path / "zt" / "networks.d" / "8056c2e21c000001.conf").read_bytes() == b"netconf"
    assert (tmp_path / "zt" / "moons.d" / "00000000deadbeef.moon").read_bytes() == b"moon"
    assert home.state_get(S.PLANET, ()) == b"planet"
    assert home.state_get(S.PEER, (0x89E92CEEE5,)) == b"peer-bytes"
    assert home.state_get(S.PEER, (0x1111111111,)) is None
    # Overwrite replaces the content entirely (shorter data, no leftover tail).
    home.state_put(S.PEER, (0x89E92CEEE5,), b"p")
    assert home.state_get(S.PEER, (0x89E92CEEE5,)) == b"p"


def test_permissions(tmp_path: Path, ident: Identity) -> None:
    home = HomeDirectory(tmp_path / "zt")
    assert mode(tmp_path / "zt") == 0o700
    home.state_put(S.IDENTITY_SECRET, (ident.address,), ident.to_string(True).encode())
    assert mode(tmp_path / "zt" / "identity.secret") == 0o600
    home.state_put(S.PEER, (0x89E92CEEE5,), b"x")
    assert mode(tmp_path / "zt" / "peers.d") == 0o700
    token = home.authtoken()
    assert mode(tmp_path / "zt" / "authtoken.secret") == 0o600
    assert len(token) == 24 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789" for c in token)
    # Stable once created.
    assert HomeDirectory(tmp_path / "zt").authtoken() == token


def test_loose_identity_secret_mode_is_tightened(tmp_path: Path, ident: Identity) -> None:
    d = tmp_path / "zt"
    d.mkdir()
    (d / "identity.secret").write_text(ident.to_string(True))
    os.chmod(d / "identity.secret", 0o644)
    HomeDirectory(d)
    assert mode(d / "identity.secret") == 0o600


def test_identity_public_regenerated(tmp_path: Path, ident: Identity) -> None:
    d = tmp_path / "zt"
    d.mkdir()
    (d / "identity.secret").write_text(ident.to_string(True) + "\n")
    home = HomeDirectory(d)
    assert (d / "identity.public").read_text() == ident.to_string(False)
    assert home.identity == ident
    # Mismatched public file is replaced on open.
    (d / "identity.public").write_text(Identity.generate().to_string(False))
    HomeDirectory(d)
    assert (d / "identity.public").read_text() == ident.to_string(False)
    # state_get strips the hand-added newline so the node parses it.
    assert home.state_get(S.IDENTITY_SECRET, ()) == ident.to_string(True).encode()


@pytest.mark.parametrize(
    "content",
    [
        b"not an identity",
        b"89e92ceee5:0:1234",  # truncated public key
        b"\xff\xfe garbage",
    ],
)
def test_corrupt_identity_secret_is_reported_and_untouched(tmp_path: Path, content: bytes) -> None:
    d = tmp_path / "zt"
    d.mkdir()
    (d / "identity.secret").write_bytes(content)
    with pytest.raises(HomeDirectoryError) as ei:
        HomeDirectory(d)
    assert "identity.secret" in str(ei.value)
    assert (d / "identity.secret").read_bytes() == content
    assert not (d / "identity.public").exists()


def test_identity_secret_checks(tmp_path: Path, ident: Identity) -> None:
    d = tmp_path / "zt"
    d.mkdir()
    other = Identity.generate()
    # Public-only identity in the secret file.
    (d / "identity.secret").write_text(ident.to_string(False))
    with pytest.raises(HomeDirectoryError, match="no private key"):
        HomeDirectory(d)
    # Private key of another identity glued to this public key.
    assert other.private_key is not None
    glued = ident.to_string(False) + ":" + other.private_key.hex()
    (d / "identity.secret").write_text(glued)
    with pytest.raises(HomeDirectoryError, match="does not match"):
        HomeDirectory(d)
    # Address that is not derived from the key.
    assert ident.private_key is not None
    wrong_addr = f"{(int(ident.address) ^ 1):010x}:0:{ident.public_key.hex()}:{ident.private_key.hex()}"
    (d / "identity.secret").write_text(wrong_addr)
    with pytest.raises(HomeDirectoryError, match="address"):
        HomeDirectory(d)
    assert (d / "identity.secret").read_text() == wrong_addr


def test_corruption_after_open_caught_by_state_get(tmp_path: Path, ident: Identity) -> None:
    home = HomeDirectory(tmp_path / "zt")
    home.state_put(S.IDENTITY_SECRET, (), ident.to_string(True).encode())
    (tmp_path / "zt" / "identity.secret").write_bytes(b"junk")
    with pytest.raises(HomeDirectoryError, match="identity.secret"):
        home.state_get(S.IDENTITY_SECRET, ())
    # And a node that would generate a fresh identity cannot overwrite it.
    new = Identity.generate()
    with pytest.raises(HomeDirectoryError, match="refusing"):
        home.state_put(S.IDENTITY_SECRET, (), new.to_string(True).encode())
    assert (tmp_path / "zt" / "identity.secret").read_bytes() == b"junk"


def test_identity_secret_not_replaced_by_another(tmp_path: Path, ident: Identity) -> None:
    home = HomeDirectory(tmp_path / "zt")
    home.state_put(S.IDENTITY_SECRET, (), ident.to_string(True).encode())
    with pytest.raises(HomeDirectoryError, match="refusing"):
        home.state_put(S.IDENTITY_SECRET, (), Identity.generate().to_string(True).encode())
    with pytest.raises(HomeDirectoryError, match="invalid identity"):
        home.state_put(S.IDENTITY_SECRET, (), b"garbage")
    assert (tmp_path / "zt" / "identity.secret").read_text() == ident.to_string(True)
    # Writing the same identity again is fine (the core rewrites it on some paths).
    home.state_put(S.IDENTITY_SECRET, (), ident.to_string(True).encode())


def test_empty_identity_secret_is_corruption_not_absence(tmp_path: Path, ident: Identity) -> None:
    """Issue 8 defect 7: an empty identity.secret silently became a new identity (and a new
    address, losing every network its controller owned). Only a missing file is generated."""
    d = tmp_path / "zt"
    d.mkdir()
    (d / "identity.secret").write_bytes(b"")
    (d / "identity.public").write_text(ident.to_string())
    with pytest.raises(HomeDirectoryError, match="identity.secret: file is empty"):
        HomeDirectory(d)
    assert (d / "identity.secret").read_bytes() == b""
    assert (d / "identity.public").read_text() == ident.to_string()
    # Emptied while open: the store refuses to read it, and refuses to overwrite it.
    home = HomeDirectory(tmp_path / "other")
    home.state_put(S.IDENTITY_SECRET, (), ident.to_string(True).encode())
    (tmp_path / "other" / "identity.secret").write_bytes(b"\n")
    with pytest.raises(HomeDirectoryError, match="empty"):
        home.state_get(S.IDENTITY_SECRET, ())
    with pytest.raises(HomeDirectoryError, match="refusing"):
        home.state_put(S.IDENTITY_SECRET, (), Identity.generate().to_string(True).encode())
    assert (tmp_path / "other" / "identity.secret").read_bytes() == b"\n"


def test_world_readable_authtoken_is_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "zt"
    d.mkdir()
    (d / "authtoken.secret").write_text("sometoken\n")
    os.chmod(d / "authtoken.secret", 0o644)
    with caplog.at_level("WARNING"):
        assert HomeDirectory(d).authtoken() == "sometoken"
    assert stat.S_IMODE((d / "authtoken.secret").stat().st_mode) == 0o600
    assert "authtoken.secret" in caplog.text


def test_home_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    a = HomeDirectory(tmp_path / "zt")
    b = HomeDirectory(tmp_path / "zt")
    a.lock()
    with pytest.raises(HomeDirectoryError, match=f"in use by another running node \\(pid {os.getpid()}\\)"):
        b.lock()
    a.unlock()
    b.lock()
    b.unlock()


def test_atomic_write_rename_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = HomeDirectory(tmp_path / "zt")
    home.state_put(S.PLANET, (), b"old planet")

    def boom(src: object, dst: object) -> None:
        raise OSError(5, "simulated crash")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(HomeDirectoryError, match="planet"):
        home.state_put(S.PLANET, (), b"new planet that is longer")
    monkeypatch.undo()
    assert (tmp_path / "zt" / "planet").read_bytes() == b"old planet"
    assert sorted(p.name for p in (tmp_path / "zt").iterdir()) == ["planet"]  # no temp file left


def test_atomic_write_crash_mid_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = HomeDirectory(tmp_path / "zt")
    home.state_put(S.PEER, (0x89E92CEEE5,), b"A" * 100)
    real_write = os.write

    def half_write(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_write)
    with pytest.raises(HomeDirectoryError):
        home.state_put(S.PEER, (0x89E92CEEE5,), b"B" * 100)
    monkeypatch.undo()
    assert home.state_get(S.PEER, (0x89E92CEEE5,)) == b"A" * 100
    assert [p.name for p in (tmp_path / "zt" / "peers.d").iterdir()] == ["89e92ceee5.peer"]


def test_delete(tmp_path: Path) -> None:
    home = HomeDirectory(tmp_path / "zt")
    home.state_put(S.NETWORK_CONFIG, (0x8056C2E21C000001,), b"conf")
    home.state_put(S.NETWORK_CONFIG, (0x8056C2E21C000001,), None)
    assert not (tmp_path / "zt" / "networks.d" / "8056c2e21c000001.conf").exists()
    assert home.state_get(S.NETWORK_CONFIG, (0x8056C2E21C000001,)) is None
    home.state_put(S.NETWORK_CONFIG, (0x8056C2E21C000001,), None)  # deleting nothing is fine


@pytest.mark.parametrize("store_kind", ["home", "memory"])
def test_bad_kinds_and_ids_rejected(tmp_path: Path, store_kind: str) -> None:
    store = HomeDirectory(tmp_path / "zt") if store_kind == "home" else MemoryState()
    with pytest.raises(HomeDirectoryError):
        store.state_put(S.NULL, (), b"x")
    with pytest.raises(HomeDirectoryError):
        store.state_put(99, (), b"x")  # type: ignore[arg-type]
    with pytest.raises(HomeDirectoryError):
        store.state_get(99, ())  # type: ignore[arg-type]
    with pytest.raises(HomeDirectoryError):
        store.state_put(S.PEER, (), b"x")  # peer needs an address
    with pytest.raises(HomeDirectoryError):
        store.state_put(S.PEER, (1 << 40,), b"x")  # addresses are 40 bits
    with pytest.raises(HomeDirectoryError):
        store.state_put(S.MOON, (-1,), b"x")
    with pytest.raises(HomeDirectoryError):
        store.state_put(S.PLANET, (), "text")  # type: ignore[arg-type]
    if store_kind == "home":
        assert sorted(p.name for p in (tmp_path / "zt").iterdir()) == []


def test_memory_state_roundtrip() -> None:
    m = MemoryState()
    assert m.state_get(S.PLANET, ()) is None
    m.state_put(S.PLANET, (), bytearray(b"w"))
    m.state_put(S.PEER, (5,), b"p5")
    m.state_put(S.PEER, (6,), b"p6")
    assert m.state_get(S.PLANET, ()) == b"w"
    assert m.state_get(S.PEER, (5,)) == b"p5"
    m.state_put(S.PEER, (5,), None)
    assert m.state_get(S.PEER, (5,)) is None
    assert m.state_get(S.PEER, (6,)) == b"p6"


def test_port_file(tmp_path: Path) -> None:
    home = HomeDirectory(tmp_path / "zt")
    assert home.read_port() is None
    home.write_port(9993)
    assert (tmp_path / "zt" / "zerotier-one.port").read_text() == "9993"
    assert home.read_port() == 9993
    (tmp_path / "zt" / "zerotier-one.port").write_text("nope")
    with pytest.raises(HomeDirectoryError, match="zerotier-one.port"):
        home.read_port()
    with pytest.raises(HomeDirectoryError):
        home.write_port(70000)


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(HomeDirectoryError, match="does not exist"):
        HomeDirectory(tmp_path / "missing", create=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(HomeDirectoryError, match="not a directory"):
        HomeDirectory(tmp_path / "file")


def test_saved_networks_and_moons_are_listed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ztcore.api import StateObjectType
    from ztcore.runtime.home import HomeDirectory

    home = HomeDirectory(tmp_path / "h")
    assert home.saved_networks() == [] and home.saved_moons() == []
    home.state_put(StateObjectType.NETWORK_CONFIG, (0x8056C2E21C000001,), b"conf")
    home.state_put(StateObjectType.MOON, (0x1234,), b"moon-bytes")
    (tmp_path / "h" / "networks.d" / "notanid.conf").write_text("x")
    assert home.saved_networks() == [0x8056C2E21C000001]
    assert home.saved_moons() == [b"moon-bytes"]
