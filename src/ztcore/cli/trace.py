"""`ztnode trace`: follow a running node's trace events, or the traces its controller collected.

Two sources, both over the node's local API (see `ztcore.runtime.http_api`):

* default: the node's own events (``GET /trace``, its ring buffer);
* ``--controller NWID``: the remote traces this node's controller collected from
  the members of network NWID (``GET /controller/network/NWID/trace``).

One line per event: time, network, member addresses (and member names when the
controller knows them), a frame summary (Scapy's one-line ``summary()``), the
verdict and, for a rules trace, the deciding rule. ``-j`` prints JSON lines
instead. Filters: ``--network``, ``--member``, ``--verdict``. It stops after
``--count N`` events or ``--seconds S``, or (without ``--follow``) once it has
printed what is there now.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from ztcore.cli.client import ApiClient, RequestError, api_options, make_settings
from ztcore.errors import report_unexpected
from ztcore.tracing import rule_log_entries
from ztcore.vl2.rules import Rule, RuleType, rules_from_json, rules_to_json
from ztcore.vl2.rules.render import RuleRenderError, render_statement

__all__ = ["deciding_rule_index", "render_line", "render_rule", "trace"]

log = logging.getLogger(__name__)

_HEX = frozenset("0123456789abcdefABCDEF")
_VERDICTS = ("drop", "accept", "all")
_NON_TERMINAL = frozenset((RuleType.ACTION_TEE, RuleType.ACTION_WATCH))
_NAME_BY_EVENT = {
    "1000": "paths reset",
    "1001": "unknown path",
    "1002": "new path",
    "1003": "redirected",
    "1004": "MAC failure",
    "1005": "invalid packet",
    "2000": "frame out",
    "2001": "access",
    "2002": "frame in",
    "2003": "credential",
    "2005": "config request",
    "2006": "rules",
}


# --------------------------------------------------------------------------- rules


def deciding_rule_index(rules: list[Rule], rule_log: bytes) -> int | None:
    """The index of the action that decided a frame, replayed from a rules trace's log.

    The core logs each match rule it evaluated (four bits: did the rule match, did
    its set match so far) and no action; an action is taken when its set matched,
    and every action but TEE/WATCH ends the evaluation. None if the log shows the
    table ran out (dropped by default) or does not fit the rules.
    """

    def nibble(i: int) -> int:
        return (rule_log[i >> 1] >> ((i & 1) * 4)) & 0xF if (i >> 1) < len(rule_log) else 0

    this_set = True
    for i, rule in enumerate(rules):
        if rule.is_action:
            if this_set and rule.type not in _NON_TERMINAL:
                return i
            this_set = True
        else:
            nib = nibble(i)
            if not nib:
                return None  # never evaluated: the log is not of these rules
            this_set = (nib & 3) == 2
    return None


def render_rule(rules: list[Rule], index: int) -> str:
    """The deciding statement in the rules language (``drop not chr ipauth``), or its
    JSON where the language cannot write it."""
    try:
        return f"`{render_statement(rules, index)}`"
    except RuleRenderError:
        start = index
        while start > 0 and not rules[start - 1].is_action:
            start -= 1
        return json.dumps(rules_to_json(rules[start : index + 1]), separators=(",", ":"))


# ------------------------------------------------------------------------ records


def _hexint(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.replace(":", "")
        if s and len(s) <= 16 and _HEX.issuperset(s):
            return int(s, 16)
    return 0


def normalize(obj: dict[str, Any], from_controller: bool) -> dict[str, Any]:
    """A node event (``GET /trace``) or a controller record as one flat shape."""
    if from_controller:
        ev = str(obj.get("event", ""))
        frame = obj.get("frameData")
        return {
            "event": ev,
            "ts": obj.get("ts"),
            "network": _hexint(obj.get("networkId")),
            "reporter": _hexint(obj.get("nodeId")),
            "source": _hexint(obj.get("sourceZtAddr") or obj.get("remoteZtAddr")),
            "dest": _hexint(obj.get("destZtAddr")),
            "source_mac": _hexint(obj.get("sourceMac")),
            "dest_mac": _hexint(obj.get("destMac")),
            "ethertype": _hexint(obj.get("etherType")),
            "result": _signed_hex(obj.get("filterResult")),
            "inbound": obj.get("filterInbound") == "1",
            "reason": obj.get("reason"),
            "base_rule_log": _unhex(obj.get("filterBaseRuleLog")),
            "cap_rule_log": _unhex(obj.get("filterCapRuleLog")),
            "cap_id": _hexint(obj.get("filterMatchingCapId")) if "filterMatchingCapId" in obj else None,
            "frame": _unhex(frame),
            "kind": None,
            "physical": obj.get("remotePhyAddr"),
        }
    return {
        "event": obj.get("event") or "",
        "ts": obj.get("timestamp"),
        "network": _hexint(obj.get("network")),
        "reporter": None,
        "source": _hexint(obj.get("source") or obj.get("peer") or obj.get("reporter")),
        "dest": _hexint(obj.get("dest")),
        "source_mac": _hexint(obj.get("sourceMac")),
        "dest_mac": _hexint(obj.get("destMac")),
        "ethertype": obj.get("ethertype") if isinstance(obj.get("ethertype"), int) else 0,
        "result": obj.get("result") if isinstance(obj.get("result"), int) else None,
        "inbound": obj.get("inbound") is True,
        "reason": obj.get("reason"),
        "base_rule_log": _unhex(obj.get("baseRuleLog")),
        "cap_rule_log": _unhex(obj.get("capRuleLog")),
        "cap_id": obj.get("matchingCapId") if isinstance(obj.get("matchingCapId"), int) else None,
        "frame": _unhex(obj.get("frameData")),
        "kind": obj.get("kind"),
        "physical": obj.get("remotePhysical") or obj.get("at") or obj.get("path"),
    }


def _signed_hex(v: Any) -> int | None:
    if not isinstance(v, str) or not v:
        return None
    neg = v.startswith("-")
    n = _hexint(v[1:] if neg else v)
    return -n if neg else n


def _unhex(v: Any) -> bytes | None:
    if not isinstance(v, str):
        return None
    try:
        return bytes.fromhex(v)
    except ValueError:
        return None


def verdict_of(n: dict[str, Any]) -> str | None:
    """"drop", "accept" or None (not a frame verdict)."""
    ev = n["event"]
    if ev == "2006" and n["result"] is not None:
        return "accept" if n["result"] > 0 else "drop"
    if ev in ("2000", "2001", "2002"):
        return "drop"
    return None


def frame_summary(n: dict[str, Any]) -> str | None:
    """Scapy's one-line summary of the traced frame (rebuilt with its Ethernet header)."""
    frame = n["frame"]
    if not frame:
        return None
    try:
        # Lazily: Scapy takes a while to import. inet/inet6 bind IP and IPv6 under Ether.
        import scapy.layers.inet
        import scapy.layers.inet6  # noqa: F401
        from scapy.layers.l2 import Ether

        raw = n["dest_mac"].to_bytes(6, "big") + n["source_mac"].to_bytes(6, "big")
        raw += int(n["ethertype"] & 0xFFFF).to_bytes(2, "big") + frame
        return str(Ether(raw).summary())
    except Exception as e:  # noqa: BLE001 - a frame Scapy cannot dissect still gets its line
        report_unexpected(log, "ztnode trace: frame summary", e)
        return f"{len(frame)} bytes"


