"""The rules language's words: vocabulary, tokenizer and the JS compiler's number reading.

Owns what `ztcore.vl2.rules.compiler` builds on: the keyword tables of
ZeroTier's ``rule-compiler.js`` (match keywords, reserved words, characteristic,
ethertype and protocol names), the split of a script into words and ';'-closed
blocks exactly as that compiler splits it, the way it reads numbers (JavaScript's
parseInt / parseFloat / 32-bit conversions), and `RulesCompileError`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ztcore.errors import InvalidFormatError

__all__ = [
    "BLOCK_OPENERS",
    "CHARACTERISTIC_BITS",
    "ETHERTYPE_NAMES",
    "IP_PROTOCOL_NAMES",
    "MATCH_KEYWORDS",
    "RESERVED_WORDS",
    "Block",
    "Item",
    "RulesCompileError",
    "Word",
    "clean_hex",
    "clean_mac",
    "error_at",
    "first_word",
    "ip_family",
    "is_valid_name",
    "js_float",
    "js_parse_int",
    "parse_number",
    "split_blocks",
    "to_int32",
    "to_uint32",
    "word_text",
]

_U32 = 0xFFFFFFFF

# Bit positions of the packet characteristics `chr` can name (bit 63 = the u64's top bit).
CHARACTERISTIC_BITS: dict[str, int] = {
    "inbound": 63,
    "multicast": 62,
    "broadcast": 61,
    "ipauth": 60,
    "macauth": 59,
    "tcp_fin": 0,
    "tcp_syn": 1,
    "tcp_rst": 2,
    "tcp_psh": 3,
    "tcp_ack": 4,
    "tcp_urg": 5,
    "tcp_ece": 6,
    "tcp_cwr": 7,
    "tcp_ns": 8,
    "tcp_rs2": 9,
    "tcp_rs1": 10,
    "tcp_rs0": 11,
}

# Names `ethertype` and `ipprotocol` accept (case-sensitive, as in the JS).
ETHERTYPE_NAMES: dict[str, int] = {
    "ipv4": 0x0800,
    "arp": 0x0806,
    "wol": 0x0842,
    "rarp": 0x8035,
    "ipv6": 0x86DD,
    "atalk": 0x809B,
    "aarp": 0x80F3,
    "ipx_a": 0x8137,
    "ipx_b": 0x8138,
}
IP_PROTOCOL_NAMES: dict[str, int] = {
    "icmp": 1,
    "icmp4": 1,
    "icmpv4": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "egp": 8,
    "igp": 9,
    "udp": 17,
    "rdp": 27,
    "esp": 50,
    "ah": 51,
    "icmp6": 58,
    "icmpv6": 58,
    "l2tp": 115,
    "sctp": 132,
    "udplite": 136,
}

# Match keyword -> (controller rule type, number of arguments). ipsrc/ipdest pick v4 or v6 later.
MATCH_KEYWORDS: dict[str, tuple[str, int]] = {
    "ztsrc": ("MATCH_SOURCE_ZEROTIER_ADDRESS", 1),
    "ztdest": ("MATCH_DEST_ZEROTIER_ADDRESS", 1),
    "vlan": ("MATCH_VLAN_ID", 1),
    "vlanpcp": ("MATCH_VLAN_PCP", 1),
    "vlandei": ("MATCH_VLAN_DEI", 1),
    "ethertype": ("MATCH_ETHERTYPE", 1),
    "macsrc": ("MATCH_MAC_SOURCE", 1),
    "macdest": ("MATCH_MAC_DEST", 1),
    "ipsrc": ("MATCH_IPV4_SOURCE", 1),
    "ipdest": ("MATCH_IPV4_DEST", 1),
    "iptos": ("MATCH_IP_TOS", 2),
    "ipprotocol": ("MATCH_IP_PROTOCOL", 1),
    "icmp": ("MATCH_ICMP", 2),
    "sport": ("MATCH_IP_SOURCE_PORT_RANGE", 1),
    "dport": ("MATCH_IP_DEST_PORT_RANGE", 1),
    "chr": ("MATCH_CHARACTERISTICS", 1),
    "framesize": ("MATCH_FRAME_SIZE_RANGE", 1),
    "random": ("MATCH_RANDOM", 1),
    "tand": ("MATCH_TAGS_BITWISE_AND", 2),
    "tor": ("MATCH_TAGS_BITWISE_OR", 2),
    "txor": ("MATCH_TAGS_BITWISE_XOR", 2),
    "tdiff": ("MATCH_TAGS_DIFFERENCE", 2),
    "teq": ("MATCH_TAGS_EQUAL", 2),
    "tseq": ("MATCH_TAG_SENDER", 2),
    "treq": ("MATCH_TAG_RECEIVER", 2),
}

# Words that open a block closed by a word ending in ';' (case-sensitive, like the JS tokenizer).
BLOCK_OPENERS = frozenset(
    ("macro", "tag", "cap", "drop", "accept", "tee", "watch", "redirect", "break", "priority")
)
# Words that may not name a tag, capability or macro nor stand as a match argument.
RESERVED_WORDS = frozenset(
    (
        *BLOCK_OPENERS,
        "default",
        *MATCH_KEYWORDS,
        *("type", "enum", "class", "define", "import", "include", "log", "not", "xor", "or", "and"),
        *("set", "var", "let"),
    )
)

_WS = " \t\r\n"  # the only characters that separate words
# What JavaScript's parseInt/parseFloat skip before a number.
_JS_SPACE = "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_FLOAT = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_HEX_DIGITS = "0123456789abcdef"
# The JS tells IPv6 from IPv4 with unanchored searches: any "::", eight colon-separated
# hex groups, or a scoped fe80 address make it IPv6; four dotted octets make it IPv4.
_IPV6_SEARCH = re.compile(
    r"::|[0-9a-fA-F](?::[0-9a-fA-F]{1,4}){6}:[0-9a-fA-F]|fe80:(?::[0-9a-fA-F]{0,4}){0,4}%[0-9a-zA-Z]"
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[0-9]{1,2})"
_IPV4_SEARCH = re.compile(rf"[0-9]\.{_OCTET}\.{_OCTET}\.[0-9]")


class RulesCompileError(InvalidFormatError):
    """A rule script the compiler refuses: where (1-based line and column) and why.

    ``source`` names the included fragment the error is in (None: the script itself).
    """

    def __init__(self, line: int, column: int, message: str, source: str | None = None) -> None:
        self.line = line
        self.column = column
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}line {line}, column {column}: {message}")

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "message": self.message, "source": self.source}


@dataclass(frozen=True)
class Word:
    text: str
    line: int
    column: int
    source: str | None = None


class Block(list):  # type: ignore[type-arg]
    """Words (and nested blocks) between a block-opening keyword and the ';' that ends them."""


Item = "Word | Block"


# ----------------------------------------------------------------------------------- numbers


def js_parse_int(text: str, radix: int | None) -> int | None:
    """JavaScript's parseInt (radix None = decimal unless a 0x prefix); None for NaN."""
    s = text.lstrip(_JS_SPACE)
    negative = False
    if s and s[0] in "+-":
        negative = s[0] == "-"
        s = s[1:]
    if radix in (None, 16) and s[:2] in ("0x", "0X"):
        radix, s = 16, s[2:]
    radix = radix or 10
    allowed = _HEX_DIGITS[:radix]
    n = 0
    while n < len(s) and s[n].lower() in allowed and s[n].isascii():
        n += 1
    if n == 0:
        return None
    v = int(s[:n], radix)
    return -v if negative else v


