"""The parse cache (``reconciler.parsecache``) never changes a result.

* A property test: random sequences of edits to a configuration (shops changed, added,
  dropped, duplicated across files, files broken, renamed, deleted and restored, ERPs and
  profiles changed, the config dir spelt another way) — after every edit the cached load
  (with the cache the previous edits left) equals the uncached one: the same shops, the same
  warnings, or the same ConfigError text.
* A corrupt cache (truncated, garbage, another version, wrong types, an error cached, deep
  nesting, a FIFO or a folder in its place) is ignored and rebuilt to what a clean run writes.
* ``apply`` never reads it: a cache forged to say another ERP changes plan (read-only,
  documented) but not what apply writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import Agency
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.config import load_config
from reconciler.errors import ConfigError
from reconciler.parsecache import CACHE_DIR, CACHE_FILE

TODAY = date(2026, 11, 30)
ERPS = {"jushuitan": "21345678", "wangdiantong": "12345679", "inhouse": "31415926"}
FILES = ("shops/a.yaml", "shops/b.yaml", "shops/deep/c.yaml", "shops/d.yml")


def outcome(root: str, *, cache: bool) -> tuple[Any, ...]:
    try:
        c = load_config(root, cache=cache, today=TODAY)
    except ConfigError as e:
        return ("error", str(e))
    return ("ok", c.shops, c.warnings, c.managed_total, c.waivers, sorted(c.profiles))


class Agency_:
    """A configuration as data, written out after every edit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.erps = dict(ERPS)
        self.profile_erp = "jushuitan"
        self.shops: dict[str, list[dict[str, Any]]] = {
            f: [self._shop(100000 + 10 * i + j, j) for j in range(3)] for i, f in enumerate(FILES)}
        self.broken: set[str] = set()
        self.gone: set[str] = set()
        self.write()

    @staticmethod
    def _shop(n: int, j: int) -> dict[str, Any]:
        if j == 2:
            return {"id": str(n), "name": f"店{n}", "profile": "std", "labels": {"team": "a"}}
        erp = ("jushuitan", "wangdiantong", "inhouse")[n % 3]
        scenarios: dict[str, Any] = {"intercept_shipment": {}, "modify_address": {"buyer_self_service": n % 2 == 0}}
        if erp != "wangdiantong":
            scenarios["order_status"] = {"erp_detail_button": True}
        return {"id": str(n), "name": f"店{n}", "erp": erp, "scenarios": scenarios}

    def write(self) -> None:
        (self.root / "erps.yaml").write_text(yaml.safe_dump(
            {"erps": {k: {"name": k, "appkey": v} for k, v in self.erps.items()}}), encoding="utf-8")
        (self.root / "profiles.yaml").write_text(yaml.safe_dump({"profiles": {"std": {
            "erp": self.profile_erp, "scenarios": {"intercept_shipment": {}, "modify_address": {}}}}}), encoding="utf-8")
        for f, shops in self.shops.items():
            p = self.root / f
            if f in self.gone:
                p.unlink(missing_ok=True)
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump({"shops": shops}, allow_unicode=True, sort_keys=False)
            if f in self.broken:
                text += "  - id: [unclosed\n"
            p.write_text(text, encoding="utf-8")

    def edit(self, op: tuple[Any, ...]) -> None:
        kind, f, n = op
        shops = self.shops[f]
        if kind == "erp" and shops:
            s = shops[n % len(shops)]
            if "erp" in s:
                s["erp"] = ("jushuitan", "inhouse", "kingdee")[n % 3]  # kingdee: unknown ERP, an error
        elif kind == "add":
            shops.append(self._shop(200000 + n, n % 3))
        elif kind == "drop" and shops:
            shops.pop(n % len(shops))
        elif kind == "dup":
            other = self.shops[FILES[n % len(FILES)]]
            if other:
                shops.append(dict(other[0]))
        elif kind == "short" and shops:
            s = shops[n % len(shops)]
            s.setdefault("scenarios", {})["intercept_shipment"] = {"appkey": "1234567"}  # 7 digits: a warning
        elif kind == "break":
            self.broken ^= {f}
        elif kind == "delete":
            self.gone ^= {f}
        elif kind == "appkey":
            self.erps["inhouse"] = ("31415926", "31415927", "3141592")[n % 3]
        elif kind == "profile":
            self.profile_erp = ("jushuitan", "inhouse", "nosuch")[n % 3]
        self.write()


EDITS = st.tuples(st.sampled_from(["erp", "add", "drop", "dup", "short", "break", "delete", "appkey", "profile",
                                   "touch", "spelling"]),
                  st.sampled_from(FILES), st.integers(0, 50))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EDITS, min_size=1, max_size=8))
