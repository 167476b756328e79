"""YAML → plain values, keeping where every value came from.

PyYAML's constructors silently keep the last of two duplicate keys, expand aliases and
turn unquoted ``01234567`` into a number; all three are wrong for a configuration
language. We compose the node tree (libyaml's C parser when present) and build plain
dicts/lists ourselves: duplicate keys, non-string keys and unknown tags become issues,
every value's ``line:column`` is kept in ``Marks`` for error messages, and the source
text of every non-string scalar is kept so a message can say what YAML made of it.

Anchors and aliases are refused before composing: a scan of the parser's events (linear
in the text, no expansion) reports each one where it is written, and the file is not
built at all, so an alias bomb costs no more than reading it.

Files are read with ``files.read_regular``: only regular files (a FIFO would hang, a device
never ends), at most ``MAX_FILE`` bytes. Messages quote keys and values only as short
excerpts (``vocab.excerpt``): the file may be a symlink to anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Issue
from .files import FileError, MiB, read_regular
from .gcpause import paused_gc as paused_gc  # re-exported: the config readers take it from here
from .vocab import excerpt

if TYPE_CHECKING:
    import yaml
    from yaml.constructor import SafeConstructor


def loader() -> type[Any]:
    """PyYAML's safe loader (libyaml's when present). PyYAML is imported here, when a file is
    composed, not by every command: a warm plan reads its two small files without it."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _dumper() -> type[Any]:
    import yaml

    return getattr(yaml, "CSafeDumper", yaml.SafeDumper)


_constructors: list[SafeConstructor] = []


def _constructor() -> SafeConstructor:
    if not _constructors:
        from yaml.constructor import SafeConstructor

        _constructors.append(SafeConstructor())
    return _constructors[0]


PathT = tuple[str | int, ...]

_T = "tag:yaml.org,2002:"
_STR, _INT, _BOOL, _NULL = _T + "str", _T + "int", _T + "bool", _T + "null"
_MAP, _SEQ, _MERGE = _T + "map", _T + "seq", _T + "merge"
# Scalars YAML may resolve by itself besides str/int/bool/null; explicit tags other than
# these (``!!binary``, ``!!python/…``, ``!custom``) are refused.
_CONSTRUCTED = {_T + "float", _T + "timestamp"}
_IMPLICIT = {_INT, _BOOL, _NULL, *_CONSTRUCTED}
MAX_ALIAS_ISSUES = 20
MAX_FILE = 64 * MiB   # 100,000 shops in one file is about 15 MB
MAX_INT_DIGITS = 1000  # an integer literal longer than this is refused (Python's own limit is 4,300)
# What YAML does not allow in a stream (YAML 1.1 "printable"): C0 controls but tab, LF and
# CR; DEL; C1 controls but NEL; the non-characters U+FFFE/U+FFFF.
_NOT_PRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")


@dataclass
class Marks:
    """1-based (line, column) of values and keys by path, the source text of non-strings, the
    paths whose value could not be built (reported; built as None) and the keys YAML did not
    read as strings (reported; kept as their text)."""

    values: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    raw: dict[PathT, str] = field(default_factory=dict)
    bad: set[PathT] = field(default_factory=set)
    typed_keys: set[PathT] = field(default_factory=set)

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
    """One file's content. ``data`` is None for an empty file (or one holding only ``null``)."""

    file: str
    data: Any
    marks: Marks


