"""YAML → plain values, keeping where every value came from.

PyYAML's constructors silently keep the last of two duplicate keys and expand aliases;
both are wrong for a configuration language. We compose the node tree (libyaml's C parser
when present) and build plain dicts/lists ourselves: duplicate keys and aliases become
issues, and every value's ``line:column`` is kept in ``Marks`` for error messages.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from .errors import Issue

Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Dumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

PathT = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_constructor = SafeConstructor()


@dataclass
class Marks:
    """1-based (line, column) of values and keys by path, plus the source text of numbers."""

    values: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    raw: dict[PathT, str] = field(default_factory=dict)

    def at(self, path: PathT, *, key: bool = False) -> tuple[int, int]:
        """The mark of ``path`` or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        p = path
        while True:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            if not p:
                return (1, 1)
            p = p[:-1]


@dataclass
class Document:
    file: str
    data: Any
    marks: Marks


def path_str(path: PathT) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic GC costs 2-6x while building big trees of small objects (PERF-NOTES)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.marks = Marks()
        self.issues: list[Issue] = []
        self.seen: set[int] = set()

    def issue(self, where: tuple[int, int], path: PathT, message: str) -> None:
        self.issues.append(Issue(self.file, where[0], where[1], path_str(path), message))

    def build(self, node: yaml.Node, path: PathT) -> Any:
        if id(node) in self.seen:
            self.issue(_mark(node), path, "YAML aliases (*name) are not allowed; write the value out")
            return None
        self.seen.add(id(node))
        self.marks.values[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            tag = node.tag
            if tag == _STR:
                return node.value
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return _constructor.construct_yaml_bool(node)
            self.marks.raw[path] = node.value
            if tag == _INT:
                return _constructor.construct_yaml_int(node)
            try:
                return _constructor.construct_object(node, deep=True)
            except yaml.YAMLError as e:
                self.issue(_mark(node), path, f"cannot read value: {getattr(e, 'problem', e)}")
                return None
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        out: dict[Any, Any] = {}
        first: dict[Any, yaml.Node] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.issue(_mark(knode), path, "a key must be a plain value, not a list or mapping")
                continue
            if knode.tag == "tag:yaml.org,2002:merge":
                self.issue(_mark(knode), path, "YAML merge keys (<<) are not allowed")
                continue
            key = knode.value if knode.tag == _STR else self.build(knode, (*path, "<key>"))
            if key in first:
                kp = (*path, key)
                self.issue(
                    _mark(knode), kp,
                    f"duplicate key {knode.value!r} (first at line {first[key].start_mark.line + 1})",
                )
                continue
            first[key] = knode
            kp = (*path, key)
            self.marks.keys[kp] = _mark(knode)
            out[key] = self.build(vnode, kp)
        return out


def _decode(raw: bytes, file: str) -> tuple[str | None, list[Issue]]:
    for bom, name in ((b"\xef\xbb\xbf", "UTF-8"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if raw.startswith(bom):
            return None, [Issue(file, 1, 1, "", f"file starts with a {name} byte-order mark; save it as UTF-8 without BOM")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        return None, [Issue(file, line, col, "", f"not UTF-8: byte 0x{raw[e.start]:02x} cannot be decoded; save the file as UTF-8")]
    return text, []


def _anchor_issues(text: str, file: str) -> list[Issue]:
    issues = []
    for event in yaml.parse(text, Loader=Loader):
        anchor = getattr(event, "anchor", None)
        if anchor is not None and not isinstance(event, yaml.AliasEvent):
            m = event.start_mark
            assert m is not None
            issues.append(Issue(file, m.line + 1, m.column + 1, "", f"YAML anchors (&{anchor}) are not allowed; write the value out"))
    return issues


def load(path: Path, file: str) -> tuple[Document | None, list[Issue]]:
    """Read one YAML file. Returns the document, or None and the reasons it cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        return None, [Issue(file, 0, 0, "", f"cannot read: {e.strerror}")]
    text, issues = _decode(raw, file)
    if text is None:
        return None, issues
    try:
        node = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        line, col = (m.line + 1, m.column + 1) if m else (1, 1)
        what = " ".join(x for x in (e.context, e.problem) if x)
        return None, [Issue(file, line, col, "", f"YAML syntax error: {what}")]
    except yaml.YAMLError as e:
        return None, [Issue(file, 1, 1, "", f"YAML error: {e}")]
    if node is None:
        return None, [Issue(file, 1, 1, "", "file is empty")]
    builder = _Builder(file)
    data = builder.build(node, ())
    if "&" in text:
        builder.issues.extend(_anchor_issues(text, file))
    return Document(file, data, builder.marks), builder.issues


def dump(data: Any) -> str:
    """YAML text for plain data: block style, keys in the given order, Unicode kept."""
    return str(yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False))
