"""The real platform over HTTP: a TOP-protocol client for the binding methods (the README lists them).

Every call is signed (``signing``) with the agency app's secret and carries the shop's
session key; system parameters go in the query, business parameters in a form body.
Replies become ``ShopState``/``Binding`` values, refusals become our error types through
``platform_error`` (retryable or not, with the ban's seconds for rate limits), and the base
class does the retrying. A shared ``ClientLimiter`` keeps the client under its QPS and
reacts to bans; reads (and their retries) run on a thread pool of ``parallelism``.

Nothing the gateway says is believed unchecked, and nothing it does can hold the client:

* every request ends by ``deadline_s`` from its start (``transport``), however slowly the
  gateway trickles; an answer over 2 MiB, compressed or not, is refused unread, and its
  JSON and shape are checked strictly (``wire``); a write's answer must confirm the value
  asked for, else the write failed — and, its outcome unknown, is put back by ``apply``;
* a ban longer than ``max_ban_s`` stops the run instead of being waited out;
* after ``max_failures`` consecutive transport failures (no answer at all: refused or
  dropped connections, timeouts, HTTP 5xx) the circuit breaker opens: the run stops with
  one message, and nothing more is sent.

Writes over a network are ambiguous: when the connection dies (or the call times out)
after the request left, the write may or may not have happened. The compare-and-set makes
a blind retry safe but not conclusive: if the first attempt did land, the retry fails with
``isv.binding-conflict`` although the binding is exactly what we wanted, and ``apply``
would then roll the shop's other scenarios back around a rotated one — a shop split
between two ERPs. So after an ambiguous failure this provider reads the shop: if the write
took effect it is a success; otherwise the failure stays retryable, and a conflict on a
later attempt of the same write is checked the same way before it is reported.

Secrets never leave this module in clear: every message is masked (``errors.mask``) with
the app secret and every session key, exceptions from the HTTP library are not chained
(their text can hold the request URL), and httpx's own request log lines are masked too,
by one filter that holds the secrets of every open provider.

The provider is built from values; ``reconciler.connect`` reads the settings, the secret and
the session keys for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from .. import signing
from ..errors import ConflictError, FatalProviderError, ProviderError, mask
from ..model import AppCheck, Binding, Scenario, ShopState
from ..ratelimit import Banned, CircuitBreaker, ClientLimiter
from ..settings import DEFAULT_METHODS
from . import wire
from .base import DEFAULT_MAX_BAN_S, HURRY_WAIT_S, Provider, RetryPolicy, platform_error
from .transport import DeadlineTransport, deadline

log = logging.getLogger("reconciler.provider.top")

# A logger's filters do not apply to its children's records: name every logger that logs.
_HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy",
                 "httpcore.socks")
_WRITES = frozenset({"bind", "unbind", "selfservice"})
_UNCONFIRMED = "; the write counts as failed, whether it took effect is unknown"
A = TypeVar("A")
R = TypeVar("R")
W = TypeVar("W")


class _Ambiguous(ProviderError):
    """The request may have reached the platform, but no answer came back."""


class _MaskLog(logging.Filter):
    """Masks secrets in the records of the HTTP libraries (httpx logs every request URL).

    One instance serves every provider: each registers its secrets when it opens and
    withdraws them when it closes. The filter is on the HTTP loggers while any provider is
    open (added once however many are), and off them after the last one closes."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._owners: dict[int, tuple[str, ...]] = {}  # by id(): the filter keeps no provider alive
        self._secrets: tuple[str, ...] = ()

    def register(self, owner: object, secrets: Iterable[str]) -> None:
        with self._lock:
            self._owners[id(owner)] = tuple(secrets)
            self._update()

    def withdraw(self, owner: object) -> None:
        with self._lock:
            self._owners.pop(id(owner), None)
            self._update()

    def _update(self) -> None:
        everyone = {s for secrets in self._owners.values() for s in secrets} - {""}
        self._secrets = tuple(sorted(everyone, key=len, reverse=True))
        for name in _HTTP_LOGGERS:
            if self._owners:
                logging.getLogger(name).addFilter(self)  # a no-op when it is there already
            else:
                logging.getLogger(name).removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage(), self._secrets, limit=2000)
        record.args = None
        return True


_MASK_LOG = _MaskLog()


