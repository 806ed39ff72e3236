"""VL1 fragmentation and reassembly."""

from __future__ import annotations

import hashlib
import itertools
import os
import random

import pytest

from ztcore.vl1.fragment import RECEIVE_QUEUE_TIMEOUT, RX_QUEUE_SIZE, Reassembler, make_fragments
from ztcore.vl1.packet import (
    DEFAULT_PHYSICAL_MTU,
    PacketError,
    Verb,
    armor,
    dearmor,
    derive_aes_keys,
    fragment_destination,
    is_fragment,
    parse_header,
)

# Known answers from the real ZeroTier 1.14.1 core (Switch::_sendViaSpecificPath's
# logic: setFragmented before armor, Packet::Fragment for the rest) for an
# EXT_FRAME with payload bytes((31*i) & 0xff for i < 3000), IV fedcba9876543210,
# key[i] = (7*i + 3) & 0xff, destination 1122334455, source 66778899aa, MTU 1432.
KEY = bytes((7 * i + 3) & 0xFF for i in range(48))
PAYLOAD = bytes((31 * i) & 0xFF for i in range(3000))
KAT = {
    0: {
        "sha": "5eab788eaeaeac57273c92996b4ee2517fc6c63b6af5cdb8f057b1c4b03579309a074b39903f4a020ff2a5338685cd0b",
        "head": "fedcba9876543210112233445566778899aa40f83a95fba169aac107",
        "frags": [
            (
                "fedcba98765432101122334455ff3100",
                1432,
                "8aa65bd6415236903bc0c5128acb14c187c29dfc2ec34dc461fb9cfa5e7afc51b8e4de322dd44fde4172e70d22f222da",
            ),
            (
                "fedcba98765432101122334455ff3200",
                196,
                "6373d0fdc6f9cedc1299a9c4c50b58380e433932c5240a6aceabfd9aecf45e12c69c2cc4e615ba0ee30696a6e2ca6516",
            ),
        ],
    },
    1: {
        "sha": "7efc1467712e815a64c3ee669d3558023e2b847e3ea1f692bbf42c828863887ffb0448aee16cd138b78a3a93e2bd4fa2",
        "head": "fedcba9876543210112233445566778899aac87ec066592a033b6b46",
        "frags": [
            (
                "fedcba98765432101122334455ff3100",
                1432,
                "a12d51e12e6e20ea030ab13a9bb731b9956209113dc7b9ad0ad60fc0421467ec8f8a37fa75b82c01a95a45aeb8b0a81c",
            ),
            (
                "fedcba98765432101122334455ff3200",
                196,
                "5f1bf63705058c128eb9cc08c9c3cff3f1fc418fad5d018214cd74c624ee89f1172807a140e71323034e13c0dd398d8c",
            ),
        ],
    },
    3: {
        "sha": "bfbc56aabb1a36539234f74ec8b132361258f9171ad772190cafbfe105b5858c652ccdc94a37a04e566aa586ee954017",
        "head": "98dfcca7c269568b112233445566778899aa588d0e880b36d189bf1b",
        "frags": [
            (
                "98dfcca7c269568b1122334455ff3100",
                1432,
                "b87d6575020e13a31d4fc14864cfc51170a91492ef286868c1ed9e0d51588b57ed8ab15584f0d2f76895def629a30ca7",
            ),
            (
                "98dfcca7c269568b1122334455ff3200",
                196,
                "89f4bb9f974f029bacb7e8c9f829f3fca359f45294835a8075bf9548135975bdc973dcc2710b82d6fd1a5faea5c85273",
            ),
        ],
    },
}
AES = derive_aes_keys(KEY)


def _kat_packet(suite: int) -> bytes:
    return armor(
        destination=0x1122334455,
        source=0x66778899AA,
        verb=Verb.EXT_FRAME,
        payload=PAYLOAD,
        key=KEY,
        encrypt=suite != 0,
        aes_keys=AES if suite == 3 else None,
        packet_id=0xFEDCBA9876543210,
    )


