"""Benchmark of identity work: median Identity.validate() and Identity.generate()
times, and one run of the pure-Python memory-hard hash reference.

Run: python bench/bench_identity.py [--validates N] [--generates N]
(The real core takes about 25 ms per validation and 0.25 s per generation.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import machine  # bench/machine.py: command, interpreter and load average around the figures
from ztcore.identity import HAVE_C_KERNEL, Identity, memory_hard_hash_py
from ztcore.identity.identity import _VALIDATED

KNOWN_GOOD = "8e4df28b72:0:ac3d46abe0c21f3cfe7a6c8d6a85cfcffcb82fbd55af6a4d6350657c68200843fa2e16f9418bbd9702cae365f2af5fb4c420908b803a681d4daef6114d78a2d7"


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description="Time identity validation and generation.")
    parser.add_argument("--validates", type=int, default=20)
    parser.add_argument("--generates", type=int, default=10)
    args = parser.parse_args()
    machine.header()
    print(
        f"memory-hard hash kernel: {'C (ztcore.identity._mhh)' if HAVE_C_KERNEL else 'pure Python (not built)'}"
    )
    ident = Identity.from_string(KNOWN_GOOD)
    assert ident.validate()

    def validate_cold() -> None:
        # The process remembers identities it validated (Identity.known_valid): forget
        # them so that every run pays the memory-hard hash, as a first sight does.
        _VALIDATED.clear()
        assert ident.validate()

    v = _timed(validate_cold, args.validates)
    print(
        f"validate : median {statistics.median(v) * 1e3:8.1f} ms  (min {min(v) * 1e3:.1f}, max {max(v) * 1e3:.1f}, n={len(v)})"
    )
    k = _timed(ident.validate, args.validates)
    print(f"  known  : median {statistics.median(k) * 1e6:8.1f} µs  (validated before in this process: a lookup)")

    g = _timed(Identity.generate, args.generates)
    print(
        f"generate : median {statistics.median(g) * 1e3:8.1f} ms  (min {min(g) * 1e3:.1f}, max {max(g) * 1e3:.1f}, n={len(g)})"
    )

    start = time.perf_counter()
    memory_hard_hash_py(ident.public_key)
    print(f"reference: one pure-Python hash {(time.perf_counter() - start) * 1e3:8.1f} ms")
    machine.footer()


if __name__ == "__main__":
    main()
