"""The history records the git commit and branch of the config dir, and the actor.

A real repository: ``git init`` around the config dir, real commits (author and committer
set per command, so the machine's git config does not matter). git must be installed:
these tests fail, not skip, without it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import Agency

SHOPS = """\
shops:
  - id: "100001"
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
      modify_address: {}
"""

BRANCH = "feature/rotate-100001"


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git config, no repository above the test's directory, no CI actor."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RECONCILER_ACTOR", "someone-else")  # --actor must win over it


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Reconciler Tests", "-c", "user.email=tests@example.com",
         "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
        capture_output=True, text=True, check=True)
    return out.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A", ".")
    git(repo, "commit", "-q", "-m", message)
    sha = git(repo, "rev-parse", "HEAD")
    assert re.fullmatch(r"[0-9a-f]{40}", sha)
    return sha


def entries(agency: Agency) -> list[dict[str, Any]]:
    r = agency.run("history", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["format_version"] == 1
    result: list[dict[str, Any]] = data["entries"]
    return result


def test_history_carries_the_commit_branch_and_actor(agency: Agency) -> None:
    repo = agency.dir.parent
    agency.shops(SHOPS)
    agency.world({"100001": {}})
    git(repo, "init", "-q")
    git(repo, "checkout", "-q", "-b", BRANCH)
    (repo / ".gitignore").write_text(".reconciler/\n", encoding="utf-8")
    first = commit_all(repo, "bind 100001 to jushuitan")

    r = agency.run("apply", "--auto-approve", "--actor", "alice@ci")
    assert r.exit_code == 0, r.output
    got = entries(agency)
    assert [(e["shop"], e["scenario"], e["action"], e["outcome"], e["actor"], e["git_commit"], e["git_branch"], e["command"])
            for e in got] == [
        ("100001", "intercept_shipment", "bind", "applied", "alice@ci", first, BRANCH, "apply"),
        ("100001", "modify_address", "bind", "applied", "alice@ci", first, BRANCH, "apply"),
    ]
    text = agency.run("history")
    assert text.exit_code == 0
    assert f"  alice@ci {BRANCH}@{first[:10]}  100001 intercept_shipment  bind   " in text.stdout

    # a new commit on another branch: the next run records it; the first run keeps its own
    git(repo, "checkout", "-q", "-b", "main")
    agency.shops(SHOPS.replace("erp: jushuitan", "erp: inhouse"))
    second = commit_all(repo, "move 100001 to inhouse")
    assert second != first
    r = agency.run("apply", "--auto-approve", "--actor", "bob")
    assert r.exit_code == 0, r.output
    got = entries(agency)
    assert [(e["run"], e["action"], e["actor"], e["git_commit"], e["git_branch"]) for e in got] == [
        (1, "bind", "alice@ci", first, BRANCH),
        (1, "bind", "alice@ci", first, BRANCH),
        (2, "rotate", "bob", second, "main"),
        (2, "rotate", "bob", second, "main"),
    ]


def test_a_detached_head_records_the_commit_without_a_branch(agency: Agency) -> None:
    repo = agency.dir.parent
    agency.shops(SHOPS)
    agency.world({"100001": {}})
    git(repo, "init", "-q")
    sha = commit_all(repo, "initial")
    git(repo, "checkout", "-q", "--detach", "HEAD")  # how CI systems often check out a commit

    r = agency.run("apply", "--auto-approve", "--actor", "ci-bot")
    assert r.exit_code == 0, r.output
    assert {(e["git_commit"], e["git_branch"], e["actor"]) for e in entries(agency)} == {(sha, None, "ci-bot")}


def test_outside_a_repository_there_is_no_commit(agency: Agency) -> None:
    agency.shops(SHOPS)
    agency.world({"100001": {}})
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    # no --actor: the CI variables decide (RECONCILER_ACTOR first)
    assert {(e["git_commit"], e["git_branch"], e["actor"]) for e in entries(agency)} == {(None, None, "someone-else")}
    assert "  run 1  someone-else  100001 intercept_shipment  bind   " in agency.run("history").stdout


def test_uncommitted_changes_mark_the_commit_dirty(agency: Agency) -> None:
    """The config applied is not exactly HEAD when tracked files under it were edited."""
    repo = agency.dir.parent
    agency.shops(SHOPS)
    agency.world({"100001": {}})
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text(".reconciler/\n", encoding="utf-8")
    sha = commit_all(repo, "initial")
    agency.shops(SHOPS.replace("      modify_address: {}\n", ""))  # edited, not committed
    r = agency.run("apply", "--auto-approve", "--actor", "ci-bot")
    assert r.exit_code == 0, r.output
    assert {e["git_commit"] for e in entries(agency)} == {f"{sha}-dirty"}


def test_a_secrets_file_git_would_commit_is_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import APP_SECRET, SECRET_ENV, SESSIONS_FILE

    monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    a = Agency(tmp_path / "configs", "top")
    try:
        a.shops(SHOPS)
        a.world({"100001": {}})
        git(a.dir.parent, "init", "-q")
        r = a.run("plan")
        assert r.exit_code == 0, r.output
        assert (f"Warning: {a.dir / SESSIONS_FILE} (provider.sessions_file) holds secrets and is in a git work tree"
                " without being ignored: add it to .gitignore, or use $RECONCILER_SESSIONS instead") in r.stderr
        (a.dir.parent / ".gitignore").write_text(f"configs/{SESSIONS_FILE}\n", encoding="utf-8")
        r = a.run("plan")
        assert r.exit_code == 0 and "Warning" not in r.stderr, r.output
    finally:
        a.close()
