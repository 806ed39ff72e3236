"""Driver for one real ZeroTier node (libzt 1.8.4), run by Python 3.9 inside a test namespace.

This script is NOT imported by the test suite: the parent (``libzt_node.LibztNode``) starts it
as ``ip netns exec NS <venv python> -u driver_libzt.py`` with the LinuxNetLink shim in
``LD_PRELOAD``. It owns exactly one libzt node (libzt allows one per process) and speaks a
line-based JSON protocol:

* stdin, one object per line: ``{"cmd": "...", "id": <any>, ...arguments}``
* stdout, one object per line: replies ``{"type": "reply", "id", "cmd", "ok", ...}`` (or
  ``"ok": false, "error": "..."``), core events ``{"type": "event", "name": "ZTS_EVENT_...", ...}``
  and ``{"type": "log", ...}``.

Commands: hello, start, status, peers, join, leave, net, addrs, udp_bind, udp_sendto,
udp_recvfrom, tcp_listen, tcp_accept, tcp_connect, send, recv, send_random, recv_hash,
compute_addrs, icmp_echo, core_net, close, stop, and bench_udp_blast, bench_udp_sink,
bench_tcp_blast, bench_tcp_sink (timed runs for bench/bench_vs_libzt.py).
Byte payloads travel as hex. Network ids and node ids travel as lower-case hex strings.

It must stay Python 3.9 compatible and import nothing from ztcore. Every blocking operation
has a timeout; a watchdog ends the process after ``--max-seconds``; stdin EOF stops the node.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback

import libzt

_out_lock = threading.Lock()


def _private_channel():
    """Move the protocol off fds 0 and 1 before libzt starts; return (commands in, replies out).

    The C library and SWIG may print to fd 1, which would corrupt the JSON stream, so fd 1
    becomes a copy of stderr; fd 0 becomes the read end of a pipe nobody writes to, so nothing
    but this script can consume the commands.
    """
    cmd_in = os.fdopen(os.dup(0), "r", encoding="utf-8", newline="\n")
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    quiet_r, quiet_w = os.pipe()
    os.dup2(quiet_r, 0)
    os.dup2(2, 1)
    globals()["_quiet_w"] = quiet_w  # keep the write end open forever
    return cmd_in, out


_cmd_in, _real_stdout = _private_channel()
sys.stdout = sys.stderr


def emit(obj: dict) -> None:
    """Write one protocol line; stdout is shared by the command loop and the event thread."""
    line = json.dumps(obj, sort_keys=True)
    with _out_lock:
        _real_stdout.write(line + "\n")
        _real_stdout.flush()


def log(msg: str) -> None:
    emit({"type": "log", "msg": msg, "t": time.time()})


# Once the node runs, every call goes through ctypes on the very same (already loaded) shared
# object, for two reasons: the SWIG wrapper cannot pass C out-parameters (char *, unsigned *),
# and SWIG calls keep the GIL while they block on libzt's internal locks, which deadlocks with
# libzt's event thread waiting for the GIL to deliver an event. ctypes releases the GIL.
_lib = ctypes.CDLL(libzt._libzt.__file__)
_u64 = ctypes.c_uint64
_lib.zts_core_query_addr_count.argtypes = [_u64]
_lib.zts_core_query_addr.argtypes = [_u64, ctypes.c_uint, ctypes.c_char_p, ctypes.c_uint]
_lib.zts_core_query_route_count.argtypes = [_u64]
_lib.zts_core_query_route.argtypes = [
    _u64,
    ctypes.c_uint,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_uint,
    ctypes.POINTER(ctypes.c_uint16),
    ctypes.POINTER(ctypes.c_uint16),
]
_lib.zts_net_get_name.argtypes = [_u64, ctypes.c_char_p, ctypes.c_uint]
_lib.zts_net_get_mac_str.argtypes = [_u64, ctypes.c_char_p, ctypes.c_uint]
_lib.zts_net_get_status.argtypes = [_u64]
_lib.zts_net_get_type.argtypes = [_u64]
_lib.zts_net_get_mtu.argtypes = [_u64]
_lib.zts_net_transport_is_ready.argtypes = [_u64]
_lib.zts_net_join.argtypes = [_u64]
_lib.zts_addr_get_str.argtypes = [_u64, ctypes.c_uint, ctypes.c_char_p, ctypes.c_uint]
_lib.zts_net_leave.argtypes = [_u64]
_lib.zts_node_get_id.restype = _u64
_lib.zts_node_get_id_pair.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)]
_lib.zts_init_set_roots.argtypes = [ctypes.c_char_p, ctypes.c_uint]
_lib.zts_util_ipstr_to_saddr.argtypes = [
    ctypes.c_char_p,
    ctypes.c_ushort,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint32),
]
_lib.zts_util_ntop.argtypes = [
    ctypes.c_void_p,
    ctypes.c_uint32,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_ushort),
]
_lib.zts_bsd_sendto.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_uint32,
]
_lib.zts_bsd_sendto.restype = ctypes.c_ssize_t
_lib.zts_bsd_recvfrom.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint32),
]
_lib.zts_bsd_recvfrom.restype = ctypes.c_ssize_t
_lib.zts_bsd_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
_lib.zts_bsd_send.restype = ctypes.c_ssize_t
_lib.zts_bsd_recv.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
_lib.zts_bsd_recv.restype = ctypes.c_ssize_t
_lib.zts_bsd_bind.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
_lib.zts_bsd_connect.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
_lib.zts_bsd_accept.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]

_EVENT_NAMES = {
    getattr(libzt, n): n
    for n in dir(libzt)
    if n.startswith("ZTS_EVENT_") and isinstance(getattr(libzt, n), int)
}
_NET_STATUS_NAMES = {
    getattr(libzt, n): n[len("ZTS_NETWORK_STATUS_") :]
    for n in dir(libzt)
    if n.startswith("ZTS_NETWORK_STATUS_")
}
_ROLE_NAMES = {
    libzt.ZTS_PEER_ROLE_LEAF: "LEAF",
    libzt.ZTS_PEER_ROLE_MOON: "MOON",
    libzt.ZTS_PEER_ROLE_PLANET: "PLANET",
}
_SADDR_LEN = 128  # generous for zts_sockaddr_storage


class CommandError(Exception):
    """A command failed in a way the parent should see as ``ok: false``."""


def _hex10(v: int) -> str:
    return f"{v:010x}"


def _hex16(v: int) -> str:
    return f"{v:016x}"


def _nwid(cmd: dict) -> int:
    try:
        return int(str(cmd["nwid"]), 16)
    except (KeyError, ValueError) as e:
        raise CommandError("bad or missing nwid: {!r}".format(cmd.get("nwid"))) from e


def _zts_errno() -> int:
    return int(libzt.cvar.zts_errno)


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise CommandError(f"{what} failed: rc={rc} zts_errno={_zts_errno()}")
    return rc


def _saddr(ip: str, port: int):
    buf = ctypes.create_string_buffer(_SADDR_LEN)
    ln = ctypes.c_uint32(_SADDR_LEN)
    _check(_lib.zts_util_ipstr_to_saddr(ip.encode(), port, buf, ctypes.byref(ln)), "ipstr_to_saddr")
    return buf, ln.value


def _ntop(buf, ln: int):
    s = ctypes.create_string_buffer(64)
    port = ctypes.c_ushort(0)
    if _lib.zts_util_ntop(buf, ln, s, 64, ctypes.byref(port)) >= 0:
        return s.value.decode(), port.value
    # zts_util_ntop refuses some lengths accept/recvfrom report; read lwIP's layout directly.
    text = _sockaddr_str(ctypes.addressof(buf))
    if text is None:
        return None, None
    ip, _, p = text.rpartition("/")
    return ip, int(p)


# ---------------------------------------------------------------- state kept from events

_state_lock = threading.Lock()
_peers: dict[int, dict] = {}  # peer id -> last peer info seen in an event
_networks: dict[int, dict] = {}  # network id -> last network info seen in an event
_online = threading.Event()


def _sockaddr_str(ptr: int):
    """``ip/port`` (ZeroTier's notation) from an lwIP-layout zts_sockaddr at ``ptr``, or None."""
    raw = ctypes.string_at(ptr, 28)
    port = int.from_bytes(raw[2:4], "big")
    if raw[1] == libzt.ZTS_AF_INET:
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}/{port}"
    if raw[1] == libzt.ZTS_AF_INET6:
        return f"{socket.inet_ntop(socket.AF_INET6, raw[8:24])}/{port}"
    return None


