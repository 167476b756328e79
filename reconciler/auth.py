"""Shop authorizations: the token lifecycle — sealed in the state store, judged, renewed before it breaks.

Each shop authorizes the agency app; the app holds an **access token** (the ``session`` of
every call) that expires, and for subscription apps a **refresh token** that renews it once.
This module owns what happens to them between the platform and the store:

- **Sealing.** Tokens are encrypted with Fernet (``cryptography``: AES-128-CBC plus
  HMAC-SHA256, authenticated) under the key in ``RECONCILER_STATE_KEY`` before they reach
  the store; the store keeps only the sealed blob, the times and a one-way key id. The blob
  names its shop, so a blob copied to another shop's row is refused. A wrong key is an error
  naming the variable, never garbage. Several keys, comma-separated, during a rotation: the
  first seals, any opens.
- **Judging.** ``valid``, ``expiring`` (ends within the window), ``expired``, ``missing``.
- **Renewing** (``Renewer``). A shop is renewed under its renewal claim (the shop's renewal
  lock in the store): claim, re-read, and only if the token still needs it spend the refresh
  token; the new pair replaces the old in one transaction, only if nobody wrote the row
  meanwhile. A process that finds the claim held by a live process waits, then re-reads —
  the other one has renewed it — so two processes (shards, a laptop) never spend one
  refresh token twice. A crash at any point leaves the old token or the new one stored; the
  one window no client can close — the platform renewed, the process died before storing —
  leaves the old access token (it keeps working until its own end) and a spent refresh
  token, which the next renewal reports as needing re-authorization.
- **Authorizing a run** (``authorize``): the sessions of ``plan``/``drift``/``apply``, an
  expired but refreshable token renewed once on the way, and the problems
  (``auth-expired``: error, that shop withheld; ``auth-expiring``: warning) for the plan.

No token, refresh token, code or key is ever printed, logged or put in an error: messages
name shops, times and key ids only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .errors import FatalProviderError, ProviderError, ReconcilerError
from .history import format_time
from .model import SHOP_ID_RE
from .vocab import ProblemKind, Severity

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

    from .providers.tokens import TokenClient, TokenGrant
    from .state import Store
    from .state.tokens import Claim, Renewed, TokenRow

ENV_KEY = "RECONCILER_STATE_KEY"
DEFAULT_WINDOW = timedelta(days=7)
REAUTHORIZE = "the merchant must re-authorize the app (服务市场 → 我的服务 → 授权)"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# The clock commands judge and renew tokens by. Tests replace it (``reconciler.auth.clock``)
# instead of depending on the wall clock.
clock: Clock = utc_now


def now() -> datetime:
    t = clock()
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class AuthError(ReconcilerError):
    """A shop authorization cannot be read, stored or renewed as asked (one line, no secret)."""


class KeyProblem(AuthError):
    """``RECONCILER_STATE_KEY`` is missing, malformed, or not the key the tokens were sealed with."""


class AuthState(StrEnum):
    valid = "valid"
    expiring = "expiring"
    expired = "expired"
    missing = "missing"

    def __str__(self) -> str:
        return self.value


# --------------------------------------------------------------------------- the key


def keygen() -> str:
    """A new key: 32 random bytes in URL-safe base64 (a Fernet key)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _key_id(raw: bytes) -> str:
    """A one-way fingerprint of a key, to say which key sealed a token (never the key)."""
    return "k" + hashlib.sha256(b"reconciler state key id\0" + raw).hexdigest()[:10]


@dataclass(frozen=True)
class Secret:
    """A shop's tokens in clear: only in memory, never shown (``repr`` included)."""

    shop: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)


