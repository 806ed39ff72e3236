"""ztcore.scapy: ZeroTier's wire protocol as Scapy layers, on traffic of simulated ztcore
nodes (every datagram recorded), and crafted packets that a real Node accepts.

Known-answer tests on packets captured from a real ZeroTier core are in test_scapy_kat.py.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from ztcore.controller.live import EmbeddedController
from ztcore.controller.store import ControllerStore
from ztcore.identity import Identity
from ztcore.runtime.http_api import StoreControllerBackend
from ztcore.runtime.service import now_ms
from ztcore.scapy import (
    DecryptError,
    Keyring,
    ZeroTier,
    ZeroTierDecrypted,
    ZTDirectPath,
    ZTEcho,
    ZTEncrypted,
    ZTError,
    ZTExtFrame,
    ZTFragment,
    ZTFrame,
    ZTHello,
    ZTInetAddress,
    ZTMulticastFrame,
    ZTMulticastLike,
    ZTNetworkConfig,
    ZTNetworkConfigRequest,
    ZTNetworkCredentials,
    ZTOk,
    ZTOkHello,
    ZTOkMulticastFrame,
    ZTPushDirectPaths,
    ZTRemoteTrace,
    ZTRendezvous,
    ZTUserMessage,
    ZTWhois,
    armor_packet,
)
from ztcore.simulation import SimNetwork, make_planet
from ztcore.vl1.fragment import make_fragments
from ztcore.vl1.packet import Verb, armor, dearmor
from ztcore.vl2.mac import MAC


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(4)]


@pytest.fixture(scope="module")
def traffic(identities: list[Identity], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A root, a controller and two members on a private network; every datagram recorded."""
    net = SimNetwork(start_ms=now_ms())
    wire: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []

    def record(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bool:
        wire.append((src, dst, data))
        return True

    net.filter = record
    ep = net.allocate_endpoint("10.0.0.1")
    planet, _ = make_planet([(identities[0], [ep])])
    root = net.add_node(identity=identities[0], planet=planet, endpoint=ep)
    ctl = net.add_node(identity=identities[1], planet=planet, ip="10.0.1.1")
    a = net.add_node(identity=identities[2], planet=planet, ip="10.0.1.2")
    b = net.add_node(identity=identities[3], planet=planet, ip="10.0.1.3")
    store = ControllerStore(tmp_path_factory.mktemp("ctl"))
    controller = EmbeddedController(store)
    ctl.node.set_controller(controller)
    backend = StoreControllerBackend(store, int(ctl.node.address))
    backend.add_listener(controller)
    nw = backend.create_network(
        {
            "name": "scapy",
            "private": True,
            "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.20"}],
            "routes": [{"target": "10.147.17.0/24"}],
            "v4AssignMode": {"zt": True},
        }
    )
    nwid = int(nw["id"], 16)
    assert net.run_until(lambda: a.node.online and b.node.online and ctl.node.online)
    for h in (a, b):
        h.node.join(nwid)
        backend.post_member(nw["id"], str(h.node.address), {"authorized": True})
    assert net.run_until(
        lambda: all((h.node.network(nwid) or {}).get("status") == "OK" for h in (a, b)), 70_000
    )
    mac_a, mac_b = MAC.from_address(int(a.node.address), nwid), MAC.from_address(int(b.node.address), nwid)
    ip_a, ip_b = (
        next(x.split("/")[0] for x in h.node.network(nwid)["assignedAddresses"] if ":" not in x)
        for h in (a, b)
    )
    frame = bytes(IP(src=ip_a, dst=ip_b) / UDP(sport=5000, dport=6000) / b"hello over vl2")
    a.node.process_virtual_network_frame(net.now, nwid, mac_a, mac_b, 0x0800, 0, frame)
    arp = bytes(ARP(hwsrc=str(MAC(mac_a)), psrc=ip_a, pdst=ip_b))
    a.node.process_virtual_network_frame(net.now, nwid, mac_a, 0xFFFFFFFFFFFF, 0x0806, 0, arp)
    a.node.send_user_message(net.now, b.node.address, 0x1234, b"user data")
    assert net.run_until(lambda: any(f.data == arp for f in b.frames), 5_000)
    net.run_for(1_000)
    return {
        "ip_b": ip_b,
        "wire": wire,
        "nwid": nwid,
        "frame": frame,
        "nodes": (root, ctl, a, b),
        "ids": identities,
    }


