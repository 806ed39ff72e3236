"""Controller records: zerotier-one's defaults, field updates and validation, rules, IPAM."""

from __future__ import annotations

import ipaddress
import json

import pytest

from ztcore.controller import ipam
from ztcore.controller.model import (
    ApiError,
    clean_member,
    init_member,
    init_network,
    normalize_rule,
    normalize_rules,
    parse_address,
    parse_body,
    parse_nwid,
    records_equal,
    update_member,
    update_network,
)

NWID = 0x8056C2E21C000001
NWID_S = "8056c2e21c000001"
ADDR = 0xEFCC1B0947
ADDR_S = "efcc1b0947"
NOW = 1_700_000_000_000

# Defaults of zerotier-one's DB::initNetwork (controller/DB.cpp), field by field. Note the
# quirks real controllers show: authTokens is [null] and dns is an empty array.
ZT_NETWORK_DEFAULTS = {
    "private": True,
    "creationTime": NOW,
    "name": "",
    "multicastLimit": 32,
    "enableBroadcast": True,
    "v4AssignMode": {"zt": False},
    "v6AssignMode": {"rfc4193": False, "zt": False, "6plane": False},
    "authTokens": [None],
    "capabilities": [],
    "tags": [],
    "routes": [],
    "ipAssignmentPools": [],
    "mtu": 2800,
    "remoteTraceTarget": None,
    "remoteTraceLevel": 0,
    "rulesSource": "",
    "rules": [{"not": False, "or": False, "type": "ACTION_ACCEPT"}],
    "dns": [],
    "ssoEnabled": False,
    "clientId": "",
    "authorizationEndpoint": "",
    "objtype": "network",
}

# Defaults of zerotier-one's DB::initMember.
ZT_MEMBER_DEFAULTS = {
    "authorized": False,
    "ssoExempt": False,
    "ipAssignments": [],
    "activeBridge": False,
    "tags": [],
    "capabilities": [],
    "creationTime": NOW,
    "noAutoAssignIps": False,
    "revision": 0,
    "lastDeauthorizedTime": 0,
    "lastAuthorizedTime": 0,
    "lastAuthorizedCredentialType": None,
    "lastAuthorizedCredential": None,
    "authenticationExpiryTime": 0,
    "vMajor": -1,
    "vMinor": -1,
    "vRev": -1,
    "vProto": -1,
    "remoteTraceTarget": None,
    "remoteTraceLevel": 0,
    "objtype": "member",
}

# The key set of a network object as a real zerotier-one 1.14 controller serves it.
ZT_NETWORK_KEYS = {
    "authTokens", "authorizationEndpoint", "capabilities", "clientId", "creationTime", "dns",
    "enableBroadcast", "id", "ipAssignmentPools", "mtu", "multicastLimit", "name", "nwid", "objtype",
    "private", "remoteTraceLevel", "remoteTraceTarget", "revision", "routes", "rules", "rulesSource",
    "ssoEnabled", "tags", "v4AssignMode", "v6AssignMode",
}  # fmt: skip

# Rules exactly as a real zerotier-one controller rendered them (its _renderRule output):
# actions carry no not/or, matches always do, characteristics masks are 16 hex digits.
ZT_RENDERED_RULES = json.loads(
    '[{"etherType":2048,"not":true,"or":false,"type":"MATCH_ETHERTYPE"},'
    '{"etherType":2054,"not":true,"or":false,"type":"MATCH_ETHERTYPE"},'
    '{"etherType":34525,"not":true,"or":false,"type":"MATCH_ETHERTYPE"},'
    '{"mask":"1000000000000000","not":true,"or":true,"type":"MATCH_CHARACTERISTICS"},'
    '{"type":"ACTION_DROP"},'
    '{"end":22,"not":false,"or":false,"start":22,"type":"MATCH_IP_DEST_PORT_RANGE"},'
    '{"end":80,"not":false,"or":true,"start":80,"type":"MATCH_IP_DEST_PORT_RANGE"},'
    '{"ipProtocol":6,"not":false,"or":false,"type":"MATCH_IP_PROTOCOL"},'
    '{"type":"ACTION_ACCEPT"},'
    '{"id":1000,"not":false,"or":false,"type":"MATCH_TAGS_DIFFERENCE","value":0},'
    '{"mask":"0000000000000002","not":false,"or":false,"type":"MATCH_CHARACTERISTICS"},'
    '{"type":"ACTION_BREAK"}]'
)


