"""Shop authorization over TOP: the two token methods and their answer.

``taobao.top.auth.token.refresh`` (param ``refresh_token``) and ``taobao.top.auth.token.create``
(params ``code``, ``uuid``) answer ``{"top_auth_token_refresh_response": {"token_result":
"<JSON string>"}}``: the JSON inside holds ``access_token``, ``refresh_token``, ``expires_in``
and ``re_expires_in`` (seconds), ``taobao_user_id`` and more. ``parse_grant`` turns that into
a ``TokenGrant``; ``TokenClient`` makes the two calls through a top provider: signed, rate
limited and retried like every call of it (``Provider.call``). The refresh token or code
travels in the form body (never in the URL that HTTP logs show) and is masked out of every
refusal's text; an answer that is not a refusal is never quoted (it may hold new tokens).

Everything here carries secrets: a ``TokenGrant`` never shows its tokens (``repr`` included),
and no message quotes an answer or a parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError, mask

if TYPE_CHECKING:
    from .top import TopProvider

TOKEN_REFRESH = "taobao.top.auth.token.refresh"
TOKEN_CREATE = "taobao.top.auth.token.create"
# logical name → method, merged into the top provider's methods (not renamable: the platform's own)
TOKEN_METHODS = {"token_refresh": TOKEN_REFRESH, "token_create": TOKEN_CREATE}
REFRESH_REFUSED = "isv.invalid-refresh-token"   # the sandbox's sub_code: spent, expired or unknown
_MAX_SECONDS = 100 * 365 * 86_400


@dataclass(frozen=True)
class TokenGrant:
    """What the platform granted: a new access token (and refresh token), and how long each lives."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int | None         # seconds; None: the answer gives no end
    re_expires_in: int | None      # seconds; None: no refresh token, or no end given
    user_id: str | None            # taobao_user_id: whose authorization it is


def _seconds(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit() or len(str(value)) > 12:
        raise ProviderError(f"the token answer's {key} is not a number of seconds")
    n = int(value)
    return min(n, _MAX_SECONDS)


def parse_grant(method: str, body: dict[str, Any]) -> TokenGrant:
    """The ``token_result`` of a token method's answer (a JSON string, or an object from a
    gateway that sends one). Raises ``ProviderError`` naming what is wrong, never quoting it."""
    raw = body.get("token_result")
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ProviderError(f"{method}: token_result is not JSON (not shown: it may hold tokens)") from None
    else:
        data = raw
    if not isinstance(data, dict):
        raise ProviderError(f"{method}: the answer has no token_result")
    access = data.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise ProviderError(f"{method}: token_result has no access_token")
    refresh = data.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh.strip()):
        refresh = None
    user = data.get("taobao_user_id")
    return TokenGrant(access_token=access.strip(), refresh_token=refresh.strip() if refresh else None,
                      expires_in=_seconds(data, "expires_in"),
                      re_expires_in=_seconds(data, "re_expires_in") if refresh else None,
                      user_id=str(user) if isinstance(user, int | str) and str(user) else None)


class TokenClient:
    """The two token methods through a ``TopProvider`` (its signing, limiter, retry loop and masking).

    A retry after an answer that was lost is still made: if the first attempt did reach the
    platform, the refresh token is spent either way, and the retry's refusal says so."""

    def __init__(self, provider: TopProvider) -> None:
        self._provider = provider
        for op, method in TOKEN_METHODS.items():
            provider.methods.setdefault(op, method)

    def refresh(self, refresh_token: str) -> TokenGrant:
        """Spend ``refresh_token`` for a new pair. Raises ``ProviderError``; ``refused(e)``
        tells a refresh token the platform will never take again from a passing failure."""
        return self._call("token_refresh", {"refresh_token": refresh_token}, refresh_token)

    def create(self, code: str, uuid: str | None = None) -> TokenGrant:
        """An authorization code (from the shop's authorization page) for a new pair."""
        return self._call("token_create", {"code": code, **({"uuid": uuid} if uuid else {})}, code)

    def _call(self, op: str, params: dict[str, str], secret: str) -> TokenGrant:
        p = self._provider
        method = p.methods[op]

        def once() -> TokenGrant:
            try:
                body = p._request(op, None, params)
            except ProviderError as e:
                raise _without_answer(method, e, secret) from None
            return parse_grant(method, body)

        return p.call(method, once)


def _without_answer(method: str, e: ProviderError, secret: str) -> ProviderError:
    """``e`` (its text without ``secret``) when it is the platform's refusal or an unreachable
    gateway; otherwise its message may quote the gateway's answer, which can hold the new
    tokens: not shown."""
    if e.code is not None or e.sub_code is not None or e.unreachable:
        text = mask(str(e), [secret])
        if text == str(e):
            return e
        return type(e)(text, code=e.code, sub_code=e.sub_code, retryable=e.retryable, delay=e.delay,
                       unreachable=e.unreachable, ambiguous=e.ambiguous)
    return type(e)(f"{method}: the call failed and its answer is not shown (it may hold tokens)", retryable=e.retryable,
                   delay=e.delay, ambiguous=e.ambiguous)


def refused(error: ProviderError) -> bool:
    """Whether the platform refused the refresh token or code itself (spent, expired,
    unknown): trying again will not help; the shop must authorize the app again."""
    return not error.retryable and error.code not in (25, 29, 31) and (
        (error.sub_code or "").startswith("isv.") or error.code == 27 or error.sub_code == REFRESH_REFUSED)
