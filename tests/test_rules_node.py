"""The rules engine inside real nodes (simulator): tags and capabilities issued by the
controller travel in NETWORK_CREDENTIALS, are checked and held per member, and decide
frames in both directions; a TEE target observes frames (super-accept); credential
pushes are split across packets; member credentials follow the core's checks."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from tests.test_node_vl2 import World, _udp_frame

from ztcore.identity import Address, Identity
from ztcore.vl2.credentials import Capability, Revocation, Tag
from ztcore.vl2.membership import AddCredentialResult, Membership, credential_packets
from ztcore.vl2.netconf import NetworkConfig
from ztcore.vl2.rules import Rule

DEPT = 100
CAP_UDP7000 = 7


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(5)]


def _udp_to(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, dport: int, payload: bytes) -> bytes:
    frame = bytearray(_udp_frame(src, dst, payload))
    frame[22:24] = dport.to_bytes(2, "big")
    return bytes(frame)


def _tag_world(identities: list[Identity], tmp: Path) -> World:
    rules = [
        {"type": "MATCH_ETHERTYPE", "etherType": 0x0800, "not": True, "or": False},
        {"type": "ACTION_ACCEPT"},  # ARP and the rest: accepted
        {"type": "MATCH_TAGS_DIFFERENCE", "id": DEPT, "value": 0, "not": False, "or": False},
        {"type": "ACTION_ACCEPT"},  # same department
    ]
    w = World(identities, tmp, rules=rules)
    w.backend.post_network(
        w.nw["id"],
        {
            "tags": [{"id": DEPT, "default": 0}],
            "capabilities": [
                {
                    "id": CAP_UDP7000,
                    "rules": [
                        {"type": "MATCH_IP_PROTOCOL", "ipProtocol": 17, "not": False, "or": False},
                        {
                            "type": "MATCH_IP_DEST_PORT_RANGE",
                            "start": 7000,
                            "end": 7000,
                            "not": False,
                            "or": False,
                        },
                        {"type": "ACTION_ACCEPT"},
                    ],
                }
            ],
        },
    )
    return w


def _send(w: World, src: Any, dst: Any, dport: int, payload: bytes) -> bool:
    frame = _udp_to(w.ipv4(src), w.ipv4(dst), dport, payload)
    return src.node.process_virtual_network_frame(w.net.now, w.nwid, w.mac(src), w.mac(dst), 0x0800, 0, frame)


def _got(host: Any, payload: bytes) -> bool:
    return any(payload in f.data for f in host.frames)


def test_tags_and_capabilities_decide_frames_end_to_end(identities: list[Identity], tmp_path: Path) -> None:
    w = _tag_world(identities, tmp_path)
    a, b = w.a, w.b
    w.join_authorized()
    w.backend.post_member(
        w.nw["id"], str(a.node.address), {"tags": [[DEPT, 1]], "capabilities": [CAP_UDP7000]}
    )
    w.backend.post_member(w.nw["id"], str(b.node.address), {"tags": [[DEPT, 2]]})
    assert w.net.run_until(
        lambda: (
            (a.node.get_network(w.nwid).config.tag(DEPT) or Tag(0, 0, 0, 0, Address(0))).value == 1  # type: ignore[union-attr]
            and (b.node.get_network(w.nwid).config.tag(DEPT) or Tag(0, 0, 0, 0, Address(0))).value == 2
        ),  # type: ignore[union-attr]
        5_000,
    )

    # a -> b, port 6000: a does not know b's tag yet (outbound is lenient), b knows a's
    # (pushed before the frame) and drops it: different departments, and a's capability
    # only allows UDP 7000.
    assert _send(w, a, b, 6000, b"dept-mismatch")
    w.net.run_for(2_000)
    assert not _got(b, b"dept-mismatch")
    assert b.node.vl2.drops["filter_blocked_inbound"] >= 1
    mb = b.node.get_network(w.nwid).memberships[int(a.node.address)]  # type: ignore[union-attr]
    assert mb.tags[DEPT].value == 1 and CAP_UDP7000 in mb.capabilities

    # a -> b, port 7000: b evaluates a's capability and accepts.
    assert _send(w, a, b, 7000, b"via-capability")
    assert w.net.run_until(lambda: _got(b, b"via-capability"), 3_000)

    # b -> a, port 7000: b holds no capability and now knows a's tag: dropped at b.
    assert not _send(w, b, a, 7000, b"b-has-no-cap")
    assert b.node.vl2.drops["filter_blocked_outbound"] >= 1

    # Same department: b's tag changes, the controller pushes, b re-sends its credentials.
    w.backend.post_member(w.nw["id"], str(b.node.address), {"tags": [[DEPT, 1]]})
    assert w.net.run_until(lambda: b.node.get_network(w.nwid).config.tag(DEPT).value == 1, 3_000)  # type: ignore[union-attr]
    assert _send(w, b, a, 6000, b"same-dept")
    assert w.net.run_until(lambda: _got(a, b"same-dept"), 3_000)

    # Housekeeping keeps members that are peers and forgets the others.
    net_b = b.node.get_network(w.nwid)
    assert net_b is not None
    net_b.clean(lambda addr: addr == int(a.node.address))
    assert list(net_b.memberships) == [int(a.node.address)] and net_b.memberships[int(a.node.address)].tags
    net_b.clean(lambda addr: False)
    assert net_b.memberships == {}


def test_tee_target_observes_with_super_accept(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    observer = w.ctl
    rules = [
        {"type": "MATCH_IP_PROTOCOL", "ipProtocol": 17, "not": False, "or": False},
        {"type": "ACTION_TEE", "address": str(observer.node.address), "flags": 0, "length": 0},
        {"type": "ACTION_ACCEPT"},
    ]
    w.backend.post_network(w.nw["id"], {"rules": rules})
    w.join_authorized()
    observer.node.join(w.nwid)
    w.authorize(observer)
    assert w.net.run_until(lambda: w.status(observer) == "OK", 70_000)
    assert _send(w, w.a, w.b, 6000, b"observed")
    assert w.net.run_until(lambda: _got(w.b, b"observed"), 3_000)
    # Copies from the sender (outbound TEE) and from the receiver (inbound TEE) reach the
    # observer, which delivers them although they are addressed to b's MAC.
    assert w.net.run_until(lambda: sum(b"observed" in f.data for f in observer.frames) >= 2, 3_000)
    copies = [f for f in observer.frames if b"observed" in f.data]
    assert all(f.dest_mac == int(w.mac(w.b)) and f.source_mac == int(w.mac(w.a)) for f in copies)
    assert w.a.node.vl2.stats["rule_copies_sent"] >= 1 and w.b.node.vl2.stats["rule_copies_sent"] >= 1


def test_redirect_sends_frame_elsewhere(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    target = w.ctl
    rules = [
        {"type": "MATCH_IP_DEST_PORT_RANGE", "start": 6000, "end": 6000, "not": False, "or": False},
        {"type": "ACTION_REDIRECT", "address": str(target.node.address), "flags": 0},
        {"type": "ACTION_ACCEPT"},
    ]
    w.backend.post_network(w.nw["id"], {"rules": rules})
    w.join_authorized()
    target.node.join(w.nwid)
    w.authorize(target)
    assert w.net.run_until(lambda: w.status(target) == "OK", 70_000)
    assert not _send(w, w.a, w.b, 6000, b"redirected")  # dropped locally, sent to the target
    assert w.net.run_until(lambda: _got(target, b"redirected"), 3_000)
    w.net.run_for(1_000)
    assert not _got(w.b, b"redirected")


# --------------------------------------------------------------- Membership


def _controller_and_config(nwid_low: int = 1) -> tuple[Identity, NetworkConfig]:
    ctl = Identity.generate()
    nwid = (int(ctl.address) << 24) | nwid_low
    config = NetworkConfig(
        network_id=nwid, issued_to=Address(1), timestamp=1_000_000, credential_time_max_delta=10_000
    )
    return ctl, config


def test_membership_checks_signature_age_and_revocation() -> None:
    ctl, config = _controller_and_config()
    member = Identity.generate()
    lookup = {ctl.address: ctl}.get

    def tag(ts: int, value: int, signer: Identity = ctl) -> Tag:
        t = Tag(DEPT, value, config.network_id, ts, member.address)
        assert t.sign(signer)
        return t

    m = Membership()
    assert m.add_tag(tag(1_000_000, 1), lookup) == AddCredentialResult.ACCEPTED_NEW
    assert m.add_tag(tag(1_000_000, 1), lookup) == AddCredentialResult.ACCEPTED_REDUNDANT
    assert m.add_tag(tag(999_000, 5), lookup) == AddCredentialResult.REJECTED  # older than held
    assert (
        m.add_tag(tag(1_001_000, 2, Identity.generate()), lookup) == AddCredentialResult.REJECTED
    )  # not the controller
    assert m.add_tag(tag(1_002_000, 3), {}.get) == AddCredentialResult.DEFERRED_FOR_WHOIS
    assert m.add_tag(tag(1_002_000, 3), lookup) == AddCredentialResult.ACCEPTED_NEW
    assert m.get_tag(config, DEPT).value == 3  # type: ignore[union-attr]

    # Outside the credential window of our config: held but not used, then cleaned.
    far = NetworkConfig(
        network_id=config.network_id,
        issued_to=Address(1),
        timestamp=2_000_000,
        credential_time_max_delta=10_000,
    )
    assert m.get_tag(far, DEPT) is None
    assert m.rules_view(far)[0] == {}

    # A revocation for the tag id hides tags at or below its threshold.
    rev = Revocation(1, config.network_id, DEPT, 1_002_000, 0, member.address, 3)
    assert rev.sign(ctl)
    assert m.add_revocation(rev) == AddCredentialResult.ACCEPTED_NEW
    assert m.get_tag(config, DEPT) is None
    assert m.add_tag(tag(1_001_500, 4), lookup) == AddCredentialResult.REJECTED  # revoked
    assert m.add_tag(tag(1_003_000, 4), lookup) == AddCredentialResult.ACCEPTED_NEW
    assert m.rules_view(config)[0] == {DEPT: 4}
    m.clean(far)
    assert m.tags == {}


def test_membership_capabilities_are_compiled_and_filtered() -> None:
    ctl, config = _controller_and_config()
    member = Identity.generate()
    lookup = {ctl.address: ctl}.get
    m = Membership()
    for cid, ts in ((3, 1_000_000), (2, 1_005_000), (9, 500_000)):
        cap = Capability(cid, config.network_id, ts, [Rule.action_accept()])
        assert cap.sign(ctl, int(member.address))
        assert m.add_capability(cap, lookup) == AddCredentialResult.ACCEPTED_NEW
    forged = Capability(4, config.network_id, 1_000_000, [Rule.action_accept()])
    assert forged.sign(member, int(member.address))  # first custody entry not from the controller
    assert m.add_capability(forged, lookup) == AddCredentialResult.REJECTED
    _tags, caps, _own = m.rules_view(config)
    assert [cid for cid, _ in caps] == [2, 3]  # 9 is outside the window; ordered by id


def test_credential_pushes_split_across_packets() -> None:
    ctl, config = _controller_and_config()
    member = Identity.generate()
    big_rules = [Rule.match_ipv6_source(f"fd00::{i:x}/128") for i in range(60)] + [Rule.action_accept()]
    for cid in range(12):
        cap = Capability(cid, config.network_id, 1_000_000, big_rules[:64])
        assert cap.sign(ctl, int(member.address))
        config.capabilities.append(cap)
    for tid in range(30):
        t = Tag(tid, tid, config.network_id, 1_000_000, member.address)
        assert t.sign(ctl)
        config.tags.append(t)
    packets = credential_packets(config)
    assert len(packets) > 1
    assert sum(len(p.capabilities) for p in packets) == 12 and sum(len(p.tags) for p in packets) == 30
    for p in packets:
        assert len(p.to_bytes()) + 28 < 10024
    assert packets[0].coms == [] and all(not p.coms for p in packets)


def test_rule_changes_reach_an_online_member_within_a_second(
    identities: list[Identity], tmp_path: Path
) -> None:
    """Three rule changes 50 s apart: each reaches member a within a second, although a's
    last config request grows older than the controller's 120 s window (every push resets
    a's request timer); the controller counts the packets it hears from a instead."""
    w = World(identities, tmp_path)
    w.controller._clock = lambda: w.net.now  # the controller on simulated time
    w.join_authorized()
    net_a = w.a.node.get_network(w.nwid)
    assert net_a is not None
    for port in (7001, 7002, 7003):
        w.net.run_for(50_000)
        rules = [
            {"type": "MATCH_IP_DEST_PORT_RANGE", "start": port, "end": port, "not": False, "or": False},
            {"type": "ACTION_DROP"},
            {"type": "ACTION_ACCEPT"},
        ]
        w.backend.post_network(w.nw["id"], {"rules": rules})
        assert w.net.run_until(
            lambda port=port: (
                net_a.config is not None and any(r.type == 40 and r.start == port for r in net_a.config.rules)
            ),
            1_000,
        ), f"change to port {port} did not arrive within a second"


