"""Runners for `ztcore.node.Node`: state stores, the asyncio UDP service, and a thread-backed facade.

The names below are loaded on first use (PEP 562), so that importing one runtime
module (``ztcore.runtime.home`` for a daemon, say) does not load the blocking
sockets, the thread facade and the userspace TCP stack with it.
"""

from __future__ import annotations

from ztcore.lazy import lazy_exports

# name -> module that defines it
_LAZY = {
    "ZtDatagramSocket": "blocking",
    "ZtListener": "blocking",
    "ZtSocket": "blocking",
    "NodeHandle": "facade",
    "ThreadedRuntime": "facade",
    "HomeDirectory": "home",
    "HomeDirectoryError": "home",
    "MemoryState": "home",
    "StateStore": "home",
    "DEFAULT_PORT": "service",
    "NodeService": "service",
    "PortInUseError": "service",
    "Runtime": "service",
    "ServiceCounters": "service",
    "ServiceError": "service",
    "now_ms": "service",
    "TcpTransport": "sockets",
    "UdpTransport": "sockets",
    "ZtServer": "sockets",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

