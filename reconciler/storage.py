"""Opening the SQLite files the tool keeps (the sandbox platform, the history).

One place that sets the pragmas both need (WAL, so a reader never blocks on a writer) and
turns a file that is not a database, or cannot be opened, into a clear error naming it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .errors import ReconcilerError


class StorageError(ReconcilerError):
    """A database file of ours cannot be opened or read."""


def open_sqlite(path: Path | str, schema: str, *, what: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection (autocommit, usable from several threads behind the caller's lock)."""
    where = str(path)
    try:
        if where != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(where, isolation_level=None, check_same_thread=False, timeout=30)
    except (OSError, sqlite3.Error) as e:
        raise StorageError(f"{where}: cannot open the {what}: {e}") from None
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)
    except sqlite3.Error as e:
        db.close()
        raise StorageError(f"{where}: the {what} is unreadable ({e}); move it away to start a new one") from None
    return db
