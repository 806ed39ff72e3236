"""`ztnode shell` driven as a person would, through a pseudo-terminal: three nodes come
up offline, a broadcast ping gets pongs into n1.vframes, n2.received holds a decrypted
HELLO, and exit() ends the program cleanly within a time bound."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

PROMPT = ">>> "


def _ztnode() -> list[str]:
    return [sys.executable, "-m", "ztcore.cli.main"]


# Where IPython is installed the default shell is IPython, whose screen output is full of
# terminal control codes; the transcript tests then ask for the plain shell (which is what
# a fresh install gets by default), and test_shell_ipython checks the IPython path.
HAVE_IPYTHON = importlib.util.find_spec("IPython") is not None
PLAIN = ["--shell", "python"] if HAVE_IPYTHON else []


@pytest.fixture
def shell() -> pexpect.spawn:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "dumb", "HOME": os.environ.get("HOME", "/tmp")}
    cmd = _ztnode()
    child = pexpect.spawn(
        cmd[0],
        [*cmd[1:], "shell", "-n", "3", *PLAIN],
        encoding="utf-8",
        timeout=30,
        env=env,
        dimensions=(40, 250),
    )
    yield child
    if child.isalive():
        child.terminate(force=True)


def _do(child: pexpect.spawn, line: str) -> str:
    child.sendline(line)
    child.expect_exact(PROMPT)
    out = child.before
    assert "Traceback" not in out, out
    return out


def test_shell_broadcast_pongs_hello_and_exit(shell: pexpect.spawn) -> None:
    t0 = time.monotonic()
    shell.expect_exact(PROMPT)
    banner = shell.before
    assert "ztcore workbench: n1, n2, n3" in banner and "vframes" in banner and "net" in banner
    assert len([x for x in banner.splitlines() if x.strip() and "starting" not in x]) == 3, banner
    out = _do(shell, "n1.online, n2.online, n3.online, len(n1.ips()) > 0, net.nwid == n1.networks()[0]['id']")
    assert "(True, True, True, True, True)" in out
    _do(shell, "n1.broadcast_eth(b'ping from n1')")
    _do(
        shell,
        "pongs = wait(n1.vframes, 2, timeout=10, lfilter=lambda p: bytes(p.payload).startswith(b'pong'))",
    )
    _do(shell, "want = sorted('pong from %s' % n.address for n in (n2, n3))")
    out = _do(
        shell,
        "sorted(bytes(p[Raw].load).decode() for p in pongs) == want, all(p.dst == n1.mac() for p in pongs)",
    )
    assert "(True, True)" in out, out
    # Scapy's names and ztcore.scapy's layers are in scope: a decrypted HELLO from n2's buffer.
    _do(shell, "h = n2.wait(n2.received, 1, lfilter=lambda p: ZTHello in p)[0]")
    out = _do(
        shell,
        "isinstance(h[ZeroTier], ZeroTierDecrypted), h[ZTHello].identity.address == h[ZeroTier].src, IP in h",
    )
    assert "(True, True, True)" in out
    out = _do(shell, "h.summary()")
    assert "HELLO (decrypted)" in out
    shell.sendline("exit()")
    shell.expect(pexpect.EOF, timeout=20)
    shell.close()
    assert shell.exitstatus == 0, shell.before
    assert time.monotonic() - t0 < 60


def test_shell_ctrl_d_exits_too(shell: pexpect.spawn) -> None:
    shell.expect_exact(PROMPT)
    shell.sendeof()
    shell.expect(pexpect.EOF, timeout=20)
    shell.close()
    assert shell.exitstatus == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nwid", "xyz"], "not a 16-hex-digit network id"),
        (["--nwid", "8056c2e21c00000"], "not a 16-hex-digit network id"),
        (["-n", "0"], "0"),
        (["--planet", __file__], "--planet goes with --nwid"),
    ],
)
def test_shell_rejects_bad_arguments(args: list[str], message: str) -> None:
    r = subprocess.run([*_ztnode(), "shell", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_ztnode_help_and_import_ztcore_do_not_import_scapy() -> None:
    code = (
        "import sys, ztcore, ztcore.node, ztcore.runtime, ztcore.cli.main as m\n"
        "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'shell' in sys.stdout.getvalue() if hasattr(sys.stdout, 'getvalue') else True\n"
        "print(sorted(x for x in sys.modules if x == 'scapy' or x.startswith('scapy.')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("[]"), r.stdout
    assert "shell" in r.stdout


def test_shell_joins_a_given_network_on_a_given_planet(tmp_path: Path) -> None:
    from ztcore.workbench import Workbench

    with Workbench(n=1) as world:
        assert world.net is not None
        planet = tmp_path / "planet"
        planet.write_bytes(world.planet.to_bytes())
        cmd = _ztnode()
        child = pexpect.spawn(
            cmd[0], [*cmd[1:], "shell", "-n", "1", "--nwid", world.net.nwid, "--planet", str(planet), *PLAIN],
            encoding="utf-8", timeout=30, dimensions=(40, 250),
        )  # fmt: skip
        try:
            child.expect_exact(PROMPT)
            assert f"network {world.net.nwid}" in child.before and "offline" not in child.before
            out = _do(child, "n1.networks()[0]['id'], net is None")
            assert f"('{world.net.nwid}', True)" in out
            _do(child, "n1.wait(n1.received, lfilter=lambda p: ZTHello in p, timeout=10)")
            child.sendline("exit()")
            child.expect(pexpect.EOF, timeout=20)
            child.close()
            assert child.exitstatus == 0
        finally:
            if child.isalive():
                child.terminate(force=True)


def test_shell_ipython() -> None:
    if not HAVE_IPYTHON:
        r = subprocess.run(
            [*_ztnode(), "shell", "--shell", "ipython"], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 2 and "IPython is not installed" in r.stderr, r.stderr
        return
    cmd = _ztnode()
    child = pexpect.spawn(
        cmd[0], [*cmd[1:], "shell", "-n", "2", "--shell", "ipython"], encoding="utf-8", timeout=30
    )
    try:
        child.expect_exact(PROMPT)
        child.sendline("print('answer', n1.online and ZTHello.__name__)")
        child.expect("answer ")
        child.expect_exact(PROMPT)
        assert "ZTHello" in child.before.split("\n")[0], child.before  # n1 online, Scapy names in scope
        child.sendline("exit()")
        child.expect(pexpect.EOF, timeout=20)
        child.close()
        assert child.exitstatus == 0
    finally:
        if child.isalive():
            child.terminate(force=True)
