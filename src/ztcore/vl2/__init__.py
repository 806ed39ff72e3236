"""VL2, ZeroTier's virtual Ethernet layer: network ids, MACs, multicast groups,
the Dictionary text format, network configurations (and their chunked signed
transport), credentials (COM, capability, tag, COO, revocation) and flow rules."""
