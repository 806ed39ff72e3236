"""Known answers for ztcore.scapy on packets a real ZeroTier core sent and received.

tests/data/libzt-capture/ was recorded by tests/interop/capture_libzt.py on the LAN
interface of a libzt 1.8.4 node (throw-away identities, secrets included): its HELLO
to a ztcore root, joining a private network of a ztcore controller, and an ICMP echo
request and a UDP datagram sent by libzt's own IP stack over the virtual network. The
answers checked here come from the scenario (capture.json), not from ztcore's output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

from ztcore.identity import Identity
from ztcore.scapy import (
    Keyring,
    ZeroTier,
    ZeroTierDecrypted,
    ZTEncrypted,
    ZTFrame,
    ZTHello,
    ZTMulticastFrame,
    ZTMulticastLike,
    ZTNetworkConfig,
    ZTNetworkConfigRequest,
    ZTNetworkCredentials,
    ZTOk,
    ZTOkHello,
    ZTOkWhois,
    ZTWhois,
)
from ztcore.vl1.packet import Verb, dearmor
from ztcore.vl2.credentials import CertificateOfMembership, CertificateOfOwnership

# tests/interop/test_scapy_capture_interop.py points this at a fresh capture.
DATA = Path(os.environ.get("ZTCORE_KAT_CAPTURE") or Path(__file__).parent / "data" / "libzt-capture")


@pytest.fixture(scope="module")
def meta() -> dict[str, Any]:
    return json.loads((DATA / "capture.json").read_text())


@pytest.fixture(scope="module")
def packets() -> Any:
    return rdpcap(str(DATA / "libzt.pcap"))


def _secret(meta: dict[str, Any], who: str) -> str:
    return (DATA / meta[who]["identity_file"]).read_text().strip()


@pytest.fixture(scope="module")
def decrypted(meta: dict[str, Any], packets: Any) -> Any:
    ring = Keyring(_secret(meta, "libzt"))
    out = ring.decrypt_all(packets)
    assert ring.errors == []
    return out


def test_libzt_hello_dissects_without_any_key(meta: dict[str, Any], packets: Any) -> None:
    lz = int(meta["libzt"]["address"], 16)
    root = int(meta["root"]["address"], 16)
    hellos = [p for p in packets if ZTHello in p and p[ZeroTier].src == lz]
    assert hellos
    first = hellos[0]
    z, hello = first[ZeroTier], first[ZTHello]
    assert first[IP].src == meta["libzt_lan_ip"] and first[UDP].dport == 9993
    assert (z.dst, z.cipher, z.hops, z.fragmented, z.verb) == (root, 0, 0, 0, Verb.HELLO)
    # libzt 1.8.4 announces itself as 1.8.4, protocol 12, on the harness planet.
    assert (hello.major, hello.minor, hello.revision, hello.proto_version) == (1, 8, 4, 12)
    assert hello.planet_id == 0x5A7C0DE0000001
    # Its identity is the one in libzt.secret (public part), and it validates.
    mine = Identity.from_string(_secret(meta, "libzt"))
    assert hello.identity.address == lz and hello.identity.to_identity() == mine.public()
    assert hello.identity.private_length == 0
    # It says where it sent the HELLO: the root's LAN address.
    assert (hello.physical_dest.type, hello.physical_dest.ip, hello.physical_dest.port) == (
        4, meta["root"]["lan_ip"], 9993,
    )  # fmt: skip
    # Without keys, the rest of the capture stays encrypted (and is said to be).
    others = [p for p in packets if ZeroTier in p and p[ZeroTier].verb != Verb.HELLO]
    assert others and all(ZTEncrypted in p and p[ZeroTier].cipher in (1, 3) for p in others)


def test_hello_is_authenticated_and_its_moon_list_decrypts(meta: dict[str, Any], packets: Any) -> None:
    ring = Keyring(_secret(meta, "root"))  # the other end's secret is enough
    hello = next(p for p in packets if ZTHello in p and p[ZeroTier].src == int(meta["libzt"]["address"], 16))
    dec = ring.decrypt(hello)
    assert (
        isinstance(dec[ZeroTier], ZeroTierDecrypted) and dec[ZTHello].identity.address == hello[ZeroTier].src
    )
    assert ring.hello_moons(hello) == b"\x00\x00"  # no moons
    bad = bytearray(bytes(hello[ZeroTier]))
    bad[40] ^= 0x01  # a bit of the identity: the MAC no longer matches
    with pytest.raises(Exception, match="bad_mac"):
        ring.decrypt(bytes(bad))


def test_every_packet_decrypts_with_either_ends_secret(meta: dict[str, Any], packets: Any) -> None:
    zt = [p for p in packets if ZeroTier in p]
    assert len(zt) >= 30
    via_libzt = Keyring(_secret(meta, "libzt")).decrypt_all(packets)
    via_ztcore = Keyring(_secret(meta, "root"), _secret(meta, "controller")).decrypt_all(packets)
    n = sum(ZeroTierDecrypted in p for p in via_libzt)
    assert n == len(zt) and sum(ZeroTierDecrypted in p for p in via_ztcore) == n
    # Each layer reads every byte and writes it back unchanged.
    ring = Keyring(_secret(meta, "libzt"))
    ring.decrypt_all(packets)  # learns the other ends' identities from HELLO and OK(WHOIS)
    for p in zt:
        z = p[ZeroTier]
        k = ring.key(z.src, z.dst)
        assert k is not None
        assert bytes(ring.decrypt(p)[ZeroTierDecrypted].payload) == dearmor(bytes(z), *k).payload


def test_libzt_frames_carry_the_icmp_and_udp_it_sent(meta: dict[str, Any], decrypted: Any) -> None:
    lz, ctl = meta["libzt"], meta["controller"]
    nwid = int(meta["nwid"], 16)
    frames = [p for p in decrypted if ZTFrame in p]
    assert frames and all(p[ZTFrame].nwid == nwid for p in frames)
    req = next(p for p in frames if ICMP in p and p[ICMP].type == 8)
    assert req[ZeroTier].src == int(lz["address"], 16) and req[ZeroTier].dst == int(ctl["address"], 16)
    inner = req[ZTFrame][IP]
    assert (inner.src, inner.dst) == (lz["ip"], ctl["ip"])
    assert (req[ICMP].id, req[ICMP].seq) == (meta["icmp"]["ident"], meta["icmp"]["seq"])
    assert bytes(req[ICMP].payload) == bytes.fromhex(meta["icmp"]["payload_hex"])
    # lwIP's checksums are right, as Scapy computes them.
    fresh = IP(bytes(inner))
    del fresh.chksum, fresh[ICMP].chksum
    assert IP(bytes(fresh)).chksum == inner.chksum and IP(bytes(fresh))[ICMP].chksum == req[ICMP].chksum
    rep = next(p for p in frames if ICMP in p and p[ICMP].type == 0)
    assert bytes(rep[ICMP].payload) == bytes(req[ICMP].payload)
    udp = next(p for p in frames if UDP in p[ZTFrame])
    assert udp[ZTFrame][UDP].dport == meta["udp"]["port"]
    assert bytes(udp[ZTFrame][UDP].payload) == bytes.fromhex(meta["udp"]["payload_hex"])
    # Before that, libzt asked for the controller member's MAC with an ARP broadcast.
    arp = next(p for p in decrypted if ZTMulticastFrame in p and ARP in p)
    assert arp[ZTMulticastFrame].dst_mac == "ff:ff:ff:ff:ff:ff" and arp[ARP].pdst == ctl["ip"]
    answer = next(p for p in frames if ARP in p)
    assert answer[ARP].op == 2 and answer[ARP].psrc == ctl["ip"]


def test_libzt_joins_with_request_credentials_and_likes(meta: dict[str, Any], decrypted: Any) -> None:
    nwid = int(meta["nwid"], 16)
    lz = int(meta["libzt"]["address"], 16)
    req = next(p for p in decrypted if ZTNetworkConfigRequest in p)
    r = req[ZTNetworkConfigRequest]
    assert req[ZeroTier].src == lz and r.nwid == nwid
    shown = repr(r)
    # The request's Dictionary: vendor 1 (ZeroTier), protocol 12, version 1.8.4.
    for kv in ("'vend': '0000000000000001'", "'pv': '000000000000000c'", "'majv': '0000000000000001'",
               "'minv': '0000000000000008'", "'revv': '0000000000000004'"):  # fmt: skip
        assert kv in shown
    ok = next(p for p in decrypted if ZTOk in p and p[ZTOk].in_re_verb == Verb.NETWORK_CONFIG_REQUEST)
    assert ok[ZTOk].in_re_packet_id == req[ZeroTier].packet_id
    conf = ok[ZTNetworkConfig]
    assert conf.nwid == nwid and conf.signature_length == 96 and conf.chunk_index == 0
    assert f"'nwid': '{meta['nwid']}'" in repr(conf) and f"'id': '{meta['libzt']['address']}'" in repr(conf)
    creds = next(p for p in decrypted if ZTNetworkCredentials in p and p[ZeroTier].src == lz)
    c = creds[ZTNetworkCredentials]
    com = CertificateOfMembership.from_bytes(c.coms[0].com)[0]
    assert com.network_id == nwid and int(com.issued_to) == lz
    assert com.signed_by == int(meta["controller"]["address"], 16)
    coo = CertificateOfOwnership.from_bytes(c.coos[0])[0]
    assert coo.network_id == nwid and int(coo.issued_to) == lz
    like = next(p for p in decrypted if ZTMulticastLike in p and p[ZeroTier].src == lz)
    assert any(g.nwid == nwid and g.mac == "ff:ff:ff:ff:ff:ff" for g in like[ZTMulticastLike].groups)
    # The root answered libzt's WHOIS for the controller with the controller's identity.
    whois = next(p for p in decrypted if ZTWhois in p)
    ctl = int(meta["controller"]["address"], 16)
    assert ctl in whois[ZTWhois].addresses
    answer = next(p for p in decrypted if ZTOkWhois in p)
    assert answer[ZTOk].in_re_packet_id == whois[ZeroTier].packet_id
    ctl_public = Identity.from_string(_secret(meta, "controller")).public()
    assert [i.to_identity() for i in answer[ZTOkWhois].identities] == [ctl_public]
    okh = next(p for p in decrypted if ZTOkHello in p and p[ZeroTier].dst == lz)
    assert okh[ZTOkHello].physical_dest.ip == meta["libzt_lan_ip"]
    assert okh[ZTOkHello].physical_dest.port == okh[UDP].dport
