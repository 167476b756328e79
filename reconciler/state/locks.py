"""Run locks: one row per shop in ``locks``, so two applies never write the same shop.

``acquire`` takes every requested shop in ONE serialized transaction, all or nothing. A
shop held by another run whose lease is current blocks; a shop whose holder's lease has
expired (it stopped renewing: killed, frozen, cut off) is taken over and reported, and that
run becomes ``interrupted``. Blocked, ``acquire`` waits up to ``timeout_s``:

- PostgreSQL: a dedicated psycopg connection LISTENs on ``reconciler_locks``; every release
  (``release``, ``unlock``, ``finish_run``) NOTIFYs it at commit, so a waiter retries the
  moment a holder lets go. It also wakes at the earliest lease expiry among the holders (to
  take over) and at its own deadline. LISTEN starts before the retry that follows the first
  refusal, so a release between the two is never missed. Changes to the locks table are
  serialized by ``pg_advisory_xact_lock`` (the table's primary key is the last guard).
- SQLite: ``BEGIN IMMEDIATE`` serializes; waiters in this process wake on release, others
  retry with backoff (50 ms doubling to 1 s), also bounded by the lease expiry and deadline.

A holder keeps its locks by renewing its lease (``renew``, or ``keeper``'s daemon thread,
every lease/3). Liveness for ``unlock``: on the same host the holder's process exists;
elsewhere its lease is current.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import sqlalchemy as sa

from ..history import format_time
from .base import StoreBase
from .engine import explain, pg_params
from .schema import NOTIFY_CHANNEL, locks, runs
from .types import INTERRUPTED, Locked, LockInfo, LockLost, StateError, Takeover, lease_end, locked_message, seconds_until

_T = TypeVar("_T")
_BACKOFF_S = (0.05, 1.0)  # SQLite: first and longest pause between attempts


def _holder_query() -> sa.Select[Any]:
    return (sa.select(locks.c.shop, locks.c.run_id, locks.c.since, locks.c.lease_until, runs.c.actor, runs.c.host, runs.c.pid,
                      runs.c.git_commit, runs.c.finished, runs.c.status)
            .select_from(locks.join(runs, runs.c.id == locks.c.run_id)))


def _holders(rows: Sequence[sa.RowMapping]) -> list[LockInfo]:
    by_run: dict[int, list[sa.RowMapping]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(r)
    out = []
    for run_id in sorted(by_run):
        rs = by_run[run_id]
        first = rs[0]
        out.append(LockInfo(run=run_id, actor=first["actor"], host=first["host"], pid=first["pid"],
                            since=min(r["since"] for r in rs), lease_until=min(r["lease_until"] for r in rs),
                            git_commit=first["git_commit"], shops=tuple(sorted(r["shop"] for r in rs))))
    return out


class Keeper:
    """Renews a run's lease from a daemon thread every ``interval`` seconds. ``lost`` is set
    when the locks are gone (taken over, unlocked) or renewal failed twice in a row (the
    lease may lapse); ``error`` says why. The caller stops writing once ``lost`` is set."""

    def __init__(self, renew: Callable[[], bool], interval: float, name: str) -> None:
        self.lost = threading.Event()
        self.error: str | None = None
        self._renew = renew
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self._interval):
            try:
                ok = self._renew()
            except Exception as e:  # any failure: a thread must not die silently; two in a row lose the lease
                failures += 1
                self.error = str(e).splitlines()[0] if str(e) else type(e).__name__
                if failures >= 2:
                    self.lost.set()
                    return
                continue
            if not ok:
                self.error = "the run's locks were taken over or unlocked"
                self.lost.set()
                return
            failures = 0


class _Listener:
    """A dedicated autocommit psycopg connection LISTENing for lock releases."""

    def __init__(self, params: dict[str, Any]) -> None:
        import psycopg

        self._conn = psycopg.connect(**params, autocommit=True)
        self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, timeout: float) -> None:
        for _ in self._conn.notifies(timeout=max(0.0, timeout), stop_after=1):
            pass

    def close(self) -> None:
        self._conn.close()


class LockOps(StoreBase):
    """Acquire, renew, release and list run locks; unlock a dead run's."""

    def acquire(self, run_id: int, shops: Sequence[str], *, timeout_s: float, lease_s: float,
                on_wait: Callable[[Locked], None] | None = None) -> list[Takeover]:
        """Lock every shop of ``shops`` for ``run_id``, all or none, waiting up to ``timeout_s``
        (0: refuse at once) for other live runs to release them; raises ``Locked`` naming the
        holders. Returns the takeovers from runs whose lease had expired (print them).
        ``on_wait`` is called when waiting starts and whenever the set of holders changes."""
        wanted = sorted(set(shops))
        started = time.monotonic()
        deadline = started + max(0.0, timeout_s)
        listener: _Listener | None = None
        shown: frozenset[int] | None = None
        backoff = _BACKOFF_S[0]
        try:
            while True:
                seen = self._wake.gen
                got = self._try_acquire(run_id, wanted, lease_s)
                if isinstance(got, list):
                    return got
                holders, next_expiry = got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Locked(locked_message(holders, len(wanted), time.monotonic() - started if timeout_s > 0 else 0), holders)
                if on_wait is not None and frozenset(h.run for h in holders) != shown:
                    shown = frozenset(h.run for h in holders)
                    on_wait(Locked(locked_message(holders, len(wanted), 0), holders))
                pause = min(remaining, max(0.01, seconds_until(next_expiry, self._now()) + 0.05))
                if self._pg:
                    if listener is None:
                        listener = self._listen()
                        continue  # retry once now that releases can no longer be missed
                    self._guard(partial(listener.wait, pause))
                else:
                    self._wake.wait(seen, min(pause, backoff))
                    backoff = min(backoff * 2, _BACKOFF_S[1])
        finally:
            if listener is not None:
                listener.close()

    def _try_acquire(self, run_id: int, wanted: list[str], lease_s: float) -> list[Takeover] | tuple[list[LockInfo], str]:
        with self._write(serialize=True) as conn:
            now = self._now()
            now_s = format_time(now)
            me = conn.execute(sa.select(runs.c.finished, runs.c.status).where(runs.c.id == run_id)).first()
            if me is None:
                raise StateError(f"no run {run_id} in the state store {self.url}")
            if me.finished is not None or me.status == INTERRUPTED:
                raise LockLost(f"run {run_id} has ended or its locks were taken over; it cannot lock shops any more")
            rows = conn.execute(_holder_query().where(locks.c.shop.in_(wanted), locks.c.run_id != run_id)).mappings().all()
            blocking = [r for r in rows if r["finished"] is None and r["status"] != INTERRUPTED and r["lease_until"] > now_s]
            if blocking:
                return _holders(blocking), min(r["lease_until"] for r in blocking)
            dead = [r for r in rows if r["finished"] is None and r["status"] != INTERRUPTED]
            takeovers = [Takeover(run=h.run, actor=h.actor, host=h.host, shops=h.shops,
                                  expired_at=max(r["lease_until"] for r in dead if r["run_id"] == h.run))
                         for h in _holders(dead)]
            dead_runs = [t.run for t in takeovers]
            if dead_runs:
                conn.execute(sa.update(runs).where(runs.c.id.in_(dead_runs), runs.c.finished.is_(None))
                             .values(status=INTERRUPTED))
                conn.execute(sa.delete(locks).where(locks.c.run_id.in_(dead_runs), locks.c.lease_until <= now_s))
            if rows:  # stale rows: expired, or left by finished or interrupted runs
                conn.execute(sa.delete(locks).where(locks.c.shop.in_([r["shop"] for r in rows])))
            until = lease_end(now, lease_s)
            own = set(conn.execute(sa.select(locks.c.shop).where(locks.c.run_id == run_id)).scalars())
            new = [s for s in wanted if s not in own]
            if new:
                conn.execute(sa.insert(locks), [{"shop": s, "run_id": run_id, "since": now_s, "lease_until": until} for s in new])
            conn.execute(sa.update(locks).where(locks.c.run_id == run_id).values(lease_until=until))
            conn.execute(sa.update(runs).where(runs.c.id == run_id).values(heartbeat=now_s, lease_s=float(lease_s)))
        return takeovers

    def _listen(self) -> _Listener:
        params = pg_params(self.target)
        return self._guard(lambda: _Listener(params))

    def _guard(self, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except self._errors as e:
            raise self.target.fail(explain(e, self.target)) from None

    def renew(self, run_id: int) -> bool:
        """Extend the run's heartbeat and every one of its locks' leases by its lease; False
        when the run ended or its locks were taken away (taken over, ``unlock --force``)."""
        with self._write(serialize=True) as conn:
            me = conn.execute(sa.select(runs.c.finished, runs.c.status, runs.c.lease_s).where(runs.c.id == run_id)).first()
            if me is None or me.finished is not None or me.status == INTERRUPTED:
                return False
            now = self._now()
            conn.execute(sa.update(runs).where(runs.c.id == run_id).values(heartbeat=format_time(now)))
            conn.execute(sa.update(locks).where(locks.c.run_id == run_id)
                         .values(lease_until=lease_end(now, me.lease_s if me.lease_s is not None else 60.0)))
        return True

    @contextmanager
    def keeper(self, run_id: int, lease_s: float) -> Iterator[Keeper]:
        """Renew ``run_id``'s lease every ``lease_s``/3 while the block runs (see ``Keeper``)."""
        k = Keeper(lambda: self.renew(run_id), max(0.05, lease_s / 3), name=f"reconciler-lease-{run_id}")
        k.start()
        try:
            yield k
        finally:
            k.stop()

    def release(self, run_id: int) -> list[str]:
        """Give up every lock of the run (waiters wake at once); returns the shops released."""
        with self._write(serialize=True) as conn:
            shops = sorted(conn.execute(sa.select(locks.c.shop).where(locks.c.run_id == run_id)).scalars())
            if shops:
                conn.execute(sa.delete(locks).where(locks.c.run_id == run_id))
                self._notify_release(conn)
        if shops:
            self._wake.bump()
        return shops

    def locks(self) -> list[LockInfo]:
        """Every held lock, one entry per run (oldest run first), shops sorted."""
        with self._read() as conn:
            rows = conn.execute(_holder_query()).mappings().all()
        return _holders(rows)

    def unlock(self, run_id: int, *, force: bool = False) -> list[str]:
        """Free a dead run's locks at once and mark it interrupted; returns its shops.
        Refused (``StateError``) when no such run holds a lock, or when its holder is alive —
        on this host its process exists, elsewhere its lease is current — unless ``force``."""
        with self._write(serialize=True) as conn:
            rows = conn.execute(_holder_query().where(locks.c.run_id == run_id)).mappings().all()
            if not rows:
                known = conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is not None
                raise StateError(f"run {run_id} holds no lock" if known else f"no run {run_id} in the state store {self.url}")
            holder = _holders(rows)[0]
            until = max(r["lease_until"] for r in rows)
            if not force and rows[0]["finished"] is None and rows[0]["status"] != INTERRUPTED \
                    and self.holder_alive(host=holder.host, pid=holder.pid, until=until, now=self._now()):
                how = (f"its process {holder.pid} still runs on this host" if holder.host == self.host
                       else f"its lease on {holder.host} runs until {until}")
                raise StateError(f"run {run_id} is alive ({how}); it may be writing to its {len(holder.shops)} shop(s)."
                                 f" If you are sure it is not: unlock --force {run_id}")
            conn.execute(sa.delete(locks).where(locks.c.run_id == run_id))
            conn.execute(sa.update(runs).where(runs.c.id == run_id, runs.c.finished.is_(None)).values(status=INTERRUPTED))
            self._notify_release(conn)
        self._wake.bump()
        return list(holder.shops)
