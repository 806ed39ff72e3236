"""A physical path: one local socket and one remote IP/UDP endpoint, with the
activity timestamps and latency the core keeps for it (ZeroTier's Path)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ztcore.vl1.inetaddress import InetAddress, IpScope

PATH_HEARTBEAT_PERIOD = 14_000  # ZT_PATH_HEARTBEAT_PERIOD
PATH_ALIVE_TIMEOUT = PATH_HEARTBEAT_PERIOD + 5_000
TRUST_EXPIRATION = 600_000  # ZT_TRUST_EXPIRATION
_MAX_SCOPE = 7  # ZT_INETADDRESS_MAX_SCOPE


@dataclass(eq=False, slots=True)
class Path:
    local_socket: int
    address: InetAddress
    last_in: int = 0
    last_out: int = 0
    last_trust: int = -TRUST_EXPIRATION
    latency: int = -1  # ms, -1 = unknown
    last_echo_reply_gate: int = 0
    echo_gate_count: int = 0
    # quality()'s scope factor, worked out on first use (the address never changes; quality
    # is asked for every packet sent, and the scope takes an address classification).
    _scope_scale: int = field(default=0, init=False, repr=False)

    @property
    def scope(self) -> IpScope:
        return self.address.scope

    def received(self, now: int) -> None:
        self.last_in = now

    def sent(self, now: int) -> None:
        self.last_out = now

    def trusted_packet_received(self, now: int) -> None:
        self.last_trust = now

    def trust_established(self, now: int) -> bool:
        return (now - self.last_trust) < TRUST_EXPIRATION

    def alive(self, now: int) -> bool:
        return (now - self.last_in) < PATH_ALIVE_TIMEOUT

    def needs_heartbeat(self, now: int) -> bool:
        return (now - self.last_out) >= PATH_HEARTBEAT_PERIOD

    def update_latency(self, latency: int) -> None:
        # Smoothed like the real core once a first sample exists.
        self.latency = latency if self.latency < 0 else (self.latency + latency) // 2

    def quality(self, now: int) -> int:
        """Lower is better: latency, heavily penalised once the path has gone quiet,
        scaled so that wider scopes (global) rank below narrower ones."""
        base = self.latency if self.latency >= 0 else 0xFFFF
        age = min(now - self.last_in, PATH_HEARTBEAT_PERIOD * 10)
        value = base if age < PATH_ALIVE_TIMEOUT else base + 0xFFFF + age
        scale = self._scope_scale
        if not scale:
            scale = self._scope_scale = (_MAX_SCOPE - int(self.scope)) + 1
        return value * scale

    def rate_gate_echo(self, now: int) -> bool:
        """Allow a bounded number of ECHO replies per second on this path."""
        if now - self.last_echo_reply_gate >= 1000:
            self.last_echo_reply_gate = now
            self.echo_gate_count = 0
        self.echo_gate_count += 1
        return self.echo_gate_count <= 50
