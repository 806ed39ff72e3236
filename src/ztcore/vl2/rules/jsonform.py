"""The controller's JSON form of rules: the objects zerotier-one's controller stores,
serves over its API and turns into ZT_VirtualNetworkRule (``{"type": "MATCH_ETHERTYPE",
"etherType": 2048, "not": false, "or": false}``; actions carry no "not"/"or").

Parsing follows the controller's lenient conversions (numbers as strings, short
MACs, out-of-range masks). Two deliberate departures, both marked where they occur:
``ACTION_PRIORITY`` is rendered as ``{"type": "ACTION_PRIORITY", "qosBucket": n}``
(the core renders nothing for it), and ``INTEGER_RANGE`` objects parse to
MATCH_INTEGER_RANGE (the core's parser forgets to set the type and drops them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from ztcore.errors import InvalidFormatError
from ztcore.vl2.dictionary import strtoull_hex
from ztcore.vl2.mac import MAC
from ztcore.vl2.rules.formats import (
    _IPV4_TYPES,
    _IPV6_TYPES,
    _MAC_TYPES,
    _PORT_TYPES,
    _TAG_TYPES,
    _U64,
    _ZT_TYPES,
    Rule,
    RuleType,
)

__all__ = ["rule_from_json", "rule_to_json", "rules_from_json", "rules_to_json"]


def rule_to_json(rule: Rule) -> dict[str, Any]:
    """The controller's JSON object for this rule."""
    t = rule.type
    r: dict[str, Any] = {}
    if t == RuleType.ACTION_DROP:
        r["type"] = "ACTION_DROP"
    elif t == RuleType.ACTION_ACCEPT:
        r["type"] = "ACTION_ACCEPT"
    elif t in (RuleType.ACTION_TEE, RuleType.ACTION_WATCH):
        r["type"] = t.name
        r["address"] = f"{rule.fwd_address & 0xFFFFFFFFFF:010x}"
        r["flags"] = rule.fwd_flags
        r["length"] = rule.fwd_length
    elif t == RuleType.ACTION_REDIRECT:
        r["type"] = "ACTION_REDIRECT"
        r["address"] = f"{rule.fwd_address & 0xFFFFFFFFFF:010x}"
        r["flags"] = rule.fwd_flags
    elif t == RuleType.ACTION_BREAK:
        r["type"] = "ACTION_BREAK"
    elif t == RuleType.ACTION_PRIORITY:
        # ztcore extension: the core's controller has no JSON for this action.
        r["type"] = "ACTION_PRIORITY"
        r["qosBucket"] = rule.qos_bucket
    if r:
        return r
    if t in _ZT_TYPES:
        r["zt"] = f"{rule.zt:010x}"
    elif t == RuleType.MATCH_VLAN_ID:
        r["vlanId"] = rule.vlan_id
    elif t == RuleType.MATCH_VLAN_PCP:
        r["vlanPcp"] = rule.vlan_pcp
    elif t == RuleType.MATCH_VLAN_DEI:
        r["vlanDei"] = rule.vlan_dei
    elif t in _MAC_TYPES:
        r["mac"] = str(rule.mac)
    elif t in _IPV4_TYPES or t in _IPV6_TYPES:
        r["ip"] = f"{rule.ip}/{rule.mask}"
    elif t == RuleType.MATCH_IP_TOS:
        r["mask"], r["start"], r["end"] = rule.tos_mask, rule.tos_start, rule.tos_end
    elif t == RuleType.MATCH_IP_PROTOCOL:
        r["ipProtocol"] = rule.ip_protocol
    elif t == RuleType.MATCH_ETHERTYPE:
        r["etherType"] = rule.ether_type
    elif t == RuleType.MATCH_ICMP:
        r["icmpType"] = rule.icmp_type
        r["icmpCode"] = rule.icmp_code if rule.icmp_flags & 0x01 else None
    elif t in _PORT_TYPES or t == RuleType.MATCH_FRAME_SIZE_RANGE:
        r["start"], r["end"] = rule.start, rule.end
    elif t == RuleType.MATCH_CHARACTERISTICS:
        r["mask"] = f"{rule.characteristics:016x}"
    elif t == RuleType.MATCH_RANDOM:
        r["probability"] = rule.probability
    elif t in _TAG_TYPES:
        r["id"], r["value"] = rule.tag_id, rule.tag_value
    elif t == RuleType.MATCH_INTEGER_RANGE:
        r["start"] = f"{rule.int_start:016x}"
        r["end"] = f"{(rule.int_start + rule.int_end) & _U64:016x}"
        r["idx"] = rule.int_idx
        r["little"] = bool(rule.int_format & 0x80)
        r["bits"] = (rule.int_format & 63) + 1
    else:
        raise InvalidFormatError(f"rule type {int(t)} has no JSON form")
    r["type"] = "INTEGER_RANGE" if t == RuleType.MATCH_INTEGER_RANGE else t.name
    r["not"] = rule.not_
    r["or"] = rule.or_
    return r

