"""The shared state store seen through the command line.

- Two config dirs sharing one PostgreSQL store see one history and one set of locks.
- A bad store URL (from ``RECONCILER_STATE_URL`` or ``state.url``) is one clear line and
  exit 1 for ``apply`` and ``history`` alike, never a traceback, never the password.
- A history database of the previous version is upgraded in place: ``history`` shows its
  rows, ``apply`` adds runs, nothing is lost.
- ``already-applied``: a compare-and-set conflict where the platform already holds the
  change's ``after`` is done, not a failure (exit 0).
- A write the history cannot record is put back; the others stay applied; exit 3.
- Opening an old or new SQLite store while another process writes it waits instead of
  failing at once (the switch to WAL; the cause of a flaky upgrade test).
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from clikit import (
    ALL,
    NEW,
    OLD,
    GatedAgency,
    Proc,
    history_json,
    in_process,
    reap,
    revisions,
    rotating_agency,
    settings,
    shop_ids,
)
from conftest import Agency
from statekit import V1_SCHEMA

from reconciler.platform import SandboxPlatform
from reconciler.state import DEFAULT_URL, open_store
from reconciler.state.schema import CURRENT

IDS = shop_ids(3)  # 100001..100003, all three scenarios rotating OLD → NEW


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    yield
    reap()


# ---------------------------------------------------------------------- two config dirs, one PostgreSQL


def test_two_config_dirs_share_one_postgresql_history_and_locks(tmp_path: Path, pg_url: str) -> None:
    a = GatedAgency(tmp_path / "a")
    try:
        rotating_agency(a, IDS, state_url=pg_url)
        b = tmp_path / "b"  # another checkout of the same agency: same platform, same store
        b.mkdir()
        for name in ("reconciler.yaml", "erps.yaml", "sessions.yaml", "shops"):
            (shutil.copytree if (a.dir / name).is_dir() else shutil.copy)(a.dir / name, b / name)
        a.gate.close(IDS)
        applying = Proc(a.dir, "apply", "--auto-approve", logs=tmp_path / "logs", name="a")
        a.gate.wait_arrived()  # A is writing, holding its locks
        locks = json.loads(in_process(b, "locks", "--format", "json").stdout)["locks"]
        assert [(lk["pid"], lk["shops"]) for lk in locks] == [(applying.pid, IDS)]
        run_a = int(locks[0]["run"])
        running = json.loads(in_process(b, "history", "--format", "json").stdout)["runs"]
        assert [(r["id"], r["status"]) for r in running] == [(run_a, "running")]
        refused = in_process(b, "apply", "--auto-approve", "--shop", IDS[1])
        assert refused.exit_code == 1, refused.output
        assert "locked" in refused.stderr and f"run {run_a} " in refused.stderr, refused.stderr
        assert applying.alive()
        a.gate.open()
        done = applying.finish()
        assert done.code == 0, done.text
        history = json.loads(in_process(b, "history", "--format", "json").stdout)  # A's apply, seen from B
        assert Counter((e["run"], e["outcome"]) for e in history["entries"]) == Counter(
            {(run_a, "applied"): 9, (run_a + 1, "refused"): 3})
        assert {r["id"]: (r["status"], r["exit_code"]) for r in history["runs"]} == {
            run_a: ("finished", 0), run_a + 1: ("finished", 1)}
        again = in_process(b, "apply", "--auto-approve")
        assert again.exit_code == 0 and "Nothing to apply" in again.stdout, again.output
        assert revisions(a.db) == {(s, sc): (NEW, 2) for s in IDS for sc in ALL}
    finally:
        a.close()


# ---------------------------------------------------------------------- bad state URLs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PASSWORD = "Pw-never-printed-7391"


def _bad_urls(tmp_path: Path, pg_url: str) -> dict[str, tuple[str, str]]:
    """name → (URL, what the message says)."""
    wrong = urlsplit(pg_url)
    wrong_pw = urlunsplit(wrong._replace(netloc=f"{wrong.username}:{PASSWORD}@{wrong.hostname}:{wrong.port}"))
    return {
        "unreachable": (f"postgresql://reconciler:{PASSWORD}@127.0.0.1:{_free_port()}/state", "connection refused"),
        "unknown-scheme": (f"mysql://reconciler:{PASSWORD}@127.0.0.1/state", "unknown scheme 'mysql'"),
        "missing-directory": (f"sqlite:///{tmp_path}/no-such-dir/state.db", "does not exist"),
        "wrong-password": (wrong_pw, "authentication failed"),
    }


def _one_clear_line(stdout: str, stderr: str, says: str, *secrets: str) -> None:
    assert stdout == "", stdout
    assert stderr.count("\n") == 1 and stderr.startswith("Error: state store "), stderr
    assert says in stderr and "Traceback" not in stderr, stderr
    for s in secrets:
        assert s not in stdout + stderr, stderr


def test_bad_state_urls_from_the_environment_are_one_line_and_exit_1(tmp_path: Path, pg_url: str) -> None:
    agency = Agency(tmp_path / "configs")
    agency.shops('shops:\n  - id: "100001"\n    erp: jushuitan\n    scenarios: {order_status: {}}\n')
    agency.world({"100001": {"bindings": {}}})
    real_password = urlsplit(pg_url).password or ""
    bad = _bad_urls(tmp_path, pg_url)
    # the password's case in real processes (their stderr as a user sees it), started together
    procs = {cmd: Proc(agency.dir, *cmd.split(), env={"RECONCILER_STATE_URL": bad["wrong-password"][0]},
                       logs=tmp_path / "logs", name=cmd.split()[0]) for cmd in ("apply --auto-approve", "history")}
    for name, (url, why) in bad.items():
        for cmd in (["apply", "--auto-approve"], ["history"]):
            r = agency.run(*cmd, env={"RECONCILER_STATE_URL": url})
            assert r.exit_code == 1, f"{name} {cmd}: {r.output}"
            _one_clear_line(r.stdout, r.stderr, why, PASSWORD, real_password)
    for cmd, p in procs.items():
        done = p.finish()
        assert done.code == 1, f"{cmd}: {done.text}"
        _one_clear_line(done.out, done.err, bad["wrong-password"][1], PASSWORD, real_password)
    assert agency.bindings("100001") == {}, "nothing was applied"
    assert not (tmp_path / "no-such-dir").exists()


def test_bad_state_urls_in_the_config_are_one_line_and_exit_1(tmp_path: Path, pg_url: str) -> None:
    real_password = urlsplit(pg_url).password or ""
    for name, (url, why) in _bad_urls(tmp_path, pg_url).items():
        agency = Agency(tmp_path / name)
        agency.write("reconciler.yaml", settings(state_url=url))
        agency.shops('shops:\n  - id: "100001"\n    erp: jushuitan\n    scenarios: {order_status: {}}\n')
        agency.world({"100001": {"bindings": {}}})
        for cmd in (["apply", "--auto-approve"], ["history"]):
            r = agency.run(*cmd)
            assert r.exit_code == 1, f"{name} {cmd}: {r.output}"
            _one_clear_line(r.stdout, r.stderr, why, PASSWORD, real_password)
        assert agency.bindings("100001") == {}
    # the password from RECONCILER_STATE_PASSWORD is never shown either
    agency = Agency(tmp_path / "env-password")
    no_pw = urlsplit(pg_url)._replace(netloc=f"{urlsplit(pg_url).username}@127.0.0.1:{urlsplit(pg_url).port}")
    agency.write("reconciler.yaml", settings(state_url=urlunsplit(no_pw)))
    for cmd in (["apply", "--auto-approve"], ["history"]):
        r = agency.run(*cmd, env={"RECONCILER_STATE_PASSWORD": PASSWORD})
        assert r.exit_code == 1, r.output
        _one_clear_line(r.stdout, r.stderr, "authentication failed", PASSWORD, real_password)


# ---------------------------------------------------------------------- the previous version's history


def _v1_history(path: Path) -> None:
    """A history database as the previous version wrote it: a finished run with one change,
    and a run that crashed (never finished)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    con.execute("INSERT INTO runs (time, actor, git_commit, git_branch, checksum, command, finished, exit_code) VALUES"
                " ('2024-01-01T00:00:00+00:00', 'old-alice', 'abc', 'main', 'sha256:old', 'apply',"
                " '2024-01-01T00:00:05+00:00', 0)")
    con.execute("INSERT INTO runs (time, actor, command) VALUES ('2024-01-02T00:00:00+00:00', 'old-bob', 'apply')")
    con.execute("INSERT INTO changes (run_id, time, shop, scenario, action, before, after, outcome) VALUES"
                " (1, '2024-01-01T00:00:01+00:00', '100009', 'order_status', 'bind', '{\"appkey\": null}',"
                " '{\"appkey\": \"21345678\"}', 'applied')")
    con.commit()
    con.close()