def _peer_info(p) -> dict:
    d = {
        "address": _hex10(p.peer_id),
        "version": f"{p.ver_major}.{p.ver_minor}.{p.ver_rev}",
        "latency": p.latency,
        "role": _ROLE_NAMES.get(p.role, str(p.role)),
    }
    # libzt 1.8.4 leaves path_count at 0 and stubs zts_core_query_path*, but it does copy the
    # peer's paths into the event: the first one is readable through the SWIG pointer.
    paths = []
    try:
        first = _sockaddr_str(int(p.paths.address))
        if first:
            paths.append(first)
    except Exception:
        log("cannot read peer path: " + traceback.format_exc())
    d["paths"] = paths
    return d


def _net_info(n) -> dict:
    d = {
        "nwid": _hex16(n.net_id),
        "status": _NET_STATUS_NAMES.get(n.status, str(n.status)),
        "net_type": n.type,
        "mtu": n.mtu,
        "netconf_rev": n.netconf_rev,
        "assigned_addr_count": n.assigned_addr_count,
        "route_count": n.route_count,
    }
    try:
        d["name"] = n.name if isinstance(n.name, str) else str(n.name)
        d["mac"] = f"{n.mac:012x}"
    except Exception:  # name/mac conversion is best effort
        pass
    return d


class _Handler(libzt.PythonDirectorCallbackClass):
    """Receives core events on libzt's callback thread and forwards them as JSON lines."""

    def on_zerotier_event(self, msg):  # noqa: N802 - name fixed by libzt
        try:
            code = msg.event_code
            ev = {"type": "event", "code": code, "name": _EVENT_NAMES.get(code, str(code)), "t": time.time()}
            name = ev["name"]
            if name.startswith("ZTS_EVENT_NODE") and msg.node is not None:
                n = msg.node
                ev["node_id"] = _hex10(n.node_id)
                ev["port"] = n.port_primary
                ev["version"] = f"{n.ver_major}.{n.ver_minor}.{n.ver_rev}"
                if code == libzt.ZTS_EVENT_NODE_ONLINE:
                    _online.set()
                elif code in (libzt.ZTS_EVENT_NODE_OFFLINE, libzt.ZTS_EVENT_NODE_DOWN):
                    _online.clear()
            elif name.startswith("ZTS_EVENT_NETWORK") and msg.network is not None:
                ev["network"] = _net_info(msg.network)
                with _state_lock:
                    _networks[msg.network.net_id] = ev["network"]
            elif name.startswith("ZTS_EVENT_PEER") and msg.peer is not None:
                info = _peer_info(msg.peer)
                info["last_event"] = name
                with _state_lock:
                    _peers[msg.peer.peer_id] = info
                ev["peer"] = info
            elif name.startswith("ZTS_EVENT_ADDR") and msg.addr is not None:
                ev["nwid"] = _hex16(msg.addr.net_id)
            emit(ev)
        except Exception:
            emit({"type": "log", "msg": "event handler error: " + traceback.format_exc()})


# ---------------------------------------------------------------- commands

_handler = None
_started = False
_watchdog_deadline = 0.0


def cmd_hello(cmd: dict) -> dict:
    return {"libzt": getattr(libzt, "__version__", "?"), "pid": os.getpid(), "python": sys.version.split()[0]}


