"""TOP signing: the published TOP test vectors (secret "secret", bar=2 foo=1 foo_bar=3 foobar=4),
the canonical string, timestamps and their window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler import signing

VECTOR = {"bar": "2", "foo": "1", "foo_bar": "3", "foobar": "4"}


@pytest.mark.parametrize(("method", "expected"), [
    ("md5", "4B4AC0F2D69BA521FFDE55A2BBEE3025"),
    ("hmac", "26C775E5D0EB124C248184BFA79CA514"),
    ("hmac-sha256", "1C52CEB1EDD0E67254A35412A976973A383608B65620DDEB0D2469F8370F3ADE"),
])
def test_domain_vectors(method: str, expected: str) -> None:
    assert signing.canonical(VECTOR) == b"bar2foo1foo_bar3foobar4"
    assert signing.sign(VECTOR, "secret", method) == expected
    assert signing.verify({**VECTOR, "sign_method": method, "sign": signing.sign({**VECTOR, "sign_method": method},
                                                                                  "secret", method)}, "secret")


def test_sign_and_empty_values_are_not_signed() -> None:
    with_extra = {**VECTOR, "sign": "ANYTHING", "empty": ""}
    assert signing.canonical(with_extra) == b"bar2foo1foo_bar3foobar4"
    assert signing.sign(with_extra, "secret", "md5") == "4B4AC0F2D69BA521FFDE55A2BBEE3025"


def test_keys_sort_by_bytes_and_values_are_utf8() -> None:
    # "Z" (0x5A) sorts before "a" (0x61) and "_" (0x5F) before "b": byte order, not case-folded.
    assert signing.canonical({"a": "1", "Z": "2", "a_b": "3", "ab": "4"}) == b"Z2a1a_b3ab4"
    assert signing.canonical({"name": "聚水潭"}) == "name聚水潭".encode()


def test_verify_refuses_tampering_wrong_secret_and_unknown_methods() -> None:
    params = {"method": "erp.binding.get", "app_key": "30000001", "sign_method": "hmac"}
    params["sign"] = signing.sign(params, "secret", "hmac")
    assert signing.verify(params, "secret")
    assert signing.verify({**params, "sign": params["sign"].lower()}, "secret")  # hex case is not significant
    assert not signing.verify({**params, "app_key": "30000002"}, "secret")
    assert not signing.verify(params, "other-secret")
    assert not signing.verify({k: v for k, v in params.items() if k != "sign"}, "secret")
    assert not signing.verify({**params, "sign_method": "sha1"}, "secret")
    with pytest.raises(ValueError, match="unknown sign_method"):
        signing.sign(params, "secret", "sha1")


def test_timestamps_are_gmt8_and_checked_within_ten_minutes() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert signing.timestamp(now) == "2026-01-02 11:04:05"
    assert signing.parse_timestamp("2026-01-02 11:04:05") == now
    assert signing.in_window("2026-01-02 11:14:05", now)
    assert signing.in_window("2026-01-02 10:54:05", now)
    assert not signing.in_window("2026-01-02 11:14:06", now)
    assert not signing.in_window(signing.timestamp(now - timedelta(minutes=11)), now)
    for bad in ("", "2026-01-02T11:04:05", "1767323045", "2026-13-02 11:04:05"):
        assert not signing.in_window(bad, now)
