"""The state store's tables and their versions: what each version adds, and the upgrade.

Version 1 is the history database the tool kept before the state store (``history.py``):
``runs`` and ``changes``; the oldest files lack ``runs.finished``/``runs.exit_code``. It has
no ``schema_version`` table; a ``runs`` table without one IS version 1.
Version 2 adds the run holder (``host``, ``pid``, ``heartbeat``, ``lease_s``, ``status``),
the run locks (``locks``: one row per locked shop) and the apply journal (``journal``: one
row per shop an apply announced changes for, ``done`` once the shop's writes ended).
Version 3 adds the shops' authorizations (``tokens``: one row per shop). The access and
refresh tokens are stored only sealed (``sealed``: a Fernet token made by ``reconciler.auth``
with the key in ``RECONCILER_STATE_KEY``; the store never sees them in clear); the times,
whether a refresh token exists, the key's id and the renewal claim are plain, so ``auth
status`` and the renewal protocol need no decryption to decide.

A newer reconciler upgrades an older store in ONE transaction (a failed upgrade leaves the
store as it was); an older reconciler refuses a newer store rather than misread it. Two
processes upgrading at once are serialized: PostgreSQL by a transaction-scoped advisory
lock, SQLite by ``BEGIN IMMEDIATE``; the version is read again under that lock.

The ``Table`` objects below describe the CURRENT version, for queries. Upgrade steps build
their own tables (``_v1_tables``; ``_locks_table``/``_journal_table`` are version 2's, to be
frozen into the step when a later version changes them; ``_tokens_table`` is version 3's).
Times are UTC ISO-8601 text (``history.format_time``), comparable as strings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

CURRENT = 3
# Keys of pg_advisory_xact_lock (one per purpose, arbitrary but fixed).
PG_UPGRADE_KEY = 0x5245434F4E01  # serializes schema upgrades
PG_LOCKS_KEY = 0x5245434F4E02  # serializes changes to the locks table (acquire, renew, release, unlock)
NOTIFY_CHANNEL = "reconciler_locks"  # NOTIFY'd when locks are released: waiters retry at once

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("time", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("git_commit", sa.Text),
    sa.Column("git_branch", sa.Text),
    sa.Column("checksum", sa.Text),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("finished", sa.Text),
    sa.Column("exit_code", sa.Integer),
    sa.Column("host", sa.Text),
    sa.Column("pid", sa.Integer),
    sa.Column("heartbeat", sa.Text),
    sa.Column("lease_s", sa.Float),
    sa.Column("status", sa.Text),  # running | finished | interrupted (taken over, unlocked)
)

changes = sa.Table(
    "changes", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("time", sa.Text, nullable=False),
    sa.Column("shop", sa.Text, nullable=False),
    sa.Column("scenario", sa.Text),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("before", sa.Text),
    sa.Column("after", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
)

def _locks_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "locks", md,
        sa.Column("shop", sa.Text, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("since", sa.Text, nullable=False),
        sa.Column("lease_until", sa.Text, nullable=False),
        sa.Index("locks_run", "run_id"),
    )


def _journal_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "journal", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("shop", sa.Text, nullable=False),
        sa.Column("time", sa.Text, nullable=False),
        sa.Column("changes", sa.Text, nullable=False),  # JSON list of the intended changes
        sa.Column("done", sa.Text),  # when the shop's writes ended (None: never reported)
        sa.Column("outcome", sa.Text),
        sa.Index("journal_shop", "shop", "id"),
    )


def _tokens_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "tokens", md,
        sa.Column("shop", sa.Text, primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),       # Fernet: {"shop", "access_token", "refresh_token"}
        sa.Column("key_id", sa.Text, nullable=False),       # which key sealed it (a one-way fingerprint)
        sa.Column("expires_at", sa.Text),                   # the access token's end (None: never)
        sa.Column("refresh_expires_at", sa.Text),           # the refresh token's end (None: never, or no refresh token)
        sa.Column("refreshable", sa.Integer, nullable=False),  # 1: a refresh token is stored
        sa.Column("generation", sa.Integer, nullable=False),   # +1 on every write of the token: renewals compare it
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),       # import | code | refresh
        sa.Column("note", sa.Text),                         # why the last renewal failed (no secret), until the next write
        sa.Column("claim", sa.Text),                        # the renewal under way: holder id
        sa.Column("claim_host", sa.Text),
        sa.Column("claim_pid", sa.Integer),
        sa.Column("claim_until", sa.Text),                  # the claim's lease end
        sa.Column("claim_since", sa.Text),
    )


locks = _locks_table(metadata)
journal = _journal_table(metadata)
tokens = _tokens_table(metadata)


def version(conn: Connection) -> int | None:
    """The store's schema version; None for an empty database."""
    names = set(sa.inspect(conn).get_table_names())
    if "schema_version" in names:
        found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
        return int(found) if found is not None else 1
    return 1 if "runs" in names else None


