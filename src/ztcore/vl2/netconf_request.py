"""Config-request metadata: the Dictionary a member sends in
NETWORK_CONFIG_REQUEST (its version, vendor, limits, rules-engine revision and
optional SSO auth token), and the authentication-info keys a controller puts in
NC_ERROR_AUTHENTICATION_REQUIRED.
"""

from __future__ import annotations

from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.netconf import (
    MAX_CAPABILITY_RULES,
    MAX_NETWORK_CAPABILITIES,
    MAX_NETWORK_RULES,
    MAX_NETWORK_TAGS,
    NETWORKCONFIG_METADATA_DICT_CAPACITY,
    NETWORKCONFIG_VERSION,
)

__all__ = ["build_request_metadata"]

# Config request metadata keys (the dictionary sent in NETWORK_CONFIG_REQUEST).
REQUEST_KEY_VERSION = "v"
REQUEST_KEY_OS_ARCH = "o"
REQUEST_KEY_PROTOCOL_VERSION = "pv"
REQUEST_KEY_NODE_VENDOR = "vend"
REQUEST_KEY_NODE_MAJOR_VERSION = "majv"
REQUEST_KEY_NODE_MINOR_VERSION = "minv"
REQUEST_KEY_NODE_REVISION = "revv"
REQUEST_KEY_RULES_ENGINE_REV = "revr"
REQUEST_KEY_MAX_NETWORK_RULES = "mr"
REQUEST_KEY_MAX_NETWORK_CAPABILITIES = "mc"
REQUEST_KEY_MAX_CAPABILITY_RULES = "mcr"
REQUEST_KEY_MAX_NETWORK_TAGS = "mt"
REQUEST_KEY_AUTH = "a"
REQUEST_KEY_FLAGS = "f"

# Authentication info keys controllers put in NC_ERROR_AUTHENTICATION_REQUIRED.
AUTHINFO_KEY_VERSION = "aV"
AUTHINFO_KEY_AUTHENTICATION_URL = "aU"
AUTHINFO_KEY_ISSUER_URL = "iU"
AUTHINFO_KEY_CENTRAL_ENDPOINT_URL = "aCU"
AUTHINFO_KEY_NONCE = "aN"
AUTHINFO_KEY_STATE = "aS"
AUTHINFO_KEY_CLIENT_ID = "aCID"
AUTHINFO_KEY_SSO_PROVIDER = "aSSOp"


def build_request_metadata(
    *,
    os_arch: str = "linux-x64",
    major: int = 1,
    minor: int = 14,
    revision: int = 1,
    protocol_version: int = 12,
    vendor: int = 1,
    auth: str | None = None,
) -> Dictionary:
    """The metadata Dictionary a member sends in NETWORK_CONFIG_REQUEST, keyed and
    ordered as the 1.14 core sends it (defaults: a 1.14.1 ZeroTier-vendor node)."""
    d = Dictionary(NETWORKCONFIG_METADATA_DICT_CAPACITY)
    for key, value in (
        (REQUEST_KEY_VERSION, NETWORKCONFIG_VERSION),
        (REQUEST_KEY_NODE_VENDOR, vendor),
        (REQUEST_KEY_PROTOCOL_VERSION, protocol_version),
        (REQUEST_KEY_NODE_MAJOR_VERSION, major),
        (REQUEST_KEY_NODE_MINOR_VERSION, minor),
        (REQUEST_KEY_NODE_REVISION, revision),
        (REQUEST_KEY_MAX_NETWORK_RULES, MAX_NETWORK_RULES),
        (REQUEST_KEY_MAX_NETWORK_CAPABILITIES, MAX_NETWORK_CAPABILITIES),
        (REQUEST_KEY_MAX_CAPABILITY_RULES, MAX_CAPABILITY_RULES),
        (REQUEST_KEY_MAX_NETWORK_TAGS, MAX_NETWORK_TAGS),
        (REQUEST_KEY_FLAGS, 0),
        (REQUEST_KEY_RULES_ENGINE_REV, 1),
        (REQUEST_KEY_OS_ARCH, os_arch),
    ):
        d.add(key, value)
    if auth is not None:
        d.add(REQUEST_KEY_AUTH, auth)
    return d
