"""Signed, unguessable QR tokens: the last path segment of every QR URL (appointment, case, certificate).

A token is the AES-GCM encryption of (kind, object id) under a key derived from
PALMHALL_SECRET_KEY: it reveals nothing by itself, and without the key it can be neither
guessed nor forged. The same token works from the mini program, a kiosk and a counter scanner.
"""

from __future__ import annotations

import base64
import os
import struct
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backend.errors import DomainError, register_codes

register_codes({"qr.invalid": (404, "二维码无效或已失效")})

KINDS = {"appointment": 1, "case": 2, "certificate": 3, "payment": 4}
_NAMES = {v: k for k, v in KINDS.items()}


@lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"palmhall-qr", info=b"qr-token-v1").derive(secret.encode())


def make_token(secret: str, kind: str, object_id: int) -> str:
    nonce = os.urandom(12)
    plain = struct.pack(">BQ", KINDS[kind], object_id)
    sealed = AESGCM(_key(secret)).encrypt(nonce, plain, b"qr")
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def read_token(secret: str, token: str, *, kind: str | None = None) -> tuple[str, int]:
    """(kind, id) of a genuine token; anything else is `qr.invalid` (404), never a hint why."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if len(raw) != 12 + 9 + 16:
            raise ValueError
        plain = AESGCM(_key(secret)).decrypt(raw[:12], raw[12:], b"qr")
        code, object_id = struct.unpack(">BQ", plain)
        found = _NAMES[code]
    except (ValueError, InvalidTag, KeyError, struct.error):
        raise DomainError("qr.invalid") from None
    if kind is not None and found != kind:
        raise DomainError("qr.invalid")
    return found, object_id


def url(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/q/{token}"
