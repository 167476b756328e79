"""From settings to a provider: the sessions file read like every file of ours (located errors,
no secret shown), and the log filters the providers and the sandbox server install once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reconciler.errors import ConfigError, ReconcilerError
from reconciler.platform import SandboxPlatform, World
from reconciler.providers.top import TopProvider
from reconciler.sandbox_server import start_server
from reconciler.secrets import read_sessions
from reconciler.settings import TopSettings

SESSION_A, SESSION_B = "SESSKEY-7f3a-100001", "SESSKEY-91bc-100002"
HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.http11")


def sessions_from(tmp_path: Path, text: str, name: str = "sessions.yaml") -> dict[str, str]:
    (tmp_path / name).write_text(text, encoding="utf-8")
    settings = TopSettings(kind="top", url="http://127.0.0.1:1/router/rest", app_key="30000001", sessions_file=name)
    sessions, where = read_sessions(settings, tmp_path)
    assert where == str(tmp_path / name)
    return sessions


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ReconcilerError) as info:
        sessions_from(tmp_path, text)
    message = str(info.value)
    assert SESSION_A not in message and SESSION_B not in message
    return message


def test_a_sessions_file_in_yaml_or_json(tmp_path: Path) -> None:
    assert sessions_from(tmp_path, f'"100001": {SESSION_A}\n"100002": " {SESSION_B} "\n') == \
        {"100001": SESSION_A, "100002": SESSION_B}
    assert sessions_from(tmp_path, f'{{"100001": "{SESSION_A}",\n "100002": "{SESSION_B}"}}\n', "sessions.json") == \
        {"100001": SESSION_A, "100002": SESSION_B}


def test_a_duplicate_shop_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "sessions.yaml"
    with pytest.raises(ConfigError) as info:
        sessions_from(tmp_path, f'"100001": {SESSION_A}\n"100002": {SESSION_B}\n"100001": {SESSION_B}\n')
    assert str(info.value).splitlines() == [
        f"{path}:3:1: duplicate key (first at line 1)",
        "1 error(s) in the session keys (provider.sessions_file)",
    ]


def test_a_duplicate_in_a_file_written_the_wrong_way_round_does_not_show_the_key(tmp_path: Path) -> None:
    message = refused(tmp_path, f'{SESSION_A}: "100001"\n{SESSION_A}: "100002"\n')
    assert f"{tmp_path / 'sessions.yaml'}:2:1: duplicate key (first at line 1)" in message


def test_values_yaml_cannot_read_and_yaml_errors_show_no_secret(tmp_path: Path) -> None:
    message = refused(tmp_path, '"100001": 2024-13-45\n')  # read as a date, which it is not
    assert "2024-13-45" not in message and ":1:11: cannot read this value (not shown" in message
    assert ": YAML syntax error: " in refused(tmp_path, f'"100001": [{SESSION_A}\n')
    assert "YAML anchors (&k) are not allowed" in refused(tmp_path, f'"100001": &k {SESSION_A}\n"100002": *k\n')


def test_an_unquoted_shop_id_is_one_entry_problem(tmp_path: Path) -> None:
    message = refused(tmp_path, f"100001: {SESSION_A}\n")
    assert message == f"{tmp_path / 'sessions.yaml'}: entry 1: the key is not a shop id" \
                      " (a quoted string of digits; the file maps shop id → session key)"


def test_an_unreadable_sessions_file(tmp_path: Path) -> None:
    settings = TopSettings(kind="top", url="http://127.0.0.1:1/router/rest", app_key="30000001", sessions_file="none.yaml")
    with pytest.raises(ReconcilerError) as info:
        read_sessions(settings, tmp_path)
    assert str(info.value) == (f"cannot read the session keys from {tmp_path / 'none.yaml'} (provider.sessions_file):"
                               " No such file or directory")


# --------------------------------------------------------------------------- log filters, installed once


def mask_filters() -> list[int]:
    return [sum(type(f).__name__ == "_MaskLog" for f in logging.getLogger(name).filters) for name in HTTP_LOGGERS]


def test_open_providers_share_one_mask_filter_and_close_removes_it() -> None:
    before = mask_filters()  # [0, 0, 0] unless another test left a provider open
    assert max(before) <= 1
    providers = [TopProvider(url="http://127.0.0.1:1/router/rest", app_key="30000001", secret=f"secret-{i}",
                             sessions={"100001": f"session-{i}"}) for i in range(5)]
    try:
        assert mask_filters() == [1, 1, 1]
        record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "%s %s %s", ("secret-0", "session-4", "x"), None)
        assert all(f.filter(record) for f in logging.getLogger("httpx").filters)
        assert record.getMessage() == "*** *** x"  # every open provider's secrets
        providers.pop().close()
        record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "session-4 session-3", None, None)
        assert all(f.filter(record) for f in logging.getLogger("httpx").filters)
        assert record.getMessage() == "session-4 ***"  # a closed provider's secrets are withdrawn
    finally:
        for p in providers:
            p.close()
    assert mask_filters() == before


def test_sandbox_servers_add_one_quiet_filter(tmp_path: Path) -> None:
    platform = SandboxPlatform(tmp_path / "sandbox.db")
    platform.load_world(World.model_validate({"app": {"app_key": "30000001", "app_secret": "s"}}))
    handles = [start_server(platform)[1] for _ in range(3)]
    try:
        quiet = [f for f in logging.getLogger("waitress").filters if type(f).__name__ == "_QuietDrops"]
        assert len(quiet) == 1
    finally:
        for h in handles:
            h.stop()
        platform.close()
