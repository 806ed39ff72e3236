"""MACs from (address, network id), 6PLANE/RFC4193 addresses, multicast groups, network ids.

Expected values are worked out by hand from the documented rules (MAC.hpp,
InetAddress::makeIpv6rfc4193 / makeIpv66plane, MulticastGroup.hpp).
"""

from __future__ import annotations

import ipaddress

import pytest

from ztcore.errors import InvalidFormatError
from ztcore.identity import Address
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.mac import BROADCAST_MAC, MAC
from ztcore.vl2.multicast_group import MulticastGroup
from ztcore.vl2.networkid import (
    controller_for,
    format_network_id,
    ipv6_link_local,
    make_network_id,
    network_number,
    parse_network_id,
    rfc4193_address,
    sixplane_address,
    sixplane_ip,
)

EARTH = 0x8056C2E21C000001
NODE = 0x1122334455


def test_mac_from_address_worked_example() -> None:
    # First octet: (0x01 & 0xfe) | 0x02 = 0x02.
    # Octets 1..5: 11 22 33 44 55 XOR nwid bytes 1..5 from the LSB end: 00 00 1c e2 c2.
    mac = MAC.from_address(NODE, EARTH)
    assert str(mac) == "02:11:22:2f:a6:97"
    assert mac.to_bytes() == bytes([0x02, 0x11, 0x22, 0x33 ^ 0x1C, 0x44 ^ 0xE2, 0x55 ^ 0xC2])
    assert mac.to_address(EARTH) == Address(NODE)
    assert mac.is_locally_administered and not mac.is_multicast
    assert mac.is_for_network(EARTH)


@pytest.mark.parametrize(
    ("low_byte", "first"),
    [
        (0x00, 0x02),
        (0x01, 0x02),
        (0x50, 0x32),
        (0x51, 0x32),
        (0x53, 0x32),
        (0x56, 0x56),
        (0xFF, 0xFE),
        (0x9D, 0x9E),
    ],
)
def test_first_octet_rules(low_byte: int, first: int) -> None:
    # Multicast bit cleared, locally-administered bit set, 0x52 (KVM) replaced by 0x32.
    assert MAC.first_octet_for_network(0x1234560000000000 | low_byte) == first
    assert MAC.from_address(NODE, low_byte).octet(0) == first


def test_mac_second_example_and_round_trip() -> None:
    nwid = 0xFFEEDDCCBBAA9988  # bytes 1..5 from the LSB end: 99 aa bb cc dd
    mac = MAC.from_address(0x0102030405, nwid)
    assert mac == MAC(0x8A_98_A8_B8_C8_D8)  # 0x88 -> (0x88 & 0xfe) | 2 = 0x8a; 01^99 02^aa 03^bb 04^cc 05^dd
    assert mac.to_address(nwid) == Address(0x0102030405)


def test_mac_text_and_bytes() -> None:
    assert MAC.parse("AA-BB-CC-DD-EE-FF") == MAC(0xAABBCCDDEEFF)
    assert MAC.parse("aabbccddeeff") == MAC.parse("aa:bb:cc:dd:ee:ff")
    assert MAC.from_bytes(b"x" + bytes.fromhex("0102030405ff"), 1) == MAC(0x0102030405FF)
    assert BROADCAST_MAC.is_broadcast and BROADCAST_MAC.is_multicast
    for bad in ("", "aa:bb:cc:dd:ee", "gg:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff:00"):
        with pytest.raises(InvalidFormatError):
            MAC.parse(bad)
    with pytest.raises(InvalidFormatError):
        MAC.from_bytes(b"\x01\x02")
    with pytest.raises(InvalidFormatError):
        MAC(1 << 48)


def test_rfc4193_worked_example() -> None:
    # fd | 80 56 c2 e2 1c 00 00 01 | 99 93 | 11 22 33 44 55, prefix /88 in the port field
    addr = rfc4193_address(EARTH, NODE)
    assert addr.ip.packed == bytes.fromhex("fd8056c2e21c00000199931122334455")
    assert str(addr.ip) == "fd80:56c2:e21c:0:199:9311:2233:4455"
    assert addr.port == 88


def test_sixplane_worked_example() -> None:
    # nwid ^ (nwid >> 32), low 32 bits: 0x1c000001 ^ 0x8056c2e2 = 0x9c56c2e3
    addr = sixplane_address(EARTH, NODE)
    assert addr.ip.packed == bytes.fromhex("fc9c56c2e31122334455000000000001")
    assert str(addr.ip) == "fc9c:56c2:e311:2233:4455::1"
    assert addr.port == 40
    # The ZeroTier docs' 6PLANE prefix for the Earth network starts fc9c:56c2:e3.
    assert str(sixplane_ip(EARTH, 0)).startswith("fc9c:56c2:e3")


def test_ipv6_link_local() -> None:
    mac = MAC.from_address(NODE, EARTH)  # 02:11:22:2f:a6:97
    ll = ipv6_link_local(mac)
    assert ll.ip.packed == bytes.fromhex("fe80000000000000001122fffe2fa697")
    assert ll.port == 64


def test_multicast_group_for_arp() -> None:
    g = MulticastGroup.for_address_resolution(ipaddress.IPv4Address("10.147.17.5"))
    assert g.mac == BROADCAST_MAC
    assert g.adi == 0x0A931105
    assert g.to_bytes() == b"\xff" * 6 + bytes([10, 147, 17, 5])
    assert MulticastGroup.for_address_resolution(InetAddress.parse("10.147.17.5/24")) == g
    assert MulticastGroup.for_address_resolution("10.147.17.5") == g


def test_multicast_group_for_ndp() -> None:
    g = MulticastGroup.for_address_resolution(ipaddress.IPv6Address("fd00::1:2:abcd:ef12"))
    assert str(g.mac) == "33:33:ff:cd:ef:12"
    assert g.adi == 0
    assert g.to_bytes() == bytes.fromhex("3333ffcdef12") + bytes(4)


def test_multicast_group_wire_and_order() -> None:
    g = MulticastGroup(MAC(0x01005E000001), 7)
    assert MulticastGroup.from_bytes(b"..." + g.to_bytes(), 3) == g
    assert MulticastGroup(MAC(1), 5) < MulticastGroup(MAC(2), 0) < MulticastGroup(MAC(2), 1)
    with pytest.raises(InvalidFormatError):
        MulticastGroup.from_bytes(g.to_bytes()[:9])
    with pytest.raises(InvalidFormatError):
        MulticastGroup(MAC(1), 1 << 32)
    with pytest.raises(InvalidFormatError):
        MulticastGroup.for_address_resolution("not an ip")


def test_network_id_helpers() -> None:
    assert controller_for(EARTH) == Address(0x8056C2E21C)
    assert network_number(EARTH) == 1
    assert make_network_id(Address(0x8056C2E21C), 1) == EARTH
    assert format_network_id(0x1) == "0000000000000001"
    assert parse_network_id("8056C2E21C000001") == EARTH
    for bad in ("8056c2e21c00001", "8056c2e21c0000011", "zz56c2e21c000001"):
        with pytest.raises(InvalidFormatError):
            parse_network_id(bad)
    with pytest.raises(InvalidFormatError):
        make_network_id(1, 1 << 24)
    with pytest.raises(InvalidFormatError):
        rfc4193_address(EARTH, 1 << 40)
