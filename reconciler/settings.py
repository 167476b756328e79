"""The settings of ``reconciler.yaml`` as the rest of the code takes them: frozen dataclasses
(the provider, sandbox or top; safety; apply; history; state), no pydantic.

``reconciler.yaml`` is validated by its spec, ``specs.Settings`` (pydantic, strict: no
coercion, no unknown keys, no non-finite numbers; every error located), and ``from_spec``
makes these of it. A plain file — every value of the kind and in the range its field takes,
no ``top`` provider (its URL and method names have their own checks) — is read by
``plain`` without pydantic into the very same objects; anything else returns None and
takes the spec. The two declare the same fields, defaults and ranges:
tests/test_plain_readers.py holds them to each other, field by field, and compares the two
readings over random files.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import BaseModel

SignMethod = Literal["md5", "hmac", "hmac-sha256"]

# Logical operation → the method name the platform answers by default (the README: "The real platform over HTTP").
DEFAULT_METHODS: dict[str, str] = {
    "get": "erp.binding.get",
    "bind": "erp.binding.bind",
    "unbind": "erp.binding.unbind",
    "selfservice": "erp.selfservice.set",
    "check": "erp.app.check",
}
METHOD_NAME_RE = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+")


def _range(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """A field's default and the range the spec gives it (read by ``plain``)."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le})


@dataclass(frozen=True, kw_only=True)
class SandboxSettings:
    kind: Literal["sandbox"] = "sandbox"
    path: str = ".reconciler/sandbox.db"
    world: str | None = None


@dataclass(frozen=True, kw_only=True)
class TopSettings:
    """The real platform over HTTP (TOP protocol). Secrets come from the environment or files.
    ``sessions_env_named``: ``sessions_env`` is written in reconciler.yaml (not the default)."""

    kind: Literal["top"]
    url: str
    app_key: str
    app_secret_env: str = "RECONCILER_APP_SECRET"
    app_secret_file: str | None = None
    sessions_file: str | None = None
    sessions_env: str = "RECONCILER_SESSIONS"
    sign_method: SignMethod = "hmac-sha256"
    qps: float = _range(20.0, gt=0, le=100_000)
    timeout_s: float = _range(10.0, gt=0, le=3600)
    # A whole request, connecting to the last byte of the answer, however slowly it trickles.
    deadline_s: float = _range(30.0, gt=0, le=3600)
    # A rate-limit ban longer than this is not waited out: the run stops with one message.
    max_ban_s: float = _range(300.0, ge=0, le=86_400)
    # Consecutive requests without an answer after which the run stops (the circuit breaker).
    max_failures: int = _range(10, ge=1, le=1000)
    parallelism: int = _range(8, ge=1, le=64)
    methods: dict[str, str] = field(default_factory=dict)
    sessions_env_named: bool = False


@dataclass(frozen=True, kw_only=True)
class SafetySettings:
    max_change_share: float = _range(0.30, ge=0, le=1)
    min_managed: int = _range(10, ge=0)


@dataclass(frozen=True, kw_only=True)
class ApplySettings:
    retries: int = _range(4, ge=0, le=20)
    backoff_s: float = _range(0.5, ge=0, le=3600)
    max_backoff_s: float = _range(30.0, ge=0, le=86_400)


@dataclass(frozen=True, kw_only=True)
class HistorySettings:
    path: str | None = None


@dataclass(frozen=True, kw_only=True)
class StateSettings:
    """``state``: where the shared state store lives (history, run locks, apply journal) and
    how ``apply`` waits for locks. ``url`` None: a legacy ``history.path``, else the embedded
    default ``sqlite:///.reconciler/state.db`` (see ``reconciler.state.urls``)."""

    url: str | None = None
    lock_timeout_s: float = _range(0.0, ge=0, le=86_400)   # finite and bounded: they become
    lock_lease_s: float = _range(60.0, ge=1, le=86_400)     # deadlines and SQL intervals


@dataclass(frozen=True, kw_only=True)
class Settings:
    """``reconciler.yaml``; every section optional."""

    provider: SandboxSettings | TopSettings = field(default_factory=SandboxSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    apply: ApplySettings = field(default_factory=ApplySettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    state: StateSettings = field(default_factory=StateSettings)


def replace(settings: Settings, **provider: Any) -> Settings:
    """The settings with some of the provider's values changed (``--parallelism``, a shard's QPS)."""
    return dataclasses.replace(settings, provider=dataclasses.replace(settings.provider, **provider))


# --------------------------------------------------------------------------- reading

_SECTIONS: dict[str, type[Any]] = {"safety": SafetySettings, "apply": ApplySettings, "history": HistorySettings,
                                   "state": StateSettings}
_BY_NAME: dict[str, type[Any]] = {c.__name__: c for c in (SandboxSettings, TopSettings, *_SECTIONS.values(), Settings)}


def from_spec(spec: BaseModel) -> Any:
    """These settings of a validated ``specs.Settings`` (or of one of its sections)."""
    cls = _BY_NAME[type(spec).__name__]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "sessions_env_named":
            values[f.name] = "sessions_env" in spec.model_fields_set
            continue
        value = getattr(spec, f.name)
        values[f.name] = from_spec(value) if type(value).__name__ in _BY_NAME else (
            dict(value) if isinstance(value, dict) else value)
    return cls(**values)


def plain(data: Any) -> Settings | None:
    """The settings of a plainly valid ``reconciler.yaml`` (its data; None: an empty file),
    without pydantic; None when the spec must say (a ``top`` provider, a value of another
    kind or out of its range, an unknown key)."""
    if data is None:
        return Settings()
    if type(data) is not dict or not data.keys() <= {"provider", *_SECTIONS}:
        return None
    values: dict[str, Any] = {}
    for name, section in data.items():
        cls = SandboxSettings if name == "provider" else _SECTIONS[name]
        if name == "provider" and (type(section) is not dict or section.get("kind") != "sandbox"):  # (the union needs kind)
            return None
        made = _section(cls, section)
        if made is None:
            return None
        values[name] = made
    return Settings(**values)


def _section(cls: type[Any], data: Any) -> Any:
    if type(data) is not dict:
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        f = fields.get(key) if type(key) is str else None
        if f is None:
            return None
        kind = f.type
        if kind == "str" or kind == "str | None" or kind.startswith("Literal["):
            ok = type(value) is str or (value is None and kind == "str | None")
            if ok and kind.startswith("Literal[") and repr(value) not in kind:
                ok = False
        elif kind == "float":
            ok = type(value) is int or (type(value) is float and math.isfinite(value))
            ok = ok and _in(f, value)
            if ok:
                value = float(value)
        elif kind == "int":
            ok = type(value) is int and _in(f, value)
        else:
            ok = False
        if not ok:
            return None
        values[key] = value
    return cls(**values)


def _in(f: dataclasses.Field[Any], value: float) -> bool:
    ge, gt, le = f.metadata["ge"], f.metadata["gt"], f.metadata["le"]
    return (ge is None or value >= ge) and (gt is None or value > gt) and (le is None or value <= le)
