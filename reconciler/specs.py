"""The spec models: the YAML files of the configuration, one to one, validated by pydantic
(strict: no coercion, no unknown keys, no non-finite numbers). ``config`` validates a file
with them when it is not read in one pass (``scan``, ``fastpath``, the plain readers of
``config``): most runs of a plain configuration never import this module, nor pydantic.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool, StrictStr, field_validator, model_validator

from .model import LABEL_KEY_RE, LABEL_VALUE_MAX, SCENARIOS, SHOP_ID_RE, Scenario
from .settings import DEFAULT_METHODS, METHOD_NAME_RE, SignMethod
from .vocab import WAIVABLE_KINDS, excerpt

# In strict models an enum field still takes its string value (that is what YAML holds).
ScenarioKey = Annotated[Scenario, Strict(False)]

# allow_inf_nan=False: ``timeout_s: .inf`` or ``.nan`` is an error, not a crash later.
_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False, defer_build=True)
ShopId = Annotated[StrictStr, Field(pattern=f"^{SHOP_ID_RE.pattern}$")]  # pydantic's (Rust) ``$`` is the very end


class ErpSpec(BaseModel):
    """One ERP of the catalog (``erps.yaml``)."""

    model_config = _STRICT
    name: StrictStr | None = None
    appkey: StrictStr


class ErpsFile(BaseModel):
    model_config = _STRICT
    erps: dict[StrictStr, ErpSpec]


class ScenarioSpec(BaseModel):
    """The desired binding of one scenario; the scenario-specific settings subclass it."""

    model_config = _STRICT
    erp: StrictStr | None = None
    appkey: StrictStr | None = None
    state: Literal["bound", "unbound"] = "bound"

    @model_validator(mode="after")
    def _one_source(self) -> ScenarioSpec:
        if self.erp is not None and self.appkey is not None:
            raise ValueError("give either erp or appkey, not both")
        if self.state == "unbound" and (self.erp is not None or self.appkey is not None):
            raise ValueError("state: unbound takes no erp or appkey")
        return self


class InterceptSpec(ScenarioSpec):
    pass


class ModifyAddressSpec(ScenarioSpec):
    buyer_self_service: StrictBool | None = None


class OrderStatusSpec(ScenarioSpec):
    erp_detail_button: StrictBool | None = None


class ScenariosSpec(BaseModel):
    """The managed scenarios of a shop. An omitted scenario is not managed."""

    model_config = _STRICT
    intercept_shipment: InterceptSpec | None = None
    modify_address: ModifyAddressSpec | None = None
    order_status: OrderStatusSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_means_bound(cls, data: Any) -> Any:
        # ``intercept_shipment:`` (null) means the same as ``intercept_shipment: {}``.
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data

    def declared(self) -> dict[Scenario, ScenarioSpec]:
        out: dict[Scenario, ScenarioSpec] = {}
        for s in SCENARIOS:
            spec = getattr(self, s.value)
            if spec is not None:
                out[s] = spec
        return out




def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    problems = [f"label key {excerpt(k)} must be letters, digits, '_', '.' or '-' (up to 63, starting with a letter or digit)"
                for k in labels if not LABEL_KEY_RE.fullmatch(k)]
    problems += [f"label {k}: the value must be one line of 1 to {LABEL_VALUE_MAX} printable characters, not {excerpt(v)}"
                 for k, v in labels.items() if not (0 < len(v) <= LABEL_VALUE_MAX and v.isprintable())]
    if problems:
        raise ValueError("; ".join(problems))
    return labels


class ShopSpec(BaseModel):
    """One shop of a ``shops/**/*.yaml`` file."""

    model_config = _STRICT
    id: ShopId
    name: StrictStr | None = None
    profile: StrictStr | None = None
    erp: StrictStr | None = None
    protect: StrictBool = False
    labels: dict[StrictStr, StrictStr] = {}
    scenarios: ScenariosSpec = ScenariosSpec.model_construct()  # no validator built at import

    _labels = field_validator("labels")(_check_labels)


class ShopsFile(BaseModel):
    model_config = _STRICT
    shops: list[ShopSpec]


class ProfileSpec(BaseModel):
    """A named bundle of what shops may say (``profiles.yaml``). A shop that names it with
    ``profile:`` takes it; the shop's own ``erp``, ``protect`` and each scenario it lists
    replace the profile's, and its labels are added to the profile's."""

    model_config = _STRICT
    erp: StrictStr | None = None
    protect: StrictBool = False
    labels: dict[StrictStr, StrictStr] = {}
    scenarios: ScenariosSpec = ScenariosSpec.model_construct()  # no validator built at import

    _labels = field_validator("labels")(_check_labels)


class ProfilesFile(BaseModel):
    model_config = _STRICT
    profiles: dict[StrictStr, ProfileSpec]


def _a_date(value: Any) -> Any:
    """``until``: a date (YAML reads 2027-01-31 as one) or the same quoted; not a time."""
    if isinstance(value, datetime):
        raise ValueError(f"must be a date like 2027-01-31, not a time ({value.isoformat()})")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{excerpt(value)} is not a date of the calendar") from None
    raise ValueError(f"must be a date like 2027-01-31, got {excerpt(str(value))}")


class WaiverSpec(BaseModel):
    """One acknowledged problem (``waivers.yaml``): which shop (and scenario), what kind of
    problem, until which day (inclusive, China time) and why. No waiver is permanent."""

    model_config = _STRICT
    shop: ShopId
    scenario: ScenarioKey | None = None
    kind: StrictStr
    until: Annotated[date, Strict(False), BeforeValidator(_a_date)]
    reason: StrictStr

    @field_validator("kind")
    @classmethod
    def _waivable(cls, kind: str) -> str:
        if kind not in WAIVABLE_KINDS:
            raise ValueError(f"{excerpt(kind)} cannot be waived; a waiver takes one of: {', '.join(WAIVABLE_KINDS)}")
        return kind

    @field_validator("reason")
    @classmethod
    def _said(cls, reason: str) -> str:
        if not reason.strip():
            raise ValueError("a waiver needs a reason: why the problem is acceptable until its date (who, which ticket)")
        return reason


class WaiversFile(BaseModel):
    model_config = _STRICT
    waivers: list[WaiverSpec]


# --------------------------------------------------------------------------- reconciler.yaml
# The spec of the settings, validated here; what the rest of the code takes is
# ``settings.from_spec`` of it (frozen dataclasses of the same names and fields).

class SandboxSettings(BaseModel):
    model_config = _STRICT
    kind: Literal["sandbox"] = "sandbox"
    path: StrictStr = ".reconciler/sandbox.db"
    world: StrictStr | None = None


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