class Keyring:
    """The key(s) of ``RECONCILER_STATE_KEY``: the first seals, any of them opens."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        self._fernet: MultiFernet = MultiFernet([Fernet(base64.urlsafe_b64encode(k)) for k in keys])
        self.ids = [_key_id(k) for k in keys]

    @property
    def key_id(self) -> str:
        return self.ids[0]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        env = os.environ if environ is None else environ
        value = env.get(ENV_KEY, "").strip()
        if not value:
            raise KeyProblem(f"{ENV_KEY} is not set: the shops' tokens in the state store are sealed with it."
                             f" Set it to the agency's key (a CI secret), or make a new one with: reconciler auth keygen")
        keys: list[bytes] = []
        for n, part in enumerate(value.split(","), start=1):
            part = part.strip()
            try:
                raw = base64.urlsafe_b64decode(part.encode("ascii")) if part else b""
            except (ValueError, UnicodeEncodeError):
                raw = b""
            if len(raw) != 32 or not re.fullmatch(r"[A-Za-z0-9_-]{43}=", part):
                which = f"key {n} of {ENV_KEY}" if "," in value else ENV_KEY
                raise KeyProblem(f"{which} is not a key: expected 32 random bytes in URL-safe base64 (44 characters"
                                 f" ending in '='), as reconciler auth keygen prints one")
            keys.append(raw)
        return cls(keys)

    def seal(self, secret: Secret) -> str:
        payload = json.dumps({"shop": secret.shop, "access_token": secret.access_token,
                              "refresh_token": secret.refresh_token}, separators=(",", ":")).encode()
        return self._fernet.encrypt(payload).decode("ascii")

    def open(self, row: TokenRow) -> Secret:
        from cryptography.fernet import InvalidToken

        try:
            data = json.loads(self._fernet.decrypt(row.sealed.encode("ascii")))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            if row.key_id not in self.ids:
                raise KeyProblem(f"the token of shop {row.shop} was sealed with another key (key id {row.key_id});"
                                 f" {ENV_KEY} holds {', '.join(self.ids)}: set the key it was stored with (during a"
                                 f" rotation: the new key, a comma, the old one)") from None
            raise KeyProblem(f"the token of shop {row.shop} cannot be opened with {ENV_KEY} (key id {row.key_id}):"
                             " the stored value is damaged; import or add the shop's token again") from None
        if not isinstance(data, dict) or data.get("shop") != row.shop or not isinstance(data.get("access_token"), str):
            raise KeyProblem(f"the sealed token stored for shop {row.shop} belongs to another shop or is damaged;"
                             " import or add the shop's token again")
        refresh = data.get("refresh_token")
        return Secret(shop=row.shop, access_token=data["access_token"], refresh_token=refresh if isinstance(refresh, str) else None)


# --------------------------------------------------------------------------- judging


def _at(stored: str | None) -> datetime | None:
    return datetime.fromisoformat(stored) if stored else None


def can_refresh(row: TokenRow, at: datetime) -> bool:
    """A refresh token is stored and has not ended at ``at``."""
    ends = _at(row.refresh_expires_at)
    return row.refreshable and (ends is None or ends > at)


def judge(row: TokenRow | None, at: datetime, within: timedelta) -> AuthState:
    if row is None:
        return AuthState.missing
    ends = _at(row.expires_at)
    if ends is None:
        return AuthState.valid
    if ends <= at:
        return AuthState.expired
    return AuthState.expiring if ends <= at + within else AuthState.valid


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


def _columns(token: NewToken, keyring: Keyring) -> dict[str, Any]:
    return {"sealed": keyring.seal(token.secret), "key_id": keyring.key_id,
            "expires_at": format_time(token.expires_at) if token.expires_at else None,
            "refresh_expires_at": format_time(token.refresh_expires_at) if token.refresh_expires_at else None,
            "refreshable": token.secret.refresh_token is not None}


def store_token(store: Store, keyring: Keyring, token: NewToken, *, source: str) -> None:
    store.put_token(token.secret.shop, source=source, **_columns(token, keyring))


def store_tokens(store: Store, keyring: Keyring, tokens: Sequence[NewToken], *, source: str) -> None:
    """All of them in one transaction (``auth import``)."""
    store.put_tokens([{"shop": t.secret.shop, **_columns(t, keyring)} for t in tokens], source=source)


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


# --------------------------------------------------------------------------- renewing


class Outcome(StrEnum):
    renewed = "renewed"
    elsewhere = "renewed-elsewhere"   # another process renewed it while this one waited
    not_needed = "not-needed"
    failed = "failed"                 # for now: try again later
    dead = "dead"                     # cannot be renewed: re-authorize
    missing = "missing"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Renewal:
    shop: str
    outcome: Outcome
    message: str = ""
    expires_at: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.renewed, Outcome.elsewhere, Outcome.not_needed)


class Renewer:
    """Renews shops' tokens with a ``TokenClient``, each under the shop's renewal claim.

    ``lease_s``: how long a claim holds without its holder (a crashed process on another
    host frees it after this; on this host at once). ``wait_s``: how long to wait for a claim
    another live process holds before giving up on that shop for this run."""

    def __init__(self, store: Store, keyring: Keyring, client: TokenClient, *, lease_s: float = 60.0, wait_s: float = 120.0,
                 parallelism: int = 8, clock: Clock | None = None, pid: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.keyring = keyring
        self.client = client
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.parallelism = max(1, parallelism)
        self._clock = clock or now
        self.pid = os.getpid() if pid is None else pid
        self._sleep = sleep
        self._host = socket.gethostname()
        self._fatal: list[FatalProviderError] = []
        self._lock = threading.Lock()
        self.holder = f"{self._host}:{self.pid}:{uuid.uuid4().hex[:12]}"   # this run's claims
        self._commit = _GroupCommit(store)

    def renew(self, shops: Sequence[str], *, within: timedelta, progress: Callable[[int, int, str], None] | None = None
              ) -> list[Renewal]:
        """Renew every shop of ``shops`` whose token ends within ``within`` (0: only expired
        ones). A fatal gateway error (signature, app key, clock) stops the run: raised."""
        todo = sorted(set(shops))
        done = [0]
        ahead = _ClaimAhead(self, todo, batch=max(1, self.parallelism))

        def one(shop: str) -> Renewal:
            if self._fatal:
                ahead.drop(shop)
                return Renewal(shop, Outcome.failed, "not tried: the run stopped")
            try:
                r = self.renew_one(shop, within=within, claimed=ahead.take(shop))
            except FatalProviderError as e:
                with self._lock:
                    self._fatal.append(e)
                r = Renewal(shop, Outcome.failed, str(e))
            if progress is not None:
                with self._lock:
                    done[0] += 1
                    progress(done[0], len(todo), shop)
            return r

        if self.parallelism <= 1 or len(todo) <= 1:
            out = [one(s) for s in todo]
        else:
            with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="auth-refresh") as pool:
                out = list(pool.map(one, todo))
        if self._fatal:
            raise self._fatal[0]
        return out

    def _needs(self, row: TokenRow, within: timedelta) -> bool:
        ends = _at(row.expires_at)
        return ends is not None and ends <= self._clock() + within

    def renew_one(self, shop: str, *, within: timedelta, claimed: Claim | None = None) -> Renewal:
        """Renew one shop if it is due; ``claimed``: its claim already taken (by ``self.holder``)."""
        holder = self.holder
        deadline = time.monotonic() + self.wait_s
        pause, waited = 0.02, False
        while True:
            claim = claimed or self.store.claim_renewal(shop, holder, pid=self.pid, lease_s=self.lease_s)
            claimed = None
            row = claim.row
            if row is None:
                return Renewal(shop, Outcome.missing, "no token stored: the merchant must authorize the app"
                               f" (服务市场 → 我的服务 → 授权), then: reconciler auth add --shop {shop} --code CODE")
            if not self._needs(row, within):
                if claim.held:
                    self.store.release_renewal(shop, holder, keep_note=True)
                return Renewal(shop, Outcome.elsewhere if waited else Outcome.not_needed,
                               "renewed by another run meanwhile" if waited else "", expires_at=row.expires_at)
            if claim.held:
                break
            if time.monotonic() >= deadline:
                return Renewal(shop, Outcome.failed, f"another process ({claim.holder_host}, pid {claim.holder_pid}) has been"
                               f" renewing this shop's token for over {self.wait_s:g} s; try again later")
            waited = True
            self._sleep(pause)
            pause = min(pause * 2, 0.5)
        try:
            return self._renew_claimed(shop, holder, row, took_over=claim.took_over)
        except BaseException:
            self.store.release_renewal(shop, holder, keep_note=True)
            raise

    def _renew_claimed(self, shop: str, holder: str, row: TokenRow, *, took_over: bool) -> Renewal:
        at = self._clock()
        if not can_refresh(row, at):
            why = ("no refresh token is stored" if not row.refreshable
                   else f"its refresh token ended at {row.refresh_expires_at}")
            self.store.release_renewal(shop, holder, keep_note=True)
            ends = f"ended at {row.expires_at}" if judge(row, at, timedelta(0)) is AuthState.expired \
                else f"ends at {row.expires_at}"
            return Renewal(shop, Outcome.dead, f"the token {ends} and cannot be renewed ({why}): {REAUTHORIZE}",
                           expires_at=row.expires_at)
        secret = self.keyring.open(row)
        assert secret.refresh_token is not None
        try:
            grant = self.client.refresh(secret.refresh_token)
        except ProviderError as e:
            return self._failed(shop, holder, row, e, took_over=took_over, at=at)
        from .state.tokens import Renewed

        token = from_grant(shop, grant, at)
        cols = _columns(token, self.keyring)
        written = self._commit.put(Renewed(shop=shop, sealed=cols["sealed"], key_id=cols["key_id"],
                                           expires_at=cols["expires_at"], refresh_expires_at=cols["refresh_expires_at"],
                                           refreshable=cols["refreshable"], expect_generation=row.generation))
        if not written:  # someone stored a newer token meanwhile (auth add, import): theirs stands
            self.store.release_renewal(shop, holder, keep_note=True)
            return Renewal(shop, Outcome.elsewhere, "a newer token was stored meanwhile; kept it")
        return Renewal(shop, Outcome.renewed, expires_at=format_time(token.expires_at) if token.expires_at else None)

    def _failed(self, shop: str, holder: str, row: TokenRow, e: ProviderError, *, took_over: bool, at: datetime) -> Renewal:
        from .providers.tokens import refused

        if isinstance(e, FatalProviderError):
            self.store.release_renewal(shop, holder, keep_note=True)
            raise e
        again = self.store.token_row(shop)
        if again is not None and again.generation != row.generation and not self._needs(again, timedelta(0)):
            self.store.release_renewal(shop, holder, keep_note=True)
            return Renewal(shop, Outcome.elsewhere, "renewed by another run meanwhile", expires_at=again.expires_at)
        if refused(e):
            cause = (" (a renewal interrupted earlier may have spent it)" if took_over else
                     " (an earlier attempt whose answer was lost may have spent it)" if e.ambiguous else "")
            note = f"the platform refused the refresh token at {format_time(at)}{cause}"
            self.store.release_renewal(shop, holder, note=note, spent=True)
            still = (f"; the current token works until {row.expires_at}"
                     if row.expires_at and (_at(row.expires_at) or at) > at else "")
            return Renewal(shop, Outcome.dead, f"{note}: {e}{still}; {REAUTHORIZE}", expires_at=row.expires_at)
        note = f"renewal failed at {format_time(at)}: {e}"
        self.store.release_renewal(shop, holder, note=note[:500])
        return Renewal(shop, Outcome.failed, f"renewal failed: {e}", expires_at=row.expires_at)


class _ClaimAhead:
    """Claims the shops of a run a batch at a time (one transaction per batch instead of per
    shop), in the order the workers take them; a shop whose claim another live process holds
    is left to ``renew_one``'s wait. Claims a stopped run never used are released."""

    def __init__(self, renewer: Renewer, todo: Sequence[str], *, batch: int) -> None:
        self._r = renewer
        self._todo = list(todo)
        self._next = 0
        self._batch = batch
        self._got: dict[str, Claim] = {}
        self._lock = threading.Lock()

    def take(self, shop: str) -> Claim | None:
        with self._lock:
            if shop not in self._got and self._next < len(self._todo) and self._todo[self._next] <= shop:
                while self._next < len(self._todo) and self._todo[self._next] < shop:
                    self._next += 1
                chunk = self._todo[self._next:self._next + self._batch]
                self._next += len(chunk)
                r = self._r
                self._got.update(r.store.claim_renewals(chunk, r.holder, pid=r.pid, lease_s=r.lease_s))
            return self._got.pop(shop, None)

    def drop(self, shop: str) -> None:
        claim = self.take(shop)
        if claim is not None and claim.held:
            self._r.store.release_renewal(shop, self._r.holder, keep_note=True)