def parse_number(text: str | None) -> int:
    """A number as the rules language reads it (decimal, or hex after 0x; leading digits
    count, the rest of the word is ignored); -1 when there is none."""
    if not text:
        return -1
    t = text.lower()
    v = js_parse_int(t[2:], 16) if len(t) > 2 and t.startswith("0x") else js_parse_int(t, 10)
    return -1 if v is None else v


def js_float(text: str) -> float:
    """JavaScript's ``parseFloat(text) || 0``."""
    m = _JS_FLOAT.match(text.lstrip(_JS_SPACE))
    if m is None:
        return 0.0
    v = float(m.group())
    return 0.0 if math.isnan(v) or v == 0 else v


def to_uint32(v: int) -> int:
    """A JS number (here an int that may exceed 2**53) as ToUint32 sees its double."""
    try:
        d = int(float(v))
    except OverflowError:
        return 0  # +-Infinity
    return d & _U32


def to_int32(v: int) -> int:
    u = to_uint32(v)
    return u - (1 << 32) if u & 0x80000000 else u


def is_valid_name(name: str) -> bool:
    """Can `name` name a tag, capability, macro, enum or flag (letters, digits, '_', no digit first)?"""
    if not name or name[0] in "0123456789":
        return False
    return all(c == "_" or "0" <= c <= "9" or unicodedata.category(c)[0] == "L" for c in name)


