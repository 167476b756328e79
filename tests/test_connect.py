"""From settings to a provider: the sessions file read like every file of ours (located errors,
no secret shown)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ConfigError, ReconcilerError
from reconciler.model import TopSettings
from reconciler.secrets import read_sessions

SESSION_A, SESSION_B = "SESSKEY-7f3a-100001", "SESSKEY-91bc-100002"


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