def _dissected(traffic: dict[str, Any]) -> list[Any]:
    return [
        IP(bytes(IP(src=s[0], dst=d[0]) / UDP(sport=s[1], dport=9993) / data))
        for s, d, data in traffic["wire"]
    ]


def test_udp_9993_dissects_as_zerotier_and_hello_reads_without_keys(traffic: dict[str, Any]) -> None:
    hellos = []
    for _s, _d, data in traffic["wire"]:
        pkt = IP(bytes(IP(dst="10.0.0.1") / UDP(sport=40000, dport=9993) / data))
        assert (ZeroTier in pkt) == (len(data) >= 28), data
        if ZTHello in pkt:
            hellos.append(pkt)
    assert hellos, "no HELLO on the wire"
    known = {int(i.address) for i in traffic["ids"]}
    for h in hellos:
        z, hello = h[ZeroTier], h[ZTHello]
        assert z.cipher == 0 and z.verb == Verb.HELLO
        assert hello.identity.address == z.src and z.src in known
        assert hello.identity.to_identity().validate()
        assert hello.proto_version == 12 and hello.planet_id != 0
    # Everything else is encrypted (suite 1 or 3): shown as such, not misread.
    others = [IP(bytes(IP() / UDP(dport=9993) / d)) for _s, _dd, d in traffic["wire"]]
    enc = [p for p in others if ZTEncrypted in p]
    assert enc and all(p[ZeroTier].cipher in (1, 3) for p in enc)


def test_keyring_of_secrets_decrypts_every_verb(traffic: dict[str, Any]) -> None:
    ring = Keyring(*traffic["ids"])
    plist = ring.decrypt_all(_dissected(traffic))
    assert not ring.errors, ring.errors[:3]
    verbs = {p[ZeroTierDecrypted].verb for p in plist if ZeroTierDecrypted in p}
    for v in (
        Verb.HELLO,
        Verb.OK,
        Verb.WHOIS,
        Verb.FRAME,
        Verb.MULTICAST_LIKE,
        Verb.MULTICAST_FRAME,
        Verb.NETWORK_CONFIG_REQUEST,
        Verb.NETWORK_CREDENTIALS,
        Verb.USER_MESSAGE,
    ):
        assert v in verbs, Verb(v).name
    nwid = traffic["nwid"]
    # The frame a sent to b, handed to Scapy's IP layer.
    frames = [p for p in plist if ZTFrame in p]
    assert any(p[ZTFrame].nwid == nwid and bytes(p[ZTFrame].payload) == traffic["frame"] for p in frames)
    f = next(p for p in frames if UDP in p[ZTFrame])
    assert f[ZTFrame][UDP].dport == 6000 and bytes(f[ZTFrame][UDP].payload) == b"hello over vl2"
    # The ARP broadcast as a MULTICAST_FRAME with its ARP payload.
    mf = [p for p in plist if ZTMulticastFrame in p and ARP in p]
    assert (
        mf and mf[0][ZTMulticastFrame].dst_mac == "ff:ff:ff:ff:ff:ff" and mf[0][ARP].pdst == traffic["ip_b"]
    )
    # The config request with its metadata dictionary, and the signed config chunk in OK.
    req = next(p[ZTNetworkConfigRequest] for p in plist if ZTNetworkConfigRequest in p)
    assert req.nwid == nwid and req.dict_length == len(req.metadata) > 0
    assert "'vend'" in repr(req) and "'pv'" in repr(req)  # shown as a decoded Dictionary
    ok = next(p for p in plist if ZTOk in p and p[ZTOk].in_re_verb == Verb.NETWORK_CONFIG_REQUEST)
    chunk = ok[ZTNetworkConfig]
    assert chunk.nwid == nwid and chunk.signature_length == 96 and len(chunk.chunk) == chunk.chunk_length
    assert "nwid" in repr(chunk) and chunk.total_length >= chunk.chunk_length
    creds = next(p[ZTNetworkCredentials] for p in plist if ZTNetworkCredentials in p)
    assert creds.coms and "CertificateOfMembership" in repr(creds.coms[0])
    likes = next(p[ZTMulticastLike] for p in plist if ZTMulticastLike in p)
    assert likes.groups and all(g.nwid == nwid for g in likes.groups)
    um = next(p[ZTUserMessage] for p in plist if ZTUserMessage in p)
    assert um.type_id == 0x1234 and um.data == b"user data"
    okh = next(p[ZTOkHello] for p in plist if ZTOkHello in p)
    assert okh.proto_version == 12 and okh.physical_dest.type == 4
    assert any(p[ZTWhois].addresses for p in plist if ZTWhois in p)


