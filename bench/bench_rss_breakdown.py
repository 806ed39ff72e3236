"""Where an idle `ztnode run` spends its memory: RSS per imported module, in the
daemon's own import order, then VmRSS / PSS / USS of the idle process.

The daemon is run in this process (``ztnode run`` on a throw-away home with an
offline planet whose only root is on 127.0.0.1, nothing leaves the machine) with an
import hook that reads the resident set (``/proc/self/statm``) before and after
each module is created and executed. A module's *self* figure is what its own
loading added, without the modules it imported; *total* includes them. After
--settle seconds idle, the process reads its ``/proc/self/smaps_rollup`` (RSS,
PSS, USS = private clean + dirty) and stops itself with SIGINT.

Run: python bench/bench_rss_breakdown.py [--settle 3] [--top 30] [--all]
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


class _Record:
    __slots__ = ("name", "depth", "total", "children")

    def __init__(self, name: str, depth: int) -> None:
        self.name = name
        self.depth = depth
        self.total = 0
        self.children = 0


class _MeasuringLoader(importlib.abc.Loader):
    """Wraps a real loader; measures create_module + exec_module (where dlopen and
    module code run)."""

    def __init__(self, inner: Any, hook: _Hook) -> None:
        self._inner = inner
        self._hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._hook.measure(spec.name, "create", lambda: self._inner.create_module(spec))

    def exec_module(self, module: Any) -> None:
        self._hook.measure(module.__name__, "exec", lambda: self._inner.exec_module(module))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Hook(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}
        self.order: list[str] = []
        self._stack: list[_Record] = []
        self._busy = False

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if self._busy:
            return None
        self._busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy = False
        if spec.loader is not None and not isinstance(spec.loader, _MeasuringLoader):
            spec.loader = _MeasuringLoader(spec.loader, self)
        return spec

    def measure(self, name: str, _phase: str, fn: Any) -> Any:
        rec = self.records.get(name)
        if rec is None:
            rec = self.records[name] = _Record(name, len(self._stack))
            self.order.append(name)
        self._stack.append(rec)
        before = rss_bytes()
        try:
            return fn()
        finally:
            delta = rss_bytes() - before
            self._stack.pop()
            rec.total += delta
            if self._stack:
                self._stack[-1].children += delta


def smaps_rollup() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0])  # kB
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--top", type=int, default=30, help="modules with the largest self figure")
    ap.add_argument("--all", action="store_true", help="every module in import order instead")
    args = ap.parse_args()
    start_rss = rss_bytes()
    hook = _Hook()
    sys.meta_path.insert(0, hook)
    # The planet is made with the hook off, so its imports do not count as the daemon's.
    sys.meta_path.remove(hook)
    tmp = tempfile.TemporaryDirectory(prefix="ztcore-bench-")
    planet_path = Path(tmp.name) / "planet"
    import subprocess

    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ztcore.identity import Identity; "
            "from ztcore.runtime.offline import free_udp_port, make_loopback_planet; "
            "p = make_loopback_planet(Identity.generate(), '127.0.0.1', free_udp_port('127.0.0.1')); "
            "open(sys.argv[1], 'wb').write(p.to_bytes())",
            str(planet_path),
        ],
        check=True,
    )
    sys.meta_path.insert(0, hook)
    idle: dict[str, Any] = {}

    def watch() -> None:
        # The daemon prints "<address> <port>" once up; wait for the lock file's
        # neighbour zerotier-one.port, then settle.
        port_file = Path(tmp.name) / "home" / "zerotier-one.port"
        deadline = time.monotonic() + 60
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(args.settle)
        idle["rollup"] = smaps_rollup()
        idle["modules"] = len(sys.modules)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()
    from ztcore.cli.main import main as ztnode_main

    argv = ["run", "--home", f"{tmp.name}/home", "--planet", str(planet_path), "--port", "0"]
    try:
        ztnode_main([*argv, "--bind", "127.0.0.1"], standalone_mode=False)
    except (SystemExit, KeyboardInterrupt):
        pass
    sys.meta_path.remove(hook)
    tmp.cleanup()

    mib = 1024 * 1024
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}")
    print(f"  interpreter before the daemon's imports: {start_rss / mib:.1f} MiB")
    recs = [hook.records[n] for n in hook.order]
    top = sum(r.total for r in recs if r.depth == 0)
    print(f"  {len(recs)} modules imported by the daemon: {top / mib:.1f} MiB")
    rows = recs if args.all else sorted(recs, key=lambda r: r.total - r.children, reverse=True)[: args.top]
    print(f"  {'self MiB':>8} {'total MiB':>9}  module")
    for r in rows:
        indent = "  " * r.depth if args.all else ""
        print(f"  {(r.total - r.children) / mib:8.2f} {r.total / mib:9.2f}  {indent}{r.name}")
    by_pkg: dict[str, int] = {}
    for r in recs:
        by_pkg[r.name.split(".")[0]] = by_pkg.get(r.name.split(".")[0], 0) + r.total - r.children
    print("  by top-level package (self, MiB): " + ", ".join(
        f"{k} {v / mib:.1f}" for k, v in sorted(by_pkg.items(), key=lambda kv: -kv[1]) if v >= mib / 4
    ))
    roll = idle.get("rollup")
    if roll:
        uss = roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0)
        print(
            f"  idle after {args.settle:.0f} s: RSS {roll['Rss'] / 1024:.1f} MiB, PSS {roll['Pss'] / 1024:.1f} MiB, "
            f"USS {uss / 1024:.1f} MiB (anonymous {roll.get('Anonymous', 0) / 1024:.1f} MiB), "
            f"{idle['modules']} modules in sys.modules"
        )


if __name__ == "__main__":
    sys.exit(main())
