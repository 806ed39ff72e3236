"""The rules engine against the known-answer table (tests/rules_kat.py), plus the
rule log format, fast paths and the parts of evaluation the table does not show."""

from __future__ import annotations

import functools
import ipaddress

import pytest
from tests.rules_kat import CASES, FRAMES, ME, ME_MAC, PEER, PEER_MAC, Case

from ztcore.vl2.rules import (
    FilterResult,
    Frame,
    Ownership,
    Rule,
    compile_rules,
    decode_rule_log,
    evaluate,
)
from ztcore.vl2.rules.frametext import ParsedFrame, parse_frame_text

R = Rule


@functools.cache
def _parsed(text: str) -> ParsedFrame:
    return parse_frame_text(FRAMES.get(text, text))


def _frame(case: Case) -> Frame:
    p = _parsed(case.frame)
    inbound = case.direction == "in"
    src = case.source if case.source is not None else (PEER if inbound else ME)
    dst = case.dest if case.dest is not None else (ME if inbound else PEER)
    smac = p.source_mac if p.source_mac is not None else (PEER_MAC if inbound else ME_MAC)
    dmac = p.dest_mac if p.dest_mac is not None else (ME_MAC if inbound else PEER_MAC)
    return Frame(src, dst, smac, dmac, p.ethertype, p.payload, p.vlan_id)


def _run(case: Case):
    ownership = Ownership(
        [ipaddress.ip_address(i).packed for i in case.owned_ips],
        case.owned_macs,
        [(ipaddress.ip_address(a).packed, n) for a, n in case.ndp_prefixes],
    )
    return evaluate(
        case.rules,
        _frame(case),
        inbound=case.direction == "in",
        me=ME,
        capabilities=case.caps,
        local_tags=case.local_tags,
        remote_tags=case.remote_tags,
        ownership=ownership,
        unsupported_match=case.unsupported,
        no_tee=case.no_tee,
        rng=lambda: case.rng,
    )


def test_table_is_large_and_names_are_unique() -> None:
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_known_answer(case: Case) -> None:
    ev = _run(case)
    assert ev.verdict.name == case.verdict, case.why
    if case.deciding is None:
        assert ev.deciding is None, case.why
    elif isinstance(case.deciding, tuple):
        assert ev.deciding is not None
        assert (ev.deciding.capability_id, ev.deciding.index) == case.deciding, case.why
    else:
        assert ev.deciding is not None
        assert ev.deciding.capability_id is None and ev.deciding.index == case.deciding, case.why
    if case.copies is not None:
        got = [(c.action.name, c.address, c.flags, c.length) for c in ev.copies]
        assert got == case.copies, case.why
    if case.qos != "unchecked":
        assert ev.qos_bucket == case.qos, case.why


def test_every_rule_type_is_covered() -> None:
    from ztcore.vl2.rules import RuleType

    seen = {int(r.type) for c in CASES for r in c.rules} | {
        int(r.type) for c in CASES for _, rules in c.caps for r in rules
    }
    missing = [t.name for t in RuleType if int(t) not in seen]
    assert not missing


def test_rule_log_nibbles() -> None:
    """4-bit log as the core's RuleResultLog: low bits set+1, high bits result+1, 0 if skipped."""
    case = Case(
        "log",
        [R.match_ethertype(0x0806), R.match_ip_protocol(6), R.action_drop(), R.action_accept()],
        "tcp22",
        "out",
        "ACCEPT",
        3,
    )
    ev = _run(case)
    # rule 0: set 1, result 0 -> (1 << 2) | 2 = 6; rule 1: skipped with set 0 -> 1
    assert ev.base.log == bytes([0x16, 0x00])
    entries = decode_rule_log(ev.base.log, 4)
    assert (entries[0].set_matched, entries[0].rule_matched) == (True, False)
    assert (entries[1].set_matched, entries[1].rule_matched) == (False, None)
    assert entries[2].set_matched is None and entries[3].set_matched is None
    # OR after a false set is evaluated, not skipped
    case2 = Case(
        "log2",
        [R.match_ethertype(0x0806), R.match_ethertype(0x0800, or_=True), R.action_accept()],
        "tcp22",
        "in",
        "ACCEPT",
        2,
    )
    ev2 = _run(case2)
    assert ev2.base.log[0] == (6 | ((2 << 2 | 1) << 4))


def test_capability_log_is_the_deciding_capabilitys() -> None:
    case = Case(
        "caplog",
        [R.action_break()],
        "tcp22",
        "out",
        "ACCEPT",
        (2, 1),
        caps=[
            (1, [R.match_ip_protocol(17), R.action_accept()]),
            (2, [R.match_ip_protocol(6), R.action_accept()]),
        ],
    )
    ev = _run(case)
    assert ev.capability_id == 2 and ev.capability is not None
    assert decode_rule_log(ev.capability.log, 1)[0].rule_matched is True


