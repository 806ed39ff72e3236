"""A network's ``rulesSource``: compiled by the controller, and member tags given by name.

zerotier-one stores ``rulesSource`` verbatim and never compiles it, so every UI
ships its own copy of the JS rule compiler and POSTs ``rules``, ``capabilities``
and ``tags`` with it. ztcore's controller compiles the source itself
(`ztcore.vl2.rules.compiler`), so a client may POST the source alone:

* ``rulesSource`` alone: compiled; its ``rules``, ``capabilities`` and ``tags``
  replace the network's, and the name maps are kept as ``tagsByName`` and
  ``capabilitiesByName`` (the field names ZeroTier Central uses). A script that
  does not compile is a 400 naming its line and column; nothing is changed.
* ``rulesSource`` with ``rules`` (and/or ``capabilities`` / ``tags``), what UIs
  send: each field given explicitly wins, as in zerotier-one. The source is
  still compiled for the name maps; if it does not compile it is stored verbatim
  (as zerotier-one would) and the name maps are cleared, since the client's own
  compiler evidently accepted it.
* An empty (all-blank) ``rulesSource`` is stored and leaves the rules alone.

Includes are never resolved here: the controller reads no files, so
``include NAME`` must name a macro of the same script.

Member ``tags`` may name a tag and its value through the network's
``tagsByName``: ``[["department", "engineering"]]`` or ``[["perms", "read,write"]]``
(flags OR'ed together); they are stored as numbers, ``[[id, value]]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ztcore.controller.validate import ApiError, normalize_rules

if TYPE_CHECKING:
    from ztcore.vl2.rules.compiler import RulesCompileError

__all__ = ["RulesSourceError", "apply_rules_source", "resolve_member_tag"]

_U32 = 0xFFFFFFFF


class RulesSourceError(ApiError):
    """A ``rulesSource`` that does not compile: a 400 naming where and why."""

    def __init__(self, error: RulesCompileError) -> None:
        super().__init__(400, f"rulesSource: line {error.line}, column {error.column}: {error.message}")
        self.line = error.line
        self.column = error.column
        self.reason = error.message

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "line": self.line, "column": self.column}


def apply_rules_source(network: dict[str, Any], body: Mapping[str, Any]) -> None:
    """Compile ``network["rulesSource"]`` (just set from `body`) into `network`, in place."""
    source = network.get("rulesSource", "")
    if not isinstance(source, str) or not source.strip():
        network.pop("tagsByName", None)
        network.pop("capabilitiesByName", None)
        return
    # Imported here: only a network with a rules source needs the compiler, and an idle
    # daemon loads this module with the records model.
    from ztcore.vl2.rules.compiler import RulesCompileError, compile_rules

    try:
        compiled = compile_rules(source)
    except RulesCompileError as e:
        if "rules" in body:
            network.pop("tagsByName", None)
            network.pop("capabilitiesByName", None)
            return
        raise RulesSourceError(e) from None
    config = compiled.config()
    if "rules" not in body:
        network["rules"] = _checked(config["rules"], "rules")
    if "capabilities" not in body:
        caps = []
        for name, cap in compiled.capabilities.items():
            caps.append({**cap, "rules": _checked(cap["rules"], f"capability {name!r}")})
        network["capabilities"] = sorted(caps, key=lambda c: c["id"])
    if "tags" not in body:
        tags = {t["id"]: t for t in config["tags"]}
        network["tags"] = [tags[k] for k in sorted(tags)]
    network["tagsByName"] = compiled.tags
    network["capabilitiesByName"] = compiled.capabilities_by_name


def _checked(rules: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    # The language accepts values the controller's rule objects do not hold (a 10-character
    # tee target that is not hex, a VLAN id wider than 16 bits, an IP like "1.2.3.4/8;").
    # zerotier-one keeps a tee/watch length as its low 16 bits: -1 ("all") is 65535 there too.
    rules = [
        {**r, "length": 0xFFFF}
        if r.get("type") in ("ACTION_TEE", "ACTION_WATCH") and r.get("length") == -1
        else r
        for r in rules
    ]
    try:
        return normalize_rules(rules, "rules")
    except ApiError as e:
        raise ApiError(
            400, f"rulesSource: {where} compiles to a rule the controller cannot hold: {e.message}"
        ) from None


def resolve_member_tag(pair: list[Any], network: Mapping[str, Any] | None, field: str) -> list[Any]:
    """``[name, value-name]`` -> ``[id, value]`` through the network's ``tagsByName``;
    numeric parts pass through unchanged (the model validates them)."""
    key, value = pair
    by_name = network.get("tagsByName") if isinstance(network, Mapping) else None
    if not isinstance(key, str) or key.strip().isdigit():
        tag = _tag_by_id(by_name, key)
    else:
        tag = by_name.get(key.lower()) if isinstance(by_name, Mapping) else None
        if not isinstance(tag, Mapping):
            known = ", ".join(sorted(by_name)) if isinstance(by_name, Mapping) and by_name else "none"
            raise ApiError(
                400, f"{field}[0]: no tag named {key!r} in this network's rulesSource (tags: {known})"
            )
        key = tag.get("id")
    if isinstance(value, str) and not value.strip().isdigit() and tag is not None:
        value = _tag_value(tag, value, field)
    elif isinstance(value, str) and not value.strip().isdigit():
        raise ApiError(400, f"{field}[1]: {value!r} is not a number and tag {key!r} has no named values")
    return [key, value]


def _tag_by_id(by_name: object, key: object) -> Mapping[str, Any] | None:
    if not isinstance(by_name, Mapping):
        return None
    for tag in by_name.values():
        if isinstance(tag, Mapping) and str(tag.get("id")) == str(key).strip():
            return tag
    return None


def _tag_value(tag: Mapping[str, Any], text: str, field: str) -> int:
    enums = tag.get("enums") if isinstance(tag.get("enums"), Mapping) else {}
    flags = tag.get("flags") if isinstance(tag.get("flags"), Mapping) else {}
    name = text.strip().lower()
    if name in enums:
        return int(enums[name])
    value = 0
    for part in (p.strip() for p in name.split(",")):
        if part not in flags:
            names = ", ".join([*enums, *flags]) or "none"
            raise ApiError(400, f"{field}[1]: {text!r} is no enum or flag of this tag (names: {names})")
        value |= int(flags[part]) & _U32
    return value
