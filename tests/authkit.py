"""Helpers of the shop-authorization tests: an agency on the top provider whose tokens live in
the state store, worlds of tokens with ends relative to one instant, and reading the store.

Times: every test fixes ``reconciler.auth.clock`` at an instant ``t0`` (the ``t0`` fixture)
and writes the world's and the imported tokens' ends relative to it, days apart, so no
result depends on when or how fast the test runs. The sandbox gateway judges tokens by its
own clock (it also checks each request's timestamp against it), which is ``t0`` plus the
seconds the test has run: days of margin either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from conftest import SETTINGS, Agency

from reconciler.auth import Keyring
from reconciler.state import open_store
from reconciler.state.tokens import TokenRow

KEY_ENV = "RECONCILER_STATE_KEY"
SHOPS = ("100001", "100002", "100003", "100004", "100005")


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def session(t0: datetime, n: int, *, ends_in: timedelta | None, refresh_ends_in: timedelta | None = None,
            refreshable: bool = True) -> dict[str, Any]:
    """A world session mapping for shop number ``n``: tokens ``tok-n``/``rt-n`` (long and
    unique, so a grep of the database cannot match by accident)."""
    s: dict[str, Any] = {"token": token(n)}
    if ends_in is not None:
        s["expires_at"] = iso(t0 + ends_in)
    if refreshable:
        s["refresh_token"] = refresh(n)
        if refresh_ends_in is not None:
            s["refresh_expires_at"] = iso(t0 + refresh_ends_in)
    return s


def token(n: int | str) -> str:
    return f"tok-{n}-4f9a1c7e2b8d4e6f"


def refresh(n: int | str) -> str:
    return f"rt-{n}-9c3e5a7b1d2f4a6c"


def to_import(world_shops: Mapping[str, Any]) -> dict[str, Any]:
    """``auth import``'s file for the world's sessions (what the agency held when it moved)."""
    out: dict[str, Any] = {}
    for shop, s in world_shops.items():
        sess = s.get("session")
        if isinstance(sess, str):
            out[shop] = sess
        elif isinstance(sess, dict) and sess.get("token"):
            entry = {"access_token": sess["token"]}
            for a, b in (("refresh_token", "refresh_token"), ("expires_at", "expires_at"),
                         ("refresh_expires_at", "refresh_expires_at")):
                if sess.get(a) is not None:
                    entry[b] = sess[a]
            out[shop] = entry
    return out


class StoreAgency(Agency):
    """A top-provider agency (sandbox served on loopback) that takes its tokens from the state
    store at ``state_url``: no sessions file. ``env``: the key and the store's URL."""

    def __init__(self, root: Path, state_url: str, key: str, *, top_options: dict[str, Any] | None = None,
                 server_options: dict[str, Any] | None = None) -> None:
        self.state_url = state_url
        self.key = key
        super().__init__(root, "top", top_options={"sessions_file": None, **(top_options or {})},
                         server_options=server_options)
        self.write("reconciler.yaml", SETTINGS + "state: " + yaml.safe_dump({"url": state_url}, default_flow_style=True,
                                                                             width=10_000))

    def shops_config(self, ids: Iterable[str]) -> None:
        self.shops("shops:\n" + "".join(f'  - {{id: "{s}", erp: jushuitan, scenarios: {{intercept_shipment: {{}}}}}}\n'
                                         for s in ids))

    def load(self, shops: Mapping[str, Any]) -> None:
        """The world (no ``sess-`` defaults: each shop says its session) into the sandbox."""
        self.world({s: {"session": None, **v} for s, v in shops.items()})
        self.platform().close()

    def import_tokens(self, data: Mapping[str, Any], name: str = "tokens.yaml") -> None:
        self.write(name, yaml.safe_dump(dict(data)))
        r = self.run("auth", "import", str(self.dir / name))
        assert r.exit_code == 0, r.output
        (self.dir / name).unlink()

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
        return super().run(*args, input=input, env={KEY_ENV: self.key, **(env or {})})

    def rows(self) -> dict[str, TokenRow]:
        store = open_store(self.state_url, config_dir=self.dir)
        assert store is not None
        try:
            return store.token_rows()
        finally:
            store.close()

    def secrets(self) -> dict[str, tuple[str, str | None]]:
        """Shop → (access token, refresh token) as stored, opened with the key."""
        ring = Keyring.from_env({KEY_ENV: self.key})
        return {s: (sec.access_token, sec.refresh_token) for s, row in self.rows().items() for sec in [ring.open(row)]}


def database_bytes(state_url: str, pg_datadir: Path | None) -> Iterator[bytes]:
    """Every byte the store's database keeps on disk: the SQLite file and its WAL, or every file
    of the PostgreSQL data directory (tables, WAL)."""
    if state_url.startswith("sqlite"):
        path = Path(state_url.removeprefix("sqlite:///"))
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")):
            if p.exists():
                yield p.read_bytes()
        return
    assert pg_datadir is not None
    for root, _, files in os.walk(pg_datadir):
        for f in files:
            try:
                yield (Path(root) / f).read_bytes()
            except OSError:
                continue
