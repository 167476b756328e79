"""Selecting shops by their labels: ``--select KEY=VALUE`` (repeatable: every term must hold)
on plan, apply and drift, and the ``--label KEY=VALUE`` that ``import`` writes.

Pure: a ``Selection`` is parsed from the command line and tested against a shop's labels
(those of its profile, then its own). A selection that matches no shop is an error that
says which values the configuration does use, never an empty run that reads as "no changes".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .model import LABEL_KEY_RE, LABEL_VALUE_MAX, DesiredShop
from .vocab import excerpt

SHOWN_VALUES = 10


@dataclass(frozen=True)
class Selection:
    """Labels a shop must all carry."""

    terms: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.terms)

    def holds(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.terms)

    def pick(self, shops: Iterable[DesiredShop]) -> list[DesiredShop]:
        return [s for s in shops if self.holds(s.labels)]


def parse_label(text: str, *, option: str = "--select") -> tuple[str, str]:
    """``client=acme`` → ("client", "acme"); ValueError saying what a label looks like."""
    key, eq, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not eq or not LABEL_KEY_RE.fullmatch(key):
        raise ValueError(f"{option}: expected KEY=VALUE such as client=acme (a key of letters, digits, '_', '.', '-'),"
                         f" got {excerpt(text)}")
    if not (0 < len(value) <= LABEL_VALUE_MAX and value.isprintable()):
        raise ValueError(f"{option} {key}=: the value must be 1 to {LABEL_VALUE_MAX} printable characters,"
                         f" got {excerpt(value)}")
    return key, value


def parse_selection(texts: Sequence[str]) -> Selection | None:
    """The selection of ``--select`` options (None when none is given); ValueError when one is malformed
    or two contradict each other (client=a and client=b can match no shop)."""
    if not texts:
        return None
    terms: dict[str, str] = {}
    for t in texts:
        key, value = parse_label(t)
        if key in terms and terms[key] != value:
            raise ValueError(f"--select {key}={terms[key]} and --select {key}={value}: a shop has one value per label,"
                             " so both can never hold")
        terms[key] = value
    return Selection(tuple(terms.items()))


def no_match(selection: Selection, shops: Sequence[DesiredShop]) -> str:
    """Why nothing matched, saying which values each key of the selection takes in the configuration."""
    lines = [f"--select {selection}: no shop of the configuration matches"
             f" ({len(shops):,} shop(s) considered); nothing to do"]
    for key, want in selection.terms:
        counts: dict[str, int] = {}
        for s in shops:
            v = s.labels.get(key)
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        if not counts:
            lines.append(f"  no shop has the label {key!r}")
        elif want not in counts:
            values = sorted(counts, key=lambda v: (-counts[v], v))
            more = f" and {len(values) - SHOWN_VALUES} more" if len(values) > SHOWN_VALUES else ""
            lines.append(f"  {key} takes: " + ", ".join(f"{v} ({counts[v]})" for v in values[:SHOWN_VALUES]) + more)
    return "\n".join(lines)
