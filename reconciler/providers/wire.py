"""What the platform says, believed only after checking: bounded bytes → JSON → strict models.

Every answer of a TOP gateway passes three gates before the core sees a value of it:

1. **Size.** At most ``MAX_ANSWER_BYTES`` (2 MiB) on the wire *and* after decompression:
   ``Inflater`` inflates gzip/deflate piece by piece with that budget, so a gzip bomb
   stops at the cap instead of filling the memory.
2. **JSON.** UTF-8; at most ``MAX_DEPTH`` levels of nesting; integers of at most
   ``MAX_DIGITS`` digits (a revision of 5,000 digits is not a revision) and finite floats
   (``1e999``, ``NaN`` and ``Infinity`` are refused).
3. **Shape.** pydantic models in strict mode: ``"false"`` is not ``false``, ``"3"`` is not
   ``3``, a list of strings is not a list of bindings. Keys the contract does not name are
   ignored (gateways add ``request_id``); a missing or mistyped key is an error. A write's
   answer must confirm exactly the value that was asked for (``confirm_bind`` …).

Every failure here is a ``MalformedAnswer`` (a ``ProviderError``), never another
exception type: the caller says whose error it is (one shop's, or the run's) and whether
the request may be retried. Messages quote at most a short excerpt of the answer; the
caller masks them (``errors.mask``) before anyone sees them.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

from ..errors import MalformedAnswer as MalformedAnswer  # (errors.py: importable without pydantic)
from ..errors import WrongShop as WrongShop
from ..model import VIRTUAL_APPKEY, AppCheck, Binding, Scenario, ShopState
from ..specs import ScenarioKey

MAX_ANSWER_BYTES = 2 << 20   # 2 MiB, compressed and decompressed: a shop's answer is a few hundred bytes
MAX_DEPTH = 32               # the deepest answer of the contract nests 4 levels
MAX_DIGITS = 18              # every integer of the contract fits a signed 64-bit value
MAX_REVISION = 2**63 - 1
_ENCODINGS = ("gzip", "x-gzip", "deflate", "identity")


# --------------------------------------------------------------------------- 1. size


class Inflater:
    """Collects a response body from raw network chunks, decoding its Content-Encoding
    (gzip, deflate, or none; stacked ones too), within ``limit`` bytes at every stage."""

    def __init__(self, content_encoding: str | None, *, limit: int = MAX_ANSWER_BYTES) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        unknown = [c for c in codings if c not in _ENCODINGS]
        if unknown or len(codings) > 3:
            raise MalformedAnswer(f"the answer's Content-Encoding {excerpt(content_encoding or '')!r} is not gzip or deflate"
                                  " (at most three layers)")
        # applied last is undone first
        self._stages = [_stage(c) for c in reversed(codings) if c != "identity"]
        self._made = [0] * len(self._stages)
        self._limit = limit
        self._raw = 0
        self._out: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._raw += len(chunk)
        if self._raw > self._limit:
            raise self._too_large()
        data = chunk
        for i, stage in enumerate(self._stages):
            if not data:
                break
            budget = self._limit - self._made[i]
            try:
                data = stage.decompress(data, budget + 1)  # never more than one byte over the budget
            except zlib.error:
                raise MalformedAnswer("the answer's compressed body is corrupt") from None
            self._made[i] += len(data)
            if self._made[i] > self._limit:
                raise self._too_large()
        self._size += len(data)
        if self._size > self._limit:
            raise self._too_large()
        if data:
            self._out.append(data)

    def finish(self) -> bytes:
        """The whole decoded body; an error when a compressed stream ended early."""
        for stage in self._stages:
            if not stage.eof:
                raise MalformedAnswer("the answer's compressed body ends before its end (truncated)")
        return b"".join(self._out)

    def _too_large(self) -> MalformedAnswer:
        return too_large(self._limit)


def too_large(limit: int = MAX_ANSWER_BYTES) -> MalformedAnswer:
    return MalformedAnswer(f"the answer is larger than {limit // 1024} KiB (decompressed): refused unread")


def _stage(coding: str) -> Any:
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    return _Deflate()


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped, or (some) raw."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj()
        self._first = True

    @property
    def eof(self) -> bool:
        return bool(self._d.eof)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._d.decompress(data, max_length)
            except zlib.error:
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._d.decompress(data, max_length)


def inflate(raw: bytes, content_encoding: str | None = None, *, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """``raw`` decoded whole (tests, and answers read in one piece)."""
    inflater = Inflater(content_encoding, limit=limit)
    inflater.feed(raw)
    return inflater.finish()


# --------------------------------------------------------------------------- 2. JSON


class _Refused(Exception):
    """Raised inside the JSON decoder's hooks; becomes a MalformedAnswer."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _Refused(f"a number of {len(text.lstrip('-'))} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {excerpt(text)}, out of range")
    return value


def _constant(text: str) -> Any:
    raise _Refused(f"{text}, which is not a JSON number")


