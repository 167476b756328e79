"""SIGKILL an ``apply`` at seeded-random moments, and check what the next commands see.

One agency (24 shops, all three scenarios) over HTTP to a gateway with latency; each
round rotates every shop to the other ERP, kills the apply at a seeded-random moment (while
it plans and locks, or while it writes), and then checks, through the CLI:

- ``locks`` shows the dead run holding all of its shops (locking is all or none), or no
  lock when it died before locking; ``unlock RUN`` frees it with exit 0 and no ``--force``
  (same host: its pid is gone). Once, a short ``state.lock_lease_s`` lets the lease expire
  instead: the next apply waits for it and takes the shops over, saying so.
- ``plan --format json`` names exactly the shops the dead run had started and not ended
  (problem kind ``interrupted``), and every shop left between two ERPs is among them.
- the next ``apply --auto-approve`` converges (exit 0): every binding as desired, no shop
  split; ``history --format json`` shows the killed run ``interrupted``.
- for every binding, the history rows that say the platform was written (``applied``,
  including the writes a later run found and recorded for the dead one, and
  ``rolled-back``) are exactly as many as the sandbox's revision says it was written.

The schedule is seeded (``RECONCILER_CRASH_SEED``) and made of two kinds of moments, so that
it does not depend on how fast the machine is: "early" rounds kill after a random delay
within the time a normal apply takes to lock its shops (planning, starting the run,
locking); "writing" rounds kill once the run has recorded a random number of its rows, plus
a random 0-30 ms (landing between a write and its row, mid-request, mid-rollback). Every
message names the round and the moment. The rounds stop after ``KILLS`` real kills (a kill
that came after the apply ended does not count), at most ``MAX_ROUNDS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from clikit import (
    ALL,
    ERP_OF,
    NEW,
    OLD,
    GatedAgency,
    Proc,
    history_json,
    reap,
    revisions,
    rotating_agency,
    settings,
    shop_ids,
    shops_yaml,
    split_shops,
    wait_for,
    write_rows,
)

from reconciler.state import DEFAULT_URL, LockInfo, Store, open_store

SEED = int(os.environ.get("RECONCILER_CRASH_SEED", "20261129"))
SHOPS = shop_ids(24)
LATENCY_S = 0.005
KILLS = 20
MAX_ROUNDS = 32
LEASE_ROUND = 3  # the round whose dead run is left to its lease (state.lock_lease_s: 1) instead of unlocked


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    yield
    reap()


@pytest.fixture
def crashing(tmp_path: Path) -> Iterator[tuple[GatedAgency, Store]]:
    agency = GatedAgency(tmp_path / "configs", latency_s=LATENCY_S)
    try:
        rotating_agency(agency, SHOPS)
        store = open_store(DEFAULT_URL, config_dir=agency.dir)
        assert store is not None
        try:
            yield agency, store
        finally:
            store.close()
    finally:
        agency.close()


def _locks_of(store: Store, pid: int) -> LockInfo | None:
    return next((h for h in store.locks() if h.pid == pid), None)


def _locked_or_ended(store: Store, p: Proc) -> LockInfo | bool:
    return _locks_of(store, p.pid) or not p.alive()


def _open_intents(agency: GatedAgency, run: int) -> set[str]:
    con = sqlite3.connect(agency.dir / ".reconciler" / "state.db", timeout=30)
    try:
        return {s for (s,) in con.execute("SELECT shop FROM journal WHERE run_id = ? AND done IS NULL", (run,))}
    finally:
        con.close()


def _quiet(agency: GatedAgency) -> bool:
    """Every request the gateway received has been answered (none still on its way to the platform)."""
    assert agency.server is not None
    c = agency.server.counters()
    ended = sum(c.ok.values()) + sum(c.failed.values()) + sum(c.refused.values()) + sum(c.dropped_before.values()) \
        + sum(c.dropped_after.values())
    return c.received == ended


def _time_to_lock(agency: GatedAgency, store: Store, logs: Path) -> float:
    """A normal apply (OLD → NEW): how long it takes from its start to holding its locks."""
    p = Proc(agency.dir, "apply", "--auto-approve", logs=logs, name="calibration")
    wait_for(partial(_locked_or_ended, store, p), timeout=60, what="the calibration apply to lock")
    locked = time.monotonic() - p.started
    done = p.finish()
    assert done.code == 0, done.text
    return locked


def _recorded_or_ended(agency: GatedAgency, run: int, rows: int, p: Proc) -> bool:
    return not p.alive() or _rows(agency, run) >= rows


def _rows(agency: GatedAgency, run: int) -> int:
    con = sqlite3.connect(agency.dir / ".reconciler" / "state.db", timeout=30)
    try:
        return int(con.execute("SELECT count(*) FROM changes WHERE run_id = ?", (run,)).fetchone()[0])
    finally:
        con.close()


def _check_counts(agency: GatedAgency, entries: list[dict[str, Any]], where: str) -> None:
    """Rows that wrote a binding = the times the platform says it was written (a world binding starts at 1)."""
    written = {key: rev - 1 for key, (_, rev) in revisions(agency.db).items()}
    rows = write_rows(entries)
    wrong = {k: (rows.get(k, 0), written[k]) for k in written if rows.get(k, 0) != written[k]}
    assert not wrong, f"{where}: (history rows that wrote it, platform writes) differ: {sorted(wrong.items())[:8]}"


def test_an_apply_killed_at_random_moments_leaves_nothing_lost_or_invented(crashing: tuple[GatedAgency, Store],
                                                                          tmp_path: Path) -> None:
    agency, store = crashing
    logs = tmp_path / "logs"
    rng = random.Random(SEED)
    to_lock = _time_to_lock(agency, store, logs)
    target = NEW
    kills = 0
    lease_pending = True
    unlock_refused_checked = False
    rounds: list[str] = []
    for n in range(1, MAX_ROUNDS + 1):
        if kills >= KILLS:
            break
        target = OLD if target == NEW else NEW
        agency.shops(shops_yaml(SHOPS, ERP_OF[target]))
        lease = lease_pending and n >= LEASE_ROUND
        agency.write("reconciler.yaml", settings(lease_s=1 if lease else None))
        early = n % 4 == 1 and not lease
        delay = rng.uniform(0, to_lock) if early else rng.uniform(0, 0.03)
        after_rows = rng.randrange(3 * len(SHOPS))  # a "writing" round: once it has recorded this many rows
        where = (f"seed {SEED}, round {n}, killed " + (f"{delay:.3f}s after its start" if early else
                                                       f"{delay * 1000:.0f} ms after recording {after_rows} row(s)"))

        # ---- the apply, killed
        p = Proc(agency.dir, "apply", "--auto-approve", logs=logs, name=f"round{n}")
        if not early:
            held = wait_for(partial(_locked_or_ended, store, p), timeout=60, what=f"{where}: locks")
            if isinstance(held, LockInfo):
                if not unlock_refused_checked:  # alive: unlock refuses without --force
                    refused = agency.run("unlock", str(held.run))
                    if p.alive():
                        assert refused.exit_code == 1 and "is alive" in refused.stderr, f"{where}: {refused.output}"
                        unlock_refused_checked = True
                wait_for(partial(_recorded_or_ended, agency, held.run, after_rows, p), timeout=60, what=f"{where}: rows")
        with contextlib.suppress(subprocess.TimeoutExpired):  # the moment has come (or the apply ended by itself)
            p.popen.wait(timeout=delay)
        done = p.kill()
        wait_for(lambda: _quiet(agency), timeout=30, what=f"{where}: the gateway to answer what it received")
        run = next((r for r in store.runs() if r.pid == done.pid), None)
        if done.code != -9 or (run is not None and run.status == "finished"):
            assert done.code in (0, -9), f"{where}: {done.text}"  # it ended before the kill: not a crash
            rounds.append(f"{n}: {where}: it had ended")
            continue
        kills += 1
        rounds.append(f"{n}: {where}")

        # ---- locks: the dead run holds all its shops, or nothing
        shown = json.loads(agency.run("locks", "--format", "json").stdout)["locks"]
        intents = _open_intents(agency, run.id) if run is not None else set()
        if shown:
            assert run is not None and [(int(lk["run"]), lk["pid"], lk["shops"]) for lk in shown] == \
                [(run.id, done.pid, SHOPS)], f"{where}: {shown}"
        else:
            assert not intents, f"{where}: it announced changes to {sorted(intents)} without holding their locks"

        # ---- plan: names every shop it may have left half-changed
        plan = json.loads(agency.run("plan", "--format", "json").stdout)
        named = {pr["shop"] for pr in plan["problems"] if pr.get("kind") == "interrupted"}
        assert named == intents, f"{where}: plan names {sorted(named)}, the journal has {sorted(intents)}"
        split = split_shops(agency.db)
        assert set(split) <= named, f"{where}: shops left between two ERPs and not named: {sorted(set(split) - named)}"

        # ---- free the shops: unlock, or (once) let the lease expire
        converge_args: list[str] = []
        if shown and lease:
            converge_args = ["--lock-timeout", "30"]
        elif shown:
            assert run is not None
            freed = agency.run("unlock", str(run.id))
            assert freed.exit_code == 0 and f"Unlocked run {run.id}: {len(SHOPS)} shop(s) freed" in freed.stdout, \
                f"{where}: {freed.output}"
            assert json.loads(agency.run("locks", "--format", "json").stdout)["locks"] == []

        # ---- the next apply converges
        r = agency.run("apply", "--auto-approve", *converge_args)
        assert r.exit_code == 0, f"{where}: {r.output}"
        if converge_args:  # it waited for the lease, then took over the shops it still had to change
            assert run is not None and re.search(rf"taking over \d+ shop\(s\) from run {run.id} .*lease expired", r.stderr), \
                f"{where}: {r.stderr}"
            lease_pending = False
            rounds[-1] += " (lease expired, taken over)"
        wrong = {k: key for k, (key, _) in revisions(agency.db).items() if key != target}
        assert not wrong and len(revisions(agency.db)) == len(SHOPS) * len(ALL), f"{where}: not {target}: {wrong}"
        assert not split_shops(agency.db)
        assert store.locks() == [], f"{where}: locks left: {store.locks()}"
        assert store.interrupted_shops(SHOPS) == {}, f"{where}: the next plan would still name shops"

        # ---- history: the dead run is interrupted; no write lost or invented
        history = history_json(agency)
        if run is not None:
            status = {h["id"]: h["status"] for h in history["runs"]}
            assert status.get(run.id) == "interrupted", f"{where}: {history['runs']}"
        assert not [e for e in history["entries"] if e["outcome"] not in ("applied", "rolled-back")], where
        _check_counts(agency, history["entries"], where)

    assert kills >= KILLS, f"only {kills} kills landed while the apply ran:\n" + "\n".join(rounds)
    assert not lease_pending, "the lease expiry was never exercised:\n" + "\n".join(rounds)
    assert unlock_refused_checked


def test_a_run_of_another_host_taken_over_after_its_lease_has_its_unrecorded_writes_recorded(tmp_path: Path) -> None:
    """A CI runner on another machine dies while one of its writes is on its way; the write
    lands, unrecorded. The next apply (here) cannot tell that run is dead until its lease
    expires: it waits for the lease, takes the shops over — and must then record the dead
    run's landed write, as it does for a run that died on this host (no write without a row)."""
    shops = shop_ids(3)
    agency = GatedAgency(tmp_path / "configs")
    try:
        rotating_agency(agency, shops, lease_s=2)
        agency.gate.close([shops[1]])
        other = Proc(agency.dir, "apply", "--auto-approve", logs=tmp_path / "logs", name="ci-runner-7", host="ci-runner-7")
        agency.gate.wait_arrived()  # its first write to 100002 is held at the gateway
        assert other.kill().code == -9
        agency.gate.open()  # ... and lands after its writer died: nobody recorded it
        wait_for(lambda: _quiet(agency), timeout=30, what="the held write to land")
        assert agency.bindings(shops[1])[ALL[0]] == NEW
        [held] = json.loads(agency.run("locks", "--format", "json").stdout)["locks"]
        assert (held["host"], held["shops"]) == ("ci-runner-7", shops)
        alive = agency.run("unlock", held["run"])  # its lease is current: it may be alive over there
        assert alive.exit_code == 1 and "lease on ci-runner-7 runs until" in alive.stderr, alive.output
        r = agency.run("apply", "--auto-approve", "--lock-timeout", "30")
        assert r.exit_code == 0, r.output
        assert f"from run {held['run']} (tester on ci-runner-7), whose lease expired" in r.stderr, r.stderr
        assert not split_shops(agency.db) and {k for k, _ in revisions(agency.db).values()} == {NEW}
        history = history_json(agency)
        assert {h["id"]: h["status"] for h in history["runs"]}[int(held["run"])] == "interrupted"
        _check_counts(agency, history["entries"], "after the takeover")
        plan = json.loads(agency.run("plan", "--format", "json").stdout)
        assert not plan["changes"] and not [p for p in plan["problems"] if p.get("kind") == "interrupted"], plan
    finally:
        agency.close()