def cmd_start(cmd: dict) -> dict:
    global _handler, _started
    if _started:
        raise CommandError("node already started (one libzt node per process)")
    storage = cmd.get("storage")
    if not storage:
        raise CommandError("start needs 'storage'")
    os.makedirs(storage, exist_ok=True)
    _check(libzt.zts_init_from_storage(storage), "zts_init_from_storage")
    if cmd.get("roots_hex"):
        roots = bytes.fromhex(cmd["roots_hex"])
        _check(_lib.zts_init_set_roots(roots, len(roots)), "zts_init_set_roots")
    _handler = _Handler()
    _check(libzt.zts_init_set_event_handler(_handler), "zts_init_set_event_handler")
    if cmd.get("port") is not None:
        _check(libzt.zts_init_set_port(int(cmd["port"])), "zts_init_set_port")
    for key, fn in (
        ("peer_cache", libzt.zts_init_allow_peer_cache),
        ("net_cache", libzt.zts_init_allow_net_cache),
        ("roots_cache", libzt.zts_init_allow_roots_cache),
        ("secondary_port", libzt.zts_init_allow_secondary_port),
        ("port_mapping", libzt.zts_init_allow_port_mapping),
    ):
        if key in cmd:
            _check(fn(1 if cmd[key] else 0), "zts_init_allow_" + key)
    _check(_lib.zts_node_start(), "zts_node_start")
    _started = True
    # The identity (and so the node id) exists once the service thread has built the node.
    deadline = time.time() + float(cmd.get("timeout_s", 15))
    while time.time() < deadline:
        nid = _lib.zts_node_get_id()
        if nid not in (0, 0xFFFFFFFFFFFFFFFF) and nid < (1 << 40):
            return {"node_id": _hex10(nid), "port": _lib.zts_node_get_port()}
        time.sleep(0.05)
    raise CommandError("node did not report an id within the timeout")


def _require_started() -> None:
    if not _started:
        raise CommandError("node not started")


def cmd_status(cmd: dict) -> dict:
    _require_started()
    nid = _lib.zts_node_get_id()
    return {
        "node_id": _hex10(nid) if nid < (1 << 40) else None,
        "online": bool(_lib.zts_node_is_online()),
        "port": _lib.zts_node_get_port(),
    }


def cmd_identity(cmd: dict) -> dict:
    _require_started()
    buf = ctypes.create_string_buffer(libzt.ZTS_ID_STR_BUF_LEN)
    ln = ctypes.c_uint(libzt.ZTS_ID_STR_BUF_LEN)
    _check(_lib.zts_node_get_id_pair(buf, ctypes.byref(ln)), "zts_node_get_id_pair")
    return {"identity": buf.value.decode()}


def cmd_peers(cmd: dict) -> dict:
    """Peers as last reported by core events (libzt 1.8 has no peer listing call)."""
    _require_started()
    with _state_lock:
        known = [dict(v) for v in _peers.values()]
    return {"peers": sorted(known, key=lambda d: d["address"])}


def cmd_join(cmd: dict) -> dict:
    _require_started()
    _check(_lib.zts_net_join(_nwid(cmd)), "zts_net_join")
    return {}


def cmd_leave(cmd: dict) -> dict:
    _require_started()
    _check(_lib.zts_net_leave(_nwid(cmd)), "zts_net_leave")
    return {}


def _addrs(nwid: int) -> list:
    out = []
    n = _lib.zts_core_query_addr_count(nwid)
    for i in range(max(n, 0)):
        s = ctypes.create_string_buffer(128)
        if _lib.zts_core_query_addr(nwid, i, s, 128) >= 0:
            out.append(s.value.decode())
    return out


def _routes(nwid: int) -> list:
    out = []
    n = _lib.zts_core_query_route_count(nwid)
    for i in range(max(n, 0)):
        t = ctypes.create_string_buffer(128)
        v = ctypes.create_string_buffer(128)
        flags = ctypes.c_uint16(0)
        metric = ctypes.c_uint16(0)
        if _lib.zts_core_query_route(nwid, i, t, v, 128, ctypes.byref(flags), ctypes.byref(metric)) >= 0:
            out.append(
                {
                    "target": t.value.decode(),
                    "via": v.value.decode(),
                    "flags": flags.value,
                    "metric": metric.value,
                }
            )
    return out


def cmd_net(cmd: dict) -> dict:
    _require_started()
    nwid = _nwid(cmd)
    st = _lib.zts_net_get_status(nwid)
    d = {
        "nwid": _hex16(nwid),
        "status_code": st,
        "status": _NET_STATUS_NAMES.get(st, str(st)),
        "transport_ready": _lib.zts_net_transport_is_ready(nwid) == 1,
        "net_type": _lib.zts_net_get_type(nwid),
        "mtu": _lib.zts_net_get_mtu(nwid),
    }
    name = ctypes.create_string_buffer(128)
    rc = _lib.zts_net_get_name(nwid, name, 128)
    if rc >= 0 and name.value:
        d["name"] = name.value.decode(errors="replace")
    else:  # zts_net_get_name fails in 1.8.4; the network events carry the name
        with _state_lock:
            if "name" in _networks.get(nwid, {}):
                d["name"] = _networks[nwid]["name"]
    mac = ctypes.create_string_buffer(64)
    if _lib.zts_net_get_mac_str(nwid, mac, 64) >= 0:
        d["mac"] = mac.value.decode()
    if _lib.zts_core_lock_obtain() == libzt.ZTS_ERR_OK:
        try:
            d["addrs"] = _addrs(nwid)
            d["routes"] = _routes(nwid)
        finally:
            _lib.zts_core_lock_release()
    return d


def cmd_addrs(cmd: dict) -> dict:
    """Addresses assigned to this node on a network (as the lwIP stack sees them)."""
    _require_started()
    nwid = _nwid(cmd)
    out = []
    for fam in (libzt.ZTS_AF_INET, libzt.ZTS_AF_INET6):
        s = ctypes.create_string_buffer(128)
        if _lib.zts_addr_get_str(nwid, fam, s, 128) == libzt.ZTS_ERR_OK and s.value:
            out.append(s.value.decode())
    return {"addrs": out}


# ---- sockets (plain BSD calls on libzt's lwIP stack; non-blocking + polling = timeouts)


def _set_nonblocking(fd: int) -> None:
    flags = _lib.zts_bsd_fcntl(fd, libzt.ZTS_F_GETFL, 0)
    _lib.zts_bsd_fcntl(fd, libzt.ZTS_F_SETFL, flags | libzt.ZTS_O_NONBLOCK)


