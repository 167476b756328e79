"""Located validation messages: a YAML document × a pydantic model → ``file:line:column`` issues.

pydantic says what is wrong at a ``loc`` of the data; this module turns each of its errors
into a message for a person (what YAML read, what was expected, "did you mean") and points
it at the YAML node it concerns, using the marks ``yamlio`` kept. Every error of a file is
reported, not the first; a value that could not be built (reported by ``yamlio``) is not
reported again. Secret values (world files hold the app secret and session keys) are never
echoed.

``config`` uses it for the configuration directory; ``load_document`` serves any other
single file (world files).
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigError, Issue
from .vocab import WHOLE_FILE, close_matches, excerpt
from .yamlio import Document, PathT, load, number_text, path_str, paused_gc, read_as

if TYPE_CHECKING:
    from pydantic import BaseModel

# pydantic is imported by the functions that validate (most runs of a plain configuration never do).
M = TypeVar("M", bound="BaseModel")


def _strip(tp: Any) -> Any:
    """``T`` from ``Annotated[T, ...]`` and ``T | None``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _BaseModel() -> type[BaseModel]:
    from pydantic import BaseModel

    return BaseModel


def _kinds(model: type[BaseModel]) -> tuple[Any, ...]:
    f = model.model_fields.get("kind")
    return typing.get_args(_strip(f.annotation)) if f is not None else ()


def _as_model(tp: Any, data: Any) -> type[BaseModel] | None:
    """The model that validates ``data`` when the declared type is ``tp``; a union of
    models (``provider``) is resolved by the data's ``kind``."""
    tp = _strip(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        kind = data.get("kind") if isinstance(data, dict) else None
        for m in typing.get_args(tp):
            if isinstance(m, type) and issubclass(m, _BaseModel()) and kind in _kinds(m):
                return m
        return None
    return tp if isinstance(tp, type) and issubclass(tp, _BaseModel()) else None


def _model_at(root: type[BaseModel], path: PathT, data: Any) -> type[BaseModel] | None:
    """The spec model of the mapping at ``path`` of the file's ``data`` (for 'did you mean')."""
    tp: Any = root
    cur = data
    for part in path:
        model = _as_model(tp, cur)
        if model is not None:
            f = model.model_fields.get(str(part))
            if f is None:
                return None
            tp = f.annotation
        else:
            inner = _strip(tp)
            if typing.get_origin(inner) not in (list, dict):
                return None
            tp = typing.get_args(inner)[-1]
        cur = _step(cur, part)
    return _as_model(tp, cur)


def _step(cur: Any, part: str | int) -> Any:
    if isinstance(cur, dict):
        return cur.get(part)
    if isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
        return cur[part]
    return None


_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "date", "datetime"})


def _union_tag(cur: Any, part: Any) -> bool:
    """Whether a ``loc`` part names the member of a (smart) union pydantic tried rather than
    a key of the data: ``str``, a model's name, ``function-after[…]``."""
    if not isinstance(part, str):
        return False
    if not isinstance(cur, dict):
        return True   # a scalar or a list has no string keys: the part is a member's label
    return part not in cur and (part in _TYPE_LABELS or "[" in part or part[:1].isupper())


def _data_path(data: Any, loc: tuple[Any, ...], kind: str = "") -> tuple[PathT, PathT | None]:
    """Follow ``loc`` through the data: the path in the file, and where a union's member
    label was dropped from it (None if none was).

    pydantic adds parts that are not in the file: ``[key]`` for dict keys, the tag of a
    discriminated union member (``provider.top.url``) and the label of a smart union's
    member (``session.str``); those are dropped from the path.
    """
    path: list[str | int] = []
    union: PathT | None = None
    cur: Any = data
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        if isinstance(cur, dict) and part not in cur and cur.get("kind") == part:
            continue
        last_key = i == len(loc) - 1 and isinstance(cur, dict) and kind in ("missing", "extra_forbidden")
        if i > 0 and union is None and not last_key and _union_tag(cur, part):
            union = tuple(path)
            continue
        path.append(part)
        cur = _step(cur, part)
    return tuple(path), union


_MISMATCH = frozenset({"string_type", "int_type", "float_type", "bool_type", "dict_type", "model_type",
                       "model_attributes_type", "list_type", "date_type", "datetime_type", "enum", "literal_error"})
_KIND_WORD = {"string_type": "a string", "int_type": "a whole number", "float_type": "a number", "bool_type": "true or false",
              "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping", "list_type": "a list"}


