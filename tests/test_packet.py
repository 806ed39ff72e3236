"""VL1 packet header, armor/dearmor (suites 0, 1, 3), compression, hops."""

from __future__ import annotations

import os
import random

import pytest

from ztcore.errors import InvalidFormatError
from ztcore.vl1.packet import (
    DEFAULT_PHYSICAL_MTU,
    MAX_FRAGMENTS,
    MAX_PACKET_LENGTH,
    PACKET_MIN_LENGTH,
    PROTO_VERSION,
    AesKeys,
    CipherSuite,
    ErrorCode,
    PacketError,
    Verb,
    armor,
    armor_encrypted,
    crypt_field,
    dearmor,
    derive_aes_keys,
    fragment_destination,
    is_fragment,
    new_packet_id,
    parse_header,
    set_hops,
)

# Known answers produced by the real ZeroTier 1.14.1 core (Packet::armor,
# Packet::compress, Packet::cryptField and KBKDFHMACSHA384 compiled from the
# specification sources) with: key[i] = (7*i + 3) & 0xff for i < 48,
# destination 1122334455, source 66778899aa.
KEY = bytes((7 * i + 3) & 0xFF for i in range(48))
DEST = 0x1122334455
SRC = 0x66778899AA
KAT_K0 = "d4d43a0594211774b6cb08ddc8c1f709f7e95cb7881b8030cbe82b37b5897457"
KAT_K1 = "f7be4f9f276b69f90559099780c6186bdab4ff77f5b8ee94f60e008e1c103afc"
# Verb FRAME, payload bytes(range(100)), IV 0123456789abcdef.
KAT_FRAME = {
    0: "0123456789abcdef112233445566778899aa0085ab931591e0dfd506000102030405060708090a0b0c0d0e0f101112131415161718"
    "191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e"
    "4f505152535455565758595a5b5c5d5e5f60616263",
    1: "0123456789abcdef112233445566778899aa88b92f44deb06bc9cf7f88b5c4eb0b8f296e6caf09c91ffd145f2a1db1060886dbb4d9"
    "0f504c9ed8975d25193de376a1b576208ca5204381ee8f9b678d257a8787baae21b9b6683456a6f1f76518fa48a98da8b3bcdbb37cfc"
    "0e6bc7c96f052a73ff33764873e2b0b2161d34b369",
    3: "f8860f3480cd6025112233445566778899aa18d7cec2f6114bb0cac969e1497e77305cdfb018b9ca9c01af3875da2492a29462eedca2"
    "dd44a6f9120cd3990a7c30e0ced3c923ab41e779b28ebeecfee0963d4acea713312a04867b8a9837a2ad35e42386c5f8116ad2577b5f"
    "1390e709a581b03cb3a7aa2f2375fed35b6915ba",
}
# Verb MULTICAST_FRAME, payload "supercalifragilisticexpealidocious" * 20,
# compressed then armored, IV fedcba9876543210.
SUPER = b"supercalifragilisticexpealidocious"
KAT_COMPRESSED = {
    1: "fedcba9876543210112233445566778899aa88709b90b1286934155a2a275d302ff1b2d7ab8158b4321153d0dacac2dee163688e3a"
    "407f0c24a006daab1c66994b864d27bd3d72e4e77ecc",
    3: "4c902907cff31e94112233445566778899aa18554d305770019a2be1c5f2a2fe0f170d09210781e4617094290500cc823114d6237be3"
    "072ce6f2c2a379a81612420c51b537958ca1664651",
}
# Packet::compress() of HELLO + SUPER * 32: the LZ4 payload bytes (after the verb).
KAT_LZ4_SUPER32 = (
    "ff13737570657263616c6966726167696c697374696365787065616c69646f63696f75732200ffffffff0a5063696f7573"
)
# cryptField(key, 38, 25) over a HELLO with payload bytes(range(40)), IV fedcba9876543210:
# payload bytes 10..34 become:
KAT_CRYPT_FIELD = "fdb22e669de145b4bcdd326da81d1455e64b1801e54c38cc63"

AES = derive_aes_keys(KEY)


def _suite_args(suite: int) -> dict[str, object]:
    return {
        0: {"encrypt": False, "aes_keys": None},
        1: {"encrypt": True, "aes_keys": None},
        3: {"encrypt": True, "aes_keys": AES},
    }[suite]


def test_constants_match_the_spec() -> None:
    assert PROTO_VERSION == 12
    assert PACKET_MIN_LENGTH == 28
    assert DEFAULT_PHYSICAL_MTU == 1432
    assert MAX_FRAGMENTS == 7
    assert MAX_PACKET_LENGTH == 7 * 1432
    assert Verb.PUSH_DIRECT_PATHS == 0x10 and Verb.PATH_NEGOTIATION_REQUEST == 0x16
    assert ErrorCode.NETWORK_AUTHENTICATION_REQUIRED == 9
    assert CipherSuite.AES_GMAC_SIV == 3
    assert issubclass(PacketError, InvalidFormatError)