OLD_ROW = {"run": 1, "time": "2024-01-01T00:00:01+00:00", "actor": "old-alice", "git_commit": "abc", "git_branch": "main",
           "checksum": "sha256:old", "command": "apply", "shop": "100009", "scenario": "order_status", "action": "bind",
           "before": {"appkey": None}, "after": {"appkey": "21345678"}, "outcome": "applied", "error": None}


@pytest.mark.parametrize("where", ["default", "history.path"])
def test_the_previous_versions_history_is_kept_and_extended(agency: Agency, where: str) -> None:
    rel = ".reconciler/history.db" if where == "default" else "audit/history.db"
    agency.write("reconciler.yaml", settings(extra="history: {path: audit/history.db}\n" if where != "default" else ""))
    agency.shops(f'shops:\n  - id: "{IDS[0]}"\n    erp: jushuitan\n    scenarios: {{order_status: {{}}}}\n')
    agency.world({IDS[0]: {"bindings": {}}})
    _v1_history(agency.dir / rel)
    before = history_json(agency)
    assert [{k: v for k, v in e.items() if k != "id"} for e in before["entries"]] == [OLD_ROW]
    # the runs of the rows shown, and every run that did not finish (the crashed one)
    assert [(r["id"], r["actor"], r["status"]) for r in before["runs"]] == [(1, "old-alice", "finished"),
                                                                            (2, "old-bob", "interrupted")]
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    after = history_json(agency)
    assert [{k: v for k, v in e.items() if k != "id"} for e in after["entries"][:1]] == [OLD_ROW]
    assert [(e["run"], e["shop"], e["outcome"]) for e in after["entries"][1:]] == [(3, IDS[0], "applied")]
    assert [(r["id"], r["status"]) for r in after["runs"]] == [(1, "finished"), (2, "interrupted"), (3, "finished")]
    assert not (agency.dir / ".reconciler" / "state.db").exists(), "the old file is the store, upgraded in place"
    con = sqlite3.connect(agency.dir / rel)
    try:
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(CURRENT,)]
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (3,)
    finally:
        con.close()