@pytest.mark.parametrize("suite", [0, 1, 3])
def test_fragments_match_real_core(suite: int) -> None:
    kat = KAT[suite]
    packet = _kat_packet(suite)
    assert hashlib.sha384(packet).hexdigest() == kat["sha"]
    pieces = make_fragments(packet)
    assert len(pieces) == 1 + len(kat["frags"])
    assert len(pieces[0]) == DEFAULT_PHYSICAL_MTU
    assert pieces[0][:28].hex() == kat["head"]
    for frag, (hdr, length, sha) in zip(pieces[1:], kat["frags"], strict=True):
        assert frag[:16].hex() == hdr
        assert len(frag) == length
        assert hashlib.sha384(frag).hexdigest() == sha
        assert is_fragment(frag)
        assert fragment_destination(frag) == 0x1122334455


@pytest.mark.parametrize("suite", [0, 1, 3])
def test_reassemble_real_core_fragments_in_any_order(suite: int) -> None:
    pieces = make_fragments(_kat_packet(suite))
    for order in itertools.permutations(pieces):
        r = Reassembler()
        results = [r.add(p, now=0) for p in order]
        assert results[:-1] == [None] * (len(order) - 1)
        assert results[-1] is not None
        assert dearmor(results[-1], KEY, AES).payload == PAYLOAD
        assert len(r) == 0 and not r.drops


@pytest.mark.parametrize("mtu", [64, 100, 300, 576, 1280, DEFAULT_PHYSICAL_MTU, 2800, 9000])
def test_split_and_reassemble_at_various_mtus(mtu: int) -> None:
    key = os.urandom(48)
    rng = random.Random(mtu)
    for size in (0, 10, mtu - 29, mtu - 28, mtu - 27, mtu, 2 * mtu, 5 * mtu):
        max_len = 28 + (mtu - 16) * 6 + mtu  # what fits in 7 pieces
        if size + 28 > min(max_len, 10024):
            continue
        payload = rng.randbytes(size)
        packet = armor(
            destination=5, source=6, verb=Verb.FRAME, payload=payload, key=key, encrypt=True, mtu=mtu
        )
        pieces = make_fragments(packet, mtu)
        assert all(len(p) <= mtu for p in pieces)
        assert (len(pieces) > 1) == (len(packet) > mtu) == parse_header(packet).fragmented
        if len(pieces) == 1:
            assert pieces[0] == packet
            continue
        assert len({p[14] >> 4 for p in pieces[1:]}) == 1 and pieces[1][14] >> 4 == len(pieces)
        assert [p[14] & 0xF for p in pieces[1:]] == list(range(1, len(pieces)))
        rng.shuffle(pieces)
        r = Reassembler()
        out = [x for x in (r.add(p, 0) for p in pieces) if x is not None]
        assert out == [packet]
        assert dearmor(out[0], key).payload == payload


def test_flag_and_mtu_must_agree() -> None:
    big = armor(destination=5, source=6, verb=6, payload=bytes(3000), key=KEY, encrypt=True, mtu=9000)
    assert not parse_header(big).fragmented
    with pytest.raises(PacketError) as e:
        make_fragments(big, 1432)
    assert e.value.reason == "not_marked_fragmented"
    # flagged for a small MTU but sent over a bigger one: still a head + fragment
    flagged = armor(destination=5, source=6, verb=6, payload=bytes(3000), key=KEY, encrypt=True, mtu=1432)
    pieces = make_fragments(flagged, 9000)
    assert len(pieces) == 2
    r = Reassembler()
    assert r.add(pieces[1], 0) is None
    assert r.add(pieces[0], 0) == flagged


def test_too_many_fragments_refused_on_send() -> None:
    packet = armor(destination=5, source=6, verb=6, payload=os.urandom(1000), key=KEY, encrypt=True, mtu=100)
    with pytest.raises(PacketError) as e:
        make_fragments(packet, 100)
    assert e.value.reason == "too_many_fragments"
    with pytest.raises(ValueError):
        make_fragments(packet, 16)


def _pieces(size: int = 3000) -> tuple[bytes, list[bytes]]:
    p = armor(destination=5, source=6, verb=6, payload=os.urandom(size), key=KEY, encrypt=True)
    return p, make_fragments(p)


