"""``reconciler.yaml`` and ``erps.yaml`` in their plain forms, read without PyYAML.

A warm plan reads every shop file from the parse cache; what is left to parse are these two
small files, and importing PyYAML for them costs more than reading them. ``mapping`` reads
the common forms — nested block mappings of ``key: value`` lines, one-line flow mappings
(``jushuitan: {name: 聚水潭, appkey: "21345678"}``), comments — into exactly the values
PyYAML's safe loader builds, and returns None for anything else, which is then read as YAML
(with every mark and message). It is an optimisation, never a second grammar:

- a key is a plain name (letters, digits, ``_ . -``) that YAML reads as a string; no key twice;
- a value is a quoted string without escapes (and, inside ``{}``, without ``, { } [ ] :``),
  a decimal integer, a decimal fraction (``0.3``), one of YAML 1.1's booleans or nulls, or a
  plain string that YAML cannot read as anything else (it starts with a letter, ``_``, ``/``,
  ``.`` or a character beyond ASCII, holds no ``:``, ``#`` or flow indicator, and is not a
  boolean, a null, ``.inf`` or ``.nan``);
- not allowed: an empty value, a list, a block scalar, an anchor, alias or tag, a tab, a
  carriage return, an unprintable character, ``---``/``...``, indentation that does not
  nest plainly.

``tests/test_plainyaml.py`` compares it with PyYAML over random files and corner cases.
"""

from __future__ import annotations

import re
from typing import Any

_KEY = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_LINE = re.compile(rf"( *)({_KEY}):(?: +(.*))?")
# a plain string YAML reads as nothing but a string (see the module doc; flow: no , { } [ ]):
# it starts with one of these, a character beyond ASCII, or "." and a letter or "_" ...
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_FIRST = _LETTERS | {"/"}
# ... and holds none of these (a class of few characters: one over all of Unicode compiles slowly)
_REST = re.compile(r"[^:#,{}\[\]\"']*")
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})\.[0-9]{1,17}")
_BOOLS = {w: v for ws, v in (("yes Yes YES true True TRUE on On ON", True), ("no No NO false False FALSE off Off OFF", False))
          for w in ws.split()}
_NULLS = frozenset({"~", "null", "Null", "NULL"})
_SPECIAL = frozenset({".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"})
# (greedy, its trailing spaces stripped after: a lazy ``(...*?) *`` would try every split of a
# long run of spaces, quadratic in the entry's length)
_ENTRY = re.compile(rf" *({_KEY}): +(\"[^\"\\\\,{{}}\[\]:]*\"|'[^',{{}}\[\]:]*'|[^,{{}}\[\]]*)")
MAX_DEPTH = 16   # mappings nested deeper are read as YAML (which has its own limit, and says so)


class _NotPlain(Exception):
    pass


def mapping(text: str) -> dict[str, Any] | None:
    """The mapping a file's text holds, as PyYAML's safe loader builds it, or None when the
    text is not in the plain forms this reads (or is empty)."""
    if "\t" in text or "\r" in text or not text.replace("\n", "").isprintable() or text.startswith("\ufeff"):
        return None
    try:
        lines = _lines(text)
        if not lines or lines[0][1] != 0:
            return None
        out, end = _block(lines, 0, 0)
        return out if end == len(lines) else None
    except _NotPlain:
        return None


def _lines(text: str) -> list[tuple[int, int, str, str]]:
    """(line number, indentation, key, value text) of each content line."""
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip(" ")
        if not stripped or stripped[0] == "#":
            continue
        m = _LINE.fullmatch(line)
        if m is None:
            raise _NotPlain
        indent, key, value = m.groups()
        value = _uncomment(value or "")
        out.append((number, len(indent), key, value))
    return out


def _uncomment(value: str) -> str:
    """The value without a trailing `` # comment`` and spaces (a quoted value: after its quote)."""
    if value[:1] in ("'", '"'):
        end = value.find(value[0], 1)
        if end < 0:
            raise _NotPlain
        rest = value[end + 1:]
        if (rest.strip(" ") and not rest.lstrip(" ").startswith("#")) or (rest and not rest.startswith(" ")):
            raise _NotPlain
        return value[:end + 1]
    cut = value.find(" #")
    return (value[:cut] if cut >= 0 else value).rstrip(" ")


def _block(lines: list[tuple[int, int, str, str]], start: int, indent: int, depth: int = 0) -> tuple[dict[str, Any], int]:
    """The block mapping whose keys are at ``indent``, from line ``start``: (it, the line after)."""
    if depth > MAX_DEPTH:
        raise _NotPlain
    out: dict[str, Any] = {}
    i = start
    while i < len(lines):
        _, at, key, value = lines[i]
        if at < indent:
            break
        if at != indent or key in out or key_is_not_a_string(key):
            raise _NotPlain
        i += 1
        if value:
            out[key] = _value(value)
            if i < len(lines) and lines[i][1] > indent:
                raise _NotPlain   # a value, and lines under it
        else:
            if i >= len(lines) or lines[i][1] <= indent:
                raise _NotPlain   # an empty value (null): PyYAML's marks of it are not ours to guess
            out[key], i = _block(lines, i, lines[i][1], depth + 1)
    return out, i


def key_is_not_a_string(key: str) -> bool:
    """A plain key YAML reads as something else (``yes``, ``1``, ``null``, ``1.5``), or may."""
    try:
        return type(_scalar(key)) is not str
    except _NotPlain:
        return True


def _value(text: str) -> Any:
    first = text[0]
    if first == "{":
        return _flow(text)
    if first in ("'", '"'):
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != first or first in inner or (first == '"' and "\\" in inner):
            raise _NotPlain   # (a quote inside: '' or an end; an escape)
        return inner
    return _scalar(text)


def _scalar(text: str) -> Any:
    if text in _BOOLS:
        return _BOOLS[text]
    if text in _NULLS:
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text in _SPECIAL or not _plain_string(text):
        raise _NotPlain
    return text


def _plain_string(text: str) -> bool:
    first = text[:1]
    if first == ".":
        if text[1:2] not in _LETTERS:
            return False
    elif not (first in _FIRST or first >= "\x80"):
        return False
    return _REST.fullmatch(text) is not None


def _flow(text: str) -> dict[str, Any]:
    """A one-line flow mapping of plain entries: ``{key: value, key: value}`` or ``{}``."""
    if not text.endswith("}"):
        raise _NotPlain
    inner = text[1:-1]
    out: dict[str, Any] = {}
    if not inner.strip(" "):
        return out
    for entry in inner.split(","):
        m = _ENTRY.fullmatch(entry)
        if m is None:
            raise _NotPlain
        key, value = m.group(1), m.group(2).rstrip(" ")
        if key in out or key_is_not_a_string(key) or not value:
            raise _NotPlain
        out[key] = _value(value)
    return out
