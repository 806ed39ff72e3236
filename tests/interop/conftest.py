"""Fixtures for the interop tests (a real ZeroTier core via libzt, in network namespaces).

Owns session setup/teardown: the root check, removal of namespaces left by dead runs,
SIGTERM turned into a normal unwind (so context managers tear namespaces down), and the
``harness`` / ``lan`` fixtures.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator

import pytest

from .harness import HarnessPaths, Lan, cleanup_stale, require_harness
from .harness.netns import cleanup_ours


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session", autouse=True)
def _interop_session() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("INTEROP TESTS SKIPPED: network namespaces need root (run as root)")
    if shutil.which("ip") is None:
        pytest.skip("INTEROP TESTS SKIPPED: iproute2 `ip` command not found")
    cleanup_stale()
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _sigterm)
    try:
        yield
    finally:
        cleanup_ours()
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def harness() -> HarnessPaths:
    return require_harness()


@pytest.fixture
def lan() -> Iterator[Lan]:
    """Two hosts on a private bridge (10.77.X.1 and .2)."""
    with Lan(n_hosts=2) as net:
        yield net
