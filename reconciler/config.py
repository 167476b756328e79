"""The configuration directory → validated, resolved desired state.

Reads ``reconciler.yaml`` (optional), ``erps.yaml``, ``profiles.yaml`` (optional),
``waivers.yaml`` (optional) and every ``shops/**/*.yaml`` (any folder depth, ``.yaml`` or
``.yml``, hidden files and folders skipped); validates each file strictly with the spec
models (``located`` turns their errors into messages with ``file:line:column``); then
checks what spans files (unknown ERP and profile names, duplicate shop ids, virtualAppKey
placement) and resolves every managed scenario to an appkey (``resolve``). Every problem is
collected and raised together as one ``ConfigError``; warnings are returned with the config.

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

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from . import clock, fastpath
from .errors import ConfigError, Issue
from .located import load_file, valid_or_none, validate_file
from .model import (
    Desired,
    DesiredShop,
    ErpsFile,
    ErpSpec,
    ProfilesFile,
    ProfileSpec,
    Settings,
    ShopsFile,
    ShopSpec,
    Source,
    Waiver,
    WaiversFile,
    names_by_appkey,
)
from .parsecache import Corrupt, FileResult, ShopCache, context_bytes, digest
from .resolve import At, Catalog, Profile, check_appkey, check_profile, raw_id, resolve_shop
from .resolve import Sink as _Sink
from .yamlio import Document, PathT, compose, document, path_str, paused_gc, read

SETTINGS_FILE = "reconciler.yaml"
ERPS_FILE = "erps.yaml"
PROFILES_FILE = "profiles.yaml"
WAIVERS_FILE = "waivers.yaml"
SHOPS_DIR = "shops"
SCHEMAS_DIR = "schemas"             # where `reconciler schema` writes by default (and import's schema line points)
SHOP_SUFFIXES = (".yaml", ".yml")   # compared case-insensitively: x.YAML is a shop file too
USERS_SHOWN = 10                    # shops named after an error in a profile (then: "and N more")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")
WAIVER_HORIZON = timedelta(days=366)  # a waiver that ends later than this is warned about


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


# --------------------------------------------------------------------------- the directory


def _display(config_dir: str, rel: str) -> str:
    return os.path.join(config_dir, rel) if config_dir not in ("", ".") else rel


def is_shop_file(name: str) -> bool:
    return name.lower().endswith(SHOP_SUFFIXES) and not name.startswith(".")


@dataclass(frozen=True)
class ShopFile:
    path: Path     # as reached through the config dir (symlinks unresolved)
    rel: str       # relative to the config dir, with /: shops/acme/a.yaml


def shop_files(root: Path, shown: str = "") -> tuple[list[ShopFile], list[Issue]]:
    """Every shop file under ``shops/``, at any depth, in path order; and the entries that
    cannot be read as one (each an error naming its path): a symlink out of the config
    directory, a dangling one named like a shop file, a folder that cannot be listed, a
    symlink loop. Hidden files and folders (editor lock files, ``.git``) are skipped; an
    entry named ``*.yaml`` that is not a regular file is returned, so that reading it says why."""
    top = root / SHOPS_DIR
    files: list[ShopFile] = []
    issues: list[Issue] = []
    try:
        inside = root.resolve(strict=True)
    except (OSError, RuntimeError):
        return files, issues

    def problem(rel: str, message: str) -> None:
        issues.append(Issue(_display(shown, rel), 0, 0, "", message))

    def outside(path: Path, rel: str) -> Path | None:
        """The real folder/file a path leads to, or None (reported) when it leaves the config dir."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError) as e:  # dangling, or a loop
            if isinstance(e, RuntimeError) or getattr(e, "errno", None) == 40:
                problem(rel, "cannot read: a symbolic link loop")
            elif path.is_symlink() and is_shop_file(path.name):
                problem(rel, "cannot read: No such file or directory (a symbolic link to nothing)")
            return None
        if not real.is_relative_to(inside):
            problem(rel, "a symbolic link that leads out of the config directory: not read"
                         " (files under shops/ must be inside the config directory)")
            return None
        return real

    seen: set[Path] = set()

    def visit(folder: Path, rel: str) -> None:
        real = outside(folder, rel)
        if real is None:
            return
        if real in seen:
            problem(rel, "a symbolic link to a folder already read (a loop): not read again")
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            problem(rel, f"cannot read the folder: {e.strerror}")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            erel = f"{rel}/{entry.name}"
            path = Path(entry.path)
            try:
                link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError as e:
                problem(erel, f"cannot read: {e.strerror}")
                continue
            if link:
                target = outside(path, erel)
                if target is None:
                    continue
                if target.is_dir():
                    visit(path, erel)
                elif is_shop_file(entry.name):
                    files.append(ShopFile(path, erel))
            elif is_dir:
                visit(path, erel)
            elif is_shop_file(entry.name):
                files.append(ShopFile(path, erel))

    if top.is_dir():
        visit(top, SHOPS_DIR)
    files.sort(key=lambda f: f.rel)
    return files, issues


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
    if not p.exists() and not p.is_symlink():
        return Settings()
    doc = load_file(p, _display(shown, SETTINGS_FILE), issues)
    if doc is None:
        return None
    if doc.data is None:
        return Settings()
    return validate_file(doc, Settings, None, issues)