def net(body: dict | None = None, old: dict | None = None) -> dict:
    return update_network(old, body or {}, NWID, NOW)


def mem(body: dict | None = None, old: dict | None = None, now: int = NOW) -> dict:
    return update_member(old, body or {}, NWID, ADDR, now)


# ------------------------------------------------------------------------------------------
# Defaults


def test_network_defaults_match_zerotier_one() -> None:
    assert init_network({}, NOW) == ZT_NETWORK_DEFAULTS
    n = net()
    assert {k: v for k, v in n.items() if k not in ("id", "nwid")} == ZT_NETWORK_DEFAULTS
    assert n["id"] == n["nwid"] == NWID_S
    # Once stored (revision added by the store) the key set is a real controller's.
    assert set(n) | {"revision"} == ZT_NETWORK_KEYS


def test_member_defaults_match_zerotier_one() -> None:
    assert init_member({}, NOW) == ZT_MEMBER_DEFAULTS
    m = mem()
    assert {k: v for k, v in m.items() if k not in ("id", "address", "nwid")} == ZT_MEMBER_DEFAULTS
    assert m["id"] == m["address"] == ADDR_S and m["nwid"] == NWID_S


def test_init_keeps_existing_fields_and_does_not_alias() -> None:
    old = {"name": "kept", "rules": [], "creationTime": 5}
    n = init_network(old, NOW)
    assert n["name"] == "kept" and n["rules"] == [] and n["creationTime"] == 5
    n2 = init_network({}, NOW)
    n2["routes"].append({"target": "10.0.0.0/8", "via": None})
    assert init_network({}, NOW)["routes"] == []  # defaults are fresh objects


def test_clean_member_drops_computed_fields() -> None:
    m = clean_member({"id": "x", "clock": 1, "physicalAddr": "1.2.3.4", "authenticationURL": "u"})
    assert m == {"id": "x"}


# ------------------------------------------------------------------------------------------
# Ids and bodies


def test_ids() -> None:
    assert parse_nwid("8056C2E21C000001") == NWID
    assert parse_address("EFCC1B0947") == ADDR
    for bad in ("8056c2e21c00000", "8056c2e21c0000012", "8056c2e21c00000g", 123, None):
        with pytest.raises(ApiError) as e:
            parse_nwid(bad)
        assert e.value.status == 400
    for bad in ("0000000000", "ff00000001", "efcc1b094", "zzcc1b0947"):
        with pytest.raises(ApiError):
            parse_address(bad)


def test_parse_body() -> None:
    assert parse_body(b"") == {} and parse_body(b"  \n") == {}
    assert parse_body(b'{"a": 1}') == {"a": 1}
    for bad in (b"{", b"[1]", b'"x"', b"\xff\xfe", b"null"):
        with pytest.raises(ApiError) as e:
            parse_body(bad)
        assert e.value.status == 400


# ------------------------------------------------------------------------------------------
# Network fields


def test_network_scalar_updates() -> None:
    n = net(
        {
            "name": "lan",
            "private": False,
            "enableBroadcast": False,
            "multicastLimit": 64,
            "mtu": 1400,
            "remoteTraceTarget": "0123456789",
            "remoteTraceLevel": 2,
            "rulesSource": "accept;",
        }
    )
    assert (n["name"], n["private"], n["enableBroadcast"], n["multicastLimit"]) == ("lan", False, False, 64)
    assert (n["mtu"], n["remoteTraceTarget"], n["remoteTraceLevel"], n["rulesSource"]) == (
        1400,
        "0123456789",
        2,
        "accept;",
    )
    # Partial update: other fields keep their value.
    n2 = net({"name": "renamed"}, n)
    assert n2["name"] == "renamed" and n2["multicastLimit"] == 64 and n2["private"] is False
    # MTU is clamped to ZT_MIN_MTU..ZT_MAX_MTU like zerotier-one does.
    assert net({"mtu": 100})["mtu"] == 1280 and net({"mtu": 20000})["mtu"] == 10000
    assert net({"remoteTraceTarget": None}, n)["remoteTraceTarget"] is None
    assert net({"remoteTraceTarget": ""}, n)["remoteTraceTarget"] is None


