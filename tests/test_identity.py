"""Identities: known identities from the real core's self test, the memory-hard
hash (C kernel against the Python reference), text/binary forms as the core
serializes them, and robustness against malformed input."""

from __future__ import annotations

import os
import random

import pytest

from ztcore.crypto import c25519_public_from_private, c25519_verify, sha384
from ztcore.errors import InvalidFormatError, ZTError
from ztcore.identity import (
    HAVE_C_KERNEL,
    SYMMETRIC_KEY_SIZE,
    Address,
    Identity,
    memory_hard_hash,
    memory_hard_hash_py,
)

# From selftest.cpp (testIdentity): the first validates, the second differs only
# in its address's first digit and must not.
KNOWN_GOOD_IDENTITY = (
    "8e4df28b72:0:ac3d46abe0c21f3cfe7a6c8d6a85cfcffcb82fbd55af6a4d6350657c68200843fa2e16f9418bbd9702cae365f2af5fb4c420908b803a681d4daef6114d78a2d7"
    ":bd8dd6e4ce7022d2f812797a80c6ee8ad180dc4ebf301dec8b06d1be08832bddd63a2f1cfa7b2c504474c75bdc8898ba476ef92e8e2d0509f8441985171ff16e"
)
KNOWN_BAD_IDENTITY = "9" + KNOWN_GOOD_IDENTITY[1:]
KNOWN_GOOD_PUBLIC = KNOWN_GOOD_IDENTITY.rsplit(":", 1)[0]


@pytest.fixture(scope="module")
def good() -> Identity:
    return Identity.from_string(KNOWN_GOOD_IDENTITY)


@pytest.fixture(scope="module")
def generated() -> Identity:
    return Identity.generate()


# -- Address --------------------------------------------------------------------------


def test_address_forms() -> None:
    a = Address.parse("89E92CEEE5")
    assert a == 0x89E92CEEE5
    assert isinstance(a, int)
    assert str(a) == "89e92ceee5"
    assert f"{a}" == "89e92ceee5"
    assert repr(a) == "Address('89e92ceee5')"
    assert a.to_bytes() == bytes.fromhex("89e92ceee5")
    assert Address.from_bytes(b"\x00" + bytes.fromhex("89e92ceee5"), 1) == a
    assert str(Address(1)) == "0000000001"
    assert {a: 1}[Address(0x89E92CEEE5)] == 1


def test_address_reserved() -> None:
    assert Address(0).is_reserved()
    assert Address(0xFF00000000).is_reserved()
    assert Address(0xFFFFFFFFFF).is_reserved()
    assert not Address(0xFE00000000).is_reserved()
    assert not Address(0x0000000001).is_reserved()


@pytest.mark.parametrize(
    "bad", ["", "89e92ceee", "89e92ceee55", "89e92ceeeg", " 89e92ceee", "0x89e92cee", "８９e92ceee5"]
)
def test_address_parse_rejects(bad: str) -> None:
    with pytest.raises(InvalidFormatError):
        Address.parse(bad)


def test_address_range_and_short_bytes() -> None:
    with pytest.raises(InvalidFormatError):
        Address(1 << 40)
    with pytest.raises(InvalidFormatError):
        Address(-1)
    with pytest.raises(InvalidFormatError):
        Address.from_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(InvalidFormatError):
        Address.from_bytes(b"\x01\x02\x03\x04\x05", 1)


# -- the memory-hard hash ---------------------------------------------------------------


def test_reference_hash_derives_known_address() -> None:
    # Independent of the C kernel: the core's known-good identity must satisfy
    # hashcash and carry the hash's last 5 bytes as its address.
    public = bytes.fromhex(KNOWN_GOOD_IDENTITY.split(":")[2])
    digest = memory_hard_hash_py(public)
    assert len(digest) == 64
    assert digest[0] < 17
    assert digest[59:64] == bytes.fromhex("8e4df28b72")


@pytest.mark.skipif(not HAVE_C_KERNEL, reason="C kernel not built")
def test_c_kernel_matches_reference() -> None:
    keys = [bytes.fromhex(KNOWN_GOOD_IDENTITY.split(":")[2]), os.urandom(64), bytes(64)]
    for key in keys:
        assert memory_hard_hash(key) == memory_hard_hash_py(key)


