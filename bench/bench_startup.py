"""Start-up cost of the command line: `ztnode --help` wall time, and the RSS of a
running `ztnode run` node.

`ztnode --help` is run --runs times as a whole process (median and min wall time
printed). `ztnode run` is started on a throw-away home with an offline planet
whose only root is on 127.0.0.1 (nothing leaves the machine), its RSS (and PSS,
USS from /proc/PID/smaps_rollup) is read once it printed "<address> <port>" and
has run --settle seconds, and it is stopped with SIGINT.

The ztcore package's bytecode is compiled first (as pip does when it installs a
wheel): a tree without ``__pycache__`` (an editable install run with
PYTHONDONTWRITEBYTECODE) compiles every module at each start, which costs ~2 MiB
more and a slower start. Where the package directory is not writable this is
skipped and said.

For where the memory goes, module by module: bench/bench_rss_breakdown.py.

Run: python bench/bench_startup.py [--runs 10] [--settle 3]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ztcore
from ztcore.identity import Identity
from ztcore.runtime.offline import free_udp_port, make_loopback_planet

ZTNODE = shutil.which("ztnode") or str(Path(sys.executable).parent / "ztnode")


def time_help(runs: int) -> list[float]:
    out = []
    for _ in range(runs + 1):  # the first run warms the page cache and is not counted
        t = time.perf_counter()
        subprocess.run([ZTNODE, "--help"], check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out[1:]


def compile_package() -> bool:
    return bool(compileall.compile_dir(str(Path(ztcore.__file__).parent), quiet=2))


def memory_of_run(settle: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ztcore-bench-") as tmp:
        port = free_udp_port("127.0.0.1")
        planet = make_loopback_planet(Identity.generate(), "127.0.0.1", free_udp_port("127.0.0.1"))
        (Path(tmp) / "planet").write_bytes(planet.to_bytes())
        cmd = [ZTNODE, "run", "--home", f"{tmp}/home", "--planet", f"{tmp}/planet", "--port", str(port)]
        proc = subprocess.Popen([*cmd, "--bind", "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise SystemExit("ztnode run did not start")
            time.sleep(settle)
            kib: dict[str, int] = {}
            for line in Path(f"/proc/{proc.pid}/smaps_rollup").read_text().splitlines()[1:]:
                key, _, rest = line.partition(":")
                kib[key] = int(rest.split()[0])
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
        uss = kib["Private_Clean"] + kib["Private_Dirty"]
        return {"rss": kib["Rss"] / 1024, "pss": kib["Pss"] / 1024, "uss": uss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--settle", type=float, default=3.0)
    args = ap.parse_args()
    compiled = compile_package()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}; {ZTNODE}")
    print(f"  bytecode of {Path(ztcore.__file__).parent}: " + ("compiled" if compiled else "NOT compiled (read-only?)"))
    times = time_help(args.runs)
    print(f"  ztnode --help: median {statistics.median(times):.3f} s, min {min(times):.3f} s over {args.runs} runs")
    mem = memory_of_run(args.settle)
    print(
        f"  ztnode run (offline planet, idle, {args.settle:.0f} s): RSS {mem['rss']:.1f} MiB "
        f"(PSS {mem['pss']:.1f}, USS {mem['uss']:.1f})"
    )


if __name__ == "__main__":
    sys.exit(main())
