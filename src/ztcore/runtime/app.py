"""What an app awaits on a running node: coming online, a joined network becoming
usable, and user messages as typed objects.

`AppWaits` is mixed into `ztcore.runtime.NodeService`. Every wait raises
`TimeoutError` (naming what it last saw) instead of returning False, so a
failure shows where it happens rather than later as an IndexError.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ztcore.api import EventType, UserMessage

if TYPE_CHECKING:
    from ztcore.api import Event
    from ztcore.node import Node

_POLL = 0.02  # seconds between looks at the node's state while waiting


class AppWaits:
    """Waiting methods of `NodeService` (the attributes below are the service's)."""

    node: Node | None

    if TYPE_CHECKING:  # provided by NodeService; declared for the type checker only

        def events(self) -> AsyncIterator[Event]: ...

    async def wait_online(self, timeout: float = 30.0) -> None:
        """Return once the node has heard from a root; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not (self.node is not None and self.node.online):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"node not online after {timeout:g} s (no root has answered)")
            await asyncio.sleep(_POLL)

    async def wait_network(
        self, network_id: int | str, timeout: float = 30.0, *, addresses: bool = True
    ) -> dict[str, Any]:
        """Wait until joined network `network_id` has its config (status OK) and, with
        `addresses`, at least one assigned address; returns the network's zerotier-one
        JSON (``assignedAddresses``, ``status``, ...). Raises TimeoutError naming the
        status it last saw (REQUESTING_CONFIGURATION, ACCESS_DENIED, NOT_FOUND, ...),
        and LookupError if the network is not joined."""
        nwid = int(network_id, 16) if isinstance(network_id, str) else int(network_id)
        deadline = time.monotonic() + timeout
        while True:
            info = self.node.network(nwid) if self.node is not None else None
            if info is None:
                raise LookupError(f"network {nwid:016x} is not joined (join it first)")
            status = str(info.get("status"))
            if status == "OK" and (not addresses or info.get("assignedAddresses")):
                return info
            if time.monotonic() >= deadline:
                what = status if status != "OK" else "OK but no address assigned"
                raise TimeoutError(f"network {nwid:016x} not ready after {timeout:g} s: {what}")
            await asyncio.sleep(_POLL)

    async def messages(self) -> AsyncIterator[UserMessage]:
        """User messages (VERB_USER_MESSAGE) from now on, as `UserMessage` objects
        (``.source``, ``.type_id``, ``.data``); ends when the service stops."""
        async for event in self.events():
            if event.type == EventType.USER_MESSAGE:
                yield event.data