def test_derive_aes_keys_kat() -> None:
    keys = derive_aes_keys(KEY)
    assert keys.k0.hex() == KAT_K0
    assert keys.k1.hex() == KAT_K1
    assert keys == AesKeys(bytes.fromhex(KAT_K0), bytes.fromhex(KAT_K1))
    with pytest.raises(ValueError):
        derive_aes_keys(KEY[:32])


@pytest.mark.parametrize("suite", [0, 1, 3])
def test_armor_matches_real_core(suite: int) -> None:
    wire = armor(
        destination=DEST,
        source=SRC,
        verb=Verb.FRAME,
        payload=bytes(range(100)),
        key=KEY,
        packet_id=0x0123456789ABCDEF,
        **_suite_args(suite),  # type: ignore[arg-type]
    )
    assert wire.hex() == KAT_FRAME[suite]


@pytest.mark.parametrize("suite", [0, 1, 3])
def test_dearmor_real_core_packets(suite: int) -> None:
    d = dearmor(bytes.fromhex(KAT_FRAME[suite]), KEY, AES)
    assert d.verb == Verb.FRAME
    assert d.payload == bytes(range(100))
    assert not d.compressed
    h = d.header
    assert (h.destination, h.source, h.hops, h.cipher) == (DEST, SRC, 0, suite)
    assert not h.fragmented and not h.encrypted_hello


def test_header_layout() -> None:
    wire = bytes.fromhex(KAT_FRAME[1])
    h = parse_header(wire)
    assert h.packet_id == 0x0123456789ABCDEF  # bytes 0..7 big-endian
    assert h.destination == DEST  # bytes 8..12
    assert h.source == SRC  # bytes 13..17
    assert h.flags == 0x88  # legacy encrypted flag 0x80 | suite 1 << 3
    assert h.cipher is CipherSuite.POLY1305_SALSA2012
    # suite 0 and 3 clear the legacy 0x80 flag
    assert parse_header(bytes.fromhex(KAT_FRAME[0])).flags == 0x00
    assert parse_header(bytes.fromhex(KAT_FRAME[3])).flags == 0x18
    # suite 3 replaces the packet ID with the first half of the SIV tag
    assert parse_header(bytes.fromhex(KAT_FRAME[3])).packet_id != 0x0123456789ABCDEF


def test_encrypted_hello_flag_is_separate_from_cipher_and_hops() -> None:
    wire = bytearray(bytes.fromhex(KAT_FRAME[0]))
    wire[18] = 0x80 | 0x40 | 0x05  # 1.16 encrypted HELLO flag, fragmented, 5 hops, suite 0
    h = parse_header(wire)
    assert h.encrypted_hello
    assert h.cipher == CipherSuite.POLY1305_NONE
    assert h.hops == 5 and h.fragmented
    # on suite 1 the same bit is the legacy "encrypted" flag, not an encrypted HELLO
    assert not parse_header(bytes.fromhex(KAT_FRAME[1])).encrypted_hello


@pytest.mark.parametrize("suite", [1, 3])
def test_compressed_armor_matches_real_core(suite: int) -> None:
    wire = armor(
        destination=DEST,
        source=SRC,
        verb=Verb.MULTICAST_FRAME,
        payload=SUPER * 20,
        key=KEY,
        packet_id=0xFEDCBA9876543210,
        compress=True,
        **_suite_args(suite),  # type: ignore[arg-type]
    )
    assert wire.hex() == KAT_COMPRESSED[suite]
    d = dearmor(wire, KEY, AES)
    assert d.compressed and d.verb == Verb.MULTICAST_FRAME and d.payload == SUPER * 20


def test_lz4_payload_matches_real_core() -> None:
    wire = armor(
        destination=DEST,
        source=SRC,
        verb=Verb.HELLO,
        payload=SUPER * 32,
        key=KEY,
        encrypt=False,
        compress=True,
    )
    assert wire[27] == 0x80 | Verb.HELLO
    assert wire[28:].hex() == KAT_LZ4_SUPER32


def test_crypt_field_matches_real_core() -> None:
    field = bytes(range(10, 35))
    out = crypt_field(KEY, 0xFEDCBA9876543210, field)
    assert out.hex() == KAT_CRYPT_FIELD
    assert crypt_field(KEY, 0xFEDCBA9876543210, out) == field
    # the 3 low bits of the packet ID are ignored
    assert crypt_field(KEY, 0xFEDCBA9876543217, field) == out


