"""The configuration directory → validated, resolved desired state.

Reads ``reconciler.yaml`` (optional), ``erps.yaml``, ``profiles.yaml`` (optional),
``waivers.yaml`` (optional) and every ``shops/**/*.yaml`` (any folder depth, ``.yaml`` or
``.yml``, hidden files and folders skipped); validates each file strictly with the spec
models (``located`` turns their errors into messages with ``file:line:column``); then
checks what spans files (unknown ERP and profile names, duplicate shop ids, virtualAppKey
placement) and resolves every managed scenario to an appkey (``resolve``). Every problem is
collected and raised together as one ``ConfigError``; warnings are returned with the config.
The ``shops/`` folder and ``profiles.yaml`` are read by ``shopdir``: each shop file from the
parse cache when unchanged (read-only commands), in one pass when plain, else step by step.

Paths in messages are the config directory as given plus the path inside it
(``configs/shops/acme/a.yaml``), whatever symlinks lie behind. Under ``shops/`` only what
stays inside the config directory is read: a symlink that leads out of it is an error, as
is an entry named ``*.yaml`` that is not a regular file (a FIFO, a device): nothing is
silently left unmanaged, and nothing outside the directory is ever read or echoed.

One run reports everything it can: a file with an invalid shop still has its valid shops
checked against the rest (unknown ERPs, duplicate ids), an invalid shop still has its
well-formed references checked, and an ``erps.yaml`` with an invalid entry still serves
its valid ones; a reference to the invalid entry is not reported a second time. An error
in a profile is reported once, in ``profiles.yaml``, naming the shops that use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import clock, plainyaml, settings
from .errors import ConfigError, Issue
from .files import FileError, read_regular
from .located import load_file, valid_or_none, validate_file
from .model import Desired, DesiredShop, Erp, Source, Waiver, binding_count, names_by_appkey
from .parsecache import ShopCache, context_bytes
from .resolve import At, Catalog, check_appkey
from .resolve import Sink as _Sink
from .settings import Settings
from .shopdir import PROFILES_FILE, Again, Profiles, add_error, display_path, has_bad, read_profiles, read_shops
from .shopdir import SHOPS_DIR as SHOPS_DIR  # the CLI's import names the folder
from .yamlio import MAX_FILE, Document, Marks, PathT, paused_gc

if TYPE_CHECKING:
    from .specs import ProfileSpec

SETTINGS_FILE = "reconciler.yaml"
ERPS_FILE = "erps.yaml"
WAIVERS_FILE = "waivers.yaml"
SCHEMAS_DIR = "schemas"             # where `reconciler schema` writes by default (and import's schema line points)
WAIVER_HORIZON = timedelta(days=366)  # a waiver that ends later than this is warned about


@dataclass
class Config:
    """A validated configuration directory."""

    dir: Path
    settings: Settings
    erps: dict[str, Erp]
    shops: list[DesiredShop]
    warnings: list[Issue] = field(default_factory=list)
    settings_file: str | None = None
    # The safety threshold is measured against the whole configuration, not only the shops a
    # --shop, --select or --shard selection leaves (a small selection must not slip under min_managed).
    managed_total: int = 0
    selected_by_shop: bool = False
    profiles: dict[str, ProfileSpec] = field(default_factory=dict)
    waivers: list[Waiver] = field(default_factory=list)
    today: date | None = None   # the day (China time) the waivers were judged on

    def erp_names_by_appkey(self) -> dict[str, str]:
        return names_by_appkey(self.erps)

    def desired(self, *, configured: Iterable[str] | None = None) -> Desired:
        """What planning, applying and auditing take from the config (``configured``: every
        shop id of the whole configuration, for drift's unknown shops)."""
        return Desired(shops=self.shops, erp_names=self.erp_names_by_appkey(), safety=self.settings.safety,
                       managed_total=self.managed_total or None, share_of_total=self.selected_by_shop,
                       configured=frozenset(configured) if configured is not None else None, waivers=self.waivers)


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
    return settings, (display_path(shown, SETTINGS_FILE) if (root / SETTINGS_FILE).exists() else None)


def _no_dir(root: Path, shown: str) -> Issue:
    if root.exists():
        return Issue(shown, 0, 0, "", "is not a directory; the config directory holds erps.yaml and shops/")
    return Issue(shown, 0, 0, "", "config directory does not exist (set -C/--config-dir or RECONCILER_CONFIG_DIR)")


def _plain_data(path: Path) -> dict[str, Any] | None:
    """A small file's mapping in a plain form, read without PyYAML (``plainyaml``), or None:
    then it is read as YAML, which says what is wrong with it, where."""
    try:
        text = read_regular(path, what="file", limit=MAX_FILE).decode("utf-8")
    except (FileError, UnicodeDecodeError):
        return None
    return plainyaml.mapping(text)


def _read_settings(root: Path, shown: str, issues: list[Issue]) -> Settings | None:
    p = root / SETTINGS_FILE
    if not p.exists() and not p.is_symlink():
        return Settings()
    data = _plain_data(p)
    plain = settings.plain(data) if data is not None else None
    if plain is not None:
        return plain
    start = len(issues)
    doc = load_file(p, display_path(shown, SETTINGS_FILE), issues)
    if doc is None:
        return None
    if doc.data is None:
        return Settings()
    plain = settings.plain(doc.data) if len(issues) == start else None
    if plain is not None:
        return plain
    from . import specs

    spec = validate_file(doc, specs.Settings, None, issues)
    return settings.from_spec(spec) if spec is not None else None


def load_config(config_dir: str | os.PathLike[str], *, shops: set[str] | None = None, today: date | None = None,
                cache: bool = False, background: bool = False) -> Config:
    """Read and validate the whole directory; raise ConfigError with every problem found.

    ``shops`` limits the *result* to those shop ids; the whole directory is still
    validated (a duplicate id in another file is an error either way). ``today`` (China
    time; default ``clock.today()``) is the day waivers are judged on. ``cache``: take the
    results of unchanged shop files from the parse cache, and keep this run's there
    (``parsecache``; the result is the same either way), written in a forked child with
    ``background`` (``parsecache.finish()`` waits for it).
    """
    root = Path(config_dir)
    shown = str(config_dir)
    if not root.is_dir():
        raise ConfigError([_no_dir(root, shown)])
    day = today or clock.today()
    store = ShopCache.open(root, [context_bytes(root / ERPS_FILE), context_bytes(root / PROFILES_FILE)], shown) \
        if cache else None
    with paused_gc():
        try:
            settings, catalog, profiles, desired, seen, issues = _read_all(root, shown, store)
        except Again:
            assert store is not None
            store = store.emptied()
            settings, catalog, profiles, desired, seen, issues = _read_all(root, shown, store)
        if store is not None:
            store.save(background=background)
        if profiles is not None:
            issues += profiles.said()
        waivers = _read_waivers(root, shown, seen, day, issues)
    if any(i.severity == "error" for i in issues):
        raise ConfigError(issues)
    assert settings is not None and catalog is not None
    erps = catalog.specs
    managed_total = sum(map(binding_count, desired))
    if shops is not None:
        unknown = sorted(shops - {s.id for s in desired})
        if unknown:
            raise ConfigError([Issue(shown, 0, 0, "", f"--shop {s}: no such shop in the configuration") for s in unknown])
        desired = [s for s in desired if s.id in shops]
    warnings = sorted(issues, key=lambda i: (i.file, i.line, i.column))
    return Config(
        dir=root, settings=settings, erps=erps, shops=desired, warnings=warnings,
        settings_file=display_path(shown, SETTINGS_FILE) if (root / SETTINGS_FILE).exists() else None,
        managed_total=managed_total, selected_by_shop=shops is not None,
        profiles={n: p.spec for n, p in profiles.by_name.items() if p.spec is not None} if profiles else {},
        waivers=waivers, today=day,
    )


def _read_all(root: Path, shown: str, cache: ShopCache | None) -> tuple[
        Settings | None, Catalog | None, Profiles | None, list[DesiredShop], set[str], list[Issue]]:
    issues: list[Issue] = []
    settings = _read_settings(root, shown, issues)
    catalog = _read_erps(root, shown, issues)
    profiles = read_profiles(root, shown, catalog)
    desired, seen = read_shops(root, shown, catalog, profiles, issues, cache)
    return settings, catalog, profiles, desired, seen, issues


def _read_erps(root: Path, shown: str, issues: list[Issue]) -> Catalog | None:
    p = root / ERPS_FILE
    display = display_path(shown, ERPS_FILE)
    if not p.exists() and not p.is_symlink():
        issues.append(Issue(display, 0, 0, "", "missing: the ERP catalog is required (erps: {name: {name: ..., appkey: \"...\"}})"))
        return None
    data = _plain_data(p)
    erps = _plain_erps(data) if data is not None else None
    if erps is not None:
        quiet: list[Issue] = []   # nothing to say about the appkeys: no marks needed (else read as YAML, for them)
        probe = _Sink(quiet)
        for name, erp in erps.items():
            check_appkey(probe, At(Document(display, data, Marks()), ("erps", name, "appkey")), erp.appkey, None)
        if not quiet:
            return Catalog(erps, frozenset())
    start = len(issues)
    doc = load_file(p, display, issues)
    if doc is None:
        return None
    broken: set[str] = set()
    erps = _plain_erps(doc.data) if len(issues) == start else None
    if erps is None:
        from .specs import ErpsFile, ErpSpec

        parsed = validate_file(doc, ErpsFile, "erps", issues)
        if parsed is not None:
            erps = {name: Erp(e.name, e.appkey) for name, e in parsed.erps.items()}
        else:
            # Keep checking the shops against the entries that are valid.
            raw = doc.data.get("erps") if isinstance(doc.data, dict) else None
            if not isinstance(raw, dict):
                return None
            erps = {}
            for name, entry in raw.items():
                spec = valid_or_none(ErpSpec, entry)
                if spec is not None and not has_bad(doc, ("erps", name)):
                    erps[name] = Erp(spec.name, spec.appkey)
            broken = set(raw) - set(erps)
    sink = _Sink(issues)
    for name, erp in erps.items():
        check_appkey(sink, At(doc, ("erps", name, "appkey")), erp.appkey, None)
    return Catalog(erps, frozenset(broken))


def _plain_erps(data: Any) -> dict[str, Erp] | None:
    """The catalog of an ``erps.yaml`` that is plainly valid — ``erps:`` and under it names,
    each with a string ``appkey`` and a string (or null) ``name``, nothing else — without
    pydantic; None for anything else (``specs.ErpsFile`` says what is wrong). What
    ``ErpsFile`` validates to, entry for entry (tests/test_plain_readers.py)."""
    erps = data.get("erps") if type(data) is dict and len(data) == 1 else None
    if type(erps) is not dict:
        return None
    out: dict[str, Erp] = {}
    for name, entry in erps.items():
        if type(name) is not str or type(entry) is not dict or not entry.keys() <= _ERP_KEYS:
            return None
        appkey, shown = entry.get("appkey"), entry.get("name")
        if type(appkey) is not str or (shown is not None and type(shown) is not str):
            return None
        out[name] = Erp(shown, appkey)
    return out


_ERP_KEYS = frozenset({"name", "appkey"})


# --------------------------------------------------------------------------- waivers


def _read_waivers(root: Path, shown: str, shop_ids: set[str], today: date, issues: list[Issue]) -> list[Waiver]:
    """The waivers, with their checks that need no platform: required keys (a reason and an
    end date), kinds that may be waived, no two for one problem; warnings for a waiver of a
    shop the configuration does not declare, one that has ended, one that ends in over a year."""
    p = root / WAIVERS_FILE
    if not p.exists() and not p.is_symlink():
        return []
    doc = load_file(p, display_path(shown, WAIVERS_FILE), issues)
    if doc is None:
        return []
    from .specs import WaiversFile

    parsed = validate_file(doc, WaiversFile, "waivers", issues)
    if parsed is None:
        return []
    out: list[Waiver] = []
    first: dict[tuple[str, str | None, str], str] = {}
    for i, w in enumerate(parsed.waivers):
        base: PathT = ("waivers", i)
        line = doc.marks.at(base)[0]
        waiver = Waiver(shop=w.shop, scenario=w.scenario, kind=w.kind, until=w.until, reason=w.reason.strip(),
                        source=Source(file=doc.file, line=line))
        key = (w.shop, w.scenario.value if w.scenario else None, w.kind)
        if key in first:
            add_error(issues, doc, base, f"a second waiver for shop {w.shop} {key[1] or '(any scenario)'} {w.kind}"
                                    f" (also at {first[key]}): keep one, with one end date and one reason")
            continue
        first[key] = f"{doc.file}:{line}"
        if w.shop not in shop_ids:
            add_error(issues, doc, (*base, "shop"), f"shop {w.shop} is not declared in the configuration: this waiver matches"
                                               " nothing", severity="warning")
        if w.until < today:
            add_error(issues, doc, (*base, "until"), f"ended on {w.until.isoformat()} (China time): the problem it waived"
                                                " counts again; fix it, or extend the waiver with a new reason",
                 severity="warning")
        elif w.until - today > WAIVER_HORIZON:
            add_error(issues, doc, (*base, "until"), f"ends on {w.until.isoformat()}, more than a year from now: a waiver"
                                                " is meant to end; review it within a year", severity="warning")
        out.append(waiver)
    return out


def labels_in_use(shops: Iterable[DesiredShop]) -> Mapping[str, Mapping[str, int]]:
    """label key → value → how many shops carry it (for messages about selections)."""
    out: dict[str, dict[str, int]] = {}
    for s in shops:
        for k, v in s.labels.items():
            out.setdefault(k, {}).setdefault(v, 0)
            out[k][v] += 1
    return out
