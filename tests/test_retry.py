"""Retries and rate limits: ``RetryPolicy.delay``, ``Provider.call`` on the real sandbox
provider with injected faults, the TOP error table (``platform_error``), and the two rate
limiters of ``reconciler.ratelimit`` on a scripted clock.

Nothing sleeps for real in the retry tests: the provider gets a ``sleep`` that records the
waits. Jitter comes from ``random.random``, which the tests pin where an exact wait is asserted.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ConflictError, FatalProviderError, ProviderError
from reconciler.model import Scenario
from reconciler.platform import SandboxPlatform, World
from reconciler.providers.base import RetryPolicy, platform_error
from reconciler.providers.sandbox import SandboxProvider
from reconciler.ratelimit import AppLimit, ClientLimiter

JST, WDT = "21345678", "12345679"
ALMOST_ONE = math.nextafter(1.0, 0.0)  # the largest value random.random() returns


def transient(delay: float | None = None) -> ProviderError:
    return ProviderError("isp.unknown-error: boom", code=15, sub_code="isp.unknown-error", retryable=True, delay=delay)


# --------------------------------------------------------------------------- RetryPolicy.delay


@pytest.mark.parametrize(("attempt", "base"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (40, 30.0)])
def test_delay_grows_as_a_power_of_two_up_to_the_cap(monkeypatch: pytest.MonkeyPatch, attempt: int, base: float) -> None:
    policy = RetryPolicy(retries=4, backoff_s=0.5, max_backoff_s=30.0)
    monkeypatch.setattr(random, "random", lambda: 0.0)
    assert policy.delay(attempt, transient()) == base / 2     # the jitter's low end: half the base
    monkeypatch.setattr(random, "random", lambda: ALMOST_ONE)
    high = policy.delay(attempt, transient())
    assert base * 0.999 < high <= base                        # its high end: the base itself, never more


def test_delay_jitter_stays_within_half_and_whole_base() -> None:
    policy = RetryPolicy(backoff_s=0.25, max_backoff_s=10.0)
    rng_state = random.getstate()
    try:
        random.seed(20240501)
        for attempt in range(8):
            base = min(10.0, 0.25 * 2 ** attempt)
            waits = [policy.delay(attempt, transient()) for _ in range(200)]
            assert all(base * 0.5 <= w <= base for w in waits), (attempt, min(waits), max(waits))
            assert len(set(waits)) > 150  # jittered, not a constant
            assert min(waits) < base * 0.6 and max(waits) > base * 0.9  # spread over the whole range
    finally:
        random.setstate(rng_state)


@pytest.mark.parametrize("attempt", [0, 3, 12])
def test_a_ban_delay_is_used_as_is(attempt: int) -> None:
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=30.0)
    assert policy.delay(attempt, transient(delay=7)) == 7
    assert policy.delay(attempt, transient(delay=90)) == 90  # not capped by max_backoff_s: the platform said so
    assert policy.delay(attempt, transient(delay=0.25)) == 0.25


# --------------------------------------------------------------------------- Provider.call on the sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Callable[..., tuple[SandboxProvider, list[float]]]]:
    """A factory: a SandboxProvider over a fresh world with the given faults; waits are recorded."""
    opened: list[SandboxProvider] = []

    def make(faults: list[dict[str, Any]], *, retries: int = 4, backoff_s: float = 1.0,
             max_backoff_s: float = 100.0) -> tuple[SandboxProvider, list[float]]:
        platform = SandboxPlatform(tmp_path / f"sandbox-{len(opened)}.db")
        platform.load_world(World.model_validate({
            "apps": {JST: {"scenarios": ["intercept_shipment", "modify_address", "order_status"]},
                     WDT: {"scenarios": ["intercept_shipment", "modify_address"]}},
            "shops": {"100001": {"bindings": {"intercept_shipment": WDT}}, "100002": {}},
            "faults": faults,
        }))
        waits: list[float] = []
        provider = SandboxProvider(platform, retry=RetryPolicy(retries=retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s),
                                   sleep=waits.append)
        opened.append(provider)
        return provider, waits

    yield make
    for p in opened:
        p.close()


def fault_times(provider: SandboxProvider) -> list[int | None]:
    return [f.get("times") for f in provider.platform.dump_world()["faults"]]


def appkeys(provider: SandboxProvider, shop: str) -> dict[str, str]:
    state = provider.read([shop])[shop]
    assert not isinstance(state, ProviderError)
    return {sc.value: b.appkey for sc, b in state.bindings.items()}


def test_a_transient_fault_is_retried_with_growing_waits(monkeypatch: pytest.MonkeyPatch, sandbox: Callable[..., Any]) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.0)  # waits at the low end of the jitter: base / 2
    provider, waits = sandbox([{"operation": "bind", "shop": "100001", "scenario": "intercept_shipment",
                                "error": "isp.remote-service-unavailable", "times": 3}], backoff_s=1.0)
    binding = provider.bind("100001", Scenario.intercept_shipment, JST, expected=WDT)
    assert (binding.appkey, binding.revision) == (JST, 2)
    assert waits == [0.5, 1.0, 2.0]
    assert fault_times(provider) == [0]  # the three failures were met, the fourth call went through
    assert appkeys(provider, "100001") == {"intercept_shipment": JST}


def test_growing_waits_are_capped(monkeypatch: pytest.MonkeyPatch, sandbox: Callable[..., Any]) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.0)
    provider, waits = sandbox([{"operation": "unbind", "error": "isp.unknown-error", "times": 5}],
                              retries=6, backoff_s=1.0, max_backoff_s=6.0)
    provider.unbind("100001", Scenario.intercept_shipment, expected=WDT)
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert appkeys(provider, "100001") == {}


@pytest.mark.parametrize("error", ["isv.permission-denied", "isv.appkey-not-found", "isv.invalid-parameter"])
def test_an_isv_error_is_not_retried(sandbox: Callable[..., Any], error: str) -> None:
    provider, waits = sandbox([{"operation": "bind", "error": error, "times": 5}])
    with pytest.raises(ProviderError) as info:
        provider.bind("100002", Scenario.order_status, JST, expected=None)
    assert type(info.value) is ProviderError
    assert (info.value.sub_code, info.value.retryable) == (error, False)
    assert waits == []
    assert fault_times(provider) == [4]  # asked once
    assert appkeys(provider, "100002") == {}


def test_a_conflict_is_not_retried(sandbox: Callable[..., Any]) -> None:
    provider, waits = sandbox([])
    with pytest.raises(ConflictError) as info:
        provider.bind("100001", Scenario.intercept_shipment, JST, expected=None)
    assert str(info.value) == f"isv.binding-conflict: intercept_shipment is {WDT}, not the expected unbound"
    assert info.value.retryable is False
    assert waits == []
    assert appkeys(provider, "100001") == {"intercept_shipment": WDT}


def test_retries_exhausted_raise_the_last_error(monkeypatch: pytest.MonkeyPatch, sandbox: Callable[..., Any]) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.0)
    provider, waits = sandbox([{"operation": "selfservice", "error": "isp.unknown-error", "times": 10}], retries=2)
    with pytest.raises(ProviderError) as info:
        provider.set_self_service("100002", True, expected=False)
    assert not isinstance(info.value, FatalProviderError)
    assert (str(info.value), info.value.retryable) == ("isp.unknown-error: injected fault on selfservice", True)
    assert waits == [0.5, 1.0]           # 1 try + 2 retries
    assert fault_times(provider) == [7]  # exactly 3 calls reached the platform
    state = provider.read(["100002"])["100002"]
    assert not isinstance(state, ProviderError) and state.buyer_self_service is False


def test_a_fault_that_never_ends_is_tried_retries_plus_one_times(sandbox: Callable[..., Any]) -> None:
    provider, waits = sandbox([{"operation": "bind", "error": "isp.unknown-error", "times": 100}], retries=4, backoff_s=0.0)
    with pytest.raises(ProviderError):
        provider.bind("100002", Scenario.order_status, JST, expected=None)
    assert waits == [0.0, 0.0, 0.0, 0.0]
    assert fault_times(provider) == [95]  # 1 try + 4 retries reached the platform, no more
    assert appkeys(provider, "100002") == {}


def test_a_rate_limit_ban_waits_exactly_the_ban(monkeypatch: pytest.MonkeyPatch, sandbox: Callable[..., Any]) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.0)
    provider, waits = sandbox([{"operation": "bind", "error": "isp.call-limited", "ban_seconds": 42, "times": 2}],
                              max_backoff_s=5.0)
    binding = provider.bind("100002", Scenario.order_status, JST, expected=None)
    assert binding.revision == 1
    assert waits == [42, 42]  # no backoff, no jitter, no cap: what the platform asked for


def test_a_failed_check_is_retried(monkeypatch: pytest.MonkeyPatch, sandbox: Callable[..., Any]) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.0)
    provider, waits = sandbox([{"operation": "check", "error": "isp.unknown-error", "times": 1},
                               {"operation": "check", "error": "isp.call-limited", "ban_seconds": 3, "times": 1}])
    checks = provider.check_apps([(JST, Scenario.order_status), (WDT, Scenario.order_status)])
    assert {k[0]: (c.exists, c.integrated) for k, c in checks.items() if not isinstance(c, ProviderError)} == \
        {JST: (True, True), WDT: (True, False)}
    assert waits == [0.5, 3]
    assert fault_times(provider) == [0, 0]


def test_a_non_retryable_read_error_fails_only_its_shop(sandbox: Callable[..., Any]) -> None:
    provider, waits = sandbox([{"operation": "get", "shop": "100001", "error": "isv.permission-denied", "times": 3}])
    out = provider.read(["100001", "100002"])
    err = out["100001"]
    assert isinstance(err, ProviderError) and (err.code, err.sub_code, err.retryable) == (12, "isv.permission-denied", False)
    assert not isinstance(out["100002"], ProviderError)
    assert waits == []


# --------------------------------------------------------------------------- the TOP error table


@pytest.mark.parametrize(("code", "sub", "kind", "retryable"), [
    (7, "isp.call-limited", ProviderError, True),
    (7, None, ProviderError, True),
    (10, None, ProviderError, True),
    (10, "isp.unknown-error", ProviderError, True),
    (11, None, ProviderError, False),
    (12, "isv.permission-denied", ProviderError, False),
    (13, None, ProviderError, False),
    (15, None, ProviderError, True),
    (15, "isp.unknown-error", ProviderError, True),
    (15, "isp.remote-service-unavailable", ProviderError, True),
    (15, "isv.appkey-not-found", ProviderError, False),
    (15, "isv.scenario-not-integrated", ProviderError, False),
    (15, "isv.invalid-appkey", ProviderError, False),
    (15, "isv.binding-conflict", ConflictError, False),
    (25, None, FatalProviderError, False),
    (27, None, ProviderError, False),
    (27, "isv.invalid-session", ProviderError, False),
    (29, None, FatalProviderError, False),
    (31, None, FatalProviderError, False),
    (40, "isv.missing-parameter", ProviderError, False),
    (41, "isv.invalid-parameter", ProviderError, False),
    (41, None, ProviderError, False),
])
def test_platform_error_table(code: int, sub: str | None, kind: type[ProviderError], retryable: bool) -> None:
    e = platform_error(code, sub, "msg")
    assert type(e) is kind
    assert (e.code, e.sub_code, e.retryable, e.delay) == (code, sub or "", retryable, None)


def test_platform_error_messages() -> None:
    assert str(platform_error(27, None, "Invalid session")) == (
        "code 27: Invalid session — the shop's authorization of the app expired or was revoked: the merchant must"
        " re-authorize the app (服务市场 → 我的服务 → 授权); reconciler auth status shows every shop's")
    assert str(platform_error(12, "isv.permission-denied", "no")).endswith("grant the sub-account the 客户服务平台 permission"
                                                                         " (the customer-service platform's, in the main"
                                                                         " account's sub-account settings)")
    assert str(platform_error(15, "isv.appkey-not-found", "no ERP app")) == "isv.appkey-not-found: no ERP app"
    assert str(platform_error(25, None, "Invalid signature")) == \
        "code 25: Invalid signature — the signature was refused: check the app secret and provider.sign_method"
    assert str(platform_error(29, "isv.appkey-not-exists", "Invalid app Key")) == \
        "isv.appkey-not-exists: Invalid app Key — the platform does not know provider.app_key"
    assert str(platform_error(31, None, "Invalid timestamp")) == \
        "code 31: Invalid timestamp — the timestamp was refused: this machine's clock is off by more than 10 minutes"


def test_a_ban_carries_its_seconds_as_the_delay() -> None:
    e = platform_error(7, "isp.call-limited", "This ban will last for 12 more seconds", ban_seconds=12)
    assert (type(e), e.retryable, e.delay) == (ProviderError, True, 12)
    assert RetryPolicy().delay(0, e) == 12


# --------------------------------------------------------------------------- rate limiters on a scripted clock


class Script:
    """A clock that answers the given times in order and refuses to be read once more:
    a limiter that reads the clock more (or less) often than the test expects fails it."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)
        self.read = 0

    def __call__(self) -> float:
        if self.read >= len(self.times):
            raise AssertionError(f"clock read {self.read + 1} times, scripted {len(self.times)}")
        t = self.times[self.read]
        self.read += 1
        return t

    def then(self, *times: float) -> None:
        self.times += times

    @property
    def done(self) -> bool:
        return self.read == len(self.times)


