"""Parent-side control of a ztcore node running in a test namespace (``driver_ztcore.py``).

:class:`ZtcoreNode` reuses :class:`LibztNode`'s process plumbing and JSON line protocol;
only how the driver is started and the node-specific commands differ.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from .libzt_node import LibztNode, _nwid_hex
from .netns import python_env

DRIVER = Path(__file__).with_name("driver_ztcore.py")


class ZtcoreNode(LibztNode):
    """One ztcore node (home directory ``storage_dir``) in its own process inside ``host``'s
    namespace. ``controller=True`` hosts the embedded controller; ``api_port`` serves the
    local JSON API on the namespace's 127.0.0.1. ``record_frames=False`` leaves out the
    driver's frame recorder (the ``frames`` command), a frame listener that, like any,
    keeps the node's ICMP echo offload off (ztcore.lane): benches measure without it."""

    def __init__(
        self,
        host: Any,
        storage_dir: Any,
        port: int | None = 9993,
        *,
        planet: bytes | None = None,
        bind: list[str] | None = None,
        controller: bool = False,
        api_port: int | None = None,
        record_frames: bool = True,
        max_seconds: float = 300.0,
        name: str | None = None,
    ) -> None:
        super().__init__(host, storage_dir, port, planet=None, max_seconds=max_seconds, name=name)
        self.name = name or f"ztcore@{self.netns.name}"
        self.world = planet
        self.start_options = {
            "home": str(self.storage),
            "bind": bind,
            "controller": controller,
            "api_port": api_port,
            "record_frames": record_frames,
            "planet_hex": planet.hex() if planet else None,
        }

    def _spawn(self) -> None:
        # The JSON API listens on the namespace's loopback, which starts down.
        self.netns.ip("link", "set", "lo", "up")
        self._proc = self.netns.popen(
            [sys.executable, "-u", str(DRIVER), "--max-seconds", str(self.max_seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=python_env(),
        )
        self._start_readers()

    def is_online(self) -> bool:
        return bool(self.status()["online"])

    def peers(self) -> list[dict[str, Any]]:
        """zerotier-one /peer JSON plus ``direct`` and ``protoVersion``."""
        return self.request("peers")["peers"]

    def wait_peer(self, address: str, timeout: float = 30.0, direct: bool = True) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            p = self.peer(address)
            return p if p and (p["direct"] or not direct) else None

        return self.wait_for(check, timeout, f"peer {address}{' with a direct path' if direct else ''}")

    def stats(self) -> dict[str, Any]:
        return self.request("stats")

    def echo(self, address: str, timeout: float = 10.0) -> int:
        return int(self.request("echo", timeout=timeout + 5, address=address, timeout_s=timeout)["rtt_ms"])

    def join(self, nwid: int | str) -> None:
        self.request("join", nwid=_nwid_hex(nwid))

    def network(self, nwid: int | str) -> dict[str, Any]:
        """zerotier-one /network JSON of this network (raises if not joined)."""
        info = self.request("net", nwid=_nwid_hex(nwid))["network"]
        if info is None:
            raise self.fail(f"not a member of {_nwid_hex(nwid)}")
        return info

    def wait_network_ok(
        self, nwid: int | str, timeout: float = 30.0, need_transport: bool = True
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            n = self.network(nwid)
            return n if n["status"] == "OK" and n["assignedAddresses"] else None

        return self.wait_for(check, timeout, f"network {_nwid_hex(nwid)} OK with addresses")

    def addresses(self, nwid: int | str) -> list[str]:
        return [a.split("/")[0] for a in self.network(nwid)["assignedAddresses"]]

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A request to this node's local JSON API, made from inside its namespace."""
        r = self.request("api", method=method, path=path, body=body)
        return r["status"], r["json"]

    def ping(self, nwid: int | str, ip: str, timeout: float = 5.0) -> int | None:
        r = self.request("ping", timeout=timeout + 5, nwid=_nwid_hex(nwid), ip=ip, timeout_s=timeout)
        return r["rtt_ms"]

    def udp_bind(self, port: int = 0, ip: str = "", *, nwid: int | str = 0, v6: bool = False) -> int:  # type: ignore[override]
        return self.request("udp_bind", nwid=_nwid_hex(nwid), port=port, v6=v6)["fd"]
