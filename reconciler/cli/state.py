"""locks, unlock: the run locks of the shared state store."""

from __future__ import annotations

import json
from contextlib import closing
from typing import Any

import click

from ..vocab import Exit
from .common import settings_only, store_for


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def locks(ctx: click.Context, fmt: str) -> None:
    """The shop locks held by applies: which run, who, where, since when. Exit 0, 1 error."""
    settings, config_dir = settings_only(ctx)
    store = store_for(settings, config_dir, create=False)
    held = []
    if store is not None:
        with closing(store):
            held = store.locks()
    if fmt == "json":
        click.echo(json.dumps({"format_version": 1, "locks": [h.to_data() for h in held]}, ensure_ascii=False, indent=2,
                              sort_keys=True))
    elif not held:
        click.echo("No locks held.")
    else:
        click.echo("\n".join(h.line() for h in held))


@click.command()
@click.argument("run_id", type=click.IntRange(min=1), metavar="RUN_ID")
@click.option("--force", is_flag=True, help="Unlock even though the run looks alive (its process runs, or its lease is current).")
@click.pass_context
def unlock(ctx: click.Context, run_id: int, force: bool) -> None:
    """Free the locks of a dead run at once (instead of waiting for its lease to expire).

    The run is marked interrupted; the next plan names the shops it may have left
    half-changed, and the next apply finishes them. Exit 0 freed, 1 no such run holds a
    lock, or its holder is alive (use --force only when you are sure it is not).
    """
    settings, config_dir = settings_only(ctx)
    store = store_for(settings, config_dir, create=False)
    if store is None:
        raise click.ClickException(f"run {run_id} holds no lock (there is no state store yet)")
    with closing(store):
        shops = store.unlock(run_id, force=force)
    click.echo(f"Unlocked run {run_id}: {len(shops)} shop(s) freed; it is marked interrupted"
               " (plan names the shops it may have left half-changed).")
    ctx.exit(Exit.ok)


COMMANDS: list[Any] = [locks, unlock]
