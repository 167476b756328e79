"""Where the state store lives: resolving its URL from the settings, parsing it, masking it.

Pure (no SQLAlchemy, no connection), so ``plan``/``validate`` and the error paths pay nothing
for it. Resolution order (docs/workflows.md, "The shared state"): env ``RECONCILER_STATE_URL`` >
``state.url`` > a legacy ``history.path`` (that SQLite file becomes the store; its history
is upgraded in place) > the default ``sqlite:///.reconciler/state.db``.

The old default history file: when the default applies, ``.reconciler/state.db`` does not
exist and ``.reconciler/history.db`` does, the store IS that file, upgraded in place and
kept under its old name. It is not renamed: an older reconciler still running from the same
config dir (another CI runner, a colleague's checkout) would otherwise start a new, empty
history next to it and split the audit trail. ``sqlite:///.reconciler/history.db`` is what
``resolve_url`` returns then, so messages name the file actually used.

URLs: ``sqlite:///relative/path.db`` (relative to the config dir), ``sqlite:////abs/path.db``,
``postgresql://user[:password]@host[:port]/database[?libpq-options]`` (``postgres://`` too;
a password with ``@ : / ? #`` must be percent-encoded). Without a password in the URL the
password comes from env ``RECONCILER_STATE_PASSWORD``. ``display_url`` is the only form of
a URL that goes into a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import mask
from ..settings import Settings
from .words import StateError

ENV_URL = "RECONCILER_STATE_URL"
ENV_PASSWORD = "RECONCILER_STATE_PASSWORD"
TOOL_DIR = ".reconciler"  # the tool's own directory in a config dir: created on demand
DEFAULT_URL = f"sqlite:///{TOOL_DIR}/state.db"
LEGACY_DEFAULT = f"{TOOL_DIR}/history.db"  # where the history lived before the state store
SUPPORTED = ("sqlite:///PATH (relative to the config dir), sqlite:////ABSOLUTE/PATH,"
             " postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
_PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def resolve_url(settings: Settings, config_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """The state store URL of a config dir (see the module doc-string for the order)."""
    env = os.environ if environ is None else environ
    if env.get(ENV_URL, "").strip():
        return env[ENV_URL].strip()
    if settings.state.url:
        return settings.state.url
    if settings.history.path:
        return sqlite_url(settings.history.path)
    if not (config_dir / TOOL_DIR / "state.db").exists() and (config_dir / LEGACY_DEFAULT).is_file():
        return sqlite_url(LEGACY_DEFAULT)
    return DEFAULT_URL


def sqlite_url(path: str | Path) -> str:
    """``sqlite:///`` + a path (relative stays relative to the config dir; absolute gets 4 slashes)."""
    return f"sqlite:///{path}"


def display_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (in the user info and in ``password=``
    options). When in doubt it masks more, never less."""
    m = _SCHEME.match(url)
    if m:
        rest = url[m.end():]
        at = rest.rfind("@")
        if at >= 0 and ":" in rest[:at]:
            url = f"{m.group(0)}{rest[:at].split(':', 1)[0]}:***@{rest[at + 1:]}"
    return mask(url, limit=10_000)


@dataclass(frozen=True)
class Target:
    """A parsed store URL. ``path`` for SQLite (absolute); the rest for PostgreSQL."""

    kind: Literal["sqlite", "postgresql"]
    display: str
    path: Path | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    query: tuple[tuple[str, str], ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Texts no message may contain."""
        return tuple(s for s in (self.password,) if s)

    def fail(self, reason: str) -> StateError:
        """The one-line error for this store: masked URL and reason, secrets removed."""
        text = " ".join(f"state store {self.display}: {reason}".split())
        return StateError(mask(text, self.secrets, limit=400))


def parse_url(url: str, *, config_dir: Path, environ: Mapping[str, str] | None = None) -> Target:
    """Parse and check a store URL; every problem is a one-line ``StateError``."""
    env = os.environ if environ is None else environ
    shown = display_url(url)
    m = _SCHEME.match(url)
    if not m:
        raise StateError(f"state store {shown}: not a URL; use {SUPPORTED}")
    scheme = m.group(1).lower()
    if scheme == "sqlite":
        return _sqlite(url[m.end():], shown, config_dir)
    if scheme in _PG_SCHEMES:
        return _postgresql(url, shown, env)
    raise StateError(f"state store {shown}: unknown scheme {scheme!r}; supported: {SUPPORTED}")


def _sqlite(rest: str, shown: str, config_dir: Path) -> Target:
    if not rest.startswith("/"):
        raise StateError(f"state store {shown}: an SQLite URL has three slashes before a relative path"
                         f" (sqlite:///state.db) and four before an absolute one (sqlite:////var/lib/state.db)")
    raw = rest[1:]
    if not raw or raw.endswith("/") or "?" in raw or raw == ":memory:":
        raise StateError(f"state store {shown}: name a database file (sqlite:///PATH, no options, not :memory:)")
    path = Path(raw)
    if not path.is_absolute():
        path = config_dir / path
    return Target(kind="sqlite", display=shown, path=path)


def _postgresql(url: str, shown: str, env: Mapping[str, str]) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise StateError(f"state store {shown}: the port is not a number from 1 to 65535") from None
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname:
        raise StateError(f"state store {shown}: names no host (postgresql://USER@HOST[:PORT]/DATABASE)")
    if not database or "/" in database:
        raise StateError(f"state store {shown}: names no database (postgresql://USER@HOST[:PORT]/DATABASE)")
    password = unquote(parts.password) if parts.password else (env.get(ENV_PASSWORD) or None)
    return Target(kind="postgresql", display=shown, host=parts.hostname, port=port,
                  user=unquote(parts.username) if parts.username else None, password=password, database=database,
                  query=tuple(parse_qsl(parts.query)))


def is_tool_dir(path: Path, config_dir: Path) -> bool:
    """Whether ``path`` is the tool's own ``.reconciler/`` directory of the config dir."""
    return path.resolve() == (config_dir / TOOL_DIR).resolve()
