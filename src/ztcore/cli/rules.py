"""`ztnode rules`: troubleshoot a network's flow rules offline.

``ztnode rules test`` answers "would this frame get through, and which rule
decides?" with the very evaluator the node runs (ztcore.vl2.rules.evaluate): the
frame is checked on the way out of the sender (its own tags and capabilities,
the receiver's tags as far as the sender knows them) and on the way in at the
receiver (the sender's tags and capabilities), as the real core does.

The network's rules, capabilities and tags come from a running node's
controller (``--network NWID``, the local JSON API as ``ztnode controller``
finds it) or from JSON files in the controller's format (``--network-json``,
``--from-json``, ``--to-json``); tags and capabilities can also be given or
overridden on the command line. The frame is Scapy-style text (parsed, never
executed), ``--hex`` or a ``--pcap`` record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from ztcore.cli.client import ApiSettings, dump_json, make_settings
from ztcore.cli.rules_lang import compile_command, show_command
from ztcore.errors import InvalidFormatError
from ztcore.vl2.mac import MAC
from ztcore.vl2.rules import (
    Evaluation,
    Frame,
    Ownership,
    Rule,
    RuleLogEntry,
    decode_rule_log,
    evaluate,
    rules_from_json,
    rules_to_json,
)
from ztcore.vl2.rules.frametext import (
    FrameTextError,
    ParsedFrame,
    parse_frame_text,
    parse_hex,
    parse_pcap,
)
from ztcore.vl2.rules.render import RuleRenderError, render_rule, render_statement

__all__ = ["MemberView", "rules", "run_test"]

_U32 = 0xFFFFFFFF


class MemberView:
    """One member as the rules see it: address, tags, capability ids, owned IPs."""

    def __init__(
        self, address: int, tags: Mapping[int, int], caps: Sequence[int], owns: Sequence[bytes] = ()
    ) -> None:
        self.address = address
        self.tags = dict(tags)
        self.caps = list(caps)
        self.owns = list(owns)


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except OSError as e:
        raise click.BadParameter(f"{path}: {e.strerror}", param_hint=what) from None
    except ValueError as e:
        raise click.BadParameter(f"{path}: not JSON ({e})", param_hint=what) from None


def _address(text: str, what: str) -> int:
    t = text.strip().lower()
    if len(t) != 10 or any(c not in "0123456789abcdef" for c in t):
        raise click.BadParameter(f"{text!r} is not a 10-hex-digit ZeroTier address", param_hint=what)
    return int(t, 16)


def _int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v, 0)
    raise ValueError(f"not an integer: {v!r}")


def _tag_option(values: Sequence[str], by_name: Mapping[str, Any], what: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep:
            raise click.BadParameter(f"{v!r}: want ID=VALUE (or NAME=VALUE)", param_hint=what)
        try:
            entry = by_name.get(key.strip())
            if isinstance(entry, Mapping):
                tid = _int(entry.get("id"))
                enums = entry.get("enums") if isinstance(entry.get("enums"), Mapping) else {}
                value = _int(enums[val.strip()]) if val.strip() in enums else _int(val.strip())
            else:
                tid, value = _int(key.strip()), _int(val.strip())
        except (ValueError, TypeError) as e:
            raise click.BadParameter(f"{v!r}: {e}", param_hint=what) from None
        out[tid & _U32] = value & _U32
    return out


def _cap_option(values: Sequence[str], by_name: Mapping[str, Any], what: str) -> list[int]:
    out: list[int] = []
    for v in values:
        entry = by_name.get(v.strip())
        try:
            out.append(_int(entry.get("id") if isinstance(entry, Mapping) else v.strip()) & _U32)
        except (ValueError, TypeError) as e:
            raise click.BadParameter(f"{v!r}: {e}", param_hint=what) from None
    return out


def member_from_json(
    address: int, network: Mapping[str, Any], member: Mapping[str, Any] | None
) -> MemberView:
    """Tags and capabilities of a member record, with the network's default tags filled in."""
    tags: dict[int, int] = {}
    caps: list[int] = []
    if member is not None:
        for t in member.get("tags") or []:
            if isinstance(t, list) and len(t) == 2:
                try:
                    tags[_int(t[0]) & _U32] = _int(t[1]) & _U32
                except ValueError:
                    continue
        for c in member.get("capabilities") or []:
            try:
                caps.append(_int(c) & _U32)
            except ValueError:
                continue
    for t in network.get("tags") or []:
        if (
            isinstance(t, Mapping)
            and isinstance(t.get("default"), int)
            and not isinstance(t.get("default"), bool)
        ):
            tid = _int(t.get("id", 0)) & _U32
            tags.setdefault(tid, int(t["default"]) & _U32)
    return MemberView(address, tags, caps)


