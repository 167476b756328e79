"""Stored tokens as values: judged, shown by ``auth status``, sealed into rows, read from ``auth import``.

- **Judging.** ``valid``, ``expiring`` (ends within the window, ``DEFAULT_WINDOW`` unless
  ``--within``: ``parse_window``), ``expired``, ``missing``; ``can_refresh``: a refresh
  token is stored and has not ended.
- **Status.** Every shop's ``ShopAuth``: its state, its ends, and what a person does about it.
- **Storing.** A ``NewToken`` (a platform grant, or an entry of ``auth import``'s file)
  sealed with the ``Keyring`` into the store's columns, one shop or many in one transaction.

Nothing here reads a clock: every function is given its instant (``reconciler.auth.now``,
which tests fix, is the commands' one clock). Renewing and a run's sessions are
``reconciler.auth``'s, which re-exports every public name of this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .authkeys import AuthError, Keyring, Secret
from .history import format_time
from .model import SHOP_ID_RE

if TYPE_CHECKING:
    from .providers.tokens import TokenGrant
    from .state import Store
    from .state.tokens import TokenRow

DEFAULT_WINDOW = timedelta(days=7)
REAUTHORIZE = "the merchant must re-authorize the app (服务市场 → 我的服务 → 授权)"


# --------------------------------------------------------------------------- judging


class AuthState(StrEnum):
    valid = "valid"
    expiring = "expiring"
    expired = "expired"
    missing = "missing"

    def __str__(self) -> str:
        return self.value


def parse_time(stored: str | None) -> datetime | None:
    """A time as the store keeps it (ISO 8601), or None (never)."""
    return datetime.fromisoformat(stored) if stored else None


def can_refresh(row: TokenRow, at: datetime) -> bool:
    """A refresh token is stored and has not ended at ``at``."""
    ends = parse_time(row.refresh_expires_at)
    return row.refreshable and (ends is None or ends > at)


def judge(row: TokenRow | None, at: datetime, within: timedelta) -> AuthState:
    if row is None:
        return AuthState.missing
    ends = parse_time(row.expires_at)
    if ends is None:
        return AuthState.valid
    if ends <= at:
        return AuthState.expired
    return AuthState.expiring if ends <= at + within else AuthState.valid


def parse_window(text: str) -> timedelta:
    """``7d``, ``36h``, ``90m``, ``30s``, ``2w`` or ``0``: a window of time."""
    m = re.fullmatch(r"\s*([0-9]{1,6})\s*([smhdw]?)\s*", text)
    if not m or (not m.group(2) and m.group(1) != "0"):
        raise ValueError(f"expected a length of time such as 7d, 36h or 0, got {text[:20]!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "seconds"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


@dataclass(frozen=True)
class ShopAuth:
    """One shop's authorization as ``auth status`` shows it (no secret)."""

    shop: str
    state: AuthState
    expires_at: str | None
    refresh_expires_at: str | None
    refreshable: bool
    note: str | None = None

    def to_data(self) -> dict[str, Any]:
        """The contract's entry: ``{"shop", "state", "expires_at", "refresh_expires_at", "refreshable"}`` (+ ``note``)."""
        return {"shop": self.shop, "state": self.state.value, "expires_at": self.expires_at,
                "refresh_expires_at": self.refresh_expires_at, "refreshable": self.refreshable, "note": self.note}

    def advice(self) -> str:
        """What a person does about it ("" when nothing)."""
        if self.state is AuthState.missing:
            return (f"no token stored: the merchant must authorize the app (服务市场 → 我的服务 → 授权), then:"
                    f" reconciler auth add --shop {self.shop} --code CODE (or auth import)")
        if self.state is AuthState.valid:
            return ""
        if self.refreshable:
            return f"renew it: reconciler auth refresh --shop {self.shop}"
        why = f" ({self.note})" if self.note else ""
        return f"it cannot be renewed{why}: {REAUTHORIZE}, then: reconciler auth add --shop {self.shop} --code CODE"


def status(store: Store, shops: Sequence[str], *, at: datetime, within: timedelta,
           keyring: Keyring | None = None) -> list[ShopAuth]:
    """Every shop of ``shops`` (and every other stored one), sorted. With ``keyring``, each
    stored token is also opened: a token the key cannot open is an error (``KeyProblem``)."""
    rows = store.token_rows(None)
    if keyring is not None:
        for stored in rows.values():
            keyring.open(stored)
    out = []
    for shop in sorted(set(shops) | set(rows)):
        row = rows.get(shop)
        out.append(ShopAuth(shop=shop, state=judge(row, at, within), expires_at=row.expires_at if row else None,
                            refresh_expires_at=row.refresh_expires_at if row else None,
                            refreshable=bool(row and can_refresh(row, at)), note=row.note if row else None))
    return out


# --------------------------------------------------------------------------- storing


@dataclass(frozen=True)
class NewToken:
    """A token to store: the secret and its ends (None: never)."""

    secret: Secret
    expires_at: datetime | None
    refresh_expires_at: datetime | None