# ---------------------------------------------------------------------- already-applied


def test_a_conflict_with_the_change_already_made_is_already_applied(tmp_path: Path) -> None:
    agency = GatedAgency(tmp_path / "configs")
    try:
        rotating_agency(agency, IDS)
        agency.gate.close([IDS[1]])
        applying = Proc(agency.dir, "apply", "--auto-approve", logs=tmp_path / "logs", name="apply")
        agency.gate.wait_arrived()  # its first write to 100002 is on its way, planned on OLD
        platform = SandboxPlatform(agency.db)  # meanwhile someone makes that very change in Qianniu
        try:
            platform.bind(IDS[1], ALL[0], NEW, expected=OLD)
        finally:
            platform.close()
        agency.gate.open()
        done = applying.finish()
        assert done.code == 0, done.text
        assert "Apply complete." in done.out
        history = history_json(agency)
        outcomes = {(e["shop"], e["scenario"]): e["outcome"] for e in history["entries"]}
        assert outcomes == {**{(s, sc): "applied" for s in IDS for sc in ALL}, (IDS[1], ALL[0]): "already-applied"}
        assert [(r["status"], r["exit_code"]) for r in history["runs"]] == [("finished", 0)]
        revs = revisions(agency.db)
        assert revs == {(s, sc): (NEW, 2) for s in IDS for sc in ALL}, "the conflicting write was not made again"
    finally:
        agency.close()


