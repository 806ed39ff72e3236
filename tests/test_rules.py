"""Flow rules: binary layout (Capability::serializeRules) and the controller's JSON form."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from ztcore.errors import InvalidFormatError
from ztcore.vl2.mac import MAC
from ztcore.vl2.rules import (
    Rule,
    RuleType,
    deserialize_rules,
    rule_from_json,
    rule_to_json,
    rules_from_json,
    rules_to_json,
    serialize_rules,
)

R = Rule

# One rule of every type the core knows (plus an unknown type 60).
ALL_RULES = [
    R.action_drop(),
    R.action_accept(),
    R.action_tee(0x1122334455, 7, 100),
    R.action_watch(0xAABBCCDDEE, 1, 2),
    R.action_redirect(0x0102030405, 3),
    R.action_break(),
    R.action_priority(3),
    R.match_source_zerotier_address(0x1234567890, not_=True),
    R.match_dest_zerotier_address(0x99, or_=True),
    R.match_vlan_id(100),
    R.match_vlan_pcp(5),
    R.match_vlan_dei(1),
    R.match_mac_source("01:02:03:04:05:06"),
    R.match_mac_dest("aa:bb:cc:dd:ee:ff"),
    R.match_ipv4_source("10.1.0.0/16"),
    R.match_ipv4_dest("192.168.1.1", 32),
    R.match_ipv6_source("fd00::/8"),
    R.match_ipv6_dest("2001:db8::1/128"),
    R.match_ip_tos(0xFC, 0x10, 0x20),
    R.match_ip_protocol(6),
    R.match_ethertype(0x86DD),
    R.match_icmp(8),
    R.match_icmp(3, 1),
    R.match_ip_source_port_range(1000, 2000),
    R.match_ip_dest_port_range(22),
    R.match_characteristics(0x8000000000000012),
    R.match_frame_size_range(64, 1500),
    R.match_random(0x7FFFFFFF),
    R.match_tags_difference(1, 2),
    R.match_tags_bitwise_and(3, 4),
    R.match_tags_bitwise_or(5, 6),
    R.match_tags_bitwise_xor(7, 8),
    R.match_tags_equal(9, 10),
    R.match_tag_sender(11, 12),
    R.match_tag_receiver(13, 14),
    R.match_integer_range(0xFFFFFFFFFFFFFFF0, 0x1000000000000000F, 12, 64, True),
    Rule(60),
]

# ALL_RULES as serialized by the ZeroTier 1.14.1 core: the core's deserializeRules
# + serializeRules (compiled outside this repository) applied to our bytes
# returned exactly these bytes, and they parse back to the same 37 rules.
REAL_ALL_RULES = bytes.fromhex(
    "00000100020e0000001122334455000000070064030e000000aabbccddee000000010002040e000000010203040500000003"
    "00000500060098051234567890590500000000991a0200641b01051c01011d060102030405061e06aabbccddeeff1f050a01"
    "0000102005c0a80101202111fd00000000000000000000000000000008221120010db8000000000000000000000001802303"
    "fc1020240106250286dd26030800002603030101270403e807d0280400160016290880000000000000122a04004005dc2b04"
    "7fffffff2c0800000001000000022d0800000003000000042e0800000005000000062f080000000700000008300800000009"
    "0000000a31080000000b0000000c32080000000d0000000e3313fffffffffffffff0000000000000000f000cbf3c00"
)


def test_all_rules_match_the_real_core_serialization() -> None:
    assert serialize_rules(ALL_RULES) == REAL_ALL_RULES
    back, end = deserialize_rules(REAL_ALL_RULES)
    assert end == len(REAL_ALL_RULES)
    # PRIORITY's bucket is not transmitted, everything else survives.
    expected = [
        Rule(RuleType.ACTION_PRIORITY) if r.type == RuleType.ACTION_PRIORITY else r for r in ALL_RULES
    ]
    assert back == expected


@pytest.mark.parametrize("rule", [r for r in ALL_RULES if r.type != RuleType.ACTION_PRIORITY], ids=repr)
def test_binary_round_trip(rule: Rule) -> None:
    b = rule.to_bytes()
    back, n = Rule.from_bytes(b + b"\x01\x00")
    assert n == len(b) and back == rule and back.to_bytes() == b


@pytest.mark.parametrize("rule", [r for r in ALL_RULES if r.is_known], ids=repr)
def test_json_round_trip(rule: Rule) -> None:
    assert rule_from_json(rule_to_json(rule)) == rule


# ------------------------------------------------------------ byte layouts


def test_layout_ethertype_and_flag_bits() -> None:
    # type 37 (0x25), length 2, u16 ethertype
    assert Rule.match_ethertype(0x0800).to_bytes() == bytes([0x25, 0x02, 0x08, 0x00])
    # NOT is bit 7, OR is bit 6 of the type byte
    assert Rule.match_ethertype(0x0800, not_=True).to_bytes()[0] == 0xA5
    assert Rule.match_ethertype(0x0800, or_=True).to_bytes()[0] == 0x65
    assert Rule.match_ethertype(0x0800, not_=True, or_=True).to_bytes()[0] == 0xE5


def test_layout_actions() -> None:
    assert Rule.action_drop().to_bytes() == b"\x00\x00"
    assert Rule.action_accept().to_bytes() == b"\x01\x00"
    assert Rule.action_break().to_bytes() == b"\x05\x00"
    assert Rule.action_priority(7).to_bytes() == b"\x06\x00"
    tee = Rule.action_tee(0x1122334455, 0xA0B0C0D0, 0x0102).to_bytes()
    assert tee == b"\x02\x0e" + struct.pack(">QIH", 0x1122334455, 0xA0B0C0D0, 0x0102)


def test_layout_addresses() -> None:
    assert Rule.match_ipv4_source("10.1.0.0/16").to_bytes() == bytes([31, 5, 10, 1, 0, 0, 16])
    v6 = Rule.match_ipv6_dest("fd00::1/64").to_bytes()
    assert v6[:2] == bytes([34, 17]) and v6[2:18] == ipaddress.IPv6Address("fd00::1").packed and v6[18] == 64
    assert Rule.match_mac_dest("32:aa:bb:cc:dd:ee").to_bytes() == bytes([30, 6]) + bytes.fromhex(
        "32aabbccddee"
    )
    assert Rule.match_source_zerotier_address(0x0102030405).to_bytes() == bytes([24, 5, 1, 2, 3, 4, 5])


def test_layout_misc_matches() -> None:
    assert Rule.match_icmp(3, 1).to_bytes() == bytes([38, 3, 3, 1, 1])
    assert Rule.match_icmp(8).to_bytes() == bytes([38, 3, 8, 0, 0])
    assert Rule.match_ip_dest_port_range(80, 443).to_bytes() == bytes([40, 4, 0, 80, 1, 0xBB])
    assert Rule.match_tag_sender(0x10, 0x20).to_bytes() == bytes([49, 8]) + struct.pack(">II", 0x10, 0x20)
    assert Rule.match_random(0xFFFFFFFF).to_bytes() == bytes([43, 4, 0xFF, 0xFF, 0xFF, 0xFF])
    assert Rule.match_ip_tos(0xFC, 1, 2).to_bytes() == bytes([35, 3, 0xFC, 1, 2])
    assert Rule.match_vlan_id(0x123).to_bytes() == bytes([26, 2, 1, 0x23])


def test_layout_integer_range_carries_absolute_end() -> None:
    r = Rule.match_integer_range(100, 300, 14, bits=16, little_endian=True)
    assert (r.int_start, r.int_end, r.int_idx, r.int_format) == (100, 200, 14, 0x8F)
    assert r.to_bytes() == bytes([51, 19]) + struct.pack(">QQHB", 100, 300, 14, 0x8F)


def test_unknown_types_are_skipped_by_length() -> None:
    blob = bytes([60, 3, 9, 9, 9]) + Rule.action_accept().to_bytes()
    rules, end = deserialize_rules(blob)
    assert end == len(blob)
    assert rules == [Rule(60), Rule.action_accept()]
    assert not rules[0].is_known
    assert rules[0].to_bytes() == bytes([60, 0])  # re-serialized like the core: no value


def test_longer_value_fields_are_skipped_and_max_count_respected() -> None:
    blob = bytes([37, 4, 8, 0, 0xAA, 0xBB]) + b"\x01\x00\x00\x00"
    rules, end = deserialize_rules(blob, 0, 2)
    assert rules == [Rule.match_ethertype(0x0800), Rule.action_accept()] and end == 8


@pytest.mark.parametrize("blob", [b"\x25", b"\x25\x02\x08", b"\x25\x01\x08", b"\x1f\x04\x0a\x00\x00\x01"])
def test_truncated_or_short_rules_raise(blob: bytes) -> None:
    with pytest.raises(InvalidFormatError):
        deserialize_rules(blob)


def test_invalid_field_values_are_rejected() -> None:
    with pytest.raises(InvalidFormatError):
        Rule.match_ethertype(0x10000)
    with pytest.raises(InvalidFormatError):
        Rule(64)
    with pytest.raises(InvalidFormatError):
        Rule.match_ipv4_source("fd00::1")
    with pytest.raises(InvalidFormatError):
        Rule(RuleType.MATCH_IPV6_DEST, ip=ipaddress.IPv4Address("1.2.3.4"))


# ------------------------------------------------------------------- JSON


def test_json_shapes_follow_the_controller() -> None:
    assert rule_to_json(Rule.match_ethertype(2048)) == {
        "type": "MATCH_ETHERTYPE",
        "etherType": 2048,
        "not": False,
        "or": False,
    }
    assert rule_to_json(Rule.action_accept()) == {"type": "ACTION_ACCEPT"}  # actions carry no not/or
    assert rule_to_json(Rule.action_redirect(0x1122334455, 1)) == {
        "type": "ACTION_REDIRECT",
        "address": "1122334455",
        "flags": 1,
    }
    assert rule_to_json(Rule.action_tee(0x99, 0, 64)) == {
        "type": "ACTION_TEE",
        "address": "0000000099",
        "flags": 0,
        "length": 64,
    }
    assert rule_to_json(Rule.match_mac_source(0x0102030405AB))["mac"] == "01:02:03:04:05:ab"
    assert rule_to_json(Rule.match_ipv4_dest("10.0.0.0/8", not_=True)) == {
        "type": "MATCH_IPV4_DEST",
        "ip": "10.0.0.0/8",
        "not": True,
        "or": False,
    }
    assert rule_to_json(Rule.match_ipv6_source("fd00::1/88"))["ip"] == "fd00::1/88"
    assert rule_to_json(Rule.match_icmp(8))["icmpCode"] is None
    assert rule_to_json(Rule.match_icmp(3, 4))["icmpCode"] == 4
    assert rule_to_json(Rule.match_characteristics(0x12))["mask"] == "0000000000000012"
    assert rule_to_json(Rule.match_source_zerotier_address(0xABC))["zt"] == "0000000abc"
    ir = rule_to_json(Rule.match_integer_range(16, 32, 3, bits=8))
    assert ir == {
        "type": "INTEGER_RANGE",
        "start": "0000000000000010",
        "end": "0000000000000020",
        "idx": 3,
        "little": False,
        "bits": 8,
        "not": False,
        "or": False,
    }


def test_json_parsing_is_lenient_like_the_controller() -> None:
    assert rule_from_json({"type": "MATCH_ETHERTYPE", "etherType": "2048"}) == Rule.match_ethertype(2048)
    assert rule_from_json({"type": "MATCH_ETHERTYPE", "etherType": 0x10800}) == Rule.match_ethertype(0x0800)
    assert rule_from_json(
        {"type": "MATCH_ETHERTYPE", "etherType": 2048, "not": "true", "or": 1}
    ) == Rule.match_ethertype(2048, not_=True, or_=True)
    assert rule_from_json({"type": "MATCH_IP_DEST_PORT_RANGE", "start": 22}) == Rule.match_ip_dest_port_range(
        22, 22
    )
    assert rule_from_json({"type": "MATCH_MAC_DEST", "mac": "AA-BB-CC-DD-EE-FF"}).mac == MAC(0xAABBCCDDEEFF)
    assert rule_from_json({"type": "MATCH_MAC_DEST", "mac": "aabbcc"}).mac == MAC(0xAABBCC000000)
    assert rule_from_json({"type": "MATCH_IPV4_SOURCE", "ip": "10.0.0.0/99"}).mask == 32
    junk = rule_from_json({"type": "MATCH_IPV4_SOURCE", "ip": "nonsense.x/8"})
    assert junk.ip == ipaddress.IPv4Address(0) and junk.mask == 8
    assert rule_from_json({"type": "MATCH_IPV6_SOURCE"}).ip == ipaddress.IPv6Address(0)
    assert rule_from_json({"type": "MATCH_ICMP", "icmpType": 8, "icmpCode": None}) == Rule.match_icmp(8)
    assert rule_from_json({"type": "MATCH_CHARACTERISTICS", "mask": 5}).characteristics == 5
    assert (
        rule_from_json({"type": "MATCH_CHARACTERISTICS", "mask": "8000000000000000"}).characteristics
        == 1 << 63
    )
    assert rule_from_json({"type": "ACTION_TEE", "address": "1122334455"}).fwd_address == 0x1122334455
    assert rule_from_json({"type": "MATCH_TAGS_EQUAL", "id": 5, "value": "7"}) == Rule.match_tags_equal(5, 7)


def test_json_invalid_rules() -> None:
    with pytest.raises(InvalidFormatError):
        rule_from_json({"type": "MATCH_NOTHING"})
    with pytest.raises(InvalidFormatError):
        rule_from_json(["ACTION_ACCEPT"])  # type: ignore[arg-type]
    with pytest.raises(InvalidFormatError):
        rule_to_json(Rule(60))
    parsed = rules_from_json([{"type": "ACTION_DROP"}, {"type": "bogus"}, 5, {"type": "ACTION_ACCEPT"}])
    assert parsed == [Rule.action_drop(), Rule.action_accept()]
    with pytest.raises(InvalidFormatError):
        rules_from_json([{"type": "bogus"}], skip_invalid=False)


def test_json_list_round_trip() -> None:
    known = [r for r in ALL_RULES if r.is_known]
    assert rules_from_json(rules_to_json(known)) == known