def network_capabilities(network: Mapping[str, Any]) -> dict[int, list[Rule]]:
    out: dict[int, list[Rule]] = {}
    for c in network.get("capabilities") or []:
        if isinstance(c, Mapping):
            try:
                cid = _int(c.get("id", 0)) & _U32
            except ValueError:
                continue
            rules = c.get("rules")
            out[cid] = rules_from_json(rules) if isinstance(rules, list) else []
    return out


def run_test(
    network: Mapping[str, Any],
    sender: MemberView,
    receiver: MemberView,
    frame: ParsedFrame,
    *,
    network_id: int = 0,
    directions: Sequence[str] = ("out", "in"),
    sender_knows_receiver_tags: bool = True,
    rng_value: int | None = None,
) -> dict[str, Any]:
    """Evaluate ``frame`` from ``sender`` to ``receiver``; JSON-ready result."""
    rules_json = network.get("rules")
    rules = rules_from_json(rules_json) if isinstance(rules_json, list) else []
    caps = network_capabilities(network)
    unsupported = bool(network.get("rulesResultOfUnsupportedMatch", False))
    smac = (
        frame.source_mac
        if frame.source_mac is not None
        else int(MAC.from_address(sender.address, network_id))
    )
    dmac = (
        frame.dest_mac if frame.dest_mac is not None else int(MAC.from_address(receiver.address, network_id))
    )
    # Out of the sender a multicast has no single recipient (the core's first pass uses
    # address 0); into the receiver the destination is the receiver itself.
    dest = 0 if (dmac >> 40) & 1 else receiver.address
    f_out = Frame(sender.address, dest, smac, dmac, frame.ethertype, frame.payload, frame.vlan_id)
    f_in = Frame(sender.address, receiver.address, smac, dmac, frame.ethertype, frame.payload, frame.vlan_id)
    rng = (lambda: rng_value) if rng_value is not None else None
    results: list[dict[str, Any]] = []
    delivered = True
    for d in directions:
        inbound = d == "in"
        me = receiver if inbound else sender
        other = sender if inbound else receiver
        held = sender.caps
        cap_list = [(cid, caps.get(cid, [])) for cid in sorted(set(held)) if cid in caps]
        kw: dict[str, Any] = {} if rng is None else {"rng": rng}
        if inbound:
            remote_tags: dict[int, int] | None = other.tags
        else:
            remote_tags = other.tags if sender_knows_receiver_tags and dest else None
        ev = evaluate(
            rules,
            f_in if inbound else f_out,
            inbound=inbound,
            me=me.address,
            capabilities=cap_list,
            local_tags=me.tags,
            remote_tags=remote_tags,
            ownership=Ownership(sender.owns),
            unsupported_match=unsupported,
            **kw,
        )
        results.append(_evaluation_json(ev, me.address, rules, caps))
        delivered = delivered and ev.deliver
    return {
        "frame": {
            "sourceMac": str(MAC(smac)),
            "destMac": str(MAC(dmac)),
            "etherType": frame.ethertype,
            "vlanId": frame.vlan_id,
            "length": len(frame.payload),
            "from": f"{sender.address:010x}",
            "to": f"{dest:010x}",
        },
        "evaluations": results,
        "delivered": delivered,
    }


