"""The state store: opening it (URLs, every way that fails), its schema versions and upgrade,
and the history it keeps. Each store test runs on SQLite and on a real PostgreSQL server
(the ``state_url`` fixture); the lock and journal tests are in test_state_locks.py."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from statekit import HOST, V1_SCHEMA, FakeClock, dead_pid, engine_for, opened, start

from reconciler.history import format_time
from reconciler.settings import HistorySettings, Settings, StateSettings
from reconciler.state import DEFAULT_URL, StateError, Store, display_url, open_store, resolve_url
from reconciler.state.schema import CURRENT
from reconciler.vocab import Outcome


@pytest.fixture
def store(state_url: str, tmp_path: Path) -> Iterator[Store]:
    s = opened(state_url, tmp_path)
    yield s
    s.close()


def one_line_without(e: BaseException, *secrets: str) -> str:
    text = str(e)
    assert "\n" not in text, text
    for s in secrets:
        assert s not in text, text
    assert e.__cause__ is None and (e.__context__ is None or e.__suppress_context__), "no database exception chained"
    return text


# ---------------------------------------------------------------------- URLs


def test_display_url_masks_the_password() -> None:
    assert display_url("postgresql://rec:s3cr%40t@db.internal:5432/rec") == "postgresql://rec:***@db.internal:5432/rec"
    assert display_url("postgresql://rec@db.internal/rec") == "postgresql://rec@db.internal/rec"
    assert display_url("postgresql://rec:a@b/c@h/db") == "postgresql://rec:***@h/db"
    assert "hunter2" not in display_url("postgresql://h/db?password=hunter2")
    assert display_url("sqlite:////var/lib/state.db") == "sqlite:////var/lib/state.db"


def test_resolve_url_order(tmp_path: Path) -> None:
    legacy = Settings(history=HistorySettings(path="audit/h.db"))
    both = Settings(history=HistorySettings(path="audit/h.db"), state=StateSettings(url="postgresql://r@db/r"))
    assert resolve_url(Settings(), tmp_path, {}) == DEFAULT_URL == "sqlite:///.reconciler/state.db"
    assert resolve_url(legacy, tmp_path, {}) == "sqlite:///audit/h.db"
    assert resolve_url(Settings(history=HistorySettings(path="/abs/h.db")), tmp_path, {}) == "sqlite:////abs/h.db"
    assert resolve_url(both, tmp_path, {}) == "postgresql://r@db/r"
    assert resolve_url(both, tmp_path, {"RECONCILER_STATE_URL": "sqlite:////x.db"}) == "sqlite:////x.db"
    # the old default history file is the store when there is no state.db yet
    (tmp_path / ".reconciler").mkdir()
    (tmp_path / ".reconciler" / "history.db").write_bytes(b"")
    assert resolve_url(Settings(), tmp_path, {}) == "sqlite:///.reconciler/history.db"
    (tmp_path / ".reconciler" / "state.db").write_bytes(b"")
    assert resolve_url(Settings(), tmp_path, {}) == DEFAULT_URL


def test_importing_the_package_does_not_import_sqlalchemy() -> None:
    code = ("import sys, reconciler.state as s; s.display_url('sqlite:///x.db');"
            " print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'psycopg')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------- opening, and how it fails


def test_default_store_is_created_under_dot_reconciler(tmp_path: Path) -> None:
    assert open_store(DEFAULT_URL, config_dir=tmp_path, create=False) is None
    assert not (tmp_path / ".reconciler").exists(), "read-only commands create nothing"
    with opened(DEFAULT_URL, tmp_path) as s:
        assert s.schema_version() == CURRENT
    assert (tmp_path / ".reconciler" / "state.db").is_file()


def test_create_false_gives_none_for_an_empty_store(state_url: str, tmp_path: Path) -> None:
    assert open_store(state_url, config_dir=tmp_path, create=False) is None
    opened(state_url, tmp_path).close()
    with opened(state_url, tmp_path, create=False) as s:
        assert s.entries() == []


def test_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(StateError) as e:
        open_store("mysql://rec:sekrit-pw@db/rec", config_dir=tmp_path)
    text = one_line_without(e.value, "sekrit-pw")
    assert "unknown scheme 'mysql'" in text and "sqlite:///" in text and "postgresql://" in text


def test_missing_directory_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(StateError) as e:
        open_store(f"sqlite:///{tmp_path}/nope/state.db", config_dir=tmp_path)
    assert "does not exist" in one_line_without(e.value) and f"{tmp_path}/nope" in str(e.value)
    assert not (tmp_path / "nope").exists()
    with pytest.raises(StateError, match="does not exist"):
        open_store("sqlite:///elsewhere/state.db", config_dir=tmp_path)


def test_not_a_database_file(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all, " * 100)
    with pytest.raises(StateError) as e:
        open_store("sqlite:///junk.db", config_dir=tmp_path)
    assert "not a database file" in one_line_without(e.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_port(tmp_path: Path) -> None:
    port = _free_port()
    with pytest.raises(StateError) as e:
        open_store(f"postgresql://rec:sekrit-pw@127.0.0.1:{port}/rec", config_dir=tmp_path)
    text = one_line_without(e.value, "sekrit-pw")
    assert f"127.0.0.1:{port}" in text and "refused" in text and "rec:***@" in text


def test_a_server_that_never_answers(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does) and never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(StateError) as e:
            open_store(f"postgresql://rec:sekrit-pw@127.0.0.1:{port}/rec", config_dir=tmp_path)
        assert time.monotonic() - t0 < 15, "the connect timeout is bounded"
    assert f"127.0.0.1:{port}: no answer within 5 s" in one_line_without(e.value, "sekrit-pw")


def _with(url: str, *, password: str | None = None, database: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}" if database else parts.path))


def test_wrong_password_and_missing_database(pg_url: str, tmp_path: Path) -> None:
    real = urlsplit(pg_url).password or ""
    with pytest.raises(StateError) as e:
        open_store(_with(pg_url, password="Wrong-Pw-123"), config_dir=tmp_path)
    text = one_line_without(e.value, "Wrong-Pw-123", real)
    assert "authentication failed" in text and "***" in text
    with pytest.raises(StateError) as e:
        open_store(_with(pg_url, database="no_such_db"), config_dir=tmp_path)
    assert "database 'no_such_db' does not exist" in one_line_without(e.value, real)


def test_password_from_the_environment(pg_url: str, tmp_path: Path) -> None:
    parts = urlsplit(pg_url)
    bare = urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))
    with pytest.raises(StateError, match="password"):
        open_store(bare, config_dir=tmp_path, environ={})
    with opened(bare, tmp_path, environ={"RECONCILER_STATE_PASSWORD": parts.password or ""}) as s:
        assert s.schema_version() == CURRENT


# ---------------------------------------------------------------------- schema versions


def _make_v1(url: str, *, very_old: bool = False) -> None:
    """A history database as history.py made it (optionally before finished/exit_code), with rows."""
    schema = V1_SCHEMA.replace(", finished TEXT, exit_code INTEGER", "") if very_old else V1_SCHEMA
    if url.startswith("postgresql"):
        schema = schema.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY")
    engine = engine_for(url)
    with engine.begin() as conn:
        for stmt in filter(str.strip, schema.split(";")):
            conn.exec_driver_sql(stmt)
        conn.exec_driver_sql("INSERT INTO runs (time, actor, git_commit, git_branch, checksum, command) VALUES"
                             " ('2024-01-01T00:00:00+00:00', 'old', 'abc', 'main', 'c0', 'apply')")
        if not very_old:
            conn.exec_driver_sql("UPDATE runs SET finished = '2024-01-01T00:00:05+00:00', exit_code = 0")
        conn.exec_driver_sql("INSERT INTO runs (time, actor, command) VALUES ('2024-01-02T00:00:00+00:00', 'crashed', 'apply')")
        conn.exec_driver_sql("INSERT INTO changes (run_id, time, shop, scenario, action, before, after, outcome) VALUES"
                             " (1, '2024-01-01T00:00:01+00:00', '100001', 'order_status', 'bind', '{\"appkey\": null}',"
                             " '{\"appkey\": \"21345678\"}', 'applied')")
    engine.dispose()


@pytest.mark.parametrize("very_old", [False, True], ids=["v1", "v1-without-finished"])
def test_a_version_1_history_is_upgraded_in_place(state_url: str, tmp_path: Path, very_old: bool) -> None:
    _make_v1(state_url, very_old=very_old)
    with opened(state_url, tmp_path) as s:
        assert s.schema_version() == CURRENT
        [e] = s.entries()
        assert (e.run, e.actor, e.shop, e.after, e.outcome) == (1, "old", "100001", {"appkey": "21345678"}, "applied")
        assert s.last_written(["100001"])[("100001", "order_status", "binding")].id == e.id
        statuses = [r.status for r in s.runs()]
        assert statuses == (["interrupted", "interrupted"] if very_old else ["finished", "interrupted"])
        run = start(s)  # and it takes new rows
        assert run == 3
        assert s.acquire(run, ["100001"], timeout_s=0, lease_s=60) == []
    with opened(state_url, tmp_path) as s:  # opening again changes nothing
        assert len(s.entries()) == 1 and s.schema_version() == CURRENT


def test_the_old_default_history_file_becomes_the_store(tmp_path: Path) -> None:
    (tmp_path / ".reconciler").mkdir()
    _make_v1(f"sqlite:///{tmp_path}/.reconciler/history.db")
    url = resolve_url(Settings(), tmp_path, {})
    with opened(url, tmp_path) as s:
        assert [e.actor for e in s.entries()] == ["old"]
    assert not (tmp_path / ".reconciler" / "state.db").exists()
    con = sqlite3.connect(tmp_path / ".reconciler" / "history.db")
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(CURRENT,)]
    con.close()


def test_two_processes_upgrading_at_once(state_url: str, tmp_path: Path) -> None:
    _make_v1(state_url)
    barrier = threading.Barrier(4, timeout=30)
    results: list[object] = []

    def open_one() -> None:
        barrier.wait()
        try:
            with opened(state_url, tmp_path) as s:
                results.append(s.schema_version())
        except Exception as e:  # reported below
            results.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [CURRENT] * 4
    engine = engine_for(state_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version FROM schema_version").all() == [(CURRENT,)]
        assert conn.exec_driver_sql("SELECT count(*) FROM changes").scalar() == 1
    engine.dispose()


def test_a_newer_store_is_refused(state_url: str, tmp_path: Path) -> None:
    opened(state_url, tmp_path).close()
    engine = engine_for(state_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE schema_version SET version = 7")
    engine.dispose()
    with pytest.raises(StateError) as e:
        open_store(state_url, config_dir=tmp_path)
    assert str(e.value) == (f"the state store {display_url(state_url)} has schema version 7; this reconciler knows up to {CURRENT}:"
                            " upgrade reconciler")


# ---------------------------------------------------------------------- history


def test_history_round_trip(store: Store) -> None:
    run = start(store, checksum="sum1")
    assert run > 0
    store.record(run, shop="100001", scenario="order_status", action="bind", before={"appkey": None},
                 after={"appkey": "21345678"}, outcome="applied", time="2024-05-01T03:00:00+00:00")
    store.record(run, shop="100002", scenario="modify_address", action="update", before={"buyer_self_service": False},
                 after={"buyer_self_service": True}, outcome="failed", error="boom", time="2024-05-01T03:00:01+00:00")
    store.record(run, shop="100001", scenario="order_status", action="bind", before={"appkey": "21345678"},
                 after={"appkey": None}, outcome=Outcome.rolled_back, time="2024-05-01T03:00:02+00:00")
    store.finish_run(run, exit_code=3)
    entries = store.entries()
    assert [(e.shop, e.outcome, e.error) for e in entries] == [
        ("100001", "applied", None), ("100002", "failed", "boom"), ("100001", "rolled-back", None)]
    first = entries[0]
    assert (first.run, first.actor, first.git_commit, first.git_branch, first.checksum, first.command) == \
        (run, "alice", "0123456789abcdef", "main", "sum1", "apply")
    assert first.before == {"appkey": None} and first.after == {"appkey": "21345678"}
    assert [e.shop for e in store.entries(shops=["100002"])] == ["100002"]
    assert [e.outcome for e in store.entries(since="2024-05-01T03:00:01+00:00")] == ["failed", "rolled-back"]
    assert [e.outcome for e in store.entries(limit=2)] == ["failed", "rolled-back"]
    last = store.last_written(["100001", "100002"])
    assert list(last) == [("100001", "order_status", "binding")]  # the failed update never reached the platform
    assert last[("100001", "order_status", "binding")].outcome == "rolled-back"
    [info] = store.runs()
    assert (info.id, info.status, info.exit_code, info.host, info.pid) == (run, "finished", 3, HOST, os.getpid())


def test_run_status(state_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    with opened(state_url, tmp_path, clock=clock) as s:
        here_alive = start(s)
        here_dead = start(s, pid=dead_pid())
        elsewhere = start(s, host="ci-runner-7", pid=1, lease_s=60)
        done = start(s)
        s.finish_run(done, exit_code=0)
        status = {r.id: r.status for r in s.runs()}
        assert status == {here_alive: "running", here_dead: "interrupted", elsewhere: "running", done: "finished"}
        clock.advance(61)  # the other host stopped renewing
        assert [r.status for r in s.runs([elsewhere])] == ["interrupted"]
        assert s.runs([here_alive])[0].heartbeat == format_time(clock.t - timedelta(seconds=61))
