"""TCP segments on the wire (RFC 9293 3.1): header, options and the checksum.

``TcpSegment`` is the value the state machine in ``ztcore.netstack.tcp``
consumes and produces; ``parse_tcp`` / ``build_tcp`` turn it into bytes and
back, with the pseudo-header checksum of IPv4 or IPv6 (4- or 16-byte
addresses). Options understood: MSS, window scale (RFC 7323), SACK-permitted
and SACK blocks (RFC 2018), timestamps (parsed, not sent); unknown options
are skipped by their length, as RFC 9293 3.2 requires.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ztcore.errors import InvalidFormatError
from ztcore.netstack.frames import ChecksumError, _pseudo_header, checksum_valid, internet_checksum

IPPROTO_TCP = 6

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8

_HEADER = struct.Struct("!HHIIBBHHH")

_FLAG_NAMES = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "A"), (URG, "U"))


@dataclass
class TcpSegment:
    """One TCP segment; ``flags`` is the byte of RFC 9293 control bits."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int  # the raw 16-bit field (unscaled)
    payload: bytes = b""
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: list[tuple[int, int]] = field(default_factory=list)
    timestamps: tuple[int, int] | None = None
    urgent: int = 0

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies: data plus one for SYN and one for FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    def flag_str(self) -> str:
        return "".join(name for bit, name in _FLAG_NAMES if self.flags & bit) or "."

    def __repr__(self) -> str:
        return (
            f"<TcpSegment {self.src_port}->{self.dst_port} [{self.flag_str()}] seq={self.seq} "
            f"ack={self.ack} win={self.window} len={len(self.payload)}>"
        )


def _parse_options(seg: TcpSegment, opts: bytes) -> None:
    i = 0
    n = len(opts)
    while i < n:
        kind = opts[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise InvalidFormatError("truncated TCP option")
        length = opts[i + 1]
        if length < 2 or i + length > n:
            raise InvalidFormatError("bad TCP option length")
        body = opts[i + 2 : i + length]
        if kind == OPT_MSS and length == 4:
            seg.mss = int.from_bytes(body, "big")
        elif kind == OPT_WSCALE and length == 3:
            seg.wscale = min(body[0], 14)  # RFC 7323 2.3: larger shifts are treated as 14
        elif kind == OPT_SACK_PERMITTED and length == 2:
            seg.sack_permitted = True
        elif kind == OPT_SACK and length >= 10 and (length - 2) % 8 == 0:
            seg.sack_blocks = [struct.unpack_from("!II", body, j) for j in range(0, len(body), 8)]
        elif kind == OPT_TIMESTAMPS and length == 10:
            seg.timestamps = struct.unpack("!II", body)
        i += length


def parse_tcp(src: bytes, dst: bytes, data: bytes) -> TcpSegment:
    """Parse and checksum-verify a TCP segment carried between ``src`` and ``dst``."""
    if len(data) < 20:
        raise InvalidFormatError("TCP segment shorter than its header")
    if not checksum_valid(_pseudo_header(src, dst, IPPROTO_TCP, len(data)) + data):
        raise ChecksumError("TCP checksum")
    sport, dport, seq, ack, off, flags, window, _ck, urgent = _HEADER.unpack_from(data)
    hlen = (off >> 4) * 4
    if hlen < 20 or hlen > len(data):
        raise InvalidFormatError("bad TCP data offset")
    seg = TcpSegment(sport, dport, seq, ack, flags, window, bytes(data[hlen:]), urgent=urgent)
    if hlen > 20:
        _parse_options(seg, data[20:hlen])
    return seg


def _options(seg: TcpSegment) -> bytes:
    out = b""
    if seg.mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, seg.mss)
    if seg.sack_permitted:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
    if seg.wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, seg.wscale))
    if seg.timestamps is not None:
        out += bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10)) + struct.pack("!II", *seg.timestamps)
    if seg.sack_blocks:
        blocks = seg.sack_blocks[:3]
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks)))
        for left, right in blocks:
            out += struct.pack("!II", left, right)
    if len(out) % 4:
        out += bytes(4 - len(out) % 4)  # EOL padding
    return out


def build_tcp(src: bytes, dst: bytes, seg: TcpSegment) -> bytes:
    """The segment's bytes with its checksum over the ``src``/``dst`` pseudo-header."""
    opts = (
        _options(seg)
        if (seg.mss or seg.wscale is not None or seg.sack_permitted or seg.sack_blocks or seg.timestamps)
        else b""
    )
    hlen = 20 + len(opts)
    header = _HEADER.pack(
        seg.src_port,
        seg.dst_port,
        seg.seq & 0xFFFFFFFF,
        seg.ack & 0xFFFFFFFF,
        (hlen // 4) << 4,
        seg.flags,
        seg.window,
        0,
        seg.urgent,
    )
    body = header + opts + seg.payload
    ck = internet_checksum(_pseudo_header(src, dst, IPPROTO_TCP, len(body)) + body)
    return body[:16] + ck.to_bytes(2, "big") + body[18:]