def _retry(fn, timeout: float, what: str):
    deadline = time.time() + timeout
    while True:
        rc = fn()
        if rc >= 0:
            return rc
        err = _zts_errno()
        if err not in (libzt.ZTS_EAGAIN, libzt.ZTS_EINPROGRESS, libzt.ZTS_EALREADY):
            raise CommandError(f"{what} failed: rc={rc} zts_errno={err}")
        if time.time() >= deadline:
            raise CommandError(f"{what} timed out after {timeout:.1f}s")
        time.sleep(0.01)


def _family(ip: str) -> int:
    return libzt.ZTS_AF_INET6 if ":" in ip else libzt.ZTS_AF_INET


def cmd_udp_bind(cmd: dict) -> dict:
    _require_started()
    ip = cmd.get("ip", "0.0.0.0")
    fd = _check(_lib.zts_bsd_socket(_family(ip), libzt.ZTS_SOCK_DGRAM, 0), "zts_bsd_socket")
    sa, ln = _saddr(ip, int(cmd.get("port", 0)))
    _check(_lib.zts_bsd_bind(fd, sa, ln), "zts_bsd_bind")
    _set_nonblocking(fd)
    return {"fd": fd}


def cmd_udp_sendto(cmd: dict) -> dict:
    _require_started()
    fd = int(cmd["fd"])
    data = bytes.fromhex(cmd.get("data_hex", ""))
    sa, ln = _saddr(cmd["ip"], int(cmd["port"]))
    n = _retry(
        lambda: _lib.zts_bsd_sendto(fd, data, len(data), 0, sa, ln), float(cmd.get("timeout_s", 5)), "sendto"
    )
    return {"sent": n}


def cmd_udp_recvfrom(cmd: dict) -> dict:
    _require_started()
    fd = int(cmd["fd"])
    size = int(cmd.get("max", 65536))
    buf = ctypes.create_string_buffer(size)
    sa = ctypes.create_string_buffer(_SADDR_LEN)
    ln = ctypes.c_uint32(_SADDR_LEN)

    def once():
        ln.value = _SADDR_LEN
        return _lib.zts_bsd_recvfrom(fd, buf, size, 0, sa, ctypes.byref(ln))

    n = _retry(once, float(cmd.get("timeout_s", 5)), "recvfrom")
    ip, port = _ntop(sa, ln.value)
    return {"data_hex": buf.raw[:n].hex(), "ip": ip, "port": port}


def cmd_tcp_listen(cmd: dict) -> dict:
    _require_started()
    ip = cmd.get("ip", "0.0.0.0")
    fd = _check(_lib.zts_bsd_socket(_family(ip), libzt.ZTS_SOCK_STREAM, 0), "zts_bsd_socket")
    sa, ln = _saddr(ip, int(cmd["port"]))
    _check(_lib.zts_bsd_bind(fd, sa, ln), "zts_bsd_bind")
    _check(_lib.zts_bsd_listen(fd, int(cmd.get("backlog", 4))), "zts_bsd_listen")
    _set_nonblocking(fd)
    return {"fd": fd}


def cmd_tcp_accept(cmd: dict) -> dict:
    _require_started()
    fd = int(cmd["fd"])
    sa = ctypes.create_string_buffer(_SADDR_LEN)
    ln = ctypes.c_uint32(_SADDR_LEN)

    def once():
        ln.value = _SADDR_LEN
        return _lib.zts_bsd_accept(fd, sa, ctypes.byref(ln))

    cfd = _retry(once, float(cmd.get("timeout_s", 10)), "accept")
    _set_nonblocking(cfd)
    ip, port = _ntop(sa, ln.value)
    return {"fd": cfd, "ip": ip, "port": port}


def cmd_tcp_connect(cmd: dict) -> dict:
    _require_started()
    ip = cmd["ip"]
    fd = _check(_lib.zts_bsd_socket(_family(ip), libzt.ZTS_SOCK_STREAM, 0), "zts_bsd_socket")
    _set_nonblocking(fd)
    sa, ln = _saddr(ip, int(cmd["port"]))
    timeout = float(cmd.get("timeout_s", 10))
    deadline = time.time() + timeout
    while True:
        rc = _lib.zts_bsd_connect(fd, sa, ln)
        err = _zts_errno()
        if rc >= 0 or err == libzt.ZTS_EISCONN:
            return {"fd": fd}
        if err not in (libzt.ZTS_EINPROGRESS, libzt.ZTS_EALREADY, libzt.ZTS_EAGAIN):
            _lib.zts_bsd_close(fd)
            raise CommandError(f"connect failed: rc={rc} zts_errno={err}")
        if time.time() >= deadline:
            _lib.zts_bsd_close(fd)
            raise CommandError(f"connect timed out after {timeout:.1f}s")
        time.sleep(0.02)


def cmd_send(cmd: dict) -> dict:
    _require_started()
    fd = int(cmd["fd"])
    data = bytes.fromhex(cmd.get("data_hex", ""))
    timeout = float(cmd.get("timeout_s", 10))
    sent = 0
    deadline = time.time() + timeout
    while sent < len(data):
        chunk = data[sent:]
        n = _retry(
            lambda c=chunk: _lib.zts_bsd_send(fd, c, len(c), 0), max(deadline - time.time(), 0.0), "send"
        )
        sent += n
    return {"sent": sent}


def cmd_recv(cmd: dict) -> dict:
    """Receive up to ``max`` bytes; with ``exact`` keep reading until that many arrived."""
    _require_started()
    fd = int(cmd["fd"])
    size = int(cmd.get("max", 65536))
    exact = bool(cmd.get("exact", False))
    timeout = float(cmd.get("timeout_s", 10))
    deadline = time.time() + timeout
    got = b""
    buf = ctypes.create_string_buffer(size)
    while True:
        want = size - len(got)
        n = _retry(lambda w=want: _lib.zts_bsd_recv(fd, buf, w, 0), max(deadline - time.time(), 0.0), "recv")
        got += buf.raw[:n]
        if n == 0 or not exact or len(got) >= size:
            return {"data_hex": got.hex(), "eof": n == 0}


