"""Several ``reconciler apply`` processes at once on one agency, on both store engines.

Real processes (the console command), the ``top`` provider over HTTP to a sandbox gateway
with latency, and the shared state store on SQLite and on PostgreSQL. What must hold:
every binding ends as desired and is written exactly once (the sandbox's revision per
binding, and exactly one history row that wrote it); an apply that overlaps a running one
either waits for it (``--lock-timeout``) and then finds those shops done
(``already-applied``, never a second write), or is refused at once with exit 1 naming the
holder (``locked``, ``run <ID>``) and changing nothing; disjoint shards run side by side.

The overlap is made certain, not likely: the gateway holds the first apply's binds at a
gate (``clikit.Gate``) until the others have visibly waited, been refused or finished.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from clikit import ALL, NEW, Done, GatedAgency, Proc, history_json, reap, revisions, rotating_agency, shop_ids, wait_for

from reconciler.shard import parse_shard
from reconciler.state import LockInfo, open_store

LATENCY_S = 0.02
IDS = shop_ids(12)
FIRST = IDS[0:6]
OTHERS = {"second": IDS[3:9], "third": IDS[6:12]}  # the second overlaps the first; the third only the second


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    yield
    reap()


@pytest.fixture
def served(tmp_path: Path, state_url: str) -> Iterator[tuple[GatedAgency, str]]:
    """An agency on the top provider, its gateway adding latency, its state store at ``state_url``."""
    a = GatedAgency(tmp_path / "configs", latency_s=LATENCY_S)
    try:
        rotating_agency(a, IDS, state_url=state_url)
        yield a, state_url
    finally:
        a.close()


def _shops(ids: Sequence[str]) -> list[str]:
    return [arg for s in ids for arg in ("--shop", s)]


def _held_by(url: str, config_dir: Path, pid: int) -> LockInfo | None:
    store = open_store(url, config_dir=config_dir, create=False)
    if store is None:
        return None
    try:
        return next((h for h in store.locks() if h.pid == pid), None)
    finally:
        store.close()


def _start_held(agency: GatedAgency, url: str, ids: Sequence[str], logs: Path, *args: str) -> tuple[Proc, LockInfo]:
    """An apply of ``ids`` that is now writing them, holding their locks, and held at the gate."""
    agency.gate.close(ids)
    first = Proc(agency.dir, "apply", "--auto-approve", *args, logs=logs, name="first")
    agency.gate.wait_arrived()
    holder = _held_by(url, agency.dir, first.pid)
    assert holder is not None and holder.shops == tuple(sorted(ids)), holder  # all its shops, in one go
    return first, holder


def _runs_by_pid(history: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["pid"]: r for r in history["runs"]}


def _each_binding_written_once(agency: GatedAgency, history: dict[str, Any]) -> None:
    revs = revisions(agency.db)
    assert revs == {(s, sc): (NEW, 2) for s in IDS for sc in ALL}, "every binding desired, and written once (revision 1 → 2)"
    applied = Counter((e["shop"], e["scenario"]) for e in history["entries"] if e["outcome"] == "applied")
    assert applied == Counter({(s, sc): 1 for s in IDS for sc in ALL}), "one applied row per binding"
    assert not [e for e in history["entries"] if e["outcome"] in ("failed", "rolled-back", "rollback-failed")]


def _rows(history: dict[str, Any], run: int, shops: Sequence[str] | None = None) -> Counter[str]:
    return Counter(e["outcome"] for e in history["entries"] if e["run"] == run and (shops is None or e["shop"] in shops))


def _report(done: dict[str, Done]) -> str:
    return "\n".join(f"--- {n} (exit {d.code}):\n{d.text}" for n, d in done.items())


def test_overlapping_applies_wait_and_write_each_binding_once(served: tuple[GatedAgency, str], tmp_path: Path) -> None:
    agency, url = served
    logs = tmp_path / "logs"
    first, holder = _start_held(agency, url, FIRST, logs, *_shops(FIRST), "--lock-timeout", "60")
    others = {name: Proc(agency.dir, "apply", "--auto-approve", "--lock-timeout", "60", *_shops(ids), logs=logs, name=name)
              for name, ids in OTHERS.items()}
    # while the first is held: the second waits for it; the third (no shop of the first; the
    # waiting second holds none of its shops) goes ahead
    second = others["second"]
    wait_for(lambda: "waiting up to 60s" in second.err_so_far() or not second.alive(), timeout=60, what="the second to wait")
    third = others["third"].finish()
    assert first.alive() and second.alive()
    agency.gate.open()
    done: dict[str, Done] = {"first": first.finish(), "second": second.finish(), "third": third}
    assert {n: d.code for n, d in done.items()} == dict.fromkeys(done, 0), _report(done)
    # it named what it waited for
    assert "locked by another run" in done["second"].err and f"run {holder.run} " in done["second"].err, done["second"].err
    history = history_json(agency)
    _each_binding_written_once(agency, history)
    runs = _runs_by_pid(history)
    assert len(runs) == 3 and {(r["status"], r["exit_code"]) for r in runs.values()} == {("finished", 0)}
    assert runs[done["first"].pid]["id"] == holder.run
    assert _rows(history, holder.run) == Counter(applied=18)
    assert _rows(history, runs[third.pid]["id"]) == Counter(applied=18)
    # it planned the first one's shops while they were held (not yet written) and applied after the
    # first one: it found them done and wrote none of them again (nor any of the third's)
    second_run = runs[done["second"].pid]["id"]
    assert set(_rows(history, second_run)) == {"already-applied"}
    assert _rows(history, second_run, IDS[3:6]) == Counter({"already-applied": 9})


def test_an_overlapping_apply_without_lock_timeout_is_refused_naming_the_holder(served: tuple[GatedAgency, str],
                                                                               tmp_path: Path) -> None:
    agency, url = served
    logs = tmp_path / "logs"
    first, holder = _start_held(agency, url, FIRST, logs, *_shops(FIRST))
    others = {name: Proc(agency.dir, "apply", "--auto-approve", "--lock-timeout", "0", *_shops(ids), logs=logs, name=name)
              for name, ids in OTHERS.items()}
    done = {name: p.finish() for name, p in others.items()}  # all of them while the first is held
    assert first.alive()
    agency.gate.open()
    done["first"] = first.finish()
    # the second overlaps the first: refused at once. The third overlaps only the second, and
    # a refused apply holds nothing (all or none): it goes ahead.
    assert {n: d.code for n, d in done.items()} == {"second": 1, "third": 0, "first": 0}, _report(done)
    err = done["second"].err
    assert "locked" in err and f"run {holder.run} " in err, err
    assert "waiting" not in err and "Traceback" not in err, err
    history = history_json(agency)
    _each_binding_written_once(agency, history)
    runs = _runs_by_pid(history)
    run = runs[done["second"].pid]  # recorded as refused; nothing written
    assert (run["status"], run["exit_code"]) == ("finished", 1)
    assert set(_rows(history, run["id"])) == {"refused"}  # (the third may have done some of its shops before it planned)
    assert _rows(history, run["id"], IDS[3:6]) == Counter(refused=9)
    assert _rows(history, runs[done["third"].pid]["id"]) == Counter(applied=18)
    assert _rows(history, holder.run) == Counter(applied=18)


def test_disjoint_shards_apply_side_by_side(served: tuple[GatedAgency, str], tmp_path: Path) -> None:
    agency, url = served
    one = [s for s in IDS if parse_shard("1/2").holds(s)]
    two = [s for s in IDS if parse_shard("2/2").holds(s)]
    assert one and two and sorted(one + two) == IDS
    first, _ = _start_held(agency, url, one, tmp_path / "logs", "--shard", "1/2", "--lock-timeout", "0")
    second = Proc(agency.dir, "apply", "--auto-approve", "--shard", "2/2", "--lock-timeout", "0", logs=tmp_path / "logs",
                  name="shard2").finish()  # while shard 1/2 holds its shops, mid-apply
    assert first.alive()
    agency.gate.open()
    d1 = first.finish()
    assert (d1.code, second.code) == (0, 0), f"{d1.text}\n{second.text}"
    assert "locked" not in second.err
    history = history_json(agency)
    _each_binding_written_once(agency, history)
    runs = _runs_by_pid(history)
    assert _rows(history, runs[d1.pid]["id"]) == Counter(applied=3 * len(one))
    assert _rows(history, runs[second.pid]["id"]) == Counter(applied=3 * len(two))
