"""The live embedded network controller: answers NETWORK_CONFIG_REQUESTs from the store.

Owns what zerotier-one's EmbeddedNetworkController does at run time, on top of
the records in `ztcore.controller.store`:

* `EmbeddedController.request` decides whether a member may join (already
  authorized, public network, or a valid ``token:`` from the request metadata),
  learns the member's identity on its first request (and refuses a different
  identity under the same address afterwards), records its version, assigns
  addresses from the pools and answers with a `NetworkConfig` carrying a
  controller-signed COM, capabilities, tags and certificate of ownership (what
  the records say in it is `ztcore.controller.memberconfig`'s);
* the listener hooks (`on_member_changed` / `on_network_changed`, as
  ``StoreControllerBackend.add_listener`` calls them) push fresh configs to
  members that asked recently, and on deauthorization send a signed
  `Revocation` of the member's COM to the network's members;
* `authorized_recently` tells the node which peers may use MULTICAST_GATHER/LIKE
  on our networks (the core's ``localControllerHasAuthorized``).

Per-member request state (time, packet id, metadata, identity, physical
address) lives in memory only, as in zerotier-one. All work runs synchronously
in the caller's thread under one lock; the sender is called from there too.

Repeat requests: members re-request their config every minute, and unless a
record changed the answer differs only in its time stamp and the credentials
signed with it (COM, capabilities, tags, COO). So the last answer to each
authorized member is kept without its credentials (`IssuedConfig`), tagged with the
store's `generation()`, and a request that finds the same generation, identity,
version and rules-engine support re-issues only the credentials. Any network or
member write (JSON API, CLI, another process on the same controller.db,
deauthorization) changes the generation, and the next request is answered from
the records again.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ztcore.controller import ipam
from ztcore.controller.memberconfig import (
    IssuedConfig,
    add_addresses,
    build_config,
    issue,
    json_bool,
    json_int,
    split_config,
)
from ztcore.controller.model import (
    clean_member,
    format_address,
    format_nwid,
    init_member,
    note_config_request,
    now_ms,
)
from ztcore.controller.store import ControllerStore
from ztcore.controller.traces import TraceStore
from ztcore.errors import InvalidFormatError, report_unexpected
from ztcore.identity import Address, Identity
from ztcore.tracing import RemoteTrace
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.controller_api import ControllerError, ControllerSender
from ztcore.vl2.credentials import (
    REVOCATION_FLAG_FAST_PROPAGATE,
    CredentialType,
    Revocation,
)
from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.netconf import (
    NETWORKCONFIG_METADATA_DICT_CAPACITY,
    NetworkConfig,
)
from ztcore.vl2.netconf_request import (
    AUTHINFO_KEY_AUTHENTICATION_URL,
    AUTHINFO_KEY_VERSION,
    REQUEST_KEY_AUTH,
    REQUEST_KEY_NODE_MAJOR_VERSION,
    REQUEST_KEY_NODE_MINOR_VERSION,
    REQUEST_KEY_NODE_REVISION,
    REQUEST_KEY_PROTOCOL_VERSION,
    REQUEST_KEY_RULES_ENGINE_REV,
)

__all__ = [
    "AUTHORIZATION_WINDOW",
    "MIN_REQUEST_PERIOD",
    "ONLINE_WINDOW",
    "SELF_REQUEST_PACKET_ID",
    "EmbeddedController",
    "MemberStatus",
]

log = logging.getLogger(__name__)

# ZT_NETWORK_AUTOCONF_DELAY: members re-request their config this often (ms).
NETWORK_AUTOCONF_DELAY = 60000
# A member counts as online (gets pushes and revocations) this long after its last request
# or, when the hosting node can tell, after any packet from it arrived. (zerotier-one counts
# requests only; a member resets its request timer when a push arrives, so there a burst of
# changes can leave it "offline" and waiting up to a minute for the next one.)
ONLINE_WINDOW = NETWORK_AUTOCONF_DELAY * 2
# Node::localControllerHasAuthorized: a config sent this recently vouches for the member.
AUTHORIZATION_WINDOW = NETWORK_AUTOCONF_DELAY * 3
# ZT_NETCONF_MIN_REQUEST_PERIOD: genuine requests closer together than this are dropped.
MIN_REQUEST_PERIOD = 1000
# The packet id the core uses when a node asks its own embedded controller.
SELF_REQUEST_PACKET_ID = 0xFFFFFFFFFFFFFFFF

_U32 = 0xFFFFFFFF
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass
class MemberStatus:
    """What the controller remembers (in memory) about one member's requests."""

    last_request_time: int = 0
    request_packet_id: int = 0
    from_address: InetAddress | None = None
    identity: Identity | None = None
    # Set only by authorized, genuine requests: what a push re-plays.
    metadata: Dictionary | None = None
    last_config_time: int | None = None

    def online(self, now: int, last_heard: int | None = None) -> bool:
        last = self.last_request_time if last_heard is None else max(self.last_request_time, last_heard)
        return now - last < ONLINE_WINDOW