def cmd_send_random(cmd: dict) -> dict:
    """Send ``nbytes`` fresh random bytes on a connected socket; returns their SHA-256.

    Bulk transfers stay inside the driver: pushing megabytes through the JSON line protocol
    as hex would measure the protocol, not the network.
    """
    _require_started()
    fd = int(cmd["fd"])
    total = int(cmd["nbytes"])
    chunk_size = int(cmd.get("chunk", 65536))
    deadline = time.time() + float(cmd.get("timeout_s", 60))
    digest = hashlib.sha256()
    sent = 0
    started = time.time()
    while sent < total:
        chunk = os.urandom(min(chunk_size, total - sent))
        digest.update(chunk)
        off = 0
        while off < len(chunk):
            part = chunk[off:]
            n = _lib.zts_bsd_send(fd, part, len(part), 0)
            if n > 0:
                off += n
                continue
            err = _zts_errno()
            if n < 0 and err not in (libzt.ZTS_EAGAIN, libzt.ZTS_EINPROGRESS):
                raise CommandError(f"send failed after {sent + off} bytes: rc={n} zts_errno={err}")
            if time.time() >= deadline:
                raise CommandError(f"send timed out after {sent + off} of {total} bytes")
            time.sleep(0.002)
        sent += len(chunk)
    return {"sent": sent, "sha256": digest.hexdigest(), "seconds": time.time() - started}


def cmd_recv_hash(cmd: dict) -> dict:
    """Receive exactly ``nbytes`` (or until EOF/timeout) and return their count and SHA-256."""
    _require_started()
    fd = int(cmd["fd"])
    total = int(cmd["nbytes"])
    deadline = time.time() + float(cmd.get("timeout_s", 60))
    digest = hashlib.sha256()
    size = 1 << 18
    buf = ctypes.create_string_buffer(size)
    got = 0
    started = time.time()
    while got < total:
        n = _lib.zts_bsd_recv(fd, buf, min(size, total - got), 0)
        if n > 0:
            digest.update(buf.raw[:n])
            got += n
            continue
        if n == 0:
            break  # the peer closed
        err = _zts_errno()
        if err not in (libzt.ZTS_EAGAIN, libzt.ZTS_EINPROGRESS):
            raise CommandError(f"recv failed after {got} bytes: rc={n} zts_errno={err}")
        if time.time() >= deadline:
            raise CommandError(f"recv timed out after {got} of {total} bytes")
        time.sleep(0.002)
    return {"received": got, "sha256": digest.hexdigest(), "seconds": time.time() - started}


def cmd_compute_addrs(cmd: dict) -> dict:
    """The library's own RFC4193 and 6PLANE addresses for (network, node)."""
    nwid = _nwid(cmd)
    node = int(str(cmd["node_id"]), 16)
    out = {}
    size = libzt.ZTS_IP_MAX_STR_LEN  # these two calls insist on exactly this buffer length
    for key, fn in (
        ("rfc4193", _lib.zts_addr_compute_rfc4193_str),
        ("6plane", _lib.zts_addr_compute_6plane_str),
    ):
        s = ctypes.create_string_buffer(size)
        _check(fn(nwid, node, s, size), "zts_addr_compute_" + key)
        out[key] = s.value.decode()
    return out


# ---- timed runs for bench/bench_vs_libzt.py (same commands in driver_ztcore.py)
#
# The data stays in this process (the JSON protocol only starts a run and reports it), and
# every wait blocks inside lwIP (a blocking socket with SO_RCVTIMEO / SO_SNDTIMEO of one tick)
# instead of polling from Python, so the CPU time of the process is the node's, not the driver's.

_lib.zts_set_blocking.argtypes = [ctypes.c_int, ctypes.c_int]
_lib.zts_set_recv_timeout.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
_lib.zts_set_send_timeout.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
_BENCH_TICK_US = 50000


def _bench_blocking(fd: int, on: bool) -> None:
    _check(_lib.zts_set_blocking(fd, 1 if on else 0), "zts_set_blocking")
    if on:
        _check(_lib.zts_set_recv_timeout(fd, 0, _BENCH_TICK_US), "zts_set_recv_timeout")
        _check(_lib.zts_set_send_timeout(fd, 0, _BENCH_TICK_US), "zts_set_send_timeout")


def _bench_would_block() -> bool:
    return _zts_errno() in (libzt.ZTS_EAGAIN, getattr(libzt, "ZTS_EWOULDBLOCK", libzt.ZTS_EAGAIN))


def cmd_bench_udp_blast(cmd: dict) -> dict:
    """``size``-byte datagrams of random bytes from socket ``fd`` to (ip, port) for ``seconds``:
    open loop (``rate_pps`` 0, ``burst`` per round) or paced at ``rate_pps``."""
    _require_started()
    fd = int(cmd["fd"])
    size = int(cmd.get("size", 1400))
    payload = os.urandom(size)
    sa, ln = _saddr(cmd["ip"], int(cmd["port"]))
    rate, burst = float(cmd.get("rate_pps", 0)), int(cmd.get("burst", 16))
    sent = errors = 0
    t0 = time.perf_counter()
    end = t0 + float(cmd.get("seconds", 3))
    _bench_blocking(fd, True)
    try:
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            n = burst if rate <= 0 else min(burst, int((now - t0) * rate) - sent)
            if n <= 0:
                time.sleep(0.0005)
            for _ in range(n):
                if _lib.zts_bsd_sendto(fd, payload, size, 0, sa, ln) == size:
                    sent += 1
                else:
                    errors += 1
    finally:
        _bench_blocking(fd, False)
    return {"sent": sent, "errors": errors, "seconds": time.perf_counter() - t0}


def cmd_bench_udp_sink(cmd: dict) -> dict:
    """Count datagrams arriving on socket ``fd`` until ``seconds`` pass, or ``idle_s`` after
    the last one once any arrived."""
    _require_started()
    fd = int(cmd["fd"])
    seconds, idle = float(cmd.get("seconds", 10)), float(cmd.get("idle_s", 0.3))
    size = 65536
    buf = ctypes.create_string_buffer(size)
    count = nbytes = 0
    first = last = 0.0
    deadline = time.perf_counter() + seconds
    _bench_blocking(fd, True)
    try:
        while True:
            n = _lib.zts_bsd_recvfrom(fd, buf, size, 0, None, None)
            now = time.perf_counter()
            if n >= 0:
                if not count:
                    first = now
                count += 1
                nbytes += n
                last = now
            elif not _bench_would_block():
                raise CommandError(f"recvfrom failed after {count} datagrams: zts_errno={_zts_errno()}")
            if now >= deadline or (count and n < 0 and now - last >= idle):
                break
    finally:
        _bench_blocking(fd, False)
    return {"received": count, "bytes": nbytes, "span_s": last - first}


