"""The state store: one object for the history, the run locks, the apply journal and the shops'
sealed authorizations, on
SQLite or PostgreSQL through one SQLAlchemy Core code path; and opening it.

Opening checks everything that can be wrong before a command relies on the store, each as
one ``StateError`` line naming the masked URL: an SQLite directory that does not exist
(only the config dir's own ``.reconciler/`` is created), a file that is not a database, an
unreachable server, a refused password, a missing database, a store newer than this
reconciler. It then upgrades an older store (see ``schema``). ``create=False`` (read-only
commands) never creates anything: no SQLite file, or an empty database, gives None.

A ``Store`` is thread-safe: every method takes a pooled connection for one transaction, but
the journal's intent and end (an apply's hot path), which use the calling thread's own
connection, kept until ``close`` (``direct``).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .base import Clock
from .engine import WRITE, create_engine, db_errors, explain
from .journal import JournalOps
from .locks import LockOps
from .runs import HistoryOps
from .schema import CURRENT, PG_UPGRADE_KEY, upgrade, version
from .tokens import TokenOps
from .types import StateError
from .urls import Target, is_tool_dir


class Store(HistoryOps, LockOps, JournalOps, TokenOps):
    """The state store of a config dir (see the package doc-string for the whole API)."""

    def schema_version(self) -> int | None:
        with self._read() as conn:
            return version(conn)

    def __enter__(self) -> Store:
        return self


def open_target(target: Target, *, config_dir: Path, create: bool, clock: Clock | None, host: str | None) -> Store | None:
    if target.kind == "sqlite" and not _sqlite_ready(target, config_dir, create=create):
        return None
    engine = create_engine(target)
    try:
        with engine.connect() as conn:
            found = version(conn)
        if found is None and not create:
            engine.dispose()
            return None
        _refuse_newer(target, found)
        if found != CURRENT:
            _upgrade(engine, target)
    except db_errors(target) as e:
        engine.dispose()
        raise target.fail(explain(e, target)) from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, target, clock=clock, host=host)


def _sqlite_ready(target: Target, config_dir: Path, *, create: bool) -> bool:
    """Whether to connect: False when the file does not exist and may not be created.
    Raises when it cannot be: its directory is missing (and is not ``.reconciler/``) — for
    read-only commands too, which would otherwise report an empty history (and no locks,
    no interrupted shops) for a URL that names a directory that is not there."""
    path = target.path
    assert path is not None
    if path.is_dir():
        raise target.fail(f"{path} is a directory, not a database file")
    if path.exists():
        return True
    parent = path.parent
    if parent.is_dir():
        return create
    if parent.exists():
        raise target.fail(f"{parent} is not a directory")
    if not is_tool_dir(parent, config_dir):
        raise target.fail(f"directory {parent} does not exist (create it, or correct the URL)")
    if not create:
        return False
    if not config_dir.is_dir():
        raise target.fail(f"directory {parent} does not exist (create it, or correct the URL)")
    try:
        parent.mkdir(exist_ok=True)
    except OSError as e:
        raise target.fail(f"cannot create directory {parent}: {e.strerror}") from None
    return True


def _refuse_newer(target: Target, found: int | None) -> None:
    if found is not None and found > CURRENT:
        raise StateError(f"the state store {target.display} has schema version {found}; this reconciler knows up to"
                         f" {CURRENT}: upgrade reconciler")


def _upgrade(engine: Engine, target: Target) -> None:
    """Upgrade to ``CURRENT`` in one transaction, serialized against other processes."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})  # SQLite: BEGIN IMMEDIATE
        with conn.begin():
            if target.kind == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_UPGRADE_KEY})
            found = version(conn)  # again, under the lock: another process may have upgraded meanwhile
            _refuse_newer(target, found)
            if found != CURRENT:
                upgrade(conn, found)
