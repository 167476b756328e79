"""The configuration directory → validated, resolved desired state.

Reads ``reconciler.yaml`` (optional), ``erps.yaml`` and ``shops/*.yaml``; validates each
file strictly with the spec models (``located`` turns their errors into messages with
``file:line:column``); then checks what spans files (unknown ERP names, duplicate shop
ids, virtualAppKey placement) and resolves every managed scenario to an appkey. Every
problem is collected and raised together as one ``ConfigError``; warnings are returned
with the config.

One run reports everything it can: a file with an invalid shop still has its valid shops
checked against the rest (unknown ERPs, duplicate ids), an invalid shop still has its
well-formed references checked, and an ``erps.yaml`` with an invalid entry still serves
its valid ones; a reference to the invalid entry is not reported a second time.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, Issue
from .located import load_file, valid_or_none, validate_file
from .model import (
    SCENARIOS,
    SHOP_ID_RE,
    VIRTUAL_APPKEY,
    Desired,
    DesiredBinding,
    DesiredShop,
    ErpsFile,
    ErpSpec,
    Scenario,
    ScenarioSpec,
    Settings,
    ShopsFile,
    ShopSpec,
    Source,
    appkey_problem,
    names_by_appkey,
)
from .yamlio import Document, PathT, path_str, paused_gc

SETTINGS_FILE = "reconciler.yaml"
ERPS_FILE = "erps.yaml"
SHOPS_DIR = "shops"


@dataclass
class Config:
    """A validated configuration directory."""

    dir: Path
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

    def desired(self, *, configured: Iterable[str] | None = None) -> Desired:
        """What planning, applying and auditing take from the config (``configured``: every
        shop id of the whole configuration, for drift's unknown shops)."""
        return Desired(shops=self.shops, erp_names=self.erp_names_by_appkey(), safety=self.settings.safety,
                       managed_total=self.managed_total or None, share_of_total=self.selected_by_shop,
                       configured=frozenset(configured) if configured is not None else None)


# --------------------------------------------------------------------------- the directory


def _display(config_dir: str, rel: str) -> str:
    return os.path.join(config_dir, rel) if config_dir not in ("", ".") else rel


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
    doc = load_file(p, _display(shown, SETTINGS_FILE), issues)
    if doc is None:
        return None
    if doc.data is None:
        return Settings()
    return validate_file(doc, Settings, None, issues)


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
        dir=root, settings=settings, erps=erps, shops=desired, warnings=warnings,
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
    doc = load_file(p, display, issues)
    if doc is None:
        return None
    parsed = validate_file(doc, ErpsFile, "erps", issues)
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
            spec = valid_or_none(ErpSpec, entry)
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
        doc = load_file(p, display, issues)
        if doc is None:
            continue
        parsed = validate_file(doc, ShopsFile, "shops", issues)
        if parsed is not None:
            specs: list[ShopSpec | None] = list(parsed.shops)
        else:
            # The file's errors are reported; still check its valid shops against the rest
            # (unknown ERPs, duplicate ids across files), so one run reports everything.
            raw = doc.data.get("shops") if isinstance(doc.data, dict) else None
            if not isinstance(raw, list):
                continue
            specs = [valid_or_none(ShopSpec, item) for item in raw]
        for i, shop in enumerate(specs):
            base: PathT = ("shops", i)
            sid = shop.id if shop is not None else _raw_id(doc, base)
            if sid is not None:  # (an invalid id is reported; the shop's references are still checked)
                if sid in seen:
                    _err(issues, doc.file, doc.marks.at((*base, "id")), (*base, "id"),
                         f"duplicate shop id {sid!r} (also at {seen[sid]})")
                    continue
                seen[sid] = f"{doc.file}:{doc.marks.at(base)[0]}"
            if _has_bad(doc, base):
                continue
            resolved = _resolve_shop(doc, base, shop, erps, issues)
            if resolved is not None:
                out.append(resolved)
    out.sort(key=lambda s: s.id)
    return out


def _raw_id(doc: Document, base: PathT) -> str | None:
    """The id of a shop that failed validation, when the id itself is valid."""
    item = doc.data["shops"][base[1]]
    sid = item.get("id") if isinstance(item, dict) else None
    return sid if isinstance(sid, str) and SHOP_ID_RE.match(sid) else None


@dataclass(frozen=True)
class _Wanted:
    """What one declared scenario of a shop asks for. For a shop with schema errors the values
    are the raw data's and may have any type: only the well-formed ones are checked."""

    scenario: Scenario
    unbound: bool
    appkey: object = None
    erp: object = None
    spec: ScenarioSpec | None = None  # the validated spec; None for a shop with schema errors


def _wanted(doc: Document, base: PathT, shop: ShopSpec | None) -> tuple[object, list[_Wanted]]:
    """The shop's own ERP and what each declared scenario asks for: from the validated spec,
    or from the raw data of a shop with schema errors."""
    if shop is not None:
        return shop.erp, [_Wanted(sc, spec.state == "unbound", spec.appkey, spec.erp, spec)
                          for sc, spec in shop.scenarios.declared().items()]
    item = doc.data["shops"][base[1]]
    if not isinstance(item, dict):
        return None, []
    scenarios = item.get("scenarios")
    wanted: list[_Wanted] = []
    for key, raw in scenarios.items() if isinstance(scenarios, dict) else ():
        if key in Scenario.__members__:
            spec = raw if isinstance(raw, dict) else {}
            wanted.append(_Wanted(Scenario(key), spec.get("state") == "unbound", _given(spec, "appkey"), _given(spec, "erp")))
    return item.get("erp"), wanted


_NULL = object()


def _given(raw: dict[str, Any], key: str) -> object:
    """A raw value, with a key written as null kept apart from an absent one: in a shop with
    schema errors it names its source without a well-formed value, so nothing is checked."""
    value = raw.get(key)
    return _NULL if value is None and key in raw else value


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


def _resolve_shop(doc: Document, base: PathT, shop: ShopSpec | None, erps: _Catalog | None,
                  issues: list[Issue]) -> DesiredShop | None:
    """Resolve and check a shop's references once: ERP names, appkeys, virtualAppKey placement.

    ``shop`` is the validated spec, or None for a shop with schema errors (reported already):
    its well-formed references are still checked, so one run reports every error, but nothing
    is built for it and what only a whole shop can be blamed for (no ERP to bind, buyer
    self-service with state: unbound) is left for after its schema errors are fixed.
    """
    shop_erp, wanted = _wanted(doc, base, shop)
    shop_ref = _erp_ref(issues, doc, (*base, "erp"), shop_erp, erps) if isinstance(shop_erp, str) else None
    bindings: dict[Scenario, DesiredBinding] = {}
    ok = True
    for w in wanted:
        sp: PathT = (*base, "scenarios", w.scenario.value)
        source = _source(doc, base, sp, w, shop_erp, shop_ref, erps, issues, whole=shop is not None)
        binding = _binding(doc, sp, w, *source, issues) if source is not None and w.spec is not None else None
        if binding is None:
            ok = False
        else:
            bindings[w.scenario] = binding
    if not ok or shop is None:
        return None
    return DesiredShop(
        id=shop.id, name=shop.name, erp=shop.erp, protect=shop.protect,
        source=Source(file=doc.file, line=doc.marks.at(base)[0]),
        bindings={s: bindings[s] for s in SCENARIOS if s in bindings},
    )


def _virtual_misplaced(erp_name: str, scenario: Scenario) -> str:
    return f"ERP {erp_name!r} is virtualAppKey (Cainiao warehouses), valid for modify_address only, not {scenario.value}"


def _source(doc: Document, base: PathT, sp: PathT, w: _Wanted, shop_erp: object, shop_ref: ErpSpec | None,
            erps: _Catalog | None, issues: list[Issue], *, whole: bool) -> tuple[str | None, str | None, PathT] | None:
    """One scenario's (appkey, ERP name, the path they come from); None when it cannot be resolved."""
    if w.unbound or w.appkey is not None:
        if not isinstance(w.appkey, str):
            return (None, None, sp) if w.appkey is None else None
        _check_appkey(issues, doc, (*sp, "appkey"), w.appkey, w.scenario)
        return w.appkey, None, (*sp, "appkey")
    if w.erp is not None:
        name, path = w.erp, (*sp, "erp")
        ref = _erp_ref(issues, doc, path, name, erps) if isinstance(name, str) else None
    elif shop_erp is not None:
        name, path, ref = shop_erp, (*base, "erp"), shop_ref
    else:
        if whole:
            _err(issues, doc.file, doc.marks.at(sp, key=True), sp,
                 "no ERP to bind: set erp on the shop or on the scenario, or appkey, or state: unbound")
        return None
    if ref is None or not isinstance(name, str):
        return None
    if ref.appkey == VIRTUAL_APPKEY and w.scenario is not Scenario.modify_address:
        _err(issues, doc.file, doc.marks.at(path), path, _virtual_misplaced(name, w.scenario))
        return None
    return ref.appkey, name, path


def _binding(doc: Document, sp: PathT, w: _Wanted, appkey: str | None, erp_name: str | None, src: PathT,
             issues: list[Issue]) -> DesiredBinding | None:
    """The desired binding of a valid shop's scenario, with its settings; None if they contradict it."""
    assert w.spec is not None
    extra: dict[str, Any] = {}
    bss = getattr(w.spec, "buyer_self_service", None)
    if bss is not None:
        if w.unbound and bss:
            _err(issues, doc.file, doc.marks.at((*sp, "buyer_self_service")), (*sp, "buyer_self_service"),
                 "buyer self-service needs modify_address bound; it cannot be true with state: unbound")
            return None
        extra["buyer_self_service"] = bss
        extra["buyer_self_service_source"] = Source(file=doc.file, line=doc.marks.at((*sp, "buyer_self_service"))[0])
    edb = getattr(w.spec, "erp_detail_button", None)
    if edb is not None:
        extra["erp_detail_button"] = edb
    return DesiredBinding(scenario=w.scenario, appkey=appkey, erp=erp_name,
                          source=Source(file=doc.file, line=doc.marks.at(src)[0]), **extra)
