"""The ``import`` job: which shops to read, reading them, and what to write where.

``importer`` turns platform states into YAML (pure); this module decides the rest, so the
CLI only parses options and prints: shops the configuration already declares are skipped
(so no id is ever declared twice) — except those of the file being overwritten, which the
import replaces; an existing file is never overwritten without ``force``; the file is
written whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .drift import read_states
from .errors import ProviderError, ReconcilerError, mask
from .files import write_atomic
from .importer import ImportedShop, import_shop, render_shops
from .model import SHOP_ID_RE, Erp, ShopState, appkey_problem
from .providers.base import Provider
from .yamlio import load as load_yaml

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Target:
    """Where an import writes, and what that file declares today."""

    path: Path
    in_config: bool            # the file is one of the config's shop files
    replaced: tuple[str, ...]  # shop ids the file declares now (an overwrite replaces them)

    @classmethod
    def at(cls, path: Path, shops_dir: Path, *, force: bool) -> Target:
        in_config = shops_dir.resolve() in path.resolve().parents   # shops/ at any depth
        if in_config and (not path.name.lower().endswith((".yaml", ".yml")) or any(
                p.startswith(".") for p in path.resolve().relative_to(shops_dir.resolve()).parts)):
            raise ReconcilerError(f"{path}: a file in {shops_dir.name}/ must end in .yaml or .yml (and not be hidden)"
                                  " to be read as shops")
        if path.exists() and not force:
            raise ReconcilerError(f"{path} exists; choose another --out, or --force to overwrite it")
        return cls(path, in_config, tuple(_declared_in(path)) if path.exists() else ())


@dataclass(frozen=True)
class ImportResult:
    imported: tuple[ImportedShop, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)     # shop → where the config declares it
    failed: Mapping[str, ProviderError] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()          # shops the overwritten file declared and no longer does
    unknown_appkeys: tuple[str, ...] = ()  # written as literal appkeys: not in erps.yaml


def _declared_in(path: Path) -> list[str]:
    """Shop ids a YAML file declares (to know which ones an overwrite replaces)."""
    doc, _ = load_yaml(path, str(path))
    data: Any = doc.data if doc is not None else None
    shops = data.get("shops") if isinstance(data, dict) else None
    return [str(s["id"]) for s in shops if isinstance(s, dict) and "id" in s] if isinstance(shops, list) else []


def _checked(shop: str, state: ShopState | ProviderError) -> ShopState | ProviderError:
    """A platform answer fit to be written as config, or why not: the shop id must be the one
    asked for and a string of digits, every appkey one the config format accepts."""
    if isinstance(state, ProviderError):
        return state
    if state.shop_id != shop or not SHOP_ID_RE.fullmatch(state.shop_id):
        return ProviderError(f"the platform answered shop id {mask(repr(state.shop_id), limit=40)} for shop {shop}"
                             " (expected that id, a string of digits); not imported")
    for sc, b in sorted(state.bindings.items()):
        why = appkey_problem(b.appkey, sc)
        if why:
            return ProviderError(f"the platform answered an invalid appkey for {sc.value}"
                                 f" ({mask(repr(b.appkey), limit=40)}); not imported")
    return state


def import_shops(provider: Provider, target: Target, *, wanted: Sequence[str] | None, declared: Mapping[str, str],
                 erps: Mapping[str, Erp], progress: Progress | None = None,
                 labels: Mapping[str, str] | None = None) -> ImportResult:
    """Read ``wanted`` shops (None: every shop the platform knows) that ``declared`` (shop →
    its source) does not hold, and turn them into config entries (each carrying ``labels``)."""
    existing = {s: src for s, src in declared.items() if not (target.in_config and s in target.replaced)}
    ids = provider.list_shops() if wanted is None else sorted(set(wanted))
    todo = [s for s in ids if s not in existing]
    states = {s: _checked(s, v) for s, v in (read_states(provider, todo, progress=progress) if todo else {}).items()}
    imported = tuple(replace(import_shop(v, erps), labels=dict(labels or {}))
                     for v in states.values() if isinstance(v, ShopState))
    dropped = sorted(set(target.replaced) - {s.id for s in imported}) if target.in_config else []
    return ImportResult(imported=imported, skipped={s: existing[s] for s in ids if s in existing},
                        failed={s: v for s, v in sorted(states.items()) if isinstance(v, ProviderError)},
                        dropped=tuple(dropped) if imported else (),
                        unknown_appkeys=tuple(sorted({k for s in imported for k in s.unknown_appkeys})))


def write_import(target: Target, imported: Sequence[ImportedShop], *, force: bool, schema: Path | None = None) -> None:
    """Write the imported shops to the target, whole or not at all; ``schema``: the shops JSON
    Schema (``reconciler schema``), named relative to the file so editors find it."""
    if target.path.exists() and not force:  # appeared while we were reading the platform
        raise ReconcilerError(f"{target.path} exists; choose another --out, or --force to overwrite it")
    header = (f"Imported from the platform by `reconciler import` ({len(imported)} shop(s)).\n"
              "Review before committing: every scenario bound on the platform is now managed.")
    where = Path(os.path.relpath(schema.resolve(), target.path.resolve().parent)).as_posix() if schema is not None else None
    write_atomic(target.path, render_shops(imported, header=header, schema=where))
