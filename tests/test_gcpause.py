"""The collector's pauses (``reconciler.gcpause``): in the console script's process running a
read-only command what a pause built is frozen when the outermost pause ends (no young
collection walks it again); anywhere else (another command, a test runner, a program
embedding the CLI) nothing is frozen. Real processes
for the console script; the example configuration."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import cli_env

from reconciler import gcpause
from reconciler.gcpause import paused_gc

EXAMPLE = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture
def freezing() -> Iterator[None]:
    gc.collect()
    gc.unfreeze()
    gcpause.FREEZE = True
    try:
        yield
    finally:
        gcpause.FREEZE = False
        gc.unfreeze()   # (back into the collector's reach: this test process goes on)


def test_the_outermost_pause_freezes_what_was_built(freezing: None) -> None:
    assert gc.get_freeze_count() == 0
    with paused_gc():
        with paused_gc():
            built = [[i] for i in range(1000)]
        assert not gc.isenabled() and gc.get_freeze_count() == 0   # not by the inner pause
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)


def test_no_freeze_outside_the_console_script() -> None:
    gc.unfreeze()
    assert gcpause.FREEZE is False
    with paused_gc():
        built = [[i] for i in range(1000)]
    assert gc.isenabled() and gc.get_freeze_count() == 0 and len(built) == 1000


def test_a_pause_with_the_collector_off_leaves_it_off(freezing: None) -> None:
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled() and gc.get_freeze_count() == 0   # (not ours to freeze or turn on)
    finally:
        gc.enable()


# run() (the console script), then report whether it froze: the exit handlers still run
REPORT = """
import atexit, gc, sys
atexit.register(lambda: print("frozen", gc.get_freeze_count(), file=sys.stderr, flush=True))
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import run
run()
"""


@pytest.mark.parametrize(("command", "frozen", "code"), [("validate", True, 0), ("plan", True, 1), ("apply", False, 3)])
def test_the_console_script_freezes_for_the_read_only_commands(tmp_path: Path, command: str, frozen: bool, code: int) -> None:
    """plan, drift and validate (the process ends with them) freeze what they loaded; a command
    that goes on writing (apply, history, the state and sandbox commands) leaves the collector be."""
    config = tmp_path / "configs"
    shutil.copytree(EXAMPLE, config, ignore=shutil.ignore_patterns(".reconciler"))
    args = [command, "--auto-approve"] if command == "apply" else [command]   # (apply loads the configuration too)
    done = subprocess.run([sys.executable, "-c", REPORT, "-C", str(config), *args], capture_output=True, text=True,
                          env=cli_env(), timeout=120, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stderr   # (plan 1, apply 3: the example's deliberate error, 100004)
    count = int(done.stderr.rstrip().rsplit(" ", 1)[1])
    assert (count > 10_000) if frozen else count == 0   # the interpreter's objects and the configuration's, at least
