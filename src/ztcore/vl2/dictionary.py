"""ZeroTier's Dictionary: the packed ``key=value`` text blob used for network
configurations, config request metadata and a few on-disk records.

Format (byte-exact with the core):

* entries are ``key=value`` separated by a single LF (0x0a); no trailing LF;
* keys are raw bytes and must not contain NUL, CR, LF or ``=``;
* in values the bytes NUL, CR, LF, ``\\`` and ``=`` are escaped as ``\\0``,
  ``\\r``, ``\\n``, ``\\\\`` and ``\\e``; every other byte (binary included) is
  stored as is, so the whole blob never contains a NUL and reads as a C string;
* when reading, a value ends at an unescaped CR, LF or NUL; ``\\`` followed by
  any byte other than ``r``/``n``/``0``/``e`` yields that byte;
* a dictionary has a fixed capacity C (bytes, including the terminating NUL),
  so its content is at most C-1 bytes; an ``add`` that would not fit is refused
  and leaves the dictionary unchanged;
* ``add`` never replaces: a repeated key is appended and ``get`` returns the
  first occurrence;
* integers are stored as 16 lowercase hex digits (negative ones as ``-`` plus
  16 hex digits of the magnitude), booleans as ``1``/``0``, and they are read
  back with C ``strtoull``/``strtoll`` semantics (leading junk tolerated).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ztcore.errors import InvalidFormatError

__all__ = [
    "DEFAULT_CAPACITY",
    "Dictionary",
    "encode_entry",
    "strtoll_hex",
    "strtoull_hex",
]

# A generous default for ad-hoc dictionaries; network configs use
# NETWORKCONFIG_DICT_CAPACITY from ztcore.vl2.netconf.
DEFAULT_CAPACITY = 8194

_U64_MAX = (1 << 64) - 1
_I64_MAX = (1 << 63) - 1
_I64_MIN = -(1 << 63)

_ESCAPE_OUT = {0: b"\\0", 13: b"\\r", 10: b"\\n", 0x5C: b"\\\\", 0x3D: b"\\e"}
_ESCAPE_IN = {ord("r"): 13, ord("n"): 10, ord("0"): 0, ord("e"): 0x3D}
_FORBIDDEN_KEY_BYTES = frozenset((0, 10, 13, 0x3D))
_HEXDIGITS = b"0123456789abcdefABCDEF"
_SPACE = b" \t\n\v\f\r"


def _strto_hex(text: bytes) -> tuple[int, bool, bool]:
    """Shared part of C strtoull/strtoll with base 16: (magnitude, negative, overflowed)."""
    i = 0
    n = len(text)
    while i < n and text[i] in _SPACE:
        i += 1
    neg = False
    if i < n and text[i] in b"+-":
        neg = text[i] == 0x2D
        i += 1
    # An optional 0x/0X prefix counts only if a hex digit follows it.
    if text[i : i + 2] in (b"0x", b"0X") and i + 2 < n and text[i + 2] in _HEXDIGITS:
        i += 2
    start = i
    while i < n and text[i] in _HEXDIGITS:
        i += 1
    if i == start:
        return 0, False, False
    value = int(text[start:i], 16)
    return value, neg, value > _U64_MAX


def strtoull_hex(text: bytes | str) -> int:
    """C ``strtoull(text, NULL, 16)``: junk-tolerant, saturates at 2**64-1, wraps negatives."""
    if isinstance(text, str):
        text = text.encode("latin-1", "replace")
    value, neg, overflow = _strto_hex(text)
    if overflow:
        return _U64_MAX
    return (-value) & _U64_MAX if neg else value


def strtoll_hex(text: bytes | str) -> int:
    """C ``strtoll(text, NULL, 16)``: junk-tolerant, saturates to the int64 range."""
    if isinstance(text, str):
        text = text.encode("latin-1", "replace")
    value, neg, _ = _strto_hex(text)
    if neg:
        return max(-value, _I64_MIN)
    return min(value, _I64_MAX)


def _check_key(key: str | bytes) -> bytes:
    kb = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not kb or _FORBIDDEN_KEY_BYTES.intersection(kb):
        raise InvalidFormatError(f"invalid dictionary key {key!r} (empty, or contains NUL/CR/LF/'=')")
    return kb


def _line_end(d: bytes | bytearray, p: int) -> int:
    """Index of the first CR or LF at or after `p`, or -1."""
    lf, cr = d.find(b"\n", p), d.find(b"\r", p)
    if lf < 0:
        return cr
    return lf if cr < 0 or lf < cr else cr


# A backslash and the byte after it (none at the end of a value: the escape is dropped).
_UNESCAPE_RE = re.compile(b"\\\\(.?)", re.S)


def _unescape_one(m: re.Match[bytes]) -> bytes:
    c = m.group(1)
    return bytes((_ESCAPE_IN.get(c[0], c[0]),)) if c else b""


_NEEDS_ESCAPE = re.compile(b"[\\x00\\r\\n\\\\=]")


def _escape(value: bytes) -> bytes:
    # Five passes in C instead of a Python step per byte: configs carry kilobytes of
    # binary credentials (many NULs), and a controller escapes one per config request.
    # The backslash goes first so that the escapes added after it stay as they are.
    if not _NEEDS_ESCAPE.search(value):
        return bytes(value)
    return (
        bytes(value)
        .replace(b"\\", b"\\\\")
        .replace(b"\x00", b"\\0")
        .replace(b"\r", b"\\r")
        .replace(b"\n", b"\\n")
        .replace(b"=", b"\\e")
    )


def _encode_value(value: str | bytes | bytearray | memoryview | bool | int) -> bytes:
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        if value < 0:
            if value < -_U64_MAX:
                raise InvalidFormatError(f"integer {value} does not fit in 64 bits")
            return b"-%016x" % (-value)
        if value > _U64_MAX:
            raise InvalidFormatError(f"integer {value} does not fit in 64 bits")
        return b"%016x" % value
    if isinstance(value, str):
        # The core adds strings as C strings: they end at the first NUL.
        return value.encode("utf-8").split(b"\x00", 1)[0]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"unsupported dictionary value type {type(value).__name__}")


def encode_entry(key: bytes, value: str | bytes | bytearray | memoryview | bool | int) -> bytes:
    """``key=value`` exactly as `Dictionary.add` appends it (without the separating LF), for
    writers that join a whole dictionary at once; ``key`` must be a valid key (not checked)."""
    return key + b"=" + _escape(_encode_value(value))


class Dictionary:
    """A Dictionary blob with the core's fixed capacity semantics.

    The object holds the serialized form; ``get`` scans it the way the core does,
    so lookups on received data behave exactly like the real parser.
    """

    __slots__ = ("_capacity", "_data")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError("dictionary capacity must be at least 2")
        self._capacity = capacity
        self._data = bytearray()

    # ------------------------------------------------------------ construction

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, capacity: int = DEFAULT_CAPACITY) -> Dictionary:
        """Load a serialized dictionary like the core's ``load()``.

        The content ends at the first NUL; anything beyond capacity-1 bytes is cut off
        (use ``fits`` first if truncation must be an error).
        """
        d = cls(capacity)
        raw = bytes(data)
        nul = raw.find(b"\x00")
        if nul >= 0:
            raw = raw[:nul]
        d._data = bytearray(raw[: capacity - 1])
        return d

    @staticmethod
    def fits(data: bytes | bytearray | memoryview, capacity: int = DEFAULT_CAPACITY) -> bool:
        """True if ``data`` (up to its first NUL) loads without truncation."""
        raw = bytes(data)
        nul = raw.find(b"\x00")
        return (nul if nul >= 0 else len(raw)) <= capacity - 1

    def to_bytes(self) -> bytes:
        """The serialized content, without the C terminating NUL."""
        return bytes(self._data)

    @property
    def capacity(self) -> int:
        return self._capacity

    def size_bytes(self) -> int:
        """Content size in bytes (what the core's ``sizeBytes()`` returns)."""
        return len(self._data)

    __len__ = size_bytes

    def __bool__(self) -> bool:
        return bool(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dictionary):
            return NotImplemented
        return self._data == other._data

    def __repr__(self) -> str:
        return f"Dictionary({bytes(self._data)!r})"

    def clear(self) -> None:
        self._data.clear()

    # ------------------------------------------------------------------- write

    def add(self, key: str | bytes, value: str | bytes | bytearray | memoryview | bool | int) -> bool:
        """Append ``key=value``; False (and no change) if it would exceed capacity.

        ``bytes`` are stored verbatim (escaped), ``str`` as UTF-8 up to its first NUL,
        ``bool`` as ``1``/``0``, ``int`` (including Address) as 16 hex digits.
        """
        kb = _check_key(key)
        entry = kb + b"=" + _escape(_encode_value(value))
        if self._data:
            entry = b"\n" + entry
        if len(self._data) + len(entry) > self._capacity - 1:
            return False
        self._data += entry
        return True

    # -------------------------------------------------------------------- read

    def get(self, key: str | bytes, max_len: int | None = None) -> bytes | None:
        """The first value stored under ``key`` (unescaped), or None if absent.

        ``max_len`` mimics the core's destination buffer: at most ``max_len``
        bytes are returned (the core's ``destlen`` is ``max_len + 1``).
        """
        kb = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        target = kb + b"="
        d = self._data
        p = 0
        # Line by line as the core scans, but with C-level searches: a line matches when
        # it starts with "key="; each CR or LF ends a line.
        while True:
            if d.startswith(target, p):
                return self._read_value(p + len(target), max_len)
            end = _line_end(d, p)
            if end < 0:
                return None
            p = end + 1

    def _read_value(self, p: int, max_len: int | None) -> bytes:
        d = self._data
        end = _line_end(d, p)
        raw = bytes(d[p:] if end < 0 else d[p:end])
        if 0x5C in raw:  # only escaped values need the slow path
            raw = _UNESCAPE_RE.sub(_unescape_one, raw)
        return raw if max_len is None else raw[:max_len]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, bytes)):
            return False
        return self.get(key, 1) is not None

    def get_str(self, key: str | bytes, default: str | None = None, max_len: int | None = None) -> str | None:
        """Value as text (UTF-8, undecodable bytes replaced), or ``default`` if absent."""
        v = self.get(key, max_len)
        if v is None:
            return default
        return v.decode("utf-8", "replace")

    def get_bool(self, key: str | bytes, default: bool = False) -> bool:
        """Like the core's ``getB``: true if the value starts with 1, t or T."""
        v = self.get(key, 3)
        if v is None:
            return default
        return v[:1] in (b"1", b"t", b"T")

    def get_uint(self, key: str | bytes, default: int = 0) -> int:
        """Like the core's ``getUI``: hex uint64; ``default`` if absent or empty."""
        v = self.get(key, 127)
        if not v:
            return default
        return strtoull_hex(v)

    def get_int(self, key: str | bytes, default: int = 0) -> int:
        """Like the core's ``getI``: signed hex int64; ``default`` if absent or empty."""
        v = self.get(key, 127)
        if not v:
            return default
        return strtoll_hex(v)

    # --------------------------------------------------------------- iteration

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) entry in order, duplicates included.

        Lines without ``=`` are skipped, as ``get`` can never return them.
        """
        d = bytes(self._data)
        p = 0
        n = len(d)
        while p < n:
            end = p
            while end < n and d[end] not in (10, 13):
                end += 1
            line = d[p:end]
            eq = line.find(b"=")
            if eq > 0:
                yield line[:eq], self._read_value(p + eq + 1, None)
            p = end + 1

    def keys(self) -> list[bytes]:
        return [k for k, _ in self.items()]

    def to_dict(self) -> dict[str, bytes]:
        """First value for each key, keys decoded as UTF-8."""
        out: dict[str, bytes] = {}
        for k, v in self.items():
            out.setdefault(k.decode("utf-8", "replace"), v)
        return out