class _GroupCommit:
    """Stores renewed tokens with as few commits as the store's speed asks: a thread that
    finds no write under way writes everything waiting, in one transaction, for everyone
    (no added delay: a renewal waits at most for the commit before its own)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cond = threading.Condition()
        self._pending: list[Renewed] = []
        self._results: dict[int, bool | BaseException] = {}
        self._busy = False

    def put(self, item: Renewed) -> bool:
        with self._cond:
            self._pending.append(item)
            while id(item) not in self._results and self._busy:
                self._cond.wait()
            if id(item) not in self._results:
                batch, self._pending, self._busy = self._pending, [], True
            else:
                batch = []
        if batch:
            try:
                written: dict[str, bool] | BaseException = self._store.put_renewed(batch)
            except BaseException as e:  # every waiter of the batch learns it
                written = e
            with self._cond:
                for it in batch:
                    self._results[id(it)] = written if isinstance(written, BaseException) else written[it.shop]
                self._busy = False
                self._cond.notify_all()
        with self._cond:
            while id(item) not in self._results:
                self._cond.wait()
            result = self._results.pop(id(item))
        if isinstance(result, BaseException):
            raise result
        return result


def mark_dead(store: Store, shop: str, note: str) -> None:
    """Record why a shop's token cannot be renewed (a renewal refused outside ``Renewer``)."""
    holder = f"note:{uuid.uuid4().hex}"
    claim = store.claim_renewal(shop, holder, pid=os.getpid(), lease_s=1)
    if claim.held:
        store.release_renewal(shop, holder, note=note)


