"""The command line: a thin layer that parses options, calls the core and maps errors to
exit codes. Commands live in submodules; ``main`` is the console script.

Commands load lazily: ``COMMANDS`` names each command's module and its one-line help, so
``--version``, ``--help`` and shell completion import no command module (nor pydantic,
YAML, HTTP or SQL); running a command imports its module only. A module lists its commands
in its own ``COMMANDS``; a name missing from the table below is still found (every module
is then loaded), but ``--help`` lists only what the table names."""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import __version__
from ..errors import ReconcilerError, mask
from . import context
from .context import DEFAULT_CONFIG_DIR, State

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


class _UsageError(click.UsageError):
    """A usage error that exits 1: click's usual 2 is our "changes pending" / "drift"."""

    exit_code = 1


# command → (module in this package, one-line help for --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("core", "Check the configuration offline."),
    "schema": ("core", "Write JSON Schemas (draft 2020-12) of the configuration files, for editors."),
    "plan": ("core", "Read the actual state and print the plan."),
    "apply": ("core", "Apply a fresh plan (asks to confirm) or exactly a saved PLANFILE."),
    "show": ("core", "Render a saved plan for review, after verifying its checksum."),
    "drift": ("audit", "Audit the platform against the configuration, read-only."),
    "import": ("audit", "Write the platform's actual bindings of shops as config YAML (onboarding)."),
    "history": ("audit", "The audit trail of applied changes, oldest first."),
    "locks": ("state", "The shop locks held by applies: which run, who, where, since when."),
    "unlock": ("state", "Free the locks of a dead run at once (instead of waiting for its lease)."),
    "sandbox": ("sandbox", "The embedded sandbox platform (SQLite): load, dump, serve."),
    "auth": ("auth", "Shop authorizations: the top provider's session tokens, stored encrypted."),
}
_MODULES = ("core", "audit", "state", "sandbox", "auth", "review")


class _Group(click.Group):
    """Turns every ReconcilerError into a message on stderr and exit 1 (traceback with --debug),
    and usage errors into exit 1 too: click's usual 2 is our "changes pending". Loads a
    command's module only when the command is run (see the module doc)."""

    def _load(self, module: str) -> None:
        try:
            mod = importlib.import_module(f".{module}", __package__)
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{module}":
                raise
            return
        for cmd in getattr(mod, "COMMANDS", ()):
            if cmd.name not in self.commands:
                self.add_command(cmd)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if context.CONSOLE and name in QUICK_EXIT:   # this process ends with the command: see run()
            from .. import gcpause

            gcpause.FREEZE = True
        return name, cmd, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            known = COMMANDS.get(cmd_name)
            for module in (known[0],) if known else _MODULES:
                self._load(module)
            if cmd_name not in self.commands and known:  # moved to another module: look everywhere
                for module in _MODULES:
                    self._load(module)
        return self.commands.get(cmd_name)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Command names from the table (click's own would import every module that matches), then options."""
        from click.shell_completion import CompletionItem

        items: list[CompletionItem] = []
        for name in self.list_commands(ctx):
            if not name.startswith(incomplete):
                continue
            if name in COMMANDS and name not in self.commands:
                items.append(CompletionItem(name, help=COMMANDS[name][1]))
            elif (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden:
                items.append(CompletionItem(name, help=cmd.get_short_help_str()))
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1] if name in COMMANDS else self.commands[name].get_short_help_str())
                for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            raise _UsageError(e.message, e.ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        global _ran
        try:
            return self._invoke(ctx)
        finally:
            _ran = ctx.invoked_subcommand   # (set by click once it has found the command)
            parsecache = sys.modules.get("reconciler.parsecache")
            if parsecache is not None:   # (never imported to ask)
                try:
                    parsecache.finish()   # the parse cache written in the background
                except KeyboardInterrupt:
                    click.echo("Interrupted.", err=True)
                    ctx.exit(130)   # as a Ctrl-C during the command itself

    def _invoke(self, ctx: click.Context) -> Any:
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
        except Exception as e:
            if _is_sqlite_error(e):  # a database of ours broke while in use (opening it is checked)
                if ctx.obj is not None and getattr(ctx.obj, "debug", False):
                    raise
                click.echo(f"Error: database error: {e}", err=True)
                ctx.exit(1)
            # the state store's database broke while in use (SQLAlchemy, psycopg)
            if not type(e).__module__.startswith(("sqlalchemy", "psycopg")) or getattr(ctx.obj, "debug", False):
                raise
            click.echo(f"Error: the state store failed: {mask(str(e).splitlines()[0] if str(e) else type(e).__name__)}",
                       err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def _is_sqlite_error(e: BaseException) -> bool:
    """Whether ``e`` is a ``sqlite3.Error``, without importing sqlite3 to ask (no module loaded, none raised)."""
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3 is not None and isinstance(e, sqlite3.Error)


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
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


# The read-only commands, which end with a quick exit (``run``).
QUICK_EXIT = frozenset({"plan", "drift", "validate"})
_ran: str | None = None   # the command this process ran


def run() -> NoReturn:
    """The console script (and ``python -m reconciler``): ``main``, then, after a read-only
    command, a quick exit.

    A plan of 10,000 shops ends holding a few hundred thousand objects; the interpreter's own
    exit frees every one of them (~40 ms at 10,000 shops, ~0.4 s at 100,000) before the
    process ends and the memory goes anyway. Once ``plan``, ``drift`` or ``validate`` has
    finished — only the main thread left, the exit handlers run (logging, temporary files),
    stdout and stderr flushed — the process ends with ``os._exit`` and the same exit code.
    Any other command (those that write: their databases are closed as usual), a command that
    leaves a thread running, or output that cannot be flushed (a closed pipe) exits the usual way.

    For those three, the process being one read-only command, what the collector's pauses build
    (the configuration, the platform's states) is frozen once built (``gcpause.FREEZE``, set
    when the command is resolved): no collection walks it again."""
    context.CONSOLE = True
    try:
        main()
    except SystemExit as e:
        code = e.code
    else:  # (standalone click always exits)
        code = 0
    if _ran not in QUICK_EXIT or threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    if not isinstance(code, int) and code is not None:
        print(code, file=sys.stderr)
        code = 1
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:   # (None: started with it closed)
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)   # Python says what failed, as before
    os._exit(code or 0)
