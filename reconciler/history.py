"""The audit trail's words: what one recorded change attempt is (``Entry``), who acts, and
how times are written and filtered. The trail itself lives in the state store
(``reconciler.state``): one row per change attempt, written (and committed) the moment its
outcome is known, so a crash in the middle of ``apply`` leaves every completed change
recorded and none invented. A run (one ``apply``) carries who, from which git commit and
branch, and the plan checksum. Rows carry no secret: appkeys are not secrets; session keys
and the app secret never reach the trail.

Times are UTC ISO-8601 to the second (``2024-05-01T03:04:05+00:00``); they compare as
strings, which is how ``--since`` filters. Outcomes (``vocab.Outcome``): ``applied``,
``already-applied`` (the platform already held the change), ``failed``, ``refused`` (the
whole plan was refused: stale, unsafe, locked, not confirmed), ``rolled-back`` and
``rollback-failed`` (the undo of an applied change, after another change of its shop failed).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .clock import format_time as format_time  # (defined there: a plan stamps times without this module)

FORMAT_VERSION = 1

CI_ACTOR_VARS = ("RECONCILER_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILDKITE_BUILD_CREATOR", "BUILD_REQUESTEDFOR", "USER")


def now() -> str:
    return format_time(datetime.now(UTC))




def default_actor() -> str:
    for var in CI_ACTOR_VARS:
        if os.environ.get(var):
            return os.environ[var]
    import getpass  # (only by the commands that record who ran them)

    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"


_AGO = re.compile(r"^\s*([0-9]+)\s*([smhdw])\s*$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now_: datetime | None = None) -> str:
    """``--since``: a date (midnight UTC), an ISO time (naive = UTC) or an age such as ``36h``,
    ``7d``; returns the history's time format, rounded up to the second (times are stored to
    the second, so ``time >= result`` keeps exactly the changes at or after the given time)."""
    m = _AGO.match(text)
    if m:
        base = now_ or datetime.now(UTC)
        try:
            t = base - timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})
        except (OverflowError, ValueError):
            return format_time(datetime.min.replace(tzinfo=UTC))  # longer ago than any record: everything
    else:
        s = text.strip()
        try:
            t = datetime.fromisoformat(s.replace("Z", "+00:00")) if "T" in s or " " in s or ":" in s \
                else datetime.combine(date.fromisoformat(s), datetime.min.time())
        except ValueError:
            raise ValueError(f"expected a date (2024-05-01), an ISO time (2024-05-01T08:00:00+08:00)"
                             f" or an age (36h, 7d), got {text!r}") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
    try:
        t = t.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 / 9999-12-31T23:59:59-14:00: beyond representable UTC times
        t = (datetime.max if t.year > 1 else datetime.min).replace(tzinfo=UTC, microsecond=0)
    if t.microsecond:
        t = t.replace(microsecond=0) + timedelta(seconds=math.ceil(t.microsecond / 1e6))
    return format_time(t)


@dataclass(frozen=True)
class Entry:
    """One recorded change attempt with its run's context."""

    id: int
    run: int
    time: str
    actor: str
    git_commit: str | None
    git_branch: str | None
    checksum: str | None
    command: str
    shop: str
    scenario: str | None
    action: str
    before: Any
    after: Any
    outcome: str
    error: str | None

    def to_data(self) -> dict[str, Any]:
        return dict(self.__dict__)
