"""``reconciler sandbox …``: the embedded platform's content (load, dump)."""

from __future__ import annotations

from pathlib import Path

import click

from ..providers import open_sandbox, read_world
from ..yamlio import dump
from .common import settings_only


def _db_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option("--db", type=click.Path(dir_okay=False, path_type=Path),
                        help="The sandbox database (default: the config dir's provider settings).")(f)


@click.group()
def sandbox() -> None:
    """The embedded sandbox platform (SQLite): load, dump, serve."""


@sandbox.command("load")
@click.argument("world", type=click.Path(dir_okay=False, path_type=Path))
@_db_option
@click.pass_context
def load_cmd(ctx: click.Context, world: Path, db: Path | None) -> None:
    """Replace the sandbox's content with WORLD.yaml."""
    content = read_world(world)
    settings, config_dir = settings_only(ctx)
    platform = open_sandbox(settings, config_dir, db=db, initial_world=False)
    try:
        platform.load_world(content)
    finally:
        platform.close()
    click.echo(f"Loaded {world}: {len(content.shops)} shop(s), {len(content.apps)} ERP app(s),"
               f" {len(content.faults)} fault(s) into {platform.path}")


@sandbox.command("dump")
@_db_option
@click.option("--include-secrets", is_flag=True, help="Also print the app secret and session keys.")
@click.pass_context
def dump_cmd(ctx: click.Context, db: Path | None, include_secrets: bool) -> None:
    """Print the sandbox's content as a world file."""
    settings, config_dir = settings_only(ctx)
    platform = open_sandbox(settings, config_dir, db=db)
    try:
        click.echo(dump(platform.dump_world(include_secrets=include_secrets)), nl=False)
    finally:
        platform.close()
