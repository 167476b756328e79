"""Shared fixtures: a config directory with a sandbox world, driven through the real CLI.

Nothing of ours is mocked: tests write YAML, run ``reconciler`` commands in-process with
click's runner, and look at the real SQLite sandbox afterwards.

The ``agency`` fixture runs every test twice, once per provider: ``sandbox`` (the
embedded platform, in-process) and ``top`` (the HTTP provider talking to ``sandbox serve``
on 127.0.0.1, serving the same SQLite file). Same behaviour, two providers. For ``top``
the Agency writes a ``provider: {kind: top, ...}`` section in place of the sandbox one,
keeps a ``sessions.yaml`` with the world's session keys, and passes the app secret in the
environment; ``agency.server`` is the running gateway (faults, counters). A test that
only makes sense on one provider checks ``agency.provider``.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.connect import open_sandbox
from reconciler.platform import SandboxPlatform
from reconciler.sandbox_server import ServerHandle, start_server
from reconciler.settings import SandboxSettings, Settings

PROVIDERS = ("sandbox", "top")
APP_KEY = "30000001"
APP_SECRET = "s3cret-for-tests"
SECRET_ENV = "RECONCILER_APP_SECRET"
SESSIONS_FILE = "sessions.yaml"

ERPS = """\
erps:
  jushuitan:    {name: 聚水潭, appkey: "21345678"}
  wangdiantong: {name: 旺店通, appkey: "12345679"}
  inhouse:      {name: 自研ERP, appkey: "31415926"}
  cainiao:      {name: 菜鸟仓, appkey: virtualAppKey}
"""

APPS = {
    "21345678": {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address", "order_status"],
                 "detail_whitelisted": True},
    "12345679": {"name": "旺店通", "scenarios": ["intercept_shipment", "modify_address"]},
    "31415926": {"name": "自研ERP", "scenarios": ["intercept_shipment", "modify_address", "order_status"]},
}

SETTINGS = """\
provider: {kind: sandbox, path: .reconciler/sandbox.db, world: world.yaml}
apply: {retries: 3, backoff_s: 0, max_backoff_s: 0}
"""

_PROVIDER_BLOCK = re.compile(r"^provider:.*(?:\n[ \t]+\S.*)*", re.MULTILINE)


class Agency:
    """A config directory plus its sandbox, and the CLI to drive it (on either provider)."""

    def __init__(self, root: Path, provider: str = "sandbox", *, top_options: dict[str, Any] | None = None,
                 server_options: dict[str, Any] | None = None) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}")
        self.dir = root
        self.provider = provider
        self.top_options: dict[str, Any] = {"qps": 1000, "parallelism": 4, "timeout_s": 10, **(top_options or {})}
        self.server: ServerHandle | None = None
        self.url: str | None = None
        self._sandbox: dict[str, Any] = {"path": ".reconciler/sandbox.db", "world": "world.yaml"}
        (root / "shops").mkdir(parents=True, exist_ok=True)
        if provider == "top":
            self.url, self.server = start_server(self._open_db, close_platform=True, **(server_options or {}))
        self.write("erps.yaml", ERPS)
        self.write("reconciler.yaml", SETTINGS)

    @property
    def db(self) -> Path:
        return self.dir / ".reconciler" / "sandbox.db"

    def _open_db(self) -> SandboxPlatform:
        return SandboxPlatform(self.db)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ------------------------------------------------------------------ files

    def write(self, rel: str, text: str | bytes) -> Path:
        p = self.dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            text = textwrap.dedent(text)
            if rel == "reconciler.yaml":
                self._remember_sandbox(text)
                if self.provider == "top":
                    text = self._to_top(text)
            p.write_text(text, encoding="utf-8")
        return p

    def top_provider(self) -> dict[str, Any]:
        """The ``provider:`` section of the top runs."""
        return {"kind": "top", "url": self.url, "app_key": APP_KEY, "app_secret_env": SECRET_ENV,
                "sessions_file": SESSIONS_FILE, **self.top_options}

    def _remember_sandbox(self, text: str) -> None:
        """The sandbox settings a reconciler.yaml names (where the world is loaded from on first use)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            return
        prov = data.get("provider") if isinstance(data, dict) else None
        if prov is None:
            self._sandbox = {"path": ".reconciler/sandbox.db", "world": None}
        elif isinstance(prov, dict) and prov.get("kind", "sandbox") == "sandbox":
            self._sandbox = {"path": prov.get("path", ".reconciler/sandbox.db"), "world": prov.get("world")}

    def _to_top(self, text: str) -> str:
        """Swap a sandbox provider section (or none) for the top one, on one line so the
        other keys keep their line numbers; anything else is written as given."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return text
        prov = data.get("provider")
        if prov is not None and not (isinstance(prov, dict) and prov.get("kind", "sandbox") == "sandbox"):
            return text
        line = "provider: " + yaml.safe_dump(self.top_provider(), default_flow_style=True, width=10_000).strip()
        if prov is None:
            return text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
        return _PROVIDER_BLOCK.sub(lambda _: line, text, count=1)

    def shops(self, text: str, name: str = "a.yaml") -> Path:
        return self.write(f"shops/{name}", text)

    def world(self, shops: dict[str, Any], *, apps: dict[str, Any] | None = None,
              faults: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        """Write the world and (re)load it into the sandbox. A shop without a ``session``
        gets ``sess-<id>`` (the top provider needs one per shop)."""
        shops = {sid: ({"session": f"sess-{sid}", **s} if isinstance(s, dict) and "session" not in s else s)
                 for sid, s in shops.items()}
        world: dict[str, Any] = {"app": {"app_key": APP_KEY, "app_secret": APP_SECRET},
                                 "apps": APPS if apps is None else apps, "shops": shops, **extra}
        if faults:
            world["faults"] = faults
        self.write("world.yaml", yaml.safe_dump(world, allow_unicode=True))
        if self.provider == "top":
            sessions = {sid: s["session"] for sid, s in shops.items() if isinstance(s, dict) and s.get("session")}
            self.write(SESSIONS_FILE, yaml.safe_dump(sessions))
        if self.db.exists():
            r = self.run("sandbox", "load", str(self.dir / "world.yaml"))
            assert r.exit_code == 0, r.output

    # ------------------------------------------------------------------ running

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        if self.provider == "top":
            self._first_use()
            env = {SECRET_ENV: APP_SECRET, **(env or {})}
        return CliRunner().invoke(main, ["-C", str(self.dir), *args], input=input, env=env, catch_exceptions=False)

    def _first_use(self) -> None:
        """What the sandbox provider does when its database does not exist yet: load the world
        its settings name. (The top runs need it done here: their provider is not the sandbox.)"""
        world = self._sandbox.get("world")
        if self.db.exists() or not world or not (self.dir / world).exists():
            return
        settings = Settings(provider=SandboxSettings(path=str(self.db), world=str(world)))
        open_sandbox(settings, self.dir).close()

    # ------------------------------------------------------------------ the platform's side

    def platform(self) -> SandboxPlatform:
        """The sandbox itself (loading the world first, as the first command would)."""
        self._first_use()
        return SandboxPlatform(self.db)

    def bindings(self, shop: str) -> dict[str, str]:
        """The sandbox's bindings of a shop, scenario → appkey."""
        p = self.platform()
        try:
            body = p.get(shop)
        finally:
            p.close()
        return {b["scenario"]: b["appkey"] for b in body["bindings"]}

    def self_service(self, shop: str) -> bool:
        p = self.platform()
        try:
            return bool(p.get(shop)["buyer_self_service"])
        finally:
            p.close()


