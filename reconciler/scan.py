"""Plain shop files without YAML: the lines of their commonest form, read straight into resolved shops.

Composing a shop file's YAML is most of what reading it costs (PyYAML builds a node and
resolves a tag for every scalar, in Python, around libyaml's parser), and most shop files
of a large agency are written in one regular block form::

    shops:
      - id: "10000001"          # quoted, or the file is not plain
        name: 店铺1
        erp: jushuitan
        protect: true
        labels: {}              # or a block of ``key: value`` lines
        scenarios:
          intercept_shipment: {}
          modify_address:       # null, {} or a block of erp / buyer_self_service / erp_detail_button
            buyer_self_service: true
          order_status:

``shops`` reads such a file line by line — each line one ``key: value`` (after an optional
``- `` at the item's indentation), the value a quoted string without escapes, a plain
scalar, ``{}`` or nothing, then a comment — and builds what ``fastpath.shops`` builds from
the composed nodes, with the same checks (``fastpath`` holds the rules both use). It is an
optimisation, never a second grammar: anything else — a tab, a carriage return, an anchor
or alias character anywhere, a character that is not printable, a flow collection other
than ``{}``, a block scalar, a tag, an escape, a multi-line scalar, a key or indentation it
does not expect, a duplicate key — returns None and the file is composed as YAML and read
by ``fastpath`` or step by step, which says what is wrong. A plain scalar is resolved with
the YAML loader's own implicit resolvers (``on`` is a bool, ``0x1f`` an int) and taken only
where the file's kind of value is expected. ``tests/test_scan.py`` compares the two over
random files and hand-written YAML corner cases.
"""

from __future__ import annotations

import re
from typing import Any

from .fastpath import SCENARIO_KEYS, NotPlain, binding, check_label, check_shop
from .model import DesiredBinding, DesiredShop, Erp, Scenario, Source, new_shop, new_source
from .yamlio import loader

# one content line: indentation, the item's "- " (with the spaces after it), a key, the value text
# (its trailing spaces stripped after: a lazy ``(.*?) *`` would try every split of a long run
# of spaces, quadratic in the line's length)
_LINE = re.compile(r"( *)(- +)?([A-Za-z0-9_][A-Za-z0-9_.-]*):(?: +(.*))?")
_COMMENT = re.compile(r" +#.*")
# a plain scalar may not start with an indicator (a flow collection, a tag, an anchor, a block scalar …)
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_RESOLVERS: dict[Any, list[tuple[str, re.Pattern[str]]]] = loader().yaml_implicit_resolvers
_T = "tag:yaml.org,2002:"
_STR, _BOOL, _NULL = _T + "str", _T + "bool", _T + "null"
_BOOLS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_EMPTY = "{}"
_NONE: list[Line] = []   # no block (never changed)
_SHOP_KEYS = frozenset({"id", "name", "erp", "protect", "labels", "scenarios"})
_SCENARIO = {s.value: s for s in Scenario}

# A content line: (line number, indentation, length of "- " or 0, key, value text).
Line = tuple[int, int, int, str, str]


def _tag(plain: str) -> str:
    """The tag YAML resolves a plain scalar to (PyYAML's ``Resolver.resolve``)."""
    for tag, regexp in _RESOLVERS.get(plain[:1], ()):
        if regexp.match(plain):
            return tag
    for tag, regexp in _RESOLVERS.get(None, ()):
        if regexp.match(plain):
            return tag
    return _STR


def _scalar(text: str) -> tuple[str, str]:
    """(tag, value) of a value's text: a quoted string without escapes, or a plain scalar."""
    first = text[:1]
    if first == '"' or first == "'":
        end = text.find(first, 1)
        if end < 0:
            raise NotPlain
        value, rest = text[1:end], text[end + 1:]
        if (first == '"' and "\\" in value) or (rest and not _COMMENT.fullmatch(rest)):
            raise NotPlain   # an escape, a quote inside ('' in single quotes), or text after the quote
        return _STR, value
    if not text or first in _INDICATORS:
        raise NotPlain
    cut = text.find(" #")
    if cut >= 0:
        text = text[:cut].rstrip(" ")
    if ": " in text or text.endswith(":"):
        raise NotPlain
    return _tag(text), text


