"""`ztnode capture` against a running node's local API: wire traffic as IP/UDP and a
network's frames as Ethernet, in pcap files that rdpcap + ztcore.scapy dissect (with
decryption) and tcpdump reads; bad arguments and unreachable nodes are clear errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from ztcore.runtime import HomeDirectory
from ztcore.runtime.api_glue import start_local_api
from ztcore.scapy import Keyring, ZeroTier, ZeroTierDecrypted
from ztcore.workbench import Workbench


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workbench, Path]]:
    home = tmp_path_factory.mktemp("homes")
    with Workbench(n=2, home=home) as wb:
        server = wb.rt.run(start_local_api(wb.nodes[0].service, HomeDirectory(home / "n1"), 0, None))
        try:
            yield wb, home / "n1"
        finally:
            wb.rt.run(server.stop())


def _ztnode(*args: str) -> list[str]:
    return [sys.executable, "-m", "ztcore.cli.main", *args]


def _capture_while_pinging(
    wb: Workbench, args: list[str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    n1, n2 = wb.nodes
    proc = subprocess.Popen(
        _ztnode("capture", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            n2.ping(n1, timeout=1)
            time.sleep(0.1)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        t.join(5)
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _tcpdump(path: Path) -> str | None:
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        warnings.warn(f"tcpdump not installed: {path.name} was not checked with tcpdump -r", stacklevel=2)
        return None
    r = subprocess.run([tcpdump, "-nr", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_capture_wire_count(bench: tuple[Workbench, Path], tmp_path: Path) -> None:
    wb, home = bench
    out = tmp_path / "wire.pcap"
    r = _capture_while_pinging(wb, ["--home", str(home), "--wire", "-w", str(out), "--count", "8"])
    assert r.returncode == 0, r.stderr
    assert "8 packets written" in r.stderr
    pkts = rdpcap(str(out))
    assert len(pkts) == 8 and all(UDP in p and IP in p for p in pkts)
    n1 = wb.nodes[0]
    assert all(int(n1.service.primary_port) in (p[UDP].sport, p[UDP].dport) for p in pkts)
    # The node's own secret (from its home) plus its peers' public identities decrypt it all.
    ring = Keyring(str(home / "identity.secret"), *(n.identity.public() for n in wb.nodes[1:]))
    ring.add(wb.root)  # type: ignore[attr-defined]
    ring.add(wb.controller)  # type: ignore[attr-defined]
    dec = ring.decrypt_all(pkts)
    assert ring.errors == [] and sum(ZeroTierDecrypted in p for p in dec) == sum(
        len(p[UDP].payload) >= 28 for p in pkts
    )
    assert any(p[ZeroTier].src == int(n1.address) for p in dec if ZeroTier in p)
    text = _tcpdump(out)
    if text is not None:
        assert len(text.splitlines()) == 8 and "UDP" in text


def test_capture_network_frames_seconds(bench: tuple[Workbench, Path], tmp_path: Path) -> None:
    wb, home = bench
    nwid = wb.net.nwid  # type: ignore[union-attr]
    out = tmp_path / "net.pcap"
    r = _capture_while_pinging(wb, ["--home", str(home), "--network", nwid, "-w", str(out), "--seconds", "3"])
    assert r.returncode == 0, r.stderr
    pkts = rdpcap(str(out))
    n1, n2 = wb.nodes
    assert all(Ether in p for p in pkts)
    requests = [p for p in pkts if ICMP in p and p[ICMP].type == 8]
    replies = [p for p in pkts if ICMP in p and p[ICMP].type == 0]
    assert requests and replies  # both directions: received requests, sent replies
    assert all(p[Ether].src == n2.mac() and p[IP].dst == n1.ips()[0] for p in requests)
    assert all(p[Ether].src == n1.mac() and p[IP].src == n1.ips()[0] for p in replies)
    text = _tcpdump(out)
    if text is not None:
        assert "ICMP echo request" in text and "ICMP echo reply" in text


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--wire", "--network", "0123456789abcdef", "-w", "x.pcap"],
            2,
            "exactly one of --wire and --network",
        ),
        (["-w", "x.pcap"], 2, "exactly one of --wire and --network"),
        (["--network", "xyz", "-w", "x.pcap"], 2, "invalid network id"),
        (["--wire"], 2, "Missing option"),
        (["--wire", "-w", "x.pcap", "--count", "0"], 2, "0"),
    ],
)
def test_capture_rejects_bad_arguments(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    r = subprocess.run(
        _ztnode("capture", "--home", str(tmp_path), *args), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == code and message in r.stderr, r.stderr


def test_capture_errors_from_the_node(bench: tuple[Workbench, Path], tmp_path: Path) -> None:
    _, home = bench
    r = subprocess.run(
        _ztnode("capture", "--home", str(home), "--network", "0123456789abcdef", "-w", str(tmp_path / "x.pcap")),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1 and "404" in r.stderr and "not joined" in r.stderr, r.stderr
    r = subprocess.run(
        _ztnode("capture", "--home", str(tmp_path), "--wire", "-w", str(tmp_path / "y.pcap")),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1 and "zerotier-one.port" in r.stderr, r.stderr


def test_capture_to_stdout_and_a_client_that_leaves(bench: tuple[Workbench, Path]) -> None:
    wb, home = bench
    r = subprocess.run(
        _ztnode("capture", "--home", str(home), "--wire", "-w", "-", "--seconds", "1.5"),
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout[:4] == b"\xd4\xc3\xb2\xa1", r.stderr  # pcap magic, little-endian
    assert b"packets written to -" in r.stderr
    # A capture client killed while the node is quiet: the node lets go of it within seconds.
    svc = wb.nodes[0].service
    before = wb.rt.call(lambda: len(svc._wire_listeners))
    proc = subprocess.Popen(_ztnode("capture", "--home", str(home), "--wire", "-w", os.devnull))
    Workbench._wait(lambda: wb.rt.call(lambda: len(svc._wire_listeners)) > before, 20, "the capture to start")
    proc.kill()
    proc.wait(10)
    Workbench._wait(lambda: wb.rt.call(lambda: len(svc._wire_listeners)) == before, 10, "the capture to end")
