"""Telling a chat room what the drift audit found: a short summary POSTed as JSON to a webhook.

``drift --notify URL`` sends the counts, the worst findings and a link to the full report
(``--report-url``) in the shape the receiver expects (``--notify-format``):

- ``json``: our own summary (``format_version`` 1), for a receiver of your own;
- ``dingtalk``: a DingTalk (钉钉) group robot, ``{"msgtype": "markdown", ...}``;
- ``wecom``: a WeCom (企业微信) group robot, ``{"msgtype": "markdown", ...}``;
- ``feishu``: a Feishu / Lark (飞书) custom bot, ``{"msg_type": "post", ...}``;
- ``slack``: a Slack incoming webhook, ``{"text": ..., "blocks": [...]}``.

A notification is a side channel: it is sent once, with a bounded timeout, and a failure
(unreachable, an HTTP error, a robot answering ``errcode`` ≠ 0) is returned as a message
for a warning — it never changes what the audit found or its exit code. The webhook URL
carries the robot's token, so messages name only its scheme and host.

Shop names are merchant-controlled: their markup characters (``[ ] ( ) < > * _ ` # | ~ ! @``)
are sent as their full-width look-alikes, so in no receiver can a name become a link, a
mention or formatting (chat Markdown dialects differ on backslash escapes; these need none).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .drift import DriftReport, Finding
from .errors import mask
from .vocab import Category

if TYPE_CHECKING:  # httpx loads only when a message is sent: drift without --notify never imports it
    import httpx

FORMAT_VERSION = 1
NOTIFY_FORMATS = ("json", "dingtalk", "wecom", "feishu", "slack")
TIMEOUT_S = 10.0          # per phase (connect, send, answer); a chat robot answers in well under a second
WORST = 5                 # findings named in the message
_SEVERITY = {Category.error: 0, Category.broken: 1, Category.drift: 2, Category.unknown_shop: 3, Category.unmanaged: 4}
_NEUTRAL = str.maketrans("[]()<>*_`#|~!@", "［］（）‹›＊＿＇＃｜～！＠")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Summary:
    """What a notification says: the status, the counts and the worst findings, one line each."""

    status: str
    shard: str | None
    counts: Mapping[str, int]
    worst: tuple[str, ...]
    more: int
    report_url: str | None

    def title(self) -> str:
        where = f" (shard {self.shard})" if self.shard else ""
        word = {"clean": "no drift", "drift": "drift found", "error": "audit incomplete"}.get(self.status, self.status)
        return f"reconciler drift{where}: {word}"

    def counts_line(self) -> str:
        c = self.counts
        return (f"{c['shops_with_findings']} of {c['shops']} shops with findings: {c['drift']} drifted,"
                f" {c['broken']} cannot work, {c['unmanaged']} unmanaged, {c['unknown_shops']} unknown shops,"
                f" {c['errors']} errors")


def _plain(text: object) -> str:
    return " ".join(_CONTROL.sub(" ", str(text)).split())


def _name(text: str) -> str:
    """A merchant's shop name, inert in every chat dialect."""
    return _plain(text).translate(_NEUTRAL)


def _line(f: Finding, names: Mapping[str, str | None]) -> str:
    who = f"shop {f.shop}" if f.shop else "the audit"
    name = names.get(f.shop) if f.shop else None
    what = f"{f.scenario.value} " if f.scenario else ""
    return _plain(f"{who}{f' {_name(name)}' if name else ''}: {what}{f.kind}")


def summarize(report: DriftReport, *, report_url: str | None = None) -> Summary:
    data = report.to_data()["summary"]
    ranked = sorted(report.active, key=lambda f: (_SEVERITY.get(f.category, 9), f.shop or "", f.kind))
    return Summary(status=report.status, shard=report.shard, counts=data,
                   worst=tuple(_line(f, report.shop_names) for f in ranked[:WORST]),
                   more=max(len(ranked) - WORST, 0), report_url=report_url)


# --------------------------------------------------------------------------- payload shapes


