"""The parse cache: shop files that have not changed since the last run skip YAML and validation.

Reading 10,000 shops costs YAML composition, validation and resolution; a team's CI plans
the same files again and again. Each shop file's *result* (its resolved shops, the ids and
profile users the checks across files need, its warnings) is kept under the config dir in
``.reconciler/cache/shops-v3.txt``, keyed by the file's path and the SHA-256 of its bytes.
Everything else a file's result depends on is in the cache's *context*: the tool's version
and the code of the modules that read the configuration (an editable install keeps its
version number across commits), the cache format, the config dir as spelt (paths in
messages), and the bytes of ``erps.yaml`` and ``profiles.yaml``; a different context
discards the whole cache.

It never changes a result:
- only files that produced no error are kept (a file with an error is read every time, so
  every message is the uncached one); what spans files (duplicate ids, profile users) is
  checked again from the cached entries, and ``config`` falls back to reading everything
  when the cached entries disagree with the rest;
- the file is outside input (a CI cache restored from elsewhere, a hand edit, a crash while
  writing): it is read only when regular and at most ``MAX_CACHE`` bytes, parsed strictly
  (every value's type checked, any surprise discards the whole cache, which is rebuilt);
- only the read-only commands use it (``plan``, ``drift``, ``validate``): ``apply`` reads
  the files themselves, so what is written to the platform never comes from the cache, and a
  saved plan is verified against the files (a poisoned cache can at worst mislead a report).

``RECONCILER_NO_CACHE=1`` turns it off. Writing it is best effort: a read-only config dir
just goes without. The commands write it in the background — a forked child encodes and
writes it on the other core while the command plans — and wait for that child before they
end, so the file is whole when the command returns. Only the console script's own process
forks (``cli.context.CONSOLE``); without ``fork``, with other threads running or with a large
cache, it is written in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import Issue
from .files import FileError, MiB, read_regular, write_atomic
from .model import BindingSet, DesiredShop, Scenario, Source, new_cached_shop, new_source

FORMAT = 3
CACHE_DIR = ".reconciler/cache"
CACHE_FILE = f"shops-v{FORMAT}.txt"
MAX_CACHE = 512 * MiB
# The background writer holds a copy-on-write view of the results it encodes: touching every
# object copies their pages (about as much memory again). Above this many shops to encode, the
# cache is written in place instead (a slower first run, no second copy).
BACKGROUND_MAX = 25_000
ENV_OFF = "RECONCILER_NO_CACHE"

_SCENARIOS = {s.value: s for s in Scenario}


def enabled(env: Mapping[str, str]) -> bool:
    return env.get(ENV_OFF, "").strip().lower() in ("", "0", "false", "no", "off")


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class FileResult:
    """What one shop file contributes to the configuration: its resolved shops, each shop's id
    and where it is written (``seen``: ``file:line``, or the shop's source, which prints so),
    the users of profiles it adds (profile, "id at file:line") and its warnings. Only results
    with no error are cached."""

    shops: list[DesiredShop]
    seen: list[tuple[str, str | Source]]
    users: list[tuple[str, str]]
    warnings: list[Issue]


class Corrupt(Exception):
    """The cache file is not what this version writes: it is ignored and rebuilt."""


class ShopCache:
    """The cache of one config dir for one context; ``get`` → hit or None, ``put``, ``save``.

    The file is a header line (format, tool version, context) and a line per shop file:
    ``"rel/path.yaml"<TAB>sha256<TAB>[result]`` (the path JSON-quoted, so it holds no tab or
    newline). Only the entries asked for are decoded; an unchanged one is written back as read."""

    def __init__(self, path: Path, context: str, lines: dict[str, tuple[bytes, bytes]]) -> None:
        self.path = path
        self.context = context
        self._old = lines                          # rel → (digest, the line as read): bytes, decoded when used
        self._new: dict[str, bytes | tuple[str, str, FileResult]] = {}  # what this run keeps: only files that exist now
        self._changed = False

    @classmethod
    def open(cls, root: Path, context_parts: list[bytes | None], shown: str) -> ShopCache:
        h = hashlib.sha256(f"{FORMAT}\0{__version__}\0{_code()}\0{shown}\0".encode())
        for part in context_parts:
            h.update(b"-" if part is None else b"+" + digest(part).encode())
        context = h.hexdigest()
        path = root / CACHE_DIR / CACHE_FILE
        lines: dict[str, tuple[bytes, bytes]] = {}
        try:
            head, *rest = read_regular(path, what="parse cache", limit=MAX_CACHE).split(b"\n")
            if json.loads(head) == _header(context):
                for line in rest:
                    if line:
                        rel, sha, _ = line.split(b"\t", 2)
                        name = json.loads(rel)
                        if type(name) is not str:
                            raise ValueError(name)
                        lines[name] = (sha, line)
        except (FileError, ValueError, RecursionError):
            lines = {}  # missing, unreadable or corrupt: rebuilt by this run
        return cls(path, context, lines)

    def get(self, rel: str, sha: str) -> FileResult | None:
        """The cached result of the file at ``rel`` whose bytes hash to ``sha``; raises Corrupt."""
        old = self._old.get(rel)
        if old is None or old[0] != sha.encode():
            return None
        try:
            data = json.loads(old[1].split(b"\t", 2)[2])
        except (ValueError, RecursionError) as e:
            raise Corrupt from e
        result = decode(data)
        self._new[rel] = old[1]
        return result

    def put(self, rel: str, sha: str, result: FileResult) -> None:
        self._new[rel] = (rel, sha, result)   # encoded when written (in the background writer)
        self._changed = True

    def save(self, *, background: bool = False) -> None:
        """Write what this run saw, when it differs from what was read (best effort).

        ``background``: in a forked child, on the other core, while this process goes on
        (plans the shops); ``finish()`` waits for it. Without ``fork``, with other threads
        running (a fork copies only this one) or with more than ``BACKGROUND_MAX`` shops to
        encode, it is written here and now."""
        if not self._changed and self._new.keys() == self._old.keys():
            return
        if background and self._shops_to_encode() <= BACKGROUND_MAX and _forked(self._write):
            return
        self._write()

    def _shops_to_encode(self) -> int:
        return sum(len(entry[2].shops) for entry in self._new.values() if type(entry) is tuple)

    def _write(self) -> None:
        lines = [line if type(line) is bytes else _line(*line) for line in self._new.values()]
        text = b"\n".join([json.dumps(_header(self.context)).encode(), *lines]) + b"\n"
        with contextlib.suppress(FileError):  # a read-only config dir: the next run reads the files again
            write_atomic(self.path, text)
        _sweep(self.path)

    def emptied(self) -> ShopCache:
        """The same cache with nothing read (after a corrupt entry: rebuilt by this run)."""
        return ShopCache(self.path, self.context, {})


# The modules whose code decides a shop file's result: a change to any of them (a git checkout
# installed in editable mode keeps its version number) discards the cache.
_CODE = ("model", "specs", "settings", "vocab", "errors", "files", "yamlio", "located", "resolve", "fastpath", "scan", "shopdir",
         "config", "plainyaml", "parsecache")


def _code() -> str:
    """The code that reads the configuration: these modules, PyYAML (how it resolves a plain
    scalar: its package's ``__init__`` and which of its files are there, libyaml's among them;
    found, not imported — a warm run reads no YAML) and Python (what ``str.isprintable`` says)."""
    h = hashlib.sha256(f"{sys.version}\0".encode())
    spec = importlib.util.find_spec("yaml")
    if spec is not None and spec.origin is not None:
        package = Path(spec.origin).parent
        with contextlib.suppress(OSError):
            h.update(Path(spec.origin).read_bytes() + "\0".join(sorted(os.listdir(package))).encode())
    here = Path(__file__).resolve().parent
    for name in _CODE:
        try:
            h.update(name.encode() + b"\0" + (here / f"{name}.py").read_bytes())
        except OSError:
            h.update(name.encode() + b"\0?")  # installed without sources: the version decides
    return h.hexdigest()


def _line(rel: str, sha: str, result: FileResult) -> bytes:
    return "\t".join((json.dumps(rel), sha, json.dumps(encode(result), ensure_ascii=False, separators=(",", ":"),
                                                       check_circular=False))).encode()


_writers: list[int] = []   # forked cache writers not yet waited for


_STOPS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} if hasattr(signal, "SIGHUP") else set()


def _forked(write: Callable[[], None]) -> bool:
    """Run ``write`` in a forked child (nothing inherited is used but the results in memory:
    stdin, stdout and stderr become /dev/null, the exit is ``os._exit``); False when not forked.

    The signals that stop a run are blocked across the fork: the child sets them to their
    default action (a Ctrl-C ends it at once, leaving at most a temporary file the next save
    sweeps) before it takes them, so none can ever run the parent's handlers or code in it."""
    if not hasattr(os, "fork") or not _STOPS or threading.active_count() > 1:
        return False
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return False
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        _writers.append(pid)
        return True
    code = 1
    try:
        for s in _STOPS:
            signal.signal(s, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        write()
        code = 0
    finally:
        os._exit(code)   # whatever happened (an error): no cache, and nothing else of the parent's runs


def finish() -> None:
    """Wait for the cache writers this process forked (a command waits before it ends)."""
    while _writers:
        pid = _writers.pop()
        with contextlib.suppress(ChildProcessError, InterruptedError):
            os.waitpid(pid, 0)


def _sweep(path: Path) -> None:
    """Remove what a writer killed mid-write left (``.shops-v3.txt.tmp<pid>``, as big as the
    cache) when that process is gone (a writer still running keeps its own), and the cache of
    an older format (``shops-v2.txt``: no version of the tool reads both)."""
    with contextlib.suppress(OSError):
        for left in path.parent.glob(".shops-v*.txt.tmp*"):
            pid = left.name.rsplit(".tmp", 1)[1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                left.unlink(missing_ok=True)
        for old in path.parent.glob("shops-v*.txt"):
            if old.name != path.name:
                old.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True   # someone else's process
    return True


def _header(context: str) -> dict[str, Any]:
    return {"format": FORMAT, "tool": __version__, "context": context}


def context_bytes(path: Path) -> bytes | None:
    """A file the cached results depend on (erps.yaml, profiles.yaml): its bytes, or None."""
    try:
        return read_regular(path, what="file", limit=64 * MiB)
    except FileError:
        return None if not os.path.lexists(path) else b"\0unreadable"


# --------------------------------------------------------------------------- the format
# A result is [files, lines, profiled, sets, shops, seen, users, warnings], shaped so a warm
# run parses few JSON values and checks each kind of binding once, not each binding:
# - ``files``: the file names the sources name; ``lines``: the sources, flat, two numbers each
#   (file index, line); ``profiled``: [source index, profile, profile_at] for the sources a
#   profile is involved in (the others have neither);
# - ``sets``: the binding sets the shops have, each a list of bindings [scenario, appkey, erp,
#   bss, erp_detail_button, slot, bss_slot]; a slot numbers the sources *within one shop*, so
#   the thousands of shops of an ERP whose bindings all come from their own ``erp:`` line share one set;
# - the shops as columns, a list a field, so that each is type-checked whole: [ids, names, erps,
#   protects, sources, sets, slots (each shop's slots' sources, one shop after the other), then
#   [shop, labels], [shop, profile] and [shop, protect_source] for the shops that have one],
#   sources by their index, a shop by its place;
# - ``seen``: null when it is every shop's id with the ``file:line`` of its source, else the
#   pairs; ``users`` the pairs; an issue [file, line, column, path, message, severity].


def encode(r: FileResult) -> list[Any]:
    files: dict[str, int] = {}
    index: dict[int, int] = {}    # a source object's number, by its id (r holds them all meanwhile; hashing each is slow)
    sources: list[Source] = []

    def src(s: Source | None) -> int | None:
        if s is None:
            return None
        n = index.get(id(s))
        if n is None:
            n = index[id(s)] = len(sources)
            sources.append(s)
        return n

    sets: dict[tuple[tuple[Any, ...], ...], int] = {}
    shop_sets: list[int] = []
    given: list[int | None] = []   # each shop's slots, one after the other
    for s in r.shops:
        slots: dict[int | None, int] = {}   # source index → slot

        def slot(source: Source) -> int:
            return slots.setdefault(src(source), len(slots))  # noqa: B023  (used in this iteration only)

        shape = tuple((b.scenario.value, b.appkey, b.erp, b.buyer_self_service, b.erp_detail_button, slot(b.source),
                       None if b.buyer_self_service_source is None else slot(b.buyer_self_service_source))
                      for b in s.bindings.values())
        shop_sets.append(sets.setdefault(shape, len(sets)))
        given += slots
    shops = [[s.id for s in r.shops], [s.name for s in r.shops], [s.erp for s in r.shops], [s.protect for s in r.shops],
             [src(s.source) for s in r.shops], shop_sets, given,
             [[n, s.labels] for n, s in enumerate(r.shops) if s.labels],
             [[n, s.profile] for n, s in enumerate(r.shops) if s.profile is not None],
             [[n, src(s.protect_source)] for n, s in enumerate(r.shops) if s.protect_source is not None]]
    lines: list[int] = []
    profiled = []
    for n, source in enumerate(sources):
        lines += (files.setdefault(source.file, len(files)), source.line)
        if source.profile is not None or source.profile_at is not None:
            profiled.append([n, source.profile, source.profile_at])
    derived = len(r.seen) == len(r.shops) and all(
        sid == shop.id and str(where) == str(shop.source) for (sid, where), shop in zip(r.seen, r.shops, strict=True))
    warnings = [[i.file, i.line, i.column, i.path, i.message, i.severity] for i in r.warnings]
    return [list(files), lines, profiled, [[list(b) for b in shape] for shape in sets], shops,
            None if derived else [[sid, str(where)] for sid, where in r.seen], [list(x) for x in r.users], warnings]


def _str(v: Any) -> str:
    if type(v) is not str:
        raise Corrupt
    return v


def _int(v: Any) -> int:
    if type(v) is not int or not 0 <= v < 1 << 31:
        raise Corrupt
    return v


def _list(v: Any, n: int | None = None) -> list[Any]:
    if type(v) is not list or (n is not None and len(v) != n):
        raise Corrupt
    return v


def _pairs(v: Any) -> list[tuple[str, str]]:
    return [(_str(a), _str(b)) for a, b in (_list(x, 2) for x in _list(v))]


_OPT_STR: set[type] = {str, type(None)}


def _kinds(values: Any, kinds: set[type]) -> bool:
    """Every value is of one of ``kinds`` exactly (a bool is not an int here)."""
    return set(map(type, values)) <= kinds


def _numbers(values: list[Any], bound: int) -> bool:
    """Every value is an int in [0, bound)."""
    return _kinds(values, {int}) and (not values or (min(values) >= 0 and max(values) < bound))


def _number(v: Any, bound: int) -> int:
    if type(v) is not int or not 0 <= v < bound:
        raise Corrupt
    return v


def _indexed(v: Any, n: int, kind: type) -> list[tuple[int, Any]]:
    """[index, value] pairs: each index a shop's (< n), each value of ``kind``."""
    out = []
    for pair in _list(v):
        i, value = _list(pair, 2)
        if type(value) is not kind:
            raise Corrupt
        out.append((_number(i, n), value))
    return out


def _opt(v: Any, kind: type) -> bool:
    """``v`` is None or of exactly ``kind``."""
    return v is None or type(v) is kind


_SETS: dict[tuple[tuple[Any, ...], ...], BindingSet] = {}   # the sets read so far, by what the file says
_SETS_MAX = 10_000


def _sets(v: Any) -> list[BindingSet]:
    """The binding sets, each checked once (not once a shop), and once a run however many files
    have it (the same object then: the plan's verdict on a set is made once too)."""
    out: list[BindingSet] = []
    for shape in _list(v):
        # (with each value's type: 1, 1.0 and true are equal keys, and only one of them is valid)
        key = tuple((tuple(b), tuple(map(type, b))) if type(b) is list else b for b in _list(shape))
        try:
            known = _SETS.get(key)
        except TypeError:   # (something unhashable in it: a list or an object where a value goes)
            raise Corrupt from None
        if known is not None:
            out.append(known)
            continue
        items: list[tuple[Scenario, str | None, str | None, bool | None, bool | None, int, int | None]] = []
        for b in _list(shape):
            sc, appkey, erp, bss, edb, slot, bss_slot = _list(b, 7)
            scenario = _SCENARIOS.get(sc) if type(sc) is str else None
            if (scenario is None or any(seen[0] is scenario for seen in items) or not _opt(appkey, str)
                    or not _opt(erp, str) or not _opt(bss, bool) or not _opt(edb, bool)):
                raise Corrupt
            items.append((scenario, appkey, erp, bss, edb, _int(slot), None if bss_slot is None else _int(bss_slot)))
        out.append(BindingSet(items))
        if len(_SETS) < _SETS_MAX:
            _SETS[key] = out[-1]
    return out


class _Sources:
    """A cached file's sources, each built when first asked for (most of a warm plan's never
    are: its bindings'), then the same object every time."""

    __slots__ = ("built", "files", "in_file", "lines", "said")

    def __init__(self, files: list[str], in_file: list[int], lines: list[int],
                 said: dict[int, tuple[str | None, str | None]]) -> None:
        self.files, self.in_file, self.lines, self.said = files, in_file, lines, said
        self.built: list[Source | None] = [None] * len(lines)

    def get(self, n: int) -> Source:
        source = self.built[n]
        if source is None:
            profile, profile_at = self.said.get(n, (None, None))
            source = self.built[n] = new_source(self.files[self.in_file[n]], self.lines[n], profile, profile_at)
        return source


def decode(data: Any) -> FileResult:
    """An encoded result, every value's type checked; raises ``Corrupt``. (The hot loop of a
    warm plan: 30,000 bindings for 10,000 shops, hence the inlined checks.)"""
    try:
        names, flat, profiled, sets, shops, seen, users, warnings = _list(data, 8)
        files = [_str(f) for f in _list(names)]
        numbers = _list(flat)
        in_file, lines = numbers[0::2], numbers[1::2]
        if (len(numbers) % 2 or not set(map(type, numbers)) <= {int}   # (checked whole: a bool is not an int here)
                or (numbers and (min(in_file) < 0 or max(in_file) >= len(files) or min(lines) < 0 or max(lines) >= 1 << 31))):
            raise Corrupt
        nsources = len(lines)
        said: dict[int, tuple[str | None, str | None]] = {}
        for v in _list(profiled):
            n, profile, profile_at = _list(v, 3)
            if type(n) is not int or not 0 <= n < nsources or not _opt(profile, str) or not _opt(profile_at, str):
                raise Corrupt
            said[n] = (profile, profile_at)
        source_of = _Sources(files, in_file, lines, said).get
        checked = _sets(sets)
        nsets = len(checked)
        # The shops, a column a field, each column checked whole (a type a column, its numbers' range).
        ids, names, erps, protects, at, in_set, given, labelled, profiled_shops, protected = _list(shops, 10)
        count = len(_list(ids))
        if (any(type(c) is not list or len(c) != count for c in (names, erps, protects, at, in_set))
                or not _kinds(ids, {str}) or not _kinds(names, _OPT_STR) or not _kinds(erps, _OPT_STR)
                or not _kinds(protects, {bool}) or not _numbers(at, nsources) or not _numbers(in_set, nsets)
                or not _numbers(_list(given), nsources) or len(given) != sum(map([c.slots for c in checked].__getitem__, in_set))):
            raise Corrupt
        labels: dict[int, dict[str, str]] = {}   # (a JSON object's keys are strings)
        for v in _list(labelled):
            i, said_labels = _list(v, 2)
            if type(i) is not int or not 0 <= i < count or type(said_labels) is not dict or not _kinds(said_labels.values(), {str}):
                raise Corrupt
            labels[i] = said_labels
        profile_of = dict(_indexed(profiled_shops, count, str))
        protect_source = {i: source_of(_number(v, nsources)) for i, v in _indexed(protected, count, int)}
        out: list[DesiredShop] = []
        start = 0
        # (a shop's bindings, and their sources, are built when first read: most shops of a warm plan never are)
        rows = zip(ids, names, erps, protects, at, in_set, strict=True)
        if labels or profile_of or protect_source:
            for i, (sid, name, erp, protect, source, k) in enumerate(rows):
                bset = checked[k]
                end = start + bset.slots
                out.append(new_cached_shop(sid, name, erp, protect, source_of(source), bset, given[start:end], source_of,
                                           labels.get(i, {}), profile_of.get(i), protect_source.get(i)))
                start = end
        else:   # (the commonest: no shop with labels, a profile or protect said elsewhere)
            for sid, name, erp, protect, source, k in rows:
                bset = checked[k]
                end = start + bset.slots
                out.append(new_cached_shop(sid, name, erp, protect, source_of(source), bset, given[start:end], source_of, {},
                                           None, None))
                start = end
        issues = []
        for w in _list(warnings):
            file, line, column, path, message, severity = _list(w, 6)
            if _str(severity) == "error":
                raise Corrupt  # results with errors are never cached
            issues.append(Issue(_str(file), _int(line), _int(column), _str(path), _str(message), severity))
        where: list[tuple[str, str | Source]] = [(s.id, s.source) for s in out] if seen is None else list(_pairs(seen))
        return FileResult(out, where, _pairs(users), issues)
    except (ValueError, TypeError) as e:   # unpacking a list of the wrong length
        raise Corrupt from e
