"""The embedded provider: the sandbox platform in-process, no network.

Reads all shops in one query (the sandbox is local), so planning thousands of shops costs
milliseconds; writes go through the same compare-and-set methods the HTTP server serves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ProviderError
from ..model import AppCheck, Binding, Scenario, ShopState
from ..platform import PlatformError, SandboxPlatform
from . import wire
from .base import Provider, RetryPolicy, platform_error, state_from_body


def _wrap(e: PlatformError) -> ProviderError:
    return platform_error(e.code, e.sub_code, e.msg, ban_seconds=e.ban_seconds)


def _state(shop: str, body: dict[str, object]) -> ShopState | ProviderError:
    """One shop of a batch read: its state, or (a malformed body) that shop's error."""
    try:
        return state_from_body(shop, body)
    except ProviderError as e:
        return e


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
        raw = self.platform.get_many(shop_ids)
        return {sid: _wrap(body) if isinstance(body, PlatformError) else _state(sid, body) for sid, body in raw.items()}

    def _read_one(self, shop_id: str) -> ShopState:
        try:
            return state_from_body(shop_id, self.platform.get(shop_id))
        except PlatformError as e:
            raise _wrap(e) from None

    def _list_shops(self) -> list[str]:
        return self.platform.list_shops()

    def _check_app(self, appkey: str, scenario: Scenario) -> AppCheck:
        try:
            body = self.platform.check_app(appkey, scenario.value)
        except PlatformError as e:
            raise _wrap(e) from None
        return wire.app_check("erp.app.check", appkey, scenario, body)

    def _bind(self, shop: str, scenario: Scenario, appkey: str, expected: str | None) -> Binding:
        try:
            body = self.platform.bind(shop, scenario.value, appkey, expected)
        except PlatformError as e:
            raise _wrap(e) from None
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
