"""The configuration directory → validated, resolved desired state.

Reads ``reconciler.yaml`` (optional), ``erps.yaml`` and ``shops/*.yaml``; validates each
file strictly with the spec models; then checks what spans files (unknown ERP names,
duplicate shop ids, virtualAppKey placement) and resolves every managed scenario to an
appkey. Every problem is collected with ``file:line:column`` and key path, and raised
together as one ``ConfigError``; warnings are returned with the config.

One run reports everything it can: a file with an invalid shop still has its valid shops
checked against the rest (unknown ERPs, duplicate ids), and an ``erps.yaml`` with an
invalid entry still serves its valid ones; a reference to the invalid entry is not
reported a second time.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigError, Issue
from .model import (
    SCENARIOS,
    SHOP_ID_RE,
    VIRTUAL_APPKEY,
    DesiredBinding,
    DesiredShop,
    ErpsFile,
    ErpSpec,
    Scenario,
    Settings,
    ShopsFile,
    ShopSpec,
    Source,
    TopSettings,
    appkey_problem,
    names_by_appkey,
)
from .yamlio import Document, PathT, load, path_str, paused_gc, read_as

M = TypeVar("M", bound=BaseModel)

SETTINGS_FILE = "reconciler.yaml"
ERPS_FILE = "erps.yaml"
SHOPS_DIR = "shops"


@dataclass
class Config:
    """A validated configuration directory."""

    dir: Path
    display_dir: str
    settings: Settings
    erps: dict[str, ErpSpec]
    shops: list[DesiredShop]
    warnings: list[Issue] = field(default_factory=list)
    settings_file: str | None = None
    # The safety threshold is measured against the whole configuration, not only the shops a
    # --shop or --shard selection leaves (a small selection must not slip under min_managed).
    managed_total: int = 0
    selected_by_shop: bool = False

    def erp_names_by_appkey(self) -> dict[str, str]:
        return names_by_appkey(self.erps)


# --------------------------------------------------------------------------- pydantic errors → issues


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
            if isinstance(m, type) and issubclass(m, BaseModel) and kind in _kinds(m):
                return m
        return None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


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


def _data_path(data: Any, loc: tuple[Any, ...]) -> PathT:
    """Follow ``loc`` through the data: the path in the file.

    pydantic adds parts that are not in the file: ``[key]`` for dict keys and the tag of a
    discriminated union member (``provider.top.url``); those are dropped from the path.
    """
    path: list[str | int] = []
    cur: Any = data
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(cur, dict) and part not in cur and cur.get("kind") == part:
            continue
        path.append(part)
        cur = _step(cur, part)
    return tuple(path)


def _what(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"the {type(value).__name__} {value}"


def _num(x: Any) -> Any:
    """1.0 → 1 in messages (the bound of a float field is a float)."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


_APPKEYISH = {"appkey", "id", "app_key"}
# keys whose values are secrets: never echoed in a message, never accepted in reconciler.yaml
_SECRET_KEYS = frozenset({"app_secret", "secret", "session", "sessions", "session_key"})
_BOUNDS = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le"),
           "greater_than": ("greater than", "gt"), "less_than": ("less than", "lt")}


