"""Validation of the controller API's JSON values: `ApiError`, the per-field validators
(each raises ApiError 400 naming the field) and the rules array, each rule type's fields
checked and rendered the way zerotier-one renders them.

Shared by the records model (`ztcore.controller.model`) and the rules-source compiler
glue (`ztcore.controller.rules_source`), which sit above it.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from ztcore.errors import ZTError

__all__ = ["MAX_ARRAY_SIZE", "RULE_TYPES", "ApiError", "format_address", "normalize_rule", "normalize_rules"]

# Cap on every array in a record (ZT_CONTROLLER_MAX_ARRAY_SIZE).
MAX_ARRAY_SIZE = 16384

_U8 = 0xFF
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_HEX = frozenset("0123456789abcdefABCDEF")


class ApiError(ZTError):
    """A request the controller API refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


# --------------------------------------------------------------------------------------------
# Field validators (each raises ApiError 400 naming the field)


def format_address(address: int) -> str:
    return f"{address:010x}"


def _bad(field: str, why: str) -> ApiError:
    return ApiError(400, f"{field}: {why}")


def _as_bool(v: object, field: str) -> bool:
    if isinstance(v, bool):
        return v
    # Numbers and "true"/"1" strings are what zerotier-one's jsonBool also accepts.
    if isinstance(v, int):
        return v > 0
    if isinstance(v, str) and v.strip().lower() in ("true", "1", "false", "0"):
        return v.strip().lower() in ("true", "1")
    raise _bad(field, f"expected a boolean, got {type(v).__name__}")


def _as_uint(v: object, field: str, maximum: int = _U64, minimum: int = 0) -> int:
    if isinstance(v, bool) or v is None:
        raise _bad(field, f"expected an integer, got {type(v).__name__ if v is not None else 'null'}")
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not math.isfinite(v) or v != int(v):
            raise _bad(field, "expected an integer")
        n = int(v)
    elif isinstance(v, str) and v.strip().isdigit():
        n = int(v.strip())
    else:
        raise _bad(field, f"expected an integer, got {type(v).__name__}")
    if not minimum <= n <= maximum:
        raise _bad(field, f"{n} is outside {minimum}..{maximum}")
    return n


def _as_str(v: object, field: str, max_len: int = 65536) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        raise _bad(field, "expected a string, got bool")
    if isinstance(v, int | float):
        v = str(v)
    if not isinstance(v, str):
        raise _bad(field, f"expected a string, got {type(v).__name__}")
    if len(v) > max_len:
        raise _bad(field, f"longer than {max_len} characters")
    return v


def _as_list(v: object, field: str) -> list[Any]:
    if not isinstance(v, list):
        raise _bad(field, f"expected an array, got {type(v).__name__ if v is not None else 'null'}")
    if len(v) > MAX_ARRAY_SIZE:
        raise _bad(field, f"more than {MAX_ARRAY_SIZE} entries")
    return v


