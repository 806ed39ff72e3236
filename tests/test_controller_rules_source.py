"""The controller compiles a network's rulesSource; member tags by name; both through the local API."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ztcore.controller.model import ApiError, init_network, update_member, update_network
from ztcore.controller.rules_source import RulesSourceError
from ztcore.vl2.rules import rules_from_json
from ztcore.vl2.rules.compiler import compile_rules

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_http_api import Env, run  # noqa: E402

NWID = 0xABCDEF0123000001
SOURCE = """\
tag department
	id 1000
	enum 100 sales
	enum 400 engineering
	flag 0 audited
	flag 1 remote
;
cap ssh
	id 7
	accept ipprotocol tcp and dport 22;
;
drop not ethertype ipv4 and not ethertype arp;
accept teq department engineering;
accept;
"""


def test_source_alone_is_compiled_and_stored() -> None:
    n = update_network(None, {"rulesSource": SOURCE}, NWID, now=1)
    compiled = compile_rules(SOURCE)
    assert n["rulesSource"] == SOURCE
    assert rules_from_json(n["rules"], skip_invalid=False) == rules_from_json(compiled.rules)
    assert n["capabilities"] == [{"id": 7, "default": False, "rules": n["capabilities"][0]["rules"]}]
    assert len(n["capabilities"][0]["rules"]) == 3
    assert n["tags"] == [{"id": 1000, "default": None}]
    assert n["tagsByName"]["department"]["enums"] == {"sales": 100, "engineering": 400}
    assert n["capabilitiesByName"] == {"ssh": 7}


def test_compile_error_is_a_400_with_line_and_column() -> None:
    old = update_network(None, {"name": "x"}, NWID, now=1)
    with pytest.raises(RulesSourceError) as info:
        update_network(old, {"rulesSource": "accept;\n\ndrop dport 99999;\n", "name": "y"}, NWID)
    e = info.value
    assert isinstance(e, ApiError) and e.status == 400
    assert (e.line, e.column) == (3, 1)  # 'accept;' swallows the next rule, as in ZeroTier's compiler
    assert "line 3, column 1" in e.message
    assert e.to_json()["line"] == 3 and e.to_json()["status"] == 400
    assert old["name"] == "x"  # nothing applied


def test_explicit_rules_win_and_bad_source_is_kept_verbatim() -> None:
    explicit = [{"type": "ACTION_DROP"}]
    n = update_network(None, {"rulesSource": SOURCE, "rules": explicit}, NWID)
    assert n["rules"] == explicit
    assert n["capabilities"][0]["id"] == 7 and n["tagsByName"]  # not given: from the source
    n = update_network(n, {"rulesSource": "this is not rules", "rules": explicit, "tags": []}, NWID)
    assert n["rulesSource"] == "this is not rules" and n["rules"] == explicit and n["tags"] == []
    assert "tagsByName" not in n and "capabilitiesByName" not in n


def test_blank_source_leaves_rules_alone() -> None:
    n = update_network(None, {"rulesSource": SOURCE}, NWID)
    rules = n["rules"]
    n = update_network(n, {"rulesSource": "  \n"}, NWID)
    assert n["rules"] == rules and "tagsByName" not in n
    assert init_network()["rulesSource"] == ""


def test_source_with_values_the_controller_cannot_hold() -> None:
    for source in ("tee -1 zzzzzzzzzz;\naccept;", "drop vlan 70000;", "drop ipsrc 1.2.3.4/8;;\n;"):
        with pytest.raises(ApiError) as info:
            update_network(None, {"rulesSource": source}, NWID)
        assert info.value.status == 400 and "rulesSource" in info.value.message, source
    n = update_network(None, {"rulesSource": "tee -1 89e92ceee5;\naccept;"}, NWID)
    assert n["rules"][0]["length"] == 0xFFFF  # what zerotier-one makes of the UI's -1


def test_member_tags_by_name() -> None:
    net = update_network(None, {"rulesSource": SOURCE}, NWID)
    m = update_member(None, {"tags": [["department", "engineering"]]}, NWID, 0x1122334455, 1, network=net)
    assert m["tags"] == [[1000, 400]]
    m = update_member(m, {"tags": [["Department", "audited,remote"]]}, NWID, 0x1122334455, 1, network=net)
    assert m["tags"] == [[1000, 3]]
    m = update_member(m, {"tags": [[1000, "sales"], ["department", 5]]}, NWID, 0x1122334455, 1, network=net)
    assert m["tags"] == [[1000, 5]]
    m = update_member(m, {"tags": [[2000, 9]]}, NWID, 0x1122334455, 1, network=net)
    assert m["tags"] == [[2000, 9]]  # numeric tags need no definition, as before
    for bad in (
        [["nosuch", 1]],
        [["department", "nosuch"]],
        [["department", "audited,nosuch"]],
        [[2000, "x"]],
    ):
        with pytest.raises(ApiError) as info:
            update_member(m, {"tags": bad}, NWID, 0x1122334455, 1, network=net)
        assert info.value.status == 400, bad
    with pytest.raises(ApiError):  # no network given: names cannot be resolved
        update_member(m, {"tags": [["department", "sales"]]}, NWID, 0x1122334455, 1)


def test_through_the_local_api(tmp_path: Path) -> None:
    async def t(env: Env) -> None:
        status, nw = await env.call("POST", "/controller/network", {"rulesSource": SOURCE})
        assert status == 200 and nw["capabilitiesByName"] == {"ssh": 7} and nw["rulesSource"] == SOURCE
        nwid = nw["id"]
        status, err = await env.call(
            "POST", f"/controller/network/{nwid}", {"rulesSource": "drop\n  vlan x\n;"}
        )
        assert status == 400 and "line 2, column 8" in err["error"], err
        status, after = await env.call("GET", f"/controller/network/{nwid}")
        assert after["rules"] == nw["rules"]
        path = f"/controller/network/{nwid}/member/1122334455"
        status, m = await env.call("POST", path, {"tags": [["department", "engineering"]]})
        assert status == 200 and m["tags"] == [[1000, 400]]
        status, err = await env.call("POST", path, {"tags": [["department", "ceo"]]})
        assert status == 400 and "ceo" in err["error"]

    run(tmp_path, t)