def _depth(value: Any) -> int:
    """The nesting depth of a decoded value, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                return d
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def decode(body: bytes) -> Any:
    """The JSON value of an answer body, within the bounds of the module doc."""
    if not body.strip():
        raise NotJson("the answer is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedAnswer("the answer is not UTF-8 text") from None
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as e:
        raise MalformedAnswer(f"the answer holds {e}") from None
    except RecursionError:
        raise MalformedAnswer(f"the answer nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # json.JSONDecodeError, and int() beyond its digit limit
        raise NotJson(f"the answer is not JSON ({excerpt(str(e), 80)}): {excerpt(text)}") from None
    if _depth(value) > MAX_DEPTH:
        raise MalformedAnswer(f"the answer nests deeper than {MAX_DEPTH} levels")
    return value


class NotJson(MalformedAnswer):
    """Not JSON at all (an HTML page of a proxy, a truncated body): worth another try."""


# --------------------------------------------------------------------------- the envelope


def _ban_seconds(text: str) -> float | None:
    m = re.search(r"ban will last for (\d+(?:\.\d+)?) more seconds?", text[:1000], re.IGNORECASE)
    return float(m.group(1)) if m else None


class Refusal(BaseModel):
    """``error_response``: what a refusal carries (codes as numbers or digit strings)."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    code: int | None
    msg: str
    sub_code: str | None
    sub_msg: str

    @property
    def ban_s(self) -> float | None:
        """A rate-limit ban's seconds (code 7), from its message; 1 when it names none."""
        if self.code != 7:
            return None
        found = _ban_seconds(self.sub_msg)
        found = _ban_seconds(self.msg) if found is None else found
        return 1.0 if found is None else found


def _text(value: Any, limit: int = 500) -> str:
    return excerpt(value, limit) if isinstance(value, str) else ""


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value)
    return None


def unwrap(response_key: str, value: Any) -> dict[str, Any] | Refusal:
    """The body inside ``<method>_response``, or the refusal inside ``error_response``."""
    if not isinstance(value, dict):
        raise MalformedAnswer(f"the answer is not a JSON object but {_kind(value)}")
    err = value.get("error_response")
    if err is not None:
        if not isinstance(err, dict):
            raise MalformedAnswer(f"error_response is {_kind(err)}, not an object")
        return Refusal(code=_code(err.get("code")), msg=_text(err.get("msg")),
                       sub_code=_text(err.get("sub_code"), 100) or None, sub_msg=_text(err.get("sub_msg")))
    body = value.get(response_key)
    if response_key in value and not isinstance(body, dict):
        raise MalformedAnswer(f"{response_key} is {_kind(body)}, not an object")
    if not isinstance(body, dict):
        found = ", ".join(sorted(excerpt(k, 40) for k in value)[:5]) or "nothing"
        raise MalformedAnswer(f"no {response_key} object in the answer (found {found})")
    return body


def parse_answer(response_key: str, raw: bytes, content_encoding: str | None = None) -> dict[str, Any] | Refusal:
    """Raw bytes of an answer (as received, with its Content-Encoding) → body or refusal."""
    return unwrap(response_key, decode(inflate(raw, content_encoding)))


# --------------------------------------------------------------------------- 3. shape

_WIRE = ConfigDict(strict=True, extra="ignore", frozen=True, defer_build=True)
Revision = Annotated[StrictInt, Field(ge=0, le=MAX_REVISION)]
Text = Annotated[StrictStr, Field(max_length=1000)]


# digits, or the Cainiao literal; pydantic's (Rust) ``$`` is the very end: "21345678\n" does not match
AppKeyText = Annotated[StrictStr, Field(pattern=f"^(?:[0-9]{{1,32}}|{VIRTUAL_APPKEY})$")]


class WireBinding(BaseModel):
    model_config = _WIRE
    scenario: ScenarioKey
    appkey: AppKeyText | None      # null: listed but not bound
    revision: Revision


class GetAnswer(BaseModel):
    """``erp.binding.get``."""

    model_config = _WIRE
    shop_id: StrictStr
    shop_name: Text | None = None
    bindings: Annotated[list[WireBinding], Field(max_length=64)]
    buyer_self_service: StrictBool
    detail_whitelisted: StrictBool

    @model_validator(mode="after")
    def _one_per_scenario(self) -> GetAnswer:
        seen = [b.scenario for b in self.bindings if b.appkey is not None]
        twice = sorted({s.value for s in seen if seen.count(s) > 1})
        if twice:
            raise ValueError(f"two bindings for {', '.join(twice)}")
        return self


class CheckAnswer(BaseModel):
    """``erp.app.check``."""

    model_config = _WIRE
    exists: StrictBool
    integrated: StrictBool
    name: Text | None = None
    detail_whitelisted: StrictBool = False
    syncs_order_status: StrictBool = True

    @model_validator(mode="after")
    def _consistent(self) -> CheckAnswer:
        if self.integrated and not self.exists:
            raise ValueError("an app that does not exist cannot have integrated a scenario")
        return self


