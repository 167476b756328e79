"""What every part of the store shares: the engine, transactions, the clock, liveness.

Transactions: ``_read()`` for queries; ``_write()`` for changes (SQLite: ``BEGIN
IMMEDIATE``; committed — durably against a kill, ``synchronous=NORMAL`` in WAL — when the block ends).
``_write(serialize=True)`` also takes a PostgreSQL transaction-scoped advisory lock, so the
read-check-write sequences on the locks table (acquire, renew, release, unlock, intent) run
one at a time across every process; on SQLite ``BEGIN IMMEDIATE`` already does that. Both
take a pooled connection for the one transaction. ``_direct()`` is the apply's hot path (the
journal's intent and end): the thread's own kept connection, the driver's SQL, one round trip
(``direct``). Any database error leaving a transaction becomes a one-line ``StateError``
naming the masked URL.

Liveness: a run's holder is alive when, on this host, its process still exists
(``os.kill(pid, 0)``), and elsewhere while its heartbeat plus its lease is in the future.
A run marked ``interrupted`` (its locks were taken over or unlocked) stays interrupted.

Waking waiters: releasing locks NOTIFYs PostgreSQL listeners (delivered at commit) and
bumps an in-process counter per store, so waiters in this process wake at once on either
engine; waiters elsewhere on SQLite poll with backoff.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..history import format_time
from .direct import Kept, Tx, transaction
from .engine import WRITE, db_errors, explain
from .schema import NOTIFY_CHANNEL, PG_LOCKS_KEY
from .types import FINISHED, INTERRUPTED, RUNNING, lease_end, utc_now
from .urls import Target

Clock = Callable[[], datetime]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a zombie counts as existing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class _Wake:
    """An in-process generation counter: ``bump`` after releasing, ``wait`` until it moves."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.gen = 0

    def bump(self) -> None:
        with self._cond:
            self.gen += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.gen != seen, timeout=max(0.0, timeout))


_WAKES: dict[str, _Wake] = {}
_WAKES_LOCK = threading.Lock()
# SQLite: one writer at a time per database file. Threads of one process queue here for it
# instead of in SQLite's busy handler, which sleeps in growing steps (1 ms … 100 ms) and so
# made eight renewal threads slower than one. Other processes still meet the busy handler.
_WRITERS: dict[str, threading.RLock] = {}


def _writer_for(target: Target) -> threading.RLock | None:
    if target.path is None:
        return None
    with _WAKES_LOCK:
        return _WRITERS.setdefault(str(target.path.resolve()), threading.RLock())


def _wake_for(target: Target) -> _Wake:
    key = str(target.path.resolve()) if target.path is not None else f"{target.host}:{target.port}/{target.database}"
    with _WAKES_LOCK:
        return _WAKES.setdefault(key, _Wake())


class StoreBase:
    """The engine and the helpers the history, lock and journal parts build on."""

    def __init__(self, engine: Engine, target: Target, *, clock: Clock | None = None, host: str | None = None) -> None:
        self._engine = engine
        self.target = target
        self._clock: Clock = clock or utc_now
        self.host = host or socket.gethostname()
        self._errors = db_errors(target)
        self._wake = _wake_for(target)
        self._writer = _writer_for(target)
        self._pg = target.kind == "postgresql"
        self._kept = Kept(engine, pg=self._pg)

    @property
    def url(self) -> str:
        """The store's URL, password masked."""
        return self.target.display

    def close(self) -> None:
        """Give back every connection and close them (no thread may use the store after this)."""
        self._kept.close()
        self._engine.dispose()

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ time

    def _now(self) -> datetime:
        t = self._clock()
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)

    def _stamp(self, time: str | None = None) -> str:
        return time or format_time(self._now())

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except self._errors as e:
            raise self.target.fail(explain(e, self.target)) from None

    @contextmanager
    def _write(self, *, serialize: bool = False) -> Iterator[Connection]:
        with self._writer if self._writer is not None else nullcontext(), self._write_tx(serialize=serialize) as conn:
            yield conn

    @contextmanager
    def _write_tx(self, *, serialize: bool) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    if serialize and self._pg:
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCKS_KEY})
                    yield conn
        except self._errors as e:
            raise self.target.fail(explain(e, self.target)) from None

    @contextmanager
    def _direct(self, *, durable: bool = True, serialize: bool = False) -> Iterator[Tx]:
        """A transaction of one round trip on this thread's kept connection (``direct``);
        ``durable=False`` only where losing it to a server crash is covered (see ``direct``)."""
        try:
            with transaction(self._kept, pg=self._pg, durable=durable, serialize=serialize, writer=self._writer) as tx:
                yield tx
        except self._errors as e:
            raise self.target.fail(explain(e, self.target)) from None

    def _notify_release(self, conn: Connection) -> None:
        """Inside a write transaction that released locks: wake PostgreSQL listeners at commit."""
        if self._pg:
            conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})

    # ------------------------------------------------------------------ liveness

    def holder_alive(self, *, host: str | None, pid: int | None, until: str | None, now: datetime) -> bool:
        """Same host: the process exists. Elsewhere: ``until`` (lease end) is in the future."""
        if host is not None and host == self.host and pid:
            return pid_alive(pid)
        return until is not None and until > format_time(now)

    def run_status(self, *, finished: str | None, status: str | None, host: str | None, pid: int | None,
                   heartbeat: str | None, lease_s: float | None, now: datetime) -> str:
        if finished is not None:
            return FINISHED
        if status == INTERRUPTED or host is None:
            return INTERRUPTED
        until = lease_end(datetime.fromisoformat(heartbeat), lease_s) if heartbeat and lease_s is not None else None
        return RUNNING if self.holder_alive(host=host, pid=pid, until=until, now=now) else INTERRUPTED
