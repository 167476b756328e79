"""The command line: a thin layer that parses options, calls the core and maps errors to
exit codes. Commands live in submodules; ``main`` is the console script."""

from __future__ import annotations

import logging
import sqlite3
import sys
from typing import Any

import click

from .. import __version__
from ..errors import ReconcilerError, mask
from .common import DEFAULT_CONFIG_DIR, State


class _UsageError(click.UsageError):
    """A usage error that exits 1: click's usual 2 is our "changes pending" / "drift"."""

    exit_code = 1


class _Group(click.Group):
    """Turns every ReconcilerError into a message on stderr and exit 1 (traceback with --debug),
    and usage errors into exit 1 too: click's usual 2 is our "changes pending"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            raise _UsageError(e.message, e.ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            if isinstance(e, _UsageError):
                raise
            raise _UsageError(e.message, e.ctx) from None
        except ReconcilerError as e:
            if ctx.obj is not None and getattr(ctx.obj, "debug", False):
                raise
            click.echo(f"Error: {e}", err=True)
            ctx.exit(1)
        except sqlite3.Error as e:  # a database of ours broke while in use (opening it is checked)
            if ctx.obj is not None and getattr(ctx.obj, "debug", False):
                raise
            click.echo(f"Error: database error: {e}", err=True)
            ctx.exit(1)
        except Exception as e:  # the state store's database broke while in use (SQLAlchemy, psycopg)
            if not type(e).__module__.startswith(("sqlalchemy", "psycopg")) or getattr(ctx.obj, "debug", False):
                raise
            click.echo(f"Error: the state store failed: {mask(str(e).splitlines()[0] if str(e) else type(e).__name__)}",
                       err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-C", "--config-dir", envvar="RECONCILER_CONFIG_DIR", default=DEFAULT_CONFIG_DIR, show_default=True,
              help="The configuration directory (env RECONCILER_CONFIG_DIR).")
@click.option("--debug", is_flag=True, help="Log platform calls and show tracebacks.")
@click.option("--color/--no-color", "colour", default=None, help="Colour output (default: when a terminal).")
@click.option("--parallelism", type=click.IntRange(1, 64), metavar="N",
              help="Shops read and written at once over HTTP (default: provider.parallelism, 8).")
@click.version_option(__version__, prog_name="reconciler")
@click.pass_context
def main(ctx: click.Context, config_dir: str, debug: bool, colour: bool | None, parallelism: int | None) -> None:
    """Config-as-code for the ERP bindings of Taobao / Tmall shops."""
    ctx.obj = State(config_dir=config_dir, debug=debug, colour=colour, parallelism=parallelism)
    ctx.color = colour  # click.echo keeps or strips ANSI codes by this (None: only on a terminal)
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from . import audit, core, sandbox, state
    for cmd in (*core.COMMANDS, *audit.COMMANDS, *state.COMMANDS, sandbox.sandbox):
        main.add_command(cmd)


_register()
