"""The shared state store: history, run locks, the apply journal and the shops' sealed
authorizations in one database.

One store per config dir (or per team: PostgreSQL), so every CI runner, shard and person
sees the same trail and the same locks (docs/workflows.md, "The shared state"). This package's import is
cheap: SQLAlchemy and the drivers load only in ``open_store``, so commands that need no
state (plan, validate, render) do not pay for them.

    url = resolve_url(settings, config_dir, os.environ)      # env > state.url > history.path > default
    store = open_store(url, config_dir=config_dir)           # StateError: one line, masked URL
    run = store.start_run(actor=..., git_commit=..., git_branch=..., checksum=...,
                          host=socket.gethostname(), pid=os.getpid(), lease_s=settings.state.lock_lease_s)
    for t in store.acquire(run, shops, timeout_s=..., lease_s=..., on_wait=...):  # Locked
        print(t.message())
    with store.keeper(run, lease_s) as keeper:               # keeper.lost: stop writing
        store.intent(run, shop, changes)                     # LockLost: do not write that shop
        store.record(run, shop=..., ...)                     # each attempt, durably
        store.shop_done(run, shop, outcome)
    store.release(run); store.finish_run(run, exit_code=code); store.close()
    store.token_rows(shops); store.put_token(shop, sealed=..., ...)   # tokens, sealed by reconciler.auth
    store.claim_renewal(shop, holder, pid=..., lease_s=...); store.release_renewal(shop, holder)

Modules: ``urls`` (resolution, parsing, masking; pure), ``types`` (errors and values; pure),
``engine`` (SQLAlchemy engines, SQLite hooks, error texts), ``schema`` (tables, versions,
upgrade), ``base`` (transactions, clock, liveness), ``direct`` (the journal's hot path: a
connection per thread, one round trip per transaction), ``runs`` (history), ``locks``,
``journal``, ``tokens``, ``store`` (the ``Store`` and opening it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .urls import DEFAULT_URL, ENV_PASSWORD, ENV_URL, display_url, resolve_url
from .words import FINISHED, INTERRUPTED, RUNNING, StateError

if TYPE_CHECKING:
    from .store import Store
    from .types import InterruptedShop, Locked, LockInfo, LockLost, RunInfo, Takeover

# The values the store's methods return: defined (``types``) when first named, not by a
# read-only command that only looks for an interrupted apply.
_TYPES = frozenset({"InterruptedShop", "Locked", "LockInfo", "LockLost", "RunInfo", "Takeover"})

__all__ = [
    "DEFAULT_URL",
    "ENV_PASSWORD",
    "ENV_URL",
    "FINISHED",
    "INTERRUPTED",
    "RUNNING",
    "InterruptedShop",
    "LockInfo",
    "LockLost",
    "Locked",
    "RunInfo",
    "StateError",
    "Store",
    "Takeover",
    "display_url",
    "open_store",
    "resolve_url",
    "surely_nothing_interrupted",
]


def open_store(url: str, *, config_dir: Path, create: bool = True, environ: Mapping[str, str] | None = None,
               clock: Callable[[], datetime] | None = None, host: str | None = None) -> Store | None:
    """Open (and create, or upgrade) the state store at ``url``; relative SQLite paths are
    relative to ``config_dir``. ``create=False``: None when there is no store yet.
    ``environ`` gives ``RECONCILER_STATE_PASSWORD`` (default ``os.environ``); ``clock`` and
    ``host`` are for tests (UTC now, ``socket.gethostname()``)."""
    from .urls import parse_url

    target = parse_url(url, config_dir=config_dir, environ=environ)
    if not create and target.kind == "sqlite" and target.path is not None and not target.path.exists() \
            and target.path.parent.is_dir():
        return None  # no store yet, and read-only commands make none: not even SQLAlchemy is imported
    from .store import open_target  # SQLAlchemy is imported here, not before

    return open_target(target, config_dir=config_dir, create=create, clock=clock, host=host)


def surely_nothing_interrupted(url: str, *, config_dir: Path, environ: Mapping[str, str] | None = None) -> bool:
    """A cheap look, without SQLAlchemy, for read-only commands: True when the store is an SQLite
    file that holds no open journal intent (so no shop can be interrupted). False means "look
    properly" (``open_store``): another engine, no such file, an older schema, any doubt."""
    import sqlite3

    from .urls import parse_url

    try:
        target = parse_url(url, config_dir=config_dir, environ=environ)
    except StateError:
        return False
    if target.kind != "sqlite" or target.path is None or not target.path.is_file():
        return False
    try:
        con = sqlite3.connect(f"{target.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            (found,) = con.execute("SELECT version FROM schema_version").fetchone() or (None,)
            if not isinstance(found, int) or found < 2:  # the journal exists from version 2 on
                return False
            return con.execute("SELECT 1 FROM journal WHERE done IS NULL LIMIT 1").fetchone() is None
        finally:
            con.close()
    except (sqlite3.Error, ValueError, TypeError):
        return False


def __getattr__(name: str) -> Any:
    if name == "Store":
        from .store import Store

        return Store
    if name in _TYPES:
        from . import types

        return getattr(types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
