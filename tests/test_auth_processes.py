"""``auth refresh`` as real processes against ``sandbox serve``: two at once over the same shops,
and one killed (SIGKILL) in the middle of 200 renewals. On SQLite and PostgreSQL.

The gateway runs in this process (its counters say how many refreshes the platform handled);
each request takes ``LATENCY_S`` there, so a run of 200 renewals lasts long enough to overlap
another or to be killed half-way — what the tests wait for is counted, never timed. The
tokens end two days after the real now and the window is seven days: days of margin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from authkit import KEY_ENV, StoreAgency, session, to_import
from clikit import Proc, reap, run, wait_for

from reconciler.auth import keygen
from reconciler.platform import TOKEN_REFRESH
from reconciler.sandbox_server import NetworkFaults

N = 200
LATENCY_S = 0.02
PARALLELISM = 4
DAY = timedelta(days=1)


@pytest.fixture
def many(tmp_path: Path, state_url: str) -> Iterator[StoreAgency]:
    """200 shops whose tokens end in two days (refreshable), imported into the store."""
    a = StoreAgency(tmp_path / "configs", state_url, keygen(), top_options={"parallelism": PARALLELISM},
                    server_options={"faults": NetworkFaults(latency_s=LATENCY_S)})
    try:
        t0 = datetime.now(UTC).replace(microsecond=0)
        ids = [str(100001 + i) for i in range(N)]
        world = {s: {"session": session(t0, s, ends_in=2 * DAY, refresh_ends_in=300 * DAY)} for s in ids}
        a.load(world)
        a.shops_config(ids)
        a.import_tokens(to_import(world))
        yield a
    finally:
        reap()
        a.close()


def _handled(a: StoreAgency) -> int:
    assert a.server is not None
    return a.server.counters().handled[TOKEN_REFRESH]


def _working(a: StoreAgency) -> dict[str, bool]:
    """Shop → whether the token stored for it is accepted by the platform now."""
    p = a.platform()
    try:
        return {shop: p.shop_for_session(access) == shop for shop, (access, _) in a.secrets().items()}
    finally:
        p.close()


def _outcomes(text: str) -> dict[str, str]:
    """Shop → what ``auth refresh`` said of it (renewed, renewed-elsewhere, dead, failed…)."""
    out = {}
    for shop, rest in re.findall(r"^(\d{6}): (.*)$", text, flags=re.MULTILINE):
        out[shop] = ("renewed" if rest.startswith("renewed,") else "elsewhere" if rest.startswith("renewed by another run")
                     else rest.split(":", 1)[0])
    return out


def test_two_refresh_processes_at_once_renew_each_shop_once(many: StoreAgency, tmp_path: Path) -> None:
    a = many
    env = {KEY_ENV: a.key}
    procs = [Proc(a.dir, "auth", "refresh", env=env, logs=tmp_path / "logs", name=f"refresh-{i}") for i in (1, 2)]
    done = [p.finish(timeout=180) for p in procs]
    for d in done:
        assert d.code == 0, d.text[-3000:]
        assert "invalid-refresh-token" not in d.text and "refused" not in d.text
    said = [_outcomes(d.out) for d in done]
    renewed = [s for o in said for s, what in o.items() if what == "renewed"]
    assert sorted(renewed) == sorted(a.secrets()), "every shop renewed exactly once, by one of the two"
    assert _handled(a) == N, "the platform was asked to renew each shop once: no refresh token spent twice"
    assert a.server is not None and a.server.counters().failed[TOKEN_REFRESH] == 0
    rows = a.rows()
    assert {r.source for r in rows.values()} == {"refresh"} and all(r.claim is None for r in rows.values())
    assert all(_working(a).values())
    r = run(a.dir, "auth", "status", env=env)
    assert r.code == 0, r.text[-2000:]


def test_sigkill_during_refresh_of_200_shops_loses_no_shop(many: StoreAgency, tmp_path: Path) -> None:
    a = many
    env = {KEY_ENV: a.key}
    before = a.secrets()
    victim = Proc(a.dir, "auth", "refresh", env=env, logs=tmp_path / "logs", name="victim")
    wait_for(lambda: _handled(a) >= N // 4 or not victim.alive(), timeout=120, what="a quarter of the renewals")
    assert victim.alive(), "the run ended before it could be killed"
    victim.kill()
    after = a.secrets()
    assert sorted(after) == sorted(before), "no shop lost its row"
    renewed = {s for s in after if after[s] != before[s]}
    assert 0 < len(renewed) < N
    working = _working(a)
    assert all(working.values()), f"shops without a working token: {sorted(s for s, ok in working.items() if not ok)}"
    # the next run takes over the dead run's claims at once and renews the rest; a shop whose
    # refresh token the killed run had spent without storing the answer keeps its working token
    # and is reported for re-authorization
    again = run(a.dir, "auth", "refresh", env=env, timeout=180)
    assert again.code in (0, 3), again.text[-3000:]
    said = _outcomes(again.out)
    lost = sorted(s for s, what in said.items() if what != "renewed")
    assert len(lost) <= PARALLELISM, f"more shops than renewals under way at the kill: {lost}"
    for s in lost:
        assert said[s] == "dead" and "the platform refused the refresh token" in again.out
    assert "another process" not in again.out
    assert all(_working(a).values())
    assert _handled(a) <= N + PARALLELISM
