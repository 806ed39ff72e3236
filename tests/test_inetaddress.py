"""InetAddress: ZeroTier's serialized address form, text forms, and IP scope rules."""

from __future__ import annotations

import ipaddress

import pytest

from ztcore.errors import InvalidFormatError
from ztcore.vl1.inetaddress import InetAddress, IpScope

# Two stable endpoints exactly as they appear inside the core's built-in planet
# (Topology.cpp ZT_DEFAULT_WORLD): type byte, IP in network order, big-endian port.
PLANET_V4 = bytes.fromhex("04" + "68c20886" + "2709")
PLANET_V6 = bytes.fromhex("06" + "26059880020012000030 05710e340051".replace(" ", "") + "2709")


def test_enum_values_match_core() -> None:
    assert [(s.name, int(s)) for s in IpScope] == [
        ("NONE", 0),
        ("MULTICAST", 1),
        ("LOOPBACK", 2),
        ("PSEUDOPRIVATE", 3),
        ("GLOBAL", 4),
        ("LINK_LOCAL", 5),
        ("SHARED", 6),
        ("PRIVATE", 7),
    ]


def test_v4_known_bytes_from_planet() -> None:
    addr, used = InetAddress.from_bytes(PLANET_V4)
    assert used == 7
    assert addr == InetAddress(ipaddress.IPv4Address("104.194.8.134"), 9993)
    assert str(addr) == "104.194.8.134/9993"
    assert addr.to_bytes() == PLANET_V4


def test_v6_known_bytes_from_planet() -> None:
    addr, used = InetAddress.from_bytes(PLANET_V6)
    assert used == 19
    assert addr is not None and addr.is_v6 and not addr.is_v4
    assert addr.ip == ipaddress.IPv6Address("2605:9880:200:1200:30:571:e34:51")
    assert addr.port == 9993
    assert addr.to_bytes() == PLANET_V6


def test_layout_built_by_hand() -> None:
    a = InetAddress.parse("10.1.2.3/65535")
    assert a.to_bytes() == b"\x04\x0a\x01\x02\x03\xff\xff"
    b = InetAddress.parse("[::1]:1")
    assert b.to_bytes() == b"\x06" + b"\x00" * 15 + b"\x01" + b"\x00\x01"


def test_nil_and_offset() -> None:
    assert InetAddress.nil_bytes() == b"\x00"
    assert InetAddress.from_bytes(b"\x00") == (None, 1)
    buf = b"junk" + PLANET_V4 + PLANET_V6
    a, n = InetAddress.from_bytes(buf, 4)
    b, m = InetAddress.from_bytes(buf, 4 + n)
    assert (n, m) == (7, 19)
    assert a is not None and b is not None
    assert a.to_bytes() + b.to_bytes() == buf[4:]


def test_reserved_kinds_are_skipped_like_the_core() -> None:
    # 0x01 (Ethernet) and 0x02 (Bluetooth) occupy 7 bytes; 0x03 has a 16-bit length.
    assert InetAddress.from_bytes(b"\x01" + bytes(6)) == (None, 7)
    assert InetAddress.from_bytes(b"\x02" + bytes(6) + b"tail") == (None, 7)
    assert InetAddress.from_bytes(b"\x03\x00\x04abcd") == (None, 7)
    assert InetAddress.from_bytes(b"\x03\x00\x00") == (None, 3)


@pytest.mark.parametrize("kind", [0x05, 0x07, 0x40, 0xFF])
def test_unknown_type_rejected(kind: int) -> None:
    with pytest.raises(InvalidFormatError):
        InetAddress.from_bytes(bytes([kind]) + bytes(20))


@pytest.mark.parametrize(
    "blob", [PLANET_V4, PLANET_V6, b"\x01" + bytes(6), b"\x03\x00\x04abcd", b"\x03\x00\x00"]
)
def test_every_truncation_raises(blob: bytes) -> None:
    for cut in range(len(blob)):
        with pytest.raises(InvalidFormatError):
            InetAddress.from_bytes(blob[:cut])
    with pytest.raises(InvalidFormatError):
        InetAddress.from_bytes(blob, len(blob))


@pytest.mark.parametrize(
    "text",
    [
        "1.2.3.4/9993",
        "0.0.0.0/0",
        "::ffff:10.1.2.3/9993",
        "2a02:6ea0:c815::/9993",
        "2001:db8::1/443",
        "fe80::1/1",
        "::/0",
    ],
)
def test_text_round_trip(text: str) -> None:
    a = InetAddress.parse(text)
    assert str(a) == text
    assert InetAddress.parse(str(a)) == a
    assert InetAddress.from_bytes(a.to_bytes()) == (a, len(a.to_bytes()))


def test_parse_alternative_forms() -> None:
    v4 = InetAddress(ipaddress.IPv4Address("192.0.2.7"), 9993)
    assert InetAddress.parse("192.0.2.7:9993") == v4
    assert InetAddress.parse(" 192.0.2.7/9993 ") == v4
    assert InetAddress.parse("192.0.2.7").port == 0  # no port, as the core reads it
    v6 = InetAddress(ipaddress.IPv6Address("2001:db8::7"), 9993)
    assert InetAddress.parse("[2001:db8::7]:9993") == v6
    assert InetAddress.parse("[2001:db8::7]/9993") == v6
    assert InetAddress.parse("2001:db8::7/9993") == v6
    assert InetAddress.parse("fe80::1%eth0/9993").ip == ipaddress.IPv6Address("fe80::1")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.2.3/9993",
        "1.2.3.4/",
        "1.2.3.4:",
        "1.2.3.4/65536",
        "1.2.3.4/-1",
        "1.2.3.4/99x",
        "1.2.3.4/²",
        "[::1",
        "[::1]x9",
        "example.com/9993",
        "1.2.3.4:5:6",
        "gggg::1/1",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidFormatError):
        InetAddress.parse(text)


