"""Remote tracing from a real ZeroTier core: a libzt 1.8.4 member of a ztcore-controlled
network whose ``remoteTraceTarget`` is the ztcore controller, at level RULES (15).

Three hosts on a private bridge: a ztcore root, a ztcore node hosting the controller
(also a member of its own network) and a libzt node. The network's rules drop UDP to
port 6000 and accept the rest. The libzt node sends UDP to the ztcore member on port
6000; its core drops the frame and sends VERB_REMOTE_TRACE to the controller. Checked
through the controller's API: the store holds the real node's traces (filter trace
2006 with the rule log, and the 2000 "filter blocked" drop) in zerotier-one's record
shape; the rule log names rule 2 (the drop) as the deciding rule; and ztcore's own
rule evaluator gives the same verdict as the real core for every traced frame.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ztcore.cli.trace import deciding_rule_index
from ztcore.vl2.rules import Frame, evaluate, rules_from_json

from .harness import Lan, LibztNode
from .harness.ztcore_node import ZtcoreNode
from .test_vl1_interop import make_planet_with_ztnode
from .test_vl2_interop import ipv4_of

pytestmark = pytest.mark.interop

RULES = [
    {"type": "MATCH_IP_PROTOCOL", "not": False, "or": False, "ipProtocol": 17},
    {"type": "MATCH_IP_DEST_PORT_RANGE", "not": False, "or": False, "start": 6000, "end": 6000},
    {"type": "ACTION_DROP"},
    {"type": "ACTION_ACCEPT"},
]


@pytest.fixture(scope="module")
def world(harness: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp: Path = tmp_path_factory.mktemp("trace")
    with Lan(n_hosts=3) as lan:
        root_h, ctl_h, lz_h = lan.hosts
        planet = make_planet_with_ztnode(tmp, tmp / "root", root_h.ip)
        root = ZtcoreNode(root_h, tmp / "root", 9993, planet=planet, bind=[root_h.ip], name="ztcore-root")
        ctl = ZtcoreNode(
            ctl_h, tmp / "ctl", 9993, planet=planet, bind=[ctl_h.ip], controller=True, api_port=9993,
            name="ztcore-ctl",
        )
        lz = LibztNode(lz_h, tmp / "lz", 9993, planet=planet, name="libzt")
        nodes = (root, ctl, lz)
        try:
            for n in nodes:
                n.start()
            assert ctl.node_id is not None and lz.node_id is not None
            body = {
                "name": "trace-interop",
                "private": True,
                "ipAssignmentPools": [{"ipRangeStart": "10.122.7.10", "ipRangeEnd": "10.122.7.200"}],
                "routes": [{"target": "10.122.7.0/24", "via": None}],
                "v4AssignMode": {"zt": True},
                "v6AssignMode": {"zt": False, "rfc4193": False, "6plane": False},
                "rules": RULES,
                "remoteTraceTarget": ctl.node_id,
                "remoteTraceLevel": 15,
            }
            status, net = ctl.api("POST", f"/controller/network/{ctl.node_id}______", body)
            assert status == 200, net
            assert net["remoteTraceTarget"] == ctl.node_id and net["remoteTraceLevel"] == 15, net
            nwid = int(net["id"], 16)
            for member in (ctl.node_id, lz.node_id):
                status, m = ctl.api("POST", f"/controller/network/{net['id']}/member/{member}", {"authorized": True})
                assert status == 200, m
            ctl.join(nwid)
            lz.join(nwid)
            for n in (ctl, lz):
                n.wait_online(30)
            yield {"ctl": ctl, "lz": lz, "nwid": nwid}
        finally:
            for n in reversed(nodes):
                n.stop()


def _traces(ctl: ZtcoreNode, nwid: int, node: str) -> list[dict[str, Any]]:
    status, recs = ctl.api("GET", f"/controller/network/{nwid:016x}/trace?node={node}&limit=10000")
    assert status == 200, recs
    return recs


def test_real_core_traces_reach_the_ztcore_controller(world: dict[str, Any]) -> None:
    ctl: ZtcoreNode = world["ctl"]
    lz: LibztNode = world["lz"]
    nwid: int = world["nwid"]
    assert lz.node_id is not None and ctl.node_id is not None
    lz_net = lz.wait_network_ok(nwid, timeout=40)
    assert ipv4_of(lz_net.get("addrs", [])) is not None, lz_net
    ctl.wait_network_ok(nwid, timeout=40)
    ctl_ip = ipv4_of(ctl.addresses(nwid))
    assert ctl_ip is not None

    # The real core memoizes trace targets every 7.5 s: keep sending until traces arrive.
    fd = lz.udp_bind()
    deadline = time.monotonic() + 60
    dropped: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        lz.udp_sendto(fd, ctl_ip, 6000, b"traced by the real core")
        time.sleep(1.0)
        recs = _traces(ctl, nwid, lz.node_id)
        dropped = [r for r in recs if r.get("event") == "2006" and r.get("filterResult") == "0000000000000000"]
        if dropped and any(r.get("event") == "2000" for r in recs):
            break
    assert dropped, f"no dropped-frame filter trace from the real node: {_traces(ctl, nwid, lz.node_id)[:5]}"

    recs = _traces(ctl, nwid, lz.node_id)
    rec = dropped[0]
    # zerotier-one's controller record shape.
    assert rec["objtype"] == "trace" and rec["nodeId"] == lz.node_id, rec
    assert rec["id"].startswith(f"{ctl.node_id}-") and isinstance(rec["ts"], int), rec
    assert rec["networkId"] == f"{nwid:016x}" and rec["filterInbound"] == "0", rec
    assert int(rec["sourceZtAddr"], 16) == int(lz.node_id, 16), rec
    assert int(rec["destZtAddr"], 16) == int(ctl.node_id, 16), rec
    assert int(rec["etherType"], 16) == 0x0800, rec
    frame = bytes.fromhex(rec["frameData"])
    assert frame[9] == 17 and int.from_bytes(frame[22:24], "big") == 6000, frame.hex()
    base_log = bytes.fromhex(rec["filterBaseRuleLog"])
    assert len(base_log) == 512, len(base_log)
    rules = rules_from_json(RULES)
    assert deciding_rule_index(rules, base_log) == 2  # the ACTION_DROP
    # The real core's own drop report.
    drops = [r for r in recs if r.get("event") == "2000"]
    assert drops and drops[0]["reason"] == "filter blocked", drops[:1]

    # ztcore's evaluator agrees with the real core on every frame it traced.
    compared = 0
    for r in recs:
        if r.get("event") != "2006" or "frameData" not in r:
            continue
        frame = Frame(
            int(r["sourceZtAddr"], 16),
            int(r["destZtAddr"], 16),
            int(r["sourceMac"], 16),
            int(r["destMac"], 16),
            int(r["etherType"], 16),
            bytes.fromhex(r["frameData"]),
            vlan_id=int(r["vlanId"], 16),
        )
        # The real node traced its own outbound frames (filterInbound 0): evaluate as it did.
        ours = evaluate(rules, frame, inbound=False, me=int(r["sourceZtAddr"], 16))
        theirs = int(r["filterResult"], 16) if not r["filterResult"].startswith("-") else -1
        assert ours.deliver == (theirs > 0), (r, ours)
        if not ours.deliver:
            assert ours.deciding is not None and ours.deciding.capability_id is None
            assert ours.deciding.index == deciding_rule_index(rules, bytes.fromhex(r["filterBaseRuleLog"]))
        compared += 1
    assert compared >= 1
