"""Throughput of VL1 armor and dearmor for 1,400-byte payloads, per cipher suite.

Run: PYTHONPATH=src python bench/bench_armor.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from ztcore.vl1.packet import Verb, armor, dearmor, derive_aes_keys

PAYLOAD_SIZE = 1400


def _rate(fn: Callable[[], object], nbytes: int, seconds: float) -> tuple[float, float]:
    """Return (MB/s, µs per call) of calling fn repeatedly for about `seconds`."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn()
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    return n * nbytes / elapsed / 1e6, elapsed / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = ap.parse_args()

    key = os.urandom(48)
    keys = derive_aes_keys(key)
    payload = os.urandom(PAYLOAD_SIZE)
    suites = {
        "0 (Poly1305, cleartext)": {"encrypt": False, "aes_keys": None},
        "1 (Poly1305/Salsa20/12)": {"encrypt": True, "aes_keys": None},
        "3 (AES-GMAC-SIV)": {"encrypt": True, "aes_keys": keys},
    }
    print(f"payload {PAYLOAD_SIZE} bytes, {args.seconds:.1f} s per measurement")
    print(f"{'suite':26} {'armor MB/s':>11} {'µs':>7} {'dearmor MB/s':>13} {'µs':>7}")
    for name, kw in suites.items():

        def do_armor(kw: dict[str, object] = kw) -> bytes:
            return armor(
                destination=0x1122334455, source=0x66778899AA, verb=Verb.FRAME, payload=payload, key=key, **kw
            )  # type: ignore[arg-type]

        wire = do_armor()

        def do_dearmor(wire: bytes = wire) -> object:
            return dearmor(wire, key, keys)

        a_mbs, a_us = _rate(do_armor, PAYLOAD_SIZE, args.seconds)
        d_mbs, d_us = _rate(do_dearmor, PAYLOAD_SIZE, args.seconds)
        print(f"{name:26} {a_mbs:11.1f} {a_us:7.2f} {d_mbs:13.1f} {d_us:7.2f}")


if __name__ == "__main__":
    main()