def test_duplicates_are_counted_and_ignored() -> None:
    packet, pieces = _pieces()
    r = Reassembler()
    assert r.add(pieces[1], 0) is None
    assert r.add(pieces[1], 1) is None
    assert r.drops["duplicate_fragment"] == 1
    assert r.add(pieces[0], 2) is None
    assert r.add(pieces[0], 3) is None
    assert r.drops["duplicate_head"] == 1
    assert r.add(pieces[2], 4) == packet


def test_missing_fragment_expires() -> None:
    _, pieces = _pieces()
    r = Reassembler(timeout_ms=1000)
    r.add(pieces[0], 0)
    r.add(pieces[2], 10)
    r.expire(1000)
    assert len(r) == 1 and r.drops["expired"] == 0
    r.expire(1001)
    assert len(r) == 0 and r.drops["expired"] == 1
    # the late fragment starts a new entry that never completes on its own
    assert r.add(pieces[1], 1002) is None
    assert len(r) == 1
    assert Reassembler().timeout_ms == RECEIVE_QUEUE_TIMEOUT == 5000


def test_stale_entries_are_dropped_on_add() -> None:
    _, a = _pieces()
    _, b = _pieces()
    r = Reassembler(timeout_ms=100)
    r.add(a[0], 0)
    r.add(b[0], 500)
    assert r.drops["expired"] == 1 and len(r) == 1


def test_stray_fragments_without_head() -> None:
    _, pieces = _pieces()
    r = Reassembler()
    for p in pieces[1:]:
        assert r.add(p, 0) is None
    assert len(r) == 1
    r.expire(RECEIVE_QUEUE_TIMEOUT + 1)
    assert r.drops["expired"] == 1 and len(r) == 0


def test_queue_is_bounded() -> None:
    r = Reassembler(max_pending=4)
    heads = [_pieces()[1][0] for _ in range(6)]
    for i, h in enumerate(heads):
        r.add(h, i)
    assert len(r) == 4
    assert r.drops["queue_full"] == 2
    assert Reassembler().max_pending == RX_QUEUE_SIZE == 32


def _fragment(packet_id: int, total: int, number: int, body: bytes = b"x") -> bytes:
    return packet_id.to_bytes(8, "big") + (5).to_bytes(5, "big") + bytes((0xFF, (total << 4) | number, 0)) + body


def test_bad_fragments_are_counted() -> None:
    r = Reassembler()
    assert r.add(_fragment(1, 8, 1), 0) is None
    assert r.drops["too_many_fragments"] == 1
    for total, number in ((3, 0), (1, 1), (3, 3), (7, 7), (2, 5)):
        assert r.add(_fragment(1, total, number), 0) is None
    assert r.drops["bad_fragment_number"] == 5
    assert r.add(_fragment(1, 3, 1)[:16], 0) is None
    assert r.add(_fragment(1, 3, 1)[:15], 0) is None
    assert r.drops["fragment_too_short"] == 2
    assert r.add(b"\x00" * 20, 0) is None
    assert r.drops["head_too_short"] == 1
    assert r.add(_fragment(2, 3, 1), 0) is None
    assert r.add(_fragment(2, 4, 2), 0) is None
    assert r.drops["total_mismatch"] == 1
    assert len(r) == 1  # only packet 2 is pending


def test_reassembled_packet_too_long_is_dropped() -> None:
    r = Reassembler()
    head = bytearray(os.urandom(28 + 2000))
    head[13] = 0x01
    head[18] = 0x40 | 0x08
    body = bytes(1432 - 16)
    for n in range(1, 7):
        r.add(_fragment(int.from_bytes(head[:8], "big"), 7, n, body), 0)
    assert r.add(bytes(head), 0) is None
    assert r.drops["too_long"] == 1 and len(r) == 0


def test_unfragmented_head_passes_through() -> None:
    p = armor(destination=5, source=6, verb=6, payload=b"small", key=KEY, encrypt=True)
    r = Reassembler()
    assert r.add(p, 0) == p
    assert len(r) == 0
