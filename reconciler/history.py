"""The audit trail: every applied, refused or failed change, durably, in SQLite.

One row per change attempt, written (and committed) the moment its outcome is known, so a
crash in the middle of ``apply`` leaves every completed change recorded and none invented.
Rows carry no secret: appkeys are not secrets; session keys and the app secret never
reach this module.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, git_commit TEXT, git_branch TEXT,
  checksum TEXT, command TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
  id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), time TEXT NOT NULL,
  shop TEXT NOT NULL, scenario TEXT, action TEXT NOT NULL, before TEXT, after TEXT,
  outcome TEXT NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS changes_shop ON changes (shop, time);
"""

CI_ACTOR_VARS = ("RECONCILER_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILDKITE_BUILD_CREATOR", "BUILD_REQUESTEDFOR", "USER")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_actor() -> str:
    for var in CI_ACTOR_VARS:
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"


def git_info(directory: Path) -> tuple[str | None, str | None]:
    """(commit, branch) of the repository holding ``directory``, or Nones."""
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None
    commit = run("rev-parse", "HEAD")
    branch = run("rev-parse", "--abbrev-ref", "HEAD") if commit else None
    return commit, (None if branch == "HEAD" else branch)


@dataclass(frozen=True)
class Entry:
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


class History:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def start_run(self, *, actor: str, git_commit: str | None, git_branch: str | None,
                  checksum: str | None, command: str = "apply") -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO runs (time, actor, git_commit, git_branch, checksum, command) VALUES (?, ?, ?, ?, ?, ?)",
                (now(), actor, git_commit, git_branch, checksum, command))
            return int(cur.lastrowid or 0)

    def record(self, run_id: int, *, shop: str, scenario: str | None, action: str, before: Any, after: Any,
               outcome: str, error: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO changes (run_id, time, shop, scenario, action, before, after, outcome, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, now(), shop, scenario, action, json.dumps(before, sort_keys=True),
                 json.dumps(after, sort_keys=True), outcome, error))

    def entries(self, *, shops: list[str] | None = None, since: str | None = None, limit: int | None = None) -> list[Entry]:
        q = ("SELECT c.time, r.actor, r.git_commit, r.git_branch, r.checksum, r.command, c.shop, c.scenario, c.action,"
             " c.before, c.after, c.outcome, c.error FROM changes c JOIN runs r ON r.id = c.run_id WHERE 1=1")
        args: list[Any] = []
        if shops:
            q += f" AND c.shop IN ({','.join('?' * len(shops))})"
            args += shops
        if since:
            q += " AND c.time >= ?"
            args.append(since)
        q += " ORDER BY c.id"
        if limit:
            q = f"SELECT * FROM ({q.replace(' ORDER BY c.id', ' ORDER BY c.id DESC')} LIMIT {int(limit)}) ORDER BY time"
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return [Entry(time=r[0], actor=r[1], git_commit=r[2], git_branch=r[3], checksum=r[4], command=r[5], shop=r[6],
                      scenario=r[7], action=r[8], before=json.loads(r[9]) if r[9] else None,
                      after=json.loads(r[10]) if r[10] else None, outcome=r[11], error=r[12])
                for r in rows]
