"""Kiosk request signatures checked for every kiosk route: one place, run by the surface's group."""

from __future__ import annotations

import re

from sanic import Request

from backend import clock
from backend.errors import DomainError, register_codes
from backend.http import is_public, limit
from backend.identity import service as identity
from backend.signatures import hex_digest_equal, timestamp_of
from kiosks import signing

register_codes({
    "kiosk.signature_missing": (401, "终端请求缺少签名"),
    "kiosk.signature_invalid": (401, "终端请求签名无效"),
    "kiosk.timestamp_skew": (401, "终端时间与服务器相差过大，请校准时间"),
    "kiosk.replayed": (401, "重复的终端请求已被拒绝"),
    "kiosk.disabled": (403, "该终端已停用"),
})

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # Kiosk.device_id is 32 wide
NONCE_PREFIX = "palmhall:kiosk:nonce:"


async def verify_signature(request: Request) -> None:
    """Authenticate the device before anything in the request is read (enrollment, `ctx_public=True`, is how
    a device gets its key, so it cannot be signed)."""
    if is_public(request):
        return
    ctx = request.app.ctx
    h = request.headers
    device_id, ts, nonce, signature = (h.get("x-kiosk-id"), h.get("x-timestamp"), h.get("x-nonce"),
                                       h.get("x-signature"))
    if not (device_id and ts and nonce and signature):
        raise DomainError("kiosk.signature_missing")
    sent_at = timestamp_of(ts)
    if sent_at is None or not _NONCE.match(nonce) or not _DEVICE_ID.match(device_id):
        raise DomainError("kiosk.signature_invalid")
    skew = ctx.settings.kiosk_clock_skew
    if abs(sent_at - int(clock.now().timestamp())) > skew:
        raise DomainError("kiosk.timestamp_skew", details={"server_time": int(clock.now().timestamp())})
    found = await identity.kiosk_with_secret(device_id=device_id, keyring=ctx.keyring)
    if found is None:
        raise DomainError("kiosk.signature_invalid")
    kiosk, secret = found
    path = request.path + (f"?{request.query_string}" if request.query_string else "")
    expected = signing.sign(secret, request.method, path, ts, nonce, request.body or b"")
    if not hex_digest_equal(expected, signature):
        raise DomainError("kiosk.signature_invalid")
    if not kiosk.enabled:
        raise DomainError("kiosk.disabled")
    # Only a correctly signed request may spend a nonce, so nobody can burn a kiosk's nonces.
    if not await ctx.redis.set(f"{NONCE_PREFIX}{device_id}:{nonce}", b"1", nx=True, ex=2 * skew):
        raise DomainError("kiosk.replayed")
    await limit(request, f"kiosk:{device_id}", ctx.settings.rate_kiosk)
    request.ctx.kiosk = kiosk