def cmd_bench_tcp_sink(cmd: dict) -> dict:
    """Accept one connection on listener ``fd`` and count its bytes until EOF or ``seconds``."""
    _require_started()
    lfd = int(cmd["fd"])
    seconds = float(cmd.get("seconds", 10))
    deadline = time.perf_counter() + seconds
    cfd = _retry(lambda: _lib.zts_bsd_accept(lfd, None, None), seconds, "accept")
    size = 1 << 18
    buf = ctypes.create_string_buffer(size)
    nbytes = 0
    first = last = 0.0
    _bench_blocking(cfd, True)
    try:
        while True:
            n = _lib.zts_bsd_recv(cfd, buf, size, 0)
            now = time.perf_counter()
            if n == 0:
                break  # the sender closed
            if n > 0:
                if not nbytes:
                    first = now
                nbytes += n
                last = now
            elif not _bench_would_block():
                raise CommandError(f"recv failed after {nbytes} bytes: zts_errno={_zts_errno()}")
            if now >= deadline:
                break
    finally:
        _lib.zts_bsd_close(cfd)
    return {"bytes": nbytes, "span_s": last - first}


def cmd_bench_tcp_blast(cmd: dict) -> dict:
    """Connect to (ip, port) and send random bytes for ``seconds``, then close."""
    fd = cmd_tcp_connect(cmd)["fd"]
    chunk = os.urandom(int(cmd.get("chunk", 65536)))
    sent = 0
    t0 = time.perf_counter()
    end = t0 + float(cmd.get("seconds", 3))
    try:
        _bench_blocking(fd, True)
        while time.perf_counter() < end:
            n = _lib.zts_bsd_send(fd, chunk, len(chunk), 0)
            if n > 0:
                sent += n  # a partial send just shortens this chunk: the bytes are random anyway
            elif not _bench_would_block():
                raise CommandError(f"send failed after {sent} bytes: zts_errno={_zts_errno()}")
    finally:
        _lib.zts_bsd_close(fd)
    return {"sent": sent, "seconds": time.perf_counter() - t0}


# ---- ICMP echo from the node's own IP stack
#
# A raw socket is the obvious way, but libzt 1.8.4 builds lwIP with LWIP_RAW=0 (src/lwipopts.h),
# so zts_bsd_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) fails. The fallback still makes the real
# stack originate the echo: the request goes down lwIP's own IPv4 output path (ip4_output
# under the TCPIP core lock: routing, ARP over the ZeroTier network, Ethernet framing, the
# virtual tap, the real core's VL2), and the reply is observed where lwIP hands every inbound
# ICMP message to icmp_input: its PLT slot in _libzt.so is pointed at a wrapper that records
# echo replies and always calls the real icmp_input (which keeps answering echo requests).

_PBUF_IP = 14 + 40  # lwIP 2.1: PBUF_LINK_HLEN + PBUF_IP_HLEN (IPv6 enabled) of headroom
_PBUF_RAM = 0x0280  # lwIP 2.1: PBUF_ALLOC_FLAG_DATA_CONTIGUOUS | PBUF_TYPE_FLAG_STRUCT_DATA_CONTIGUOUS
_ICMP_INPUT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_icmp_lock = threading.Lock()
_icmp_replies: list = []
_icmp_hook = {}  # "callback", "real", "slots"


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _got_slots(path: str, symbol: str) -> list:
    """Link-time addresses of the relocation slots (JUMP_SLOT / GLOB_DAT) that bind ``symbol``."""
    import struct

    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise CommandError("not a little-endian ELF64 library")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    slots = []
    for sh in sections:
        if sh[1] != 4:  # SHT_RELA
            continue
        symtab = sections[sh[6]]
        strtab = sections[symtab[6]]
        for off in range(sh[4], sh[4] + sh[5], 24):
            r_offset, r_info, _ = struct.unpack_from("<QQq", data, off)
            if r_info & 0xFFFFFFFF not in (6, 7):  # R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT
                continue
            (st_name,) = struct.unpack_from("<I", data, symtab[4] + (r_info >> 32) * 24)
            end = data.index(b"\0", strtab[4] + st_name)
            if data[strtab[4] + st_name : end] == symbol.encode():
                slots.append(r_offset)
    return slots


def _icmp_wrapper(p, inp):
    try:
        payload = ctypes.c_void_p.from_address(p + 8).value
        first_len = ctypes.c_uint16.from_address(p + 18).value
        if payload and first_len >= 8 and ctypes.string_at(payload, 1) == b"\x00":  # echo reply
            body = ctypes.string_at(payload, min(first_len, 2048))
            # ip_data.current_ip4_header (after two netif pointers) is the header of this packet.
            hdr = ctypes.c_void_p.from_address(ctypes.addressof(_ip_data) + 16).value
            iph = ctypes.string_at(hdr, 20) if hdr else b""
            with _icmp_lock:
                _icmp_replies.append({"icmp": body, "ip": iph, "t": time.time()})
    except Exception:
        log("icmp hook error: " + traceback.format_exc())
    _icmp_hook["real"](p, inp)


