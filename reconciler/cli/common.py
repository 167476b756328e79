"""What every command shares: the context, loading the config, opening the provider,
stderr messages and the one place errors become exit codes."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..config import Config, load_config, load_settings
from ..history import History
from ..model import Settings
from ..providers import Provider, open_provider

DEFAULT_CONFIG_DIR = "configs"


@dataclass
class State:
    config_dir: str
    debug: bool
    colour: bool | None

    def colour_for(self, stream: Any) -> bool:
        if self.colour is not None:
            return self.colour
        return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def state(ctx: click.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def err(message: str) -> None:
    click.echo(message, err=True)


def load(ctx: click.Context, shops: tuple[str, ...] = ()) -> Config:
    """The validated config (warnings go to stderr); ConfigError propagates."""
    config = load_config(state(ctx).config_dir, shops=set(shops) if shops else None)
    for w in config.warnings:
        err(str(w))
    return config


def settings_only(ctx: click.Context) -> tuple[Settings, Path]:
    st = state(ctx)
    settings, _ = load_settings(st.config_dir)
    return settings, Path(st.config_dir)


def provider_for(settings: Settings, config_dir: Path) -> Provider:
    return open_provider(settings, config_dir)


def history_for(settings: Settings, config_dir: Path) -> History:
    rel = settings.history.path or ".reconciler/history.db"
    p = Path(rel)
    return History(p if p.is_absolute() else config_dir / p)


def progress_printer(label: str) -> Any:
    """A progress callback for stderr: a live line on a terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, shop: str) -> None:
        end = "\n" if done == total else ""
        click.echo(f"\r{label} {done}/{total} shops (last: {shop})\033[K", err=True, nl=False)
        if end:
            click.echo("", err=True)
    return show


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing (a temp file renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


shop_option = click.option("--shop", "shops", multiple=True, metavar="ID", help="Only this shop (repeatable).")
