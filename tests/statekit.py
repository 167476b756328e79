"""Helpers of the state-store tests: a hand-moved clock, opening a store, starting a run,
a dead process id."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from reconciler.state import Store, open_store

HOST = socket.gethostname()

# The history database as history.py created it before the state store (schema version 1),
# frozen here so the upgrade stays tested when history.py goes.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, git_commit TEXT, git_branch TEXT,
  checksum TEXT, command TEXT NOT NULL, finished TEXT, exit_code INTEGER);
CREATE TABLE IF NOT EXISTS changes (
  id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), time TEXT NOT NULL,
  shop TEXT NOT NULL, scenario TEXT, action TEXT NOT NULL, before TEXT, after TEXT,
  outcome TEXT NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS changes_shop ON changes (shop, time);
"""


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2024, 5, 1, 3, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def opened(url: str, config_dir: Path, **kw: object) -> Store:
    store = open_store(url, config_dir=config_dir, **kw)  # type: ignore[arg-type]
    assert store is not None
    return store


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=30)
    return p.pid


def start(store: Store, actor: str = "alice", **kw: object) -> int:
    args: dict[str, object] = {"actor": actor, "git_commit": "0123456789abcdef", "git_branch": "main", "checksum": "c1",
                               "host": HOST, "pid": os.getpid(), "lease_s": 60}
    args.update(kw)
    return store.start_run(**args)  # type: ignore[arg-type]
