"""The models of ``reconciler.yaml``: the provider (sandbox or top), safety, apply, history
and state settings. Strict like every spec model: no coercion, no unknown keys, no
non-finite numbers. Re-exported by ``model``, where the rest of the code imports them from.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from .vocab import excerpt

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False, defer_build=True)


class SandboxSettings(BaseModel):
    model_config = _STRICT
    kind: Literal["sandbox"] = "sandbox"
    path: StrictStr = ".reconciler/sandbox.db"
    world: StrictStr | None = None


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


class TopSettings(BaseModel):
    """The real platform over HTTP (TOP protocol). Secrets come from the environment or files."""

    model_config = _STRICT
    kind: Literal["top"]
    url: StrictStr
    app_key: StrictStr
    app_secret_env: StrictStr = "RECONCILER_APP_SECRET"
    app_secret_file: StrictStr | None = None
    sessions_file: StrictStr | None = None
    sessions_env: StrictStr = "RECONCILER_SESSIONS"
    sign_method: SignMethod = "hmac-sha256"
    qps: Annotated[float, Field(gt=0, le=100_000)] = 20.0
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    # A whole request, connecting to the last byte of the answer, however slowly it trickles.
    deadline_s: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 30.0
    # A rate-limit ban longer than this is not waited out: the run stops with one message.
    max_ban_s: Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)] = 300.0
    # Consecutive requests without an answer after which the run stops (the circuit breaker).
    max_failures: Annotated[int, Field(ge=1, le=1000)] = 10
    parallelism: Annotated[int, Field(ge=1, le=64)] = 8
    methods: dict[StrictStr, StrictStr] = {}

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http:// or https:// URL (like http://127.0.0.1:8765/router/rest), not {excerpt(url)}")
        return url

    @field_validator("methods")
    @classmethod
    def _method_names(cls, methods: dict[str, str]) -> dict[str, str]:
        problems = [f"unknown method {excerpt(k)}; rename one of: {', '.join(DEFAULT_METHODS)}"
                    for k in sorted(methods) if k not in DEFAULT_METHODS and k not in DEFAULT_METHODS.values()]
        problems += [f"{k}: {excerpt(v)} is not a method name (like erp.binding.get)"
                     for k, v in sorted(methods.items()) if not METHOD_NAME_RE.fullmatch(v)]
        if problems:
            raise ValueError("; ".join(problems))
        return methods


class SafetySettings(BaseModel):
    model_config = _STRICT
    max_change_share: Annotated[float, Field(ge=0, le=1)] = 0.30
    min_managed: Annotated[int, Field(ge=0)] = 10


class ApplySettings(BaseModel):
    model_config = _STRICT
    retries: Annotated[int, Field(ge=0, le=20)] = 4
    backoff_s: Annotated[float, Field(ge=0, le=3600)] = 0.5
    max_backoff_s: Annotated[float, Field(ge=0, le=86_400)] = 30.0


class HistorySettings(BaseModel):
    model_config = _STRICT
    path: StrictStr | None = None


class StateSettings(BaseModel):
    """``state``: where the shared state store lives (history, run locks, apply journal) and
    how ``apply`` waits for locks. ``url`` None: a legacy ``history.path``, else the embedded
    default ``sqlite:///.reconciler/state.db`` (see ``reconciler.state.urls``)."""

    model_config = _STRICT
    url: StrictStr | None = None
    lock_timeout_s: Annotated[float, Field(ge=0, le=86_400)] = 0.0   # finite and bounded: they become
    lock_lease_s: Annotated[float, Field(ge=1, le=86_400)] = 60.0     # deadlines and SQL intervals


class Settings(BaseModel):
    """``reconciler.yaml``; every section optional. (Defaults made with ``model_construct``:
    an instance made at import would build the model's validator before it is needed.)"""

    model_config = _STRICT
    provider: Annotated[SandboxSettings | TopSettings, Field(discriminator="kind")] = SandboxSettings.model_construct()
    safety: SafetySettings = SafetySettings.model_construct()
    apply: ApplySettings = ApplySettings.model_construct()
    history: HistorySettings = HistorySettings.model_construct()
    state: StateSettings = StateSettings.model_construct()
