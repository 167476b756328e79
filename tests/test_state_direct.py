"""The journal's hot path (``reconciler.state.direct``), on SQLite and on PostgreSQL: one
connection per thread, kept for the store's life and never shared between threads; a failed
connection replaced; every connection given back on close; the intent and the end written as
before (the lock check, an end without an intent, values that look like SQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from statekit import opened, start

from reconciler.state import LockLost, StateError, Store
from reconciler.vocab import Outcome

THREADS = 6
ROUNDS = 4


@pytest.fixture
def store(state_url: str, tmp_path: Path) -> Iterator[Store]:
    s = opened(state_url, tmp_path)
    yield s
    s.close()


def _kept(store: Store) -> Any:
    """The DBAPI connection the calling thread keeps."""
    return store._kept.get().driver_connection


def _shop_round(store: Store, run: int, shop: str, n: int) -> None:
    change = {"shop": shop, "scenario": "order_status", "action": "bind", "after": {"appkey": str(21345678 + n)}}
    intent = store.intent(run, shop, [change])
    rows = [store.change_row(run, shop=shop, scenario=scenario, action="bind", before={}, after=change["after"],
                             outcome=Outcome.applied) for scenario in ("intercept_shipment", "modify_address", "order_status")]
    store.shop_done(run, shop, "applied", rows, intent=intent)


def test_each_thread_keeps_one_connection_of_its_own(store: Store) -> None:
    shops = [str(100001 + i) for i in range(THREADS)]
    run = start(store)
    store.acquire(run, shops, timeout_s=0, lease_s=60)
    seen: dict[int, list[int]] = {n: [] for n in range(THREADS)}
    conns: dict[int, Any] = {}  # held, so no id is reused while the threads run
    errors: list[BaseException] = []
    all_in = threading.Barrier(THREADS + 1, timeout=60)
    may_end = threading.Event()

    def worker(n: int) -> None:
        try:
            for r in range(ROUNDS):
                _shop_round(store, run, shops[n], r)
                conns[n] = _kept(store)
                seen[n].append(id(conns[n]))
        except BaseException as e:  # reported below
            errors.append(e)
        all_in.wait()
        may_end.wait(timeout=60)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    all_in.wait()
    try:
        assert not errors, errors
        assert all(len(set(ids)) == 1 for ids in seen.values()), "a thread changed connections between transactions"
        assert len({ids[0] for ids in seen.values()}) == THREADS, "two threads shared a connection"
        assert store._kept.held() == THREADS
        assert store._engine.pool.checkedout() == THREADS  # kept between transactions, not given back
    finally:
        may_end.set()
        for t in threads:
            t.join(timeout=60)

    # the threads have ended: the next thread to take a connection gives theirs back to the pool
    out: list[int] = []
    later = threading.Thread(target=lambda: (_shop_round(store, run, shops[0], 99), out.append(store._engine.pool.checkedout())))
    later.start()
    later.join(timeout=60)
    assert out == [1]
    assert store._kept.held() == 1

    entries = store.entries()
    assert len(entries) == (THREADS * ROUNDS + 1) * 3
    assert store.interrupted_shops() == {}
    store.close()
    assert store._kept.held() == 0
    assert store._engine.pool.checkedout() == 0


def test_a_connection_that_failed_is_replaced(pg_url: str, tmp_path: Path) -> None:
    store = opened(pg_url, tmp_path)
    try:
        run = start(store)
        store.acquire(run, ["100001"], timeout_s=0, lease_s=60)
        _shop_round(store, run, "100001", 0)
        first = _kept(store)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [first.info.backend_pid])
        with pytest.raises(StateError) as e:
            _shop_round(store, run, "100001", 1)
        assert "\n" not in str(e.value)
        _shop_round(store, run, "100001", 2)  # a fresh connection
        assert _kept(store) is not first
        assert [x.after for x in store.entries()] == [{"appkey": "21345678"}] * 3 + [{"appkey": "21345680"}] * 3
        assert store.interrupted_shops() == {}
    finally:
        store.close()


def test_the_intent_checks_the_lock_in_its_transaction(store: Store) -> None:
    a, b = start(store, actor="alice"), start(store, actor="bob")
    store.acquire(a, ["100001"], timeout_s=0, lease_s=60)
    change = {"shop": "100001", "scenario": "order_status", "action": "bind"}
    with pytest.raises(LockLost, match=rf"run {b} does not hold the lock of shop 100001 \(run {a} holds it"):
        store.intent(b, "100001", [change])
    with pytest.raises(LockLost, match="nobody holds it"):
        store.intent(b, "100002", [change])
    store.intent(b, "100002", [])  # nothing to change: no lock needed
    store.shop_done(b, "100002", "nothing-to-do")
    store.intent(a, "100001", [change])  # the holder may (and the connection survived the refusals)
    assert store.interrupted_shops() == {}


def test_an_end_without_an_intent_completes_the_shop(store: Store) -> None:
    run = start(store)
    store.acquire(run, ["100001"], timeout_s=0, lease_s=60)
    store.shop_done(run, "100001", "failed")  # no intent: both are recorded
    store.intent(run, "100001", [{"shop": "100001"}])
    store.shop_done(run, "100001", "applied")  # ends the open intent, adds no row
    with store._read() as conn:
        from reconciler.state.schema import journal

        rows = conn.execute(journal.select().order_by(journal.c.id)).mappings().all()
    assert [(r["changes"], r["outcome"], r["done"] is not None) for r in rows] == [
        ("[]", "failed", True), ('[{"shop": "100001"}]', "applied", True)]


def test_values_that_look_like_sql_are_stored_as_they_are(store: Store) -> None:
    odd = "it's 100% :shop %(shop)s $1 ; COMMIT; -- \\ \" 旺店通 \u2028"
    run = start(store, actor=odd)
    store.acquire(run, [odd], timeout_s=0, lease_s=60)
    change = {"shop": odd, "scenario": "order_status", "action": "bind", "after": {"appkey": odd}}
    for intent in (store.intent(run, odd, [change]), None):  # the end by its intent's id, and looked up
        if intent is None:
            store.intent(run, odd, [change])
        rows = [store.change_row(run, shop=odd, scenario=f"order_status{n}", action="bind", before={"appkey": odd},
                                 after={"appkey": odd}, outcome=Outcome.failed, error=odd) for n in range(2)]
        store.shop_done(run, odd, odd, rows, intent=intent)
    entries = store.entries()
    assert [(e.shop, e.actor, e.before, e.after, e.error) for e in entries] == [
        (odd, odd, {"appkey": odd}, {"appkey": odd}, odd)] * 4
    with store._read() as conn:
        from reconciler.state.schema import journal

        assert [tuple(r) for r in conn.execute(sa.select(journal.c.shop, journal.c.outcome))] == [(odd, odd)] * 2
    assert store.interrupted_shops() == {}


def test_a_run_that_ends_with_an_intent_open_is_recorded_interrupted(store: Store) -> None:
    """A shop's end lost (it could not be committed, or a crash of the database server lost it
    before the flush it does not wait for) must not leave a finished run whose journal says
    nothing of that shop: the run is recorded as interrupted, and its open intent named."""
    run = start(store)
    store.acquire(run, ["100001", "100002"], timeout_s=0, lease_s=60)
    _shop_round(store, run, "100001", 0)
    store.intent(run, "100002", [{"shop": "100002", "scenario": "order_status", "action": "bind"}])  # its end: lost
    assert store.finish_run(run, exit_code=0) == ["100002"]
    [info] = store.runs([run])
    assert (info.status, info.finished, info.exit_code) == ("interrupted", None, 0)
    assert list(store.interrupted_shops()) == ["100002"]
    assert store.locks() == []
