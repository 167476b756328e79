"""History entries → text or JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from ..history import FORMAT_VERSION as HISTORY_FORMAT_VERSION
from ..history import Entry
from ..vocab import Outcome, show
from .common import style


def _history_value(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        return show(v)
    return "" if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)


class _Run(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def time(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def status(self) -> str: ...

    def to_data(self) -> dict[str, Any]: ...


def _unfinished(runs: Sequence[_Run], entries: Sequence[Entry]) -> list[str]:
    rows = Counter(e.run for e in entries)
    out = [f"run {r.id} {r.status}: started {r.time} by {r.actor} on {r.host or 'an unknown host'} (pid {r.pid});"
           f" {rows.get(r.id, 0)} change(s) shown above"
           + ("; its shops may be half-changed: plan names them, apply finishes them" if r.status == "interrupted" else "")
           for r in runs if r.status != "finished"]
    return ["", "Runs not finished:", *(f"  {line}" for line in out)] if out else []


def history_text(entries: Sequence[Entry], runs: Sequence[_Run] = (), *, colour: bool = False) -> str:
    lines = [] if entries else ["No recorded changes."]
    outcome_colour: dict[str, str] = {Outcome.applied: "green", Outcome.already_applied: "green", Outcome.failed: "red",
                                      Outcome.refused: "yellow", Outcome.rolled_back: "yellow", Outcome.rollback_failed: "red"}
    for e in entries:
        git = f" {e.git_branch or ''}@{e.git_commit[:10]}" if e.git_commit else ""
        lines.append(f"{e.time}  run {e.run}  {e.actor}{git}  {e.shop} {e.scenario or '-':<19} {e.action:<7}"
                     f" {_history_value(e.before)} → {_history_value(e.after)}  "
                     + style(e.outcome, outcome_colour.get(e.outcome), colour)
                     + (f": {e.error}" if e.error else ""))
    return "\n".join(lines + _unfinished(runs, entries)) + "\n"


def history_json(entries: Sequence[Entry], runs: Sequence[_Run] = ()) -> str:
    """``{"format_version": 1, "entries": [...], "runs": [{"id", "status": finished|interrupted|running, ...}]}``."""
    return json.dumps({"format_version": HISTORY_FORMAT_VERSION, "entries": [e.to_data() for e in entries],
                       "runs": [r.to_data() for r in runs]}, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
