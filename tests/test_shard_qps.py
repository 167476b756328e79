"""N shards planning at once against one app's limit stay under it together: with ``--shard K/N``
each process sends 1/N of ``provider.qps`` (``--qps`` overrides it, with a warning when the N
shards would then be over the limit), and N buckets started at once hold a tenth of a second
of the app's limit between them, not N full ones.

The end-to-end test runs the real ``reconciler sandbox serve --qps Q`` and N real
``reconciler plan --shard K/N`` processes at once, and asks the server whether it refused
anything for the rate limit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from reconciler.cli.common import run_qps
from reconciler.connect import read_world
from reconciler.platform import SandboxPlatform
from reconciler.ratelimit import ClientLimiter, Share
from reconciler.shard import Shard

APP_KEY, SECRET, SECRET_ENV = "30000001", "s3cret-for-shards", "RECONCILER_APP_SECRET"
ERP_KEY = "21345678"


# --------------------------------------------------------------------------- the arithmetic


class Frozen:
    """A clock that stands still until told: what a limiter admits "at once"."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_shares_of_n_shards_add_up_to_the_app_limit() -> None:
    assert Share(200, 4).qps == 50
    assert Share(200, 1).qps == 200
    for n in (1, 2, 3, 7, 64, 1024):
        share = Share(200, n)
        assert not share.over, n  # 200 / 3 * 3 is 200.00000000000003: not over
        assert share.together == pytest.approx(200)
    assert Share(200, 4, explicit=50).over is False
    assert Share(200, 4, explicit=60).over is True and Share(200, 4, explicit=60).together == 240
    assert Share(200, 1, explicit=300).over is True
    for bad in ((0, 1, None), (200, 0, None), (200, 2, 0.0)):
        with pytest.raises(ValueError):
            Share(*bad)


def _at_once(limiter: ClientLimiter, clock: Frozen) -> int:
    """How many requests the limiter lets through without the clock moving."""
    n = 0
    while limiter._bucket.take(clock()) == 0.0:
        n += 1
    return n


@pytest.mark.parametrize(("app_qps", "n"), [(200, 1), (200, 4), (30, 3), (64, 8), (10, 20)])
def test_n_buckets_started_at_once_hold_a_tenth_of_a_second_of_the_limit_between_them(app_qps: float, n: int) -> None:
    clock = Frozen()
    limiters = [ClientLimiter(Share(app_qps, n).qps, clock=clock) for _ in range(n)]
    first = sum(_at_once(lim, clock) for lim in limiters)
    # The gateway's burst is one second's worth: N full buckets of max(1, qps/10) each would be
    # N requests at once even when N is over the app's limit (10 QPS, 20 shards).
    assert first <= max(1, app_qps / 10)
    # … and each then paces at its share: after one second, together at most the limit more.
    clock.now = 1.0
    assert sum(_at_once(lim, clock) for lim in limiters) <= app_qps


def test_a_limiter_still_sends_its_first_request_at_once_from_ten_requests_a_second() -> None:
    clock = Frozen()
    assert _at_once(ClientLimiter(10, clock=clock), clock) == 1
    assert _at_once(ClientLimiter(200, clock=clock), clock) == 20


