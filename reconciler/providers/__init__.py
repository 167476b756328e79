"""Providers: the platforms the reconciler reads and writes (``base`` states the contract).

``sandbox`` is the embedded SQLite platform; ``top`` the TOP-protocol HTTP client, imported
only when used (``reconciler.connect`` builds either from the settings).
"""

from __future__ import annotations

from .base import Provider, RetryPolicy
from .sandbox import SandboxProvider

__all__ = ["Provider", "RetryPolicy", "SandboxProvider"]
