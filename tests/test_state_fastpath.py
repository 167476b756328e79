"""plan's cheap look at the store: an SQLite store with no open journal intent is known to hold
no interrupted shop without SQLAlchemy; anything else means "look properly"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reconciler.state import open_store, surely_nothing_interrupted


def test_surely_nothing_interrupted_only_when_no_intent_is_open(tmp_path: Path) -> None:
    url = "sqlite:///state.db"
    assert surely_nothing_interrupted(url, config_dir=tmp_path) is False          # no store: look properly
    store = open_store(url, config_dir=tmp_path)
    assert store is not None
    try:
        assert surely_nothing_interrupted(url, config_dir=tmp_path) is True
        run = store.start_run(actor="a", git_commit=None, git_branch=None, checksum=None, host="h", pid=1, lease_s=60)
        store.acquire(run, ["100001"], timeout_s=0, lease_s=60)
        store.intent(run, "100001", [{"shop": "100001", "scenario": "intercept_shipment", "action": "bind",
                                      "before": {"appkey": None}, "after": {"appkey": "21345678"}}])
        assert surely_nothing_interrupted(url, config_dir=tmp_path) is False      # an open intent: look properly
        store.shop_done(run, "100001", "applied")
        assert surely_nothing_interrupted(url, config_dir=tmp_path) is True
    finally:
        store.close()
    assert surely_nothing_interrupted("postgresql://u@127.0.0.1:1/db", config_dir=tmp_path) is False
    assert surely_nothing_interrupted("bogus://x", config_dir=tmp_path) is False
    (tmp_path / "junk.db").write_bytes(b"not a database")
    assert surely_nothing_interrupted("sqlite:///junk.db", config_dir=tmp_path) is False


def test_the_cheap_look_imports_no_sqlalchemy(tmp_path: Path) -> None:
    store = open_store("sqlite:///state.db", config_dir=tmp_path)
    assert store is not None
    store.close()
    code = ("import sys; from pathlib import Path; from reconciler.state import surely_nothing_interrupted as s\n"
            f"print(s('sqlite:///state.db', config_dir=Path({str(tmp_path)!r})), 'sqlalchemy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["True", "False"], r.stderr