def test_fallback_without_c_kernel(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from ztcore.identity import mhh

    key = bytes.fromhex(KNOWN_GOOD_IDENTITY.split(":")[2])
    monkeypatch.setattr(mhh, "_c_hash", None)
    monkeypatch.setattr(mhh, "_warned", False)
    with caplog.at_level("WARNING", logger="ztcore.identity.mhh"):
        first = mhh.memory_hard_hash(key)
        mhh.memory_hard_hash(os.urandom(64))
    assert first[59:64] == bytes.fromhex("8e4df28b72")
    assert sum("pure-Python" in r.getMessage() for r in caplog.records) == 1  # warned once


def test_hash_depends_on_every_key_bit() -> None:
    key = bytearray(bytes.fromhex(KNOWN_GOOD_IDENTITY.split(":")[2]))
    base = memory_hard_hash(bytes(key))
    key[63] ^= 1
    assert memory_hard_hash(bytes(key)) != base


# -- known identities -------------------------------------------------------------------


def test_known_good_identity_validates(good: Identity) -> None:
    assert good.address == Address(0x8E4DF28B72)
    assert good.has_private
    assert good.validate()
    # The stored private key belongs to the public key.
    assert c25519_public_from_private(good.private_key or b"") == good.public_key


def test_known_bad_identity_parses_but_fails() -> None:
    bad = Identity.from_string(KNOWN_BAD_IDENTITY)
    assert bad.address == Address(0x9E4DF28B72)
    assert not bad.validate()


def test_text_round_trip(good: Identity) -> None:
    assert good.to_string(include_private=True) == KNOWN_GOOD_IDENTITY
    assert good.to_string() == KNOWN_GOOD_PUBLIC
    assert str(good) == KNOWN_GOOD_PUBLIC
    public = Identity.from_string(KNOWN_GOOD_PUBLIC)
    assert not public.has_private
    assert public == good
    assert hash(public) == hash(good)
    assert public.validate()
    # Files end with a newline; upper-case hex is accepted, output is lower case.
    assert Identity.from_string("  " + KNOWN_GOOD_IDENTITY.upper() + "\n") == good
    assert Identity.from_string(KNOWN_GOOD_IDENTITY.encode()) == good


def test_binary_layout(good: Identity) -> None:
    # Identity::serialize: address(5) type(1)=0 public(64) privlen(1) [private(64)]
    pub = good.to_bytes()
    assert len(pub) == 71
    assert pub[:5] == bytes.fromhex("8e4df28b72")
    assert pub[5] == 0
    assert pub[6:70] == good.public_key
    assert pub[70] == 0
    full = good.to_bytes(include_private=True)
    assert len(full) == 135
    assert full[:70] == pub[:70]
    assert full[70] == 64
    assert full[71:] == good.private_key


def test_binary_round_trip(good: Identity) -> None:
    for include_private in (False, True):
        blob = good.to_bytes(include_private)
        framed = b"\xaa\xbb\xcc" + blob + b"trailing"
        parsed, used = Identity.from_bytes(framed, 3)
        assert used == len(blob)
        assert parsed == good
        assert parsed.has_private is include_private
        assert parsed.private_key == (good.private_key if include_private else None)
        assert Identity.from_bytes(bytearray(blob))[0] == good
        assert Identity.from_bytes(memoryview(blob))[0] == good


def test_public_copy(good: Identity) -> None:
    pub = good.public()
    assert pub == good and not pub.has_private and good.has_private
    assert pub.to_bytes(include_private=True) == good.to_bytes()
    assert pub.to_string(include_private=True) == KNOWN_GOOD_PUBLIC


def test_public_key_hash(good: Identity) -> None:
    assert good.public_key_hash() == sha384(bytes.fromhex("8e4df28b72") + good.public_key)


# -- generation -------------------------------------------------------------------------


def test_generated_identity(generated: Identity) -> None:
    assert generated.has_private
    assert generated.validate()
    digest = memory_hard_hash(generated.public_key)
    assert digest[0] < 17
    assert Address.from_bytes(digest, 59) == generated.address
    assert not generated.address.is_reserved()
    assert c25519_public_from_private(generated.private_key or b"") == generated.public_key
    again = Identity.from_string(generated.to_string(True))
    assert again == generated and again.private_key == generated.private_key and again.validate()
    assert Identity.from_bytes(generated.to_bytes(True))[0].validate()


def test_generated_identities_differ(generated: Identity) -> None:
    other = Identity.generate()
    assert other != generated
    assert other.address != generated.address


def test_tampered_public_key_fails_validation(good: Identity) -> None:
    rng = random.Random(3)
    for _ in range(8):
        key = bytearray(good.public_key)
        key[rng.randrange(64)] ^= 1 << rng.randrange(8)
        assert not Identity(good.address, bytes(key)).validate()


def test_reserved_address_never_validates(good: Identity) -> None:
    assert not Identity(Address(0), good.public_key).validate()
    assert not Identity(Address(0xFF8E4DF28B), good.public_key).validate()


# -- agreement and signatures -----------------------------------------------------------


def test_agree_symmetric(good: Identity, generated: Identity) -> None:
    k1 = good.agree(generated)
    k2 = generated.agree(good.public())
    assert len(k1) == SYMMETRIC_KEY_SIZE == 48
    assert k1 == k2
    third = Identity.generate()
    assert third.agree(good) != k1


def test_agree_needs_private_key(good: Identity, generated: Identity) -> None:
    with pytest.raises(ZTError):
        good.public().agree(generated)


def test_agree_degenerate_peer_key(good: Identity) -> None:
    # A low-order X25519 point gives an all-zero shared secret.
    zero_point = Identity(Address(0x0102030405), bytes(64))
    with pytest.raises(ZTError):
        good.agree(zero_point)


def test_sign_verify(good: Identity, generated: Identity) -> None:
    msg = b"ZeroTier identity signature test"
    sig = good.sign(msg)
    assert len(sig) == 96
    assert sig == good.sign(msg)  # deterministic
    assert good.verify(msg, sig)
    assert good.public().verify(msg, sig)
    assert c25519_verify(good.public_key, msg, sig)
    assert not good.verify(msg + b"!", sig)
    assert not generated.verify(msg, sig)
    for i in (0, 31, 32, 63, 64, 95):
        bad = bytearray(sig)
        bad[i] ^= 0x40
        assert not good.verify(msg, bytes(bad))
    assert not good.verify(msg, sig[:95])
    assert not good.verify(msg, b"")
    assert not good.verify(msg, None)  # type: ignore[arg-type]
    assert not good.verify(None, sig)  # type: ignore[arg-type]
    with pytest.raises(ZTError):
        good.public().sign(msg)


# -- malformed input --------------------------------------------------------------------

BAD_STRINGS = [
    "",
    ":",
    "::",
    "8e4df28b72",
    "8e4df28b72:0",
    "8e4df28b72:0:",
    KNOWN_GOOD_PUBLIC + ":",
    KNOWN_GOOD_IDENTITY + ":00",
    KNOWN_GOOD_PUBLIC[:-1],
    KNOWN_GOOD_PUBLIC + "0",
    KNOWN_GOOD_IDENTITY[:-2],
    KNOWN_GOOD_PUBLIC.replace(":0:", ":1:"),  # P-384 identities belong to later cores
    KNOWN_GOOD_PUBLIC.replace(":0:", ":00:"),
    KNOWN_GOOD_PUBLIC.replace(":0:", "::"),
    "0000000000" + KNOWN_GOOD_PUBLIC[10:],  # reserved address
    "ff4df28b72" + KNOWN_GOOD_PUBLIC[10:],  # reserved prefix
    "8e4df28b7" + KNOWN_GOOD_PUBLIC[10:],
    "x" + KNOWN_GOOD_PUBLIC[1:],
    KNOWN_GOOD_PUBLIC[:20] + "zz" + KNOWN_GOOD_PUBLIC[22:],
    KNOWN_GOOD_PUBLIC[:20] + "  " + KNOWN_GOOD_PUBLIC[22:],
    KNOWN_GOOD_PUBLIC[:20] + "é" + KNOWN_GOOD_PUBLIC[21:],
    "8e4df28b72:0:" + "00" * 64 + ":" + "11" * 63,
]


@pytest.mark.parametrize("text", BAD_STRINGS)
def test_from_string_rejects(text: str) -> None:
    with pytest.raises(InvalidFormatError):
        Identity.from_string(text)


def test_from_string_rejects_non_text() -> None:
    for junk in (None, 12345, b"\xff\xfe", ["8e4df28b72"]):
        with pytest.raises(InvalidFormatError):
            Identity.from_string(junk)  # type: ignore[arg-type]


def test_from_bytes_rejects(good: Identity) -> None:
    full = good.to_bytes(True)
    for n in list(range(0, 71)) + list(range(72, 135)):
        with pytest.raises(InvalidFormatError):
            Identity.from_bytes(full[:n])
    for type_byte in (1, 2, 0xFF):  # only type 0 exists on the 1.x wire
        with pytest.raises(InvalidFormatError):
            Identity.from_bytes(full[:5] + bytes((type_byte,)) + full[6:])
    for privlen in (1, 32, 63, 65, 255):
        with pytest.raises(InvalidFormatError):
            Identity.from_bytes(full[:70] + bytes((privlen,)) + full[71:] + bytes(200))
    with pytest.raises(InvalidFormatError):
        Identity.from_bytes(full, -1)
    with pytest.raises(InvalidFormatError):
        Identity.from_bytes(full, 100)
    with pytest.raises(InvalidFormatError):
        Identity.from_bytes("not bytes")  # type: ignore[arg-type]


def test_constructor_rejects_wrong_lengths(good: Identity) -> None:
    with pytest.raises(InvalidFormatError):
        Identity(good.address, good.public_key[:63])
    with pytest.raises(InvalidFormatError):
        Identity(good.address, good.public_key, b"\x00" * 65)
    with pytest.raises(InvalidFormatError):
        Identity(1 << 41, good.public_key)


def test_fuzz_text_forms_only_raise_invalid_format() -> None:
    rng = random.Random(1234)
    alphabet = "0123456789abcdefABCDEF:xyz \t\n-é\x00"
    accepted = 0
    for _ in range(3000):
        s = list(KNOWN_GOOD_IDENTITY if rng.random() < 0.5 else KNOWN_GOOD_PUBLIC)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            pos = rng.randrange(len(s) + 1)
            if op == 0 and s:
                del s[min(pos, len(s) - 1)]
            elif op == 1:
                s.insert(pos, rng.choice(alphabet))
            elif op == 2 and s:
                s[min(pos, len(s) - 1)] = rng.choice(alphabet)
            else:
                s = s[:pos]
        text = "".join(s)
        try:
            ident = Identity.from_string(text)
        except InvalidFormatError:
            continue
        accepted += 1
        assert len(ident.public_key) == 64
        assert ident.to_string(True).lower() == text.strip().lower()
    assert accepted > 0  # same-length hex substitutions keep the format valid


def test_fuzz_binary_forms_only_raise_invalid_format(good: Identity) -> None:
    rng = random.Random(99)
    full = good.to_bytes(True)
    for _ in range(3000):
        kind = rng.randrange(3)
        if kind == 0:
            blob = os.urandom(rng.randrange(0, 200))
        elif kind == 1:
            blob = full[: rng.randrange(len(full) + 1)]
        else:
            b = bytearray(full)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            blob = bytes(b)
        try:
            ident, used = Identity.from_bytes(blob)
        except InvalidFormatError:
            continue
        assert used in (71, 135) and used <= len(blob)
        assert ident.to_bytes(ident.has_private) == blob[:used]


def test_validate_never_raises_on_mutants(good: Identity) -> None:
    rng = random.Random(5)
    mutants = 0
    for _ in range(20):
        b = bytearray(good.to_bytes())
        b[rng.randrange(70)] ^= 1 << rng.randrange(8)
        try:
            ident, _ = Identity.from_bytes(bytes(b))
        except InvalidFormatError:
            continue
        mutants += 1
        assert ident.validate() is False
    assert mutants > 10


def test_validation_is_remembered_for_this_process_and_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A validated (or generated) identity is not hashed again; forgeries never enter the cache."""
    from ztcore.identity import identity as mod

    calls = []
    real = mod.memory_hard_hash
    monkeypatch.setattr(mod, "memory_hard_hash", lambda k: calls.append(1) or real(k))
    generated = Identity.generate()
    hashed = len(calls)
    assert generated.known_valid() and generated.public().validate()
    assert len(calls) == hashed  # generated here: no second hash
    other = Identity.from_string(Identity.generate().to_string())  # a copy, as received in a HELLO
    assert other.validate() and other.known_valid()
    # Same address, another key: not known, hashed, and invalid.
    forged = Identity(generated.address, bytes(64))
    before = len(calls)
    assert not forged.known_valid() and not forged.validate() and len(calls) == before + 1
    assert not forged.known_valid()
    monkeypatch.setattr(mod, "VALIDATED_CACHE_MAX", 2)
    a, _b, c = Identity.generate(), Identity.generate(), Identity.generate()
    assert len(mod._VALIDATED) <= 2 and c.known_valid() and not a.known_valid()