def test_tuples() -> None:
    a = InetAddress.from_tuple(("203.0.113.9", 443))
    assert a.to_tuple() == ("203.0.113.9", 443)
    b = InetAddress.from_tuple(("fe80::2%eth0", 9993, 0, 3))
    assert b.to_tuple() == ("fe80::2", 9993)
    assert b == InetAddress.parse("fe80::2/9993")
    for bad in [(), ("1.2.3.4",), ("nope", 1), ("1.2.3.4", "x"), ("1.2.3.4", 70000)]:
        with pytest.raises(InvalidFormatError):
            InetAddress.from_tuple(bad)


def test_value_semantics() -> None:
    a = InetAddress.parse("1.2.3.4/1")
    assert a == InetAddress.parse("1.2.3.4:1")
    assert hash(a) == hash(InetAddress.parse("1.2.3.4/1"))
    assert a != a.with_port(2)
    assert a.ips_equal(a.with_port(2))
    assert a.ip_key() == bytes([1, 2, 3, 4])
    with pytest.raises(InvalidFormatError):
        InetAddress(ipaddress.IPv4Address("1.2.3.4"), 65536)
    with pytest.raises(TypeError):
        InetAddress("1.2.3.4", 1)  # type: ignore[arg-type]


# Expected scopes follow InetAddress::ipScope() in the core, which differs from
# Python's ipaddress flags in places (e.g. 100.64/10 is PRIVATE, 28/8 is PSEUDOPRIVATE,
# fe80::1 is LOOPBACK, 192.0.2/24 is PRIVATE).
SCOPES = [
    ("0.1.2.3", IpScope.NONE),
    ("255.255.255.255", IpScope.NONE),
    ("127.0.0.1", IpScope.LOOPBACK),
    ("127.255.0.9", IpScope.LOOPBACK),
    ("10.0.0.1", IpScope.PRIVATE),
    ("172.16.0.1", IpScope.PRIVATE),
    ("172.31.255.255", IpScope.PRIVATE),
    ("172.32.0.1", IpScope.GLOBAL),
    ("172.15.255.255", IpScope.GLOBAL),
    ("192.168.1.1", IpScope.PRIVATE),
    ("192.169.0.1", IpScope.GLOBAL),
    ("100.64.0.1", IpScope.PRIVATE),
    ("100.127.255.255", IpScope.PRIVATE),
    ("100.128.0.1", IpScope.GLOBAL),
    ("100.63.255.255", IpScope.GLOBAL),
    ("169.254.10.10", IpScope.LINK_LOCAL),
    ("169.253.0.1", IpScope.GLOBAL),
    ("224.0.0.251", IpScope.MULTICAST),
    ("239.255.255.250", IpScope.MULTICAST),
    ("240.0.0.1", IpScope.PSEUDOPRIVATE),
    ("28.1.2.3", IpScope.PSEUDOPRIVATE),
    ("6.6.6.6", IpScope.PSEUDOPRIVATE),
    ("11.0.0.1", IpScope.PSEUDOPRIVATE),
    ("56.0.0.1", IpScope.PSEUDOPRIVATE),
    ("192.0.2.1", IpScope.PRIVATE),
    ("198.18.0.1", IpScope.PRIVATE),
    ("198.19.255.255", IpScope.PRIVATE),
    ("198.20.0.1", IpScope.GLOBAL),
    ("198.51.100.5", IpScope.PRIVATE),
    ("203.0.113.5", IpScope.PRIVATE),
    ("8.8.8.8", IpScope.GLOBAL),
    ("104.194.8.134", IpScope.GLOBAL),
    ("::1", IpScope.LOOPBACK),
    ("::", IpScope.NONE),
    ("::2", IpScope.GLOBAL),
    ("::ffff:127.0.0.1", IpScope.LOOPBACK),
    ("::ffff:10.0.0.1", IpScope.GLOBAL),
    ("fe80::1", IpScope.LOOPBACK),
    ("fe80::2", IpScope.LINK_LOCAL),
    ("fe80::1:1", IpScope.LINK_LOCAL),
    ("febf::1", IpScope.LOOPBACK),  # the core checks only bytes 2..15 after the /10 prefix
    ("febf::2", IpScope.LINK_LOCAL),
    ("fec0::1", IpScope.GLOBAL),
    ("fc00::1", IpScope.PRIVATE),
    ("fd12:3456::1", IpScope.PRIVATE),
    ("ff02::1", IpScope.MULTICAST),
    ("2001:4860:4860::8888", IpScope.GLOBAL),
    ("2605:9880:200:1200:30:571:e34:51", IpScope.GLOBAL),
]


@pytest.mark.parametrize(("ip", "scope"), SCOPES)
def test_scope(ip: str, scope: IpScope) -> None:
    assert InetAddress(ipaddress.ip_address(ip), 9993).scope is scope