def path_str(path: PathT) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _mark(node: yaml.Node | yaml.Event) -> tuple[int, int]:
    m = node.start_mark
    assert m is not None
    return (m.line + 1, m.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.marks = Marks()
        self.issues: list[Issue] = []

    def issue(self, where: tuple[int, int], path: PathT, message: str) -> None:
        self.issues.append(Issue(self.file, where[0], where[1], path_str(path), message))

    def refuse(self, node: yaml.Node, path: PathT, message: str) -> None:
        self.marks.bad.add(path)
        self.issue(_mark(node), path, message)

    def build(self, node: yaml.Node, path: PathT) -> Any:
        import yaml

        self.marks.values[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if node.tag not in (_MAP, _SEQ):
            self.refuse(node, path, f"YAML tags ({_tag(node.tag)}) are not allowed; write a plain value")
            return None
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        out: dict[str, Any] = {}
        first: dict[str, yaml.Node] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.issue(_mark(knode), path, "a key must be a plain value, not a list or mapping")
                continue
            if knode.tag == _MERGE:
                self.issue(_mark(knode), path, "YAML merge keys (<<) are not allowed")
                continue
            key = knode.value
            kp = (*path, key)
            if key in first:
                self.issue(_mark(knode), kp, f"duplicate key {excerpt(key)} (first at line {first[key].start_mark.line + 1})")
                continue
            first[key] = knode
            self.marks.keys[kp] = _mark(knode)
            if knode.tag != _STR:
                # Every key of our formats is a name or an id: a string. Keep its text so
                # the rest of the file is still checked, and say how to write it.
                typed = self._scalar(knode, kp, keep_raw=False)
                if knode.tag in _IMPLICIT:
                    self.marks.typed_keys.add(kp)
                    self.issue(_mark(knode), kp, f"a key must be a quoted string ({read_as(key, typed)}){_write(key)}")
            out[key] = self.build(vnode, kp)
        return out

    def _scalar(self, node: yaml.ScalarNode, path: PathT, *, keep_raw: bool = True) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag == _NULL:
            return None
        if keep_raw:
            self.marks.raw[path] = node.value
        if tag == _BOOL:
            return _constructor().construct_yaml_bool(node)
        if tag == _INT:
            if len(node.value) > MAX_INT_DIGITS:
                self.refuse(node, path, f"a number of {len(node.value):,} characters is not a value of ours")
                return None
            return _constructor().construct_yaml_int(node)
        if tag not in _CONSTRUCTED:
            self.refuse(node, path, f"YAML tags ({_tag(tag)}) are not allowed; write a plain value")
            return None
        import yaml

        try:
            return _constructor().construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as e:
            why = str(getattr(e, "problem", None) or e).split("\n", 1)[0][:80]
            self.refuse(node, path, f"cannot read value {excerpt(node.value)}: {why}")
            return None


def _tag(tag: str) -> str:
    return "!!" + tag[len(_T):] if tag.startswith(_T) else tag


def read_as(raw: str, value: Any) -> str:
    """``YAML read 01234567 as the number 342391``: what YAML made of an unquoted value."""
    shown = raw if len(raw) <= 40 else excerpt(raw)
    if value is None:
        return f"YAML read {shown} as null"
    if isinstance(value, bool):
        return f"YAML read {shown} as the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        number = number_text(value)
        return f"YAML read {shown} as the number {number}" if raw != number else f"YAML read {shown} as a number"
    return f"YAML read {shown} as a {type(value).__name__}"


def number_text(value: float) -> str:
    """A number for a message: whole below 40 digits, else its size (never a 5,000-digit line)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 130:
        return f"of about {int(value.bit_length() * 0.30103):,} digits"
    return str(value)


def _write(raw: str) -> str:
    """``; write "1688"`` — how to quote a value, unless it is too long to repeat."""
    return f'; write "{raw}"' if len(raw) <= 40 and raw.isprintable() else "; write it in quotes"


def _decode(raw: bytes, file: str) -> tuple[str | None, list[Issue]]:
    for bom, name in ((b"\xef\xbb\xbf", "UTF-8"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if raw.startswith(bom):
            return None, [Issue(file, 1, 1, "", f"file starts with a {name} byte-order mark; save it as UTF-8 without BOM")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        start = raw.rfind(b"\n", 0, e.start) + 1
        line = raw.count(b"\n", 0, e.start) + 1
        col = len(raw[start:e.start].decode("utf-8", errors="replace")) + 1  # characters, like YAML marks
        return None, [Issue(file, line, col, "", f"not UTF-8: byte 0x{raw[e.start]:02x} cannot be decoded; save the file as UTF-8")]
    return text, []


def _syntax_issue(e: yaml.MarkedYAMLError, text: str, file: str) -> Issue:
    m = e.problem_mark or e.context_mark
    line, col = (m.line + 1, m.column + 1) if m else (1, 1)
    what = e.problem or "invalid YAML"
    c = e.context_mark
    if m is not None and 0 <= m.index < len(text) and text[m.index] == "\t":
        what = "a tab character; YAML is indented with spaces"
    elif e.context and c is not None and (c.line, c.column) != (line - 1, col - 1):
        what += f" ({e.context} at line {c.line + 1}, column {c.column + 1})"
    elif e.context:
        what += f" ({e.context})"
    return Issue(file, line, col, "", f"YAML syntax error: {what}")


class _Frame:
    __slots__ = ("index", "key", "mapping", "path", "want_key")

    def __init__(self, path: PathT, mapping: bool) -> None:
        self.path, self.mapping = path, mapping
        self.index, self.key, self.want_key = 0, "<key>", True


def _alias_issues(text: str, file: str) -> list[Issue]:
    """Every anchor and alias with its own position and key path, from the event stream.

    Nothing is composed, so nothing is expanded. Raises ``yaml.MarkedYAMLError`` on a
    syntax error (the caller reports it).
    """
    import yaml

    issues: list[Issue] = []
    stack: list[_Frame] = []

    def here() -> PathT:
        if not stack:
            return ()
        top = stack[-1]
        if not top.mapping:
            return (*top.path, top.index)
        return (*top.path, "<key>") if top.want_key else (*top.path, top.key)

    def done(key: str) -> None:
        if not stack:
            return
        top = stack[-1]
        if not top.mapping:
            top.index += 1
        elif top.want_key:
            top.key, top.want_key = key, False
        else:
            top.want_key = True

    def report(event: yaml.Event, path: PathT, message: str) -> None:
        line, col = _mark(event)
        issues.append(Issue(file, line, col, path_str(path), message))

    for event in yaml.parse(text, Loader=loader()):
        if isinstance(event, yaml.AliasEvent):
            report(event, here(), f"YAML aliases (*{event.anchor}) are not allowed; write the value out")
            done("<alias>")
            continue
        if not isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent, yaml.CollectionEndEvent)):
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            stack.pop()
            done("<key>")
            continue
        path = here()
        if event.anchor is not None:
            report(event, path, f"YAML anchors (&{event.anchor}) are not allowed; write the value out")
        if isinstance(event, yaml.ScalarEvent):
            done(str(event.value))
        else:
            stack.append(_Frame(path, isinstance(event, yaml.MappingStartEvent)))
    if len(issues) > MAX_ALIAS_ISSUES:
        last = issues[-1]  # the summary sorts after the listed ones
        more = len(issues) - MAX_ALIAS_ISSUES
        issues = [*issues[:MAX_ALIAS_ISSUES],
                  Issue(file, last.line, last.column, "", f"… and {more} more anchor(s) or alias(es) up to here")]
    return issues


def _unprintable(text: str, file: str) -> Issue | None:
    """The first character YAML does not allow, where it is (libyaml says only "position N")."""
    m = _NOT_PRINTABLE.search(text)
    if m is None:
        return None
    line = text.count("\n", 0, m.start()) + 1
    col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    return Issue(file, line, col, "", f"a control character (U+{ord(m.group()):04X}) is not allowed in YAML; remove it")


def read(path: Path, file: str, *, limit: int = MAX_FILE) -> tuple[bytes | None, list[Issue]]:
    """A file's bytes, or why it cannot be read: only regular files of at most ``limit`` bytes."""
    try:
        return read_regular(path, what="file", limit=limit), []
    except FileError as e:
        why = str(e).removeprefix(f"{path}: ")
        if why.startswith("cannot read the file: "):
            why = "cannot read: " + why.removeprefix("cannot read the file: ")
        elif "not a regular file" in why:
            why = "not a regular file (a FIFO, a device or a socket): only regular files are read"
        else:
            why = why.replace("the file is larger", "larger")
        return None, [Issue(file, 0, 0, "", why)]


def load(path: Path, file: str, *, limit: int = MAX_FILE) -> tuple[Document | None, list[Issue]]:
    """Read one YAML file. Returns the document, or None and the reasons it cannot be read.

    A document comes back with the issues of the values that could not be built (duplicate
    keys, non-string keys, tags): the rest of it can still be validated.
    """
    raw, issues = read(path, file, limit=limit)
    if raw is None:
        return None, issues
    return parse(raw, file)


def parse(raw: bytes, file: str) -> tuple[Document | None, list[Issue]]:
    """``load`` of bytes already read (``file`` names them in issues)."""
    composed, issues = compose(raw, file)
    if composed is None:
        return None, issues
    return document(composed, file)


class Composed:
    """A file composed into YAML nodes (``node`` None: the file is empty)."""

    __slots__ = ("node",)

    def __init__(self, node: yaml.Node | None) -> None:
        self.node = node


def compose(raw: bytes, file: str) -> tuple[Composed | None, list[Issue]]:
    """The node tree of a file's bytes, or None and why it cannot be read at all (encoding,
    control characters, anchors and aliases, YAML syntax)."""
    text, issues = _decode(raw, file)
    if text is None:
        return None, issues
    bad = _unprintable(text, file)
    if bad is not None:
        return None, [bad]
    import yaml

    try:
        if "&" in text or "*" in text:
            issues = _alias_issues(text, file)
            if issues:
                return None, issues
        return Composed(yaml.compose(text, Loader=loader())), []
    except yaml.MarkedYAMLError as e:
        return None, [*issues, _syntax_issue(e, text, file)]
    except yaml.YAMLError as e:
        return None, [*issues, Issue(file, 1, 1, "", f"YAML error: {str(e).splitlines()[0][:120]}")]


def document(composed: Composed, file: str) -> tuple[Document, list[Issue]]:
    """A composed file built into plain values with their marks, and the issues of the values
    that could not be built (duplicate keys, non-string keys, tags)."""
    if composed.node is None:
        return Document(file, None, Marks()), []
    builder = _Builder(file)
    data = builder.build(composed.node, ())
    return Document(file, data, builder.marks), builder.issues


def dump(data: Any) -> str:
    """YAML text for plain data: block style, keys in the given order, Unicode kept."""
    import yaml

    return str(yaml.dump(data, Dumper=_dumper(), sort_keys=False, allow_unicode=True, default_flow_style=False))
