"""Parent-side control of real ZeroTier nodes (libzt 1.8.4) and of the libzt 1.4.2 identity oracle.

Owns :class:`LibztNode`: starts ``driver_libzt.py`` under Python 3.9 inside a host namespace,
talks to it with the JSON line protocol, records every core event, and puts the driver's
captured stdout/stderr into every failure message. Also owns the identity oracle helpers
:func:`libzt_generate_identity` / :func:`libzt_validate_identity` (``driver_idtool.py``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .build import HarnessPaths
from .netns import Host, Netns


class LibztError(AssertionError):
    """A libzt node did not do what was asked (carries the driver's captured output)."""


def _nwid_hex(nwid: int | str) -> str:
    return f"{nwid:016x}" if isinstance(nwid, int) else f"{int(nwid, 16):016x}"


class LibztNode:
    """One real ZeroTier node (libzt 1.8.4) running in its own process inside ``host``'s namespace.

    ``planet``: serialized world written to ``<storage>/roots`` before start (libzt reads its
    root set from there); without it the core uses its built-in public planet (unreachable
    from a test namespace, which has no default route).
    """

    def __init__(
        self,
        host: Host | Netns | str,
        storage_dir: str | os.PathLike[str],
        port: int | None = 9993,
        *,
        planet: bytes | None = None,
        harness: HarnessPaths | None = None,
        max_seconds: float = 300.0,
        name: str | None = None,
        start_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(host, Host):
            self.netns = host.netns
        elif isinstance(host, Netns):
            self.netns = host
        else:
            self.netns = Netns(str(host))
        self.host = host
        self.storage = Path(storage_dir).resolve()
        self.port = port
        self.planet = planet
        self.max_seconds = max_seconds
        self.name = name or f"libzt@{self.netns.name}"
        self.start_options = dict(start_options or {})
        self._harness = harness
        self._proc: subprocess.Popen[str] | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.events: list[dict[str, Any]] = []
        self.transcript: list[str] = []  # every stdout line, in order
        self.stderr_lines: list[str] = []
        self._threads: list[threading.Thread] = []
        self.node_id: str | None = None

    # ------------------------------------------------------------------ process plumbing

    def _spawn(self) -> None:
        from . import require_harness  # late: keeps this module importable without pytest

        paths = self._harness or require_harness()
        self._proc = self.netns.popen(
            [
                str(paths.node_python),
                "-u",
                str(paths.driver_libzt),
                "--max-seconds",
                str(self.max_seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=paths.node_env(),
        )
        self._start_readers()

    def _start_readers(self) -> None:
        assert self._proc is not None
        for target, stream in (
            (self._read_stdout, self._proc.stdout),
            (self._read_stderr, self._proc.stderr),
        ):
            t = threading.Thread(target=target, args=(stream,), daemon=True, name=f"{self.name}-reader")
            t.start()
            self._threads.append(t)

    def _read_stdout(self, stream: Any) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self._cond:
                self.transcript.append(line)
                try:
                    msg = json.loads(line)
                except ValueError:
                    msg = None
                if isinstance(msg, dict):
                    kind = msg.get("type")
                    if kind == "reply" and isinstance(msg.get("id"), int):
                        self._replies[msg["id"]] = msg
                    elif kind in ("event", "ready"):
                        self.events.append(msg)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.stderr_lines.append(line.rstrip("\n"))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def diagnostics(self, tail: int = 60) -> str:
        with self._cond:
            out = self.transcript[-tail:]
            err = self.stderr_lines[-tail:]
        rc = None if self._proc is None else self._proc.poll()
        return (
            f"[{self.name} ns={self.netns.name} storage={self.storage} node_id={self.node_id} exit={rc}]\n"
            f"--- driver stdout (last {len(out)} lines)\n" + "\n".join(out) + "\n"
            f"--- driver stderr (last {len(err)} lines)\n" + "\n".join(err)
        )

    def fail(self, message: str) -> LibztError:
        return LibztError(f"{message}\n{self.diagnostics()}")

    def request(self, cmd: str, timeout: float = 15.0, **args: Any) -> dict[str, Any]:
        """Send one command and wait for its reply; raises :class:`LibztError` unless ``ok``."""
        if not self.running:
            raise self.fail(f"{cmd}: driver process is not running")
        assert self._proc is not None and self._proc.stdin is not None
        rid = next(self._ids)
        line = json.dumps({"cmd": cmd, "id": rid, **args})
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise self.fail(f"{cmd}: cannot write to driver: {e}") from e
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.fail(f"{cmd}: no reply within {timeout:.1f}s")
                if self._proc.poll() is not None:
                    self._cond.wait(0.2)  # let the reader drain the last lines
                    if rid not in self._replies:
                        raise self.fail(f"{cmd}: driver exited (code {self._proc.returncode})")
                    break
                self._cond.wait(min(left, 0.5))
            reply = self._replies.pop(rid)
        if not reply.get("ok"):
            raise self.fail(f"{cmd} {args!r} failed: {reply.get('error')}\n{reply.get('traceback', '')}")
        return reply

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25
    ) -> Any:
        """Poll ``predicate`` until it returns something truthy; raise with diagnostics on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise self.fail(f"timed out after {timeout:.1f}s waiting for {what}")
            if not self.running:
                raise self.fail(f"driver exited while waiting for {what}")
            time.sleep(interval)

    def wait_event(
        self, name: str, timeout: float, match: Callable[[dict[str, Any]], bool] | None = None, since: int = 0
    ) -> dict[str, Any]:
        """First event ``name`` (e.g. ``ZTS_EVENT_NODE_ONLINE``) at index >= ``since`` matching ``match``."""

        def find() -> dict[str, Any] | None:
            with self._cond:
                for ev in self.events[since:]:
                    if ev.get("name") == name and (match is None or match(ev)):
                        return ev
            return None

        return self.wait_for(find, timeout, f"event {name}", interval=0.1)

    # ------------------------------------------------------------------ node API

    def start(self, timeout: float = 30.0) -> str:
        """Start the driver and the node; returns the node id (10 hex digits)."""
        if self._proc is not None:
            raise self.fail("start: already started")
        self.storage.mkdir(parents=True, exist_ok=True)
        if self.planet is not None:
            (self.storage / "roots").write_bytes(self.planet)
        self._spawn()
        self.wait_for(
            lambda: any(e.get("type") == "ready" for e in list(self.events)), timeout, "driver ready"
        )
        args: dict[str, Any] = {"storage": str(self.storage), "timeout_s": timeout, **self.start_options}
        if self.port is not None:
            args["port"] = self.port
        reply = self.request("start", timeout=timeout + 5, **args)
        self.node_id = reply["node_id"]
        return reply["node_id"]

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def is_online(self) -> bool:
        return bool(self.status()["online"])

    def wait_online(self, timeout: float = 30.0) -> None:
        self.wait_for(self.is_online, timeout, "node online (a root answered)")

    def identity(self) -> str:
        """The node's identity as the core holds it (secret form)."""
        return self.request("identity")["identity"]

    def peers(self) -> list[dict[str, Any]]:
        """Peers as the core last reported them: address, version, latency, role, paths, last_event.

        libzt 1.8 has no peer listing call and stubs its path queries; it reports peers through
        ZTS_EVENT_PEER_* events (DIRECT, RELAY, UNREACHABLE, PATH_DISCOVERED, PATH_DEAD) from
        a periodic scan. ``paths`` holds the first physical path (``ip/port``) the event carried.
        """
        return self.request("peers")["peers"]

    def peer(self, address: str) -> dict[str, Any] | None:
        for p in self.peers():
            if p["address"] == address.lower():
                return p
        return None

    def wait_peer(self, address: str, timeout: float = 30.0, direct: bool = True) -> dict[str, Any]:
        """Wait until the core reports ``address`` as a peer (directly reachable if ``direct``)."""

        def check() -> dict[str, Any] | None:
            p = self.peer(address)
            if p and (not direct or (p.get("last_event") == "ZTS_EVENT_PEER_DIRECT" and p.get("paths"))):
                return p
            return None

        return self.wait_for(check, timeout, f"peer {address}{' with a direct path' if direct else ''}")

    def join(self, nwid: int | str) -> None:
        self.request("join", nwid=_nwid_hex(nwid))

    def leave(self, nwid: int | str) -> None:
        self.request("leave", nwid=_nwid_hex(nwid))

    def network(self, nwid: int | str) -> dict[str, Any]:
        """status (OK, REQUESTING_CONFIGURATION, ACCESS_DENIED, NOT_FOUND, ...), transport_ready,
        name, mac, mtu, net_type, addrs, routes."""
        return self.request("net", nwid=_nwid_hex(nwid))

    def wait_network_ok(
        self, nwid: int | str, timeout: float = 30.0, need_transport: bool = True
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            n = self.network(nwid)
            if n["status"] == "OK" and (not need_transport or n["transport_ready"]):
                return n
            return None

        return self.wait_for(check, timeout, f"network {_nwid_hex(nwid)} OK")

    def addresses(self, nwid: int | str) -> list[str]:
        """Addresses assigned to this node on the network, as plain IP strings (no prefix length)."""
        return self.network(nwid).get("addrs", [])

    # -- sockets on the node's virtual network stack (payloads are bytes); exercised end to end
    # on a ztcore-controlled network by test_vl2_interop.py. On a 1.8 ad-hoc network
    # (ff<start><end>000000, 6plane IPv6 only) lwIP answers EHOSTUNREACH.

    def udp_bind(self, port: int = 0, ip: str = "0.0.0.0") -> int:
        return self.request("udp_bind", port=port, ip=ip)["fd"]

    def udp_sendto(self, fd: int, ip: str, port: int, data: bytes, timeout: float = 5.0) -> int:
        r = self.request(
            "udp_sendto", timeout=timeout + 5, fd=fd, ip=ip, port=port, data_hex=data.hex(), timeout_s=timeout
        )
        return r["sent"]

    def udp_recvfrom(self, fd: int, timeout: float = 5.0, max_size: int = 65536) -> tuple[bytes, str, int]:
        r = self.request("udp_recvfrom", timeout=timeout + 5, fd=fd, max=max_size, timeout_s=timeout)
        return bytes.fromhex(r["data_hex"]), r["ip"], r["port"]

    def tcp_listen(self, port: int, ip: str = "0.0.0.0") -> int:
        return self.request("tcp_listen", port=port, ip=ip)["fd"]

    def tcp_accept(self, fd: int, timeout: float = 10.0) -> tuple[int, str, int]:
        r = self.request("tcp_accept", timeout=timeout + 5, fd=fd, timeout_s=timeout)
        return r["fd"], r["ip"], r["port"]

    def tcp_connect(self, ip: str, port: int, timeout: float = 10.0) -> int:
        return self.request("tcp_connect", timeout=timeout + 5, ip=ip, port=port, timeout_s=timeout)["fd"]

    def send(self, fd: int, data: bytes, timeout: float = 10.0) -> int:
        return self.request("send", timeout=timeout + 5, fd=fd, data_hex=data.hex(), timeout_s=timeout)[
            "sent"
        ]

    def recv(self, fd: int, max_size: int = 65536, timeout: float = 10.0, exact: bool = False) -> bytes:
        r = self.request("recv", timeout=timeout + 5, fd=fd, max=max_size, exact=exact, timeout_s=timeout)
        return bytes.fromhex(r["data_hex"])

    def send_random(self, fd: int, nbytes: int, timeout: float = 60.0, chunk: int = 65536) -> dict[str, Any]:
        """Send ``nbytes`` random bytes generated inside the driver: ``sent``, ``sha256``, ``seconds``."""
        return self.request(
            "send_random", timeout=timeout + 10, fd=fd, nbytes=nbytes, chunk=chunk, timeout_s=timeout
        )

    def recv_hash(self, fd: int, nbytes: int, timeout: float = 60.0) -> dict[str, Any]:
        """Receive ``nbytes`` (less on EOF) inside the driver: ``received``, ``sha256``, ``seconds``."""
        return self.request("recv_hash", timeout=timeout + 10, fd=fd, nbytes=nbytes, timeout_s=timeout)

    def compute_addrs(self, nwid: int | str, node_id: str) -> dict[str, str]:
        """libzt's own ``zts_addr_compute_rfc4193_str`` / ``_6plane_str`` for (network, node)."""
        r = self.request("compute_addrs", nwid=_nwid_hex(nwid), node_id=node_id)
        return {"rfc4193": r["rfc4193"], "6plane": r["6plane"]}

    def icmp_echo(
        self,
        ip: str,
        *,
        ident: int = 0x5A7C,
        seq: int = 1,
        payload: bytes = b"",
        timeout: float = 5.0,
        method: str = "auto",
    ) -> dict[str, Any]:
        """One ICMP echo request to ``ip`` originated by the node's lwIP stack (see the driver).

        Returns ``replied``, ``method`` (``raw_socket`` or ``lwip_ip``), ``raw_socket_error``
        and, when answered, ``rtt_ms``, ``src``, ``dst``, ``ttl``, ``icmp_type``, ``icmp_code``, ``ident``,
        ``seq``, ``payload_hex``, ``checksum_ok``.
        """
        return self.request(
            "icmp_echo",
            timeout=timeout + 10,
            ip=ip,
            ident=ident,
            seq=seq,
            payload_hex=payload.hex(),
            timeout_s=timeout,
            method=method,
        )

    def core_network(self, nwid: int | str) -> dict[str, Any]:
        """The core's own view of a network (``ZT_Node_networkConfig``): ``joined``, ``status``,
        ``name``, ``netconf_revision``, ``assigned_addr_count``.

        Unlike :meth:`network` (libzt's copy from the core's last config callback), this shows
        ACCESS_DENIED / NOT_FOUND answers, which the 1.8 core records without a callback.
        """
        return self.request("core_net", nwid=_nwid_hex(nwid))

    def close_socket(self, fd: int) -> None:
        self.request("close", fd=fd)

    # ------------------------------------------------------------------ shutdown

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the node and the driver; kill it if it does not exit in time. Idempotent."""
        p = self._proc
        if p is None:
            return
        if p.poll() is None:
            try:
                self.request("stop", timeout=timeout)
            except LibztError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        for t in self._threads:
            t.join(timeout=2)
        for s in (p.stdin, p.stdout, p.stderr):
            try:
                if s is not None:
                    s.close()
            except OSError:
                pass

    def __enter__(self) -> LibztNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- identity oracle


def _idtool(args: list[str], stdin: str | None = None, timeout: float = 120.0) -> Any:
    from . import require_harness

    paths = require_harness()
    out = subprocess.run(
        [str(paths.idtool_python), str(paths.driver_idtool), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=paths.idtool_env(),
    )
    if out.returncode != 0:
        raise LibztError(f"identity oracle {args} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout)


def libzt_generate_identities(count: int) -> list[tuple[str, str]]:
    """``count`` identities from the real core's ``zts_id_new``: (secret string, public string)."""
    secrets = _idtool(["generate", str(count)])
    return [(s, ":".join(s.split(":")[:3])) for s in secrets]


def libzt_generate_identity() -> tuple[str, str]:
    return libzt_generate_identities(1)[0]


def libzt_validate_identities(identities: Sequence[str]) -> list[bool]:
    return [bool(v) for v in _idtool(["validate"], stdin=json.dumps(list(identities)))]


def libzt_validate_identity(secret_or_public: str) -> bool:
    """The real core's ``zts_id_pair_is_valid``.

    Observed behaviour of libzt 1.4.2: it checks the string parses and that the address is
    derived from the public keys (the memory-hard hash); it does not check that a private
    part matches the public one, so tampering with the private part still passes.
    """
    return libzt_validate_identities([secret_or_public])[0]