def test_what_a_shard_uses_is_said_and_an_explicit_rate_over_the_limit_warned(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_qps(200, Shard(2, 4), None) == 50
    assert capsys.readouterr().err == "shard 2/4: 50 of the app's 200 requests/s (provider.qps / 4)\n"
    assert run_qps(200, Shard(1, 3), None) == pytest.approx(66.67, abs=0.01)
    assert capsys.readouterr().err == "shard 1/3: 66.67 of the app's 200 requests/s (provider.qps / 3)\n"
    assert run_qps(200, None, None) == 200
    assert capsys.readouterr().err == ""

    assert run_qps(200, Shard(1, 4), 40) == 40  # under the limit together: said, not warned
    assert capsys.readouterr().err == "shard 1/4: 40 of the app's 200 requests/s (--qps)\n"
    assert run_qps(200, Shard(1, 4), 60) == 60
    out = capsys.readouterr().err.splitlines()
    assert out[0] == "shard 1/4: 60 of the app's 200 requests/s (--qps)"
    assert out[1].startswith("Warning: --qps 60 for each of 4 shards is 240 requests/s together, over the app's 200"
                             " requests/s (provider.qps): the platform will refuse requests (code 7)")
    assert out[1].endswith("leave out --qps to give each shard 1/4 (50)")
    assert run_qps(200, None, 300) == 300
    warning = capsys.readouterr().err
    assert warning.startswith("Warning: --qps 300 is over the app's 200 requests/s (provider.qps)")
    assert run_qps(200, None, 100) == 100  # a slower run than configured: nothing to say
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- real processes


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", *args]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str, int]]:
    """A config dir of 60 unbound shops and ``sandbox serve --qps 30`` serving them (a process)."""
    qps, shops = 30, [str(300001 + i) for i in range(60)]
    cfg = tmp_path / "configs"
    (cfg / "shops").mkdir(parents=True)
    world = {"app": {"app_key": APP_KEY, "app_secret": SECRET},
             "apps": {ERP_KEY: {"name": "聚水潭", "scenarios": ["intercept_shipment"]}},
             "shops": {s: {"session": f"sess-{s}"} for s in shops}}
    (tmp_path / "world.yaml").write_text(yaml.safe_dump(world, allow_unicode=True), encoding="utf-8")
    db = tmp_path / "sandbox.db"
    platform = SandboxPlatform(db)
    try:
        platform.load_world(read_world(tmp_path / "world.yaml"))
    finally:
        platform.close()
    (cfg / "erps.yaml").write_text(f'erps:\n  jushuitan: {{name: 聚水潭, appkey: "{ERP_KEY}"}}\n', encoding="utf-8")
    (cfg / "shops" / "a.yaml").write_text("shops:\n" + "".join(
        f'  - id: "{s}"\n    erp: jushuitan\n    scenarios: {{intercept_shipment: {{}}}}\n' for s in shops), encoding="utf-8")
    (cfg / "sessions.yaml").write_text("".join(f'"{s}": sess-{s}\n' for s in shops), encoding="utf-8")
    server = subprocess.Popen(_cli("-C", str(cfg), "sandbox", "serve", "--port", "0", "--qps", str(qps), "--db", str(db)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # printed once the socket listens
        m = re.search(r"on (http://127\.0\.0\.1:\d+/router/rest) \(60 shop\(s\), app key 30000001, 30 QPS per app\)", line)
        assert m, line + (server.stderr.read() if server.stderr else "")
        (cfg / "reconciler.yaml").write_text(
            f"provider: {{kind: top, url: '{m.group(1)}', app_key: '{APP_KEY}', app_secret_env: {SECRET_ENV},"
            f" sessions_file: sessions.yaml, qps: {qps}, parallelism: 4, timeout_s: 10}}\n"
            "apply: {retries: 3, backoff_s: 0.1, max_backoff_s: 1}\n", encoding="utf-8")
        yield cfg, m.group(1), qps
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def _stats(url: str) -> dict[str, object]:
    data: dict[str, object] = httpx.get(url.replace("/router/rest", "/stats"), timeout=10).json()
    return data


def test_three_shards_at_once_stay_under_the_apps_limit_together(served: tuple[Path, str, int]) -> None:
    cfg, url, qps = served
    env = {**os.environ, SECRET_ENV: SECRET}
    env.pop("RECONCILER_QPS", None)
    procs = [subprocess.Popen(_cli("-C", str(cfg), "plan", "--shard", f"{k}/3", "--format", "json", "--detailed-exitcode"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for k in (1, 2, 3)]
    outs = [p.communicate(timeout=60) for p in procs]
    planned: list[str] = []
    for k, (p, (out, err)) in enumerate(zip(procs, outs, strict=True), start=1):
        assert p.returncode == 2, err  # CONTRACT: --detailed-exitcode, changes pending
        assert f"shard {k}/3: {qps // 3} of the app's {qps} requests/s (provider.qps / 3)" in err
        assert "Warning" not in err, err
        data = json.loads(out)
        assert data["problems"] == []
        assert sorted(c["shop"] for c in data["changes"]) == sorted(data["shops"])  # one bind per shop
        planned += data["shops"]
    assert sorted(planned) == [str(300001 + i) for i in range(60)]  # every shop planned, by exactly one shard
    stats = _stats(url)
    assert stats["refused"] == {}, stats  # no request over the app's limit (code 7)
    handled = stats["handled"]
    assert isinstance(handled, dict)
    assert handled["erp.binding.get"] == 60  # each shop read once
    assert stats["received"] == sum(handled.values())  # and nothing else refused or dropped
    assert stats["failed"] == {} and stats["dropped_before"] == {} and stats["dropped_after"] == {}


def test_an_explicit_rate_for_a_shard_is_used_and_warned_over_the_limit(served: tuple[Path, str, int]) -> None:
    cfg, _, _ = served
    env = {**os.environ, SECRET_ENV: SECRET}
    env.pop("RECONCILER_QPS", None)
    r = subprocess.run(_cli("-C", str(cfg), "plan", "--shard", "2/3", "--qps", "25", "--detailed-exitcode"),
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "shard 2/3: 25 of the app's 30 requests/s (--qps)" in r.stderr
    assert "Warning: --qps 25 for each of 3 shards is 75 requests/s together, over the app's 30 requests/s" in r.stderr
    r = subprocess.run(_cli("-C", str(cfg), "plan", "--shard", "2/3", "--detailed-exitcode"),
                       capture_output=True, text=True, env={**env, "RECONCILER_QPS": "10"}, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "shard 2/3: 10 of the app's 30 requests/s (--qps)" in r.stderr and "Warning" not in r.stderr
    # drift (and apply) take the same share
    r = subprocess.run(_cli("-C", str(cfg), "drift", "--shard", "3/3"), capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stderr  # CONTRACT: drift found (every shop is unbound)
    assert "shard 3/3: 10 of the app's 30 requests/s (provider.qps / 3)" in r.stderr
