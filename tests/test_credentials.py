"""Credentials (COM, Capability, Tag, COO, Revocation): layouts, signatures, agreement.

The REAL_* vectors were produced by the ZeroTier 1.14.1 core itself (its
Identity/CertificateOfMembership/Tag/CertificateOfOwnership/Revocation/Capability
classes, compiled outside this repository) from the two test identities below;
C25519 signatures are deterministic, so ours must match byte for byte.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct

import pytest

from ztcore.errors import InvalidFormatError
from ztcore.identity import Address, Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    ComQualifier,
    CredentialType,
    NetworkCredentials,
    Revocation,
    Tag,
    Thing,
    VerifyResult,
)
from ztcore.vl2.mac import MAC
from ztcore.vl2.rules import Rule

CONTROLLER_SECRET = (
    "cf1b609418:0:d99a55312193d8c450bb94291c096be1a6437e108f92668474eee7aa716e4f2731276502064623e5fa3d344"
    "77585cc3e304f581d4639dc25487df6b38fe876cf:8056e02e4981b52239d7e40c4d5a8f90d05f6251edd7c255a19e8cdd71"
    "82d13c6e5e141d49ad54dedee9acc06b25f40cac8aa0d5df6eabd59220034fbdaaacc9"
)

MEMBER_SECRET = (
    "dea886b682:0:aab23118cc9f1b4d24e443b68efc2269965d0517731529f57fd968679302fa773756232137bf374afe02dd2"
    "cf3e810883dec4ab57925fe5269ad2dcac9d04af5:59ed5901a6bf93d35808095bb4a38ec387457c47a6e488128695d5f8d8"
    "b387d0c5cc1d5fd69a70c3a5805e7166cac841b36b268321804e3e77823942c9d08976"
)

REAL_COM = bytes.fromhex(
    "01000700000000000000000000018bcfe5680000000000001b77400000000000000001cf1b60941800000100000000000000"
    "000000000000000002000000dea886b682ffffffffffffffff0000000000000003fc060d285e66ac6effffffffffffffff00"
    "00000000000004457864b4f662b925ffffffffffffffff000000000000000508386deb01b86c37ffffffffffffffff000000"
    "0000000006bd2819031a4c8d32ffffffffffffffffcf1b6094185b2221b2e3128e3f33732f34655f396b9ba0dbddd7db4afa"
    "8da5855ebd50321850c7371d45282eefba314a376c3ba489e4a9841cd7784024e7d340485cba550af648a60764f12c13e15c"
    "ece0bb90e0e646cd122ffa3782c43ff5e5bb876a1e28"
)

REAL_TAG = bytes.fromhex(
    "cf1b6094180000010000018bcfe56800000000640000002adea886b682cf1b6094180100608734d41cde0dd1dbbcd987fa01"
    "26a8afbc0e7635a21448217a2c7b05b16f77d780a27af587f50af07b16e2e4fc51605ce1b9afad6dfd8183d863a46ffda9da"
    "028938a85c3932828b742454dcdc88e3f8a3303c69eba95f8fe70b1b08b1a606720000"
)

REAL_COO = bytes.fromhex(
    "cf1b6094180000010000018bcfe568000000000000000000000000010003020a93110500000000000000000000000003fd00"
    "12340000000000000000000000050132aabbccddee00000000000000000000dea886b682cf1b609418010060f038f6824548"
    "ddd6579e0b8a7818d5bbd72a491ab0ee2cbf4e205737cda225739f16d7a1db3e08c14631e2136b2667707bd0677f7ecd5e36"
    "9953252fedc05703b22df68b3da1060e40aac34cc0490bd6675b191d0542691ea477b8b1a6aded300000"
)

REAL_REV = bytes.fromhex(
    "0000000012345678cf1b60941800000100000000000000000000018bcfe568000000000000000001dea886b682cf1b609418"
    "010100601f0af4cf6a3d00418c2daf0629e757ef761b211951309f40200de8cc88142bbcaba9f6fac6a0a07982075d0ea6ce"
    "ab97077d614a83909586feec180775ca100ea213324641aadf223314c670c97a5459b956ba2d38f14a791a38eda8543480ea"
    "0000"
)

REAL_CAP = bytes.fromhex(
    "cf1b6094180000010000018bcfe5680000000007000225020800010001dea886b682cf1b60941801006028bf359776b30cbc"
    "cc2669d45d5477cf8da3b0507de433c745b2f698333e93e760d9dd4d8bba97d1876797c9d5c185a67d70b9956be2ebf4ae79"
    "9ce98cb72a0457abc953086f6013bc2a12724b8d738fdce4e03a478e8b013d250e98636ba17600000000000000"
)

REAL_CHUNK = bytes.fromhex(
    "cf1b6094180000010012763d30303030303030303030303030303037000102030405060708000000120000000001006003dc"
    "9a8db5747d315ea634cf4483c4431cdd0e0fe36e00c3c7ad00db33c7636b494a1c1488467d3d59e2723123973abb1804f97f"
    "d2346417b291dc540624c907f296ecbf898e1c282570ccc29cc7260880454568ec218d165bd131737fac5133"
)

TS = 1700000000000
U64_MAX = (1 << 64) - 1


@pytest.fixture(scope="module")
def ctl() -> Identity:
    return Identity.from_string(CONTROLLER_SECRET)


@pytest.fixture(scope="module")
def mem() -> Identity:
    return Identity.from_string(MEMBER_SECRET)


@pytest.fixture(scope="module")
def nwid(ctl: Identity) -> int:
    return (int(ctl.address) << 24) | 1


def _u64(b: bytes, off: int) -> int:
    return struct.unpack_from(">Q", b, off)[0]


# ---------------------------------------------------------------- known answers


def test_com_matches_real_core_and_layout(ctl: Identity, mem: Identity, nwid: int) -> None:
    com = CertificateOfMembership.create(TS, 1800000, nwid, mem)
    assert com.sign(ctl)
    b = com.to_bytes()
    assert b == REAL_COM
    # Layout by hand: type 1, u16 count 7, 7 x 24-byte qualifiers, signer, signature.
    assert b[0] == 1 and b[1:3] == b"\x00\x07" and len(b) == 3 + 7 * 24 + 5 + 96
    h = hashlib.sha384(mem.address.to_bytes() + mem.public_key).digest()
    expected = [(0, TS, 1800000), (1, nwid, 0), (2, int(mem.address), U64_MAX)]
    expected += [(3 + i, int.from_bytes(h[8 * i : 8 * i + 8], "big"), U64_MAX) for i in range(4)]
    for i, (qid, value, delta) in enumerate(expected):
        off = 3 + 24 * i
        assert (_u64(b, off), _u64(b, off + 8), _u64(b, off + 16)) == (qid, value, delta)
    assert b[171:176] == ctl.address.to_bytes()
    # The signature covers exactly the qualifier block.
    assert ctl.verify(b[3:171], b[176:272])
    assert com.timestamp == TS and com.network_id == nwid and com.issued_to == mem.address


def test_tag_matches_real_core_and_layout(ctl: Identity, mem: Identity, nwid: int) -> None:
    tag = Tag(100, 42, nwid, TS, mem.address)
    assert tag.sign(ctl)
    b = tag.to_bytes()
    assert b == REAL_TAG
    assert len(b) == 135
    assert _u64(b, 0) == nwid and _u64(b, 8) == TS
    assert struct.unpack_from(">II", b, 16) == (100, 42)
    assert b[24:29] == mem.address.to_bytes() and b[29:34] == ctl.address.to_bytes()
    assert b[34:37] == b"\x01\x00\x60" and b[133:135] == b"\x00\x00"
    signed = b"\x7f" * 8 + b[0:34] + b"\x00\x00" + b"\x7f" * 8
    assert ctl.verify(signed, b[37:133])


def test_coo_matches_real_core_and_layout(ctl: Identity, mem: Identity, nwid: int) -> None:
    coo = CertificateOfOwnership(nwid, TS, mem.address, 1)
    assert coo.add_thing(InetAddress.parse("10.147.17.5/24"))
    assert coo.add_thing(InetAddress.parse("fd00:1234::5/88"))
    assert coo.add_thing(MAC(0x32AABBCCDDEE))
    assert coo.sign(ctl)
    b = coo.to_bytes()
    assert b == REAL_COO
    assert _u64(b, 0) == nwid and _u64(b, 8) == TS and _u64(b, 16) == 0
    assert struct.unpack_from(">IH", b, 24) == (1, 3)
    things = [b[30 + 17 * i : 30 + 17 * (i + 1)] for i in range(3)]
    assert things[0] == b"\x02" + bytes([10, 147, 17, 5]) + bytes(12)
    assert things[1] == b"\x03" + ipaddress.IPv6Address("fd00:1234::5").packed
    assert things[2] == b"\x01" + bytes.fromhex("32aabbccddee") + bytes(10)
    p = 30 + 51
    assert b[p : p + 5] == mem.address.to_bytes() and b[p + 5 : p + 10] == ctl.address.to_bytes()
    assert b[p + 10 : p + 13] == b"\x01\x00\x60" and len(b) == p + 13 + 96 + 2
    assert coo.owns(ipaddress.IPv4Address("10.147.17.5")) and coo.owns(MAC(0x32AABBCCDDEE))
    assert not coo.owns(ipaddress.IPv4Address("10.147.17.6"))


def test_revocation_matches_real_core_and_layout(ctl: Identity, mem: Identity, nwid: int) -> None:
    rev = Revocation(0x12345678, nwid, 0, TS, 1, mem.address, CredentialType.COM)
    assert rev.sign(ctl)
    b = rev.to_bytes()
    assert b == REAL_REV
    assert b[0:4] == bytes(4) and b[4:8] == bytes.fromhex("12345678") and _u64(b, 8) == nwid
    assert b[16:20] == bytes(4) and b[20:24] == bytes(4)
    assert _u64(b, 24) == TS and _u64(b, 32) == 1
    assert b[40:45] == mem.address.to_bytes() and b[45:50] == ctl.address.to_bytes()
    assert b[50] == CredentialType.COM and b[51:54] == b"\x01\x00\x60" and len(b) == 152
    assert rev.fast_propagate


def test_capability_matches_real_core_and_layout(ctl: Identity, mem: Identity, nwid: int) -> None:
    cap = Capability(7, nwid, TS, [Rule.match_ethertype(0x0800), Rule.action_accept()])
    assert cap.sign(ctl, mem.address)
    b = cap.to_bytes()
    assert b == REAL_CAP
    assert _u64(b, 0) == nwid and _u64(b, 8) == TS
    assert struct.unpack_from(">IH", b, 16) == (7, 2)
    assert b[22:28] == bytes.fromhex("250208000100")  # MATCH_ETHERTYPE 0x0800, ACTION_ACCEPT
    assert b[28] == 1  # max custody chain length
    assert b[29:34] == mem.address.to_bytes() and b[34:39] == ctl.address.to_bytes()
    assert b[39:42] == b"\x01\x00\x60"
    assert b[138:143] == bytes(5) and b[143:145] == b"\x00\x00" and len(b) == 145
    signed = b"\x7f" * 8 + b[0:29] + b"\x00\x00" + b"\x7f" * 8
    assert ctl.verify(signed, b[42:138])
    assert cap.issued_to == mem.address


# ------------------------------------------------------------ parse/serialize


@pytest.mark.parametrize(
    ("kind", "blob"),
    [
        (CertificateOfMembership, REAL_COM),
        (Tag, REAL_TAG),
        (CertificateOfOwnership, REAL_COO),
        (Revocation, REAL_REV),
        (Capability, REAL_CAP),
    ],
)
def test_parse_serialize_is_byte_identical(kind: type, blob: bytes, ctl: Identity) -> None:
    obj, n = kind.from_bytes(blob + b"trailing", 0)
    assert n == len(blob)
    assert obj.to_bytes() == blob
    assert obj.verify(ctl) == VerifyResult.OK
    obj2, n2 = kind.from_bytes(b"xx" + blob, 2)
    assert n2 == len(blob) and obj2 == obj


@pytest.mark.parametrize(
    "kind", [CertificateOfMembership, Tag, CertificateOfOwnership, Revocation, Capability]
)
def test_every_truncation_is_a_format_error(kind: type) -> None:
    blob = {
        CertificateOfMembership: REAL_COM,
        Tag: REAL_TAG,
        CertificateOfOwnership: REAL_COO,
        Revocation: REAL_REV,
        Capability: REAL_CAP,
    }[kind]
    for cut in range(len(blob)):
        with pytest.raises(InvalidFormatError):
            kind.from_bytes(blob[:cut])


def _flip_all(kind: type, blob: bytes, ctl: Identity, unsigned: set[int]) -> None:
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        try:
            obj, _ = kind.from_bytes(bytes(bad))
        except InvalidFormatError:
            continue
        result = obj.verify(ctl)
        if i in unsigned:
            continue
        assert result != VerifyResult.OK, f"flip at byte {i} still verifies"


def test_com_any_changed_byte_fails(ctl: Identity) -> None:
    _flip_all(CertificateOfMembership, REAL_COM, ctl, set())


def test_tag_any_changed_byte_fails(ctl: Identity) -> None:
    _flip_all(Tag, REAL_TAG, ctl, set())


def test_coo_any_changed_byte_fails(ctl: Identity) -> None:
    _flip_all(CertificateOfOwnership, REAL_COO, ctl, set())


def test_revocation_any_changed_byte_fails_except_unused_fields(ctl: Identity) -> None:
    # The two 4-byte "unused" fields are skipped by readers and not signed.
    unused = set(range(0, 4)) | set(range(16, 20))
    _flip_all(Revocation, REAL_REV, ctl, unused)
    bad = bytearray(REAL_REV)
    bad[1] = 0xAA
    rev, _ = Revocation.from_bytes(bytes(bad))
    assert rev.to_bytes() == REAL_REV  # normalised back to zero


def test_capability_any_changed_byte_fails_except_custody_recipient(ctl: Identity) -> None:
    # As in the core, the custody "to" address is outside the signed message.
    _flip_all(Capability, REAL_CAP, ctl, set(range(29, 34)))


# ------------------------------------------------------------------ verification


def test_verify_needs_the_controller(ctl: Identity, mem: Identity, nwid: int) -> None:
    tag = Tag(1, 2, nwid, TS, mem.address)
    assert tag.verify(ctl) == VerifyResult.BAD  # unsigned
    tag.sign(mem)  # signed, but not by the controller
    assert tag.verify(mem) == VerifyResult.BAD
    tag.sign(ctl)
    assert tag.verify(lambda a: None) == VerifyResult.NEED_IDENTITY
    assert tag.verify({int(ctl.address): ctl}) == VerifyResult.OK
    assert tag.verify(mem) == VerifyResult.NEED_IDENTITY  # the lookup does not know the signer
    assert not Tag(1, 2, nwid, TS, mem.address).sign(ctl.public())  # no private key


def test_com_verify(ctl: Identity, mem: Identity, nwid: int) -> None:
    com, _ = CertificateOfMembership.from_bytes(REAL_COM)
    assert com.verify(ctl) == VerifyResult.OK
    assert com.verify(lambda a: None) == VerifyResult.NEED_IDENTITY
    other = CertificateOfMembership.create(TS, 1800000, nwid, mem)
    assert other.verify(ctl) == VerifyResult.BAD  # unsigned
    other.sign(mem)
    assert other.verify(mem) == VerifyResult.BAD  # not the controller of nwid
    other.qualifiers[0] = ComQualifier(0, TS + 1, 1800000)
    assert other.verify(mem) == VerifyResult.BAD


def test_capability_custody_chain(ctl: Identity, mem: Identity, nwid: int) -> None:
    cap = Capability(9, nwid, TS, [Rule.action_accept()], max_custody_chain_length=2)
    assert cap.sign(ctl, mem.address)
    assert cap.sign(mem, Address(0x0102030405))
    assert not cap.sign(mem, Address(0x0102030406))  # chain full
    ids = {int(ctl.address): ctl, int(mem.address): mem}
    assert cap.verify(ids) == VerifyResult.OK
    b = cap.to_bytes()
    back, n = Capability.from_bytes(b)
    assert n == len(b) and back == cap and back.issued_to == Address(0x0102030405)
    # Second hop not from the previous holder.
    bad = Capability(9, nwid, TS, [Rule.action_accept()], max_custody_chain_length=2)
    bad.sign(ctl, Address(0x0A0B0C0D0E))
    bad.sign(mem, Address(0x0102030405))
    assert bad.verify(ids) == VerifyResult.BAD
    # First hop must be the controller.
    first = Capability(9, nwid, TS, [], max_custody_chain_length=1)
    first.sign(mem, ctl.address)
    assert first.verify(ids) == VerifyResult.BAD
    assert Capability(9, nwid, TS).verify(ids) == VerifyResult.BAD  # no custody at all


def test_capability_limits() -> None:
    with pytest.raises(InvalidFormatError):
        Capability(1, 1, 0, [Rule.action_accept()] * 65).to_bytes()
    body = struct.pack(">QqIH", 1, 0, 1, 65)
    with pytest.raises(InvalidFormatError):
        Capability.from_bytes(body + b"\x01\x00" * 65 + b"\x01" + bytes(5) + b"\x00\x00")
    good = struct.pack(">QqIH", 1, 0, 1, 0) + b"\x01" + bytes(5) + b"\x00\x00"
    cap, n = Capability.from_bytes(good)
    assert n == len(good) and cap.custody == [] and cap.to_bytes() == good
    with pytest.raises(InvalidFormatError):  # max custody chain length 0
        Capability.from_bytes(good[:22] + b"\x00" + good[23:])
    with pytest.raises(InvalidFormatError):  # max custody chain length 8
        Capability.from_bytes(good[:22] + b"\x08" + good[23:])


def test_unknown_signature_type_is_skipped(mem: Identity) -> None:
    # A tag whose signature block has type 2 and a 3-byte body: parsed, signature left zero.
    body = struct.pack(">QqII", 5, 6, 7, 8) + mem.address.to_bytes() + bytes(5)
    blob = body + b"\x02\x00\x03abc" + b"\x00\x02zz"
    tag, n = Tag.from_bytes(blob)
    assert n == len(blob) and tag.signature == bytes(96) and tag.value == 8
    with pytest.raises(InvalidFormatError):  # type 1 with a wrong length
        Tag.from_bytes(body + b"\x01\x00\x5f" + bytes(95) + b"\x00\x00")


def test_com_parse_rules() -> None:
    def com_blob(ids: list[int], signer: bytes = bytes(5)) -> bytes:
        return (
            b"\x01"
            + struct.pack(">H", len(ids))
            + b"".join(struct.pack(">QQQ", i, 0, 0) for i in ids)
            + signer
        )

    com, n = CertificateOfMembership.from_bytes(com_blob([0, 1, 1, 2]))
    assert n == 3 + 4 * 24 + 5 and not com.is_signed
    with pytest.raises(InvalidFormatError):
        CertificateOfMembership.from_bytes(com_blob([1, 0]))  # ids must ascend
    with pytest.raises(InvalidFormatError):
        CertificateOfMembership.from_bytes(com_blob(list(range(9))))  # at most 8
    with pytest.raises(InvalidFormatError):
        CertificateOfMembership.from_bytes(b"\x02" + com_blob([0])[1:])  # unknown format
    with pytest.raises(InvalidFormatError):
        CertificateOfMembership.from_bytes(com_blob([0], b"\x00\x00\x00\x00\x01"))  # signed but no signature
    empty = CertificateOfMembership()
    assert not empty and empty.to_bytes() == b"\x01\x00\x00" + bytes(5)


# ------------------------------------------------------------------- agreement


def test_com_agreement_like_the_core_selftest(ctl: Identity, mem: Identity) -> None:
    a = CertificateOfMembership.create(10000, 100, 1, mem)
    b = CertificateOfMembership.create(10099, 100, 1, ctl)
    a.sign(ctl)
    b.sign(ctl)
    assert a.agrees_with(b, ctl) and b.agrees_with(a, mem)
    a = CertificateOfMembership.create(10000, 100, 1, mem)
    b = CertificateOfMembership.create(10101, 100, 1, ctl)
    assert not a.agrees_with(b, ctl) and not b.agrees_with(a, mem)


def test_com_agreement_details(ctl: Identity, mem: Identity) -> None:
    a = CertificateOfMembership.create(10000, 100, 1, mem)
    b = CertificateOfMembership.create(10100, 100, 1, ctl)
    assert a.agrees_with(b, ctl)  # exactly maxDelta apart still agrees
    assert not a.agrees_with(b, mem)  # hash qualifiers must match the other's identity
    assert not a.agrees_with(b)  # ...which is therefore required
    other_net = CertificateOfMembership.create(10000, 100, 2, ctl)
    assert not a.agrees_with(other_net, ctl)  # network id has maxDelta 0
    # Old controllers issue only qualifiers 0..2: no identity hash check then.
    old_a = CertificateOfMembership(a.qualifiers[:3])
    old_b = CertificateOfMembership(b.qualifiers[:3])
    assert old_a.agrees_with(old_b) and old_a.agrees_with(b)
    assert not a.agrees_with(old_b, ctl)  # we have hash qualifiers, they do not
    assert not CertificateOfMembership().agrees_with(b, ctl)
    assert not old_a.agrees_with(CertificateOfMembership())
    # Asymmetric max delta: only *our* maxDelta counts.
    wide = CertificateOfMembership([ComQualifier(0, 0, 1000)])
    narrow = CertificateOfMembership([ComQualifier(0, 500, 10)])
    assert wide.agrees_with(narrow) and not narrow.agrees_with(wide)


# ---------------------------------------------------------- NETWORK_CREDENTIALS


def test_network_credentials_payload(ctl: Identity) -> None:
    com, _ = CertificateOfMembership.from_bytes(REAL_COM)
    cap, _ = Capability.from_bytes(REAL_CAP)
    tag, _ = Tag.from_bytes(REAL_TAG)
    rev, _ = Revocation.from_bytes(REAL_REV)
    coo, _ = CertificateOfOwnership.from_bytes(REAL_COO)
    nc = NetworkCredentials([com], [cap], [tag], [rev], [coo])
    b = nc.to_bytes()
    assert b == (
        REAL_COM
        + b"\x00"
        + b"\x00\x01"
        + REAL_CAP
        + b"\x00\x01"
        + REAL_TAG
        + b"\x00\x01"
        + REAL_REV
        + b"\x00\x01"
        + REAL_COO
    )
    back, n = NetworkCredentials.from_bytes(b)
    assert n == len(b) and back == nc
    # Older senders: COMs only, with or without the terminating zero.
    only, n = NetworkCredentials.from_bytes(REAL_COM)
    assert only.coms == [com] and only.capabilities == [] and n == len(REAL_COM)
    assert NetworkCredentials.from_bytes(REAL_COM + b"\x00")[0].coms == [com]
    with pytest.raises(InvalidFormatError):
        NetworkCredentials.from_bytes(REAL_COM + b"\x00\x00\x02" + REAL_CAP)  # count says 2, one present


def test_thing_types_decode(ctl: Identity) -> None:
    coo, _ = CertificateOfOwnership.from_bytes(REAL_COO)
    assert [t for t, _ in coo.things] == [Thing.IPV4_ADDRESS, Thing.IPV6_ADDRESS, Thing.MAC_ADDRESS]
    too_many = CertificateOfOwnership(1, 0, Address(1))
    for i in range(16):
        assert too_many.add_thing(ipaddress.IPv4Address(i))
    assert not too_many.add_thing(ipaddress.IPv4Address(99))