def _install_icmp_hook() -> None:
    if _icmp_hook:
        return
    path = libzt._libzt.__file__
    slots = _got_slots(path, "icmp_input")
    if not slots:
        raise CommandError("no relocation slot for icmp_input in " + path)
    real_addr = ctypes.cast(_lib.icmp_input, ctypes.c_void_p).value

    class DlInfo(ctypes.Structure):
        _fields_ = [
            ("fname", ctypes.c_char_p),
            ("fbase", ctypes.c_void_p),
            ("sname", ctypes.c_char_p),
            ("saddr", ctypes.c_void_p),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    info = DlInfo()
    if not libc.dladdr(real_addr, ctypes.byref(info)):
        raise CommandError("dladdr failed for icmp_input")
    callback = _ICMP_INPUT(_icmp_wrapper)
    _icmp_hook.update(real=_ICMP_INPUT(real_addr), callback=callback, slots=[])
    page = os.sysconf("SC_PAGE_SIZE")
    for off in slots:
        addr = info.fbase + off
        if libc.mprotect(addr & ~(page - 1), page, 3) != 0:  # PROT_READ | PROT_WRITE
            raise CommandError(f"mprotect failed: errno {ctypes.get_errno()}")
        ctypes.c_void_p.from_address(addr).value = ctypes.cast(callback, ctypes.c_void_p).value
        _icmp_hook["slots"].append(hex(addr))


def _icmp_echo_raw_socket(ip: str, packet: bytes, ident: int, seq: int, timeout: float):
    """Echo over a raw lwIP socket; returns (reply dict or None, error string or None)."""
    fd = _lib.zts_bsd_socket(libzt.ZTS_AF_INET, libzt.ZTS_SOCK_RAW, libzt.ZTS_IPPROTO_ICMP)
    if fd < 0:
        return (
            None,
            f"zts_bsd_socket(ZTS_AF_INET, ZTS_SOCK_RAW, ZTS_IPPROTO_ICMP) = {fd}, zts_errno={_zts_errno()}",
        )
    try:
        _set_nonblocking(fd)
        sa, ln = _saddr(ip, 0)
        sent_at = time.time()
        _retry(lambda: _lib.zts_bsd_sendto(fd, packet, len(packet), 0, sa, ln), timeout, "raw sendto")
        buf = ctypes.create_string_buffer(2048)
        deadline = sent_at + timeout
        while time.time() < deadline:
            n = _lib.zts_bsd_recvfrom(fd, buf, 2048, 0, None, None)
            if n > 20:
                data = buf.raw[:n]
                ihl = (data[0] & 15) * 4
                icmp = data[ihl:]
                if (
                    icmp[0] == 0
                    and int.from_bytes(icmp[4:6], "big") == ident
                    and int.from_bytes(icmp[6:8], "big") == seq
                ):
                    return {"icmp": icmp, "ip": data[:ihl], "t": time.time(), "sent_at": sent_at}, None
            else:
                time.sleep(0.005)
        return None, None
    finally:
        _lib.zts_bsd_close(fd)


def _icmp_echo_lwip_ip(ip: str, packet: bytes, ident: int, seq: int, timeout: float):
    _install_icmp_hook()
    dst = ctypes.create_string_buffer(socket.inet_aton(ip), 4)
    with _icmp_lock:
        del _icmp_replies[:]
    sent_at = time.time()
    _lib.sys_lock_tcpip_core()
    try:
        p = _lib.pbuf_alloc(_PBUF_IP, len(packet), _PBUF_RAM)
        if not p:
            raise CommandError("pbuf_alloc failed")
        try:
            _check(_lib.pbuf_take(p, packet, len(packet)), "pbuf_take")
            err = _lib.ip4_output(p, None, dst, 64, 0, 1)  # proto 1 = ICMP
        finally:
            _lib.pbuf_free(p)
    finally:
        _lib.sys_unlock_tcpip_core()
    if err != 0:
        raise CommandError(f"ip4_output failed: err_t {err}")
    deadline = sent_at + timeout
    while time.time() < deadline:
        with _icmp_lock:
            for r in _icmp_replies:
                icmp = r["icmp"]
                if int.from_bytes(icmp[4:6], "big") == ident and int.from_bytes(icmp[6:8], "big") == seq:
                    return dict(r, sent_at=sent_at)
        time.sleep(0.005)
    return None


_lib.pbuf_alloc.argtypes = [ctypes.c_int, ctypes.c_uint16, ctypes.c_int]
_lib.pbuf_alloc.restype = ctypes.c_void_p
_lib.pbuf_take.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint16]
_lib.pbuf_take.restype = ctypes.c_int8
_lib.pbuf_free.argtypes = [ctypes.c_void_p]
_lib.ip4_output.argtypes = [
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_uint8,
    ctypes.c_uint8,
    ctypes.c_uint8,
]
_lib.ip4_output.restype = ctypes.c_int8
_lib.zts_addr_compute_rfc4193_str.argtypes = [_u64, _u64, ctypes.c_char_p, ctypes.c_uint]
_lib.zts_addr_compute_6plane_str.argtypes = [_u64, _u64, ctypes.c_char_p, ctypes.c_uint]
_ip_data = ctypes.c_void_p.in_dll(_lib, "ip_data")


def cmd_icmp_echo(cmd: dict) -> dict:
    """One ICMP echo request to ``ip`` originated by this node's IP stack; waits for the reply.

    ``method``: ``raw_socket``, ``lwip_ip`` or ``auto`` (a raw socket if lwIP has them, else
    lwIP's IPv4 output path, see above). The reply reports which one ran and why.
    """
    _require_started()
    ip = cmd["ip"]
    ident = int(cmd.get("ident", os.getpid() & 0xFFFF))
    seq = int(cmd.get("seq", 1))
    payload = bytes.fromhex(cmd.get("payload_hex", "")) or b"ztcore-interop-echo"
    timeout = float(cmd.get("timeout_s", 5))
    method = cmd.get("method", "auto")
    head = bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
    csum = _icmp_checksum(head + payload)
    packet = head[:2] + csum.to_bytes(2, "big") + head[4:] + payload
    result = {"raw_socket_error": None, "method": None}
    reply = None
    if method in ("auto", "raw_socket"):
        reply, err = _icmp_echo_raw_socket(ip, packet, ident, seq, timeout)
        result["raw_socket_error"] = err
        if err is None:
            result["method"] = "raw_socket"
        elif method == "raw_socket":
            raise CommandError(err)
    if result["method"] is None:
        result["method"] = "lwip_ip"
        reply = _icmp_echo_lwip_ip(ip, packet, ident, seq, timeout)
        result["hook_slots"] = _icmp_hook.get("slots")
    if reply is None:
        result.update(replied=False)
        return result
    iph = reply["ip"]
    icmp = reply["icmp"]
    result.update(
        replied=True,
        rtt_ms=round((reply["t"] - reply["sent_at"]) * 1000, 3),
        src=socket.inet_ntoa(iph[12:16]) if len(iph) >= 20 else None,
        dst=socket.inet_ntoa(iph[16:20]) if len(iph) >= 20 else None,
        ttl=iph[8] if len(iph) >= 20 else None,
        icmp_type=icmp[0],
        icmp_code=icmp[1],
        ident=int.from_bytes(icmp[4:6], "big"),
        seq=int.from_bytes(icmp[6:8], "big"),
        payload_hex=icmp[8:].hex(),
        checksum_ok=_icmp_checksum(icmp) == 0,
        sent_hex=packet.hex(),
    )
    return result


