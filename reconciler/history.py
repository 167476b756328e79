"""The audit trail: every applied, refused or failed change, durably, in SQLite.

One row per change attempt, written (and committed) the moment its outcome is known, so a
crash in the middle of ``apply`` leaves every completed change recorded and none invented.
A run (one ``apply``) carries who, from which git commit and branch, and the plan checksum.
Rows carry no secret: appkeys are not secrets; session keys and the app secret never
reach this module.

Times are UTC ISO-8601 to the second (``2024-05-01T03:04:05+00:00``); they compare as
strings, which is how ``--since`` filters. Outcomes: ``applied``, ``failed``, ``refused``
(the whole plan was refused: stale, unsafe, not confirmed), ``rolled-back`` and
``rollback-failed`` (the undo of an applied change, after another change of its shop failed).
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .model import HistorySettings
from .storage import open_sqlite
from .vocab import WRITTEN, Action

FORMAT_VERSION = 1
DEFAULT_PATH = ".reconciler/history.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, git_commit TEXT, git_branch TEXT,
  checksum TEXT, command TEXT NOT NULL, finished TEXT, exit_code INTEGER);
CREATE TABLE IF NOT EXISTS changes (
  id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), time TEXT NOT NULL,
  shop TEXT NOT NULL, scenario TEXT, action TEXT NOT NULL, before TEXT, after TEXT,
  outcome TEXT NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS changes_shop ON changes (shop, time);
"""

CI_ACTOR_VARS = ("RECONCILER_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILDKITE_BUILD_CREATOR", "BUILD_REQUESTEDFOR", "USER")


def now() -> str:
    return format_time(datetime.now(UTC))


def format_time(t: datetime) -> str:
    """A time as the history stores it (UTC, seconds)."""
    return t.astimezone(UTC).isoformat(timespec="seconds")


def default_actor() -> str:
    for var in CI_ACTOR_VARS:
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"


def history_path(settings: HistorySettings, config_dir: Path) -> Path:
    """Where the history of a config dir lives (``history.path``, relative to the dir)."""
    p = Path(settings.path or DEFAULT_PATH)
    return p if p.is_absolute() else config_dir / p


_AGO = re.compile(r"^\s*([0-9]+)\s*([smhdw])\s*$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now_: datetime | None = None) -> str:
    """``--since``: a date (midnight UTC), an ISO time (naive = UTC) or an age such as ``36h``,
    ``7d``; returns the history's time format, rounded up to the second (times are stored to
    the second, so ``time >= result`` keeps exactly the changes at or after the given time)."""
    m = _AGO.match(text)
    if m:
        base = now_ or datetime.now(UTC)
        t = base - timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})
    else:
        s = text.strip()
        try:
            t = datetime.fromisoformat(s.replace("Z", "+00:00")) if "T" in s or " " in s or ":" in s \
                else datetime.combine(date.fromisoformat(s), datetime.min.time())
        except ValueError:
            raise ValueError(f"expected a date (2024-05-01), an ISO time (2024-05-01T08:00:00+08:00)"
                             f" or an age (36h, 7d), got {text!r}") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    if t.microsecond:
        t = t.replace(microsecond=0) + timedelta(seconds=math.ceil(t.microsecond / 1e6))
    return format_time(t)


@dataclass(frozen=True)
class Entry:
    """One recorded change attempt with its run's context."""

    id: int
    run: int
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


_SELECT = ("SELECT c.id, c.run_id, c.time, r.actor, r.git_commit, r.git_branch, r.checksum, r.command, c.shop,"
           " c.scenario, c.action, c.before, c.after, c.outcome, c.error FROM changes c JOIN runs r ON r.id = c.run_id")


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(id=r[0], run=r[1], time=r[2], actor=r[3], git_commit=r[4], git_branch=r[5], checksum=r[6], command=r[7],
                 shop=r[8], scenario=r[9], action=r[10], before=json.loads(r[11]) if r[11] else None,
                 after=json.loads(r[12]) if r[12] else None, outcome=r[13], error=r[14])


class History:
    """The history database of a config dir. Thread-safe (one lock, one connection)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_sqlite(path, _SCHEMA, what="history database", synchronous="FULL")
        have = {r[1] for r in self._db.execute("PRAGMA table_info(runs)")}
        for col, kind in (("finished", "TEXT"), ("exit_code", "INTEGER")):  # databases made before these columns
            if col not in have:
                self._db.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")

    @classmethod
    def existing(cls, path: Path) -> History | None:
        """The history at ``path`` if one was ever written; read-only commands never create one."""
        return cls(path) if path.is_file() else None

    def close(self) -> None:
        self._db.close()

    def finish_run(self, run_id: int, *, exit_code: int) -> None:
        """Mark a run as ended; a run without an end crashed (or is still going)."""
        with self._lock:
            self._db.execute("UPDATE runs SET finished = ?, exit_code = ? WHERE id = ?", (now(), exit_code, run_id))

    def runs(self) -> list[dict[str, object]]:
        """Every run, oldest first: id, time, actor, git_commit, git_branch, checksum, command, finished, exit_code."""
        with self._lock:
            cur = self._db.execute("SELECT id, time, actor, git_commit, git_branch, checksum, command, finished, exit_code"
                                   " FROM runs ORDER BY id")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def start_run(self, *, actor: str, git_commit: str | None, git_branch: str | None,
                  checksum: str | None, command: str = "apply", time: str | None = None) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO runs (time, actor, git_commit, git_branch, checksum, command) VALUES (?, ?, ?, ?, ?, ?)",
                (time or now(), actor, git_commit, git_branch, checksum, command))
            return int(cur.lastrowid or 0)

    def record(self, run_id: int, *, shop: str, scenario: str | None, action: str, before: Any, after: Any,
               outcome: str, error: str | None = None, time: str | None = None) -> None:
        """One change attempt, committed before this returns (autocommit)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO changes (run_id, time, shop, scenario, action, before, after, outcome, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, time or now(), shop, scenario, action, json.dumps(before, sort_keys=True),
                 json.dumps(after, sort_keys=True), outcome, error))

    def entries(self, *, shops: Sequence[str] | None = None, since: str | None = None,
                limit: int | None = None) -> list[Entry]:
        """Recorded changes, oldest first; ``limit`` keeps the most recent ones."""
        q = _SELECT + " WHERE 1=1"
        args: list[Any] = []
        if shops:
            q += f" AND c.shop IN ({','.join('?' * len(shops))})"
            args += list(shops)
        if since:
            q += " AND c.time >= ?"
            args.append(since)
        q += " ORDER BY c.id DESC"
        if limit is not None:
            q += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return [_entry(r) for r in reversed(rows)]

    def last_written(self, shops: Sequence[str]) -> dict[tuple[str, str, str], Entry]:
        """The latest write that reached the platform per (shop, scenario, kind), where kind is
        ``binding`` or ``update`` (``buyer_self_service``): what the tool last set, and when."""
        out: dict[tuple[str, str, str], Entry] = {}
        wanted = set(shops)
        marks = ",".join("?" * len(WRITTEN))
        q = (_SELECT + " WHERE c.id IN (SELECT max(id) FROM changes WHERE outcome IN"
             f" ({marks}) AND scenario IS NOT NULL GROUP BY shop, scenario, action = 'update')")
        with self._lock:
            rows = self._db.execute(q, WRITTEN).fetchall()
        for r in rows:
            e = _entry(r)
            if e.shop in wanted and e.scenario:
                out[(e.shop, e.scenario, "update" if e.action == Action.update else "binding")] = e
        return out