def _as_ip(v: object, field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address; a trailing "/bits" (as InetAddress text carries) is accepted and dropped."""
    if not isinstance(v, str):
        raise _bad(field, f"expected an IP address string, got {type(v).__name__}")
    text = v.strip().split("/", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError as e:
        raise _bad(field, f"{v[:60]!r} is not an IP address") from e


def _as_cidr(v: object, field: str, family: int | None = None, default_bits: bool = False) -> str:
    """``ip/bits`` with host bits kept (as zerotier-one keeps them), normalized text."""
    if not isinstance(v, str):
        raise _bad(field, f"expected an 'ip/bits' string, got {type(v).__name__}")
    text = v.strip()
    if "/" not in text:
        if not default_bits:
            raise _bad(field, f"{v[:60]!r} needs a '/bits' netmask")
        ip = _as_ip(text, field)
        bits = ip.max_prefixlen
    else:
        ip_text, bits_text = text.split("/", 1)
        ip = _as_ip(ip_text, field)
        if not bits_text.isdigit() or int(bits_text) > ip.max_prefixlen:
            raise _bad(field, f"{v[:60]!r} has an invalid netmask")
        bits = int(bits_text)
    if family is not None and ip.version != family:
        raise _bad(field, f"{v[:60]!r} is not an IPv{family} address")
    return f"{ip}/{bits}"


def _as_zt_address(v: object, field: str) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFFFFFFFF:
        return format_address(v)
    if isinstance(v, str) and 0 < len(v) <= 10 and _HEX.issuperset(v):
        return format_address(int(v, 16))
    raise _bad(field, "expected a ZeroTier address (10 hex digits)")


def _as_trace_target(v: object, field: str) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, str) and len(v) == 10 and _HEX.issuperset(v):
        return v.lower()
    raise _bad(field, "expected a ZeroTier address (10 hex digits) or null")


def _as_mac(v: object, field: str) -> str:
    if not isinstance(v, str):
        raise _bad(field, "expected a MAC address string")
    digits = "".join(c for c in v if c not in ":-. ")
    if len(digits) != 12 or not _HEX.issuperset(digits):
        raise _bad(field, f"{v[:40]!r} is not a MAC address")
    d = digits.lower()
    return ":".join(d[i : i + 2] for i in range(0, 12, 2))


def _as_hex64(v: object, field: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        if 0 <= v <= _U64:
            return v
    elif isinstance(v, str):
        s = v[2:] if v[:2].lower() == "0x" else v
        if 0 < len(s) <= 16 and _HEX.issuperset(s):
            return int(s, 16)
    raise _bad(field, "expected a 64-bit value (number or up to 16 hex digits)")


# --------------------------------------------------------------------------------------------
# Rules: each type's fields, validated and rendered the way zerotier-one renders them


_ACTIONS_PLAIN = ("ACTION_DROP", "ACTION_ACCEPT", "ACTION_BREAK")
_TAG_MATCHES = (
    "MATCH_TAGS_DIFFERENCE",
    "MATCH_TAGS_BITWISE_AND",
    "MATCH_TAGS_BITWISE_OR",
    "MATCH_TAGS_BITWISE_XOR",
    "MATCH_TAGS_EQUAL",
    "MATCH_TAG_SENDER",
    "MATCH_TAG_RECEIVER",
)
RULE_TYPES = frozenset(
    (
        *_ACTIONS_PLAIN,
        "ACTION_TEE",
        "ACTION_WATCH",
        "ACTION_REDIRECT",
        "ACTION_PRIORITY",
        "MATCH_SOURCE_ZEROTIER_ADDRESS",
        "MATCH_DEST_ZEROTIER_ADDRESS",
        "MATCH_VLAN_ID",
        "MATCH_VLAN_PCP",
        "MATCH_VLAN_DEI",
        "MATCH_MAC_SOURCE",
        "MATCH_MAC_DEST",
        "MATCH_IPV4_SOURCE",
        "MATCH_IPV4_DEST",
        "MATCH_IPV6_SOURCE",
        "MATCH_IPV6_DEST",
        "MATCH_IP_TOS",
        "MATCH_IP_PROTOCOL",
        "MATCH_ETHERTYPE",
        "MATCH_ICMP",
        "MATCH_IP_SOURCE_PORT_RANGE",
        "MATCH_IP_DEST_PORT_RANGE",
        "MATCH_CHARACTERISTICS",
        "MATCH_FRAME_SIZE_RANGE",
        "MATCH_RANDOM",
        *_TAG_MATCHES,
        "INTEGER_RANGE",
    )
)


def normalize_rule(rule: object, field: str = "rules[]") -> dict[str, Any]:
    """Validate one rule object and render it in zerotier-one's canonical JSON form.

    Matches always carry ``not``/``or``; actions only if given (zerotier-one omits them). Missing numeric fields
    default to 0 as in the real controller; wrong types or out-of-range values are a 400.
    """
    if not isinstance(rule, dict):
        raise _bad(field, "each rule must be an object")
    t = rule.get("type")
    if not isinstance(t, str) or t not in RULE_TYPES:
        raise _bad(field, f"unknown rule type {str(t)[:40]!r}")
    f = f"{field}.{t}"

    def num(key: str, maximum: int, default: int = 0) -> int:
        v = rule.get(key)
        return default if v is None else _as_uint(v, f"{f}.{key}", maximum)

    r: dict[str, Any] = {"type": t}
    if t.startswith("ACTION_"):
        if t in ("ACTION_TEE", "ACTION_WATCH", "ACTION_REDIRECT"):
            r["address"] = _as_zt_address(rule.get("address", "0"), f"{f}.address")
            r["flags"] = num("flags", _U32)
            if t != "ACTION_REDIRECT":
                r["length"] = num("length", _U16)
        elif t == "ACTION_PRIORITY":
            # Not in zerotier-one's controller JSON; ztcore.vl2.rules carries it as qosBucket.
            r["qosBucket"] = num("qosBucket", _U8)
        # zerotier-one renders actions without not/or, but its own default rule has them:
        # keep them when given so that both forms round-trip unchanged.
        for k in ("not", "or"):
            if k in rule:
                r[k] = _as_bool(rule[k], f"{f}.{k}")
        return r

    if t in ("MATCH_SOURCE_ZEROTIER_ADDRESS", "MATCH_DEST_ZEROTIER_ADDRESS"):
        r["zt"] = _as_zt_address(rule.get("zt", "0"), f"{f}.zt")
    elif t == "MATCH_VLAN_ID":
        r["vlanId"] = num("vlanId", _U16)
    elif t == "MATCH_VLAN_PCP":
        r["vlanPcp"] = num("vlanPcp", _U8)
    elif t == "MATCH_VLAN_DEI":
        r["vlanDei"] = num("vlanDei", _U8)
    elif t in ("MATCH_MAC_SOURCE", "MATCH_MAC_DEST"):
        r["mac"] = _as_mac(rule.get("mac"), f"{f}.mac")
    elif t in ("MATCH_IPV4_SOURCE", "MATCH_IPV4_DEST"):
        r["ip"] = _as_cidr(rule.get("ip"), f"{f}.ip", family=4, default_bits=True)
    elif t in ("MATCH_IPV6_SOURCE", "MATCH_IPV6_DEST"):
        r["ip"] = _as_cidr(rule.get("ip"), f"{f}.ip", family=6, default_bits=True)
    elif t == "MATCH_IP_TOS":
        r["mask"] = num("mask", _U8)
        r["start"] = num("start", _U8)
        r["end"] = num("end", _U8)
    elif t == "MATCH_IP_PROTOCOL":
        r["ipProtocol"] = num("ipProtocol", _U8)
    elif t == "MATCH_ETHERTYPE":
        r["etherType"] = num("etherType", _U16)
    elif t == "MATCH_ICMP":
        r["icmpType"] = num("icmpType", _U8)
        code = rule.get("icmpCode")
        r["icmpCode"] = None if code is None else _as_uint(code, f"{f}.icmpCode", _U8)
    elif t in ("MATCH_IP_SOURCE_PORT_RANGE", "MATCH_IP_DEST_PORT_RANGE", "MATCH_FRAME_SIZE_RANGE"):
        r["start"] = num("start", _U16)
        r["end"] = num("end", _U16, default=r["start"])
    elif t == "MATCH_CHARACTERISTICS":
        r["mask"] = f"{_as_hex64(rule.get('mask', 0), f + '.mask'):016x}"
    elif t == "MATCH_RANDOM":
        r["probability"] = num("probability", _U32)
    elif t in _TAG_MATCHES:
        r["id"] = num("id", _U32)
        r["value"] = num("value", _U32)
    elif t == "INTEGER_RANGE":
        start = _as_hex64(rule.get("start", 0), f"{f}.start")
        end = _as_hex64(rule.get("end", start), f"{f}.end")
        if not 0 <= end - start <= _U32:
            raise _bad(f, "end must be >= start and within 2^32 of it")
        r["start"] = f"{start:016x}"
        r["end"] = f"{end:016x}"
        r["idx"] = num("idx", _U16)
        r["little"] = _as_bool(rule.get("little", False), f"{f}.little")
        r["bits"] = num("bits", 64, default=1)
        if r["bits"] < 1:
            raise _bad(f"{f}.bits", "must be 1..64")
    r["not"] = _as_bool(rule.get("not", False), f"{f}.not")
    r["or"] = _as_bool(rule.get("or", False), f"{f}.or")
    return r


def normalize_rules(rules: object, field: str = "rules") -> list[dict[str, Any]]:
    """A rules array, each entry normalized by `normalize_rule`."""
    return [normalize_rule(r, f"{field}[{i}]") for i, r in enumerate(_as_list(rules, field))]
