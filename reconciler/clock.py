"""Today's date in China time (UTC+8), the calendar waivers end by.

A waiver's ``until`` is inclusive and read in China time, whatever the machine's zone (a
CI runner is usually UTC): a waiver until 2027-01-31 holds until 2027-01-31 24:00 +08:00.
``RECONCILER_TODAY`` (``YYYY-MM-DD``) stands in for the clock: to preview which waivers will
have ended on a given day, and in tests, which never depend on the wall clock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone

from .errors import ReconcilerError

CHINA = timezone(timedelta(hours=8), "UTC+8")
TODAY_ENV = "RECONCILER_TODAY"


def format_time(t: datetime) -> str:
    """A time as the history stores it (UTC, seconds)."""
    return t.astimezone(UTC).isoformat(timespec="seconds")


def china_date(moment: datetime) -> date:
    """The date in China of an aware moment."""
    return moment.astimezone(CHINA).date()


def today(environ: Mapping[str, str] | None = None, *, now: datetime | None = None) -> date:
    """Today in China: ``RECONCILER_TODAY`` when set, else the clock (``now`` for tests of this function)."""
    env = os.environ if environ is None else environ
    given = env.get(TODAY_ENV)
    if given:
        try:
            return date.fromisoformat(given.strip())
        except ValueError:
            raise ReconcilerError(f"{TODAY_ENV}: expected a date like 2027-01-31, got {given[:40]!r}") from None
    return china_date(now or datetime.now(UTC))
