"""Scapy layers for ZeroTier's wire protocol (no dissector for it exists in Scapy or
Wireshark), in the shape of a Scapy contrib module::

    from ztcore.scapy import *
    pkts = rdpcap("capture.pcap")           # UDP 9993 dissects as ZeroTier
    keys = Keyring("identity.secret")       # or identities, or a running node
    for p in keys.decrypt_all(pkts):
        p.summary()

Modules: `layers` (header, fragment, beacon, shared fields), `verbs` (each verb's
payload, OK/ERROR per in-re verb), `keyring` (decrypting and armoring with ztcore's
own crypto). ztcore's core never imports this package; it is an integration.
"""

from __future__ import annotations

from .keyring import DecryptError, Keyring, armor_packet
from .layers import (
    ZT_PORT,
    ZeroTier,
    ZeroTierDecrypted,
    ZTBeacon,
    ZTEncrypted,
    ZTFragment,
    ZTIdentity,
    ZTInetAddress,
    bind_port,
)
from .verbs import (
    ZTDirectPath,
    ZTEcho,
    ZTError,
    ZTExtFrame,
    ZTFrame,
    ZTHello,
    ZTMulticastFrame,
    ZTMulticastGather,
    ZTMulticastLike,
    ZTMulticastSubscription,
    ZTNetworkConfig,
    ZTNetworkConfigRequest,
    ZTNetworkCredentials,
    ZTNop,
    ZTOk,
    ZTOkEcho,
    ZTOkExtFrame,
    ZTOkHello,
    ZTOkMulticastFrame,
    ZTOkMulticastGather,
    ZTOkWhois,
    ZTPushDirectPaths,
    ZTRemoteTrace,
    ZTRendezvous,
    ZTUserMessage,
    ZTWhois,
)

__all__ = [
    "ZT_PORT",
    "DecryptError",
    "Keyring",
    "ZTBeacon",
    "ZTDirectPath",
    "ZTEcho",
    "ZTEncrypted",
    "ZTError",
    "ZTExtFrame",
    "ZTFragment",
    "ZTFrame",
    "ZTHello",
    "ZTIdentity",
    "ZTInetAddress",
    "ZTMulticastFrame",
    "ZTMulticastGather",
    "ZTMulticastLike",
    "ZTMulticastSubscription",
    "ZTNetworkConfig",
    "ZTNetworkConfigRequest",
    "ZTNetworkCredentials",
    "ZTNop",
    "ZTOk",
    "ZTOkEcho",
    "ZTOkExtFrame",
    "ZTOkHello",
    "ZTOkMulticastFrame",
    "ZTOkMulticastGather",
    "ZTOkWhois",
    "ZTPushDirectPaths",
    "ZTRemoteTrace",
    "ZTRendezvous",
    "ZTUserMessage",
    "ZTWhois",
    "ZeroTier",
    "ZeroTierDecrypted",
    "armor_packet",
    "bind_port",
]
