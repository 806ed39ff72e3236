"""Network namespaces for interop tests: private LANs that cannot reach anything outside.

Owns :class:`Netns` (one namespace, run/popen inside it), :class:`Lan` (a bridge namespace
plus N host namespaces, each joined to the bridge by a veth pair) and the teardown guarantees.

Why namespaces: the real ZeroTier core refuses loopback addresses as physical paths and skips
interfaces named ``zt*``, so each node gets its own namespace with an ``eth0`` on a private
10.77.X.0/24 that exists only inside the LAN. Nothing is created in the root namespace (veth
ends are created directly inside their namespaces) and no namespace has a default route, so
no test traffic can leave.

Teardown: context managers kill every process in the namespaces (``ip netns pids``) and
delete them; an ``atexit`` hook does the same for anything still alive at interpreter exit;
:func:`cleanup_stale` removes namespaces left by a test process that died (names carry the
creator's pid: ``zci-<pid>-<n>-<role>``).
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NS_PREFIX = "zci"
_NAME_RE = re.compile(rf"^{NS_PREFIX}-(\d+)-")
_counter = itertools.count(1)
_live: dict[str, Netns] = {}
_live_lock = threading.Lock()
REPO_SRC = Path(__file__).resolve().parents[3] / "src"

# One 10.77.X.0/24 per Lan. The LANs are isolated from each other, so a clash would be
# harmless; distinct subnets just make logs from parallel sessions easier to tell apart.
_subnet_base = os.getpid() % 200
_subnet_counter = itertools.count(0)


class NetnsError(RuntimeError):
    """An ``ip`` command failed while setting up or tearing down namespaces."""


def _ip(*args: str, timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise NetnsError(f"timed out: {' '.join(cmd)}") from e
    if check and out.returncode != 0:
        raise NetnsError(f"failed ({out.returncode}): {' '.join(cmd)}: {out.stderr.strip()}")
    return out


def list_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def ours(names: Sequence[str] | None = None) -> list[str]:
    """Namespaces created by this process."""
    pid = str(os.getpid())
    return [
        n for n in (names if names is not None else list_namespaces()) if n.startswith(f"{NS_PREFIX}-{pid}-")
    ]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_ns_processes(name: str, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL, every process whose network namespace is ``name``."""
    me = os.getpid()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [p for p in _ns_pids(name) if p != me]
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and [p for p in _ns_pids(name) if p != me]:
            time.sleep(0.05)


def _ns_pids(name: str) -> list[int]:
    out = _ip("netns", "pids", name, check=False)
    return [int(x) for x in out.stdout.split() if x.isdigit()]


def delete_namespace(name: str) -> None:
    _kill_ns_processes(name)
    _ip("netns", "del", name, check=False)
    with _live_lock:
        _live.pop(name, None)


def cleanup_stale() -> list[str]:
    """Delete namespaces left behind by dead test processes; returns their names."""
    removed = []
    for name in list_namespaces():
        m = _NAME_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            delete_namespace(name)
            removed.append(name)
    return removed


def cleanup_ours() -> None:
    for name in ours():
        delete_namespace(name)


