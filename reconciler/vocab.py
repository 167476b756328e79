"""The closed vocabulary: every word the tool's outputs, history and exit codes are made of,
and the one way a binding's value is said to people.

Problem kinds, severities, history outcomes, drift categories and kinds, what became of a
write whose answer was lost, and the exit codes are ``StrEnum``/``IntEnum`` members defined
here once, so a typo is a type error rather than a silent new word. They are ``str``/``int``
subclasses: JSON, the history database and comparisons with plain strings see the same
values as before.

``show`` is the single formatter of values for people (plan text, Markdown, drift, history,
apply summaries, stale-plan and platform messages): each caller passes its escapers.

This module imports nothing of the project: every other module may use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum, StrEnum
from typing import Any


class _Word(StrEnum):
    def __str__(self) -> str:
        return self.value


class Action(_Word):
    """What a change does: none → appkey, appkey A → B, appkey → none, a follow-up setting."""

    bind = "bind"
    rotate = "rotate"
    unbind = "unbind"
    update = "update"


DISRUPTIVE = (Action.rotate, Action.unbind)


class Severity(_Word):
    error = "error"
    warning = "warning"
    info = "info"
    waived = "waived"    # a problem a current waiver acknowledges (waivers.yaml): shown, never failing a run


SEVERITY_ORDER = {Severity.error: 0, Severity.warning: 1, Severity.info: 2, Severity.waived: 3}


class ProblemKind(_Word):
    """What a plan problem is about (``Problem.kind``)."""

    read_failed = "read-failed"                  # the shop could not be read
    check_failed = "check-failed"                # an appkey could not be checked
    appkey_not_found = "appkey-not-found"
    not_integrated = "not-integrated"            # the ERP has not integrated the scenario through Qimen
    detail_not_whitelisted = "detail-not-whitelisted"
    status_not_synced = "status-not-synced"
    unmanaged = "unmanaged"                      # bound on the platform, not in the config
    protected = "protected"                      # protect: true and a disruptive change
    unsafe = "unsafe"                            # over the safety threshold
    withheld = "withheld"                        # the shop's changes held back by its errors
    interrupted = "interrupted"                  # a killed apply may have left the shop half-changed
    auth_expired = "auth-expired"                # the shop's token expired (or is missing) and cannot be renewed: withheld
    auth_expiring = "auth-expiring"              # the shop's token ends within 7 days
    unused_waiver = "unused-waiver"              # a waiver of waivers.yaml that matched no problem of its shop


# preflight kinds that mean "this binding cannot work"
BROKEN_KINDS = frozenset({ProblemKind.appkey_not_found, ProblemKind.not_integrated,
                          ProblemKind.detail_not_whitelisted, ProblemKind.status_not_synced})
# kinds that make apply refuse the whole plan unless --force
SAFETY_KINDS = frozenset({ProblemKind.unsafe, ProblemKind.protected})
# What a waiver (waivers.yaml) may acknowledge: problems only the ERP, the platform or the
# merchant can end, and audit findings. Never the safety rules (protect, the threshold),
# never a failed read or check (a waiver must not hide an outage), never our own notes.
WAIVABLE_KINDS: tuple[str, ...] = (
    "appkey-not-found", "not-integrated", "detail-not-whitelisted", "status-not-synced", "unmanaged",
    "auth-expired", "auth-expiring",
    "differs", "missing", "not-unbound", "self-service-off", "self-service-on", "cannot-apply", "unknown-shop",
)
# The guidance of the platform's help article (DOMAIN.md) for what only people can fix.
PERMISSION_HINT = ("the operator's sub-account needs the 客户服务平台 (customer-service platform) permission:"
                   " grant it in 千牛 > 子账号 > 权限, then run again")


class Outcome(_Word):
    """What became of one change attempt, as the history records it."""

    applied = "applied"
    already_applied = "already-applied"  # a compare-and-set conflict with the platform already holding the change's after
    failed = "failed"
    refused = "refused"                  # the whole plan was refused: stale, unsafe, not confirmed
    rolled_back = "rolled-back"          # the undo of an applied change, after another change of its shop failed
    rollback_failed = "rollback-failed"


# outcomes after which the platform holds the row's ``after`` value
WRITTEN = (Outcome.applied, Outcome.already_applied, Outcome.rolled_back)


class WriteFate(_Word):
    """A failed write whose answer was lost may have landed; what checking found."""

    not_landed = "it had not taken effect"
    undone = "it had taken effect and was put back"
    unsettled = "it may have taken effect and could not be put back"


class Category(_Word):
    """Drift finding categories."""

    drift = "drift"
    unmanaged = "unmanaged"
    broken = "broken"
    unknown_shop = "unknown-shop"
    error = "error"


CATEGORIES: tuple[Category, ...] = tuple(Category)


class FindingKind(_Word):
    """Drift finding kinds that are not plan problem kinds."""

    differs = "differs"
    missing = "missing"
    not_unbound = "not-unbound"
    self_service_off = "self-service-off"
    self_service_on = "self-service-on"
    cannot_apply = "cannot-apply"
    unknown_shop = "unknown-shop"
    audit_failed = "audit-failed"


class Exit(IntEnum):
    """Process exit codes (the contract's table)."""

    ok = 0
    error = 1        # invalid, refused, failed with nothing changed
    pending = 2      # plan --detailed-exitcode: changes pending; drift: drift found
    partial = 3      # apply: partly applied
    interrupted = 130


# --------------------------------------------------------------------------- values for people


def _plain(text: str) -> str:
    return text


def flag(value: Any) -> str:
    """A setting's value as the config writes it (``true``/``false`` for booleans)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def show(values: Mapping[str, Any] | None, names: Mapping[str, str] | None = None, *,
         name: Callable[[str], str] = _plain, key: Callable[[str], str] = _plain,
         text: Callable[[str], str] = _plain, unbound: str = "unbound") -> str:
    """One side of a change for people: ``聚水潭 (21345678)``, ``unbound``, ``buyer_self_service=true``.

    ``names`` maps appkeys to ERP names; ``name``, ``key`` and ``text`` escape or mark up the
    ERP name, the appkey and settings text (Markdown passes its escapers); None shows as ""."""
    if values is None:
        return ""
    if "appkey" in values:
        appkey = values["appkey"]
        if appkey is None:
            return unbound
        erp = (names or {}).get(str(appkey))
        return f"{name(erp)} ({key(str(appkey))})" if erp else key(str(appkey))
    return text(", ".join(f"{k}={flag(x)}" for k, x in sorted(values.items())))


def show_appkey(appkey: str | None, names: Mapping[str, str] | None = None) -> str:
    """An appkey (or none) for people: ``聚水潭 (21345678)``, ``21345678``, ``unbound``."""
    return show({"appkey": appkey}, names)


EXCERPT = 40        # characters of a value an error message may quote
WHOLE_FILE = 8      # … of a file read as one value (a symlink to a key file must not be printed)


_SECRET_LOOKING = re.compile(r"(?i)(secret|session|sign|password|passwd|token|key)(\s*[=:]\s*)\S+")


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """A value from a file or the platform, quoted for an error message: its first line, at
    most ``limit`` characters, control characters escaped (``repr``), what looks like a
    secret assignment masked (``token=***``); when cut, ``…`` and the length. Messages never
    print more of a value than this (a file may be anything: a symlink to a private key, a
    secret that belongs elsewhere)."""
    first = text.split("\n", 1)[0].split("\r", 1)[0]
    if len(first) <= limit and first == text:
        return repr(_SECRET_LOOKING.sub(_masked, text))
    return f"{_SECRET_LOOKING.sub(_masked, first[:limit])!r}… ({len(text):,} characters)"


def _masked(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2)}***"


def close_matches(word: str, choices: Iterable[str]) -> list[str]:
    """The choice most like ``word``, if any is close enough, for a "did you mean" hint."""
    import difflib  # (only when a name is wrong: not on every run)

    return difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