def test_decrypted_layers_rebuild_to_the_same_bytes(traffic: dict[str, Any]) -> None:
    ring = Keyring(*traffic["ids"])
    checked = 0
    for _s, _d, data in traffic["wire"]:
        z = ZeroTier(data)
        if not isinstance(z, ZeroTier) or isinstance(z, ZTFragment) or z.fragmented:
            continue
        key = ring.key(z.src, z.dst)
        assert key is not None
        clear = dearmor(data, *key)
        dec = ring.decrypt(z)
        assert isinstance(dec, ZeroTierDecrypted) and dec.verb == clear.verb
        assert bytes(dec.payload) == clear.payload  # every field read and written back
        checked += 1
    assert checked > 20


def test_keyring_from_nodes_and_missing_keys(traffic: dict[str, Any]) -> None:
    root, ctl, a, b = traffic["nodes"]
    only_a = Keyring(a.node)  # a's own secret plus its peers
    stranger = Keyring(Identity.generate())
    n_ok = 0
    for _s, _d, data in traffic["wire"]:
        z = ZeroTier(data)
        if not isinstance(z, ZeroTier) or isinstance(z, ZTFragment) or z.fragmented:
            continue
        if int(a.node.address) in (z.src, z.dst):
            assert isinstance(only_a.decrypt(z), ZeroTierDecrypted)
            n_ok += 1
        if z.verb != Verb.HELLO or z.cipher != 0:
            with pytest.raises(DecryptError):
                stranger.decrypt(z)
    assert n_ok > 5
    # A tampered packet fails authentication, with the reason.
    z = next(ZeroTier(d) for _s, _d, d in traffic["wire"] if len(d) > 28 and ZeroTier(d).cipher == 3)
    bad = bytearray(bytes(z))
    bad[-1] ^= 1
    with pytest.raises(DecryptError, match="bad_mac"):
        Keyring(*traffic["ids"]).decrypt(bytes(bad))


def test_fragments_are_reassembled_before_decryption(identities: list[Identity]) -> None:
    x, y = identities[2], identities[3]
    key = x.agree(y)
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / UDP() / (b"z" * 3000))
    payload = struct.pack(">QB", 0x1122334455667788, 0) + frame
    wire = armor(
        destination=int(y.address),
        source=int(x.address),
        verb=Verb.EXT_FRAME,
        payload=payload,
        key=key,
        encrypt=True,
        mtu=1400,
    )
    parts = make_fragments(wire, mtu=1400)
    assert len(parts) == 3
    pkts = [IP() / UDP(dport=9993) / Raw(p) for p in reversed(parts)]  # out of order
    pkts = [IP(bytes(p)) for p in pkts]
    assert ZTFragment in pkts[0] and pkts[0][ZTFragment].total == 3
    out = Keyring(x, y.public()).decrypt_all(pkts)
    dec = [p for p in out if ZeroTierDecrypted in p]
    assert len(dec) == 1 and bytes(dec[0][Ether]) == frame
    assert dec[0][Ether].dst == "02:00:00:00:00:02"


