"""The rules language: ZeroTier's rule scripts compiled to the controller's JSON.

Owns the compiler for the language of ZeroTierOne's ``rule-compiler/rule-compiler.js``
(the one ZeroTier Central and the self-hosted UIs ship): ``#`` comments,
``drop`` / ``accept`` / ``break`` / ``tee`` / ``watch`` / ``redirect`` with their
match conditions, ``not`` / ``or`` / ``and``, ``macro`` and ``include``, and the
``tag`` and ``cap`` definitions. The result is what that compiler's CLI prints:
``{"config": {"rules", "capabilities", "tags"}, "capabilitiesByName", "tagsByName"}``.

The output is the JS compiler's, rule for rule and key for key, with these
deliberate departures (each marked where it occurs):

* 32-bit sign bugs: the JS builds characteristic masks, tag flag masks and tag
  defaults with signed 32-bit arithmetic, so bit 31 (and bit 63 of ``chr``)
  comes out negative or corrupts the other bits (``chr inbound,ipauth`` gives
  ``7000000000000000``). ztcore computes the unsigned values the rules engine
  means; ``compile_rules(..., js_int32_bugs=True)`` reproduces the JS exactly.
* What makes the JS throw (a nested block where a tag keyword belongs, a macro
  that includes itself) is a `RulesCompileError` at that place, not
  "Unexpected exception" at line 0.
* ``include NAME`` expands macro NAME, as in the JS; when the source defines no
  such macro and the caller gave a ``resolver``, ``resolver(NAME)`` may return
  the text of a rules fragment (actions and includes only) to expand instead.
  The compiler itself never reads files.
* Positions are 1-based lines and columns. (The JS counts columns from 0 on the
  first line and from 1 after it, and counts a CR-LF after a comment twice.)

Errors are `RulesCompileError` with ``line``, ``column`` and a message. The words,
blocks and vocabulary come from `ztcore.vl2.rules.syntax`; this module gives them
meaning (definitions, then rules).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ztcore.vl2.rules.syntax import (
    BLOCK_OPENERS,
    CHARACTERISTIC_BITS,
    ETHERTYPE_NAMES,
    IP_PROTOCOL_NAMES,
    MATCH_KEYWORDS,
    RESERVED_WORDS,
    Block,
    Item,
    RulesCompileError,
    Word,
    clean_hex,
    clean_mac,
    error_at,
    first_word,
    ip_family,
    is_valid_name,
    js_float,
    js_parse_int,
    parse_number,
    split_blocks,
    to_int32,
    to_uint32,
    word_text,
)

__all__ = [
    "BLOCK_OPENERS",
    "CHARACTERISTIC_BITS",
    "ETHERTYPE_NAMES",
    "IP_PROTOCOL_NAMES",
    "MATCH_KEYWORDS",
    "MAX_COMPILED_RULES",
    "RESERVED_WORDS",
    "CompiledRules",
    "IncludeResolver",
    "RulesCompileError",
    "compile_rules",
    "ip_family",
    "is_valid_name",
    "parse_number",
]

_U32 = 0xFFFFFFFF
_ACTION_TYPES = {"drop": "ACTION_DROP", "accept": "ACTION_ACCEPT", "break": "ACTION_BREAK"}
_FORWARD_TYPES = {"tee": "ACTION_TEE", "watch": "ACTION_WATCH", "redirect": "ACTION_REDIRECT"}

_ACTION_WORDS = ("drop", "accept", "break", "tee", "watch", "redirect", "include", "macro", "tag", "cap")

IncludeResolver = Callable[[str], "str | None"]


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=2, cutoff=0.7)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


@dataclass
class CompiledRules:
    """A compiled script: base rules, capabilities and tags by name (in definition order)."""

    rules: list[dict[str, Any]]
    capabilities: dict[str, dict[str, Any]]  # name -> {"id", "default", "rules"}
    tags: dict[str, dict[str, Any]]  # name -> {"id", "default", "enums", "flags"}
    warnings: list[str] = field(default_factory=list)

    @property
    def capabilities_by_name(self) -> dict[str, int]:
        return {name: c["id"] for name, c in self.capabilities.items()}

    def config(self) -> dict[str, Any]:
        """The network fields: ``rules``, ``capabilities`` and ``tags`` as the controller takes them."""
        return {
            "rules": self.rules,
            "capabilities": list(self.capabilities.values()),
            "tags": [{"id": t["id"], "default": t["default"]} for t in self.tags.values()],
        }

    def to_json(self) -> dict[str, Any]:
        """What ``node cli.js SCRIPT`` prints for this script."""
        return {
            "config": self.config(),
            "capabilitiesByName": self.capabilities_by_name,
            "tagsByName": self.tags,
        }


# ----------------------------------------------------------------------------------- compiler


@dataclass
class _Macro:
    params: dict[str, int]
    body: list[Item]


_MAX_INCLUDE_DEPTH = 64
# Macros including macros can multiply a short script into billions of rules; a real
# network holds at most 1024 (ZT_MAX_NETWORK_RULES), so stop long before memory runs out.
MAX_COMPILED_RULES = 1 << 16


class _Compiler:
    def __init__(self, resolver: IncludeResolver | None, js_int32_bugs: bool) -> None:
        self.resolver = resolver
        self.js = js_int32_bugs
        self.macros: dict[str, _Macro] = {}
        self.fragments: dict[str, _Macro] = {}
        self.tags: dict[str, dict[str, Any]] = {}
        self.caps: dict[str, dict[str, Any]] = {}
        self.expanding: list[str] = []
        self.warnings: list[str] = []

    # ---- pass 2: definitions

    def define(self, top: Block) -> list[Item]:
        base: list[Item] = []
        i = 0
        while i < len(top):
            item = top[i]
            kw = item.text.lower() if isinstance(item, Word) else None
            if kw in ("macro", "tag", "cap"):
                body = top[i + 1] if i + 1 < len(top) else None
                if not isinstance(body, Block):
                    raise error_at(item, f"'{kw}' must be followed by a name and a definition ending in ';'")
                i += 1
                if kw == "macro":
                    self.define_macro(body)
                elif kw == "tag":
                    self.define_tag(body)
                else:
                    self.define_cap(body)
            else:
                base.append(item)
            i += 1
        return base

    def _name(self, head: Word, what: str, taken: Mapping[str, Any], name: str) -> None:
        if not is_valid_name(name):
            raise error_at(
                head, f"invalid {what} name {name!r} (letters, digits and '_', not starting with a digit)"
            )
        if name in RESERVED_WORDS:
            raise error_at(head, f"{what} name {name!r} is a reserved word")
        if name in taken:
            raise error_at(head, f"{what} {name!r} is defined twice")

    def define_macro(self, body: Block) -> None:
        head = first_word(body)
        name = head.text.lower()
        params: dict[str, int] = {}
        paren = name.find("(")
        if paren > 0:
            for idx, p in enumerate(re.split(r"[,)]+", name[paren + 1 :])):
                if p:
                    params[p] = idx
            name = name[:paren]
        self._name(head, "macro", self.macros, name)
        self.macros[name] = _Macro(params, list(body[1:]))

    def define_tag(self, body: Block) -> None:
        head = first_word(body)
        name = head.text.lower()
        self._name(head, "tag", self.tags, name)
        flags: dict[str, int] = {}
        enums: dict[str, int] = {}
        tag_id = -1
        default: str | None = None
        k = 1
        while k < len(body):
            item = body[k]
            if isinstance(item, Block):  # the JS throws here
                raise error_at(
                    item, f"unexpected {first_word(item).text!r} inside the definition of tag {name!r}"
                )
            kw = item.text.lower()
            if kw in ("id", "default") and k + 1 >= len(body):
                raise error_at(item, f"'{kw}' needs a value")
            if kw in ("enum", "flag") and k + 2 >= len(body):
                raise error_at(item, f"'{kw}' needs a value and a name")
            if kw == "id":
                if tag_id >= 0:
                    raise error_at(item, f"tag {name!r} has two ids")
                k += 1
                tag_id = parse_number(word_text(body[k]))
                if not 0 <= tag_id <= _U32:
                    raise error_at(body[k], "tag id must be a number from 0 to 4294967295")
            elif kw == "default":
                if default is not None:
                    raise error_at(item, f"tag {name!r} has two defaults")
                k += 1
                value = word_text(body[k])
                if value is None:  # the JS keeps the block itself as the default
                    raise error_at(body[k], "tag default must be a number or an enum or flag name")
                default = value
            elif kw == "flag":
                k += 1
                bits = body[k]
                if not isinstance(bits, Word):
                    raise error_at(bits, "flag needs bit numbers or flag names, comma-separated")
                mask = 0
                for b in re.split(r",+", bits.text):
                    b = b.lower()
                    if b in flags:
                        bit_mask = flags[b]
                    else:
                        n = parse_number(b)
                        if not 0 <= n <= 31:
                            raise error_at(
                                bits,
                                f"flag bit {b!r} is neither a bit number 0..31 nor a flag defined before",
                            )
                        bit_mask = 1 << n
                    # Departure: the JS ORs in signed 32 bits, making bit 31 negative.
                    mask = to_int32(mask | (bit_mask & _U32)) if self.js else mask | bit_mask
                k += 1
                fname = self._member_name(body[k], "flag", flags)
                flags[fname] = mask
            elif kw == "enum":
                k += 1
                value = parse_number(word_text(body[k]))
                if not 0 <= value <= _U32:
                    raise error_at(body[k], "enum value must be a number from 0 to 4294967295")
                k += 1
                ename = self._member_name(body[k], "enum", enums)
                enums[ename] = value
            else:
                raise error_at(
                    item, f"unknown word {item.text!r} in tag definition (expected id, default, enum or flag)"
                )
            k += 1
        if tag_id < 0:
            raise error_at(head, f"tag {name!r} needs an id")
        dfl: int | None = None
        if default is not None:
            if default in enums:
                dfl = enums[default]
            elif default in flags:
                dfl = flags[default]
            else:
                n = abs(js_parse_int(default, None) or 0)
                # Departure: the JS masks with signed 32 bits.
                dfl = to_int32(n) if self.js else to_uint32(n)
        self.tags[name] = {"id": tag_id, "default": dfl, "enums": enums, "flags": flags}

    @staticmethod
    def _member_name(item: Item, what: str, taken: Mapping[str, int]) -> str:
        if not isinstance(item, Word):
            raise error_at(item, f"{what} needs a name")
        name = item.text.lower()
        if not is_valid_name(name):
            raise error_at(item, f"invalid {what} name {name!r}")
        if name in taken:
            raise error_at(item, f"{what} {name!r} is defined twice in this tag")
        return name

    def define_cap(self, body: Block) -> None:
        head = first_word(body)
        name = head.text.lower()
        self._name(head, "capability", self.caps, name)
        items: list[Item] = []
        cap_id = -1
        default = False
        k = 1
        while k < len(body):
            item = body[k]
            kw = item.text.lower() if isinstance(item, Word) else None
            if kw == "id":
                if cap_id >= 0:
                    raise error_at(item, f"capability {name!r} has two ids")
                if k + 1 >= len(body):
                    raise error_at(item, "'id' needs a value")
                k += 1
                cap_id = parse_number(word_text(body[k]))
                if not 0 <= cap_id <= _U32:
                    raise error_at(item, "capability id must be a number from 0 to 4294967295")
                for other, cap in self.caps.items():
                    if cap["id"] == cap_id:
                        raise error_at(item, f"capability id {cap_id} is already used by {other!r}")
            elif kw == "default":
                default = True
            else:
                items.append(item)
            k += 1
        if cap_id < 0:
            raise error_at(head, f"capability {name!r} needs an id")
        self.caps[name] = {"id": cap_id, "default": default, "rules": items}

    # ---- pass 3: rules

    def actions(self, items: list[Item], out: list[dict[str, Any]], params: Mapping[str, str]) -> None:
        k = 0
        while k < len(items):
            item = items[k]
            if len(out) > MAX_COMPILED_RULES:
                raise error_at(item, f"the rule set expands to more than {MAX_COMPILED_RULES} rules")
            if isinstance(item, Block):  # a stray block where an action belongs: skipped, as in the JS
                k += 1
                continue
            kw = item.text.lower()
            nxt = items[k + 1] if k + 1 < len(items) else None
            if kw == "include":
                if nxt is None:
                    raise error_at(item, "'include' needs a macro name")
                k += 1
                self.include(nxt, out)
            elif kw in _ACTION_TYPES:
                if isinstance(nxt, Block):
                    k += 1
                    self.matches(nxt, out, params)
                out.append({"type": _ACTION_TYPES[kw]})
            elif kw in ("tee", "watch"):
                if not isinstance(nxt, Block) or len(nxt) < 2:
                    raise error_at(
                        item, f"'{kw}' needs a length (bytes to copy, 0 or -1 for all) and a target address"
                    )
                k += 1
                length = parse_number(word_text(nxt[0]))
                if not -1 <= length <= 0xFFFF:
                    # Departure: the JS reports this at the length's line but the target's column.
                    raise error_at(nxt[0], f"{kw} length must be -1..65535")
                target = word_text(nxt[1])
                if target is None or len(target) != 10:
                    raise error_at(nxt[1], f"{kw} target must be a 10-digit ZeroTier address")
                self.matches(nxt[2:], out, params)
                out.append({"type": _FORWARD_TYPES[kw], "address": target, "length": length})
            elif kw == "redirect":
                if not isinstance(nxt, Block):
                    raise error_at(item, "'redirect' needs a target address")
                k += 1
                target = word_text(nxt[0])
                if target is None or len(target) != 10:
                    raise error_at(nxt[0], "redirect target must be a 10-digit ZeroTier address")
                self.matches(nxt[1:], out, params)
                out.append({"type": "ACTION_REDIRECT", "address": target})
            else:
                raise error_at(
                    item,
                    f"unknown action or directive {item.text!r}{_did_you_mean(kw, _ACTION_WORDS)} (expected drop, "
                    "accept, break, tee, watch, redirect, include, macro, tag or cap)",
                )
            k += 1

    def include(self, target: Item, out: list[dict[str, Any]]) -> None:
        if not isinstance(target, Word):
            raise error_at(target, "'include' needs a macro name")
        name = target.text
        args: list[str] = []
        paren = name.find("(")
        if paren > 0:
            args = [a for a in re.split(r"[,)]+", name[paren + 1 :]) if a]
            name = name[:paren]
        macro = self.macros.get(name) or self.fragment(target, name)
        params: dict[str, str] = {}
        for pname, idx in macro.params.items():
            if idx >= len(args):
                raise error_at(target, f"macro {name!r} needs parameter {pname} (number {idx + 1})")
            params[pname] = args[idx]
        if name in self.expanding or len(self.expanding) >= _MAX_INCLUDE_DEPTH:
            chain = " -> ".join((*self.expanding, name))
            raise error_at(target, f"macro {name!r} includes itself ({chain})")
        self.expanding.append(name)
        try:
            self.actions(macro.body, out, params)
        finally:
            self.expanding.pop()

    def fragment(self, at: Word, name: str) -> _Macro:
        """A fragment the resolver gives for `name` (an extension: the JS only knows macros)."""
        if name in self.fragments:
            return self.fragments[name]
        text = None
        if self.resolver is not None and is_valid_name(name):
            try:
                text = self.resolver(name)
            except (OSError, UnicodeError, ValueError) as e:
                raise error_at(at, f"cannot include {name!r}: {e}") from e
        if text is None:
            raise error_at(at, f"no macro named {name!r}")
        top, warnings = split_blocks(text, name)
        self.warnings.extend(warnings)
        self.fragments[name] = _Macro({}, list(top))
        return self.fragments[name]

    def matches(self, items: list[Item], out: list[dict[str, Any]], params: Mapping[str, str]) -> None:
        not_ = or_ = False
        k = 0
        while k < len(items):
            item = items[k]
            if isinstance(item, Block):
                k += 1
                continue
            kw = item.text.lower()
            if kw == "not":
                not_ = True
            elif kw == "or":
                or_ = True
            elif kw != "and":
                if kw not in MATCH_KEYWORDS:
                    raise error_at(item, f"unknown match {item.text!r}{_did_you_mean(kw, MATCH_KEYWORDS)}")
                args: list[Word] = []
                for _ in range(MATCH_KEYWORDS[kw][1]):
                    k += 1
                    if k >= len(items):
                        raise error_at(items[k - 1], f"'{kw}' is missing an argument")
                    arg = items[k]
                    if not isinstance(arg, Word) or arg.text in RESERVED_WORDS:
                        raise error_at(
                            items[k - 1], f"'{kw}' is missing an argument (found {first_word(arg).text!r})"
                        )
                    if arg.text.startswith("$"):
                        if arg.text not in params:
                            raise error_at(arg, f"undefined macro parameter {arg.text!r}")
                        arg = Word(params[arg.text], arg.line, arg.column, arg.source)
                    args.append(arg)
                out.append(self.match(kw, args, not_, or_))
                not_ = or_ = False
            k += 1

    def match(self, kw: str, args: list[Word], not_: bool, or_: bool) -> dict[str, Any]:
        a = args[0]
        r: dict[str, Any] = {"type": MATCH_KEYWORDS[kw][0], "not": not_, "or": or_}
        if kw in ("ztsrc", "ztdest"):
            zt = clean_hex(a.text)
            if len(zt) != 10:
                raise error_at(a, f"{a.text!r} is not a 10-digit ZeroTier address")
            r["zt"] = zt
        elif kw in ("vlan", "vlanpcp", "vlandei", "ethertype", "ipprotocol"):
            names = ETHERTYPE_NAMES if kw == "ethertype" else IP_PROTOCOL_NAMES if kw == "ipprotocol" else {}
            n = names[a.text] if a.text in names else parse_number(a.text)
            if not 0 <= n <= _U32:
                raise error_at(a, f"{kw} needs a number{' or name' if names else ''}, not {a.text!r}")
            key = {"vlan": "vlanId", "vlanpcp": "vlanPcp", "vlandei": "vlanDei"}.get(kw)
            r[key or ("etherType" if kw == "ethertype" else "ipProtocol")] = n
        elif kw == "random":
            p = min(1.0, max(0.0, js_float(a.text)))
            r["probability"] = math.floor(4294967295 * p)
        elif kw in ("macsrc", "macdest"):
            mac = clean_mac(a.text)
            if len(mac) != 17:
                raise error_at(a, f"{a.text!r} is not a MAC address")
            r["mac"] = mac
        elif kw in ("ipsrc", "ipdest"):
            slash = a.text.find("/")
            if slash <= 0:
                raise error_at(a, f"{a.text!r} needs a /bits netmask length")
            host = a.text[:slash]
            family = ip_family(host)
            if family is None:
                raise error_at(a, f"{host!r} is neither an IPv4 nor an IPv6 address")
            if family == 6:
                r["type"] = "MATCH_IPV6_SOURCE" if kw == "ipsrc" else "MATCH_IPV6_DEST"
            r["ip"] = a.text
        elif kw == "icmp":
            icmp_type = parse_number(a.text)
            if not 0 <= icmp_type <= 0xFF:
                raise error_at(a, "ICMP type must be 0..255")
            code = parse_number(args[1].text)
            if code > 0xFF:
                raise error_at(args[1], "ICMP code must be 0..255 (-1: any code)")
            r["icmpType"] = icmp_type
            r["icmpCode"] = None if code < 0 else code
        elif kw in ("sport", "dport", "framesize"):
            r["start"], r["end"] = self._range(
                a, 0xFFFF, f"{kw} needs a number or range 0..65535 (like 80 or 1024-2048)"
            )
        elif kw == "iptos":
            mask = parse_number(a.text)
            if not 0 <= mask <= 0xFF:
                raise error_at(a, "iptos mask must be 0..255")
            r["mask"] = mask
            r["start"], r["end"] = self._range(args[1], 0xFF, "iptos needs a value or range 0..255")
        elif kw == "chr":
            r["mask"] = self._characteristics(a)
        else:  # tag matches
            r["id"], r["value"] = self._tag_value(a, args[1])
        return r

    @staticmethod
    def _range(a: Word, top: int, message: str) -> tuple[int, int]:
        if a.text.find("-") > 0:
            parts = a.text.split("-")
            if len(parts) != 2:
                raise error_at(a, message)
            lo, hi = parse_number(parts[0]), parse_number(parts[1])
        else:
            lo = hi = parse_number(a.text)
        if not (0 <= lo <= top and 0 <= hi <= top and lo <= hi):
            raise error_at(a, message)
        return lo, hi

    def _characteristics(self, a: Word) -> str:
        hi = lo = 0
        for part in re.split(r",+", a.text):
            if not part:
                continue
            bit = CHARACTERISTIC_BITS[part] if part in CHARACTERISTIC_BITS else parse_number(part)
            if not 0 <= bit <= 63:
                raise error_at(a, f"{part!r} is neither a characteristic name nor a bit number 0..63")
            if bit >= 32:
                hi |= 1 << (bit - 32)
            else:
                lo |= 1 << bit
            if self.js:  # Departure: the JS ORs each half in signed 32 bits.
                hi, lo = to_int32(hi), to_int32(lo)
        if self.js:
            return f"{abs(hi):08x}{abs(lo):08x}"
        return f"{hi:08x}{lo:08x}"

    def _tag_value(self, a: Word, b: Word) -> tuple[int, int]:
        tag = self.tags.get(a.text)
        if tag is not None:
            tag_id = tag["id"]
            flags, enums = tag["flags"], tag["enums"]
            value = (
                flags[b.text]
                if b.text in flags
                else enums[b.text]
                if b.text in enums
                else parse_number(b.text)
            )
        else:
            tag_id, value = parse_number(a.text), parse_number(b.text)
        if not 0 <= tag_id <= _U32:
            raise error_at(a, f"{a.text!r} is neither a tag defined in this script nor a tag id")
        if not 0 <= value <= _U32:
            raise error_at(b, f"{b.text!r} is neither a flag or enum of this tag nor a number 0..4294967295")
        return tag_id, value


def compile_rules(
    source: str, *, resolver: IncludeResolver | None = None, js_int32_bugs: bool = False
) -> CompiledRules:
    """Compile a rule script; raises `RulesCompileError` at the first error.

    `resolver` is asked for the text of ``include NAME`` when the script defines no
    macro NAME (None: such an include is an error, as in the JS compiler).
    `js_int32_bugs` reproduces the JS compiler's signed 32-bit results bit for bit.
    """
    if not isinstance(source, str):
        raise RulesCompileError(0, 0, "rule script must be a string")
    c = _Compiler(resolver, js_int32_bugs)
    top, warnings = split_blocks(source, None)
    c.warnings.extend(warnings)
    base = c.define(top)
    for cap in c.caps.values():
        out: list[dict[str, Any]] = []
        c.actions(cap["rules"], out, {})
        cap["rules"] = out
    rules: list[dict[str, Any]] = []
    c.actions(base, rules, {})
    return CompiledRules(rules, c.caps, c.tags, c.warnings)