def rule_from_json(obj: Mapping[str, Any]) -> Rule:
    """Parse a controller JSON rule with the controller's lenient conversions.

    Raises InvalidFormatError for a non-object or an unknown "type" (the
    controller skips such rules).
    """
    if not isinstance(obj, Mapping):
        raise InvalidFormatError("rule must be a JSON object")
    name = _json_string(obj.get("type"), "")
    not_ = _json_bool(obj.get("not"), False)
    or_ = _json_bool(obj.get("or"), False)
    if name in ("ACTION_DROP", "ACTION_ACCEPT", "ACTION_BREAK"):
        return Rule(RuleType[name], not_, or_)
    if name in ("ACTION_TEE", "ACTION_WATCH", "ACTION_REDIRECT"):
        return Rule(
            RuleType[name],
            not_,
            or_,
            fwd_address=_hex_u64(_json_string(obj.get("address"), "0")) & 0xFFFFFFFFFF,
            fwd_flags=_json_int(obj.get("flags"), 0) & 0xFFFFFFFF,
            fwd_length=0 if name == "ACTION_REDIRECT" else _json_int(obj.get("length"), 0) & 0xFFFF,
        )
    if name == "ACTION_PRIORITY":
        return Rule(
            RuleType.ACTION_PRIORITY, not_, or_, qos_bucket=_json_int(obj.get("qosBucket"), 0) & 0xFF
        )
    if name in ("MATCH_SOURCE_ZEROTIER_ADDRESS", "MATCH_DEST_ZEROTIER_ADDRESS"):
        zt = _hex_u64(_json_string(obj.get("zt"), "0")) & 0xFFFFFFFFFF
        return Rule(RuleType[name], not_, or_, zt=zt)
    if name == "MATCH_VLAN_ID":
        return Rule(RuleType.MATCH_VLAN_ID, not_, or_, vlan_id=_json_int(obj.get("vlanId"), 0) & 0xFFFF)
    if name == "MATCH_VLAN_PCP":
        return Rule(RuleType.MATCH_VLAN_PCP, not_, or_, vlan_pcp=_json_int(obj.get("vlanPcp"), 0) & 0xFF)
    if name == "MATCH_VLAN_DEI":
        return Rule(RuleType.MATCH_VLAN_DEI, not_, or_, vlan_dei=_json_int(obj.get("vlanDei"), 0) & 0xFF)
    if name in ("MATCH_MAC_SOURCE", "MATCH_MAC_DEST"):
        return Rule(RuleType[name], not_, or_, mac=_json_mac(_json_string(obj.get("mac"), "0")))
    if name in ("MATCH_IPV4_SOURCE", "MATCH_IPV4_DEST"):
        ip4, bits = _json_ip(_json_string(obj.get("ip"), "0.0.0.0"), 4)
        return Rule(RuleType[name], not_, or_, ip=ip4, mask=min(bits & 0xFF, 32))
    if name in ("MATCH_IPV6_SOURCE", "MATCH_IPV6_DEST"):
        ip6, bits = _json_ip(_json_string(obj.get("ip"), "::0"), 6)
        return Rule(RuleType[name], not_, or_, ip=ip6, mask=min(bits & 0xFF, 128))
    if name == "MATCH_IP_TOS":
        return Rule(
            RuleType.MATCH_IP_TOS,
            not_,
            or_,
            tos_mask=_json_int(obj.get("mask"), 0) & 0xFF,
            tos_start=_json_int(obj.get("start"), 0) & 0xFF,
            tos_end=_json_int(obj.get("end"), 0) & 0xFF,
        )
    if name == "MATCH_IP_PROTOCOL":
        return Rule(
            RuleType.MATCH_IP_PROTOCOL, not_, or_, ip_protocol=_json_int(obj.get("ipProtocol"), 0) & 0xFF
        )
    if name == "MATCH_ETHERTYPE":
        return Rule(
            RuleType.MATCH_ETHERTYPE, not_, or_, ether_type=_json_int(obj.get("etherType"), 0) & 0xFFFF
        )
    if name == "MATCH_ICMP":
        code = obj.get("icmpCode")
        return Rule(
            RuleType.MATCH_ICMP,
            not_,
            or_,
            icmp_type=_json_int(obj.get("icmpType"), 0) & 0xFF,
            icmp_code=0 if code is None else _json_int(code, 0) & 0xFF,
            icmp_flags=0 if code is None else 0x01,
        )
    if name in ("MATCH_IP_SOURCE_PORT_RANGE", "MATCH_IP_DEST_PORT_RANGE", "MATCH_FRAME_SIZE_RANGE"):
        start = _json_int(obj.get("start"), 0) & 0xFFFF
        end = _json_int(obj.get("end"), start) & 0xFFFF
        return Rule(RuleType[name], not_, or_, start=start, end=end)
    if name == "MATCH_CHARACTERISTICS":
        m = obj.get("mask")
        if m is None:
            chars = 0
        elif isinstance(m, (int, float)) and not isinstance(m, bool):
            chars = int(m) & _U64
        else:
            chars = _hex_u64(_json_string(m, "0"))
        return Rule(RuleType.MATCH_CHARACTERISTICS, not_, or_, characteristics=chars)
    if name == "MATCH_RANDOM":
        p = _json_int(obj.get("probability"), 0) & 0xFFFFFFFF
        return Rule(RuleType.MATCH_RANDOM, not_, or_, probability=p)
    if name in RuleType.__members__ and RuleType[name] in _TAG_TYPES:
        return Rule(
            RuleType[name],
            not_,
            or_,
            tag_id=_json_int(obj.get("id"), 0) & 0xFFFFFFFF,
            tag_value=_json_int(obj.get("value"), 0) & 0xFFFFFFFF,
        )
    if name in ("INTEGER_RANGE", "MATCH_INTEGER_RANGE"):
        # Departure from the core, whose parser never sets the type here.
        s, e = obj.get("start"), obj.get("end")
        start = _hex_u64(s) if isinstance(s, str) else _json_int(s, 0)
        end_abs = _hex_u64(e) if isinstance(e, str) else _json_int(e, 0)
        fmt = (0x80 if _json_bool(obj.get("little"), False) else 0) | (
            (_json_int(obj.get("bits"), 1) - 1) & 63
        )
        return Rule(
            RuleType.MATCH_INTEGER_RANGE,
            not_,
            or_,
            int_start=start & _U64,
            int_end=(end_abs - start) & 0xFFFFFFFF,
            int_idx=_json_int(obj.get("idx"), 0) & 0xFFFF,
            int_format=fmt,
        )
    raise InvalidFormatError(f"unknown rule type {name!r}")


