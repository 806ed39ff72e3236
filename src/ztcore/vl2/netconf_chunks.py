"""The chunked, controller-signed NETWORK_CONFIG transport: splitting a config
into signed chunks (NetworkConfigChunker, controller side) and reassembling and
verifying them (NetworkConfigAssembler, member side).

NETWORK_CONFIG chunk (payload of VERB_NETWORK_CONFIG, or of OK(NETWORK_CONFIG_REQUEST)
after its in-re verb and packet id)::

    u64 network id | u16 chunk length | chunk bytes
    | u8 flags (0x01 fast propagate) | u64 config update id | u32 total length
    | u32 chunk index (byte offset) | u8 1 | u16 96 | 96-byte signature

The signature is the controller's over everything from the network id through
the chunk index. Legacy controllers send only network id, length and bytes
(one unsigned chunk) and are trusted only when the packet came from the
controller itself.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from ztcore.errors import InvalidFormatError, ZTError
from ztcore.identity import Address, Identity
from ztcore.vl2.credentials import IdentityLookup
from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.netconf import NETWORKCONFIG_DICT_CAPACITY, NetworkConfig

__all__ = [
    "MAX_CONFIG_CHUNK_LENGTH",
    "MAX_INCOMING_UPDATES",
    "MAX_UPDATE_CHUNKS",
    "AssembledConfig",
    "NetworkConfigAssembler",
    "NetworkConfigChunk",
    "NetworkConfigChunkError",
    "NetworkConfigChunker",
]

# Max packet (7 fragments x 1432) minus header and 256 bytes of headroom.
MAX_CONFIG_CHUNK_LENGTH = 7 * 1432 - (28 + 256)
MAX_INCOMING_UPDATES = 3
MAX_UPDATE_CHUNKS = NETWORKCONFIG_DICT_CAPACITY // 1024 + 1


class NetworkConfigChunkError(InvalidFormatError):
    """A NETWORK_CONFIG chunk is malformed, out of limits, or badly signed."""


@dataclass(frozen=True)
class NetworkConfigChunk:
    """One NETWORK_CONFIG chunk. ``signature`` is None for a legacy unsigned chunk."""

    network_id: int
    data: bytes
    flags: int = 0
    update_id: int = 0
    total_length: int = 0
    chunk_index: int = 0
    signature: bytes | None = None

    FLAG_FAST_PROPAGATE = 0x01

    @property
    def fast_propagate(self) -> bool:
        return bool(self.flags & self.FLAG_FAST_PROPAGATE)

    @property
    def is_legacy(self) -> bool:
        return self.signature is None

    @property
    def chunk_id(self) -> bytes:
        """Per-chunk dedup key: the first 16 signature bytes folded into 8."""
        if self.signature is None:
            return b""
        return bytes(self.signature[i] ^ self.signature[i + 8] for i in range(8))

    def signed_part(self) -> bytes:
        """The bytes the controller signs."""
        return (
            struct.pack(">QH", self.network_id, len(self.data))
            + self.data
            + struct.pack(">BQII", self.flags, self.update_id, self.total_length, self.chunk_index)
        )

    def to_bytes(self) -> bytes:
        if self.signature is None:
            return struct.pack(">QH", self.network_id, len(self.data)) + self.data
        if len(self.signature) != 96:
            raise NetworkConfigChunkError("chunk signature must be 96 bytes")
        return self.signed_part() + b"\x01\x00\x60" + self.signature

    @classmethod
    def from_bytes(
        cls, payload: bytes | bytearray | memoryview, offset: int = 0
    ) -> tuple[NetworkConfigChunk, int]:
        """Parse a chunk at ``offset``; a payload ending right after the data is a legacy chunk."""
        d = bytes(payload)
        p = offset
        if p < 0 or p + 10 > len(d):
            raise NetworkConfigChunkError("config chunk: truncated header")
        nwid, clen = struct.unpack_from(">QH", d, p)
        p += 10
        if p + clen > len(d):
            raise NetworkConfigChunkError("config chunk: data runs past the end of the payload")
        data = d[p : p + clen]
        p += clen
        if p >= len(d):
            return cls(nwid, data, 0, 0, clen, 0, None), p - offset
        if p + 17 + 3 + 96 > len(d):
            raise NetworkConfigChunkError("config chunk: truncated trailer or signature")
        flags, update_id, total, index = struct.unpack_from(">BQII", d, p)
        p += 17
        if d[p] != 1 or struct.unpack_from(">H", d, p + 1)[0] != 96:
            raise NetworkConfigChunkError("config chunk: unsupported signature type")
        sig = d[p + 3 : p + 3 + 96]
        p += 3 + 96
        return cls(nwid, data, flags, update_id, total, index, sig), p - offset


class NetworkConfigChunker:
    """Split a config into signed NETWORK_CONFIG chunk payloads, as a controller does."""

    def __init__(self, signer: Identity, max_chunk_length: int = MAX_CONFIG_CHUNK_LENGTH) -> None:
        if not signer.has_private:
            raise ZTError("the chunk signer needs a private key")
        if max_chunk_length < 1 or max_chunk_length > 0xFFFF:
            raise ValueError("max chunk length must be 1..65535")
        self.signer = signer
        self.max_chunk_length = max_chunk_length

    def chunks(
        self,
        network_id: int,
        config: NetworkConfig | Dictionary | bytes,
        update_id: int | None = None,
        flags: int = 0,
    ) -> list[bytes]:
        """Chunk payloads in order (each goes in its own packet)."""
        if isinstance(config, NetworkConfig):
            data = config.to_bytes()
        elif isinstance(config, Dictionary):
            data = config.to_bytes()
        else:
            data = bytes(config)
        if len(data) >= NETWORKCONFIG_DICT_CAPACITY:
            raise InvalidFormatError("network config too large")
        if update_id is None:
            update_id = secrets.randbits(64) or 1
        out: list[bytes] = []
        for index in range(0, len(data), self.max_chunk_length):
            part = data[index : index + self.max_chunk_length]
            chunk = NetworkConfigChunk(network_id, part, flags, update_id, len(data), index, bytes(96))
            sig = self.signer.sign(chunk.signed_part())
            out.append(chunk.signed_part() + b"\x01\x00\x60" + sig)
        return out


@dataclass
class AssembledConfig:
    """A complete, verified config: its update id, dictionary bytes and decoded form."""

    update_id: int
    data: bytes
    config: NetworkConfig


@dataclass
class _Slot:
    update_id: int = 0
    total_length: int = 0
    have_bytes: int = 0
    chunk_ids: list[bytes] = field(default_factory=list)
    buf: bytearray = field(default_factory=bytearray)
    last_used: int = 0
    done: bool = False


ControllerIdentity = IdentityLookup


class NetworkConfigAssembler:
    """Reassemble signed NETWORK_CONFIG chunks for one network (member side).

    Tracks up to three updates at once (least recently used is replaced),
    drops duplicate chunks, verifies each chunk's controller signature, and
    returns the decoded config when all of an update's bytes have arrived.
    """

    def __init__(
        self,
        network_id: int,
        controller: ControllerIdentity | None = None,
        *,
        allow_legacy_dictionary: bool = False,
    ) -> None:
        self.network_id = network_id
        self.controller_address = Address((network_id >> 24) & 0xFFFFFFFFFF)
        self.controller = controller
        self.allow_legacy_dictionary = allow_legacy_dictionary
        self._slots = [_Slot() for _ in range(MAX_INCOMING_UPDATES)]
        self._clock = 0

    def _controller_identity(self) -> Identity | None:
        c = self.controller
        if c is None:
            return None
        if isinstance(c, Identity):
            return c if c.address == self.controller_address else None
        if isinstance(c, Mapping):
            return c.get(self.controller_address)
        return c(self.controller_address)

    def add_chunk(
        self,
        payload: bytes | bytearray | memoryview | NetworkConfigChunk,
        offset: int = 0,
        *,
        source: int | None = None,
        packet_id: int = 0,
    ) -> AssembledConfig | None:
        """Feed one chunk; returns the config once complete, else None (incomplete or duplicate).

        ``source`` is the ZeroTier address the packet came from (needed to accept a
        legacy unsigned chunk, which only the controller may send) and ``packet_id``
        its packet id (a legacy chunk's update id). Raises NetworkConfigChunkError
        for malformed, oversized or badly signed chunks, and ZTError if the
        controller's identity is not known yet (WHOIS it and retry).
        """
        chunk = (
            payload
            if isinstance(payload, NetworkConfigChunk)
            else NetworkConfigChunk.from_bytes(payload, offset)[0]
        )
        if chunk.network_id != self.network_id:
            raise NetworkConfigChunkError(
                f"config chunk for network {chunk.network_id:016x}, expected {self.network_id:016x}"
            )
        clen = len(chunk.data)

        if chunk.signature is not None:
            if (
                chunk.chunk_index + clen > chunk.total_length
                or chunk.total_length >= NETWORKCONFIG_DICT_CAPACITY
            ):
                raise NetworkConfigChunkError("config chunk: index/length outside the announced total")
            update_id = chunk.update_id
            chunk_id = chunk.chunk_id
            slot = self._find_slot(update_id)
            if slot.update_id == update_id and (chunk_id in slot.chunk_ids or slot.done):
                return None  # duplicate, or an update we already completed
            ident = self._controller_identity()
            if ident is None:
                raise ZTError(f"controller identity {self.controller_address} unknown")
            if not ident.verify(chunk.signed_part(), chunk.signature):
                raise NetworkConfigChunkError("config chunk: bad controller signature")
            total = chunk.total_length
        else:
            if source is None or int(source) != self.controller_address:
                raise NetworkConfigChunkError("unsigned legacy config chunk not sent by the controller")
            if clen >= NETWORKCONFIG_DICT_CAPACITY:
                raise NetworkConfigChunkError("config chunk too large")
            update_id = packet_id
            chunk_id = packet_id.to_bytes(8, "big")
            total = clen
            slot = self._lru_slot()

        self._clock += 1
        slot.last_used = self._clock
        if slot.update_id != update_id or slot.total_length != total:
            slot.update_id = update_id
            slot.total_length = total
            slot.have_bytes = 0
            slot.chunk_ids = []
            slot.buf = bytearray(total)
            slot.done = False
        if len(slot.chunk_ids) >= MAX_UPDATE_CHUNKS:
            raise NetworkConfigChunkError("config update has too many chunks")
        slot.chunk_ids.append(chunk_id)
        slot.buf[chunk.chunk_index : chunk.chunk_index + clen] = chunk.data
        slot.have_bytes += clen
        if slot.have_bytes != slot.total_length:
            return None
        slot.done = True
        data = bytes(slot.buf)
        try:
            config = NetworkConfig.from_bytes(data, allow_legacy=self.allow_legacy_dictionary)
        except InvalidFormatError as e:
            raise NetworkConfigChunkError(f"assembled network config is invalid: {e}") from e
        return AssembledConfig(update_id, data, config)

    def _find_slot(self, update_id: int) -> _Slot:
        for s in self._slots:
            if s.update_id == update_id and s.last_used:
                return s
        return self._lru_slot()

    def _lru_slot(self) -> _Slot:
        return min(self._slots, key=lambda s: s.last_used)
