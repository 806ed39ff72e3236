"""Cost of VL1 armor, dearmor and parse_header per packet, per cipher suite, at
64- and 1,400-byte payloads: the C kernel (ztcore.crypto._armor) against the
pure-Python reference (ZTCORE_PURE_PYTHON_ARMOR=1), each in its own process,
alternating rounds in the same minutes.

Run: python bench/bench_armor.py [--seconds 0.5] [--rounds 2] [--impl both|c|py]

`--impl current` measures whatever `import ztcore` finds (e.g. an older tree on
PYTHONPATH) in this process, without choosing an implementation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

SIZES = (64, 1400)
SUITES = ("0", "1", "3")
SUITE_NAMES = {"0": "0 Poly1305/none", "1": "1 Poly1305/Salsa20/12", "3": "3 AES-GMAC-SIV"}


def _us_per_call(fn: Callable[[], object], seconds: float) -> float:
    """µs per call of fn, called repeatedly for about `seconds` (best of 3 slices)."""
    best = float("inf")
    for _ in range(3):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(200):
                fn()
            n += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        best = min(best, (now - start) / n * 1e6)
    return best


def measure(seconds: float) -> dict[str, object]:
    """Figures of the ztcore this process imports."""
    from ztcore.vl1.packet import Verb, armor, dearmor, derive_aes_keys, parse_header

    try:
        from ztcore.crypto.aes_gmac_siv import HAVE_C_AES
        from ztcore.crypto.armor import HAVE_C_ARMOR

        impl = f"C kernel for suites 0/1: {HAVE_C_ARMOR}, for suite 3: {HAVE_C_AES}"
    except ImportError:
        impl = "before ztcore.crypto.armor existed"
    key = os.urandom(48)
    keys = derive_aes_keys(key)
    kwargs = {
        "0": {"encrypt": False, "aes_keys": None},
        "1": {"encrypt": True, "aes_keys": None},
        "3": {"encrypt": True, "aes_keys": keys},
    }
    rows = []
    for suite in SUITES:
        for size in SIZES:
            payload = os.urandom(size)
            kw = kwargs[suite]

            def do_armor(kw: dict[str, object] = kw, payload: bytes = payload) -> bytes:
                return armor(  # type: ignore[arg-type]
                    destination=0x1122334455, source=0x66778899AA, verb=Verb.FRAME, payload=payload, key=key, **kw
                )

            # A fresh bytes object per call, as a socket hands over: no cache can help.
            wires = [do_armor() for _ in range(64)]
            copies = itertools.cycle([bytes(bytearray(w)) for w in wires])

            def do_dearmor(nxt: Callable[[], bytes] = copies.__next__) -> object:
                return dearmor(nxt(), key, keys)

            def do_parse(nxt: Callable[[], bytes] = copies.__next__) -> object:
                return parse_header(nxt())

            rows.append(
                {
                    "suite": suite,
                    "size": size,
                    "armor": _us_per_call(do_armor, seconds),
                    "dearmor": _us_per_call(do_dearmor, seconds),
                    "parse": _us_per_call(do_parse, seconds),
                }
            )
    return {"impl": impl, "rows": rows}


def _child(impl: str, seconds: float) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("ZTCORE_PURE_PYTHON_ARMOR", None)
    if impl == "py":
        env["ZTCORE_PURE_PYTHON_ARMOR"] = "1"
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--seconds", str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per implementation")
    ap.add_argument("--impl", choices=("both", "c", "py", "current"), default="both")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.seconds)))
        return

    impls = ["c", "py"] if args.impl == "both" else [args.impl]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    best: dict[tuple[str, str, int, str], float] = {}
    labels: dict[str, str] = {}
    for _ in range(max(1, args.rounds)):
        for impl in impls:
            res = measure(args.seconds) if impl == "current" else _child(impl, args.seconds)
            labels[impl] = str(res["impl"])
            for row in res["rows"]:  # type: ignore[attr-defined]
                for what in ("armor", "dearmor", "parse"):
                    k = (impl, row["suite"], row["size"], what)
                    best[k] = min(best.get(k, float("inf")), row[what])
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for impl in impls:
        print(f"{impl}: {labels[impl]}")
    print(f"µs per packet, best of {args.rounds} alternating rounds x 3 slices of {args.seconds / 3:.2f} s")
    head = f"{'suite':22} {'payload':>7}"
    for impl in impls:
        head += f" {impl + ' armor':>10} {impl + ' dearmor':>11} {impl + ' parse':>9}"
    if impls == ["c", "py"]:
        head += f" {'py/c armor':>10} {'py/c dearmor':>12}"
    print(head)
    for suite in SUITES:
        for size in SIZES:
            line = f"{SUITE_NAMES[suite]:22} {size:7d}"
            for impl in impls:
                line += f" {best[(impl, suite, size, 'armor')]:10.2f} {best[(impl, suite, size, 'dearmor')]:11.2f}"
                line += f" {best[(impl, suite, size, 'parse')]:9.2f}"
            if impls == ["c", "py"]:
                ra = best[("py", suite, size, "armor")] / best[("c", suite, size, "armor")]
                rd = best[("py", suite, size, "dearmor")] / best[("c", suite, size, "dearmor")]
                line += f" {ra:10.2f} {rd:12.2f}"
            print(line)


if __name__ == "__main__":
    main()
