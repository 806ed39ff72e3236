"""The single rule-evaluation point every virtual frame passes through.

`evaluate` walks a network's rules table for one frame, in the real core's
order and with its NOT/OR match semantics, and returns the verdict and the
index of the rule that decided it. This evaluator understands actions
ACCEPT/DROP/BREAK and the frame-header matches (ZeroTier addresses, MACs,
ethertype, VLAN, IPv4/IPv6 addresses, IP protocol and TOS, ports, ICMP, frame
size); tag, capability and remaining matches plug in here with the full rules
engine. A match this evaluator does not understand never matches.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ztcore.vl2.rules import Rule, RuleType

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD


@dataclass(frozen=True, slots=True)
class FrameFacts:
    """What rules can match on, extracted once per frame."""

    source_address: int
    dest_address: int
    source_mac: int
    dest_mac: int
    ethertype: int
    vlan_id: int
    frame_len: int
    ip_source: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    ip_dest: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    ip_protocol: int = -1
    ip_tos: int = 0
    source_port: int = -1
    dest_port: int = -1
    icmp_type: int = -1
    icmp_code: int = -1


def frame_facts(
    source_address: int,
    dest_address: int,
    source_mac: int,
    dest_mac: int,
    ethertype: int,
    vlan_id: int,
    data: bytes,
) -> FrameFacts:
    ip_src = ip_dst = None
    proto = tos = -1
    sport = dport = icmp_t = icmp_c = -1
    try:
        if ethertype == ETHERTYPE_IPV4 and len(data) >= 20:
            ihl = (data[0] & 0x0F) * 4
            tos = data[1]
            proto = data[9]
            ip_src = ipaddress.IPv4Address(data[12:16])
            ip_dst = ipaddress.IPv4Address(data[16:20])
            payload = data[ihl:]
        elif ethertype == ETHERTYPE_IPV6 and len(data) >= 40:
            tos = ((data[0] & 0x0F) << 4) | (data[1] >> 4)
            proto = data[6]
            ip_src = ipaddress.IPv6Address(data[8:24])
            ip_dst = ipaddress.IPv6Address(data[24:40])
            pos = 40
            # Skip the extension headers the real core skips.
            while proto in (0, 43, 60, 135) and pos + 8 <= len(data):
                proto, pos = data[pos], pos + (data[pos + 1] + 1) * 8
            payload = data[pos:]
        else:
            payload = b""
        if proto in (6, 17, 132, 136) and len(payload) >= 4:
            sport, dport = struct.unpack_from(">HH", payload, 0)
        elif proto in (1, 58) and len(payload) >= 2:
            icmp_t, icmp_c = payload[0], payload[1]
    except (ValueError, IndexError, struct.error):
        pass
    return FrameFacts(
        source_address,
        dest_address,
        source_mac,
        dest_mac,
        ethertype,
        vlan_id,
        len(data),
        ip_src,
        ip_dst,
        proto,
        max(tos, 0),
        sport,
        dport,
        icmp_t,
        icmp_c,
    )


def _in_net(ip: object, rule: Rule) -> bool:
    if ip is None or rule.ip is None or not isinstance(ip, type(rule.ip)):
        return False
    net = ipaddress.ip_network(f"{rule.ip}/{rule.mask}", strict=False)
    return ip in net


def _match(rule: Rule, f: FrameFacts) -> bool | None:
    """True/False for a match rule this evaluator knows, None for an unknown one."""
    t = rule.type
    if t == RuleType.MATCH_SOURCE_ZEROTIER_ADDRESS:
        return f.source_address == rule.zt
    if t == RuleType.MATCH_DEST_ZEROTIER_ADDRESS:
        return f.dest_address == rule.zt
    if t == RuleType.MATCH_VLAN_ID:
        return f.vlan_id == rule.vlan_id
    if t == RuleType.MATCH_MAC_SOURCE:
        return f.source_mac == rule.mac
    if t == RuleType.MATCH_MAC_DEST:
        return f.dest_mac == rule.mac
    if t == RuleType.MATCH_ETHERTYPE:
        return f.ethertype == rule.ether_type
    if t in (RuleType.MATCH_IPV4_SOURCE, RuleType.MATCH_IPV6_SOURCE):
        return _in_net(f.ip_source, rule)
    if t in (RuleType.MATCH_IPV4_DEST, RuleType.MATCH_IPV6_DEST):
        return _in_net(f.ip_dest, rule)
    if t == RuleType.MATCH_IP_PROTOCOL:
        return f.ip_protocol == rule.ip_protocol
    if t == RuleType.MATCH_IP_TOS:
        return f.ip_source is not None and rule.tos_start <= (f.ip_tos & rule.tos_mask) <= rule.tos_end
    if t == RuleType.MATCH_IP_SOURCE_PORT_RANGE:
        return f.source_port >= 0 and rule.start <= f.source_port <= rule.end
    if t == RuleType.MATCH_IP_DEST_PORT_RANGE:
        return f.dest_port >= 0 and rule.start <= f.dest_port <= rule.end
    if t == RuleType.MATCH_ICMP:
        if f.icmp_type < 0 or f.icmp_type != rule.icmp_type:
            return False
        return rule.icmp_code_matched is None or rule.icmp_code_matched == f.icmp_code
    if t == RuleType.MATCH_FRAME_SIZE_RANGE:
        return rule.start <= f.frame_len <= rule.end
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    rule_index: int  # index of the deciding action, -1 if the table ran out
    reason: str


def evaluate(rules: list[Rule], facts: FrameFacts) -> Verdict:
    """Evaluate `rules` for one frame: matches before an action are combined
    (AND, or OR when flagged, each optionally negated); the first action whose
    matches all hold decides. An empty table or one that runs out drops, as the
    real core does."""
    this_set_matches = True
    for i, rule in enumerate(rules):
        if rule.is_action:
            if this_set_matches:
                if rule.type == RuleType.ACTION_ACCEPT:
                    return Verdict(True, i, "accept")
                if rule.type == RuleType.ACTION_DROP:
                    return Verdict(False, i, "drop rule")
                if rule.type == RuleType.ACTION_BREAK:
                    return Verdict(False, i, "break")
                # TEE / WATCH / REDIRECT / PRIORITY: not yet supported; keep evaluating.
            this_set_matches = True
            continue
        m = _match(rule, facts)
        if m is None:
            m = False
        m = m != rule.not_
        if rule.or_:
            this_set_matches = this_set_matches or m
        else:
            this_set_matches = this_set_matches and m
    return Verdict(False, -1, "no matching rule")
