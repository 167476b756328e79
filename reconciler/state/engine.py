"""SQLAlchemy engines for the state store, and database errors turned into one clear line.

The one place that knows the two engines apart at the connection level:
- SQLite (pysqlite): WAL (readers never wait for the writer), ``synchronous=NORMAL`` (in
  WAL mode a committed row survives the process being killed at any instant — the crash
  this journal is for; a power cut can lose the last commits but never corrupts the file;
  ``FULL`` cost an fsync per row, 2.5× on apply: teams wanting power-cut durability use
  PostgreSQL), a 30 s busy timeout, and transactions we begin
  ourselves, as SQLAlchemy documents for pysqlite: the driver's own transaction handling is
  switched off on connect and the ``begin`` event issues ``BEGIN IMMEDIATE`` for writes
  (the write lock is taken up front, so two writers never deadlock upgrading a read lock)
  and a plain ``BEGIN`` for reads. Connections come from a pool, one per thread at a time.
- PostgreSQL through psycopg 3 (``postgresql+psycopg``), a bounded connect timeout.

The pool keeps 8 connections and opens up to 64 more when they are all out: an apply's worker
threads each keep one for the run (``direct``; ``parallelism`` is at most 64), next to the
main thread's and the lease keeper's.

``explain`` maps a driver or SQLAlchemy exception to a reason a user can act on; the text of
those exceptions can hold the URL or the password, so it never reaches a message unmasked
and is never chained (callers raise ``target.fail(explain(e)) from None``).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from .urls import ENV_PASSWORD, Target

CONNECT_TIMEOUT_S = 5
BUSY_TIMEOUT_S = 30
POOL_SIZE = 8
POOL_OVERFLOW = 64  # the largest parallelism: every worker thread keeps one connection for the run
WRITE = "reconciler_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)


def db_errors(target: Target) -> tuple[type[BaseException], ...]:
    """The exception types a store operation turns into a ``StateError``."""
    types: list[type[BaseException]] = [sa.exc.SQLAlchemyError, sqlite3.Error]
    if target.kind == "postgresql":
        import psycopg

        types.append(psycopg.Error)
    return tuple(types)


def pg_params(target: Target) -> dict[str, Any]:
    """Connection parameters for a raw psycopg connection (the LISTEN connection)."""
    params: dict[str, Any] = {"host": target.host, "dbname": target.database, "connect_timeout": CONNECT_TIMEOUT_S,
                              "application_name": "reconciler"}
    for key, value in (("port", target.port), ("user", target.user), ("password", target.password)):
        if value is not None:
            params[key] = value
    params.update(dict(target.query))
    return params


def create_engine(target: Target) -> Engine:
    if target.kind == "sqlite":
        assert target.path is not None
        engine = sa.create_engine(URL.create("sqlite+pysqlite", database=str(target.path)),
                                  connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
                                  pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_timeout=BUSY_TIMEOUT_S)
        _sqlite_hooks(engine)
        return engine
    query = {"connect_timeout": str(CONNECT_TIMEOUT_S), "application_name": "reconciler", **dict(target.query)}
    url = URL.create("postgresql+psycopg", username=target.user, password=target.password, host=target.host,
                     port=target.port, database=target.database, query=query)
    return sa.create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_timeout=BUSY_TIMEOUT_S)


def _wal(cur: sqlite3.Cursor) -> None:
    """Switch the file to WAL (a no-op once it is). Turning a rollback-journal file (a new
    file, a version 1 history) into WAL needs its exclusive lock, and SQLite answers
    SQLITE_BUSY at once, without the busy handler, while another connection holds any lock
    on it: several processes opening a new or old store together failed that way ("database
    is locked" in no time). So retry, with a short growing pause, for up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.fetchall()
            return
        except sqlite3.OperationalError as e:
            low = str(e).lower()
            if ("locked" not in low and "busy" not in low) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit transactions: ``_begin`` issues them
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            _wal(cur)
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


def explain(error: BaseException, target: Target) -> str:
    """Why an operation on the store failed, in a few words (masked by ``Target.fail``)."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip()
    low = text.lower()
    where = f"{target.host}:{target.port or 5432}"
    if target.kind == "sqlite":
        if "not a database" in low:
            return "not a database file (move it away to start a new store)"
        if "unable to open database file" in low:
            return "cannot open the database file (check the directory and its permissions)"
        if "database is locked" in low or "database is busy" in low:
            return f"busy: another process held its write lock for more than {BUSY_TIMEOUT_S} s"
        if "readonly" in low or "read-only" in low:
            return "the database file is read-only"
        if "disk i/o" in low or "disk is full" in low or "database or disk is full" in low:
            return f"cannot write the database file ({text.splitlines()[0]})"
    else:
        if "password authentication failed" in low or "authentication failed" in low:
            return f"authentication failed for user {target.user!r} (check the password, env {ENV_PASSWORD})"
        if "no password supplied" in low or "fe_sendauth" in low:
            return f"the server asks for a password and none was given (put it in env {ENV_PASSWORD})"
        if "does not exist" in low and "database" in low:
            return f"database {target.database!r} does not exist on {where}"
        if "role" in low and "does not exist" in low:
            return f"user {target.user!r} does not exist on {where}"
        if "connection refused" in low:
            return f"cannot connect to {where}: connection refused (is the server running there?)"
        if "timeout expired" in low or "timed out" in low:
            return f"cannot connect to {where}: no answer within {CONNECT_TIMEOUT_S} s"
        if "could not translate host name" in low or "name or service not known" in low or "nodename nor servname" in low:
            return f"unknown host {target.host!r}"
        if "no route to host" in low or "network is unreachable" in low:
            return f"cannot connect to {where}: the host is unreachable"
        if "permission denied" in low:
            return f"permission denied ({text.splitlines()[0]})"
        if "ssl negotiation" in low or "received invalid response" in low or "unsupported frontend protocol" in low:
            return f"cannot connect to {where}: what answers there is not a PostgreSQL server"
        if "server closed the connection" in low or "terminating connection" in low or "consuming input failed" in low:
            return "the server closed the connection"
    first = text.splitlines()[0] if text else type(orig).__name__
    return f"{type(orig).__name__}: {first}"
