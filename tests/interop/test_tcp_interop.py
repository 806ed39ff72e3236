"""ztcore's userspace TCP and UDP against a real ZeroTier core's (libzt 1.8.4, lwIP).

The world of test_vl2_interop (a ztcore root, a ztcore node hosting the controller and
member of its own private network, two libzt members), built afresh for this module.
Checked: a libzt TCP client moves 10 MB to a ztcore server and a ztcore client 10 MB to a
libzt server, byte-exact (SHA-256 on both ends); UDP datagrams up to 8 KB (IP fragments on a
2,800-byte MTU) arrive whole both ways.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from .harness import LibztNode
from .test_vl2_interop import Vl2World, ipv4_of, vl2, ztcore_member_ip  # noqa: F401  (vl2: the fixture)

pytestmark = pytest.mark.interop

TCP_BYTES = 10 * 1024 * 1024


def _transfer(sender: Any, send_fd: int, receiver: Any, recv_fd: int, nbytes: int) -> tuple[dict, dict, float]:
    results: dict[str, Any] = {}

    def receive() -> None:
        try:
            results["recv"] = receiver.recv_hash(recv_fd, nbytes, timeout=120)
        except BaseException as e:  # surfaced below
            results["error"] = e

    t = threading.Thread(target=receive)
    t0 = time.monotonic()
    t.start()
    sent = sender.send_random(send_fd, nbytes, timeout=120)
    t.join(150)
    elapsed = time.monotonic() - t0
    if "error" in results:
        raise results["error"]
    return sent, results["recv"], elapsed


def _libzt_member(world: Vl2World) -> tuple[LibztNode, str]:
    info = world.ensure_member(world.lz_a)
    ip = ipv4_of(info["addrs"])
    assert ip is not None
    return world.lz_a, ip


def test_libzt_client_to_ztcore_server_10_mb(vl2: Vl2World) -> None:  # noqa: F811
    lz, ip_lz = _libzt_member(vl2)
    ip_ctl = ztcore_member_ip(vl2)
    listener = vl2.ctl.tcp_listen(9100)
    client = lz.tcp_connect(ip_ctl, 9100, timeout=30)
    server, peer_ip, _ = vl2.ctl.tcp_accept(listener, timeout=30)
    assert peer_ip == ip_lz
    sent, got, elapsed = _transfer(lz, client, vl2.ctl, server, TCP_BYTES)
    assert sent["sent"] == TCP_BYTES and got["received"] == TCP_BYTES
    assert got["sha256"] == sent["sha256"]
    print(f"libzt -> ztcore: 10 MiB in {elapsed:.2f} s = {TCP_BYTES * 8 / elapsed / 1e6:.1f} Mbit/s {got.get('tcp')}")
    # And some back over the same connection.
    back, echo, _ = _transfer(vl2.ctl, server, lz, client, 256 * 1024)
    assert echo["received"] == 256 * 1024 and echo["sha256"] == back["sha256"]
    for node, fd in ((lz, client), (vl2.ctl, server), (vl2.ctl, listener)):
        node.close_socket(fd)


def test_ztcore_client_to_libzt_server_10_mb(vl2: Vl2World) -> None:  # noqa: F811
    lz, ip_lz = _libzt_member(vl2)
    ip_ctl = ztcore_member_ip(vl2)
    listener = lz.tcp_listen(9200)
    client = vl2.ctl.tcp_connect(ip_lz, 9200, timeout=30)
    server, peer_ip, _ = lz.tcp_accept(listener, timeout=30)
    assert peer_ip == ip_ctl
    sent, got, elapsed = _transfer(vl2.ctl, client, lz, server, TCP_BYTES)
    assert sent["sent"] == TCP_BYTES and got["received"] == TCP_BYTES
    assert got["sha256"] == sent["sha256"]
    print(f"ztcore -> libzt: 10 MiB in {elapsed:.2f} s = {TCP_BYTES * 8 / elapsed / 1e6:.1f} Mbit/s")
    for node, fd in ((vl2.ctl, client), (lz, server), (lz, listener)):
        node.close_socket(fd)


def test_udp_datagrams_up_to_8_kb_both_ways(vl2: Vl2World) -> None:  # noqa: F811
    lz, ip_lz = _libzt_member(vl2)
    ip_ctl = ztcore_member_ip(vl2)
    fd_ctl = vl2.ctl.udp_bind(7301, nwid=vl2.nwid)
    fd_lz = lz.udp_bind(7302)
    for size in (1000, 2772, 2773, 4000, 8192):
        msg = bytes((i * 7 + size) & 0xFF for i in range(size))
        assert lz.udp_sendto(fd_lz, ip_ctl, 7301, msg) == size
        data, src_ip, src_port = vl2.ctl.udp_recvfrom(fd_ctl, timeout=10)
        assert (len(data), src_ip, src_port) == (size, ip_lz, 7302) and data == msg
        vl2.ctl.udp_sendto(fd_ctl, ip_lz, 7302, msg[::-1])
        data, src_ip, src_port = lz.udp_recvfrom(fd_lz, timeout=10)
        assert (len(data), src_ip, src_port) == (size, ip_ctl, 7301) and data == msg[::-1]
    vl2.ctl.close_socket(fd_ctl)
    lz.close_socket(fd_lz)
