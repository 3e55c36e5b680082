"""Personal data at rest: AES-256-GCM with key ids (rotatable) and keyed hashes to find it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1"


class KeyError_(ValueError):
    """A key ring that cannot be used; the message never contains key material."""


@dataclass(frozen=True)
class KeyRing:
    """The first key encrypts; every key decrypts, so old rows stay readable during rotation."""

    keys: dict[str, bytes]
    current: str

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        current = ""
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            kid, sep, b64 = part.partition(":")
            if kid.startswith("dev-"):
                kid = kid[4:]  # development keys are marked; the id is what follows
            if not sep or not kid or ":" in b64:
                raise KeyError_("PALMHALL_DATA_KEYS entries must look like kid:base64key")
            try:
                key = base64.b64decode(b64, validate=True)
            except ValueError:
                raise KeyError_(f"PALMHALL_DATA_KEYS key {kid} is not valid base64") from None
            if len(key) != 32:
                raise KeyError_(f"PALMHALL_DATA_KEYS key {kid} must be 32 bytes (AES-256)")
            if kid in keys:
                raise KeyError_(f"PALMHALL_DATA_KEYS names key {kid} twice")
            keys[kid] = key
            current = current or kid
        if not keys:
            raise KeyError_("PALMHALL_DATA_KEYS holds no key")
        return cls(keys=keys, current=current)

    def encrypt(self, plaintext: str, *, aad: str) -> str:
        """`aad` binds the ciphertext to its place (e.g. "resident.id_number"): a value copied
        into another column does not decrypt there."""
        nonce = os.urandom(12)
        ct = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode(), aad.encode())
        return f"{PREFIX}:{self.current}:{base64.urlsafe_b64encode(nonce + ct).decode()}"

    def decrypt(self, token: str, *, aad: str) -> str:
        version, kid, body = token.split(":", 2)
        if version != PREFIX or kid not in self.keys:
            raise KeyError_(f"cannot decrypt: unknown key id {kid!r}")
        raw = base64.urlsafe_b64decode(body)
        return AESGCM(self.keys[kid]).decrypt(raw[:12], raw[12:], aad.encode()).decode()

    def key_id(self, token: str) -> str:
        return token.split(":", 2)[1]

    def needs_rotation(self, token: str) -> bool:
        return self.key_id(token) != self.current


def blind_index(hash_key: str, kind: str, value: str) -> str:
    """A keyed hash: equal values find each other, and nobody without the key can test guesses."""
    return hmac.new(hash_key.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
