"""Rules back to rules-language source: the decompiler.

Owns turning the controller's JSON rules (or `Rule` objects) into text that
`ztcore.vl2.rules.compiler.compile_rules` compiles back to the same JSON:
`render_rule` for one rule or one action with its conditions (as trace output
shows a deciding rule, e.g. ``drop not chr ipauth``), `render_rules` for a
whole rule set with its tag and capability definitions.

Raw JSON values are kept when they compile back unchanged (an ``ip`` of
``10.0.0.0/8``, a tee length of -1); anything else is rendered the way the
controller reads it (`jsonform.rule_from_json`). What the language cannot say (ACTION_PRIORITY,
INTEGER_RANGE, tee/watch/redirect flags, empty ranges) raises `RuleRenderError`
from `render_rule`; `render_rules` writes such rules as ``#`` comments instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ztcore.errors import InvalidFormatError
from ztcore.vl2.rules.formats import Rule
from ztcore.vl2.rules.jsonform import rule_from_json, rule_to_json
from ztcore.vl2.rules.syntax import (
    BLOCK_OPENERS,
    CHARACTERISTIC_BITS,
    ETHERTYPE_NAMES,
    MATCH_KEYWORDS,
    RESERVED_WORDS,
    ip_family,
    is_valid_name,
)

__all__ = ["RuleRenderError", "render_rule", "render_rules"]

RuleLike = "Mapping[str, Any] | Rule"
_U32 = 0xFFFFFFFF

_KEYWORD_OF_TYPE = {t: kw for kw, (t, _) in MATCH_KEYWORDS.items()}
_KEYWORD_OF_TYPE.update(
    MATCH_IPV4_SOURCE="ipsrc", MATCH_IPV6_SOURCE="ipsrc", MATCH_IPV4_DEST="ipdest", MATCH_IPV6_DEST="ipdest"
)
_NUMBER_FIELDS = {
    "MATCH_VLAN_ID": "vlanId",
    "MATCH_VLAN_PCP": "vlanPcp",
    "MATCH_VLAN_DEI": "vlanDei",
    "MATCH_ETHERTYPE": "etherType",
    "MATCH_IP_PROTOCOL": "ipProtocol",
}
_ETHERTYPE_NAME = {v: k for k, v in ETHERTYPE_NAMES.items()}
# One name per protocol ("icmp" itself is a reserved word, so ICMP is icmp4).
_PROTOCOL_NAME = {
    1: "icmp4",
    2: "igmp",
    4: "ipip",
    6: "tcp",
    8: "egp",
    9: "igp",
    17: "udp",
    27: "rdp",
    50: "esp",
    51: "ah",
    58: "icmp6",
    115: "l2tp",
    132: "sctp",
    136: "udplite",
}
_BIT_NAME = {v: k for k, v in CHARACTERISTIC_BITS.items()}
_BITWISE_TAG_MATCHES = ("MATCH_TAGS_BITWISE_AND", "MATCH_TAGS_BITWISE_OR", "MATCH_TAGS_BITWISE_XOR")
_PLAIN_ACTIONS = {"ACTION_DROP": "drop", "ACTION_ACCEPT": "accept", "ACTION_BREAK": "break"}
_ONE_LINE = 100  # longest rule written on one line


class RuleRenderError(InvalidFormatError):
    """A rule the rules language has no way to write."""


class _NotVerbatim(Exception):
    """A raw JSON value that would not compile back unchanged (use the controller's reading)."""


# ------------------------------------------------------------------------------ names


def _usable_name(name: object) -> bool:
    return (
        isinstance(name, str) and name == name.lower() and is_valid_name(name) and name not in RESERVED_WORDS
    )


def _definable_name(name: object) -> bool:
    """An enum or flag name a tag definition can carry (reserved words too, bar block openers)."""
    return (
        isinstance(name, str) and name == name.lower() and is_valid_name(name) and name not in BLOCK_OPENERS
    )


class _Names:
    """Tag and capability definitions by name, from either the name maps or the config lists."""

    def __init__(self, tags: object, capabilities: object) -> None:
        self.tags = self._collect(tags, "tag")
        self.caps = self._collect(capabilities, "cap")

    @staticmethod
    def _collect(defs: object, prefix: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if isinstance(defs, Mapping):
            items = list(defs.items())
        elif isinstance(defs, Sequence) and not isinstance(defs, (str, bytes)):
            items = [(None, d) for d in defs]
        else:
            items = []
        for name, d in items:
            if not isinstance(d, Mapping) or not _uint(d.get("id"), _U32):
                continue
            if not _usable_name(name) or name in out:
                name = f"{prefix}_{d['id']}"
                n = 2
                while name in out:
                    name, n = f"{prefix}_{d['id']}_{n}", n + 1
            out[str(name)] = dict(d)
        return out

    def tag_words(self, tag_id: int, value: int, bitwise: bool) -> tuple[str, str]:
        for name, tag in self.tags.items():
            if tag["id"] != tag_id:
                continue
            flags = _name_map(tag.get("flags"))
            enums = _name_map(tag.get("enums"))
            # The compiler looks a value up among the flags first, then the enums.
            by_flag = [n for n, v in flags.items() if v == value]
            by_enum = [n for n, v in enums.items() if v == value and flags.get(n, value) == value]
            for choice in (by_flag + by_enum) if bitwise else (by_enum + by_flag):
                if _usable_name(choice) and not choice.startswith("$"):
                    return name, choice
            return name, str(value)
        return str(tag_id), str(value)


def _name_map(m: object) -> dict[str, int]:
    if not isinstance(m, Mapping):
        return {}
    return {k: v for k, v in m.items() if isinstance(k, str) and _uint(v, _U32)}


def _uint(v: object, top: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top


# ------------------------------------------------------------------------------ single rules


def _as_json(rule: RuleLike) -> dict[str, Any]:
    if isinstance(rule, Rule):
        try:
            return rule_to_json(rule)
        except InvalidFormatError as e:
            raise RuleRenderError(str(e)) from e
    if isinstance(rule, Mapping):
        return dict(rule)
    raise RuleRenderError(f"not a rule: {rule!r}")


def _canonical(r: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return rule_to_json(rule_from_json(r))
    except InvalidFormatError as e:
        raise RuleRenderError(str(e)) from e


def _verbatim_word(v: object) -> str:
    """A raw string that the compiler would take back as one word."""
    if (
        not isinstance(v, str)
        or not v
        or any(c in " \t\r\n" for c in v)
        or v.endswith(";")
        or v[0] in "#$"
        or v in RESERVED_WORDS
    ):
        raise _NotVerbatim
    return v


def _num(r: Mapping[str, Any], key: str, top: int, bottom: int = 0) -> int:
    v = r.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not bottom <= v <= top:
        raise _NotVerbatim
    return v


def _range_word(lo: int, hi: int, what: str) -> str:
    if lo > hi:
        raise RuleRenderError(f"{what} range {lo}-{hi} is empty and cannot be written")
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _probability_word(p: int) -> str:
    """The shortest decimal that the compiler turns back into probability `p`."""
    for digits in range(1, 18):
        text = f"{p / 4294967295:.{digits}g}"
        if math.floor(4294967295 * float(text)) == p:
            return text
    x = p / 4294967295
    while math.floor(4294967295 * x) < p:
        x = math.nextafter(x, 2.0)
    while math.floor(4294967295 * x) > p:
        x = math.nextafter(x, -1.0)
    return repr(x)


def _characteristics_word(mask: int) -> str:
    bits = [b for b in range(63, -1, -1) if mask >> b & 1]
    return ",".join(_BIT_NAME.get(b, str(b)) for b in bits) or ","


def _match_argument(r: Mapping[str, Any], names: _Names) -> list[str]:
    """The words after the match keyword, from the raw JSON; _NotVerbatim if a value is odd."""
    t = r["type"]
    if t in ("MATCH_SOURCE_ZEROTIER_ADDRESS", "MATCH_DEST_ZEROTIER_ADDRESS"):
        zt = _verbatim_word(r.get("zt"))
        if len(zt) != 10 or any(c not in "0123456789abcdef" for c in zt):
            raise _NotVerbatim
        return [zt]
    if t in _NUMBER_FIELDS:
        n = _num(r, _NUMBER_FIELDS[t], _U32)
        if t == "MATCH_ETHERTYPE":
            return [_ETHERTYPE_NAME.get(n, f"0x{n:04x}")]
        return [_PROTOCOL_NAME.get(n, str(n)) if t == "MATCH_IP_PROTOCOL" else str(n)]
    if t in ("MATCH_MAC_SOURCE", "MATCH_MAC_DEST"):
        mac = _verbatim_word(r.get("mac"))
        if len(mac) != 17 or any(c not in "0123456789abcdef:" for c in mac) or mac[2::3] != ":" * 5:
            raise _NotVerbatim
        return [mac]
    if t in ("MATCH_IPV4_SOURCE", "MATCH_IPV4_DEST", "MATCH_IPV6_SOURCE", "MATCH_IPV6_DEST"):
        ip = _verbatim_word(r.get("ip"))
        slash = ip.find("/")
        if slash <= 0 or ip_family(ip[:slash]) != (6 if "IPV6" in t else 4):
            raise _NotVerbatim
        return [ip]
    if t == "MATCH_IP_TOS":
        mask = _num(r, "mask", 0xFF)
        return [f"0x{mask:02x}", _range_word(_num(r, "start", 0xFF), _num(r, "end", 0xFF), "iptos")]
    if t == "MATCH_ICMP":
        code = r.get("icmpCode")
        if code is not None and not _uint(code, 0xFF):
            raise _NotVerbatim
        return [str(_num(r, "icmpType", 0xFF)), "-1" if code is None else str(code)]
    if t in ("MATCH_IP_SOURCE_PORT_RANGE", "MATCH_IP_DEST_PORT_RANGE", "MATCH_FRAME_SIZE_RANGE"):
        return [_range_word(_num(r, "start", 0xFFFF), _num(r, "end", 0xFFFF), _KEYWORD_OF_TYPE[t])]
    if t == "MATCH_CHARACTERISTICS":
        m = r.get("mask")
        if not isinstance(m, str) or len(m) != 16 or any(c not in "0123456789abcdef" for c in m):
            raise _NotVerbatim
        return [_characteristics_word(int(m, 16))]
    if t == "MATCH_RANDOM":
        return [_probability_word(_num(r, "probability", _U32))]
    # tag matches
    tag_id, value = _num(r, "id", _U32), _num(r, "value", _U32)
    return list(names.tag_words(tag_id, value, t in _BITWISE_TAG_MATCHES))


def _match_words(rule: Mapping[str, Any], names: _Names) -> list[str]:
    t = rule.get("type")
    if t not in _KEYWORD_OF_TYPE:
        raise RuleRenderError(f"the rules language has no match for {str(t)[:40]!r}")
    r = rule
    try:
        if not isinstance(r.get("not"), bool) or not isinstance(r.get("or"), bool):
            raise _NotVerbatim
        args = _match_argument(r, names)
    except _NotVerbatim:
        r = _canonical(rule)
        try:
            args = _match_argument(r, names)
        except _NotVerbatim as e:  # the canonical form is always well-typed
            raise RuleRenderError(f"cannot write {json.dumps(rule)[:120]}") from e
    words = (["or"] if r["or"] else []) + (["not"] if r["not"] else [])
    return [*words, _KEYWORD_OF_TYPE[r["type"]], *args]


def _action_words(rule: Mapping[str, Any]) -> list[str]:
    t = rule.get("type")
    if t in _PLAIN_ACTIONS:
        return [_PLAIN_ACTIONS[t]]
    if t not in ("ACTION_TEE", "ACTION_WATCH", "ACTION_REDIRECT"):
        raise RuleRenderError(f"the rules language has no action {str(t)[:40]!r}")
    r: Mapping[str, Any] = rule
    for attempt in range(2):
        try:
            if r.get("flags", 0) != 0:
                raise RuleRenderError(f"{t} flags cannot be written in the rules language")
            address = _verbatim_word(r.get("address"))
            if len(address) != 10:
                raise _NotVerbatim
            if t == "ACTION_REDIRECT":
                return ["redirect", address]
            return ["tee" if t == "ACTION_TEE" else "watch", str(_num(r, "length", 0xFFFF, -1)), address]
        except _NotVerbatim as e:
            if attempt:
                raise RuleRenderError(f"cannot write {json.dumps(rule)[:120]}") from e
            r = _canonical(rule)
    raise AssertionError("unreachable")


def _joined(matches: list[str]) -> list[str]:
    """Conditions joined as the docs write them: 'and' (a no-op) unless 'or' leads."""
    return [m if i == 0 or m.startswith("or ") else f"and {m}" for i, m in enumerate(matches)]


def _is_action(rule: Mapping[str, Any]) -> bool:
    t = rule.get("type")
    return isinstance(t, str) and t.startswith("ACTION_")


def render_rule(rule: RuleLike | Sequence[RuleLike], *, tags: object = None) -> str:
    """One rule as source: a match (``not chr ipauth``), an action (``drop``), or a
    sequence of matches ending in their action (``drop not chr ipauth``).

    `tags` (``tagsByName`` or the network's tag list) lets tag matches use names.
    Raises `RuleRenderError` for what the language cannot write.
    """
    names = _Names(tags if isinstance(tags, Mapping) else None, None)  # nameless lists add nothing here
    if isinstance(rule, (Rule, Mapping)):
        r = _as_json(rule)
        return " ".join(_action_words(r) if _is_action(r) else _match_words(r, names))
    if not isinstance(rule, Sequence) or isinstance(rule, (str, bytes)):
        raise RuleRenderError(f"not a rule: {rule!r}"[:120])
    group = [_as_json(x) for x in rule]
    if not group:
        return ""
    *conds, last = group
    if not _is_action(last):
        return " ".join(_joined([" ".join(_match_words(c, names)) for c in group]))
    return " ".join([*_action_words(last), *_joined([" ".join(_match_words(c, names)) for c in conds])])


# ------------------------------------------------------------------------------ rule sets


def _groups(rules: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    out: list[list[Mapping[str, Any]]] = [[]]
    for r in rules:
        out[-1].append(r)
        if _is_action(r):
            out.append([])
    return out if out[-1] else out[:-1]


def _comment(lines: list[str], indent: str, why: str, group: Sequence[Mapping[str, Any]]) -> None:
    lines.append(f"{indent}# {why}:")
    lines.extend(f"{indent}#   {json.dumps(r, separators=(',', ':'))}" for r in group)


def _render_block(rules: Sequence[RuleLike], names: _Names, indent: str, lines: list[str]) -> None:
    groups = _groups([_as_json(r) for r in rules])
    for i, group in enumerate(groups):
        *conds, last = group
        if not _is_action(last):
            _comment(
                lines, indent, "conditions without an action (the rules engine never acts on them)", group
            )
            continue
        try:
            head = " ".join(_action_words(last))
            matches = _joined([" ".join(_match_words(c, names)) for c in conds])
        except RuleRenderError as e:
            _comment(lines, indent, f"not expressible in the rules language ({e})", group)
            continue
        if not matches:
            # A bare action word opens a block that swallows what follows, unless it ends the file
            # or the capability; elsewhere a no-op 'and' gives it something to close.
            lines.append(
                f"{indent}{head}{'' if head.startswith(('tee', 'watch', 'redirect')) or i == len(groups) - 1 else ' and'};"
            )
        elif len(indent) + len(head) + sum(len(m) + 1 for m in matches) < _ONE_LINE:
            lines.append(f"{indent}{head} {' '.join(matches)};")
        else:
            lines.append(f"{indent}{head}")
            lines.extend(f"{indent}\t{m}" for m in matches)
            lines.append(f"{indent};")


def _tag_lines(name: str, tag: Mapping[str, Any]) -> list[str]:
    lines = [f"tag {name}", f"\tid {tag['id']}"]
    enums = _name_map(tag.get("enums"))
    flags = _name_map(tag.get("flags"))
    dfl = tag.get("default")
    if _uint(dfl, _U32):
        # The compiler looks a default up among the enums first, then the flags.
        by_enum = [n for n, v in enums.items() if v == dfl and _definable_name(n)]
        by_flag = [n for n, v in flags.items() if v == dfl and n not in enums and _definable_name(n)]
        lines.append(f"\tdefault {(by_enum + by_flag + [str(dfl)])[0]}")
    for n, v in enums.items():
        if _definable_name(n):
            lines.append(f"\tenum {v} {n}")
        else:
            lines.append(f"\t# enum {n!r} ({v}) cannot be written: not a usable name")
    for n, v in flags.items():
        bits = [str(b) for b in range(32) if v >> b & 1]
        if _definable_name(n) and bits:
            lines.append(f"\tflag {','.join(bits)} {n}")
        else:
            lines.append(f"\t# flag {n!r} ({v}) cannot be written")
    lines.append(";")
    return lines


def render_statement(rules: Sequence[Rule], index: int, *, tags: object = None) -> str:
    """The statement that the action at `index` ends, as source: the matches after the
    previous action, then the action (``drop not chr ipauth``) — how a deciding rule
    from a rule log or an evaluation reads. Raises `RuleRenderError` for what the
    language cannot write, and IndexError for an index outside `rules`."""
    if not 0 <= index < len(rules):
        raise IndexError(f"rule {index} of {len(rules)}")
    start = index
    while start > 0 and not rules[start - 1].is_action:
        start -= 1
    return render_rule(list(rules[start : index + 1]), tags=tags)


def render_rules(rules: Sequence[RuleLike], *, capabilities: object = None, tags: object = None) -> str:
    """A whole rule set as source: tag definitions, capabilities, then the base rules.

    `capabilities` and `tags` take the compiler's name maps (``name -> {"id", ...}``,
    as `CompiledRules.capabilities` / ``tagsByName``) or the network's config lists
    (nameless entries get names like ``cap_1000``).
    """
    names = _Names(tags, capabilities)
    lines: list[str] = []
    for name, tag in names.tags.items():
        lines.extend(_tag_lines(name, tag))
        lines.append("")
    for name, cap in names.caps.items():
        lines.append(f"cap {name}")
        lines.append(f"\tid {cap['id']}")
        if cap.get("default") is True:
            lines.append("\tdefault")
        cap_rules = cap.get("rules")
        _render_block(cap_rules if isinstance(cap_rules, Sequence) else [], names, "\t", lines)
        lines.append(";")
        lines.append("")
    _render_block(rules, names, "", lines)
    return "\n".join(lines) + "\n"
