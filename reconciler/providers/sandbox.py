"""The embedded provider: the sandbox platform in-process, no network.

Reads all shops in one pass (the sandbox is local): ``SandboxPlatform.read`` gives each shop
as plain tuples, made here into ``ShopState`` and ``Binding`` directly, one shop at a time —
no response bodies and no wire validation, which the ``top`` provider needs for a gateway's
answers and which cost more than the read itself. The database is still outside input: a
value of the wrong type, or a scenario not in ``Scenario``, is that shop's error. Writes go
through the same compare-and-set methods the HTTP server serves.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from ..errors import MalformedAnswer, ProviderError
from ..gcpause import paused_gc
from ..model import AppCheck, Binding, Scenario, ShopState, appkey_problem, new_state, new_state_binding
from ..platform import PlatformError, SandboxPlatform, ShopRow
from ..vocab import excerpt
from .base import Provider, RetryPolicy, platform_error


def _wrap(e: PlatformError) -> ProviderError:
    return platform_error(e.code, e.sub_code, e.msg, ban_seconds=e.ban_seconds)


_SCENARIOS = {s.value: s for s in Scenario}
_SHARED = 4096  # distinct bindings a batch read shares (most shops of an ERP hold the same one)
_NAME_MAX = 1000  # as the wire's answers (``wire.Text``)


def _state(row: ShopRow, shared: dict[tuple[object, object, object], Binding]) -> ShopState | ProviderError:
    """One shop of a batch read: its state, or (a value the wire would refuse too: of the wrong
    type, an unknown scenario, an appkey not of digits, a negative revision) that shop's error.
    ``shared``: the read's bindings so far by their row, so equal ones are one frozen object,
    checked and built once (a row equal to a checked one is valid once its revision is seen to
    be an int: 1.0 == 1)."""
    sid, name, bss, wl, rows = row
    bindings: dict[Scenario, Binding] = {}
    for raw in rows:
        binding = shared.get(raw)
        if binding is None or type(raw[2]) is not int:
            sc, key, rev = raw
            scenario = _SCENARIOS.get(sc) if type(sc) is str else None
            if (scenario is None or type(key) is not str or appkey_problem(key, None) is not None
                    or type(rev) is not int or rev < 0):
                return _malformed(sid, _binding_problem(scenario, sc, key, rev))
            binding = new_state_binding(scenario, key, rev)
            if len(shared) < _SHARED:
                shared[raw] = binding
        bindings[binding.scenario] = binding
    if len(bindings) < len(rows):
        return _malformed(sid, "two bindings for one scenario")
    if name is not None and (type(name) is not str or len(name) > _NAME_MAX):
        return _malformed(sid, f"the shop's name is {f'{len(name):,} characters long' if isinstance(name, str) else 'not text'}")
    return new_state(sid, name or None, bindings, bss, wl)


def _binding_problem(scenario: Scenario | None, sc: object, key: object, rev: object) -> str:
    if scenario is None:
        return f"a binding of an unknown scenario {excerpt(str(sc))}"
    if type(key) is not str:
        return f"{scenario.value}: the appkey is {type(key).__name__}, not text"
    if why := appkey_problem(key, None):
        return f"{scenario.value}: {why}"
    return f"{scenario.value}: the revision is {excerpt(str(rev))}, not a whole number ≥ 0"


def _malformed(shop: str, problem: str) -> ProviderError:
    return MalformedAnswer(f"erp.binding.get: shop {shop} in the sandbox database: {problem}")


def _app_check(appkey: str, scenario: Scenario, body: dict[str, object]) -> AppCheck:
    """The sandbox's ``erp.app.check`` answer, checked as the wire's (``wire.CheckAnswer``)."""
    exists, integrated, name = body.get("exists"), body.get("integrated"), body.get("name")
    whitelisted, syncs = body.get("detail_whitelisted", False), body.get("syncs_order_status", True)
    if (type(exists) is not bool or type(integrated) is not bool or type(whitelisted) is not bool or type(syncs) is not bool
            or (name is not None and (type(name) is not str or len(name) > _NAME_MAX)) or (integrated and not exists)):
        raise MalformedAnswer(f"erp.app.check: appkey {excerpt(appkey, 40)} in the sandbox database: an answer the wire"
                              f" refuses ({excerpt(repr(body), 200)})")
    return AppCheck(appkey=appkey, scenario=scenario, exists=exists, integrated=integrated, name=name,
                    detail_whitelisted=whitelisted, syncs_order_status=syncs)


class SandboxProvider(Provider):
    name = "sandbox"

    def __init__(self, platform: SandboxPlatform, *, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(retry=retry, sleep=sleep)
        self.platform = platform

    @property
    def path(self) -> Path:
        return self.platform.path

    def _read(self, shop_ids: list[str]) -> dict[str, ShopState | ProviderError]:
        shared: dict[tuple[object, object, object], Binding] = {}
        with paused_gc(), closing(self.platform.read(shop_ids)) as rows:
            return {sid: _wrap(row) if isinstance(row, PlatformError) else _state(row, shared) for sid, row in rows}

    def _read_one(self, shop_id: str) -> ShopState:
        state = self._read([shop_id])[shop_id]
        if isinstance(state, ProviderError):
            raise state
        return state

    def _list_shops(self) -> list[str]:
        return self.platform.list_shops()

    def _check_app(self, appkey: str, scenario: Scenario) -> AppCheck:
        try:
            body = self.platform.check_app(appkey, scenario.value)
        except PlatformError as e:
            raise _wrap(e) from None
        return _app_check(appkey, scenario, body)

    def _bind(self, shop: str, scenario: Scenario, appkey: str, expected: str | None) -> Binding:
        try:
            body = self.platform.bind(shop, scenario.value, appkey, expected)
        except PlatformError as e:
            raise _wrap(e) from None
        from . import wire  # (pydantic: writes are checked as over HTTP)

        return wire.confirm_bind("erp.binding.bind", scenario, appkey, body)

    def _unbind(self, shop: str, scenario: Scenario, expected: str) -> None:
        try:
            self.platform.unbind(shop, scenario.value, expected)
        except PlatformError as e:
            raise _wrap(e) from None

    def _set_self_service(self, shop: str, enabled: bool, expected: bool) -> None:
        try:
            self.platform.set_self_service(shop, enabled, expected)
        except PlatformError as e:
            raise _wrap(e) from None

    def close(self) -> None:
        self.platform.close()
