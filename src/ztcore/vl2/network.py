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
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ztcore.api import StateObjectType
from ztcore.errors import InvalidFormatError, ZTError, report_unexpected
from ztcore.identity import Address, Identity
from ztcore.vl2.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    CredentialType,
    Revocation,
    Tag,
    VerifyResult,
)
from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.mac import BROADCAST_MAC, MAC, address_mask
from ztcore.vl2.membership import MULTICAST_ANNOUNCE_PERIOD, AddCredentialResult, Membership
from ztcore.vl2.multicast_group import MulticastGroup
from ztcore.vl2.netconf import DEFAULT_MTU, NetworkConfig
from ztcore.vl2.netconf_chunks import NetworkConfigAssembler, NetworkConfigChunkError
from ztcore.vl2.netconf_request import build_request_metadata
from ztcore.vl2.networkid import controller_for, rfc4193_ip, sixplane_ip
from ztcore.vl2.rules.cache import VerdictCache, rule_visible_key
from ztcore.vl2.rules.evaluate import (
    CompiledRules,
    DecidingRule,
    Evaluation,
    FilterResult,
    Frame,
    Ownership,
    RuleSetOutcome,
    compile_rules,
    evaluate,
)

if TYPE_CHECKING:
    from ztcore.vl1.peer import Peer

log = logging.getLogger(__name__)

NETWORK_AUTOCONF_DELAY = 60_000  # ZT_NETWORK_AUTOCONF_DELAY
PEER_CREDENTIALS_REQUEST_RATE_LIMIT = 1_000
PEER_ACTIVITY_TIMEOUT = 500_000
_NO_CONFIG = Evaluation(
    FilterResult.NO_MATCH, False, None, RuleSetOutcome(FilterResult.NO_MATCH, -1, b""), None, None, (), None
)
_ACCEPTED_BY_0 = RuleSetOutcome(FilterResult.ACCEPT, 0, b"")
_ACCEPT_ALL_IN = Evaluation(FilterResult.ACCEPT, True, DecidingRule(0), _ACCEPTED_BY_0, None, None, (), None)
_ACCEPT_ALL_OUT = Evaluation(
    FilterResult.ACCEPT, False, DecidingRule(0), _ACCEPTED_BY_0, None, None, (), None
)
# Compiled base rules, our tags, our capabilities, our ownership, NDP-emulated prefixes.
_RulesState = tuple[
    CompiledRules, dict[int, int], list[tuple[int, CompiledRules]], Ownership, tuple[tuple[bytes, int], ...]
]


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

    def trace(self, kind: str, /, **fields: object) -> None: ...


