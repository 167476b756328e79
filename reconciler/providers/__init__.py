"""Providers: the platforms the reconciler reads and writes, chosen by ``provider.kind``."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, Issue
from ..located import load_document
from ..model import SandboxSettings, Settings, TopSettings
from ..platform import SandboxPlatform, World
from .base import Provider, RetryPolicy
from .sandbox import SandboxProvider

__all__ = ["Provider", "RetryPolicy", "SandboxProvider", "open_provider", "open_sandbox", "read_world"]


def read_world(path: Path, display: str | None = None) -> World:
    """A world file, validated like the config (every error with file:line:column)."""
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


def open_provider(settings: Settings, config_dir: Path) -> Provider:
    """The provider the configuration names, ready to use."""
    p = settings.provider
    if isinstance(p, SandboxSettings):
        return SandboxProvider(open_sandbox(settings, config_dir), retry=retry_policy(settings))
    if isinstance(p, TopSettings):
        try:
            from .top import TopProvider
        except ImportError as e:  # pragma: no cover - only when an install is broken
            raise ConfigError([Issue("reconciler.yaml", 0, 0, "provider.kind",
                                     f"the top provider cannot be loaded: {e}")]) from e
        return TopProvider.from_settings(p, config_dir=config_dir, retry=retry_policy(settings))
    raise AssertionError(p)