def rules_to_json(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    return [rule_to_json(r) for r in rules]


def rules_from_json(objs: Iterable[Any], *, skip_invalid: bool = True) -> list[Rule]:
    """Parse a JSON rules array; like the controller, invalid entries are skipped
    unless ``skip_invalid`` is False."""
    out: list[Rule] = []
    for o in objs:
        try:
            out.append(rule_from_json(o))
        except InvalidFormatError:
            if not skip_invalid:
                raise
    return out


# ----------------------------------------------------------- JSON conversions
# These mirror the controller's lenient helpers (numbers, decimal strings and
# booleans are all accepted where an integer is expected).


def _json_int(v: Any, default: int) -> int:
    if isinstance(v, bool):
        return 1 if v else 0
    if isinstance(v, int):
        return v & _U64
    if isinstance(v, float):
        try:
            return int(v) & _U64
        except (OverflowError, ValueError):
            return default
    if isinstance(v, str):
        return _dec_u64(v)
    return default


def _json_bool(v: Any, default: bool) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v > 0
    if isinstance(v, str):
        return v[:1] in ("t", "T", "1")
    return default


def _json_string(v: Any, default: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return str(int(v) & _U64)
    return default


def _dec_u64(s: str) -> int:
    """C strtoull(s, NULL, 10)."""
    t = s.lstrip(" \t\n\v\f\r")
    neg = False
    if t[:1] in ("+", "-"):
        neg = t[0] == "-"
        t = t[1:]
    digits = ""
    for ch in t:
        if "0" <= ch <= "9":
            digits += ch
        else:
            break
    if not digits:
        return 0
    v = int(digits)
    if v > _U64:
        return _U64
    return (-v) & _U64 if neg else v


def _hex_u64(s: str) -> int:
    return strtoull_hex(s)


def _json_mac(s: str) -> MAC:
    """The controller's MAC parsing: drop ':' and '-', read up to 6 hex pairs
    (non-hex digits count as 0, a trailing odd digit is ignored)."""
    h = s.replace(":", "").replace("-", "")
    out = bytearray(6)
    for i in range(min(6, len(h) // 2)):
        hi, lo = h[2 * i], h[2 * i + 1]
        out[i] = (_nibble(hi) << 4) | _nibble(lo)
    return MAC(int.from_bytes(out, "big"))


def _nibble(c: str) -> int:
    try:
        return int(c, 16) if c.isascii() else 0
    except ValueError:
        return 0


def _json_ip(s: str, version: int) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """The core's InetAddress text parsing: "IP/bits"; an unparsable IP reads as zero."""
    host, _, bits_text = s.partition("/")
    bits = _dec_u64(bits_text) & 0xFFFF if bits_text else 0
    if ":" not in host and "." not in host:
        bits = 0  # the core rejects such text outright and leaves the address all-zero
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    if addr is None or addr.version != version:
        addr = ipaddress.IPv4Address(0) if version == 4 else ipaddress.IPv6Address(0)
    return addr, bits
