"""Exception types shared by every layer, and the one way to report an error
that a broad handler caught (`report_unexpected`)."""

from __future__ import annotations

import logging
from collections import Counter

__all__ = [
    "UNEXPECTED",
    "InvalidFormatError",
    "MissingLibraryError",
    "ZTError",
    "report_unexpected",
]


class ZTError(Exception):
    """Base class of every error ztcore raises on purpose."""


class MissingLibraryError(ZTError, ImportError):
    """A required shared library (libsodium) could not be loaded."""


class InvalidFormatError(ZTError, ValueError):
    """Input bytes or text do not follow the ZeroTier format they claim to."""


# Process-wide count of errors caught by broad handlers, by where they were caught.
# Any non-zero entry is a bug (or a broken callback of the embedding program).
UNEXPECTED: Counter[str] = Counter()


def report_unexpected(logger: logging.Logger, where: str, exc: BaseException) -> int:
    """Count and log an exception that a broad ``except`` caught instead of letting it
    take down what must keep running (packet processing, a service loop, a callback).

    One WARNING line at the 1st, 10th, 100th ... occurrence of each `where` (so a
    hostile packet stream cannot flood the log), the traceback at DEBUG every time.
    Returns how many times `where` has now been hit.
    """
    n = UNEXPECTED[where] = UNEXPECTED[where] + 1
    if _is_power_of_ten(n):
        logger.warning("%s: %s: %s (%d so far)", where, type(exc).__name__, exc, n)
    logger.debug("%s: traceback", where, exc_info=exc)
    return n


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