def ip_family(host: str) -> int | None:
    """6 or 4 for the address part of an ipsrc/ipdest argument, as the compiler classifies it
    (IPv6 wins; neither: None)."""
    if _IPV6_SEARCH.search(host):
        return 6
    return 4 if _IPV4_SEARCH.search(host) else None


def clean_hex(text: str) -> str:
    return "".join(c for c in text.lower() if c in _HEX_DIGITS)


def clean_mac(text: str) -> str:
    """Hex digits of `text` paired up as aa:bb:..., stopping at 17 characters."""
    out = ""
    pending = 0
    for c in text.lower():
        if len(out) >= 17:
            break
        if c in _HEX_DIGITS:
            out += c
            pending += 1
            if pending >= 2 and len(out) != 17:
                out += ":"
                pending = 0
    return out


# ----------------------------------------------------------------------------------- words


def split_blocks(src: str, source: str | None) -> tuple[Block, list[str]]:
    """Words grouped into blocks the way the JS tokenizer groups them.

    A word in `BLOCK_OPENERS` opens a block; a word ending in ';' closes the open
    block if that block holds something. Returns the top-level block and warnings
    about blocks left open at the end (which the JS silently drops).
    """
    stack: list[Block] = [Block()]
    line, col = 1, 0
    word: list[str] = []
    wline = wcol = 0
    comment = False

    def end_word() -> None:
        text = "".join(word)
        word.clear()
        closes = text.endswith(";")
        if closes:
            text = text[:-1]
        if text:
            stack[-1].append(Word(text, wline, wcol, source))
        if closes and len(stack) > 1 and stack[-1]:
            done = stack.pop()
            stack[-1].append(done)
        elif text in BLOCK_OPENERS:
            stack.append(Block())

    for ch in src:
        col += 1
        if comment:
            comment = ch not in "\r\n"
        elif ch in _WS:
            if word:
                end_word()
        elif not word and ch == "#":
            comment = True
        else:
            if not word:
                wline, wcol = line, col
            word.append(ch)
        if ch == "\n":
            line, col = line + 1, 0
    if word:  # the last word opens and closes nothing
        text = "".join(word)
        text = text[:-1] if text.endswith(";") else text
        if text:
            stack[-1].append(Word(text, wline, wcol, source))
    while len(stack) > 1 and stack[-1]:
        done = stack.pop()
        stack[-1].append(done)
    warnings = [
        f"{source + ': ' if source else ''}block opened at line {first_word(b).line}, column {first_word(b).column} "
        "is never closed with ';' and is ignored"
        for b in stack[1:]
        if b
    ]
    return stack[0], warnings


def first_word(item: Item) -> Word:
    while isinstance(item, Block):
        item = item[0]
    return item


def error_at(item: Item, message: str) -> RulesCompileError:
    w = first_word(item)
    return RulesCompileError(w.line, w.column, message, w.source)


def word_text(item: Item) -> str | None:
    return item.text if isinstance(item, Word) else None
