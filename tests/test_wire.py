"""The response parser (``providers/wire``): any bytes a gateway sends become a value or one of
our errors — never another exception — within the size, depth and number bounds; and the
bounds of the provider around it (ban cap, circuit breaker, hurry, ambiguity kept).

The fuzz tests (hypothesis) feed arbitrary bytes, arbitrary encodings and arbitrary JSON
values through every step of the parser and every answer model.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
import zlib
from typing import Any

import pytest
from hostile import gzip_bomb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import FatalProviderError, ProviderError
from reconciler.model import Scenario
from reconciler.providers import wire
from reconciler.providers.base import HURRY_WAIT_S, RetryPolicy
from reconciler.providers.sandbox import SandboxProvider
from reconciler.ratelimit import Banned, CircuitBreaker, ClientLimiter

GET = {"shop_id": "100001", "shop_name": "店", "bindings": [{"scenario": "order_status", "appkey": "12345679", "revision": 3}],
       "buyer_self_service": False, "detail_whitelisted": True}
KEY = "erp_binding_get_response"


def envelope(body: Any, key: str = KEY) -> bytes:
    return json.dumps({key: body}).encode()


def every_model(body: dict[str, Any]) -> None:
    """Run ``body`` through every answer model: each returns a value or raises MalformedAnswer."""
    for check in (
        lambda: wire.shop_state("erp.binding.get", "100001", body),
        lambda: wire.app_check("erp.app.check", "12345679", Scenario.order_status, body),
        lambda: wire.confirm_bind("erp.binding.bind", Scenario.order_status, "12345679", body),
        lambda: wire.confirm_unbind("erp.binding.unbind", Scenario.order_status, body),
        lambda: wire.confirm_self_service("erp.selfservice.set", True, body),
    ):
        with contextlib.suppress(wire.MalformedAnswer):
            check()


# --------------------------------------------------------------------------- fuzz


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.sampled_from([None, "", "identity", "gzip", "deflate", "gzip, gzip", "br", "x-gzip, deflate"]))
def test_any_bytes_in_any_encoding_are_a_value_or_our_error(data: bytes, encoding: str | None) -> None:
    try:
        answer = wire.parse_answer(KEY, data, encoding)
    except ProviderError as e:
        assert isinstance(e, wire.MalformedAnswer)
        return
    if isinstance(answer, dict):
        every_model(answer)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.sampled_from(["gzip", "deflate"]))
def test_compressed_garbage_is_a_value_or_our_error(data: bytes, encoding: str) -> None:
    packed = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)
    for cut in (len(packed), len(packed) // 2):   # whole, and truncated
        try:
            answer = wire.parse_answer(KEY, packed[:cut], encoding)
        except wire.MalformedAnswer:
            continue
        if isinstance(answer, dict):
            every_model(answer)


_json_leaf = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
              | st.text(max_size=20) | st.sampled_from(["100001", "12345679", "order_status", "true", "false", "virtualAppKey"]))
_json = st.recursive(_json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(
    st.sampled_from(["shop_id", "bindings", "scenario", "appkey", "revision", "buyer_self_service", "detail_whitelisted",
                     "exists", "integrated", "name", "shop_name", "error_response", "code", "sub_msg", KEY]) | st.text(max_size=8),
    c, max_size=6), max_leaves=25)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_any_json_value_is_a_value_or_our_error(value: Any) -> None:
    for doc in (value, {KEY: value}, {"error_response": value}):
        try:
            answer = wire.parse_answer(KEY, json.dumps(doc).encode())
        except wire.MalformedAnswer:
            continue
        if isinstance(answer, dict):
            every_model(answer)
        else:
            assert isinstance(answer, wire.Refusal)
            assert answer.ban_s is None or answer.ban_s >= 0


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(list(GET)), _json, max_size=5))
def test_a_get_answer_with_any_fields_replaced_is_a_state_or_our_error(changes: dict[str, Any]) -> None:
    try:
        state = wire.shop_state("erp.binding.get", "100001", {**GET, **changes})
    except wire.MalformedAnswer:
        return
    assert isinstance(state.buyer_self_service, bool) and isinstance(state.detail_whitelisted, bool)
    assert all(isinstance(b.revision, int) and 0 <= b.revision < 2**63 for b in state.bindings.values())


# --------------------------------------------------------------------------- strictness, by example


@pytest.mark.parametrize(("change", "why"), [
    ({"buyer_self_service": "false"}, "buyer_self_service: input should be a valid boolean"),
    ({"detail_whitelisted": 0}, "detail_whitelisted: input should be a valid boolean"),
    ({"bindings": ["order_status:12345679"]}, "bindings.0: input should be a valid dictionary"),
    ({"bindings": None}, "bindings: input should be a valid list"),
    ({"bindings": [{"scenario": "order_status", "appkey": "12345679", "revision": "3"}]}, "revision: input should be a valid integer"),
    ({"bindings": [{"scenario": "order_status", "appkey": 12345679, "revision": 3}]}, "appkey: input should be a valid string"),
    ({"bindings": [{"scenario": "order_status", "appkey": "12345679\n", "revision": 3}]}, "appkey: string should match pattern"),
    ({"bindings": [{"scenario": "returns", "appkey": "12345679", "revision": 3}]}, "bindings.0.scenario"),
    ({"bindings": [{"scenario": "order_status", "appkey": "1", "revision": 1}] * 2}, "two bindings for order_status"),
    ({"bindings": [{"scenario": "order_status", "appkey": "1", "revision": -1}]}, "revision: input should be greater than"),
    ({"shop_id": 100001}, "shop_id: input should be a valid string"),
    ({"shop_id": "100002"}, "answered for shop '100002' when asked for 100001"),
])
def test_a_get_answer_is_read_strictly(change: dict[str, Any], why: str) -> None:
    with pytest.raises(wire.MalformedAnswer) as info:
        wire.shop_state("erp.binding.get", "100001", {**GET, **change})
    assert why in str(info.value)
    assert str(info.value).startswith("erp.binding.get: ")


def test_a_get_answer_missing_a_field_is_refused_not_defaulted() -> None:
    for field in ("bindings", "buyer_self_service", "detail_whitelisted", "shop_id"):
        with pytest.raises(wire.MalformedAnswer, match=f"{field}: field required"):
            wire.shop_state("erp.binding.get", "100001", {k: v for k, v in GET.items() if k != field})


@pytest.mark.parametrize(("body", "why"), [
    ({"exists": "false", "integrated": False}, "exists: input should be a valid boolean"),
    ({"exists": True, "integrated": "true"}, "integrated: input should be a valid boolean"),
    ({"exists": 1, "integrated": 1}, "valid boolean"),
    ({"exists": False, "integrated": True}, "cannot have integrated"),
    ({"integrated": True}, "exists: field required"),
    ({"exists": True, "integrated": True, "syncs_order_status": "no"}, "syncs_order_status"),
])
def test_an_app_check_answer_is_read_strictly(body: dict[str, Any], why: str) -> None:
    with pytest.raises(wire.MalformedAnswer, match=why):
        wire.app_check("erp.app.check", "12345679", Scenario.order_status, body)


@pytest.mark.parametrize(("body", "why"), [
    ({"scenario": "order_status", "appkey": "99999999", "revision": 4}, "the platform answered order_status = 99999999"),
    ({"scenario": "intercept_shipment", "appkey": "12345679", "revision": 4}, "answered intercept_shipment = 12345679"),
    ({}, "scenario: field required"),
    ({"scenario": "order_status", "appkey": "12345679", "revision": 0}, "revision: input should be greater than or equal to 1"),
    ({"scenario": "order_status", "appkey": "12345679", "revision": "4"}, "revision: input should be a valid integer"),
    ({"scenario": "order_status", "appkey": 12345679, "revision": 4}, "appkey: input should be a valid string"),
])
def test_a_bind_answer_must_confirm_the_binding_asked_for(body: dict[str, Any], why: str) -> None:
    with pytest.raises(wire.MalformedAnswer, match=why):
        wire.confirm_bind("erp.binding.bind", Scenario.order_status, "12345679", body)


def test_unbind_and_self_service_answers_must_confirm() -> None:
    with pytest.raises(wire.MalformedAnswer, match="answered order_status = 12345679"):
        wire.confirm_unbind("erp.binding.unbind", Scenario.order_status, {"scenario": "order_status", "appkey": "12345679",
                                                                          "revision": 2})
    for said in ("true", 1, False, None):
        with pytest.raises(wire.MalformedAnswer):
            wire.confirm_self_service("erp.selfservice.set", True, {"buyer_self_service": said})
    wire.confirm_self_service("erp.selfservice.set", True, {"buyer_self_service": True, "request_id": "x"})


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(("data", "why"), [
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 32 levels"),
    (b"[" * 33 + b"]" * 33, "nests deeper than 32 levels"),
    (b'{"revision": ' + b"9" * 5000 + b"}", "a number of 5000 digits"),
    (b'{"revision": -' + b"9" * 19 + b"}", "a number of 19 digits"),
    (b'{"a": 1e999}', "out of range"),
    (b'{"a": -1e400}', "out of range"),
    (b'{"a": NaN}', "NaN, which is not a JSON number"),
    (b'{"a": Infinity}', "Infinity, which is not a JSON number"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"", "the answer is empty"),
    (b" \r\n", "the answer is empty"),
    (b"<html>502 Bad Gateway</html>", "not JSON"),
])
def test_hostile_json_is_refused_clearly(data: bytes, why: str) -> None:
    with pytest.raises(wire.MalformedAnswer, match=why):
        wire.decode(data)


def test_the_bounds_themselves_are_allowed() -> None:
    assert wire.decode(b"[" * 32 + b"]" * 32) is not None
    assert wire.decode(b"123456789012345678") == 123456789012345678
    assert wire.decode(b"1e308") == 1e308


@pytest.mark.parametrize(("reply", "encoding", "why"), [
    (gzip_bomb(1 << 30).body, "gzip", "larger than 2048 KiB"),
    (gzip.compress(gzip_bomb(64 << 20).body), "gzip, gzip", "larger than 2048 KiB"),
    (zlib.compress(bytes(3 << 20)), "deflate", "larger than 2048 KiB"),
    (bytes((2 << 20) + 1), None, "larger than 2048 KiB"),
    (b"this is not gzip at all", "gzip", "corrupt"),
    (gzip.compress(b'{"a": 1}')[:-8], "gzip", "truncated"),
    (b"{}", "br", "is not gzip or deflate"),
    (b"{}", "gzip, gzip, gzip, gzip", "is not gzip or deflate"),
])
def test_sizes_are_capped_after_decompression(reply: bytes, encoding: str | None, why: str) -> None:
    start = time.monotonic()
    with pytest.raises(wire.MalformedAnswer, match=why):
        wire.inflate(reply, encoding)
    assert time.monotonic() - start < 2


def test_stacked_encodings_and_raw_deflate_decode() -> None:
    body = envelope(GET)
    assert wire.inflate(gzip.compress(gzip.compress(body)), "gzip, gzip") == body
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert wire.inflate(raw.compress(body) + raw.flush(), "deflate") == body
    assert wire.inflate(body, "identity") == body


def test_a_refusal_is_read_whatever_its_fields() -> None:
    r = wire.unwrap(KEY, {"error_response": {"code": "7", "sub_msg": "This ban will last for 12 more seconds"}})
    assert isinstance(r, wire.Refusal) and (r.code, r.ban_s) == (7, 12.0)
    r = wire.unwrap(KEY, {"error_response": {"code": [1], "msg": {"x": 1}, "sub_code": 5}})
    assert isinstance(r, wire.Refusal) and (r.code, r.msg, r.sub_code) == (None, "", None)
    r = wire.unwrap(KEY, {"error_response": {"code": 7, "sub_msg": "ban will last for " + "9" * 400 + " more seconds"}})
    assert isinstance(r, wire.Refusal) and r.ban_s == float("inf")
    with pytest.raises(wire.MalformedAnswer, match="error_response is a list"):
        wire.unwrap(KEY, {"error_response": []})
    with pytest.raises(wire.MalformedAnswer, match="no erp_binding_get_response object in the answer"):
        wire.unwrap(KEY, {"erp_binding_bind_response": {}})


# --------------------------------------------------------------------------- the provider's own bounds


class _Flaky(SandboxProvider):
    """A provider whose writes fail as the test says, without a platform."""

    def __init__(self, errors: list[ProviderError], **kw: Any) -> None:
        self.errors = errors
        self.waits: list[float] = []
        super().__init__(platform=None, sleep=self.waits.append, **kw)  # type: ignore[arg-type]

    def _unbind(self, shop: str, scenario: Scenario, expected: str) -> None:
        if self.errors:
            raise self.errors.pop(0)

    def close(self) -> None:
        pass


def test_a_ban_longer_than_max_ban_s_stops_the_run_instead_of_being_waited_out() -> None:
    p = _Flaky([ProviderError("banned", code=7, retryable=True, delay=86_400)], retry=RetryPolicy(retries=3))
    with pytest.raises(FatalProviderError, match=r"banned the app for 86400 s, longer than provider.max_ban_s \(300 s\)"):
        p.unbind("100001", Scenario.order_status, expected="1")
    assert p.waits == []
    p = _Flaky([ProviderError("banned", code=7, retryable=True, delay=5)], retry=RetryPolicy(retries=3))
    p.unbind("100001", Scenario.order_status, expected="1")  # within the cap: waited out, then it worked
    assert p.waits == [5]


def test_an_earlier_attempt_that_may_have_landed_keeps_the_final_error_ambiguous() -> None:
    errors = [ProviderError("answer lost", retryable=True, ambiguous=True), FatalProviderError("the breaker opened")]
    p = _Flaky(errors, retry=RetryPolicy(retries=3, backoff_s=0))
    with pytest.raises(FatalProviderError) as info:
        p.unbind("100001", Scenario.order_status, expected="1")
    assert info.value.ambiguous and str(info.value) == "the breaker opened"


def test_hurry_cuts_backoff_and_refuses_to_wait_out_bans() -> None:
    p = _Flaky([ProviderError("isp", retryable=True)] * 2, retry=RetryPolicy(retries=3, backoff_s=30, max_backoff_s=30))
    p.hurry()
    p.unbind("100001", Scenario.order_status, expected="1")
    assert p.waits and max(p.waits) <= HURRY_WAIT_S
    p = _Flaky([ProviderError("banned", code=7, retryable=True, delay=60)], retry=RetryPolicy(retries=3))
    p.hurry()
    with pytest.raises(ProviderError, match="not waited out: the run is being interrupted"):
        p.unbind("100001", Scenario.order_status, expected="1")


def test_the_default_pause_is_cut_short_by_hurry(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.providers import base

    monkeypatch.setattr(base, "HURRY_WAIT_S", 0.4)
    p = SandboxProvider(platform=None)  # type: ignore[arg-type]
    threading.Timer(0.1, p.hurry).start()
    start = time.monotonic()
    p._pause(60)
    assert 0.3 < time.monotonic() - start < 1.5


def test_the_circuit_breaker_opens_after_consecutive_failures_only() -> None:
    b = CircuitBreaker(3)
    assert not b.failure("a") and not b.failure("b")
    b.success()
    assert not b.failure("c") and not b.failure("d")
    assert b.failure("e") and b.opened == "e"
    assert not b.failure("f") and b.opened == "e"  # stays open, reported once
    with pytest.raises(ValueError):
        CircuitBreaker(0)


def test_a_hurried_limiter_does_not_wait_out_a_long_ban() -> None:
    lim = ClientLimiter(100)
    lim.banned(60)
    lim.hurry(HURRY_WAIT_S)
    with pytest.raises(Banned, match="banned for 60 more second"):
        lim.acquire()
    lim = ClientLimiter(100)
    lim.banned(0.2)
    lim.hurry(HURRY_WAIT_S)
    assert lim.acquire() >= 0.1  # a short one still is
