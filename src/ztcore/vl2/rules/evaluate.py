"""Rule evaluation: the one place that decides what a network's rules say about a frame.

This follows the real core's ``_doZtFilter`` (one pass over one rule table) and
``filterOutgoingPacket`` / ``filterIncomingPacket`` (base rules first, then
capabilities on "no match"). The node and offline tools (``ztnode rules test``)
call the same :func:`evaluate`, so what a tool says is what the node does.

Semantics worth knowing (all as the real core has them):

- Matches before an action are combined left to right: AND, or OR when the
  rule's OR bit is set, each result XOR the rule's NOT bit. An AND whose set is
  already false is skipped (logged as skipped).
- A header match on a frame that lacks the header (``not ipsrc 10.0.0.0/8`` on
  ARP) is a *hard no*: the rule's result is the NOT bit itself, so after the
  XOR the set is false whatever NOT says.
- ACTION_PRIORITY accepts and sets the QoS bucket (values above 8 become 4);
  ACTION_BREAK ends the table with "no match" so capabilities are tried next;
  an unknown action is a no-op; an unknown match takes the network's
  "result of unsupported match" flag.
- TEE/WATCH/REDIRECT whose target is the frame's source or destination do
  nothing; when the target is this node an inbound frame is *super-accepted*
  (delivered despite bridging and MAC checks). A TEE/WATCH/REDIRECT behind a
  failed set still marks an inbound frame for super-accept at the next ACCEPT.
- Tag matches: when the remote member's tag is unknown, inbound (and not a
  super-accept) is a hard no; outbound is lenient: the match holds and the
  next DROP is skipped (``skipDrop``).

The 4-bit rule log is the real core's trace format: per rule, bits 0-1 hold
the set's state before the rule + 1 and bits 2-3 the rule's result + 1 (0 if
the rule was skipped); two rules a byte, even rule in the low nibble. Actions
are not logged.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ztcore.vl2.rules.formats import (
    CHARACTERISTICS_BROADCAST,
    CHARACTERISTICS_INBOUND,
    CHARACTERISTICS_MULTICAST,
    CHARACTERISTICS_SENDER_IP_AUTHENTICATED,
    CHARACTERISTICS_SENDER_MAC_AUTHENTICATED,
    Rule,
    RuleType,
)
from ztcore.vl2.rules.frame import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    NO_OWNERSHIP,
    Frame,
    Ownership,
)
from ztcore.vl2.rules.outcome import (
    EXT_FRAME_FLAG_INBOUND_REDIRECT,
    EXT_FRAME_FLAG_INBOUND_TEE,
    EXT_FRAME_FLAG_INBOUND_WATCH,
    EXT_FRAME_FLAG_OUTBOUND_REDIRECT,
    EXT_FRAME_FLAG_OUTBOUND_TEE,
    EXT_FRAME_FLAG_OUTBOUND_WATCH,
    Copy,
    DecidingRule,
    Evaluation,
    FilterResult,
    RuleLogEntry,
    RuleSetOutcome,
    decode_rule_log,
)

__all__ = [
    "ETHERTYPE_ARP",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "EXT_FRAME_FLAG_INBOUND_TEE",
    "EXT_FRAME_FLAG_INBOUND_WATCH",
    "EXT_FRAME_FLAG_INBOUND_REDIRECT",
    "EXT_FRAME_FLAG_OUTBOUND_REDIRECT",
    "EXT_FRAME_FLAG_OUTBOUND_TEE",
    "EXT_FRAME_FLAG_OUTBOUND_WATCH",
    "CompiledRules",
    "Copy",
    "DecidingRule",
    "Evaluation",
    "FilterResult",
    "Frame",
    "Ownership",
    "RuleLogEntry",
    "RuleSetOutcome",
    "compile_rules",
    "decode_rule_log",
    "evaluate",
    "evaluate_rule_set",
]


QOS_DEFAULT_PRIORITY_BUCKET = 4  # PRIORITY with a bucket above 8 lands here
_BROADCAST = 0xFFFFFFFFFFFF
_U64 = (1 << 64) - 1

_ACTION_MAX = 15
_PORT_PROTOCOLS = (6, 17, 132, 136)  # TCP, UDP, SCTP, UDP-Lite: ports first


# --------------------------------------------------------------- compilation

# A compiled rule: (type, NOT bit, OR bit, a, b, c); the meaning of a/b/c by type
# is fixed in _compile_one. Tuples keep the hot loop free of attribute lookups.
_C = tuple


def _compile_one(r: Rule) -> _C:
    t = int(r.type)
    n = 1 if r.not_ else 0
    o = 1 if r.or_ else 0
    a: Any = 0
    b: Any = 0
    c: Any = 0
    if t in (RuleType.ACTION_TEE, RuleType.ACTION_WATCH, RuleType.ACTION_REDIRECT):
        a, b, c = r.fwd_address & 0xFFFFFFFFFF, r.fwd_length, r.fwd_flags
    elif t == RuleType.ACTION_PRIORITY:
        a = r.qos_bucket if r.qos_bucket <= 8 else QOS_DEFAULT_PRIORITY_BUCKET
    elif t in (RuleType.MATCH_SOURCE_ZEROTIER_ADDRESS, RuleType.MATCH_DEST_ZEROTIER_ADDRESS):
        a = r.zt
    elif t == RuleType.MATCH_VLAN_ID:
        a = r.vlan_id
    elif t == RuleType.MATCH_VLAN_PCP:
        a = r.vlan_pcp
    elif t == RuleType.MATCH_VLAN_DEI:
        a = r.vlan_dei
    elif t in (RuleType.MATCH_MAC_SOURCE, RuleType.MATCH_MAC_DEST):
        a = int(r.mac or 0)
    elif t in (RuleType.MATCH_IPV4_SOURCE, RuleType.MATCH_IPV4_DEST):
        # InetAddress::containsAddress: both sides shifted right by (32 - bits); 0 bits
        # match everything. The core shifts by a negative amount above 32 (undefined);
        # ztcore treats that as an exact match.
        bits = min(r.mask, 32)
        a, b = int(r.ip or 0), 32 - bits
        c = 1 if bits == 0 else 0
    elif t in (RuleType.MATCH_IPV6_SOURCE, RuleType.MATCH_IPV6_DEST):
        # containsAddress for IPv6 masks only the frame's address: a rule address
        # with host bits set never matches, as in the core.
        bits = min(r.mask, 128)
        a = int(r.ip or 0)
        b = ((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1)
    elif t == RuleType.MATCH_IP_TOS:
        a, b, c = r.tos_mask, r.tos_start, r.tos_end
    elif t == RuleType.MATCH_IP_PROTOCOL:
        a = r.ip_protocol
    elif t == RuleType.MATCH_ETHERTYPE:
        a = r.ether_type
    elif t == RuleType.MATCH_ICMP:
        a, b = r.icmp_type, (r.icmp_code if r.icmp_flags & 0x01 else None)
    elif t in (
        RuleType.MATCH_IP_SOURCE_PORT_RANGE,
        RuleType.MATCH_IP_DEST_PORT_RANGE,
        RuleType.MATCH_FRAME_SIZE_RANGE,
    ):
        a, b = r.start, r.end
    elif t == RuleType.MATCH_CHARACTERISTICS:
        a = r.characteristics
    elif t == RuleType.MATCH_RANDOM:
        a = r.probability
    elif RuleType.MATCH_TAGS_DIFFERENCE <= t <= RuleType.MATCH_TAG_RECEIVER:
        a, b = r.tag_id, r.tag_value
    elif t == RuleType.MATCH_INTEGER_RANGE:
        a, b, c = r.int_start, (r.int_start + r.int_end) & _U64, (r.int_idx, r.int_format)
    return (t, n, o, a, b, c)


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """A rule table prepared for evaluation (build once per config or capability)."""

    rules: tuple[Rule, ...]
    compiled: tuple[_C, ...]
    accept_all: bool  # exactly one unconditional ACCEPT: no need to look at frames
    random: bool = False  # has MATCH_RANDOM: results cannot be remembered
    payload_need: int = 0  # bytes of payload MATCH_INTEGER_RANGE may read

    def __len__(self) -> int:
        return len(self.rules)


def compile_rules(rules: Sequence[Rule] | CompiledRules) -> CompiledRules:
    if isinstance(rules, CompiledRules):
        return rules
    rs = tuple(rules)
    accept_all = len(rs) == 1 and rs[0].type == RuleType.ACTION_ACCEPT
    random = any(r.type == RuleType.MATCH_RANDOM for r in rs)
    need = max((r.int_idx + 9 for r in rs if r.type == RuleType.MATCH_INTEGER_RANGE), default=0)
    return CompiledRules(rs, tuple(_compile_one(r) for r in rs), accept_all, random, need)


RulesLike = Sequence[Rule] | CompiledRules


# ----------------------------------------------------------------- one table


def _rand32() -> int:
    return secrets.randbits(32)


# Plain ints for the hot loop (IntEnum comparisons cost more).
_ACTION_ACCEPT = int(RuleType.ACTION_ACCEPT)
_ACTION_BREAK = int(RuleType.ACTION_BREAK)
_ACTION_DROP = int(RuleType.ACTION_DROP)
_ACTION_PRIORITY = int(RuleType.ACTION_PRIORITY)
_ACTION_REDIRECT = int(RuleType.ACTION_REDIRECT)
_ACTION_TEE = int(RuleType.ACTION_TEE)
_ACTION_WATCH = int(RuleType.ACTION_WATCH)
_MATCH_CHARACTERISTICS = int(RuleType.MATCH_CHARACTERISTICS)
_MATCH_DEST_ZEROTIER_ADDRESS = int(RuleType.MATCH_DEST_ZEROTIER_ADDRESS)
_MATCH_ETHERTYPE = int(RuleType.MATCH_ETHERTYPE)
_MATCH_FRAME_SIZE_RANGE = int(RuleType.MATCH_FRAME_SIZE_RANGE)
_MATCH_ICMP = int(RuleType.MATCH_ICMP)
_MATCH_INTEGER_RANGE = int(RuleType.MATCH_INTEGER_RANGE)
_MATCH_IPV4_SOURCE = int(RuleType.MATCH_IPV4_SOURCE)
_MATCH_IPV4_DEST = int(RuleType.MATCH_IPV4_DEST)
_MATCH_IPV6_SOURCE = int(RuleType.MATCH_IPV6_SOURCE)
_MATCH_IPV6_DEST = int(RuleType.MATCH_IPV6_DEST)
_MATCH_IP_DEST_PORT_RANGE = int(RuleType.MATCH_IP_DEST_PORT_RANGE)
_MATCH_IP_PROTOCOL = int(RuleType.MATCH_IP_PROTOCOL)
_MATCH_IP_SOURCE_PORT_RANGE = int(RuleType.MATCH_IP_SOURCE_PORT_RANGE)
_MATCH_IP_TOS = int(RuleType.MATCH_IP_TOS)
_MATCH_MAC_DEST = int(RuleType.MATCH_MAC_DEST)
_MATCH_MAC_SOURCE = int(RuleType.MATCH_MAC_SOURCE)
_MATCH_RANDOM = int(RuleType.MATCH_RANDOM)
_MATCH_SOURCE_ZEROTIER_ADDRESS = int(RuleType.MATCH_SOURCE_ZEROTIER_ADDRESS)
_MATCH_TAGS_BITWISE_AND = int(RuleType.MATCH_TAGS_BITWISE_AND)
_MATCH_TAGS_BITWISE_OR = int(RuleType.MATCH_TAGS_BITWISE_OR)
_MATCH_TAGS_BITWISE_XOR = int(RuleType.MATCH_TAGS_BITWISE_XOR)
_MATCH_TAGS_DIFFERENCE = int(RuleType.MATCH_TAGS_DIFFERENCE)
_MATCH_TAGS_EQUAL = int(RuleType.MATCH_TAGS_EQUAL)
_MATCH_TAG_RECEIVER = int(RuleType.MATCH_TAG_RECEIVER)
_MATCH_TAG_SENDER = int(RuleType.MATCH_TAG_SENDER)
_MATCH_VLAN_DEI = int(RuleType.MATCH_VLAN_DEI)
_MATCH_VLAN_ID = int(RuleType.MATCH_VLAN_ID)
_MATCH_VLAN_PCP = int(RuleType.MATCH_VLAN_PCP)


def evaluate_rule_set(
    rules: RulesLike,
    frame: Frame,
    *,
    inbound: bool,
    me: int,
    local_tags: Mapping[int, int],
    remote_tags: Mapping[int, int] | None,
    ownership: Ownership = NO_OWNERSHIP,
    unsupported_match: bool = False,
    rng: Callable[[], int] = _rand32,
) -> RuleSetOutcome:
    """One pass over one rule table, as the core's _doZtFilter.

    ``local_tags``: this node's tags (id -> value). ``remote_tags``: the other
    member's tags that are currently valid, or None if there is no other member
    (outbound multicast). ``ownership``: what the frame's sender owns.
    """
    cr = compile_rules(rules)
    log = bytearray((len(cr.compiled) + 1) // 2)
    d = frame.data
    flen = len(d)
    et = frame.ethertype
    src = frame.source_address
    dst = frame.dest_address
    rtags = remote_tags if remote_tags is not None else {}
    super_accept = False
    set_m = 1
    skip_drop = False
    cc_address = 0
    cc_length = 0
    cc_watch = False
    qos: int | None = None
    is_v4 = et == ETHERTYPE_IPV4 and flen >= 20
    is_v6 = et == ETHERTYPE_IPV6 and flen >= 40
    ownership_mask = -1  # computed the first time a characteristics rule needs it

    for rn, (t, n, o, a, b, c) in enumerate(cr.compiled):
        if t <= _ACTION_MAX:
            if set_m:
                if t == _ACTION_ACCEPT:
                    result = FilterResult.SUPER_ACCEPT if super_accept else FilterResult.ACCEPT
                    return RuleSetOutcome(result, rn, bytes(log), cc_address, cc_length, cc_watch, 0, qos)
                if t == _ACTION_DROP:
                    if skip_drop:
                        skip_drop = False
                        continue
                    return RuleSetOutcome(
                        FilterResult.DROP, rn, bytes(log), cc_address, cc_length, cc_watch, 0, qos
                    )
                if t == _ACTION_PRIORITY:
                    return RuleSetOutcome(
                        FilterResult.ACCEPT, rn, bytes(log), cc_address, cc_length, cc_watch, 0, a
                    )
                if t == _ACTION_BREAK:
                    return RuleSetOutcome(
                        FilterResult.NO_MATCH, rn, bytes(log), cc_address, cc_length, cc_watch, 0, qos
                    )
                if t in (_ACTION_TEE, _ACTION_WATCH, _ACTION_REDIRECT):
                    if a == src:
                        pass  # the source is the target: nothing to do
                    elif a == me:
                        if inbound:
                            return RuleSetOutcome(
                                FilterResult.SUPER_ACCEPT,
                                rn,
                                bytes(log),
                                cc_address,
                                cc_length,
                                cc_watch,
                                0,
                                qos,
                            )
                    elif a == dst:
                        pass  # the frame goes there anyway
                    elif t == _ACTION_REDIRECT:
                        return RuleSetOutcome(
                            FilterResult.REDIRECT, rn, bytes(log), cc_address, cc_length, cc_watch, a, qos
                        )
                    else:
                        cc_address = a
                        cc_length = flen if b == 0 or flen < b else b
                        cc_watch = t == _ACTION_WATCH
                # unknown actions: no-ops
            else:
                if (
                    inbound
                    and a == me
                    and t
                    in (
                        _ACTION_TEE,
                        _ACTION_WATCH,
                        _ACTION_REDIRECT,
                    )
                ):
                    super_accept = True
                set_m = 1
            continue

        if not set_m and not o:
            log[rn >> 1] |= 1 << ((rn & 1) << 2)  # skipped; the set was false
            continue

        hard_no = n
        hard_yes = n ^ 1
        if t == _MATCH_SOURCE_ZEROTIER_ADDRESS:
            m = 1 if a == src else 0
        elif t == _MATCH_DEST_ZEROTIER_ADDRESS:
            m = 1 if a == dst else 0
        elif t == _MATCH_ETHERTYPE:
            m = 1 if a == et else 0
        elif t == _MATCH_IPV4_SOURCE or t == _MATCH_IPV4_DEST:
            if is_v4:
                off = 12 if t == _MATCH_IPV4_SOURCE else 16
                ip = int.from_bytes(d[off : off + 4], "big")
                m = 1 if c or (ip >> b) == (a >> b) else 0
            else:
                m = hard_no
        elif t == _MATCH_IPV6_SOURCE or t == _MATCH_IPV6_DEST:
            if is_v6:
                off = 8 if t == _MATCH_IPV6_SOURCE else 24
                ip = int.from_bytes(d[off : off + 16], "big")
                m = 1 if (ip & b) == a else 0
            else:
                m = hard_no
        elif t == _MATCH_IP_PROTOCOL:
            if is_v4:
                m = 1 if a == d[9] else 0
            elif et == ETHERTYPE_IPV6:
                pp = frame.ipv6_payload()
                m = hard_no if pp is None else (1 if a == pp[1] else 0)
            else:
                m = hard_no
        elif t == _MATCH_IP_SOURCE_PORT_RANGE or t == _MATCH_IP_DEST_PORT_RANGE:
            dport = t == _MATCH_IP_DEST_PORT_RANGE
            if is_v4:
                hl = 4 * (d[0] & 0x0F)
                p = -1
                if d[9] in _PORT_PROTOCOLS and flen > hl + 4:
                    q = hl + 2 if dport else hl
                    p = (d[q] << 8) | d[q + 1]
                m = 1 if p >= 0 and a <= p <= b else 0
            elif et == ETHERTYPE_IPV6:
                pp = frame.ipv6_payload()
                if pp is None:
                    m = hard_no
                else:
                    pos, proto = pp
                    p = -1
                    if proto in _PORT_PROTOCOLS and flen > pos + 4:
                        q = pos + 2 if dport else pos
                        p = (d[q] << 8) | d[q + 1]
                    # The core requires p > 0 here: port 0 never matches over IPv6.
                    m = 1 if p > 0 and a <= p <= b else 0
            else:
                m = hard_no
        elif t == _MATCH_ICMP:
            m = hard_no
            if is_v4:
                if d[9] == 1:
                    hl = 4 * (d[0] & 0x0F)
                    if flen >= hl + 2 and a == d[hl]:
                        m = (1 if d[hl + 1] == b else 0) if b is not None else hard_yes
            elif et == ETHERTYPE_IPV6:
                pp = frame.ipv6_payload()
                if pp is not None and pp[1] == 0x3A and flen >= pp[0] + 2 and a == d[pp[0]]:
                    m = (1 if d[pp[0] + 1] == b else 0) if b is not None else hard_yes
        elif t == _MATCH_IP_TOS:
            if is_v4:
                tos = d[1] & a
                m = 1 if b <= tos <= c else 0
            elif is_v6:
                tos = (((d[0] << 4) & 0xF0) | ((d[1] >> 4) & 0x0F)) & a
                m = 1 if b <= tos <= c else 0
            else:
                m = hard_no
        elif t == _MATCH_MAC_SOURCE:
            m = 1 if a == frame.source_mac else 0
        elif t == _MATCH_MAC_DEST:
            m = 1 if a == frame.dest_mac else 0
        elif t == _MATCH_VLAN_ID:
            m = 1 if a == (frame.vlan_id & 0xFFFF) else 0
        elif t == _MATCH_VLAN_PCP or t == _MATCH_VLAN_DEI:
            m = 1 if a == 0 else 0  # not supported by the core: matches iff the rule's value is 0
        elif t == _MATCH_FRAME_SIZE_RANGE:
            m = 1 if a <= flen <= b else 0
        elif t == _MATCH_CHARACTERISTICS:
            if ownership_mask < 0:
                ownership_mask = _ownership_mask(frame, inbound, ownership)
            m = 1 if (_characteristics(frame, inbound) | ownership_mask) & a else 0
        elif t == _MATCH_RANDOM:
            m = 1 if (rng() & 0xFFFFFFFF) <= a else 0
        elif _MATCH_TAGS_DIFFERENCE <= t <= _MATCH_TAGS_EQUAL:
            ltv = local_tags.get(a)
            if ltv is None:
                m = hard_no
            else:
                rtv = rtags.get(a)
                if rtv is not None:
                    if t == _MATCH_TAGS_DIFFERENCE:
                        m = 1 if abs(ltv - rtv) <= b else 0
                    elif t == _MATCH_TAGS_BITWISE_AND:
                        m = 1 if (ltv & rtv) == b else 0
                    elif t == _MATCH_TAGS_BITWISE_OR:
                        m = 1 if (ltv | rtv) == b else 0
                    elif t == _MATCH_TAGS_BITWISE_XOR:
                        m = 1 if (ltv ^ rtv) == b else 0
                    else:
                        m = 1 if ltv == b and rtv == b else 0
                elif inbound and not super_accept:
                    m = hard_no
                else:
                    skip_drop = True
                    m = hard_yes
        elif t == _MATCH_TAG_SENDER or t == _MATCH_TAG_RECEIVER:
            if super_accept:
                skip_drop = True
                m = hard_yes
            elif (t == _MATCH_TAG_SENDER) == inbound:
                # the tag of the other member: the sender of an inbound frame, the receiver of an outbound one
                rtv = rtags.get(a)
                if rtv is not None:
                    m = 1 if rtv == b else 0
                elif t == _MATCH_TAG_RECEIVER:
                    skip_drop = True
                    m = hard_yes
                else:
                    m = hard_no
            else:
                ltv = local_tags.get(a)
                m = hard_no if ltv is None else (1 if ltv == b else 0)
        elif t == _MATCH_INTEGER_RANGE:
            m = 1 if a <= _integer_at(d, c[0], c[1]) <= b else 0
        else:
            m = 1 if unsupported_match else 0

        log[rn >> 1] |= (((m + 1) << 2) | (set_m + 1)) << ((rn & 1) << 2)
        if o:
            set_m |= m ^ n
        else:
            set_m &= m ^ n

    return RuleSetOutcome(FilterResult.NO_MATCH, -1, bytes(log), cc_address, cc_length, cc_watch, 0, qos)


def _characteristics(frame: Frame, inbound: bool) -> int:
    cf = CHARACTERISTICS_INBOUND if inbound else 0
    dm = frame.dest_mac
    if (dm >> 40) & 0x01:
        cf |= CHARACTERISTICS_MULTICAST
    if dm == _BROADCAST:
        cf |= CHARACTERISTICS_BROADCAST
    d = frame.data
    flen = len(d)
    et = frame.ethertype
    if et == ETHERTYPE_IPV4 and flen >= 20 and d[9] == 6:
        hl = 4 * (d[0] & 0x0F)
        # The core reads these bytes without a length check; a short frame reads as 0 here.
        if hl + 13 < flen:
            cf |= d[hl + 13] | ((d[hl + 12] & 0x0F) << 8)
    elif et == ETHERTYPE_IPV6:
        pp = frame.ipv6_payload()
        if pp is not None and pp[1] == 6 and flen > pp[0] + 14:
            cf |= d[pp[0] + 13] | ((d[pp[0] + 12] & 0x0F) << 8)
    return cf


def _ownership_mask(frame: Frame, inbound: bool, ownership: Ownership) -> int:
    """SENDER_IP/MAC_AUTHENTICATED, as the core computes them: the IP is the IPv4
    or IPv6 source (for a neighbour advertisement its target; a neighbour
    solicitation counts as authenticated), or the sender IP of an ARP packet."""
    mask = 0
    d = frame.data
    flen = len(d)
    et = frame.ethertype
    ip: bytes | None = None
    if et == ETHERTYPE_IPV4 and flen >= 20:
        ip = d[12:16]
    elif et == ETHERTYPE_IPV6 and flen >= 40:
        if flen >= 40 + 8 + 16 and d[6] == 0x3A and d[40] in (0x87, 0x88):
            if d[40] == 0x87:
                mask |= CHARACTERISTICS_SENDER_IP_AUTHENTICATED
            else:
                ip = d[48:64]
        else:
            ip = d[8:24]
    elif et == ETHERTYPE_ARP and flen >= 28:
        ip = d[14:18]
    # Any address found counts, even 0.0.0.0 (the core's InetAddress is "set" by its family).
    if ip is not None and (ownership.owns_ip(ip) if inbound else ip in ownership.ips):
        mask |= CHARACTERISTICS_SENDER_IP_AUTHENTICATED
    if ownership.owns_mac(frame.source_mac):
        mask |= CHARACTERISTICS_SENDER_MAC_AUTHENTICATED
    return mask


def _integer_at(d: bytes, idx: int, fmt: int) -> int:
    bits = (fmt & 63) + 1
    nbytes = (bits + 7) // 8
    if not fmt & 0x80:
        # Big-endian: the core starts (8 - bytes) past idx, a quirk kept as is.
        i = idx + (8 - nbytes)
        v = int.from_bytes(d[i : i + nbytes], "big") if i + nbytes <= len(d) else 0
        return v & (_U64 >> (64 - bits))
    i = idx
    if i + nbytes > len(d):
        return 0
    v = 0
    for byte in d[i : i + nbytes]:
        v = (v >> 8) | (byte << 56)
    return v >> (64 - bits)


# -------------------------------------------------------------- whole frame


def evaluate(
    rules: RulesLike,
    frame: Frame,
    *,
    inbound: bool,
    me: int,
    capabilities: Sequence[tuple[int, RulesLike]] = (),
    local_tags: Mapping[int, int] | None = None,
    remote_tags: Mapping[int, int] | None = None,
    ownership: Ownership = NO_OWNERSHIP,
    unsupported_match: bool = False,
    no_tee: bool = False,
    rng: Callable[[], int] = _rand32,
) -> Evaluation:
    """Everything the network's rules say about one frame, as the real core's
    filterOutgoingPacket (``inbound=False``) / filterIncomingPacket.

    ``capabilities``: (id, rules) tried in order on "no match" — outbound this
    node's own capabilities, inbound the sender's valid ones. ``local_tags``:
    this node's tags; ``remote_tags``: the other member's valid tags (None when
    there is no other member, as for outbound multicast). ``ownership``: COO
    facts about the frame's sender. ``no_tee``: outbound replication passes (one
    per multicast recipient or bridge) send no TEE/WATCH copies.
    """
    lt = local_tags if local_tags is not None else {}
    kw: dict[str, Any] = {
        "inbound": inbound,
        "me": me,
        "local_tags": lt,
        "remote_tags": remote_tags,
        "ownership": ownership,
        "unsupported_match": unsupported_match,
        "rng": rng,
    }
    base = evaluate_rule_set(rules, frame, **kw)
    tee_flags = (
        (EXT_FRAME_FLAG_INBOUND_WATCH, EXT_FRAME_FLAG_INBOUND_TEE)
        if inbound
        else (EXT_FRAME_FLAG_OUTBOUND_WATCH, EXT_FRAME_FLAG_OUTBOUND_TEE)
    )
    copies: list[Copy] = []
    cap_outcome: RuleSetOutcome | None = None
    cap_id: int | None = None
    deciding: DecidingRule | None = None
    qos = base.qos_bucket
    result = base.result
    final_dest = frame.dest_address

    if result == FilterResult.DROP:
        return Evaluation(FilterResult.DROP, inbound, DecidingRule(base.index), base, None, None, (), qos)
    if result == FilterResult.NO_MATCH:
        accepted = FilterResult.NO_MATCH
        for cid, crules in capabilities:
            co = evaluate_rule_set(crules, frame, **kw)
            cap_outcome, cap_id = co, cid
            if co.qos_bucket is not None:
                qos = co.qos_bucket
            if co.result in (FilterResult.NO_MATCH, FilterResult.DROP):
                continue  # a DROP in a capability only ends that capability
            # Outbound, a capability's super-accept is a plain accept.
            accepted = (
                FilterResult.SUPER_ACCEPT
                if inbound and co.result == FilterResult.SUPER_ACCEPT
                else FilterResult.ACCEPT
            )
            if co.result == FilterResult.REDIRECT:
                final_dest = co.redirect_to
            deciding = DecidingRule(co.index, cid)
            if co.cc_address and not (no_tee and not inbound):
                copies.append(
                    Copy(
                        RuleType.ACTION_WATCH if co.cc_watch else RuleType.ACTION_TEE,
                        co.cc_address,
                        co.cc_length,
                        tee_flags[0] if co.cc_watch else tee_flags[1],
                    )
                )
            break
        if accepted == FilterResult.NO_MATCH:
            return Evaluation(FilterResult.NO_MATCH, inbound, None, base, cap_outcome, cap_id, (), qos)
        result = accepted
    else:
        deciding = DecidingRule(base.index)
        if result == FilterResult.REDIRECT:
            final_dest = base.redirect_to
            result = FilterResult.ACCEPT

    # Accepted: the base table's TEE/WATCH copy goes out (after a capability's, as the core sends them).
    if base.cc_address and not (no_tee and not inbound):
        copies.append(
            Copy(
                RuleType.ACTION_WATCH if base.cc_watch else RuleType.ACTION_TEE,
                base.cc_address,
                base.cc_length,
                tee_flags[0] if base.cc_watch else tee_flags[1],
            )
        )
    if final_dest != frame.dest_address and final_dest:
        copies.append(
            Copy(
                RuleType.ACTION_REDIRECT,
                final_dest,
                len(frame.data),
                EXT_FRAME_FLAG_INBOUND_REDIRECT if inbound else EXT_FRAME_FLAG_OUTBOUND_REDIRECT,
            )
        )
        result = FilterResult.REDIRECT
    return Evaluation(result, inbound, deciding, base, cap_outcome, cap_id, tuple(copies), qos)
