"""Dictionary: the core's escaping, separators, capacity and getter semantics (Dictionary.hpp)."""

from __future__ import annotations

import random

import pytest

from ztcore.errors import InvalidFormatError
from ztcore.identity import Address
from ztcore.vl2.dictionary import Dictionary, strtoll_hex, strtoull_hex


def test_entries_are_lf_separated_without_trailing_newline() -> None:
    d = Dictionary()
    assert d.add("a", "1")
    assert d.add("bb", "two")
    assert d.to_bytes() == b"a=1\nbb=two"
    assert d.size_bytes() == 10
    assert d.get("a") == b"1"
    assert d.get("bb") == b"two"
    assert d.get("c") is None


def test_escaping_of_the_five_special_bytes() -> None:
    d = Dictionary()
    d.add("k", b"\x00\r\n\\=x")
    # NUL -> \0, CR -> \r, LF -> \n, backslash -> \\, '=' -> \e; other bytes verbatim
    assert d.to_bytes() == b"k=\\0\\r\\n\\\\\\ex"
    assert d.get("k") == b"\x00\r\n\\=x"


def test_every_byte_value_round_trips_and_blob_has_no_nul() -> None:
    value = bytes(range(256)) * 2
    d = Dictionary()
    d.add("bin", value)
    d.add("after", "ok")
    raw = d.to_bytes()
    assert b"\x00" not in raw
    # Only the escaped bytes grow: 5 special bytes, each present twice, +1 byte each.
    assert len(raw) == len(b"bin=") + 512 + 10 + len(b"\nafter=ok")
    assert d.get("bin") == value
    assert d.get("after") == b"ok"


def test_unknown_escape_yields_the_escaped_byte_itself() -> None:
    d = Dictionary.from_bytes(b"k=a\\xb\\\\c\\e")
    assert d.get("k") == b"axb\\c="


def test_cr_and_lf_both_end_values_and_lines() -> None:
    d = Dictionary.from_bytes(b"a=1\r\nb=2\rc=3")
    assert d.get("a") == b"1"
    assert d.get("b") == b"2"
    assert d.get("c") == b"3"


def test_raw_equals_sign_inside_value_is_kept_when_reading() -> None:
    assert Dictionary.from_bytes(b"k=a=b").get("k") == b"a=b"


def test_first_occurrence_wins_and_add_appends() -> None:
    d = Dictionary()
    d.add("k", "first")
    d.add("k", "second")
    assert d.to_bytes() == b"k=first\nk=second"
    assert d.get("k") == b"first"
    assert list(d.items()) == [(b"k", b"first"), (b"k", b"second")]


def test_key_prefixes_do_not_match() -> None:
    d = Dictionary.from_bytes(b"ab=1\nabc=2\nb=3")
    assert d.get("abc") == b"2"
    assert d.get("ab") == b"1"
    assert d.get("a") is None
    assert "b" in d and "bc" not in d


def test_empty_value_is_present_but_getters_use_defaults() -> None:
    d = Dictionary.from_bytes(b"e=\nx=1")
    assert d.get("e") == b""
    assert "e" in d
    assert d.get_uint("e", 7) == 7  # the core needs at least one byte for getUI
    assert d.get_bool("e", True) is False  # but getB only needs the key


def test_integer_and_boolean_encodings() -> None:
    d = Dictionary()
    d.add("u", 255)
    d.add("z", 0)
    d.add("neg", -1)
    d.add("max", (1 << 64) - 1)
    d.add("t", True)
    d.add("f", False)
    d.add("addr", Address(0x1122334455))  # an Address is added as a 64-bit hex integer
    assert d.to_bytes() == (
        b"u=00000000000000ff\nz=0000000000000000\nneg=-0000000000000001\n"
        b"max=ffffffffffffffff\nt=1\nf=0\naddr=0000001122334455"
    )
    assert d.get_uint("u") == 255
    assert d.get_int("neg") == -1
    assert d.get_uint("neg") == (1 << 64) - 1  # strtoull wraps negative input
    assert d.get_uint("max") == (1 << 64) - 1
    assert d.get_bool("t") is True and d.get_bool("f") is False
    with pytest.raises(InvalidFormatError):
        d.add("big", 1 << 64)


@pytest.mark.parametrize(
    ("text", "u", "i"),
    [
        (b"ff", 0xFF, 0xFF),
        (b"  0x1Fzz", 0x1F, 0x1F),
        (b"0x", 0, 0),
        (b"zz", 0, 0),
        (b"-10", (1 << 64) - 16, -16),
        (b"+a", 10, 10),
        (b"1" * 20, (1 << 64) - 1, (1 << 63) - 1),
        (b"-" + b"f" * 20, (1 << 64) - 1, -(1 << 63)),
    ],
)
def test_strtoull_strtoll_semantics(text: bytes, u: int, i: int) -> None:
    assert strtoull_hex(text) == u
    assert strtoll_hex(text) == i