def _union_errors(doc: Document, errors: list[tuple[PathT, PathT | None, Any]]) -> list[tuple[PathT, PathT | None, Any]]:
    """A smart union reports every member's failure. Where some member got past the value's
    type (its errors are deeper), the others' type mismatches are noise; where none did,
    their mismatches become one error: "expected a string or a mapping"."""
    deeper = {u for path, u, err in errors if u is not None and (path != u or err["type"] not in _MISMATCH)}
    out: list[tuple[PathT, PathT | None, Any]] = []
    merged: dict[PathT, list[Any]] = {}
    for path, u, err in errors:
        if u is None:
            out.append((path, u, err))
        elif path == u and err["type"] in _MISMATCH:
            if u not in deeper:
                merged.setdefault(u, []).append(err)
        else:
            out.append((path, u, err))
    for u, errs in merged.items():
        words = list(dict.fromkeys(_KIND_WORD.get(e["type"], "another value") for e in errs))
        first = dict(errs[0])
        if len(words) > 1:
            first = {**first, "type": "union_mismatch", "msg": " or ".join(words)}
        out.append((u, None, first))
    return out


def _what(value: Any, *, limit: int | None = None) -> str:
    """What a value is, for a message; a string only as a short excerpt (``vocab.excerpt``)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {number_text(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {excerpt(value) if limit is None else excerpt(value, limit)}"
    return f"the {type(value).__name__} {excerpt(str(value))}"


def _num(x: Any) -> Any:
    """1.0 → 1 in messages (the bound of a float field is a float)."""
    return int(x) if isinstance(x, float) and x.is_integer() and abs(x) < 1e15 else x


_APPKEYISH = {"appkey", "id", "app_key", "shop"}
_DIGITS = re.compile(r"[0-9]{1,32}")
# keys whose values are secrets: never echoed in a message, never accepted in reconciler.yaml
_SECRET_KEYS = frozenset({"app_secret", "secret", "session", "sessions", "session_key"})
_BOUNDS = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le"),
           "greater_than": ("greater than", "gt"), "less_than": ("less than", "lt")}


def _top() -> type[BaseModel]:
    from .specs import TopSettings

    return TopSettings


def _message(err: Any, doc: Document, path: PathT, model: type[BaseModel] | None) -> tuple[PathT, str, bool]:
    """A user's message for one pydantic error: (path, message, point at the key rather than the value)."""
    kind = err["type"]
    value = err.get("input")
    last = path[-1] if path else ""
    if str(last) in _SECRET_KEYS and kind not in ("extra_forbidden", "value_error"):  # our validators echo no value
        # a secret (world files hold the app secret and session keys): never echo the value
        return path, "must be a quoted, non-empty string (the value is not shown: it is a secret)", False
    if kind == "extra_forbidden":
        key = str(last)
        if key == "buyer_self_service":
            return path, "buyer_self_service applies to modify_address only", True
        if key == "erp_detail_button":
            return path, "erp_detail_button applies to order_status only", True
        if key in _SECRET_KEYS and model is _top():
            return path, (f"unknown key {excerpt(key)}: secrets never go in the configuration; name the environment variable"
                          " (app_secret_env, sessions_env) or the file (app_secret_file, sessions_file) that holds them"), True
        allowed = sorted(model.model_fields) if model else []
        close = close_matches(key, allowed)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        return path, f"unknown key {excerpt(key)}{hint}", True
    if kind == "missing":
        return path, f"missing required key {str(err['loc'][-1])!r}", False
    if kind == "string_type":
        raw = doc.marks.raw.get(path)
        if raw is not None and not isinstance(value, (dict, list)):
            digits = last in _APPKEYISH and isinstance(value, (int, float)) and not isinstance(value, bool)
            if digits and not _DIGITS.fullmatch(raw):  # 0x186A1, -100001, 1_000, 1:30: quoting them is no better
                return path, (f"must be a quoted string of digits ({read_as(raw, value)};"
                              f" {excerpt(raw)} is not a string of digits either)"), False
            hint = f'; write "{raw}"' if len(raw) <= 40 else "; write it in quotes"
            return path, f"must be a quoted string {'of digits ' if digits else ''}({read_as(raw, value)}){hint}", False
        return path, f"expected a string, got {_what(value)}", False
    if kind == "string_pattern_mismatch":
        return path, f"must be a string of digits, got {_what(value)}", False
    if kind == "bool_type":
        return path, f"expected true or false, got {_what(value)}", False
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return path, f"expected a whole number, got {_what(value)}", False
    if kind in ("float_type", "float_parsing"):
        return path, f"expected a number, got {_what(value)}", False
    if kind == "finite_number":
        raw = doc.marks.raw.get(path)
        return path, f"must be a finite number, got {raw if raw is not None and len(raw) <= 40 else _what(value)}", False
    if kind in _BOUNDS:
        words, ctx_key = _BOUNDS[kind]
        return path, f"must be {words} {_num(err['ctx'][ctx_key])}, got {number_text(_num(value))}", False
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return path, f"expected a mapping, got {_what(value)}", False
    if kind == "list_type":
        return path, f"expected a list, got {_what(value)}", False
    if kind == "enum":
        return path, f"expected one of {err['ctx']['expected']}, got {_what(value)}", False
    if kind == "literal_error":
        return path, f"expected {err['ctx']['expected']}, got {_what(value)}", False
    if kind == "union_tag_invalid":
        tags = re.findall(r"'([^']*)'", str(err["ctx"].get("expected_tags", "")))
        tag = str(err["ctx"].get("tag"))[:40]
        close = close_matches(tag, tags)
        hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(tags)}"
        return (*path, "kind"), f"unknown kind {excerpt(tag)}{hint}", False
    if kind == "union_tag_not_found":
        return path, "missing required key 'kind'", False
    if kind == "value_error":
        return path, str(err["ctx"]["error"]), False
    if kind == "union_mismatch":
        return path, f"expected {err['msg']}, got {_what(value)}", False
    return path, str(err["msg"]), False