def test_cached_equals_uncached_over_random_edits(edits: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Agency_(Path(tmp))
        spelt = [tmp, tmp + "/.", os.path.relpath(tmp)]
        which = 0
        assert outcome(spelt[0], cache=True) == outcome(spelt[0], cache=False)
        for op in edits:
            if op[0] == "spelling":
                which = (which + 1) % len(spelt)
            config.edit(op)
            root = spelt[which]
            cached = outcome(root, cache=True)
            assert cached == outcome(root, cache=False), op
            assert outcome(root, cache=True) == cached, op  # and again, from the cache this run wrote


def test_the_cache_is_used_and_kept_small(tmp_path: Path) -> None:
    config = Agency_(tmp_path)
    first = outcome(str(tmp_path), cache=True)
    lines = (tmp_path / CACHE_DIR / CACHE_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + len(FILES)  # a header and one line per file
    config.gone = {FILES[0]}
    config.write()
    assert outcome(str(tmp_path), cache=True) != first
    lines = (tmp_path / CACHE_DIR / CACHE_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(FILES)  # a file that is gone is dropped from the cache
    assert not any(FILES[0] in line for line in lines)


def test_a_file_with_an_error_is_not_cached(tmp_path: Path) -> None:
    config = Agency_(tmp_path)
    config.broken = {FILES[1]}
    config.write()
    assert outcome(str(tmp_path), cache=True)[0] == "error"
    text = (tmp_path / CACHE_DIR / CACHE_FILE).read_text(encoding="utf-8")
    assert FILES[0] in text and FILES[1] not in text


def test_a_cached_hit_is_what_a_run_reads(tmp_path: Path) -> None:
    """Prove the second load takes the cache: a forged entry (a valid one for another file's
    bytes, under this file's name and hash) shows up in the result."""
    Agency_(tmp_path)
    outcome(str(tmp_path), cache=True)
    path = tmp_path / CACHE_DIR / CACHE_FILE
    head, *lines = path.read_text(encoding="utf-8").splitlines()
    forged = [line.replace('"jushuitan"', '"inhouse"').replace('"21345678"', '"31415926"') for line in lines]
    path.write_text("\n".join([head, *forged]) + "\n", encoding="utf-8")
    cached, plain = outcome(str(tmp_path), cache=True), outcome(str(tmp_path), cache=False)
    assert cached[0] == plain[0] == "ok" and cached[1] != plain[1]


CORRUPTIONS = {
    "truncated": lambda b: b[: len(b) // 2],
    "garbage": lambda b: b"\xff\xfe\x00garbage\n" * 100,
    "empty": lambda b: b"",
    "another version": lambda b: b.replace(b'"tool": "', b'"tool": "9', 1),
    "a line as text": lambda b: re.sub(rb'"\],\[0,(\d+),', rb'"],[0,"\1",', b, count=1),
    "an odd count of line numbers": lambda b: re.sub(rb'"\],\[0,\d+,', rb'"],[', b, count=1),
    "a file out of range": lambda b: re.sub(rb'"\],\[0,', rb'"],[7,', b, count=1),
    "a file index as true": lambda b: re.sub(rb'"\],\[0,', rb'"],[true,', b, count=1),
    "a line too far": lambda b: re.sub(rb'"\],\[0,\d+,', rb'"],[0,2147483648,', b, count=1),
    "an unknown scenario": lambda b: b.replace(b'["intercept_shipment"', b'["bogus"', 1),
    "a scenario twice in a set": lambda b: b.replace(b'["modify_address"', b'["intercept_shipment"', 1),
    "an error cached": lambda b: b.replace(b'"warning"]', b'"error"]', 1) if b'"warning"]' in b else b[:-5],
    "wrong arity": lambda b: b.replace(b',null,null,0,null]', b',null,0,null]', 1),
    "a slot as false": lambda b: b.replace(b',null,null,0,null]', b',null,null,false,null]', 1),   # (false == 0: a set read
    # before, with 0, must not stand in for it)
    "a source out of range": lambda b: re.sub(rb'(\[(?:false|true)(?:,(?:false|true))*\],\[)\d+', rb'\g<1>4000', b, count=1),
    "a set out of range": lambda b: re.sub(rb'(\[(?:false|true)(?:,(?:false|true))*\],\[[\d,]*\],\[)\d+', rb'\g<1>99', b,
                                           count=1),
    "a slot too few": lambda b: re.sub(rb'(\[(?:false|true)(?:,(?:false|true))*\],\[[\d,]*\],\[[\d,]*\],\[)\d+,', rb'\1', b,
                                       count=1),
    "a slot out of range": lambda b: re.sub(rb'(\[(?:false|true)(?:,(?:false|true))*\],\[[\d,]*\],\[[\d,]*\],\[)\d+',
                                            rb'\g<1>4000', b, count=1),
    "a column short": lambda b: re.sub(rb'\[(false|true),', rb'[', b, count=1),
    "a protect as a number": lambda b: re.sub(rb'\[(false|true),', rb'[0,', b, count=1),
    "an id as a number": lambda b: re.sub(rb'\[\["(\d+)",', rb'[[\1,', b, count=1),
    "a label that is not text": lambda b: b.replace(b'{"team":"a"}', b'{"team":1}', 1),
    "a labelled shop out of range": lambda b: b.replace(b'[[2,{"team"', b'[[9,{"team"', 1),
    "a profile that is not text": lambda b: b.replace(b'[[2,"std"]]', b'[[2,7]]', 1),
    "a profiled source out of range": lambda b: re.sub(rb'\[\[\d+,"std",', b'[[4000,"std",', b, count=1),
    "deep nesting": lambda b: b.split(b"\n")[0] + b"\n" + b.split(b"\n")[1].split(b"\t")[0] + b"\t"
                              + b.split(b"\n")[1].split(b"\t")[1] + b"\t" + b"[" * 200_000 + b"\n",
    "a null byte line": lambda b: b + b"\x00\t\x00\t\x00\n",
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_corrupt_cache_is_ignored_and_rebuilt(tmp_path: Path, how: str) -> None:
    config = Agency_(tmp_path)
    config.shops[FILES[0]][0]["scenarios"]["intercept_shipment"] = {"appkey": "1234567"}  # a cached warning
    config.write()
    root = str(tmp_path)
    expected = outcome(root, cache=False)
    outcome(root, cache=True)
    path = tmp_path / CACHE_DIR / CACHE_FILE
    clean = path.read_bytes()
    corrupt = CORRUPTIONS[how](clean)
    assert corrupt != clean
    path.write_bytes(corrupt)
    assert outcome(root, cache=True) == expected
    assert path.read_bytes() == clean   # rebuilt to what a clean run writes
    assert outcome(root, cache=True) == expected


@pytest.mark.parametrize("what", ["folder", "fifo"])
def test_something_else_where_the_cache_goes(tmp_path: Path, what: str) -> None:
    Agency_(tmp_path)
    path = tmp_path / CACHE_DIR / CACHE_FILE
    path.parent.mkdir(parents=True)
    if what == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    expected = outcome(str(tmp_path), cache=False)
    assert outcome(str(tmp_path), cache=True) == expected  # a FIFO is not read (it would hang)
    assert outcome(str(tmp_path), cache=True) == expected


def test_a_config_dir_where_the_cache_cannot_be_written_goes_without(tmp_path: Path) -> None:
    """(A read-only checkout, as root too: .reconciler is a file, so no cache folder can be made.)"""
    Agency_(tmp_path)
    (tmp_path / ".reconciler").write_text("not a folder", encoding="utf-8")
    expected = outcome(str(tmp_path), cache=False)
    assert outcome(str(tmp_path), cache=True) == expected
    assert outcome(str(tmp_path), cache=True) == expected
    assert (tmp_path / ".reconciler").read_text(encoding="utf-8") == "not a folder"


def test_apply_never_reads_the_cache(tmp_path: Path) -> None:
    """plan (read-only) takes unchanged files from the cache; apply reads the files: a cache
    forged to move a shop to another ERP misleads a plan, never what is written."""
    agency = Agency(tmp_path / "cfg")
    agency.world({"100001": {"name": "店"}})
    agency.shops('shops:\n  - id: "100001"\n    erp: jushuitan\n    scenarios: {intercept_shipment: {}}\n')
    r = agency.run("plan")
    assert r.exit_code == 0 and "21345678" in r.output, r.output
    path = agency.dir / CACHE_DIR / CACHE_FILE
    path.write_text(path.read_text(encoding="utf-8").replace("21345678", "31415926").replace(
        '"jushuitan"', '"inhouse"'), encoding="utf-8")
    assert "31415926" in agency.run("plan").output                   # the forged cache speaks in plan
    assert "21345678" in agency.run("plan", env={"RECONCILER_NO_CACHE": "1"}).output
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == {"intercept_shipment": "21345678"}


def test_the_cli_plan_is_the_same_with_and_without_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "cfg"
    # the example as in git: not the sandbox and state a run of the README may have left in configs/.reconciler
    shutil.copytree(Path(__file__).resolve().parents[1] / "configs", root, ignore=shutil.ignore_patterns(".reconciler"))
    outs = [CliRunner().invoke(main, ["-C", str(root), "plan", "--format", "json"], env=env, catch_exceptions=False)
            for env in ({"RECONCILER_NO_CACHE": "1"}, {}, {}, {"RECONCILER_NO_CACHE": "1"})]
    assert (root / CACHE_DIR / CACHE_FILE).is_file()
    assert len({(r.exit_code, r.output) for r in outs}) == 1
    assert outs[0].exit_code == 1 and json.loads(outs[0].output)["changes"]  # the example's deliberate error


def test_another_version_of_the_code_discards_the_cache(tmp_path: Path) -> None:
    """An editable install keeps its version number across commits: the code of the modules that
    read the configuration is part of the cache's context (a copy of the package with one of
    them changed writes another context, and its results are its own)."""
    (tmp_path / "cfg").mkdir()
    Agency_(tmp_path / "cfg")
    package = Path(__file__).resolve().parents[1] / "reconciler"
    copy = tmp_path / "code" / "reconciler"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "fastpath.py").write_text((copy / "fastpath.py").read_text(encoding="utf-8") + "\n# changed\n",
                                      encoding="utf-8")
    cache = tmp_path / "cfg" / CACHE_DIR / CACHE_FILE

    def context(code: Path) -> str:
        # the tree given first, and not the editable install's finder (it would serve the working tree)
        script = ("import os, sys; src = sys.argv.pop(1); sys.path.insert(0, src); sys.meta_path[:] = [f for f in"
                  " sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]; import reconciler;"
                  " assert os.path.realpath(reconciler.__file__).startswith(os.path.realpath(src) + os.sep);"
                  " from reconciler.config import load_config; load_config(sys.argv[1], cache=True)")
        subprocess.run([sys.executable, "-c", script, str(code), str(tmp_path / "cfg")], check=True, timeout=60)
        header = json.loads(cache.read_bytes().split(b"\n", 1)[0])
        assert isinstance(header["context"], str)
        return header["context"]

    ours = context(package.parent)
    theirs = context(copy.parent)
    assert ours != theirs
    assert context(package.parent) == ours


def test_what_a_killed_writer_left_is_swept(tmp_path: Path) -> None:
    """A writer killed mid-write leaves ``.shops-v3.txt.tmp<pid>`` (as big as the cache): the
    next save removes it once that process is gone, never one of a writer still running; the
    cache of an older format (and what its writer left) goes too, another name kept there stays."""
    Agency_(tmp_path)
    outcome(str(tmp_path), cache=True)
    folder = tmp_path / CACHE_DIR
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    running = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        dead = folder / f".{CACHE_FILE}.tmp{gone.pid}"
        live = folder / f".{CACHE_FILE}.tmp{running.pid}"
        older, older_left, other = folder / "shops-v2.txt", folder / f".shops-v2.txt.tmp{gone.pid}", folder / "notes.txt"
        for path in (dead, live, older, older_left, other):
            path.write_bytes(b"half a cache")
        Agency_(tmp_path).edit(("add", FILES[0], 7))  # a change, so that the cache is saved again
        assert outcome(str(tmp_path), cache=True) == outcome(str(tmp_path), cache=False)
        assert not dead.exists() and live.exists()
        assert not older.exists() and not older_left.exists() and other.exists()
    finally:
        assert running.stdin is not None
        running.stdin.close()
        running.wait(timeout=30)


def test_a_result_comes_back_as_it_went_in() -> None:
    """encode → JSON → decode gives shops equal to the ones encoded, down to the values a
    column could lose: an empty profile, name or label value, no ERP, protect said elsewhere,
    a profile's sources, a shop of no binding; and ``seen`` prints as it did."""
    from reconciler.errors import Issue
    from reconciler.model import Scenario, new_binding, new_shop, new_source
    from reconciler.parsecache import FileResult, decode, encode

    a = new_source("shops/a.yaml", 2, None, None)
    std = new_source("profiles.yaml", 3, "", None)
    own = new_source("shops/a.yaml", 5, "std", "profiles.yaml:4")
    shops = [
        new_shop("1", "", None, False, a, {}, {"team": ""}, "", None),
        new_shop("2", None, "jushuitan", True, new_source("shops/a.yaml", 7, None, None),
                 {Scenario.intercept_shipment: new_binding(Scenario.intercept_shipment, "21345678", "jushuitan", std, None,
                                                           None, None),
                  Scenario.modify_address: new_binding(Scenario.modify_address, None, None, own, False, own, True)},
                 {}, "std", std),
    ]
    result = FileResult(shops, [("1", "shops/a.yaml:2"), ("2", "shops/a.yaml:7")], [("std", "2 at shops/a.yaml:7")],
                        [Issue("shops/a.yaml", 7, 3, "shops[1].id", "a warning", "warning")])
    back = decode(json.loads(json.dumps(encode(result))))
    assert back.shops == shops and [s.profile for s in back.shops] == ["", "std"]
    assert [(sid, str(where)) for sid, where in back.seen] == result.seen
    assert (back.users, back.warnings) == (result.users, result.warnings)