def _log_rows(rules: Sequence[Rule], log: bytes) -> list[dict[str, Any]]:
    entries: list[RuleLogEntry] = decode_rule_log(log, len(rules))
    rows = []
    for rule, e in zip(rules, entries, strict=False):
        rows.append(
            {
                "index": e.index,
                "rule": rules_to_json([rule])[0] if rule.is_known else {"type": int(rule.type)},
                "setBefore": e.set_matched,
                "matched": e.rule_matched,
            }
        )
    return rows


def _evaluation_json(
    ev: Evaluation, me: int, rules: Sequence[Rule], caps: Mapping[int, list[Rule]]
) -> dict[str, Any]:
    deciding: dict[str, Any] | None = None
    if ev.deciding is not None:
        table = rules if ev.deciding.capability_id is None else caps.get(ev.deciding.capability_id, [])
        rule = table[ev.deciding.index] if 0 <= ev.deciding.index < len(table) else None
        deciding = {
            "capability": ev.deciding.capability_id,
            "index": ev.deciding.index,
            "rule": rules_to_json([rule])[0] if rule is not None and rule.is_known else None,
            # The whole statement as rules-language text: the matches leading to the action.
            "source": _statement_source(table, ev.deciding.index),
        }
    out: dict[str, Any] = {
        "direction": "inbound" if ev.inbound else "outbound",
        "node": f"{me:010x}",
        "verdict": ev.verdict.name,
        "delivered": ev.deliver,
        "deciding": deciding,
        "qosBucket": ev.qos_bucket,
        "copies": [
            {"action": c.action.name, "to": f"{c.address:010x}", "flags": c.flags, "length": c.length}
            for c in ev.copies
        ],
        "rules": _log_rows(rules, ev.base.log),
    }
    if ev.capability is not None and ev.capability_id is not None:
        out["capability"] = {
            "id": ev.capability_id,
            "rules": _log_rows(caps.get(ev.capability_id, []), ev.capability.log),
        }
    return out


# ------------------------------------------------------------------------------ output


