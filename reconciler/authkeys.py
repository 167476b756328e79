"""The agency's state key and sealing: shops' tokens encrypted before they reach the state store.

Tokens are encrypted with Fernet (``cryptography``: AES-128-CBC plus HMAC-SHA256,
authenticated) under the key in ``RECONCILER_STATE_KEY``; the store keeps only the sealed
blob, the times and a one-way key id. The blob names its shop, so a blob copied to another
shop's row is refused. A wrong key is an error naming the variable, never garbage. Several
keys, comma-separated, during a rotation: the first seals, any opens.

The errors of shop authorizations (``AuthError``) live here, at the bottom of ``auth``'s
modules, since a key problem is one of them. No token or key is ever put in a message: they
name shops and key ids only. ``reconciler.auth`` re-exports every public name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ReconcilerError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

    from .state.tokens import TokenRow

ENV_KEY = "RECONCILER_STATE_KEY"


class AuthError(ReconcilerError):
    """A shop authorization cannot be read, stored or renewed as asked (one line, no secret)."""


class KeyProblem(AuthError):
    """``RECONCILER_STATE_KEY`` is missing, malformed, or not the key the tokens were sealed with."""


def keygen() -> str:
    """A new key: 32 random bytes in URL-safe base64 (a Fernet key)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _key_id(raw: bytes) -> str:
    """A one-way fingerprint of a key, to say which key sealed a token (never the key)."""
    return "k" + hashlib.sha256(b"reconciler state key id\0" + raw).hexdigest()[:10]


@dataclass(frozen=True)
class Secret:
    """A shop's tokens in clear: only in memory, never shown (``repr`` included)."""

    shop: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)


class Keyring:
    """The key(s) of ``RECONCILER_STATE_KEY``: the first seals, any of them opens."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        self._fernet: MultiFernet = MultiFernet([Fernet(base64.urlsafe_b64encode(k)) for k in keys])
        self.ids = [_key_id(k) for k in keys]

    @property
    def key_id(self) -> str:
        return self.ids[0]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        env = os.environ if environ is None else environ
        value = env.get(ENV_KEY, "").strip()
        if not value:
            raise KeyProblem(f"{ENV_KEY} is not set: the shops' tokens in the state store are sealed with it."
                             f" Set it to the agency's key (a CI secret), or make a new one with: reconciler auth keygen")
        keys: list[bytes] = []
        for n, part in enumerate(value.split(","), start=1):
            part = part.strip()
            try:
                raw = base64.urlsafe_b64decode(part.encode("ascii")) if part else b""
            except (ValueError, UnicodeEncodeError):
                raw = b""
            if len(raw) != 32 or not re.fullmatch(r"[A-Za-z0-9_-]{43}=", part):
                which = f"key {n} of {ENV_KEY}" if "," in value else ENV_KEY
                raise KeyProblem(f"{which} is not a key: expected 32 random bytes in URL-safe base64 (44 characters"
                                 f" ending in '='), as reconciler auth keygen prints one")
            keys.append(raw)
        return cls(keys)

    def seal(self, secret: Secret) -> str:
        payload = json.dumps({"shop": secret.shop, "access_token": secret.access_token,
                              "refresh_token": secret.refresh_token}, separators=(",", ":")).encode()
        return self._fernet.encrypt(payload).decode("ascii")

    def open(self, row: TokenRow) -> Secret:
        from cryptography.fernet import InvalidToken

        try:
            data = json.loads(self._fernet.decrypt(row.sealed.encode("ascii")))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            if row.key_id not in self.ids:
                raise KeyProblem(f"the token of shop {row.shop} was sealed with another key (key id {row.key_id});"
                                 f" {ENV_KEY} holds {', '.join(self.ids)}: set the key it was stored with (during a"
                                 f" rotation: the new key, a comma, the old one)") from None
            raise KeyProblem(f"the token of shop {row.shop} cannot be opened with {ENV_KEY} (key id {row.key_id}):"
                             " the stored value is damaged; import or add the shop's token again") from None
        if not isinstance(data, dict) or data.get("shop") != row.shop or not isinstance(data.get("access_token"), str):
            raise KeyProblem(f"the sealed token stored for shop {row.shop} belongs to another shop or is damaged;"
                             " import or add the shop's token again")
        refresh = data.get("refresh_token")
        return Secret(shop=row.shop, access_token=data["access_token"], refresh_token=refresh if isinstance(refresh, str) else None)
