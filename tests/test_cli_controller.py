"""`ztnode controller` against real `ztnode run` processes.

A controller node (also the only root of a self-made planet on 127.0.0.1) and a
leaf. Networks and members are managed with the CLI; what it did is checked
through the API (plain urllib) and, for authorization, through the leaf's own
view of the network (ACCESS_DENIED -> OK with an address from the pool).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import Result

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli_client import (  # noqa: E402
    RunningNode,
    make_root_home,
    start_node,
    stop_node,
    until,
    ztnode,
)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    base = tmp_path_factory.mktemp("ctl")
    root_home, planet, root_port = make_root_home(base)
    nodes: list[RunningNode] = []
    try:
        ctl = start_node(root_home, planet, port=root_port)
        nodes.append(ctl)
        leaf = start_node(base / "leaf", planet)
        nodes.append(leaf)
        until(lambda: leaf.get("/status")["online"], what="leaf online")
        yield SimpleNamespace(ctl=ctl, leaf=leaf, base=base, planet=planet)
    finally:
        for n in nodes:
            stop_node(n)


def ctl(net: SimpleNamespace, *args: str) -> Result:
    return ztnode("controller", "--home", str(net.ctl.home), *args)


def ctl_json(net: SimpleNamespace, *args: str) -> dict:
    r = ctl(net, "-j", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_info(net: SimpleNamespace) -> None:
    j = ctl_json(net, "info")
    assert j["controller"] is True and j["databaseReady"] is True
    assert j["address"] == net.ctl.address and j["apiVersion"] == net.ctl.get("/controller")["apiVersion"]
    r = ctl(net, "info")
    assert r.exit_code == 0 and net.ctl.address in r.stdout


def test_create_with_cidr_pool_defaults(net: SimpleNamespace) -> None:
    nw = ctl_json(net, "network", "create", "--name", "lab", "--pool", "10.147.17.0/24", "--6plane")
    nwid = nw["id"]
    assert len(nwid) == 16 and nwid.startswith(net.ctl.address)
    stored = net.ctl.get(f"/controller/network/{nwid}")
    assert stored == nw
    assert stored["name"] == "lab" and stored["private"] is True
    # A CIDR pool is its usable hosts, and becomes the route when none is given.
    assert stored["ipAssignmentPools"] == [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.254"}]
    assert stored["routes"] == [{"target": "10.147.17.0/24", "via": None}]
    assert stored["v4AssignMode"] == {"zt": True}
    assert stored["v6AssignMode"]["6plane"] is True and stored["v6AssignMode"]["rfc4193"] is False


def test_create_explicit_options(net: SimpleNamespace) -> None:
    nw = ctl_json(
        net,
        "network",
        "create",
        "--public",
        "--pool",
        "10.9.0.5-10.9.0.9",
        "--route",
        "10.9.0.0/16",
        "--route",
        "0.0.0.0/0@10.9.0.1",
        "--no-v4-auto",
        "--rfc4193",
        "--mtu",
        "1400",
        "--no-broadcast",
        "--dns-domain",
        "lab.zt",
        "--dns-server",
        "10.9.0.1",
        "--set",
        "multicastLimit=7",
    )
    stored = net.ctl.get(f"/controller/network/{nw['id']}")
    assert stored["private"] is False
    assert stored["ipAssignmentPools"] == [{"ipRangeStart": "10.9.0.5", "ipRangeEnd": "10.9.0.9"}]
    assert stored["routes"] == [
        {"target": "10.9.0.0/16", "via": None},
        {"target": "0.0.0.0/0", "via": "10.9.0.1"},
    ]
    assert stored["v4AssignMode"] == {"zt": False}
    assert stored["v6AssignMode"]["rfc4193"] is True
    assert stored["mtu"] == 1400 and stored["enableBroadcast"] is False and stored["multicastLimit"] == 7
    assert stored["dns"] == {"domain": "lab.zt", "servers": ["10.9.0.1"]}


@pytest.mark.parametrize(
    "args",
    [
        ("--pool", "10.0.0.9-10.0.0.1"),
        ("--pool", "10.0.0.1"),
        ("--pool", "10.0.0.1-fd00::1"),
        ("--route", "10.0.0.0/33"),
        ("--route", "10.0.0.0/8@fd00::1"),
        ("--mtu", "100"),
        ("--set", "novalue"),
    ],
)
def test_create_rejects_bad_options(net: SimpleNamespace, args: tuple[str, ...]) -> None:
    before = net.ctl.get("/controller/network")
    r = ctl(net, "network", "create", *args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert net.ctl.get("/controller/network") == before


def test_server_side_validation_error_is_reported(net: SimpleNamespace) -> None:
    before = net.ctl.get("/controller/network")
    r = ctl(net, "network", "create", "--set", "private=notabool")
    assert r.exit_code == 1
    assert "400" in r.stderr and "private" in r.stderr
    assert net.ctl.get("/controller/network") == before


def test_list_show_update_delete(net: SimpleNamespace) -> None:
    nwid = ctl_json(net, "network", "create", "--name", "tmp-net")["id"]

    r = ctl(net, "network", "list")
    assert r.exit_code == 0, r.output
    row = next(ln for ln in r.stdout.splitlines() if nwid in ln)
    assert "tmp-net" in row and "private" in row and "0/0" in row
    listed = ctl_json(net, "network", "list")
    assert sorted(n["id"] for n in listed) == sorted(net.ctl.get("/controller/network"))

    r = ctl(net, "network", "show", nwid)
    assert r.exit_code == 0 and nwid in r.stdout and "tmp-net" in r.stdout
    assert ctl_json(net, "network", "show", nwid) == net.ctl.get(f"/controller/network/{nwid}")

    rev = net.ctl.get(f"/controller/network/{nwid}")["revision"]
    nw = ctl_json(net, "network", "update", nwid, "--name", "renamed", "--public", "--route", "10.5.0.0/16")
    stored = net.ctl.get(f"/controller/network/{nwid}")
    assert stored == nw and stored["name"] == "renamed" and stored["private"] is False
    assert stored["routes"] == [{"target": "10.5.0.0/16", "via": None}]
    assert stored["revision"] == rev + 1
    # Only what is given changes.
    ctl_json(net, "network", "update", nwid, "--mtu", "2000")
    stored = net.ctl.get(f"/controller/network/{nwid}")
    assert stored["name"] == "renamed" and stored["routes"] and stored["mtu"] == 2000
    ctl_json(net, "network", "update", nwid, "--clear-routes")
    assert net.ctl.get(f"/controller/network/{nwid}")["routes"] == []

    r = ctl(net, "network", "delete", nwid)
    assert r.exit_code == 0 and r.stdout == f"deleted network {nwid}\n"
    assert nwid not in net.ctl.get("/controller/network")
    for args in (("network", "show", nwid), ("network", "delete", nwid), ("member", "list", nwid)):
        r = ctl(net, *args)
        assert r.exit_code == 1 and "404" in r.stderr, (args, r.output)


def test_update_does_not_create(net: SimpleNamespace) -> None:
    nwid = net.ctl.address + "abcdef"
    assert nwid not in net.ctl.get("/controller/network")
    r = ctl(net, "network", "update", nwid, "--name", "x")
    assert r.exit_code == 1 and "404" in r.stderr
    assert nwid not in net.ctl.get("/controller/network")


@pytest.mark.parametrize(
    "args",
    [
        ("network", "show", "xyz"),
        ("network", "delete", "12345"),
        ("member", "list", "zz34567890abcdef"),
        ("member", "show", "1234567890abcdef", "123"),
        ("member", "authorize", "1234567890abcdef", "gggggggggg"),
    ],
)
def test_bad_ids_are_usage_errors(net: SimpleNamespace, args: tuple[str, ...]) -> None:
    r = ctl(net, *args)
    assert r.exit_code == 2, r.output
    assert "invalid" in r.output


def test_preauthorize_member_before_it_asks(net: SimpleNamespace) -> None:
    nwid = ctl_json(net, "network", "create", "--pool", "10.33.0.0/29")["id"]
    m = ctl_json(net, "member", "authorize", nwid, "0123456789", "--name", "future")
    stored = net.ctl.get(f"/controller/network/{nwid}/member/0123456789")
    assert stored == m and stored["authorized"] is True and stored["name"] == "future"
    (ip,) = stored["ipAssignments"]  # assigned at once from the pool
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.33.0.0/29")
    assert net.ctl.get(f"/controller/network/{nwid}/member") == {"0123456789": stored["revision"]}

    ctl_json(net, "member", "update", nwid, "0123456789", "--ip", "10.33.0.6", "--bridge")
    stored = net.ctl.get(f"/controller/network/{nwid}/member/0123456789")
    assert stored["ipAssignments"] == ["10.33.0.6"] and stored["activeBridge"] is True

    r = ctl(net, "member", "show", nwid, "0123456789")
    assert r.exit_code == 0 and "future" in r.stdout and "10.33.0.6" in r.stdout
    r = ctl(net, "member", "delete", nwid, "0123456789")
    assert r.exit_code == 0 and r.stdout == f"deleted member 0123456789 of network {nwid}\n"
    r = ctl(net, "member", "show", nwid, "0123456789")
    assert r.exit_code == 1 and "404" in r.stderr


def test_authorize_and_deauthorize_a_real_member(net: SimpleNamespace) -> None:
    leaf = net.leaf
    nwid = ctl_json(net, "network", "create", "--name", "private-lab", "--pool", "10.44.0.0/24")["id"]
    status, _ = leaf.api("POST", f"/network/{nwid}", {})
    assert status == 200

    def leaf_status() -> str:
        nw = leaf.get(f"/network/{nwid}")
        return str(nw["status"])

    until(lambda: leaf_status() == "ACCESS_DENIED", what="leaf refused on a private network")
    # The member shows up, unauthorized (its version is recorded only once authorized).
    until(lambda: leaf.address in net.ctl.get(f"/controller/network/{nwid}/member"), what="member record")
    r = ctl(net, "member", "list", nwid)
    assert r.exit_code == 0, r.output
    row = next(ln for ln in r.stdout.splitlines() if leaf.address in ln)
    assert row.split("│")[3].strip() == "no", row
    assert "0/1 authorized" in r.stdout

    m = ctl_json(net, "member", "authorize", nwid, leaf.address)
    assert m["authorized"] is True and m["ipAssignments"]
    nw = until(
        lambda: (lambda n: n if n["status"] == "OK" else None)(leaf.get(f"/network/{nwid}")),
        what="leaf gets its config once authorized",
    )
    assert [a.split("/")[0] for a in nw["assignedAddresses"]] == m["ipAssignments"]
    r = ctl(net, "member", "list", nwid)
    assert "1/1 authorized" in r.stdout
    row = next(ln for ln in r.stdout.splitlines() if leaf.address in ln)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    # (The version column fills in at the member's next genuine request, not from a push.)
    assert cells[2:4] == ["yes", m["ipAssignments"][0]], row
    members = ctl_json(net, "member", "list", nwid)
    assert [x["address"] for x in members] == [leaf.address]

    m = ctl_json(net, "member", "deauthorize", nwid, leaf.address)
    assert m["authorized"] is False
    assert net.ctl.get(f"/controller/network/{nwid}/member/{leaf.address}")["authorized"] is False
    # As with zerotier-one, the member itself learns this only at its next config request
    # (its peers get a COM revocation at once), which is beyond this test's time budget.


def test_node_without_controller(tmp_path: Path) -> None:
    home, planet, port = make_root_home(tmp_path)
    node = start_node(home, planet, port=port, extra=("--no-controller",))
    try:
        r = ztnode("controller", "--home", str(home), "network", "list")
        assert r.exit_code == 1 and "404" in r.stderr and "controller" in r.stderr
        r = ztnode("controller", "--home", str(home), "network", "create", "--name", "x")
        assert r.exit_code == 1 and "404" in r.stderr
    finally:
        assert stop_node(node) == 0
    assert not (home / "controller.db").exists()


def test_controller_not_running(tmp_path: Path) -> None:
    r = ztnode("controller", "--home", str(tmp_path), "network", "list")
    assert r.exit_code == 1 and "zerotier-one.port" in r.output
    (tmp_path / "zerotier-one.port").write_text("1")
    (tmp_path / "authtoken.secret").write_text("t")
    r = ztnode("controller", "--home", str(tmp_path), "network", "list")
    assert r.exit_code == 1 and "cannot connect" in r.stderr


def test_wrong_token(net: SimpleNamespace) -> None:
    r = ctl(net, "-T", "wrong", "network", "list")
    assert r.exit_code == 1 and "401" in r.stderr