def load_config(config_dir: str | os.PathLike[str], *, shops: set[str] | None = None, today: date | None = None,
                cache: bool = False) -> Config:
    """Read and validate the whole directory; raise ConfigError with every problem found.

    ``shops`` limits the *result* to those shop ids; the whole directory is still
    validated (a duplicate id in another file is an error either way). ``today`` (China
    time; default ``clock.today()``) is the day waivers are judged on. ``cache``: take the
    results of unchanged shop files from the parse cache, and keep this run's there
    (``parsecache``; the result is the same either way).
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
        except _Again:
            assert store is not None
            store = store.emptied()
            settings, catalog, profiles, desired, seen, issues = _read_all(root, shown, store)
        if store is not None:
            store.save()
        if profiles is not None:
            issues += profiles.said()
        waivers = _read_waivers(root, shown, seen, day, issues)
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
        profiles={n: p.spec for n, p in profiles.by_name.items() if p.spec is not None} if profiles else {},
        waivers=waivers, today=day,
    )


def _read_all(root: Path, shown: str, cache: ShopCache | None) -> tuple[
        Settings | None, Catalog | None, _Profiles | None, list[DesiredShop], set[str], list[Issue]]:
    issues: list[Issue] = []
    settings = _read_settings(root, shown, issues)
    catalog = _read_erps(root, shown, issues)
    profiles = _read_profiles(root, shown, catalog)
    desired, seen = _read_shops(root, shown, catalog, profiles, issues, cache)
    return settings, catalog, profiles, desired, seen, issues


def _err(issues: list[Issue], doc: Document, path: PathT, msg: str, *, severity: str = "error") -> None:
    line, col = doc.marks.at(path)
    issues.append(Issue(doc.file, line, col, path_str(path), msg, severity=severity))


def _read_erps(root: Path, shown: str, issues: list[Issue]) -> Catalog | None:
    p = root / ERPS_FILE
    display = _display(shown, ERPS_FILE)
    if not p.exists() and not p.is_symlink():
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
    sink = _Sink(issues)
    for name, spec in specs.items():
        check_appkey(sink, At(doc, ("erps", name, "appkey")), spec.appkey, None)
    return Catalog(specs, frozenset(broken))


def _has_bad(doc: Document, base: PathT) -> bool:
    """Whether a value under ``base`` could not be built (a refused tag): skip its checks."""
    n = len(base)
    return any(p[:n] == base for p in doc.marks.bad)


# --------------------------------------------------------------------------- profiles


@dataclass
class _Profiles:
    """``profiles.yaml``: its profiles, the issues found in it (said once, at the end, with
    the shops that use each profile) and those users."""

    doc: Document | None
    by_name: dict[str, Profile]
    issues: list[Issue]
    users: dict[str, list[str]] = field(default_factory=dict)   # profile → "100001 at shops/a.yaml:2"

    def said(self) -> list[Issue]:
        """Every issue of profiles.yaml, each naming the shops that use the profile it is in;
        a warning for each valid profile no shop uses."""
        prefixes = sorted(((path_str(("profiles", n)), n) for n in self.by_name), key=lambda x: -len(x[0]))
        out: list[Issue] = []
        for i in self.issues:
            name = next((n for pre, n in prefixes if i.path == pre or i.path.startswith((pre + ".", pre + "["))), None)
            out.append(i if name is None else Issue(i.file, i.line, i.column, i.path, i.message + self._used_by(name),
                                                    severity=i.severity))
        for name, p in sorted(self.by_name.items()):
            if p.spec is not None and not self.users.get(name):
                line, col = p.at.doc.marks.at(p.at.path, key=True)
                out.append(Issue(p.at.doc.file, line, col, path_str(p.at.path),
                                 f"profile {name!r} is used by no shop", severity="warning"))
        return out

    def _used_by(self, name: str) -> str:
        users = self.users.get(name, [])
        if not users:
            return " (no shop uses this profile)"
        more = f" and {len(users) - USERS_SHOWN} more" if len(users) > USERS_SHOWN else ""
        return f" (used by {plural(len(users), 'shop')}: {', '.join(users[:USERS_SHOWN])}{more})"


def _read_profiles(root: Path, shown: str, catalog: Catalog | None) -> _Profiles | None:
    p = root / PROFILES_FILE
    if not p.exists() and not p.is_symlink():
        return None
    issues: list[Issue] = []
    doc = load_file(p, _display(shown, PROFILES_FILE), issues)
    if doc is None:
        return _Profiles(None, {}, issues)
    parsed = validate_file(doc, ProfilesFile, "profiles", issues)
    raw = doc.data.get("profiles") if isinstance(doc.data, dict) else None
    by_name: dict[str, Profile] = {}
    if not isinstance(raw, dict):
        return _Profiles(doc, by_name, issues)
    for name in raw:
        at = At(doc, ("profiles", name))
        if parsed is not None:
            spec: ProfileSpec | None = parsed.profiles[name]
        else:
            spec = None if _has_bad(doc, at.path) else valid_or_none(ProfileSpec, raw[name])
        by_name[name] = Profile(name, spec, at)
        if not _has_bad(doc, at.path):
            check_profile(by_name[name], catalog, issues)
    return _Profiles(doc, by_name, issues)


# --------------------------------------------------------------------------- shops


class _Again(Exception):
    """The cached results disagree with the rest (a duplicate id), or one is corrupt: read everything."""


def _read_shops(root: Path, shown: str, erps: Catalog | None, profiles: _Profiles | None,
                issues: list[Issue], cache: ShopCache | None = None) -> tuple[list[DesiredShop], set[str]]:
    """The resolved shops, and every valid shop id declared (valid shops or not). With a
    ``cache``, a file whose bytes it knows is not parsed: its result is taken from the cache
    (raises ``_Again`` when that cannot be trusted)."""
    top = root / SHOPS_DIR
    if not top.is_dir():
        if top.exists() or top.is_symlink():
            issues.append(Issue(_display(shown, SHOPS_DIR), 0, 0, "",
                                "is not a folder: shops are declared in YAML files inside a shops/ folder"))
        else:
            issues.append(Issue(_display(shown, SHOPS_DIR), 0, 0, "", "no shops/ directory: no shop is managed",
                                severity="warning"))
    files, found = shop_files(root, shown)
    issues += found
    seen: dict[str, str] = {}
    out: list[DesiredShop] = []
    for f in files:
        raw, found = read(f.path, _display(shown, f.rel))
        if raw is None:
            issues += found
            continue
        sha = digest(raw) if cache is not None else ""
        try:
            hit = cache.get(f.rel, sha) if cache is not None else None
        except Corrupt:
            raise _Again from None
        if hit is not None:
            for sid, where in hit.seen:
                if sid in seen:
                    raise _Again  # the uncached read says which and where
                seen[sid] = where
            if profiles is not None:
                for name, user in hit.users:
                    profiles.users.setdefault(name, []).append(user)
            issues += hit.warnings
            out += hit.shops
            continue
        start = len(issues)
        result = _read_shop_file(raw, _display(shown, f.rel), erps, profiles, seen, issues)
        if cache is not None and result is not None and not any(i.severity == "error" for i in issues[start:]):
            cache.put(f.rel, sha, dataclasses.replace(result, warnings=issues[start:]))
        if result is not None:
            out += result.shops
    out.sort(key=lambda s: s.id)
    return out, set(seen)


def _read_shop_file(raw: bytes, display: str, erps: Catalog | None, profiles: _Profiles | None,
                    seen: dict[str, str], issues: list[Issue]) -> FileResult | None:
    """One shop file's resolved shops and what the checks across files need (its warnings are
    added by the caller); None when it cannot be read as YAML at all."""
    composed, found = compose(raw, display)
    issues += found
    if composed is None:
        return None
    if erps is not None and not erps.broken:
        plain = fastpath.shops(composed.node, display, erps.specs)
        if plain is not None and not any(s.id in seen for s in plain):  # (a duplicate: said by the step-by-step path)
            for s in plain:
                seen[s.id] = f"{display}:{s.source.line}"
            return FileResult(plain, [(s.id, seen[s.id]) for s in plain], [], [])
    doc, found = document(composed, display)
    issues += found
    by_name = profiles.by_name if profiles is not None else None
    unreadable = profiles is not None and profiles.doc is None   # said in profiles.yaml; no shop blamed for it
    mute = profiles.doc if profiles is not None else None
    result = FileResult([], [], [], [])
    parsed = validate_file(doc, ShopsFile, "shops", issues)
    if parsed is not None:
        specs: list[ShopSpec | None] = list(parsed.shops)
    else:
        # The file's errors are reported; still check its valid shops against the rest
        # (unknown ERPs, duplicate ids across files), so one run reports everything.
        raw_shops = doc.data.get("shops") if isinstance(doc.data, dict) else None
        if not isinstance(raw_shops, list):
            return result
        specs = [valid_or_none(ShopSpec, item) for item in raw_shops]
    for i, shop in enumerate(specs):
        at = At(doc, ("shops", i))
        sid = shop.id if shop is not None else raw_id(at)
        if sid is not None:  # (an invalid id is reported; the shop's references are still checked)
            if sid in seen:
                _err(issues, doc, (*at.path, "id"), f"duplicate shop id {sid!r} (also at {seen[sid]})")
                continue
            seen[sid] = at.where()
            result.seen.append((sid, seen[sid]))
        if profiles is not None:
            user = _user(at, shop, sid)
            if user is not None:
                profiles.users.setdefault(user[0], []).append(user[1])
                result.users.append(user)
        if _has_bad(doc, at.path):
            continue
        resolved = resolve_shop(at, shop, erps, by_name, issues, mute=mute, profiles_unreadable=unreadable)
        if resolved is not None:
            result.shops.append(resolved)
    return result


def _user(at: At, shop: ShopSpec | None, sid: str | None) -> tuple[str, str] | None:
    """The profile a shop uses and how its error messages name the shop: ``100001 at shops/a.yaml:2``."""
    name = shop.profile if shop is not None else None
    if shop is None:
        item = at.doc.data["shops"][at.path[1]]
        name = item.get("profile") if isinstance(item, dict) and isinstance(item.get("profile"), str) else None
    return None if name is None else (name, f"{sid or path_str(at.path)} at {at.where()}")


# --------------------------------------------------------------------------- waivers


def _read_waivers(root: Path, shown: str, shop_ids: set[str], today: date, issues: list[Issue]) -> list[Waiver]:
    """The waivers, with their checks that need no platform: required keys (a reason and an
    end date), kinds that may be waived, no two for one problem; warnings for a waiver of a
    shop the configuration does not declare, one that has ended, one that ends in over a year."""
    p = root / WAIVERS_FILE
    if not p.exists() and not p.is_symlink():
        return []
    doc = load_file(p, _display(shown, WAIVERS_FILE), issues)
    if doc is None:
        return []
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
            _err(issues, doc, base, f"a second waiver for shop {w.shop} {key[1] or '(any scenario)'} {w.kind}"
                                    f" (also at {first[key]}): keep one, with one end date and one reason")
            continue
        first[key] = f"{doc.file}:{line}"
        if w.shop not in shop_ids:
            _err(issues, doc, (*base, "shop"), f"shop {w.shop} is not declared in the configuration: this waiver matches"
                                               " nothing", severity="warning")
        if w.until < today:
            _err(issues, doc, (*base, "until"), f"ended on {w.until.isoformat()} (China time): the problem it waived"
                                                " counts again; fix it, or extend the waiver with a new reason",
                 severity="warning")
        elif w.until - today > WAIVER_HORIZON:
            _err(issues, doc, (*base, "until"), f"ends on {w.until.isoformat()}, more than a year from now: a waiver"
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
