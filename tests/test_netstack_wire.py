"""The userspace stack's UDP-in-IPv4 kernel (ztcore.netstack._wire) against its
pure-Python reference (build_udp + build_ipv4) byte for byte, and against scapy."""

from __future__ import annotations

import random
import socket

import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from ztcore.netstack import frames as f

try:
    from ztcore.netstack._wire import udp_ipv4
except ImportError:  # pragma: no cover - the package builds it
    udp_ipv4 = None

pytestmark = pytest.mark.skipif(udp_ipv4 is None, reason="LOUD SKIP: ztcore.netstack._wire is not built")


def test_kernel_matches_the_reference_byte_for_byte() -> None:
    assert f.build_udp_ipv4 is udp_ipv4  # the stack uses the kernel when it is built
    rng = random.Random(7)
    for n in [*range(0, 70), 1371, 1372, 1400, 1472, 2772, 65507]:
        src, dst = rng.randbytes(4), rng.randbytes(4)
        args = (src, dst, rng.randrange(65536), rng.randrange(65536), rng.randrange(65536), rng.randrange(256))
        payload = rng.randbytes(n)
        packet = udp_ipv4(*args, payload)
        assert packet == f.build_udp_ipv4_py(*args, payload), n
        # And a third party's: scapy, building the same packet, computes the same checksums.
        theirs = IP(src=socket.inet_ntoa(src), dst=socket.inet_ntoa(dst), id=args[4], ttl=args[5]) / UDP(
            sport=args[2], dport=args[3]
        )
        assert bytes(theirs / Raw(payload) if n else theirs) == packet, n


def test_a_zero_checksum_goes_out_as_all_ones() -> None:
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    base = bytes(40) + b"\x00\x00"
    c = int.from_bytes(udp_ipv4(src, dst, 1000, 2000, 1, 64, base)[26:28], "big")
    payload = base[:-2] + c.to_bytes(2, "big")  # makes the one's complement sum 0xffff
    packet = udp_ipv4(src, dst, 1000, 2000, 1, 64, payload)
    assert packet[26:28] == b"\xff\xff" and packet == f.build_udp_ipv4_py(src, dst, 1000, 2000, 1, 64, payload)
    assert f.checksum_valid(f._pseudo_header(src, dst, 17, 8 + len(payload)) + packet[20:])


@pytest.mark.parametrize(
    "args",
    [
        (b"\x01\x02\x03", bytes(4), 1, 2, 3, 64, b""),
        (bytes(4), bytes(16), 1, 2, 3, 64, b""),
        (bytes(4), bytes(4), 65536, 2, 3, 64, b""),
        (bytes(4), bytes(4), 1, -1, 3, 64, b""),
        (bytes(4), bytes(4), 1, 2, 65536, 64, b""),
        (bytes(4), bytes(4), 1, 2, 3, 256, b""),
        (bytes(4), bytes(4), 1, 2, 3, 64, bytes(65508)),
    ],
)
def test_bad_arguments_raise(args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        udp_ipv4(*args)