# --------------------------------------------------------------------------- a run's sessions


@dataclass(frozen=True)
class Authorization:
    """What a run (plan, drift, apply, import) gets from the store: the sessions of the shops
    whose token works, and the problems of the others (shop → kind, severity, message)."""

    sessions: dict[str, str] = field(repr=False)
    problems: dict[str, tuple[ProblemKind, Severity, str]]
    renewed: tuple[str, ...] = ()

    def errors(self) -> dict[str, str]:
        return {s: m for s, (_, sev, m) in self.problems.items() if sev == Severity.error}

    def warnings(self) -> dict[str, str]:
        return {s: m for s, (_, sev, m) in self.problems.items() if sev == Severity.warning}


def authorize(store: Store, keyring: Keyring, shops: Sequence[str] | None, *, client: Callable[[], TokenClient] | None,
              within: timedelta = DEFAULT_WINDOW, lease_s: float = 60.0, parallelism: int = 8,
              at: Clock | None = None, also_stored: bool = False) -> Authorization:
    """The sessions for ``shops`` (None: every stored shop), renewing each expired but
    refreshable token once (``client`` makes the calls; None: no renewal). ``also_stored``:
    the sessions of the other stored shops whose token works too (drift lists the platform's
    shops by them), with no renewal and no problem for them."""
    clk = at or now
    every = store.token_rows(None) if also_stored or shops is None else None
    rows = every if every is not None and shops is None else store.token_rows(shops)
    t = clk()
    wanted = sorted(set(shops) if shops is not None else set(rows))
    expired = [s for s in wanted if s in rows and judge(rows[s], t, timedelta(0)) is AuthState.expired
               and can_refresh(rows[s], t)]
    renewals: dict[str, Renewal] = {}
    if expired and client is not None:
        renewer = Renewer(store, keyring, client(), lease_s=lease_s, parallelism=parallelism, clock=clk)
        renewals = {r.shop: r for r in renewer.renew(expired, within=timedelta(0))}
        rows.update(store.token_rows(expired))
        t = clk()
    sessions: dict[str, str] = {}
    problems: dict[str, tuple[ProblemKind, Severity, str]] = {}
    for shop in wanted:
        row = rows.get(shop)
        state = judge(row, t, within)
        if row is None:
            problems[shop] = (ProblemKind.auth_expired, Severity.error,
                              "no authorization of this shop in the state store: the merchant must authorize the app"
                              f" (服务市场 → 我的服务 → 授权), then: reconciler auth add --shop {shop} --code CODE")
            continue
        if state is AuthState.expired:
            r = renewals.get(shop)
            if r is not None and not r.ok:
                why = r.message
            elif can_refresh(row, t):
                why = f"renewing it did not happen; run: reconciler auth refresh --shop {shop}"
            else:
                cause = row.note or ("no refresh token is stored" if not row.refreshable
                                     else f"its refresh token ended at {row.refresh_expires_at}")
                why = f"it cannot be renewed ({cause}): {REAUTHORIZE}"
            problems[shop] = (ProblemKind.auth_expired, Severity.error,
                              f"the shop's authorization expired at {row.expires_at}; {why}; the shop is withheld")
            continue
        sessions[shop] = keyring.open(row).access_token
        if state is AuthState.expiring:
            left = _at(row.expires_at)
            days = f" (in {max(0, (left - t).days)} day(s))" if left else ""
            fix = ("it will be renewed by reconciler auth refresh" if can_refresh(row, t)
                   else f"it cannot be renewed: {REAUTHORIZE} before then")
            problems[shop] = (ProblemKind.auth_expiring, Severity.warning,
                              f"the shop's authorization expires at {row.expires_at}{days}; {fix}")
    for shop, row in (every or {}).items():
        if shop not in rows and judge(row, t, timedelta(0)) is not AuthState.expired:
            sessions[shop] = keyring.open(row).access_token
    return Authorization(sessions=sessions, problems=problems,
                         renewed=tuple(s for s, r in sorted(renewals.items()) if r.outcome is Outcome.renewed))


def parse_window(text: str) -> timedelta:
    """``7d``, ``36h``, ``90m``, ``30s``, ``2w`` or ``0``: a window of time."""
    m = re.fullmatch(r"\s*([0-9]{1,6})\s*([smhdw]?)\s*", text)
    if not m or (not m.group(2) and m.group(1) != "0"):
        raise ValueError(f"expected a length of time such as 7d, 36h or 0, got {text[:20]!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "seconds"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})
