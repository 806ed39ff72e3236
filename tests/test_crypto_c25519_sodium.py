"""C25519 on libsodium against the `cryptography` reference, and the edge cases on
which signature verifiers differ.

The libsodium path (`ztcore.crypto.c25519`, the one a node uses) must give
byte-identical public keys, agreements and signatures (Ed25519 is deterministic)
to the reference for random keys and the real core's vectors, and accept or
reject exactly the same signatures on ordinary input. Where verifiers differ
(unreduced S, small-order or non-canonical keys) the expected answer is pinned
here, with what the real core's verify (node/C25519.cpp, 1.14.1) does beside it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from test_crypto import VECTORS
from ztcore.crypto import c25519
from ztcore.crypto._sodium import PREPARSED
from ztcore.crypto.c25519 import (
    c25519_agree,
    c25519_agree_ref,
    c25519_public_from_private,
    c25519_public_from_private_ref,
    c25519_sign,
    c25519_sign_ref,
    c25519_verify,
    c25519_verify_ref,
)
from ztcore.crypto.symmetric import sha512

P = 2**255 - 19  # field prime
L = 2**252 + 27742317777372353535851937790883648493  # order of the Ed25519 base point


def le32(n: int) -> bytes:
    return n.to_bytes(32, "little")


def test_the_node_uses_libsodium() -> None:
    # If this fails, every test below compares the reference with itself.
    assert c25519.HAVE_SODIUM_C25519


def test_public_keys_match_the_reference_for_random_private_keys() -> None:
    for _ in range(200):
        private = os.urandom(64)
        assert c25519_public_from_private(private) == c25519_public_from_private_ref(private)


def test_agreements_match_the_reference_for_random_keys() -> None:
    for n in range(100):
        pub1, priv1 = c25519.c25519_generate()
        pub2, priv2 = c25519.c25519_generate()
        key_len = (32, 48, 64, 100)[n % 4]
        agreed = c25519_agree(priv1, pub2, key_len)
        assert len(agreed) == key_len
        assert agreed == c25519_agree_ref(priv1, pub2, key_len) == c25519_agree(priv2, pub1, key_len)


def test_signatures_match_the_reference_byte_for_byte() -> None:
    rng = random.Random(13)
    for n in range(100):
        pub, priv = c25519.c25519_generate()
        message = rng.randbytes(rng.choice((0, 1, 32, 64, 1000, 5000)))
        sig = c25519_sign(priv, message)
        assert sig == c25519_sign_ref(priv, message)
        assert c25519_verify(pub, message, sig) and c25519_verify_ref(pub, message, sig)
        # Buffers other than bytes are accepted too (callers pass bytearray / memoryview).
        if n % 10 == 0:
            assert c25519_sign(bytearray(priv), memoryview(message)) == sig


@pytest.mark.parametrize("k", range(32))
def test_real_core_vectors_on_both_paths(k: int) -> None:
    pub1, priv1, pub2, priv2, agreement, sig1, sig2 = VECTORS[k]
    for public, agree, sign, verify in (
        (c25519_public_from_private, c25519_agree, c25519_sign, c25519_verify),
        (c25519_public_from_private_ref, c25519_agree_ref, c25519_sign_ref, c25519_verify_ref),
    ):
        assert public(priv1) == pub1 and public(priv2) == pub2
        assert agree(priv1, pub2, 64) == agreement == agree(priv2, pub1, 64)
        assert sign(priv1, agreement) == sig1 and sign(priv2, agreement) == sig2
        assert verify(pub1, agreement, sig1) and not verify(pub2, agreement, sig1)


def test_verify_agrees_with_the_reference_on_tampered_wrong_key_and_malformed_input() -> None:
    rng = random.Random(5)
    other_pub, _ = c25519.c25519_generate()
    pub, priv = c25519.c25519_generate()
    message = rng.randbytes(300)
    sig = c25519_sign(priv, message)
    cases: list[tuple[bytes, bytes, bytes]] = [
        (pub, message, sig),
        (other_pub, message, sig),
        (pub, message + b"x", sig),
        (pub, message, sig[:95]),
        (pub, message, sig + b"\x00"),
        (pub, message, b""),
        (pub[:63], message, sig),
        (bytes(64), message, sig),
        (b"\xff" * 64, message, sig),
        (pub, message, bytes(96)),
    ]
    for _ in range(300):
        bad = bytearray(sig)
        bad[rng.randrange(96)] ^= 1 << rng.randrange(8)
        cases.append((pub, message, bytes(bad)))
        bad_key = bytearray(pub)
        bad_key[32 + rng.randrange(32)] ^= 1 << rng.randrange(8)
        cases.append((bytes(bad_key), message, sig))
    for public, msg, signature in cases:
        assert c25519_verify(public, msg, signature) == c25519_verify_ref(public, msg, signature)
    assert sum(c25519_verify(*case) for case in cases) == 1  # only the untouched signature


# X25519 u-coordinates of small order (and non-canonical encodings of them): the
# shared secret is all zero whatever our key, so agreement refuses them on both paths.
SMALL_ORDER_U = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    P - 1,
    P,
    P + 1,
]


@pytest.mark.parametrize("u", SMALL_ORDER_U)
def test_agreement_refuses_small_order_peer_keys_on_both_paths(u: int) -> None:
    _, priv = c25519.c25519_generate()
    for agree in (c25519_agree, c25519_agree_ref):
        with pytest.raises(ValueError):
            agree(priv, le32(u) + bytes(32), 48)


def test_unreduced_s_is_rejected() -> None:
    # S + L verifies in the real core (it reduces S modulo L before use); libsodium
    # and OpenSSL refuse it, as ztcore does: no honest signer produces it, and
    # accepting it would make signatures malleable.
    pub, priv = c25519.c25519_generate()
    sig = c25519_sign(priv, b"hello")
    s = int.from_bytes(sig[32:64], "little")
    assert s < L
    malleated = sig[:32] + le32(s + L) + sig[64:]
    assert not c25519_verify(pub, b"hello", malleated)
    assert not c25519_verify_ref(pub, b"hello", malleated)


IDENTITY_POINT = le32(1)  # (x, y) = (0, 1), order 1
IDENTITY_SIGN_BIT = le32(1 | 1 << 255)  # same point with the sign bit set
IDENTITY_UNREDUCED = le32(P + 1)  # y = p + 1 = 1 mod p, not reduced


@pytest.mark.parametrize("ed_public", [IDENTITY_POINT, IDENTITY_SIGN_BIT, IDENTITY_UNREDUCED])
def test_a_small_order_key_cannot_sign_everything(ed_public: bytes) -> None:
    # With A the identity point, R = identity and S = 0 satisfy S*B = R + h*A for
    # every message: the key signs anything for anyone. The real core's verify
    # (no order or canonical checks on A) and OpenSSL accept it; libsodium and so
    # ztcore refuse the key. A real identity never has one (keys come from a hash).
    public = bytes(32) + ed_public
    for message in (b"hello", b"anything else"):
        forged = IDENTITY_POINT + le32(0) + sha512(message)[:32]
        assert not c25519_verify(public, message, forged)
    if ed_public == IDENTITY_POINT:
        assert c25519_verify_ref(public, b"hello", IDENTITY_POINT + le32(0) + sha512(b"hello")[:32])


def test_a_non_canonical_r_is_rejected_everywhere() -> None:
    # The real core compares R's bytes with the canonical encoding it computes.
    public = bytes(32) + IDENTITY_POINT
    forged = IDENTITY_UNREDUCED + le32(0) + sha512(b"hello")[:32]
    assert not c25519_verify(public, b"hello", forged)
    assert not c25519_verify_ref(public, b"hello", forged)


def test_reference_fallback_when_libsodium_lacks_the_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    pub1, priv1, pub2, _priv2, agreement, sig1, _sig2 = VECTORS[3]
    monkeypatch.setattr(c25519, "HAVE_SODIUM_C25519", False)
    monkeypatch.setattr(c25519, "_public_from_private_sodium", None)  # a call would fail loudly
    monkeypatch.setattr(c25519, "_agree_sodium", None)
    monkeypatch.setattr(c25519, "_sign_sodium", None)
    monkeypatch.setattr(c25519, "_verify_sodium", None)
    assert c25519_public_from_private(priv1) == pub1
    assert c25519_agree(priv1, pub2, 64) == agreement
    assert c25519_sign(priv1, agreement) == sig1
    assert c25519_verify(pub1, agreement, sig1)


def test_wrong_private_key_length_is_a_value_error() -> None:
    for bad in (b"", bytes(63), bytes(65)):
        with pytest.raises(ValueError):
            c25519_public_from_private(bad)
        with pytest.raises(ValueError):
            c25519_sign(bad, b"x")


def test_node_crypto_does_not_import_cryptography_or_pycparser() -> None:
    # Everything an idle node does with keys and packets, in a fresh interpreter.
    code = """
import sys
from ztcore.identity import Identity
from ztcore.crypto.aes_gmac_siv import AesGmacSiv
from ztcore.crypto.armor import armor_poly, dearmor_poly
import ztcore.vl1.packet, ztcore.node
a = Identity.generate(); b = Identity.generate()
assert Identity.from_string(str(a.public())).validate()
k = a.agree(b); assert k == b.agree(a)
assert b.public().verify(b"m", b.sign(b"m"))
siv = AesGmacSiv(k[:32], k[16:48])
assert siv.dearmor(siv.armor(1, 2, 3, 0x18, 6, b"x" * 100)) == (6, b"x" * 100)
assert dearmor_poly(k, armor_poly(k, 1, 2, 3, 0x08, 6, b"y")) == (6, b"y")
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"cryptography", "pycparser"})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = out.stdout.split()
    assert "cryptography" not in loaded
    if PREPARSED:  # the build step ran (pip install): the declarations need no parser
        assert "pycparser" not in loaded