# ---- the core's own view of a network
#
# libzt 1.8.4 answers zts_net_get_status from a copy of the config taken at the core's last
# virtual-network-config callback. The 1.8 core does not call back when a controller answers
# ACCESS_DENIED or NOT_FOUND (Network::setAccessDenied only sets a flag; 1.10+ also posts an
# update), so libzt keeps reporting the old status. ZT_Node_networkConfig asks the core itself,
# as zerotier-cli listnetworks does on a real zerotier-one. libzt does not expose the ZT_Node,
# so it is found inside the NodeService object as the pointer to an object whose vtable is
# ZeroTier::Node's (and whose ZT_Node_address is this node's id).

_STATUS_1_8 = {
    0: "REQUESTING_CONFIGURATION",
    1: "OK",
    2: "ACCESS_DENIED",
    3: "NOT_FOUND",
    4: "PORT_ERROR",
    5: "CLIENT_TOO_OLD",
    6: "AUTHENTICATION_REQUIRED",
}
_lib.ZT_Node_networkConfig.argtypes = [ctypes.c_void_p, _u64]
_lib.ZT_Node_networkConfig.restype = ctypes.c_void_p
_lib.ZT_Node_freeQueryResult.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_lib.ZT_Node_address.argtypes = [ctypes.c_void_p]
_lib.ZT_Node_address.restype = _u64
_zt_node = []


def _readable_ranges() -> list:
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if parts[1].startswith("r"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


def _find_zt_node() -> int:
    if _zt_node:
        return _zt_node[0]
    service = ctypes.c_void_p.in_dll(_lib, "_ZN8ZeroTier11zts_serviceE").value
    if not service:
        raise CommandError("no NodeService")
    vtable = ctypes.addressof(ctypes.c_char.in_dll(_lib, "_ZTVN8ZeroTier4NodeE"))
    ranges = _readable_ranges()

    def readable(a: int) -> bool:
        return any(lo <= a and a + 8 <= hi for lo, hi in ranges)

    my_id = _lib.zts_node_get_id()
    for off in range(0, 4096, 8):
        if not readable(service + off):
            break
        cand = ctypes.c_void_p.from_address(service + off).value
        if not cand or cand % 8 or not readable(cand):
            continue
        vptr = ctypes.c_void_p.from_address(cand).value
        # The object's vtable pointer points into ZeroTier::Node's vtable (past its header).
        if vptr and vtable < vptr <= vtable + 64 and _lib.ZT_Node_address(cand) == my_id:
            _zt_node.append(cand)
            return cand
    raise CommandError("ZeroTier::Node not found in the NodeService object")


def cmd_core_net(cmd: dict) -> dict:
    """The core's own status of a network (ZT_Node_networkConfig), not libzt's cached copy."""
    _require_started()
    nwid = _nwid(cmd)
    node = _find_zt_node()
    p = _lib.ZT_Node_networkConfig(node, nwid)
    if not p:
        return {"joined": False}
    try:
        raw = ctypes.string_at(p, 192)
        got_nwid = int.from_bytes(raw[0:8], "little")
        if got_nwid != nwid:
            raise CommandError(f"ZT_VirtualNetworkConfig layout mismatch: nwid {got_nwid:016x}")
        status = int.from_bytes(raw[144:148], "little")
        return {
            "joined": True,
            "status_code": status,
            "status": _STATUS_1_8.get(status, str(status)),
            "name": raw[16:144].split(b"\0")[0].decode(errors="replace"),
            "netconf_revision": int.from_bytes(raw[176:184], "little"),
            "assigned_addr_count": int.from_bytes(raw[184:188], "little"),
        }
    finally:
        _lib.ZT_Node_freeQueryResult(node, p)


def cmd_close(cmd: dict) -> dict:
    _check(_lib.zts_bsd_close(int(cmd["fd"])), "zts_bsd_close")
    return {}


def cmd_stop(cmd: dict) -> dict:
    if _started:
        _lib.zts_node_stop()
    return {}


COMMANDS = {name[4:]: fn for name, fn in globals().items() if name.startswith("cmd_") and callable(fn)}


def _watchdog(max_seconds: float) -> None:
    time.sleep(max_seconds)
    emit({"type": "log", "msg": f"watchdog: max lifetime {max_seconds:.0f}s reached, exiting"})
    os._exit(3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args()
    threading.Thread(target=_watchdog, args=(args.max_seconds,), daemon=True).start()
    # `kill -USR1 <pid>` dumps every thread's Python stack to stderr (for hangs in libzt calls).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    emit({"type": "ready", "pid": os.getpid(), "libzt": getattr(libzt, "__version__", "?")})
    for line in _cmd_in:
        line = line.strip()
        if not line:
            continue
        # The command trail on stderr ends up in the parent's failure messages.
        sys.stderr.write(f"{time.time():.3f} cmd {line[:300]}\n")
        sys.stderr.flush()
        try:
            cmd = json.loads(line)
            name = cmd.get("cmd")
        except ValueError:
            emit({"type": "reply", "ok": False, "error": f"bad json: {line[:200]!r}"})
            continue
        reply = {"type": "reply", "id": cmd.get("id"), "cmd": name}
        fn = COMMANDS.get(name)
        try:
            if fn is None:
                raise CommandError(f"unknown command {name!r}")
            result = fn(cmd)
            reply.update({k: v for k, v in result.items() if k not in reply})
            reply["ok"] = True
        except CommandError as e:
            reply.update(ok=False, error=str(e))
        except Exception as e:
            reply.update(ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        emit(reply)
        sys.stderr.write(f"{time.time():.3f} replied {reply.get('id')} ok={reply.get('ok')}\n")
        sys.stderr.flush()
        if name == "stop":
            break
    if _started:
        _lib.zts_node_stop()
    # Skip interpreter teardown: libzt's background threads can make a normal exit hang.
    _real_stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