def from_grant(shop: str, grant: TokenGrant, at: datetime) -> NewToken:
    """A platform grant as a token to store; its ends counted from ``at`` (when it was asked for)."""
    return NewToken(secret=Secret(shop=shop, access_token=grant.access_token, refresh_token=grant.refresh_token),
                    expires_at=at + timedelta(seconds=grant.expires_in) if grant.expires_in is not None else None,
                    refresh_expires_at=(at + timedelta(seconds=grant.re_expires_in)
                                        if grant.refresh_token and grant.re_expires_in is not None else None))


def sealed_columns(token: NewToken, keyring: Keyring) -> dict[str, Any]:
    """The store's columns of a token: sealed with ``keyring``'s first key, its ends, refreshable."""
    return {"sealed": keyring.seal(token.secret), "key_id": keyring.key_id,
            "expires_at": format_time(token.expires_at) if token.expires_at else None,
            "refresh_expires_at": format_time(token.refresh_expires_at) if token.refresh_expires_at else None,
            "refreshable": token.secret.refresh_token is not None}


def store_token(store: Store, keyring: Keyring, token: NewToken, *, source: str) -> None:
    store.put_token(token.secret.shop, source=source, **sealed_columns(token, keyring))


def store_tokens(store: Store, keyring: Keyring, tokens: Sequence[NewToken], *, source: str) -> None:
    """All of them in one transaction (``auth import``)."""
    store.put_tokens([{"shop": t.secret.shop, **sealed_columns(t, keyring)} for t in tokens], source=source)


# --------------------------------------------------------------------------- auth import's file


_IMPORT_KEYS = {"access_token", "refresh_token", "expires_at", "expires_in", "refresh_expires_at", "re_expires_in"}


def _when(value: Any, at: datetime, *, seconds: bool) -> datetime | None:
    if value is None:
        return None
    if seconds:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("must be a whole number of seconds")
        return at + timedelta(seconds=value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be an ISO 8601 time, like 2026-05-01T03:04:05+08:00") from None
    if not isinstance(value, datetime):
        raise ValueError("must be an ISO 8601 time, like 2026-05-01T03:04:05+08:00")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def parse_import(data: object, *, at: datetime, where: str, typed_keys: set[str] | None = None) -> list[NewToken]:
    """``auth import``'s file: shop id → a token string (never expires), or a mapping with
    ``access_token`` and optionally ``refresh_token``, ``expires_at``/``expires_in``,
    ``refresh_expires_at``/``re_expires_in`` (``*_in``: seconds from now). Every problem in
    one error; no key or value is ever quoted (a file written the wrong way round holds tokens
    where shop ids belong)."""
    if not isinstance(data, dict):
        raise AuthError(f"{where}: expected a mapping of shop id to token (a string, or a mapping with access_token)")
    problems: list[str] = []
    out: list[NewToken] = []
    for n, (shop, value) in enumerate(data.items(), start=1):
        if not isinstance(shop, str) or shop in (typed_keys or set()) or not SHOP_ID_RE.fullmatch(shop):
            problems.append(f"entry {n}: the key is not a shop id (a quoted string of digits; the file maps shop id → token)")
            continue
        if isinstance(value, str):
            if not value.strip():
                problems.append(f"shop {shop}: the token is empty")
                continue
            out.append(NewToken(Secret(shop, value.strip(), None), None, None))
            continue
        if not isinstance(value, dict):
            problems.append(f"shop {shop}: expected a token string or a mapping with access_token")
            continue
        unknown = sorted(str(k) for k in value if k not in _IMPORT_KEYS)
        if unknown:
            problems.append(f"shop {shop}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(_IMPORT_KEYS))}")
            continue
        access, refresh = value.get("access_token"), value.get("refresh_token")
        if not isinstance(access, str) or not access.strip():
            problems.append(f"shop {shop}: access_token must be a non-empty string")
            continue
        if refresh is not None and (not isinstance(refresh, str) or not refresh.strip()):
            problems.append(f"shop {shop}: refresh_token must be a non-empty string")
            continue
        ends: dict[str, datetime | None] = {}
        bad = False
        for name, (absolute, relative) in {"expires": ("expires_at", "expires_in"),
                                           "refresh": ("refresh_expires_at", "re_expires_in")}.items():
            if value.get(absolute) is not None and value.get(relative) is not None:
                problems.append(f"shop {shop}: give {absolute} or {relative}, not both")
                bad = True
                continue
            try:
                ends[name] = (_when(value.get(absolute), at, seconds=False) if value.get(absolute) is not None
                              else _when(value.get(relative), at, seconds=True))
            except ValueError as e:
                problems.append(f"shop {shop}: {absolute if value.get(absolute) is not None else relative} {e}")
                bad = True
        if bad:
            continue
        if refresh is None and ends["refresh"] is not None:
            problems.append(f"shop {shop}: a refresh token's end without a refresh_token")
            continue
        out.append(NewToken(Secret(shop, access.strip(), refresh.strip() if refresh else None), ends["expires"],
                            ends["refresh"]))
    if problems:
        raise AuthError(f"{where}: " + "; ".join(problems))
    return out
