"""What the sandbox gateway adds to the platform for fault tests, and what it counts.

``NetworkFaults``: latency for every request, random dropped connections (before the
platform handles a request, or after: the write happened and the client never hears of
it), and targeted drop or stall rules. ``Counters``: every request the gateway saw, so a
test or benchmark can prove that no request was lost or handled twice. Split from
``sandbox_server`` (the gateway itself), which re-exports both.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Phase = Literal["before", "after"]


# --------------------------------------------------------------------------- faults the database cannot inject


@dataclass
class NetworkRule:
    """Drop (``seconds`` None) or stall (``seconds`` set) matching requests, ``times`` times (None: always),
    after letting the first ``skip`` matching requests through."""

    method: str | None = None
    shop: str | None = None
    scenario: str | None = None
    phase: Phase = "before"
    seconds: float | None = None
    times: int | None = 1
    skip: int = 0

    def matches(self, method: str, shop: str | None, scenario: str | None) -> bool:
        return ((self.method is None or self.method == method) and (self.shop is None or self.shop == shop)
                and (self.scenario is None or self.scenario == scenario) and (self.times is None or self.times > 0))


class NetworkFaults:
    """Latency for every request, random drops, and targeted drop/stall rules. Thread-safe."""

    def __init__(self, *, latency_s: float = 0.0, drop_rate: float = 0.0, drop_after_rate: float = 0.0,
                 seed: int | None = None) -> None:
        for name, rate in (("drop_rate", drop_rate), ("drop_after_rate", drop_after_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        self.latency_s = latency_s
        self.drop_rate = drop_rate
        self.drop_after_rate = drop_after_rate
        self._rng = random.Random(seed)
        self._rules: list[NetworkRule] = []
        self._lock = threading.Lock()

    def drop(self, *, method: str | None = None, shop: str | None = None, scenario: str | None = None,
             phase: Phase = "before", times: int | None = 1, skip: int = 0) -> NetworkRule:
        """Drop the connection of matching requests, before or after the platform handles them."""
        return self._add(NetworkRule(method, shop, scenario, phase, None, times, skip))

    def stall(self, seconds: float, *, method: str | None = None, shop: str | None = None,
              scenario: str | None = None, times: int | None = 1, skip: int = 0) -> NetworkRule:
        """Hold matching requests ``seconds`` before handling them (until the server stops)."""
        return self._add(NetworkRule(method, shop, scenario, "before", seconds, times, skip))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _add(self, rule: NetworkRule) -> NetworkRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _take(self, method: str, shop: str | None, scenario: str | None, pred: Callable[[NetworkRule], bool]) -> NetworkRule | None:
        for rule in self._rules:
            if pred(rule) and rule.matches(method, shop, scenario):
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    def delay_for(self, method: str, shop: str | None, scenario: str | None) -> float:
        with self._lock:
            rule = self._take(method, shop, scenario, lambda r: r.seconds is not None)
        return self.latency_s + ((rule.seconds or 0.0) if rule else 0.0)

    def drops(self, phase: Phase, method: str, shop: str | None, scenario: str | None) -> bool:
        with self._lock:
            if self._take(method, shop, scenario, lambda r: r.seconds is None and r.phase == phase):
                return True
            rate = self.drop_rate if phase == "before" else self.drop_after_rate
            return rate > 0 and self._rng.random() < rate


# --------------------------------------------------------------------------- counters


@dataclass
class Counters:
    """What the gateway saw. ``handled`` counts platform calls per method (each one ran
    exactly once on the platform, whether it then succeeded, failed or was dropped after);
    ``refused_again`` counts requests refused by the rate limit whose previous attempt
    (same app, session, method and business parameters) had been refused by it too."""

    received: int = 0
    handled: Counter[str] = field(default_factory=Counter)
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    refused: Counter[int] = field(default_factory=Counter)
    dropped_before: Counter[str] = field(default_factory=Counter)
    dropped_after: Counter[str] = field(default_factory=Counter)
    refused_again: int = 0

    def to_data(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "handled": dict(sorted(self.handled.items())),
            "ok": dict(sorted(self.ok.items())),
            "failed": dict(sorted(self.failed.items())),
            "refused": {str(k): v for k, v in sorted(self.refused.items())},
            "dropped_before": dict(sorted(self.dropped_before.items())),
            "dropped_after": dict(sorted(self.dropped_after.items())),
            "refused_again": self.refused_again,
        }
