"""What every renderer shares: terminal styles, Markdown/HTML escaping, size budgets.

Escaped wherever user text goes: ``md`` in Markdown text, ``html`` inside HTML, ``code`` for
identifiers. A Markdown document is cut to a size budget (``MARKDOWN_BUDGET``, UTF-8 bytes,
well under GitHub's 65,536-character comment limit) with a count of what was left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..model import DesiredShop

Labels = Mapping[str, Mapping[str, str]]   # shop id → {label key: value}


def style(text: str, colour: str | None, enabled: bool, bold: bool = False) -> str:
    return click.style(text, fg=colour, bold=bold) if enabled else text


MARKDOWN_BUDGET = 50_000
# Escaped wherever user text goes: emphasis, code, links/images ([ ]), HTML and entities (< > &),
# table cells (|), strikethrough (~), GitHub math ($) and issue references (#). Text is never
# placed at the start of a line, so list and heading markers (- + . #) need no escape there.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~$#])")
_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.:/+@-]+$")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def md(text: object) -> str:
    """User or platform text as literal Markdown (safe in a table cell, on one line)."""
    flat = " ".join(CONTROL.sub("", str(text)).split())
    return _MD_SPECIAL.sub(r"\\\1", flat)


def html(text: object) -> str:
    """Text inside HTML (``<summary>``), where Markdown is not parsed."""
    import html as _html  # (only for Markdown reports)

    return _html.escape(" ".join(CONTROL.sub("", str(text)).split()), quote=True)


def code(text: object) -> str:
    """An identifier (shop id, scenario, appkey) as code when it is plain, else escaped text."""
    t = str(text)
    return f"`{t}`" if _SAFE_CODE.match(t) else md(t)


def size(text: str) -> int:
    return len(text.encode("utf-8"))


class Budget:
    """Collects Markdown blocks until the next one would not fit; counts what was left out."""

    def __init__(self, limit: int, reserve: int = 600) -> None:
        self.limit = limit - reserve   # room for the closing note
        self.parts: list[str] = []
        self.used = 0
        self.full = False

    def add(self, block: str) -> bool:
        if self.full or self.used + size(block) > self.limit:
            self.full = True
            return False
        self.parts.append(block)
        self.used += size(block)
        return True

    def text(self) -> str:
        return "".join(self.parts)


def cut_note(parts: Iterable[str], limit: int) -> str:
    """The note ending a Markdown report that was cut; empty when nothing was (``parts``: what was left out, or "")."""
    what = ", ".join(p for p in parts if p)
    if not what:
        return ""
    return (f"\n> [!NOTE]\n> Cut to fit a comment ({limit:,} bytes): {what} not shown."
            " The full output: run the same command with `--format text` or `--format json`.\n")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def labels_of(shops: Iterable[DesiredShop]) -> dict[str, dict[str, str]]:
    """The shops' labels (``labels: {client: acme}``), for the per-label charts and the filter;
    empty while the configuration gives shops no labels."""
    out: dict[str, dict[str, str]] = {}
    for s in shops:
        labels = getattr(s, "labels", None)
        if labels and isinstance(labels, Mapping):   # (most shops have none: no ABC check for them)
            out[s.id] = {str(k): str(v) for k, v in labels.items()}
    return out
