"""Tests of the interop harness itself: build, isolated LANs, a real libzt node, the identity oracle."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path

import pytest

from .harness import (
    HarnessPaths,
    Lan,
    LibztNode,
    build_harness,
    libzt_generate_identities,
    libzt_validate_identities,
    make_planet,
    require_harness,
)
from .harness.netns import Host, list_namespaces

pytestmark = pytest.mark.interop

# A valid identity (made by the real core) used as a root nobody runs.
_ROOT_PUBLIC = (
    "26f98f11d6:0:2d089b86db9455a72ec8c09357de2c452444643559253d8424020a067535eb09"
    "d8c26c335c3d418980639dd853f47fe6f58bf0dfd9c10afd89f64077e9bacbef"
)

# A UDP listener run inside a namespace: prints the first datagram as JSON, or exits 1 on timeout.
UDP_CAPTURE = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("listening", flush=True)
try:
    data, addr = s.recvfrom(65536)
except socket.timeout:
    sys.exit(1)
print(json.dumps({"from": addr[0], "port": addr[1], "hex": data.hex()}), flush=True)
"""


def _flip_hex(s: str, index: int) -> str:
    return s[:index] + ("0" if s[index] != "0" else "1") + s[index + 1 :]


def test_harness_builds_and_libzt_imports(harness: HarnessPaths) -> None:
    # A second build is a cache hit that returns the same paths.
    assert build_harness() == harness
    assert harness.shim.is_file() and harness.node_python.is_file() and harness.idtool_python.is_file()
    probe = (
        "import libzt, sys; print(libzt.__version__, sys.version_info[:2] == (3, 9), libzt.zts_node_get_id())"
    )
    out = subprocess.run(
        [str(harness.node_python), "-c", probe],
        env=harness.node_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    version, is39, _ = out.stdout.split()
    assert (version, is39) == ("1.8.4", "True")
    # The shim is what makes it importable: without it the extension has undefined symbols.
    bare = subprocess.run(
        [str(harness.node_python), "-c", "import libzt"],
        env=harness.idtool_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bare.returncode != 0 and "LinuxNetLink" in bare.stderr
    out = subprocess.run(
        [str(harness.idtool_python), "-c", "import libzt; print(libzt.__version__)"],
        env=harness.idtool_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "1.4.2", out.stderr


def test_lan_ping_and_teardown() -> None:
    with Lan(n_hosts=2) as lan:
        names = [ns.name for ns in lan.namespaces]
        assert len(names) == 3 and all(n in list_namespaces() for n in names)
        a, b = lan.hosts
        assert a.ip.startswith("10.77.") and b.ip.startswith("10.77.") and a.ip != b.ip
        # No way out: no default route in the host namespaces.
        assert a.netns.ip("route", "show", "default").stdout.strip() == ""
        assert a.ping(b.ip, timeout=2)
        assert b.ping(a.ip, timeout=2)
        assert not a.ping(f"{lan.prefix}.200", timeout=1)  # nobody there
        sleeper = a.popen(["sleep", "600"])
    assert sleeper.wait(timeout=10) is not None  # killed by the teardown
    left = set(names) & set(list_namespaces())
    assert not left, f"namespaces left behind: {left}"


def _start_capture(host: Host, port: int, timeout: float) -> subprocess.Popen[str]:
    p = host.popen_python(
        ["-c", UDP_CAPTURE, host.ip, str(port), str(timeout)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "listening"
    return p


def test_libzt_node_starts_in_namespace(harness: HarnessPaths, tmp_path: Path) -> None:
    ((root_secret, root_public),) = libzt_generate_identities(1)
    root_address = root_public[:10]
    with Lan(n_hosts=2) as lan:
        a, b = lan.hosts
        # The planet sends the node to b's LAN address, where only our UDP listener is.
        planet = make_planet([(root_public, [(b.ip, 9993)])])
        capture = _start_capture(b, 9993, timeout=20)
        storage = tmp_path / "node"
        with LibztNode(a, storage, port=9993, planet=planet) as node:
            t0 = time.monotonic()
            node_id = node.start(timeout=20)
            assert len(node_id) == 10 and int(node_id, 16) > 0, node.diagnostics()
            out, _ = capture.communicate(timeout=30)
            assert capture.returncode == 0, (
                f"no UDP packet reached the planet's root endpoint\n{node.diagnostics()}"
            )
            first = json.loads(out)
            elapsed = time.monotonic() - t0
            secret = (storage / "identity.secret").read_text().strip()
            public = (storage / "identity.public").read_text().strip()
            assert public.startswith(node_id + ":0:"), node.diagnostics()
            assert secret.startswith(public + ":") and len(secret.split(":")) == 4
            assert node.identity() == secret
            assert not node.is_online()  # nothing answers on the LAN
            # The core kept our planet (no fallback to its built-in public one)...
            assert (storage / "roots").read_bytes() == planet
        # ...and its first packet was a HELLO from this node to our root, at our endpoint.
        pkt = bytes.fromhex(first["hex"])
        assert first["from"] == a.ip  # from its primary or its (random) secondary port
        assert pkt[8:13].hex() == root_address and pkt[13:18].hex() == node_id
        assert pkt[27] & 0x1F == 0x01, f"verb {pkt[27]:#x} is not HELLO"
        assert elapsed < 20


def test_identity_oracle_generates_and_validates() -> None:
    (s1, p1), (s2, p2) = libzt_generate_identities(2)
    assert s1 != s2 and s1.startswith(p1 + ":") and len(s1.split(":")) == 4
    assert len(p1.split(":")[2]) == 128 and len(s1.split(":")[3]) == 128
    tampered = [
        _flip_hex(s1, 20),  # a public key digit: the address no longer derives from the keys
        _flip_hex(p2, 3),  # an address digit
        p1[:10] + ":0:" + p2.split(":")[2],  # someone else's keys under this address
        "0123456789:0:" + "ab" * 64,
        "not an identity",
        "",
    ]
    verdicts = libzt_validate_identities([s1, p1, s2, p2, *tampered])
    assert verdicts[:4] == [True] * 4
    assert verdicts[4:] == [False] * len(tampered)


def test_two_libzt_nodes_one_as_planet_root(harness: HarnessPaths, tmp_path: Path) -> None:
    """A real node comes online through a real root on the LAN, and both report each other as peers."""
    ((root_secret, root_public),) = libzt_generate_identities(1)
    root_address = root_public[:10]
    with Lan(n_hosts=2) as lan:
        a, b = lan.hosts
        planet = make_planet([(root_public, [(b.ip, 9993)])])
        (tmp_path / "root").mkdir()
        (tmp_path / "root" / "identity.secret").write_text(root_secret)
        (tmp_path / "root" / "identity.public").write_text(root_public)
        with (
            LibztNode(b, tmp_path / "root", planet=planet, name="root") as root,
            LibztNode(a, tmp_path / "leaf", planet=planet, name="leaf") as leaf,
        ):
            assert root.start() == root_address
            leaf_address = leaf.start()
            # An ad-hoc network (ff<start port><end port>000000) is configured by the node itself;
            # joined now so its configuration runs while the node comes online.
            adhoc = (0xFF << 56) | (5000 << 40) | (6000 << 24)
            leaf.join(adhoc)
            leaf.wait_online(timeout=30)
            # libzt reports peers only through its occasional events: on a loaded machine
            # (CI with other suites beside it) they took more than 15 s.
            planet_peer = leaf.wait_peer(root_address, timeout=45)
            assert planet_peer["role"] == "PLANET" and planet_peer["version"] == "1.8.4"
            assert planet_peer["paths"] == [f"{b.ip}/9993"]
            leaf_peer = root.wait_peer(leaf_address, timeout=45)
            assert leaf_peer["role"] == "LEAF"
            assert leaf_peer["paths"][0].startswith(f"{a.ip}/")
            assert leaf.wait_event("ZTS_EVENT_NODE_ONLINE", timeout=1)["node_id"] == leaf_address
            net = leaf.wait_network_ok(adhoc, timeout=20)
            assert net["name"] == "adhoc-1388-1770" and net["nwid"] == f"{adhoc:016x}"
            # 6plane: fc, the network id's halves XORed, the node address, ..., 1.
            folded = ((adhoc >> 32) ^ adhoc) & 0xFFFFFFFF
            six = bytes([0xFC]) + folded.to_bytes(4, "big") + bytes.fromhex(leaf_address) + bytes(5) + b"\x01"
            assert leaf.addresses(adhoc) == [str(ipaddress.IPv6Address(six))]


def test_missing_python39_skips_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from .harness import build as build_mod

    def missing() -> Path:
        raise build_mod.Python39Missing("CPython 3.9 not found (test double)")

    monkeypatch.setattr(build_mod, "_built", None)
    monkeypatch.setattr(build_mod, "find_python39", missing)
    with pytest.raises(pytest.skip.Exception, match="INTEROP TESTS SKIPPED: CPython 3.9 not found"):
        require_harness()


def test_driver_exits_when_its_parent_goes_away(harness: HarnessPaths, tmp_path: Path) -> None:
    with Lan(n_hosts=1) as lan:
        node = LibztNode(
            lan.hosts[0],
            tmp_path / "node",
            planet=make_planet([(_ROOT_PUBLIC, [(f"{lan.prefix}.250", 9993)])]),
        )
        node.start()
        assert node._proc is not None and node._proc.stdin is not None
        node._proc.stdin.close()  # what the driver sees when the test process dies
        assert node._proc.wait(timeout=15) == 0, node.diagnostics()
        node.stop()
