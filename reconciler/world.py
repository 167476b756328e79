"""The sandbox's world file: the platform's content as YAML (apps, shops with their bindings
and session tokens, injected faults), validated strictly like the configuration.

The models live here (the platform's fixed words in ``platformwords``, re-exported);
``platform.SandboxPlatform`` stores a world and enforces the rules on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr, field_validator, model_validator

from .platformwords import DEFAULT_REFRESH_TTL_S as DEFAULT_REFRESH_TTL_S  # the platform's fixed words, re-exported
from .platformwords import DEFAULT_TOKEN_TTL_S as DEFAULT_TOKEN_TTL_S
from .platformwords import IDENTITY_KEY as IDENTITY_KEY
from .platformwords import SUB_CODES as SUB_CODES
from .platformwords import TOKEN_CREATE as TOKEN_CREATE
from .platformwords import TOKEN_REFRESH as TOKEN_REFRESH
from .platformwords import Operation as Operation
from .platformwords import iso as iso
from .specs import ScenarioKey

# --------------------------------------------------------------------------- the world file

_W = ConfigDict(extra="forbid", strict=True, defer_build=True)


def _instant(value: Any) -> Any:
    """An ISO 8601 time (quoted, or a YAML timestamp) as an aware datetime; no zone is UTC
    (as YAML reads an unquoted timestamp without one)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError("must be an ISO 8601 time, like 2026-05-01T03:04:05+08:00") from None
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


Instant = Annotated[datetime, BeforeValidator(_instant)]


class WorldAgencyApp(BaseModel):
    model_config = _W
    app_key: StrictStr
    app_secret: StrictStr
    token_ttl_s: int = Field(default=DEFAULT_TOKEN_TTL_S, gt=0)      # how long a renewed (or new) token lives
    refresh_ttl_s: int = Field(default=DEFAULT_REFRESH_TTL_S, gt=0)  # how long a refresh token made from a code lives


class WorldSession(BaseModel):
    """A shop's authorization with an end: the access token and, for subscription apps, the
    refresh token that renews it; ``code``: an unused authorization code (``auth add``)."""

    model_config = _W
    token: StrictStr | None = None
    expires_at: Instant | None = None           # None: never
    refresh_token: StrictStr | None = None
    refresh_expires_at: Instant | None = None   # None: never
    code: StrictStr | None = None

    @model_validator(mode="after")
    def _something(self) -> WorldSession:
        if self.token is None and self.code is None:
            raise ValueError("a session mapping needs a token or a code")
        if self.token is None and (self.expires_at is not None or self.refresh_token is not None):
            raise ValueError("expires_at and refresh_token belong to a token: give the token too")
        if self.refresh_token is None and self.refresh_expires_at is not None:
            raise ValueError("refresh_expires_at without a refresh_token")
        return self

    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.refresh_token, self.code) if s is not None]


class WorldApp(BaseModel):
    model_config = _W
    name: StrictStr | None = None
    scenarios: list[ScenarioKey] = Field(default_factory=list)
    detail_whitelisted: StrictBool = False
    syncs_order_status: StrictBool = True


class WorldShop(BaseModel):
    model_config = _W
    name: StrictStr | None = None
    session: StrictStr | WorldSession | None = None
    bindings: dict[ScenarioKey, StrictStr] = Field(default_factory=dict)
    buyer_self_service: StrictBool = False
    cs_permission: StrictBool = True


class WorldFault(BaseModel):
    model_config = _W
    operation: Operation
    shop: StrictStr | None = None
    scenario: ScenarioKey | None = None
    error: StrictStr = "isp.unknown-error"
    times: int | None = Field(default=1, ge=1)
    ban_seconds: int | None = Field(default=None, ge=1)


class World(BaseModel):
    """The content of a sandbox (``sandbox load`` / ``sandbox dump``)."""

    model_config = _W
    app: WorldAgencyApp | None = None
    apps: dict[StrictStr, WorldApp] = Field(default_factory=dict)
    shops: dict[StrictStr, WorldShop] = Field(default_factory=dict)
    faults: list[WorldFault] = Field(default_factory=list)

    @field_validator("shops")
    @classmethod
    def _one_shop_per_session(cls, shops: dict[str, WorldShop]) -> dict[str, WorldShop]:
        owner: dict[str, tuple[str, str]] = {}
        for sid, shop in shops.items():
            session = shop.session
            values = ([("session key", session)] if isinstance(session, str) else
                      [(w, v) for w, v in (("session key", session.token), ("refresh token", session.refresh_token),
                                           ("code", session.code)) if v is not None] if session is not None else [])
            for what, value in values:
                if value in owner:  # the value itself is a secret: name the shops only
                    first, was = owner[value]
                    if first == sid:
                        raise ValueError(f"shop {sid} uses the same value as its {was} and its {what}")
                    same = f"the same {what}" if what == was else f"the same value as {was} and {what}"
                    raise ValueError(f"shops {first} and {sid} have {same}; a {what} authorizes exactly one shop")
                owner[value] = (sid, what)
        return shops
