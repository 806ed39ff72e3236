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
udp_recvfrom, tcp_listen, tcp_accept, tcp_connect, send, recv, close, stop.
Byte payloads travel as hex. Network ids and node ids travel as lower-case hex strings.

It must stay Python 3.9 compatible and import nothing from ztcore. Every blocking operation
has a timeout; a watchdog ends the process after ``--max-seconds``; stdin EOF stops the node.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
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
    if _lib.zts_util_ntop(buf, ln, s, 64, ctypes.byref(port)) < 0:
        return None, None
    return s.value.decode(), port.value


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