def _message(err: Any, doc: Document, path: PathT, model: type[BaseModel] | None) -> tuple[PathT, str, bool]:
    """A user's message for one pydantic error: (path, message, point at the key rather than the value)."""
    kind = err["type"]
    value = err.get("input")
    last = path[-1] if path else ""
    if str(last) in _SECRET_KEYS and kind != "extra_forbidden":
        # a secret (world files hold the app secret and session keys): never echo the value
        return path, "must be a quoted, non-empty string (the value is not shown: it is a secret)", False
    if kind == "extra_forbidden":
        key = str(last)
        if key == "buyer_self_service":
            return path, "buyer_self_service applies to modify_address only", True
        if key == "erp_detail_button":
            return path, "erp_detail_button applies to order_status only", True
        if key in _SECRET_KEYS and model is TopSettings:
            return path, (f"unknown key {key!r}: secrets never go in the configuration; name the environment variable"
                          " (app_secret_env, sessions_env) or the file (app_secret_file, sessions_file) that holds them"), True
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        return path, f"unknown key {key!r}{hint}", True
    if kind == "missing":
        return path, f"missing required key {str(err['loc'][-1])!r}", False
    if kind == "string_type":
        raw = doc.marks.raw.get(path)
        if raw is not None and not isinstance(value, (dict, list)):
            digits = "of digits " if last in _APPKEYISH and isinstance(value, int) and not isinstance(value, bool) else ""
            return path, f"must be a quoted string {digits}({read_as(raw, value)}); write \"{raw}\"", False
        return path, f"expected a string, got {_what(value)}", False
    if kind == "string_pattern_mismatch":
        return path, f"must be a string of digits, got {value!r}", False
    if kind == "bool_type":
        return path, f"expected true or false, got {_what(value)}", False
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return path, f"expected a whole number, got {_what(value)}", False
    if kind in ("float_type", "float_parsing"):
        return path, f"expected a number, got {_what(value)}", False
    if kind in _BOUNDS:
        words, ctx_key = _BOUNDS[kind]
        return path, f"must be {words} {_num(err['ctx'][ctx_key])}, got {_num(value)}", False
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
        tag = str(err["ctx"].get("tag"))
        close = difflib.get_close_matches(tag, tags, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(tags)}"
        return (*path, "kind"), f"unknown kind {tag!r}{hint}", False
    if kind == "union_tag_not_found":
        return path, "missing required key 'kind'", False
    if kind == "value_error":
        return path, str(err["ctx"]["error"]), False
    return path, str(err["msg"]), False


def _validate(doc: Document, model: type[M], issues: list[Issue]) -> M | None:
    try:
        return model.model_validate(doc.data)
    except ValidationError as e:
        for err in e.errors():
            path = _data_path(doc.data, tuple(err["loc"]))
            if any(path[:len(b)] == b for b in doc.marks.bad):
                continue  # the value could not be built: reported already
            if err["type"] == "extra_forbidden" and path in doc.marks.typed_keys:
                continue  # "a key must be a quoted string" says it already
            target = _model_at(model, path[:-1], doc.data) if err["type"] == "extra_forbidden" else None
            path, msg, on_key = _message(err, doc, path, target)
            line, col = doc.marks.at(path, key=on_key)
            issues.append(Issue(doc.file, line, col, path_str(path), msg))
        return None


def _quiet(model: type[M], data: Any) -> M | None:
    """``data`` validated, or None (its errors were reported by the whole file's validation)."""
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _validate_file(doc: Document, model: type[M], expect_key: str | None, issues: list[Issue]) -> M | None:
    if not isinstance(doc.data, dict):
        want = f"a mapping with the key {expect_key!r}" if expect_key else "a mapping"
        got = "an empty file" if doc.data is None and not doc.marks.values else _what(doc.data)
        issues.append(Issue(doc.file, 1, 1, "", f"expected {want}, got {got}"))
        return None
    return _validate(doc, model, issues)


# --------------------------------------------------------------------------- the directory


def _display(config_dir: str, rel: str) -> str:
    return os.path.join(config_dir, rel) if config_dir not in ("", ".") else rel


def _load_file(path: Path, display: str, issues: list[Issue]) -> Document | None:
    """The file's document, or None when it cannot be read or parsed at all. A document with
    issues in some values (duplicate keys, tags) is returned: the rest of it is still checked."""
    doc, found = load(path, display)
    issues.extend(found)
    return doc


