"""The error hierarchy: everything the CLI turns into a message and an exit code.

Every error the tool raises on purpose is a ``ReconcilerError``; the CLI catches that one
type, prints ``str(error)`` and exits 1. Messages never carry secrets: provider errors are
built from platform codes and truncated, masked texts (see ``mask``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


class ReconcilerError(Exception):
    """Base of every error the tool reports to a user."""


@dataclass(frozen=True)
class Issue:
    """One thing wrong (or doubtful) in the configuration, located in its source."""

    file: str
    line: int
    column: int
    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        key = f" {self.path}:" if self.path else ""
        tag = "" if self.severity == "error" else f" {self.severity}:"
        return f"{where}:{tag}{key} {self.message}"


class ConfigError(ReconcilerError):
    """The configuration is invalid; carries every issue found, not just the first."""

    def __init__(self, issues: Iterable[Issue], *, subject: str = "the configuration") -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.column, i.path, i.message))
        errors = [i for i in self.issues if i.severity == "error"]
        head = f"{len(errors)} error(s) in {subject}"
        super().__init__("\n".join([*(str(i) for i in self.issues), head]))


class ProviderError(ReconcilerError):
    """A platform call failed.

    ``retryable`` says whether the same call may succeed later; ``delay`` is the wait the
    platform asked for (rate-limit bans), in seconds, or None to use the backoff schedule.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        sub_code: str | None = None,
        retryable: bool = False,
        delay: float | None = None,
        unreachable: bool = False,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.sub_code = sub_code
        self.retryable = retryable
        self.delay = delay
        self.unreachable = unreachable  # the platform itself could not be reached (not one shop's trouble)
        self.ambiguous = ambiguous  # a write that may have taken effect although it failed (answer lost)


class FatalProviderError(ProviderError):
    """An error about the app, its credentials or the gateway, not about one shop (a bad
    signature or app key, a clock out of the window, a platform that cannot be reached
    after every retry): every other call would fail the same way, so the run stops."""


class ConflictError(ProviderError):
    """A compare-and-set write found a value other than the expected one."""


class UnsafePlan(ReconcilerError):
    """The plan breaks a safety rule (threshold, protected shop) and --force was not given."""


class StalePlan(ReconcilerError):
    """A saved plan no longer matches the platform or was altered since it was written."""


_SECRETISH = re.compile(r"(?i)(secret|session|sign|password|token)(=|\"?\s*[:=]\s*\"?)[^&\s\"',}]+")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


def mask(text: str, secrets: Iterable[str] = (), limit: int = 300) -> str:
    """Mask known secrets and secret-looking parameters, then truncate for a message."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    text = _SECRETISH.sub(lambda m: m.group(1) + m.group(2) + "***", text)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return text if len(text) <= limit else text[:limit] + "…"


class MalformedAnswer(ProviderError):
    """The gateway's answer is not one the contract allows (too large, not JSON, too deep,
    numbers out of range, a value of the wrong type or a write that does not confirm)."""


class WrongShop(MalformedAnswer):
    """An ``erp.binding.get`` answer about another shop than the one asked for."""
