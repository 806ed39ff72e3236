"""Binding the runtime's UDP sockets as zerotier-one's Phy and OneService do.

`bind_port` binds one port on every bind address (an IPv4 and an IPv6 socket can
share it), `bind_random_port` picks the port the way zerotier-one does for port 0,
and `family_of` classifies the IP literals the node hands the runtime. Serving the
bound sockets (reading, sending) is `ztcore.runtime.service`'s.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import logging
import secrets
import socket
from collections.abc import Iterable, Sequence

from ztcore.errors import ZTError

__all__ = [
    "PortInUseError",
    "RANDOM_PORT_BASE",
    "RANDOM_PORT_SPAN",
    "RANDOM_PORT_TRIALS",
    "ServiceError",
    "UDP_BUFFER_SIZE",
    "bind_port",
    "bind_random_port",
    "family_of",
    "make_udp_socket",
]

log = logging.getLogger("ztcore.runtime")

# zerotier-one draws random ports as 20000 + (r % 45500) and tries 256 of them.
RANDOM_PORT_BASE = 20000
RANDOM_PORT_SPAN = 45500
RANDOM_PORT_TRIALS = 256
UDP_BUFFER_SIZE = 1048576  # ZT_UDP_DESIRED_BUF_SIZE


class ServiceError(ZTError):
    """The service could not start or run (e.g. no socket could be bound)."""


class PortInUseError(ServiceError):
    """The requested UDP port is already taken on one of the bind addresses."""


@functools.lru_cache(maxsize=4096)
def family_of(host: str) -> int | None:
    """AF_INET / AF_INET6 for an IP literal (IPv6 may carry a %scope), None for anything else.
    Cached: it runs for every datagram sent."""
    if not isinstance(host, str):
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET



def make_udp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port), configured like zerotier-one's Phy."""
    family = family_of(host)
    if family is None:
        raise ServiceError(f"bind address {host!r} is not an IP address")
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, UDP_BUFFER_SIZE)
        if family == socket.AF_INET6:
            # Separate IPv4 and IPv6 sockets can then share the same port.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if hasattr(socket, "IPV6_MTU_DISCOVER"):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MTU_DISCOVER, 0)
        else:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if hasattr(socket, "IP_MTU_DISCOVER"):
                # Let the kernel fragment: ZeroTier does its own sizing and tolerates fragments.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MTU_DISCOVER, 0)
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _is_unavailable(e: OSError) -> bool:
    """Errors that mean this address or family does not exist here (as opposed to 'port busy')."""
    return e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


def bind_port(hosts: Sequence[str], port: int, optional: bool) -> list[socket.socket]:
    """Bind every host at `port`; unavailable hosts are skipped when `optional`.

    Raises PortInUseError if the port is busy on any host (after closing what was bound).
    """
    socks: list[socket.socket] = []
    try:
        for host in hosts:
            try:
                socks.append(make_udp_socket(host, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE or e.errno == errno.EACCES:
                    raise PortInUseError(f"UDP port {port} is not available on {host} ({e.strerror})") from e
                if optional and _is_unavailable(e):
                    log.info("skipping bind address %s: %s", host, e.strerror)
                    continue
                raise ServiceError(f"cannot bind UDP {host} port {port}: {e.strerror}") from e
            if port == 0:
                # The kernel chose for the first host; use the same port on the others.
                port = socks[0].getsockname()[1]
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def bind_random_port(
    hosts: Sequence[str], optional: bool, exclude: Iterable[int] = ()
) -> list[socket.socket]:
    """Bind every host at one random port in 20000..65499, as zerotier-one does for port 0."""
    excluded = set(exclude)
    for _ in range(RANDOM_PORT_TRIALS):
        port = RANDOM_PORT_BASE + secrets.randbelow(RANDOM_PORT_SPAN)
        if port in excluded:
            continue
        try:
            return bind_port(hosts, port, optional)
        except PortInUseError:
            continue
    # Crowded host: let the kernel pick instead of failing.
    return bind_port(hosts, 0, optional)
