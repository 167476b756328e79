"""The test PostgreSQL server and the state-store fixtures: a real server, reachable with
SQLAlchemy + psycopg, password-checked, one fresh database per test, loopback only."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from pgserver import PgServer


def engine_url(url: str) -> str:
    """The store URL as SQLAlchemy takes it (psycopg 3 for PostgreSQL)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_select_one_on_each_backend(state_url: str) -> None:
    engine = sa.create_engine(engine_url(state_url))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_state_url_shapes(state_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["state_url"] == "sqlite":
        assert state_url == f"sqlite:///{tmp_path.resolve()}/state.db"
        assert state_url.startswith("sqlite:////")
    else:
        assert state_url.startswith("postgresql://reconciler:")
        assert "@127.0.0.1:" in state_url
        assert state_url.rsplit("/", 1)[1].startswith("t_")


def test_wrong_or_missing_password_is_refused(pg_server: PgServer, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/dev/null")
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("reconciler",)
    wrong = pg_url.replace(pg_server.password, "not-the-password")
    assert wrong != pg_url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=10)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_server.url(dbname, password=False), connect_timeout=10)


def test_fresh_databases_are_independent(pg_server: PgServer, pg_url: str) -> None:
    other_url = pg_server.create_database("t_independent_other")
    engines = [sa.create_engine(engine_url(u)) for u in (pg_url, other_url)]
    try:
        with engines[0].begin() as conn:
            conn.execute(sa.text("CREATE TABLE marker (v int)"))
            conn.execute(sa.text("INSERT INTO marker VALUES (42)"))
        with engines[0].connect() as conn:
            assert conn.execute(sa.text("SELECT v FROM marker")).scalar_one() == 42
        with engines[1].connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('marker')")).scalar_one() is None
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "t_independent_other"
    finally:
        for e in engines:
            e.dispose()
        pg_server.drop_database("t_independent_other")


def _listening(port: int) -> list[str]:
    """The local addresses (hex, as /proc/net/tcp* shows them) of TCP sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if fields[3] == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                found.append(addr)
    return found


def test_listens_on_loopback_only(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url, connect_timeout=10) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == (str(pg_server.socket_dir),)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
    assert pg_server.port is not None
    assert (pg_server.socket_dir / f".s.PGSQL.{pg_server.port}").is_socket()
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to list the listening sockets")
    assert _listening(pg_server.port) == ["0100007F"]  # 127.0.0.1, and nothing else (no ::, no 0.0.0.0)
