"""Ctrl-C / SIGTERM sent twice (or more) to a real ``reconciler apply`` process: the shop under
way still ends whole — finished, or put back — soon, and the process exits 130.

The gateway (``tests/hostile.py``, an honest ``FakePlatform`` behind it) holds the first
bind's answer until the test has sent its signals and the process has said it heard them:
no timing guess. Afterwards the platform itself is looked at.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clikit import Proc, reap, wait_for
from hostile import FakePlatform, HostileGateway, refused
from test_hostile_gateway import write_agency

OLD, NEW = "31415926", "21345678"
ALL = ("intercept_shipment", "modify_address", "order_status")
SHOPS = ("100001", "100002", "100003")
BIND = "erp.binding.bind"


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    reap()


class HeldGateway:
    """The first bind waits for ``release``; ``fail`` decides what later binds of the first shop answer."""

    def __init__(self, fail: dict[str, Any] | None = None) -> None:
        self.fake = FakePlatform({s: dict.fromkeys(ALL, OLD) for s in SHOPS}, apps=(OLD, NEW))
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.fail = dict(fail or {})   # scenario → an answer to send instead, once (forward binds only)

        def bind(p: dict[str, str], honest: tuple[int, bytes]) -> Any:
            if not self.arrived.is_set():
                self.arrived.set()
                self.release.wait(20)
            return honest

        def before(p: dict[str, str]) -> Any:
            if p["appkey"] == NEW and p["scenario"] in self.fail:
                return self.fail.pop(p["scenario"])
            return scripts[BIND](p)

        scripts = self.fake.scripts({BIND: bind})
        self.gateway = HostileGateway({**scripts, BIND: before})


def start(tmp_path: Path, held: HeldGateway, apply: str) -> Proc:
    cfg = write_agency(tmp_path, held.gateway.url, SHOPS, provider={"parallelism": 1}, apply=apply,
                       scenarios="{intercept_shipment: {}, modify_address: {}, order_status: {}}")
    proc = Proc(cfg, "apply", "--auto-approve", "--force", logs=tmp_path / "logs", name="apply")
    assert held.arrived.wait(20), proc.err_so_far()
    return proc


def signal_and_wait(proc: Proc, signals: tuple[signal.Signals, ...]) -> None:
    """Send each signal once the process has reported the one before (it is then handled)."""
    for n, sig in enumerate(signals, 1):
        proc.popen.send_signal(sig)
        wait_for(lambda n=n: proc.err_so_far().count("received") >= n, timeout=10, what=f"signal {n} handled")


@pytest.mark.parametrize(("signals", "fail", "apply", "first_shop"), [
    ((signal.SIGTERM, signal.SIGTERM), {}, "{retries: 0}", NEW),
    # a retryable failure with a 30 s backoff: hurried, it is retried within 2 s and the shop finishes
    ((signal.SIGINT, signal.SIGINT), {"modify_address": refused(15, "isp.unknown-error", "try again")},
     "{retries: 2, backoff_s: 30, max_backoff_s: 30}", NEW),
    # a write that fails for good: the shop under way is put back whole, at once
    ((signal.SIGTERM, signal.SIGINT, signal.SIGTERM), {"order_status": refused(15, "isv.scenario-not-integrated", "no")},
     "{retries: 0}", OLD),
], ids=["term-term", "int-int-during-backoff", "three-rolled-back"])
def test_a_second_signal_still_leaves_every_shop_whole_and_exits_130(tmp_path: Path, signals: tuple[signal.Signals, ...],
                                                                    fail: dict[str, Any], apply: str, first_shop: str) -> None:
    held = HeldGateway(fail)
    with held.gateway:
        proc = start(tmp_path, held, apply)
        signal_and_wait(proc, signals)
        released = time.monotonic()
        held.release.set()
        done = proc.finish(timeout=20)
        took = time.monotonic() - released
        assert done.code == 130, done.text
        assert "Traceback" not in done.text
        assert "received again: finishing or putting back the shops under way" in done.err
        assert "Interrupted: every shop under way was finished or put back" in done.err
        assert done.err.rstrip().endswith("Interrupted.")
        held_now = held.fake.snapshot()
    assert held_now["100001"] == dict.fromkeys(ALL, first_shop)     # whole: all new, or all as before
    assert held_now["100002"] == held_now["100003"] == dict.fromkeys(ALL, OLD)  # never started
    assert took < 8, took


def test_one_signal_finishes_the_shop_under_way_and_reports_as_usual(tmp_path: Path) -> None:
    held = HeldGateway()
    with held.gateway:
        proc = start(tmp_path, held, "{retries: 0}")
        signal_and_wait(proc, (signal.SIGTERM,))
        held.release.set()
        done = proc.finish(timeout=20)
        assert done.code == 3, done.text
        assert "Traceback" not in done.text and "Interrupted" not in done.err
        assert "Applied 3 change(s) in 1 shop(s)" in done.out, done.out
        held_now = held.fake.snapshot()
    assert held_now["100001"] == dict.fromkeys(ALL, NEW)
    assert held_now["100002"] == held_now["100003"] == dict.fromkeys(ALL, OLD)
