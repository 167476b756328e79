"""drift, import, history: the read-only audits and onboarding.

``drift`` and ``history`` never write to the platform or create a history; ``import`` writes
one YAML file, atomically, and never over an existing one without ``--force``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from ..config import SHOPS_DIR, Config
from ..drift import CATEGORIES, DriftReport, audit, read_states
from ..errors import ProviderError, ReconcilerError
from ..history import History, history_path, parse_since
from ..importer import ImportedShop, import_shop, render_shops
from ..model import ShopState
from ..render import drift_json, drift_junit, drift_markdown, drift_text, history_json, history_text
from ..shard import Shard
from ..yamlio import load as load_yaml
from .common import err, in_shard, load, progress_printer, provider_for, settings_only, shard_option, shop_option, state, write_atomic

IGNORABLE = [c for c in CATEGORIES if c != "error"]


@click.command()
@shop_option
@shard_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "junit"]), default="text", show_default=True)
@click.option("--junit-xml", "junit_xml", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JUnit XML to this file (for CI test dashboards).")
@click.option("--ignore", "ignore", multiple=True, type=click.Choice(IGNORABLE),
              help="Leave this category out of the report and the exit code (repeatable).")
@click.pass_context
def drift(ctx: click.Context, shops: tuple[str, ...], shard: Shard | None, fmt: str, junit_xml: Path | None,
          ignore: tuple[str, ...]) -> None:
    """Audit the platform against the configuration, read-only.

    Reports bindings that differ from the config (and since when, where the history
    knows), bindings the config wants unbound, unmanaged bindings, shops the platform knows
    that the config does not (unless --shop), and bindings that cannot work. Exit 0 no
    drift, 2 drift, 1 error (a shop or the shop list could not be read).
    """
    whole = load(ctx, shops)
    config = in_shard(whole, shard)
    provider = provider_for(ctx, config.settings, config.dir)
    history = History.existing(history_path(config.settings.history, config.dir))
    try:
        report = audit(config, provider, history=history, configured=None if shops else {s.id for s in whole.shops},
                       shard=shard, progress=progress_printer("drift"))
    finally:
        provider.close()
        if history is not None:
            history.close()
    if ignore:
        report = dataclasses.replace(report, findings=tuple(f for f in report.findings if f.category not in ignore))
    if junit_xml is not None:
        write_atomic(junit_xml, drift_junit(report))
    click.echo(_render_drift(ctx, report, fmt, config), nl=False)
    ctx.exit(report.exit_code)


def _render_drift(ctx: click.Context, report: DriftReport, fmt: str, config: Config) -> str:
    if fmt == "json":
        return drift_json(report)
    if fmt == "markdown":
        return drift_markdown(report, erp_names=config.erp_names_by_appkey())
    if fmt == "junit":
        return drift_junit(report)
    return drift_text(report, colour=state(ctx).colour_for(sys.stdout))


DEFAULT_IMPORT = f"{SHOPS_DIR}/imported.yaml"


@click.command("import")
@shop_option
@click.option("--all", "all_shops", is_flag=True, help="Every shop the platform knows that the config does not declare.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help=f"The YAML file to write (default: {DEFAULT_IMPORT} in the config dir).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists (its shops are replaced by the import).")
@click.pass_context
def import_cmd(ctx: click.Context, shops: tuple[str, ...], all_shops: bool, out: Path | None, force: bool) -> None:
    """Write the platform's actual bindings of shops as config YAML (onboarding).

    Shops the configuration already declares are skipped (and named), so no shop id is
    ever declared twice. Exit 0 written (or nothing to import with --all), 1 error.
    """
    if bool(shops) == all_shops:
        raise ReconcilerError("import: give either --shop ID (repeatable) or --all")
    config = load(ctx)
    target = out if out is not None else config.dir / DEFAULT_IMPORT
    in_config = _is_shop_file(config, target)
    if in_config and target.suffix not in (".yaml", ".yml"):
        raise ReconcilerError(f"{target}: a file in {SHOPS_DIR}/ must end in .yaml or .yml to be read as shops")
    replaced = _declared_in(target) if target.exists() else []
    if target.exists() and not force:
        raise ReconcilerError(f"{target} exists; choose another --out, or --force to overwrite it")
    existing = {s.id: str(s.source) for s in config.shops if not (in_config and s.id in replaced)}
    provider = provider_for(ctx, config.settings, config.dir)
    try:
        wanted = provider.list_shops() if all_shops else sorted(set(shops))
        skipped = [s for s in wanted if s in existing]
        todo = [s for s in wanted if s not in existing]
        for s in skipped if shops else []:
            err(f"shop {s}: skipped, already declared at {existing[s]}")
        if all_shops and skipped:
            err(f"{len(skipped)} shop(s) skipped: already declared in the configuration")
        states = read_states(provider, todo, progress=progress_printer("import")) if todo else {}
    finally:
        provider.close()
    failed = {s: v for s, v in states.items() if isinstance(v, ProviderError)}
    for s, e in sorted(failed.items()):
        err(f"shop {s}: cannot read it, not imported: {e}")
    good = [v for v in states.values() if isinstance(v, ShopState)]
    if not good:
        if failed or not all_shops:
            raise ReconcilerError("nothing imported")
        click.echo("Nothing to import: the configuration declares every shop the platform knows.")
        ctx.exit(0)
    imported = [import_shop(s, config.erps) for s in good]
    _write(target, imported, force=force)
    if in_config and replaced:
        dropped = sorted(set(replaced) - {s.id for s in imported})
        if dropped:
            err(f"{target} no longer declares {len(dropped)} shop(s) it declared before: {', '.join(dropped)}")
    unknown = sorted({k for s in imported for k in s.unknown_appkeys})
    if unknown:
        err(f"appkeys not in erps.yaml, written as literal appkey: {', '.join(unknown)}")
    click.echo(f"Imported {len(imported)} shop(s) into {target}."
               + (" Check it with: reconciler plan (expect no changes)." if in_config else
                  f" Move it into {SHOPS_DIR}/ to manage them, then: reconciler plan (expect no changes)."))
    ctx.exit(1 if failed else 0)


def _is_shop_file(config: Config, target: Path) -> bool:
    return target.resolve().parent == (config.dir / SHOPS_DIR).resolve()


def _declared_in(path: Path) -> list[str]:
    """Shop ids a YAML file declares (to know which ones an overwrite replaces)."""
    doc, _ = load_yaml(path, str(path))
    data: Any = doc.data if doc is not None else None
    shops = data.get("shops") if isinstance(data, dict) else None
    return [str(s["id"]) for s in shops if isinstance(s, dict) and "id" in s] if isinstance(shops, list) else []


def _write(target: Path, imported: list[ImportedShop], *, force: bool) -> None:
    if target.exists() and not force:  # appeared while we were reading the platform
        raise ReconcilerError(f"{target} exists; choose another --out, or --force to overwrite it")
    header = (f"Imported from the platform by `reconciler import` ({len(imported)} shop(s)).\n"
              "Review before committing: every scenario bound on the platform is now managed.")
    write_atomic(target, render_shops(imported, header=header))


@click.command()
@shop_option
@click.option("--since", help="Only changes at or after: a date (2024-05-01, UTC), an ISO time, or an age (36h, 7d).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the most recent N changes.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def history(ctx: click.Context, shops: tuple[str, ...], since: str | None, limit: int | None, fmt: str) -> None:
    """The audit trail of applied changes, oldest first. Exit 0, 1 error.

    Every change apply attempted is recorded with its run's time, actor, git commit and
    branch and plan checksum, and its outcome: applied, failed, refused, rolled-back or
    rollback-failed.
    """
    try:
        cutoff = parse_since(since) if since is not None else None
    except ValueError as e:
        raise ReconcilerError(f"--since: {e}") from None
    settings, config_dir = settings_only(ctx)
    path = history_path(settings.history, config_dir)
    entries = []
    try:
        db = History.existing(path)
        if db is not None:
            try:
                entries = db.entries(shops=list(shops) or None, since=cutoff, limit=limit)
            finally:
                db.close()
    except sqlite3.Error as e:
        raise ReconcilerError(f"{path}: cannot read the history: {e}") from None
    if fmt == "json":
        click.echo(history_json(entries), nl=False)
    else:
        click.echo(history_text(entries, colour=state(ctx).colour_for(sys.stdout)), nl=False)


COMMANDS: list[Any] = [drift, import_cmd, history]
