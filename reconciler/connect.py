"""From settings to a ready provider: the one place that knows both the configuration and the providers.

Providers know the platform protocol and our models only; what a configuration says about
them — which kind, the sandbox database and its initial world file, the retry policy,
where the app secret and the session keys are read from (``secrets``) — is turned into a
provider here. The top provider (and its HTTP library) is imported only when it is used.

Session keys come from ``provider.sessions_file``, the ``provider.sessions_env`` variable, or
— with neither — the state store, where ``reconciler auth`` keeps each shop's token sealed:
this module knows no store, so the caller opens it (``reconciler.auth.authorize``) and
passes the sessions in (``open_provider(..., sessions=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, Issue, ReconcilerError
from .located import load_document
from .platform import SandboxPlatform
from .providers import Provider, RetryPolicy, SandboxProvider
from .secrets import from_store, read_secret, read_sessions, secret_file_warnings
from .settings import DEFAULT_METHODS, SandboxSettings, Settings, TopSettings

if TYPE_CHECKING:
    from .world import World

STORE_SOURCE = "the state store (reconciler auth status)"


def read_world(path: Path, display: str | None = None) -> World:
    """A world file, validated like the config (every error with file:line:column)."""
    from .world import World  # (pydantic: only when a world file is loaded)

    world = load_document(path, display or str(path), World, None, subject="the world file")
    assert isinstance(world, World)
    return world


def _resolve(base: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else base / q


def open_sandbox(settings: Settings, config_dir: Path, *, db: Path | None = None,
                 initial_world: bool = True) -> SandboxPlatform:
    """The sandbox the settings name (or ``db``); on first use, loaded from ``provider.world``."""
    s = settings.provider if isinstance(settings.provider, SandboxSettings) else SandboxSettings()
    path = db or _resolve(config_dir, s.path)
    fresh = not path.exists()
    world = read_world(_resolve(config_dir, s.world), str(_resolve(config_dir, s.world))) \
        if fresh and s.world and initial_world else None
    platform = SandboxPlatform(path)
    if world is not None:
        try:
            platform.load_world(world)
        except BaseException:
            platform.close()
            path.unlink(missing_ok=True)
            raise
    return platform


def retry_policy(settings: Settings) -> RetryPolicy:
    a = settings.apply
    return RetryPolicy(retries=a.retries, backoff_s=a.backoff_s, max_backoff_s=a.max_backoff_s)


def open_provider(settings: Settings, config_dir: Path, *, sessions: Mapping[str, str] | None = None) -> Provider:
    """The provider the configuration names, ready to use; ``warnings`` holds what the user should hear.
    ``sessions``: the top provider's session keys from the state store (``tokens_from_store``)."""
    p = settings.provider
    if isinstance(p, SandboxSettings):
        return SandboxProvider(open_sandbox(settings, config_dir), retry=retry_policy(settings))
    if isinstance(p, TopSettings):
        return _open_top(p, config_dir, retry_policy(settings), sessions)
    raise AssertionError(p)


def tokens_from_store(settings: Settings) -> bool:
    """Whether the configured provider takes the shops' tokens from the state store (top, with
    no ``sessions_file`` and no ``sessions_env``)."""
    return isinstance(settings.provider, TopSettings) and from_store(settings.provider)


def open_token_provider(settings: Settings, config_dir: Path) -> Provider:
    """A top provider without session keys, for the app's own calls (the token methods)."""
    if not isinstance(settings.provider, TopSettings):
        raise ReconcilerError("shop authorizations are the top provider's: reconciler.yaml says provider.kind:"
                              f" {settings.provider.kind} (the sandbox provider needs no tokens)")
    return _open_top(settings.provider, config_dir, retry_policy(settings), {})


def _open_top(settings: TopSettings, config_dir: Path, retry: RetryPolicy, given: Mapping[str, str] | None) -> Provider:
    """The top provider the settings describe; the secret and session keys are read here."""
    try:
        from .providers.top import TopProvider
    except ImportError as e:  # pragma: no cover - only when an install is broken
        raise ConfigError([Issue("reconciler.yaml", 0, 0, "provider.kind",
                                 f"the top provider cannot be loaded: {e}")]) from e
    # the URL and method names were checked with the settings (specs.TopSettings), with file:line
    by_default_name = {v: k for k, v in DEFAULT_METHODS.items()}
    methods = {by_default_name.get(k, k): v for k, v in settings.methods.items()}
    secret = read_secret(settings, config_dir)
    if given is not None or from_store(settings):
        sessions, source = dict(given or {}), STORE_SOURCE
    else:
        sessions, source = read_sessions(settings, config_dir)
    provider = TopProvider(url=settings.url, app_key=settings.app_key, secret=secret, sessions=sessions,
                           sessions_source=source, sign_method=settings.sign_method, qps=settings.qps,
                           timeout_s=settings.timeout_s, parallelism=settings.parallelism, methods=methods, retry=retry,
                           deadline_s=settings.deadline_s, max_ban_s=settings.max_ban_s, max_failures=settings.max_failures)
    provider.warnings.extend(secret_file_warnings(settings, config_dir))
    return provider
