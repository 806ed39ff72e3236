"""The embedded network controller's data side: network/member records (`model`),
their SQLite store (`store`) and automatic IP assignment (`ipam`).

`ApiError` and `ControllerStore` are loaded on first use (PEP 562): importing
``ztcore.controller.model`` does not open SQLite.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"ApiError": "model", "ControllerStore": "store"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
