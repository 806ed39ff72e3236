"""Worlds (planets and moons): the built-in planet as a known answer, signing, the update rule,
and robustness against malformed bytes."""

from __future__ import annotations

import ipaddress
import random
import struct
from importlib import resources

import pytest

from ztcore.crypto import c25519_generate
from ztcore.errors import InvalidFormatError
from ztcore.identity import Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.world import (
    WORLD_ID_EARTH,
    WORLD_MAX_ROOTS,
    Root,
    World,
    WorldType,
    default_planet,
    genmoon_order,
    load_world_file,
    moon_file_name,
    save_world_file,
)

PLANET_BYTES = resources.files("ztcore").joinpath("data", "planet.zerotier").read_bytes()
# Offset of the root count: type(1) + id(8) + timestamp(8) + update key(64) + signature(96).
ROOT_COUNT_AT = 177


def ep(text: str) -> InetAddress:
    return InetAddress.parse(text)


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(3)]


@pytest.fixture(scope="module")
def keys() -> list[tuple[bytes, bytes]]:
    return [c25519_generate() for _ in range(2)]


def make_moon(ids: list[Identity], key: tuple[bytes, bytes], ts: int = 1000, **kw) -> World:
    roots = [Root(ids[0].public(), (ep("192.0.2.1/9993"), ep("2001:db8::1/9993")))]
    return World.make(
        type=WorldType.MOON,
        id=int(ids[0].address),
        timestamp=ts,
        update_signing_public=key[0],
        update_signing_private=key[1],
        roots=roots,
        **kw,
    )


# ----------------------------------------------------------------- built-in planet


def test_default_planet_known_answer() -> None:
    # Facts from the core's ZT_DEFAULT_WORLD: 570 bytes, planet, Earth's id, four roots.
    assert len(PLANET_BYTES) == 570
    w = default_planet()
    assert w.type is WorldType.PLANET
    assert w.id == WORLD_ID_EARTH == 149604618
    assert w.timestamp == int.from_bytes(PLANET_BYTES[9:17], "big")
    assert w.update_signing_key == PLANET_BYTES[17:81]
    assert w.signature == PLANET_BYTES[81:177]
    assert len(w.roots) == PLANET_BYTES[ROOT_COUNT_AT] == 4
    assert {str(a) for a in (r.identity.address for r in w.roots)} == {
        "cafe9efeb9",
        "778cde7190",
        "62f865ae71",
        "cafe04eba9",
    }
    first = w.roots[0]
    assert first.stable_endpoints[0] == InetAddress(ipaddress.ip_address("104.194.8.134"), 9993)
    assert all(len(r.stable_endpoints) == 2 for r in w.roots)
    assert all(e.port == 9993 for r in w.roots for e in r.stable_endpoints)
    assert w.root_addresses() == {r.identity.address for r in w.roots}
    assert w.root(first.identity.address) is first
    assert w.root(0x1234567890) is None
    assert bool(w)


def test_default_planet_signature_and_identities() -> None:
    w = default_planet()
    assert w.verify_signature()
    assert not w.verify_signature(c25519_generate()[0])
    assert all(r.identity.validate() for r in w.roots)


def test_default_planet_reserializes_byte_identically() -> None:
    w, used = World.from_bytes(PLANET_BYTES)
    assert used == len(PLANET_BYTES)
    assert w.to_bytes() == PLANET_BYTES
    assert w == default_planet()
    signing = w.to_bytes(for_signing=True)
    assert signing.startswith(b"\x7f" * 8) and signing.endswith(b"\xf7" * 8)
    # signing form = unsigned fields in the same order, without the 96-byte signature
    assert signing[8:-8] == PLANET_BYTES[:81] + PLANET_BYTES[177:]


def test_parse_at_offset_and_trailing_bytes() -> None:
    blob = b"xyz" + PLANET_BYTES + b"trailing"
    w, used = World.from_bytes(blob, 3)
    assert used == len(PLANET_BYTES)
    assert w == default_planet()