def _mac(m: int) -> str:
    return ":".join(f"{(m >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def _addr(a: int | None, names: dict[int, str]) -> str:
    if not a:
        return "-"
    name = names.get(a)
    return f"{a:010x}({name})" if name else f"{a:010x}"


def render_line(
    n: dict[str, Any],
    *,
    names: dict[int, str] | None = None,
    rules: dict[int, tuple[list[Rule], dict[int, list[Rule]]] | None] | None = None,
) -> str:
    """One readable line for a normalized event."""
    names = names or {}
    ts = n["ts"]
    when = (
        time.strftime("%H:%M:%S", time.localtime(ts / 1000)) + f".{ts % 1000:03d}"
        if isinstance(ts, int) and ts > 0
        else "--:--:--.---"
    )
    parts = [when, f"{n['network']:016x}" if n["network"] else "-" * 16]
    label = _NAME_BY_EVENT.get(n["event"], n["kind"] or n["event"] or "?")
    parts.append(f"{label:<12}")
    if n["reporter"]:
        parts.append(f"by {_addr(n['reporter'], names)}")
    src, dst = n["source"], n["dest"]
    if src or dst:
        arrow = "<-" if n["inbound"] else "->"
        if n["event"] == "2006" and n["inbound"]:
            parts.append(f"{_addr(dst, names)} {arrow} {_addr(src, names)}")
        elif dst:
            parts.append(f"{_addr(src, names)} -> {_addr(dst, names)}")
        else:
            parts.append(f"peer {_addr(src, names)}")
    summary = frame_summary(n)
    if summary:
        parts.append(f"[{summary}]")
    elif n["event"] in ("2000", "2002") and (n["source_mac"] or n["dest_mac"]):
        parts.append(f"[{_mac(n['source_mac'])} > {_mac(n['dest_mac'])}" + (f" type {n['ethertype']:#06x}]" if n["ethertype"] else "]"))
    if n["physical"]:
        parts.append(f"via {n['physical']}")
    verdict = verdict_of(n)
    if verdict:
        parts.append(verdict.upper())
    if n["reason"]:
        parts.append(f"({n['reason']})")
    if n["event"] == "2006":
        parts.append(_deciding_text(n, rules or {}))
    return "  ".join(parts)


def _deciding_text(
    n: dict[str, Any], rules: dict[int, tuple[list[Rule], dict[int, list[Rule]]] | None]
) -> str:
    known = rules.get(n["network"])
    if n["cap_id"] is not None and n["cap_rule_log"] is not None:
        table = known[1].get(n["cap_id"]) if known else None
        log_bytes, where = n["cap_rule_log"], f"capability {n['cap_id']}"
    else:
        table = known[0] if known else None
        log_bytes, where = n["base_rule_log"] or b"", "base rules"
    if table is None:
        entries = rule_log_entries(log_bytes)
        last = entries[-1][0] if entries else -1
        return f"decided after rule {last} of {where}" if last >= 0 else f"decided by the first action of {where}"
    idx = deciding_rule_index(table, log_bytes)
    if idx is None:
        return f"no rule decided ({where} ran out: default drop)"
    return f"by rule {idx} of {where}: {render_rule(table, idx)}"


# -------------------------------------------------------------------------- command


def _wanted(n: dict[str, Any], network: int | None, member: int | None, verdict: str) -> bool:
    if network is not None and n["network"] != network:
        return False
    if member is not None and member not in (n["source"], n["dest"], n["reporter"]):
        return False
    if verdict != "all" and verdict_of(n) != verdict:
        return False
    return True


def _hex_option(width: int, what: str) -> Any:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        if len(value) != width or not _HEX.issuperset(value):
            raise click.BadParameter(f"invalid {what} {value[:40]!r} (want {width} hex digits)")
        return int(value, 16)

    return convert


class _Source:
    """Polls one of the two trace routes; remembers where it got to."""

    def __init__(self, client: ApiClient, controller_nwid: int | None) -> None:
        self.client = client
        self.nwid = controller_nwid
        self.after = 0
        self.since_ts = 0
        self.seen: set[Any] = set()
        self.names: dict[int, str] = {}
        # None: asked, but this API is not the network's controller (rules unknown).
        self.rules: dict[int, tuple[list[Rule], dict[int, list[Rule]]] | None] = {}

    def poll(self, limit: int = 1000) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        q = urlencode({"after": self.after, "limit": limit})
        if self.nwid is None:
            items = self.client.get(f"/trace?{q}")
            if not isinstance(items, list):
                raise click.ClickException("the node answered /trace with something that is not a list")
            out = []
            for it in items:
                if isinstance(it, dict):
                    self.after = max(self.after, int(it.get("seq", 0)))
                    out.append((it, normalize(it, False)))
            return out
        # Controller records carry no sequence number: poll by time, skipping ids seen.
        q = urlencode({"since": self.since_ts, "limit": limit})
        items = self.client.get(f"/controller/network/{self.nwid:016x}/trace?{q}")
        if not isinstance(items, list):
            raise click.ClickException("the controller answered with something that is not a list")
        out = []
        for it in items:
            if not isinstance(it, dict) or it.get("id") in self.seen:
                continue
            ts = it.get("ts")
            if isinstance(ts, int) and ts > self.since_ts:
                self.since_ts, self.seen = ts, set()
            self.seen.add(it.get("id"))
            out.append((it, normalize(it, True)))
        return out

    def load_context(self, network: int) -> None:
        """Member names and rules of `network`, if this node is its controller."""
        if network in self.rules or not network:
            return
        self.rules[network] = None
        resp = self.client.request("GET", f"/controller/network/{network:016x}")
        if not resp.ok:
            return
        try:
            nw = resp.json()
            base = rules_from_json(nw.get("rules") or [])
            caps = {
                int(c["id"]): rules_from_json(c.get("rules") or [])
                for c in nw.get("capabilities") or []
                if isinstance(c, dict) and isinstance(c.get("id"), int)
            }
            self.rules[network] = (base, caps)
        except (RequestError, ValueError, TypeError, AttributeError) as e:
            log.debug("rules of %016x unusable: %s", network, e)
        resp = self.client.request("GET", f"/unstable/controller/network/{network:016x}/member")
        if resp.ok:
            try:
                for m in resp.json().get("data", []):
                    if isinstance(m, dict) and m.get("name"):
                        self.names[_hexint(m.get("id"))] = str(m["name"])
            except (RequestError, AttributeError) as e:
                log.debug("members of %016x unusable: %s", network, e)


@click.command()
@api_options
@click.option(
    "-c",
    "--controller",
    "controller_nwid",
    default=None,
    callback=_hex_option(16, "network id"),
    help="Show the traces this node's controller collected for network NWID (its members' "
    "remote traces) instead of the node's own.",
    metavar="NWID",
)
@click.option(
    "-n", "--network", default=None, callback=_hex_option(16, "network id"), metavar="NWID", help="Only this network."
)
@click.option(
    "-m",
    "--member",
    default=None,
    callback=_hex_option(10, "address"),
    metavar="ADDRESS",
    help="Only events naming this address (sender, destination or reporter).",
)
@click.option("--verdict", type=click.Choice(_VERDICTS), default="all", show_default=True, help="Only dropped or accepted frames.")
@click.option("-f", "--follow", is_flag=True, help="Keep polling for new events.")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after N events.")
@click.option("--seconds", type=click.FloatRange(0), default=None, help="Stop after S seconds.")
@click.option("--interval", type=click.FloatRange(0.05, 60), default=1.0, show_default=True, help="Polling period (s).")
def trace(
    home: Path | None,
    port: int | None,
    token: str | None,
    host: str,
    json_output: bool,
    timeout: float,
    controller_nwid: int | None,
    network: int | None,
    member: int | None,
    verdict: str,
    follow: bool,
    count: int | None,
    seconds: float | None,
    interval: float,
) -> None:
    """Follow trace events: the node's own, or (-c NWID) its controller's collected ones."""
    settings = make_settings(home, port, token, host, json_output, timeout)
    source = _Source(settings.client(), controller_nwid)
    deadline = time.monotonic() + seconds if seconds is not None else None
    printed = 0
    while True:
        for raw, n in source.poll():
            if not _wanted(n, network, member, verdict):
                continue
            if json_output:
                click.echo(json.dumps(raw, separators=(",", ":"), sort_keys=True))
            else:
                source.load_context(n["network"])
                click.echo(render_line(n, names=source.names, rules=source.rules))
            printed += 1
            if count is not None and printed >= count:
                return
        if not follow and count is None and deadline is None:
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))