@pytest.mark.parametrize("suite", [0, 1, 3])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("size", [0, 1, 64, 65, 1400, 5000])
def test_round_trip(suite: int, compress: bool, size: int) -> None:
    key = os.urandom(48)
    keys = derive_aes_keys(key)
    payload = (b"abcdefgh" * 700)[:size] if size % 2 == 0 else os.urandom(size)
    wire = armor(
        destination=0x0102030405,
        source=0x0A0B0C0D0E,
        verb=Verb.EXT_FRAME,
        payload=payload,
        key=key,
        encrypt=suite != 0,
        aes_keys=keys if suite == 3 else None,
        compress=compress,
        hops=2,
    )
    d = dearmor(wire, key, keys)
    assert d.payload == payload
    assert d.verb == Verb.EXT_FRAME
    assert d.header.cipher == suite
    assert d.header.hops == 2
    assert d.header.fragmented == (len(wire) > DEFAULT_PHYSICAL_MTU)
    # compression is used only when it helps and the payload is over 64 bytes
    assert d.compressed == (compress and size > 64 and size % 2 == 0)
    if suite == 0:
        assert payload in wire or d.compressed
    elif size >= 16 and not d.compressed:
        assert payload not in wire


@pytest.mark.parametrize("suite", [0, 1, 3])
def test_wrong_key_is_bad_mac(suite: int) -> None:
    wire = bytes.fromhex(KAT_FRAME[suite])
    other = bytes(48)
    with pytest.raises(PacketError) as e:
        dearmor(wire, other, derive_aes_keys(other))
    assert e.value.reason == "bad_mac"


@pytest.mark.parametrize("suite", [0, 1, 3])
def test_every_authenticated_bit_is_covered(suite: int) -> None:
    wire = bytes.fromhex(KAT_FRAME[suite])
    for i in range(len(wire)):
        for bit in range(8):
            if i == 18 and bit < 3:
                continue  # hop bits are excluded from the MAC
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            with pytest.raises(PacketError) as e:
                dearmor(bytes(bad), KEY, AES)
            if i == 18 and 3 <= bit <= 5:
                continue  # cipher bits: a different suite, so any refusal is right
            if i == 13 and bad[13] == 0xFF:
                assert e.value.reason == "is_fragment"
                continue
            assert e.value.reason == "bad_mac", (i, bit)


@pytest.mark.parametrize("suite", [0, 1, 3])
def test_set_hops_keeps_mac_valid(suite: int) -> None:
    wire = bytes.fromhex(KAT_FRAME[suite])
    for hops in range(8):
        relayed = set_hops(wire, hops)
        assert relayed[:18] == wire[:18] and relayed[19:] == wire[19:]
        assert relayed[18] & 0xF8 == wire[18] & 0xF8
        d = dearmor(relayed, KEY, AES)
        assert d.header.hops == hops and d.payload == bytes(range(100))
    with pytest.raises(ValueError):
        set_hops(wire, 8)
    with pytest.raises(PacketError):
        set_hops(wire[:20], 1)


def test_truncation_raises_packet_error() -> None:
    for suite in (0, 1, 3):
        wire = bytes.fromhex(KAT_FRAME[suite])
        for n in range(len(wire)):
            with pytest.raises(PacketError) as e:
                dearmor(wire[:n], KEY, AES)
            assert e.value.reason in {"too_short", "bad_mac"}
            if n < PACKET_MIN_LENGTH:
                assert e.value.reason == "too_short"


def test_random_junk_only_raises_packet_error() -> None:
    rng = random.Random(1234)
    for _ in range(3000):
        n = rng.choice([0, 5, 13, 16, 17, 27, 28, 29, 40, 200, 1500])
        junk = bytearray(rng.randbytes(n))
        if n > 18 and rng.random() < 0.5:
            junk[18] = rng.choice([0x00, 0x88, 0x18, 0x10, 0x20, 0x38])  # aim at real suites
        try:
            dearmor(bytes(junk), KEY, AES)
        except PacketError:
            pass
        try:
            parse_header(bytes(junk))
        except PacketError:
            pass


def test_cipher_errors() -> None:
    wire = bytearray(bytes.fromhex(KAT_FRAME[0]))
    wire[18] = 2 << 3  # trusted path: nothing to verify here
    with pytest.raises(PacketError) as e:
        dearmor(bytes(wire), KEY, AES)
    assert e.value.reason == "unknown_cipher"
    wire[18] = 5 << 3
    with pytest.raises(PacketError) as e:
        dearmor(bytes(wire), KEY, AES)
    assert e.value.reason == "unknown_cipher"
    assert parse_header(bytes(wire)).cipher == 5
    with pytest.raises(PacketError) as e:
        dearmor(bytes.fromhex(KAT_FRAME[3]), KEY, None)
    assert e.value.reason == "no_aes_keys"