def test_network_ignores_read_only_and_unknown_keys() -> None:
    n = net({"name": "a"})
    n2 = net({**n, "id": "ffffffffffffffff", "revision": 99, "objtype": "member", "whatever": 1}, n)
    assert n2["id"] == NWID_S and n2["objtype"] == "network" and "whatever" not in n2
    assert "revision" not in n2  # revisions belong to the store
    assert records_equal(n, n2)  # POSTing back a whole object changes nothing


@pytest.mark.parametrize(
    "body",
    [
        {"name": ["x"]},
        {"name": {"a": 1}},
        {"private": "maybe"},
        {"private": None},
        {"private": [True]},
        {"enableBroadcast": {}},
        {"multicastLimit": "lots"},
        {"multicastLimit": -1},
        {"multicastLimit": 1.5},
        {"multicastLimit": True},
        {"mtu": "big"},
        {"remoteTraceTarget": "123"},
        {"remoteTraceLevel": -3},
        {"v4AssignMode": 5},
        {"v4AssignMode": {"zt": "perhaps"}},
        {"v6AssignMode": [1]},
        {"routes": {"target": "10.0.0.0/8"}},
        {"routes": ["10.0.0.0/8"]},
        {"routes": [{"target": "10.0.0.0"}]},
        {"routes": [{"target": "10.0.0.0/33"}]},
        {"routes": [{"target": "nonsense/8"}]},
        {"routes": [{"target": "10.0.0.0/8", "via": "gateway"}]},
        {"ipAssignmentPools": [{"ipRangeStart": "10.0.0.1"}]},
        {"ipAssignmentPools": [{"ipRangeStart": "10.0.0.1", "ipRangeEnd": "fd00::1"}]},
        {"ipAssignmentPools": [{"ipRangeStart": "10.0.0.9", "ipRangeEnd": "10.0.0.1"}]},
        {"ipAssignmentPools": [{"ipRangeStart": 1, "ipRangeEnd": 2}]},
        {"ipAssignmentPools": "10.0.0.0/24"},
        {"rules": {"type": "ACTION_ACCEPT"}},
        {"rules": ["ACTION_ACCEPT"]},
        {"rules": [{"type": "ACTION_EXPLODE"}]},
        {"rules": [{"type": "MATCH_ETHERTYPE", "etherType": 70000}]},
        {"rules": [{"type": "MATCH_ETHERTYPE", "etherType": "ipv4"}]},
        {"authTokens": "secret"},
        {"authTokens": {"tok": -1}},
        {"capabilities": [5]},
        {"capabilities": [{"id": "x"}]},
        {"capabilities": [{"id": 1, "rules": [{"type": "NOPE"}]}]},
        {"tags": [[1, 2]]},
        {"tags": [{"id": 1, "default": "x"}]},
        {"dns": "example.com"},
        {"dns": {"domain": "x", "servers": ["not-an-ip"]}},
        {"dns": {"domain": "x", "servers": ["10.0.0.1"] * 5}},
    ],
)
def test_network_bad_values_are_400(body: dict) -> None:
    base = net({"name": "unchanged"})
    with pytest.raises(ApiError) as e:
        net(body, base)
    assert e.value.status == 400
    assert e.value.message  # names what is wrong


def test_boolean_and_integer_leniency_of_jsonbool_jsonint() -> None:
    # zerotier-one's jsonBool / jsonInt also take numbers and numeric strings.
    assert net({"private": 0})["private"] is False
    assert net({"private": "true"})["private"] is True
    assert net({"multicastLimit": "16"})["multicastLimit"] == 16
    assert net({"multicastLimit": 16.0})["multicastLimit"] == 16


def test_assign_modes() -> None:
    assert net({"v4AssignMode": {"zt": True}})["v4AssignMode"] == {"zt": True}
    assert net({"v4AssignMode": "zt"})["v4AssignMode"] == {"zt": True}  # old string form
    assert net({"v4AssignMode": "none"})["v4AssignMode"] == {"zt": False}
    n = net({"v6AssignMode": {"6plane": True}})
    assert n["v6AssignMode"] == {"rfc4193": False, "zt": False, "6plane": True}
    n = net({"v6AssignMode": {"rfc4193": True}}, n)  # keys not given keep their value
    assert n["v6AssignMode"] == {"rfc4193": True, "zt": False, "6plane": True}
    assert net({"v6AssignMode": "rfc4193,zt"})["v6AssignMode"] == {
        "rfc4193": True,
        "zt": True,
        "6plane": False,
    }