class TopProvider(Provider):
    """The TOP-protocol HTTP provider (``reconciler.connect`` builds it from the settings)."""

    name = "top"

    def __init__(self, *, url: str, app_key: str, secret: str, sessions: Mapping[str, str],
                 sessions_source: str = "the session keys", sign_method: str = "hmac-sha256", qps: float = 20.0,
                 timeout_s: float = 10.0, parallelism: int = 8, methods: Mapping[str, str] | None = None,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], datetime] | None = None, deadline_s: float = 30.0,
                 max_ban_s: float = DEFAULT_MAX_BAN_S, max_failures: int = 10) -> None:
        super().__init__(retry=retry, sleep=sleep, max_ban_s=max_ban_s)
        if sign_method not in signing.SIGN_METHODS:
            raise ValueError(f"unknown sign_method {sign_method!r}")
        self.url = url
        self.app_key = app_key
        self._secret = secret
        self._sessions = dict(sessions)
        self._sessions_source = sessions_source
        self.sign_method = sign_method
        self.parallelism = parallelism
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.breaker = CircuitBreaker(max_failures)
        self.methods = {**DEFAULT_METHODS, **(methods or {})}
        self._clock = clock or (lambda: datetime.now(UTC))
        self.limiter = ClientLimiter(qps)
        self._secrets = sorted({secret, *self._sessions.values()} - {""}, key=len, reverse=True)
        self._tls = threading.local()
        self._stats_lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        limits = httpx.Limits(max_connections=parallelism + 2, max_keepalive_connections=parallelism + 2)
        self._http = httpx.Client(
            timeout=httpx.Timeout(min(timeout_s, deadline_s)), limits=limits,
            headers={"User-Agent": "reconciler-top", "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False,
        )
        # The direct route gets the deadline on every socket operation. Passing ``transport=``
        # instead would make httpx ignore the proxies of the environment (HTTPS_PROXY, NO_PROXY).
        self._http._transport.close()
        self._http._transport = DeadlineTransport(limits=limits)
        _MASK_LOG.register(self, self._secrets)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        self._http.close()
        _MASK_LOG.withdraw(self)

    def hurry(self) -> None:
        super().hurry()
        self.limiter.hurry(HURRY_WAIT_S)

    def counters(self) -> dict[str, dict[str, int]]:
        """Requests sent and answered per method, and errors by code/kind (benchmarks, tests)."""
        with self._stats_lock:
            return {"sent": dict(self.sent), "answered": dict(self.answered), "errors": dict(self.errors)}

    # ------------------------------------------------------------------ the protocol

    def _mask(self, text: str) -> str:
        return mask(text, self._secrets)

    def _session(self, shop: str) -> str:
        session = self._sessions.get(shop)
        if not session:
            raise ProviderError(f"no session key for shop {shop} in {self._sessions_source}; the shop must authorize the app")
        return session

    def _count(self, table: Counter[str], key: str) -> None:
        with self._stats_lock:
            table[key] += 1

    def _request(self, op: str, shop: str | None, business: dict[str, str]) -> dict[str, Any]:
        """One signed call; the response body inside ``<method>_response``, or a ProviderError."""
        method = self.methods[op]
        if self.breaker.opened is not None:
            raise FatalProviderError(f"{method}: not sent: {self.breaker.opened}")
        system = {"method": method, "app_key": self.app_key, "timestamp": signing.timestamp(self._clock()),
                  "v": "2.0", "format": "json", "sign_method": self.sign_method}
        if shop is not None:
            system["session"] = self._session(shop)
            business = {"shop_id": shop, **business}
        system["sign"] = signing.sign({**system, **business}, self._secret, self.sign_method)
        try:
            self.limiter.acquire()
        except Banned as e:
            raise ProviderError(f"{method}: not sent: {e} and the run is being interrupted", code=7) from None
        self._count(self.sent, method)
        log.debug("%s %s", method, shop or "")
        status, raw = self._exchange(method, system, business, write=op in _WRITES)
        if status != 200:
            self._count(self.errors, f"http-{status}")
            raise ProviderError(self._mask(f"{method}: the gateway answered HTTP {status}: {wire.excerpt(raw)}"))
        try:
            answer = wire.unwrap(signing.response_key(method), wire.decode(raw))
        except wire.MalformedAnswer as e:
            self._count(self.errors, "bad-json" if isinstance(e, wire.NotJson) else "bad-answer")
            if op in _WRITES:  # an answer that does not confirm the write: it failed, and may have landed
                raise wire.MalformedAnswer(self._mask(f"{method}: {e}{_UNCONFIRMED}"), ambiguous=True) from None
            # not JSON at all (a proxy's error page): worth another try; anything else is what the gateway says
            raise wire.MalformedAnswer(self._mask(f"{method}: {e}"), retryable=isinstance(e, wire.NotJson)) from None
        self._count(self.answered, method)
        if isinstance(answer, wire.Refusal):
            raise self._refusal(method, answer)
        return answer

    def _exchange(self, method: str, system: dict[str, str], business: dict[str, str], *, write: bool) -> tuple[int, bytes]:
        """POST one request: the HTTP status and the decoded body, by the deadline and within the size cap.

        A request that gets no answer at all is a transport failure (counted by the circuit
        breaker); a write's is ambiguous: it may have reached the platform."""
        failure: ProviderError
        try:
            with deadline(self.deadline_s) as end, self._http.stream("POST", self.url, params=system, data=business) as resp:
                if resp.status_code >= 500:
                    self._count(self.errors, f"http-{resp.status_code}")
                    failure = _Ambiguous(f"{method}: the gateway answered HTTP {resp.status_code}", retryable=True)
                else:
                    declared = resp.headers.get("content-length", "")
                    inflater = wire.Inflater(resp.headers.get("content-encoding"))
                    if declared.isdigit() and int(declared) > wire.MAX_ANSWER_BYTES:
                        raise wire.too_large()
                    for chunk in resp.iter_raw():
                        if time.monotonic() > end:  # a proxied request (the transport's deadline is not on it)
                            raise httpx.ReadTimeout("the request's deadline passed")
                        inflater.feed(chunk)
                    body = inflater.finish()
                    self.breaker.success()
                    return resp.status_code, body
        except wire.MalformedAnswer as e:  # too large, an encoding we did not ask for, corrupt: the gateway did answer
            self.breaker.success()
            self._count(self.errors, "bad-answer")
            raise wire.MalformedAnswer(self._mask(f"{method}: {e}{_UNCONFIRMED if write else ''}"), ambiguous=write) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            self._count(self.errors, "connect")
            failure = ProviderError(f"{method}: cannot reach the platform ({type(e).__name__}: {self._mask(str(e))})",
                                    retryable=True, unreachable=True)
        except httpx.TimeoutException:
            late = time.monotonic() >= end - 0.05  # the socket's own timer may end a hair early
            self._count(self.errors, "deadline" if late else "timeout")
            failure = _Ambiguous(f"{method}: no complete answer within the deadline of {self.deadline_s:g} s"
                                 " (provider.deadline_s)" if late else f"{method}: no answer within {self.timeout_s:g} s",
                                 retryable=True)
        except httpx.HTTPError as e:
            self._count(self.errors, "connection")
            failure = _Ambiguous(f"{method}: the connection failed before the answer ({type(e).__name__}:"
                                 f" {self._mask(str(e))})", retryable=True)
        if self.breaker.failure(str(failure)):
            self._count(self.errors, "breaker")
            raise FatalProviderError(f"{failure}; that is {self.breaker.limit} requests in a row without an answer:"
                                     " the run stops (provider.max_failures)", ambiguous=write and not failure.unreachable)
        raise failure

    def _refusal(self, method: str, r: wire.Refusal) -> ProviderError:
        self._count(self.errors, r.sub_code or f"code-{r.code}")
        ban = r.ban_s
        if ban is not None:
            if ban > self.max_ban_s:  # told before the limiter hears of it: no thread waits it out
                return FatalProviderError(
                    f"{method}: the platform banned the app for {wire.seconds(ban)}, longer than provider.max_ban_s"
                    f" ({self.max_ban_s:g} s): the run stops; try again after the ban", code=r.code, sub_code=r.sub_code)
            self.limiter.banned(ban)
        said = r.sub_msg or r.msg
        text = self._mask(f"{said} ({method}, code {r.code})" if said else f"({method}, code {r.code})")
        return platform_error(r.code, r.sub_code, text, ban_seconds=ban)

    # ------------------------------------------------------------------ reads

    def _read(self, shop_ids: list[str]) -> dict[str, ShopState | ProviderError]:
        """One attempt per shop; the base class retries what may be retried, on ``_each`` too.

        A refusal that concerns the app, or a platform that cannot be reached, is not one
        shop's trouble: the shops still queued are not sent but answered with that error (a
        platform that comes back is then read by the retries; one that stays away stops the
        run after one shop's retries, not after a timeout for every shop)."""
        stop: list[ProviderError] = []

        def one(shop: str) -> tuple[str, ShopState | ProviderError]:
            if stop:
                return shop, stop[0]
            try:
                return shop, self._read_one(shop)
            except ProviderError as e:
                if isinstance(e, FatalProviderError) or e.unreachable:
                    stop.append(e)
                return shop, e

        out = dict(self._each(one, shop_ids))
        fatal = [e for e in stop if isinstance(e, FatalProviderError)]
        if fatal:
            raise fatal[0]  # one message for the run, instead of the same error for every shop
        return out

    def _each(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
        if self.parallelism <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="top-read") as pool:
            return list(pool.map(fn, items))

    def _read_one(self, shop: str) -> ShopState:
        body = self._request("get", shop, {})
        try:
            return wire.shop_state(self.methods["get"], shop, body)
        except wire.WrongShop as e:
            raise wire.WrongShop(self._mask(f"{e}; check the session key of {shop} in {self._sessions_source}")) from None
        except wire.MalformedAnswer as e:
            raise wire.MalformedAnswer(self._mask(str(e))) from None

    def _peek(self, shop: str) -> ShopState | None:
        """One read without retries, to settle an ambiguous write; None when it fails too."""
        try:
            return self._read_one(shop)
        except ProviderError as e:
            log.info("read %s to settle an interrupted write failed: %s", shop, e)
            return None

    def _list_shops(self) -> list[str]:
        return sorted(self._sessions)

    def _check_app(self, appkey: str, scenario: Scenario) -> AppCheck:
        body = self._request("check", None, {"appkey": appkey, "scenario": scenario.value})
        try:
            return wire.app_check(self.methods["check"], appkey, scenario, body)
        except wire.MalformedAnswer as e:
            raise wire.MalformedAnswer(self._mask(str(e))) from None

    # ------------------------------------------------------------------ writes

    def _write(self, op: str, shop: str, params: dict[str, str], done: Callable[[ShopState], bool],
               confirm: Callable[[dict[str, Any]], W]) -> ShopState | W:
        """A compare-and-set write, settled by a read when the network leaves it ambiguous.

        Returns what ``confirm`` makes of the answer (it raises when the answer does not
        confirm the value asked for: the write failed, and may or may not have landed), or the
        shop's state when a read showed that an earlier, interrupted attempt took effect.
        """
        ident = (op, shop, *sorted(params.items()))
        pending = getattr(self._tls, "ambiguous", None) == ident
        try:
            body = self._request(op, shop, params)
        except _Ambiguous as e:
            self._tls.ambiguous = ident  # stays set until this write is settled: the request may still land late
            state = self._peek(shop)
            if state is not None and done(state):
                self._tls.ambiguous = None
                log.info("%s %s: %s, but the write had taken effect", op, shop, e)
                return state
            what = "it had not taken effect" if state is not None else "whether it took effect is unknown"
            raise ProviderError(f"{e}; {what}", retryable=True, ambiguous=state is None) from None
        except ConflictError as e:
            if pending:
                state = self._peek(shop)
                if state is not None and done(state):
                    self._tls.ambiguous = None
                    log.info("%s %s: an interrupted earlier attempt had taken effect", op, shop)
                    return state
                if state is None:  # the conflict may be our own earlier attempt: still unknown
                    self._tls.ambiguous = None
                    raise ProviderError(f"{e}; an earlier attempt was interrupted and whether it took effect is unknown",
                                        code=e.code, sub_code=e.sub_code, ambiguous=True) from None
            self._tls.ambiguous = None
            raise
        except ProviderError as e:
            if not e.retryable:
                self._tls.ambiguous = None
            raise
        self._tls.ambiguous = None
        try:
            return confirm(body)
        except wire.MalformedAnswer as e:
            raise wire.MalformedAnswer(self._mask(f"{e}{_UNCONFIRMED}"), ambiguous=True) from None

    def _bind(self, shop: str, scenario: Scenario, appkey: str, expected: str | None) -> Binding:
        params = {"scenario": scenario.value, "appkey": appkey, "expected_appkey": expected or ""}
        method = self.methods["bind"]
        out = self._write("bind", shop, params, lambda s: s.appkey(scenario) == appkey,
                          lambda body: wire.confirm_bind(method, scenario, appkey, body))
        return out.bindings[scenario] if isinstance(out, ShopState) else out

    def _unbind(self, shop: str, scenario: Scenario, expected: str) -> None:
        params = {"scenario": scenario.value, "expected_appkey": expected}
        method = self.methods["unbind"]
        self._write("unbind", shop, params, lambda s: s.appkey(scenario) is None,
                    lambda body: wire.confirm_unbind(method, scenario, body))

    def _set_self_service(self, shop: str, enabled: bool, expected: bool) -> None:
        params = {"enabled": _flag(enabled), "expected": _flag(expected)}
        method = self.methods["selfservice"]
        self._write("selfservice", shop, params, lambda s: s.buyer_self_service is enabled,
                    lambda body: wire.confirm_self_service(method, enabled, body))


def _flag(value: bool) -> str:
    return "true" if value else "false"