def _show(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    fr = result["frame"]
    console.print(
        f"frame {fr['from']} -> {fr['to']}  {fr['sourceMac']} -> {fr['destMac']}  "
        f"ethertype 0x{fr['etherType']:04x}  {fr['length']} bytes"
    )
    for ev in result["evaluations"]:
        d = ev["deciding"]
        where = "no rule matched"
        if d is not None:
            where = (
                f"rule {d['index']}"
                if d["capability"] is None
                else f"capability {d['capability']} rule {d['index']}"
            )
            if d.get("source"):
                where += f": `{d['source']}`"
            elif d["rule"] is not None:
                where += f": {_rule_text(d['rule'])}"
        console.print(f"\n[bold]{ev['direction']} at {ev['node']}[/bold]: {ev['verdict']} ({where})")
        if ev["qosBucket"] is not None:
            console.print(f"  QoS bucket {ev['qosBucket']}")
        for c in ev["copies"]:
            console.print(
                f"  {c['action']} to {c['to']}: EXT_FRAME flags 0x{c['flags']:02x}, {c['length']} bytes"
            )
        tables = [("rules", ev["rules"])]
        if "capability" in ev:
            tables.append((f"capability {ev['capability']['id']}", ev["capability"]["rules"]))
        for title, rows in tables:
            table = Table(title=title, title_justify="left")
            for col in ("#", "rule", "set before", "rule matched (before NOT)"):
                table.add_column(col)
            for r in rows:
                table.add_row(
                    str(r["index"]),
                    _rule_text(r["rule"]),
                    "-" if r["setBefore"] is None else ("true" if r["setBefore"] else "false"),
                    "-" if r["matched"] is None else ("match" if r["matched"] else "no match"),
                )
            console.print(table)
    console.print(f"\n[bold]{'DELIVERED' if result['delivered'] else 'NOT DELIVERED'}[/bold]")


def _statement_source(table: Sequence[Rule], index: int) -> str | None:
    """The deciding statement as source, or None where the language cannot write it."""
    try:
        return render_statement(table, index)
    except (RuleRenderError, IndexError):
        return None


def _rule_text(obj: Mapping[str, Any]) -> str:
    """One line for a rule: rules-language text where the language can write it, else
    its JSON (flags, type, then its values)."""
    try:
        return render_rule(obj)
    except RuleRenderError:
        pass
    parts = []
    if obj.get("not"):
        parts.append("not")
    if obj.get("or"):
        parts.append("or")
    parts.append(str(obj.get("type")))
    parts += [f"{k}={v}" for k, v in obj.items() if k not in ("type", "not", "or")]
    return " ".join(parts)


# ----------------------------------------------------------------------------- command


@click.group("rules")
def rules() -> None:
    """Compile, show and test a network's flow rules, tags and capabilities."""


rules.add_command(compile_command)
rules.add_command(show_command)


@rules.command("test")
@click.argument("frame_text", required=False)
@click.option("--hex", "hex_frame", default=None, help="The frame as hex (a whole Ethernet frame).")
@click.option(
    "--pcap", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Take the frame from a pcap."
)
@click.option(
    "--record",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Record number in --pcap (0-based).",
)
@click.option(
    "--network",
    "nwid",
    default=None,
    help="Network id: read rules and members from a running node's controller.",
)
@click.option(
    "--network-json", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Network JSON file."
)
@click.option("--from", "from_addr", required=True, help="Sender's ZeroTier address.")
@click.option("--to", "to_addr", required=True, help="Receiver's ZeroTier address.")
@click.option(
    "--from-json", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Sender's member JSON."
)
@click.option(
    "--to-json", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Receiver's member JSON."
)
@click.option("--from-tag", multiple=True, help="Sender tag ID=VALUE (or NAME=VALUE); repeatable.")
@click.option("--to-tag", multiple=True, help="Receiver tag ID=VALUE; repeatable.")
@click.option("--from-cap", multiple=True, help="Capability (id or name) the sender holds; repeatable.")
@click.option("--from-owns", multiple=True, help="An IP the sender has a certificate of ownership for.")
@click.option(
    "--direction",
    type=click.Choice(["both", "out", "in"]),
    default="both",
    show_default=True,
    help="Evaluate at the sender (out), the receiver (in) or both.",
)
@click.option(
    "--sender-lacks-receiver-tags",
    is_flag=True,
    help="The sender has not received the receiver's tags yet (outbound tag matches are lenient).",
)
@click.option(
    "--random", "rng_value", type=click.IntRange(0, _U32), default=None, help="Fix MATCH_RANDOM's draw."
)
@click.option(
    "--home",
    "-D",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Node home (with --network).",
)
@click.option("-p", "--port", type=click.IntRange(1, 65535), default=None, help="API port (with --network).")
@click.option("-T", "--token", default=None, help="API token (with --network).")
@click.option("-H", "--host", default="127.0.0.1", show_default=True, help="API address (with --network).")
@click.option("-j", "--json", "json_output", is_flag=True, help="Print JSON.")
def test(
    frame_text: str | None,
    hex_frame: str | None,
    pcap: Path | None,
    record: int,
    nwid: str | None,
    network_json: Path | None,
    from_addr: str,
    to_addr: str,
    from_json: Path | None,
    to_json: Path | None,
    from_tag: tuple[str, ...],
    to_tag: tuple[str, ...],
    from_cap: tuple[str, ...],
    from_owns: tuple[str, ...],
    direction: str,
    sender_lacks_receiver_tags: bool,
    rng_value: int | None,
    home: Path | None,
    port: int | None,
    token: str | None,
    host: str,
    json_output: bool,
) -> None:
    """Would FRAME_TEXT get from --from to --to, and which rule decides?

    \b
    Example:
      ztnode rules test --network-json net.json --from 1111111111 --to 2222222222 \\
          --from-tag department=1 --to-tag department=2 \\
          "IP(src='10.0.0.1', dst='10.0.0.2')/TCP(dport=22, flags='S')"
    """
    import ipaddress

    given = [x for x in (frame_text, hex_frame, pcap) if x is not None]
    if len(given) != 1:
        raise click.UsageError("give the frame once: as text, --hex or --pcap")
    if (nwid is None) == (network_json is None):
        raise click.UsageError("give the network once: --network NWID (running node) or --network-json FILE")
    sender_addr = _address(from_addr, "--from")
    receiver_addr = _address(to_addr, "--to")
    try:
        if frame_text is not None:
            frame = parse_frame_text(frame_text)
        elif hex_frame is not None:
            frame = parse_hex(hex_frame)
        else:
            assert pcap is not None
            frame = parse_pcap(pcap, record)
    except FrameTextError as e:
        raise click.BadParameter(str(e), param_hint="FRAME") from None

    sender_json: Any = _load_json(from_json, "--from-json") if from_json else None
    receiver_json: Any = _load_json(to_json, "--to-json") if to_json else None
    if network_json is not None:
        network = _load_json(network_json, "--network-json")
        network_id = 0
        try:
            network_id = int(str(network.get("id", "0")), 16) if isinstance(network, dict) else 0
        except ValueError:
            network_id = 0
    else:
        assert nwid is not None
        if len(nwid) != 16 or any(c not in "0123456789abcdefABCDEF" for c in nwid):
            raise click.BadParameter(f"{nwid!r}: want 16 hex digits", param_hint="--network")
        settings: ApiSettings = make_settings(home, port, token, host, json_output, 10.0)
        client = settings.client()
        network = client.get(f"/controller/network/{nwid.lower()}")
        network_id = int(nwid, 16)
        if sender_json is None:
            resp = client.request("GET", f"/controller/network/{nwid.lower()}/member/{sender_addr:010x}")
            sender_json = resp.json() if resp.ok else None
        if receiver_json is None:
            resp = client.request("GET", f"/controller/network/{nwid.lower()}/member/{receiver_addr:010x}")
            receiver_json = resp.json() if resp.ok else None
    if not isinstance(network, dict):
        raise click.BadParameter("the network JSON is not an object", param_hint="--network-json")
    tags_by_name = network.get("tagsByName") if isinstance(network.get("tagsByName"), dict) else {}
    caps_by_name = (
        network.get("capabilitiesByName") if isinstance(network.get("capabilitiesByName"), dict) else {}
    )
    sender = member_from_json(sender_addr, network, sender_json if isinstance(sender_json, dict) else None)
    receiver = member_from_json(
        receiver_addr, network, receiver_json if isinstance(receiver_json, dict) else None
    )
    sender.tags.update(_tag_option(from_tag, tags_by_name, "--from-tag"))
    receiver.tags.update(_tag_option(to_tag, tags_by_name, "--to-tag"))
    sender.caps.extend(_cap_option(from_cap, caps_by_name, "--from-cap"))
    for ip in from_owns:
        try:
            sender.owns.append(ipaddress.ip_address(ip).packed)
        except ValueError:
            raise click.BadParameter(f"{ip!r} is not an IP address", param_hint="--from-owns") from None
    try:
        result = run_test(
            network,
            sender,
            receiver,
            frame,
            network_id=network_id,
            directions=("out", "in") if direction == "both" else (direction,),
            sender_knows_receiver_tags=not sender_lacks_receiver_tags,
            rng_value=rng_value,
        )
    except InvalidFormatError as e:
        raise click.ClickException(f"bad rules: {e}") from None
    if json_output:
        click.echo(dump_json(result))
    else:
        _show(result)
