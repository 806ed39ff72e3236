"""NetworkConfig dictionary form and the chunked, signed NETWORK_CONFIG transport."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from ztcore.errors import InvalidFormatError, ZTError
from ztcore.identity import Address, Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.credentials import Capability, CertificateOfMembership, CertificateOfOwnership, Tag
from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.netconf import (
    FLAG_ENABLE_BROADCAST,
    FLAG_ENABLE_IPV6_NDP_EMULATION,
    NETWORKCONFIG_DICT_CAPACITY,
    SPECIALIST_TYPE_ACTIVE_BRIDGE,
    SPECIALIST_TYPE_ANCHOR,
    DnsConfig,
    NetworkConfig,
    NetworkType,
    Route,
)
from ztcore.vl2.netconf_chunks import (
    MAX_CONFIG_CHUNK_LENGTH,
    NetworkConfigAssembler,
    NetworkConfigChunk,
    NetworkConfigChunker,
    NetworkConfigChunkError,
)
from ztcore.vl2.netconf_request import build_request_metadata
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

# A config dictionary as the 1.14.1 core's NetworkConfig::toDictionary emits it
# (the core parsed our encoding of CONFIG_KAT below and re-emitted exactly this).
REAL_CONFIG_DICT = bytes.fromhex(
    "763d303030303030303030303030303030370a6e7769643d383035366332653231633030303030310a74733d303030303031"
    "386263666535363830300a63746d643d303030303030303030303162373734300a723d303030303030303030303030303032"
    "610a69643d313132323333343435350a74743d303030303030303030300a746c3d303030303030303030303030303030300a"
    "663d303030303030303030303030303030360a6d6c3d303030303030303030303030303032300a743d303030303030303030"
    "303030303030310a6e3d6d795c656e65745c5c785c6e0a6d74753d303030303030303030303030306166300a533d5c305c30"
    "02aabbccddee0a52543d045c6e93115c305c30185c305c305c305c305c30045c305c305c305c305c305c30045c6e9311015c"
    "305c305c305c305c30050a493d045c6e9311055c301806fd8056c2e21c5c305c3001999311223344555c30580a523da50208"
    "5c305c305c30015c300a444e533d7a742e6578616d706c655c305c305c305c305c305c305c305c305c305c305c305c305c30"
    "5c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c30"
    "5c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c30"
    "5c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c30"
    "5c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c305c30"
    "5c305c305c305c305c30045c6e9311355c30355c305c305c300a73736f763d303030303030303030303030303030300a7373"
    "6f653d30"
)

# A NETWORK_CONFIG chunk signed by the core with CONTROLLER_SECRET: network id
# (controller << 24 | 1), 18-byte dictionary "v=0000000000000007", flags 0,
# update id 0x0102030405060708, total 18, index 0.
REAL_CHUNK = bytes.fromhex(
    "cf1b6094180000010012763d30303030303030303030303030303037000102030405060708000000120000000001006003dc"
    "9a8db5747d315ea634cf4483c4431cdd0e0fe36e00c3c7ad00db33c7636b494a1c1488467d3d59e2723123973abb1804f97f"
    "d2346417b291dc540624c907f296ecbf898e1c282570ccc29cc7260880454568ec218d165bd131737fac5133"
)

NWID_KAT = 0x8056C2E21C000001
IA = InetAddress.parse


CONFIG_KAT = NetworkConfig(
    NWID_KAT,
    Address(0x1122334455),
    timestamp=1700000000000,
    credential_time_max_delta=1800000,
    revision=42,
    flags=FLAG_ENABLE_BROADCAST | FLAG_ENABLE_IPV6_NDP_EMULATION,
    type=NetworkType.PUBLIC,
    name="my=net\\x\n",
    mtu=2800,
    multicast_limit=32,
    specialists=[SPECIALIST_TYPE_ACTIVE_BRIDGE | 0xAABBCCDDEE],
    routes=[Route(IA("10.147.17.0/24")), Route(IA("0.0.0.0/0"), IA("10.147.17.1/0"), 0, 5)],
    static_ips=[IA("10.147.17.5/24"), IA("fd80:56c2:e21c:0:199:9311:2233:4455/88")],
    rules=[Rule.match_ethertype(0x0800, not_=True), Rule.action_drop(), Rule.action_accept()],
    dns=DnsConfig("zt.example", [IA("10.147.17.53/53")]),
)


@pytest.fixture(scope="module")
def ctl() -> Identity:
    return Identity.from_string(CONTROLLER_SECRET)


@pytest.fixture(scope="module")
def mem() -> Identity:
    return Identity.from_string(MEMBER_SECRET)


@pytest.fixture(scope="module")
def nwid(ctl: Identity) -> int:
    return (int(ctl.address) << 24) | 1


@pytest.fixture(scope="module")
def full_config(ctl: Identity, mem: Identity, nwid: int) -> NetworkConfig:
    ts = 1700000000000
    com = CertificateOfMembership.create(ts, 1800000, nwid, mem)
    com.sign(ctl)
    cap = Capability(5, nwid, ts, [Rule.match_ip_protocol(6), Rule.action_accept()])
    cap.sign(ctl, mem.address)
    tags = [Tag(2, 20, nwid, ts, mem.address), Tag(1, 10, nwid, ts, mem.address)]
    for t in tags:
        t.sign(ctl)
    coo = CertificateOfOwnership(nwid, ts, mem.address, 1)
    coo.add_thing(IA("10.147.17.5/24"))
    coo.sign(ctl)
    return NetworkConfig(
        nwid,
        mem.address,
        timestamp=ts,
        credential_time_max_delta=1800000,
        revision=7,
        remote_trace_target=Address(0x0102030405),
        remote_trace_level=2,
        flags=FLAG_ENABLE_BROADCAST,
        type=NetworkType.PRIVATE,
        name="full",
        mtu=1400,
        multicast_limit=16,
        specialists=[SPECIALIST_TYPE_ANCHOR | 0x99, SPECIALIST_TYPE_ACTIVE_BRIDGE | 0x98],
        routes=[Route(IA("10.147.17.0/24"), None, 1, 0)],
        static_ips=[IA("10.147.17.5/24")],
        rules=[Rule.match_ethertype(0x0806), Rule.action_accept(), Rule.action_drop()],
        com=com,
        capabilities=[cap],
        tags=sorted(tags, key=lambda t: t.id),
        certificates_of_ownership=[coo],
        dns=DnsConfig("corp.example", [IA("10.147.17.53/53"), IA("fd00::53/53")]),
        sso_enabled=True,
        sso_version=0,
        authentication_url="https://login.example/?a=b",
        authentication_expiry_time=1700000999000,
    )


# ----------------------------------------------------------- dictionary form


def test_config_matches_real_core_dictionary() -> None:
    assert CONFIG_KAT.to_bytes() == REAL_CONFIG_DICT
    assert NetworkConfig.from_bytes(REAL_CONFIG_DICT) == CONFIG_KAT


def test_known_keys_order_and_encodings() -> None:
    d = Dictionary.from_bytes(REAL_CONFIG_DICT, NETWORKCONFIG_DICT_CAPACITY)
    assert d.keys() == [
        k.encode() for k in "v nwid ts ctmd r id tt tl f ml t n mtu S RT I R DNS ssov ssoe".split()
    ]
    lines = REAL_CONFIG_DICT.split(b"\n")
    assert lines[0] == b"v=0000000000000007"
    assert lines[1] == b"nwid=8056c2e21c000001"
    assert lines[2] == b"ts=0000018bcfe56800"  # 1700000000000
    assert lines[5] == b"id=1122334455"  # addresses: 10 hex digits
    assert lines[6] == b"tt=0000000000"
    assert lines[11] == b"n=my\\enet\\\\x\\n"  # '=' '\\' LF escaped
    assert d.get("S") == struct.pack(">Q", SPECIALIST_TYPE_ACTIVE_BRIDGE | 0xAABBCCDDEE)
    # Routes: target (prefix bits in port), via (nil if none), u16 flags, u16 metric.
    assert d.get("RT") == (
        IA("10.147.17.0/24").to_bytes()
        + b"\x00"
        + b"\x00\x00\x00\x00"
        + IA("0.0.0.0/0").to_bytes()
        + IA("10.147.17.1/0").to_bytes()
        + b"\x00\x00\x00\x05"
    )
    assert (
        d.get("I")
        == IA("10.147.17.5/24").to_bytes() + IA("fd80:56c2:e21c:0:199:9311:2233:4455/88").to_bytes()
    )
    assert d.get("R") == bytes([0xA5, 2, 8, 0, 0, 0, 1, 0])
    assert (
        d.get("DNS") == b"zt.example".ljust(128, b"\x00") + IA("10.147.17.53/53").to_bytes() + b"\x00\x00\x00"
    )
    assert d.get_uint("ssov") == 0 and d.get("ssoe") == b"0"


def test_full_round_trip_with_credentials(full_config: NetworkConfig) -> None:
    d = full_config.to_dictionary()
    for key in ("C", "CAP", "TAG", "COO", "S", "RT", "I", "R", "DNS", "aurl", "aexpt"):
        assert key in d
    assert d.get("C") == full_config.com.to_bytes()
    assert d.get("TAG") == b"".join(t.to_bytes() for t in full_config.tags)
    back = NetworkConfig.from_dictionary(d)
    assert back == full_config
    assert back.to_bytes() == d.to_bytes()
    assert back.active_bridges() == [Address(0x98)] and back.anchors() == [Address(0x99)]
    assert back.tag(2).value == 20 and back.capability(5) is not None and back.capability(6) is None
    assert back.enable_broadcast and not back.ndp_emulation and back.is_private


def test_tags_and_capabilities_are_sorted_by_id(full_config: NetworkConfig) -> None:
    unsorted = dataclasses.replace(full_config, tags=list(reversed(full_config.tags)))
    back = NetworkConfig.from_bytes(unsorted.to_bytes())
    assert [t.id for t in back.tags] == [1, 2]


def test_sso_version_1_fields(full_config: NetworkConfig) -> None:
    nc = dataclasses.replace(
        full_config,
        sso_version=1,
        issuer_url="https://issuer",
        central_auth_url="https://central",
        sso_nonce="nonce",
        sso_state="state",
        sso_client_id="client",
        sso_provider="okta",
        authentication_url="",
        authentication_expiry_time=0,
    )
    d = nc.to_dictionary()
    keys = d.keys()
    assert keys[-8:] == [
        k.encode() for k in ("ssov", "ssoe", "iurl", "ssoce", "sson", "ssos", "ssocid", "ssop")
    ]
    assert NetworkConfig.from_dictionary(d) == nc
    disabled = dataclasses.replace(nc, sso_enabled=False)
    back = NetworkConfig.from_dictionary(disabled.to_dictionary())
    assert back.issuer_url == "" and back.sso_provider == ""  # the core clears them


def test_decoder_defaults_and_clamps() -> None:
    base = b"v=0000000000000007\nnwid=0000000000000001\nid=0000000001"
    nc = NetworkConfig.from_bytes(base)
    assert nc.mtu == 2800 and nc.type == NetworkType.PRIVATE and nc.rules == [] and nc.com is None
    assert NetworkConfig.from_bytes(base + b"\nmtu=100").mtu == 1280
    assert NetworkConfig.from_bytes(base + b"\nmtu=ffffff").mtu == 10000
    assert NetworkConfig.from_bytes(base + b"\nts=ffffffffffffffff").timestamp == -1
    with pytest.raises(InvalidFormatError):
        NetworkConfig.from_bytes(b"v=7\nid=0000000001")  # no network id
    with pytest.raises(InvalidFormatError):
        NetworkConfig.from_bytes(b"v=7\nnwid=1")  # no issued-to
    with pytest.raises(InvalidFormatError):
        NetworkConfig.from_bytes(base + b"\nC=\x02")  # bad COM fails the whole config
    with pytest.raises(InvalidFormatError):
        NetworkConfig.from_bytes(base + b"\nDNS=abc")  # truncated DNS
    with pytest.raises(InvalidFormatError):
        NetworkConfig.from_bytes(base + b"\nR=%\x02\x08")  # truncated rule
    # Undecodable capabilities are dropped, not fatal (as in the core).
    assert NetworkConfig.from_bytes(base + b"\nCAP=xyz").capabilities == []


def test_legacy_dictionary_only_on_request() -> None:
    legacy = b"v=0000000000000005\nnwid=0000000000000001\nid=0000000001\neb=1\np=0\nv4s=10.0.0.5/24,10.0.0.0/24\net=800,806\nab=aabbccddee"
    with pytest.raises(InvalidFormatError):
        NetworkConfig.from_bytes(legacy)
    nc = NetworkConfig.from_bytes(legacy, allow_legacy=True)
    assert nc.enable_broadcast and nc.ndp_emulation and nc.is_public
    assert nc.static_ips == [IA("10.0.0.5/24")]  # network routes are not assignments
    assert nc.rules == [
        Rule.match_ethertype(0x800),
        Rule.action_accept(),
        Rule.match_ethertype(0x806),
        Rule.action_accept(),
    ]
    assert nc.active_bridges() == [Address(0xAABBCCDDEE)]


def test_limits_are_enforced() -> None:
    nc = dataclasses.replace(CONFIG_KAT, static_ips=[IA("10.0.0.1/8")] * 33)
    with pytest.raises(InvalidFormatError):
        nc.to_dictionary()
    with pytest.raises(InvalidFormatError):
        CONFIG_KAT.to_dictionary(capacity=100)


def test_request_metadata() -> None:
    d = build_request_metadata()
    assert d.keys() == [k.encode() for k in "v vend pv majv minv revv mr mc mcr mt f revr o".split()]
    assert d.get_uint("v") == 7 and d.get_uint("pv") == 12 and d.get_uint("mr") == 1024
    assert d.get_uint("minv") == 14 and d.get("o") == b"linux-x64"


# ---------------------------------------------------------------- chunking


def test_chunk_matches_real_core(ctl: Identity, nwid: int) -> None:
    chunks = NetworkConfigChunker(ctl).chunks(nwid, b"v=0000000000000007", update_id=0x0102030405060708)
    assert chunks == [REAL_CHUNK]
    c, n = NetworkConfigChunk.from_bytes(REAL_CHUNK)
    assert n == len(REAL_CHUNK)
    assert (c.network_id, c.data, c.flags, c.update_id, c.total_length, c.chunk_index) == (
        nwid,
        b"v=0000000000000007",
        0,
        0x0102030405060708,
        18,
        0,
    )
    # Layout: nwid, u16 len, data, u8 flags, u64 update id, u32 total, u32 index, u8 1, u16 96, sig
    assert REAL_CHUNK[8:10] == b"\x00\x12" and REAL_CHUNK[28] == 0
    assert (
        REAL_CHUNK[29:37] == bytes(range(1, 9)) and REAL_CHUNK[37:45] == b"\x00\x00\x00\x12\x00\x00\x00\x00"
    )
    assert REAL_CHUNK[45:48] == b"\x01\x00\x60" and len(REAL_CHUNK) == 48 + 96
    assert ctl.verify(REAL_CHUNK[:45], REAL_CHUNK[48:])


def test_chunking_and_out_of_order_reassembly(ctl: Identity, nwid: int, full_config: NetworkConfig) -> None:
    data = full_config.to_bytes()
    chunks = NetworkConfigChunker(ctl, max_chunk_length=300).chunks(nwid, full_config, update_id=77)
    assert len(chunks) == -(-len(data) // 300)
    parsed = [NetworkConfigChunk.from_bytes(c)[0] for c in chunks]
    assert b"".join(p.data for p in parsed) == data
    assert [p.chunk_index for p in parsed] == list(range(0, len(data), 300))
    asm = NetworkConfigAssembler(nwid, ctl)
    order = list(reversed(chunks))
    order.insert(2, order[1])  # a duplicate is ignored
    results = [asm.add_chunk(c) for c in order]
    assert all(r is None for r in results[:-1])
    done = results[-1]
    assert done is not None and done.update_id == 77 and done.data == data
    assert done.config == full_config
    assert asm.add_chunk(chunks[0]) is None  # late duplicate after completion


def test_default_chunk_size_single_chunk(ctl: Identity, nwid: int, full_config: NetworkConfig) -> None:
    chunks = NetworkConfigChunker(ctl).chunks(nwid, full_config)
    assert len(chunks) == 1 and MAX_CONFIG_CHUNK_LENGTH == 9740
    done = NetworkConfigAssembler(nwid, {int(ctl.address): ctl}).add_chunk(chunks[0])
    assert done is not None and done.config == full_config and done.update_id != 0


def test_bad_signature_rejected(ctl: Identity, mem: Identity, nwid: int) -> None:
    chunk = NetworkConfigChunker(ctl).chunks(nwid, CONFIG_KAT.to_bytes())[0]
    asm = NetworkConfigAssembler(nwid, ctl)
    for pos in (12, 200, len(chunk) - 110, len(chunk) - 1):  # data, trailer fields, signature
        bad = bytearray(chunk)
        bad[pos] ^= 0x40
        with pytest.raises(NetworkConfigChunkError):
            asm.add_chunk(bytes(bad))
    forged = NetworkConfigChunker(mem).chunks(nwid, CONFIG_KAT.to_bytes())[0]  # not the controller
    with pytest.raises(NetworkConfigChunkError):
        asm.add_chunk(forged)
    assert asm.add_chunk(chunk) is not None


def test_truncated_chunks_rejected(ctl: Identity, nwid: int) -> None:
    asm = NetworkConfigAssembler(nwid, ctl)
    for cut in list(range(0, 10)) + list(range(29, len(REAL_CHUNK))):
        with pytest.raises(NetworkConfigChunkError):
            asm.add_chunk(REAL_CHUNK[:cut], source=0x1)
    # Cut right after the data it reads as a legacy chunk, only trusted from the controller.
    with pytest.raises(NetworkConfigChunkError):
        asm.add_chunk(REAL_CHUNK[:28], source=0x1)
    with pytest.raises(NetworkConfigChunkError):
        asm.add_chunk(REAL_CHUNK[:28])


def test_chunk_limits(ctl: Identity, nwid: int) -> None:
    asm = NetworkConfigAssembler(nwid, ctl)
    signer = NetworkConfigChunker(ctl)

    def signed(data: bytes, total: int, index: int, net: int = nwid) -> bytes:
        c = NetworkConfigChunk(net, data, 0, 5, total, index, bytes(96))
        return c.signed_part() + b"\x01\x00\x60" + signer.signer.sign(c.signed_part())

    with pytest.raises(NetworkConfigChunkError):
        asm.add_chunk(signed(b"abc", 4, 2))  # index + length beyond total
    with pytest.raises(NetworkConfigChunkError):
        asm.add_chunk(signed(b"abc", NETWORKCONFIG_DICT_CAPACITY, 0))
    with pytest.raises(NetworkConfigChunkError):
        asm.add_chunk(signed(b"abc", 3, 0, nwid + 1))  # another network
    with pytest.raises(NetworkConfigChunkError):
        asm.add_chunk(REAL_CHUNK[:45] + b"\x02\x00\x60" + REAL_CHUNK[48:])  # unknown signature type
    # A complete but invalid dictionary is reported once assembled.
    with pytest.raises(NetworkConfigChunkError):
        asm.add_chunk(signed(b"v=7", 3, 0))


def test_unknown_controller_identity(ctl: Identity, nwid: int) -> None:
    asm = NetworkConfigAssembler(nwid, lambda a: None)
    with pytest.raises(ZTError):
        asm.add_chunk(REAL_CHUNK)
    asm.controller = ctl
    with pytest.raises(NetworkConfigChunkError, match="no network id"):
        asm.add_chunk(REAL_CHUNK)  # now verified and complete, but "v=..." alone is not a config


def test_legacy_unsigned_chunk_from_controller(ctl: Identity, nwid: int) -> None:
    data = dataclasses.replace(CONFIG_KAT, network_id=nwid).to_bytes()
    legacy = NetworkConfigChunk(nwid, data).to_bytes()
    asm = NetworkConfigAssembler(nwid, None)
    with pytest.raises(NetworkConfigChunkError):
        asm.add_chunk(legacy, source=0x0102030405)
    done = asm.add_chunk(legacy, source=ctl.address, packet_id=1234)
    assert done is not None and done.update_id == 1234 and done.config.network_id == nwid


def test_three_updates_in_flight(ctl: Identity, nwid: int) -> None:
    chunker = NetworkConfigChunker(ctl, max_chunk_length=200)
    configs = [dataclasses.replace(CONFIG_KAT, network_id=nwid, revision=r) for r in range(4)]
    chunk_sets = [chunker.chunks(nwid, c, update_id=100 + i) for i, c in enumerate(configs)]
    asm = NetworkConfigAssembler(nwid, ctl)
    for cs in chunk_sets[:3]:
        assert asm.add_chunk(cs[0]) is None
    for i, cs in enumerate(chunk_sets[:3]):
        results = [asm.add_chunk(c) for c in cs[1:]]
        assert results[-1] is not None and results[-1].config.revision == i


def test_to_bytes_is_the_dictionary_built_entry_by_entry(full_config: NetworkConfig) -> None:
    """to_bytes joins the entries at once; it must equal adding them one by one to a
    Dictionary (escapes in binary credentials included) and overflow where add would."""
    sso1 = dataclasses.replace(full_config, sso_version=1, issuer_url="https://i", sso_nonce="n=\n")
    for nc in (CONFIG_KAT, full_config, sso1):
        d = Dictionary(NETWORKCONFIG_DICT_CAPACITY)
        for key, value in nc._entries():
            assert d.add(key, value)
        data = nc.to_bytes()
        assert data == d.to_bytes() and b"\x00" not in data
        assert nc.to_dictionary() == d
        # Content fits in capacity - 1 bytes (the C string's NUL takes the last one).
        assert nc.to_bytes(capacity=len(data) + 1) == data
        with pytest.raises(InvalidFormatError, match="too large"):
            nc.to_bytes(capacity=len(data))
