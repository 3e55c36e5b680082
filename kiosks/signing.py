"""Kiosk request signatures: HMAC-SHA256 over method, path with query, timestamp, nonce, body hash."""

from __future__ import annotations

import hashlib
import hmac


def canonical(method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join(
        [method.upper(), path_with_query, timestamp, nonce, hashlib.sha256(body).hexdigest()]
    ).encode()


def sign(secret: str, method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac.new(secret.encode(), canonical(method, path_with_query, timestamp, nonce, body),
                    hashlib.sha256).hexdigest()


def signed_headers(*, device_id: str, secret: str, method: str, path_with_query: str, body: bytes,
                   timestamp: int, nonce: str) -> dict[str, str]:
    """What a kiosk sends; used by the kiosk pages and the tests alike."""
    ts = str(timestamp)
    return {
        "X-Kiosk-Id": device_id, "X-Timestamp": ts, "X-Nonce": nonce,
        "X-Signature": sign(secret, method, path_with_query, ts, nonce, body),
    }
