"""Run locks and the apply journal of the state store, on SQLite and on PostgreSQL.

Two ``Store`` objects on one URL stand for two reconciler processes; a thread stands for a
concurrent apply. Waits are bounded by events and join timeouts, never by sleeping."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from statekit import HOST, FakeClock, dead_pid, opened, start

from reconciler.state import Locked, LockLost, StateError, Store, Takeover

SHOPS = [str(100001 + i) for i in range(6)]


@pytest.fixture
def two(state_url: str, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two stores on one URL: two processes."""
    a, b = opened(state_url, tmp_path), opened(state_url, tmp_path)
    yield a, b
    a.close()
    b.close()


def test_a_held_shop_is_refused_naming_the_holder(two: tuple[Store, Store]) -> None:
    a, b = two
    ra = start(a, actor="alice")
    rb = start(b, actor="bob", git_commit="fedcba9876543210")
    assert a.acquire(ra, ["100001", "100002"], timeout_s=0, lease_s=60) == []
    t0 = time.monotonic()
    with pytest.raises(Locked) as e:
        b.acquire(rb, ["100002", "100003"], timeout_s=0, lease_s=60)
    assert time.monotonic() - t0 < 5, "timeout 0 refuses at once"
    text = str(e.value)
    assert "locked" in text and f"run {ra}" in text and "alice" in text and HOST in text
    assert "since " in text and "git 0123456789" in text and "1 shop(s): 100002" in text
    assert text.splitlines()[0] == "1 of the 2 shop(s) to apply are locked by another run:"
    assert [(h.run, h.shops) for h in e.value.holders] == [(ra, ("100002",))]
    # all or nothing: bob took neither shop
    assert [(lk.run, lk.shops) for lk in a.locks()] == [(ra, ("100001", "100002"))]


def test_disjoint_shops_are_locked_side_by_side(two: tuple[Store, Store]) -> None:
    a, b = two
    ra, rb = start(a), start(b, actor="bob")
    a.acquire(ra, ["100001", "100002"], timeout_s=0, lease_s=60)
    b.acquire(rb, ["100003"], timeout_s=0, lease_s=60)
    assert [(lk.run, lk.shops) for lk in b.locks()] == [(ra, ("100001", "100002")), (rb, ("100003",))]
    lock = b.locks()[1]
    assert (lock.actor, lock.host, lock.pid) == ("bob", HOST, os.getpid())
    assert lock.to_data() == {"run": str(rb), "actor": "bob", "host": HOST, "pid": os.getpid(), "since": lock.since,
                              "shops": ["100003"]}


def test_a_waiter_gets_the_shops_when_the_holder_releases(two: tuple[Store, Store]) -> None:
    a, b = two
    ra, rb = start(a), start(b, actor="bob")
    a.acquire(ra, ["100001"], timeout_s=0, lease_s=60)
    waiting = threading.Event()
    told: list[Locked] = []
    result: list[object] = []

    def on_wait(e: Locked) -> None:
        told.append(e)
        waiting.set()

    def wait_for_it() -> None:
        t0 = time.monotonic()
        try:
            result.append(b.acquire(rb, ["100001", "100002"], timeout_s=30, lease_s=60, on_wait=on_wait))
        except Exception as e:  # reported below
            result.append(e)
        result.append(time.monotonic() - t0)

    t = threading.Thread(target=wait_for_it)
    t.start()
    assert waiting.wait(timeout=20), "the waiter never started waiting"
    assert [h.run for h in told[0].holders] == [ra]
    assert a.release(ra) == ["100001"]
    t.join(timeout=20)
    assert not t.is_alive()
    assert result[0] == [], result
    assert isinstance(result[1], float) and result[1] < 15, "woken by the release, not by its deadline"
    assert [(lk.run, lk.shops) for lk in a.locks()] == [(rb, ("100001", "100002"))]


_HOLDER = """
import os, socket, sys
from pathlib import Path
from reconciler.state import open_store
store = open_store(sys.argv[1], config_dir=Path(sys.argv[2]))
run = store.start_run(actor="other-process", git_commit=None, git_branch=None, checksum=None,
                      host=socket.gethostname(), pid=os.getpid(), lease_s=60)
store.acquire(run, ["100001"], timeout_s=0, lease_s=60)
print(run, flush=True)
sys.stdin.readline()
store.release(run)
store.finish_run(run, exit_code=0)
store.close()
"""