def _markdown(s: Summary, *, link: Callable[[str, str], str]) -> str:
    lines = [f"**{s.title()}**", "", s.counts_line()]
    if s.worst:
        lines += ["", *(f"- {w}" for w in s.worst)]
    if s.more:
        lines.append(f"- … and {s.more} more")
    if s.report_url:
        lines += ["", link("Open the report", s.report_url)]
    return "\n".join(lines)


def _text(s: Summary) -> str:
    lines = [s.title(), s.counts_line(), *(f"• {w}" for w in s.worst)]
    if s.more:
        lines.append(f"• … and {s.more} more")
    return "\n".join(lines)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(fmt: str, s: Summary) -> dict[str, Any]:
    """The JSON body for a receiver of ``fmt`` (one of ``NOTIFY_FORMATS``)."""
    if fmt == "dingtalk":
        return {"msgtype": "markdown",
                "markdown": {"title": s.title(), "text": _markdown(s, link=lambda t, u: f"[{t}]({u})")}}
    if fmt == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": _markdown(s, link=lambda t, u: f"[{t}]({u})")}}
    if fmt == "feishu":
        rows: list[list[dict[str, str]]] = [[{"tag": "text", "text": _text(s).split("\n", 1)[1]}]]
        if s.report_url:
            rows.append([{"tag": "a", "text": "Open the report", "href": s.report_url}])
        return {"msg_type": "post", "content": {"post": {"zh_cn": {"title": s.title(), "content": rows}}}}
    if fmt == "slack":
        body = _slack_escape(_text(s))
        if s.report_url:
            body += f"\n<{s.report_url}|Open the report>"
        return {"text": _slack_escape(s.title()),
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": body}}]}
    if fmt == "json":
        return {"format_version": FORMAT_VERSION, "title": s.title(), "text": _text(s), "status": s.status,
                "shard": s.shard, "summary": dict(s.counts), "worst": list(s.worst), "more": s.more,
                "report_url": s.report_url}
    raise ValueError(f"unknown notification format {fmt!r}")


# --------------------------------------------------------------------------- sending


def where(url: str) -> str:
    """The webhook for messages: scheme and host only (its path and query hold the robot's token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def _refusal(body: Any) -> str | None:
    """A chat robot's refusal inside an HTTP 200: DingTalk/WeCom ``errcode``, Feishu ``code``, Slack ``ok``."""
    if not isinstance(body, dict):
        return None
    for key, msg in (("errcode", "errmsg"), ("code", "msg"), ("StatusCode", "StatusMessage")):
        if isinstance(body.get(key), int) and body[key] != 0:
            return f"{key} {body[key]}: {body.get(msg, '')}"
    if body.get("ok") is False:
        return f"not ok: {body.get('error', '')}"
    return None


def send(url: str, body: Mapping[str, Any], *, timeout_s: float = TIMEOUT_S,
         transport: httpx.BaseTransport | None = None) -> str | None:
    """POST ``body`` as JSON to ``url``; None when delivered, else why not (for a warning). Never raises."""
    if urlsplit(url).scheme not in ("http", "https"):
        return f"{where(url)}: not an http(s) URL"
    import httpx

    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False, transport=transport) as client:
            r = client.post(url, json=body, headers={"User-Agent": "reconciler"})
    except httpx.TimeoutException:
        return f"{where(url)}: no answer within {timeout_s:g}s"
    except Exception as e:  # refused, unreachable, a bad URL: whatever it is, the audit goes on
        return f"{where(url)}: {type(e).__name__}: {mask(str(e), (url,), limit=160)}"
    if not 200 <= r.status_code < 300:
        return f"{where(url)}: HTTP {r.status_code}: {mask(r.text, (url,), limit=160)}"
    try:
        why = _refusal(r.json())
    except ValueError:
        why = None  # Slack answers "ok" as plain text
    return f"{where(url)}: the receiver refused the message: {mask(why, (url,), limit=160)}" if why else None


def notify(report: DriftReport, url: str, *, fmt: str = "json", report_url: str | None = None,
           timeout_s: float = TIMEOUT_S) -> str | None:
    """Send the report's summary; None when delivered, else why not."""
    return send(url, payload(fmt, summarize(report, report_url=report_url)), timeout_s=timeout_s)