# ---------------------------------------------------------------------- a write the history cannot record


@pytest.mark.parametrize("blocked", ["applied-rows", "every-row"])
def test_a_write_the_history_cannot_record_is_put_back(agency: Agency, blocked: str) -> None:
    rotating_agency(agency, IDS)
    store = open_store(DEFAULT_URL, config_dir=agency.dir)
    assert store is not None
    store.close()
    con = sqlite3.connect(agency.dir / ".reconciler" / "state.db")
    only = " AND NEW.outcome = 'applied'" if blocked == "applied-rows" else ""
    con.execute(f"CREATE TRIGGER full_disk BEFORE INSERT ON changes WHEN NEW.shop = '{IDS[1]}'{only}"
                " BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
    con.commit()
    con.close()
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    assert agency.bindings(IDS[1]) == dict.fromkeys(ALL, OLD), "the shop is as before"
    for shop in (IDS[0], IDS[2]):
        assert agency.bindings(shop) == dict.fromkeys(ALL, NEW)
    assert "Applied 6 change(s) in 2 shop(s)." in r.stdout, r.stdout
    assert f"{IDS[1]}" in r.stdout and "could not be recorded" in r.stdout and "put back" in r.stdout, r.stdout
    assert "Apply partly done: 2 shop(s) applied, 1 failed" in r.stdout, r.stdout
    history = history_json(agency)
    mine = [(e["scenario"], e["outcome"], e["after"]) for e in history["entries"] if e["shop"] == IDS[1]]
    # its writes landed, could not be recorded (a shop's rows are committed with its end), and were put
    # back in reverse order (which is recorded, when it can be)
    assert mine == ([(sc, "rolled-back", {"appkey": OLD}) for sc in reversed(ALL)] if blocked == "applied-rows" else [])
    assert revisions(agency.db)[(IDS[1], ALL[0])] == (OLD, 3)  # written, then put back
    assert [(r["status"], r["exit_code"]) for r in history["runs"]] == [("finished", 3)]
    plan = json.loads(agency.run("plan", "--format", "json").stdout)
    assert not [p for p in plan["problems"] if p.get("kind") == "interrupted"], "the shop ended whole: nothing half-done"
    assert sorted({c["shop"] for c in plan["changes"]}) == [IDS[1]]


# ---------------------------------------------------------------------- opening a store others are writing


def test_opening_a_store_waits_for_a_process_writing_the_old_history(tmp_path: Path) -> None:
    """An older reconciler writes its history.db (a rollback journal, not WAL) while this one
    opens it: switching the file to WAL must wait for that writer, not fail at once with
    "database is locked" (as four processes opening one new or old store together did)."""
    path = tmp_path / "history.db"
    _v1_history(path)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO runs (time, actor, command) VALUES ('2024-01-03T00:00:00+00:00', 'older', 'apply')")
    result: list[object] = []

    def open_it() -> None:
        try:
            with open_store(f"sqlite:///{path}", config_dir=tmp_path) as s:  # type: ignore[union-attr]
                result.append((s.schema_version(), [r.actor for r in s.runs()]))
        except Exception as e:
            result.append(e)

    opener = threading.Thread(target=open_it)
    opener.start()
    opener.join(timeout=0.5)  # long enough to have met the writer's lock
    alive = opener.is_alive()
    writer.execute("COMMIT")
    writer.close()
    opener.join(timeout=60)
    assert alive, f"opening did not wait for the writer: {result}"
    assert result == [(CURRENT, ["old-alice", "old-bob", "older"])]
