"""Pure renderers: plans, apply summaries, drift reports and history entries → text for people,
JSON for programs (versioned: ``format_version``), Markdown for pull requests and chats,
JUnit XML for CI dashboards, one self-contained HTML page for reviewers (``html``, Jinja2).

Renderers never do I/O and never see secrets; the same input renders to the same bytes.
Every value from users or the platform is escaped for the format it goes into
(``common``). A new output format is a function here and a name in ``PLAN_FORMATS`` /
``DRIFT_FORMATS``; the CLI offers exactly those.

The drift, history and HTML renderers (``drift``, ``history``, ``page``) load on first use:
``plan`` printed as text imports none of them, nor Jinja2.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .apply import apply_summary, nothing_to_apply
from .common import MARKDOWN_BUDGET, Labels, code, html, labels_of, md
from .plan import plan_json, plan_markdown, plan_text, problem_line, summary_line

if TYPE_CHECKING:
    from ..drift import DriftReport
    from ..plan import Plan
    from .drift import drift_json, drift_junit, drift_markdown, drift_summary_line, drift_text
    from .history import history_json, history_text
    from .page import drift_html, plan_html

_LAZY = {"drift_json": "drift", "drift_junit": "drift", "drift_markdown": "drift", "drift_summary_line": "drift",
         "drift_text": "drift", "history_json": "history", "history_text": "history", "drift_html": "page",
         "plan_html": "page"}

__all__ = [
    "DRIFT_FORMATS", "MARKDOWN_BUDGET", "PLAN_FORMATS", "Labels", "apply_summary", "code", "drift_as", "drift_html",
    "drift_json", "drift_junit", "drift_markdown", "drift_summary_line", "drift_text", "history_json", "history_text", "html",
    "labels_of", "md", "nothing_to_apply", "plan_as", "plan_html", "plan_json", "plan_markdown", "plan_text", "problem_line",
    "summary_line",
]


def __getattr__(name: str) -> Any:
    """A lazy renderer (``_LAZY``), imported on first use and kept."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


PLAN_FORMATS = ("text", "json", "markdown", "html")
DRIFT_FORMATS = ("text", "json", "markdown", "junit", "html")


def plan_as(fmt: str, plan: Plan, *, colour: bool = False, labels: Labels | None = None,
            generated_at: str | None = None) -> str:
    """A plan in one of ``PLAN_FORMATS``. ``labels`` (shop id → labels) and ``generated_at``
    are for the HTML page (its per-label charts and its date) and ignored by the others."""
    if fmt == "json":
        return plan_json(plan)
    if fmt == "markdown":
        return plan_markdown(plan)
    if fmt == "html":
        from .page import plan_html

        return plan_html(plan, labels=labels, generated_at=generated_at)
    return plan_text(plan, colour=colour)


def drift_as(fmt: str, report: DriftReport, *, colour: bool = False, labels: Labels | None = None,
             generated_at: str | None = None) -> str:
    """A drift report in one of ``DRIFT_FORMATS`` (``labels``, ``generated_at``: as ``plan_as``)."""
    from .drift import drift_json, drift_junit, drift_markdown, drift_text

    if fmt == "json":
        return drift_json(report)
    if fmt == "markdown":
        return drift_markdown(report)
    if fmt == "junit":
        return drift_junit(report)
    if fmt == "html":
        from .page import drift_html

        return drift_html(report, labels=labels, generated_at=generated_at)
    return drift_text(report, colour=colour)
