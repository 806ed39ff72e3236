"""VL2 over VL1: the virtual-network verbs and the path of Ethernet frames
(the VL2 half of ZeroTier's IncomingPacket and Switch::onLocalEthernet).

Inbound: FRAME / EXT_FRAME / MULTICAST_FRAME (access check, rules, delivery),
MULTICAST_LIKE / MULTICAST_GATHER (subscriptions), NETWORK_CREDENTIALS,
NETWORK_CONFIG_REQUEST (to the local controller) and NETWORK_CONFIG chunks.
The sending half (frames from the host, multicast, credential pushes, LIKEs,
config requests, rule copies) is `ztcore.vl2.outbound.VL2Outbound`, which this
switch extends.
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import TYPE_CHECKING, Any

from ztcore.errors import InvalidFormatError
from ztcore.identity import Address
from ztcore.vl1.packet import Dearmored, ErrorCode, PacketError, Verb
from ztcore.vl2.credentials import CertificateOfMembership, NetworkCredentials
from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.mac import MAC
from ztcore.vl2.membership import AddCredentialResult
from ztcore.vl2.multicast_group import MulticastGroup
from ztcore.vl2.network import Network
from ztcore.vl2.networkid import controller_for
from ztcore.vl2.outbound import (
    EXT_FRAME_FLAG_ACK,
    FRAME_FLAG_COM,
    MULTICAST_FRAME_FLAG_GATHER,
    MULTICAST_FRAME_FLAG_SOURCE_MAC,
    MULTICAST_TRANSMIT_TIMEOUT,
    VL2Host,
    VL2Outbound,
    _PendingMulticast,
)
from ztcore.vl2.rules.evaluate import Evaluation

if TYPE_CHECKING:
    from ztcore.vl1.path import Path
    from ztcore.vl1.peer import Peer

_NWID = struct.Struct(">Q")


def _need(p: bytes, length: int, reason: str) -> None:
    """Refuse a payload shorter than the fixed part about to be read (a counted drop)."""
    if len(p) < length:
        raise PacketError(reason, f"{len(p)} bytes, need {length}")


class VL2Switch(VL2Outbound):
    """Implements ztcore.vl1.switch.VL2Handler for the node."""

    def __init__(self, host: VL2Host) -> None:
        self.host = host
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self._pending_multicast: list[_PendingMulticast] = []

    def _error(
        self, now: int, peer: Peer, in_re_verb: int, packet_id: int, code: int, payload: bytes
    ) -> None:
        self._send(
            now, int(peer.address), Verb.ERROR, struct.pack(">BQB", in_re_verb, packet_id, code) + payload
        )

    # ============================================================ inbound
    def handle_packet(self, now: int, peer: Peer, path: Path, packet: Dearmored) -> bool:
        # Parsers check lengths and raise PacketError with a specific reason; any other
        # exception is a bug and is left to the VL1 catch-all (counted as internal_error).
        try:
            if packet.verb == Verb.FRAME:  # most packets: no second dispatch
                return self._do_frame(now, peer, packet)
            return self._handle(now, peer, path, packet)
        except PacketError as e:
            self._drop(e.reason, verb=Verb(packet.verb).name, peer=str(peer.identity.address))
            return True
        except InvalidFormatError as e:
            self._drop(
                f"malformed_{Verb(packet.verb).name.lower()}",
                error=str(e),
                peer=str(peer.identity.address),
            )
            return True

    def _handle(self, now: int, peer: Peer, path: Path, packet: Dearmored) -> bool:
        verb, p = packet.verb, packet.payload
        if verb == Verb.FRAME:
            return self._do_frame(now, peer, packet)
        if verb == Verb.EXT_FRAME:
            return self._do_ext_frame(now, peer, packet)
        if verb == Verb.MULTICAST_FRAME:
            return self._do_multicast_frame(now, peer, packet)
        if verb == Verb.MULTICAST_LIKE:
            self._do_multicast_like(now, peer, p)
            return True
        if verb == Verb.MULTICAST_GATHER:
            self._do_multicast_gather(now, peer, packet)
            return True
        if verb == Verb.NETWORK_CREDENTIALS:
            return self._do_network_credentials(now, peer, p)
        if verb == Verb.NETWORK_CONFIG_REQUEST:
            self._do_network_config_request(now, peer, path, packet)
            return True
        if verb == Verb.NETWORK_CONFIG:
            self._do_network_config(now, peer, packet)
            return True
        return True

    def _mark_trust(self, now: int, peer: Peer) -> None:
        peer.last_trust = now

    def _need_credentials(self, now: int, peer: Peer, packet: Dearmored, nwid: int) -> bool:
        self._drop("access_denied", network=f"{nwid:016x}", peer=str(peer.identity.address))
        self._error(
            now,
            peer,
            packet.verb,
            packet.header.packet_id,
            ErrorCode.NEED_MEMBERSHIP_CERTIFICATE,
            struct.pack(">Q", nwid),
        )
        return False

    def _do_frame(self, now: int, peer: Peer, packet: Dearmored) -> bool:
        # The commonest packet of all: kept to a few steps (no MAC objects, and no rule
        # evaluation when the network's rules accept everything and nothing is traced).
        p = packet.payload
        _need(p, 8, "frame_too_short")
        (nwid,) = _NWID.unpack_from(p, 0)
        network = self.host.get_network(nwid)
        if network is None:
            self._drop("not_a_member", network=f"{nwid:016x}")
            return True
        if not network.gate(now, peer):
            return self._need_credentials(now, peer, packet, nwid)
        peer.last_trust = now  # _mark_trust, without the call
        if len(p) < 10:
            return True
        ethertype = (p[8] << 8) | p[9]
        data = p[10:] if type(p) is bytes else bytes(p[10:])
        source_mac = (network.mac_first_octet << 40) | (int(peer.identity.address) ^ network.mac_mask)
        if network.accepts_all() and not self.host.filter_trace_wanted(nwid):
            self.stats["frames_in"] += 1
            self.host.deliver_frame(network, source_mac, network.mac, ethertype, 0, data)
        else:
            self._receive(now, network, peer, MAC(source_mac), network.mac, ethertype, data)
        return True

    def _admit(self, now: int, peer: Peer, packet: Dearmored) -> tuple[Network, int, int] | bool:
        """The common head of EXT_FRAME and MULTICAST_FRAME: network id, flags and an
        optional inline COM (flag 0x01, deprecated but still sent by old peers), then
        the access check. Returns (network, flags, offset after the COM), or the
        handler's result when the frame goes no further."""
        p = packet.payload
        _need(p, 9, f"{Verb(packet.verb).name.lower()}_too_short")
        nwid, flags = struct.unpack_from(">QB", p, 0)
        network = self.host.get_network(nwid)
        if network is None:
            self._drop("not_a_member", network=f"{nwid:016x}")
            return True
        ptr = 9
        if flags & FRAME_FLAG_COM:
            com, n = CertificateOfMembership.from_bytes(p, ptr)
            ptr += n
            network.add_com(com)
        if not network.gate(now, peer):
            return self._need_credentials(now, peer, packet, nwid)
        self._mark_trust(now, peer)
        return network, flags, ptr

    def _do_ext_frame(self, now: int, peer: Peer, packet: Dearmored) -> bool:
        admitted = self._admit(now, peer, packet)
        if isinstance(admitted, bool):
            return admitted
        network, flags, ptr = admitted
        p, nwid = packet.payload, network.id
        if flags & ~(FRAME_FLAG_COM | EXT_FRAME_FLAG_ACK):
            # TEE/WATCH/REDIRECT copies carry their origin in the flags: count them by kind.
            self.stats[f"ext_frame_in_flags_{flags & ~FRAME_FLAG_COM:02x}"] += 1
        if len(p) >= ptr + 14:
            to = MAC.from_bytes(p, ptr)
            frm = MAC.from_bytes(p, ptr + 6)
            (ethertype,) = struct.unpack_from(">H", p, ptr + 12)
            data = bytes(p[ptr + 14 :])
            config = network.config
            assert config is not None
            if frm == 0 or frm == network.mac:
                self._drop("invalid_source_mac")
            else:
                # As _doEXT_FRAME: the rules first; a super-accept (we are a TEE/WATCH/
                # REDIRECT target) skips the bridging and multicast checks.
                ev = self._filter_inbound(now, network, peer, frm, to, ethertype, data)
                if ev is None:
                    pass
                elif ev.super_accept:
                    self._deliver(network, frm, to, ethertype, data)
                elif frm != MAC.from_address(int(peer.address), nwid) and not config.is_active_bridge(
                    int(peer.address)
                ):
                    self._drop("bridging_not_allowed_remote")
                elif to != network.mac and not to.is_multicast and not config.is_active_bridge(self._me):
                    self._drop("bridging_not_allowed_local")
                elif to.is_multicast and config.multicast_limit == 0:
                    self._drop("multicast_disabled")
                else:
                    self._deliver(network, frm, to, ethertype, data)
        if flags & EXT_FRAME_FLAG_ACK:
            self._send(
                now,
                int(peer.address),
                Verb.OK,
                struct.pack(">BQQ", Verb.EXT_FRAME, packet.header.packet_id, nwid),
            )
        return True

    def _do_multicast_frame(self, now: int, peer: Peer, packet: Dearmored) -> bool:
        admitted = self._admit(now, peer, packet)
        if isinstance(admitted, bool):
            return admitted
        network, flags, ptr = admitted
        p, nwid = packet.payload, network.id
        gather_limit = 0
        _need(
            p,
            ptr
            + (4 if flags & MULTICAST_FRAME_FLAG_GATHER else 0)
            + (6 if flags & MULTICAST_FRAME_FLAG_SOURCE_MAC else 0)
            + MulticastGroup.WIRE_LENGTH
            + 2,
            "multicast_frame_too_short",
        )
        if flags & MULTICAST_FRAME_FLAG_GATHER:
            (gather_limit,) = struct.unpack_from(">I", p, ptr)
            ptr += 4
        if flags & MULTICAST_FRAME_FLAG_SOURCE_MAC:
            frm = MAC.from_bytes(p, ptr)
            ptr += 6
        else:
            frm = MAC.from_address(int(peer.address), nwid)
        group = MulticastGroup.from_bytes(p, ptr)
        (ethertype,) = struct.unpack_from(">H", p, ptr + 10)
        data = bytes(p[ptr + 12 :])
        config = network.config
        assert config is not None
        if config.multicast_limit == 0:
            self._drop("multicast_disabled")
        elif not group.mac.is_multicast:
            self._drop("destination_not_multicast")
        elif frm == 0 or frm.is_multicast or frm == network.mac:
            self._drop("invalid_source_mac")
        elif frm != MAC.from_address(int(peer.address), nwid) and not config.is_active_bridge(
            int(peer.address)
        ):
            self._drop("bridging_not_allowed_remote")
        elif data:
            self._receive(now, network, peer, frm, group.mac, ethertype, data)
        if gather_limit:
            total, members = self.host.multicaster.gather(now, int(peer.address), nwid, group, gather_limit)
            if members:
                out = (
                    struct.pack(">BQQ", Verb.MULTICAST_FRAME, packet.header.packet_id, nwid)
                    + group.to_bytes()
                )
                out += bytes((MULTICAST_FRAME_FLAG_GATHER,)) + struct.pack(">IH", total, len(members))
                out += b"".join(Address(a).to_bytes() for a in members)
                self._send(now, int(peer.address), Verb.OK, out)
        return True

    def _filter_inbound(
        self,
        now: int,
        network: Network,
        peer: Peer,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        data: bytes,
    ) -> Evaluation | None:
        """filterIncomingPacket: the evaluation if the frame is to be delivered here,
        else None (dropped or redirected; copies and redirects are sent)."""
        ev = network.filter_frame(
            inbound=True,
            peer=int(peer.address),
            source_mac=source_mac,
            dest_mac=dest_mac,
            ethertype=ethertype,
            vlan_id=0,
            data=data,
        )
        if ev.copies:
            self.send_rule_copies(now, network, ev, source_mac, dest_mac, ethertype, data)
        self._trace_filter(now, network, ev, int(peer.address), self._me, source_mac, dest_mac, ethertype, 0, data)
        if not ev.deliver:
            self._drop(
                "filter_redirected_inbound" if ev.accepted else "filter_blocked_inbound",
                network=f"{network.id:016x}",
                rule=str(ev.deciding) if ev.deciding is not None else "none matched",
                peer=str(peer.identity.address),
                source_mac=int(source_mac),
                dest_mac=int(dest_mac),
                ethertype=ethertype,
                frame_len=len(data),
            )
            return None
        return ev

    def _deliver(self, network: Network, source_mac: int, dest_mac: int, ethertype: int, data: bytes) -> None:
        self.stats["frames_in"] += 1
        self.host.deliver_frame(network, source_mac, dest_mac, ethertype, 0, data)

    def _receive(
        self,
        now: int,
        network: Network,
        peer: Peer,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        data: bytes,
    ) -> None:
        if self._filter_inbound(now, network, peer, source_mac, dest_mac, ethertype, data) is not None:
            self._deliver(network, source_mac, dest_mac, ethertype, data)

    def _do_multicast_like(self, now: int, peer: Peer, p: bytes) -> None:
        last_nwid = None
        authorized = False
        for ptr in range(0, len(p) - 17, 18):
            (nwid,) = struct.unpack_from(">Q", p, ptr)
            if nwid != last_nwid:
                last_nwid = nwid
                network = self.host.get_network(nwid)
                authorized = network is not None and network.gate(now, peer)
                if not authorized:
                    authorized = self.host.topology.am_upstream or self.host.controller_has_authorized(
                        now, nwid, int(peer.address)
                    )
            if authorized:
                group = MulticastGroup.from_bytes(p, ptr + 8)
                self.host.multicaster.add(now, nwid, group, int(peer.address))
                # As Multicaster::_add: a new member gets what is still waiting for recipients.
                self._flush_pending_multicast(now, nwid, group)

    def _do_multicast_gather(self, now: int, peer: Peer, packet: Dearmored) -> None:
        p = packet.payload
        _need(p, 23, "multicast_gather_too_short")
        nwid, flags = struct.unpack_from(">QB", p, 0)
        group = MulticastGroup.from_bytes(p, 9)
        (limit,) = struct.unpack_from(">I", p, 19)
        network = self.host.get_network(nwid)
        if flags & 0x01 and network is not None and len(p) > 23:
            try:
                com, _ = CertificateOfMembership.from_bytes(p, 23)
                network.add_com(com)
            except InvalidFormatError:
                pass
        trusted = network is not None and network.gate(now, peer)
        if trusted:
            self._mark_trust(now, peer)
        if limit and (
            trusted
            or self.host.topology.am_upstream
            or self.host.controller_has_authorized(now, nwid, int(peer.address))
        ):
            total, members = self.host.multicaster.gather(now, int(peer.address), nwid, group, limit)
            if members:
                out = (
                    struct.pack(">BQQ", Verb.MULTICAST_GATHER, packet.header.packet_id, nwid)
                    + group.to_bytes()
                )
                out += struct.pack(">IH", total, len(members)) + b"".join(
                    Address(a).to_bytes() for a in members
                )
                self._send(now, int(peer.address), Verb.OK, out)

    def _do_network_credentials(self, now: int, peer: Peer, p: bytes) -> bool:
        creds, _ = NetworkCredentials.from_bytes(p)
        accepted = False
        # In the order the core applies them: COMs, capabilities, tags, revocations, COOs.
        batches: list[tuple[str, list[Any]]] = [
            ("com", creds.coms),
            ("cred", creds.capabilities),
            ("cred", creds.tags),
            ("rev", creds.revocations),
            ("cred", creds.coos),
        ]
        for kind, items in batches:
            for cred in items:
                network = self.host.get_network(cred.network_id)
                if network is None:
                    continue
                if kind == "com":
                    result = network.add_com(cred)
                elif kind == "rev":
                    result = network.add_revocation(cred)
                else:
                    result = network.add_credential(cred)
                if result == AddCredentialResult.DEFERRED_FOR_WHOIS:
                    self.host.switch.request_whois(now, int(controller_for(cred.network_id)))
                    return False
                accepted |= result.accepted
        if accepted:
            self._mark_trust(now, peer)
            # Frames that were refused for lack of this peer's COM can go through now.
            self.host.switch.retry_waiting_for(now, peer)
        return True

    def _do_network_config_request(self, now: int, peer: Peer, path: Path, packet: Dearmored) -> None:
        p = packet.payload
        _need(p, 8, "network_config_request_too_short")
        (nwid,) = struct.unpack_from(">Q", p, 0)
        controller = self.host.controller
        if controller is not None and int(controller_for(nwid)) == self._me:
            meta_len = struct.unpack_from(">H", p, 8)[0] if len(p) >= 10 else 0
            _need(p, 10 + meta_len, "network_config_request_truncated_metadata")
            metadata = Dictionary.from_bytes(p[10 : 10 + meta_len]) if meta_len else Dictionary()
            self.stats["config_requests"] += 1
            controller.request(
                now,
                nwid,
                path.address if packet.header.hops == 0 else None,
                packet.header.packet_id,
                peer.identity,
                metadata,
            )
        else:
            self._error(
                now,
                peer,
                Verb.NETWORK_CONFIG_REQUEST,
                packet.header.packet_id,
                ErrorCode.UNSUPPORTED_OPERATION,
                struct.pack(">Q", nwid),
            )

    def _do_network_config(self, now: int, peer: Peer, packet: Dearmored) -> None:
        p = packet.payload
        _need(p, 8, "network_config_too_short")
        (nwid,) = struct.unpack_from(">Q", p, 0)
        network = self.host.get_network(nwid)
        if network is None:
            return
        update_id = network.handle_config_chunk(now, p, int(peer.address), packet.header.packet_id)
        if update_id:
            self._send(
                now,
                int(peer.address),
                Verb.OK,
                struct.pack(">BQQQ", Verb.ECHO, packet.header.packet_id, nwid, update_id),
            )

    # ---------------------------------------------------------------- replies
    def handle_ok(self, now: int, peer: Peer, in_re_verb: int, in_re_packet_id: int, payload: bytes) -> None:
        try:
            if in_re_verb == Verb.NETWORK_CONFIG_REQUEST:
                (nwid,) = struct.unpack_from(">Q", payload, 0)
                network = self.host.get_network(nwid)
                if network is not None:
                    network.handle_config_chunk(now, payload, int(peer.address), in_re_packet_id)
            elif in_re_verb == Verb.MULTICAST_GATHER:
                (nwid,) = struct.unpack_from(">Q", payload, 0)
                group = MulticastGroup.from_bytes(payload, 8)
                self._add_gather_results(now, nwid, group, payload, 18)
            elif in_re_verb == Verb.MULTICAST_FRAME:
                (nwid,) = struct.unpack_from(">Q", payload, 0)
                group = MulticastGroup.from_bytes(payload, 8)
                flags = payload[18]
                ptr = 19
                network = self.host.get_network(nwid)
                if flags & 0x01:
                    com, n = CertificateOfMembership.from_bytes(payload, ptr)
                    ptr += n
                    if network is not None:
                        network.add_com(com)
                if flags & 0x02:
                    self._add_gather_results(now, nwid, group, payload, ptr)
        except (InvalidFormatError, struct.error, IndexError, ValueError) as e:
            self._drop("malformed_ok", error=str(e))

    def _add_gather_results(self, now: int, nwid: int, group: MulticastGroup, p: bytes, ptr: int) -> None:
        if self.host.get_network(nwid) is None:
            return
        _total, count = struct.unpack_from(">IH", p, ptr)
        ptr += 6
        for i in range(count):
            if ptr + 5 * (i + 1) > len(p):
                break
            a = int.from_bytes(p[ptr + 5 * i : ptr + 5 * i + 5], "big")
            if a != self._me:
                self.host.multicaster.add(now, nwid, group, a)
        self._flush_pending_multicast(now, nwid, group)

    def handle_error(
        self, now: int, peer: Peer, in_re_verb: int, in_re_packet_id: int, code: int, payload: bytes
    ) -> None:
        if len(payload) < 8:
            return
        (nwid,) = struct.unpack_from(">Q", payload, 0)
        network = self.host.get_network(nwid)
        if network is None:
            return
        from_controller = int(peer.address) == int(network.controller)
        if code in (ErrorCode.OBJ_NOT_FOUND, ErrorCode.UNSUPPORTED_OPERATION):
            if in_re_verb == Verb.NETWORK_CONFIG_REQUEST and from_controller:
                network.set_not_found()
        elif code == ErrorCode.NETWORK_ACCESS_DENIED_:
            if from_controller:
                network.set_access_denied()
        elif code == ErrorCode.NEED_MEMBERSHIP_CERTIFICATE:
            self.push_credentials(now, network, int(peer.address), force=True)
        elif code == ErrorCode.UNWANTED_MULTICAST and len(payload) >= 18:
            if network.gate(now, peer):
                self.host.multicaster.remove(nwid, MulticastGroup.from_bytes(payload, 8), int(peer.address))

    # =========================================================== outbound
    def do_timer_tasks(self, now: int) -> None:
        self._pending_multicast = [
            p for p in self._pending_multicast if now - p.created < MULTICAST_TRANSMIT_TIMEOUT
        ]
