"""Shop authorizations: the token lifecycle — sealed in the state store, judged, renewed before it breaks.

Each shop authorizes the agency app; the app holds an **access token** (the ``session`` of
every call) that expires, and for subscription apps a **refresh token** that renews it once.
What happens to them between the platform and the store is split in three; callers take it
all from this module, which re-exports the public names of the other two:

- ``authkeys``: **sealing** under the key in ``RECONCILER_STATE_KEY`` (Fernet; during a
  rotation several keys: the first seals, any opens), and the errors.
- ``authtokens``: stored tokens as values at a given instant: **judging** (``valid``,
  ``expiring``, ``expired``, ``missing``), ``auth status``, storing, ``auth import``'s file.
- this module: what acts at the commands' clock (``clock``: tests replace it), renewing and
  authorizing a run.

**Renewing** (``Renewer``). A shop is renewed under its renewal claim (the shop's renewal
lock in the store): claim, re-read, and only if the token still needs it spend the refresh
token; the new pair replaces the old in one transaction, only if nobody wrote the row
meanwhile. A process that finds the claim held by a live process waits, then re-reads —
the other one has renewed it — so two processes (shards, a laptop) never spend one
refresh token twice. A crash at any point leaves the old token or the new one stored; the
one window no client can close — the platform renewed, the process died before storing —
leaves the old access token (it keeps working until its own end) and a spent refresh
token, which the next renewal reports as needing re-authorization.

**Authorizing a run** (``authorize``): the sessions of ``plan``/``drift``/``apply``, an
expired but refreshable token renewed once on the way, and the problems
(``auth-expired``: error, that shop withheld; ``auth-expiring``: warning) for the plan.

No token, refresh token, code or key is ever printed, logged or put in an error: messages
name shops, times and key ids only.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from .authkeys import ENV_KEY, AuthError, KeyProblem, Keyring, Secret, keygen
from .authtokens import (
    DEFAULT_WINDOW,
    REAUTHORIZE,
    AuthState,
    NewToken,
    ShopAuth,
    can_refresh,
    from_grant,
    judge,
    parse_import,
    parse_time,
    parse_window,
    sealed_columns,
    status,
    store_token,
    store_tokens,
)
from .errors import FatalProviderError, ProviderError
from .history import format_time
from .vocab import ProblemKind, Severity

if TYPE_CHECKING:
    from .providers.tokens import TokenClient
    from .state import Store
    from .state.tokens import Claim, Renewed, TokenRow

__all__ = [
    "DEFAULT_WINDOW", "ENV_KEY", "REAUTHORIZE", "AuthError", "AuthState", "Authorization", "Clock", "KeyProblem", "Keyring",
    "NewToken", "Outcome", "Renewal", "Renewer", "Secret", "ShopAuth", "authorize", "can_refresh", "clock", "from_grant",
    "judge", "keygen", "mark_dead", "now", "parse_import", "parse_window", "status", "store_token", "store_tokens", "utc_now",
]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# The clock commands judge and renew tokens by. Tests replace it (``reconciler.auth.clock``)
# instead of depending on the wall clock.
clock: Clock = utc_now


def now() -> datetime:
    t = clock()
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


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
        ends = parse_time(row.expires_at)
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
        cols = sealed_columns(token, self.keyring)
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
                     if row.expires_at and (parse_time(row.expires_at) or at) > at else "")
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
            left = parse_time(row.expires_at)
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
