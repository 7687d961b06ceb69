"""Outliving an outage: the waits between tries while a dependency is away, and one log line
when the outage begins and one when it ends (not one per try, so a long night without a
database leaves two lines, not thousands). The outbox worker and ``flask upkeep`` both wait
out a database that is down this way."""

from __future__ import annotations

import logging
import time

# Waits between tries while a dependency is away: 0.5 s doubling up to 15 s, so a restart of a
# few seconds costs about that, and a long outage one try every 15 s.
FIRST_WAIT = 0.5
LONGEST_WAIT = 15.0


def wait_before_try(failures: int, longest: float = LONGEST_WAIT) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1 for the first), at most
    ``longest`` (upkeep never waits longer than its interval)."""
    # A shift, not 2 ** n: the type checker cannot tell that a power with an int exponent is int.
    return min(FIRST_WAIT * (1 << max(failures - 1, 0)), longest)


class Outage:
    """Whether one dependency is down, logging a line on ``log`` when that begins and when it
    ends."""

    def __init__(self, what: str, log: logging.Logger) -> None:
        self.what = what
        self.log = log
        self.since: float | None = None

    def failed(self, error: object) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning(
                "%s unreachable, retrying until it is back: %s", self.what, _first(error)
            )

    def recovered(self) -> None:
        if self.since is not None:
            self.log.warning("%s back after %.1f s", self.what, time.monotonic() - self.since)
            self.since = None


def _first(error: object) -> str:
    """The first line of an error: driver messages run to several lines with SQL and hints."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
