"""Comparing what a caller sent with what we expect: signatures, secret tokens and signed timestamps.

`hmac.compare_digest(str, str)` raises TypeError when either string holds a non-ASCII character, so a
caller could turn a refused signature into a 500. Every comparison goes through here instead: the given
value's shape is checked first (length and alphabet, ASCII only), then bytes are compared in constant time.
"""

from __future__ import annotations

import hmac
import re

_HEX = re.compile(r"[0-9a-fA-F]+")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # epoch seconds: ASCII digits only, far below any overflow


def hex_digest_equal(expected: str, given: str | None) -> bool:
    """Is `given` our hex digest `expected` (any letter case)? False for anything of another shape."""
    if not isinstance(given, str) or not expected or len(given) != len(expected) or not _HEX.fullmatch(given):
        return False
    return hmac.compare_digest(expected.lower().encode("ascii"), given.lower().encode("ascii"))


def secret_equal(expected: str, given: str | None) -> bool:
    """Is `given` the secret `expected` (a token in a URL, a base64 signature)? Compared as UTF-8 bytes."""
    if not isinstance(given, str) or not expected:
        return False
    try:
        given_bytes = given.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no secret of ours
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given_bytes)


def timestamp_of(value: str | None) -> int | None:
    """Epoch seconds from a signed request's header or query, or None unless it is 1 to 12 ASCII digits
    (int() alone would take "١٢" or "²" and 4,000 digits, then fail or overflow further on)."""
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        return None
    return int(value)
