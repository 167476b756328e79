"""The audit trail in the state store: runs and the change attempts they recorded.

Same semantics as ``history.History`` (which this replaces): one row per change attempt,
committed before ``record`` returns, so a crash mid-apply leaves every completed change
recorded and none invented; ``entries`` oldest first (``limit`` keeps the newest);
``last_written`` the latest write that reached the platform per (shop, scenario, kind).
Words that arrive as ``vocab`` enums (outcomes, actions, scenarios) are stored as their
plain string values (psycopg would otherwise write an Enum's *name*).
``Entry`` stays in ``reconciler.history`` (the renderers import it from there).

A run also records its holder — host, pid, heartbeat and lease — so that ``runs`` can tell a
run that still goes on from one that was interrupted (killed, crashed, taken over). A run
that ends with a journal intent still open (a shop's end could not be recorded, or was lost
with a crash of the database server) is recorded as interrupted, not finished (``finish_run``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..history import Entry
from ..vocab import WRITTEN
from .base import StoreBase
from .schema import changes, journal, locks, runs
from .types import FINISHED, INTERRUPTED, RUNNING, RunInfo

_ENTRY_COLUMNS = (changes.c.id, changes.c.run_id, changes.c.time, runs.c.actor, runs.c.git_commit, runs.c.git_branch,
                  runs.c.checksum, runs.c.command, changes.c.shop, changes.c.scenario, changes.c.action, changes.c.before,
                  changes.c.after, changes.c.outcome, changes.c.error)


def _entries_query() -> sa.Select[Any]:
    return sa.select(*_ENTRY_COLUMNS).select_from(changes.join(runs, runs.c.id == changes.c.run_id))


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(id=r[0], run=r[1], time=r[2], actor=r[3], git_commit=r[4], git_branch=r[5], checksum=r[6], command=r[7],
                 shop=r[8], scenario=r[9], action=r[10], before=json.loads(r[11]) if r[11] else None,
                 after=json.loads(r[12]) if r[12] else None, outcome=r[13], error=r[14])


class HistoryOps(StoreBase):
    """Runs and recorded changes."""

    def start_run(self, *, actor: str, git_commit: str | None, git_branch: str | None, checksum: str | None,
                  command: str = "apply", host: str, pid: int, lease_s: float, time: str | None = None) -> int:
        """A new run held by ``host``/``pid``; returns its id. Its heartbeat starts now."""
        stamp = self._stamp(time)
        with self._write() as conn:
            result = conn.execute(sa.insert(runs).values(
                time=stamp, actor=actor, git_commit=git_commit, git_branch=git_branch, checksum=checksum, command=str(command),
                host=host, pid=pid, heartbeat=self._stamp(), lease_s=float(lease_s), status=RUNNING))
            key = result.inserted_primary_key
        return int(key[0]) if key is not None else 0

    def record(self, run_id: int, *, shop: str, scenario: str | None, action: str, before: Any, after: Any,
               outcome: str, error: str | None = None, time: str | None = None) -> None:
        """One change attempt, committed durably before this returns."""
        with self._write() as conn:
            conn.execute(sa.insert(changes), [self.change_row(run_id, shop=shop, scenario=scenario, action=action,
                                                              before=before, after=after, outcome=outcome, error=error,
                                                              time=time)])

    def change_row(self, run_id: int, *, shop: str, scenario: str | None, action: str, before: Any, after: Any,
                   outcome: str, error: str | None = None, time: str | None = None) -> dict[str, Any]:
        """The ``changes`` row of one change attempt (written by ``record`` or with a shop's end)."""
        return {"run_id": run_id, "time": self._stamp(time), "shop": str(shop),
                "scenario": None if scenario is None else str(scenario), "action": str(action),
                "before": json.dumps(before, sort_keys=True), "after": json.dumps(after, sort_keys=True),
                "outcome": str(outcome), "error": error}

    def finish_run(self, run_id: int, *, exit_code: int) -> list[str]:
        """Mark a run as ended (a run without an end crashed or still goes on); a finished
        run holds no lock, so its locks are released too. Returns the shops whose journal
        intent the run leaves open (normally none): then the run is recorded as
        ``interrupted`` instead (with its exit code), so the next plan names those shops and the
        next apply records what landed there. A shop's end can be missing because it could not
        be committed, or because the database server crashed before flushing it (ends are not
        waited for: ``direct``); this commit is durable and flushes every end before it, so a
        run recorded finished has all of its ends."""
        with self._write(serialize=True) as conn:
            left_open = sorted(conn.execute(sa.select(journal.c.shop).distinct()
                                            .where(journal.c.run_id == run_id, journal.c.done.is_(None))).scalars())
            ended = {"exit_code": exit_code, "status": INTERRUPTED} if left_open else \
                {"finished": self._stamp(), "exit_code": exit_code, "status": FINISHED}
            conn.execute(sa.update(runs).where(runs.c.id == run_id).values(**ended))
            released = conn.execute(sa.delete(locks).where(locks.c.run_id == run_id)).rowcount
            if released:
                self._notify_release(conn)
        if released:
            self._wake.bump()
        return left_open

    def entries(self, *, shops: Sequence[str] | None = None, since: str | None = None,
                limit: int | None = None) -> list[Entry]:
        """Recorded changes, oldest first; ``limit`` keeps the most recent ones."""
        q = _entries_query()
        if shops:
            q = q.where(changes.c.shop.in_(list(shops)))
        if since:
            q = q.where(changes.c.time >= since)
        q = q.order_by(changes.c.id.desc())
        if limit is not None:
            q = q.limit(int(limit))
        with self._read() as conn:
            rows = conn.execute(q).all()
        return [_entry(r) for r in reversed(rows)]

    def last_written(self, shops: Sequence[str]) -> dict[tuple[str, str, str], Entry]:
        """The latest write that reached the platform per (shop, scenario, kind), where kind is
        ``binding`` or ``update`` (``buyer_self_service``): what the tool last set, and when."""
        wanted = sorted(set(shops))
        if not wanted:
            return {}
        is_update = sa.case((changes.c.action == "update", 1), else_=0)
        latest = (sa.select(sa.func.max(changes.c.id))
                  .where(changes.c.outcome.in_([str(w) for w in WRITTEN]), changes.c.scenario.is_not(None), changes.c.shop.in_(wanted))
                  .group_by(changes.c.shop, changes.c.scenario, is_update))
        with self._read() as conn:
            rows = conn.execute(_entries_query().where(changes.c.id.in_(latest))).all()
        out: dict[tuple[str, str, str], Entry] = {}
        for r in rows:
            e = _entry(r)
            if e.scenario:
                out[(e.shop, e.scenario, "update" if e.action == "update" else "binding")] = e
        return out

    def runs(self, ids: Sequence[int] | None = None) -> list[RunInfo]:
        """Runs, oldest first (all, or those of ``ids``), each with its status: ``finished``
        (it has an end), ``running`` (its holder is alive) or ``interrupted``."""
        q = sa.select(runs).order_by(runs.c.id)
        if ids is not None:
            q = q.where(runs.c.id.in_(list(ids)))
        with self._read() as conn:
            rows = conn.execute(q).mappings().all()
        now = self._now()
        return [RunInfo(id=r["id"], time=r["time"], actor=r["actor"], git_commit=r["git_commit"], git_branch=r["git_branch"],
                        checksum=r["checksum"], command=r["command"], finished=r["finished"], exit_code=r["exit_code"],
                        host=r["host"], pid=r["pid"], heartbeat=r["heartbeat"], lease_s=r["lease_s"],
                        status=self.run_status(finished=r["finished"], status=r["status"], host=r["host"], pid=r["pid"],
                                               heartbeat=r["heartbeat"], lease_s=r["lease_s"], now=now))
                for r in rows]

    def applied_runs(self, checksum: str) -> list[RunInfo]:
        """Runs of a plan (by its checksum) that wrote at least one change to the platform, oldest first."""
        wrote = (sa.select(changes.c.run_id).where(changes.c.outcome.in_([str(w) for w in WRITTEN]))
                 .where(changes.c.run_id == runs.c.id).exists())
        with self._read() as conn:
            ids = list(conn.execute(sa.select(runs.c.id).where(runs.c.checksum == checksum, wrote).order_by(runs.c.id))
                       .scalars())
        return self.runs(ids) if ids else []
