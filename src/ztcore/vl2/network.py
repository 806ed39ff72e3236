"""One joined virtual network (ZeroTier's Network and Membership).

Owns the network's configuration and status, the assembly of signed config
chunks from its controller, other members' credentials (COMs and revocations)
and the access decision made from them (`gate`), this node's multicast
subscriptions, and the one rule-evaluation point frames pass through.
Sending and receiving frames over VL1 is done by `ztcore.vl2.switch`.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ztcore.api import StateObjectType
from ztcore.errors import InvalidFormatError, ZTError, report_unexpected
from ztcore.identity import Address, Identity
from ztcore.vl2.credentials import CertificateOfMembership, CredentialType, Revocation, VerifyResult
from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.filter import Verdict, evaluate, frame_facts
from ztcore.vl2.mac import BROADCAST_MAC, MAC
from ztcore.vl2.multicast_group import MulticastGroup
from ztcore.vl2.netconf import (
    DEFAULT_MTU,
    NetworkConfig,
    NetworkConfigAssembler,
    NetworkConfigChunkError,
    build_request_metadata,
)
from ztcore.vl2.networkid import controller_for
from ztcore.vl2.rules import Rule

if TYPE_CHECKING:
    from ztcore.vl1.peer import Peer

log = logging.getLogger(__name__)

NETWORK_AUTOCONF_DELAY = 60_000  # ZT_NETWORK_AUTOCONF_DELAY
MULTICAST_ANNOUNCE_PERIOD = 60_000  # ZT_MULTICAST_ANNOUNCE_PERIOD
PEER_CREDENTIALS_REQUEST_RATE_LIMIT = 1_000
PEER_ACTIVITY_TIMEOUT = 500_000
_ACCEPT_ALL = Rule.action_accept()
_ACCEPTED = Verdict(True, 0, "accept")


class NetworkStatus(enum.IntEnum):
    """As ZT_VirtualNetworkStatus."""

    REQUESTING_CONFIGURATION = 0
    OK = 1
    ACCESS_DENIED = 2
    NOT_FOUND = 3
    PORT_ERROR = 4
    CLIENT_TOO_OLD = 5
    AUTHENTICATION_REQUIRED = 6


class NetworkHost(Protocol):
    """What a network needs from its node."""

    identity: Identity

    def state_put(self, kind: StateObjectType, object_id: tuple[int, ...], data: bytes | None) -> None: ...

    def network_config_changed(self, network: Network, operation: str) -> None: ...

    def lookup_identity(self, address: int) -> Identity | None: ...

    def trace(self, kind: str, **fields: object) -> None: ...


@dataclass(eq=False)
class Membership:
    """What we know of one other member: its COM and revocations, and when we
    last pushed our credentials to it or announced our multicast groups."""

    com: CertificateOfMembership | None = None
    com_revocation_threshold: int = 0
    last_pushed_credentials: int = -(10**15)
    last_updated_multicast: int = -(10**15)
    revocations: dict[int, int] = field(default_factory=dict)  # (type << 32 | credential id) -> threshold
    # The answer of is_allowed() for the exact objects it was computed from: the check
    # runs for every frame, while COMs change rarely.
    _allowed_for: tuple[object, object, int, object] | None = None
    _allowed: bool = False

    def is_allowed(self, config: NetworkConfig, identity: Identity) -> bool:
        if config.is_public:
            return True
        com, ours = self.com, config.com
        if com is None or ours is None:
            return False
        k = self._allowed_for
        if (
            k is not None
            and k[0] is ours
            and k[1] is com
            and k[2] == self.com_revocation_threshold
            and k[3] is identity
        ):
            return self._allowed
        allowed = com.timestamp > self.com_revocation_threshold and ours.agrees_with(com, identity)
        self._allowed_for = (ours, com, self.com_revocation_threshold, identity)
        self._allowed = allowed
        return allowed

    def multicast_like_gate(self, now: int) -> bool:
        if now - self.last_updated_multicast >= MULTICAST_ANNOUNCE_PERIOD:
            self.last_updated_multicast = now
            return True
        return False


class Network:
    def __init__(self, host: NetworkHost, network_id: int, now: int, saved: bytes | None = None) -> None:
        self.host = host
        self.id = network_id
        self.controller = controller_for(network_id)
        self.mac = MAC.from_address(int(host.identity.address), network_id)
        self.config: NetworkConfig | None = None
        self.failure: NetworkStatus | None = None
        self.last_config_update = 0
        self.last_config_request = -NETWORK_AUTOCONF_DELAY
        self.last_announced_upstream = -MULTICAST_ANNOUNCE_PERIOD
        self.memberships: dict[int, Membership] = {}
        self.subscriptions: set[MulticastGroup] = set()
        self.settings: dict[str, bool] = {
            "allowManaged": True,
            "allowGlobal": False,
            "allowDefault": False,
            "allowDNS": False,
        }
        self.assembler = NetworkConfigAssembler(network_id, self._controller_identity)
        self.destroyed = False
        if saved:
            try:
                config = NetworkConfig.from_bytes(saved)
            except InvalidFormatError as e:
                log.warning(
                    "stored config of network %016x is unreadable (%s); requesting a new one", network_id, e
                )
            else:
                self.set_configuration(now, config, save=False)

    # -------------------------------------------------------------- status
    def _controller_identity(self, address: Address) -> Identity | None:
        return self.host.lookup_identity(int(address))

    @property
    def status(self) -> NetworkStatus:
        if self.failure is not None:
            return self.failure
        return NetworkStatus.OK if self.config is not None else NetworkStatus.REQUESTING_CONFIGURATION

    @property
    def has_config(self) -> bool:
        return self.config is not None

    def needs_config(self, now: int) -> bool:
        return self.config is None or (now - self.last_config_update) >= NETWORK_AUTOCONF_DELAY

    def request_metadata(self) -> Dictionary:
        return build_request_metadata()

    def set_not_found(self) -> None:
        self.failure = NetworkStatus.NOT_FOUND
        self.host.network_config_changed(self, "update")

    def set_access_denied(self) -> None:
        self.failure = NetworkStatus.ACCESS_DENIED
        self.host.network_config_changed(self, "update")

    # ------------------------------------------------------- configuration
    def handle_config_chunk(self, now: int, payload: bytes, source: int, packet_id: int) -> int:
        """Feed one NETWORK_CONFIG chunk; returns the update id once a config was applied, else 0."""
        try:
            assembled = self.assembler.add_chunk(payload, 0, source=source, packet_id=packet_id)
        except NetworkConfigChunkError as e:
            self.host.trace("network_config_chunk_rejected", network=f"{self.id:016x}", reason=str(e))
            return 0
        except ZTError as e:
            self.host.trace("network_config_chunk_deferred", network=f"{self.id:016x}", reason=str(e))
            return 0
        if assembled is None:
            return 0
        return assembled.update_id if self.set_configuration(now, assembled.config) else 0

    def set_configuration(self, now: int, config: NetworkConfig, save: bool = True) -> int:
        """Apply a config issued to us for this network: 0 invalid, 1 unchanged, 2 changed."""
        if config.network_id != self.id or int(config.issued_to) != int(self.host.identity.address):
            self.host.trace("network_config_rejected", network=f"{self.id:016x}", reason="not for us")
            return 0
        self.last_config_update = now
        self.failure = None
        if self.config is not None and self.config.to_bytes() == config.to_bytes():
            return 1
        first = self.config is None
        self.config = config
        if save:
            try:
                self.host.state_put(StateObjectType.NETWORK_CONFIG, (self.id,), config.to_bytes())
            except Exception as e:  # noqa: BLE001 - persisting is best effort, as in the real core
                report_unexpected(log, "network: saving a config", e)
        self.host.network_config_changed(self, "up" if first else "update")
        return 2

    # ----------------------------------------------------------- credentials
    def membership(self, address: int) -> Membership:
        m = self.memberships.get(int(address))
        if m is None:
            m = self.memberships[int(address)] = Membership()
        return m

    def gate(self, now: int, peer: Peer) -> bool:
        """Network::gate: may this peer send us frames on this network?"""
        if self.config is None:
            return False
        m = self.memberships.get(int(peer.address))
        if self.config.is_public or (m is not None and m.is_allowed(self.config, peer.identity)):
            return True
        return False

    def add_com(self, com: CertificateOfMembership) -> str:
        """Add a member's COM: "accepted", "rejected" or "need_identity"."""
        if com.network_id != self.id:
            return "rejected"
        result = com.verify(self._controller_identity)
        if result == VerifyResult.NEED_IDENTITY:
            return "need_identity"
        if result != VerifyResult.OK:
            self.host.trace(
                "credential_rejected",
                network=f"{self.id:016x}",
                kind="COM",
                reason="bad signature",
                credential_timestamp=com.timestamp,
                issued_to=int(com.issued_to),
            )
            return "rejected"
        m = self.membership(int(com.issued_to))
        if m.com is not None and m.com.timestamp > com.timestamp:
            return "accepted"  # older than what we have: redundant
        if com.timestamp <= m.com_revocation_threshold:
            return "rejected"
        m.com = com
        return "accepted"

    def add_revocation(self, revocation: Revocation) -> str:
        if revocation.network_id != self.id:
            return "rejected"
        result = revocation.verify(self._controller_identity)
        if result == VerifyResult.NEED_IDENTITY:
            return "need_identity"
        if result != VerifyResult.OK:
            return "rejected"
        m = self.membership(int(revocation.target))
        kind = revocation.credential_type
        if kind == CredentialType.COM:
            if revocation.threshold > m.com_revocation_threshold:
                m.com_revocation_threshold = revocation.threshold
                self.host.trace(
                    "member_revoked", network=f"{self.id:016x}", member=str(Address(int(revocation.target)))
                )
            return "accepted"
        if kind in (CredentialType.CAPABILITY, CredentialType.TAG, CredentialType.COO):
            key = (int(kind) << 32) | revocation.credential_id
            if m.revocations.get(key, -(2**63)) < revocation.threshold:
                m.revocations[key] = revocation.threshold
                # As the real core does, this also raises the COM revocation threshold.
                m.com_revocation_threshold = revocation.threshold
            return "accepted"
        return "rejected"

    # ------------------------------------------------------------- multicast
    def multicast_groups(self) -> set[MulticastGroup]:
        """Groups this node wants: its subscriptions, address-resolution groups for
        its assigned IPs, and broadcast when the network enables it."""
        groups = set(self.subscriptions)
        if self.config is not None:
            for sip in self.config.static_ips:
                groups.add(MulticastGroup.for_address_resolution(sip.ip))
            if self.config.enable_broadcast:
                groups.add(MulticastGroup(BROADCAST_MAC, 0))
        return groups

    # ----------------------------------------------------------------- rules
    def filter_frame(
        self,
        source_address: int,
        dest_address: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        vlan_id: int,
        data: bytes,
    ) -> Verdict:
        """The rule-evaluation point for every frame on this network, in and out."""
        config = self.config
        if config is None:
            return Verdict(False, -1, "no configuration")
        rules = config.rules
        if len(rules) == 1 and rules[0] == _ACCEPT_ALL:
            return _ACCEPTED  # the default table: no need to look inside the frame
        return evaluate(
            rules, frame_facts(source_address, dest_address, source_mac, dest_mac, ethertype, vlan_id, data)
        )

    # ------------------------------------------------------------ reporting
    def assigned_addresses(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        if self.config is None:
            return []
        out: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
        for sip in self.config.static_ips:
            try:
                out.append(ipaddress.ip_interface(f"{sip.ip}/{sip.port}"))
            except ValueError:
                continue
        return out

    def info(self) -> dict[str, object]:
        """This network in zerotier-one's /network JSON shape."""
        c = self.config
        nwid = f"{self.id:016x}"
        mac = ":".join(f"{b:02x}" for b in self.mac.to_bytes())
        routes = []
        if c is not None:
            for r in c.routes:
                routes.append(
                    {
                        "target": f"{r.target.ip}/{r.target.port}" if r.target is not None else None,
                        "via": str(r.via.ip) if r.via is not None else None,
                        "flags": r.flags,
                        "metric": r.metric,
                    }
                )
        return {
            "id": nwid,
            "nwid": nwid,
            "mac": mac,
            "name": c.name if c is not None else "",
            "status": self.status.name,
            "type": ("PUBLIC" if c.is_public else "PRIVATE") if c is not None else "PRIVATE",
            "mtu": c.mtu if c is not None else DEFAULT_MTU,
            "dhcp": False,
            "bridge": bool(c is not None and c.is_active_bridge(int(self.host.identity.address))),
            "broadcastEnabled": bool(c is not None and c.enable_broadcast),
            "portError": 0,
            "netconfRevision": c.revision if c is not None else 0,
            "assignedAddresses": [str(a) for a in self.assigned_addresses()],
            "routes": routes,
            "portDeviceName": f"ztcore-{nwid}",
            "multicastSubscriptions": [
                {"mac": str(g.mac), "adi": g.adi} for g in sorted(self.multicast_groups(), key=str)
            ],
            "dns": {
                "domain": c.dns.domain if c is not None else "",
                "servers": [str(s.ip) for s in c.dns.servers] if c is not None else [],
            },
            **self.settings,
        }
