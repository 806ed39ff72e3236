"""Frames for rule evaluation from text: Scapy-style expressions, hex, pcap records.

``parse_scapy("Ether()/IP(src='10.0.0.1')/TCP(dport=22)")`` builds the frame
with Scapy's own layer classes, but the text is never executed: it is parsed
with :mod:`ast` and only layer constructors from an allow-list, joined by
``/``, with literal arguments (numbers, strings, bytes, lists/tuples of them,
``"x" * n``) are accepted. Anything else is a :class:`FrameTextError`.
"""

from __future__ import annotations

import ast
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FrameTextError", "ParsedFrame", "parse_ethernet", "parse_frame_text", "parse_hex", "parse_pcap"]

ETHERTYPE_VLAN = 0x8100

# Scapy layers a frame description may use.
_LAYERS = (
    "Ether",
    "Dot1Q",
    "ARP",
    "IP",
    "IPv6",
    "IPv6ExtHdrHopByHop",
    "IPv6ExtHdrRouting",
    "IPv6ExtHdrDestOpt",
    "IPv6ExtHdrFragment",
    "TCP",
    "UDP",
    "ICMP",
    "SCTP",
    "ICMPv6EchoRequest",
    "ICMPv6EchoReply",
    "ICMPv6ND_NS",
    "ICMPv6ND_NA",
    "ICMPv6ND_RS",
    "ICMPv6ND_RA",
    "ICMPv6NDOptSrcLLAddr",
    "ICMPv6NDOptDstLLAddr",
    "ICMPv6DestUnreach",
    "ICMPv6Unknown",
    "Raw",
    "Padding",
)


class FrameTextError(ValueError):
    """The text does not describe a frame this parser accepts."""


@dataclass(frozen=True)
class ParsedFrame:
    """An Ethernet frame split the way ZeroTier carries it. A MAC is None when
    the text left it unset (the caller fills in the members' MACs)."""

    source_mac: int | None
    dest_mac: int | None
    ethertype: int
    vlan_id: int
    payload: bytes


def _mac_int(text: str) -> int:
    return int(text.replace(":", "").replace("-", ""), 16)


def parse_ethernet(raw: bytes) -> ParsedFrame:
    """An Ethernet II frame (optionally 802.1Q tagged) as bytes."""
    if len(raw) < 14:
        raise FrameTextError(f"an Ethernet frame is at least 14 bytes, got {len(raw)}")
    dst = int.from_bytes(raw[0:6], "big")
    src = int.from_bytes(raw[6:12], "big")
    (et,) = struct.unpack_from(">H", raw, 12)
    pos, vlan = 14, 0
    if et == ETHERTYPE_VLAN:
        if len(raw) < 18:
            raise FrameTextError("802.1Q frame too short")
        tci, et = struct.unpack_from(">HH", raw, 14)
        vlan, pos = tci & 0x0FFF, 18
    return ParsedFrame(src, dst, et, vlan, bytes(raw[pos:]))


def parse_hex(text: str) -> ParsedFrame:
    """A whole Ethernet frame in hex (spaces, colons and a 0x prefix allowed)."""
    t = text.strip()
    if t.lower().startswith("0x"):
        t = t[2:]
    t = "".join(ch for ch in t if ch not in " \t\r\n:-")
    try:
        raw = bytes.fromhex(t)
    except ValueError as e:
        raise FrameTextError(f"not hex: {e}") from e
    return parse_ethernet(raw)


def parse_pcap(path: str | Path, index: int = 0) -> ParsedFrame:
    """Record ``index`` (0-based) of a pcap or pcapng file of Ethernet frames."""
    from scapy.utils import PcapReader  # noqa: PLC0415 - scapy is slow to import; only here

    try:
        with PcapReader(str(path)) as reader:
            for i, pkt in enumerate(reader):
                if i == index:
                    return parse_ethernet(bytes(pkt))
    except (OSError, EOFError) as e:
        raise FrameTextError(f"cannot read {path}: {e}") from e
    except Exception as e:  # scapy raises its own Scapy_Exception for unreadable files
        raise FrameTextError(f"cannot read {path}: {e}") from e
    raise FrameTextError(f"{path} has no record {index}")


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bytes, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _literal(node.operand)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        a, b = _literal(node.left), _literal(node.right)
        if isinstance(a, (str, bytes)) and isinstance(b, int) and 0 <= b <= 65535:
            return a * b
        if isinstance(b, (str, bytes)) and isinstance(a, int) and 0 <= a <= 65535:
            return b * a
    raise FrameTextError(f"only literal values are allowed, not {ast.unparse(node)!r}")


def _layers(node: ast.AST) -> list[ast.Call]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _layers(node.left) + _layers(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return [node]
    raise FrameTextError(f"expected Layer(...)/Layer(...), got {ast.unparse(node)!r}")


def parse_frame_text(text: str) -> ParsedFrame:
    """A Scapy-style description such as ``IP(src="10.0.0.1")/TCP(dport=22)``;
    ``Ether()`` is added in front when missing."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise FrameTextError(f"not a frame expression: {e.msg}") from e
    calls = _layers(tree.body)
    import scapy.all as scapy  # noqa: PLC0415 - slow to import; only when needed

    pkt: Any = None
    ether_fields: dict[str, Any] = {}
    for i, call in enumerate(calls):
        name = call.func.id  # type: ignore[attr-defined]
        if name not in _LAYERS:
            raise FrameTextError(f"unknown or unsupported layer {name!r} (allowed: {', '.join(_LAYERS)})")
        args = [_literal(a) for a in call.args]
        kwargs: dict[str, Any] = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise FrameTextError("**arguments are not allowed")
            kwargs[kw.arg] = _literal(kw.value)
        if name == "Ether":
            if i != 0:
                raise FrameTextError("Ether() must come first")
            ether_fields = dict(kwargs)
            # Unset addresses get zeros here (Scapy would look up the host's routes);
            # the caller fills in the members' MACs.
            kwargs.setdefault("src", "00:00:00:00:00:00")
            kwargs.setdefault("dst", "00:00:00:00:00:00")
        try:
            layer = getattr(scapy, name)(*args, **kwargs)
        except Exception as e:  # scapy reports bad field values with assorted exceptions
            raise FrameTextError(f"{name}(...): {e}") from e
        if pkt is None and name != "Ether":
            pkt = scapy.Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") / layer
        else:
            pkt = layer if pkt is None else pkt / layer
    if pkt is None:
        raise FrameTextError("empty frame")
    try:
        raw = bytes(pkt)
    except Exception as e:  # building can fail on inconsistent fields
        raise FrameTextError(f"cannot build the frame: {e}") from e
    parsed = parse_ethernet(raw)
    return ParsedFrame(
        _mac_int(ether_fields["src"]) if "src" in ether_fields else None,
        _mac_int(ether_fields["dst"]) if "dst" in ether_fields else None,
        parsed.ethertype,
        parsed.vlan_id,
        parsed.payload,
    )