def test_a_waiter_gets_the_shops_another_process_releases(state_url: str, tmp_path: Path) -> None:
    s = opened(state_url, tmp_path)
    with subprocess.Popen([sys.executable, "-c", _HOLDER, state_url, str(tmp_path)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        killer = threading.Timer(90, holder.kill)  # bounds every read below
        killer.start()
        try:
            assert holder.stdout is not None and holder.stdin is not None
            other = int(holder.stdout.readline())
            with pytest.raises(StateError, match=f"run {other} is alive"):
                s.unlock(other)
            mine = start(s)
            waiting = threading.Event()
            result: list[object] = []
            t = threading.Thread(target=lambda: result.append(
                s.acquire(mine, ["100001"], timeout_s=60, lease_s=60, on_wait=lambda e: waiting.set())))
            t.start()
            assert waiting.wait(timeout=30)
            holder.stdin.write("release\n")
            holder.stdin.flush()
            t.join(timeout=30)
            assert result == [[]]
            assert holder.wait(timeout=30) == 0
            assert [r.status for r in s.runs([other, mine])] == ["finished", "running"]
        finally:
            killer.cancel()
            holder.kill()
            s.close()


def test_waiting_times_out(two: tuple[Store, Store]) -> None:
    a, b = two
    ra, rb = start(a), start(b, actor="bob")
    a.acquire(ra, ["100001"], timeout_s=0, lease_s=60)
    t0 = time.monotonic()
    with pytest.raises(Locked, match=r"locked by another run \(waited 1s\)"):
        b.acquire(rb, ["100001"], timeout_s=0.4, lease_s=60)
    assert 0.4 <= time.monotonic() - t0 < 10


def test_an_expired_lease_is_taken_over(state_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    a, b = opened(state_url, tmp_path, clock=clock), opened(state_url, tmp_path, clock=clock)
    try:
        ra = start(a, host="ci-runner-7", pid=1)
        rb = start(b, actor="bob")
        a.acquire(ra, ["100001", "100002"], timeout_s=0, lease_s=60)
        clock.advance(30)
        with pytest.raises(Locked):
            b.acquire(rb, ["100001"], timeout_s=0, lease_s=60)
        assert a.renew(ra)  # renewing moves the lease end to 03:00:30 + 60 s
        clock.advance(59)
        with pytest.raises(Locked):
            b.acquire(rb, ["100001"], timeout_s=0, lease_s=60)
        clock.advance(2)  # now it stopped renewing for longer than its lease
        takeovers = b.acquire(rb, ["100001", "100003"], timeout_s=0, lease_s=60)
        assert takeovers == [Takeover(run=ra, actor="alice", host="ci-runner-7", shops=("100001",),
                                      expired_at="2024-05-01T03:01:30+00:00")]
        assert takeovers[0].message() == (f"taking over 1 shop(s) from run {ra} (alice on ci-runner-7), whose lease"
                                          " expired at 2024-05-01T03:01:30+00:00")
        assert [r.status for r in b.runs([ra, rb])] == ["interrupted", "running"]
        assert not a.renew(ra), "its locks are gone"
        with pytest.raises(LockLost):
            a.intent(ra, "100002", [{"scenario": "order_status"}])
        assert [(lk.run, lk.shops) for lk in b.locks()] == [(rb, ("100001", "100003"))]
    finally:
        a.close()
        b.close()


def test_unlock_rules(state_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    s = opened(state_url, tmp_path, clock=clock)
    try:
        with pytest.raises(StateError, match="no run 999"):
            s.unlock(999)
        idle = start(s)
        with pytest.raises(StateError, match=f"run {idle} holds no lock"):
            s.unlock(idle)
        alive = start(s)
        s.acquire(alive, ["100001"], timeout_s=0, lease_s=60)
        with pytest.raises(StateError, match=f"run {alive} is alive .*process {os.getpid()} still runs on this host"):
            s.unlock(alive)
        assert [lk.run for lk in s.locks()] == [alive]
        assert s.unlock(alive, force=True) == ["100001"]
        assert s.locks() == [] and s.runs([alive])[0].status == "interrupted"
        assert not s.renew(alive)

        dead = start(s, pid=dead_pid())
        s.acquire(dead, ["100002", "100003"], timeout_s=0, lease_s=60)
        assert s.unlock(dead) == ["100002", "100003"]
        assert s.runs([dead])[0].status == "interrupted"

        far = start(s, host="ci-runner-7", pid=1)
        s.acquire(far, ["100004"], timeout_s=0, lease_s=60)
        with pytest.raises(StateError, match="its lease on ci-runner-7 runs until"):
            s.unlock(far)
        clock.advance(61)
        assert s.unlock(far) == ["100004"]
    finally:
        s.close()


def test_the_keeper_notices_lost_locks(two: tuple[Store, Store]) -> None:
    store = two[0]
    run = start(store)
    store.acquire(run, ["100001"], timeout_s=0, lease_s=60)
    with store.keeper(run, 0.3) as keeper:
        store.unlock(run, force=True)
        assert keeper.lost.wait(timeout=20)
        assert keeper.error is not None and "taken over or unlocked" in keeper.error


def test_finishing_a_run_releases_its_locks(two: tuple[Store, Store]) -> None:
    a, b = two
    ra, rb = start(a), start(b)
    a.acquire(ra, ["100001"], timeout_s=0, lease_s=60)
    a.finish_run(ra, exit_code=0)
    assert b.acquire(rb, ["100001"], timeout_s=0, lease_s=60) == []
    with pytest.raises(LockLost):
        a.acquire(ra, ["100002"], timeout_s=0, lease_s=60)


def test_the_journal_names_what_an_interrupted_run_left(two: tuple[Store, Store]) -> None:
    a, b = two
    change = {"shop": "100001", "scenario": "order_status", "action": "bind", "after": {"appkey": "21345678"}}
    crashed = start(a, pid=dead_pid(), actor="carol")
    a.acquire(crashed, ["100001", "100002"], timeout_s=0, lease_s=60)
    a.intent(crashed, "100001", [change])
    a.intent(crashed, "100002", [])
    a.shop_done(crashed, "100002", "applied")
    running = start(b)
    b.acquire(running, ["100003"], timeout_s=0, lease_s=60)
    b.intent(running, "100003", [change])  # alive: not interrupted
    finished = start(b)
    b.acquire(finished, ["100004"], timeout_s=0, lease_s=60)
    b.intent(finished, "100004", [change])
    b.shop_done(finished, "100004", "failed")
    assert b.finish_run(finished, exit_code=3) == []

    found = b.interrupted_shops()
    assert list(found) == ["100001"]
    got = found["100001"]
    assert (got.run, got.actor, got.changes) == (crashed, "carol", (change,))
    assert got.run_time == a.runs([crashed])[0].time
    assert b.interrupted_shops(["100002", "100003"]) == {}

    with pytest.raises(LockLost):  # the crashed run's locks still hold the shop
        b.intent(running, "100001", [change])
    b.unlock(crashed)
    later = start(b)
    b.acquire(later, ["100001"], timeout_s=0, lease_s=60)
    b.intent(later, "100001", [])  # nothing left to do there: clear it
    b.shop_done(later, "100001", "nothing-to-do")
    assert b.interrupted_shops() == {}


def test_eight_threads_never_share_a_shop(state_url: str, tmp_path: Path) -> None:
    stores = [opened(state_url, tmp_path), opened(state_url, tmp_path)]
    held: set[str] = set()
    guard = threading.Lock()
    errors: list[BaseException] = []
    done: list[int] = []

    def worker(n: int) -> None:
        rng = random.Random(n)
        s = stores[n % 2]
        try:
            for _ in range(5):
                shops = rng.sample(SHOPS, rng.randint(1, 3))
                run = start(s, actor=f"worker-{n}")
                s.acquire(run, shops, timeout_s=60, lease_s=60)
                with guard:
                    assert not held & set(shops), f"{held & set(shops)} held twice"
                    held.update(shops)
                mine = [lk for lk in s.locks() if lk.run == run]
                assert [lk.shops for lk in mine] == [tuple(sorted(shops))]
                with guard:
                    held.difference_update(shops)
                s.release(run)
                s.finish_run(run, exit_code=0)
            done.append(n)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert sorted(done) == list(range(8))
        assert stores[0].locks() == []
        assert {r.status for r in stores[0].runs()} == {"finished"} and len(stores[0].runs()) == 40
    finally:
        for s in stores:
            s.close()
