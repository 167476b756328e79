"""The ``shops/`` folder and ``profiles.yaml``: finding the shop files, reading each one (from
the parse cache, in one pass, or step by step) and the checks that span files.

Under ``shops/`` only what stays inside the config directory is read: a symlink that leads
out of it is an error, as is an entry named ``*.yaml`` that is not a regular file (a FIFO, a
device): nothing is silently left unmanaged, and nothing outside the directory is read.

A shop file is read the cheapest way that gives the same result: its result from the parse
cache when its bytes are known (``parsecache``), else in one pass when it is plain
(``fastpath``), else step by step (``yamlio`` build with marks → strict validation with the
spec models → ``resolve``), which is also what says every error. What spans files — a
duplicate id, the shops that use each profile (named in the profile's errors) — is checked
here whichever way a file was read.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import Issue
from .located import load_file, valid_or_none, validate_file
from .model import DesiredShop, Source
from .parsecache import Corrupt, FileResult, ShopCache, digest
from .resolve import At, Catalog, Profile, check_profile, raw_id, resolve_shop
from .yamlio import Document, PathT, compose, document, path_str, read

if TYPE_CHECKING:
    from .specs import ShopSpec

PROFILES_FILE = "profiles.yaml"
SHOPS_DIR = "shops"
SHOP_SUFFIXES = (".yaml", ".yml")   # compared case-insensitively: x.YAML is a shop file too
USERS_SHOWN = 10                    # shops named after an error in a profile (then: "and N more")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------- the directory


def display_path(config_dir: str, rel: str) -> str:
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
        issues.append(Issue(display_path(shown, rel), 0, 0, "", message))

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


def add_error(issues: list[Issue], doc: Document, path: PathT, msg: str, *, severity: str = "error") -> None:
    line, col = doc.marks.at(path)
    issues.append(Issue(doc.file, line, col, path_str(path), msg, severity=severity))


def has_bad(doc: Document, base: PathT) -> bool:
    """Whether a value under ``base`` could not be built (a refused tag): skip its checks."""
    n = len(base)
    return any(p[:n] == base for p in doc.marks.bad)


# --------------------------------------------------------------------------- profiles


@dataclass
class Profiles:
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


def read_profiles(root: Path, shown: str, catalog: Catalog | None) -> Profiles | None:
    p = root / PROFILES_FILE
    if not p.exists() and not p.is_symlink():
        return None
    issues: list[Issue] = []
    doc = load_file(p, display_path(shown, PROFILES_FILE), issues)
    if doc is None:
        return Profiles(None, {}, issues)
    from .specs import ProfilesFile, ProfileSpec

    parsed = validate_file(doc, ProfilesFile, "profiles", issues)
    raw = doc.data.get("profiles") if isinstance(doc.data, dict) else None
    by_name: dict[str, Profile] = {}
    if not isinstance(raw, dict):
        return Profiles(doc, by_name, issues)
    for name in raw:
        at = At(doc, ("profiles", name))
        if parsed is not None:
            spec: ProfileSpec | None = parsed.profiles[name]
        else:
            spec = None if has_bad(doc, at.path) else valid_or_none(ProfileSpec, raw[name])
        by_name[name] = Profile(name, spec, at)
        if not has_bad(doc, at.path):
            check_profile(by_name[name], catalog, issues)
    return Profiles(doc, by_name, issues)


# --------------------------------------------------------------------------- shops


class Again(Exception):
    """The cached results disagree with the rest (a duplicate id), or one is corrupt: read everything."""


def read_shops(root: Path, shown: str, erps: Catalog | None, profiles: Profiles | None,
               issues: list[Issue], cache: ShopCache | None = None) -> tuple[list[DesiredShop], set[str]]:
    """The resolved shops, and every valid shop id declared (valid shops or not). With a
    ``cache``, a file whose bytes it knows is not parsed: its result is taken from the cache
    (raises ``Again`` when that cannot be trusted)."""
    top = root / SHOPS_DIR
    if not top.is_dir():
        if top.exists() or top.is_symlink():
            issues.append(Issue(display_path(shown, SHOPS_DIR), 0, 0, "",
                                "is not a folder: shops are declared in YAML files inside a shops/ folder"))
        else:
            issues.append(Issue(display_path(shown, SHOPS_DIR), 0, 0, "", "no shops/ directory: no shop is managed",
                                severity="warning"))
    files, found = shop_files(root, shown)
    issues += found
    seen: dict[str, str | Source] = {}   # an id → where it is written (a source prints as file:line)
    out: list[DesiredShop] = []
    for f in files:
        raw, found = read(f.path, display_path(shown, f.rel))
        if raw is None:
            issues += found
            continue
        sha = digest(raw) if cache is not None else ""
        try:
            hit = cache.get(f.rel, sha) if cache is not None else None
        except Corrupt:
            raise Again from None
        if hit is not None:
            for sid, where in hit.seen:
                if sid in seen:
                    raise Again  # the uncached read says which and where
                seen[sid] = where
            if profiles is not None:
                for name, user in hit.users:
                    profiles.users.setdefault(name, []).append(user)
            issues += hit.warnings
            out += hit.shops
            continue
        start = len(issues)
        result = _read_shop_file(raw, display_path(shown, f.rel), erps, profiles, seen, issues)
        if cache is not None and result is not None and not any(i.severity == "error" for i in issues[start:]):
            cache.put(f.rel, sha, dataclasses.replace(result, warnings=issues[start:]))
        if result is not None:
            out += result.shops
    out.sort(key=lambda s: s.id)
    return out, set(seen)


def _read_shop_file(raw: bytes, display: str, erps: Catalog | None, profiles: Profiles | None,
                    seen: dict[str, str | Source], issues: list[Issue]) -> FileResult | None:
    """One shop file's resolved shops and what the checks across files need (its warnings are
    added by the caller); None when it cannot be read as YAML at all."""
    from . import fastpath, scan  # (PyYAML's resolvers and nodes: imported once a file is read, not from the cache)

    plain = scan.shops(raw, display, erps.specs) if erps is not None and not erps.broken else None
    composed = None
    if plain is None:   # not in the plain line form: YAML
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
    if composed is None:
        composed, found = compose(raw, display)
        issues += found
        if composed is None:
            return None
    doc, found = document(composed, display)
    issues += found
    by_name = profiles.by_name if profiles is not None else None
    unreadable = profiles is not None and profiles.doc is None   # said in profiles.yaml; no shop blamed for it
    mute = profiles.doc if profiles is not None else None
    result = FileResult([], [], [], [])
    from .specs import ShopsFile, ShopSpec  # (pydantic: files not read in one pass)

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
                add_error(issues, doc, (*at.path, "id"), f"duplicate shop id {sid!r} (also at {seen[sid]})")
                continue
            seen[sid] = at.where()
            result.seen.append((sid, seen[sid]))
        if profiles is not None:
            user = _user(at, shop, sid)
            if user is not None:
                profiles.users.setdefault(user[0], []).append(user[1])
                result.users.append(user)
        if has_bad(doc, at.path):
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


