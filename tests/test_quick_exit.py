"""The console script ends with ``os._exit`` once a command is done (``reconciler.cli.run``):
the exit code, the output and the exit handlers are what a normal exit gives, and a thread
still running is waited for as before. Real processes; the example configuration."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clikit import cli_env, command

EXAMPLE = Path(__file__).resolve().parent.parent / "configs"

# run() with an exit handler registered before the command (what logging or tempfile do)
WITH_HANDLER = """
import atexit, sys
atexit.register(lambda: print("exit handler ran", file=sys.stderr, flush=True))
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import run
run()
"""
# run() while a (non-daemon) thread is still running: it prints once it reads a line from stdin
WITH_THREAD = """
import sys, threading
def late():
    sys.stdin.readline()
    print("thread finished", flush=True)
threading.Thread(target=late).start()
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import run
run()
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    shutil.copytree(EXAMPLE, d, ignore=shutil.ignore_patterns(".reconciler"))
    return d


def test_the_exit_code_and_the_whole_output(config: Path) -> None:
    """plan exits 1 on the example's deliberate 100004 error; every line is written before the process ends."""
    plan = subprocess.run([*command(), "-C", str(config), "plan"], capture_output=True, text=True, env=cli_env(), timeout=120,
                          check=False)
    assert plan.returncode == 1, plan.stderr
    assert plan.stdout.rstrip().splitlines()[-1].startswith("Plan: 10 to bind, 3 to rotate, 1 to unbind, 2 to update")
    version = subprocess.run([*command(), "--version"], capture_output=True, text=True, env=cli_env(), timeout=60, check=False)
    assert (version.returncode, version.stdout) == (0, "reconciler, version 0.1.0\n")
    usage = subprocess.run([*command(), "nosuch"], capture_output=True, text=True, env=cli_env(), timeout=60, check=False)
    assert usage.returncode == 1 and "No such command 'nosuch'" in usage.stderr


def test_exit_handlers_run(config: Path) -> None:
    done = subprocess.run([sys.executable, "-c", WITH_HANDLER, "-C", str(config), "validate"], capture_output=True, text=True,
                          env=cli_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Configuration valid: 12 shop(s)")
    assert done.stderr.rstrip().endswith("exit handler ran")


def test_a_thread_still_running_is_waited_for(config: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", WITH_THREAD, "-C", str(config), "validate"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()) as p:
        assert p.stdout is not None and p.stdin is not None
        first = p.stdout.readline()   # validate's output: the command has run
        assert first
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert first.startswith("Configuration valid") and out == "thread finished\n"


# an object finalized when the interpreter tears the process down (not after os._exit)
WITH_FINALIZER = """
import sys
class Witness:
    def __del__(self):
        print("torn down", file=sys.stderr, flush=True)
witness = Witness()
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import run
run()
"""


@pytest.mark.parametrize(("args", "quick"), [(["validate"], True), (["plan"], True), (["history"], False),
                                             (["--version"], False)])
def test_only_the_read_only_commands_end_quickly(config: Path, args: list[str], quick: bool) -> None:
    """plan, drift and validate end with os._exit; any other command (apply, history, the state
    and sandbox commands: their databases are closed as usual) the usual way."""
    done = subprocess.run([sys.executable, "-c", WITH_FINALIZER, "-C", str(config), *args], capture_output=True, text=True,
                          env=cli_env(), timeout=120, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert ("torn down" in done.stderr) is not quick, done.stderr
