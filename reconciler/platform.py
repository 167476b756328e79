"""The sandbox platform: an emulator of the ERP-settings side of the real platform.

State lives in SQLite (one file), so a sandbox survives between commands and can be
served over HTTP (``sandbox_server``) to several clients at once. The emulator enforces
the platform's rules: unknown appkeys and scenarios the ERP has not
integrated refuse a bind; ``virtualAppKey`` only on ``modify_address``; operators without
the customer-service permission are refused; every write is a compare-and-set against the
expected current value and bumps a revision; injected faults make chosen calls fail.
Each write is one SQLite transaction: a crash never leaves half a change.

Shop authorizations: a shop's ``session`` (the access token every per-shop call carries)
is a string that never expires, or a mapping ``{token, expires_at, refresh_token,
refresh_expires_at, code}``. An expired or unknown access token is refused (27).
``taobao.top.auth.token.create`` turns a world shop's ``code`` (once) into a new token pair;
``taobao.top.auth.token.refresh`` spends a refresh token (once: it stops working at once)
for a new access token that lives ``app.token_ttl_s`` (default 30 days) and a new refresh
token that keeps the old one's end. The previous access token keeps working until its own
end: a renewal is not a revocation, so a run still using it is not cut off mid-way (a
client must not count on it). Tokens are kept in ``tokens``, one row per token ever
issued; a shop's current pair is its latest.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .model import SCENARIOS, VIRTUAL_APPKEY, Scenario, appkey_problem
from .storage import open_sqlite
from .vocab import show_appkey
from .world import (  # the world file and the platform's fixed words; re-exported for callers of platform
    DEFAULT_REFRESH_TTL_S,
    DEFAULT_TOKEN_TTL_S,
    IDENTITY_KEY,
    SUB_CODES,
    TOKEN_CREATE,
    TOKEN_REFRESH,
    Operation,
    World,
    WorldSession,
    iso,
)

__all__ = ["IDENTITY_KEY", "SUB_CODES", "TOKEN_CREATE", "TOKEN_REFRESH", "PlatformError", "SandboxPlatform", "World",
           "WorldSession"]


class PlatformError(Exception):
    """A refusal as the platform states it: TOP code, sub_code, message."""

    def __init__(self, sub_code: str, msg: str, *, code: int | None = None, ban_seconds: int | None = None) -> None:
        super().__init__(f"{sub_code}: {msg}")
        self.sub_code = sub_code
        self.code = code if code is not None else SUB_CODES.get(sub_code, 15)
        self.msg = msg
        self.ban_seconds = ban_seconds


_SCHEMA = """
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