# ------------------------------------------------------------------ make / sign


def test_make_sign_verify_round_trip(identities, keys) -> None:
    moon = make_moon(identities, keys[0])
    assert moon.verify_signature()
    assert moon.verify_signature(keys[0][0])
    assert not moon.verify_signature(keys[1][0])
    blob = moon.to_bytes()
    assert blob[0] == 127
    assert blob.endswith(b"\x00\x00")  # empty reserved dictionary, moons only
    back, used = World.from_bytes(blob)
    assert used == len(blob)
    assert back == moon and back.verify_signature()
    assert back.to_bytes() == blob
    assert moon_file_name(moon.id) == f"000000{identities[0].address}.moon"


def test_planet_has_no_dictionary(identities, keys) -> None:
    root = Root(identities[1].public(), (ep("198.51.100.7/443"),))
    p = World.make(
        type=WorldType.PLANET,
        id=1234,
        timestamp=5,
        update_signing_public=keys[0][0],
        update_signing_private=keys[0][1],
        roots=[root],
    )
    blob = p.to_bytes()
    assert blob == (
        struct.pack(">BQQ", 1, 1234, 5)
        + keys[0][0]
        + p.signature
        + b"\x01"
        + identities[1].to_bytes()
        + b"\x01"
        + ep("198.51.100.7/443").to_bytes()
    )
    assert World.from_bytes(blob)[0] == p and p.verify_signature()


def test_root_private_key_is_never_serialized(identities, keys) -> None:
    assert identities[0].private_key is not None
    w = World.make(
        type=WorldType.PLANET,
        id=7,
        timestamp=1,
        update_signing_public=keys[0][0],
        update_signing_private=keys[0][1],
        roots=[Root(identities[0])],
    )
    assert identities[0].private_key not in w.to_bytes()
    assert World.from_bytes(w.to_bytes())[0].roots[0].identity.private_key is None


def test_make_rejects_bad_arguments(identities, keys) -> None:
    with pytest.raises(ValueError):  # private does not match public
        make_moon(identities, (keys[0][0], keys[1][1]))
    with pytest.raises(ValueError):  # nothing to sign with
        World.make(type=WorldType.MOON, id=1, timestamp=1, update_signing_public=keys[0][0], roots=[])
    too_many = [Root(identities[0].public())] * (WORLD_MAX_ROOTS + 1)
    with pytest.raises(InvalidFormatError):
        World.make(
            type=WorldType.MOON,
            id=1,
            timestamp=1,
            update_signing_public=keys[0][0],
            update_signing_private=keys[0][1],
            roots=too_many,
        )
    with pytest.raises(InvalidFormatError):
        Root(identities[0].public(), tuple(ep(f"10.0.0.{i}/1") for i in range(33)))


def test_moon_dictionary_is_skipped_like_the_core(identities, keys) -> None:
    moon = make_moon(identities, keys[0])
    blob = moon.to_bytes()
    with_dict = blob[:-2] + b"\x00\x05hello"
    back, used = World.from_bytes(with_dict + b"more")
    assert used == len(with_dict)
    assert back == moon
    # the core re-serializes with an empty dictionary, which is what the signature covers
    assert back.verify_signature() and back.to_bytes() == blob
    with pytest.raises(InvalidFormatError):
        World.from_bytes(blob[:-2] + b"\x00\x05hell")


