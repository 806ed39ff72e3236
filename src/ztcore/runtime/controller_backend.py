"""`StoreControllerBackend`: the local API's controller side over the SQLite store.

Owns the glue between `ztcore.runtime.http_api.ControllerBackend` (what the HTTP
routes need) and `ztcore.controller`: store transactions, the model's update
rules, pool auto-assignment on authorization, and change hooks for listeners
(the live controller). Kept apart from the HTTP layer so that a daemon imports
the controller (and SQLite) only when it serves one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ztcore.controller import ipam
from ztcore.controller.model import ApiError, format_address, now_ms, update_member, update_network
from ztcore.controller.store import ControllerStore
from ztcore.errors import report_unexpected

__all__ = ["ControllerListener", "StoreControllerBackend"]

log = logging.getLogger(__name__)


class ControllerListener(Protocol):
    """Told after a change is committed; the live controller pushes configs / revokes from here.

    `old` / `new` are the records before and after (None = absent). A network deletion
    is reported as a member change to None for each of its members, then the network's.
    """

    def on_network_changed(
        self, nwid: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None: ...

    def on_member_changed(
        self, nwid: str, address: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None: ...


class StoreControllerBackend:
    """`ControllerBackend` over a `ControllerStore` and the model functions alone.

    Authorizing a member (or updating an authorized one without giving
    ``ipAssignments``) runs pool auto-assignment right away, so the address shows up
    in the API before the member's next config request. Change hooks go to the
    listeners added with `add_listener`; a failing listener is logged, not raised, since
    the change is already committed.
    """

    def __init__(
        self,
        store: ControllerStore,
        controller_address: int | str,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        addr = controller_address if isinstance(controller_address, int) else int(controller_address, 16)
        self._address = addr
        self._clock = clock
        self._listeners: list[ControllerListener] = []

    @property
    def controller_address(self) -> str:
        return format_address(self._address)

    def add_listener(self, listener: ControllerListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ControllerListener) -> None:
        self._listeners.remove(listener)

    def ready(self) -> bool:
        return True

    def list_networks(self) -> list[str]:
        return self.store.list_networks()

    def get_network(self, nwid: str) -> dict[str, Any] | None:
        return self.store.get_network(nwid)

    def member_counts(self, nwid: str) -> tuple[int, int]:
        return self.store.member_counts(nwid)

    def create_network(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            nwid = self.store.free_network_id(self._address)
            record = update_network(None, body, int(nwid, 16), self._clock())
            stored, _ = self.store.put_network(record)
        self.on_network_changed(nwid, None, stored)
        return stored

    def post_network(self, nwid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            old = self.store.get_network(nwid)
            if old is None:
                # Creating: only under this controller's address. A record already stored
                # (e.g. by an older version) can still be updated or deleted.
                _check_own_network(nwid, self.controller_address)
            record = update_network(old, body, int(nwid, 16), self._clock())
            stored, changed = self.store.put_network(record)
        if changed:
            self.on_network_changed(nwid, old, stored)
        return stored

    def delete_network(self, nwid: str) -> dict[str, Any] | None:
        with self.store.transaction():
            members = self.store.list_members(nwid)
            old = self.store.delete_network(nwid)
        if old is not None:
            for m in members:
                self.on_member_changed(nwid, str(m.get("id")), m, None)
            self.on_network_changed(nwid, old, None)
        return old

    def list_members(self, nwid: str) -> list[dict[str, Any]] | None:
        with self.store.transaction():
            if not self.store.has_network(nwid):
                return None
            return self.store.list_members(nwid)

    def member_revisions(self, nwid: str) -> dict[str, int] | None:
        with self.store.transaction():
            if not self.store.has_network(nwid):
                return None
            return self.store.member_revisions(nwid)

    def get_member(self, nwid: str, address: str) -> dict[str, Any] | None:
        return self.store.get_member(nwid, address)

    def post_member(self, nwid: str, address: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            network = self.store.get_network(nwid)
            if network is None:
                raise ApiError(404, f"network {nwid} not found")
            old = self.store.get_member(nwid, address)
            record = update_member(old, body, int(nwid, 16), int(address, 16), self._clock(), network=network)
            if record.get("authorized") is True and "ipAssignments" not in body:
                record["ipAssignments"] = ipam.auto_assign(
                    network,
                    record,
                    int(address, 16),
                    lambda: self.store.allocated_ips(nwid, exclude_address=address),
                )
            stored, changed = self.store.put_member(record)
        if changed:
            self.on_member_changed(nwid, address, old, stored)
        return stored

    def delete_member(self, nwid: str, address: str) -> dict[str, Any] | None:
        old = self.store.delete_member(nwid, address)
        if old is not None:
            self.on_member_changed(nwid, address, old, None)
        return old

    def on_network_changed(self, nwid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for listener in list(self._listeners):
            try:
                listener.on_network_changed(nwid, old, new)
            except Exception as e:
                report_unexpected(log, "controller backend: listener on a network change", e)

    def on_member_changed(
        self, nwid: str, address: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        for listener in list(self._listeners):
            try:
                listener.on_member_changed(nwid, address, old, new)
            except Exception as e:
                report_unexpected(log, "controller backend: listener on a member change", e)


def _check_own_network(nwid: str, controller_address: str) -> None:
    """A controller serves only network ids that start with its own address (members
    send their config requests to the address in the id), so it refuses to create any
    other: such a network could be stored but never served."""
    if nwid[:10].lower() != controller_address.lower():
        raise ApiError(
            400,
            f"network {nwid} belongs to controller {nwid[:10]}, not to this one ({controller_address})",
        )