class _Deny(Exception):
    """Internal: answer the current request with an error and stop."""

    def __init__(self, error: ControllerError, data: bytes = b"", *, member_refused: bool = False) -> None:
        super().__init__(error.name)
        self.error = error
        self.data = data
        # True when the member itself is refused (not an impostor under its address).
        self.member_refused = member_refused


class EmbeddedController:
    """A `NetworkController` over a `ControllerStore`, and a listener for its changes."""

    def __init__(self, store: ControllerStore, *, clock: Callable[[], int] | None = None) -> None:
        self.store = store
        self._clock = clock or now_ms
        self._identity: Identity | None = None
        self._sender: ControllerSender | None = None
        self._lock = threading.RLock()
        self._status: dict[tuple[int, int], MemberStatus] = {}
        # The last answer to each authorized member, for its repeat requests (module doc).
        self._issued: dict[tuple[int, int], IssuedConfig] = {}
        # Per network, the shared part of the last config made from the records.
        self._shared: dict[int, NetworkConfig] = {}
        self.stats: Counter[str] = Counter()
        self._traces: TraceStore | None = None

    # ------------------------------------------------------------------------------------
    # NetworkController

    @property
    def address(self) -> Address | None:
        return self._identity.address if self._identity is not None else None

    def init(self, signing_identity: Identity, sender: ControllerSender) -> None:
        """Set the identity configs are signed with (the node's own) and the way out."""
        if not signing_identity.has_private:
            raise ValueError("the controller's signing identity needs its private key")
        with self._lock:
            self._identity = signing_identity
            self._sender = sender

    def request(
        self,
        now: int,
        network_id: int,
        from_address: InetAddress | None,
        request_packet_id: int,
        identity: Identity,
        metadata: Dictionary,
    ) -> None:
        """Handle one config request; the answer (config or error) goes out through the sender.

        `request_packet_id` 0 marks a push the controller generates itself; such
        requests are not rate limited and do not count as the member being online.
        """
        if self._identity is None or self._sender is None:
            self.stats["ignored"] += 1
            return
        if (network_id >> 24) != int(self._identity.address):
            # Not one of ours: the node should never hand us this (the core ignores it too).
            self.stats["ignored"] += 1
            return
        if metadata is None:
            metadata = Dictionary(NETWORKCONFIG_METADATA_DICT_CAPACITY)
        address = int(identity.address)
        with self._lock:
            if request_packet_id:
                st = self._status.setdefault((network_id, address), MemberStatus())
                if st.last_request_time and now - st.last_request_time <= MIN_REQUEST_PERIOD:
                    self.stats["rate_limited"] += 1
                    return
                st.last_request_time = now
                st.request_packet_id = request_packet_id
                st.from_address = from_address
            self.stats["requests"] += 1
            if not request_packet_id:
                self.stats["pushes"] += 1
            try:
                config = self._repeat(now, network_id, request_packet_id, identity, metadata)
                if config is None:
                    config = self._build(now, network_id, request_packet_id, identity, metadata)
            except _Deny as d:
                config = d
            except Exception as e:
                report_unexpected(log, "controller: answering a config request", e)
                self._send_error(
                    network_id, request_packet_id, identity.address, ControllerError.INTERNAL_SERVER_ERROR
                )
                return
            if isinstance(config, _Deny):
                self._issued.pop((network_id, address), None)
                if config.member_refused and (network_id, address) in self._status:
                    # However it lost access, it no longer vouches for MULTICAST_GATHER/LIKE.
                    self._status[(network_id, address)].last_config_time = None
                self._send_error(network_id, request_packet_id, identity.address, config.error, config.data)
                return
            st = self._status.setdefault((network_id, address), MemberStatus())
            st.last_config_time = now
            self.stats["configs_sent"] += 1
            self._sender.nc_send_config(network_id, request_packet_id, identity.address, config)

    def handle_remote_trace(self, now: int, trace: RemoteTrace) -> None:
        """EmbeddedNetworkController::handleRemoteTrace: keep a member's trace (the node
        hands us every VERB_REMOTE_TRACE it receives) in the store's trace table."""
        if self._identity is None:
            self.stats["traces_ignored"] += 1
            return
        with self._lock:
            if self._traces is None:
                self._traces = TraceStore(self.store)
            rec = self._traces.add(int(self._identity.address), trace, self._clock())
        self.stats["traces_stored" if rec is not None else "traces_refused"] += 1

    @property
    def traces(self) -> TraceStore:
        """The collected remote traces."""
        with self._lock:
            if self._traces is None:
                self._traces = TraceStore(self.store)
            return self._traces

    def authorized_recently(self, now: int, network_id: int, address: int) -> bool:
        """True if we sent this member a config in the last three autoconf periods
        (and have not deauthorized it since)."""
        with self._lock:
            st = self._status.get((network_id, int(address)))
            t = st.last_config_time if st is not None else None
        return t is not None and now - t < AUTHORIZATION_WINDOW

    def member_status(self, network_id: int, address: int) -> MemberStatus | None:
        """A copy of what we remember about the member's requests (None if nothing)."""
        with self._lock:
            st = self._status.get((network_id, int(address)))
            return replace(st) if st is not None else None

    # ------------------------------------------------------------------------------------
    # ControllerListener

    def on_network_changed(self, nwid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Push the new config to every online member; forget members of a deleted network."""
        network_id = int(nwid, 16)
        now = self._clock()
        with self._lock:
            if new is None:
                for key in [k for k in self._status if k[0] == network_id]:
                    del self._status[key]
                for key in [k for k in self._issued if k[0] == network_id]:
                    del self._issued[key]
                self._shared.pop(network_id, None)
                return
            for (n, _a), st in list(self._status.items()):
                if n == network_id:
                    self._push(now, network_id, st)

    def on_member_changed(
        self, nwid: str, address: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        """Push the member's new config if it is online; revoke its COM if it lost authorization."""
        network_id = int(nwid, 16)
        addr = int(address, 16)
        now = self._clock()
        was_auth = old is not None and json_bool(old.get("authorized"), False)
        is_auth = new is not None and json_bool(new.get("authorized"), False)
        with self._lock:
            # The store's generation moved too; dropping the answer here also frees it.
            self._issued.pop((network_id, addr), None)
            if was_auth and not is_auth:
                self._deauthorize(now, network_id, addr)
            st = self._status.get((network_id, addr))
            if new is not None and st is not None:
                self._push(now, network_id, st)
            if new is None:
                self._status.pop((network_id, addr), None)

    # ------------------------------------------------------------------------------------
    # Internals

    def _send_error(
        self, network_id: int, request_packet_id: int, to: Address, error: ControllerError, data: bytes = b""
    ) -> None:
        self.stats[
            {
                ControllerError.OBJECT_NOT_FOUND: "not_found",
                ControllerError.ACCESS_DENIED: "access_denied",
                ControllerError.AUTHENTICATION_REQUIRED: "authentication_required",
            }.get(error, "internal_errors")
        ] += 1
        assert self._sender is not None
        self._sender.nc_send_error(network_id, request_packet_id, to, error, data)

    def _push(self, now: int, network_id: int, st: MemberStatus) -> None:
        # As zerotier-one: only members that are online and made an authorized request get pushes.
        if st.identity is None or st.metadata is None or not self._online(now, st):
            return
        self.request(now, network_id, None, 0, st.identity, st.metadata)

    def _online(self, now: int, st: MemberStatus) -> bool:
        """Online: asked for its config, or (if the hosting node tells) was heard from, recently."""
        last_heard = None
        heard = getattr(self._sender, "peer_last_heard", None)
        if heard is not None and st.identity is not None:
            last_heard = heard(int(st.identity.address))
        return st.online(now, last_heard)

    def _deauthorize(self, now: int, network_id: int, address: int) -> None:
        """Revoke the member's COMs issued before now, telling every member that may hold it."""
        if self._identity is None or self._sender is None:
            return
        st = self._status.get((network_id, address))
        threshold = now
        if st is not None:
            # Peers drop COMs stamped at or before the threshold: make sure it covers the
            # last one we issued even if the hook clock lags the node's.
            threshold = max(now, st.last_config_time or 0)
            st.last_config_time = None
        rev = Revocation(
            id=secrets.randbits(32),
            network_id=network_id,
            credential_id=0,
            threshold=threshold,
            flags=REVOCATION_FLAG_FAST_PROPAGATE,
            target=Address(address),
            credential_type=CredentialType.COM,
        )
        rev.sign(self._identity)
        # zerotier-one tells the members that are online; we also tell every authorized
        # member on record, so a controller restart (which forgets who is online) does
        # not leave peers trusting the old COM until it expires.
        recipients = {a for (n, a), s in self._status.items() if n == network_id and self._online(now, s)}
        try:
            for m in self.store.list_members(format_nwid(network_id)):
                if json_bool(m.get("authorized"), False) and isinstance(m.get("id"), str):
                    recipients.add(int(m["id"], 16))
        except Exception as e:
            report_unexpected(log, "controller: listing members for a revocation", e)
        for to in sorted(recipients):
            self.stats["revocations_sent"] += 1
            self._sender.nc_send_revocation(Address(to), rev)

    @staticmethod
    def _version(metadata: Dictionary) -> tuple[int, int, int, int]:
        return (
            metadata.get_uint(REQUEST_KEY_NODE_MAJOR_VERSION, 0),
            metadata.get_uint(REQUEST_KEY_NODE_MINOR_VERSION, 0),
            metadata.get_uint(REQUEST_KEY_NODE_REVISION, 0),
            metadata.get_uint(REQUEST_KEY_PROTOCOL_VERSION, 0),
        )

    def _repeat(
        self, now: int, network_id: int, request_packet_id: int, identity: Identity, metadata: Dictionary
    ) -> NetworkConfig | None:
        """The answer to a repeat request, if nothing it depends on changed; else None.

        Valid while the store's generation is the one the answer was made under (no
        network or member written since, by anyone) or, after writes, while the
        store's fingerprint of the member's inputs (network and member records,
        active bridges) is unchanged and it does not wait for an address from an
        exhausted pool (which depends on every other member); for the same identity, and for a
        request that records the same version (a genuine request stores it in the
        member record) and has the same rules-engine support.
        """
        assert self._identity is not None
        issued = self._issued.get((network_id, int(identity.address)))
        if issued is None:
            return None
        if issued.identity != identity:
            return None
        generation = self.store.generation()
        if issued.generation != generation:
            # Something was written since; if not this member's inputs, the answer stands.
            # (The generation is read first: a write in between only means another check.)
            if issued.fingerprint is None or issued.fingerprint != self.store.fingerprint(
                format_nwid(network_id), format_address(int(identity.address))
            ):
                return None
            issued.generation = generation
            self.stats["repeat_rechecked"] += 1
        md = metadata.to_bytes()
        if md != issued.metadata:
            # Members send the same metadata each time: parse it only when it differs.
            if issued.rules_engine != (metadata.get_uint(REQUEST_KEY_RULES_ENGINE_REV, 0) > 0) or (
                request_packet_id and issued.version != self._version(metadata)
            ):
                return None
            if request_packet_id:
                issued.metadata = md
        if request_packet_id:
            st = self._status.setdefault((network_id, int(identity.address)), MemberStatus())
            st.identity = identity
            st.metadata = metadata
        self.stats["repeat_configs"] += 1
        return issue(now, network_id, issued, identity, self._identity)

    def _build(
        self, now: int, network_id: int, request_packet_id: int, identity: Identity, metadata: Dictionary
    ) -> NetworkConfig | _Deny:
        """Authorize the request, update the member record, and make its config.

        A refusal that changes nothing is raised as `_Deny` (rolling the transaction
        back); one that must keep the member record (learned identity) is returned.
        """
        assert self._identity is not None
        nwids = format_nwid(network_id)
        address = int(identity.address)
        addrs = format_address(address)
        store = self.store
        with store.transaction():
            network = store.get_network(nwids)
            if network is None:
                raise _Deny(ControllerError.OBJECT_NOT_FOUND)
            old = store.get_member(nwids, addrs)
            new_member = old is None
            member = init_member(old, now)

            known = member.get("identity")
            if isinstance(known, str) and known:
                try:
                    same = Identity.from_string(known) == identity
                except InvalidFormatError:
                    same = False
                if not same:
                    # Someone else under a known member's address: never let them in.
                    self.stats["identity_collisions"] += 1
                    raise _Deny(ControllerError.ACCESS_DENIED)
            else:
                member["identity"] = identity.to_string(False)
            member["id"] = addrs
            member["address"] = addrs
            member["nwid"] = nwids

            authorized = json_bool(member.get("authorized"), False)
            auto: tuple[str, str | None] | None = None
            if not authorized:
                if not json_bool(network.get("private"), True):
                    auto = ("public", None)
                else:
                    token = self._presented_token(metadata)
                    if token is not None and self._token_valid(network, token, now):
                        auto = ("token", token)
            if auto is not None:
                authorized = True
                member["authorized"] = True
                member["lastAuthorizedTime"] = now
                member["lastAuthorizedCredentialType"], member["lastAuthorizedCredential"] = auto
                self.stats["auto_authorized"] += 1

            sso = json_bool(network.get("ssoEnabled"), False) and not json_bool(
                member.get("ssoExempt"), False
            )
            if sso and json_int(member.get("authenticationExpiryTime"), 0) <= now:
                # We have no SSO provider: the member must be (re)authenticated out of band.
                info = Dictionary(4096)
                info.add(AUTHINFO_KEY_VERSION, 0)
                info.add(AUTHINFO_KEY_AUTHENTICATION_URL, "")
                store.put_member(clean_member(member))
                return _Deny(ControllerError.AUTHENTICATION_REQUIRED, info.to_bytes(), member_refused=True)

            if not authorized:
                store.put_member(clean_member(member))
                if request_packet_id:
                    # Unlike zerotier-one, remember who asked: authorizing this member
                    # then pushes its config at once instead of at its next retry.
                    st = self._status.setdefault((network_id, address), MemberStatus())
                    st.identity = identity
                    st.metadata = metadata
                return _Deny(ControllerError.ACCESS_DENIED, member_refused=True)

            if request_packet_id:
                member = note_config_request(member, identity.to_string(False), self._version(metadata))
                st = self._status.setdefault((network_id, address), MemberStatus())
                st.identity = identity
                st.metadata = metadata

            bridges = [int(a, 16) for a in store.active_bridges(nwids)]
            nc, ctmd, caps, tags = build_config(
                network_id, network, member, identity, metadata, new_member, sso, bridges
            )
            picking: list[bool] = []

            def taken() -> list[str]:
                picking.append(True)
                return store.allocated_ips(nwids, exclude_address=addrs)

            member["ipAssignments"] = ipam.auto_assign(network, member, address, taken)
            if picking:
                # Would the next request still have to pick (the pool had nothing left)?
                # Then its answer depends on every other member's addresses.
                picking.clear()
                ipam.auto_assign(network, member, address, lambda: picking.append(True) or [])
            add_addresses(network_id, network, member, nc)
            store.put_member(clean_member(member))
            # Inside the transaction, after our own write: nobody else can write meanwhile.
            generation = store.generation()
            fingerprint = store.fingerprint(nwids, addrs) if not picking else None
        issued = split_config(self._shared, network_id, nc, ctmd, caps, tags)
        if not sso:  # an SSO member's config depends on its authentication expiry time
            issued.generation = generation
            issued.fingerprint = fingerprint
            issued.identity = identity
            # What the stored record says: a push (no version recorded) never matches a request.
            issued.version = (
                json_int(member.get("vMajor"), -1),
                json_int(member.get("vMinor"), -1),
                json_int(member.get("vRev"), -1),
                json_int(member.get("vProto"), -1),
            )
            issued.rules_engine = metadata.get_uint(REQUEST_KEY_RULES_ENGINE_REV, 0) > 0
            if request_packet_id:  # then its version is the one recorded
                issued.metadata = metadata.to_bytes()
            self._issued[(network_id, address)] = issued
        else:
            self._issued.pop((network_id, address), None)
        return issue(now, network_id, issued, identity, self._identity)

    @staticmethod
    def _presented_token(metadata: Dictionary) -> str | None:
        auth = metadata.get_str(REQUEST_KEY_AUTH, None, 511)
        if auth and len(auth) > 6 and auth.startswith("token:"):
            return auth[6:]
        return None

    @staticmethod
    def _token_valid(network: Mapping[str, Any], token: str, now: int) -> bool:
        tokens = network.get("authTokens")
        if not isinstance(tokens, Mapping):
            return False
        expires = tokens.get(token)
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            return False
        return expires == 0 or expires > now
