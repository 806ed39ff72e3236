"""The boundary between a node and a network controller (NetworkController.hpp).

A node that hosts a controller hands it every NETWORK_CONFIG_REQUEST for a
network whose id starts with the node's address; the controller answers
through the `ControllerSender` the node gives it (signed configs, errors,
revocations). The controller layer implements `NetworkController`; the node
implements `ControllerSender`. Neither imports the other.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ztcore.identity import Address, Identity
    from ztcore.vl1.inetaddress import InetAddress
    from ztcore.vl2.credentials import Revocation
    from ztcore.vl2.dictionary import Dictionary
    from ztcore.vl2.netconf import NetworkConfig


class ControllerError(enum.IntEnum):
    """As NetworkController::ErrorCode."""

    NONE = 0
    OBJECT_NOT_FOUND = 1
    ACCESS_DENIED = 2
    INTERNAL_SERVER_ERROR = 3
    AUTHENTICATION_REQUIRED = 4


class ControllerSender(Protocol):
    """Implemented by the node: how a controller's answers reach members."""

    def nc_send_config(
        self, network_id: int, request_packet_id: int, destination: Address, config: NetworkConfig
    ) -> None:
        """Sign (chunk by chunk) and send `config` to `destination` (or apply it locally
        when `destination` is this node itself)."""
        ...

    def nc_send_revocation(self, destination: Address, revocation: Revocation) -> None: ...

    def nc_send_error(
        self,
        network_id: int,
        request_packet_id: int,
        destination: Address,
        error: ControllerError,
        error_data: bytes = b"",
    ) -> None: ...


class NetworkController(Protocol):
    """Implemented by the controller layer."""

    def init(self, signing_identity: Identity, sender: ControllerSender) -> None: ...

    def request(
        self,
        now: int,
        network_id: int,
        from_address: InetAddress | None,
        request_packet_id: int,
        identity: Identity,
        metadata: Dictionary,
    ) -> None:
        """Handle one config request (from a member, or from the node itself)."""
        ...