def test_crafted_hello_and_echo_are_accepted_by_a_node(identities: list[Identity]) -> None:
    net = SimNetwork(start_ms=now_ms())
    ep = net.allocate_endpoint("10.0.0.1")
    planet, _ = make_planet([(identities[0], [ep])])
    root = net.add_node(identity=identities[0], planet=planet, endpoint=ep)
    me = Identity.generate()
    ring = Keyring(me, identities[0].public())
    sent: list[bytes] = []
    root.wire_packet_send = lambda ls, remote, data, ttl=0: sent.append(data) or True  # type: ignore[method-assign]
    hello = ZeroTier(packet_id=0x0123456789ABCDEF, dst=int(root.node.address), src=int(me.address)) / ZTHello(
        timestamp=net.now,
        identity=ZTIdentity_of(me),
        physical_dest=ZTInetAddress.of("10.0.0.1", ep[1]),
        planet_id=planet.id,
        planet_timestamp=planet.timestamp,
    )
    wire = ring.armor(hello)
    assert ZeroTier(wire).verb == Verb.HELLO and ZeroTier(wire).cipher == 0
    root.node.process_wire_packet(net.now, 1, ("10.0.9.9", 9993), wire)
    assert root.node.topology.peers.get(int(me.address)) is not None  # accepted as a peer
    replies = [ring.decrypt(ZeroTier(d)) for d in sent]
    ok = next(r for r in replies if ZTOkHello in r)
    assert ok[ZTOk].in_re_packet_id == 0x0123456789ABCDEF and ok[ZTOkHello].timestamp_echo == net.now
    assert ok[ZTOkHello].physical_dest.ip == "10.0.9.9"
    # An encrypted crafted ECHO is answered with OK(ECHO) carrying the same data.
    sent.clear()
    echo = ZeroTier(dst=int(root.node.address), src=int(me.address), packet_id=77) / ZTEcho(data=b"ping!")
    for aes in (False, True):
        wire = ring.armor(echo, aes=aes)
        assert ZeroTier(wire).cipher == (3 if aes else 1)
        root.node.process_wire_packet(net.now + 1000, 1, ("10.0.9.9", 9993), wire)
    answers = [ring.decrypt(ZeroTier(d)) for d in sent]
    assert any(ZTOk in r and bytes(r[ZTOk].payload) == b"ping!" for r in answers)
    # armor_packet with an explicit key does the same.
    assert (
        dearmor(
            armor_packet(echo, ring.key(me.address, root.node.address)[0]),
            ring.key(me.address, root.node.address)[0],
        ).payload
        == b"ping!"
    )


def ZTIdentity_of(identity: Identity) -> Any:  # noqa: N802 - reads like the layer it builds
    from ztcore.scapy import ZTIdentity

    return ZTIdentity.from_identity(identity)


def test_malformed_input_never_raises() -> None:
    import random

    rnd = random.Random(7)
    for n in (0, 1, 13, 16, 17, 27, 28, 40, 200):
        for _ in range(30):
            data = bytes(rnd.getrandbits(8) for _ in range(n))
            pkt = IP(bytes(IP() / UDP(dport=9993) / data))
            pkt.summary()
            repr(pkt)
    # A readable (suite 0) head with every verb and garbage after it dissects without error.
    for verb in range(32):
        for _ in range(10):
            body = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 120)))
            z = ZeroTier(bytes(ZeroTier(verb=verb)) + body)
            repr(z)
            z.show(dump=True)


def test_extended_armor_hello_needs_the_recipients_secret(identities: list[Identity]) -> None:
    sender, recipient = Identity.generate(), identities[0]
    payload = bytes(ZTHello(timestamp=1, identity=ZTIdentity_of(sender)))
    wire = armor(
        destination=int(recipient.address), source=int(sender.address), verb=Verb.HELLO, payload=payload,
        key=sender.agree(recipient), encrypt=False, extended_armor_for=recipient.public_key,
    )  # fmt: skip
    z = ZeroTier(wire)
    assert z.encrypted == 1 and z.cipher == 0 and ZTEncrypted in z and ZTHello not in z  # not misread
    dec = Keyring(recipient).decrypt(wire)  # the sender's identity comes from the HELLO inside
    assert dec[ZTHello].identity.address == int(sender.address) and dec[ZTHello].timestamp == 1
    with pytest.raises(DecryptError, match="recipient"):
        Keyring(sender).decrypt(wire)


def _com_from_libzt() -> bytes:
    from scapy.utils import rdpcap

    data = Path(__file__).parent / "data" / "libzt-capture"
    ring = Keyring((data / "libzt.secret").read_text())
    creds = next(p for p in ring.decrypt_all(rdpcap(str(data / "libzt.pcap"))) if ZTNetworkCredentials in p)
    return bytes(creds[ZTNetworkCredentials].coms[0].com)


