"""``plainyaml.mapping`` (``reconciler.yaml`` and ``erps.yaml`` read without PyYAML) against
PyYAML itself: over random files built from YAML's corner cases — every scalar YAML 1.1
resolves to something else than a string, quoting, comments, flow and block mappings,
indentation — and over random edits of them, whatever it reads is exactly what PyYAML's safe
loader builds (values and their types), from a file the YAML path reads without a word
(``yamlio.parse``); and the example and benchmark files are read by it. A warm plan then
imports no PyYAML at all."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from clikit import cli_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.plainyaml import mapping
from reconciler.yamlio import loader, parse

ROOT = Path(__file__).resolve().parent.parent

SCALARS = ["yes", "Yes", "No", "on", "OFF", "y", "n", "true", "False", "null", "~", "Null", "NULL", "0", "007", "-5", "+5",
           "1_000", "0x1F", "0o17", "0b101", "1:30", "1.5", "0.30", "-0.0", ".5", "1e3", "1.0e5", "1.", ".inf", ".NaN",
           "-.inf", "2001-12-14", "2001-12-14 21:59:43.10", "=", "<<", "a b", "a#b", "a #b", "a: b", "a:b", "-x", "?x", "@x",
           "`x", "%x", "!x", "!!str x", "&x", "*x", "|", "> x", "[x]", "{x}", "x,y", "聚水潭", "自研ERP", "virtualAppKey",
           ".reconciler/sandbox.db", "/abs/path", "_x", "x-y", "x.y", "sandbox", "hmac-sha256", "erp.binding.get",
           '"21345678"', "'q'", "'it''s'", '"a\\nb"', '"a,b"', "'a:b'", '"a #b"', '""', "''", "x ", "18446744073709551616",
           "99999999999999999999", "1.23456789012345678", "\u00e9t\u00e9", "\u2028x", "x\u0085", "'", '"', "'a", 'a"',
           "'i's'", '"a"b"', "a'b", "", "010", "08", "0.", "-"]
# and the values a plain file holds, drawn as often as the corner cases
PLAIN = ["sandbox", "0.3", "10", "-1", "0", "1.5", "true", "no", "~", "null", '"21345678"', "'x y'", "聚水潭", "a b", "x-y",
         ".reconciler/sandbox.db", "hmac-sha256", "virtualAppKey", "erp.binding.get", "yes", "'007'", '""']
VALUES = st.one_of(st.sampled_from(SCALARS), st.sampled_from(PLAIN))
# keys: mostly names, now and then one YAML reads as something else
KEYS = ["provider", "kind", "path", "a", "b", "x-y", "x.y", "_k", "k1", "safety", "erps"] * 3 + ["1", "yes", "null", ".k", "on",
                                                                                              "0.5", "~", ".inf"]


def _typed(value: Any) -> Any:
    """A value with its types spelt out (1 == 1.0 == True, but YAML tells them apart)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return (type(value).__name__, value)


def _check(text: str) -> bool:
    """The property for one file; True when ``mapping`` read it (for the coverage counts)."""
    ours = mapping(text)
    try:
        theirs = yaml.load(text, Loader=loader())
    except yaml.YAMLError:
        assert ours is None, text
        return False
    if ours is None:
        return False
    assert _typed(ours) == _typed(theirs), text
    doc, issues = parse(text.encode("utf-8"), "f.yaml")
    assert doc is not None and not issues, (text, issues)   # nothing the YAML path would have said
    assert _typed(doc.data) == _typed(ours)
    return True


@st.composite
def documents(draw: Any, depth: int = 0) -> str:
    indent = " " * draw(st.sampled_from([2, 4])) * depth
    lines = []
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=draw(st.integers(0, 4)) > 0)):
        if draw(st.integers(0, 5)) == 0:
            lines.append(indent + draw(st.sampled_from(["# a comment", "", "  # indented comment"])))
        kind = draw(st.integers(0, 4)) if depth < 2 else draw(st.integers(0, 2))
        if kind <= 1:
            value = draw(VALUES)
            comment = draw(st.sampled_from(["", "", "  # why", " #x", "#no space"]))
            lines.append(f"{indent}{key}: {value}{comment}")
        elif kind == 2:
            entries = draw(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=3, unique_by=lambda e: e[0]))
            sep = draw(st.sampled_from([", ", ",", " , "]))
            lines.append(f"{indent}{key}: {{{sep.join(f'{k}: {v}' for k, v in entries)}}}")
        else:
            lines.append(f"{indent}{key}:")
            lines.append(draw(documents(depth + 1)))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(documents())
def test_what_it_reads_is_what_yaml_reads(text: str) -> None:
    _check(text)


EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(
    [" ", "  ", "\n", "#", ":", ": ", ",", "{", "}", "[", "'", '"', "\\", "-", "- ", "?", "&a ", "*a", "!", "|", ">", "\t",
     "\r", "\ufeff", "0", ".", "x", "---\n", "..."]), st.booleans()), min_size=1, max_size=4)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), EDITS)
