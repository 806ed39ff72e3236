"""The workbench from a script: nodes n1..n3 on an offline private network, frames and
pongs in vframes, wire packets decrypted in sent/received, traces, messages, the
network's controller handle, and capture= to a pcap file."""

from __future__ import annotations

import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from ztcore.scapy import ZeroTier, ZeroTierDecrypted, ZTFrame, ZTHello
from ztcore.vl1.packet import Verb
from ztcore.workbench import RingBuffer, Workbench, wait


def _pong(p: object) -> bool:
    return bytes(p.payload).startswith(b"pong")  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    pcap = tmp_path_factory.mktemp("wb") / "wire.pcap"
    t0 = time.monotonic()
    with Workbench(n=3, capture=pcap) as wb:
        wb.started_in = time.monotonic() - t0  # type: ignore[attr-defined]
        wb.pcap = pcap  # type: ignore[attr-defined]
        yield wb


def test_offline_network_is_up_with_addresses(bench: Workbench) -> None:
    assert bench.started_in < 20  # type: ignore[attr-defined]
    assert bench.net is not None and len(bench.nodes) == 3
    n1, n2, n3 = bench.nodes
    for n in bench.nodes:
        assert n.online and n.network()["status"] == "OK"  # type: ignore[index]
        assert n.ips()[0].startswith("10.147.20.") and ":" in n.ips()[1]
        assert int(n.mac().replace(":", ""), 16) != 0
        assert bench.net.member(n)["authorized"] is True  # type: ignore[index]
    assert len({n.mac() for n in bench.nodes}) == 3
    assert {str(p.address) for p in n1.peers()} >= {str(bench.root.address)}  # type: ignore[attr-defined]


def test_broadcast_ping_is_answered_with_pongs(bench: Workbench) -> None:
    n1, n2, n3 = bench.nodes
    n1.vframes.clear()
    n1.broadcast_eth(b"ping from n1")
    pongs = wait(n1.vframes, 2, timeout=10, lfilter=_pong)
    assert sorted(bytes(p.payload) for p in pongs) == sorted(
        f"pong from {n.address}".encode() for n in (n2, n3)
    )
    for p in pongs:
        assert p[Ether].dst == n1.mac() and p[Ether].type == 0 and p.sniffed_on == bench.net.nwid  # type: ignore[union-attr]
        assert p.time > 0
    # Switched off on n3: only n2 answers.
    n3.pingpong = False
    try:
        n1.vframes.clear()
        n1.broadcast_eth(b"ping from n1 again")
        assert len(n1.wait("vframes", 1, timeout=10, lfilter=_pong)) == 1
        time.sleep(0.5)
        assert [bytes(p.payload) for p in n1.vframes if _pong(p)] == [f"pong from {n2.address}".encode()]
    finally:
        n3.pingpong = True


def test_scapy_frames_messages_and_ping(bench: Workbench) -> None:
    n1, n2, _ = bench.nodes
    ip1, ip2 = n1.ips()[0], n2.ips()[0]
    n1.send_eth(n2, IP(src=ip1, dst=ip2) / UDP(sport=1234, dport=5678) / b"crafted")
    got = n2.wait(n2.vframes, lfilter=lambda p: p[UDP].dport == 5678, timeout=10)
    assert got[0][IP].src == ip1 and bytes(got[0][UDP].payload) == b"crafted" and got[0].src == n1.mac()
    # An Ether()/... goes as it is.
    n1.send_eth(None, Ether(dst=n2.mac(), type=0x88B5) / b"local experimental ethertype")
    assert n2.wait(n2.vframes, lfilter=lambda p: p.type == 0x88B5, timeout=10)
    assert n1.send_message(n2, b"hello n2", type_id=42)
    msg = n2.wait(n2.messages, lfilter=lambda m: m.type_id == 42, timeout=10)[0]
    assert msg.data == b"hello n2" and int(msg.source) == int(n1.address)
    rtt = n1.ping(n2)
    assert rtt is not None and 0 <= rtt < 3000
    assert n1.ping(n2.ips()[1]) is not None  # IPv6 (RFC4193)
    with pytest.raises(TimeoutError, match="no echo reply from 10.147.20.254"):
        n1.ping("10.147.20.254", timeout=0.5)  # nobody there


def test_wire_buffers_hold_decrypted_zerotier(bench: Workbench) -> None:
    n1, n2, _ = bench.nodes
    hello = n2.wait(n2.received, lfilter=lambda p: ZTHello in p)[0]
    assert (
        isinstance(hello[ZeroTier], ZeroTierDecrypted)
        and hello[ZTHello].identity.address == hello[ZeroTier].src
    )
    assert hello[ZeroTier].dst == int(n2.address) and hello.sniffed_on == "n2"
    frames = [p for p in n1.sent if ZTFrame in p]
    assert frames and all(p[ZeroTier].src == int(n1.address) for p in frames)
    assert any(bytes(p[ZTFrame].payload).startswith(b"ping") for p in n1.sent if ZTFrame in p) or any(
        ZeroTierDecrypted in p and p[ZeroTier].verb == Verb.MULTICAST_FRAME for p in n1.sent
    )
    assert n1.counters["undecrypted_in"] == 0 and n1.counters["undecrypted_out"] == 0
    assert n1.traced and all(hasattr(t, "EVENT_ID") and t.to_json()["type"] for t in n1.traced)