def test_nil_endpoints_are_kept_in_place(identities, keys) -> None:
    # The core keeps nil endpoints as empty addresses and re-serializes them; so must we,
    # or signatures over such worlds would not verify.
    root = Root(identities[0].public(), (ep("192.0.2.1/1"), ep("192.0.2.2/2")), nil_endpoint_positions=(1,))
    w = World.make(
        type=WorldType.PLANET,
        id=9,
        timestamp=1,
        update_signing_public=keys[0][0],
        update_signing_private=keys[0][1],
        roots=[root],
    )
    blob = w.to_bytes()
    tail = b"\x03" + ep("192.0.2.1/1").to_bytes() + b"\x00" + ep("192.0.2.2/2").to_bytes()
    assert blob.endswith(tail)
    back = World.from_bytes(blob)[0]
    assert back.roots[0].stable_endpoints == root.stable_endpoints
    assert back.roots[0].nil_endpoint_positions == (1,)
    assert back.verify_signature()
    # A reserved Ethernet-type endpoint (0x01 + 6 bytes) is skipped and re-emitted as nil.
    eth = (
        blob[: -len(tail)]
        + b"\x03"
        + ep("192.0.2.1/1").to_bytes()
        + b"\x01"
        + bytes(6)
        + ep("192.0.2.2/2").to_bytes()
    )
    parsed = World.from_bytes(eth)[0]
    assert parsed.to_bytes() == blob
    with pytest.raises(ValueError):
        Root(identities[0].public(), (), nil_endpoint_positions=(0, 0))


# ------------------------------------------------------------------ update rule


def test_update_rule(identities, keys) -> None:
    k_old, k_new = keys
    current = make_moon(identities, k_old, ts=1000)
    # newer, signed with the current world's key, embedding a new key: accepted
    update = make_moon(identities, k_new, ts=2000, sign_with=k_old[1])
    assert update.update_signing_key == k_new[0]
    assert not update.verify_signature()  # not self-signed...
    assert update.verify_signature(k_old[0])  # ...but by the previous key
    assert current.should_be_replaced_by(update)
    # same key, newer: accepted
    assert current.should_be_replaced_by(make_moon(identities, k_old, ts=1001))
    # same or older timestamp: rejected
    assert not current.should_be_replaced_by(make_moon(identities, k_old, ts=1000))
    assert not current.should_be_replaced_by(make_moon(identities, k_old, ts=999))
    # signed by some other key: rejected
    assert not current.should_be_replaced_by(make_moon(identities, k_new, ts=3000))
    # different id or type: rejected even if properly signed
    other_id = World.make(
        type=WorldType.MOON,
        id=current.id + 1,
        timestamp=5000,
        update_signing_public=k_old[0],
        update_signing_private=k_old[1],
        roots=current.roots,
    )
    assert not current.should_be_replaced_by(other_id)
    as_planet = World.make(
        type=WorldType.PLANET,
        id=current.id,
        timestamp=5000,
        update_signing_public=k_old[0],
        update_signing_private=k_old[1],
        roots=current.roots,
    )
    assert not current.should_be_replaced_by(as_planet)
    # tampered update: rejected
    forged = World(
        update.type,
        update.id,
        update.timestamp + 1,
        update.update_signing_key,
        update.signature,
        update.roots,
    )
    assert not current.should_be_replaced_by(forged)
    # after replacement the *new* key governs
    assert not update.should_be_replaced_by(make_moon(identities, k_old, ts=3000))
    assert update.should_be_replaced_by(make_moon(identities, k_new, ts=3000))


def test_null_world_is_replaced_by_anything(identities, keys) -> None:
    null = World(WorldType.NULL, 0, 0, bytes(64), bytes(96), ())
    assert not null
    assert null.should_be_replaced_by(default_planet())
    zero_id = World(WorldType.PLANET, 0, 0, bytes(64), bytes(96), ())
    assert zero_id.should_be_replaced_by(make_moon(identities, keys[0]))
    # a null world parses and re-serializes too (no dictionary)
    assert World.from_bytes(null.to_bytes()) == (null, len(null.to_bytes()))
    # the real planet is not replaced by a forged newer planet
    p = default_planet()
    fake = World.make(
        type=WorldType.PLANET,
        id=p.id,
        timestamp=p.timestamp + 1,
        update_signing_public=keys[0][0],
        update_signing_private=keys[0][1],
        roots=p.roots,
    )
    assert not p.should_be_replaced_by(fake)