def test_routes_and_pools_format() -> None:
    n = net(
        {
            "routes": [
                {"target": "10.147.17.0/24", "via": None},
                {"target": "192.168.0.0/16", "via": "10.147.17.1"},
                {"target": "fd00:0:0:0::/64"},
                {"target": "0.0.0.0/0", "via": "fd00::1"},  # via of another family: null
                {"target": "10.0.0.0/8", "via": ""},  # empty via: null
            ],
            "ipAssignmentPools": [
                {"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.254"},
                {"ipRangeStart": "fd00:0000::1", "ipRangeEnd": "fd00::ffff"},
            ],
        }
    )
    assert n["routes"] == [
        {"target": "10.147.17.0/24", "via": None},
        {"target": "192.168.0.0/16", "via": "10.147.17.1"},
        {"target": "fd00::/64", "via": None},
        {"target": "0.0.0.0/0", "via": None},
        {"target": "10.0.0.0/8", "via": None},
    ]
    assert n["ipAssignmentPools"] == [
        {"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.254"},
        {"ipRangeStart": "fd00::1", "ipRangeEnd": "fd00::ffff"},
    ]
    assert net({"routes": []}, n)["routes"] == []


def test_auth_tokens_dns_tags_capabilities() -> None:
    n = net({"authTokens": {"abc": 0, "def": 1900000000000}})
    assert n["authTokens"] == {"abc": 0, "def": 1900000000000}
    assert net({"authTokens": [None]}, n)["authTokens"] == [None]  # default POSTed back
    n = net({"dns": {"domain": "zt.example", "servers": ["10.0.0.1", "fd00::53"]}})
    assert n["dns"] == {"domain": "zt.example", "servers": ["10.0.0.1", "fd00::53"]}
    assert net({"dns": []}, n)["dns"] == []
    n = net({"tags": [{"id": 20, "default": 3}, {"id": 10, "default": None}, {"id": 20, "default": 4}]})
    assert n["tags"] == [{"id": 10, "default": None}, {"id": 20, "default": 4}]  # sorted, last wins
    n = net(
        {
            "capabilities": [
                {"id": 9, "default": True, "rules": [{"type": "ACTION_ACCEPT", "not": True}]},
                {
                    "id": 2,
                    "rules": [{"type": "MATCH_IP_PROTOCOL", "ipProtocol": 17}, {"type": "ACTION_DROP"}],
                },
            ]
        }
    )
    assert n["capabilities"] == [
        {
            "id": 2,
            "default": False,
            "rules": [
                {"type": "MATCH_IP_PROTOCOL", "ipProtocol": 17, "not": False, "or": False},
                {"type": "ACTION_DROP"},
            ],
        },
        {"id": 9, "default": True, "rules": [{"type": "ACTION_ACCEPT", "not": True}]},
    ]


# ------------------------------------------------------------------------------------------
# Rules


def test_rules_rendered_by_a_real_controller_round_trip_unchanged() -> None:
    assert normalize_rules(ZT_RENDERED_RULES) == ZT_RENDERED_RULES
    default = ZT_NETWORK_DEFAULTS["rules"]
    assert normalize_rules(default) == default
    assert net({"rules": ZT_RENDERED_RULES})["rules"] == ZT_RENDERED_RULES