def test_too_long() -> None:
    with pytest.raises(PacketError) as e:
        armor(destination=DEST, source=SRC, verb=0, payload=bytes(MAX_PACKET_LENGTH), key=KEY, encrypt=True)
    assert e.value.reason == "too_long"
    wire = bytes.fromhex(KAT_FRAME[1]) + bytes(MAX_PACKET_LENGTH)
    with pytest.raises(PacketError) as e:
        dearmor(wire, KEY)
    assert e.value.reason == "too_long"


def _siv_packet(plaintext: bytes) -> bytes:
    """A correctly authenticated suite-3 packet around an arbitrary verb+payload."""
    addrs = DEST.to_bytes(5, "big") + SRC.to_bytes(5, "big")
    flags = 3 << 3
    tag, ct = AES.siv.encrypt(os.urandom(8), addrs + bytes((flags,)), plaintext)
    return tag[:8] + addrs + bytes((flags,)) + tag[8:] + ct


def test_bad_compression() -> None:
    with pytest.raises(PacketError) as e:
        dearmor(_siv_packet(bytes((0x80 | Verb.FRAME,)) + b"\xff\xff\xff\xff\xff"), KEY, AES)
    assert e.value.reason == "bad_compression"
    # decompressing to more than a packet can hold is refused too
    import lz4.block

    bomb = lz4.block.compress(bytes(20000), store_size=False)
    with pytest.raises(PacketError) as e:
        dearmor(_siv_packet(bytes((0x80 | Verb.FRAME,)) + bomb), KEY, AES)
    assert e.value.reason == "bad_compression"
    # the flag with an empty payload is accepted (as the real core does)
    d = dearmor(_siv_packet(bytes((0x80 | Verb.NOP,))), KEY, AES)
    assert d.payload == b"" and d.compressed


def test_verb_flag_bits_are_masked() -> None:
    d = dearmor(_siv_packet(bytes((0x40 | 0x20 | Verb.ECHO,)) + b"ping"), KEY, AES)
    assert d.verb == Verb.ECHO and d.payload == b"ping" and not d.compressed


def test_armor_argument_checks() -> None:
    with pytest.raises(ValueError):
        armor(destination=DEST, source=SRC, verb=32, payload=b"", key=KEY, encrypt=True)
    with pytest.raises(ValueError):
        armor(destination=DEST, source=SRC, verb=1, payload=b"", key=KEY, encrypt=True, hops=8)
    for aes_keys in (None, AES):  # the peers' send path: both suites refuse a verb past 5 bits
        with pytest.raises(ValueError):
            armor_encrypted(DEST, SRC, 32, b"", KEY, aes_keys)


def test_fragmented_flag_is_authenticated_and_set_by_mtu() -> None:
    big = armor(destination=DEST, source=SRC, verb=6, payload=bytes(2000), key=KEY, encrypt=True)
    assert parse_header(big).fragmented
    small_mtu = armor(
        destination=DEST, source=SRC, verb=6, payload=bytes(200), key=KEY, encrypt=True, mtu=100
    )
    assert parse_header(small_mtu).fragmented
    for wire in (big, small_mtu):
        bad = bytearray(wire)
        bad[18] &= ~0x40
        with pytest.raises(PacketError):
            dearmor(bytes(bad), KEY)


def test_fragment_helpers() -> None:
    frag = bytes(8) + DEST.to_bytes(5, "big") + b"\xff\x21\x00" + b"payload"
    assert is_fragment(frag)
    assert fragment_destination(frag) == DEST
    assert not is_fragment(frag[:16])  # the real core ignores header-only fragments
    assert not is_fragment(bytes.fromhex(KAT_FRAME[0]))
    with pytest.raises(PacketError) as e:
        parse_header(frag + bytes(20))
    assert e.value.reason == "is_fragment"
    with pytest.raises(PacketError):
        fragment_destination(frag[:10])
    relayed = set_hops(frag, 3)
    assert relayed[15] == 3 and relayed[:15] == frag[:15] and relayed[16:] == frag[16:]


def test_new_packet_id() -> None:
    ids = {new_packet_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(0 <= i < 2**64 for i in ids)
    a = armor(destination=DEST, source=SRC, verb=0, payload=b"", key=KEY, encrypt=True)
    b = armor(destination=DEST, source=SRC, verb=0, payload=b"", key=KEY, encrypt=True)
    assert a[:8] != b[:8]


def test_accepts_bytearray_and_memoryview_inputs() -> None:
    wire = bytes.fromhex(KAT_FRAME[1])
    for data, key in ((bytearray(wire), bytearray(KEY)), (memoryview(wire), KEY)):
        d = dearmor(data, key)  # type: ignore[arg-type]
        assert d.payload == bytes(range(100))
        assert parse_header(data).source == SRC
    with pytest.raises(ValueError):
        armor(destination=DEST, source=SRC, verb=0, payload=b"", key=bytes(16), encrypt=True)
