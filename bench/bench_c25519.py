"""Cost of ZeroTier's C25519 operations: the libsodium path a node uses against the
`cryptography` reference, in the same process, alternating rounds (best per-call
time of each round).

Run: python bench/bench_c25519.py [--calls 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable

import machine  # bench/machine.py: command, interpreter and load average around the figures
from ztcore.crypto import c25519 as c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    machine.header()
    if not c.HAVE_SODIUM_C25519:
        print("libsodium lacks the X25519/Ed25519 functions: the node runs on the reference")
    pub, priv = c.c25519_generate()
    pub2, _ = c.c25519_generate()
    message = os.urandom(200)
    sig = c.c25519_sign(priv, message)
    c.c25519_sign_ref(priv, message)  # both paths cache the signing key: time the cached case
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        (
            "public key from private",
            lambda: c.c25519_public_from_private(os.urandom(64)),
            lambda: c.c25519_public_from_private_ref(os.urandom(64)),
        ),
        ("key agreement", lambda: c.c25519_agree(priv, pub2, 48), lambda: c.c25519_agree_ref(priv, pub2, 48)),
        ("sign (key cached)", lambda: c.c25519_sign(priv, message), lambda: c.c25519_sign_ref(priv, message)),
        ("verify", lambda: c.c25519_verify(pub, message, sig), lambda: c.c25519_verify_ref(pub, message, sig)),
    ]
    print(f"{'operation':<26}{'libsodium':>12}{'cryptography':>15}")
    for name, fast, ref in cases:
        best = [float("inf"), float("inf")]
        for _ in range(args.rounds):
            for i, fn in enumerate((fast, ref)):
                best[i] = min(best[i], timeit.timeit(fn, number=args.calls) / args.calls)
        print(f"{name:<26}{best[0] * 1e6:>9.1f} µs{best[1] * 1e6:>12.1f} µs")
    machine.footer()


if __name__ == "__main__":
    main()
