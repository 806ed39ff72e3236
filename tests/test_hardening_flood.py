"""Issue 8 defect 3, bounded: floods from distinct sources (junk, forged sources, forged
HELLOs) leave no per-remote state behind, keep WHOIS to the roots within a fixed budget per
second, and the node still works afterwards. bench/bench_flood.py runs the large version."""

from __future__ import annotations

import random

import pytest

from flood import forged_hellos, forged_source, junk
from ztcore.api import EventType
from ztcore.identity import Identity
from ztcore.simulation import SimHost, SimNetwork, make_planet
from ztcore.vl1.switch import IDENTITY_VERIFICATION_GLOBAL_RATE, WHOIS_GLOBAL_RATE


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(3)]


def _world(identities: list[Identity]) -> tuple[SimNetwork, SimHost, SimHost, SimHost]:
    net = SimNetwork()
    ep = net.allocate_endpoint("10.0.0.1")
    planet, _ = make_planet([(identities[0], [ep])])
    root = net.add_node(identity=identities[0], planet=planet, endpoint=ep)
    a = net.add_node(identity=identities[1], planet=planet, ip="10.0.1.1")
    b = net.add_node(identity=identities[2], planet=planet, ip="10.0.1.2")
    assert net.run_until(lambda: a.node.online and b.node.online, 10_000)
    return net, root, a, b


def _feed(net: SimNetwork, host: SimHost, packets, per_ms: int) -> int:  # type: ignore[no-untyped-def]
    """Deliver `packets` to `host`, `per_ms` of them per simulated millisecond, running the
    world's timers as it goes; returns how many simulated ms it took."""
    start = net.now
    for i, (src, data) in enumerate(packets):
        host.node.process_wire_packet(net.now, 0, src, data)
        if i % per_ms == per_ms - 1:
            net.run_for(1)
    return net.now - start


def _assert_bounded(host: SimHost) -> None:
    for name, (size, bound) in host.node.switch.table_sizes().items():
        assert size <= bound, (name, size, bound)
    assert host.node.drops.get("internal_error", 0) == 0


def _still_works(net: SimNetwork, a: SimHost, b: SimHost) -> None:
    n = len(b.events_of(EventType.USER_MESSAGE))
    a.node.send_user_message(net.now, b.node.address, 7, b"after the flood")
    assert net.run_until(lambda: len(b.events_of(EventType.USER_MESSAGE)) > n, 10_000)


def test_junk_from_distinct_sources_creates_no_paths(identities: list[Identity]) -> None:
    net, root, a, b = _world(identities)
    paths_before = len(a.node.topology.paths)
    _feed(net, a, junk(20_000, random.Random(1)), per_ms=20)
    assert len(a.node.topology.paths) == paths_before
    assert sum(a.node.drops.values()) >= 20_000
    _assert_bounded(a)
    _still_works(net, a, b)


def test_forged_sources_cost_bounded_whois(identities: list[Identity]) -> None:
    net, root, a, b = _world(identities)
    sent_before = a.node.switch.stats["whois_sent"]
    elapsed = _feed(net, a, forged_source(20_000, int(a.node.address), random.Random(2)), per_ms=10)
    sent = a.node.switch.stats["whois_sent"] - sent_before
    budget = 2 * WHOIS_GLOBAL_RATE + WHOIS_GLOBAL_RATE * (elapsed // 1000 + 1)
    assert sent <= budget, (sent, budget, elapsed)
    assert a.node.switch.stats["whois_rate_limited"] > 10_000
    assert len(a.node.topology.paths) <= 2
    _assert_bounded(a)
    net.run_for(70_000)  # pending WHOIS entries age out
    assert a.node.switch.table_sizes()["pending_whois"][0] == 0
    _still_works(net, a, b)


def test_forged_hellos_cost_bounded_identity_checks(identities: list[Identity]) -> None:
    net, root, a, b = _world(identities)
    count = 600
    elapsed = _feed(net, a, forged_hellos(count, a.node.identity, random.Random(3)), per_ms=1)
    drops = a.node.drops
    checked = drops.get("hello_invalid_identity", 0)
    budget = IDENTITY_VERIFICATION_GLOBAL_RATE * (elapsed // 1000 + 2)
    assert checked <= budget, (checked, budget, elapsed)
    assert checked + drops.get("hello_rate_limited", 0) == count, dict(drops)
    assert drops.get("hello_rate_limited", 0) > 0
    # No forged identity was adopted: a knows the root (and maybe b), nobody else.
    assert set(a.node.topology.peers) <= {int(root.node.address), int(b.node.address)}
    assert len(a.node.topology.paths) <= 2
    _assert_bounded(a)
    _still_works(net, a, b)


def test_bounded_tables_evict_oldest_and_expire() -> None:
    from ztcore.vl1.ratelimit import RecentTable, TokenBucket, WindowGate

    t: RecentTable[int] = RecentTable(3, 100)
    for k in range(5):
        t.set(k, k)
    assert list(t) == [2, 3, 4] and t.evicted == 2
    t.set(2, 50)  # refreshed: now the newest
    t.expire(105)
    assert list(t) == [2] and t.get(2) == 50
    g: WindowGate[str] = WindowGate(2, 1000, 2)
    assert [g.allow("x", 0) for _ in range(3)] == [True, True, False]
    assert g.allow("x", 1000)  # a new window
    g.allow("y", 1000)
    g.allow("z", 1000)
    assert len(g) == 2 and g.evicted == 1
    bucket = TokenBucket(10, 5)
    assert sum(bucket.allow(0) for _ in range(20)) == 5
    assert sum(bucket.allow(1000) for _ in range(20)) == 5  # refilled to the burst, no more
    assert bucket.refused == 30


def test_multicast_subscriptions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from ztcore.vl2 import multicaster as mc
    from ztcore.vl2.mac import MAC
    from ztcore.vl2.multicast_group import MulticastGroup

    monkeypatch.setattr(mc, "MAX_SUBSCRIPTIONS", 100)
    m = mc.Multicaster()
    for i in range(300):
        m.add(0, 1, MulticastGroup(MAC(0x333300000000 + i), 0), 0x0102030405)
    assert len(m) == 100 and m.refused == 200
    m.add(10, 1, MulticastGroup(MAC(0x333300000000), 0), 0x0102030405)  # known: refreshed
    assert len(m) == 100
    m.remove(1, MulticastGroup(MAC(0x333300000001), 0), 0x0102030405)
    assert len(m) == 99
    m.add(20, 1, MulticastGroup(MAC(0x333300000001), 0), 0x0102030405)
    assert len(m) == 100
    m.add(mc.MULTICAST_LIKE_EXPIRE + 5, 1, MulticastGroup(MAC(0x3333000FFFFF), 0), 7)
    assert len(m) == 3  # full: the expired ones went (the two added later stay)