class _Host:
    def __init__(self, identity: Identity, controller: Identity) -> None:
        self.identity = identity
        self.controller = controller
        self.traces: list[str] = []

    def state_put(self, kind: object, object_id: object, data: object) -> None:
        pass

    def network_config_changed(self, network: object, operation: str) -> None:
        pass

    def lookup_identity(self, address: int) -> Identity | None:
        return self.controller if int(address) == int(self.controller.address) else None

    def trace(self, kind: str, **fields: object) -> None:
        self.traces.append(kind)


def test_network_remembers_verdicts_until_credentials_change() -> None:
    from ztcore.vl2.network import Network

    ctl, me, peer = Identity.generate(), Identity.generate(), Identity.generate()
    nwid = (int(ctl.address) << 24) | 5
    my_tag = Tag(DEPT, 1, nwid, 1_000_000, me.address)
    assert my_tag.sign(ctl)
    config = NetworkConfig(
        network_id=nwid,
        issued_to=me.address,
        timestamp=1_000_000,
        credential_time_max_delta=10_000,
        rules=[Rule.match_tags_equal(DEPT, 1), Rule.action_accept(), Rule.action_drop()],
        tags=[my_tag],
    )
    network = Network(_Host(me, ctl), nwid, 1_000_000)
    assert network.set_configuration(1_000_000, config, save=False) == 2
    frame = _udp_to(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.2"), 53, b"q")

    def inbound(payload: bytes = frame) -> str:
        ev = network.filter_frame(
            inbound=True,
            peer=int(peer.address),
            source_mac=1,
            dest_mac=2,
            ethertype=0x0800,
            vlan_id=0,
            data=payload,
        )
        return ev.verdict.name

    assert inbound() == "DROP"  # peer's tag unknown: inbound tag matches are strict
    assert inbound() == "DROP" and network._verdicts.hits == 1
    other_id = bytearray(frame)
    other_id[4:6] = b"\x99\x99"  # another packet of the same flow
    assert inbound(bytes(other_id)) == "DROP" and network._verdicts.hits == 2
    their = Tag(DEPT, 1, nwid, 1_000_500, peer.address)
    assert their.sign(ctl)
    assert network.add_credential(their) == AddCredentialResult.ACCEPTED_NEW
    assert inbound() == "ACCEPT"  # new credentials: evaluated afresh
    rev = Revocation(2, nwid, DEPT, 1_000_500, 0, peer.address, 3)
    assert rev.sign(ctl)
    assert network.add_revocation(rev) == AddCredentialResult.ACCEPTED_NEW
    assert inbound() == "DROP"  # its tag is revoked


def test_multicast_is_filtered_per_recipient(identities: list[Identity], tmp_path: Path) -> None:
    """OutboundMulticast: the rules run once for the multicast (no recipient), then again
    for each recipient; a rule naming b as destination keeps the frame from b only."""
    w = World(identities, tmp_path)
    b_addr = str(w.b.node.address)
    w.backend.post_network(
        w.nw["id"],
        {
            "rules": [
                {"type": "MATCH_DEST_ZEROTIER_ADDRESS", "zt": b_addr, "not": False, "or": False},
                {"type": "ACTION_DROP"},
                {"type": "ACTION_ACCEPT"},
            ]
        },
    )
    w.join_authorized()
    w.ctl.node.join(w.nwid)
    w.authorize(w.ctl)
    assert w.net.run_until(lambda: w.status(w.ctl) == "OK", 70_000)
    group_mac = 0x01005E00007C
    for host in (w.b, w.ctl):
        host.node.multicast_subscribe(w.nwid, group_mac)
    w.net.run_for(2_000)
    frame = _udp_frame(w.ipv4(w.a), ipaddress.IPv4Address("239.0.0.124"), b"to the group")
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, w.mac(w.a), group_mac, 0x0800, 0, frame)
    assert w.net.run_until(lambda: _got(w.ctl, b"to the group"), 3_000)
    w.net.run_for(1_000)
    assert not _got(w.b, b"to the group")
    assert w.a.node.vl2.drops["filter_blocked_outbound"] >= 1