def shop_files(root: Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` entry of ``shops/`` except hidden ones (editor lock files).

    Entries that are not readable files (a directory, a dangling link) are returned too, so
    that reading them reports an error instead of their shops silently becoming unmanaged."""
    d = root / SHOPS_DIR
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))


def load_settings(config_dir: str | os.PathLike[str]) -> tuple[Settings, str | None]:
    """Only ``reconciler.yaml`` (for the sandbox commands); raises ConfigError."""
    root = Path(config_dir)
    shown = str(config_dir)
    if not root.is_dir():
        raise ConfigError([_no_dir(root, shown)])
    issues: list[Issue] = []
    settings = _read_settings(root, shown, issues)
    if any(i.severity == "error" for i in issues) or settings is None:
        raise ConfigError(issues)
    return settings, (_display(shown, SETTINGS_FILE) if (root / SETTINGS_FILE).exists() else None)


def _no_dir(root: Path, shown: str) -> Issue:
    if root.exists():
        return Issue(shown, 0, 0, "", "is not a directory; the config directory holds erps.yaml and shops/")
    return Issue(shown, 0, 0, "", "config directory does not exist (set -C/--config-dir or RECONCILER_CONFIG_DIR)")


def _read_settings(root: Path, shown: str, issues: list[Issue]) -> Settings | None:
    p = root / SETTINGS_FILE
    if not p.exists():
        return Settings()
    doc = _load_file(p, _display(shown, SETTINGS_FILE), issues)
    if doc is None:
        return None
    if doc.data is None:
        return Settings()
    return _validate_file(doc, Settings, None, issues)


def load_config(config_dir: str | os.PathLike[str], *, shops: set[str] | None = None) -> Config:
    """Read and validate the whole directory; raise ConfigError with every problem found.

    ``shops`` limits the *result* to those shop ids; the whole directory is still
    validated (a duplicate id in another file is an error either way).
    """
    root = Path(config_dir)
    shown = str(config_dir)
    if not root.is_dir():
        raise ConfigError([_no_dir(root, shown)])
    issues: list[Issue] = []
    with paused_gc():
        settings = _read_settings(root, shown, issues)
        catalog = _read_erps(root, shown, issues)
        desired = _read_shops(root, shown, catalog, issues)
    if any(i.severity == "error" for i in issues):
        raise ConfigError(issues)
    assert settings is not None and catalog is not None
    erps = catalog.specs
    managed_total = sum(len(s.bindings) for s in desired)
    if shops is not None:
        unknown = sorted(shops - {s.id for s in desired})
        if unknown:
            raise ConfigError([Issue(shown, 0, 0, "", f"--shop {s}: no such shop in the configuration") for s in unknown])
        desired = [s for s in desired if s.id in shops]
    warnings = sorted(issues, key=lambda i: (i.file, i.line, i.column))
    return Config(
        dir=root, display_dir=shown, settings=settings, erps=erps, shops=desired, warnings=warnings,
        settings_file=_display(shown, SETTINGS_FILE) if (root / SETTINGS_FILE).exists() else None,
        managed_total=managed_total, selected_by_shop=shops is not None,
    )


def _warn(issues: list[Issue], file: str, mark: tuple[int, int], path: PathT, msg: str) -> None:
    issues.append(Issue(file, mark[0], mark[1], path_str(path), msg, severity="warning"))


def _err(issues: list[Issue], file: str, mark: tuple[int, int], path: PathT, msg: str) -> None:
    issues.append(Issue(file, mark[0], mark[1], path_str(path), msg))


def _check_appkey(issues: list[Issue], doc: Document, path: PathT, appkey: str, scenario: Scenario | None) -> None:
    mark = doc.marks.at(path)
    why = appkey_problem(appkey, scenario)
    if why:
        _err(issues, doc.file, mark, path, why)
    elif appkey != VIRTUAL_APPKEY and len(appkey) != 8:
        _warn(issues, doc.file, mark, path, f"appkey {appkey!r} has {len(appkey)} digits; ERP appkeys are usually 8")


@dataclass(frozen=True)
class _Catalog:
    """The valid ERPs of ``erps.yaml``, and the names declared there with invalid entries
    (their errors are reported once, in erps.yaml, not again at every reference)."""

    specs: dict[str, ErpSpec]
    broken: frozenset[str] = frozenset()


def _read_erps(root: Path, shown: str, issues: list[Issue]) -> _Catalog | None:
    p = root / ERPS_FILE
    display = _display(shown, ERPS_FILE)
    if not p.exists():
        issues.append(Issue(display, 0, 0, "", "missing: the ERP catalog is required (erps: {name: {name: ..., appkey: \"...\"}})"))
        return None
    doc = _load_file(p, display, issues)
    if doc is None:
        return None
    parsed = _validate_file(doc, ErpsFile, "erps", issues)
    if parsed is not None:
        specs = dict(parsed.erps)
        broken: set[str] = set()
    else:
        # Keep checking the shops against the entries that are valid.
        raw = doc.data.get("erps") if isinstance(doc.data, dict) else None
        if not isinstance(raw, dict):
            return None
        specs = {}
        for name, entry in raw.items():
            spec = _quiet(ErpSpec, entry)
            if spec is not None and not _has_bad(doc, ("erps", name)):
                specs[name] = spec
        broken = set(raw) - set(specs)
    for name, spec in specs.items():
        _check_appkey(issues, doc, ("erps", name, "appkey"), spec.appkey, None)
    return _Catalog(specs, frozenset(broken))


def _has_bad(doc: Document, base: PathT) -> bool:
    """Whether a value under ``base`` could not be built (a refused tag): skip its checks."""
    n = len(base)
    return any(p[:n] == base for p in doc.marks.bad)


def _read_shops(root: Path, shown: str, erps: _Catalog | None, issues: list[Issue]) -> list[DesiredShop]:
    files = shop_files(root)
    if not (root / SHOPS_DIR).is_dir():
        issues.append(Issue(_display(shown, SHOPS_DIR), 0, 0, "", "no shops/ directory: no shop is managed", severity="warning"))
    seen: dict[str, str] = {}
    out: list[DesiredShop] = []
    for p in files:
        display = _display(shown, f"{SHOPS_DIR}/{p.name}")
        doc = _load_file(p, display, issues)
        if doc is None:
            continue
        parsed = _validate_file(doc, ShopsFile, "shops", issues)
        if parsed is not None:
            specs: list[ShopSpec | None] = list(parsed.shops)
        else:
            # The file's errors are reported; still check its valid shops against the rest
            # (unknown ERPs, duplicate ids across files), so one run reports everything.
            raw = doc.data.get("shops") if isinstance(doc.data, dict) else None
            if not isinstance(raw, list):
                continue
            specs = [_quiet(ShopSpec, item) for item in raw]
        for i, shop in enumerate(specs):
            base: PathT = ("shops", i)
            sid = shop.id if shop is not None else _raw_id(doc, base)
            if sid is None:  # an invalid id is reported; its references are still checked
                if shop is None and not _has_bad(doc, base):
                    _check_raw_refs(doc, base, erps, issues)
                continue
            if sid in seen:
                _err(issues, doc.file, doc.marks.at((*base, "id")), (*base, "id"),
                     f"duplicate shop id {sid!r} (also at {seen[sid]})")
                continue
            seen[sid] = f"{doc.file}:{doc.marks.at(base)[0]}"
            if shop is None:
                if not _has_bad(doc, base):
                    _check_raw_refs(doc, base, erps, issues)
                continue
            if _has_bad(doc, base):
                continue
            resolved = _resolve_shop(doc, base, shop, erps, issues)
            if resolved is not None:
                out.append(resolved)
    out.sort(key=lambda s: s.id)
    return out


def _virtual_misplaced(erp_name: str, scenario: Scenario) -> str:
    return f"ERP {erp_name!r} is virtualAppKey (Cainiao warehouses), valid for modify_address only, not {scenario.value}"


def _check_raw_refs(doc: Document, base: PathT, erps: _Catalog | None, issues: list[Issue]) -> None:
    """A shop with schema errors: still check the references in it that are well formed
    (ERP names, appkeys, virtualAppKey placement), so one run reports every error."""
    item = doc.data["shops"][base[1]]
    if not isinstance(item, dict):
        return
    shop_erp = item.get("erp")
    shop_ref = _erp_ref(issues, doc, (*base, "erp"), shop_erp, erps) if isinstance(shop_erp, str) else None
    scenarios = item.get("scenarios")
    if not isinstance(scenarios, dict):
        return
    for key, raw in scenarios.items():
        if key not in Scenario.__members__:
            continue
        sc, spec = Scenario(key), raw if isinstance(raw, dict) else {}
        sp: PathT = (*base, "scenarios", key)
        if spec.get("state") == "unbound" or "appkey" in spec:
            if isinstance(spec.get("appkey"), str):
                _check_appkey(issues, doc, (*sp, "appkey"), spec["appkey"], sc)
            continue
        if isinstance(spec.get("erp"), str):
            ref, path, name = _erp_ref(issues, doc, (*sp, "erp"), spec["erp"], erps), (*sp, "erp"), spec["erp"]
        elif "erp" not in spec and shop_ref is not None:
            ref, path, name = shop_ref, (*base, "erp"), str(shop_erp)
        else:
            continue
        if ref is not None and ref.appkey == VIRTUAL_APPKEY and sc is not Scenario.modify_address:
            _err(issues, doc.file, doc.marks.at(path), path, _virtual_misplaced(name, sc))


def _raw_id(doc: Document, base: PathT) -> str | None:
    """The id of a shop that failed validation, when the id itself is valid."""
    item = doc.data["shops"][base[1]]
    sid = item.get("id") if isinstance(item, dict) else None
    return sid if isinstance(sid, str) and SHOP_ID_RE.match(sid) else None


def _erp_ref(issues: list[Issue], doc: Document, path: PathT, name: str, erps: _Catalog | None) -> ErpSpec | None:
    if erps is None or name in erps.broken:
        return None
    spec = erps.specs.get(name)
    if spec is None:
        names = sorted(erps.specs | dict.fromkeys(erps.broken))
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; erps.yaml defines: {', '.join(names) or 'none'}"
        _err(issues, doc.file, doc.marks.at(path), path, f"unknown ERP {name!r}{hint}")
    return spec


def _resolve_shop(doc: Document, base: PathT, shop: ShopSpec, erps: _Catalog | None, issues: list[Issue]) -> DesiredShop | None:
    shop_erp = _erp_ref(issues, doc, (*base, "erp"), shop.erp, erps) if shop.erp is not None else None
    bindings: dict[Scenario, DesiredBinding] = {}
    ok = True
    for scenario, spec in shop.scenarios.declared().items():
        sp: PathT = (*base, "scenarios", scenario.value)
        appkey: str | None
        erp_name: str | None = None
        src_path = sp
        if spec.state == "unbound":
            appkey = None
        elif spec.appkey is not None:
            appkey = spec.appkey
            src_path = (*sp, "appkey")
            _check_appkey(issues, doc, src_path, appkey, scenario)
        elif spec.erp is not None:
            erp_name, src_path = spec.erp, (*sp, "erp")
            ref = _erp_ref(issues, doc, src_path, spec.erp, erps)
            appkey = ref.appkey if ref else None
            if ref is None:
                ok = False
        elif shop.erp is not None:
            erp_name, src_path = shop.erp, (*base, "erp")
            appkey = shop_erp.appkey if shop_erp else None
            if shop_erp is None:
                ok = False
        else:
            _err(issues, doc.file, doc.marks.at(sp, key=True), sp,
                 "no ERP to bind: set erp on the shop or on the scenario, or appkey, or state: unbound")
            ok = False
            continue
        if erp_name is not None and appkey == VIRTUAL_APPKEY and scenario is not Scenario.modify_address:
            _err(issues, doc.file, doc.marks.at(src_path), src_path, _virtual_misplaced(erp_name, scenario))
            ok = False
        extra: dict[str, Any] = {}
        bss = getattr(spec, "buyer_self_service", None)
        if bss is not None:
            if spec.state == "unbound" and bss:
                _err(issues, doc.file, doc.marks.at((*sp, "buyer_self_service")), (*sp, "buyer_self_service"),
                     "buyer self-service needs modify_address bound; it cannot be true with state: unbound")
                ok = False
            extra["buyer_self_service"] = bss
            extra["buyer_self_service_source"] = Source(file=doc.file, line=doc.marks.at((*sp, "buyer_self_service"))[0])
        edb = getattr(spec, "erp_detail_button", None)
        if edb is not None:
            extra["erp_detail_button"] = edb
        line = doc.marks.at(src_path)[0]
        bindings[scenario] = DesiredBinding(
            scenario=scenario, appkey=appkey, erp=erp_name, source=Source(file=doc.file, line=line), **extra
        )
    if not ok:
        return None
    return DesiredShop(
        id=shop.id, name=shop.name, erp=shop.erp, protect=shop.protect,
        source=Source(file=doc.file, line=doc.marks.at(base)[0]),
        bindings={s: bindings[s] for s in SCENARIOS if s in bindings},
    )


def load_document(path: Path, display: str, model: type[M], expect_key: str | None, *,
                  subject: str = "the configuration") -> M:
    """One YAML file validated against ``model``; raise ConfigError with every problem."""
    if not path.exists():
        raise ConfigError([Issue(display, 0, 0, "", "file does not exist")], subject=subject)
    issues: list[Issue] = []
    with paused_gc():
        doc = _load_file(path, display, issues)
        result = _validate_file(doc, model, expect_key, issues) if doc is not None else None
    if result is None or any(i.severity == "error" for i in issues):
        raise ConfigError(issues, subject=subject)
    return result
