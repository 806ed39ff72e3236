"""The one-call-per-packet armor kernel (ztcore.crypto._armor) against the
pure-Python reference and the real core's known answers: byte-identical output
for every suite, random keys and payload lengths 0..3000, every tampered byte
rejected by both, bad input never crashes."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable

import lz4.block
import pytest

from test_aes_gmac_siv import K0, K1, PATTERN, VECTORS
from test_packet import AES, DEST, KAT_COMPRESSED, KAT_FRAME, KEY, SRC, SUPER
from ztcore.crypto import _armor as kernel  # type: ignore[attr-defined]
from ztcore.crypto import armor as A
from ztcore.crypto.aes_gmac_siv import HAVE_C_AES, AesGmacSiv
from ztcore.vl1 import packet as P

# The package cannot be installed without building the kernel (setup.py), so it must be here.
assert A.HAVE_C_ARMOR, "ztcore.crypto._armor is not built or failed its self-check"
needs_aes = pytest.mark.skipif(
    not HAVE_C_AES, reason="LOUD: neither AES-NI nor EVP AES in this interpreter, suite 3 kernel path not tested"
)

Seal = Callable[[bytes, int, int, int, int, int, bytes], bytes]
Open = Callable[[bytes, object], object]


def _impls(suite: int, key: bytes, k0: bytes, k1: bytes) -> list[tuple[str, Seal, Open]]:
    """(name, seal, open) for the kernel and the reference of one suite."""
    if suite == 3:
        c, py = AesGmacSiv(k0, k1), AesGmacSiv(k0, k1, use_c=False)
        assert c.uses_c and not py.uses_c
        return [
            ("c", lambda *a: c.armor(*a[1:]), lambda k, d: c.dearmor(d)),
            ("py", lambda *a: py.armor(*a[1:]), lambda k, d: py.dearmor(d)),
        ]
    return [("c", kernel.armor_poly, kernel.dearmor_poly), ("py", A.armor_poly_py, A.dearmor_poly_py)]


def _flags(suite: int, hops: int = 0, frag: int = 0) -> int:
    return {0: 0x00, 1: 0x88, 3: 0x18}[suite] | frag | hops


# --- known answers ---------------------------------------------------------------------


@needs_aes
@pytest.mark.parametrize("suite", [0, 1, 3])
def test_real_core_frames_through_kernel_and_reference(suite: int) -> None:
    expected = bytes.fromhex(KAT_FRAME[suite])
    for name, seal, open_ in _impls(suite, KEY, AES.k0, AES.k1):
        wire = seal(KEY, 0x0123456789ABCDEF, DEST, SRC, _flags(suite), P.Verb.FRAME, bytes(range(100)))
        assert wire == expected, name
        assert open_(KEY, expected) == (P.Verb.FRAME, bytes(range(100))), name


@needs_aes
@pytest.mark.parametrize("suite", [1, 3])
def test_real_core_compressed_frames(suite: int) -> None:
    wire = bytes.fromhex(KAT_COMPRESSED[suite])
    opened = [open_(KEY, wire) for _name, _seal, open_ in _impls(suite, KEY, AES.k0, AES.k1)]
    assert opened[0] == opened[1]
    verb_byte, payload = opened[0]  # type: ignore[misc]
    assert verb_byte == 0x80 | P.Verb.MULTICAST_FRAME
    assert lz4.block.decompress(payload, uncompressed_size=4096) == SUPER * 20
    d = P.dearmor(wire, KEY, AES)
    assert d.compressed and d.payload == SUPER * 20


@needs_aes
@pytest.mark.parametrize(("length", "ct_sha384", "tag_hex"), VECTORS[:10], ids=[str(v[0]) for v in VECTORS[:10]])
def test_gmac_siv_vectors_kernel(length: int, ct_sha384: str, tag_hex: str) -> None:
    import hashlib

    data = PATTERN[:length]
    siv = AesGmacSiv(K0, K1)
    assert siv.uses_c
    tag, ct = siv.encrypt(length.to_bytes(8, "little"), data, memoryview(data))
    assert tag.hex() == tag_hex
    assert hashlib.sha384(ct).hexdigest() == ct_sha384
    assert siv.decrypt(bytearray(tag), data, ct) == data
    assert siv.decrypt(tag, data[:-1] if data else b"x", ct) is None


# --- the kernel's two AES paths: AES-NI code and OpenSSL EVP ------------------------------

needs_both_aes = pytest.mark.skipif(
    not (A.HAVE_AESNI and A.HAVE_OPENSSL_AES),
    reason="LOUD: this CPU or interpreter lacks AES-NI or EVP AES; the two suite-3 paths cannot be compared",
)


@needs_both_aes
@pytest.mark.parametrize("aesni", [True, False])
@pytest.mark.parametrize(("length", "ct_sha384", "tag_hex"), VECTORS, ids=[str(v[0]) for v in VECTORS])
def test_gmac_siv_vectors_on_each_aes_path(aesni: bool, length: int, ct_sha384: str, tag_hex: str) -> None:
    import hashlib

    data = PATTERN[:length]
    siv = kernel.Siv(K0, K1, aesni=aesni)
    assert siv.backend == ("aes-ni" if aesni else "openssl")
    tag, ct = siv.encrypt(length.to_bytes(8, "little"), data, data)
    assert (tag.hex(), hashlib.sha384(ct).hexdigest()) == (tag_hex, ct_sha384)
    assert siv.decrypt(tag, data, ct) == data


@needs_both_aes
def test_aesni_and_openssl_paths_agree_byte_for_byte() -> None:
    """Random keys, every length around the 16- and 64-byte block boundaries the AES-NI
    code handles separately, AADs of every padding, and every tampered MAC byte."""
    rng = random.Random(3)
    for n in LENGTHS:
        k0, k1 = rng.randbytes(32), rng.randbytes(32)
        ni, evp = kernel.Siv(k0, k1), kernel.Siv(k0, k1, aesni=False)
        assert (ni.backend, evp.backend) == ("aes-ni", "openssl")
        iv, aad, pt = rng.randbytes(8), rng.randbytes(n % 41), rng.randbytes(n)
        tag, ct = ni.encrypt(iv, aad, pt)
        assert (tag, ct) == evp.encrypt(iv, aad, pt), n
        assert ni.decrypt(tag, aad, ct) == evp.decrypt(tag, aad, ct) == pt, n
        args = (rng.getrandbits(64), rng.getrandbits(40), rng.getrandbits(40), 0x18 | rng.randrange(8), rng.randrange(256))
        wire = ni.armor(*args, pt)
        assert wire == evp.armor(*args, pt), n
        assert ni.dearmor(wire) == evp.dearmor(wire) == (args[4], pt), n
        bad = bytearray(wire)
        bad[19 + n % 8] ^= 1 << (n % 8)  # one bit of the MAC
        assert ni.dearmor(bytes(bad)) == evp.dearmor(bytes(bad)) == kernel.E_BAD_MAC, n
        assert ni.decrypt(bytes(bad[:8]) + bytes(bad[19:27]), aad, ct) is None


def test_aesni_is_used_where_the_cpu_has_it() -> None:
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    if not flags or sys.platform != "linux" or os.uname().machine != "x86_64":
        pytest.skip("LOUD: not x86-64 Linux, AES-NI detection not checked")
    cpu_has = "aes" in flags and "pclmulqdq" in flags and "ssse3" in flags
    assert A.HAVE_AESNI == cpu_has
    if cpu_has:
        assert AesGmacSiv(K0, K1)._c.backend == "aes-ni"  # type: ignore[union-attr]


# --- kernel == reference ------------------------------------------------------------------

LENGTHS = sorted({*range(0, 80), *range(80, 3001, 37), 1399, 1400, 1401, 2999, 3000, 10024 - 28})


@needs_aes
@pytest.mark.parametrize("suite", [0, 1, 3])
def test_kernel_and_reference_agree(suite: int) -> None:
    rng = random.Random(suite)
    kinds: list[Callable[[bytes], object]] = [bytes, bytearray, memoryview]
    for n in LENGTHS:
        key = rng.randbytes(48)
        k0, k1 = rng.randbytes(32), rng.randbytes(32)
        pid, dest, src = rng.getrandbits(64), rng.getrandbits(40), rng.getrandbits(40)
        hops, frag, verb_byte = rng.randrange(8), rng.choice((0, 0x40)), rng.randrange(256)
        payload = rng.randbytes(n)
        kind = kinds[n % 3]
        (_, seal_c, open_c), (_, seal_py, open_py) = _impls(suite, key, k0, k1)
        args = (pid, dest, src, _flags(suite, hops, frag), verb_byte)
        wire = seal_c(kind(key), *args, kind(payload))  # type: ignore[arg-type]
        assert type(wire) is bytes and len(wire) == 28 + n
        assert wire == seal_py(key, *args, payload), n
        assert open_c(key, kind(wire)) == open_py(key, wire) == (verb_byte, payload), n


@needs_aes
@pytest.mark.parametrize("suite", [0, 1, 3])
def test_public_armor_dearmor_on_the_kernel(suite: int) -> None:
    key = os.urandom(48)
    keys = P.derive_aes_keys(key)
    for n in (0, 1, 63, 64, 65, 700, 1403, 3000):
        payload = os.urandom(n)
        kw = {0: {"encrypt": False}, 1: {"encrypt": True}, 3: {"encrypt": True, "aes_keys": keys}}[suite]
        wire = P.armor(destination=DEST, source=SRC, verb=P.Verb.FRAME, payload=payload, key=key, hops=2, **kw)  # type: ignore[arg-type]
        d = P.dearmor(memoryview(wire), key, keys)
        assert (d.verb, d.payload, d.compressed) == (P.Verb.FRAME, payload, False)
        assert d.header.hops == 2 and d.header.cipher == suite
        assert d.header.fragmented == (28 + n > P.DEFAULT_PHYSICAL_MTU)


# --- tampering ----------------------------------------------------------------------------


@needs_aes
@pytest.mark.parametrize("suite", [0, 1, 3])
@pytest.mark.parametrize("n", [0, 13, 200])
def test_every_tampered_byte_is_rejected_by_both(suite: int, n: int) -> None:
    key = os.urandom(48)
    k0, k1 = os.urandom(32), os.urandom(32)
    impls = _impls(suite, key, k0, k1)
    wire = impls[0][1](key, 0x1122334455667788, DEST, SRC, _flags(suite), 6, os.urandom(n))
    for name, _seal, open_ in impls:
        for i in range(len(wire)):
            for mask in (0x01, 0x80, 0xFF):
                if i == 18:
                    mask &= 0xF8  # the hop bits are not authenticated
                    if not mask:
                        continue
                bad = bytearray(wire)
                bad[i] ^= mask
                r = open_(key, bytes(bad))
                if i == 18 and ((bad[18] >> 3) & 7) != suite:
                    assert r == A.E_UNKNOWN_CIPHER or r == A.E_BAD_MAC, (name, i, mask)
                else:
                    assert r == A.E_BAD_MAC, (name, i, mask)
        # hop bits may change in flight
        hopped = bytearray(wire)
        hopped[18] ^= 0x07
        assert open_(key, bytes(hopped)) != A.E_BAD_MAC, name
        # truncated, extended, wrong key
        for cut in range(len(wire)):
            r = open_(key, wire[:cut])
            assert r in (A.E_TOO_SHORT, A.E_BAD_MAC), (name, cut)
        assert open_(key, wire + b"\x00") == A.E_BAD_MAC, name
    other = _impls(suite, os.urandom(48), os.urandom(32), os.urandom(32))
    for name, _seal, open_ in other:
        assert open_(os.urandom(48), wire) == A.E_BAD_MAC, name


def test_dearmor_raises_packet_errors() -> None:
    key = os.urandom(48)
    wire = bytearray(P.armor(destination=DEST, source=SRC, verb=6, payload=b"x" * 50, key=key, encrypt=True))
    wire[40] ^= 1
    with pytest.raises(P.PacketError) as e:
        P.dearmor(bytes(wire), key)
    assert e.value.reason == "bad_mac"
    wire[18] = (wire[18] & 0xC7) | (3 << 3)
    with pytest.raises(P.PacketError) as e:
        P.dearmor(bytes(wire), key)
    assert e.value.reason == "no_aes_keys"
    wire[18] = (wire[18] & 0xC7) | (5 << 3)
    with pytest.raises(P.PacketError) as e:
        P.dearmor(bytes(wire), key, AES)
    assert e.value.reason == "unknown_cipher"
    with pytest.raises(P.PacketError) as e:
        P.dearmor(bytes(P.MAX_PACKET_LENGTH + 1), key, AES)
    assert e.value.reason == "too_long"


# --- bad input never crashes -----------------------------------------------------------


@needs_aes
def test_bad_input_to_the_kernel() -> None:
    key = bytes(48)
    siv = AesGmacSiv(bytes(32), bytes(32))
    assert siv.uses_c
    for opener in (lambda d: kernel.dearmor_poly(key, d), siv.dearmor):
        for d in (b"", bytes(27), bytearray(5), memoryview(bytes(20))):
            assert opener(d) == A.E_TOO_SHORT
        assert opener(bytes(A.MAX_PACKET_LENGTH + 1)) == A.E_TOO_LONG
        for junk in ("a string", None, 12, [1, 2]):
            with pytest.raises(TypeError):
                opener(junk)
    # a suite the function does not do
    suite2 = bytearray(64)
    suite2[18] = 2 << 3
    assert kernel.dearmor_poly(key, bytes(suite2)) == A.E_UNKNOWN_CIPHER
    assert siv.dearmor(bytes(suite2)) == A.E_UNKNOWN_CIPHER
    with pytest.raises(ValueError):
        kernel.armor_poly(key, 0, 0, 0, 0x18, 6, b"")
    with pytest.raises(ValueError):
        kernel.dearmor_poly(bytes(31), bytes(64))
    with pytest.raises(ValueError):
        kernel.armor_poly(bytes(31), 0, 0, 0, 0, 6, b"")
    for bad_args in ((-1, 0, 0, 0, 6), (1 << 64, 0, 0, 0, 6), (0, 1 << 40, 0, 0, 6), (0, 0, 1 << 40, 0, 6),
                     (0, 0, 0, 256, 6), (0, 0, 0, 0, 256), ("x", 0, 0, 0, 6)):
        with pytest.raises(ValueError):
            kernel.armor_poly(key, *bad_args, b"")
        with pytest.raises(ValueError):
            siv.armor(*bad_args[:3], bad_args[3] if bad_args[3] > 255 else 0x18, bad_args[4], b"")
    with pytest.raises(ValueError):
        siv.armor(0, 0, 0, 0x88, 6, b"")
    for too_long in (bytes(A.MAX_PACKET_LENGTH - 27), bytearray(20000)):
        with pytest.raises(ValueError):
            kernel.armor_poly(key, 0, 0, 0, 0, 6, too_long)
        with pytest.raises(ValueError):
            siv.armor(0, 0, 0, 0x18, 6, too_long)
    with pytest.raises(TypeError):
        kernel.armor_poly(key, 0, 0, 0, 0, 6)
    with pytest.raises(TypeError):
        kernel.armor_poly(key, 0, 0, 0, 0, 6, "text")
    with pytest.raises(ValueError):
        kernel.Siv(bytes(31), bytes(32))
    with pytest.raises(ValueError):
        siv.encrypt(bytes(7), b"", b"")
    assert siv.decrypt(bytes(15), b"", b"") is None
    with pytest.raises(RuntimeError):
        kernel.bind_openssl((1,) * len(kernel.OPENSSL_NAMES))  # never rebound once contexts exist
    with pytest.raises(P.PacketError):
        P.armor(destination=DEST, source=SRC, verb=6, payload=bytes(P.MAX_PACKET_LENGTH), key=key, encrypt=True)


# --- threads, fallback, packet IDs, header parsing --------------------------------------------


@needs_aes
def test_one_siv_shared_between_threads() -> None:
    key = os.urandom(48)
    keys = P.derive_aes_keys(key)
    ref = AesGmacSiv(keys.k0, keys.k1, use_c=False)
    errors: list[str] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(400):
            payload = rng.randbytes(rng.randrange(1500))
            pid = rng.getrandbits(64)
            wire = keys.siv.armor(pid, DEST, SRC, 0x18, 6, payload)
            if wire != ref.armor_py(pid, DEST, SRC, 0x18, 6, payload) or keys.siv.dearmor(wire) != (6, payload):
                errors.append(f"thread {seed}")
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_pure_python_fallback_gives_the_same_packets() -> None:
    code = (
        "from ztcore.crypto import armor as A; from ztcore.crypto import aes_gmac_siv as S\n"
        "from ztcore.vl1.packet import armor, derive_aes_keys\n"
        "import sys; key = bytes.fromhex(sys.argv[1])\n"
        "assert not A.HAVE_C_ARMOR and not S.HAVE_C_AES and A.armor_poly is A.armor_poly_py\n"
        "for enc, keys in ((False, None), (True, None), (True, derive_aes_keys(key))):\n"
        "    print(armor(destination=0x1122334455, source=0x66778899aa, verb=6, payload=bytes(range(100)),"
        " key=key, encrypt=enc, aes_keys=keys, packet_id=0x0123456789ABCDEF).hex())\n"
    )
    env = {**os.environ, "ZTCORE_PURE_PYTHON_ARMOR": "1"}
    out = subprocess.run([sys.executable, "-c", code, KEY.hex()], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [KAT_FRAME[0], KAT_FRAME[1], KAT_FRAME[3]]


def test_libcrypto_lookup_gives_up_cleanly() -> None:
    # What an interpreter without a usable libcrypto looks like to the binder: suite 3
    # then stays on the reference (HAVE_C_AES False) instead of failing the import.
    assert A._libcrypto_addresses(("EVP_no_such_function_ztcore",)) is None
    found = A._libcrypto_addresses(kernel.OPENSSL_NAMES)
    assert found is None or (len(found) == len(kernel.OPENSSL_NAMES) and all(found))


def test_kernel_links_against_nothing() -> None:
    if not shutil.which("ldd"):
        pytest.skip("LOUD: no ldd on this machine, cannot list the kernel's libraries")
    out = subprocess.run(["ldd", kernel.__file__], capture_output=True, text=True, timeout=30)
    assert "crypto" not in out.stdout and "sodium" not in out.stdout and "ssl" not in out.stdout


def test_packet_ids_are_unique_and_not_shared_with_a_forked_child() -> None:
    ids = [P.new_packet_id() for _ in range(5000)]
    assert len(set(ids)) == 5000 and all(0 <= i < 1 << 64 for i in ids)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the next IDs, exit without running pytest's teardown
        try:
            os.write(w, b",".join(str(P.new_packet_id()).encode() for _ in range(8)))
        finally:
            os._exit(0)
    os.close(w)
    child = {int(x) for x in os.read(r, 4096).split(b",")}
    os.close(r)
    os.waitpid(pid, 0)
    assert len(child) == 8
    assert not child & {P.new_packet_id() for _ in range(8)}


def test_parse_header_fields_and_types() -> None:
    rng = random.Random(7)
    for _ in range(300):
        raw = bytearray(rng.randbytes(28 + rng.randrange(40)))
        if raw[13] == 0xFF:
            raw[13] = 0
        for data in (bytes(raw), raw, memoryview(raw)):
            h = P.parse_header(data)
            assert h.packet_id == int.from_bytes(raw[0:8], "big")
            assert h.destination == int.from_bytes(raw[8:13], "big")
            assert h.source == int.from_bytes(raw[13:18], "big")
            assert h.flags == raw[18] and h.hops == raw[18] & 7 and h.cipher == (raw[18] >> 3) & 7
            assert h.fragmented == bool(raw[18] & 0x40)
            assert h.encrypted_hello == (raw[18] & 0x80 != 0 and (raw[18] >> 3) & 7 == 0)
    # a mutable buffer parsed again after a change is parsed again
    buf = bytearray(40)
    assert P.parse_header(buf).source == 0
    buf[17] = 9
    assert P.parse_header(buf).source == 9
    assert P.parse_header(bytes(buf)) == P.parse_header(bytes(buf))
    for short in (b"", bytes(27)):
        with pytest.raises(P.PacketError):
            P.parse_header(short)


def test_random_junk_only_ever_raises_packet_error() -> None:
    rng = random.Random(13)
    key = rng.randbytes(48)
    for i in range(3000):
        junk = bytearray(rng.randbytes(rng.choice((rng.randrange(40), rng.randrange(3000)))))
        if len(junk) > 18:
            junk[18] = (junk[18] & 0xC7) | (rng.choice((0, 1, 3, 2, 7)) << 3)
        data = (bytes, bytearray, memoryview)[i % 3](junk)
        with pytest.raises(P.PacketError):
            P.dearmor(data, key, AES)  # a forged MAC passes with probability 2^-64
