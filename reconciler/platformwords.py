"""The platform's fixed words: operations, the token methods, TOP sub-codes, the sandbox's
identity key and how it writes a time. No pydantic: the world file's models are ``world``
(imported only to load one)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

IDENTITY_KEY = "sandbox_id"  # meta: the identity saved plans are bound to

Operation = Literal["get", "bind", "unbind", "selfservice", "check", "refresh", "create"]

# The two TOP methods of shop authorization (fixed by the platform, not renamable).
TOKEN_REFRESH = "taobao.top.auth.token.refresh"
TOKEN_CREATE = "taobao.top.auth.token.create"
DEFAULT_TOKEN_TTL_S = 30 * 86_400       # a token made by a renewal or a code: 30 days
DEFAULT_REFRESH_TTL_S = 365 * 86_400    # a refresh token made from a code: a year (a subscription's length)

# sub_code → TOP error code (as the real gateway answers them; the README lists them)
SUB_CODES: dict[str, int] = {
    "isv.appkey-not-found": 15,
    "isv.scenario-not-integrated": 15,
    "isv.invalid-appkey": 15,
    "isv.binding-conflict": 15,
    "isv.shop-not-found": 15,
    "isv.permission-denied": 12,
    "isv.missing-parameter": 40,
    "isv.invalid-parameter": 41,
    "isp.unknown-error": 15,
    "isp.remote-service-unavailable": 15,
    "isp.call-limited": 7,
    "isv.invalid-refresh-token": 15,
    "isv.invalid-code": 15,
}


def iso(t: datetime) -> str:
    """A time as the sandbox stores it: UTC ISO 8601 to the second (comparable as text)."""
    return t.astimezone(UTC).isoformat(timespec="seconds")
