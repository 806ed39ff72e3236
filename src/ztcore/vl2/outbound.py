"""VL2 outbound: what becomes of an Ethernet frame the host hands to a network (the
sending half of ZeroTier's Switch::onLocalEthernet and OutboundMulticast), and what
a member sends on its own: config requests, credential pushes, LIKEs, and the copies
and redirects the rules ask for.

Unicast frames go as FRAME (EXT_FRAME when bridged or flagged), after the outbound
rules; multicast and ARP go to gathered members, each copy filtered per recipient.

`VL2Outbound` is the sending half of `ztcore.vl2.switch.VL2Switch` (a mixin: the switch
owns the host, counters and the pending-multicast list these methods use); `VL2Host` is
what both halves need from the node.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ztcore.vl1.packet import Verb
from ztcore.vl2.mac import MAC
from ztcore.vl2.membership import credential_packets
from ztcore.vl2.multicast_group import MulticastGroup
from ztcore.vl2.ndp import emulated_advertisement
from ztcore.vl2.network import PEER_ACTIVITY_TIMEOUT, PEER_CREDENTIALS_REQUEST_RATE_LIMIT, Network
from ztcore.vl2.rules.evaluate import ETHERTYPE_ARP, ETHERTYPE_IPV6, Evaluation

if TYPE_CHECKING:
    from ztcore.identity import Identity
    from ztcore.vl1.switch import Switch
    from ztcore.vl1.topology import Topology
    from ztcore.vl2.controller_api import NetworkController
    from ztcore.vl2.multicaster import Multicaster

MULTICAST_TRANSMIT_TIMEOUT = 5_000  # ZT_MULTICAST_TRANSMIT_TIMEOUT
EXT_FRAME_FLAG_ACK = 0x10
FRAME_FLAG_COM = 0x01  # EXT_FRAME and MULTICAST_FRAME: an inline COM follows
MULTICAST_FRAME_FLAG_GATHER = 0x02
MULTICAST_FRAME_FLAG_SOURCE_MAC = 0x04
_MULTICAST_BIT = 0x010000000000  # the I/G bit of a MAC's first octet
_FRAME_HEAD = struct.Struct(">QH")  # FRAME: network id, ethertype


class SentFrameHook(Protocol):
    """The node's fast lane, as the sending path offers it sessions (ztcore.lane)."""

    def offer_sent(self, now: int, network: Network, address: int) -> None: ...


class VL2Host(Protocol):
    identity: Identity
    topology: Topology
    switch: Switch
    multicaster: Multicaster
    controller: NetworkController | None
    lane: SentFrameHook | None

    def get_network(self, network_id: int) -> Network | None: ...

    def controller_has_authorized(self, now: int, network_id: int, address: int) -> bool: ...

    def deliver_frame(
        self, network: Network, source_mac: int, dest_mac: int, ethertype: int, vlan_id: int, data: bytes
    ) -> None: ...

    def trace(self, kind: str, /, **fields: object) -> None: ...

    def filter_trace_wanted(self, network_id: int) -> bool: ...

    def trace_network_filter(self, now: int, network_id: int, **fields: Any) -> object: ...


@dataclass(slots=True)
class _PendingMulticast:
    network_id: int
    group: MulticastGroup
    source_mac: int  # 0 = our own MAC
    ethertype: int
    data: bytes
    created: int
    sent_to: set[int]


