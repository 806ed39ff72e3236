"""Tests for the live embedded controller (ztcore.controller.live).

Configs are checked the way a member sees them: chunked and signed with the
controller identity, reassembled and verified, then decoded. Expected values
come from the network/member JSON we set and from ZeroTier's documented
formulas (RFC4193 / 6PLANE layouts, credential window defaults), not from
the code under test.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from ztcore.controller import model
from ztcore.controller.live import EmbeddedController
from ztcore.controller.store import ControllerStore
from ztcore.identity import Address, Identity
from ztcore.runtime.http_api import StoreControllerBackend
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.controller_api import ControllerError
from ztcore.vl2.credentials import CredentialType, Revocation, VerifyResult
from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.netconf import (
    FLAG_ENABLE_BROADCAST,
    FLAG_ENABLE_IPV6_NDP_EMULATION,
    NetworkConfig,
    NetworkType,
)
from ztcore.vl2.netconf_chunks import NetworkConfigAssembler, NetworkConfigChunker
from ztcore.vl2.netconf_request import build_request_metadata
from ztcore.vl2.rules import Rule, RuleType

# From ZeroTier's NetworkConfig.hpp / Constants.hpp.
CTMD_DEFAULT = 1000 * 60 * 30
CTMD_MIN = 1000 * 60 * 5
AUTOCONF_DELAY = 60000
SELF_PACKET_ID = 0xFFFFFFFFFFFFFFFF
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def ids() -> dict[str, Identity]:
    return {name: Identity.generate() for name in ("ctrl", "a", "b", "other")}


@dataclass
class FakeSender:
    configs: list[tuple[int, int, Address, NetworkConfig]] = field(default_factory=list)
    revocations: list[tuple[Address, Revocation]] = field(default_factory=list)
    errors: list[tuple[int, int, Address, ControllerError, bytes]] = field(default_factory=list)

    def nc_send_config(
        self, network_id: int, request_packet_id: int, destination: Address, config: Any
    ) -> None:
        self.configs.append((network_id, request_packet_id, destination, config))

    def nc_send_revocation(self, destination: Address, revocation: Revocation) -> None:
        self.revocations.append((destination, revocation))

    def nc_send_error(
        self,
        network_id: int,
        request_packet_id: int,
        destination: Address,
        error: ControllerError,
        error_data: bytes = b"",
    ) -> None:
        self.errors.append((network_id, request_packet_id, destination, error, error_data))


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@dataclass
class Env:
    ids: dict[str, Identity]
    store: ControllerStore
    backend: StoreControllerBackend
    ctl: EmbeddedController
    sender: FakeSender
    clock: Clock
    nwid: int
    pid: int = 1000

    @property
    def nwids(self) -> str:
        return f"{self.nwid:016x}"

    def req(
        self, who: str, now: int, metadata: Dictionary | None = None, *, identity: Identity | None = None
    ) -> None:
        self.pid += 1
        ident = identity or self.ids[who]
        md = metadata if metadata is not None else build_request_metadata()
        self.ctl.request(now, self.nwid, InetAddress.parse("192.0.2.1/9993"), self.pid, ident.public(), md)

    def authorize(self, who: str, **extra: Any) -> dict[str, Any]:
        return self.backend.post_member(
            self.nwids, f"{int(self.ids[who].address):010x}", {"authorized": True, **extra}
        )

    def member(self, who: str) -> dict[str, Any] | None:
        return self.store.get_member(self.nwids, f"{int(self.ids[who].address):010x}")

    def decode(self, config: NetworkConfig) -> NetworkConfig:
        """Send it through the signed chunk transport as a member would receive it."""
        chunks = NetworkConfigChunker(self.ids["ctrl"], max_chunk_length=700).chunks(self.nwid, config)
        asm = NetworkConfigAssembler(self.nwid, self.ids["ctrl"].public())
        out = None
        for c in chunks:
            out = asm.add_chunk(c)
        assert out is not None
        return out.config

    def last_config(self, who: str) -> tuple[int, NetworkConfig]:
        nwid, pid, dest, config = self.sender.configs[-1]
        assert nwid == self.nwid and dest == self.ids[who].address
        return pid, self.decode(config)


def _env(
    ids: dict[str, Identity], tmp_path: Any, network: dict[str, Any] | None = None, number: int = 0x000ABC
) -> Env:
    store = ControllerStore(tmp_path)
    clock = Clock(T0)
    ctrl = ids["ctrl"]
    backend = StoreControllerBackend(store, int(ctrl.address), clock=clock)
    ctl = EmbeddedController(store, clock=clock)
    sender = FakeSender()
    ctl.init(ctrl, sender)
    backend.add_listener(ctl)
    nwid = (int(ctrl.address) << 24) | number
    if network is not None:
        backend.post_network(f"{nwid:016x}", network)
    return Env(ids, store, backend, ctl, sender, clock, nwid)


@pytest.fixture
def env(ids: dict[str, Identity], tmp_path: Any) -> Any:
    e = _env(
        ids,
        tmp_path,
        {
            "name": "testnet",
            "private": True,
            "mtu": 2000,
            "multicastLimit": 17,
            "routes": [
                {"target": "10.9.0.0/24", "via": None},
                {"target": "192.168.50.0/24", "via": "10.9.0.1"},
            ],
            "ipAssignmentPools": [{"ipRangeStart": "10.9.0.7", "ipRangeEnd": "10.9.0.7"}],
            "v4AssignMode": {"zt": True},
            "rules": [
                {"type": "MATCH_ETHERTYPE", "etherType": 0x0806, "not": True, "or": False},
                {"type": "ACTION_DROP"},
                {"type": "ACTION_ACCEPT"},
            ],
        },
    )
    yield e
    e.store.close()


def _rfc4193(nwid: int, address: int) -> ipaddress.IPv6Address:
    # fd + network id + 99:93 + member address, /88 (ZeroTier's RFC4193 layout)
    return ipaddress.IPv6Address(b"\xfd" + nwid.to_bytes(8, "big") + b"\x99\x93" + address.to_bytes(5, "big"))


def _sixplane(nwid: int, address: int) -> ipaddress.IPv6Address:
    # fc + (nwid high 32 bits xor low 32 bits) + member address + 0...01, /40
    folded = ((nwid >> 32) ^ nwid) & 0xFFFFFFFF
    raw = b"\xfc" + folded.to_bytes(4, "big") + address.to_bytes(5, "big") + bytes(5) + b"\x01"
    return ipaddress.IPv6Address(raw)


# ------------------------------------------------------------------------------------------


def test_unknown_network_is_not_found(env: Env) -> None:
    env.nwid = (int(env.ids["ctrl"].address) << 24) | 0x123456
    env.req("a", T0)
    assert [e[3] for e in env.sender.errors] == [ControllerError.OBJECT_NOT_FOUND]
    assert env.sender.errors[0][1] == env.pid and env.sender.errors[0][2] == env.ids["a"].address
    assert not env.sender.configs
    assert env.ctl.stats["not_found"] == 1


def test_network_of_another_controller_is_ignored(env: Env) -> None:
    env.nwid = (int(env.ids["other"].address) << 24) | 0x000ABC
    env.req("a", T0)
    assert not env.sender.errors and not env.sender.configs


def test_unauthorized_member_denied_and_recorded(env: Env) -> None:
    env.req("a", T0)
    assert [e[3] for e in env.sender.errors] == [ControllerError.ACCESS_DENIED]
    assert not env.sender.configs
    m = env.member("a")
    assert m is not None and m["authorized"] is False
    assert Identity.from_string(m["identity"]) == env.ids["a"]
    assert not Identity.from_string(m["identity"]).has_private
    assert not env.ctl.authorized_recently(T0, env.nwid, env.ids["a"].address)


def test_authorized_member_gets_full_config(env: Env) -> None:
    env.req("a", T0)
    stored = env.authorize("a")
    assert stored["ipAssignments"] == ["10.9.0.7"]
    # The denied member asked recently, so authorizing it pushes a config at once
    # (request packet id 0), without waiting for its next request.
    assert [c[1] for c in env.sender.configs] == [0]
    env.req("a", T0 + 5000)
    pid, nc = env.last_config("a")
    assert pid == env.pid
    assert nc.network_id == env.nwid and nc.issued_to == env.ids["a"].address
    assert nc.name == "testnet" and nc.type == NetworkType.PRIVATE
    assert nc.mtu == 2000 and nc.multicast_limit == 17
    assert nc.timestamp == T0 + 5000
    assert nc.credential_time_max_delta == CTMD_DEFAULT
    assert nc.revision == env.store.get_network(env.nwids)["revision"]
    assert nc.flags & FLAG_ENABLE_BROADCAST and not nc.flags & FLAG_ENABLE_IPV6_NDP_EMULATION
    assert nc.static_ips == [InetAddress(ipaddress.ip_address("10.9.0.7"), 24)]
    assert [(str(r.target), r.via and str(r.via)) for r in nc.routes] == [
        ("10.9.0.0/24", None),
        ("192.168.50.0/24", "10.9.0.1/0"),
    ]
    assert nc.rules == [
        Rule.match_ethertype(0x0806, not_=True),
        Rule(RuleType.ACTION_DROP),
        Rule(RuleType.ACTION_ACCEPT),
    ]
    # The certificate of ownership covers the static IP and is the controller's.
    assert len(nc.certificates_of_ownership) == 1
    coo = nc.certificates_of_ownership[0]
    assert coo.owns(ipaddress.ip_address("10.9.0.7")) and coo.issued_to == env.ids["a"].address
    assert coo.verify(env.ids["ctrl"].public()) == VerifyResult.OK
    # The member record learned the version from the request metadata.
    m = env.member("a")
    assert (m["vMajor"], m["vMinor"], m["vRev"], m["vProto"]) == (1, 14, 1, 12)
    assert env.ctl.stats["configs_sent"] == 2 and env.ctl.stats["access_denied"] == 1


def test_com_verifies_and_agrees_within_delta(env: Env) -> None:
    env.authorize("a")
    env.authorize("b")
    env.req("a", T0)
    _, nca = env.last_config("a")
    env.req("b", T0 + CTMD_DEFAULT // 2)
    _, ncb = env.last_config("b")
    env.req("b", T0 + CTMD_DEFAULT + 1)
    _, ncb_late = env.last_config("b")
    ctrl = env.ids["ctrl"].public()
    for nc in (nca, ncb, ncb_late):
        assert nc.com is not None and nc.com.verify(ctrl) == VerifyResult.OK
    assert nca.com.network_id == env.nwid and nca.com.issued_to == env.ids["a"].address
    assert nca.com.agrees_with(ncb.com, env.ids["b"].public())
    assert ncb.com.agrees_with(nca.com, env.ids["a"].public())
    assert not nca.com.agrees_with(ncb_late.com, env.ids["b"].public())
    # The identity hash is bound: B's COM does not pass as someone else's.
    assert not nca.com.agrees_with(ncb.com, env.ids["other"].public())
    # A COM signed by anyone but the controller does not verify.
    assert nca.com.verify(env.ids["other"].public()) != VerifyResult.OK


def test_public_network_auto_authorizes(ids: dict[str, Identity], tmp_path: Any) -> None:
    e = _env(ids, tmp_path, {"name": "pub", "private": False})
    e.req("a", T0)
    assert not e.sender.errors
    _, nc = e.last_config("a")
    assert nc.type == NetworkType.PUBLIC and nc.name == "pub"
    assert nc.rules == [Rule(RuleType.ACTION_ACCEPT)]  # the default rule set
    m = e.member("a")
    assert m["authorized"] is True and m["lastAuthorizedCredentialType"] == "public"
    assert m["lastAuthorizedTime"] == T0
    assert e.ctl.stats["auto_authorized"] == 1
    e.store.close()


def test_token_authorization(ids: dict[str, Identity], tmp_path: Any) -> None:
    e = _env(ids, tmp_path, {"authTokens": {"goodtoken": 0, "expired": T0 - 1}})
    e.req("a", T0, build_request_metadata(auth="token:expired"))
    e.req("b", T0, build_request_metadata(auth="token:wrong"))
    assert [x[3] for x in e.sender.errors] == [ControllerError.ACCESS_DENIED] * 2
    e.req("a", T0 + 2000, build_request_metadata(auth="token:goodtoken"))
    assert len(e.sender.configs) == 1
    m = e.member("a")
    assert m["authorized"] is True
    assert (m["lastAuthorizedCredentialType"], m["lastAuthorizedCredential"]) == ("token", "goodtoken")
    e.store.close()


def test_v6_modes_dns_trace_and_bridges(ids: dict[str, Identity], tmp_path: Any) -> None:
    e = _env(
        ids,
        tmp_path,
        {
            "v6AssignMode": {"rfc4193": True, "6plane": True, "zt": False},
            "enableBroadcast": False,
            "dns": {"domain": "zt.example", "servers": ["10.9.0.53", "fd00::53"]},
            "remoteTraceTarget": f"{int(ids['other'].address):010x}",
            "remoteTraceLevel": 2,
        },
    )
    e.authorize("a")
    e.authorize("b", activeBridge=True)
    e.req("a", T0)
    _, nc = e.last_config("a")
    a = int(ids["a"].address)
    assert nc.static_ips == [
        InetAddress(_rfc4193(e.nwid, a), 88),
        InetAddress(_sixplane(e.nwid, a), 40),
    ]
    assert nc.flags & FLAG_ENABLE_IPV6_NDP_EMULATION and not nc.flags & FLAG_ENABLE_BROADCAST
    assert nc.dns.domain == "zt.example"
    assert [str(s.ip) for s in nc.dns.servers] == ["10.9.0.53", "fd00::53"]
    assert nc.remote_trace_target == ids["other"].address and nc.remote_trace_level == 2
    assert nc.active_bridges() == [ids["b"].address]
    # noAutoAssignIps turns the computed v6 addresses off.
    e.backend.post_member(e.nwids, f"{a:010x}", {"noAutoAssignIps": True})
    e.req("a", T0 + 2000)
    _, nc = e.last_config("a")
    assert nc.static_ips == [] and not nc.flags & FLAG_ENABLE_IPV6_NDP_EMULATION
    e.store.close()


CAPS_AND_TAGS = {
    "capabilities": [
        {"id": 1, "default": True, "rules": [{"type": "ACTION_DROP"}]},
        {"id": 2, "default": False, "rules": [{"type": "ACTION_BREAK"}]},
    ],
    "tags": [{"id": 5, "default": 7}, {"id": 6, "default": None}],
}


def test_capabilities_and_tags(ids: dict[str, Identity], tmp_path: Any) -> None:
    e = _env(ids, tmp_path, {**CAPS_AND_TAGS, "private": False})
    e.req("a", T0)  # a new member, authorized on its first request: gets the defaults
    _, nc = e.last_config("a")
    ctrl = ids["ctrl"].public()
    assert [c.id for c in nc.capabilities] == [1]
    cap = nc.capabilities[0]
    assert cap.rules == [Rule(RuleType.ACTION_DROP)] and cap.issued_to == ids["a"].address
    assert cap.network_id == e.nwid and cap.timestamp == T0
    assert cap.verify({int(ids["ctrl"].address): ctrl}) == VerifyResult.OK
    assert [(t.id, t.value) for t in nc.tags] == [(5, 7)]
    for t in nc.tags:
        assert t.issued_to == ids["a"].address and t.verify(ctrl) == VerifyResult.OK
    m = e.member("a")
    assert m["capabilities"] == [1] and m["tags"] == [[5, 7]]
    # Granting capability 2 and a tag through the API is pushed: A asked recently.
    e.backend.post_member(
        e.nwids, f"{int(ids['a'].address):010x}", {"capabilities": [1, 2], "tags": [[6, 99]]}
    )
    pid, nc = e.last_config("a")
    assert pid == 0 and [c.id for c in nc.capabilities] == [1, 2]
    assert nc.capabilities[1].rules == [Rule(RuleType.ACTION_BREAK)]
    assert [(t.id, t.value) for t in nc.tags] == [(5, 7), (6, 99)]
    assert sorted(e.member("a")["tags"]) == [[5, 7], [6, 99]]
    e.store.close()


def test_default_capabilities_only_for_new_members(ids: dict[str, Identity], tmp_path: Any) -> None:
    # As in zerotier-one: a member whose record exists before its first config (created
    # by a denied request or the API) gets default tags but not default capabilities.
    e = _env(ids, tmp_path, CAPS_AND_TAGS)
    e.req("a", T0)
    e.authorize("a")
    e.req("a", T0 + 2000)
    _, nc = e.last_config("a")
    assert nc.capabilities == []
    assert [(t.id, t.value) for t in nc.tags] == [(5, 7)]
    e.store.close()


def test_old_rules_engine_gets_accept_all(env: Env) -> None:
    env.authorize("a")
    md = Dictionary(1024)
    md.add("v", 7)
    md.add("majv", 1)
    env.req("a", T0, md)
    _, nc = env.last_config("a")
    assert nc.rules == [Rule(RuleType.ACTION_ACCEPT)]


def test_credential_window_from_network(ids: dict[str, Identity], tmp_path: Any) -> None:
    e = _env(ids, tmp_path, {})
    net = e.store.get_network(e.nwids)
    e.store.put_network({**net, "certificateTimeoutWindowSize": 1000})
    e.authorize("a")
    e.req("a", T0)
    _, nc = e.last_config("a")
    assert nc.credential_time_max_delta == CTMD_MIN  # clamped up to the minimum
    assert nc.com.qualifiers[0].max_delta == CTMD_MIN
    e.store.close()


def test_deauthorize_revokes_and_denies(env: Env) -> None:
    env.authorize("a")
    env.authorize("b")
    env.req("a", T0)
    env.req("b", T0)
    assert env.ctl.authorized_recently(T0, env.nwid, env.ids["a"].address)
    env.clock.t = T0 + 10000
    n_errors = len(env.sender.errors)
    env.backend.post_member(env.nwids, f"{int(env.ids['a'].address):010x}", {"authorized": False})
    dests = sorted(int(d) for d, _ in env.sender.revocations)
    assert dests == sorted([int(env.ids["a"].address), int(env.ids["b"].address)])
    rev = env.sender.revocations[0][1]
    assert all(r is rev or r.to_bytes() == rev.to_bytes() for _, r in env.sender.revocations)
    assert rev.verify(env.ids["ctrl"].public()) == VerifyResult.OK
    assert rev.target == env.ids["a"].address and rev.network_id == env.nwid
    assert rev.credential_type == CredentialType.COM and rev.threshold == T0 + 10000
    assert rev.fast_propagate
    # Round trip through its wire form too.
    assert Revocation.from_bytes(rev.to_bytes())[0].verify(env.ids["ctrl"].public()) == VerifyResult.OK
    # The push that followed the change told A it is out (packet id 0: unsolicited).
    assert [(e[1], e[3]) for e in env.sender.errors[n_errors:]] == [(0, ControllerError.ACCESS_DENIED)]
    assert not env.ctl.authorized_recently(T0 + 10000, env.nwid, env.ids["a"].address)
    assert env.ctl.authorized_recently(T0 + 10000, env.nwid, env.ids["b"].address)
    n_configs = len(env.sender.configs)
    env.req("a", T0 + 20000)
    assert env.sender.errors[-1][1:4] == (env.pid, env.ids["a"].address, ControllerError.ACCESS_DENIED)
    assert len(env.sender.configs) == n_configs


def test_revocation_covers_last_com_when_clock_lags(env: Env) -> None:
    env.authorize("a")
    env.req("a", T0 + 50000)  # the node's clock is ahead of the controller's hook clock
    _, nc = env.last_config("a")
    env.backend.post_member(env.nwids, f"{int(env.ids['a'].address):010x}", {"authorized": False})
    rev = env.sender.revocations[-1][1]
    assert rev.threshold >= nc.com.timestamp  # peers drop COMs with timestamp <= threshold


def test_member_and_network_changes_push_configs(env: Env) -> None:
    env.authorize("a")
    env.authorize("b")
    env.req("a", T0)
    env.req("b", T0)
    env.clock.t = T0 + 30000
    n = len(env.sender.configs)
    env.backend.post_member(env.nwids, f"{int(env.ids['b'].address):010x}", {"tags": [[3, 4]]})
    assert len(env.sender.configs) == n + 1
    pid, nc = env.last_config("b")
    assert pid == 0 and [(t.id, t.value) for t in nc.tags] == [(3, 4)]
    assert nc.timestamp == T0 + 30000
    # A network change goes to every member that asked recently.
    env.backend.post_network(env.nwids, {"name": "renamed"})
    pushed = env.sender.configs[n + 1 :]
    assert sorted(int(d) for _, _, d, _ in pushed) == sorted(
        [int(env.ids["a"].address), int(env.ids["b"].address)]
    )
    for _, pid, _, config in pushed:
        nc = env.decode(config)
        assert pid == 0 and nc.name == "renamed"
        assert nc.revision == env.store.get_network(env.nwids)["revision"]
    # Members silent for longer than two autoconf periods get no pushes.
    env.clock.t = T0 + 2 * AUTOCONF_DELAY + 1
    n = len(env.sender.configs)
    env.backend.post_network(env.nwids, {"name": "again"})
    assert len(env.sender.configs) == n
    assert env.ctl.stats["pushes"] == 3


def test_identity_collision_rejected(env: Env) -> None:
    env.authorize("a")
    env.req("a", T0)
    impostor = Identity(env.ids["a"].address, env.ids["other"].public_key)
    n = len(env.sender.configs)
    env.req("a", T0 + 5000, identity=impostor)
    assert env.sender.errors[-1][3] == ControllerError.ACCESS_DENIED
    assert len(env.sender.configs) == n
    assert Identity.from_string(env.member("a")["identity"]) == env.ids["a"]
    assert env.ctl.stats["identity_collisions"] == 1
    # The real member keeps its standing.
    assert env.ctl.authorized_recently(T0 + 5000, env.nwid, env.ids["a"].address)
    env.req("a", T0 + 10000)
    assert len(env.sender.configs) == n + 1


def test_authorized_recently_window_and_rate_limit(env: Env) -> None:
    a = env.ids["a"].address
    assert not env.ctl.authorized_recently(T0, env.nwid, a)
    env.authorize("a")
    env.req("a", T0)
    assert env.ctl.authorized_recently(T0, env.nwid, a)
    assert env.ctl.authorized_recently(T0 + 3 * AUTOCONF_DELAY - 1, env.nwid, a)
    assert not env.ctl.authorized_recently(T0 + 3 * AUTOCONF_DELAY, env.nwid, a)
    assert not env.ctl.authorized_recently(T0, env.nwid + 1, a)
    # A second genuine request within a second is dropped.
    env.req("a", T0 + 500)
    assert len(env.sender.configs) == 1 and env.ctl.stats["rate_limited"] == 1
    env.req("a", T0 + 1500)
    assert len(env.sender.configs) == 2
    st = env.ctl.member_status(env.nwid, a)
    assert st is not None and st.last_request_time == T0 + 1500 and str(st.from_address) == "192.0.2.1/9993"


def test_request_from_the_controller_node_itself(env: Env) -> None:
    ctrl = env.ids["ctrl"]
    md = build_request_metadata()
    env.ctl.request(T0, env.nwid, None, SELF_PACKET_ID, ctrl.public(), md)
    assert env.sender.errors[-1][1:4] == (SELF_PACKET_ID, ctrl.address, ControllerError.ACCESS_DENIED)
    env.authorize("ctrl")
    env.ctl.request(T0 + 2000, env.nwid, None, SELF_PACKET_ID, ctrl.public(), md)
    nwid, pid, dest, config = env.sender.configs[-1]
    assert (nwid, pid, dest) == (env.nwid, SELF_PACKET_ID, ctrl.address)
    nc = env.decode(config)
    assert nc.issued_to == ctrl.address and nc.com.verify(ctrl.public()) == VerifyResult.OK


def test_deleting_network_revokes_and_forgets(env: Env) -> None:
    env.authorize("a")
    env.authorize("b")
    env.req("a", T0)
    env.req("b", T0)
    env.backend.delete_network(env.nwids)
    targets = {int(r.target) for _, r in env.sender.revocations}
    assert targets == {int(env.ids["a"].address), int(env.ids["b"].address)}
    assert env.ctl.member_status(env.nwid, env.ids["a"].address) is None
    env.req("a", T0 + 5000)
    assert env.sender.errors[-1][3] == ControllerError.OBJECT_NOT_FOUND


def test_init_needs_private_key(ids: dict[str, Identity], tmp_path: Any) -> None:
    store = ControllerStore(tmp_path)
    ctl = EmbeddedController(store)
    with pytest.raises(ValueError):
        ctl.init(ids["ctrl"].public(), FakeSender())
    sender = FakeSender()
    # Before init, requests are ignored rather than failing.
    ctl.request(T0, int(ids["ctrl"].address) << 24 | 1, None, 1, ids["a"].public(), build_request_metadata())
    assert not sender.configs and ctl.stats["ignored"] == 1
    store.close()


def test_model_update_member_then_store_authorizes(env: Env) -> None:
    env.req("a", T0)
    addr = int(env.ids["a"].address)
    old = env.member("a")
    env.store.put_member(model.update_member(old, {"authorized": True}, env.nwid, addr, T0))
    env.req("a", T0 + 2000)
    _, nc = env.last_config("a")
    # The pool address is assigned at request time when the API did not do it.
    assert nc.static_ips == [InetAddress(ipaddress.ip_address("10.9.0.7"), 24)]
    assert env.member("a")["ipAssignments"] == ["10.9.0.7"]