# --------------------------------------------------------------------------- the upgrade steps


def _to_v1(conn: Connection) -> None:
    """The history database: create it, or complete a file made before finished/exit_code."""
    if sa.inspect(conn).has_table("runs"):
        have = {c["name"] for c in sa.inspect(conn).get_columns("runs")}
        for name, kind in (("finished", sa.Text()), ("exit_code", sa.Integer())):
            if name not in have:
                _add_column(conn, "runs", name, kind)
        if not sa.inspect(conn).has_table("changes"):
            _v1_tables().tables["changes"].create(conn)
        return
    md = _v1_tables()
    md.create_all(conn)


def _v1_tables() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table("runs", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("time", sa.Text, nullable=False),
             sa.Column("actor", sa.Text, nullable=False), sa.Column("git_commit", sa.Text), sa.Column("git_branch", sa.Text),
             sa.Column("checksum", sa.Text), sa.Column("command", sa.Text, nullable=False), sa.Column("finished", sa.Text),
             sa.Column("exit_code", sa.Integer))
    sa.Table("changes", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
             sa.Column("time", sa.Text, nullable=False), sa.Column("shop", sa.Text, nullable=False),
             sa.Column("scenario", sa.Text), sa.Column("action", sa.Text, nullable=False), sa.Column("before", sa.Text),
             sa.Column("after", sa.Text), sa.Column("outcome", sa.Text, nullable=False), sa.Column("error", sa.Text),
             sa.Index("changes_shop", "shop", "time"))
    return md


def _to_v2(conn: Connection) -> None:
    """Run holders and status, run locks, the apply journal."""
    have = {c["name"] for c in sa.inspect(conn).get_columns("runs")}
    for name, kind in (("host", sa.Text()), ("pid", sa.Integer()), ("heartbeat", sa.Text()), ("lease_s", sa.Float()),
                       ("status", sa.Text())):
        if name not in have:
            _add_column(conn, "runs", name, kind)
    # Runs of version 1 that never ended crashed (or were killed): nobody holds them any more.
    conn.execute(sa.update(runs).values(status=sa.case((runs.c.finished.is_(None), "interrupted"), else_="finished")))
    md = sa.MetaData()
    sa.Table("runs", md, sa.Column("id", sa.Integer, primary_key=True))  # the foreign keys' target
    _locks_table(md).create(conn)
    _journal_table(md).create(conn)
    conn.execute(sa.text("CREATE INDEX changes_run ON changes (run_id)"))


def _to_v3(conn: Connection) -> None:
    """The shops' authorizations, sealed."""
    _tokens_table(sa.MetaData()).create(conn)


def _add_column(conn: Connection, table: str, name: str, kind: sa.types.TypeEngine[Any]) -> None:
    prep = conn.dialect.identifier_preparer
    conn.execute(sa.text(f"ALTER TABLE {prep.quote(table)} ADD COLUMN {prep.quote(name)} {kind.compile(dialect=conn.dialect)}"))


STEPS: tuple[tuple[int, Callable[[Connection], None]], ...] = ((1, _to_v1), (2, _to_v2), (3, _to_v3))


def upgrade(conn: Connection, found: int | None) -> None:
    """Bring the store from version ``found`` (None: empty) to ``CURRENT``, inside the
    caller's transaction (which holds the upgrade lock)."""
    start = found or 0
    for number, step in STEPS:
        # Version 1 has no version table; a file of it may predate finished/exit_code, which
        # its step completes: so it runs for version 1 too.
        if start < number or start == number == 1:
            step(conn)
    if found is None or found < 2:
        schema_version.create(conn, checkfirst=True)
    conn.execute(sa.delete(schema_version))
    conn.execute(sa.insert(schema_version).values(version=CURRENT))
