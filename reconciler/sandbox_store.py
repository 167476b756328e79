"""The sandbox's SQLite file: its schema, and a world written into it or read back out of it.

``platform.SandboxPlatform`` owns the connection, the lock and the transactions and enforces
the platform's rules; this module only knows the tables. Split from ``platform`` so each
stays readable: the world's way in and out (``load``, ``dump``) touches every table at once,
the platform's methods one shop or one token at a time.

A world's shop ``session`` goes to ``tokens`` (the access token and refresh token, with their
ends) and ``codes`` (an authorization code, spent once); ``dump`` gives it back in the world's
form: a plain string for a token that never expires and nothing else, else a mapping.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from .model import SCENARIOS
from .platformwords import IDENTITY_KEY, iso

if TYPE_CHECKING:
    from .world import World, WorldSession

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
  appkey TEXT PRIMARY KEY, name TEXT, scenarios TEXT NOT NULL,
  detail_whitelisted INTEGER NOT NULL, syncs_order_status INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shops (
  shop_id TEXT PRIMARY KEY, name TEXT, session TEXT UNIQUE,
  buyer_self_service INTEGER NOT NULL, cs_permission INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (
  shop_id TEXT NOT NULL, scenario TEXT NOT NULL, appkey TEXT, revision INTEGER NOT NULL,
  PRIMARY KEY (shop_id, scenario));
CREATE TABLE IF NOT EXISTS faults (
  id INTEGER PRIMARY KEY, operation TEXT NOT NULL, shop_id TEXT, scenario TEXT,
  error TEXT NOT NULL, times INTEGER, ban_seconds INTEGER);
CREATE TABLE IF NOT EXISTS tokens (
  token TEXT PRIMARY KEY, shop_id TEXT NOT NULL, kind TEXT NOT NULL, expires_at TEXT,
  issued INTEGER NOT NULL, spent INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS tokens_shop ON tokens (shop_id, kind, issued);
CREATE TABLE IF NOT EXISTS codes (code TEXT PRIMARY KEY, shop_id TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0);
"""
# ``shops.session`` is where sandboxes made before tokens could expire kept a shop's key (it
# never expires); a world loaded now puts every token in ``tokens``.


def load(db: sqlite3.Connection, world: World) -> None:
    """Replace the whole content by ``world`` (the caller holds the transaction)."""
    for t in ("apps", "shops", "bindings", "faults", "tokens", "codes"):
        db.execute(f"DELETE FROM {t}")
    db.execute("DELETE FROM meta WHERE key != ?", (IDENTITY_KEY,))  # the database stays the same platform
    if world.app:
        db.executemany("INSERT INTO meta VALUES (?, ?)",
                       [("app_key", world.app.app_key), ("app_secret", world.app.app_secret),
                        ("token_ttl_s", str(world.app.token_ttl_s)), ("refresh_ttl_s", str(world.app.refresh_ttl_s))])
    db.executemany(
        "INSERT INTO apps VALUES (?, ?, ?, ?, ?)",
        [(k, a.name, ",".join(s.value for s in a.scenarios), int(a.detail_whitelisted), int(a.syncs_order_status))
         for k, a in world.apps.items()],
    )
    db.executemany(
        "INSERT INTO shops VALUES (?, ?, ?, ?, ?)",
        [(sid, s.name, None, int(s.buyer_self_service), int(s.cs_permission)) for sid, s in world.shops.items()],
    )
    for sid, s in world.shops.items():
        _load_session(db, sid, s.session)
    db.executemany(
        "INSERT INTO bindings VALUES (?, ?, ?, 1)",
        [(sid, sc.value, key) for sid, s in world.shops.items() for sc, key in s.bindings.items()],
    )
    db.executemany(
        "INSERT INTO faults (operation, shop_id, scenario, error, times, ban_seconds) VALUES (?, ?, ?, ?, ?, ?)",
        [(f.operation, f.shop, f.scenario.value if f.scenario else None, f.error, f.times, f.ban_seconds)
         for f in world.faults],
    )


