"""The embedded network controller's data side: network/member records (`model`),
their SQLite store (`store`) and automatic IP assignment (`ipam`)."""

from ztcore.controller.model import ApiError
from ztcore.controller.store import ControllerStore

__all__ = ["ApiError", "ControllerStore"]
