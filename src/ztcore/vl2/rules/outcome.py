"""What an evaluation of the rules returns: the verdict, the deciding rule, the
real core's 4-bit rule log, the QoS bucket and the TEE/WATCH/REDIRECT copies."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ztcore.vl2.rules.formats import RuleType

__all__ = [
    "EXT_FRAME_FLAG_INBOUND_REDIRECT",
    "EXT_FRAME_FLAG_INBOUND_TEE",
    "EXT_FRAME_FLAG_INBOUND_WATCH",
    "EXT_FRAME_FLAG_OUTBOUND_REDIRECT",
    "EXT_FRAME_FLAG_OUTBOUND_TEE",
    "EXT_FRAME_FLAG_OUTBOUND_WATCH",
    "Copy",
    "DecidingRule",
    "Evaluation",
    "FilterResult",
    "RuleLogEntry",
    "RuleSetOutcome",
    "decode_rule_log",
]

# EXT_FRAME flag bytes the real core puts on the copies it sends.
EXT_FRAME_FLAG_OUTBOUND_TEE = 0x02
EXT_FRAME_FLAG_OUTBOUND_WATCH = 0x16
EXT_FRAME_FLAG_OUTBOUND_REDIRECT = 0x04
EXT_FRAME_FLAG_INBOUND_TEE = 0x08
EXT_FRAME_FLAG_INBOUND_WATCH = 0x1C
EXT_FRAME_FLAG_INBOUND_REDIRECT = 0x0A


class FilterResult(enum.IntEnum):
    """The outcome of one rule table (the core's _doZtFilterResult), also used as
    the final verdict of an evaluation."""

    NO_MATCH = 0
    DROP = 1
    REDIRECT = 2
    ACCEPT = 3
    SUPER_ACCEPT = 4


# -------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class RuleLogEntry:
    index: int
    rule_matched: bool | None  # None: skipped (AND with a set already false) or an action
    set_matched: bool | None  # the set's state before this rule (None for actions)


@dataclass(frozen=True, slots=True)
class RuleSetOutcome:
    """One pass over one rule table (the core's _doZtFilter)."""

    result: FilterResult
    index: int  # the action that decided; -1 when the table ran out
    log: bytes  # the 4-bit rule log
    cc_address: int = 0  # TEE/WATCH target left by the pass (0: none)
    cc_length: int = 0
    cc_watch: bool = False
    redirect_to: int = 0  # REDIRECT target (result REDIRECT)
    qos_bucket: int | None = None  # set by ACTION_PRIORITY


@dataclass(frozen=True, slots=True)
class DecidingRule:
    """Which rule decided: ``capability_id`` None for the network's base rules."""

    index: int
    capability_id: int | None = None

    def __str__(self) -> str:
        if self.capability_id is None:
            return f"rule {self.index}"
        return f"capability {self.capability_id} rule {self.index}"


@dataclass(frozen=True, slots=True)
class Copy:
    """An EXT_FRAME the node sends because of TEE, WATCH or REDIRECT."""

    action: RuleType
    address: int
    length: int  # bytes of the frame payload to send
    flags: int  # the EXT_FRAME flags byte


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The full answer for one frame."""

    verdict: FilterResult  # DROP, NO_MATCH (dropped: nothing accepted), ACCEPT, SUPER_ACCEPT, REDIRECT
    inbound: bool
    deciding: DecidingRule | None
    base: RuleSetOutcome
    capability: RuleSetOutcome | None  # the last capability evaluated (the deciding one if any)
    capability_id: int | None
    copies: tuple[Copy, ...]  # TEE/WATCH copies and the REDIRECT, to send as EXT_FRAME
    qos_bucket: int | None

    @property
    def accepted(self) -> bool:
        """The rules let the frame pass (possibly redirected elsewhere)."""
        return self.verdict in (FilterResult.ACCEPT, FilterResult.SUPER_ACCEPT, FilterResult.REDIRECT)

    @property
    def deliver(self) -> bool:
        """The frame goes on to its destination (not dropped, not redirected)."""
        return self.verdict in (FilterResult.ACCEPT, FilterResult.SUPER_ACCEPT)

    @property
    def super_accept(self) -> bool:
        return self.verdict == FilterResult.SUPER_ACCEPT

    @property
    def redirect_to(self) -> int:
        for c in self.copies:
            if c.action == RuleType.ACTION_REDIRECT:
                return c.address
        return 0

    @property
    def rule_log(self) -> list[RuleLogEntry]:
        return decode_rule_log(self.base.log, -1)


def decode_rule_log(log: bytes, count: int = -1) -> list[RuleLogEntry]:
    """Decode a 4-bit rule log (``count`` rules, or as far as it has nonzero entries)."""
    n = count if count >= 0 else len(log) * 2
    out: list[RuleLogEntry] = []
    for i in range(n):
        byte = log[i >> 1] if (i >> 1) < len(log) else 0
        nib = (byte >> ((i & 1) << 2)) & 0x0F
        s, r = nib & 3, (nib >> 2) & 3
        out.append(RuleLogEntry(i, None if r == 0 else r == 2, None if s == 0 else s == 2))
    if count < 0:
        while out and out[-1].set_matched is None:
            out.pop()
    return out
