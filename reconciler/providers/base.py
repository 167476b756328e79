"""The provider interface: how the core reads and writes a platform.

Template method (after octoDNS ``BaseProvider``): the public methods here guard, log and
retry; a provider implements only the ``_``-prefixed reads and writes.

The contract a provider implements:

* ``_read(shop_ids)`` returns, for every id asked, a ``ShopState`` or the ``ProviderError``
  that prevented reading that shop, in one attempt (a batch query, or one call per shop).
  One shop's failure never fails the others. ``read`` retries each shop whose error is
  retryable alone, through ``_read_one(shop_id)``, counting the batch as the first attempt.
* ``_list_shops()`` returns every shop id the provider can reach.
* ``_check_app(appkey, scenario)`` answers ``erp.app.check``.
* ``_bind``, ``_unbind``, ``_set_self_service`` are compare-and-set writes: they change
  nothing and raise ``ConflictError`` when the current value is not the expected one.
* Errors are ``ProviderError`` with ``retryable`` (and ``delay`` for rate-limit bans) set
  by the provider; the retry loop here honours them, bounded by ``RetryPolicy``. A ban
  longer than ``max_ban_s`` is not waited out: it stops the run (``FatalProviderError``).
* Whatever the platform answers, a provider raises ``ProviderError`` (or returns a value):
  a malformed answer is that shop's error, never another exception type (``wire``).
* No message, log line or exception may contain a secret.

``hurry()`` is for an interrupted run finishing the shops under way: from then on the
retry loop waits at most ``HURRY_WAIT_S`` between attempts and does not wait out longer
bans, so what is under way finishes, or fails and is put back, soon.

``_each(fn, items)`` is how a provider runs many calls: in order by default; one with a
connection pool (top) runs them at once. The retries of reads go through it too.
"""

from __future__ import annotations

import copy
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..errors import ConflictError, FatalProviderError, ProviderError
from ..model import AppCheck, Binding, Scenario, ShopState

if TYPE_CHECKING:
    import logging


def _log() -> logging.Logger:
    """The module's logger (written to on retries and writes: logging is imported then, not by every plan)."""
    import logging

    return logging.getLogger("reconciler.provider")


T = TypeVar("T")
A = TypeVar("A")
DEFAULT_MAX_BAN_S = 300.0
HURRY_WAIT_S = 2.0   # after hurry(): the longest wait between attempts, and the longest ban waited out


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, error: ProviderError) -> float:
        if error.delay is not None:
            return error.delay
        import random  # (only when a call is retried)

        base: float = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
        return base * (0.5 + random.random() / 2)  # "equal jitter"


# Request errors that concern the agency app, not one shop: stop instead of failing shop after shop.
FATAL_CODES = {
    25: "the signature was refused: check the app secret and provider.sign_method",
    29: "the platform does not know provider.app_key",
    31: "the timestamp was refused: this machine's clock is off by more than 10 minutes",
}


def platform_error(code: int | None, sub_code: str | None, msg: str, *, ban_seconds: float | None = None) -> ProviderError:
    """A platform refusal (TOP code/sub_code) as our error type: a conflict, a rate-limit ban (retryable
    after its seconds), a refusal of the app itself (fatal), else retryable for ``isp.*`` and
    service errors, not for the caller's own mistakes (``isv.*``)."""
    sub = sub_code or ""
    text = f"{sub or f'code {code}'}: {msg}"
    if sub == "isv.binding-conflict":
        return ConflictError(text, code=code, sub_code=sub)
    if code == 7:
        return ProviderError(text, code=code, sub_code=sub, retryable=True, delay=ban_seconds)
    if code in FATAL_CODES:
        return FatalProviderError(f"{text} — {FATAL_CODES[code]}", code=code, sub_code=sub)
    retryable = sub.startswith("isp.") or (code in (10, 15) and not sub.startswith("isv."))
    if sub in ADVICE or code in ADVICE:  # what a person does about it
        text = f"{text} — {ADVICE.get(sub) or ADVICE[code or 0]}"
    return ProviderError(text, code=code, sub_code=sub, retryable=retryable)