def _validate(doc: Document, model: type[M], issues: list[Issue]) -> M | None:
    from pydantic import ValidationError

    try:
        return model.model_validate(doc.data)
    except ValidationError as e:
        found = [(*_data_path(doc.data, tuple(err["loc"]), err["type"]), err) for err in e.errors()]
        said: set[tuple[PathT, str]] = set()
        for path, _, err in _union_errors(doc, found):
            if any(path[:len(b)] == b for b in doc.marks.bad):
                continue  # the value could not be built: reported already
            if err["type"] == "extra_forbidden" and path in doc.marks.typed_keys:
                continue  # "a key must be a quoted string" says it already
            target = _model_at(model, path[:-1], doc.data) if err["type"] == "extra_forbidden" else None
            path, msg, on_key = _message(err, doc, path, target)
            if (path, msg) in said:
                continue
            said.add((path, msg))
            line, col = doc.marks.at(path, key=on_key)
            issues.append(Issue(doc.file, line, col, path_str(path), msg))
        return None


def valid_or_none(model: type[M], data: Any) -> M | None:
    """``data`` validated, or None (its errors were reported by the whole file's validation)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def validate_file(doc: Document, model: type[M], expect_key: str | None, issues: list[Issue]) -> M | None:
    """The file's content as ``model``, or None with every reason in ``issues`` (located)."""
    if not isinstance(doc.data, dict):
        want = f"a mapping with the key {expect_key!r}" if expect_key else "a mapping"
        # the whole file as one value (a symlink to a key file?): only its first characters
        got = "an empty file" if doc.data is None and not doc.marks.values else _what(doc.data, limit=WHOLE_FILE)
        issues.append(Issue(doc.file, 1, 1, "", f"expected {want}, got {got}"))
        return None
    return _validate(doc, model, issues)


def load_file(path: Path, display: str, issues: list[Issue]) -> Document | None:
    """The file's document, or None when it cannot be read or parsed at all. A document with
    issues in some values (duplicate keys, tags) is returned: the rest of it is still checked."""
    doc, found = load(path, display)
    issues.extend(found)
    return doc


def load_document(path: Path, display: str, model: type[M], expect_key: str | None, *,
                  subject: str = "the configuration") -> M:
    """One YAML file validated against ``model``; raise ConfigError with every problem."""
    if not path.exists():
        raise ConfigError([Issue(display, 0, 0, "", "file does not exist")], subject=subject)
    issues: list[Issue] = []
    with paused_gc():
        doc = load_file(path, display, issues)
        result = validate_file(doc, model, expect_key, issues) if doc is not None else None
    if result is None or any(i.severity == "error" for i in issues):
        raise ConfigError(issues, subject=subject)
    return result
