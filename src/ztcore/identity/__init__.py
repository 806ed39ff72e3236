"""ZeroTier identities: addresses, type-0 (C25519) identities and the memory-hard hash."""

from ztcore.identity.address import ADDRESS_RESERVED_PREFIX, Address
from ztcore.identity.identity import (
    IDENTITY_GEN_HASHCASH_FIRST_BYTE_LESS_THAN,
    IDENTITY_TYPE_C25519,
    SYMMETRIC_KEY_SIZE,
    Identity,
)
from ztcore.identity.mhh import HAVE_C_KERNEL, memory_hard_hash, memory_hard_hash_py

__all__ = [
    "ADDRESS_RESERVED_PREFIX",
    "HAVE_C_KERNEL",
    "IDENTITY_GEN_HASHCASH_FIRST_BYTE_LESS_THAN",
    "IDENTITY_TYPE_C25519",
    "SYMMETRIC_KEY_SIZE",
    "Address",
    "Identity",
    "memory_hard_hash",
    "memory_hard_hash_py",
]