class SandboxPlatform:
    """The platform's rules over one SQLite file. Thread-safe (one lock, one connection)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = open_sqlite(path, _SCHEMA, what="sandbox database")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    # ------------------------------------------------------------------ world

    def load_world(self, world: World) -> None:
        """Replace the whole content, atomically."""
        with self._tx() as db:
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
                self._load_session(db, sid, s.session)
            db.executemany(
                "INSERT INTO bindings VALUES (?, ?, ?, 1)",
                [(sid, sc.value, key) for sid, s in world.shops.items() for sc, key in s.bindings.items()],
            )
            db.executemany(
                "INSERT INTO faults (operation, shop_id, scenario, error, times, ban_seconds) VALUES (?, ?, ?, ?, ?, ?)",
                [(f.operation, f.shop, f.scenario.value if f.scenario else None, f.error, f.times, f.ban_seconds)
                 for f in world.faults],
            )

    def dump_world(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """The content in the world format; secrets only when asked for."""
        with self._lock:
            db = self._db
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
                    dumped = session if session is not None else self._dump_session(db, sid)
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

    def identity(self) -> str:
        """This sandbox's identity: a random id made when the database is first asked for it and
        kept for its life (``sandbox load`` replaces the content, not the platform). Saved plans
        carry it as their ``target``, so a plan is never applied to another sandbox."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (IDENTITY_KEY,)).fetchone()
            if row is None:
                with self._tx() as db:
                    db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (IDENTITY_KEY, f"sandbox-{uuid.uuid4().hex}"))
                row = self._db.execute("SELECT value FROM meta WHERE key = ?", (IDENTITY_KEY,)).fetchone()
            return str(row[0])

    def _load_session(self, db: sqlite3.Connection, shop: str, session: str | WorldSession | None) -> None:
        if session is None:
            return
        if isinstance(session, str):
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

    @staticmethod
    def _current_token(db: sqlite3.Connection, shop: str, kind: str) -> tuple[str, str | None] | None:
        row = db.execute("SELECT token, expires_at FROM tokens WHERE shop_id = ? AND kind = ? AND spent = 0"
                         " ORDER BY issued DESC LIMIT 1", (shop, kind)).fetchone()
        return (str(row[0]), row[1]) if row else None

    def _dump_session(self, db: sqlite3.Connection, shop: str) -> str | dict[str, Any] | None:
        access = self._current_token(db, shop, "access")
        refresh = self._current_token(db, shop, "refresh")
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

    def agency_app(self) -> tuple[str, str] | None:
        with self._lock:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return (meta["app_key"], meta["app_secret"]) if "app_key" in meta else None

    def shop_for_session(self, session: str, *, now: datetime | None = None) -> str | None:
        """The shop an access token authorizes; None when it is unknown, or expired at ``now``
        (default: the current time)."""
        at = iso(now or datetime.now(UTC))
        with self._lock:
            row = self._db.execute("SELECT shop_id, expires_at FROM tokens WHERE token = ? AND kind = 'access'",
                                   (session,)).fetchone()
            if row is None:  # a sandbox from before tokens could expire
                legacy = self._db.execute("SELECT shop_id FROM shops WHERE session = ?", (session,)).fetchone()
                return str(legacy[0]) if legacy else None
        return str(row[0]) if row[1] is None or row[1] > at else None

    def list_shops(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT shop_id FROM shops ORDER BY shop_id")]

    # ------------------------------------------------------------------ faults and guards

    def _fault(self, db: sqlite3.Connection, op: Operation, shop: str | None, scenario: str | None) -> None:
        row = db.execute(
            "SELECT id, error, times, ban_seconds FROM faults WHERE operation = ?"
            " AND (shop_id IS NULL OR shop_id = ?) AND (scenario IS NULL OR scenario = ?)"
            " AND (times IS NULL OR times > 0) ORDER BY id LIMIT 1",
            (op, shop, scenario),
        ).fetchone()
        if row is None:
            return
        fid, error, times, ban = row
        if times is not None:
            db.execute("UPDATE faults SET times = times - 1 WHERE id = ?", (fid,))
        if ban is not None:
            raise PlatformError(error, f"App Call Limited; This ban will last for {ban} more seconds", code=7, ban_seconds=ban)
        raise PlatformError(error, f"injected fault on {op}")

    def _inject(self, op: Operation, shop: str | None, scenario: str | None) -> None:
        """Consume a matching fault in a transaction of its own and raise it after the commit,
        so the failing call's rollback does not undo the count (``times: 1`` fails once)."""
        hit: PlatformError | None = None
        with self._lock:  # the common case, no fault armed for this operation: no write transaction
            armed = self._db.execute("SELECT 1 FROM faults WHERE operation = ? AND (times IS NULL OR times > 0) LIMIT 1",
                                     (op,)).fetchone()
        if armed is None:
            return
        with self._tx() as db:
            try:
                self._fault(db, op, shop, scenario)
            except PlatformError as e:
                hit = e
        if hit is not None:
            raise hit

    def _shop(self, db: sqlite3.Connection, shop: str) -> tuple[bool, bool]:
        row = db.execute("SELECT buyer_self_service, cs_permission FROM shops WHERE shop_id = ?", (shop,)).fetchone()
        if row is None:
            raise PlatformError("isv.shop-not-found", f"shop {shop} does not exist")
        if not row[1]:
            raise PlatformError("isv.permission-denied", "the account lacks the customer-service-platform permission")
        return bool(row[0]), bool(row[1])

    def _app(self, db: sqlite3.Connection, appkey: str, scenario: Scenario) -> None:
        why = appkey_problem(appkey, scenario)
        if why:
            raise PlatformError("isv.invalid-appkey", why)
        if appkey == VIRTUAL_APPKEY:
            return
        row = db.execute("SELECT scenarios FROM apps WHERE appkey = ?", (appkey,)).fetchone()
        if row is None:
            raise PlatformError("isv.appkey-not-found", f"no ERP app with appkey {appkey}")
        if scenario.value not in row[0].split(","):
            raise PlatformError("isv.scenario-not-integrated",
                                f"the ERP {appkey} has not integrated {scenario.value} through Qimen")

    @staticmethod
    def _scenario(value: str) -> Scenario:
        try:
            return Scenario(value)
        except ValueError:
            raise PlatformError("isv.invalid-parameter", f"unknown scenario {value!r}") from None

    # ------------------------------------------------------------------ the five methods

    def get(self, shop: str) -> dict[str, Any]:
        """``erp.binding.get``."""
        body: dict[str, Any] = self.get_many([shop], strict=True)[shop]
        return body

    def get_many(self, shops: Iterable[str], *, strict: bool = False) -> dict[str, Any]:
        """``erp.binding.get`` for many shops in one query; a value is the response body or a
        PlatformError (raised instead when ``strict``)."""
        ids = list(shops)
        with self._tx() as db:
            wanted = set(ids)
            few = len(ids) <= 500
            q_shops = "SELECT shop_id, buyer_self_service, cs_permission, name FROM shops"
            q_bind = "SELECT b.shop_id, b.scenario, b.appkey, b.revision, a.detail_whitelisted FROM bindings b" \
                     " LEFT JOIN apps a ON a.appkey = b.appkey WHERE b.appkey IS NOT NULL"
            if few:
                marks = ",".join("?" * len(ids))
                shop_rows = db.execute(f"{q_shops} WHERE shop_id IN ({marks})", ids).fetchall()
                bind_rows = db.execute(f"{q_bind} AND b.shop_id IN ({marks})", ids).fetchall()
            else:
                shop_rows = db.execute(q_shops).fetchall()
                bind_rows = db.execute(q_bind).fetchall()
            has_faults = db.execute("SELECT 1 FROM faults WHERE operation = 'get' AND (times IS NULL OR times > 0)").fetchone()
            info = {r[0]: (bool(r[1]), bool(r[2]), r[3]) for r in shop_rows if r[0] in wanted}
            bound: dict[str, list[dict[str, Any]]] = {}
            whitelisted: dict[str, bool] = {}
            for sid, sc, key, rev, wl in bind_rows:
                if sid in wanted:
                    bound.setdefault(sid, []).append({"scenario": sc, "appkey": key, "revision": rev})
                    if sc == Scenario.order_status.value:
                        whitelisted[sid] = bool(wl)
            out: dict[str, Any] = {}
            for sid in ids:
                try:
                    if has_faults:
                        self._fault(db, "get", sid, None)
                    if sid not in info:
                        raise PlatformError("isv.shop-not-found", f"shop {sid} does not exist")
                    bss, perm, name = info[sid]
                    if not perm:
                        raise PlatformError("isv.permission-denied",
                                            "the account lacks the customer-service-platform permission")
                    out[sid] = {
                        "shop_id": sid,
                        "shop_name": name,
                        "bindings": sorted(bound.get(sid, []), key=lambda b: b["scenario"]),
                        "buyer_self_service": bss,
                        "detail_whitelisted": whitelisted.get(sid, False),
                    }
                except PlatformError as e:
                    out[sid] = e
        # raised after the commit: a fault's consumed count must not be rolled back with the error
        if strict:
            for v in out.values():
                if isinstance(v, PlatformError):
                    raise v
        return out

    def bind(self, shop: str, scenario: str, appkey: str, expected: str | None) -> dict[str, Any]:
        """``erp.binding.bind``: bind or replace, if the current appkey is ``expected``."""
        sc = self._scenario(scenario)
        self._inject("bind", shop, sc.value)
        with self._tx() as db:
            self._shop(db, shop)
            self._app(db, appkey, sc)
            current, rev = self._current(db, shop, sc)
            if current != expected:
                raise PlatformError("isv.binding-conflict",
                                    f"{sc.value} is {show_appkey(current)}, not the expected {show_appkey(expected)}")
            db.execute(
                "INSERT INTO bindings VALUES (?, ?, ?, ?) ON CONFLICT (shop_id, scenario)"
                " DO UPDATE SET appkey = excluded.appkey, revision = excluded.revision",
                (shop, sc.value, appkey, rev + 1),
            )
            return {"scenario": sc.value, "appkey": appkey, "revision": rev + 1}

    def unbind(self, shop: str, scenario: str, expected: str | None) -> dict[str, Any]:
        """``erp.binding.unbind``, if the current appkey is ``expected``."""
        sc = self._scenario(scenario)
        self._inject("unbind", shop, sc.value)
        with self._tx() as db:
            self._shop(db, shop)
            current, rev = self._current(db, shop, sc)
            if current != expected:
                raise PlatformError("isv.binding-conflict",
                                    f"{sc.value} is {show_appkey(current)}, not the expected {show_appkey(expected)}")
            db.execute("UPDATE bindings SET appkey = NULL, revision = ? WHERE shop_id = ? AND scenario = ?",
                       (rev + 1, shop, sc.value))
            return {"scenario": sc.value, "revision": rev + 1}

    def set_self_service(self, shop: str, enabled: bool, expected: bool | None) -> dict[str, Any]:
        """``erp.selfservice.set``: buyer self-service address change (自助核单)."""
        self._inject("selfservice", shop, Scenario.modify_address.value)
        with self._tx() as db:
            current, _ = self._shop(db, shop)
            if expected is not None and current != expected:
                raise PlatformError("isv.binding-conflict",
                                    f"buyer_self_service is {str(current).lower()}, not the expected {str(expected).lower()}")
            db.execute("UPDATE shops SET buyer_self_service = ? WHERE shop_id = ?", (int(enabled), shop))
            return {"buyer_self_service": enabled}

    def check_app(self, appkey: str, scenario: str) -> dict[str, Any]:
        """``erp.app.check``: does the ERP exist, has it integrated the scenario."""
        sc = self._scenario(scenario)
        self._inject("check", None, sc.value)
        with self._tx() as db:
            if appkey == VIRTUAL_APPKEY:
                ok = sc is Scenario.modify_address
                return {"exists": True, "integrated": ok, "name": "菜鸟仓 (virtualAppKey)",
                        "detail_whitelisted": False, "syncs_order_status": False}
            row = db.execute("SELECT name, scenarios, detail_whitelisted, syncs_order_status FROM apps WHERE appkey = ?",
                             (appkey,)).fetchone()
            if row is None:
                return {"exists": False, "integrated": False, "name": None, "detail_whitelisted": False,
                        "syncs_order_status": False}
            return {"exists": True, "integrated": sc.value in row[1].split(","), "name": row[0],
                    "detail_whitelisted": bool(row[2]), "syncs_order_status": bool(row[3])}

    # ------------------------------------------------------------------ shop authorization

    def token_refresh(self, refresh_token: str, *, now: datetime | None = None) -> dict[str, Any]:
        """``taobao.top.auth.token.refresh``: spend a refresh token (it stops working) for a new pair."""
        self._inject("refresh", None, None)
        t = now or datetime.now(UTC)
        with self._tx() as db:
            row = db.execute("SELECT shop_id, expires_at, spent FROM tokens WHERE token = ? AND kind = 'refresh'",
                             (refresh_token,)).fetchone()
            if row is None or row[2]:
                raise PlatformError("isv.invalid-refresh-token", "the refresh token is invalid or has already been used")
            shop, ends, _ = row
            if ends is not None and ends <= iso(t):
                raise PlatformError("isv.invalid-refresh-token", "the refresh token has expired; the user must authorize again")
            db.execute("UPDATE tokens SET spent = 1 WHERE token = ?", (refresh_token,))
            refresh_end = datetime.fromisoformat(ends) if ends is not None else t + timedelta(seconds=self._ttl(db, "refresh"))
            return self._issue(db, str(shop), t, refresh_end)

    def token_create(self, code: str, *, now: datetime | None = None) -> dict[str, Any]:
        """``taobao.top.auth.token.create``: an authorization code (once) for a new pair; the
        shop's earlier refresh tokens stop working (its earlier access tokens run out)."""
        self._inject("create", None, None)
        t = now or datetime.now(UTC)
        with self._tx() as db:
            row = db.execute("SELECT shop_id, used FROM codes WHERE code = ?", (code,)).fetchone()
            if row is None or row[1]:
                raise PlatformError("isv.invalid-code", "the authorization code is invalid or has already been used")
            shop = str(row[0])
            db.execute("UPDATE codes SET used = 1 WHERE code = ?", (code,))
            db.execute("UPDATE tokens SET spent = 1 WHERE shop_id = ? AND kind = 'refresh'", (shop,))
            return self._issue(db, shop, t, t + timedelta(seconds=self._ttl(db, "refresh")))

    @staticmethod
    def _ttl(db: sqlite3.Connection, kind: str) -> int:
        key, default = ("token_ttl_s", DEFAULT_TOKEN_TTL_S) if kind == "access" else ("refresh_ttl_s", DEFAULT_REFRESH_TTL_S)
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def _issue(self, db: sqlite3.Connection, shop: str, now: datetime, refresh_end: datetime) -> dict[str, Any]:
        """A new access and refresh token for ``shop``, as TOP answers them: ``token_result``, a JSON string."""
        ttl = self._ttl(db, "access")
        access, refresh = f"6{secrets.token_hex(24)}", f"7{secrets.token_hex(24)}"
        issued = int(db.execute("SELECT coalesce(max(issued), 0) FROM tokens WHERE shop_id = ?", (shop,)).fetchone()[0])
        ends = now + timedelta(seconds=ttl)
        db.executemany("INSERT INTO tokens (token, shop_id, kind, expires_at, issued) VALUES (?, ?, ?, ?, ?)",
                       [(access, shop, "access", iso(ends), issued + 1), (refresh, shop, "refresh", iso(refresh_end), issued + 2)])
        name = db.execute("SELECT name FROM shops WHERE shop_id = ?", (shop,)).fetchone()
        re_in = max(0, int((refresh_end - now).total_seconds()))
        result = {"access_token": access, "token_type": "Bearer", "expires_in": ttl, "refresh_token": refresh,
                  "re_expires_in": re_in, "r1_expires_in": ttl, "r2_expires_in": ttl, "w1_expires_in": ttl,
                  "w2_expires_in": ttl, "taobao_user_id": shop, "taobao_user_nick": (name[0] if name and name[0] else shop),
                  "expire_time": int(ends.timestamp() * 1000), "refresh_token_valid_time": int(refresh_end.timestamp() * 1000)}
        return {"token_result": json.dumps(result, ensure_ascii=False, separators=(",", ":"))}

    @staticmethod
    def _current(db: sqlite3.Connection, shop: str, sc: Scenario) -> tuple[str | None, int]:
        row = db.execute("SELECT appkey, revision FROM bindings WHERE shop_id = ? AND scenario = ?",
                         (shop, sc.value)).fetchone()
        return (str(row[0]) if row[0] is not None else None, int(row[1])) if row else (None, 0)
