"""Network flow rules, the way the real core's rules engine sees them.

One module a concern: :mod:`.formats` owns the rule model and its binary and
JSON forms (the evaluator, the rules-language compiler, rendering and tracing
live beside it as they are built).
"""

from ztcore.vl2.rules.formats import (
    CHARACTERISTICS_BROADCAST,
    CHARACTERISTICS_INBOUND,
    CHARACTERISTICS_MULTICAST,
    CHARACTERISTICS_SENDER_IP_AUTHENTICATED,
    CHARACTERISTICS_SENDER_MAC_AUTHENTICATED,
    CHARACTERISTICS_TCP_ACK,
    CHARACTERISTICS_TCP_CWR,
    CHARACTERISTICS_TCP_ECE,
    CHARACTERISTICS_TCP_FIN,
    CHARACTERISTICS_TCP_NS,
    CHARACTERISTICS_TCP_PSH,
    CHARACTERISTICS_TCP_RST,
    CHARACTERISTICS_TCP_SYN,
    CHARACTERISTICS_TCP_URG,
    RULE_FLAG_NOT,
    RULE_FLAG_OR,
    Rule,
    RuleType,
    deserialize_rules,
    rules_from_json,
    rules_to_json,
    serialize_rules,
)

__all__ = [
    "CHARACTERISTICS_BROADCAST",
    "CHARACTERISTICS_INBOUND",
    "CHARACTERISTICS_MULTICAST",
    "CHARACTERISTICS_SENDER_IP_AUTHENTICATED",
    "CHARACTERISTICS_SENDER_MAC_AUTHENTICATED",
    "CHARACTERISTICS_TCP_ACK",
    "CHARACTERISTICS_TCP_CWR",
    "CHARACTERISTICS_TCP_ECE",
    "CHARACTERISTICS_TCP_FIN",
    "CHARACTERISTICS_TCP_NS",
    "CHARACTERISTICS_TCP_PSH",
    "CHARACTERISTICS_TCP_RST",
    "CHARACTERISTICS_TCP_SYN",
    "CHARACTERISTICS_TCP_URG",
    "RULE_FLAG_NOT",
    "RULE_FLAG_OR",
    "Rule",
    "RuleType",
    "deserialize_rules",
    "rules_from_json",
    "rules_to_json",
    "serialize_rules",
]
