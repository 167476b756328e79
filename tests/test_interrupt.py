"""Ctrl-C / SIGTERM during apply: shops under way finish (all or nothing), no new one starts."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from conftest import Agency

from reconciler.apply import apply_plan, make_plan
from reconciler.cli.common import graceful_interrupt
from reconciler.config import load_config
from reconciler.connect import open_provider
from reconciler.plan import Change

OLD, NEW = "31415926", "21345678"
ALL = ("intercept_shipment", "modify_address", "order_status")
SHOPS = ("100001", "100002", "100003")


def test_stop_lets_the_shop_under_way_finish_and_starts_no_other(agency: Agency) -> None:
    agency.shops("shops:\n" + "".join(
        f'  - id: "{s}"\n    erp: jushuitan\n    scenarios: {{intercept_shipment: {{}}, modify_address: {{}}, order_status: {{}}}}\n'
        for s in SHOPS))
    agency.world({s: {"bindings": dict.fromkeys(ALL, OLD)} for s in SHOPS})
    assert agency.run("plan").exit_code == 0  # the world is loaded on first use
    config = load_config(agency.dir)
    provider = open_provider(config.settings, config.dir)
    stop = threading.Event()
    seen: list[tuple[str, str]] = []

    def record(*, change: Change, outcome: str, error: str | None) -> None:
        seen.append((change.shop, outcome))
        stop.set()  # "Ctrl-C" right after the first write of the first shop

    try:
        result = apply_plan(make_plan(config.desired(), provider, force=True), provider, record=record, stop=stop)
    finally:
        provider.close()
    assert agency.bindings("100001") == dict.fromkeys(ALL, NEW)  # finished whole, not split
    assert agency.bindings("100002") == dict.fromkeys(ALL, OLD)
    assert agency.bindings("100003") == dict.fromkeys(ALL, OLD)
    assert result.not_started == ["100002", "100003"]
    assert result.exit_code == 3
    assert seen == [("100001", "applied")] * 3


def test_first_signal_sets_stop_and_the_second_hurries_then_exits_after_the_block(tmp_path: Path) -> None:
    """The second signal never raises in the middle of the work (a shop would be left split):
    the block runs to its end, the open providers are told to hurry, and only then the
    interrupt is raised (the CLI's exit 130). Later signals change nothing more."""
    from reconciler.cli import common

    class Spy:
        hurried = 0

        def hurry(self) -> None:
            self.hurried += 1

    spy = Spy()
    common._OPEN.add(spy)  # type: ignore[arg-type]
    stop = threading.Event()
    before: Any = signal.getsignal(signal.SIGTERM)
    finished = False
    try:
        with graceful_interrupt(stop):
            signal.raise_signal(signal.SIGTERM)
            assert stop.is_set()
            signal.raise_signal(signal.SIGINT)   # no KeyboardInterrupt here…
            signal.raise_signal(signal.SIGTERM)
            finished = True
    except KeyboardInterrupt:
        interrupted = True                       # …but after the block
    else:
        interrupted = False
    finally:
        common._OPEN.discard(spy)  # type: ignore[arg-type]
    assert finished and interrupted
    assert spy.hurried == 1   # by the second signal only
    assert signal.getsignal(signal.SIGTERM) is before


def test_one_signal_lets_the_block_end_normally() -> None:
    stop = threading.Event()
    with graceful_interrupt(stop):
        signal.raise_signal(signal.SIGINT)
    assert stop.is_set()