def test_rule_normalization() -> None:
    assert normalize_rule({"type": "ACTION_TEE", "address": "ABCDEF0123", "length": 100}) == {
        "type": "ACTION_TEE",
        "address": "abcdef0123",
        "flags": 0,
        "length": 100,
    }
    assert (
        normalize_rule({"type": "MATCH_MAC_SOURCE", "mac": "AA-BB-CC-00-11-22"})["mac"] == "aa:bb:cc:00:11:22"
    )
    assert normalize_rule({"type": "MATCH_IPV4_DEST", "ip": "10.0.0.0/8"})["ip"] == "10.0.0.0/8"
    assert normalize_rule({"type": "MATCH_IPV6_SOURCE", "ip": "fd00::1"})["ip"] == "fd00::1/128"
    assert normalize_rule({"type": "MATCH_ICMP", "icmpType": 8})["icmpCode"] is None
    assert normalize_rule({"type": "MATCH_ICMP", "icmpType": 3, "icmpCode": 1})["icmpCode"] == 1
    assert normalize_rule({"type": "MATCH_IP_DEST_PORT_RANGE", "start": 443})["end"] == 443
    assert normalize_rule({"type": "MATCH_CHARACTERISTICS", "mask": 2})["mask"] == "0000000000000002"
    r = normalize_rule(
        {"type": "INTEGER_RANGE", "start": "10", "end": "20", "idx": 4, "bits": 16, "little": True}
    )
    assert r["start"] == "0000000000000010" and r["end"] == "0000000000000020" and r["bits"] == 16
    for bad in (
        {"type": "MATCH_IPV4_SOURCE", "ip": "fd00::/8"},
        {"type": "MATCH_MAC_DEST", "mac": "aa:bb"},
        {"type": "MATCH_SOURCE_ZEROTIER_ADDRESS", "zt": "xyz"},
        {"type": "MATCH_VLAN_PCP", "vlanPcp": 256},
        {"type": "MATCH_ETHERTYPE", "not": "sure"},
        {"type": "INTEGER_RANGE", "start": "20", "end": "10"},
        {"type": 5},
        {},
    ):
        with pytest.raises(ApiError) as e:
            normalize_rule(bad)
        assert e.value.status == 400


VARIED_RULES = [
    {"type": "ACTION_TEE", "address": "abcdef0123", "length": 100},
    {"type": "ACTION_WATCH", "address": "abcdef0123", "flags": 1},
    {"type": "ACTION_REDIRECT", "address": "abcdef0123", "flags": 3},
    {"type": "ACTION_PRIORITY", "qosBucket": 3},
    {"type": "MATCH_SOURCE_ZEROTIER_ADDRESS", "zt": "abcdef0123"},
    {"type": "MATCH_DEST_ZEROTIER_ADDRESS", "zt": "0000000001", "not": True},
    {"type": "MATCH_VLAN_ID", "vlanId": 5},
    {"type": "MATCH_VLAN_PCP", "vlanPcp": 5},
    {"type": "MATCH_VLAN_DEI", "vlanDei": 1},
    {"type": "MATCH_MAC_SOURCE", "mac": "AA-BB-CC-00-11-22"},
    {"type": "MATCH_MAC_DEST", "mac": "ffffffffffff"},
    {"type": "MATCH_IPV4_SOURCE", "ip": "10.1.2.3/32"},
    {"type": "MATCH_IPV4_DEST", "ip": "10.0.0.0/8", "not": True},
    {"type": "MATCH_IPV6_SOURCE", "ip": "fd00::1/64"},
    {"type": "MATCH_IPV6_DEST", "ip": "fd00::/8", "or": True},
    {"type": "MATCH_IP_TOS", "mask": 252, "start": 0, "end": 10},
    {"type": "MATCH_IP_PROTOCOL", "ipProtocol": 17},
    {"type": "MATCH_ETHERTYPE", "etherType": 0x0806},
    {"type": "MATCH_ICMP", "icmpType": 8},
    {"type": "MATCH_ICMP", "icmpType": 3, "icmpCode": 1},
    {"type": "MATCH_IP_SOURCE_PORT_RANGE", "start": 1000, "end": 2000},
    {"type": "MATCH_IP_DEST_PORT_RANGE", "start": 443},
    {"type": "MATCH_CHARACTERISTICS", "mask": 2},
    {"type": "MATCH_FRAME_SIZE_RANGE", "start": 0, "end": 1500},
    {"type": "MATCH_RANDOM", "probability": 12345},
    {"type": "MATCH_TAGS_DIFFERENCE", "id": 1, "value": 2},
    {"type": "MATCH_TAGS_BITWISE_AND", "id": 1, "value": 2},
    {"type": "MATCH_TAGS_BITWISE_OR", "id": 1, "value": 2},
    {"type": "MATCH_TAGS_BITWISE_XOR", "id": 1, "value": 2},
    {"type": "MATCH_TAGS_EQUAL", "id": 5, "value": 7, "or": True},
    {"type": "MATCH_TAG_SENDER", "id": 1, "value": 2},
    {"type": "MATCH_TAG_RECEIVER", "id": 1, "value": 2},
    {"type": "INTEGER_RANGE", "start": "10", "end": "20", "idx": 4, "bits": 16, "little": True},
]