@pytest.mark.parametrize(
    ("value", "expected"), [(b"1", True), (b"true", True), (b"T", True), (b"0", False), (b"no", False)]
)
def test_get_bool_reads_first_character(value: bytes, expected: bool) -> None:
    d = Dictionary()
    d.add("b", value)
    assert d.get_bool("b") is expected


def test_capacity_counts_escapes_and_leaves_room_for_nul() -> None:
    d = Dictionary(capacity=10)
    assert d.add("a", "1234567")  # "a=1234567" is 9 bytes = capacity - 1
    assert not d.add("b", "")  # "\nb=" would not fit
    assert d.to_bytes() == b"a=1234567"
    d2 = Dictionary(capacity=10)
    assert not d2.add("a", b"12345\n7")  # the escape makes it 10 bytes
    assert d2.to_bytes() == b""
    assert d2.add("a", b"1234\n")
    assert d2.to_bytes() == b"a=1234\\n"


def test_get_max_len_mimics_destination_buffer() -> None:
    d = Dictionary.from_bytes(b"k=abcdef")
    assert d.get("k", 3) == b"abc"
    assert d.get("k") == b"abcdef"


def test_load_stops_at_nul_and_truncates_to_capacity() -> None:
    assert Dictionary.from_bytes(b"a=1\x00b=2").get("b") is None
    d = Dictionary.from_bytes(b"a=123456789", capacity=6)
    assert d.to_bytes() == b"a=123"
    assert not Dictionary.fits(b"a=123456789", capacity=6)
    assert Dictionary.fits(b"a=123", capacity=6)


@pytest.mark.parametrize("key", ["", "a=b", "a\nb", "a\rb", "a\x00b"])
def test_invalid_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidFormatError):
        Dictionary().add(key, "v")


def test_str_values_end_at_nul_like_c_strings() -> None:
    d = Dictionary()
    d.add("s", "ab\x00cd")
    assert d.get("s") == b"ab"


def test_malformed_blobs_never_raise() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        blob = bytes(rng.choice(b"ab=\\\r\n0e\x01\xff") for _ in range(rng.randrange(0, 60)))
        d = Dictionary.from_bytes(blob)
        for key in ("a", "b", "ab", "0"):
            v = d.get(key)
            assert v is None or isinstance(v, bytes)
        list(d.items())


def test_random_round_trips_like_the_core_selftest() -> None:
    # Same alphabet as the core's Dictionary fuzz test: digits plus NUL, TAB, CR, LF, '=' and space.
    rng = random.Random(99)
    alphabet = b"0123456789\x00\t\r\n= "
    for _ in range(50):
        d = Dictionary()
        values = {}
        for q in range(32):
            key = f"{rng.randrange(1000) + q * 1000:08x}"
            value = bytes(rng.choice(alphabet) for _ in range(rng.randrange(128)))
            values[key] = value
            assert d.add(key, value)
        for key, value in values.items():
            assert d.get(key) == value
        assert Dictionary.from_bytes(d.to_bytes()) == d


def test_escaping_matches_the_byte_by_byte_definition() -> None:
    """The fast escape (C-level replaces) equals escaping each byte on its own."""
    import random

    from ztcore.vl2.dictionary import _ESCAPE_OUT, _escape

    rng = random.Random(7)
    for n in range(400):
        value = bytes(rng.choice(b"\x00\r\n\\=ab\xff") if n % 2 else rng.randrange(256) for _ in range(n % 61))
        assert _escape(value) == b"".join(_ESCAPE_OUT.get(b, bytes((b,))) for b in value)


def _reference_get(d: bytes, kb: bytes, max_len: int | None) -> bytes | None:
    """The core's scanner, byte by byte (the algorithm Dictionary.get first had)."""
    from ztcore.vl2.dictionary import _ESCAPE_IN

    n, p = len(d), 0
    while p < n:
        k = 0
        while k < len(kb) and p < n and d[p] == kb[k]:
            k += 1
            p += 1
        if k == len(kb) and p < n and d[p] == 0x3D:
            p += 1
            out, esc = bytearray(), False
            while p < n and d[p] not in (10, 13):
                c = d[p]
                if esc:
                    esc = False
                    out.append(_ESCAPE_IN.get(c, c))
                elif c == 0x5C:
                    esc = True
                else:
                    out.append(c)
                if max_len is not None and len(out) >= max_len:
                    return bytes(out[:max_len])
                p += 1
            return bytes(out)
        while p < n and d[p] not in (10, 13):
            p += 1
        p += 1
    return None


def test_lookup_matches_the_byte_by_byte_scanner() -> None:
    """The C-level line search and unescape give what the core's scanner gives."""
    import random

    rng = random.Random(11)
    alphabet = b"ab=\\\r\n0rne\x00x"
    for _ in range(3000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        d = Dictionary.from_bytes(raw)
        for key in (b"a", b"ab", b"b", b"x", b"abx"):
            max_len = rng.choice((None, 1, 3, 8))
            content = raw.split(b"\x00", 1)[0]  # the core loads up to the first NUL
            assert d.get(key, max_len) == _reference_get(content, key, max_len), (raw, key, max_len)