ADVICE: dict[str | int, str] = {
    "isv.permission-denied": "grant the sub-account the 客户服务平台 permission (the customer-service platform's, in the"
                             " main account's sub-account settings)",
    27: "the shop's authorization of the app expired or was revoked: the merchant must re-authorize the app"
        " (服务市场 → 我的服务 → 授权); reconciler auth status shows every shop's",
}


class Provider(ABC):
    """A platform the reconciler reads and writes. See the module doc for the contract."""

    name = "provider"

    def __init__(self, *, retry: RetryPolicy | None = None, sleep: Callable[[float], None] | None = None,
                 max_ban_s: float = DEFAULT_MAX_BAN_S) -> None:
        self.retry = retry or RetryPolicy()
        self.max_ban_s = max_ban_s
        self._hurry = threading.Event()
        self._sleep = sleep or self._pause
        self.warnings: list[str] = []  # for the user (stderr), set by who opens it: e.g. secrets git would commit

    def hurry(self) -> None:
        """Finish what is under way soon: short waits only from now on (see the module doc)."""
        self._hurry.set()

    @property
    def hurried(self) -> bool:
        return self._hurry.is_set()

    def _pause(self, seconds: float) -> None:
        """Sleep between attempts; hurry() cuts a long wait short (to ``HURRY_WAIT_S``)."""
        start = time.monotonic()
        if self._hurry.wait(seconds):
            left = min(seconds, HURRY_WAIT_S) - (time.monotonic() - start)
            if left > 0:
                time.sleep(left)

    def call(self, what: str, fn: Callable[[], T], *, failed: ProviderError | None = None) -> T:
        """Run one platform call, retrying what the error says may be retried.

        ``failed``: the first attempt was already made (in a batch) and failed so; the loop
        goes on from there — waiting first, and counting it among the attempts."""
        attempt = 0
        uncertain = False  # an attempt may have taken effect although its answer was lost
        while True:
            try:
                if failed is not None:
                    e0, failed = failed, None
                    raise e0
                return fn()
            except ProviderError as e:
                uncertain = uncertain or e.ambiguous
                final = self._final(what, e, attempt)
                if final is not None:
                    if uncertain and not final.ambiguous:  # the last attempt failed plainly, an earlier one may have landed
                        final = copy.copy(final)
                        final.ambiguous = True
                    if final is e:
                        raise
                    raise final from None
                wait = self.retry.delay(attempt, e)
                if self.hurried:
                    wait = min(wait, HURRY_WAIT_S)
                attempt += 1
                _log().info("%s: %s; retry %d/%d in %.1fs", what, e, attempt, self.retry.retries, wait)
                self._sleep(wait)

    def _final(self, what: str, e: ProviderError, attempt: int) -> ProviderError | None:
        """The error to raise for the failed attempt ``attempt`` (from 0), or None to retry it."""
        if e.unreachable and not isinstance(e, FatalProviderError) and attempt >= self.retry.retries:
            return FatalProviderError(f"{e} (after {attempt + 1} attempts)", code=e.code, sub_code=e.sub_code)
        if e.delay is not None and e.delay > self.max_ban_s:
            return FatalProviderError(f"{what}: the platform banned the app for {e.delay:g} s, longer than"
                                      f" provider.max_ban_s ({self.max_ban_s:g} s): the run stops; try again after"
                                      " the ban", code=e.code, sub_code=e.sub_code)
        if e.delay is not None and e.delay > HURRY_WAIT_S and self.hurried:
            return ProviderError(f"{e} (not waited out: the run is being interrupted)", code=e.code, sub_code=e.sub_code)
        if not e.retryable or attempt >= self.retry.retries:
            return e
        return None

    # ------------------------------------------------------------------ public, guarded

    def read(self, shop_ids: Sequence[str]) -> dict[str, ShopState | ProviderError]:
        """Every shop's state, or the error that prevented reading it; a fatal error stops the run."""
        ids = sorted(set(shop_ids))
        out = dict(self._read(ids))
        missing = [s for s in ids if s not in out]
        if missing:
            raise ProviderError(f"{self.name}: no answer for shops {', '.join(missing[:5])}")
        again = [(s, e) for s in ids if isinstance(e := out[s], ProviderError) and e.retryable]
        fatal: list[FatalProviderError] = []

        def retry(item: tuple[str, ProviderError]) -> tuple[str, ShopState | ProviderError]:
            shop, first = item
            if fatal:
                return shop, fatal[0]
            try:  # the batch was the first attempt: wait, then retry this shop alone
                return shop, self.call(f"read {shop}", lambda: self._read_one(shop), failed=first)
            except FatalProviderError as e:
                fatal.append(e)
                return shop, e
            except ProviderError as e:
                return shop, e

        out.update(self._each(retry, again))
        if fatal:
            raise fatal[0]  # one message for the run, instead of the same error for every shop
        return out

    def list_shops(self) -> list[str]:
        return sorted(self.call("list shops", self._list_shops))

    def check_apps(self, pairs: Iterable[tuple[str, Scenario]]) -> dict[tuple[str, Scenario], AppCheck | ProviderError]:
        """Each (appkey, scenario) asked once, at once where the provider has a pool (over a slow
        network, one after another they cost a round trip each); a fatal error stops the run."""
        keys = sorted(set(pairs))

        def one(key: tuple[str, Scenario]) -> AppCheck | ProviderError:
            appkey, scenario = key
            try:
                return self.call(f"check {appkey}/{scenario}", lambda: self._check_app(appkey, scenario))
            except ProviderError as e:
                return e

        results = self._each(one, keys)
        fatal = next((r for r in results if isinstance(r, FatalProviderError)), None)
        if fatal is not None:
            raise fatal
        return dict(zip(keys, results, strict=True))

    def bind(self, shop: str, scenario: Scenario, appkey: str, *, expected: str | None) -> Binding:
        _log().debug("bind %s/%s %s (expected %s)", shop, scenario, appkey, expected)
        return self.call(f"bind {shop}/{scenario}", lambda: self._bind(shop, scenario, appkey, expected))

    def unbind(self, shop: str, scenario: Scenario, *, expected: str) -> None:
        _log().debug("unbind %s/%s (expected %s)", shop, scenario, expected)
        self.call(f"unbind {shop}/{scenario}", lambda: self._unbind(shop, scenario, expected))

    def set_self_service(self, shop: str, enabled: bool, *, expected: bool) -> None:
        _log().debug("self-service %s -> %s", shop, enabled)
        self.call(f"self-service {shop}", lambda: self._set_self_service(shop, enabled, expected))

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections; the default holds none."""

    def _each(self, fn: Callable[[A], T], items: Sequence[A]) -> list[T]:
        """``fn`` over ``items``, results in order; a provider with a connection pool runs them at once."""
        return [fn(x) for x in items]

    # ------------------------------------------------------------------ what a provider writes

    @abstractmethod
    def _read(self, shop_ids: list[str]) -> dict[str, ShopState | ProviderError]: ...

    @abstractmethod
    def _read_one(self, shop_id: str) -> ShopState: ...

    @abstractmethod
    def _list_shops(self) -> list[str]: ...

    @abstractmethod
    def _check_app(self, appkey: str, scenario: Scenario) -> AppCheck: ...

    @abstractmethod
    def _bind(self, shop: str, scenario: Scenario, appkey: str, expected: str | None) -> Binding: ...

    @abstractmethod
    def _unbind(self, shop: str, scenario: Scenario, expected: str) -> None: ...

    @abstractmethod
    def _set_self_service(self, shop: str, enabled: bool, expected: bool) -> None: ...


def state_from_body(shop: str, body: dict[str, object]) -> ShopState:
    """A ``ShopState`` from an ``erp.binding.get`` response body about ``shop`` (both providers
    use this): checked strictly (``wire.shop_state``); a malformed body is a ``ProviderError``."""
    from . import wire  # (pydantic: the HTTP provider's answers)

    return wire.shop_state("erp.binding.get", shop, body)
