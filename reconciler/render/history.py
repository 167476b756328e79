"""History entries → text or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..history import FORMAT_VERSION as HISTORY_FORMAT_VERSION
from ..history import Entry
from ..vocab import Outcome, show
from .common import style


def _history_value(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        return show(v)
    return "" if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)


def history_text(entries: Sequence[Entry], *, colour: bool = False) -> str:
    if not entries:
        return "No recorded changes.\n"
    outcome_colour: dict[str, str] = {Outcome.applied: "green", Outcome.failed: "red", Outcome.refused: "yellow",
                      Outcome.rolled_back: "yellow", Outcome.rollback_failed: "red"}
    lines = []
    for e in entries:
        git = f" {e.git_branch or ''}@{e.git_commit[:10]}" if e.git_commit else ""
        lines.append(f"{e.time}  run {e.run}  {e.actor}{git}  {e.shop} {e.scenario or '-':<19} {e.action:<7}"
                     f" {_history_value(e.before)} → {_history_value(e.after)}  "
                     + style(e.outcome, outcome_colour.get(e.outcome), colour)
                     + (f": {e.error}" if e.error else ""))
    return "\n".join(lines) + "\n"


def history_json(entries: Sequence[Entry]) -> str:
    return json.dumps({"format_version": HISTORY_FORMAT_VERSION, "entries": [e.to_data() for e in entries]},
                      ensure_ascii=False, indent=2, sort_keys=True) + "\n"
