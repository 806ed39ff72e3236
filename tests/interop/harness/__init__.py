"""The real-ZeroTier-core interop harness: libzt nodes in network namespaces.

Owns the public harness API used by the interop tests:

* :func:`require_harness` builds (or reuses) the cached Python 3.9 venvs and the shim; it
  skips (loudly) only when CPython 3.9 is missing, every other failure is an error;
* :class:`Netns`, :class:`Lan`, :class:`Host` (``netns``): isolated test networks;
* :class:`LibztNode` (``libzt_node``): one real ZeroTier 1.8 node (libzt 1.8.4) per process;
* :func:`libzt_generate_identity`, :func:`libzt_validate_identity`: libzt 1.4.2 identity oracle;
* :func:`make_planet` (``planet``): a signed planet pointing a real core at roots in a LAN.
"""

from __future__ import annotations

from .build import HarnessBuildError, HarnessPaths, Python39Missing, build_harness, cache_dir
from .libzt_node import (
    LibztError,
    LibztNode,
    libzt_generate_identities,
    libzt_generate_identity,
    libzt_validate_identities,
    libzt_validate_identity,
)
from .netns import Host, Lan, Netns, NetnsError, cleanup_stale, python_env
from .planet import TEST_WORLD_ID, make_planet

__all__ = [
    "TEST_WORLD_ID",
    "HarnessBuildError",
    "HarnessPaths",
    "Host",
    "Lan",
    "LibztError",
    "LibztNode",
    "Netns",
    "NetnsError",
    "Python39Missing",
    "build_harness",
    "cache_dir",
    "cleanup_stale",
    "libzt_generate_identities",
    "libzt_generate_identity",
    "libzt_validate_identities",
    "libzt_validate_identity",
    "make_planet",
    "python_env",
    "require_harness",
]


def require_harness() -> HarnessPaths:
    """The built harness; ``pytest.skip`` with the exact reason only if CPython 3.9 is missing."""
    try:
        return build_harness()
    except Python39Missing as e:
        import pytest

        pytest.skip(f"INTEROP TESTS SKIPPED: {e}")
        raise  # unreachable: pytest.skip raises
