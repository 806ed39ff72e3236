"""Network flow rules, the way the real core's rules engine sees them.

One module a concern: :mod:`.formats` owns the rule model and its binary and
JSON forms, :mod:`.evaluate` the evaluation of rules, tags and capabilities for
one frame (used by the node and by ``ztnode rules test``), :mod:`.frame` and
:mod:`.outcome` what it takes and returns, :mod:`.cache` remembered verdicts per
flow, and :mod:`.frametext` frames given as Scapy-style text, hex or pcap.
"""

from ztcore.vl2.rules.evaluate import (
    CompiledRules,
    Copy,
    DecidingRule,
    Evaluation,
    FilterResult,
    Frame,
    Ownership,
    RuleLogEntry,
    RuleSetOutcome,
    compile_rules,
    decode_rule_log,
    evaluate,
    evaluate_rule_set,
)
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
    serialize_rules,
)
from ztcore.vl2.rules.jsonform import rule_from_json, rule_to_json, rules_from_json, rules_to_json

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
    "CompiledRules",
    "Copy",
    "DecidingRule",
    "Evaluation",
    "FilterResult",
    "Frame",
    "Ownership",
    "RuleLogEntry",
    "RuleSetOutcome",
    "Rule",
    "RuleType",
    "compile_rules",
    "decode_rule_log",
    "deserialize_rules",
    "evaluate",
    "evaluate_rule_set",
    "rule_from_json",
    "rule_to_json",
    "rules_from_json",
    "rules_to_json",
    "serialize_rules",
]