atexit.register(cleanup_ours)


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running ztcore with the current interpreter (src/ on PYTHONPATH)."""
    env = dict(os.environ)
    parts = [str(REPO_SRC)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("LD_PRELOAD", None)
    if extra:
        env.update(extra)
    return env


class Netns:
    """One network namespace; use :meth:`create` (or a :class:`Lan`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._procs: list[subprocess.Popen[Any]] = []

    @classmethod
    def create(cls, role: str = "ns") -> Netns:
        if not re.fullmatch(r"[a-z0-9]{1,12}", role):
            raise ValueError(f"bad namespace role {role!r}")
        name = f"{NS_PREFIX}-{os.getpid()}-{next(_counter)}-{role}"
        _ip("netns", "add", name)
        ns = cls(name)
        with _live_lock:
            _live[name] = ns
        try:
            ns.ip("link", "set", "lo", "up")
        except BaseException:
            delete_namespace(name)
            raise
        return ns

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n NAME ...``"""
        return _ip("-n", self.name, *args, check=check)

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def run(
        self, cmd: Sequence[str], timeout: float = 30.0, check: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the namespace, capturing text output; never waits beyond ``timeout``."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run([*self.exec_prefix(), *cmd], timeout=timeout, check=check, **kw)

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside the namespace (own session, so it can be killed as a group).

        The process is killed when the namespace is torn down if it is still running.
        """
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen([*self.exec_prefix(), *cmd], **kw)
        self._procs.append(p)
        return p

    def popen_python(
        self, args: Sequence[str], env: dict[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[Any]:
        """Run ``sys.executable args...`` inside the namespace with ztcore's src/ importable.

        E.g. ``ns.popen_python(["-m", "ztcore.cli.main", "run", "--home", d, "--port", "9993"])``.
        """
        return self.popen([sys.executable, *args], env=python_env(env), **kw)

    def addresses(self, ifname: str = "eth0") -> list[str]:
        out = self.ip("-o", "-4", "addr", "show", "dev", ifname, check=False).stdout
        return [line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3]

    def ping(self, ip: str, timeout: float = 2.0) -> bool:
        """One ICMP echo to ``ip`` from inside the namespace; True if answered in time.

        Uses ``ping -c1 -W<timeout>`` when installed, else a raw-socket echo in Python (root).
        """
        if shutil.which("ping"):
            cmd = ["ping", "-c1", f"-W{max(1, int(timeout))}", ip]
        else:
            cmd = [sys.executable, "-c", _PY_PING, ip, str(timeout)]
        try:
            return self.run(cmd, timeout=timeout + 10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def pids(self) -> list[int]:
        return _ns_pids(self.name)

    def exists(self) -> bool:
        return self.name in list_namespaces()

    def delete(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        delete_namespace(self.name)
        for p in self._procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()


# An ICMP echo with a raw socket, for machines without iputils ping. argv: ip timeout.
_PY_PING = r"""
import os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF
dst, timeout = sys.argv[1], float(sys.argv[2])
ident = os.getpid() & 0xFFFF
body = struct.pack("!HH", ident, 1) + b"ztcore-interop"
pkt = struct.pack("!BBH", 8, 0, csum(struct.pack("!BBH", 8, 0, 0) + body)) + body
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(pkt, (dst, 0))
deadline = time.monotonic() + timeout
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        sys.exit(1)
    s.settimeout(left)
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        sys.exit(1)
    ihl = (data[0] & 15) * 4
    if addr[0] == dst and data[ihl] == 0 and data[ihl + 4 : ihl + 6] == struct.pack("!H", ident):
        sys.exit(0)
"""


@dataclass
class Host:
    """A host on a :class:`Lan`: its namespace (``.ns`` is the name) and LAN address."""

    netns: Netns
    ip: str
    ifname: str = "eth0"
    index: int = 0

    @property
    def ns(self) -> str:
        return self.netns.name

    def run(self, cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.netns.run(cmd, **kw)

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        return self.netns.popen(cmd, **kw)

    def popen_python(self, args: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        return self.netns.popen_python(args, **kw)

    def ping(self, ip: str, timeout: float = 2.0) -> bool:
        return self.netns.ping(ip, timeout)


@dataclass
class Lan:
    """A bridge namespace plus ``n_hosts`` host namespaces on 10.77.X.0/24 (host i = .i+1).

    Use as a context manager; ``hosts`` is filled on entry and everything is removed on exit.
    """

    n_hosts: int = 2
    subnet: int | None = None  # X in 10.77.X.0/24
    hosts: list[Host] = field(default_factory=list)
    bridge: Netns | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.n_hosts <= 250:
            raise ValueError("n_hosts must be 1..250")
        if self.subnet is None:
            self.subnet = 1 + (_subnet_base + next(_subnet_counter)) % 250
        if not 0 <= self.subnet <= 255:
            raise ValueError("subnet must be 0..255")

    @property
    def prefix(self) -> str:
        return f"10.77.{self.subnet}"

    @property
    def namespaces(self) -> list[Netns]:
        return ([self.bridge] if self.bridge else []) + [h.netns for h in self.hosts]

    def __enter__(self) -> Lan:
        try:
            self.bridge = Netns.create("br")
            self.bridge.ip("link", "add", "br0", "type", "bridge")
            self.bridge.ip("link", "set", "br0", "up")
            for i in range(self.n_hosts):
                ns = Netns.create(f"h{i}")
                ip = f"{self.prefix}.{i + 1}"
                self.hosts.append(Host(netns=ns, ip=ip, index=i))
                # Both veth ends are born inside their namespaces: nothing touches the root one.
                _ip(
                    "link",
                    "add",
                    "eth0",
                    "netns",
                    ns.name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"p{i}",
                    "netns",
                    self.bridge.name,
                )
                self.bridge.ip("link", "set", f"p{i}", "master", "br0")
                self.bridge.ip("link", "set", f"p{i}", "up")
                ns.ip("addr", "add", f"{ip}/24", "dev", "eth0")
                ns.ip("link", "set", "eth0", "up")
        except BaseException:
            try:
                self.close()
            except NetnsError:
                pass  # the original error matters more
            raise
        return self

    def close(self) -> None:
        errors = []
        for ns in reversed(self.namespaces):
            try:
                ns.delete()
            except Exception as e:  # keep tearing down the rest
                errors.append(f"{ns.name}: {e}")
        left = [ns.name for ns in self.namespaces if ns.name in list_namespaces()]
        if left:
            errors.append(f"namespaces still present after teardown: {left}")
        if errors:
            raise NetnsError("; ".join(errors))

    def __exit__(self, *exc: object) -> None:
        self.close()