def test_client_limiter_spaces_requests_at_the_qps() -> None:
    # 16 QPS, no burst: one request every 1/16 s (binary fractions keep the arithmetic exact)
    clock = Script(0.0)
    limiter = ClientLimiter(16, burst=1, clock=clock)
    clock.then(0.0, 0.0)                 # start, now: a token is there
    assert limiter.acquire() == 0.0
    # the next one at the same instant must wait 1/16 s; at 1/32 s it is still too early
    clock.then(0.0, 0.0, 0.03125, 0.0625)
    assert limiter.acquire() == 0.0625
    assert clock.done
    # a request that comes late enough is not held
    clock.then(0.25, 0.25)
    assert limiter.acquire() == 0.0
    assert clock.done
    assert limiter.waited_s == 0.0625
    assert (limiter.bans, limiter.rate) == (0, 16)


def test_client_limiter_waits_out_a_ban_and_halves_its_rate() -> None:
    clock = Script(0.0)
    limiter = ClientLimiter(16, burst=1, recovery_s=1.0, clock=clock)
    clock.then(0.0, 0.0)
    assert limiter.acquire() == 0.0
    clock.then(0.0)                      # refused with code 7: banned for 1/4 s
    limiter.banned(0.25)
    assert (limiter.bans, limiter.rate) == (1, 8)
    clock.then(0.0625)                   # the same ban refused another request: not a new ban
    limiter.banned(0.125)
    assert (limiter.bans, limiter.rate) == (1, 8)
    # the retry: nothing is sent before the ban ends (0.125 is still inside it)
    clock.then(0.0625, 0.0625, 0.125, 0.25)
    assert limiter.acquire() == 0.1875
    assert clock.done
    # the rate grows back linearly: a quarter of recovery_s later, a quarter of the configured rate is back
    clock.then(0.5, 0.5)
    assert limiter.acquire() == 0.0
    assert limiter.rate == 12
    clock.then(2.0, 2.0)
    assert limiter.acquire() == 0.0
    assert limiter.rate == 16            # never above the configured QPS


def test_client_limiter_rate_never_falls_below_the_minimum() -> None:
    clock = Script(0.0)
    limiter = ClientLimiter(16, burst=1, recovery_s=1000.0, clock=clock)
    rates = []
    for i in range(7):
        clock.then(float(i))
        limiter.banned(0.5)              # a new ban each second, after the last one ended
        rates.append(limiter.rate)
    assert rates[:4] == [8, 4, 2, 1]
    assert rates[4:] == [0.5, 0.5, 0.5]  # min_qps defaults to 0.5
    assert limiter.bans == 7


def test_app_limit_bans_for_whole_seconds() -> None:
    clock = Script(0.0)
    limit = AppLimit(2, clock=clock)     # 2 QPS, a burst of 2
    clock.then(0.0, 0.0, 0.0)
    assert [limit.admit(), limit.admit(), limit.admit()] == [None, None, 1]  # the third: half a second short → 1 s ban
    clock.then(0.25, 0.75)
    assert [limit.admit(), limit.admit()] == [1, 1]      # refused during the ban, whatever the tokens
    clock.then(1.0)
    assert limit.admit() is None
    assert clock.done