def test_compiled_rules_reused_and_accept_all_flag() -> None:
    cr = compile_rules([R.action_accept()])
    assert cr.accept_all and compile_rules(cr) is cr
    assert not compile_rules([R.match_ethertype(0x0800), R.action_accept()]).accept_all
    f = _frame(Case("x", [], "tcp22", "out", "ACCEPT"))
    assert evaluate(cr, f, inbound=False, me=ME).verdict == FilterResult.ACCEPT


def test_ipv6_header_walk_happens_once() -> None:
    f = _frame(Case("x", [], "udp6_hbh", "out", "ACCEPT"))
    assert f.ipv6_payload() == (48, 17)
    assert f.ipv6_payload() is f.ipv6_payload()


def test_truncated_ipv6_extension_chain_is_hard_no() -> None:
    # Next header 0 (hop-by-hop) but no room for it: _ipv6GetPayload fails, so a
    # protocol match is a hard no even when negated.
    data = bytearray(40)
    data[0] = 0x60
    data[6] = 0
    f = Frame(PEER, ME, PEER_MAC, ME_MAC, 0x86DD, bytes(data))
    ev = evaluate(
        [R.match_ip_protocol(6, not_=True), R.action_drop(), R.action_accept()], f, inbound=True, me=ME
    )
    assert ev.verdict == FilterResult.ACCEPT and ev.deciding is not None and ev.deciding.index == 2


def test_random_uses_the_supplied_source() -> None:
    f = _frame(Case("x", [], "tcp22", "out", "ACCEPT"))
    rules = [R.match_random(0x80000000), R.action_drop(), R.action_accept()]
    draws = iter([0x10, 0xF0000000])
    first = evaluate(rules, f, inbound=False, me=ME, rng=lambda: next(draws))
    second = evaluate(rules, f, inbound=False, me=ME, rng=lambda: next(draws))
    assert first.verdict == FilterResult.DROP and second.verdict == FilterResult.ACCEPT


def test_verdict_cache_key_determines_the_evaluation() -> None:
    """Frames with the same rule-visible key get the same evaluation: for every table
    case, change payload bytes one at a time; whenever the key stays the same, so must
    the verdict, the deciding rule and the copies."""
    import random

    from ztcore.vl2.rules import compile_rules
    from ztcore.vl2.rules.cache import rule_visible_key

    rnd = random.Random(9)
    checked = 0
    for case in CASES:
        base = _frame(case)
        need = max(
            [compile_rules(case.rules).payload_need, *(compile_rules(r).payload_need for _, r in case.caps)]
        )
        key = rule_visible_key(base.ethertype, base.data, need)
        want = _run(case)
        for _ in range(12):
            data = bytearray(base.data)
            if not data:
                break
            i = rnd.randrange(len(data))
            data[i] ^= 1 << rnd.randrange(8)
            if rule_visible_key(base.ethertype, bytes(data), need) != key:
                continue
            f = Frame(
                base.source_address,
                base.dest_address,
                base.source_mac,
                base.dest_mac,
                base.ethertype,
                bytes(data),
                base.vlan_id,
            )
            got = evaluate(
                case.rules,
                f,
                inbound=case.direction == "in",
                me=ME,
                capabilities=case.caps,
                local_tags=case.local_tags,
                remote_tags=case.remote_tags,
                unsupported_match=case.unsupported,
                no_tee=case.no_tee,
                rng=lambda case=case: case.rng,
                ownership=Ownership(
                    [ipaddress.ip_address(x).packed for x in case.owned_ips],
                    case.owned_macs,
                    [(ipaddress.ip_address(a).packed, n) for a, n in case.ndp_prefixes],
                ),
            )
            assert (got.verdict, got.deciding, got.copies) == (want.verdict, want.deciding, want.copies), (
                case.name
            )
            checked += 1
    assert checked > 500


def test_verdict_cache_key_ignores_per_packet_fields() -> None:
    from ztcore.vl2.rules.cache import VerdictCache, rule_visible_key

    a = _parsed("tcp22").payload
    b = bytearray(a)
    b[4:6] = b"\x12\x34"  # IP id
    b[8] = 3  # TTL
    b[10:12] = b"\xff\xff"  # checksum
    b[24:28] = b"\x00\x00\x00\x09"  # TCP sequence number
    assert rule_visible_key(0x0800, a) == rule_visible_key(0x0800, bytes(b))
    b[23] = 23  # destination port
    assert rule_visible_key(0x0800, a) != rule_visible_key(0x0800, bytes(b))
    c = VerdictCache(max_entries=2)
    c.put((1,), "x")
    c.put((2,), "y")
    c.put((3,), "z")  # full: starts over
    assert len(c) == 1 and c.get((3,)) == "z" and c.get((1,)) is None and (c.hits, c.misses) == (1, 1)
