"""TOP request signing, timestamps and envelope keys, shared by the HTTP provider and the sandbox server.

The TOP rule: take every parameter except ``sign`` and the empty ones, sort the
keys by byte order, concatenate ``key + value`` with no separator, then

* ``md5``: MD5(secret + s + secret)
* ``hmac``: HMAC-MD5(secret, s)
* ``hmac-sha256``: HMAC-SHA256(secret, s)

and write the digest as uppercase hex. Timestamps are ``yyyy-MM-dd HH:mm:ss`` in GMT+8;
the gateway accepts ±10 minutes. Both sides use this one module so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Final, get_args

from .settings import SignMethod

SIGN_METHODS: Final[tuple[str, ...]] = get_args(SignMethod)
GMT8: Final = timezone(timedelta(hours=8), "GMT+8")
TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
TIMESTAMP_WINDOW: Final = timedelta(minutes=10)


def response_key(method: str) -> str:
    """The success envelope's key: ``erp.binding.get`` → ``erp_binding_get_response`` (a leading
    ``taobao_`` is dropped, as TOP does)."""
    key = method.replace(".", "_")
    return (key[len("taobao_"):] if key.startswith("taobao_") else key) + "_response"


def canonical(params: Mapping[str, str]) -> bytes:
    """The signed string: sorted ``key+value`` pairs, without ``sign`` and empty values."""
    items = sorted(((k.encode(), v.encode()) for k, v in params.items() if k != "sign" and v != ""), key=lambda kv: kv[0])
    return b"".join(k + v for k, v in items)


def sign(params: Mapping[str, str], secret: str, method: str) -> str:
    """The ``sign`` parameter for ``params`` (uppercase hex)."""
    data = canonical(params)
    key = secret.encode()
    if method == "md5":
        digest = hashlib.md5(key + data + key).hexdigest()
    elif method == "hmac":
        digest = hmac.new(key, data, hashlib.md5).hexdigest()
    elif method == "hmac-sha256":
        digest = hmac.new(key, data, hashlib.sha256).hexdigest()
    else:
        raise ValueError(f"unknown sign_method {method!r} (expected one of {', '.join(SIGN_METHODS)})")
    return digest.upper()


def verify(params: Mapping[str, str], secret: str) -> bool:
    """Whether ``params['sign']`` is the signature of ``params`` under their ``sign_method``."""
    given = params.get("sign", "")
    method = params.get("sign_method", "md5")
    if not given or not given.isascii() or method not in SIGN_METHODS:  # a signature is hex: "签名" is just wrong
        return False
    return hmac.compare_digest(given.upper().encode(), sign(params, secret, method).encode())


def timestamp(now: datetime) -> str:
    """``now`` (timezone-aware) as a TOP timestamp in GMT+8."""
    return now.astimezone(GMT8).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """A TOP timestamp (GMT+8) as an aware datetime; ValueError when malformed (strptime alone
    would take fullwidth digits: "２０２６-03-01 12:00:00")."""
    if not text.isascii():
        raise ValueError(f"a timestamp is ASCII: {text!r}")
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=GMT8)


def in_window(text: str, now: datetime, window: timedelta = TIMESTAMP_WINDOW) -> bool:
    """Whether the timestamp ``text`` is a well-formed time within ``window`` of ``now``."""
    try:
        at = parse_timestamp(text)
    except ValueError:
        return False
    return abs(at - now) <= window
