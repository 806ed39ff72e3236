"""Identities cross-checked against the real core: libzt 1.4.2 (oracle) and a libzt 1.8.4 node."""

from __future__ import annotations

from pathlib import Path

import pytest

from ztcore.crypto import c25519_public_from_private
from ztcore.identity import Identity

from .harness import (
    HarnessPaths,
    Lan,
    LibztNode,
    libzt_generate_identities,
    libzt_validate_identities,
    make_planet,
)

pytestmark = pytest.mark.interop


def _flip_hex(s: str, index: int) -> str:
    return s[:index] + ("0" if s[index] != "0" else "1") + s[index + 1 :]


def test_libzt_generated_identities_validate_in_ztcore() -> None:
    for secret, public in libzt_generate_identities(4):
        ident = Identity.from_string(secret)
        assert ident.validate(), secret
        assert str(ident.address) == secret[:10]
        assert ident.to_string(include_private=True) == secret
        assert ident.to_string() == public
        assert Identity.from_string(public).validate()
        # Same private-key layout as the core: our derivation gives the core's public key.
        assert ident.private_key is not None
        assert c25519_public_from_private(ident.private_key) == ident.public_key


def test_ztcore_and_libzt_agree_on_tampered_identities() -> None:
    ((secret, public),) = libzt_generate_identities(1)
    other = Identity.generate().to_string()
    candidates = [
        _flip_hex(public, 13),  # first public key digit
        _flip_hex(public, 140),  # a digit of the Ed25519 half
        _flip_hex(public, 9),  # last address digit
        public[:10] + ":0:" + other.split(":")[2],  # another identity's keys
    ]
    core = libzt_validate_identities(candidates)
    ours = []
    for text in candidates:
        try:
            ours.append(Identity.from_string(text).validate())
        except ValueError:  # InvalidFormatError is a ValueError
            ours.append(False)
    assert core == [False] * len(candidates)
    assert ours == core


def test_ztcore_generated_identities_validate_in_libzt() -> None:
    idents = [Identity.generate() for _ in range(4)]
    texts = [i.to_string(include_private=True) for i in idents] + [i.to_string() for i in idents]
    assert libzt_validate_identities(texts) == [True] * len(texts)


def _planet_nowhere(lan: Lan) -> bytes:
    # A root at an address on the LAN where nobody listens: keeps the node's traffic inside.
    root = Identity.generate()
    return make_planet([(root.to_string(), [(f"{lan.prefix}.250", 9993)])])


def test_libzt_node_uses_a_ztcore_identity(harness: HarnessPaths, tmp_path: Path) -> None:
    ident = Identity.generate()
    secret = ident.to_string(include_private=True)
    storage = tmp_path / "node"
    storage.mkdir()
    (storage / "identity.secret").write_text(secret)
    (storage / "identity.public").write_text(ident.to_string())
    with Lan(n_hosts=1) as lan, LibztNode(lan.hosts[0], storage, planet=_planet_nowhere(lan)) as node:
        node_id = node.start(timeout=20)
        assert node_id == str(ident.address), node.diagnostics()
        assert node.identity() == secret, node.diagnostics()
    # The core kept our files rather than generating a replacement identity.
    assert (storage / "identity.secret").read_text().strip() == secret


def test_libzt_node_identity_validates_in_ztcore(harness: HarnessPaths, tmp_path: Path) -> None:
    storage = tmp_path / "node"
    with Lan(n_hosts=1) as lan, LibztNode(lan.hosts[0], storage, planet=_planet_nowhere(lan)) as node:
        node_id = node.start(timeout=20)
        held = node.identity()
    ident = Identity.from_string((storage / "identity.secret").read_text())
    assert ident.validate() and str(ident.address) == node_id
    assert ident.to_string(include_private=True) == held
    assert Identity.from_string((storage / "identity.public").read_text()) == ident.public()
