"""Secrets (the app secret, session keys) come from the environment or a file and never
appear in any output, saved file, log line or traceback — on the top provider, where
they are actually used.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import APP_SECRET, SECRET_ENV, SESSIONS_FILE, Agency

from reconciler.cli import main

SHOPS = """\
shops:
  - id: "100001"
    erp: jushuitan
    scenarios: {intercept_shipment: {}, modify_address: {}, order_status: {}}
  - id: "100002"
    erp: wangdiantong
    scenarios: {intercept_shipment: {}}
  - id: "100003"
    erp: inhouse
    scenarios: {intercept_shipment: {}}
"""
SESSIONS = {"100001": "SESSKEY-7f3a-100001", "100002": "SESSKEY-91bc-100002", "100003": "SESSKEY-02de-100003",
            "100004": "SESSKEY-55aa-100004"}
SECRETS = [APP_SECRET, *SESSIONS.values()]
NO_RETRIES = "provider: {kind: sandbox, world: world.yaml}\napply: {retries: 0}\n"


def assert_clean(text: str, where: str) -> None:
    for s in SECRETS:
        assert s not in text, f"{where} shows a secret"


@pytest.fixture
def top(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Agency]:
    monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    a = Agency(tmp_path / "configs", "top")
    a.shops(SHOPS)
    a.world({sid: {"session": s} for sid, s in SESSIONS.items()}, faults=[
        # failures whose messages travel through every layer: a transient one, a permanent one
        {"operation": "bind", "shop": "100001", "scenario": "modify_address", "error": "isp.unknown-error", "times": 1},
        {"operation": "bind", "shop": "100003", "error": "isv.permission-denied", "times": None},
    ])
    try:
        yield a
    finally:
        a.close()


def test_no_secret_in_any_output_file_or_log(top: Agency, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    out = top.dir.parent / "out"
    out.mkdir()
    commands: list[list[str]] = [
        ["validate"], ["plan"], ["plan", "--format", "json"], ["plan", "--format", "markdown"],
        ["plan", "--out", str(out / "plan.json")], ["apply", str(out / "plan.json")],
        ["apply", "--auto-approve"], ["apply"],
        ["sandbox", "dump"],
    ]
    known = set(main.commands)
    if "drift" in known:
        commands += [["drift"], ["drift", "--format", "json"], ["drift", "--format", "junit"],
                     ["drift", "--junit-xml", str(out / "drift.xml")]]
    if "import" in known:
        commands += [["import", "--all", "--out", str(out / "imported.yaml")]]
    if "history" in known:
        commands += [["history"], ["history", "--format", "json"]]
    # Someone rebinds a shop by hand: drift and a stale plan have something to say.
    p = top.platform()
    try:
        p.bind("100004", "intercept_shipment", "12345679", None)
    finally:
        p.close()
    exits: dict[str, int] = {}
    for debug in ([], ["--debug"]):
        for args in commands:
            r = CliRunner().invoke(main, [*debug, "-C", str(top.dir), *args], env={SECRET_ENV: APP_SECRET},
                                   input="n\n", catch_exceptions=True)
            where = " ".join([*debug, *args])
            exits[where] = r.exit_code
            assert_clean(r.stdout, f"stdout of {where}")
            assert_clean(r.stderr, f"stderr of {where}")
            if r.exception is not None and not isinstance(r.exception, SystemExit):
                assert_clean("".join(traceback.format_exception(r.exception)), f"traceback of {where}")
    assert exits["plan"] == 0 and exits[f"apply {out / 'plan.json'}"] == 3  # the runs did reach the platform
    for f in [*out.iterdir(), *(top.dir / ".reconciler").iterdir()]:
        if f.is_file() and f.name != "sandbox.db" and not f.name.startswith("sandbox.db-"):  # the platform's own store
            assert_clean(f.read_bytes().decode("utf-8", "replace"), str(f))
    assert any(r.name == "httpx" for r in caplog.records)  # the HTTP library did log every request…
    assert_clean(caplog.text, "the log")  # …with the secrets masked
    for record in caplog.records:
        assert_clean(record.getMessage(), f"log record {record.name}")


def test_no_secret_on_a_real_terminal_with_debug(top: Agency) -> None:
    """As a user runs it: a separate process, --debug logging to its real stderr."""
    env = {**os.environ, SECRET_ENV: APP_SECRET}
    top.platform().close()  # the world is loaded
    for args in (["plan"], ["apply", "--auto-approve"]):
        proc = subprocess.run([sys.executable, "-m", "reconciler", "--debug", "-C", str(top.dir), *args],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        assert proc.returncode in (0, 3), proc.stderr[-2000:]
        assert "HTTP Request: POST" in proc.stderr
        assert "session=***" in proc.stderr and "sign=***" in proc.stderr
        assert_clean(proc.stdout, f"stdout of {args}")
        assert_clean(proc.stderr, f"stderr of {args}")


def test_a_wrong_secret_is_refused_without_showing_either(top: Agency) -> None:
    r = top.run("plan", env={SECRET_ENV: "not-the-app-secret"})
    assert r.exit_code == 1
    assert "isv.invalid-signature" in r.stderr and r.stdout == ""  # one error for the run, not one per shop
    assert "not-the-app-secret" not in r.output
    assert_clean(r.output, "plan with a wrong secret")


# --------------------------------------------------------------------------- where secrets come from


def test_a_missing_secret_names_the_variable(top: Agency) -> None:
    r = top.run("plan", env={SECRET_ENV: None})  # type: ignore[dict-item]
    assert r.exit_code == 1
    assert "the app secret is not set: export RECONCILER_APP_SECRET" in r.stderr
    assert top.server is not None and top.server.counters().received == 0


def test_the_secret_from_a_file(top: Agency) -> None:
    top.write("secret.txt", APP_SECRET + "\n")
    top.top_options["app_secret_file"] = "secret.txt"
    top.write("reconciler.yaml", NO_RETRIES)
    r = top.run("plan", "--detailed-exitcode", env={SECRET_ENV: None})  # type: ignore[dict-item]
    assert r.exit_code == 2, r.output
    top.top_options["app_secret_file"] = "missing.txt"
    top.write("reconciler.yaml", NO_RETRIES)
    r = top.run("plan")
    assert r.exit_code == 1
    assert "cannot read the app secret from" in r.stderr and "missing.txt" in r.stderr


def test_session_keys_from_the_environment(top: Agency) -> None:
    top.top_options["sessions_file"] = None
    top.write("reconciler.yaml", NO_RETRIES)
    r = top.run("plan")  # neither a file nor the variable: the tokens come from the state store, sealed
    assert r.exit_code == 1
    assert "RECONCILER_STATE_KEY is not set" in r.stderr
    top.top_options["sessions_env"] = "AGENCY_SESSIONS"  # named: it must be set
    top.write("reconciler.yaml", NO_RETRIES)
    r = top.run("plan")
    assert r.exit_code == 1
    assert "no session keys: export AGENCY_SESSIONS as a JSON object" in r.stderr
    del top.top_options["sessions_env"]
    top.write("reconciler.yaml", NO_RETRIES)
    r = top.run("plan", "--format", "json", env={"RECONCILER_SESSIONS": json.dumps(SESSIONS)})
    assert r.exit_code == 0, r.output
    assert {c["shop"] for c in json.loads(r.stdout)["changes"]} == {"100001", "100002", "100003"}


def test_bad_session_files_are_reported_without_their_values(top: Agency) -> None:
    top.write(SESSIONS_FILE, "100001: SESSKEY-7f3a-100001\n\"100002\": 9931\n\"100003\": ''\n")
    r = top.run("plan")
    assert r.exit_code == 1
    assert "entry 1: the key is not a shop id (a quoted string of digits" in r.stderr
    assert "the session key of shop 100002 must be a non-empty string" in r.stderr
    assert "the session key of shop 100003 must be a non-empty string" in r.stderr
    assert "9931" not in r.stderr
    assert_clean(r.output, "a bad sessions file")
    top.write(SESSIONS_FILE, yaml.safe_dump(["SESSKEY-7f3a-100001"]))
    r = top.run("plan")
    assert r.exit_code == 1 and "expected a mapping of shop id to session key" in r.stderr
    assert_clean(r.output, "a sessions file that is a list")


def test_a_sessions_file_written_the_wrong_way_round_is_not_echoed(top: Agency) -> None:
    """{session: shop} instead of {shop: session}: the error names the entry, never the key."""
    (top.dir / SESSIONS_FILE).write_text(yaml.safe_dump({s: sid for sid, s in SESSIONS.items()}), encoding="utf-8")
    r = top.run("plan")
    assert r.exit_code == 1
    assert "entry 1: the key is not a shop id" in r.stderr
    assert_clean(r.output, "plan with a swapped sessions file")


def test_world_file_errors_do_not_echo_secrets(tmp_path: Path) -> None:
    """An unquoted numeric app secret or session key is an error that does not show the value."""
    (tmp_path / "w.yaml").write_text('app: {app_key: "30000001", app_secret: 987654321}\n'
                                     'shops:\n  "100001": {session: 123456789}\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["-C", str(tmp_path), "sandbox", "load", str(tmp_path / "w.yaml")])
    assert r.exit_code == 1
    assert f"{tmp_path / 'w.yaml'}:1:40: app.app_secret: must be a quoted, non-empty string" in r.stderr
    assert f"{tmp_path / 'w.yaml'}:3:23: shops.100001.session: must be a quoted" in r.stderr
    assert "987654321" not in r.output and "123456789" not in r.output
