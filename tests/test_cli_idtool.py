"""`ztnode idtool`: outputs and exit codes as zerotier-idtool gives them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ztcore.cli.idtool import idtool
from ztcore.crypto import c25519_verify
from ztcore.identity import HAVE_C_KERNEL, Identity

# The real core's known-good identity (selftest.cpp) and its known-bad twin.
KNOWN_GOOD = (
    "8e4df28b72:0:ac3d46abe0c21f3cfe7a6c8d6a85cfcffcb82fbd55af6a4d6350657c68200843fa2e16f9418bbd9702cae365f2af5fb4c420908b803a681d4daef6114d78a2d7"
    ":bd8dd6e4ce7022d2f812797a80c6ee8ad180dc4ebf301dec8b06d1be08832bddd63a2f1cfa7b2c504474c75bdc8898ba476ef92e8e2d0509f8441985171ff16e"
)
KNOWN_GOOD_PUBLIC = KNOWN_GOOD.rsplit(":", 1)[0]
KNOWN_BAD = "9" + KNOWN_GOOD[1:]


def run(*args: str) -> Result:
    result = CliRunner().invoke(idtool, list(args))
    # Never a Python traceback, whatever the arguments.
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def message_file(tmp_path: Path) -> Path:
    p = tmp_path / "message.bin"
    p.write_bytes(b"some file contents\x00\xff to sign\n")
    return p


def test_generate_to_stdout() -> None:
    result = run("generate")
    assert result.exit_code == 0
    assert not result.stdout.endswith("\n")  # printed like the real tool, without newline
    ident = Identity.from_string(result.stdout)
    assert ident.has_private
    assert ident.validate()


def test_generate_to_files(tmp_path: Path) -> None:
    secret, public = tmp_path / "identity.secret", tmp_path / "identity.public"
    result = run("generate", str(secret), str(public))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"{secret} written", f"{public} written"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    ident = Identity.from_string(secret.read_text())
    assert ident.has_private and ident.validate()
    assert public.read_text() == ident.to_string()


def test_generate_secret_file_mode_fixed_on_overwrite(tmp_path: Path) -> None:
    secret = tmp_path / "identity.secret"
    secret.write_text("old")
    secret.chmod(0o644)
    assert run("generate", str(secret), "--force").exit_code == 0
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert Identity.from_string(secret.read_text()).has_private


@pytest.mark.skipif(not HAVE_C_KERNEL, reason="~16 generations: too slow without the C kernel")
def test_generate_vanity_prefix(tmp_path: Path) -> None:
    secret, public = tmp_path / "identity.secret", tmp_path / "identity.public"
    result = run("generate", str(secret), str(public), "8")  # 4 bits: ~16 tries
    assert result.exit_code == 0
    ident = Identity.from_string(secret.read_text())
    assert str(ident.address).startswith("8") and ident.validate()
    assert f"vanity address: found {ident.address} !" in result.stderr


def test_generate_bad_vanity_and_unwritable(tmp_path: Path) -> None:
    r = run("generate", str(tmp_path / "s"), str(tmp_path / "p"), "xyz")
    assert r.exit_code == 1 and "vanity" in r.stderr
    r = run("generate", str(tmp_path / "missing-dir" / "identity.secret"))
    assert r.exit_code == 1
    assert "Error writing to" in r.stderr


def test_validate(tmp_path: Path) -> None:
    r = run("validate", KNOWN_GOOD)
    assert r.exit_code == 0
    assert r.stdout == f"{KNOWN_GOOD} is a valid identity\n"
    r = run("validate", KNOWN_BAD)
    assert r.exit_code == 1
    assert r.stderr == f"{KNOWN_BAD} FAILED validation.\n"
    f = tmp_path / "identity.public"
    f.write_text(KNOWN_GOOD_PUBLIC + "\n")
    r = run("validate", str(f))
    assert r.exit_code == 0 and "is a valid identity" in r.stdout


def test_getpublic(tmp_path: Path) -> None:
    r = run("getpublic", KNOWN_GOOD)
    assert r.exit_code == 0
    assert r.stdout == KNOWN_GOOD_PUBLIC
    f = tmp_path / "identity.secret"
    f.write_text(KNOWN_GOOD)
    assert run("getpublic", str(f)).stdout == KNOWN_GOOD_PUBLIC


def test_sign_and_verify(tmp_path: Path, message_file: Path) -> None:
    r = run("sign", KNOWN_GOOD, str(message_file))
    assert r.exit_code == 0
    sig_hex = r.stdout
    assert len(sig_hex) == 192 and sig_hex == sig_hex.lower()
    pub = bytes.fromhex(KNOWN_GOOD_PUBLIC.split(":")[2])
    assert c25519_verify(pub, message_file.read_bytes(), bytes.fromhex(sig_hex))
    assert run("sign", KNOWN_GOOD, str(message_file)).stdout == sig_hex  # deterministic

    r = run("verify", KNOWN_GOOD_PUBLIC, str(message_file), sig_hex)
    assert r.exit_code == 0
    assert r.stdout == f"{message_file} signature valid\n"
    public_file = tmp_path / "identity.public"
    public_file.write_text(KNOWN_GOOD_PUBLIC)
    assert run("verify", str(public_file), str(message_file), sig_hex.upper()).exit_code == 0

    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(message_file.read_bytes() + b"!")
    r = run("verify", KNOWN_GOOD_PUBLIC, str(tampered), sig_hex)
    assert r.exit_code == 1
    assert r.stderr == f"{tampered} signature check FAILED\n"
    bad_sig = ("0" if sig_hex[0] != "0" else "1") + sig_hex[1:]
    for sig in (bad_sig, sig_hex[:-2], "zz" + sig_hex[2:], "", "abc"):
        r = run("verify", KNOWN_GOOD_PUBLIC, str(message_file), sig)
        assert r.exit_code == 1 and "signature check FAILED" in r.stderr


def test_sign_needs_private_key(message_file: Path) -> None:
    r = run("sign", KNOWN_GOOD_PUBLIC, str(message_file))
    assert r.exit_code == 1
    assert "does not contain a private key" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("bogus",),
        ("validate",),
        ("getpublic",),
        ("sign", KNOWN_GOOD),
        ("verify", KNOWN_GOOD, "file"),
        ("validate", KNOWN_GOOD, "extra"),
    ],
)
def test_bad_arguments_exit_1(args: tuple[str, ...]) -> None:
    r = run(*args)
    assert r.exit_code == 1
    assert "Usage:" in r.output


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "/nonexistent/identity.secret"),
        ("validate", "8e4df28b72:0:nothex" + "0" * 40),
        ("validate", KNOWN_GOOD_PUBLIC.replace(":0:", ":1:")),
        ("getpublic", "garbage"),
        ("sign", "/nonexistent", "/etc/hostname"),
        ("verify", "junk:junk:junk:junk:junk:junk:junk", "x", "00"),
    ],
)
def test_bad_identity_arguments(args: tuple[str, ...]) -> None:
    r = run(*args)
    assert r.exit_code == 1
    assert "Identity argument invalid or file unreadable" in r.stderr


def test_unreadable_data_file() -> None:
    r = run("sign", KNOWN_GOOD, "/nonexistent/file")
    assert r.exit_code == 1
    assert r.stderr == "/nonexistent/file is not readable\n"
    r = run("verify", KNOWN_GOOD, "/nonexistent/file", "00" * 96)
    assert r.exit_code == 1 and "is not readable" in r.stderr


def test_identity_file_with_junk(tmp_path: Path) -> None:
    f = tmp_path / "junk"
    f.write_bytes(b"\xff\xfe\x00garbage")
    r = run("validate", str(f))
    assert r.exit_code == 1 and "Identity argument invalid" in r.stderr


def test_reachable_through_ztnode() -> None:
    from ztcore.cli.main import main

    r = CliRunner().invoke(main, ["idtool", "validate", KNOWN_GOOD])
    assert r.exit_code == 0
    assert "is a valid identity" in r.stdout
