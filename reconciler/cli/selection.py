"""Which shops a command works on: ``--shop``, ``--select KEY=VALUE`` and ``--shard K/N``.

The whole configuration is always validated; then ``--shop`` (ids), ``--select`` (labels,
every term must hold) and ``--shard`` narrow it, in that order. A selection the user spelt
out (``--shop``, ``--select``) that matches no shop is an error (exit 1) saying so — never
an empty run that prints "No changes" — including ``--shop`` ids that all lie outside
``--shard``. An empty shard of a ``--select`` selection (a CI matrix wider than a small
client) is said on stderr and is not an error, like an empty shard of the whole agency.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from ..config import Config
from ..errors import ReconcilerError
from ..select import Selection, no_match, parse_label, parse_selection
from ..shard import Shard
from .common import err, in_shard, load


def _selection(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Selection | None:
    # An error (exit 1), not a usage error: exit 2 means "changes pending" or "drift" to CI.
    try:
        return parse_selection(value)
    except ValueError as e:
        raise ReconcilerError(str(e)) from None


select_option = click.option(
    "--select", "select", multiple=True, metavar="KEY=VALUE", callback=_selection,
    help="Only shops with this label (labels: {KEY: VALUE}); repeatable, every one must hold.")


def _labels(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in value:
        try:
            key, v = parse_label(text, option="--label")
        except ValueError as e:
            raise ReconcilerError(str(e)) from None
        out[key] = v
    return out


label_option = click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=_labels,
                            help="Write this label on every imported shop (repeatable).")


@dataclasses.dataclass(frozen=True)
class Chosen:
    """The configuration as loaded (``--shop`` applied) and the shops the command works on."""

    whole: Config
    config: Config
    select: Selection | None

    @property
    def narrowed(self) -> bool:
        """Whether the user picked shops (``--shop``/``--select``): drift then reports no unknown shops."""
        return self.whole.selected_by_shop or self.select is not None


def choose(ctx: click.Context, shops: tuple[str, ...], select: Selection | None, shard: Shard | None) -> Chosen:
    """The validated configuration narrowed by ``--shop``, ``--select`` and ``--shard``."""
    whole = load(ctx, shops)
    config = whole
    if select is not None:
        mine = select.pick(whole.shops)
        if not mine:
            raise ReconcilerError(no_match(select, whole.shops))
        err(f"--select {select}: {len(mine)} of {len(whole.shops)} shop(s)")
        config = dataclasses.replace(whole, shops=mine, selected_by_shop=True)
    sharded = in_shard(config, shard)
    if shard is not None and shops and not sharded.shops:
        raise ReconcilerError(f"--shop {', '.join(sorted(set(shops)))}: not in shard {shard}; nothing to do"
                              " (leave out --shard, or run the shard that holds the shop)")
    return Chosen(whole=whole, config=sharded, select=select)


def no_saved_plan_with(planfile: Any, select: Selection | None) -> None:
    if planfile is not None and select is not None:
        raise click.UsageError("--select cannot be combined with a saved plan (it is applied exactly)")