class Network:
    def __init__(self, host: NetworkHost, network_id: int, now: int, saved: bytes | None = None) -> None:
        self.host = host
        self.id = network_id
        self.controller = controller_for(network_id)
        self.mac = MAC.from_address(int(host.identity.address), network_id)
        # A member's MAC is (first octet << 40) | (address ^ mask): the frame path maps
        # addresses and MACs with these two ints instead of building MAC objects.
        self.mac_first_octet = MAC.first_octet_for_network(network_id)
        self.mac_mask = address_mask(network_id)
        self.config: NetworkConfig | None = None
        self.failure: NetworkStatus | None = None
        self.last_config_update = 0
        self.last_config_request = -NETWORK_AUTOCONF_DELAY
        self.last_announced_upstream = -MULTICAST_ANNOUNCE_PERIOD
        self.memberships: dict[int, Membership] = {}
        self._rules_cache: tuple[NetworkConfig, _RulesState] | None = None
        self._verdicts = VerdictCache()
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

    def add_com(self, com: CertificateOfMembership) -> AddCredentialResult:
        """Network::addCredential(COM): filed under the member it was issued to."""
        if com.network_id != self.id:
            return AddCredentialResult.REJECTED
        result = self.membership(int(com.issued_to)).add_com(com, self._controller_identity)
        if result == AddCredentialResult.REJECTED:
            self.host.trace(
                "credential_rejected",
                network=f"{self.id:016x}",
                credential="COM",
                reason="rejected",
                credential_timestamp=com.timestamp,
                issued_to=int(com.issued_to),
            )
        return result

    def add_credential(self, cred: Tag | Capability | CertificateOfOwnership) -> AddCredentialResult:
        """A member's tag, capability or certificate of ownership from NETWORK_CREDENTIALS."""
        if cred.network_id != self.id:
            return AddCredentialResult.REJECTED
        m = self.membership(int(cred.issued_to))
        if isinstance(cred, Tag):
            result = m.add_tag(cred, self._controller_identity)
        elif isinstance(cred, Capability):
            result = m.add_capability(cred, self._controller_identity)
        else:
            result = m.add_coo(cred, self._controller_identity)
        if result == AddCredentialResult.REJECTED:
            name = "TAG" if isinstance(cred, Tag) else "CAPABILITY" if isinstance(cred, Capability) else "COO"
            self.host.trace(
                "credential_rejected",
                network=f"{self.id:016x}",
                credential=name,
                credential_id=cred.id,
                credential_timestamp=cred.timestamp,
                issued_to=int(cred.issued_to),
                reason="rejected",
            )
        return result

    def add_revocation(self, revocation: Revocation) -> AddCredentialResult:
        if revocation.network_id != self.id:
            return AddCredentialResult.REJECTED
        result = revocation.verify(self._controller_identity)
        if result == VerifyResult.NEED_IDENTITY:
            return AddCredentialResult.DEFERRED_FOR_WHOIS
        if result != VerifyResult.OK:
            return AddCredentialResult.REJECTED
        m = self.membership(int(revocation.target))
        added = m.add_revocation(revocation)
        if added == AddCredentialResult.ACCEPTED_NEW and revocation.credential_type == CredentialType.COM:
            self.host.trace(
                "member_revoked", network=f"{self.id:016x}", member=str(Address(int(revocation.target)))
            )
        return added

    def clean(self, is_known_peer: Callable[[int], bool]) -> None:
        """Housekeeping (the core's Network::doPeriodicTasks): forget members that are
        no longer peers, and credentials that fell out of the validity window."""
        if self.config is None:
            return
        for address in list(self.memberships):
            if not is_known_peer(address):
                del self.memberships[address]
            else:
                self.memberships[address].clean(self.config)

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
    def _rules_state(self) -> _RulesState:
        """Our rules, tags, capabilities and ownership compiled once per config."""
        config = self.config
        assert config is not None
        st = self._rules_cache
        if st is not None and st[0] is config:
            return st[1]
        view = (
            compile_rules(config.rules),
            {t.id: t.value for t in config.tags},
            [(c.id, compile_rules(c.rules)) for c in config.capabilities],
            Ownership.from_coos(config.certificates_of_ownership),
            self.ndp_prefixes(),
        )
        self._rules_cache = (config, view)
        self._verdicts.clear()
        return view

    def ndp_prefixes(self) -> tuple[tuple[bytes, int], ...]:
        """IPv6 prefixes a member owns by NDP emulation (Membership::_isV6NDPEmulated):
        the /40 of our 6PLANE and the /88 of our RFC4193 address, when assigned."""
        config = self.config
        if config is None or not config.ndp_emulation:
            return ()
        me = int(self.host.identity.address)
        mine = {sip.ip for sip in config.static_ips}
        out: list[tuple[bytes, int]] = []
        six = sixplane_ip(self.id, me)
        if six in mine:
            out.append((six.packed, 5))
        rfc = rfc4193_ip(self.id, me)
        if rfc in mine:
            out.append((rfc.packed, 11))
        return tuple(out)

    def accepts_all(self) -> bool:
        """True if the rules are the default accept-all table (no tags, capabilities or
        copies to consider): the frame paths then skip the evaluation altogether."""
        config = self.config
        if config is None:
            return False
        st = self._rules_cache
        rules = st[1][0] if st is not None and st[0] is config else self._rules_state()[0]
        return rules.accept_all

    def filter_frame(
        self,
        *,
        inbound: bool,
        peer: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        vlan_id: int,
        data: bytes,
        no_tee: bool = False,
    ) -> Evaluation:
        """The rule-evaluation point for every frame on this network.

        Inbound (filterIncomingPacket) ``peer`` is the sender and this node the
        destination; outbound (filterOutgoingPacket) ``peer`` is the recipient
        (0 for a multicast before it is split per recipient).
        """
        config = self.config
        if config is None:
            return _NO_CONFIG
        rules, my_tags, my_caps, my_ownership, ndp = self._rules_state()
        if rules.accept_all:
            return _ACCEPT_ALL_IN if inbound else _ACCEPT_ALL_OUT  # the default table: no need to look
        me = int(self.host.identity.address)
        m = self.memberships.get(peer) if peer else None
        if inbound and m is None:
            m = self.membership(peer)
        if m is not None:
            remote_tags, their_caps, their_ownership = m.rules_view(config, ndp)
        else:
            remote_tags, their_caps, their_ownership = None, [], my_ownership
        caps = their_caps if inbound else my_caps
        # Frames of one flow get the same answer: remember it (not for MATCH_RANDOM).
        key = None
        if not rules.random and not any(c.random for _, c in caps):
            need = max([rules.payload_need, *(c.payload_need for _, c in caps)])
            key = (
                inbound,
                peer,
                no_tee,
                -1 if m is None else m.generation,
                source_mac,
                dest_mac,
                ethertype,
                vlan_id,
                len(data),
                rule_visible_key(ethertype, data, need),
            )
            ev = self._verdicts.get(key)
            if ev is not None:
                return ev  # type: ignore[no-any-return]
        ev = evaluate(
            rules,
            Frame(peer, me, source_mac, dest_mac, ethertype, data, vlan_id)
            if inbound
            else Frame(me, peer, source_mac, dest_mac, ethertype, data, vlan_id),
            inbound=inbound,
            me=me,
            capabilities=caps,
            local_tags=my_tags,
            remote_tags=remote_tags,
            ownership=their_ownership if inbound else my_ownership,
            unsupported_match=config.rules_result_of_unsupported_match,
            no_tee=no_tee,
        )
        if key is not None:
            self._verdicts.put(key, ev)
        return ev

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
