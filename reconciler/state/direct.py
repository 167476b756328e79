"""The apply's hot path: a connection per thread, kept for the store's life, and a transaction
of one round trip on it.

An apply commits two transactions per shop: its journal intent before the first write, and its
end with its history rows. Through SQLAlchemy each took a connection out of the pool and back
and built its statements anew; on PostgreSQL each cost a round trip per statement and for
``BEGIN`` and ``COMMIT`` (five or six) and a wait for the WAL flush — 3.5× the apply of the
code before the store. Here:

- ``Kept``: each thread that writes the journal takes ONE connection out of the engine's pool
  the first time and keeps it until the store is closed; no two threads ever share one (a
  connection is not safe to use from two threads at once). A thread that has ended gives its
  connection back the next time a thread takes one, and ``close`` gives back all of them. A
  connection that failed is discarded (invalidated), never reused: the thread's next
  transaction takes a fresh one.
- ``transaction``: statements go straight to the driver, their SQL written once (``:name``
  parameters; psycopg's ``%(name)s`` made from it once per statement). On PostgreSQL the
  connection is in autocommit mode and the whole transaction — ``BEGIN``, the statements,
  ``COMMIT`` — is sent as ONE query, its parameters bound by psycopg (``ClientCursor``: quoted
  by libpq for the connection's encoding), and its results read in order when it returns: one
  round trip, one message each way. (psycopg's pipeline mode takes one round trip too, after
  its own ``BEGIN`` is synced, but sends every statement on its own: twice the client's CPU on
  this path.) Results are read after the block. On SQLite: ``BEGIN IMMEDIATE`` … ``COMMIT`` on
  the raw ``sqlite3`` connection, under the store's in-process writer lock.
- Few statements: the transaction's settings in one ``SELECT``; an intent is one ``INSERT …
  SELECT … WHERE EXISTS`` (the lock check) that returns its id; an end is the shop's history
  rows in one ``INSERT`` (a ``VALUES`` list) and an ``UPDATE`` of that id.

Durability (PostgreSQL; SQLite commits in WAL with ``synchronous=NORMAL``, see ``engine``):
``durable=True`` (the intent) commits synchronously, and raises ``synchronous_commit`` to
``on`` for the transaction when the server is set to ``off``: when ``COMMIT`` returns, the
intent is on disk — a crash of anything after the platform write finds it. ``durable=False``
(a shop's end: its history rows and journal end) commits with ``synchronous_commit = off``:
visible to everyone at once, written to disk by the WAL writer within a few hundred ms,
without waiting for the flush. Only a crash of the database server (or its machine) in that
window can lose it — never a crash or kill of reconciler, and never a part of it (the
transaction is atomic). What is lost then is exactly what a kill of reconciler between the
shop's writes and its end leaves: the intent open, so the next plan names the shop and the
next apply records the writes that landed (``run.ApplyRun.recover``). The WAL is flushed in
order: the next synchronous commit (the next shop's intent, a lease renewal) makes every
earlier end durable too, so only the ends since the last one are ever at risk. And a server
that crashed and came back while the run goes on: the run's finish (``runs.finish_run``,
durable) finds the lost ends' intents still open and records the run as interrupted instead
of finished, so the next plan names those shops and the next apply records what landed there
— as for a killed run. A run recorded finished has every end on disk.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from .schema import PG_LOCKS_KEY

Params = Mapping[str, Any]

# PostgreSQL: the intent is durable even on a server set to synchronous_commit = off
# (``local``, ``remote_write``, ``on``, ``remote_apply`` all flush locally; they stay as they are).
_DURABLE = ("set_config('synchronous_commit', CASE current_setting('synchronous_commit') WHEN 'off' THEN 'on'"
            " ELSE current_setting('synchronous_commit') END, true)")
_NOT_WAITING = "set_config('synchronous_commit', 'off', true)"
_SERIALIZE = f"pg_advisory_xact_lock({PG_LOCKS_KEY})"
_VALUES = re.compile(r"\bVALUES\s*(\(.*\))\s*$", re.DOTALL)


@lru_cache(maxsize=64)
def _pyformat(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (the statements here hold no ``%`` or ``::``)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


class Result:
    """One statement's result: read it after the transaction's block (PostgreSQL: they arrive
    with the commit)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.rowcount = -1

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Tx:
    """The statements of one transaction (see ``transaction``). PostgreSQL: queued, with their
    parameters bound by psycopg (``ClientCursor``), and sent as one query with ``BEGIN`` and
    ``COMMIT`` when the block ends; SQLite: run at once."""

    def __init__(self, conn: Any, *, pg: bool, cursor: Any = None) -> None:
        self._conn = conn
        self._pg = pg
        self._cursor = cursor  # PostgreSQL: the connection's ClientCursor
        self._queued: list[str] = []
        self._results: list[Result | None] = []

    def run(self, sql: str, params: Params | None = None) -> Result:
        result = Result()
        if self._pg:
            self._queued.append(self._cursor.mogrify(_pyformat(sql), params))
            self._results.append(result)
        else:
            cur = self._conn.execute(sql, params or {})
            result.rows, result.rowcount = cur.fetchall(), cur.rowcount  # read now: before COMMIT
        return result

    def insert(self, sql: str, params: Params) -> Result:
        """An ``INSERT`` of at most one row: ``scalar()`` is the new row's ``id`` (None: no row)."""
        if self._pg:
            return self.run(sql + " RETURNING id", params)
        result = Result()
        cur = self._conn.execute(sql, params)
        result.rowcount = cur.rowcount
        result.rows = [(cur.lastrowid,)] if cur.rowcount == 1 else []
        return result

    def many(self, sql: str, rows: Sequence[Params]) -> None:
        """An ``INSERT … VALUES (…)`` of every row (PostgreSQL: one statement, a VALUES list)."""
        if not rows:
            return
        if not self._pg:
            self._conn.executemany(sql, rows)
            return
        found = _VALUES.search(sql)
        assert found is not None, sql
        one = _pyformat(found.group(1))
        values = ", ".join(self._cursor.mogrify(one, row) for row in rows)
        self._queued.append(sql[:found.start(1)] + values)
        self._results.append(None)

    def send(self, head: Sequence[str]) -> None:
        """PostgreSQL: ``head`` (``BEGIN`` …), the queued statements and ``COMMIT`` as ONE query
        (one round trip); then each statement's result."""
        cur = self._cursor
        cur.execute("; ".join([*head, *self._queued, "COMMIT"]), prepare=False)  # its values are in it: never the same twice
        for _ in head:
            cur.nextset()
        for result in self._results:
            if result is not None:
                result.rowcount = cur.rowcount
                result.rows = cur.fetchall() if cur.description is not None else []
            cur.nextset()