def test_ring_buffers_are_bounded_and_wait_times_out() -> None:
    buf = RingBuffer("b", 3)
    for i in range(5):
        buf.append(Ether() / bytes([i]))
    assert len(buf) == 3 and [bytes(p.payload) for p in buf] == [b"\x02", b"\x03", b"\x04"]
    buf.maxlen = 2
    assert len(buf) == 2 and buf.maxlen == 2
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="0 of 1"):
        buf.wait(1, timeout=0.3, new=True)
    assert 0.25 < time.monotonic() - t0 < 2
    with pytest.raises(ValueError):
        buf.maxlen = 0


def test_rules_set_through_net_drop_the_pings(bench: Workbench) -> None:
    n1, n2, _ = bench.nodes
    assert bench.net is not None
    rev = n2.network()["netconfRevision"]  # type: ignore[index]
    bench.net.set_rules(
        [{"type": "MATCH_ETHERTYPE", "etherType": 0, "not": False, "or": False}, {"type": "ACTION_DROP"},
         {"type": "ACTION_ACCEPT"}]
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(
            n.network()["netconfRevision"] == rev
            for n in bench.nodes  # type: ignore[index]
        ):
            time.sleep(0.05)
        n1.vframes.clear()
        n1.broadcast_eth(b"ping from n1 under rules")
        with pytest.raises(TimeoutError):
            n1.wait(n1.vframes, 1, timeout=1.5, lfilter=_pong)
        assert any(t.NAME in ("networkFilter", "outgoingNetworkFrameDropped") for t in n1.traced)
    finally:
        bench.net.set_rules([{"type": "ACTION_ACCEPT"}])


def test_capture_file_reads_back_and_decrypts(bench: Workbench) -> None:
    pcap: Path = bench.pcap  # type: ignore[attr-defined]
    pkts = rdpcap(str(pcap))
    assert len(pkts) > 20 and all(UDP in p for p in pkts)
    # Each datagram once, though both ends of node-to-node traffic see it.
    raws = [bytes(p[UDP].payload) for p in pkts]
    assert len(set(raws)) == len(raws)
    out = bench.keyring().decrypt_all(pkts)
    verbs = {p[ZeroTier].verb for p in out if ZeroTierDecrypted in p}
    assert {Verb.HELLO, Verb.OK, Verb.NETWORK_CONFIG_REQUEST, Verb.FRAME} <= verbs
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        warnings.warn(
            "tcpdump not installed: the workbench pcap was not checked with tcpdump -r", stacklevel=1
        )
        return
    r = subprocess.run([tcpdump, "-nr", str(pcap)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # (the file keeps growing while the nodes talk)
    assert len(r.stdout.splitlines()) >= len(pkts) and "UDP" in r.stdout


def test_nodes_join_a_given_network_on_a_given_planet(tmp_path: Path) -> None:
    """The --nwid/--planet mode: a second workbench joins the first one's network."""
    with Workbench(n=1) as first:
        assert first.net is not None
        with Workbench(n=1, nwids=[first.net.nwid], planet=first.planet.to_bytes(), home=tmp_path) as second:
            (m,) = second.nodes
            assert second.net is None and second.nwids == [first.net.id]
            assert first.net.nwid in second.banner()
            Workbench._wait(lambda: first.net.member(m) is not None, 20, "the join request")  # type: ignore[union-attr]
            first.net.authorize(m)
            Workbench._wait(lambda: (m.network() or {}).get("status") == "OK" and bool(m.ips()), 30, "config")
            assert m.ping(first.nodes[0]) is not None
            address = m.address
        assert (tmp_path / "n1" / "identity.secret").exists()
    with Workbench(n=1, home=tmp_path) as again:  # the home keeps the identity
        assert again.nodes[0].address == address


def test_node_capture_of_a_network_and_of_the_wire(bench: Workbench, tmp_path: Path) -> None:
    n1, n2, _ = bench.nodes
    with n1.capture(tmp_path / "net.pcap", network=True) as cap, n1.capture(tmp_path / "wire.pcap") as wire:
        assert n2.ping(n1, timeout=10) >= 0
        # Cleared before the broadcast, not new=True after it: the pongs can come back
        # before wait() starts counting (it failed that way in CI).
        n1.vframes.clear()
        n1.broadcast_eth(b"ping from n1 (captured)")
        n1.wait(n1.vframes, 2, timeout=10, lfilter=lambda p: b"pong" in bytes(p.payload))
    assert cap.count >= 4 and wire.count >= 4 and "stopped" in repr(cap)
    frames = rdpcap(str(tmp_path / "net.pcap"))
    assert len(frames) == cap.count
    # Ethertype 0 reads as an 802.3 length field to Scapy (Dot3), so look at the bytes.
    raw = [bytes(p) for p in frames]
    payloads = [r[14:] for r in raw if r[12:14] == b"\x00\x00"]
    assert b"ping from n1 (captured)" in payloads and sum(x.startswith(b"pong") for x in payloads) == 2
    assert any(p[Ether].src == n2.mac() and IP in p for p in frames)  # the echo request it received
    pkts = bench.keyring().decrypt_all(rdpcap(str(tmp_path / "wire.pcap")))
    assert len(pkts) == wire.count and any(ZTFrame in p for p in pkts)
    assert all(int(n1.address) in (p[ZeroTier].src, p[ZeroTier].dst) for p in pkts if ZeroTier in p)