def _str(text: str) -> str:
    tag, value = _scalar(text)
    if tag != _STR:
        raise NotPlain
    return value


def _bool(text: str) -> bool:
    tag, value = _scalar(text)
    if tag != _BOOL:
        raise NotPlain
    return _BOOLS[value.lower()]


def _lines(text: str) -> list[Line]:
    out: list[Line] = []
    add, match = out.append, _LINE.fullmatch
    number = 0
    for line in text.split("\n"):
        number += 1
        m = match(line)
        if m is None:
            if line.lstrip(" ")[:1] in ("", "#"):
                continue   # a blank line or a comment
            raise NotPlain
        indent, dash, key, value = m.groups()
        if value:
            value = value.rstrip(" ")
        if not value or value[0] == "#":
            value = ""   # nothing, or ``key:  # a comment``
        add((number, len(indent), len(dash) if dash else 0, key, value))
    return out


def shops(raw: bytes, file: str, erps: dict[str, Erp]) -> list[DesiredShop] | None:
    """The resolved shops of a shop file in the plain line form (its bytes), or None."""
    try:
        text = raw.decode("utf-8")
        if "\t" in text or "\r" in text or "&" in text or "*" in text or not text.replace("\n", "").isprintable():
            return None
        return _Reader(_lines(text), file, erps).shops()
    except (NotPlain, UnicodeDecodeError, KeyError):
        return None


