"""The state store's vocabulary: its errors and the plain values its methods return.

Kept apart from the store itself so that the CLI, renderers and tests can name these types
(and catch these errors) without importing SQLAlchemy. Every value is a frozen dataclass of
plain data; ``to_data()`` gives the JSON shape of the contract where there is one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..history import format_time
from .words import FINISHED as FINISHED
from .words import INTERRUPTED as INTERRUPTED
from .words import RUNNING as RUNNING
from .words import StateError as StateError


class Locked(StateError):
    """Shops are held by another live run. ``holders``: one ``LockInfo`` per holding run,
    limited to the requested shops it holds."""

    def __init__(self, message: str, holders: Sequence[LockInfo]) -> None:
        super().__init__(message)
        self.holders = list(holders)


class LockLost(StateError):
    """The run no longer holds a shop's lock (taken over after its lease expired, or
    ``unlock --force``): it must not write to that shop."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def lease_end(now: datetime, lease_s: float) -> str:
    """``now + lease_s`` in the stored format, rounded UP to the second (never early)."""
    t = now.astimezone(UTC) + timedelta(seconds=lease_s)
    if t.microsecond:
        t = t.replace(microsecond=0) + timedelta(seconds=1)
    return format_time(t)


def seconds_until(stored: str, now: datetime) -> float:
    """Seconds from ``now`` to a stored time (negative when it has passed)."""
    return (datetime.fromisoformat(stored) - now).total_seconds()


@dataclass(frozen=True)
class RunInfo:
    """One run (one ``apply``) and whether it ended, still runs, or was interrupted."""

    id: int
    time: str
    actor: str
    git_commit: str | None
    git_branch: str | None
    checksum: str | None
    command: str
    finished: str | None
    exit_code: int | None
    host: str | None
    pid: int | None
    heartbeat: str | None
    lease_s: float | None
    status: str  # finished | interrupted | running

    def to_data(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LockInfo:
    """The shop locks one run holds: who, where, since when, until when (its lease)."""

    run: int
    actor: str
    host: str | None
    pid: int | None
    since: str  # the earliest acquisition of these shops
    lease_until: str  # the earliest lease end of these shops
    git_commit: str | None
    shops: tuple[str, ...]  # sorted

    def line(self) -> str:
        """``run 12 (alice on ci-3, pid 4242, since T, git 0123456789): 2 shop(s): 100001, 100002``."""
        git = f", git {self.git_commit[:10]}" if self.git_commit else ""
        shown = ", ".join(self.shops[:8]) + (f", … ({len(self.shops) - 8} more)" if len(self.shops) > 8 else "")
        return (f"run {self.run} ({self.actor} on {self.host or 'an unknown host'}, pid {self.pid}, since {self.since}{git}):"
                f" {len(self.shops)} shop(s): {shown}")

    def to_data(self) -> dict[str, Any]:
        """The contract's ``locks`` entry: ``{"run": "<ID>", "actor", "host", "pid", "since", "shops"}``."""
        return {"run": str(self.run), "actor": self.actor, "host": self.host, "pid": self.pid, "since": self.since,
                "shops": list(self.shops)}


@dataclass(frozen=True)
class Takeover:
    """Locks taken from a run whose lease had expired (that run is now ``interrupted``)."""

    run: int
    actor: str
    host: str | None
    shops: tuple[str, ...]
    expired_at: str

    def message(self) -> str:
        return (f"taking over {len(self.shops)} shop(s) from run {self.run} ({self.actor} on {self.host or 'an unknown host'}),"
                f" whose lease expired at {self.expired_at}")


@dataclass(frozen=True)
class InterruptedShop:
    """A shop an interrupted run announced changes for and never reported done: it may be
    half-changed. ``changes`` are the intended changes as the run recorded them."""

    shop: str
    run: int
    run_time: str
    actor: str
    intended_at: str
    changes: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def message(self) -> str:
        """For a plan problem or a drift finding."""
        return (f"run {self.run} ({self.actor}, started {self.run_time}) was interrupted while changing this shop"
                f" ({len(self.changes)} change(s) intended at {self.intended_at}); it may be half-changed:"
                " apply brings it to the configuration first")


def locked_message(holders: Sequence[LockInfo], wanted: int, waited_s: float) -> str:
    held = sum(len(h.shops) for h in holders)
    waited = f" (waited {math.ceil(waited_s)}s)" if waited_s > 0 else ""
    head = f"{held} of the {wanted} shop(s) to apply are locked by another run{waited}:"
    return "\n".join([head, *(f"  {h.line()}" for h in holders)])
