"""VL1, ZeroTier's peer-to-peer transport layer: packets (header, verbs,
armoring, compression), fragmentation, and later peers, paths and worlds."""