class BindAnswer(BaseModel):
    """``erp.binding.bind``: the binding as it now is."""

    model_config = _WIRE
    scenario: ScenarioKey
    appkey: StrictStr
    revision: Annotated[StrictInt, Field(ge=1, le=MAX_REVISION)]


class UnbindAnswer(BaseModel):
    """``erp.binding.unbind``."""

    model_config = _WIRE
    scenario: ScenarioKey
    appkey: StrictStr | None = None
    revision: Annotated[StrictInt, Field(ge=1, le=MAX_REVISION)]


class SelfServiceAnswer(BaseModel):
    """``erp.selfservice.set``."""

    model_config = _WIRE
    buyer_self_service: StrictBool


def _validate(model: type[BaseModel], method: str, body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise MalformedAnswer(f"{method}: unexpected answer: {_reasons(e)}") from None
    except (ValueError, TypeError, RecursionError) as e:  # defensive: nothing but our error leaves here
        raise MalformedAnswer(f"{method}: unexpected answer ({type(e).__name__})") from None


def _reasons(e: ValidationError, most: int = 3) -> str:
    """pydantic's reasons, short: ``bindings.0: should be an object (got 'x')``."""
    out = []
    for err in e.errors(include_url=False)[:most]:
        where = ".".join(str(p) for p in err["loc"]) or "the body"
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {excerpt(repr(got), 40)})"
        msg = re.sub(r" or instance of \w+", "", err["msg"])
        out.append(f"{where}: {msg[:1].lower()}{msg[1:]}{shown}")
    more = e.error_count() - len(out)
    return "; ".join(out) + (f"; and {more} more" if more > 0 else "")


def shop_state(method: str, shop: str, body: dict[str, Any]) -> ShopState:
    """An ``erp.binding.get`` body as the shop's state; it must be about ``shop``."""
    answer: GetAnswer = _validate(GetAnswer, method, body)
    if answer.shop_id != shop:
        raise WrongShop(f"{method}: the platform answered for shop {excerpt(answer.shop_id, 40)!r} when asked for {shop}")
    bindings = {b.scenario: Binding(scenario=b.scenario, appkey=b.appkey, revision=b.revision)
                for b in answer.bindings if b.appkey is not None}
    return ShopState(shop_id=shop, name=answer.shop_name or None, bindings=bindings,
                     buyer_self_service=answer.buyer_self_service, detail_whitelisted=answer.detail_whitelisted)


def app_check(method: str, appkey: str, scenario: Scenario, body: dict[str, Any]) -> AppCheck:
    answer: CheckAnswer = _validate(CheckAnswer, method, body)
    return AppCheck(appkey=appkey, scenario=scenario, exists=answer.exists, integrated=answer.integrated,
                    name=answer.name, detail_whitelisted=answer.detail_whitelisted,
                    syncs_order_status=answer.syncs_order_status)


def confirm_bind(method: str, scenario: Scenario, appkey: str, body: dict[str, Any]) -> Binding:
    """The answer to a bind must name the scenario and appkey asked for, at a revision ≥ 1."""
    answer: BindAnswer = _validate(BindAnswer, method, body)
    if answer.scenario is not scenario or answer.appkey != appkey:
        raise MalformedAnswer(f"{method}: asked to bind {scenario.value} to {appkey}, the platform answered"
                              f" {answer.scenario.value} = {excerpt(answer.appkey, 40)}")
    return Binding(scenario=scenario, appkey=appkey, revision=answer.revision)


def confirm_unbind(method: str, scenario: Scenario, body: dict[str, Any]) -> None:
    answer: UnbindAnswer = _validate(UnbindAnswer, method, body)
    if answer.scenario is not scenario or answer.appkey:
        raise MalformedAnswer(f"{method}: asked to unbind {scenario.value}, the platform answered {answer.scenario.value}"
                              + (f" = {excerpt(answer.appkey, 40)}" if answer.appkey else ""))


def confirm_self_service(method: str, enabled: bool, body: dict[str, Any]) -> None:
    answer: SelfServiceAnswer = _validate(SelfServiceAnswer, method, body)
    if answer.buyer_self_service is not enabled:
        raise MalformedAnswer(f"{method}: asked to set buyer_self_service={str(enabled).lower()}, the platform answered"
                              f" {str(answer.buyer_self_service).lower()}")


# --------------------------------------------------------------------------- messages


def excerpt(text: str | bytes, limit: int = 120) -> str:
    """A short, single-line excerpt of untrusted text for a message (to be masked by the caller)."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def seconds(value: float) -> str:
    """A ban's length for a message (``86400 s``; an absurd one as such)."""
    return f"{value:g} s" if math.isfinite(value) and value < 1e12 else "an unbounded time"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")
