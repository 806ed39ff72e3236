"""The embedded network controller's data side: network/member records (`model`),
their SQLite store (`store`) and automatic IP assignment (`ipam`).

`ApiError` and `ControllerStore` are loaded on first use (PEP 562): importing
``ztcore.controller.model`` does not open SQLite.
"""

from __future__ import annotations

from ztcore.lazy import lazy_exports

_LAZY = {"ApiError": "model", "ControllerStore": "store"}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
