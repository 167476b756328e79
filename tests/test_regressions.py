"""Regressions found while writing tests: a fault's `times` through dump/load, a failed batch
read retried with its wait, the update's why pointing at the buyer_self_service line."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import main
from reconciler.platform import SandboxPlatform, World
from reconciler.providers.base import RetryPolicy
from reconciler.providers.sandbox import SandboxProvider


def test_dump_then_load_keeps_an_always_failing_fault(tmp_path: Path) -> None:
    """dump_world writes `times: null`: omitted, it would read back as 1 (fail once)."""
    w = {"apps": {}, "shops": {"1": {}}, "faults": [{"operation": "bind", "error": "isp.unknown-error", "times": None}]}
    a, b = SandboxPlatform(tmp_path / "a.db"), SandboxPlatform(tmp_path / "b.db")
    try:
        a.load_world(World.model_validate(w))
        dumped = a.dump_world(include_secrets=True)
        b.load_world(World.model_validate(dumped))
        assert b.dump_world(include_secrets=True) == dumped
    finally:
        a.close()
        b.close()


def _provider(tmp_path: Path, fault: dict[str, object], retries: int = 2) -> tuple[SandboxProvider, list[float]]:
    p = SandboxPlatform(tmp_path / "s.db")
    p.load_world(World.model_validate({"apps": {}, "shops": {"100001": {}}, "faults": [fault]}))
    waits: list[float] = []
    return SandboxProvider(p, retry=RetryPolicy(retries=retries, backoff_s=1, max_backoff_s=10), sleep=waits.append), waits


def test_a_banned_read_waits_out_the_ban_before_retrying(tmp_path: Path) -> None:
    """A shop whose batch read failed retryably waits (here: the ban's seconds) before its retry."""
    prov, waits = _provider(tmp_path, {"operation": "get", "error": "isp.call-limited", "ban_seconds": 3, "times": 1})
    try:
        assert not isinstance(prov.read(["100001"])["100001"], Exception)
        assert waits == [3]
    finally:
        prov.close()


def test_a_failing_read_is_tried_retries_plus_one_times(tmp_path: Path) -> None:
    """The batch attempt counts: retries + 1 tries in all, not retries + 2."""
    prov, waits = _provider(tmp_path, {"operation": "get", "error": "isp.unknown-error", "times": 10}, retries=2)
    try:
        assert isinstance(prov.read(["100001"])["100001"], Exception)
        assert prov.platform.dump_world()["faults"][0]["times"] == 7   # 3 tries (1 + 2 retries)
        assert len(waits) == 2
    finally:
        prov.close()


def test_update_reason_points_at_the_buyer_self_service_line(tmp_path: Path) -> None:
    """The update's reason and source name the line that sets buyer_self_service, not the erp: line."""
    d = tmp_path / "c"
    (d / "shops").mkdir(parents=True)
    (d / "erps.yaml").write_text('erps:\n  jushuitan: {appkey: "21345678"}\n')
    (d / "shops" / "a.yaml").write_text(
        'shops:\n  - id: "100001"\n    erp: jushuitan\n    scenarios:\n      modify_address: {buyer_self_service: true}\n')
    (d / "w.yaml").write_text('apps: {"21345678": {scenarios: [modify_address]}}\n'
                              'shops: {"100001": {bindings: {modify_address: "21345678"}}}\n')
    r = CliRunner().invoke(main, ["-C", str(d), "sandbox", "load", str(d / "w.yaml")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["-C", str(d), "plan", "--format", "json"])
    (change,) = json.loads(r.stdout)["changes"]
    assert change["reason"].startswith(f"config says buyer_self_service: true, {d}/shops/a.yaml:5")  # 3 is `erp:`
    assert change["source"] == f"{d}/shops/a.yaml:5"