def dump(db: sqlite3.Connection, *, include_secrets: bool) -> dict[str, Any]:
    """The content in the world format; secrets only when asked for (the caller holds the lock)."""
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    out: dict[str, Any] = {}
    if "app_key" in meta:
        out["app"] = {"app_key": meta["app_key"]}
        if include_secrets:
            out["app"]["app_secret"] = meta["app_secret"]
    out["apps"] = {
        k: {"name": n, "scenarios": [s for s in sc.split(",") if s],
            "detail_whitelisted": bool(w), "syncs_order_status": bool(sy)}
        for k, n, sc, w, sy in db.execute("SELECT * FROM apps ORDER BY appkey")
    }
    bindings: dict[str, dict[str, str]] = {}
    for sid, sc, key in db.execute(
        "SELECT shop_id, scenario, appkey FROM bindings WHERE appkey IS NOT NULL ORDER BY shop_id, scenario"
    ):
        bindings.setdefault(sid, {})[sc] = key
    shops: dict[str, Any] = {}
    for sid, name, session, bss, perm in db.execute("SELECT * FROM shops ORDER BY shop_id"):
        shop: dict[str, Any] = {"name": name}
        if include_secrets:
            dumped = session if session is not None else _dump_session(db, sid)
            if dumped is not None:
                shop["session"] = dumped
        shop["bindings"] = {s.value: bindings[sid][s.value] for s in SCENARIOS if s.value in bindings.get(sid, {})}
        shop["buyer_self_service"] = bool(bss)
        if not perm:
            shop["cs_permission"] = False
        shops[sid] = shop
    out["shops"] = shops
    faults = [
        # times is always written: omitted it reads as 1, and null means "always"
        {k: v for k, v in (("operation", op), ("shop", shop_id), ("scenario", sc), ("error", err),
                           ("times", times), ("ban_seconds", ban)) if v is not None or k == "times"}
        for op, shop_id, sc, err, times, ban in db.execute(
            "SELECT operation, shop_id, scenario, error, times, ban_seconds FROM faults ORDER BY id")
    ]
    if faults:
        out["faults"] = faults
    return out


def _load_session(db: sqlite3.Connection, shop: str, session: str | WorldSession | None) -> None:
    if session is None:
        return
    if isinstance(session, str):
        from .world import WorldSession

        session = WorldSession(token=session)
    n = 0
    for kind, value, ends in (("access", session.token, session.expires_at),
                              ("refresh", session.refresh_token, session.refresh_expires_at)):
        if value is not None:
            n += 1
            db.execute("INSERT INTO tokens (token, shop_id, kind, expires_at, issued) VALUES (?, ?, ?, ?, ?)",
                       (value, shop, kind, iso(ends) if ends is not None else None, n))
    if session.code is not None:
        db.execute("INSERT INTO codes (code, shop_id) VALUES (?, ?)", (session.code, shop))


def _current_token(db: sqlite3.Connection, shop: str, kind: str) -> tuple[str, str | None] | None:
    row = db.execute("SELECT token, expires_at FROM tokens WHERE shop_id = ? AND kind = ? AND spent = 0"
                     " ORDER BY issued DESC LIMIT 1", (shop, kind)).fetchone()
    return (str(row[0]), row[1]) if row else None


def _dump_session(db: sqlite3.Connection, shop: str) -> str | dict[str, Any] | None:
    access = _current_token(db, shop, "access")
    refresh = _current_token(db, shop, "refresh")
    code = db.execute("SELECT code FROM codes WHERE shop_id = ? AND used = 0 ORDER BY code LIMIT 1", (shop,)).fetchone()
    if access is None and code is None:
        return None
    if access is not None and access[1] is None and refresh is None and code is None:
        return access[0]
    out: dict[str, Any] = {}
    if access is not None:
        out["token"] = access[0]
        if access[1] is not None:
            out["expires_at"] = access[1]
    if refresh is not None:
        out["refresh_token"] = refresh[0]
        if refresh[1] is not None:
            out["refresh_expires_at"] = refresh[1]
    if code is not None:
        out["code"] = str(code[0])
    return out
