"""Runners for `ztcore.node.Node`: state stores, the asyncio UDP service, and a thread-backed facade."""

from ztcore.runtime.blocking import ZtDatagramSocket, ZtListener, ZtSocket
from ztcore.runtime.facade import NodeHandle, ThreadedRuntime
from ztcore.runtime.home import HomeDirectory, HomeDirectoryError, MemoryState, StateStore
from ztcore.runtime.service import (
    DEFAULT_PORT,
    NodeService,
    PortInUseError,
    Runtime,
    ServiceCounters,
    ServiceError,
    now_ms,
)
from ztcore.runtime.sockets import TcpTransport, UdpTransport, ZtServer

__all__ = [
    "DEFAULT_PORT",
    "HomeDirectory",
    "HomeDirectoryError",
    "MemoryState",
    "NodeHandle",
    "NodeService",
    "PortInUseError",
    "Runtime",
    "ServiceCounters",
    "ServiceError",
    "StateStore",
    "TcpTransport",
    "ThreadedRuntime",
    "UdpTransport",
    "ZtDatagramSocket",
    "ZtListener",
    "ZtServer",
    "ZtSocket",
    "now_ms",
]
