"""What git says about the configuration directory: the commit a run applies, and whether
a file of secrets would be committed. Every answer is None/False when git or a repository
is absent; git is never required."""

from __future__ import annotations

from pathlib import Path


def _git(directory: Path, *args: str) -> tuple[int, str] | None:
    import subprocess  # (when git is asked: apply, or a secrets file named in reconciler.yaml)

    try:
        out = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.returncode, out.stdout.strip()


def git_info(directory: Path) -> tuple[str | None, str | None]:
    """(commit, branch) of the repository holding ``directory``, or Nones. The commit gets
    ``-dirty`` when tracked files under ``directory`` have uncommitted changes: the config
    applied is then not exactly that commit."""
    head = _git(directory, "rev-parse", "HEAD")
    if head is None or head[0] != 0 or not head[1]:
        return None, None
    commit = head[1]
    status = _git(directory, "status", "--porcelain", "--untracked-files=no", "--", ".")
    if status is not None and status[0] == 0 and status[1]:
        commit += "-dirty"
    branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
    name = branch[1] if branch is not None and branch[0] == 0 else None
    return commit, (None if name in (None, "", "HEAD") else name)


def committable(path: Path) -> bool:
    """True when ``path`` is inside a git work tree and not ignored: ``git add -A`` would
    commit it (or already has)."""
    answer = _git(path.parent, "check-ignore", "-q", "--", path.name)
    return answer is not None and answer[0] == 1  # 0: ignored, 1: not ignored, 128: not a repository