# ------------------------------------------------------------------ malformed input


def test_limits_and_types() -> None:
    b = bytearray(PLANET_BYTES)
    b[ROOT_COUNT_AT] = WORLD_MAX_ROOTS + 1
    with pytest.raises(InvalidFormatError):
        World.from_bytes(bytes(b))
    # first root's endpoint count sits after its identity (5 + 1 + 64 + 1 bytes)
    b = bytearray(PLANET_BYTES)
    at = ROOT_COUNT_AT + 1 + 71
    assert b[at] == 2
    b[at] = 33
    with pytest.raises(InvalidFormatError):
        World.from_bytes(bytes(b))
    for t in (2, 126, 128, 255):
        with pytest.raises(InvalidFormatError):
            World.from_bytes(bytes([t]) + PLANET_BYTES[1:])
    with pytest.raises(InvalidFormatError):
        World.from_bytes(b"")
    with pytest.raises(InvalidFormatError):
        World.from_bytes(PLANET_BYTES, -1)


def test_every_truncation_raises_invalid_format(identities, keys) -> None:
    moon = make_moon(identities, keys[0]).to_bytes()
    for blob in (PLANET_BYTES, moon):
        for cut in range(len(blob)):
            with pytest.raises(InvalidFormatError):
                World.from_bytes(blob[:cut])


def test_random_corruption_never_escapes(identities, keys) -> None:
    rng = random.Random(0x5A17)
    moon = make_moon(identities, keys[0]).to_bytes()
    for blob in (PLANET_BYTES, moon):
        for _ in range(400):
            b = bytearray(blob)
            for _ in range(rng.choice((1, 1, 2, 5))):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            if bytes(b) == blob:
                continue
            try:
                w, _used = World.from_bytes(bytes(b))
            except InvalidFormatError:
                continue
            # every byte is covered by the signature, so a parsed mutant never verifies
            assert not w.verify_signature()
        for _ in range(100):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(400)))
            try:
                World.from_bytes(junk)
            except InvalidFormatError:
                pass


# ------------------------------------------------------------------ files and ordering


def test_files(tmp_path, identities, keys) -> None:
    moon = make_moon(identities, keys[0])
    path = tmp_path / moon_file_name(moon.id)
    save_world_file(path, moon)
    assert path.read_bytes() == moon.to_bytes()
    assert load_world_file(path) == moon
    (tmp_path / "bad").write_bytes(moon.to_bytes()[:50])
    with pytest.raises(InvalidFormatError):
        load_world_file(tmp_path / "bad")
    with pytest.raises(OSError):
        load_world_file(tmp_path / "missing")


def test_genmoon_order(identities) -> None:
    a, b = sorted(identities[:2], key=lambda i: int(i.address))
    eps = (
        ep("2001:db8::2/9993"),
        ep("2001:db8::1/9993"),
        ep("10.0.0.2/9993"),
        ep("10.0.0.1/443"),
        ep("9.0.0.3/9993"),
    )
    roots = genmoon_order([Root(b.public(), eps), Root(a.public())])
    assert [r.identity for r in roots] == [a, b]
    # IPv4 before IPv6; within a family the core's sort compares the port and IPv4 address as
    # native (little-endian) integers holding network-order bytes.
    assert [str(e) for e in roots[1].stable_endpoints] == [
        "10.0.0.2/9993",  # port 9993 = 0x2709 -> native 0x0927; 10.0.0.2 -> native 0x0200000a
        "9.0.0.3/9993",  # 9.0.0.3 -> native 0x03000009
        "10.0.0.1/443",  # port 443 = 0x01bb -> native 0xbb01, so after every port-9993 address
        "2001:db8::1/9993",
        "2001:db8::2/9993",
    ]
