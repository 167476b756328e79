"""The configuration directory → validated, resolved desired state.

Reads ``reconciler.yaml`` (optional), ``erps.yaml`` and ``shops/*.yaml``; validates each
file strictly with the spec models; then checks what spans files (unknown ERP names,
duplicate shop ids, virtualAppKey placement) and resolves every managed scenario to an
appkey. Every problem is collected with ``file:line:column`` and key path, and raised
together as one ``ConfigError``; warnings are returned with the config.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigError, Issue
from .model import (
    SCENARIOS,
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
    appkey_problem,
)
from .yamlio import Document, PathT, load, path_str, paused_gc

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

    def erp_names_by_appkey(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in sorted(self.erps):
            out.setdefault(self.erps[name].appkey, name)
        return out

    def resolve(self, relative: str) -> Path:
        """A path from the settings, relative to the config dir."""
        p = Path(relative)
        return p if p.is_absolute() else self.dir / p


# --------------------------------------------------------------------------- pydantic errors → issues


def _unwrap(tp: Any) -> Any:
    """The model (or container) type inside Optional/Annotated/Union."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None):
                u = _unwrap(arg)
                if isinstance(u, type) and issubclass(u, BaseModel):
                    return u
        return tp
    return tp


def _model_at(root: type[BaseModel], loc: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The spec model that validates the mapping at ``loc`` (for 'did you mean')."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            f = tp.model_fields.get(str(part))
            if f is None:
                # a discriminated union member name: pick that member
                continue
            tp = f.annotation
            continue
        origin = typing.get_origin(tp)
        if origin in (list, dict):
            tp = typing.get_args(tp)[-1]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
            match = [m for m in members if getattr(m.model_fields.get("kind"), "default", None) == part]
            tp = match[0] if match else tp
            continue
        return None
    tp = _unwrap(tp)
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        # discriminated union at the end (provider): pick by the data's kind
        kind = data.get("kind") if isinstance(data, dict) else None
        for m in typing.get_args(tp):
            if isinstance(m, type) and issubclass(m, BaseModel) and getattr(m.model_fields.get("kind"), "default", None) == kind:
                return m
        return None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[PathT, list[Any]]:
    """Follow ``loc`` through the data: the path in the file, and the loc for the model walk.

    pydantic adds parts that are not in the file: ``[key]`` for dict keys and the tag of a
    discriminated union member (``provider.top.url``); those are dropped from the path.
    """
    path: list[str | int] = []
    kept: list[Any] = []
    cur: Any = data
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(cur, dict) and part not in cur and cur.get("kind") == part:
            kept.append(part)
            continue
        path.append(part)
        kept.append(part)
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            cur = None
    return tuple(path), kept


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
    return f"{type(value).__name__} {value!r}"


_APPKEYISH = {"appkey", "id", "app_key"}


def _message(err: Any, doc: Document, path: PathT, model: type[BaseModel] | None) -> tuple[str, bool]:
    """A user's message for one pydantic error; bool: point at the key rather than the value."""
    kind = err["type"]
    value = err.get("input")
    last = path[-1] if path else ""
    if kind == "extra_forbidden":
        key = str(last)
        if key == "buyer_self_service":
            return "buyer_self_service applies to modify_address only", True
        if key == "erp_detail_button":
            return "erp_detail_button applies to order_status only", True
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        return f"unknown key {key!r}{hint}", True
    if kind == "missing":
        return f"missing required key {str(err['loc'][-1])!r}", False
    if kind == "string_type":
        raw = doc.marks.raw.get(path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = raw if raw is not None else str(value)
            digits = "of digits " if last in _APPKEYISH else ""
            note = f"YAML read {shown} as the number {value}" if raw is not None and raw != str(value) else f"YAML read {shown} as a number"
            return f"must be a quoted string {digits}({note}); write \"{shown}\"", False
        return f"expected a string, got {_what(value)}", False
    if kind == "string_pattern_mismatch":
        return f"must be a string of digits, got {value!r}", False
    if kind == "bool_type":
        return f"expected true or false, got {_what(value)}", False
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_what(value)}", False
    if kind == "list_type":
        return f"expected a list, got {_what(value)}", False
    if kind == "enum":
        return f"expected one of {err['ctx']['expected']}, got {value!r}", False
    if kind == "literal_error":
        return f"expected {err['ctx']['expected']}, got {value!r}", False
    if kind == "union_tag_invalid":
        return f"unknown kind {err['ctx'].get('tag')!r}; expected {err['ctx'].get('expected_tags')}", False
    if kind == "union_tag_not_found":
        return "missing required key 'kind'", False
    if kind == "value_error":
        return str(err["ctx"]["error"]), False
    return str(err["msg"]), False


def _validate(doc: Document, model: type[M], issues: list[Issue]) -> M | None:
    try:
        return model.model_validate(doc.data)
    except ValidationError as e:
        for err in e.errors():
            path, kept = _data_path(doc.data, tuple(err["loc"]))
            parent_loc = tuple(kept[:-1]) if err["type"] == "extra_forbidden" else tuple(kept)
            parent = doc.data
            for p in path[:-1] if err["type"] == "extra_forbidden" else path:
                if isinstance(parent, dict):
                    parent = parent.get(p)
                elif isinstance(parent, list) and isinstance(p, int) and 0 <= p < len(parent):
                    parent = parent[p]
                else:
                    parent = None
            target = _model_at(model, parent_loc, parent)
            msg, on_key = _message(err, doc, path, target)
            line, col = doc.marks.at(path, key=on_key)
            issues.append(Issue(doc.file, line, col, path_str(path), msg))
        return None


def _validate_file(doc: Document, model: type[M], expect_key: str | None, issues: list[Issue]) -> M | None:
    if not isinstance(doc.data, dict):
        want = f"a mapping with the key {expect_key!r}" if expect_key else "a mapping"
        issues.append(Issue(doc.file, 1, 1, "", f"expected {want}, got {_what(doc.data)}"))
        return None
    return _validate(doc, model, issues)


# --------------------------------------------------------------------------- the directory


def _display(config_dir: str, rel: str) -> str:
    return os.path.join(config_dir, rel) if config_dir not in ("", ".") else rel


def _load_file(path: Path, display: str, issues: list[Issue]) -> Document | None:
    doc, found = load(path, display)
    issues.extend(found)
    if doc is not None and any(i.file == display and i.severity == "error" for i in found):
        return None
    return doc


def shop_files(root: Path) -> list[Path]:
    d = root / SHOPS_DIR
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_settings(config_dir: str | os.PathLike[str]) -> tuple[Settings, str | None]:
    """Only ``reconciler.yaml`` (for the sandbox commands); raises ConfigError."""
    root = Path(config_dir)
    shown = str(config_dir)
    if not root.is_dir():
        raise ConfigError([Issue(shown, 0, 0, "", "config directory does not exist")])
    issues: list[Issue] = []
    settings = _read_settings(root, shown, issues)
    if any(i.severity == "error" for i in issues) or settings is None:
        raise ConfigError(issues)
    return settings, (_display(shown, SETTINGS_FILE) if (root / SETTINGS_FILE).exists() else None)


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
    if not root.exists():
        raise ConfigError([Issue(shown, 0, 0, "", "config directory does not exist (set -C/--config-dir or RECONCILER_CONFIG_DIR)")])
    if not root.is_dir():
        raise ConfigError([Issue(shown, 0, 0, "", "is not a directory")])
    issues: list[Issue] = []
    with paused_gc():
        settings = _read_settings(root, shown, issues)
        erps = _read_erps(root, shown, issues)
        desired = _read_shops(root, shown, erps, issues)
    if any(i.severity == "error" for i in issues):
        raise ConfigError(issues)
    assert settings is not None and erps is not None
    if shops is not None:
        unknown = sorted(shops - {s.id for s in desired})
        if unknown:
            raise ConfigError([Issue(shown, 0, 0, "", f"--shop {s}: no such shop in the configuration") for s in unknown])
        desired = [s for s in desired if s.id in shops]
    warnings = sorted(issues, key=lambda i: (i.file, i.line, i.column))
    return Config(
        dir=root, display_dir=shown, settings=settings, erps=erps, shops=desired, warnings=warnings,
        settings_file=_display(shown, SETTINGS_FILE) if (root / SETTINGS_FILE).exists() else None,
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


def _read_erps(root: Path, shown: str, issues: list[Issue]) -> dict[str, ErpSpec] | None:
    p = root / ERPS_FILE
    display = _display(shown, ERPS_FILE)
    if not p.exists():
        issues.append(Issue(display, 0, 0, "", "missing: the ERP catalog is required (erps: {name: {name: ..., appkey: \"...\"}})"))
        return None
    doc = _load_file(p, display, issues)
    if doc is None:
        return None
    parsed = _validate_file(doc, ErpsFile, "erps", issues)
    if parsed is None:
        return None
    for name, spec in parsed.erps.items():
        _check_appkey(issues, doc, ("erps", name, "appkey"), spec.appkey, None)
    return dict(parsed.erps)


def _read_shops(root: Path, shown: str, erps: dict[str, ErpSpec] | None, issues: list[Issue]) -> list[DesiredShop]:
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
        if parsed is None:
            continue
        for i, shop in enumerate(parsed.shops):
            base: PathT = ("shops", i)
            line = doc.marks.at(base)
            if shop.id in seen:
                _err(issues, doc.file, doc.marks.at((*base, "id")), (*base, "id"),
                     f"duplicate shop id {shop.id!r} (also at {seen[shop.id]})")
                continue
            seen[shop.id] = f"{doc.file}:{line[0]}"
            resolved = _resolve_shop(doc, base, shop, erps, issues)
            if resolved is not None:
                out.append(resolved)
    out.sort(key=lambda s: s.id)
    return out


def _erp_ref(issues: list[Issue], doc: Document, path: PathT, name: str, erps: dict[str, ErpSpec] | None) -> ErpSpec | None:
    if erps is None:
        return None
    spec = erps.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, sorted(erps), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; erps.yaml defines: {', '.join(sorted(erps)) or 'none'}"
        _err(issues, doc.file, doc.marks.at(path), path, f"unknown ERP {name!r}{hint}")
    return spec


def _resolve_shop(doc: Document, base: PathT, shop: ShopSpec, erps: dict[str, ErpSpec] | None, issues: list[Issue]) -> DesiredShop | None:
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
        if appkey is not None and appkey == VIRTUAL_APPKEY and scenario is not Scenario.modify_address:
            _err(issues, doc.file, doc.marks.at(src_path), src_path,
                 f"virtualAppKey (ERP {erp_name!r}) is only valid for modify_address, not {scenario.value}" if erp_name
                 else f"virtualAppKey is only valid for modify_address, not {scenario.value}")
            ok = False
        extra: dict[str, Any] = {}
        bss = getattr(spec, "buyer_self_service", None)
        if bss is not None:
            if spec.state == "unbound" and bss:
                _err(issues, doc.file, doc.marks.at((*sp, "buyer_self_service")), (*sp, "buyer_self_service"),
                     "buyer self-service needs modify_address bound; it cannot be true with state: unbound")
                ok = False
            extra["buyer_self_service"] = bss
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


def load_document(path: Path, display: str, model: type[M], expect_key: str | None) -> M:
    """One YAML file validated against ``model``; raise ConfigError with every problem."""
    if not path.exists():
        raise ConfigError([Issue(display, 0, 0, "", "file does not exist")])
    issues: list[Issue] = []
    with paused_gc():
        doc = _load_file(path, display, issues)
        result = _validate_file(doc, model, expect_key, issues) if doc is not None else None
    if result is None or any(i.severity == "error" for i in issues):
        raise ConfigError(issues)
    return result