class VL2Outbound:
    """The sending half of the VL2 switch (see the module docstring)."""

    host: VL2Host
    stats: Counter[str]
    drops: Counter[str]
    _pending_multicast: list[_PendingMulticast]

    @property
    def _me(self) -> int:
        return int(self.host.identity.address)

    def _drop(self, reason: str, /, **fields: object) -> None:
        self.drops[reason] += 1
        self.host.trace("frame_dropped", **{**fields, "reason": reason})

    def _send(self, now: int, dest: int, verb: int, payload: bytes) -> None:
        self.host.switch.send(now, dest, verb, payload)

    def send_rule_copies(
        self,
        now: int,
        network: Network,
        ev: Evaluation,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        data: bytes,
    ) -> None:
        """The EXT_FRAMEs a TEE, WATCH or REDIRECT asks for, with the core's flags."""
        head = MAC(dest_mac).to_bytes() + MAC(source_mac).to_bytes() + struct.pack(">H", ethertype)
        for c in ev.copies:
            if c.address == self._me:
                continue
            self.push_credentials(now, network, c.address)
            payload = struct.pack(">QB", network.id, c.flags) + head + data[: c.length]
            self._send(now, c.address, Verb.EXT_FRAME, payload)
            self.stats["rule_copies_sent"] += 1

    def request_configuration(self, now: int, network: Network) -> None:
        network.last_config_request = now
        metadata = network.request_metadata()
        if int(network.controller) == self._me:
            if self.host.controller is not None:
                self.host.controller.request(
                    now, network.id, None, 0xFFFFFFFFFFFFFFFF, self.host.identity, metadata
                )
            else:
                network.set_not_found()
            return
        raw = metadata.to_bytes()
        payload = struct.pack(">QH", network.id, len(raw)) + raw
        c = network.config
        payload += struct.pack(">QQ", c.revision, c.timestamp) if c is not None else bytes(16)
        self.stats["config_requests_sent"] += 1
        self._send(now, int(network.controller), Verb.NETWORK_CONFIG_REQUEST, payload)

    def push_credentials(self, now: int, network: Network, to: int, force: bool = False) -> None:
        """Membership::pushCredentials, rate-limited as peerRequestedCredentials /
        pushCredentialsIfNeeded are."""
        config = network.config
        if config is None or to == self._me:
            return
        m = network.membership(to)
        since = now - m.last_pushed_credentials
        limit = PEER_CREDENTIALS_REQUEST_RATE_LIMIT if force else PEER_ACTIVITY_TIMEOUT
        if m.last_pushed_credentials >= network.last_config_update and since <= limit:
            return
        m.last_pushed_credentials = now
        for creds in credential_packets(config):
            self.stats["credentials_pushed"] += 1
            self._send(now, to, Verb.NETWORK_CREDENTIALS, creds.to_bytes())

    def announce_multicast_groups(self, now: int, network: Network, force: bool = False) -> None:
        """Network::_sendUpdatesToMembers: LIKEs to the controller, the roots and
        always-contact specialists, and to members we exchange frames with."""
        if network.config is None:
            return
        groups = sorted(network.multicast_groups(), key=lambda g: (int(g.mac), g.adi))
        if not groups:
            return
        targets: set[int] = set()
        if force or now - network.last_announced_upstream >= 60_000:
            network.last_announced_upstream = now
            targets.add(int(network.controller))
            targets.update(int(a) for a in self.host.topology.upstream_addresses())
            targets.update(int(a) for a in network.config.always_contact_addresses())
        for address, m in network.memberships.items():
            identity = self.host.topology.get_identity(address)
            if identity is None:
                continue
            if (m.multicast_like_gate(now) or force) and m.is_allowed(network.config, identity):
                targets.add(address)
        targets.discard(self._me)
        body = b"".join(struct.pack(">Q", network.id) + g.to_bytes() for g in groups)
        for t in sorted(targets):
            self._send(now, t, Verb.MULTICAST_LIKE, body)
        self.stats["likes_sent"] += len(targets)

    def on_local_frame(
        self,
        now: int,
        network: Network,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        vlan_id: int,
        data: bytes,
    ) -> bool:
        """Switch::onLocalEthernet: a frame from the host side of `network`."""
        config = network.config
        if config is None:
            self._drop("no_configuration", network=f"{network.id:016x}")
            return False
        if type(source_mac) is not int or type(dest_mac) is not int or (source_mac | dest_mac) >> 48:
            source_mac, dest_mac = MAC(source_mac), MAC(dest_mac)  # raises if not 48-bit MACs
        bridged = source_mac != network.mac
        if bridged and not config.is_active_bridge(self._me):
            self._drop("not_a_bridge", network=f"{network.id:016x}")
            return False
        if not dest_mac & _MULTICAST_BIT and dest_mac >> 40 == network.mac_first_octet and dest_mac != network.mac:
            # Unicast to a member (the commonest frame): plain int arithmetic, and no
            # rule evaluation when the rules accept everything and nothing is traced.
            to = (dest_mac & 0xFFFFFFFFFF) ^ network.mac_mask
            plain = network.accepts_all() and not self.host.filter_trace_wanted(network.id)
            if not plain and not self._filter_outbound(
                now, network, to, MAC(source_mac), MAC(dest_mac), ethertype, vlan_id, data
            ):
                return False
            self.push_credentials(now, network, to)
            if bridged:
                payload = struct.pack(">QB", network.id, 0) + dest_mac.to_bytes(6, "big") + source_mac.to_bytes(6, "big")
                payload += struct.pack(">H", ethertype) + data
                self._send(now, to, Verb.EXT_FRAME, payload)
            else:
                self.host.switch.send(now, to, Verb.FRAME, _FRAME_HEAD.pack(network.id, ethertype) + data)
                lane = self.host.lane
                if plain and lane is not None:  # the next ones may take the node's fast lane (ztcore.lane)
                    lane.offer_sent(now, network, to)
            self.stats["frames_out"] += 1
            return True
        source_mac, dest_mac = MAC(source_mac), MAC(dest_mac)
        if dest_mac.is_multicast:
            if (
                ethertype == ETHERTYPE_IPV6
                and config.ndp_emulation
                and self._emulate_ndp(network, source_mac, data)
            ):
                return True
            group = MulticastGroup(dest_mac, 0)
            if dest_mac == MAC(0xFFFFFFFFFFFF):
                if (
                    ethertype == ETHERTYPE_ARP
                    and len(data) >= 28
                    and data[2:4] == b"\x08\x00"
                    and data[4] == 6
                    and data[5] == 4
                ):
                    # ARP becomes a multicast to the group of the IPv4 address asked for.
                    group = MulticastGroup(dest_mac, int.from_bytes(data[24:28], "big"))
                elif not config.enable_broadcast:
                    self._drop("broadcast_disabled")
                    return False
            if config.multicast_limit == 0:
                self._drop("multicast_disabled")
                return False
            if not self._filter_outbound(now, network, 0, source_mac, dest_mac, ethertype, vlan_id, data):
                return False
            self.send_multicast(now, network, group, source_mac if bridged else 0, ethertype, data)
            return True
        if dest_mac == network.mac:
            self.host.deliver_frame(network, source_mac, dest_mac, ethertype, vlan_id, data)
            return True
        bridges = [int(a) for a in config.active_bridges() if int(a) != self._me]
        if not bridges:
            self._drop("no_route_to_mac", mac=str(dest_mac))
            return False
        sent = False
        for b in bridges[:8]:
            # Bridge replication: filtered per bridge, without TEE/WATCH copies.
            if not self._filter_outbound(
                now, network, b, source_mac, dest_mac, ethertype, vlan_id, data, no_tee=True
            ):
                continue
            payload = struct.pack(">QB", network.id, 0) + dest_mac.to_bytes() + source_mac.to_bytes()
            self._send(now, b, Verb.EXT_FRAME, payload + struct.pack(">H", ethertype) + data)
            sent = True
        return sent

    def _filter_outbound(
        self,
        now: int,
        network: Network,
        to: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        vlan_id: int,
        data: bytes,
        no_tee: bool = False,
    ) -> bool:
        """filterOutgoingPacket: True if the frame goes on to ``to`` (0: a multicast
        before it is split per recipient); copies and redirects are sent here."""
        ev = network.filter_frame(
            inbound=False,
            peer=to,
            source_mac=source_mac,
            dest_mac=dest_mac,
            ethertype=ethertype,
            vlan_id=vlan_id,
            data=data,
            no_tee=no_tee,
        )
        if ev.copies:
            self.send_rule_copies(now, network, ev, source_mac, dest_mac, ethertype, data)
        self._trace_filter(now, network, ev, self._me, to, source_mac, dest_mac, ethertype, vlan_id, data, no_tee)
        if not ev.deliver:
            self._drop(
                "filter_redirected_outbound" if ev.accepted else "filter_blocked_outbound",
                network=f"{network.id:016x}",
                rule=str(ev.deciding) if ev.deciding is not None else "none matched",
                to=f"{to:010x}",
                source_mac=int(source_mac),
                dest_mac=int(dest_mac),
                ethertype=ethertype,
                vlan_id=vlan_id,
                frame_len=len(data),
            )
            return False
        return True

    def _trace_filter(
        self,
        now: int,
        network: Network,
        ev: Evaluation,
        source: int,
        dest: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        vlan_id: int,
        data: bytes,
        no_tee: bool = False,
    ) -> None:
        """Trace::networkFilter (event 2006) when the network wants it traced: the
        verdict (0 drop, 1 accept, 2 super-accept) with both 4-bit rule logs."""
        if not self.host.filter_trace_wanted(network.id):
            return
        cap = ev.capability
        self.host.trace_network_filter(
            now,
            network.id,
            source=source,
            dest=dest,
            source_mac=int(source_mac),
            dest_mac=int(dest_mac),
            ethertype=ethertype,
            vlan_id=vlan_id,
            no_tee=no_tee,
            inbound=ev.inbound,
            result=2 if ev.super_accept else 1 if ev.deliver else 0,
            base_rule_log=ev.base.log,
            cap_rule_log=cap.log if cap is not None else None,
            matching_cap_id=ev.deciding.capability_id if ev.deciding is not None else None,
            frame=data,
        )

    def _emulate_ndp(self, network: Network, source_mac: int, data: bytes) -> bool:
        """Answer a neighbour solicitation locally when NDP emulation can (vl2.ndp)."""
        assert network.config is not None
        answer = emulated_advertisement(network.config, network.id, self._me, data)
        if answer is None:
            return False
        self.stats["ndp_emulated"] += 1
        self.host.deliver_frame(network, answer[0], source_mac, ETHERTYPE_IPV6, 0, answer[1])
        return True

    def send_multicast(
        self, now: int, network: Network, group: MulticastGroup, source_mac: int, ethertype: int, data: bytes
    ) -> None:
        config = network.config
        assert config is not None
        mc = self.host.multicaster
        members = [a for a in mc.members(now, network.id, group) if a != self._me]
        limit = config.multicast_limit
        if len(members) < limit and mc.should_gather(now, network.id, group):
            gather_limit = (limit - len(members)) + 1
            targets = {int(network.controller)}
            upstream = self.host.topology.get_upstream_peer(now)
            if upstream is not None:
                targets.add(int(upstream.address))
            targets.update(int(a) for a in config.always_contact_addresses())
            targets.discard(self._me)
            com = config.com
            body = struct.pack(">QB", network.id, 0x01 if com else 0) + group.to_bytes()
            body += struct.pack(">I", gather_limit) + (com.to_bytes() if com else b"")
            for t in sorted(targets):
                self._send(now, t, Verb.MULTICAST_GATHER, body)
            self.stats["gathers_sent"] += len(targets)
        pending = _PendingMulticast(network.id, group, source_mac, ethertype, data, now, set())
        self._transmit_multicast(now, network, pending, members[:limit])
        if len(pending.sent_to) < limit:
            self._pending_multicast.append(pending)
            if len(self._pending_multicast) > 32:
                self._pending_multicast.pop(0)

    def _transmit_multicast(
        self, now: int, network: Network, pending: _PendingMulticast, members: list[int]
    ) -> None:
        config = network.config
        if config is None:
            return
        flags = MULTICAST_FRAME_FLAG_SOURCE_MAC if pending.source_mac else 0
        head = struct.pack(">QB", network.id, flags)
        if pending.source_mac:
            head += MAC(pending.source_mac).to_bytes()
        body = head + pending.group.to_bytes() + struct.pack(">H", pending.ethertype) + pending.data
        source_mac = pending.source_mac or network.mac
        for a in members:
            if a in pending.sent_to or a == self._me or len(pending.sent_to) >= config.multicast_limit:
                continue
            pending.sent_to.add(a)
            # OutboundMulticast::sendOnly: the rules once more for each recipient (no copies).
            if not self._filter_outbound(
                now,
                network,
                a,
                source_mac,
                pending.group.mac,
                pending.ethertype,
                0,
                pending.data,
                no_tee=True,
            ):
                continue
            self.push_credentials(now, network, a)
            self._send(now, a, Verb.MULTICAST_FRAME, body)
            self.stats["multicast_frames_out"] += 1

    def _flush_pending_multicast(self, now: int, nwid: int, group: MulticastGroup) -> None:
        network = self.host.get_network(nwid)
        if network is None:
            return
        members = self.host.multicaster.members(now, nwid, group)
        for pending in self._pending_multicast:
            if pending.network_id == nwid and pending.group == group:
                self._transmit_multicast(now, network, pending, members)

