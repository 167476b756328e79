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
import sqlite3
import threading
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import sandbox_store
from .model import VIRTUAL_APPKEY, Scenario, appkey_problem
from .platformwords import (  # the platform's fixed words; re-exported for callers of platform
    DEFAULT_REFRESH_TTL_S,
    DEFAULT_TOKEN_TTL_S,
    IDENTITY_KEY,
    SUB_CODES,
    TOKEN_CREATE,
    TOKEN_REFRESH,
    Operation,
    iso,
)
from .storage import open_sqlite
from .vocab import show_appkey

if TYPE_CHECKING:
    from .world import World, WorldSession


def __getattr__(name: str) -> Any:
    """``World`` and ``WorldSession`` (the world file's models, pydantic): imported when asked for."""
    if name in ("World", "WorldSession"):
        from . import world

        return getattr(world, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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


# A shop as ``SandboxPlatform.read`` gives it: (shop_id, name, buyer_self_service, detail_whitelisted,
# bindings), each binding (scenario, appkey, revision) as the file holds it (unchecked: the reader
# checks their types), sorted by scenario; detail_whitelisted is that of the order_status binding's app.
ShopRow = tuple[str, object, bool, bool, tuple[tuple[object, object, object], ...]]

_FEW = 500  # up to this many shops are read by their ids, more by reading every shop
_ORDER_STATUS = Scenario.order_status.value
_READ_SHOPS = ("SELECT shop_id, name, buyer_self_service, cs_permission FROM shops"
               " WHERE typeof(shop_id) = 'text'{only} ORDER BY shop_id")
_READ_BINDINGS = ("SELECT shop_id, scenario, appkey, revision FROM bindings"
                  " WHERE appkey IS NOT NULL AND typeof(shop_id) = 'text'{only} ORDER BY shop_id, scenario")


def _body(row: ShopRow) -> dict[str, Any]:
    """A shop's ``erp.binding.get`` response body."""
    sid, name, bss, wl, bindings = row
    return {"shop_id": sid, "shop_name": name,
            "bindings": [{"scenario": sc, "appkey": key, "revision": rev} for sc, key, rev in bindings],
            "buyer_self_service": bss, "detail_whitelisted": wl}


class SandboxPlatform:
    """The platform's rules over one SQLite file. Thread-safe (one lock, one connection)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = open_sqlite(path, sandbox_store.SCHEMA, what="sandbox database")

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
            sandbox_store.load(db, world)

    def dump_world(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """The content in the world format; secrets only when asked for."""
        with self._lock:
            return sandbox_store.dump(self._db, include_secrets=include_secrets)

    def identity(self) -> str:
        """This sandbox's identity: a random id made when the database is first asked for it and
        kept for its life (``sandbox load`` replaces the content, not the platform). Saved plans
        carry it as their ``target``, so a plan is never applied to another sandbox."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (IDENTITY_KEY,)).fetchone()
            if row is None:
                import uuid  # (once a sandbox)

                with self._tx() as db:
                    db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (IDENTITY_KEY, f"sandbox-{uuid.uuid4().hex}"))
                row = self._db.execute("SELECT value FROM meta WHERE key = ?", (IDENTITY_KEY,)).fetchone()
            return str(row[0])

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
        """``erp.binding.get`` for many shops in one read; a value is the response body or a
        PlatformError (raised instead when ``strict``), in the order asked."""
        ids = list(shops)
        with closing(self.read(ids)) as rows:
            got = dict(rows)
        out: dict[str, Any] = {}
        for sid in ids:
            value = got[sid]
            if isinstance(value, PlatformError) and strict:
                raise value
            out[sid] = value if isinstance(value, PlatformError) else _body(value)
        return out

    def read(self, shops: Iterable[str]) -> Generator[tuple[str, ShopRow | PlatformError], None, None]:
        """``erp.binding.get`` for many shops as plain tuples, one shop at a time (no response
        bodies, none held for all shops): each shop asked for once, in no set order, with its
        ``ShopRow`` or its refusal (an injected fault, not found, no permission).

        Faults are counted first, in a transaction of their own (``times`` counts down in the
        order the shops are asked); the rows then come from one read transaction. The iterator
        holds the platform's lock until it ends: consume it whole or ``close()`` it, in the same
        thread (``with contextlib.closing(platform.read(ids)) as rows: ...``)."""
        ids = list(shops)
        wanted = set(ids)
        refused = self._get_faults(ids)
        yield from refused.items()
        few = len(wanted) <= _FEW
        only = f" AND shop_id IN ({','.join('?' * len(wanted))})" if few else ""
        params = list(wanted) if few else []
        found: set[str] = set(refused)
        with self._lock:
            db = self._db
            db.execute("BEGIN")  # one snapshot (WAL: writers go on meanwhile)
            try:
                whitelisted = {k: bool(w) for k, w in db.execute("SELECT appkey, detail_whitelisted FROM apps")}
                # Both ordered by shop_id (as SQLite orders text: by code point, as Python does) and merged.
                bindings = db.execute(_READ_BINDINGS.format(only=only), params)
                b = next(bindings, None)
                for sid, name, bss, perm in db.execute(_READ_SHOPS.format(only=only), params):
                    if sid not in wanted or sid in found:
                        continue  # (its bindings are passed over below, with those of no shop)
                    found.add(sid)
                    while b is not None and b[0] < sid:
                        b = next(bindings, None)
                    rows: list[tuple[object, object, object]] = []
                    wl = False
                    while b is not None and b[0] == sid:
                        _, sc, key, rev = b
                        rows.append((sc, key, rev))
                        if sc == _ORDER_STATUS:
                            wl = whitelisted.get(key, False)
                        b = next(bindings, None)
                    if perm:
                        yield sid, (sid, name, bool(bss), wl, tuple(rows))
                    else:
                        yield sid, PlatformError("isv.permission-denied",
                                                 "the account lacks the customer-service-platform permission")
            finally:
                db.execute("COMMIT")
        for sid in ids:
            if sid not in found:
                found.add(sid)
                yield sid, PlatformError("isv.shop-not-found", f"shop {sid} does not exist")

    def _get_faults(self, ids: list[str]) -> dict[str, PlatformError]:
        """The shops of ``ids`` an injected ``get`` fault refuses, each fault consumed (and
        committed) in the order asked; no write at all when none is armed."""
        with self._lock:
            armed = {r[0] for r in self._db.execute("SELECT shop_id FROM faults WHERE operation = 'get'"
                                                    " AND scenario IS NULL AND (times IS NULL OR times > 0)")}
        if not armed:
            return {}
        hit: dict[str, PlatformError] = {}
        with self._tx() as db:
            for sid in ids if None in armed else [s for s in ids if s in armed]:
                try:
                    self._fault(db, "get", sid, None)
                except PlatformError as e:
                    hit[sid] = e
        return hit

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
        import secrets  # (only the sandbox's authorization server issues tokens)

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
