"""Where the top provider's secrets come from: the app secret and the shops' session keys.

Secrets never go in the configuration: ``reconciler.yaml`` names an environment variable
or a file that holds them. This module reads them for ``connect``, which hands them to the
provider; it also warns when such a file sits in a git work tree without being ignored
(one ``git add -A`` away from being committed).

A sessions file maps shop id → session key, in YAML (JSON is YAML too) read like every
other file of ours (``yamlio``: duplicate keys, tags and anchors are errors with
``file:line:column``). No message here ever shows a session key or the app secret: a file
written the wrong way round holds session keys where the shop ids belong, so keys are not
echoed either — entries are named by their position, problems by their location.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError, Issue, ReconcilerError
from .files import FileError, MiB, read_regular
from .gitutil import committable
from .model import SHOP_ID_RE
from .settings import TopSettings
from .yamlio import load

SECRET_FILE_LIMIT = 64 << 10   # an app secret is a few dozen bytes
SESSIONS_FILE_LIMIT = 16 * MiB  # 100,000 shops' session keys are a few MB


def resolve(config_dir: Path, p: str) -> Path:
    """A path of the settings: ``~`` expanded, relative to the config directory."""
    q = Path(p).expanduser()
    return q if q.is_absolute() else config_dir / q


def read_secret(settings: TopSettings, config_dir: Path) -> str:
    """The app secret: from ``app_secret_file`` when set, else from the ``app_secret_env`` variable."""
    if settings.app_secret_file:
        path = resolve(config_dir, settings.app_secret_file)
        try:  # only a regular file (a FIFO would hang, /dev/zero never ends), never echoed
            secret = read_regular(path, what="app secret file", limit=SECRET_FILE_LIMIT).decode("utf-8").strip()
        except FileError as e:
            why = str(e).removeprefix(f"{path}: ").removeprefix("cannot read the app secret file: ")
            raise ReconcilerError(f"cannot read the app secret from {path} (provider.app_secret_file): {why}") from None
        except UnicodeDecodeError:
            raise ReconcilerError(f"cannot read the app secret from {path} (provider.app_secret_file):"
                                  " UnicodeDecodeError (not UTF-8 text)") from None
        if not secret:
            raise ReconcilerError(f"the app secret file {path} (provider.app_secret_file) is empty")
        return secret
    secret = os.environ.get(settings.app_secret_env, "").strip()
    if not secret:
        raise ReconcilerError(f"the app secret is not set: export {settings.app_secret_env}"
                              " (provider.app_secret_env) or set provider.app_secret_file")
    return secret


def from_store(settings: TopSettings, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the shops' tokens come from the state store: no ``sessions_file``, and no
    ``sessions_env`` — not named in reconciler.yaml, and its default variable not set."""
    env = os.environ if environ is None else environ
    return not settings.sessions_file and not settings.sessions_env_named and settings.sessions_env not in env


def read_sessions(settings: TopSettings, config_dir: Path) -> tuple[dict[str, str], str]:
    """Shop id → session key, from ``sessions_file`` (YAML or JSON) or the ``sessions_env`` variable (JSON);
    and where they came from, for messages."""
    typed: set[str] = set()
    if settings.sessions_file:
        path = resolve(config_dir, settings.sessions_file)
        where = str(path)
        data, typed = _sessions_file(path, where)
    else:
        where = f"${settings.sessions_env}"
        raw = os.environ.get(settings.sessions_env)
        if raw is None:
            raise ReconcilerError(f"no session keys: export {settings.sessions_env} as a JSON object of shop id to"
                                  " session key (provider.sessions_env), set provider.sessions_file, or remove both to"
                                  " take the tokens from the state store (reconciler auth import)")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ReconcilerError(f"{where} is not JSON (line {e.lineno}, column {e.colno});"
                                  " expected an object of shop id to session key") from None
    if not isinstance(data, dict):
        raise ReconcilerError(f"{where}: expected a mapping of shop id to session key")
    problems: list[str] = []
    out: dict[str, str] = {}
    for n, (shop, session) in enumerate(data.items(), start=1):
        if not isinstance(shop, str) or shop in typed or not SHOP_ID_RE.fullmatch(shop):
            # never echo the key: a file written the wrong way round holds session keys there
            problems.append(f"entry {n}: the key is not a shop id (a quoted string of digits; the file maps shop id → session key)")
        elif not isinstance(session, str) or not session.strip():
            problems.append(f"the session key of shop {shop} must be a non-empty string")
        else:
            out[shop] = session.strip()
    if problems:
        raise ReconcilerError(f"{where}: " + "; ".join(problems))
    return out, where


def read_token_file(path: Path) -> tuple[object, set[str]]:
    """``auth import``'s file (YAML or JSON, read like a sessions file): its data, and its keys
    YAML did not read as strings. Problems are located and show no key or value."""
    return _sessions_file(path, str(path), what="the tokens to import", setting="")


def _sessions_file(path: Path, where: str, *, what: str = "the session keys",
                   setting: str = " (provider.sessions_file)") -> tuple[object, set[str]]:
    """The file's data, and its keys YAML did not read as strings (they are not shop ids).

    Raises with every problem ``yamlio`` found, located, worded so as to show no key or value."""
    doc, issues = load(path, where, limit=SESSIONS_FILE_LIMIT)  # only a regular file, bounded
    if doc is None and issues and issues[0].line == 0:  # not even read
        reason = issues[0].message.removeprefix("cannot read: ")
        raise ReconcilerError(f"cannot read {what} from {where}{setting}: {reason}")
    typed = {str(p[0]) for p in doc.marks.typed_keys if len(p) == 1} if doc is not None else set()
    shown = [Issue(i.file, i.line, i.column, "", _without_values(i.message)) for i in issues
             if not i.message.startswith("a key must be a quoted string")]  # said below, per entry
    if shown or doc is None:
        raise ConfigError(shown, subject=what + setting)
    return doc.data, typed


def _without_values(message: str) -> str:
    """A ``yamlio`` message without the key or value it quotes (either may be a session key)."""
    if message.startswith("duplicate key "):
        return "duplicate key" + message[message.rfind(" (first at line"):]
    if message.startswith("cannot read value "):
        return "cannot read this value (not shown: it may be a secret)"
    return message


def secret_file_warnings(settings: TopSettings, config_dir: Path) -> list[str]:
    """Warnings for the files of secrets that git would commit (in a work tree, not ignored)."""
    out: list[str] = []
    for key, rel, env in (("sessions_file", settings.sessions_file, settings.sessions_env),
                          ("app_secret_file", settings.app_secret_file, settings.app_secret_env)):
        if rel and committable(resolve(config_dir, rel)):
            out.append(f"{resolve(config_dir, rel)} (provider.{key}) holds secrets and is in a git work tree"
                       f" without being ignored: add it to .gitignore, or use ${env} instead")
    return out