class Kept:
    """One pooled DBAPI connection per thread, kept until ``close`` (see the module doc-string)."""

    def __init__(self, engine: Engine, *, pg: bool) -> None:
        self._engine = engine
        self._pg = pg
        self._local = threading.local()
        self._all: dict[threading.Thread, PoolProxiedConnection] = {}
        self._lock = threading.Lock()

    def get(self) -> PoolProxiedConnection:
        """This thread's connection (taken out of the pool the first time)."""
        fairy: PoolProxiedConnection | None = getattr(self._local, "conn", None)
        if fairy is not None:
            return fairy
        self._reap()
        fairy = self._engine.raw_connection()
        try:
            if self._pg:
                from psycopg import ClientCursor

                driver: Any = fairy.driver_connection
                driver.autocommit = True
                self._local.cursor = ClientCursor(driver)
        except BaseException:
            fairy.invalidate()
            raise
        self._local.conn = fairy
        with self._lock:
            self._all[threading.current_thread()] = fairy
        return fairy

    def drop(self) -> None:
        """This thread's connection failed: discard it (its transaction dies with it)."""
        fairy = self._local.__dict__.pop("conn", None)
        self._local.__dict__.pop("cursor", None)
        with self._lock:
            self._all.pop(threading.current_thread(), None)
        if fairy is not None:
            with suppress(Exception):  # already broken: nothing more to give back
                fairy.invalidate()

    def cursor(self) -> Any:
        """PostgreSQL: the ClientCursor of this thread's connection (after ``get``)."""
        return self._local.cursor

    def held(self) -> int:
        """How many threads hold a connection now."""
        with self._lock:
            return len(self._all)

    def close(self) -> None:
        """Give every kept connection back to the pool (their threads must not use them any more)."""
        with self._lock:
            fairies = list(self._all.values())
            self._all.clear()
        self._local = threading.local()
        for f in fairies:
            self._give_back(f)

    def _reap(self) -> None:
        """Give back the connections of threads that have ended."""
        with self._lock:
            gone = [t for t in self._all if not t.is_alive()]
            fairies = [self._all.pop(t) for t in gone]
        for f in fairies:
            self._give_back(f)

    def _give_back(self, fairy: PoolProxiedConnection) -> None:
        try:
            if self._pg:
                driver: Any = fairy.driver_connection
                driver.autocommit = False  # as the pool hands connections out
            fairy.close()
        except Exception:
            fairy.invalidate()


@contextmanager
def transaction(kept: Kept, *, pg: bool, durable: bool, serialize: bool,
                writer: threading.RLock | None) -> Iterator[Tx]:
    """One transaction on this thread's kept connection, committed when the block ends (see the
    module doc-string for ``durable``). ``serialize``: PostgreSQL takes the locks table's
    advisory lock first (SQLite's ``BEGIN IMMEDIATE`` serializes already). Any exception
    discards the connection, so no transaction is left open on it; database errors are the
    caller's to turn into ``StateError``."""
    with writer if writer is not None and not pg else nullcontext():
        try:
            conn: Any = kept.get().driver_connection
            if pg:
                tx = Tx(conn, pg=True, cursor=kept.cursor())
                yield tx
                settings = [_DURABLE if durable else _NOT_WAITING, *([_SERIALIZE] if serialize else [])]
                tx.send(["BEGIN", "SELECT " + ", ".join(settings)])
            else:
                conn.execute("BEGIN IMMEDIATE")
                yield Tx(conn, pg=False)
                conn.execute("COMMIT")
        except BaseException:
            kept.drop()
            raise