@pytest.mark.parametrize("rule", VARIED_RULES, ids=lambda r: r["type"])
def test_normalized_rules_compile_and_render_back_identically(rule: dict) -> None:
    # What the store holds must be what the vl2 rule compiler reads and renders: no drift.
    from ztcore.vl2.rules import rule_from_json, rule_to_json

    n = normalize_rule(rule)
    assert normalize_rule(n) == n
    assert rule_to_json(rule_from_json(n)) == n


# ------------------------------------------------------------------------------------------
# Member fields


def test_member_authorization_timestamps() -> None:
    m = mem({"authorized": True}, now=1000)
    assert m["authorized"] is True and m["lastAuthorizedTime"] == 1000
    assert m["lastAuthorizedCredentialType"] == "api" and m["lastAuthorizedCredential"] is None
    assert m["lastDeauthorizedTime"] == 0
    m2 = mem({"authorized": True}, m, now=2000)  # no change: no new timestamp
    assert m2["lastAuthorizedTime"] == 1000 and records_equal(m, m2)
    m3 = mem({"authorized": False}, m2, now=3000)
    assert (
        m3["authorized"] is False and m3["lastDeauthorizedTime"] == 3000 and m3["lastAuthorizedTime"] == 1000
    )
    m4 = mem({"authorized": True}, m3, now=4000)
    assert m4["lastAuthorizedTime"] == 4000 and m4["lastDeauthorizedTime"] == 3000
    assert m4["creationTime"] == 1000  # creation time is kept


def test_member_field_updates() -> None:
    m = mem(
        {
            "activeBridge": True,
            "noAutoAssignIps": True,
            "name": "laptop",
            "ipAssignments": ["10.0.0.5", "fd00::5/64", "10.0.0.5"],
            "tags": [[2000, 5], [1000, 1], [2000, 7]],
            "capabilities": [9, 1, 9],
            "remoteTraceTarget": "abcdefabcd",
            "remoteTraceLevel": 1,
            "authenticationExpiryTime": 123,
        }
    )
    assert m["activeBridge"] is True and m["noAutoAssignIps"] is True and m["name"] == "laptop"
    assert m["ipAssignments"] == ["10.0.0.5", "fd00::5"]  # plain IPs, deduplicated
    assert m["tags"] == [[1000, 1], [2000, 7]]  # [[id, value], ...] sorted by id, last wins
    assert m["capabilities"] == [1, 9]
    assert m["remoteTraceTarget"] == "abcdefabcd" and m["remoteTraceLevel"] == 1
    assert m["authenticationExpiryTime"] == 123
    assert mem({"ipAssignments": []}, m)["ipAssignments"] == []
    # Fields only the controller itself sets are not taken from a body.
    m2 = mem({"identity": "x", "vMajor": 9, "lastAuthorizedTime": 5, "revision": 50}, m)
    assert "identity" not in m2 and m2["vMajor"] == -1 and m2["lastAuthorizedTime"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"authorized": "yes please"},
        {"authorized": None},
        {"activeBridge": [1]},
        {"noAutoAssignIps": {}},
        {"ipAssignments": "10.0.0.1"},
        {"ipAssignments": ["10.0.0.300"]},
        {"ipAssignments": [42]},
        {"tags": [[1, 2, 3]]},
        {"tags": [{"id": 1}]},
        {"tags": [[1, -2]]},
        {"capabilities": ["one"]},
        {"capabilities": 1},
        {"name": [1]},
        {"remoteTraceTarget": 12},
    ],
)
def test_member_bad_values_are_400(body: dict) -> None:
    with pytest.raises(ApiError) as e:
        mem(body)
    assert e.value.status == 400


def test_records_equal_ignores_only_revision() -> None:
    a = {"x": 1, "revision": 1}
    assert records_equal(a, {"x": 1, "revision": 7})
    assert records_equal(a, {"x": 1})
    assert not records_equal(a, {"x": 2, "revision": 1})
    assert not records_equal(a, {"x": 1, "y": None})


# ------------------------------------------------------------------------------------------
# IP assignment


def _zt_v4_pick(start: str, end: str, address: int, taken: set[str]) -> str:
    """The IPv4 address zerotier-one's controller picks (its algorithm, written independently)."""
    s, e = int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(end))
    counter = address & 0xFFFFFFFF
    while True:
        ip = s + counter % (e - s)
        counter += 1
        text = str(ipaddress.IPv4Address(ip))
        if ip & 0xFF != 0xFF and text not in taken:
            return text


