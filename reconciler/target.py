"""Which platform a plan is made for: its ``target``.

A saved plan carries the target it was made against, under its checksum, and ``apply``
refuses a plan whose target is not the platform it is about to write to: a plan reviewed
against the staging gateway, or against one sandbox, is never applied to another.

- ``top``: the gateway URL (scheme, host, port and path; no user info, query or fragment)
  and the agency app key. Never the app secret or a session key.
- ``sandbox``: the sandbox database's identity (``SandboxPlatform.identity``), a random id
  made with the database and kept by ``sandbox load``; not its path, so a config dir that
  moves keeps its plans.

A target is a flat mapping of strings; two targets are the same platform when they are equal
(``saved.check_target``; ``saved.target_label`` says one for people).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from .providers.base import Provider
from .providers.sandbox import SandboxProvider
from .settings import SandboxSettings, Settings, TopSettings

Target = dict[str, str]


def gateway_url(url: str) -> str:
    """The gateway URL as a target names it: scheme and host lower-cased, the default port,
    user info, query and fragment left out, no trailing slash."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    port = f":{parts.port}" if parts.port is not None and parts.port != default else ""
    return urlunsplit((parts.scheme.lower(), host + port, parts.path.rstrip("/"), "", ""))


def target_of(settings: Settings, provider: Provider) -> Target:
    """The target of the provider the settings opened."""
    p = settings.provider
    if isinstance(p, TopSettings):
        return {"kind": "top", "url": gateway_url(p.url), "app_key": p.app_key}
    if isinstance(p, SandboxSettings) and isinstance(provider, SandboxProvider):
        return {"kind": "sandbox", "id": provider.platform.identity()}
    raise AssertionError(f"no target for provider {type(provider).__name__}")