@pytest.fixture(params=PROVIDERS)
def agency(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Agency]:
    """A fresh agency on the embedded sandbox, and again on the top provider over HTTP."""
    provider: str = request.param
    if provider == "top":
        monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    a = Agency(tmp_path / "configs", provider)
    try:
        yield a
    finally:
        a.close()


# ---------------------------------------------------------------------- the state store's backends
#
# The shared state store is tested against SQLite and against a real PostgreSQL server
# that the tests start themselves (tests/pgserver.py: the distro's binaries, 127.0.0.1
# only, a throwaway directory; as root it runs as the ``postgres`` OS user). ``state_url``
# runs a test once per backend with a fresh store URL; ``pg_url`` is PostgreSQL only.
# Without the PostgreSQL binaries the PostgreSQL runs fail, saying what to install;
# RECONCILER_TEST_NO_POSTGRES=1 skips them instead.

import itertools  # noqa: E402  (imports of this appended section)
import os  # noqa: E402

import pgserver  # noqa: E402
from pgserver import PgServer, PostgresNotFound  # noqa: E402

STATE_BACKENDS = ("sqlite", "postgresql")
NO_POSTGRES_ENV = "RECONCILER_TEST_NO_POSTGRES"
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server for the whole test session (started on first use)."""
    if os.environ.get(NO_POSTGRES_ENV) == "1":
        pytest.skip(f"{NO_POSTGRES_ENV}=1: the PostgreSQL tests are skipped")
    try:
        bindir = pgserver.find_bindir()
        not_found = ""
    except PostgresNotFound as e:
        not_found = str(e)
    if not_found:  # failed outside the except block: the message alone, not a chained traceback
        pytest.fail(f"{not_found}. The shared-state tests start a real PostgreSQL server: install Debian's postgresql "
                    f"package (apt-get install postgresql; .ci/run does it when missing), or set "
                    f"{NO_POSTGRES_ENV}=1 to skip these tests.", pytrace=False)
    server = PgServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fresh_database(server: PgServer) -> Iterator[str]:
    """A new empty database ``t_<n>`` on ``server``: its URL (with the password); dropped afterwards."""
    name = f"t_{next(_database_numbers)}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh PostgreSQL database: ``postgresql://reconciler:PASSWORD@127.0.0.1:PORT/t_<n>``."""
    yield from _fresh_database(pg_server)


@pytest.fixture(params=STATE_BACKENDS, ids=list(STATE_BACKENDS))
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh state store URL, once per backend: ``sqlite:////<tmp_path>/state.db``, then a
    fresh PostgreSQL database (as ``pg_url``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path.resolve() / 'state.db'}"
        return
    yield from _fresh_database(request.getfixturevalue("pg_server"))