def _v4_network(pool: tuple[str, str] = ("10.1.0.1", "10.1.255.254"), route: str = "10.1.0.0/16") -> dict:
    return net(
        {
            "v4AssignMode": {"zt": True},
            "routes": [{"target": route}],
            "ipAssignmentPools": [{"ipRangeStart": pool[0], "ipRangeEnd": pool[1]}],
        }
    )


def test_v4_auto_assign_is_deterministic_and_avoids_collisions() -> None:
    n = _v4_network()
    m = mem({"authorized": True})
    first = ipam.auto_assign(n, m, ADDR, [])
    assert first == [_zt_v4_pick("10.1.0.1", "10.1.255.254", ADDR, set())]
    taken = {first[0]}
    second = ipam.auto_assign(n, m, ADDR, taken)
    assert second == [_zt_v4_pick("10.1.0.1", "10.1.255.254", ADDR, taken)] and second != first
    # Already holding a managed IPv4 address: nothing more is added.
    assert ipam.auto_assign(n, {**m, "ipAssignments": first}, ADDR, []) == first
    # An address outside every route does not count as managed.
    assert len(ipam.auto_assign(n, {**m, "ipAssignments": ["192.168.5.5"]}, ADDR, [])) == 2
    # noAutoAssignIps, no v4AssignMode, or no route covering the pool: nothing.
    assert ipam.auto_assign(n, {**m, "noAutoAssignIps": True}, ADDR, []) == []
    assert ipam.auto_assign(net({"v4AssignMode": {"zt": False}}, n), m, ADDR, []) == []
    assert ipam.auto_assign(_v4_network(route="10.2.0.0/16"), m, ADDR, []) == []


def test_v4_auto_assign_skips_dot_255_and_fills_small_pool() -> None:
    n = _v4_network(pool=("10.0.0.250", "10.0.1.2"), route="10.0.0.0/23")
    got: list[str] = []
    for a in range(1, 8):
        got += ipam.auto_assign(n, mem(), 0x1000000000 + a, got)
    # rangeEnd itself is never chosen (offset = counter mod length) and x.x.x.255 is skipped.
    assert sorted(got) == sorted(
        ["10.0.0.250", "10.0.0.251", "10.0.0.252", "10.0.0.253", "10.0.0.254", "10.0.1.0", "10.0.1.1"]
    )
    assert ipam.auto_assign(n, mem(), 0x2000000000, got) == []  # pool exhausted


def test_v6_auto_assign_puts_address_in_wide_range() -> None:
    n = net(
        {
            "v6AssignMode": {"zt": True},
            "routes": [{"target": "fd00:1234::/64"}],
            "ipAssignmentPools": [
                {"ipRangeStart": "fd00:1234::", "ipRangeEnd": "fd00:1234::ffff:ffff:ffff:ffff"}
            ],
        }
    )
    got = ipam.auto_assign(n, mem(), ADDR, [])
    assert got == [str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("fd00:1234::")) + ADDR))]
    # Taken: a random address in the same range instead.
    other = ipam.auto_assign(n, mem(), ADDR, got)
    assert len(other) == 1 and other != got
    assert ipaddress.IPv6Address(other[0]) in ipaddress.IPv6Network("fd00:1234::/64")


def test_rfc4193_and_6plane_addresses() -> None:
    # Layouts from InetAddress::makeIpv6rfc4193 / makeIpv66plane: fd + nwid + 9993 + address,
    # and fc + (nwid folded to 32 bits) + address + ...01.
    n = net({"v6AssignMode": {"rfc4193": True, "6plane": True}})
    got = ipam.managed_v6_addresses(n, mem(), NWID, ADDR)
    assert got == ["fd80:56c2:e21c:0:199:93ef:cc1b:947/88", "fc9c:56c2:e3ef:cc1b:947::1/40"]
    assert ipam.managed_v6_addresses(n, mem({"noAutoAssignIps": True}), NWID, ADDR) == []
    m = mem({"ipAssignments": ["10.1.2.3", "172.16.0.1"]})
    static = ipam.static_ips(
        net({"routes": [{"target": "10.0.0.0/8"}, {"target": "10.1.0.0/16"}]}, n), m, NWID, ADDR
    )
    assert static == got + ["10.1.2.3/16"]  # most specific route's netmask; unrouted IPs left out
