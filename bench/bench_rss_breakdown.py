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

# The daemon's process imports as little as possible before the hook is in place
# (no argparse, pathlib, typing, importlib.abc, ...), so that the figures are the daemon's.
import os
import signal
import sys
import threading
import time

Any = object  # for annotations only: typing is not imported here

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


class _MeasuringLoader:
    """Wraps a real loader; measures create_module + exec_module (where dlopen and
    module code run)."""

    def __init__(self, inner: Any, hook: _Hook) -> None:
        self._inner = inner
        self._hook = hook

    def create_module(self, spec: Any) -> Any:
        return self._hook.measure(spec.name, "create", lambda: self._inner.create_module(spec))

    def exec_module(self, module: Any) -> None:
        self._hook.measure(module.__name__, "exec", lambda: self._inner.exec_module(module))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Hook:
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
    with open("/proc/self/smaps_rollup") as f:
        lines = f.read().splitlines()[1:]
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0])  # kB
    return out


def child(args: Any) -> None:
    start_rss = rss_bytes()
    hook = _Hook()
    sys.meta_path.insert(0, hook)
    idle: dict[str, Any] = {}

    def watch() -> None:
        # zerotier-one.port is written once the node and its API are up; then settle.
        port_file = os.path.join(args.home, "zerotier-one.port")
        deadline = time.monotonic() + 60
        while not os.path.exists(port_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(args.settle)
        idle["rollup"] = smaps_rollup()
        idle["modules"] = len(sys.modules)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()
    from ztcore.cli.main import main as ztnode_main

    argv = ["run", "--home", args.home, "--planet", args.planet, "--port", "0", "--bind", "127.0.0.1"]
    try:
        ztnode_main(argv, standalone_mode=False)
    except (SystemExit, KeyboardInterrupt):
        pass
    sys.meta_path.remove(hook)

    mib = 1024 * 1024
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}")
    print(f"  interpreter (and this script) before the daemon's imports: {start_rss / mib:.1f} MiB")
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
    big = [f"{k} {v / mib:.1f}" for k, v in sorted(by_pkg.items(), key=lambda kv: -kv[1]) if v >= mib / 4]
    print("  by top-level package (self, MiB): " + ", ".join(big))
    roll = idle.get("rollup")
    if roll:
        uss = roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0)
        print(
            f"  idle after {args.settle:.0f} s: RSS {roll['Rss'] / 1024:.1f} MiB, PSS {roll['Pss'] / 1024:.1f} MiB, "
            f"USS {uss / 1024:.1f} MiB (anonymous {roll.get('Anonymous', 0) / 1024:.1f} MiB), "
            f"{idle['modules']} modules in sys.modules"
        )


class _ChildArgs:
    def __init__(self, argv: list[str]) -> None:
        opts = dict(zip(argv[0::2], argv[1::2], strict=False))
        self.home = opts["--home"]
        self.planet = opts["--planet"]
        self.settle = float(opts["--settle"])
        self.top = int(opts["--top"])
        self.all = opts["--all"] == "1"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(_ChildArgs(sys.argv[2:]))
        return
    import argparse
    import subprocess
    import tempfile
    from pathlib import Path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--top", type=int, default=30, help="modules with the largest self figure")
    ap.add_argument("--all", action="store_true", help="every module in import order instead")
    args = ap.parse_args()
    # The planet is made here; the daemon runs in a fresh child process with the hook.
    from ztcore.identity import Identity
    from ztcore.runtime.offline import free_udp_port, make_loopback_planet

    with tempfile.TemporaryDirectory(prefix="ztcore-bench-") as tmp:
        planet = make_loopback_planet(Identity.generate(), "127.0.0.1", free_udp_port("127.0.0.1"))
        (Path(tmp) / "planet").write_bytes(planet.to_bytes())
        cmd = [sys.executable, __file__, "--child", "--home", f"{tmp}/home", "--planet", f"{tmp}/planet"]
        cmd += ["--settle", str(args.settle), "--top", str(args.top), "--all", "1" if args.all else "0"]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False)
        print(out.stdout, end="")
        if out.returncode:
            raise SystemExit(f"the daemon's process ended with {out.returncode}")


if __name__ == "__main__":
    sys.exit(main())
