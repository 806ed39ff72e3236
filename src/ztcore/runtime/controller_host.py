"""The network controller a daemon hosts, loaded when it is first needed.

Owns `ControllerHost`: like zerotier-one, every ``ztnode run`` node is the
controller for the networks under its own address, but most nodes serve none.
So the controller (its SQLite store ``controller.db``, the records model, IP
assignment and `EmbeddedController`) is loaded only when the home already has a
``controller.db`` (it is then opened and checked before the daemon starts), or on
first use: a member's config request or remote trace reaching the node, or a
request to the local API's ``/controller`` routes. Until then the node and the
API hold two stand-ins, `node_controller` and `backend`, which answer exactly as
the loaded controller would, since they load it and pass the call on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ztcore.errors import ZTError, report_unexpected

__all__ = ["ControllerHost"]

log = logging.getLogger(__name__)

# ztcore.controller.store.DB_FILENAME, spelled out so that looking for the file loads no SQLite.
DB_FILENAME = "controller.db"


class ControllerHost:
    """The store, API backend and live controller of one home, loaded together on demand.

    `load` (or any use through the stand-ins) opens ``HOME/controller.db`` (creating it),
    builds the `StoreControllerBackend` for the API and the `EmbeddedController` for
    the node, and wires the latter as a listener of the former so that API changes
    are pushed to members at once. `close` closes the store if it was opened.
    """

    def __init__(self, home_path: str | Path, controller_address: int) -> None:
        self.home_path = Path(home_path)
        self.controller_address = controller_address
        self.store: Any = None
        self.backend_impl: Any = None
        self.controller: Any = None  # the EmbeddedController, None if this build has none
        self._signing: tuple[Any, Any] | None = None  # (identity, sender) given by the node
        self.node_controller = _NodeController(self)
        self.backend = _Backend(self)

    @property
    def loaded(self) -> bool:
        return self.store is not None

    @staticmethod
    def has_store(home_path: str | Path) -> bool:
        return (Path(home_path) / DB_FILENAME).exists()

    def load(self, store: Any = None) -> None:
        """Load now; `store` is an already opened `ControllerStore` of this home to use."""
        if self.store is not None:
            return
        from ztcore.controller.store import ControllerStore
        from ztcore.runtime.controller_backend import StoreControllerBackend

        if store is None:
            store = ControllerStore(self.home_path)
        backend = StoreControllerBackend(store, self.controller_address)
        controller = None
        try:
            from ztcore.controller.live import EmbeddedController
        except ImportError:
            log.warning("no embedded controller in this build: the API serves the store only")
        else:
            try:
                controller = EmbeddedController(store)
                if self._signing is not None:
                    controller.init(*self._signing)
                backend.add_listener(controller)
            except ZTError:
                store.close()
                raise
            except Exception as e:
                # A controller that fails to start must not take the node down with it.
                report_unexpected(log, "controller host: starting the embedded controller", e)
                controller = None
        self.store, self.backend_impl, self.controller = store, backend, controller
        log.info("controller loaded from %s", self.home_path)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class _NodeController:
    """What the node holds as its `NetworkController` until (and after) the real one loads."""

    def __init__(self, host: ControllerHost) -> None:
        self._host = host

    def init(self, signing_identity: Any, sender: Any) -> None:
        self._host._signing = (signing_identity, sender)
        if self._host.controller is not None:
            self._host.controller.init(signing_identity, sender)

    def _live(self) -> Any:
        self._host.load()
        return self._host.controller

    def request(self, *args: Any, **kwargs: Any) -> None:
        controller = self._live()
        if controller is not None:
            controller.request(*args, **kwargs)

    def handle_remote_trace(self, *args: Any, **kwargs: Any) -> None:
        controller = self._live()
        if controller is not None:
            controller.handle_remote_trace(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # member_status, authorized_recently, traces, stats, ...: the real controller's.
        controller = self._live()
        if controller is None:
            raise AttributeError(name)
        return getattr(controller, name)


class _Backend:
    """The API's `ControllerBackend`: every call loads the controller, then is passed on."""

    def __init__(self, host: ControllerHost) -> None:
        self._host = host

    def __getattr__(self, name: str) -> Any:
        self._host.load()
        return getattr(self._host.backend_impl, name)
