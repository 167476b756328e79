"""The parse cache written in the background (``ShopCache.save(background=True)``, what the
read-only commands do): a forked child writes what a write in place writes, byte for byte;
the command waits for it before it ends (no child left, the file whole when the command
returns); the child never writes to the command's output; with another thread running, or
where the cache cannot be written, the run is what it would be without it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from clikit import cli_env, command
from test_parse_cache import FILES, TODAY, Agency_, outcome

from reconciler import parsecache
from reconciler.cli import main
from reconciler.config import load_config
from reconciler.parsecache import CACHE_DIR, CACHE_FILE


def written_in_place(root: Path) -> bytes:
    path = root / CACHE_DIR / CACHE_FILE
    path.unlink(missing_ok=True)
    load_config(str(root), cache=True)
    data = path.read_bytes()
    path.unlink()
    return data


def test_a_forked_writer_writes_what_a_write_in_place_writes(tmp_path: Path) -> None:
    Agency_(tmp_path)
    expected = written_in_place(tmp_path)
    load_config(str(tmp_path), cache=True, background=True)
    assert len(parsecache._writers) == 1   # forked, not yet waited for
    pid = parsecache._writers[0]
    parsecache.finish()
    assert parsecache._writers == []
    with pytest.raises(ChildProcessError):   # reaped: no child left behind
        os.waitpid(pid, os.WNOHANG)
    assert (tmp_path / CACHE_DIR / CACHE_FILE).read_bytes() == expected
    assert outcome(str(tmp_path), cache=True) == outcome(str(tmp_path), cache=False)


def test_with_another_thread_running_it_is_written_in_place(tmp_path: Path) -> None:
    """A fork copies only the thread that forks: with another one running, no fork."""
    Agency_(tmp_path)
    expected = written_in_place(tmp_path)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        load_config(str(tmp_path), cache=True, background=True)
        assert parsecache._writers == []
        assert (tmp_path / CACHE_DIR / CACHE_FILE).read_bytes() == expected
    finally:
        release.set()
        other.join()


def test_where_the_cache_cannot_be_written_the_writer_goes_without(tmp_path: Path) -> None:
    Agency_(tmp_path)
    (tmp_path / ".reconciler").write_text("not a folder", encoding="utf-8")
    expected = outcome(str(tmp_path), cache=False)
    c = load_config(str(tmp_path), cache=True, background=True, today=TODAY)
    parsecache.finish()
    assert ("ok", c.shops, c.warnings, c.managed_total, c.waivers, sorted(c.profiles)) == expected
    assert (tmp_path / ".reconciler").read_text(encoding="utf-8") == "not a folder"


# a command run after something sits unflushed in this process's stdout: a child that
# flushed what it inherited would print it twice
UNFLUSHED = """
import sys
sys.stdout.write("written before the command\\n")
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import run
run()
"""


def test_a_real_plan_leaves_the_whole_cache_and_only_its_own_output(tmp_path: Path) -> None:
    Agency_(tmp_path)
    (tmp_path / "reconciler.yaml").write_text("provider: {kind: sandbox, path: .reconciler/sandbox.db}\n", encoding="utf-8")
    expected = written_in_place(tmp_path)
    env = {k: v for k, v in cli_env().items() if k != "PYTHONUNBUFFERED"}   # stdout block-buffered, as in a pipe
    plain = subprocess.run([*command(), "-C", str(tmp_path), "plan"], capture_output=True, text=True, timeout=120,
                           env={**env, "RECONCILER_NO_CACHE": "1"}, check=False)
    assert plain.returncode == 1 and "does not exist" in plain.stdout, plain.stderr   # (an empty sandbox: every shop an error)
    cached = subprocess.run([sys.executable, "-c", UNFLUSHED, "-C", str(tmp_path), "plan"], capture_output=True, text=True,
                            timeout=120, env=env, check=False)
    assert (cached.returncode, cached.stderr) == (plain.returncode, plain.stderr)
    assert cached.stdout == "written before the command\n" + plain.stdout
    assert (tmp_path / CACHE_DIR / CACHE_FILE).read_bytes() == expected   # whole when the process ended
    assert not list((tmp_path / CACHE_DIR).glob(".*.tmp*"))
    assert len(FILES) + 1 == len(expected.splitlines())


def slow_writer(seconds: float, *, say_waiting: bool = False) -> str:
    """A script that runs the console script with a cache writer ``seconds`` slower than the
    command; ``say_waiting``: says on stderr when the command starts to wait for it."""
    return f"""
import sys, time
from reconciler import parsecache
real, finish = parsecache.write_atomic, parsecache.finish
def slow(path, text):
    time.sleep({seconds})
    real(path, text)
def waiting():
    if {say_waiting}:
        print("waiting for the writer", file=sys.stderr, flush=True)
    finish()
parsecache.write_atomic, parsecache.finish = slow, waiting
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import run
run()
"""


def test_the_command_waits_for_a_slow_writer(tmp_path: Path) -> None:
    """A writer slower than the command: the process ends only once the cache is whole."""
    Agency_(tmp_path)
    (tmp_path / "reconciler.yaml").write_text("provider: {kind: sandbox, path: .reconciler/sandbox.db}\n", encoding="utf-8")
    expected = written_in_place(tmp_path)
    done = subprocess.run([sys.executable, "-c", slow_writer(0.5), "-C", str(tmp_path), "validate"], capture_output=True,
                          text=True, env=cli_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / CACHE_DIR / CACHE_FILE).read_bytes() == expected


def test_a_command_run_inside_another_program_writes_in_place(tmp_path: Path) -> None:
    """Only the console script's own process forks a writer: a command run by a test runner or
    another program (its threads, files and connections not ours) writes the cache in place."""
    Agency_(tmp_path)
    expected = written_in_place(tmp_path)
    r = CliRunner().invoke(main, ["-C", str(tmp_path), "validate"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert parsecache._writers == []
    assert (tmp_path / CACHE_DIR / CACHE_FILE).read_bytes() == expected


def test_a_large_cache_is_written_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above BACKGROUND_MAX shops to encode, no fork (its copy-on-write pages would double the memory)."""
    Agency_(tmp_path)
    expected = written_in_place(tmp_path)
    monkeypatch.setattr(parsecache, "BACKGROUND_MAX", 5)   # (the agency has 12 shops)
    load_config(str(tmp_path), cache=True, background=True)
    assert parsecache._writers == []
    assert (tmp_path / CACHE_DIR / CACHE_FILE).read_bytes() == expected


def test_a_ctrl_c_while_the_command_waits_for_the_writer(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) once the plan is printed,
    while the command waits for its cache writer: "Interrupted.", exit 130, as during the
    command itself; the writer ends with it and leaves no cache."""
    import signal

    Agency_(tmp_path)
    (tmp_path / "reconciler.yaml").write_text("provider: {kind: sandbox, path: .reconciler/sandbox.db}\n", encoding="utf-8")
    with subprocess.Popen([sys.executable, "-c", slow_writer(60, say_waiting=True), "-C", str(tmp_path), "plan"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=cli_env(), start_new_session=True) as p:
        assert p.stderr is not None
        said = p.stderr.readline()   # the command is done and waits for its writer, which sleeps
        assert said == "waiting for the writer\n", said
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert out.rstrip().splitlines()[-1].startswith("Plan: ")   # the whole plan was printed
    assert err.rstrip() == "Interrupted.", err
    assert not (tmp_path / CACHE_DIR / CACHE_FILE).exists()
