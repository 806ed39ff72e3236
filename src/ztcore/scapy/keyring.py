"""Keys for ZeroTier packets seen or built with Scapy: decrypting captured packets
(reassembling fragments first) and armoring crafted ones.

A :class:`Keyring` holds identities (secrets where known) and live nodes. The key of
a packet between A and B is the one agreed between them, so one secret of either
end is enough; the other end's public identity comes from the keyring, from a node's
peers, or from HELLOs and OK(WHOIS)es it has dissected. Armor and dearmor are
ztcore's own (`ztcore.vl1.packet`): Poly1305 with or without Salsa20/12 (suites 0
and 1), AES-GMAC-SIV (suite 3) and LZ4.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from scapy.layers.inet import UDP
from scapy.packet import Packet
from scapy.plist import PacketList

from ztcore.errors import ZTError
from ztcore.identity import Identity
from ztcore.vl1.packet import (
    AesKeys,
    PacketError,
    Verb,
    armor,
    crypt_field,
    dearmor,
    derive_aes_keys,
    remove_extended_armor,
)

from .layers import ZeroTier, ZeroTierDecrypted, ZTFragment
from .verbs import ZTHello, ZTOkWhois

__all__ = ["DecryptError", "Keyring", "armor_packet"]


class DecryptError(ZTError):
    """A packet could not be decrypted: no key for its two ends, or it failed authentication."""


def _as_identity(x: Any) -> Identity:
    if isinstance(x, Identity):
        return x
    if isinstance(x, (str, os.PathLike)) and os.path.exists(x) and not str(x).count(":") >= 2:
        with open(x, encoding="ascii") as f:
            return Identity.from_string(f.read().strip())
    if isinstance(x, str):
        return Identity.from_string(x.strip())
    raise TypeError(f"not an identity: {x!r}")


def _underlying_node(x: Any) -> Any:
    """A ztcore Node from a Node, a NodeService, a NodeHandle or a workbench node."""
    for attr in ("topology",):
        if hasattr(x, attr):
            return x
    for path in (("node",), ("service", "node"), ("handle", "service", "node")):
        obj = x
        for name in path:
            obj = getattr(obj, name, None)
        if obj is not None and hasattr(obj, "topology"):
            return obj
    return None


class Keyring:
    """Identities and nodes whose keys decrypt (and armor) ZeroTier packets.

    ``Keyring(identity_secret, "…:0:pub:priv", node, ...)`` — anything `add` takes.
    """

    def __init__(self, *sources: Any) -> None:
        self.identities: dict[int, Identity] = {}
        self._nodes: list[Any] = []
        self._keys: dict[tuple[int, int], tuple[bytes, AesKeys]] = {}
        for s in sources:
            self.add(s)

    def add(self, source: Any) -> None:
        """Add an `Identity`, an identity string or file, a node (Node, NodeService,
        NodeHandle, workbench node), another Keyring, or an iterable of those."""
        if isinstance(source, Keyring):
            for i in source.identities.values():
                self.add(i)
            for n in source._nodes:
                self.add(n)
            return
        node = _underlying_node(source)
        if node is not None:
            if node not in self._nodes:
                self._nodes.append(node)
            self.add(node.identity)
            return
        if isinstance(source, Iterable) and not isinstance(source, (str, bytes, os.PathLike)):
            for s in source:
                self.add(s)
            return
        identity = _as_identity(source)
        known = self.identities.get(int(identity.address))
        if known is None or (identity.has_private and not known.has_private):
            self.identities[int(identity.address)] = identity

    # -- keys ----------------------------------------------------------------------------

    def _identity(self, address: int) -> Identity | None:
        found = self.identities.get(address)
        if found is not None:
            return found
        for node in self._nodes:
            peer = node.topology.peers.get(address)
            if peer is not None:
                return peer.identity
        return None

    def key(self, a: int, b: int) -> tuple[bytes, AesKeys] | None:
        """The (agreed key, AES keys) between addresses `a` and `b`, or None if unknown."""
        pair = (min(a, b), max(a, b))
        cached = self._keys.get(pair)
        if cached is not None:
            return cached
        for node in self._nodes:
            me = int(node.identity.address)
            if me in pair:
                peer = node.topology.peers.get(pair[1] if me == pair[0] else pair[0])
                if peer is not None:
                    self._keys[pair] = (peer.key, peer.aes_keys)
                    return self._keys[pair]
        for own, other in ((a, b), (b, a)):
            mine, theirs = self.identities.get(own), self._identity(other)
            if mine is not None and mine.has_private and theirs is not None:
                k = mine.agree(theirs)
                self._keys[pair] = (k, derive_aes_keys(k))
                return self._keys[pair]
        return None

    def learn(self, pkt: Packet) -> None:
        """Take public identities from a dissected HELLO or OK(WHOIS)."""
        if ZTHello in pkt:
            self._learn_one(pkt[ZTHello].identity)
        if ZTOkWhois in pkt:
            for i in pkt[ZTOkWhois].identities:
                self._learn_one(i)

    def _learn_one(self, zid: Any) -> None:
        try:
            identity = zid.to_identity()
        except (ZTError, ValueError, IndexError):
            return
        if int(identity.address) not in self.identities:
            self.identities[int(identity.address)] = identity.public()

    # -- decrypting ---------------------------------------------------------------------

    def decrypt(self, pkt: Packet | bytes) -> Packet:
        """The packet with its ZeroTier head replaced by a `ZeroTierDecrypted` (verb and
        payload in the clear, decompressed). Lower layers (IP/UDP) are kept. HELLO is
        authenticated too. Raises DecryptError without a key or on a bad MAC."""
        if isinstance(pkt, (bytes, bytearray, memoryview)):
            pkt = ZeroTier(bytes(pkt))
        head = pkt.getlayer(ZeroTier)
        if head is None or isinstance(head, ZTFragment) or type(head).__name__ == "ZTBeacon":
            raise DecryptError("not a ZeroTier packet head")
        if isinstance(head, ZeroTierDecrypted):
            return pkt
        wire = bytes(head)
        if head.encrypted and head.cipher == 0:
            wire = self._remove_extended_armor(head.dst, wire)
            self.learn(ZeroTierDecrypted(wire))
        self.learn(pkt)
        keys = self.key(head.src, head.dst)
        if keys is None:
            raise DecryptError(f"no key between {head.src:010x} and {head.dst:010x}")
        try:
            d = dearmor(wire, keys[0], keys[1])
        except PacketError as e:
            raise DecryptError(f"{e.reason} ({head.src:010x} -> {head.dst:010x})") from e
        clear = wire[:27] + bytes(((0x80 if d.compressed else 0) | d.verb,)) + d.payload
        out = ZeroTierDecrypted(clear)
        self.learn(out)
        return _replace_layer(pkt, head, out)

    def _remove_extended_armor(self, recipient: int, wire: bytes) -> bytes:
        """Peel 1.16's extended armor (a HELLO encrypted to the recipient's identity key)."""
        mine = self.identities.get(recipient)
        if mine is None or not mine.has_private:
            raise DecryptError(f"extended armor: no secret of the recipient {recipient:010x}")
        assert mine.private_key is not None
        try:
            return remove_extended_armor(wire, mine.private_key)
        except PacketError as e:
            raise DecryptError(f"extended armor: {e.reason}") from e

    def hello_moons(self, pkt: Packet) -> bytes:
        """The decrypted moon list at the end of a HELLO (u16 count, then type/id/timestamp)."""
        head, hello = pkt[ZeroTier], pkt[ZTHello]
        keys = self.key(head.src, head.dst)
        if keys is None:
            raise DecryptError(f"no key between {head.src:010x} and {head.dst:010x}")
        return crypt_field(keys[0], head.packet_id, bytes(hello.moons))

    def decrypt_all(self, packets: Iterable[Packet], any_port: bool = True) -> PacketList:
        """Dissect a capture: reassemble fragments, learn identities from HELLOs, decrypt
        what the keyring can (the rest is kept as captured, with a note in `errors`).
        With `any_port`, UDP payloads on ports not bound to ZeroTier are read as ZeroTier too."""
        packets = [_as_zerotier(p) if any_port else p for p in packets]
        for p in packets:  # identities first, so a HELLO later in the file still helps
            if ZeroTier in p:
                self.learn(p)
        out: list[Packet] = []
        self.errors: list[tuple[int, str]] = []
        pending: dict[tuple[int, int], dict[int, bytes]] = {}
        totals: dict[tuple[int, int], int] = {}
        heads: dict[tuple[int, int], tuple[int, Packet, Any]] = {}
        for index, p in enumerate(packets):
            z = p.getlayer(ZeroTier)
            if z is None:
                out.append(p)
                continue
            if isinstance(z, ZTFragment):
                key = (z.packet_id, z.dst)
                pending.setdefault(key, {})[z.number] = bytes(z.data)
                totals[key] = z.total
                self._try_complete(key, pending, totals, heads, out)
                continue
            if type(z).__name__ == "ZTBeacon":
                out.append(p)
                continue
            if z.fragmented:
                key = (z.packet_id, z.dst)
                pending.setdefault(key, {})[0] = bytes(z)
                heads[key] = (len(out), p, z)
                out.append(p)
                self._try_complete(key, pending, totals, heads, out)
                continue
            out.append(self._decrypt_or_keep(index, p))
        return PacketList(out, name="ZeroTier decrypted")

    def _try_complete(
        self,
        key: tuple[int, int],
        pending: dict[tuple[int, int], dict[int, bytes]],
        totals: dict[tuple[int, int], int],
        heads: dict[tuple[int, int], tuple[int, Packet, Any]],
        out: list[Packet],
    ) -> None:
        parts = pending[key]
        if key not in heads or key not in totals or len(parts) < totals[key]:
            return
        whole = b"".join(parts[n] for n in sorted(parts))
        slot, p, z = heads.pop(key)
        del pending[key], totals[key]
        try:
            dec = self.decrypt(ZeroTier(whole))
        except DecryptError as e:
            self.errors.append((slot, str(e)))
            return
        out[slot] = _replace_layer(p, z, dec)

    def _decrypt_or_keep(self, index: int, p: Packet) -> Packet:
        try:
            return self.decrypt(p)
        except DecryptError as e:
            self.errors.append((index, str(e)))
            return p

    # -- building -----------------------------------------------------------------------

    def armor(
        self, pkt: Packet, *, encrypt: bool | None = None, aes: bool = True, compress: bool = False
    ) -> bytes:
        """Wire bytes for a crafted ``ZeroTier()/ZT...`` packet, armored with the key
        between its src and dst. `encrypt` defaults to False for HELLO (suite 0, as
        nodes send it) and True otherwise; `aes` picks suite 3 over suite 1."""
        head = pkt.getlayer(ZeroTier)
        if head is None:
            raise TypeError("not a ZeroTier packet")
        keys = self.key(head.src, head.dst)
        if keys is None:
            raise DecryptError(f"no key between {head.src:010x} and {head.dst:010x}")
        return armor_packet(head, keys[0], keys[1] if aes else None, encrypt=encrypt, compress=compress)


def armor_packet(
    pkt: Packet,
    key: bytes,
    aes_keys: AesKeys | None = None,
    *,
    encrypt: bool | None = None,
    compress: bool = False,
) -> bytes:
    """Armor a crafted ZeroTier packet with an agreed `key` (see `Keyring.armor`)."""
    head = pkt.getlayer(ZeroTier)
    if head is None:
        raise TypeError("not a ZeroTier packet")
    built = ZeroTier(bytes(head))  # fills in the verb from the layer on top
    verb = built.verb
    if encrypt is None:
        encrypt = verb != Verb.HELLO
    return armor(
        destination=built.dst,
        source=built.src,
        verb=verb,
        payload=bytes(head.payload),
        key=key,
        encrypt=encrypt,
        packet_id=built.packet_id or None,
        hops=built.hops,
        aes_keys=aes_keys if encrypt else None,
        compress=compress,
    )


def _as_zerotier(p: Packet) -> Packet:
    udp = p.getlayer(UDP)
    if udp is None or isinstance(udp.payload, ZeroTier) or len(udp.payload) < 28:
        return p
    return _replace_layer(p, udp.payload, ZeroTier(bytes(udp.payload)), parent=udp)


def _replace_layer(pkt: Packet, layer: Packet, new: Packet, parent: Packet | None = None) -> Packet:
    if layer is pkt:
        return new
    top = pkt.copy()
    if parent is not None:  # the layer to replace is whatever sits on the UDP layer
        udp = top.getlayer(UDP)
        udp.remove_payload()
        udp.add_payload(new)
        return top
    under = top.getlayer(UDP) if UDP in top else None
    # The ZeroTier layer is normally right above UDP; else find its parent by position.
    if under is None or not isinstance(under.payload, ZeroTier):
        under = top
        while not isinstance(under.payload, ZeroTier):
            under = under.payload
    under.remove_payload()
    under.add_payload(new)
    return top