def test_an_edited_file_is_read_as_yaml_reads_it_or_not_at_all(text: str, edits: list[tuple[int, str, bool]]) -> None:
    for at, piece, insert in edits:
        at %= len(text) + 1
        text = text[:at] + piece + text[at:] if insert else text[:at] + text[at + len(piece):]
    _check(text)


def test_the_plain_forms_are_read() -> None:
    """(So the properties above are not vacuous: the forms users write are taken.)"""
    files = [ROOT / "configs" / "reconciler.yaml", ROOT / "configs" / "erps.yaml"]
    texts = [f.read_text(encoding="utf-8") for f in files]
    texts += ["provider: {kind: sandbox, path: .reconciler/sandbox.db, world: world.yaml}\n"
              "safety: {max_change_share: 0.3, min_managed: 10}\n",
              'erps:\n  jushuitan: {name: 聚水潭, appkey: "21345678"}\n  inhouse: {name: 自研ERP, appkey: "31415926"}\n',
              "provider:\n  kind: sandbox   # the embedded one\n  path: 'db.sqlite'\nsafety:\n  max_change_share: 0.5\n"
              "  min_managed: 0\napply:\n  retries: 3\n  backoff_s: 1.5\nstate:\n  lock_timeout_s: 0\n"]
    for text in texts:
        assert _check(text), text
    assert mapping("a: yes\nb: ~\nc: -7\nd: 2.50\ne: 'x'\n") == {"a": True, "b": None, "c": -7, "d": 2.5, "e": "x"}


def test_what_it_does_not_read() -> None:
    for text in ["", "# only a comment\n", "- a\n", "a:\n", "a: [1, 2]\n", "a: &x 1\nb: *x\n", "a: !!str 1\n", "a: |\n  x\n",
                 "a: 1\na: 2\n", "1: x\n", "yes: x\n", '"a": 1\n', "a: 0x1F\n", "a: 1:30\n", "a: 2001-12-14\n", "a: .inf\n",
                 "a: 1\n b: 2\n", "  a: 1\n", "a:\n  b: 1\n c: 2\n", "a: {b: 1,}\n", "a: {b: 1} x\n", "a: \"x\\ty\"\n",
                 "---\na: 1\n", "a: 1\r\n", "a:\t1\n", "\ufeffa: 1\n", "a: x\u2028y\n"]:
        assert mapping(text) is None, repr(text)


# the command in this process; at exit, whether PyYAML was imported
YAML_IMPORTED = """
import atexit, sys
atexit.register(lambda: print("yaml imported:", "yaml" in sys.modules, file=sys.stderr, flush=True))
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import run
run()
"""


def test_a_warm_plan_reads_no_yaml(tmp_path: Path) -> None:
    """Every shop file from the parse cache, reconciler.yaml and erps.yaml in their plain
    forms: PyYAML is not even imported. A reconciler.yaml the plain reader does not take is
    read as YAML, with its located error."""
    import shutil

    shutil.copytree(ROOT / "configs", tmp_path / "configs", ignore=shutil.ignore_patterns(".reconciler"))
    config = tmp_path / "configs"
    seen = []
    for _ in range(2):   # cold (the shop files and the world are YAML), then warm
        done = subprocess.run([sys.executable, "-c", YAML_IMPORTED, "-C", str(config), "plan"], capture_output=True,
                              text=True, env=cli_env(), timeout=120, check=False)
        assert done.returncode == 1 and "Plan: " in done.stdout, done.stdout + done.stderr   # (100004, on purpose)
        seen.append(done.stderr.rstrip().rsplit("\n", 1)[-1])
    assert seen == ["yaml imported: True", "yaml imported: False"]
    (config / "reconciler.yaml").write_text("provider: {kind: sandbox, path: [x]}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", YAML_IMPORTED, "-C", str(config), "plan"], capture_output=True, text=True,
                          env=cli_env(), timeout=120, check=False)
    assert done.returncode == 1 and "reconciler.yaml:1:" in done.stdout + done.stderr, done.stdout + done.stderr


def test_a_hostile_file_is_read_in_linear_time_or_left_to_yaml(tmp_path: Path) -> None:
    """A flow entry with millions of spaces is read at once (a lazy pattern would try every
    split of them: hours); mappings nested thousands deep are not read here (no recursion
    without bound): YAML reads the file and says what is wrong, where — no traceback."""
    code = ("from reconciler.plainyaml import mapping\n"
            "assert mapping('a: {b: x' + ' ' * 2_000_000 + 'y  }\\n') == {'a': {'b': 'x' + ' ' * 2_000_000 + 'y'}}\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    deep = "".join(" " * i + f"k{i}:\n" for i in range(3000)) + " " * 3000 + "z: 1\n"
    assert mapping(deep) is None
    import shutil

    shutil.copytree(ROOT / "configs", tmp_path / "configs", ignore=shutil.ignore_patterns(".reconciler"))
    (tmp_path / "configs" / "reconciler.yaml").write_text(deep, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(tmp_path / "configs"), "validate"],
                          capture_output=True, text=True, env=cli_env(), timeout=120, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "reconciler.yaml:1000:" in done.stdout + done.stderr, done.stdout + done.stderr