def test_layouts_of_verbs_built_by_hand() -> None:
    """Each layer writes the byte layout Packet.hpp documents, and reads it back."""
    nwid, pid = 0xABCDEF0123456789, 0x1122334455667788
    err = ZTError(in_re_verb=Verb.NETWORK_CONFIG_REQUEST, in_re_packet_id=pid, code=7, nwid=nwid)
    assert bytes(err) == struct.pack(">BQBQ", 0x0B, pid, 7, nwid)
    assert ZeroTier(bytes(ZeroTier() / err)).getlayer(ZTError).nwid == nwid
    assert ZeroTier(bytes(ZeroTier() / err)).verb == Verb.ERROR
    short = ZTError(struct.pack(">BQB", 0x0B, pid, 3))  # an ERROR without a network id
    assert short.code == 3 and short.nwid is None

    mf = ZTMulticastFrame(nwid=nwid, flags="GATHER+SOURCE_MAC", gather_limit=5, src_mac="02:00:00:00:00:01",
                          dst_mac="ff:ff:ff:ff:ff:ff", adi=0x0A000001, ethertype=0x0806)  # fmt: skip
    arp = ARP(psrc="10.0.0.2", pdst="10.0.0.1")
    raw = bytes(mf / arp)
    want = (
        struct.pack(">QBI", nwid, 0x06, 5)
        + bytes.fromhex("020000000001ffffffffffff")
        + struct.pack(">IH", 0x0A000001, 0x0806)
    )
    assert raw == want + bytes(arp)
    back = ZTMulticastFrame(raw)
    assert back.gather_limit == 5 and back.src_mac == "02:00:00:00:00:01" and back[ARP].pdst == "10.0.0.1"

    com = _com_from_libzt()
    ext = (
        ZTExtFrame(nwid=nwid, flags="COM+ACK", com=com)
        / Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
        / IP()
    )
    raw = bytes(ext)
    assert raw[:9] == struct.pack(">QB", nwid, 0x11) and raw[9 : 9 + len(com)] == com
    assert raw[9 + len(com) : 9 + len(com) + 14] == bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    back = ZTExtFrame(raw)
    assert back.com == com and back[Ether].dst == "02:00:00:00:00:02" and IP in back
    assert "CertificateOfMembership" in back.show(dump=True)

    okmf = ZTOk(in_re_verb=Verb.MULTICAST_FRAME, in_re_packet_id=pid) / ZTOkMulticastFrame(
        nwid=nwid, mac="ff:ff:ff:ff:ff:ff", adi=0, flags="COM+GATHER", com=com, total_known=3, members=[1, 2]
    )
    raw = bytes(okmf)
    tail = struct.pack(">IH", 3, 2) + (1).to_bytes(5, "big") + (2).to_bytes(5, "big")
    assert raw.endswith(com + tail) and raw[9:17] == struct.pack(">Q", nwid)
    back = ZTOk(raw)
    assert back[ZTOkMulticastFrame].members == [1, 2] and back[ZTOkMulticastFrame].com == com

    trace = ZTRemoteTrace(b"e=1\nn=abc\n\x00e=2\n\x00")  # two 0-terminated dictionaries
    assert trace.dictionaries == [b"e=1\nn=abc\n", b"e=2\n"] and bytes(trace) == b"e=1\nn=abc\n\x00e=2\n\x00"
    assert "'n': 'abc'" in trace.show(dump=True)

    pdp = ZTPushDirectPaths(paths=[ZTDirectPath(addr_type=4, addr_length=6, ip="10.1.2.3", port=9993),
                                   ZTDirectPath(addr_type=6, addr_length=18, ip6="fd00::1", port=1)])  # fmt: skip
    raw = bytes(pdp)
    assert (
        raw[:2] == b"\x00\x02" and raw[2:13] == b"\x00\x00\x00\x04\x06" + bytes([10, 1, 2, 3]) + b"\x27\x09"
    )
    assert [p.port for p in ZTPushDirectPaths(raw).paths] == [9993, 1]

    rdv = ZTRendezvous(with_address=0x0102030405, port=9993, addr_length=16, ip6="fd00::2")
    assert bytes(rdv) == b"\x00\x01\x02\x03\x04\x05\x27\x09\x10" + ipaddress.ip_address("fd00::2").packed