class _Reader:
    def __init__(self, lines: list[Line], file: str, erps: dict[str, Erp]) -> None:
        self.lines, self.file, self.erps, self.i = lines, file, erps, 0
        self.said: dict[str, str] = {}   # an ERP's text → the name it says

    def shops(self) -> list[DesiredShop]:
        lines = self.lines
        if not lines or lines[0][1:] != (0, 0, "shops", "") or len(lines) < 2 or not lines[1][2]:
            raise NotPlain
        column = lines[1][1]   # the items' "- "
        self.i = 1
        out: list[DesiredShop] = []
        ids: set[str] = set()
        while self.i < len(lines):
            number, indent, dash, _, _ = lines[self.i]
            if indent != column or not dash:
                raise NotPlain
            out.append(self._shop(number, indent + dash, ids))
        return out

    def _block(self, parent: int) -> tuple[int, list[Line]]:
        """The lines of the block mapping under a key at column ``parent``: (its column, its lines)."""
        lines, start = self.lines, self.i
        if start >= len(lines) or lines[start][1] <= parent:
            return -1, []    # no block: the key's value is null
        column = lines[start][1]
        end = start
        while end < len(lines) and lines[end][1] > parent:
            if lines[end][1] != column or lines[end][2]:
                raise NotPlain   # deeper (a value's own block) or a "- ": read by the caller, or not plain
            end += 1
        self.i = end
        return column, lines[start:end]

    def _shop(self, number: int, column: int, ids: set[str]) -> DesiredShop:
        lines, file = self.lines, self.file
        fields: dict[str, tuple[int, str]] = {}
        labels: dict[str, str] = {}
        declared: dict[str, tuple[int, str, list[Line]]] = {}
        i, end = self.i, len(lines)
        at, _, _, key, value = lines[i]   # the item's first line ("- key: value")
        while True:
            if key not in _SHOP_KEYS or key in fields:
                raise NotPlain
            fields[key] = (at, value)
            i += 1
            if key == "scenarios" or key == "labels":
                self.i = i
                if key == "labels":
                    labels = self._labels(column, value)
                else:
                    declared = self._scenarios(column, value)
                i = self.i
            if i >= end:
                break
            at, indent, dash, key, value = lines[i]
            if indent != column or dash:
                break
        self.i = i
        sid = _str(fields["id"][1])
        name = _str(fields["name"][1]) if "name" in fields else None
        erp_at = fields.get("erp")
        erp = None
        if erp_at is not None:
            erp = self.said.get(erp_at[1])
            if erp is None:
                erp = self.said[erp_at[1]] = _str(erp_at[1])   # (a file names few ERPs, each many times)
        check_shop(sid, erp, ids, self.erps)
        protect = _bool(fields["protect"][1]) if "protect" in fields else False
        bindings: dict[Scenario, DesiredBinding] = {}
        if declared:
            said = new_source(file, erp_at[0], None, None) if erp_at is not None else None   # shared by its bindings
            for key, sc in _SCENARIO.items():   # in the scenarios' order, as the other paths
                if key in declared:
                    bindings[sc] = self._binding(sc, declared[key], erp, said)
        return new_shop(sid, name, erp, protect, new_source(file, number, None, None), bindings, labels, None, None)

    @staticmethod
    def _opens_block(value: str) -> bool:
        """A key whose value is a mapping: ``{}`` (False: empty), or nothing after the colon
        (True: a block below); anything else is not plain."""
        if value and value != _EMPTY:
            raise NotPlain
        return not value

    def _labels(self, column: int, value: str) -> dict[str, str]:
        if not self._opens_block(value):
            return {}
        below, block = self._block(column)
        if below < 0:
            raise NotPlain   # labels: null
        labels: dict[str, str] = {}
        for _, _, _, key, text in block:
            if key in labels or _tag(key) != _STR:
                raise NotPlain
            labels[key] = check_label(key, _str(text))
        return labels

    def _scenarios(self, column: int, value: str) -> dict[str, tuple[int, str, list[Line]]]:
        if not self._opens_block(value):
            return {}
        below, block = self._nested(column)
        if below < 0:
            raise NotPlain   # scenarios: null
        return block

    def _nested(self, parent: int) -> tuple[int, dict[str, tuple[int, str, list[Line]]]]:
        """The scenarios' block: each scenario with its line, value text and its own block's lines."""
        lines = self.lines
        if self.i >= len(lines) or lines[self.i][1] <= parent:
            return -1, {}
        column = lines[self.i][1]
        out: dict[str, tuple[int, str, list[Line]]] = {}
        end = len(lines)
        while self.i < end and lines[self.i][1] > parent:
            at, indent, dash, key, value = lines[self.i]
            if indent != column or dash or key in out or key not in SCENARIO_KEYS:
                raise NotPlain
            self.i += 1
            if self.i < end and lines[self.i][1] > column:   # its own block
                if value:
                    raise NotPlain   # a value and a block under it
                out[key] = (at, value, self._block(column)[1])
            else:
                out[key] = (at, value, _NONE)
        return column, out

    def _binding(self, sc: Scenario, declared: tuple[int, str, list[Line]], shop_erp: str | None,
                 said: Source | None) -> DesiredBinding:
        _, value, block = declared
        if value == _EMPTY and shop_erp is not None and said is not None:   # the commonest: ``intercept_shipment: {}``
            return binding(sc, shop_erp, said, None, None, None, self.erps)
        if block:
            fields: dict[str, tuple[int, str]] = {}
            allowed = SCENARIO_KEYS[sc.value]
            for at, _, _, key, text in block:
                if key in fields or key not in allowed:
                    raise NotPlain
                fields[key] = (at, text)
        elif value == _EMPTY or (value in _NULLS and _scalar(value or "~")[0] == _NULL):
            fields = {}   # ``intercept_shipment:`` means ``intercept_shipment: {}``
        else:
            raise NotPlain
        file = self.file
        if "erp" in fields:
            at, text = fields["erp"]
            name, source = _str(text), new_source(file, at, None, None)
        elif shop_erp is not None and said is not None:
            name, source = shop_erp, said
        else:
            raise NotPlain   # no ERP to bind: an error
        bss_at = fields.get("buyer_self_service")
        bss = _bool(bss_at[1]) if bss_at is not None else None
        edb = _bool(fields["erp_detail_button"][1]) if "erp_detail_button" in fields else None
        return binding(sc, name, source, bss, new_source(file, bss_at[0], None, None) if bss_at is not None else None,
                       edb, self.erps)
